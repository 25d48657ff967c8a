# shellcheck shell=bash
# shellcheck disable=SC2034 # variables for the scripts that source it
# Shared helpers for the provisioning scripts. Sourced, not run.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=versions.env
source "$repo_root/scripts/versions.env"

log() { echo "==> $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required but not installed"; }

tools_cache_dir() {
  echo "${XDG_CACHE_HOME:-$HOME/.cache}/taskrun-operator/kubernetes-$KUBERNETES_VERSION-etcd-$ETCD_VERSION"
}
tools_bin_dir() { echo "$(tools_cache_dir)/bin"; }
# containerd, its runc shim, ctr and crictl, for the node (scripts/node-tools.sh).
node_tools_bin_dir() {
  echo "${XDG_CACHE_HOME:-$HOME/.cache}/taskrun-operator/containerd-$CONTAINERD_VERSION-crictl-$CRICTL_VERSION/bin"
}
# The control plane's state folder: .cluster/, or TASKRUN_CLUSTER_DIR for a second, separate one.
cluster_dir() { echo "${TASKRUN_CLUSTER_DIR:-$repo_root/.cluster}"; }
# The lock that serializes cluster-up, cluster-down and cluster-ctl on one state folder. It
# lives outside that folder because cluster-down removes it.
cluster_lock_file() {
  echo "${TMPDIR:-/tmp}/taskrun-cluster-$(echo -n "$(cluster_dir)" | sha256sum | cut -c1-16).lock"
}
