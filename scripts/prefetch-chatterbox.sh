#!/usr/bin/env bash
# Download the Chatterbox Turbo weights (about 3 GB) into the Hugging Face cache volume that the
# chatterbox-turbo model mounts (models.json / models.gpu.json: volume voxgate-hf at /data/hf), so
# the first speech request never waits for the download. Uses the GPU image's own libraries and the
# same file patterns as ChatterboxTurboTTS.from_pretrained, so the cache is what it will look for.
#
#   bash scripts/prefetch-chatterbox.sh [IMAGE] [VOLUME]     # defaults: voxgate/tts-server:gpu voxgate-hf
#   (the same as: docker compose --profile prefetch run --rm prefetch)
# A gated or private copy needs HF_TOKEN in the environment.
set -euo pipefail
IMAGE=${1:-voxgate/tts-server:gpu}
VOLUME=${2:-voxgate-hf}
exec docker run --rm -e HF_TOKEN="${HF_TOKEN:-}" -v "$VOLUME:/data/hf" --entrypoint /opt/venv/bin/python "$IMAGE" -c '
from chatterbox.tts_turbo import REPO_ID
from huggingface_hub import snapshot_download
path = snapshot_download(repo_id=REPO_ID, allow_patterns=["*.safetensors", "*.json", "*.txt", "*.pt", "*.model"])
print("Chatterbox Turbo weights in", path)
'
