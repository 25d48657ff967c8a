#!/usr/bin/env bash
# Makes sure a Docker daemon answers (installing and starting Debian's engine when none does)
# and that the locally built test images exist. Nothing is pulled: there is no registry.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

state_dir="${TASKRUN_DOCKER_STATE:-$HOME/.cache/taskrun-operator/dockerd}"

docker_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if ! docker_answers; then
  if [[ -n "${DOCKER_HOST:-}" ]]; then
    die "DOCKER_HOST=$DOCKER_HOST does not answer"
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    [[ $(id -u) == 0 ]] || die "no Docker daemon answers and installing one needs root"
    log "installing Debian's docker.io"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  fi
  mkdir -p "$state_dir"
  log "starting dockerd (log: $state_dir/dockerd.log)"
  # --icc=false: containers on the default bridge cannot reach each other, as a node for
  # TaskRuns should run its daemon; Bridge tasks then join that bridge.
  nohup dockerd --pidfile "$state_dir/dockerd.pid" --icc=false >"$state_dir/dockerd.log" 2>&1 &
  for _ in $(seq 1 120); do
    docker_answers && break
    sleep 0.5
  done
  docker_answers || die "dockerd did not answer within 60 s; see $state_dir/dockerd.log"
fi


# The second test node's daemon lives in a network namespace: that takes iproute2.
if ! command -v ip >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
  log "installing Debian's iproute2"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
fi

if ! docker image inspect busybox:latest >/dev/null 2>&1; then
  if ! dpkg -s busybox-static >/dev/null 2>&1; then
    log "installing Debian's busybox-static"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
  fi
  log "building busybox:latest from Debian's busybox-static"
  context="$(mktemp -d)"
  cp /bin/busybox "$context/busybox"
  cat > "$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build -q -t busybox:latest "$context" >/dev/null
  rm -rf "$context"
fi
"$repo_root/scripts/firewall-image.sh" >/dev/null
docker version --format 'docker {{.Server.Version}} (API {{.Server.APIVersion}})'
