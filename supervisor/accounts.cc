// placeholder: accounts (being written)
