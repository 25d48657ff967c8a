#!/usr/bin/env bash
# Builds the Kubernetes binaries (control plane, node and kubectl) and etcd from their Go
# modules into a cache folder keyed by version, and prints that folder. A second run with the
# same versions does nothing.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

bin_dir="$(tools_bin_dir)"
kubernetes_commands=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)

# missing BINARY...: true if any of them is not in the cache yet.
missing() {
  local b
  for b in "$@"; do [[ -x "$bin_dir/$b" ]] || return 0; done
  return 1
}

build_kubernetes() {
  local c wanted=()
  for c in "${kubernetes_commands[@]}"; do missing "$c" && wanted+=("$c"); done
  log "building ${wanted[*]} $KUBERNETES_VERSION (first run only, several minutes)"
  cd "$work/kubernetes"
  # k8s.io/kubernetes points its staging modules at local folders; as a dependency each must
  # be pinned to the published v0.x release of the same minor and patch.
  local staging_version="v0.${KUBERNETES_VERSION#v1.}" upstream_mod
  cat > go.mod <<MOD
module taskrun.dev/tools/kubernetes

go 1.26
MOD
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "${kubernetes_commands[@]}"
    printf ')\n'
  } > tools.go
  go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null
  upstream_mod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod"
  {
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo "replace ("
    grep -E '^\s+k8s\.io/[a-z0-9-]+ => \./staging/' "$upstream_mod" \
      | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >> go.mod
  go mod tidy -e >/dev/null 2>&1 || true
  go build -tags tools -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)" \
    -o "$bin_dir/" "${wanted[@]/#/k8s.io/kubernetes/cmd/}"
}

build_etcd() {
  log "building etcd $ETCD_VERSION"
  cd "$work/etcd"
  cat > go.mod <<MOD
module taskrun.dev/tools/etcd

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  cat > tools.go <<'SRC'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
SRC
  go mod tidy -e >/dev/null 2>&1 || true
  go build -tags tools -trimpath -ldflags "-s -w" -o "$bin_dir/etcd" go.etcd.io/etcd/server/v3
}

if missing "${kubernetes_commands[@]}" etcd; then
  need go
  work="$(tools_cache_dir)/src"
  mkdir -p "$bin_dir" "$work/kubernetes" "$work/etcd"
  export GOFLAGS=-mod=mod CGO_ENABLED=0
  if missing "${kubernetes_commands[@]}"; then (build_kubernetes); fi
  if missing etcd; then (build_etcd); fi
fi
echo "$bin_dir"
