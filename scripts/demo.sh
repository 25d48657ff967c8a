#!/usr/bin/env bash
# `make demo`: brings up Docker and the local control plane, installs the CRD, starts the
# operator, applies the examples and shows how they ended. `demo.sh stop` stops the operator.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

state="$(cluster_dir)"
controller_pid="$state/controller.pid"
namespace=taskrun-demo

stop_controller() {
  if [[ -f "$controller_pid" ]]; then
    local pid; pid="$(cat "$controller_pid")"
    if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' </proc/"$pid"/cmdline | grep -q 'taskrun controller'; then
      kill -TERM "$pid" && log "stopped the demo controller (pid $pid)"
    fi
    rm -f "$controller_pid"
  fi
}

if [[ "${1:-}" == stop ]]; then
  stop_controller
  exit 0
fi

scripts/tools.sh >/dev/null
PATH="$(tools_bin_dir):$PATH"
export PATH
scripts/docker-up.sh
if [[ -z "${KUBECONFIG:-}" ]]; then
  scripts/cluster-up.sh
  export KUBECONFIG="$state/kubeconfig"
fi
log "building taskrun"
cargo build --quiet --bins
kubectl apply --server-side --force-conflicts -f crds/taskrun.yaml >/dev/null
kubectl wait --for condition=established crd/taskruns.taskrun.dev --timeout=60s >/dev/null

kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
mkdir -p "$state"
stop_controller
# The demo's agent watches the demo namespace only: runs elsewhere (a test's, a user's) are
# never its business.
log "starting the operator for namespace $namespace (log: $state/controller.log)"
nohup setsid target/debug/taskrun controller --node-name "$(hostname)" --namespace "$namespace" \
  >"$state/controller.log" 2>&1 </dev/null &
echo $! >"$controller_pid"

kubectl delete taskruns --all -n "$namespace" --wait=true >/dev/null
log "applying examples/hello-gopher.yaml, examples/gopher-loops.yaml, examples/failing.yaml"
for example in hello-gopher gopher-loops failing; do
  kubectl apply -n "$namespace" -f "examples/$example.yaml"
done
log "waiting for every TaskRun to be Done"
kubectl wait --for=condition=Done taskruns --all -n "$namespace" --timeout=120s
echo
kubectl get taskruns -n "$namespace" -o wide
echo
log "output of gopher-loops, kept in status.logTail after its container was removed:"
kubectl get taskrun gopher-loops -n "$namespace" -o jsonpath='{.status.logTail}'
echo
log "events of failing:"
kubectl get events -n "$namespace" --field-selector involvedObject.name=failing \
  -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message
cat <<TEXT

Look around:
  export KUBECONFIG=$KUBECONFIG PATH=$(tools_bin_dir):\$PATH
  kubectl get taskruns -A -o wide
  kubectl describe taskrun failing -n $namespace
  docker ps -a --filter label=taskrun.dev/managed-by=taskrun-operator
  kubectl apply -n $namespace -f examples/limited.yaml
Stop everything: make down
TEXT
