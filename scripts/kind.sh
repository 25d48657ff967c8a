#!/usr/bin/env bash
# `kind.sh up`: a kind cluster whose nodes share the host's Docker daemon, with the operator
# image loaded, deploy/ applied and the hello example run. `kind.sh down` deletes it.
# Needs kind and a registry for kind's node image: not for machines without internet.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$repo_root"
need kind
need kubectl
cluster=taskrun

case "${1:-}" in
  up)
    kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --config deploy/kind/cluster.yaml
    image="$(scripts/image.sh)"
    kind load docker-image "$image" --name "$cluster"
    scripts/deploy.sh
    kubectl apply -f examples/hello-gopher.yaml
    kubectl wait --for=condition=Done taskrun/hello-gopher --timeout=120s
    kubectl get taskruns -o wide
    ;;
  down)
    kind delete cluster --name "$cluster"
    ;;
  *)
    die "usage: $0 up|down"
    ;;
esac
