// placeholder: event_loop (being written)
