#!/usr/bin/env bash
# The whole test suite on a fresh machine (README: "Run the tests"):
#   bash scripts/test.sh [pytest args]
# Builds .venv from scratch (torch 2.13.0 CPU, voxgate-server[piper,kokoro], voxgate-manager, chatterbox-tts),
# and, when run as root, installs Debian's docker.io, starts dockerd, builds the CPU image and runs
# the Docker tests too (VOXGATE_TEST_DOCKER=1 makes a missing engine a failure, never a skip).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VOXGATE_TEST_VENV:-.venv}
log() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }

log "python venv $VENV"
python3 -m venv --clear "$VENV"  # from scratch, as CI: nothing left from an earlier run
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q -e "tts-inference-server[piper,kokoro]" -r tests/requirements.txt
if [ -f manager/pyproject.toml ]; then "$PY" -m pip install -q -e manager; fi
log "chatterbox-tts"
bash scripts/install-chatterbox.sh "$VENV"

if [ "$(id -u)" = 0 ] && [ "${VOXGATE_SKIP_DOCKER:-0}" != 1 ] && [ -f scripts/ci/docker-up.sh ]; then
  log "docker engine and CPU image"
  bash scripts/ci/docker-up.sh
  export VOXGATE_TEST_DOCKER=1
fi

log "browser tests: Debian chromium and axe-core"
# the studio's Playwright tests drive Debian's chromium (never a Playwright browser download) and
# run axe-core from npm against the page (tests/studio/test_studio_browser.py)
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
# only what is missing: Debian's npm conflicts with a node that brings its own (NodeSource's nodejs)
missing=""
[ -x /usr/lib/chromium/chromium ] || missing="chromium"
command -v npm >/dev/null || missing="$missing nodejs npm"
if [ "$(id -u)" = 0 ] && [ -n "$missing" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
if [ ! -f .cache/node/node_modules/axe-core/axe.min.js ]; then
  npm install --silent --no-audit --no-fund --prefix .cache/node axe-core@4.14.1
fi

log "pytest"
export PATH="$PWD/$VENV/bin:$PATH"
set +e
"$PY" -m pytest "$@"
status=$?
set -e
log "done (pytest exit $status)"
exit $status
