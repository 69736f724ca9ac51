// placeholder: frontend_process (being written)
