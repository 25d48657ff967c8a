//! What every integration test shares: clients for the real API server and Docker daemon, a
//! fresh namespace per test, and the operator binary run as a user would run it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bollard::query_parameters::ListContainersOptionsBuilder;
use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use taskrun_operator::api::{
    ADMISSION_POLICY, Phase, Reason, TaskRun, TaskRunPolicy, TaskRunPolicySpec, TaskRunStatus,
    admission_policy, admission_policy_binding,
};
use taskrun_operator::controller::CLASS_LABEL;

pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kubeconfig the tests use: `KUBECONFIG`, or the local control plane's.
pub fn kubeconfig() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cluster/kubeconfig"))
}

/// A client for the test cluster.
pub async fn client() -> Client {
    client_from(&kubeconfig()).await
}

/// A client for the cluster of this kubeconfig.
pub async fn client_from(kubeconfig: &Path) -> Client {
    let options = kube::config::KubeConfigOptions::default();
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)
        .expect("read the test kubeconfig; run `make cluster-up`");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .expect("load the test kubeconfig");
    Client::try_from(config).expect("build a client")
}

/// A client for the test machine's Docker daemon.
pub async fn docker() -> bollard::Docker {
    bollard::Docker::connect_with_defaults()
        .expect("connect to Docker")
        .negotiate_version()
        .await
        .expect("negotiate the Docker API version; run `make docker-up`")
}

/// A client for the Docker daemon at `host` (`unix:///path`).
pub async fn docker_at(host: &str) -> bollard::Docker {
    bollard::Docker::connect_with_host(host)
        .expect("connect to Docker")
        .negotiate_version()
        .await
        .expect("negotiate the Docker API version")
}

/// The network an agent on `docker` puts `Bridge` tasks on: the daemon's default bridge where
/// it keeps containers apart (`dockerd --icc=false`, as `scripts/docker-up.sh` starts the test
/// daemon), else the operator's own `taskrun` network.
pub async fn bridge_network(docker: &bollard::Docker) -> &'static str {
    let bridge = docker
        .inspect_network("bridge", None)
        .await
        .expect("inspect the default bridge");
    let isolating = bridge
        .options
        .unwrap_or_default()
        .get("com.docker.network.bridge.enable_icc")
        .is_some_and(|icc| icc == "false");
    if isolating { "bridge" } else { "taskrun" }
}

/// `scripts/docker-node.sh ACTION NAME`: `up` starts (or finds) the Docker daemon of another
/// test node in a network namespace of its own and returns its DOCKER_HOST; `kill` crashes
/// it; `down` stops it.
pub fn docker_node(action: &str, name: &str) -> String {
    let output = Command::new(repo_root().join("scripts/docker-node.sh"))
        .args([action, name])
        .output()
        .expect("run scripts/docker-node.sh");
    assert!(
        output.status.success(),
        "docker-node.sh {action} {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// `kubectl` against the test cluster.
pub fn kubectl() -> Command {
    let kubeconfig = kubeconfig();
    let mut command = Command::new("kubectl");
    // Discovery is cached by server address, and clusters come and go on the same loopback
    // port: a cache of the cluster's own keeps one's resources from answering for another's.
    let cache = kubeconfig.with_file_name("kubectl-cache");
    command
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", cache);
    command
}

/// Installs the TaskRun CRD from crds/ and waits until it is served.
pub async fn ensure_crd(client: &Client) {
    install_crd(client, TaskRun::crd()).await;
}

/// Applies `crd` and waits until it is served.
async fn install_crd(client: &Client, crd: CustomResourceDefinition) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().unwrap();
    crds.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap_or_else(|e| panic!("apply the CRD {name}: {e}"));
    tokio::time::timeout(
        TIMEOUT,
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("CRD established in time")
    .expect("watch the CRD");
}

/// Creates the namespace `name`, labelled `taskrun.dev/test=<kind>`.
pub async fn create_namespace(client: &Client, name: &str, kind: &str) {
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { "taskrun.dev/test": kind } }
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create test namespace");
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A namespace of its own for one test, with the CRD installed. Dropping it removes every
/// container labelled with its node name and deletes the namespace.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> Self {
        let client = client().await;
        ensure_crd(&client).await;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "{prefix}-{}-{:x}",
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos % 0xfffff
        );
        create_namespace(&client, &name, "true").await;
        Self { client, name }
    }

    /// The TaskRuns of this namespace.
    pub fn taskruns(&self) -> Api<TaskRun> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// The node name this test's controller uses, which labels its containers.
    pub fn node(&self) -> String {
        self.name.clone()
    }

    /// Starts the operator binary for this namespace, as node [`Self::node`].
    pub fn start_controller(&self) -> ControllerProcess {
        ControllerProcess::start(&self.name, &self.node())
    }

    /// Creates a TaskRun from YAML (the namespace is filled in), in this test's class, so only
    /// the agents this test starts ever see it.
    pub async fn create(&self, yaml: &str) -> TaskRun {
        let mut taskrun: TaskRun = serde_yaml::from_str(yaml).expect("test TaskRun parses");
        taskrun
            .labels_mut()
            .insert(CLASS_LABEL.to_string(), self.name.clone());
        self.taskruns()
            .create(&PostParams::default(), &taskrun)
            .await
            .expect("create TaskRun")
    }

    /// Sets the TaskRun's `spec.cancel`, as a user cancels a run.
    pub async fn cancel(&self, name: &str) {
        self.taskruns()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": { "cancel": true } })),
            )
            .await
            .expect("cancel the TaskRun");
    }

    /// Opts this namespace in, as the README tells an administrator to: binds
    /// `taskrun-operator-workloads` here to the installed agents' account, so they may read its
    /// Secrets and ConfigMaps and mint its tokens.
    pub fn opt_in(&self) {
        let opted = kubectl()
            .args([
                "create",
                "rolebinding",
                "taskrun-operator",
                "-n",
                &self.name,
                "--clusterrole=taskrun-operator-workloads",
                "--serviceaccount=taskrun-system:taskrun-operator",
            ])
            .output()
            .unwrap();
        assert!(opted.status.success(), "{opted:?}");
    }

    /// Waits until the TaskRun's `Done` condition is True and returns it.
    pub async fn wait_done(&self, name: &str) -> TaskRun {
        self.wait_for(name, "Done", |tr| {
            tr.status
                .as_ref()
                .and_then(|s| s.condition(taskrun_operator::api::ConditionType::Done))
                .is_some_and(|c| c.status == "True")
        })
        .await
    }

    /// Waits until `check` holds for the TaskRun, watching it rather than polling.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&TaskRun) -> bool,
    ) -> TaskRun {
        let condition = move |object: Option<&TaskRun>| object.is_some_and(&check);
        match tokio::time::timeout(TIMEOUT, await_condition(self.taskruns(), name, condition)).await
        {
            Ok(Ok(Some(taskrun))) => taskrun,
            Ok(Ok(None)) => panic!("TaskRun {name} disappeared while waiting for {what}"),
            Ok(Err(e)) => panic!("watching TaskRun {name}: {e}"),
            Err(_) => {
                let current = self.taskruns().get_opt(name).await.ok().flatten();
                panic!(
                    "TaskRun {name} did not reach {what} within {TIMEOUT:?}; it is now {:#?}",
                    current.map(|t| t.status)
                )
            }
        }
    }

    /// Containers on the test Docker daemon created for this namespace's TaskRuns.
    pub async fn containers(
        &self,
        docker: &bollard::Docker,
    ) -> Vec<bollard::models::ContainerSummary> {
        let filters = std::collections::HashMap::from([(
            "label",
            vec![format!("taskrun.dev/namespace={}", self.name)],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        docker
            .list_containers(Some(options))
            .await
            .expect("list containers")
    }

    /// How many containers on the test Docker daemon belong to this namespace's TaskRun `name`.
    pub async fn container_count(&self, name: &str) -> usize {
        let docker = docker().await;
        self.containers(&docker)
            .await
            .iter()
            .filter(|c| {
                c.labels
                    .as_ref()
                    .and_then(|l| l.get("taskrun.dev/name"))
                    .map(String::as_str)
                    == Some(name)
            })
            .count()
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        remove_containers_labelled(&format!("taskrun.dev/namespace={}", self.name));
        let _ = kubectl()
            .args([
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        release_taskruns(&self.name);
    }
}

/// Takes the finalizer off every TaskRun in `namespace`. The test's agent, which would remove
/// it, is gone by now, and a namespace whose TaskRuns keep it stays `Terminating`, with the
/// namespace controller retrying it for as long as the cluster runs.
fn release_taskruns(namespace: &str) {
    let Ok(listed) = kubectl()
        .args([
            "get",
            "taskruns",
            "--namespace",
            namespace,
            "--output",
            "name",
        ])
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    let listed = String::from_utf8_lossy(&listed.stdout);
    let names: Vec<&str> = listed.split_whitespace().collect();
    if names.is_empty() {
        return;
    }
    let _ = kubectl()
        .args(["patch", "--namespace", namespace, "--type", "merge"])
        .args(["--patch", r#"{"metadata":{"finalizers":null}}"#])
        .args(names)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Removes every container with this label, whatever state it is in.
pub fn remove_containers_labelled(label: &str) {
    remove_containers_labelled_on(None, label);
}

/// Removes every container with this label on the daemon at `docker_host` (the default one
/// when `None`).
pub fn remove_containers_labelled_on(docker_host: Option<&str>, label: &str) {
    let docker = || {
        let mut command = Command::new("docker");
        if let Some(host) = docker_host {
            command.env("DOCKER_HOST", host);
        }
        command
    };
    let Ok(output) = docker()
        .args(["ps", "-aq", "--filter", &format!("label={label}")])
        .output()
    else {
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        let _ = docker()
            .arg("rm")
            .arg("-f")
            .args(&ids)
            .stdout(Stdio::null())
            .status();
    }
}

/// How to start one agent: what `taskrun controller` is given.
#[derive(Clone, Debug)]
pub struct Agent {
    /// The namespace it watches; every namespace when empty.
    pub namespace: String,
    /// The class of the TaskRuns it takes.
    pub class: String,
    pub node: String,
    /// `DOCKER_HOST`; the default daemon when `None`.
    pub docker_host: Option<String>,
    /// The kubeconfig the agent reaches the API server with.
    pub kubeconfig: PathBuf,
    /// Address of its health and metrics endpoints.
    pub health_addr: String,
    /// More flags.
    pub extra: Vec<String>,
    /// Where its output goes (appended, so a restarted agent continues the same file).
    pub log: PathBuf,
}

impl Agent {
    /// An agent for `node` watching `namespace` on the test cluster and the default daemon.
    pub fn new(namespace: &str, node: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            class: namespace.to_string(),
            node: node.to_string(),
            docker_host: None,
            kubeconfig: kubeconfig(),
            health_addr: "127.0.0.1:0".into(),
            extra: Vec::new(),
            log: repo_root().join(format!("target/test-logs/{node}.log")),
        }
    }

    /// Starts the agent.
    pub fn start(self) -> ControllerProcess {
        let child = self.spawn();
        ControllerProcess {
            child,
            log: self.log.clone(),
            agent: self,
        }
    }

    fn spawn(&self) -> Child {
        if let Some(dir) = self.log.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_taskrun"));
        if let Some(host) = &self.docker_host {
            command.env("DOCKER_HOST", host);
        }
        command
            .args([
                "controller",
                "--health-addr",
                &self.health_addr,
                "--namespace",
                &self.namespace,
                "--class",
                &self.class,
                "--node-name",
                &self.node,
                "--sweep-interval-seconds",
                "2",
            ])
            .args(&self.extra)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info,taskrun_operator=debug")
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("start taskrun controller")
    }
}

/// The operator binary, started as `taskrun controller` for one namespace and node.
pub struct ControllerProcess {
    child: Child,
    agent: Agent,
    pub log: PathBuf,
}

impl ControllerProcess {
    pub fn start(namespace: &str, node: &str) -> Self {
        Agent::new(namespace, node).start()
    }

    /// Starts the controller with its health and metrics endpoints on `health_addr`.
    pub fn start_serving(namespace: &str, node: &str, health_addr: &str) -> Self {
        Agent {
            health_addr: health_addr.to_string(),
            ..Agent::new(namespace, node)
        }
        .start()
    }

    /// Starts the controller and waits until its `/readyz` says it would start a run now.
    pub async fn start_ready(namespace: &str, node: &str) -> Self {
        let address = free_address();
        let agent = Self::start_serving(namespace, node, &address);
        eventually("the agent is ready", || async {
            http_get(&address, "/readyz")
                .await
                .is_some_and(|(code, _)| code == 200)
        })
        .await;
        agent
    }

    /// Starts the controller on the main Docker daemon with extra flags, its endpoints on
    /// `health_addr`.
    pub fn start_with(namespace: &str, node: &str, health_addr: &str, extra: &[&str]) -> Self {
        Agent {
            health_addr: health_addr.to_string(),
            extra: extra.iter().map(|flag| flag.to_string()).collect(),
            ..Agent::new(namespace, node)
        }
        .start()
    }

    /// Starts an agent for `node` on the daemon at `docker_host`, with extra flags.
    pub fn start_node(namespace: &str, node: &str, docker_host: &str, extra: &[&str]) -> Self {
        Agent {
            docker_host: Some(docker_host.to_string()),
            extra: extra.iter().map(|flag| flag.to_string()).collect(),
            ..Agent::new(namespace, node)
        }
        .start()
    }

    /// Starts the controller with its Docker daemon reached through `socket`.
    pub fn start_with_docker(namespace: &str, node: &str, socket: &Path) -> Self {
        Agent {
            docker_host: Some(format!("unix://{}", socket.display())),
            ..Agent::new(namespace, node)
        }
        .start()
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ends the controller with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// How the agent exited, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Starts the same agent again after it ended, as a supervisor would.
    pub fn restart(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
        self.child = self.agent.spawn();
    }

    /// Asks the controller to stop with SIGTERM and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for controller")
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Where a [`Proxy`] listens, or what it forwards to.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// A byte stream either way, whatever the socket kind.
trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Duplex for T {}

impl Endpoint {
    async fn connect(&self) -> std::io::Result<Box<dyn Duplex>> {
        Ok(match self {
            Self::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            Self::Tcp(address) => Box::new(tokio::net::TcpStream::connect(address).await?),
        })
    }
}

enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

impl Listener {
    /// Binds `endpoint`, taking the place of a socket file left behind. Must run inside the
    /// runtime.
    fn bind(endpoint: &Endpoint) -> std::io::Result<Self> {
        Ok(match endpoint {
            Endpoint::Unix(path) => {
                let _ = std::fs::remove_file(path);
                Self::Unix(tokio::net::UnixListener::bind(path)?)
            }
            Endpoint::Tcp(address) => {
                // The listener of a paused proxy closes once its aborted task is dropped, which
                // may be a moment after the pause.
                let mut attempts = 0;
                let listener = loop {
                    match std::net::TcpListener::bind(address) {
                        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts < 40 => {
                            attempts += 1;
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        bound => break bound?,
                    }
                };
                listener.set_nonblocking(true)?;
                Self::Tcp(tokio::net::TcpListener::from_std(listener)?)
            }
        })
    }

    fn local(&self) -> std::io::Result<Endpoint> {
        Ok(match self {
            Self::Unix(_) => unreachable!("a Unix proxy is named by its path"),
            Self::Tcp(listener) => Endpoint::Tcp(listener.local_addr()?),
        })
    }

    async fn accept(&self) -> std::io::Result<Box<dyn Duplex>> {
        Ok(match self {
            Self::Unix(listener) => Box::new(listener.accept().await?.0),
            Self::Tcp(listener) => Box::new(listener.accept().await?.0),
        })
    }
}

/// A stand-in for a socket (the Docker daemon's, the API server's) that forwards to the real
/// one, and can be paused to make it look down to whoever uses it.
pub struct Proxy {
    listen: Endpoint,
    upstream: Endpoint,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The proxy most tests put before the test Docker daemon.
pub type DockerProxy = Proxy;

impl Proxy {
    /// Forwards `socket` to the test Docker daemon (`DOCKER_HOST` or the default socket).
    pub async fn start(socket: &Path) -> Self {
        let upstream = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
        Self::unix(socket, &upstream).await
    }

    /// Forwards the Unix socket `socket` to the one at `upstream`.
    pub async fn unix(socket: &Path, upstream: &Path) -> Self {
        Self::forward(
            Endpoint::Unix(socket.to_path_buf()),
            Endpoint::Unix(upstream.to_path_buf()),
        )
    }

    /// Forwards a fresh loopback TCP port (see [`Self::address`]) to `upstream`.
    pub async fn tcp(upstream: SocketAddr) -> Self {
        Self::forward(
            Endpoint::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
            Endpoint::Tcp(upstream),
        )
    }

    /// Forwards the TCP address `listen` (port 0 for a fresh one, see [`Self::address`]) to
    /// `upstream`.
    pub fn tcp_on(listen: SocketAddr, upstream: SocketAddr) -> Self {
        Self::forward(Endpoint::Tcp(listen), Endpoint::Tcp(upstream))
    }

    fn forward(listen: Endpoint, upstream: Endpoint) -> Self {
        let listener = Listener::bind(&listen).expect("bind proxy socket");
        let listen = match listen {
            Endpoint::Tcp(_) => listener.local().expect("proxy address"),
            unix => unix,
        };
        let proxy = Self {
            listen,
            upstream,
            tasks: Default::default(),
        };
        proxy.serve(listener);
        proxy
    }

    /// Where the proxy listens; the same after a pause and a resume.
    pub fn address(&self) -> &Endpoint {
        &self.listen
    }

    /// Starts forwarding again.
    pub fn resume(&self) {
        let listener = Listener::bind(&self.listen).expect("bind proxy socket again");
        self.serve(listener);
    }

    fn serve(&self, listener: Listener) {
        let upstream = self.upstream.clone();
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::<
            tokio::task::JoinHandle<()>,
        >::new()));
        let owned = connections.clone();
        let accept = tokio::spawn(async move {
            let _guard = AbortOnDrop(owned);
            while let Ok(mut inbound) = listener.accept().await {
                let upstream = upstream.clone();
                let connection = tokio::spawn(async move {
                    if let Ok(mut outbound) = upstream.connect().await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections.lock().unwrap().push(connection);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Refuses new connections and cuts the open ones, as a stopped daemon or a cut network
    /// would.
    pub fn pause(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        if let Endpoint::Unix(path) = &self.listen {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.pause();
    }
}

struct AbortOnDrop(std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Ok(mut connections) = self.0.lock() {
            for connection in connections.drain(..) {
                connection.abort();
            }
        }
    }
}

/// A plain HTTP GET of `path` from `address` (host:port): the status code and the body;
/// `None` when it fails or takes over 5 s.
pub async fn http_get(address: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .ok()?
        .ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// A TaskRun manifest named `name` with `spec` (YAML lines) as its spec.
pub fn taskrun_yaml(name: &str, spec: &str) -> String {
    let spec = spec
        .lines()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: {name}\nspec:\n{spec}\n"
    )
}

/// The run's status, which an agent has written by the time a test reads it.
pub fn status(taskrun: &TaskRun) -> &TaskRunStatus {
    taskrun.status.as_ref().expect("status written")
}

/// How the run ended (or stands): its phase and reason.
pub fn outcome(taskrun: &TaskRun) -> (Option<Phase>, Option<Reason>) {
    (status(taskrun).phase, status(taskrun).reason)
}

/// The run's phase; `None` before an agent wrote any.
pub fn phase(taskrun: &TaskRun) -> Option<Phase> {
    taskrun.status.as_ref().and_then(|s| s.phase)
}

/// The run's reason; `None` before an agent wrote any.
pub fn reason(taskrun: &TaskRun) -> Option<Reason> {
    taskrun.status.as_ref().and_then(|s| s.reason)
}

/// A check for [`TestNamespace::wait_for`]: the run is in `wanted`.
pub fn phase_is(wanted: Phase) -> impl Fn(&TaskRun) -> bool {
    move |taskrun| phase(taskrun) == Some(wanted)
}

/// A check for [`TestNamespace::wait_for`]: the run's reason is `wanted`.
pub fn reason_is(wanted: Reason) -> impl Fn(&TaskRun) -> bool {
    move |taskrun| reason(taskrun) == Some(wanted)
}

/// `kubectl apply --server-side -k deploy/`, as a user installs the operator, with the
/// DaemonSet's socket group set to this machine's (`scripts/deploy.sh`), so the agent pod on the
/// local node keeps running whichever test applies it.
pub fn apply_deploy() {
    let applied = Command::new(repo_root().join("scripts/deploy.sh"))
        .env("KUBECONFIG", kubeconfig())
        .output()
        .unwrap();
    assert!(
        applied.status.success(),
        "scripts/deploy.sh: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
}

/// A free loopback address for a controller's endpoints.
pub fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The value of an unlabelled counter or gauge in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Waits until `check` holds, looking again every 100 ms, for at most [`TIMEOUT`]; panics
/// naming `what` when it never does. For conditions no watch reports, such as a container's
/// removal.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_some(what, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await
}

/// [`eventually`] for a check that finds something: waits until `check` returns `Some` and
/// returns what it found.
pub async fn eventually_some<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            started.elapsed() < TIMEOUT,
            "{what} did not happen within {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs kubectl with `args`, `input` on its standard input, and returns what it printed.
pub fn kubectl_with_input(args: &[&str], input: &str) -> std::process::Output {
    let mut command = kubectl();
    command.args(args);
    run_with_input(command, input.as_bytes())
}

/// Runs `command` with `input` on its standard input and returns what it printed.
pub fn run_with_input(mut command: Command, input: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// A Node object for an agent's node, deleted when the test ends: the agents run as
/// processes here, so the test plays the part of the kubelet that registers the Node.
pub struct NodeObject {
    pub nodes: kube::Api<k8s_openapi::api::core::v1::Node>,
    pub name: String,
}

impl NodeObject {
    pub async fn create(ns: &TestNamespace, name: &str, unschedulable: bool) -> Self {
        let nodes = kube::Api::all(ns.client.clone());
        let node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": name },
            // Tainted, so the operator's DaemonSet, when a test has it installed, makes no Pod
            // for a node that no kubelet runs: that Pod would stay Pending and hold up rollouts.
            "spec": {
                "unschedulable": unschedulable,
                "taints": [{ "key": "taskrun.dev/test-node", "effect": "NoSchedule" }],
            },
        }))
        .unwrap();
        nodes
            .create(&kube::api::PostParams::default(), &node)
            .await
            .expect("create the Node object");
        Self {
            nodes,
            name: name.to_string(),
        }
    }

    /// `kubectl uncordon`, as an administrator would.
    pub fn uncordon(&self) {
        let uncordoned = kubectl().args(["uncordon", &self.name]).output().unwrap();
        assert!(uncordoned.status.success(), "{uncordoned:?}");
    }
}

impl Drop for NodeObject {
    fn drop(&mut self) {
        let _ = kubectl()
            .args([
                "delete",
                "node",
                &self.name,
                "--ignore-not-found",
                "--wait=false",
            ])
            .output();
    }
}

/// The field manager of what the tests apply.
const MANAGER: &str = "taskrun-tests";

/// Installs the TaskRunPolicy CRD and waits until it is served.
pub async fn ensure_policy_crd(client: &Client) {
    install_crd(client, TaskRunPolicy::crd()).await;
}

/// Cluster-scoped objects a test made, deleted when it ends.
#[derive(Default)]
pub struct ClusterObjects {
    policies: Vec<String>,
    bindings: Vec<String>,
}

impl ClusterObjects {
    /// Creates (or replaces) the TaskRunPolicy `name` with `spec`.
    pub async fn policy(&mut self, client: &Client, name: &str, spec: &str) -> TaskRunPolicy {
        ensure_policy_crd(client).await;
        let spec: TaskRunPolicySpec = serde_yaml::from_str(spec).expect("test policy parses");
        let policy = TaskRunPolicy::new(name, spec);
        Api::<TaskRunPolicy>::all(client.clone())
            .patch(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&policy),
            )
            .await
            .expect("apply the TaskRunPolicy");
        self.policies.push(name.to_string());
        policy
    }

    /// Binds the admission policy to the TaskRunPolicy `policy` for the TaskRuns of
    /// `namespace` labelled `taskrun.dev/policy-case=<case>` (every one of them when `None`).
    pub async fn binding(
        &mut self,
        client: &Client,
        namespace: &str,
        policy: &str,
        case: Option<&str>,
    ) {
        let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
        policies
            .patch(
                ADMISSION_POLICY,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&admission_policy()),
            )
            .await
            .expect("apply the admission policy");
        let mut scope = serde_json::json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        });
        if let Some(case) = case {
            scope["objectSelector"] =
                serde_json::json!({"matchLabels": {"taskrun.dev/policy-case": case}});
        }
        let scope: MatchResources = serde_json::from_value(scope).unwrap();
        let binding = admission_policy_binding(policy, policy, Some(scope));
        Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
            .patch(
                policy,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&binding),
            )
            .await
            .expect("apply the admission binding");
        self.bindings.push(policy.to_string());
    }
}

impl Drop for ClusterObjects {
    fn drop(&mut self) {
        for (kind, names) in [
            ("validatingadmissionpolicybindings", &self.bindings),
            ("taskrunpolicies.taskrun.dev", &self.policies),
        ] {
            if names.is_empty() {
                continue;
            }
            let _ = kubectl()
                .args(["delete", kind, "--ignore-not-found", "--wait=false"])
                .args(names)
                .output();
        }
    }
}
