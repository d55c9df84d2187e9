"""Where GPU memory goes (probes and stages) and the reserved-range buffers' behaviour on a GPU."""
