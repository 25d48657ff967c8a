# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # variables for the scripts that source it, from cluster-lib.sh
# What node-up and node-down share: the node's name, network, folders and clients. Sourced
# after cluster-lib.sh, not run.

node_name="node-a"
node="$dir/node"
# The node's bridge: it holds the node address and is the pods' gateway. Its alias names the
# cluster folder that made it, as one machine has room for one such node at a time.
bridge=taskrun0
pod_subnet=10.250.0.0/24
pause_image=taskrun.dev/pause:dev
containerd_socket="$node/containerd.sock"
# Shim sockets need a short path (containerd allows 42 characters), so they live outside the
# cluster folder, in a folder of the machine's one node.
shim_socket_dir=/run/taskrun-node
# The kernel settings the kubelet sets at start (vm.overcommit_memory, kernel.panic, ...),
# saved by node-up beforehand and put back by node-down.
kernel_tunables=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

node_bin="$(node_tools_bin_dir)"
kubelet_bin="$bin_dir/kubelet"
kube_proxy_bin="$bin_dir/kube-proxy"

# crictl on the node's containerd: `crictl --config .cluster/node/crictl.yaml ps` by hand.
crictl() { "$node_bin/crictl" --config "$node/crictl.yaml" "$@"; }

# bridge_owner: the cluster folder whose node made the bridge; empty when there is no bridge.
bridge_owner() { cat "/sys/class/net/$bridge/ifalias" 2>/dev/null || true; }

# node_runs DIR: true while a process recorded for the node of the cluster folder DIR still
# runs it. A node whose processes all ended (its machine session was torn down, say) leaves the
# bridge behind but holds nothing.
node_runs() {
  local name pid
  for name in containerd kube-proxy kubelet; do
    pid="$(tr -dc '0-9' < "$1/$name.pid" 2>/dev/null)" || continue
    [[ -n "$pid" ]] && running "$pid" && tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$1/" && return 0
  done
  return 1
}
