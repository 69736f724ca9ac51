// placeholder: cgroup_v2 (being written)
