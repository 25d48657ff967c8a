//! Real workloads end to end: Secrets and ConfigMaps as environment and files, in-memory
//! directories, a private registry behind imagePullSecrets, and a ServiceAccount token used
//! against the real API server, with the built `taskrun controller`, the real API server, the
//! real Docker daemon and the registry `scripts/registry-up.sh` runs.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::PostParams;
use taskrun_operator::api::{Phase, Reason, TaskRun};

use common::{Agent, Endpoint, Proxy, TestNamespace, kubectl, reason_is};

/// Creates any namespaced object from YAML in the test's namespace.
async fn create<K>(ns: &TestNamespace, yaml: &str) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let object: K = serde_yaml::from_str(yaml).expect("test object parses");
    Api::<K>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &object)
        .await
        .expect("create test object")
}

fn sha256(text: &str) -> String {
    let output = common::run_with_input(Command::new("sha256sum"), text.as_bytes());
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn status(taskrun: &TaskRun) -> (Option<Phase>, Option<Reason>, String, String) {
    let status = taskrun.status.clone().unwrap_or_default();
    (
        status.phase,
        status.reason,
        status.message.unwrap_or_default(),
        status.log_tail.unwrap_or_default(),
    )
}

/// Everything kubectl shows of the namespace's TaskRuns and Events, as YAML.
fn shown_by_kubectl(ns: &TestNamespace) -> String {
    let mut shown = String::new();
    for what in ["taskruns", "events"] {
        let output = kubectl()
            .args(["get", what, "-n", &ns.name, "-o", "yaml"])
            .output()
            .unwrap();
        assert!(output.status.success(), "kubectl get {what}");
        shown.push_str(&String::from_utf8_lossy(&output.stdout));
    }
    shown
}

#[tokio::test]
async fn secrets_and_config_maps_reach_the_task_as_env_and_files_and_nowhere_else() {
    let ns = TestNamespace::new("workload-env").await;
    let password = format!("pw-{}-{}", ns.name, std::process::id());
    let file_secret = format!("file-{}", uuid_like(&ns.name));
    create::<Secret>(
        &ns,
        &format!(
            "metadata: {{name: db}}\nstringData: {{password: {password}, cert: {file_secret}}}"
        ),
    )
    .await;
    create::<ConfigMap>(
        &ns,
        "metadata: {name: settings}\ndata: {level: debug, region: north, unused: x, app.conf: 'threads=4'}",
    )
    .await;
    let controller = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "uses-everything",
        r#"image: busybox
command: [sh, -c]
args:
- |
  set -e
  echo "password-sha=$(printf %s "$DB_PASSWORD" | sha256sum | cut -d' ' -f1)"
  echo "level=$LEVEL"
  echo "prefixed=$CFG_region"
  echo "file-mode=$(stat -c %a /etc/db/cert.pem)"
  echo "file-sha=$(sha256sum < /etc/db/cert.pem | cut -d' ' -f1)"
  echo "config=$(cat /etc/app/app.conf)"
  ls /etc/app
  echo written > /scratch/note
  echo "scratch=$(cat /scratch/note)"
env:
- name: DB_PASSWORD
  valueFrom: {secretKeyRef: {name: db, key: password}}
- name: LEVEL
  valueFrom: {configMapKeyRef: {name: settings, key: level}}
envFrom:
- prefix: CFG_
  configMapRef: {name: settings}
volumes:
- name: creds
  secret: {secretName: db, items: [{key: cert, path: cert.pem, mode: 256}]}
- name: conf
  configMap: {name: settings, items: [{key: app.conf, path: app.conf}]}
- name: scratch
  emptyDir: {sizeLimit: 8Mi}
volumeMounts:
- {name: creds, mountPath: /etc/db, readOnly: true}
- {name: conf, mountPath: /etc/app}
- {name: scratch, mountPath: /scratch}
cleanup: Always"#,
    ))
    .await;
    let done = ns.wait_done("uses-everything").await;
    let (phase, reason, message, output) = status(&done);
    assert_eq!(
        (phase, reason),
        (Some(Phase::Succeeded), Some(Reason::Completed)),
        "{message}\n{output}"
    );
    for line in [
        format!("password-sha={}", sha256(&password)),
        "level=debug".into(),
        "prefixed=north".into(),
        "file-mode=400".into(),
        format!("file-sha={}", sha256(&file_secret)),
        "config=threads=4".into(),
        "scratch=written".into(),
    ] {
        assert!(
            output.lines().any(|l| l == line),
            "{line:?} in the output:\n{output}"
        );
    }
    assert_eq!(
        output
            .lines()
            .filter(|l| *l == "app.conf" || *l == "level")
            .collect::<Vec<_>>(),
        ["app.conf"],
        "only the chosen items are files:\n{output}"
    );

    let shown = shown_by_kubectl(&ns);
    assert!(shown.contains("uses-everything"), "{shown}");
    let log = std::fs::read_to_string(&controller.log).unwrap();
    for secret in [&password, &file_secret] {
        assert!(
            !shown.contains(secret.as_str()),
            "a secret value in kubectl's output"
        );
        assert!(
            !log.contains(secret.as_str()),
            "a secret value in the agent's log"
        );
    }
}

/// Letters and digits of `text`, to build values no other text contains by chance.
fn uuid_like(text: &str) -> String {
    text.chars().filter(char::is_ascii_alphanumeric).collect()
}

#[tokio::test]
async fn a_run_waits_for_its_missing_secret_and_starts_once_it_exists() {
    let ns = TestNamespace::new("workload-wait").await;
    let _controller = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "early",
        "image: busybox\ncommand: [sh, -c, 'echo \"token=$TOKEN\"']\nenv: [{name: TOKEN, valueFrom: {secretKeyRef: {name: late, key: token}}}]\ncleanup: Always",
    ))
    .await;
    let waiting = ns
        .wait_for(
            "early",
            "ReferenceMissing",
            reason_is(Reason::ReferenceMissing),
        )
        .await;
    let (phase, _, message, _) = status(&waiting);
    assert_eq!(phase, Some(Phase::Pending));
    assert!(
        message.contains("Secret \"late\"") && message.contains(&ns.name),
        "{message}"
    );
    let docker = common::docker().await;
    assert!(
        ns.containers(&docker).await.is_empty(),
        "no container while waiting"
    );

    // A Secret without the key is still waited for, now naming the key.
    create::<Secret>(&ns, "metadata: {name: late}\nstringData: {other: nothing}").await;
    ns.wait_for("early", "the missing key named", |tr| {
        tr.status
            .as_ref()
            .and_then(|s| s.message.as_deref())
            .is_some_and(|m| m.contains("no key \"token\""))
    })
    .await;
    assert!(ns.containers(&docker).await.is_empty());

    Api::<Secret>::namespaced(ns.client.clone(), &ns.name)
        .patch(
            "late",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"stringData": {"token": "arrived"}})),
        )
        .await
        .unwrap();
    let done = ns.wait_done("early").await;
    let (phase, reason, message, output) = status(&done);
    assert_eq!(
        (phase, reason),
        (Some(Phase::Succeeded), Some(Reason::Completed)),
        "{message}"
    );
    assert_eq!(output, "token=arrived\n");
}

/// The tests' registry, as `scripts/registry-up.sh` wrote it down.
fn registry() -> HashMap<String, String> {
    let dir = std::env::var_os("TASKRUN_REGISTRY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/taskrun-operator/registry")
        });
    let output = Command::new(common::repo_root().join("scripts/registry-up.sh"))
        .output()
        .expect("run scripts/registry-up.sh");
    assert!(
        output.status.success(),
        "scripts/registry-up.sh: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(dir.join("registry.env"))
        .expect("registry.env")
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Creates the pull secret `team-registry` for the tests' registry in `ns`.
async fn create_pull_secret(ns: &TestNamespace, registry: &HashMap<String, String>) {
    let config = serde_json::json!({
        "auths": { registry["TASKRUN_REGISTRY"].clone(): {
            "username": registry["TASKRUN_REGISTRY_USER"],
            "password": registry["TASKRUN_REGISTRY_PASSWORD"],
        }}
    });
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "team-registry"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()},
    }))
    .unwrap();
    Api::<Secret>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_private_image_is_pulled_with_its_pull_secret_and_refused_without() {
    let registry = registry();
    let image = &registry["TASKRUN_REGISTRY_IMAGE"];
    let ns = TestNamespace::new("workload-pull").await;
    let auth = format!(
        "{}:{}",
        registry["TASKRUN_REGISTRY_USER"], registry["TASKRUN_REGISTRY_PASSWORD"]
    );
    create_pull_secret(&ns, &registry).await;
    let controller = ns.start_controller();

    ns.create(&common::taskrun_yaml(
        "anonymous",
        &format!("image: {image}\nimagePullPolicy: Always\ncommand: [echo, hello]"),
    ))
    .await;
    let refused = ns.wait_done("anonymous").await;
    let (phase, reason, message, _) = status(&refused);
    assert_eq!(
        (phase, reason),
        (Some(Phase::Failed), Some(Reason::ImagePullFailed)),
        "{message}"
    );
    assert!(
        message.contains("no basic auth credentials") || message.contains("unauthorized"),
        "the registry's own words: {message}"
    );

    ns.create(&common::taskrun_yaml(
        "authorized",
        &format!(
            "image: {image}\nimagePullPolicy: Always\ncommand: [echo, pulled]\nimagePullSecrets: [{{name: team-registry}}]\ncleanup: Always"
        ),
    ))
    .await;
    let pulled = ns.wait_done("authorized").await;
    let (phase, reason, message, output) = status(&pulled);
    assert_eq!(
        (phase, reason),
        (Some(Phase::Succeeded), Some(Reason::Completed)),
        "{message}"
    );
    assert_eq!(output, "pulled\n");

    let shown = shown_by_kubectl(&ns);
    let log = std::fs::read_to_string(&controller.log).unwrap();
    let password = &registry["TASKRUN_REGISTRY_PASSWORD"];
    assert!(!shown.contains(password.as_str()) && !shown.contains(&auth));
    assert!(
        !log.contains(password.as_str()),
        "the registry password in the agent's log"
    );
}

#[tokio::test]
async fn under_always_pull_images_a_private_image_on_the_node_is_no_way_around_a_pull_secret() {
    let registry = registry();
    let image = &registry["TASKRUN_REGISTRY_IMAGE"];
    let ns = TestNamespace::new("always-pull").await;
    create_pull_secret(&ns, &registry).await;
    let mut objects = common::ClusterObjects::default();
    objects
        .policy(&ns.client, &ns.name, "alwaysPullImages: true")
        .await;
    let _agent = common::ControllerProcess::start_with(
        &ns.name,
        &ns.node(),
        "127.0.0.1:0",
        &["--policy", &ns.name],
    );
    ns.create(&common::taskrun_yaml(
        "owner",
        &format!(
            "image: {image}\ncommand: [echo, pulled]\nimagePullSecrets: [{{name: team-registry}}]"
        ),
    ))
    .await;
    let pulled = ns.wait_done("owner").await;
    let (phase, _, message, _) = status(&pulled);
    assert_eq!(phase, Some(Phase::Succeeded), "{message}");

    // The image is on the node now; a run without credentials asks only for what is there.
    ns.create(&common::taskrun_yaml(
        "stranger",
        &format!("image: {image}\nimagePullPolicy: Never\ncommand: [echo, ran]"),
    ))
    .await;
    let refused = ns.wait_done("stranger").await;
    let (phase, reason, message, _) = status(&refused);
    assert_eq!(
        (phase, reason),
        (Some(Phase::Failed), Some(Reason::ImagePullFailed)),
        "{message}"
    );
    assert!(
        message.contains("no basic auth credentials") || message.contains("unauthorized"),
        "the registry's own words: {message}"
    );
}

/// An image with kubectl (a static binary) next to busybox, built once per kubectl binary.
fn kubectl_image() -> String {
    let path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file())
        .expect("kubectl on PATH (scripts/tools.sh builds it)");
    let metadata = std::fs::metadata(&path).unwrap();
    let stamp = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let image = format!("taskrun-test-kubectl:{:x}-{stamp:x}", metadata.len());
    let present = Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        let context = tempdir("kubectl-image");
        std::fs::copy(&path, context.join("kubectl")).unwrap();
        std::fs::write(
            context.join("Dockerfile"),
            "FROM busybox:latest\nCOPY kubectl /bin/kubectl\n",
        )
        .unwrap();
        let built = Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "-t", &image])
            .arg(&context)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&context);
        assert!(
            built.status.success(),
            "docker build: {}",
            String::from_utf8_lossy(&built.stderr)
        );
    }
    image
}

fn tempdir(name: &str) -> PathBuf {
    let dir = common::repo_root().join(format!(
        "target/test-tmp/{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The address of the Docker bridge's gateway on this machine: how a task container reaches
/// the host. A daemon that took over an existing bridge records only its subnet; the gateway
/// is then the subnet's first address, as Docker assigns it.
async fn bridge_gateway() -> std::net::Ipv4Addr {
    let docker = common::docker().await;
    let bridge = docker
        .inspect_network(
            "bridge",
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .expect("inspect Docker's bridge network");
    bridge
        .ipam
        .and_then(|ipam| ipam.config)
        .into_iter()
        .flatten()
        .find_map(|config| match config.gateway {
            Some(gateway) => gateway.parse().ok(),
            None => {
                let subnet = config.subnet?;
                let network: std::net::Ipv4Addr = subnet.split_once('/')?.0.parse().ok()?;
                Some(std::net::Ipv4Addr::from(u32::from(network) + 1))
            }
        })
        .expect("the bridge network has a gateway or a subnet")
}

/// The local API server's address, from the test kubeconfig.
fn api_server() -> std::net::SocketAddr {
    let text = std::fs::read_to_string(common::kubeconfig()).unwrap();
    let server = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("server: "))
        .expect("a server in the kubeconfig");
    let address = server.trim().trim_start_matches("https://");
    use std::net::ToSocketAddrs as _;
    address
        .to_socket_addrs()
        .unwrap()
        .next()
        .expect("the API server's address")
}

#[tokio::test]
async fn a_service_account_token_has_exactly_its_accounts_rights() {
    let ns = TestNamespace::new("workload-token").await;
    create::<ServiceAccount>(&ns, "metadata: {name: reader}").await;
    create::<Role>(
        &ns,
        "metadata: {name: read-config}\nrules: [{apiGroups: [''], resources: [configmaps], verbs: [get]}]",
    )
    .await;
    create::<RoleBinding>(
        &ns,
        &format!(
            "metadata: {{name: reader-reads-config}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-config}}\nsubjects: [{{kind: ServiceAccount, name: reader, namespace: {}}}]",
            ns.name
        ),
    )
    .await;
    create::<ConfigMap>(&ns, "metadata: {name: readable}\ndata: {answer: '42'}").await;
    let image = kubectl_image();

    // Task containers sit on Docker's bridge and cannot reach the API server on the host's
    // loopback: a forwarder on the bridge's gateway carries them there. The certificate names
    // the server kubernetes.default.svc, which the containers resolve to the gateway.
    let gateway = bridge_gateway().await;
    let forwarder = Proxy::tcp_on(std::net::SocketAddr::from((gateway, 0)), api_server());
    let Endpoint::Tcp(forwarded) = forwarder.address().clone() else {
        unreachable!("a TCP forwarder")
    };
    let _controller = Agent {
        extra: vec![
            "--task-api-server".into(),
            format!("kubernetes.default.svc:{}", forwarded.port()),
            "--task-api-server-ip".into(),
            gateway.to_string(),
        ],
        ..Agent::new(&ns.name, &ns.node())
    }
    .start();

    ns.create(&common::taskrun_yaml(
        "uses-its-token",
        &format!(
            r#"image: {image}
serviceAccountName: reader
timeoutSeconds: 60
command: [sh, -c]
args:
- |
  echo "namespace=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"
  kubectl get configmap readable -o jsonpath='allowed={{.data.answer}}{{"\n"}}'
  kubectl get secrets 2>&1 | head -c 300; echo
  kubectl auth whoami -o jsonpath='user={{.status.userInfo.username}}{{"\n"}}' 2>&1
cleanup: Always"#
        ),
    ))
    .await;
    let done = ns.wait_done("uses-its-token").await;
    let (phase, reason, message, output) = status(&done);
    assert_eq!(
        (phase, reason),
        (Some(Phase::Succeeded), Some(Reason::Completed)),
        "{message}\n{output}"
    );
    assert!(
        output.contains(&format!("namespace={}\n", ns.name)),
        "{output}"
    );
    assert!(
        output.contains("allowed=42\n"),
        "an allowed read:\n{output}"
    );
    assert!(
        output.contains("Forbidden")
            && output.contains(&format!(
                "system:serviceaccount:{}:reader\" cannot list resource \"secrets\"",
                ns.name
            )),
        "a forbidden read is refused (403):\n{output}"
    );
}

/// A registry that answers only once let through: it accepts every connection at once, and
/// forwards it to the tests' registry only after [`SlowRegistry::let_through`].
struct SlowRegistry {
    address: std::net::SocketAddr,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    open: tokio::sync::watch::Sender<bool>,
    accepting: tokio::task::JoinHandle<()>,
}

impl SlowRegistry {
    async fn before(upstream: &str) -> Self {
        let upstream: std::net::SocketAddr = upstream.parse().expect("registry address");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (open, opened) = tokio::sync::watch::channel(false);
        let counter = accepted.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut opened = opened.clone();
                tokio::spawn(async move {
                    if opened.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self {
            address,
            accepted,
            open,
            accepting,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn let_through(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for SlowRegistry {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

#[tokio::test]
async fn a_run_waiting_for_its_image_leaves_the_nodes_one_place_to_a_run_that_can_start() {
    let mut registry = registry();
    let slow = SlowRegistry::before(&registry["TASKRUN_REGISTRY"]).await;
    let image = registry["TASKRUN_REGISTRY_IMAGE"].replacen(
        &registry["TASKRUN_REGISTRY"],
        &slow.address.to_string(),
        1,
    );
    registry.insert("TASKRUN_REGISTRY".into(), slow.address.to_string());
    let ns = TestNamespace::new("workload-slow-pull").await;
    create_pull_secret(&ns, &registry).await;
    let _controller = common::ControllerProcess::start_with(
        &ns.name,
        &ns.node(),
        "127.0.0.1:0",
        &["--max-running", "1"],
    );

    ns.create(&common::taskrun_yaml(
        "pulling",
        &format!(
            "image: {image}\nimagePullPolicy: Always\ncommand: [echo, pulled]\nimagePullSecrets: [{{name: team-registry}}]\ncleanup: Always"
        ),
    ))
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while slow.accepted() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never reached the registry"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ns.create(&common::taskrun_yaml(
        "quick",
        "image: busybox\ncommand: [echo, quick]\ncleanup: Always",
    ))
    .await;
    let quick = ns.wait_done("quick").await;
    let (phase, _, message, output) = status(&quick);
    assert_eq!(phase, Some(Phase::Succeeded), "{message}");
    assert_eq!(output, "quick\n");
    let waiting = ns.taskruns().get("pulling").await.unwrap();
    let (phase, _, message, _) = status(&waiting);
    assert!(
        matches!(phase, None | Some(Phase::Pending)),
        "the run ahead in the queue still waits for its image: {phase:?} {message}"
    );

    slow.let_through();
    let pulled = ns.wait_done("pulling").await;
    let (phase, _, message, output) = status(&pulled);
    assert_eq!(phase, Some(Phase::Succeeded), "{message}");
    assert_eq!(output, "pulled\n");
    let _ = Command::new("docker").args(["rmi", &image]).output();
}
