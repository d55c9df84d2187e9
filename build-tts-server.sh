#!/usr/bin/env bash
# Build the voxgate-server image from tts-inference-server/Dockerfile.
#
#   ./build-tts-server.sh [--target gpu|cpu] [--tag NAME:TAG] [--base-image IMAGE]
#                         [--ca-bundle FILE] [-- EXTRA DOCKER BUILD ARGS...]
#
#   --target      gpu (default): CUDA, Chatterbox Turbo + Piper;  cpu: Piper only, no torch
#   --tag         image name (default voxgate/tts-server:TARGET)
#   --base-image  base image of that target (default: the Dockerfile's, python:3.11-slim-bookworm
#                 for cpu, nvidia/cuda:12.8.1-base-ubuntu24.04 for gpu)
#   --ca-bundle   PEM file of extra CA certificates to trust while the build downloads packages
#                 (TLS-intercepting proxies); used at build time only, not left in the image
#   after --       passed to `docker build` as they are, e.g. -- --no-cache
#                 or -- --build-arg TORCH_SPEC=torch==2.11.0
# Env: DOCKER (the docker CLI to run, default docker).
# Prints the image id, tag, target, base image and size it built.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONTEXT="$ROOT/tts-inference-server"
DOCKER=${DOCKER:-docker}
TARGET=gpu
TAG=""
BASE_IMAGE=""
CA_BUNDLE=""
EXTRA=()

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "build-tts-server.sh: $*" >&2; exit 2; }
need_value() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --target) need_value "$@"; TARGET=$2; shift 2 ;;
    --target=*) TARGET=${1#*=}; shift ;;
    --tag) need_value "$@"; TAG=$2; shift 2 ;;
    --tag=*) TAG=${1#*=}; shift ;;
    --base-image) need_value "$@"; BASE_IMAGE=$2; shift 2 ;;
    --base-image=*) BASE_IMAGE=${1#*=}; shift ;;
    --ca-bundle) need_value "$@"; CA_BUNDLE=$2; shift 2 ;;
    --ca-bundle=*) CA_BUNDLE=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

case $TARGET in
  gpu) BASE_ARG=GPU_BASE_IMAGE ;;
  cpu) BASE_ARG=CPU_BASE_IMAGE ;;
  *) die "--target must be gpu or cpu, not '$TARGET'" ;;
esac
TAG=${TAG:-voxgate/tts-server:$TARGET}
[[ -f $CONTEXT/Dockerfile ]] || die "no Dockerfile at $CONTEXT"

args=(build --target "$TARGET" --tag "$TAG" --file "$CONTEXT/Dockerfile")
[[ -n $BASE_IMAGE ]] && args+=(--build-arg "$BASE_ARG=$BASE_IMAGE")

# The extra CA bundle travels in the build context under a fixed name (same content, same
# cached layers) and is removed when the build ends, whatever way it ends.
CA_DEST="$CONTEXT/docker/ca/build-tts-server.crt"
if [[ -n $CA_BUNDLE ]]; then
  [[ -r $CA_BUNDLE ]] || die "--ca-bundle: cannot read $CA_BUNDLE"
  grep -q 'BEGIN CERTIFICATE' "$CA_BUNDLE" || die "--ca-bundle: $CA_BUNDLE holds no PEM certificate"
  trap 'rm -f "$CA_DEST"' EXIT
  cp "$CA_BUNDLE" "$CA_DEST"
fi

echo "building target=$TARGET tag=$TAG base=${BASE_IMAGE:-(Dockerfile default)} ca-bundle=${CA_BUNDLE:-none}"
START=$(date +%s)
"$DOCKER" "${args[@]}" "${EXTRA[@]}" "$CONTEXT"
SECONDS_TAKEN=$(($(date +%s) - START))

read -r ID SIZE < <("$DOCKER" image inspect --format '{{.Id}} {{.Size}}' "$TAG")
echo
echo "built image"
echo "  id:      $ID"
echo "  tag:     $TAG"
echo "  target:  $TARGET"
echo "  base:    ${BASE_IMAGE:-(Dockerfile default)}"
echo "  size:    $(awk -v b="$SIZE" 'BEGIN { printf "%.0f MB (%.0f bytes)", b / 1e6, b }')"
echo "  took:    ${SECONDS_TAKEN} s"
