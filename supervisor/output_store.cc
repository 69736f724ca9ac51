// placeholder: output_store (being written)
