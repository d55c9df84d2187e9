"""voxgate's benchmarks: each script measures against a baseline in the same run and writes JSON.

Run them from the repository root as files (``python3 bench/park/park_bench.py ...``); each puts
the repository on ``sys.path`` itself, so the shared modules import as ``bench.common.*``.

- ``common``: what every bench shares (loopback HTTP helpers, the JSON report);
- ``service``: the service on the CPU (server, Kokoro, word timings, Wyoming, manager, cache, image);
- ``turbo``: Chatterbox Turbo on a GPU against upstream (``run_gpu_bench.sh``'s main phase);
- ``knobs``: one GPU setting or kernel at a time (``gpu_knobs.sh``);
- ``park``: cold start, parking and the profiles (``run_gpu_bench.sh``'s park phase);
- ``memory``: where GPU memory goes, and the reserved-range buffers' probes.

The shell scripts at this level are the one-command entry points; ``results/`` keeps the runs.
"""
