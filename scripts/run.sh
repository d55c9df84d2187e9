#!/usr/bin/env bash
# Quickstart: install into .venv (first run only) and serve the embedded Piper engine.
#   bash scripts/run.sh            # http://127.0.0.1:8000
# Settings come from VOXGATE_* environment variables (README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VOXGATE_VENV:-.venv}
if [ ! -x "$VENV/bin/voxgate-server" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "tts-inference-server[piper]"
fi
exec "$VENV/bin/voxgate-server" "$@"
