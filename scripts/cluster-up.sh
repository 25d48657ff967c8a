#!/usr/bin/env bash
# Starts a local Kubernetes control plane (etcd + kube-apiserver, no kubelet, no
# controller-manager) on loopback, with its state under .cluster/, and writes
# .cluster/kubeconfig (context taskrun-local, admin = system:masters).
# A second run while the cluster answers does nothing. Stop it with scripts/cluster-down.sh.
#
# Ports can be overridden: TASKRUN_APISERVER_PORT (6443), TASKRUN_ETCD_PORT (2379),
# TASKRUN_ETCD_PEER_PORT (2380); TASKRUN_CLUSTER_DIR puts a second, separate cluster's state
# (and its kubeconfig) in another folder than .cluster/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster-lib.sh"

need openssl
need curl
need setsid
need flock
for b in "$etcd_bin" "$apiserver_bin" "$kubectl_bin"; do
  [[ -x "$b" ]] || die "$b not found; build the tools first with scripts/tools.sh"
done

# Serialize with other cluster-up/cluster-down/cluster-ctl runs on this state folder.
take_cluster_lock

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
save_ports

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

# --- etcd --------------------------------------------------------------------------------
log "starting etcd on $etcd_url (log: $dir/etcd.log)"
start_etcd new
wait_etcd

# --- kube-apiserver ----------------------------------------------------------------------
log "starting kube-apiserver on $server (log: $dir/kube-apiserver.log)"
start_apiserver
wait_apiserver

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
