#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from their Go modules into a cache folder keyed by
# version, and prints that folder. A second run with the same versions does nothing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

bin_dir="$(tools_bin_dir)"
if [[ -x "$bin_dir/kube-apiserver" && -x "$bin_dir/kubectl" && -x "$bin_dir/etcd" ]]; then
  echo "$bin_dir"
  exit 0
fi

need go
work="$(tools_cache_dir)/src"
mkdir -p "$bin_dir" "$work/kubernetes" "$work/etcd"
export GOFLAGS=-mod=mod CGO_ENABLED=0

log "building kube-apiserver and kubectl $KUBERNETES_VERSION (first run only, several minutes)"
(
  cd "$work/kubernetes"
  # k8s.io/kubernetes points its staging modules at local folders; as a dependency each must
  # be pinned to the published v0.x release of the same minor and patch.
  staging_version="v0.${KUBERNETES_VERSION#v1.}"
  cat > go.mod <<MOD
module taskrun.dev/tools/kubernetes

go 1.26
MOD
  cat > tools.go <<'SRC'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
SRC
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
    -o "$bin_dir/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
)

log "building etcd $ETCD_VERSION"
(
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
)

echo "$bin_dir"
