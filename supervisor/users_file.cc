// placeholder: users_file (being written)
