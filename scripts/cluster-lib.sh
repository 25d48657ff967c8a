# shellcheck shell=bash
# shellcheck disable=SC2034 # variables for the scripts that source it
# What the cluster and node scripts share: where the control plane keeps its state, its
# certificates and kubeconfigs, how etcd and kube-apiserver start and are waited for, and how a
# recorded pid is stopped. Sourced after lib.sh, not run.

dir="$(cluster_dir)"
pki="$dir/pki"
kubeconfig="$dir/kubeconfig"
# The node's address, on the bridge scripts/node-up.sh creates (it is also the pods' gateway).
# The API server advertises it, so the `kubernetes` Service leads pods to it, and the kubelet
# serves there. A private address of the project's own, never the machine's interface address.
node_address=10.250.0.1
service_cidr=10.96.0.0/12
# use_ports APISERVER ETCD ETCD_PEER: the loopback ports of this cluster.
use_ports() {
  apiserver_port="$1" etcd_port="$2" etcd_peer_port="$3"
  etcd_url="http://127.0.0.1:$etcd_port"
  peer_url="http://127.0.0.1:$etcd_peer_port"
  server="https://127.0.0.1:$apiserver_port"
}
# A new cluster takes the ports TASKRUN_APISERVER_PORT, TASKRUN_ETCD_PORT and
# TASKRUN_ETCD_PEER_PORT name (6443, 2379, 2380 by default) and saves them in ports.env, so a
# process restarted later (scripts/cluster-ctl.sh) takes the same ones.
use_ports "${TASKRUN_APISERVER_PORT:-6443}" "${TASKRUN_ETCD_PORT:-2379}" "${TASKRUN_ETCD_PEER_PORT:-2380}"
ports_file="$dir/ports.env"
save_ports() {
  printf 'use_ports %s %s %s\n' "$apiserver_port" "$etcd_port" "$etcd_peer_port" > "$ports_file"
}
load_ports() {
  [[ -f "$ports_file" ]] || die "$ports_file not found: no cluster was started in $dir"
  # shellcheck source=/dev/null # written by cluster-up.sh
  source "$ports_file"
}

bin_dir="$(tools_bin_dir)"
etcd_bin="$bin_dir/etcd"
apiserver_bin="$bin_dir/kube-apiserver"
controller_manager_bin="$bin_dir/kube-controller-manager"
scheduler_bin="$bin_dir/kube-scheduler"
kubectl_bin="$bin_dir/kubectl"

ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# issue NAME SUBJECT EXTENSIONS: $pki/NAME.crt for a fresh $pki/NAME.key, signed by the cluster
# CA. EXTENSIONS are openssl x509v3 lines; client_ext and server_ext are the usual ones.
issue() {
  (
    cd "$pki" || exit 1
    umask 077
    ec_key "$1.key"
    printf '%b\n' "$3" > "$1.ext"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
      -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext" ca.srl
  )
}
cert_ext='basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nauthorityKeyIdentifier = keyid'
client_ext="$cert_ext\nextendedKeyUsage = clientAuth"
server_ext="$cert_ext\nextendedKeyUsage = serverAuth"

# write_kubeconfig FILE NAME: a kubeconfig at FILE for the holder of $pki/NAME.crt, against
# this cluster's API server on loopback. Written atomically.
write_kubeconfig() {
  local b64
  b64() { base64 -w0 < "$1"; }
  cat > "$1.tmp" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: taskrun-local
  cluster:
    server: $server
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: taskrun-local-$2
  user:
    client-certificate-data: $(b64 "$pki/$2.crt")
    client-key-data: $(b64 "$pki/$2.key")
contexts:
- name: taskrun-local
  context:
    cluster: taskrun-local
    user: taskrun-local-$2
    namespace: default
current-context: taskrun-local
YAML
  chmod 600 "$1.tmp"
  mv "$1.tmp" "$1"
}

# Takes the lock on this state folder for the rest of the script, unless a caller holds it.
take_cluster_lock() {
  if [[ -z "${TASKRUN_CLUSTER_LOCK_HELD:-}" ]]; then
    exec 9>"$(cluster_lock_file)"
    flock 9
    export TASKRUN_CLUSTER_LOCK_HELD=1 # tells the scripts run from here not to take it again
  fi
}

# Starts "$@" in its own session (setsid, so it outlives the caller's process group and
# terminal) with SIGHUP ignored, output appended to LOG, and its pid written to PIDFILE by the
# process itself: `exec` keeps the pid, so the file is right even if setsid had to fork.
spawn() {
  local pidfile="$1" logfile="$2"
  shift 2
  rm -f "$pidfile"
  # From here "$1" is the binary.
  # 9>&-: the daemon must not inherit the lock fd, or it would hold the lock forever.
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid bash -c 'echo $$ > "$0"; exec nohup "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 9>&- &
  for _ in $(seq 1 50); do
    [[ -s "$pidfile" ]] && return 0
    sleep 0.1
  done
  die "$(basename "$1") did not start (no pid in $pidfile)"
}

# running PID: true while PID exists and is not a zombie.
running() {
  [[ -r "/proc/$1/stat" ]] && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

# alive PIDFILE: true while the recorded process runs.
alive() {
  local pid
  pid="$(tr -dc '0-9' < "$1" 2>/dev/null)" || return 1
  [[ -n "$pid" ]] && running "$pid"
}

# ours PID BINARY: true if PID runs BINARY (argv[0]'s basename) with a command line that
# mentions this cluster's state folder, so a reused pid is never signalled.
ours() {
  local cmdline argv0
  cmdline="$(tr '\0' '\n' 2>/dev/null < "/proc/$1/cmdline")" || return 1
  argv0="$(head -n1 <<<"$cmdline")"
  [[ "$(basename "$argv0")" == "$2" ]] && grep -qF "$dir/" <<<"$cmdline"
}

# recorded_pid NAME: the pid in $dir/NAME.pid while it runs NAME for this cluster; fails otherwise.
recorded_pid() {
  local pidfile="$dir/$1.pid" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(tr -dc '0-9' < "$pidfile")"
  [[ -n "$pid" ]] && running "$pid" || return 1
  if ! ours "$pid" "$1"; then
    log "pid $pid in $pidfile is no longer $1; leaving it alone"
    return 1
  fi
  echo "$pid"
}

# gone PID SECONDS: waits up to SECONDS for PID to end; fails if it still runs.
gone() {
  for _ in $(seq 1 $(($2 * 10))); do
    running "$1" || return 0
    sleep 0.1
  done
  ! running "$1"
}

# stop NAME: SIGTERM the process in $dir/NAME.pid, SIGKILL it after 10 s.
stop() {
  local pid
  pid="$(recorded_pid "$1")" || return 0
  log "stopping $1 (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  gone "$pid" 10 && return 0
  if ours "$pid" "$1"; then
    log "$1 (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    gone "$pid" 5 || die "$1 (pid $pid) survived SIGKILL"
  fi
}

# crash NAME: SIGKILL the process in $dir/NAME.pid, as a crash would, and wait until it is gone.
crash() {
  local pid
  pid="$(recorded_pid "$1")" || return 0
  log "killing $1 (pid $pid) with SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  gone "$pid" 5 || die "$1 (pid $pid) survived SIGKILL"
}

fail_with_log() {
  echo "---- last lines of $2 ----" >&2
  tail -n 40 "$2" >&2 || true
  echo "----" >&2
  die "$1 (cluster state left in $dir; scripts/cluster-down.sh cleans it up)"
}

# start_etcd NEW|EXISTING: starts etcd on its data folder (a new member, or the one already there).
start_etcd() {
  # --unsafe-no-fsync: throwaway test data, skipping fsync makes writes much faster.
  spawn "$dir/etcd.pid" "$dir/etcd.log" "$etcd_bin" \
    --name=taskrun \
    --data-dir="$dir/etcd" \
    --listen-client-urls="$etcd_url" \
    --advertise-client-urls="$etcd_url" \
    --listen-peer-urls="$peer_url" \
    --initial-advertise-peer-urls="$peer_url" \
    --initial-cluster="taskrun=$peer_url" \
    --initial-cluster-state="$(tr '[:upper:]' '[:lower:]' <<<"$1")" \
    --unsafe-no-fsync \
    --log-level=warn
}

etcd_healthy() { curl -sf --max-time 2 "$etcd_url/health" 2>/dev/null | grep -q '"health":"true"'; }

wait_etcd() {
  for _ in $(seq 1 150); do
    alive "$dir/etcd.pid" || fail_with_log "etcd exited during startup" "$dir/etcd.log"
    etcd_healthy && return 0
    sleep 0.2
  done
  etcd_healthy || fail_with_log "etcd not healthy after 30 s" "$dir/etcd.log"
}

start_apiserver() {
  local issuer="https://kubernetes.default.svc.cluster.local"
  # --enable-admission-plugins adds to the default-on set (which already has NamespaceLifecycle,
  # LimitRanger, ServiceAccount, DefaultStorageClass, ResourceQuota, the webhook and policy
  # plugins, ...); NodeRestriction is the one extra that pairs with the Node authorizer.
  # It listens on loopback for users, tests and the node's own processes, and on the node
  # address for pods (the `kubernetes` Service's endpoint is the advertised address); one
  # --bind-address takes only one address, so it is the wildcard.
  # The API server reaches kubelets (logs, exec) by their InternalIP, with a client cert that
  # cluster-up binds to system:kubelet-api-admin, and checks their serving certs.
  spawn "$dir/kube-apiserver.pid" "$dir/kube-apiserver.log" "$apiserver_bin" \
    --bind-address=0.0.0.0 \
    --advertise-address="$node_address" \
    --secure-port="$apiserver_port" \
    --etcd-servers="$etcd_url" \
    --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$pki/ca.crt" \
    --kubelet-preferred-address-types=InternalIP \
    --authorization-mode=Node,RBAC \
    --service-account-issuer="$issuer" \
    --api-audiences="$issuer" \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range="$service_cidr" \
    --enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,DefaultTolerationSeconds,NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ResourceQuota \
    --allow-privileged=true \
    --profiling=false
}

apiserver_ready() {
  curl -sf --max-time 3 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "$server/readyz" >/dev/null 2>&1
}

wait_apiserver() {
  for _ in $(seq 1 180); do
    alive "$dir/kube-apiserver.pid" || fail_with_log "kube-apiserver exited during startup" "$dir/kube-apiserver.log"
    apiserver_ready && return 0
    sleep 0.5
  done
  apiserver_ready || fail_with_log "kube-apiserver not ready after 90 s" "$dir/kube-apiserver.log"
}
