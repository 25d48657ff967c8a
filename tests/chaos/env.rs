//! The suite's own world, apart from every other test and from the machine's own daemon: a
//! control plane of its own (etcd and kube-apiserver on free loopback ports, state in
//! target/chaos/cluster), two Docker daemons in network namespaces of their own
//! (`docker-node.sh up chaos-a|chaos-b`), and one agent per daemon that reaches its daemon and
//! the API server through proxies the suite can pause. Faults strike only processes the suite
//! started, by their pids.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use kube::Client;

use super::plan::{FaultKind, FaultPlan, NODES};
use super::record::{FaultRecord, Shared};
use crate::common::{self, Agent, ControllerProcess, Endpoint, Proxy};

/// Most runs each agent takes at once.
pub const MAX_RUNNING: usize = 4;
/// The agents' Lease duration: short, so a lost agent is noticed within the stream.
pub const LEASE_SECONDS: u64 = 3;

/// One node: its daemon, its agent, and the two proxies between them and the world.
pub struct Node {
    pub name: &'static str,
    /// The daemon's own socket, for the suite's observers (never paused).
    pub docker_host: String,
    docker_proxy: Proxy,
    api_proxy: Proxy,
    agent: ControllerProcess,
    /// Where the agent serves /metrics.
    health: String,
}

impl Node {
    /// What the agent says of itself at the end: whether it still runs, and the runs it
    /// holds (claimed and not ended) by its own count.
    pub async fn agent_state(&mut self) -> String {
        if let Some(status) = self.agent.exited() {
            return format!("{}: the agent exited on its own ({status})", self.name);
        }
        let metrics = common::http_get(&self.health, "/metrics").await;
        let value = |name: &str| {
            metrics.as_ref().and_then(|(_, body)| {
                body.lines()
                    .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                    .map(str::to_string)
            })
        };
        format!(
            "{}: agent runs, holds {} runs by its own count, {} reconcile errors, {} containers started",
            self.name,
            value("taskrun_runs_held").unwrap_or_else(|| "?".into()),
            value("taskrun_reconcile_errors_total").unwrap_or_else(|| "?".into()),
            value("taskrun_containers_started_total").unwrap_or_else(|| "?".into()),
        )
    }
}

/// The control plane, the nodes and the namespace of one chaos run.
pub struct ChaosEnv {
    /// target/chaos/NAMESPACE: the agents' logs and kubeconfigs, sockets, the report.
    pub dir: PathBuf,
    cluster: PathBuf,
    pub client: Client,
    pub namespace: String,
    pub nodes: Vec<Node>,
}

impl ChaosEnv {
    /// Starts everything, fresh: a control plane left by an earlier run is taken down first.
    pub async fn up(namespace: &str) -> Self {
        let root = common::repo_root().join("target/chaos");
        let dir = root.join(namespace);
        let cluster = root.join("cluster");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the chaos folder");
        cluster_script(&cluster, "cluster-down.sh", &[], &[]).await;
        let ports = free_ports::<5>();
        let port_env = [
            ("TASKRUN_APISERVER_PORT", ports[0].to_string()),
            ("TASKRUN_ETCD_PORT", ports[1].to_string()),
            ("TASKRUN_ETCD_PEER_PORT", ports[2].to_string()),
        ];
        cluster_script(&cluster, "cluster-up.sh", &[], &port_env).await;
        let kubeconfig = cluster.join("kubeconfig");
        let client = common::client_from(&kubeconfig).await;
        common::ensure_crd(&client).await;
        common::create_namespace(&client, namespace, "chaos").await;

        let apiserver = SocketAddr::from(([127, 0, 0, 1], ports[0]));
        let mut nodes = Vec::new();
        for (name, health_port) in NODES.into_iter().zip(&ports[3..]) {
            let health = format!("127.0.0.1:{health_port}");
            let docker_host = common::docker_node("up", name);
            // Whatever an earlier run left on the suite's own daemons goes.
            common::remove_containers_labelled_on(
                Some(&docker_host),
                "taskrun.dev/managed-by=taskrun-operator",
            );
            let daemon = docker_host
                .strip_prefix("unix://")
                .expect("a Unix socket daemon");
            let socket = dir.join(format!("{name}.docker.sock"));
            let docker_proxy = Proxy::unix(&socket, Path::new(daemon)).await;
            let api_proxy = Proxy::tcp(apiserver).await;
            let Endpoint::Tcp(through) = api_proxy.address() else {
                unreachable!("a TCP proxy listens on TCP")
            };
            let agent_kubeconfig = dir.join(format!("{name}.kubeconfig"));
            let text = std::fs::read_to_string(&kubeconfig).expect("read the chaos kubeconfig");
            std::fs::write(
                &agent_kubeconfig,
                text.replace(
                    &format!("server: https://{apiserver}"),
                    &format!("server: https://{through}"),
                ),
            )
            .expect("write the agent's kubeconfig");
            let agent = Agent {
                docker_host: Some(format!("unix://{}", socket.display())),
                kubeconfig: agent_kubeconfig,
                extra: [
                    "--lease-duration-seconds",
                    &LEASE_SECONDS.to_string(),
                    "--max-running",
                    &MAX_RUNNING.to_string(),
                    "--pull-timeout-seconds",
                    "10",
                ]
                .map(str::to_string)
                .to_vec(),
                log: dir.join(format!("{name}.log")),
                health_addr: health.clone(),
                ..Agent::new(namespace, name)
            }
            .start();
            nodes.push(Node {
                name,
                docker_host,
                docker_proxy,
                api_proxy,
                agent,
                health,
            });
        }
        Self {
            dir,
            cluster,
            client,
            namespace: namespace.to_string(),
            nodes,
        }
    }

    /// Injects the fault, holds it, heals it, and records both times in the ledger.
    pub async fn inject(&mut self, fault: &FaultPlan, ledger: &Shared) {
        ledger.lock().unwrap().faults.push(FaultRecord {
            plan: fault.clone(),
            injected: Timestamp::now(),
            healed: None,
        });
        let cluster = self.cluster.clone();
        let node = fault
            .node
            .and_then(|name| self.nodes.iter_mut().find(|n| n.name == name));
        match (fault.kind, node) {
            (FaultKind::KillAgent, Some(node)) => {
                node.agent.kill();
                tokio::time::sleep(fault.hold).await;
                node.agent.restart();
            }
            (FaultKind::CutApi, Some(node)) => {
                node.api_proxy.pause();
                tokio::time::sleep(fault.hold).await;
                node.api_proxy.resume();
            }
            (FaultKind::PauseDocker, Some(node)) => {
                node.docker_proxy.pause();
                tokio::time::sleep(fault.hold).await;
                node.docker_proxy.resume();
            }
            (FaultKind::RestartDockerd, Some(node)) => {
                script("docker-node.sh", &["kill", node.name], &[]).await;
                tokio::time::sleep(fault.hold).await;
                script("docker-node.sh", &["up", node.name], &[]).await;
            }
            (FaultKind::RestartApiserver, _) => {
                cluster_script(&cluster, "cluster-ctl.sh", &["kill", "kube-apiserver"], &[]).await;
                tokio::time::sleep(fault.hold).await;
                cluster_script(
                    &cluster,
                    "cluster-ctl.sh",
                    &["start", "kube-apiserver"],
                    &[],
                )
                .await;
            }
            (FaultKind::RestartEtcd, _) => {
                cluster_script(&cluster, "cluster-ctl.sh", &["kill", "etcd"], &[]).await;
                tokio::time::sleep(fault.hold).await;
                cluster_script(&cluster, "cluster-ctl.sh", &["start", "etcd"], &[]).await;
            }
            (kind, None) => panic!("{kind:?} needs a node"),
        }
        if let Some(record) = ledger.lock().unwrap().faults.last_mut() {
            record.healed = Some(Timestamp::now());
        }
    }
}

impl Drop for ChaosEnv {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.agent.kill();
            common::remove_containers_labelled_on(
                Some(&node.docker_host),
                &format!("taskrun.dev/namespace={}", self.namespace),
            );
        }
        let _ = std::process::Command::new(common::repo_root().join("scripts/cluster-down.sh"))
            .env("TASKRUN_CLUSTER_DIR", &self.cluster)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Free loopback ports: kube-apiserver's, etcd's, etcd's peer URL's, then the agents'
/// health endpoints.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("find a free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("port").port())
}

/// Runs a cluster script on the suite's own control plane.
async fn cluster_script(cluster: &Path, name: &str, args: &[&str], env: &[(&str, String)]) {
    let mut env = env.to_vec();
    env.push(("TASKRUN_CLUSTER_DIR", cluster.display().to_string()));
    script(name, args, &env).await;
}

/// Runs scripts/NAME and fails the suite when it fails: a fault that cannot be healed leaves
/// nothing to judge.
async fn script(name: &str, args: &[&str], env: &[(&str, String)]) {
    let mut command = tokio::process::Command::new(common::repo_root().join("scripts").join(name));
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .unwrap_or_else(|_| panic!("scripts/{name} {args:?} took over 180 s"))
        .unwrap_or_else(|e| panic!("run scripts/{name}: {e}"));
    assert!(
        output.status.success(),
        "scripts/{name} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
