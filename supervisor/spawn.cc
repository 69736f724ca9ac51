// placeholder: spawn (being written)
