#!/usr/bin/env bash
# Everything `make test` does, phase by phase, with the time each took.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

declare -a timings=()
phase() {
  local name="$1"; shift
  local start=$SECONDS
  log "$name"
  "$@"
  timings+=("$(printf '%-8s %4ss' "$name" $((SECONDS - start)))")
}
report() {
  echo "phase times:"
  printf '  %s\n' "${timings[@]}"
}
trap report EXIT

phase tools scripts/tools.sh
PATH="$(tools_bin_dir):$PATH"
export PATH
# kstatus and Argo CD's Lua engine, for the GitOps tests.
phase gitops bash -c 'scripts/gitops-verdicts.sh >/dev/null'

# The endpoints test parses /metrics with promtool, from Debian's prometheus package.
if ! command -v promtool >/dev/null 2>&1; then
  [[ $(id -u) == 0 ]] || die "the tests need promtool (Debian's prometheus) and installing it needs root"
  log "installing Debian's prometheus for promtool"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
phase docker scripts/docker-up.sh
# The private registry the imagePullSecrets tests pull from.
phase registry scripts/registry-up.sh
if [[ -z "${KUBECONFIG:-}" ]]; then
  phase cluster scripts/cluster-up.sh
  export KUBECONFIG="$repo_root/.cluster/kubeconfig"
else
  log "using the cluster of KUBECONFIG=$KUBECONFIG"
fi
phase build bash -c 'cargo build --all-targets --quiet && scripts/check.sh static'
phase image scripts/image.sh
if [[ "$KUBECONFIG" == "$repo_root/.cluster/kubeconfig" ]]; then
  # A kubelet node for the tests that install the operator as its DaemonSet.
  phase node scripts/node-up.sh
fi
phase bench cargo bench --profile dev --bench operator -- --quick
# The bounded fuzzing is the property tests among these; `make fuzz` runs the cargo-fuzz target,
# whose first build instruments every dependency in release mode: over 5 minutes on 2 cores.
phase tests cargo test --all-targets --no-fail-fast -- --skip chaos_stream_keeps_every_invariant \
  --skip uninstall_removes_every_task_container_and_leaves_nothing_stuck
# Takes the operator and its CRDs off the shared cluster: after every test that needs them.
if [[ "$KUBECONFIG" == "$repo_root/.cluster/kubeconfig" ]]; then
  phase uninstall cargo test --test uninstall
fi
# The chaos stream runs on a control plane and daemons of its own, after everything else, at a
# fixed seed unless TASKRUN_CHAOS_SEED says otherwise (make chaos is the long run).
phase chaos env TASKRUN_CHAOS_SEED="${TASKRUN_CHAOS_SEED:-1}" TASKRUN_CHAOS_RUNS="${TASKRUN_CHAOS_RUNS:-60}" \
  cargo test --test chaos -- --nocapture --exact chaos_stream_keeps_every_invariant
