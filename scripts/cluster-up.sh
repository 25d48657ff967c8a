#!/usr/bin/env bash
# Starts a local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler) with its state under .cluster/, and writes .cluster/kubeconfig (context
# taskrun-local on 127.0.0.1, admin = system:masters). No node: scripts/node-up.sh adds one.
# A second run while the cluster answers does nothing. Stop it with scripts/cluster-down.sh.
#
# Ports can be overridden: TASKRUN_APISERVER_PORT (6443), TASKRUN_ETCD_PORT (2379),
# TASKRUN_ETCD_PEER_PORT (2380); TASKRUN_CLUSTER_DIR puts a second, separate cluster's state
# (and its kubeconfig) in another folder than .cluster/.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=cluster-lib.sh
source "$(dirname "$0")/cluster-lib.sh"

need openssl
need curl
need setsid
need flock
for b in "$etcd_bin" "$apiserver_bin" "$controller_manager_bin" "$scheduler_bin" "$kubectl_bin"; do
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
cat > "$pki/ca.cnf" <<'CNF'
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
(
  cd "$pki"
  umask 077
  ec_key ca.key
  openssl req -x509 -new -key ca.key -config ca.cnf -days 3650 -out ca.crt
  rm ca.cnf
  # Service-account token signing key pair.
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
  openssl pkey -in sa.key -pubout -out sa.pub
)
issue apiserver "/CN=kube-apiserver" \
  "$server_ext\nsubjectAltName = IP:127.0.0.1, IP:$node_address, IP:10.96.0.1, IP:::1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local"
issue admin "/O=system:masters/CN=admin" "$client_ext"
issue apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client" "$client_ext"
# The users the default RBAC policy already grants each component's rights.
issue kube-controller-manager "/CN=system:kube-controller-manager" "$client_ext"
issue kube-scheduler "/CN=system:kube-scheduler" "$client_ext"

# --- etcd --------------------------------------------------------------------------------
log "starting etcd on $etcd_url (log: $dir/etcd.log)"
start_etcd new
wait_etcd

# --- kube-apiserver ----------------------------------------------------------------------
log "starting kube-apiserver on $server (log: $dir/kube-apiserver.log)"
start_apiserver
wait_apiserver

# The admin kubeconfig is written beside its final name and moved there last: its presence
# plus a ready /readyz is what marks "up".
write_kubeconfig "$kubeconfig.new" admin
kubectl() { "$kubectl_bin" --kubeconfig "$kubeconfig.new" "$@"; }
kubectl create clusterrolebinding taskrun:kube-apiserver-kubelet-client \
  --clusterrole=system:kubelet-api-admin --user=kube-apiserver-kubelet-client >/dev/null

# --- kube-controller-manager and kube-scheduler ------------------------------------------
# Only the controllers this cluster has work for: service accounts and a token for each
# controller (--use-service-account-credentials), the CA bundle every pod mounts, namespace
# deletion, garbage collection, DaemonSets, and the lifecycle of nodes and of their pods.
# Neither serves HTTPS (--secure-port=0): several clusters on one machine would fight over the
# fixed ports, and readiness is read from the API instead.
log "starting kube-controller-manager and kube-scheduler (logs: $dir/kube-controller-manager.log, $dir/kube-scheduler.log)"
write_kubeconfig "$dir/kube-controller-manager.kubeconfig" kube-controller-manager
spawn "$dir/kube-controller-manager.pid" "$dir/kube-controller-manager.log" "$controller_manager_bin" \
  --kubeconfig="$dir/kube-controller-manager.kubeconfig" \
  --controllers=serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,namespace-controller,garbage-collector-controller,daemonset-controller,node-lifecycle-controller,taint-eviction-controller,pod-garbage-collector-controller \
  --use-service-account-credentials \
  --service-account-private-key-file="$pki/sa.key" \
  --root-ca-file="$pki/ca.crt" \
  --leader-elect=false \
  --secure-port=0
write_kubeconfig "$dir/kube-scheduler.kubeconfig" kube-scheduler
spawn "$dir/kube-scheduler.pid" "$dir/kube-scheduler.log" "$scheduler_bin" \
  --kubeconfig="$dir/kube-scheduler.kubeconfig" \
  --leader-elect=false \
  --secure-port=0

# The controller manager is working once the default ServiceAccount exists (pods need it).
for _ in $(seq 1 120); do
  alive "$dir/kube-controller-manager.pid" ||
    fail_with_log "kube-controller-manager exited during startup" "$dir/kube-controller-manager.log"
  kubectl get serviceaccount default -n default >/dev/null 2>&1 && break
  sleep 0.5
done
kubectl get serviceaccount default -n default >/dev/null 2>&1 ||
  fail_with_log "no default ServiceAccount 60 s after kube-controller-manager started" "$dir/kube-controller-manager.log"
alive "$dir/kube-scheduler.pid" || fail_with_log "kube-scheduler exited during startup" "$dir/kube-scheduler.log"

mv "$kubeconfig.new" "$kubeconfig"
log "cluster up in $((SECONDS - start)) s; kubeconfig: $kubeconfig"
"$kubectl_bin" --kubeconfig "$kubeconfig" version
