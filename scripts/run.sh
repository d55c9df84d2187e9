#!/usr/bin/env bash
# Quickstart: install into .venv (first run only) and start voxgate-manager with the shipped
# models.json: the embedded Piper engine starts on the first request and stops after 10 idle minutes.
#   bash scripts/run.sh            # http://127.0.0.1:8000 (admin API on 127.0.0.1:8001)
#   VOXGATE_DIRECT=1 bash scripts/run.sh   # the speech server alone, no manager
# Settings come from VOXGATE_* environment variables (README.md, docs/manager.md).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VOXGATE_VENV:-.venv}
if [ ! -x "$VENV/bin/voxgate-server" ] || [ ! -x "$VENV/bin/voxgate-manager" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "tts-inference-server[piper]" -e manager
fi
if [ "${VOXGATE_DIRECT:-0}" = 1 ]; then
  exec "$VENV/bin/voxgate-server" "$@"
fi
# the venv is not on PATH: say the command that works as printed, from any directory
echo "voxgate-manager: watch and control it from another terminal with: $(cd "$VENV" && pwd)/bin/voxgate-manager status" >&2
exec "$VENV/bin/voxgate-manager" --config models.json "$@"
