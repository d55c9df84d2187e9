#!/usr/bin/env bash
# The knobs bench on a bare GPU machine (wheels carried): setup, memory and T3 kernel profile,
# then each clip variant (JSON FastTurbo kwargs, the arguments) in its own process, twice.
#   WHEELS=.whl OUT=/tmp/o bash bench/gpu_knobs.sh '{"decode_ahead": 1}' '{"decode_ahead": 2}'
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/knobs}; mkdir -p "$OUT"
export SITE=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --target $SITE "${WHEELS:-.whl}"/*.whl 2>&1 | tail -2
export PYTHONPATH=$SITE:$PWD/tts-inference-server:$PWD
python3 bench/turbo/perth_random_weights.py 2>/dev/null
[ -f /tmp/ck/conds.pt ] || python3 tools/make_random_turbo_ckpt.py /tmp/ck --dtype bf16 --eos-logit-bias -10000 2>/dev/null | tail -1
timeout ${PROF_TIMEOUT:-300} python3 bench/knobs/gpu_knobs_bench.py --ckpt /tmp/ck --sections ${SECTIONS:-mem,t3prof} ${PROF_ARGS:-} --json $OUT/prof.json 2>>$OUT/stderr.txt
i=0
for round in 1 2; do
  for v in "$@"; do
    i=$((i+1))
    python3 bench/knobs/gpu_knobs_bench.py --ckpt /tmp/ck --sections clips --variant "$v" --json $OUT/clips_$i.json 2>>$OUT/stderr.txt | grep section
  done
done
