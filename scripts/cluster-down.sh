#!/usr/bin/env bash
# Stops the node (scripts/node-down.sh) and the control plane started by scripts/cluster-up.sh
# and removes their state folder (.cluster/, or TASKRUN_CLUSTER_DIR). Only the pids recorded in
# its *.pid files are signalled, and only while /proc shows they are still the expected binary
# running for that folder. Harmless when nothing is up.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=cluster-lib.sh
source "$(dirname "$0")/cluster-lib.sh"

# Serialize with cluster-up (which calls this script while already holding the lock).
take_cluster_lock

if [[ -d "$dir" ]]; then
  if [[ -d "$dir/node" ]]; then "$repo_root/scripts/node-down.sh"; fi
  stop kube-scheduler
  stop kube-controller-manager
  stop kube-apiserver # before etcd, so it does not log errors about a vanished etcd
  stop etcd
  rm -rf "$dir"
  log "cluster down; removed $dir"
else
  log "no cluster state in $dir; nothing to stop"
fi
