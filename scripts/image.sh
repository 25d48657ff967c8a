#!/usr/bin/env bash
# Builds the operator image without pulling anything: a statically linked release binary in a
# FROM scratch image that runs as a non-root user. Prints the image name.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

image="${TASKRUN_IMAGE:-taskrun-operator:dev}"
target=x86_64-unknown-linux-gnu
log "building the static release binary"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release --target "$target" --bin taskrun
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "target/$target/release/taskrun" "$context/taskrun"
DOCKER_BUILDKIT=0 docker build -q -t "$image" -f deploy/image/Dockerfile.scratch "$context" >/dev/null
echo "$image"
