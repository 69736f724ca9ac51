// placeholder: admin_cli (being written)
