#!/usr/bin/env bash
# Starts a local Kubernetes control plane (etcd + kube-apiserver, no kubelet, no
# controller-manager) on loopback, with its state under .cluster/, and writes
# .cluster/kubeconfig (context taskrun-local, admin = system:masters).
# A second run while the cluster answers does nothing. Stop it with scripts/cluster-down.sh.
#
# Ports can be overridden: TASKRUN_APISERVER_PORT (6443), TASKRUN_ETCD_PORT (2379),
# TASKRUN_ETCD_PEER_PORT (2380).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

apiserver_port="${TASKRUN_APISERVER_PORT:-6443}"
etcd_port="${TASKRUN_ETCD_PORT:-2379}"
etcd_peer_port="${TASKRUN_ETCD_PEER_PORT:-2380}"

dir="$(cluster_dir)"
pki="$dir/pki"
kubeconfig="$dir/kubeconfig"
bin_dir="$(tools_bin_dir)"
etcd_bin="$bin_dir/etcd"
apiserver_bin="$bin_dir/kube-apiserver"
kubectl_bin="$bin_dir/kubectl"

need openssl
need curl
need setsid
need flock
for b in "$etcd_bin" "$apiserver_bin" "$kubectl_bin"; do
  [[ -x "$b" ]] || die "$b not found; build the tools first with scripts/tools.sh"
done

# Serialize with other cluster-up/cluster-down runs on this checkout. The lock lives outside
# .cluster/ because cluster-down removes that folder.
lock_file="${TMPDIR:-/tmp}/taskrun-cluster-$(echo -n "$repo_root" | sha256sum | cut -c1-16).lock"
exec 9>"$lock_file"
flock 9
export TASKRUN_CLUSTER_LOCK_HELD=1 # tells cluster-down.sh (run below) not to take it again

# --- Already up? -------------------------------------------------------------------------
if [[ -f "$kubeconfig" ]] &&
  "$kubectl_bin" --kubeconfig "$kubeconfig" --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
  log "cluster already up ($(grep -m1 'server:' "$kubeconfig" | awk '{print $2}')); kubeconfig: $kubeconfig"
  exit 0
fi

# Anything left from an earlier run (dead processes, a half-started cluster) is wiped:
# cluster-down stops only the pids recorded in .cluster/*.pid and removes .cluster/.
if [[ -e "$dir" ]]; then
  log "found a stale $dir that does not answer; cleaning it up"
  "$repo_root/scripts/cluster-down.sh"
fi

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$apiserver_port" "$etcd_port" "$etcd_peer_port"; do
  if port_in_use "$p"; then
    die "127.0.0.1:$p is already in use; set TASKRUN_APISERVER_PORT / TASKRUN_ETCD_PORT / TASKRUN_ETCD_PEER_PORT to free ports"
  fi
done

start=$SECONDS
mkdir -p "$pki" "$dir/etcd"
chmod 700 "$dir" "$dir/etcd"

# --- PKI ---------------------------------------------------------------------------------
# EC P-256 for the CA and TLS certs (fast to generate); RSA 2048 for service-account tokens.
log "generating certificates in $pki"
(
  cd "$pki"
  umask 077
  ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

  cat > ca.cnf <<'CNF'
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = taskrun-local-ca
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
CNF
  ec_key ca.key
  openssl req -x509 -new -key ca.key -config ca.cnf -days 3650 -out ca.crt

  # sign NAME SUBJECT EXTENSIONS: issue NAME.crt for a fresh NAME.key, signed by the CA.
  sign() {
    ec_key "$1.key"
    printf '%b\n' "$3" > "$1.ext"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
      -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
  }
  common='basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nauthorityKeyIdentifier = keyid'
  sign apiserver "/CN=kube-apiserver" \
    "$common\nextendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, IP:10.96.0.1, IP:::1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local"
  sign admin "/O=system:masters/CN=admin" "$common\nextendedKeyUsage = clientAuth"

  # Service-account token signing key pair.
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
  openssl pkey -in sa.key -pubout -out sa.pub
  rm -f ca.cnf ca.srl
)

# Starts "$@" in its own session (setsid, so it outlives the caller's process group and
# terminal) with SIGHUP ignored, output to LOG, and its pid written to PIDFILE by the process
# itself: `exec` keeps the pid, so the file is right even if setsid had to fork.
spawn() {
  local pidfile="$1" logfile="$2"
  shift 2
  # From here "$1" is the binary.
  # 9>&-: the daemon must not inherit the lock fd, or it would hold the lock forever.
  setsid bash -c 'echo $$ > "$0"; exec nohup "$@"' "$pidfile" "$@" </dev/null >"$logfile" 2>&1 9>&- &
  for _ in $(seq 1 50); do
    [[ -s "$pidfile" ]] && return 0
    sleep 0.1
  done
  die "$(basename "$1") did not start (no pid in $pidfile)"
}

# alive PIDFILE: true while the recorded process runs (zombies count as dead).
alive() {
  local pid
  pid="$(cat "$1" 2>/dev/null)" || return 1
  [[ -r "/proc/$pid/stat" ]] || return 1
  [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]]
}

fail_with_log() {
  echo "---- last lines of $2 ----" >&2
  tail -n 40 "$2" >&2 || true
  echo "----" >&2
  die "$1 (cluster state left in $dir; scripts/cluster-down.sh cleans it up)"
}

# --- etcd --------------------------------------------------------------------------------
etcd_url="http://127.0.0.1:$etcd_port"
peer_url="http://127.0.0.1:$etcd_peer_port"
log "starting etcd on $etcd_url (log: $dir/etcd.log)"
# --unsafe-no-fsync: throwaway test data, skipping fsync makes writes much faster.
spawn "$dir/etcd.pid" "$dir/etcd.log" "$etcd_bin" \
  --name=taskrun \
  --data-dir="$dir/etcd" \
  --listen-client-urls="$etcd_url" \
  --advertise-client-urls="$etcd_url" \
  --listen-peer-urls="$peer_url" \
  --initial-advertise-peer-urls="$peer_url" \
  --initial-cluster="taskrun=$peer_url" \
  --initial-cluster-state=new \
  --unsafe-no-fsync \
  --log-level=warn

for _ in $(seq 1 150); do
  alive "$dir/etcd.pid" || fail_with_log "etcd exited during startup" "$dir/etcd.log"
  curl -sf --max-time 2 "$etcd_url/health" 2>/dev/null | grep -q '"health":"true"' && break
  sleep 0.2
done
curl -sf --max-time 2 "$etcd_url/health" 2>/dev/null | grep -q '"health":"true"' ||
  fail_with_log "etcd not healthy after 30 s" "$dir/etcd.log"

# --- kube-apiserver ----------------------------------------------------------------------
server="https://127.0.0.1:$apiserver_port"
issuer="https://kubernetes.default.svc.cluster.local"
log "starting kube-apiserver on $server (log: $dir/kube-apiserver.log)"
# --enable-admission-plugins adds to the default-on set (which already has NamespaceLifecycle,
# LimitRanger, ServiceAccount, DefaultStorageClass, ResourceQuota, the webhook and policy
# plugins, ...); NodeRestriction is the one extra that pairs with the Node authorizer.
# --endpoint-reconciler-type=none: the default reconciler refuses a loopback advertise
# address ("may not be in the loopback range"); without it the `kubernetes` Service still
# exists but has no Endpoints, which nothing here needs (there are no pods).
spawn "$dir/kube-apiserver.pid" "$dir/kube-apiserver.log" "$apiserver_bin" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --endpoint-reconciler-type=none \
  --secure-port="$apiserver_port" \
  --etcd-servers="$etcd_url" \
  --tls-cert-file="$pki/apiserver.crt" \
  --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --authorization-mode=Node,RBAC \
  --service-account-issuer="$issuer" \
  --api-audiences="$issuer" \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range=10.96.0.0/12 \
  --enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,DefaultTolerationSeconds,NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ResourceQuota \
  --allow-privileged=true \
  --profiling=false

readyz() {
  curl -sf --max-time 3 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "$server/readyz" >/dev/null 2>&1
}
for _ in $(seq 1 180); do
  alive "$dir/kube-apiserver.pid" || fail_with_log "kube-apiserver exited during startup" "$dir/kube-apiserver.log"
  readyz && break
  sleep 0.5
done
readyz || fail_with_log "kube-apiserver not ready after 90 s" "$dir/kube-apiserver.log"

# --- kubeconfig --------------------------------------------------------------------------
# Written last (and atomically): its presence plus a ready /readyz is what marks "up".
b64() { base64 -w0 < "$1"; }
cat > "$kubeconfig.tmp" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: taskrun-local
  cluster:
    server: $server
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: taskrun-local-admin
  user:
    client-certificate-data: $(b64 "$pki/admin.crt")
    client-key-data: $(b64 "$pki/admin.key")
contexts:
- name: taskrun-local
  context:
    cluster: taskrun-local
    user: taskrun-local-admin
    namespace: default
current-context: taskrun-local
YAML
chmod 600 "$kubeconfig.tmp"
mv "$kubeconfig.tmp" "$kubeconfig"

# The apiserver creates the default namespace itself shortly after it starts serving.
for _ in $(seq 1 50); do
  "$kubectl_bin" --kubeconfig "$kubeconfig" get namespace default >/dev/null 2>&1 && break
  sleep 0.2
done
"$kubectl_bin" --kubeconfig "$kubeconfig" get namespace default >/dev/null ||
  die "namespace default does not exist"

log "cluster up in $((SECONDS - start)) s; kubeconfig: $kubeconfig"
"$kubectl_bin" --kubeconfig "$kubeconfig" version
