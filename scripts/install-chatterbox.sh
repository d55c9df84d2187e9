#!/usr/bin/env bash
# Install the `chatterbox` extra's engine into an existing venv:  bash scripts/install-chatterbox.sh VENV_DIR
# The recipe lives inside the server's Docker build context, so the GPU image and venvs share it.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../tts-inference-server/docker/install-chatterbox.sh" "$@"
