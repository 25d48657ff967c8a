#!/usr/bin/env bash
# Starts (or finds) the tests' private image registry: Debian's docker-registry (the
# Distribution registry) on a free loopback port, plain HTTP, htpasswd auth, holding the local
# busybox image as team/busybox:1. Writes its address and credentials to registry.env in its
# state folder (TASKRUN_REGISTRY_DIR, default ~/.cache/taskrun-operator/registry), which the
# tests read. A second run while it answers only makes sure the image is there.
#
# dockerd talks plain HTTP to registries on 127.0.0.0/8 without any configuration; the login
# the push needs goes into a throwaway DOCKER_CONFIG, so no credentials stay behind.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

state="${TASKRUN_REGISTRY_DIR:-$HOME/.cache/taskrun-operator/registry}"
env_file="$state/registry.env"
repository="team/busybox"
tag="1"

need curl
need setsid
need docker

install_packages() {
  local missing=()
  command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
  command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
  ((${#missing[@]} == 0)) && return 0
  [[ $(id -u) == 0 ]] || die "the tests need ${missing[*]} and installing them needs root"
  log "installing Debian's ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# answers ADDRESS: the registry there asks for credentials (HTTP 401 on /v2/).
answers() {
  [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://$1/v2/")" == 401 ]]
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 20000))
    port_in_use "$port" || { echo "$port"; return 0; }
  done
  die "no free loopback port found"
}

install_packages
mkdir -p "$state/data"
chmod 700 "$state"

if [[ -f "$env_file" ]]; then
  # shellcheck disable=SC1090
  source "$env_file"
fi
if [[ -z "${TASKRUN_REGISTRY:-}" ]] || ! answers "$TASKRUN_REGISTRY"; then
  if [[ -f "$state/registry.pid" ]]; then
    pid="$(tr -dc '0-9' < "$state/registry.pid")"
    if [[ -n "$pid" ]] && grep -qF "$state/config.yml" "/proc/$pid/cmdline" 2>/dev/null; then
      log "stopping the registry that does not answer (pid $pid)"
      kill "$pid" 2>/dev/null || true
    fi
  fi
  TASKRUN_REGISTRY_USER=taskrun-test
  TASKRUN_REGISTRY_PASSWORD="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
  TASKRUN_REGISTRY="127.0.0.1:$(free_port)"
  htpasswd -Bbc "$state/htpasswd" "$TASKRUN_REGISTRY_USER" "$TASKRUN_REGISTRY_PASSWORD" 2>/dev/null
  cat > "$state/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $state/data
http:
  addr: $TASKRUN_REGISTRY
auth:
  htpasswd:
    realm: taskrun-test
    path: $state/htpasswd
YAML
  log "starting docker-registry on $TASKRUN_REGISTRY (log: $state/registry.log)"
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid bash -c 'echo $$ > "$0"; exec nohup docker-registry serve "$1"' \
    "$state/registry.pid" "$state/config.yml" </dev/null >>"$state/registry.log" 2>&1 &
  for _ in $(seq 1 100); do
    answers "$TASKRUN_REGISTRY" && break
    sleep 0.1
  done
  answers "$TASKRUN_REGISTRY" || die "docker-registry did not answer on $TASKRUN_REGISTRY; see $state/registry.log"
  umask 077
  cat > "$env_file" <<ENV
TASKRUN_REGISTRY=$TASKRUN_REGISTRY
TASKRUN_REGISTRY_USER=$TASKRUN_REGISTRY_USER
TASKRUN_REGISTRY_PASSWORD=$TASKRUN_REGISTRY_PASSWORD
TASKRUN_REGISTRY_IMAGE=$TASKRUN_REGISTRY/$repository:$tag
ENV
fi

image="$TASKRUN_REGISTRY/$repository:$tag"
manifest="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
  -u "$TASKRUN_REGISTRY_USER:$TASKRUN_REGISTRY_PASSWORD" \
  -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
  "http://$TASKRUN_REGISTRY/v2/$repository/manifests/$tag")"
if [[ "$manifest" != 200 ]]; then
  docker image inspect busybox:latest >/dev/null 2>&1 || die "busybox:latest is missing; run scripts/docker-up.sh"
  log "pushing busybox as $image"
  login="$(mktemp -d)"
  trap 'rm -rf "$login"' EXIT
  printf '%s' "$TASKRUN_REGISTRY_PASSWORD" |
    DOCKER_CONFIG="$login" docker login -u "$TASKRUN_REGISTRY_USER" --password-stdin "$TASKRUN_REGISTRY" >/dev/null 2>&1 ||
    die "docker login to $TASKRUN_REGISTRY failed"
  docker tag busybox:latest "$image"
  DOCKER_CONFIG="$login" docker push -q "$image" >/dev/null
  DOCKER_CONFIG="$login" docker logout "$TASKRUN_REGISTRY" >/dev/null
fi
# The node must not have it: only a pull with credentials may bring it.
docker image rm "$image" >/dev/null 2>&1 || true
echo "registry $TASKRUN_REGISTRY holds $image (credentials in $env_file)"
