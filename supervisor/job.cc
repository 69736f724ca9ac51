// placeholder: job (being written)
