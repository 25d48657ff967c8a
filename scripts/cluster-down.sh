#!/usr/bin/env bash
# Stops the control plane started by scripts/cluster-up.sh and removes .cluster/.
# Only the pids recorded in .cluster/*.pid are signalled, and only while /proc shows they are
# still the expected binary running for this checkout. Harmless when nothing is up.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

dir="$(cluster_dir)"

# Serialize with cluster-up (which calls this script while already holding the lock).
if [[ -z "${TASKRUN_CLUSTER_LOCK_HELD:-}" ]]; then
  lock_file="${TMPDIR:-/tmp}/taskrun-cluster-$(echo -n "$repo_root" | sha256sum | cut -c1-16).lock"
  exec 9>"$lock_file"
  flock 9
fi

# running PID: true while PID exists and is not a zombie.
running() {
  [[ -r "/proc/$1/stat" ]] && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

# ours PID BINARY: true if PID runs BINARY (argv[0]'s basename) with a command line that
# mentions this checkout's .cluster/ folder, so a reused pid is never signalled.
ours() {
  local cmdline argv0
  cmdline="$(tr '\0' '\n' < "/proc/$1/cmdline" 2>/dev/null)" || return 1
  argv0="$(head -n1 <<<"$cmdline")"
  [[ "$(basename "$argv0")" == "$2" ]] && grep -qF "$dir/" <<<"$cmdline"
}

# stop NAME: SIGTERM the process in .cluster/NAME.pid, SIGKILL it after 10 s.
stop() {
  local name="$1" pidfile="$dir/$1.pid" pid
  [[ -f "$pidfile" ]] || return 0
  pid="$(tr -dc '0-9' < "$pidfile")"
  if [[ -z "$pid" ]] || ! running "$pid"; then
    return 0
  fi
  if ! ours "$pid" "$name"; then
    log "pid $pid in $pidfile is no longer $name; leaving it alone"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    running "$pid" || return 0
    sleep 0.1
  done
  if ours "$pid" "$name"; then
    log "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      running "$pid" || return 0
      sleep 0.1
    done
    die "$name (pid $pid) survived SIGKILL"
  fi
}

if [[ -d "$dir" ]]; then
  stop kube-apiserver # first, so it does not log errors about a vanished etcd
  stop etcd
  rm -rf "$dir"
  log "cluster down; removed $dir"
else
  log "no cluster state in $dir; nothing to stop"
fi
