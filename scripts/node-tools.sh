#!/usr/bin/env bash
# What the node runs besides the Kubernetes binaries: containerd v2 with its runc shim and
# ctr, and crictl, built from their Go modules into a cache folder keyed by version (a second
# run does nothing); runc and the CNI plugins from Debian's packages, installed when missing.
# Prints the folder.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

bin_dir="$(node_tools_bin_dir)"
containerd_commands=(containerd containerd-shim-runc-v2 ctr)

for package in runc containernetworking-plugins; do
  if ! dpkg -s "$package" >/dev/null 2>&1; then
    [[ $(id -u) == 0 ]] || die "the node needs Debian's $package and installing it needs root"
    log "installing Debian's $package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
  fi
done

missing() {
  local b
  for b in "$@"; do [[ -x "$bin_dir/$b" ]] || return 0; done
  return 1
}

if missing "${containerd_commands[@]}" crictl; then
  need go
  mkdir -p "$bin_dir"
  # Neither module replaces a dependency, so `go install module/cmd@version` builds each with
  # exactly the versions its own go.mod pins.
  export GOBIN="$bin_dir" CGO_ENABLED=0
  if missing "${containerd_commands[@]}"; then
    log "building containerd $CONTAINERD_VERSION (first run only, a few minutes)"
    packages=("${containerd_commands[@]/#/github.com/containerd/containerd/v2/cmd/}")
    go install -trimpath \
      -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
      "${packages[@]/%/@$CONTAINERD_VERSION}"
  fi
  if missing crictl; then
    log "building crictl $CRICTL_VERSION"
    go install -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION#v}" \
      "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  fi
fi
echo "$bin_dir"
