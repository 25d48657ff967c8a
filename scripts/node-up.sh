#!/usr/bin/env bash
# Adds one node, node-a, to the local cluster of scripts/cluster-up.sh: containerd v2 on its own
# socket and folders, a CNI bridge, kube-proxy and a kubelet, with a pause image and the
# operator image (taskrun-operator:dev when Docker has it; `make image` builds it) imported
# into containerd. State and logs live in the cluster folder (.cluster/, or
# TASKRUN_CLUSTER_DIR); scripts/node-down.sh takes the node away again. A second run while the
# node is Ready starts nothing; it only imports an operator image that changed.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=cluster-lib.sh
source "$(dirname "$0")/cluster-lib.sh"
# shellcheck source=node-lib.sh
source "$(dirname "$0")/node-lib.sh"

[[ $(id -u) == 0 ]] || die "a node needs root: it makes a bridge, network namespaces, cgroups and mounts"
need ip
need nft
need curl
need setsid
need flock
need openssl
for b in "$kubelet_bin" "$kube_proxy_bin" "$kubectl_bin"; do
  [[ -x "$b" ]] || die "$b not found; build the tools first with scripts/tools.sh"
done
load_ports
kubectl() { "$kubectl_bin" --kubeconfig "$kubeconfig" "$@"; }
kubectl get --raw /readyz >/dev/null 2>&1 || die "no cluster answers in $dir; start one with scripts/cluster-up.sh"
"$repo_root/scripts/node-tools.sh" >/dev/null
# The pause image is built from busybox:latest, and the operator's pods need Docker anyway.
"$repo_root/scripts/docker-up.sh" >/dev/null

take_cluster_lock

operator_image="${TASKRUN_IMAGE:-taskrun-operator:dev}"

# quiet COMMAND...: runs COMMAND and shows what it printed only if it fails (the legacy builder
# and ctr warn about deprecations on every run).
quiet() {
  local output
  output="$("$@" 2>&1)" || { echo "$output" >&2; return 1; }
}

# import_image REF: copies REF from Docker into the node's containerd, unless it has that image.
import_image() {
  local id old
  id="$(docker image inspect -f '{{.Id}}' "$1")"
  old="$(crictl inspecti -o go-template --template '{{.status.id}}' "$1" 2>/dev/null)" || true
  [[ "$old" == "$id" ]] && return 0
  log "importing $1 into the node's containerd"
  docker save "$1" | quiet "$node_bin/ctr" --address "$containerd_socket" --namespace k8s.io images import -
  # The image it replaces goes; a running pod keeps its own copy of the root filesystem.
  if [[ -n "$old" ]]; then crictl rmi "$old" >/dev/null; fi
}

import_images() {
  if ! docker image inspect "$pause_image" >/dev/null 2>&1; then
    log "building the pause image $pause_image from busybox:latest"
    # The sandbox only holds the pod's namespaces; containerd stops it with SIGKILL.
    printf 'FROM busybox:latest\nENTRYPOINT ["/bin/sleep", "2147483647"]\n' |
      quiet env DOCKER_BUILDKIT=0 docker build -q -t "$pause_image" -
  fi
  import_image "$pause_image"
  if docker image inspect "$operator_image" >/dev/null 2>&1; then
    import_image "$operator_image"
  else
    log "$operator_image is not in Docker: \`make image\` builds it, then node-up imports it"
  fi
}

# node_ready [SINCE]: true while the Node says Ready, in a status the kubelet posted at or after
# SINCE (UTC, RFC 3339): a Node object outlives its kubelet, and so does its last status.
# shellcheck disable=SC2120 # SINCE comes through wait_for
node_ready() {
  local ready
  ready="$(kubectl get node "$node_name" -o jsonpath='{range .status.conditions[?(@.type=="Ready")]}{.status} {.lastHeartbeatTime}{end}' 2>/dev/null)"
  [[ "${ready% *}" == True && ! "${ready#* }" < "${1:-}" ]]
}

# wait_for WHAT SECONDS PIDNAME COMMAND...: waits until COMMAND succeeds while PIDNAME runs.
wait_for() {
  local what="$1" seconds="$2" name="$3"
  shift 3
  for _ in $(seq 1 $((seconds * 2))); do
    alive "$dir/$name.pid" || fail_with_log "$name exited before $what" "$dir/$name.log"
    "$@" && return 0
    sleep 0.5
  done
  fail_with_log "no $what after $seconds s" "$dir/$name.log"
}

# shellcheck disable=SC2119 # any heartbeat will do here
if recorded_pid containerd >/dev/null && recorded_pid kube-proxy >/dev/null &&
  recorded_pid kubelet >/dev/null && node_ready; then
  import_images
  log "node $node_name already Ready"
  exit 0
fi

owner="$(bridge_owner)"
if [[ -n "$owner" && "$owner" != "$dir" ]]; then
  if node_runs "$owner"; then
    die "the node of $owner holds $bridge on this machine; stop it first: TASKRUN_CLUSTER_DIR=$owner scripts/node-down.sh"
  fi
  log "the node of $owner no longer runs but left $bridge behind; taking what it left down"
  if [[ -d "$owner/node" ]]; then
    TASKRUN_CLUSTER_DIR="$owner" TASKRUN_CLUSTER_LOCK_HELD="" "$repo_root/scripts/node-down.sh"
  else
    "$kube_proxy_bin" --cleanup >/dev/null 2>&1 || true
    ip link delete "$bridge"
    rm -rf "$shim_socket_dir"
  fi
  owner=""
fi
if [[ -n "$owner" ]] || ls "$dir"/{containerd,kube-proxy,kubelet}.pid >/dev/null 2>&1; then
  log "found a node that is not Ready; cleaning it up first"
  "$repo_root/scripts/node-down.sh"
fi

start=$SECONDS
mkdir -p "$node/cni"
for tunable in "${kernel_tunables[@]}"; do
  echo "$tunable $(cat "/proc/sys/$tunable")"
done > "$node/kernel-tunables"

log "creating the bridge $bridge with the node address $node_address"
ip link add "$bridge" type bridge
ip link set "$bridge" alias "$dir"
ip addr add "$node_address/${pod_subnet#*/}" dev "$bridge"
ip link set "$bridge" up

issue kubelet "/O=system:nodes/CN=system:node:$node_name" \
  "$cert_ext\nextendedKeyUsage = clientAuth, serverAuth\nsubjectAltName = IP:$node_address, DNS:$node_name"
issue kube-proxy "/CN=system:kube-proxy" "$client_ext"
write_kubeconfig "$node/kubelet.kubeconfig" kubelet
write_kubeconfig "$node/kube-proxy.kubeconfig" kube-proxy

# Pods get addresses on the bridge and routes to the node (the API server, the kubelet) and to
# Services, and to nothing beyond: no default route, no masquerading.
cat > "$node/cni/10-taskrun.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "taskrun",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$pod_subnet", "gateway": "$node_address"}]],
        "routes": [{"dst": "$service_cidr"}],
        "dataDir": "$node/cni-ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON

# Every path of its own: Docker's containerd keeps /run/containerd, /var/lib/containerd and
# its shims' runc state; the shim binary is named because PATH may hold Debian's older one.
cat > "$node/containerd.toml" <<TOML
version = 4
root = "$node/containerd"
state = "$node/containerd-state"
imports = []

[plugins.'io.containerd.server.v1.grpc']
  address = "$containerd_socket"

[plugins.'io.containerd.server.v1.ttrpc']
  address = "$containerd_socket.ttrpc"

[plugins.'io.containerd.shim.v1.manager']
  socket_dir = "$shim_socket_dir"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "$pause_image"

[plugins.'io.containerd.cri.v1.runtime']
  netns_mounts_under_state_dir = true
  # Root here lacks CAP_SYS_RESOURCE, so no process may lower its oom_score_adj; without this
  # every pod sandbox (-998) fails in runc with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = "$node/cni"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  runtime_path = "$node_bin/containerd-shim-runc-v2"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = "/usr/sbin/runc"
  Root = "$node/runc"
  SystemdCgroup = false

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.internal.v1.opt']
  path = "$node/opt"
TOML

printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\n' "$containerd_socket" "$containerd_socket" \
  > "$node/crictl.yaml"
log "starting containerd on $containerd_socket (log: $dir/containerd.log)"
spawn "$dir/containerd.pid" "$dir/containerd.log" "$node_bin/containerd" --config "$node/containerd.toml"
containerd_answers() { crictl info >/dev/null 2>&1; }
wait_for "answer from containerd's CRI" 30 containerd containerd_answers
import_images

# nftables mode: kube-proxy's rules live in tables of its own, which `kube-proxy --cleanup`
# removes whole (iptables mode also leaves chains in the machine's filter table). Services
# answer on the node address only, and the machine's conntrack settings are left as they are.
cat > "$node/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $node/kube-proxy.kubeconfig
hostnameOverride: $node_name
bindAddress: $node_address
mode: nftables
clusterCIDR: $pod_subnet
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$node_address/32"]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
YAML
log "starting kube-proxy (log: $dir/kube-proxy.log)"
spawn "$dir/kube-proxy.pid" "$dir/kube-proxy.log" "$kube_proxy_bin" --config="$node/kube-proxy.yaml"

cat > "$node/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$containerd_socket
# This machine runs cgroup v1, which kubelets from 1.35 on refuse unless told (KEP-5573).
failCgroupV1: false
# The same driver as containerd's runc (SystemdCgroup = false).
cgroupDriver: cgroupfs
# A machine with swap on still gets a node; pods do not swap (swapBehavior NoSwap).
failSwapOn: false
address: $node_address
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
podLogsDir: $node/pod-logs
# Nothing can be pulled back here, and a test machine's disk is often nearly full: the
# kubelet neither removes images nor evicts pods for disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi}
# kube-proxy keeps the iptables rules; the kubelet adds none of its own.
makeIPTablesUtilChains: false
YAML
log "starting the kubelet as node $node_name (log: $dir/kubelet.log)"
kubelet_start="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
spawn "$dir/kubelet.pid" "$dir/kubelet.log" "$kubelet_bin" \
  --config="$node/kubelet.yaml" \
  --kubeconfig="$node/kubelet.kubeconfig" \
  --root-dir="$node/kubelet" \
  --hostname-override="$node_name" \
  --node-ip="$node_address"

wait_for "Ready node $node_name" 120 kubelet node_ready "$kubelet_start"
kube_proxy_synced() { curl -sf --max-time 2 http://127.0.0.1:10256/healthz >/dev/null; }
wait_for "synced rules from kube-proxy" 30 kube-proxy kube_proxy_synced
log "node $node_name Ready in $((SECONDS - start)) s"
kubectl get node "$node_name" -o wide
