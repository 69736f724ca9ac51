// placeholder: cgroup_v1 (being written)
