// placeholder: sessions (being written)
