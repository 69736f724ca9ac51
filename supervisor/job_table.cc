// placeholder: job_table (being written)
