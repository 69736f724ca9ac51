// placeholder: cgroup (being written)
