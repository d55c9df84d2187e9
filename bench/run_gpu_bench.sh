#!/usr/bin/env bash
# The GPU benchmark in one command, on a bare GPU machine with no network (H100/H200 image with
# python3, torch+CUDA, transformers): install the carried wheels, build the random-weight
# checkpoint with the project's tool, run bench/turbo/gpu_turbo_bench.py (upstream, in-process, HTTP),
# then bench/park/park_bench.py (cold start by stage, park/wake, through the manager).
#
#   WHEELS=.whl OUT=bench/results bash bench/run_gpu_bench.sh [extra gpu_turbo_bench.py args]
#
# WHEELS: folder of cp312 manylinux wheels (bench/fetch_gpu_wheels.sh downloads them).
# OUT: where the JSON, Markdown and logs go. CKPT: checkpoint folder (built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
OUT=${OUT:-bench/results}
CKPT=${CKPT:-/tmp/voxgate-turbo-ckpt}
SITE=${SITE:-/tmp/voxgate-site}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# the allocator setting the gpu image ships (tts-inference-server/Dockerfile), unless set
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF-expandable_segments:True}
t0=$(date +%s)
if [ -d "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/tts-inference-server:$PWD/manager:$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 bench/turbo/perth_random_weights.py
t1=$(date +%s)
if [ ! -f "$CKPT/conds.pt" ]; then
  python3 tools/make_random_turbo_ckpt.py "$CKPT" --dtype bf16 --eos-logit-bias -10000 | tail -1
fi
t2=$(date +%s)
echo "{\"install_s\": $((t1 - t0)), \"checkpoint_build_s\": $((t2 - t1))}" > "$OUT/setup_times.json"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" || true
# SKIP_TURBO=1: only the park phase; PARK_BENCH=0: no park phase (PARK_ARGS: its options);
# LAUNCH_BENCH=1: the launch phase (bench/park/launch_bench.py) before it; PROFILE_BENCH="small
# balanced lean:VOXGATE_CHATTERBOX_MAX_LEN=1024": VRAM per configuration (bench/park/profile_table.py),
# PROFILE_CYCLES park/wake cycles each (default 1; e.g. "alloc:VOXGATE_PARK_MECHANISM=allocator")
if [ "${SKIP_TURBO:-0}" != 1 ]; then
  python3 bench/turbo/gpu_turbo_bench.py all --ckpt "$CKPT" --out "$OUT" "$@"
fi
if [ "${LAUNCH_BENCH:-0}" = 1 ]; then
  # launch -> first byte with an empty and a warm compile cache, next to upstream's load + first clip
  python3 bench/park/launch_bench.py --ckpt "$CKPT" --out "$OUT/launch"
fi
if [ -n "${PROFILE_BENCH:-}" ]; then
  # VRAM and throughput per configuration: "name:VAR=value,VAR=value ..." (name alone: defaults);
  # one park_bench each, a burst of the configuration's batch, no manager phases
  for spec in $PROFILE_BENCH; do
    name=${spec%%:*}; vars=""; [ "$spec" != "$name" ] && vars=${spec#*:}
    dir="$OUT/profile-$name"; mkdir -p "$dir"
    echo "{\"name\": \"$name\", \"env\": \"$vars\"}" > "$dir/profile.json"
    batch=$(env ${vars//,/ } python3 -c 'from voxgate_server.engines.chatterbox_fast.engine import FastSettings; print(FastSettings().max_batch)')
    env ${vars//,/ } python3 bench/park/park_bench.py --ckpt "$CKPT" --out "$dir" --cycles "${PROFILE_CYCLES:-1}" --burst "$batch" \
      --manager-bursts 0 --manager-park-cycles -1 || echo "profile $name failed"
  done
  python3 bench/park/profile_table.py "$OUT"/profile-* --json "$OUT/profiles.json" > "$OUT/profiles.md"
  cat "$OUT/profiles.md"
fi
if [ "${PARK_BENCH:-1}" = 1 ]; then
  # launch -> first byte by stage, park/wake cycles, 16 through the manager vs direct
  python3 bench/park/park_bench.py --ckpt "$CKPT" --out "$OUT" ${PARK_ARGS:-}
fi
