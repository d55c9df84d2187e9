#!/usr/bin/env bash
# Download, on a machine with PyPI access, the wheels bench/run_gpu_bench.sh installs on a GPU
# machine without network (CPython 3.12, x86-64; the image already has torch+CUDA, torchaudio,
# transformers, tokenizers, safetensors, numpy, scipy, numba, httpx, anyio, h11, click ...).
#
#   bash bench/fetch_gpu_wheels.sh [DEST=.whl]
#
# Everything that travels must stay under 64 MiB: resemble-perth's wheel carries its 37 MB
# trained watermark network, PyAV its 36 MB FFmpeg. So perth is repacked without the network
# and bench/turbo/perth_random_weights.py writes a random PerthNet of the same shape on the GPU
# machine (same compute; the audio is random-weight noise anyway). Result: about 50 MiB (uvloop and httptools included: the server image runs uvicorn on them).
set -euo pipefail
mkdir -p "${1:-.whl}"
DEST=$(cd "${1:-.whl}" && pwd)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" \
  chatterbox-tts==0.1.7 s3tokenizer==0.3.0 resemble-perth==1.0.1 conformer==0.3.2 diffusers==0.29.0 \
  pyloudnorm==0.2.0 omegaconf==2.4.0 librosa==0.11.0 audioread==3.1.0 decorator==5.3.1 pooch==1.9.0 \
  platformdirs==4.14.7 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 soxr==1.1.0 \
  setuptools==80.10.2 \
  fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0 pydantic==2.14.3 pydantic_core==2.50.4 \
  pydantic-settings==2.16.3 python-dotenv==1.2.4 typing-inspection==0.4.5 annotated-types==0.8.0 \
  typing_extensions==4.16.0 opentelemetry-api==1.45.2 av==18.1.0 sentencex==1.0.32 python-multipart==0.0.34 \
  httptools==0.9.0 uvloop==0.23.0 \
  docker==7.1.0 wyoming==1.10.2 zeroconf==0.154.0 ifaddr==0.2.0 sentence-stream==1.3.0 \
  argon2-cffi==25.1.0 argon2-cffi-bindings==26.2.0 pyjwt==2.15.1 \
  torch_memory_saver==0.0.10
# torch_memory_saver: the allocator park mechanism (engines/gpu/sleep_memory.py).
# the argon2/pyjwt line: what the manager imports at start (park_bench.py's manager phases); without them
# those phases fail with ModuleNotFoundError (bench/results/park-2026-12-03-kv/a)
# setuptools<81: resemble-perth 1.0.1 imports pkg_resources (the image has 81).
PERTH=$(ls "$DEST"/resemble_perth-1.0.1-*.whl)
TMP=$(mktemp -d)
python3 -m zipfile -e "$PERTH" "$TMP"
rm -f "$TMP"/perth/perth_net/pretrained/implicit/*.pth.tar "$PERTH"
(cd "$TMP" && python3 -m zipfile -c "$PERTH" perth resemble_perth-1.0.1.dist-info)
rm -rf "$TMP"
du -sh "$DEST"
