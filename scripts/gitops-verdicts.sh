#!/usr/bin/env bash
# Builds tests/gitops, which prints how kstatus and our Argo CD health check judge TaskRuns,
# into a cache folder keyed by its sources, and prints the binary's path. A second run with the
# same sources does nothing.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

src="$repo_root/tests/gitops"
key="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)"
bin="${XDG_CACHE_HOME:-$HOME/.cache}/taskrun-operator/gitops-verdicts-$key/gitops-verdicts"
if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

need go
log "building gitops-verdicts (first run only)"
mkdir -p "$(dirname "$bin")"
export GOFLAGS=-mod=mod CGO_ENABLED=0
# The binary depends on the hashed sources alone, not on the commit around them; a build that
# stops half-way or races another leaves no half-written binary under the cached name.
(cd "$src" && go build -buildvcs=false -trimpath -ldflags "-s -w" -o "$bin.$$" .) >&2
mv "$bin.$$" "$bin"
echo "$bin"
