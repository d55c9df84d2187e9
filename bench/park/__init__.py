"""Cold start by stage, parking and waking, and the memory profiles (``run_gpu_bench.sh``)."""
