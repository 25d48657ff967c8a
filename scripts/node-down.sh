#!/usr/bin/env bash
# Takes away the node of scripts/node-up.sh: stops the processes it recorded (only those pids,
# while /proc shows they are still ours), removes its pods through containerd's CRI (their
# containers, network namespaces, veths and addresses go as the kubelet would remove them),
# then kube-proxy's iptables rules, the bridge, leftover mounts, the kubelet's cgroups and its
# links in /var/log/containers, and puts back the kernel settings the kubelet changed. The
# images imported into containerd stay for the next node-up. Harmless when no node is up.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=cluster-lib.sh
source "$(dirname "$0")/cluster-lib.sh"
# shellcheck source=node-lib.sh
source "$(dirname "$0")/node-lib.sh"

if [[ ! -d "$node" ]]; then
  log "no node state in $node; nothing to stop"
  exit 0
fi
take_cluster_lock

stop kubelet
if recorded_pid containerd >/dev/null; then
  log "removing the node's pods"
  crictl --timeout 30s rmp --all --force >/dev/null ||
    log "containerd could not remove every pod; what is left goes below"
fi
stop kube-proxy
stop containerd

# What outlived containerd (it had crashed, say): containers in this node's runc root, and
# shims whose command line names this cluster folder.
if [[ -d "$node/runc/k8s.io" ]]; then
  for id in $(runc --root "$node/runc/k8s.io" list -q); do
    log "removing leftover container $id"
    runc --root "$node/runc/k8s.io" delete --force "$id"
  done
fi
for proc in /proc/[0-9]*; do
  pid="${proc#/proc/}"
  if ours "$pid" containerd-shim-runc-v2; then
    log "killing leftover shim $pid"
    kill -KILL "$pid" 2>/dev/null || true
  fi
done
# Mounts left under the node's folder (pod volumes, root filesystems, network namespaces),
# deepest first.
awk -v prefix="$node/" 'index($5, prefix) == 1 {print $5}' /proc/self/mountinfo | sort -r |
  while read -r mount; do umount "$mount" || umount -l "$mount"; done

owner="$(bridge_owner)"
if [[ -z "$owner" || "$owner" == "$dir" ]]; then
  if [[ -f "$dir/kube-proxy.pid" ]]; then
    "$kube_proxy_bin" --cleanup >>"$dir/kube-proxy.log" 2>&1
  fi
  if [[ -n "$owner" ]]; then
    ip link delete "$bridge"
  fi
  if [[ -f "$node/kernel-tunables" ]]; then
    while read -r tunable value; do echo "$value" > "/proc/sys/$tunable"; done < "$node/kernel-tunables"
  fi
  find /sys/fs/cgroup/*/kubepods -depth -type d -exec rmdir {} + 2>/dev/null || true
  # Paths that are not taken from the configured folders: the kubelet's links to pod logs and
  # its device plugin socket, and the CNI library's cache of results.
  find /var/log/containers -maxdepth 1 -lname "$node/*" -delete 2>/dev/null || true
  rm -f /var/lib/kubelet/device-plugins/{kubelet.sock,kubelet_internal_checkpoint} \
    /var/lib/cni/results/{taskrun,cni-loopback}-*
  rmdir /var/log/containers /var/lib/kubelet/device-plugins /var/lib/kubelet \
    /var/lib/cni/results /var/lib/cni 2>/dev/null || true
  # Only this node's shims ever listened there, and none runs now (a killed one leaves its socket).
  rm -rf "$shim_socket_dir"
else
  log "$bridge belongs to the node of $owner; leaving the machine's network and settings alone"
fi

rm -f "$dir"/{containerd,kube-proxy,kubelet}.pid
find "$node" -mindepth 1 -maxdepth 1 ! -name containerd -exec rm -rf {} +
log "node $node_name down"
