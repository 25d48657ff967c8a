#!/usr/bin/env bash
# Installs the operator from deploy/ on the cluster kubectl points at (KUBECONFIG), as a user
# would with `kubectl apply -k deploy/`, through an overlay that sets the DaemonSet's
# supplementalGroups to the group owning /var/run/docker.sock on this machine and its image to
# TASKRUN_IMAGE (taskrun-operator:dev, as scripts/image.sh builds it); then waits until the
# DaemonSet's pods are Ready. The nodes must have the image already.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
need kubectl

overlay="$(mktemp -d)"
trap 'rm -rf "$overlay"' EXIT
cat > "$overlay/kustomization.yaml" <<YAML
resources:
  - $(realpath --relative-to="$overlay" "$repo_root/deploy")
patches:
  - target: {kind: DaemonSet, name: taskrun-operator}
    patch: |
      - op: replace
        path: /spec/template/spec/securityContext/supplementalGroups
        value: [$(stat -c %g /var/run/docker.sock)]
      - op: replace
        path: /spec/template/spec/containers/0/image
        value: ${TASKRUN_IMAGE:-taskrun-operator:dev}
YAML
kubectl apply --server-side --force-conflicts -k "$overlay"
kubectl wait --for condition=established crd/taskrunpolicies.taskrun.dev --timeout=60s >/dev/null
kubectl -n taskrun-system rollout status daemonset/taskrun-operator --timeout=120s
