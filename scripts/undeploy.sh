#!/usr/bin/env bash
# Removes the operator from the cluster kubectl points at (KUBECONFIG), in the one order that
# completes while TaskRuns exist:
#  1. the TaskRun CRD, while the agents still run: the API server deletes every TaskRun, and
#     each agent stops and removes its runs' containers and takes off their finalizers, so the
#     CRD goes instead of staying Terminating;
#  2. the RoleBindings that opted namespaces in, and the cluster-wide binding, which
#     `kubectl delete -k deploy/` does not know of;
#  3. everything else of deploy/.
# `kubectl delete -k deploy/` alone deletes the agents with the CRD: TaskRuns that still have
# a finalizer then keep the CRD Terminating, and their containers keep running.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
need kubectl

crd=taskruns.taskrun.dev
if kubectl get crd "$crd" >/dev/null 2>&1; then
  log "deleting the TaskRun CRD; the agents stop and remove every task container"
  kubectl delete crd "$crd" --wait=false
  if ! kubectl wait --for=delete "crd/$crd" --timeout="${UNDEPLOY_TIMEOUT:-300s}"; then
    kubectl get taskruns --all-namespaces 2>&1 | head -20 >&2 || true
    die "the TaskRun CRD is still there: the TaskRuns above still have their finalizer (is an agent running on each of their nodes?)"
  fi
fi

log "deleting the RoleBindings that opted namespaces in"
kubectl get rolebindings --all-namespaces \
  -o jsonpath='{range .items[?(@.roleRef.name=="taskrun-operator-workloads")]}{.metadata.namespace}{" "}{.metadata.name}{"\n"}{end}' |
  while read -r namespace name; do
    [[ -n "$namespace" ]] && kubectl delete rolebinding -n "$namespace" "$name" --ignore-not-found
  done
kubectl delete clusterrolebinding taskrun-operator-workloads --ignore-not-found

log "deleting the rest of deploy/"
kubectl delete -k "$repo_root/deploy" --ignore-not-found --wait=true
