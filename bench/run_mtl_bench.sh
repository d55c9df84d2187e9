#!/usr/bin/env bash
# The multilingual GPU benchmark in one command on a bare GPU machine (as bench/run_gpu_bench.sh
# does for Turbo): install the carried wheels, give perth random weights if its own are absent,
# build the random multilingual checkpoint, run bench/turbo/mtl_bench.py (voxgate next to upstream).
#
#   WHEELS=.whl OUT=bench/results bash bench/run_mtl_bench.sh [extra mtl_bench.py args]
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
OUT=${OUT:-bench/results}
CKPT=${CKPT:-/tmp/voxgate-mtl-ckpt}
SITE=${SITE:-/tmp/voxgate-site}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF-expandable_segments:True}
if [ -d "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/tts-inference-server:$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 bench/turbo/perth_random_weights.py
if [ ! -f "$CKPT/conds.pt" ]; then
  python3 tools/make_random_mtl_ckpt.py "$CKPT" --dtype bf16 | tail -1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" || true
python3 bench/turbo/mtl_bench.py --device cuda --ckpt "$CKPT" --json "$OUT/mtl_bench.json" "$@"
