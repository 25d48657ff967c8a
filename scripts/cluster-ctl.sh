#!/usr/bin/env bash
# Crashes and restarts one process of a control plane started by scripts/cluster-up.sh, for
# fault-injection tests: `cluster-ctl.sh kill etcd|kube-apiserver` sends SIGKILL to the pid
# recorded in its state folder (.cluster/, or TASKRUN_CLUSTER_DIR) and waits until it is gone;
# `cluster-ctl.sh start etcd|kube-apiserver` starts it again with the same ports, certificates
# and data, and waits until it is healthy. Starting a process that runs does nothing.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=cluster-lib.sh
source "$(dirname "$0")/cluster-lib.sh"

action="${1:-}"
name="${2:-}"
case "$name" in
  etcd | kube-apiserver) ;;
  *) die "usage: $0 kill|start etcd|kube-apiserver" ;;
esac
[[ -d "$dir" ]] || die "no cluster state in $dir; start one with scripts/cluster-up.sh"
load_ports
take_cluster_lock

case "$action" in
  kill)
    crash "$name"
    ;;
  start)
    if recorded_pid "$name" >/dev/null; then
      log "$name already runs"
      exit 0
    fi
    log "starting $name again (log: $dir/$name.log)"
    if [[ "$name" == etcd ]]; then
      start_etcd existing
      wait_etcd
    else
      start_apiserver
      wait_apiserver
    fi
    ;;
  *)
    die "usage: $0 kill|start etcd|kube-apiserver"
    ;;
esac
