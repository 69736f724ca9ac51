// placeholder: listen_socket (being written)
