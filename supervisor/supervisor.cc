// placeholder: supervisor (being written)
