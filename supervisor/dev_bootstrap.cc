// placeholder: dev_bootstrap (being written)
