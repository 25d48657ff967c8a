#!/usr/bin/env bash
# `docker-node.sh up NAME` starts a second Docker daemon as another "node" on this machine, in a
# network namespace of its own (a daemon in the host namespace would take over docker0), and
# loads the local test images into it; prints its DOCKER_HOST. `docker-node.sh down NAME` stops
# exactly that daemon. `docker-node.sh kill NAME` ends it with SIGKILL, as a crash would (its
# containers keep running until `up` starts the daemon again). Idempotent.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

action="${1:-}"
name="${2:-node-b}"
[[ "$name" =~ ^[a-z0-9-]+$ ]] || die "node name must be lowercase letters, digits and dashes"
root="${XDG_CACHE_HOME:-$HOME/.cache}/taskrun-operator/nodes/$name"
socket="$root/docker.sock"
pidfile="$root/dockerd.pid"
netns="taskrun-$name"

# our_pid: the daemon's pid while it runs as started here (its command line names our pidfile).
our_pid() {
  local pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(tr -dc '0-9' <"$pidfile")"
  [[ -n "$pid" && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--pidfile $pidfile" || return 1
  echo "$pid"
}

answers() { DOCKER_HOST="unix://$socket" docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

case "$action" in
  up)
    if ! answers; then
      need ip
      need nsenter
      mkdir -p "$root"
      ip netns list | grep -qw "$netns" || ip netns add "$netns"
      ip netns exec "$netns" ip link set lo up
      # nsenter keeps this mount namespace (ip netns exec would remount /sys and hide cgroups).
      nohup setsid nsenter --net="/var/run/netns/$netns" dockerd \
        -H "unix://$socket" --data-root "$root/data" --exec-root "$root/exec" \
        --pidfile "$pidfile" --iptables=false >"$root/dockerd.log" 2>&1 </dev/null &
      for _ in $(seq 1 120); do answers && break; sleep 0.5; done
      answers || die "the $name daemon did not answer; see $root/dockerd.log"
    fi
    if ! DOCKER_HOST="unix://$socket" docker image inspect busybox:latest >/dev/null 2>&1; then
      docker save busybox:latest | DOCKER_HOST="unix://$socket" docker load -q >/dev/null
    fi
    echo "unix://$socket"
    ;;
  down)
    if pid="$(our_pid)"; then
      kill -TERM "$pid"
      for _ in $(seq 1 40); do [[ -e /proc/$pid ]] || break; sleep 0.25; done
    fi
    ip netns list | grep -qw "$netns" && ip netns delete "$netns"
    log "$name stopped"
    ;;
  kill)
    if pid="$(our_pid)"; then
      kill -KILL "$pid"
      for _ in $(seq 1 50); do [[ -e /proc/$pid ]] || break; sleep 0.1; done
      # The daemon refuses to start while its pidfile names a process that /proc still shows.
      rm -f "$pidfile"
      log "$name killed (pid $pid)"
    fi
    ;;
  *)
    die "usage: $0 up|down|kill NAME"
    ;;
esac
