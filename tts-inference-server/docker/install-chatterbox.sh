#!/usr/bin/env bash
# Install the `chatterbox` extra's engine (chatterbox-tts 0.1.7, Turbo) into an existing venv.
#
#   bash scripts/install-chatterbox.sh VENV_DIR      (from the repo root; this file is its target)
#
# It lives in the server's Docker build context because the GPU image runs it too.
# VOXGATE_TORCH_SPEC picks torch (default torch==2.13.0); a CUDA build comes from an index given
# by PIP_EXTRA_INDEX_URL (the Dockerfile's gpu target uses torch==2.11.0 from the cu128 index).
#
# chatterbox-tts pins torch==2.6.0, numpy<2, transformers==5.2.0 and demo-only packages
# (gradio, pykakasi, spacy-pkuseg), so it goes in with --no-deps next to its real runtime
# dependencies. With a CPU-only torch, PyPI's torchaudio wheel has .so files that need
# libc10_cuda.so; chatterbox only uses torchaudio's pure-PyTorch parts, so they are removed.
# (The test is torch.version.cuda, not cuda.is_available(): a CUDA image is built without a GPU.)
# setuptools<81 keeps pkg_resources, which resemble-perth 1.0.1 imports (else the watermarker
# is None and the model fails to build).
# torch_memory_saver (SGLang's, binary wheels for CUDA 12 and 13, no dependencies) lets the
# server park on drivers without the CUDA checkpoint API (VOXGATE_PARK_MECHANISM=allocator,
# voxgate_server/engines/gpu/sleep_memory.py).
set -euo pipefail
VENV=${1:?usage: install-chatterbox.sh VENV_DIR}
PIP=("$VENV/bin/python" -m pip)
TORCH=${VOXGATE_TORCH_SPEC:-torch==2.13.0}
"${PIP[@]}" install -q "$TORCH"
"${PIP[@]}" install -q --no-deps chatterbox-tts==0.1.7 s3tokenizer==0.3.0 torchaudio==2.11.0
"${PIP[@]}" install -q "$TORCH" librosa==0.11.0 "transformers>=5.2" diffusers==0.29.0 \
    resemble-perth==1.0.1 conformer==0.3.2 "safetensors>=0.5" pyloudnorm omegaconf onnx einops tqdm \
    soundfile "setuptools<81" torch_memory_saver==0.0.10
if ! "$VENV/bin/python" -c "import torch,sys; sys.exit(0 if torch.version.cuda else 1)"; then
  TA_DIR=$("$VENV/bin/python" -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('torchaudio').origin))")
  rm -f "$TA_DIR"/lib/*.so
fi
"$VENV/bin/python" - <<'PY'
import perth
assert perth.PerthImplicitWatermarker is not None, "pkg_resources missing (setuptools>=81)"
from chatterbox.tts_turbo import ChatterboxTurboTTS  # noqa: F401
import torch, numpy
print("chatterbox ready: torch", torch.__version__, "numpy", numpy.__version__)
PY
