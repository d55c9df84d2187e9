#!/usr/bin/env bash
# Bring up a local Docker engine and the project's CPU image on a Debian host (CI, or a dev box).
#
#   sudo bash scripts/ci/docker-up.sh
#
# Idempotent; every step is skipped when its result is already there:
#   1. apt-get install docker.io debootstrap        (if dockerd/debootstrap are missing)
#   2. start dockerd in the background              (if `docker info` fails; log: $DOCKERD_LOG)
#   3. make $VOXGATE_BASE_IMAGE by debootstrap      (if the image is missing; no registry needed)
#   4. build $VOXGATE_CPU_IMAGE with build-tts-server.sh --target cpu   (always; layers are cached)
#   5. build $VOXGATE_MANAGER_IMAGE (voxgate/manager:test) from manager/Dockerfile  (always; cached)
# No image registry is reachable in CI, so the base image is made from Debian packages and
# imported. Outbound HTTPS may go through a TLS-intercepting proxy, so the host's CA bundle
# is handed to the build (build time only; it is not left in the image).
#
# Settings (env): VOXGATE_BASE_IMAGE (local/debian-python:bookworm), VOXGATE_CPU_IMAGE
# (voxgate/tts-server:cpu), VOXGATE_CA_BUNDLE (/etc/ssl/certs/ca-certificates.crt; empty = none),
# DEBIAN_MIRROR (http://deb.debian.org/debian), DOCKERD_LOG (/tmp/dockerd.log),
# VOXGATE_SKIP_IMAGE_BUILD=1 (stop after step 3).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BASE_IMAGE=${VOXGATE_BASE_IMAGE:-local/debian-python:bookworm}
CPU_IMAGE=${VOXGATE_CPU_IMAGE:-voxgate/tts-server:cpu}
CA_BUNDLE=${VOXGATE_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DOCKERD_LOG=${DOCKERD_LOG:-/tmp/dockerd.log}
SUITE=bookworm

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "[docker-up] $*"; }

if [[ $(id -u) != 0 ]]; then
  echo "docker-up.sh: run as root (it installs packages and starts dockerd)" >&2
  exit 1
fi

T_ALL=$(now)
# Another process on this machine may run this script at the same time (one dockerd serves all).
# (dockerd is started with fd 9 closed, or it would hold the lock for as long as it runs.)
LOCK=${VOXGATE_DOCKER_UP_LOCK:-/run/lock/voxgate-docker-up.lock}
mkdir -p "$(dirname "$LOCK")"
exec 9>"$LOCK"
flock 9

# 1. packages
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
# compose, for tests/docker/test_compose.py (Debian's package; the compose plugin does as well)
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
if ((${#missing[@]})); then
  T=$(now)
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" ca-certificates >/dev/null
  log "installed ${missing[*]} in $(took "$T") s"
else
  log "docker.io and debootstrap already installed"
fi

# 2. engine
if docker info >/dev/null 2>&1; then
  log "dockerd already answering; leaving it as it is"
else
  T=$(now)
  # setsid + nohup: dockerd outlives this script and the CI step that ran it.
  setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
  DOCKERD_PID=$!
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  if ! docker info >/dev/null 2>&1; then
    echo "docker-up.sh: dockerd did not answer within 60 s; tail of $DOCKERD_LOG:" >&2
    tail -n 30 "$DOCKERD_LOG" >&2 || true
    exit 1
  fi
  log "started dockerd (pid $DOCKERD_PID, log $DOCKERD_LOG) in $(took "$T") s"
fi
log "engine: $(docker version --format 'server {{.Server.Version}}, client {{.Client.Version}}')"

# 3. base image: Debian bookworm + python3.11 + venv + pip + CA certificates
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "base image $BASE_IMAGE already present"
else
  T=$(now)
  ROOTFS=$(mktemp -d /tmp/voxgate-rootfs.XXXXXX)
  trap 'rm -rf "$ROOTFS"' EXIT
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    "$SUITE" "$ROOTFS" "$DEBIAN_MIRROR" >"$ROOTFS.log" 2>&1 || {
      echo "docker-up.sh: debootstrap failed; tail of $ROOTFS.log:" >&2
      tail -n 30 "$ROOTFS.log" >&2
      exit 1
    }
  rm -f "$ROOTFS.log"
  T_BOOT=$(took "$T")
  # Smaller image: package lists and caches are not needed at run time.
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/tmp/*
  T2=$(now)
  tar -C "$ROOTFS" -c . | docker import \
    -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$ROOTFS"
  trap - EXIT
  log "made $BASE_IMAGE: debootstrap ${T_BOOT} s + import $(took "$T2") s = $(took "$T") s," \
      "$(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
fi

# 4. the project's CPU image, built from the real Dockerfile by the real build script
if [[ ${VOXGATE_SKIP_IMAGE_BUILD:-0} != 1 ]]; then
  T=$(now)
  ca_args=()
  [[ -n $CA_BUNDLE && -f $CA_BUNDLE ]] && ca_args=(--ca-bundle "$CA_BUNDLE")
  bash "$REPO/build-tts-server.sh" --target cpu --tag "$CPU_IMAGE" --base-image "$BASE_IMAGE" "${ca_args[@]}"
  log "built $CPU_IMAGE in $(took "$T") s"
fi
# 5. the manager's image (compose.yaml's manager service), for tests/docker/test_compose.py
MANAGER_IMAGE=${VOXGATE_MANAGER_IMAGE:-voxgate/manager:test}
if [[ ${VOXGATE_SKIP_IMAGE_BUILD:-0} != 1 ]]; then
  T=$(now)
  MGR_CA=$REPO/tts-inference-server/docker/ca/docker-up-manager.crt
  if [[ -n $CA_BUNDLE && -f $CA_BUNDLE ]]; then
    cp "$CA_BUNDLE" "$MGR_CA"
    trap 'rm -f "$MGR_CA"' EXIT
  fi
  docker build -q -f "$REPO/manager/Dockerfile" --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$MANAGER_IMAGE" "$REPO" >/dev/null
  rm -f "$MGR_CA"
  trap - EXIT
  log "built $MANAGER_IMAGE in $(took "$T") s"
fi
log "done in $(took "$T_ALL") s"
