//! What one tenant cannot take from the others, against the real API server and Docker daemon:
//! a claim written by an author runs nothing past a node's capacity or its cordon, runs waiting
//! for a reference hold no place, the claim annotations are refused at admission to anyone but
//! the agents, and an image whose WORKDIR the kernel owns never gets a container.

mod common;

use std::process::Command;

use bollard::query_parameters::InspectContainerOptions;
use kube::ResourceExt;
use kube::api::PostParams;
use taskrun_operator::api::{Phase, Reason, TaskRun};
use taskrun_operator::controller::CLASS_LABEL;
use tokio::io::AsyncWriteExt;

use common::{Agent, ClusterObjects, ControllerProcess, NodeObject, TestNamespace, phase, reason};

/// The most containers of `namespace` that ran at one moment, from their own start and finish
/// times as Docker recorded them.
async fn most_at_once(ns: &TestNamespace) -> usize {
    let docker = common::docker().await;
    let mut edges = Vec::new();
    for container in ns.containers(&docker).await {
        let id = container.id.expect("a container ID");
        let state = docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
            .expect("inspect a container")
            .state
            .expect("a container state");
        let at = |time: Option<String>| -> jiff::Timestamp {
            time.expect("a recorded time").parse().expect("a timestamp")
        };
        edges.push((at(state.started_at), 1i32));
        edges.push((at(state.finished_at), -1));
    }
    edges.sort();
    let (mut running, mut most) = (0, 0);
    for (_, step) in edges {
        running += step;
        most = most.max(running);
    }
    usize::try_from(most).unwrap_or_default()
}

#[tokio::test]
async fn claims_written_by_an_author_start_nothing_on_a_cordoned_node_nor_past_max_running() {
    let ns = TestNamespace::new("forged").await;
    let node = NodeObject::create(&ns, &ns.node(), true).await;
    let _agent =
        ControllerProcess::start_with(&ns.name, &ns.node(), "127.0.0.1:0", &["--max-running", "2"]);
    let runs: Vec<String> = (0..50).map(|i| format!("forged-{i}")).collect();
    for name in &runs {
        let mut yaml = common::taskrun_yaml(
            name,
            "image: busybox\ncommand: [sleep, '1']\ncleanup: Never",
        );
        yaml = yaml.replace(
            "metadata:\n",
            &format!(
                "metadata:\n  annotations: {{taskrun.dev/node: {}}}\n",
                ns.node()
            ),
        );
        ns.create(&yaml).await;
    }
    for name in &runs {
        let waiting = ns
            .wait_for(name, "Unschedulable, its claim freed", |tr| {
                reason(tr) == Some(Reason::Unschedulable)
                    && !tr.annotations().contains_key("taskrun.dev/node")
            })
            .await;
        assert_eq!(phase(&waiting), Some(Phase::Pending));
    }
    let docker = common::docker().await;
    assert!(ns.containers(&docker).await.is_empty(), "nothing started");

    node.uncordon();
    for name in &runs {
        let done = ns.wait_done(name).await;
        assert_eq!(phase(&done), Some(Phase::Succeeded), "{name}");
    }
    let most = most_at_once(&ns).await;
    assert!(
        most <= 2,
        "{most} containers ran at once under --max-running 2"
    );
}

#[tokio::test]
async fn runs_waiting_for_a_missing_secret_leave_another_namespaces_run_free_to_start() {
    let waiting = TestNamespace::new("starver").await;
    let other = TestNamespace::new("starved").await;
    // One agent for both namespaces, as on a shared node.
    let _agent = Agent {
        namespace: String::new(),
        extra: ["--max-running", "2", "--lease-namespace", &waiting.name]
            .map(String::from)
            .to_vec(),
        ..Agent::new(&waiting.name, &waiting.node())
    }
    .start();
    let runs: Vec<String> = (0..20).map(|i| format!("waits-{i}")).collect();
    for name in &runs {
        waiting
            .create(&common::taskrun_yaml(
                name,
                "image: busybox\ncommand: ['true']\nenv: [{name: TOKEN, valueFrom: {secretKeyRef: {name: never-created, key: token}}}]",
            ))
            .await;
    }
    for name in &runs {
        waiting
            .wait_for(name, "ReferenceMissing", |tr| {
                reason(tr) == Some(Reason::ReferenceMissing)
            })
            .await;
    }
    let mut free: TaskRun = serde_yaml::from_str(&common::taskrun_yaml(
        "free",
        "image: busybox\ncommand: ['true']",
    ))
    .unwrap();
    free.labels_mut()
        .insert(CLASS_LABEL.to_string(), waiting.name.clone());
    other
        .taskruns()
        .create(&PostParams::default(), &free)
        .await
        .expect("create the other namespace's run");
    let done = other.wait_done("free").await;
    assert_eq!(phase(&done), Some(Phase::Succeeded), "{:?}", done.status);
}

/// `kubectl` as `user`, an author without any group but `system:authenticated`.
fn kubectl_as(user: &str) -> Command {
    let mut command = common::kubectl();
    command.args(["--as", user, "--as-group", "system:authenticated"]);
    command
}

#[tokio::test]
async fn only_the_agents_may_write_the_claim_annotations() {
    let ns = TestNamespace::new("claim-admission").await;
    let applied = common::kubectl()
        .args(["apply", "-f"])
        .arg(common::repo_root().join("deploy/policy.yaml"))
        .output()
        .unwrap();
    assert!(applied.status.success(), "{applied:?}");
    let author = format!("author-{}", ns.name);
    for grant in [
        vec![
            "create",
            "role",
            "author",
            "--verb=create,get,list,watch,update,patch,delete",
            "--resource=taskruns.taskrun.dev",
        ],
        vec![
            "create",
            "rolebinding",
            "author",
            "--role=author",
            "--user",
            &author,
        ],
    ] {
        let granted = common::kubectl()
            .args(grant)
            .args(["-n", &ns.name])
            .output()
            .unwrap();
        assert!(granted.status.success(), "{granted:?}");
    }
    let manifest = |name: &str, annotations: &str| {
        common::taskrun_yaml(name, "image: busybox\ncommand: ['true']").replace(
            "metadata:\n",
            &format!(
                "metadata:\n  namespace: {}\n  labels: {{{CLASS_LABEL}: {}}}\n  annotations: {{{annotations}}}\n",
                ns.name, ns.name
            ),
        )
    };
    let create = |yaml: String| {
        common::run_with_input(
            {
                let mut command = kubectl_as(&author);
                command.args(["create", "-f", "-"]);
                command
            },
            yaml.as_bytes(),
        )
    };
    // The policy's bindings take a moment to reach the API server's admission.
    let refused = common::eventually_some("a create with a claim refused", || async {
        let output = create(manifest("forged", "taskrun.dev/node: some-node"));
        if !output.status.success() {
            return Some(String::from_utf8_lossy(&output.stderr).to_string());
        }
        let _ = common::kubectl()
            .args([
                "delete",
                "taskrun",
                "forged",
                "-n",
                &ns.name,
                "--wait=false",
            ])
            .output();
        None
    })
    .await;
    assert!(
        refused.contains("written by the taskrun operator's agents only"),
        "{refused}"
    );
    let attempt = create(manifest("attempt", "taskrun.dev/claim-attempt: '3'"));
    assert!(!attempt.status.success(), "{attempt:?}");

    let plain = create(manifest("plain", "team.example/owner: me"));
    assert!(plain.status.success(), "{plain:?}");
    let annotated = kubectl_as(&author)
        .args([
            "annotate",
            "taskrun",
            "plain",
            "-n",
            &ns.name,
            "taskrun.dev/node=some-node",
        ])
        .output()
        .unwrap();
    assert!(!annotated.status.success(), "{annotated:?}");
    let other = kubectl_as(&author)
        .args([
            "annotate",
            "taskrun",
            "plain",
            "-n",
            &ns.name,
            "team.example/reviewed=yes",
        ])
        .output()
        .unwrap();
    assert!(
        other.status.success(),
        "other annotations stay the author's: {other:?}"
    );
}

#[tokio::test]
async fn an_image_whose_workdir_the_kernel_owns_fails_before_any_container_exists() {
    let ns = TestNamespace::new("workdir").await;
    let image = format!("taskrun-test-leaky-workdir:{}", ns.name);
    let built = common::run_with_input(
        {
            let mut command = Command::new("docker");
            command.args(["build", "-q", "-t", &image, "-"]);
            command
        },
        b"FROM busybox\nWORKDIR /proc/self/fd/8\n",
    );
    assert!(built.status.success(), "{built:?}");
    let _agent = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "leaky",
        &format!("image: {image}\nimagePullPolicy: Never\ncommand: ['true']"),
    ))
    .await;
    let done = ns.wait_done("leaky").await;
    let _ = Command::new("docker").args(["rmi", &image]).output();
    assert_eq!(
        (phase(&done), reason(&done)),
        (Some(Phase::Failed), Some(Reason::StartFailed))
    );
    let message = done.status.and_then(|s| s.message).unwrap_or_default();
    assert!(message.contains("WORKDIR \"/proc/self/fd/8\""), "{message}");
    let docker = common::docker().await;
    assert!(ns.containers(&docker).await.is_empty(), "no container");
}

/// The effective capabilities the task's process reported, from `/proc/self/status`.
fn capabilities(taskrun: &TaskRun) -> u64 {
    let tail = taskrun
        .status
        .as_ref()
        .and_then(|s| s.log_tail.clone())
        .unwrap_or_default();
    let hex = tail
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .expect("CapEff in the output")
        .trim();
    u64::from_str_radix(hex, 16).expect("hexadecimal capabilities")
}

#[tokio::test]
async fn a_task_has_no_raw_sockets_unless_its_spec_adds_them_back() {
    const NET_RAW: u64 = 1 << 13;
    let ns = TestNamespace::new("net-raw").await;
    let _agent = ns.start_controller();
    let report = "image: busybox\ncommand: [grep, '^CapEff:', /proc/self/status]";
    ns.create(&common::taskrun_yaml("default", report)).await;
    ns.create(&common::taskrun_yaml(
        "added",
        &format!("{report}\nsecurityContext: {{capabilities: {{add: [NET_RAW]}}}}"),
    ))
    .await;
    let default = ns.wait_done("default").await;
    let added = ns.wait_done("added").await;
    assert_eq!(
        phase(&default),
        Some(Phase::Succeeded),
        "{:?}",
        default.status
    );
    assert_eq!(capabilities(&default) & NET_RAW, 0, "dropped by default");
    assert_eq!(
        capabilities(&added) & NET_RAW,
        NET_RAW,
        "added back by the spec"
    );
    assert_ne!(capabilities(&default), 0, "Docker's other defaults stay");
}

#[tokio::test]
async fn the_agent_reads_how_its_daemon_confines_containers_and_says_so() {
    let ns = TestNamespace::new("daemon-setup").await;
    let health = common::free_address();
    let _agent = Agent {
        health_addr: health.clone(),
        ..Agent::new(&ns.name, &ns.node())
    }
    .start();
    let docker = common::docker().await;
    let info = docker.info().await.expect("docker info");
    let seccomp = info
        .security_options
        .unwrap_or_default()
        .iter()
        .find_map(|o| o.strip_prefix("name=seccomp,profile=").map(String::from))
        .expect("this machine's daemon has seccomp");
    let line = common::eventually_some("the daemon's setup on /metrics", || async {
        match common::http_get(&health, "/metrics").await {
            Some((200, metrics)) => metrics
                .lines()
                .find(|line| line.starts_with("taskrun_docker_daemon_info{"))
                .map(String::from),
            _ => None,
        }
    })
    .await;
    let version = info.server_version.unwrap_or_default();
    for label in [
        format!("seccomp=\"{seccomp}\""),
        format!("version=\"{version}\""),
        "accepted=\"true\"".to_string(),
    ] {
        assert!(line.contains(&label), "{label} in {line}");
    }
    let log = std::fs::read_to_string(
        common::repo_root().join(format!("target/test-logs/{}.log", ns.node())),
    )
    .unwrap();
    assert!(
        log.contains("the node's Docker daemon") && log.contains(&format!("seccomp {seccomp}")),
        "logged once at start: {log}"
    );
}

#[tokio::test]
async fn bridge_tasks_cannot_reach_each_other() {
    let ns = TestNamespace::new("icc").await;
    let _agent = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "listener",
        "image: busybox\ncommand: [sh, -c, 'timeout 20 nc -l -p 7000; true']",
    ))
    .await;
    let running = ns
        .wait_for("listener", "Running", |tr| {
            phase(tr) == Some(Phase::Running)
        })
        .await;
    let name = running
        .status
        .and_then(|s| s.container_name)
        .expect("a container name");
    let docker = common::docker().await;
    let inspected = docker
        .inspect_container(&name, None::<InspectContainerOptions>)
        .await
        .expect("inspect the listener");
    let networks = inspected
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    let bridge = common::bridge_network(&docker).await;
    let address = networks
        .get(bridge)
        .and_then(|endpoint| endpoint.ip_address.clone())
        .filter(|address| !address.is_empty())
        .unwrap_or_else(|| panic!("the listener on the default bridge: {networks:?}"));
    ns.create(&common::taskrun_yaml(
        "neighbour",
        &format!(
            "image: busybox\ncommand: [sh, -c, 'if echo hello | nc -w 3 {address} 7000; then echo reached; else echo blocked; fi']"
        ),
    ))
    .await;
    let done = ns.wait_done("neighbour").await;
    let tail = done.status.and_then(|s| s.log_tail).unwrap_or_default();
    // stdout and stderr reach the log in either order.
    assert!(
        tail.lines().any(|line| line == "blocked") && !tail.lines().any(|line| line == "reached"),
        "a task reached its neighbour at {address}: {tail}"
    );
    let network = docker
        .inspect_network(bridge, None)
        .await
        .expect("the network of Bridge tasks");
    let options = network.options.unwrap_or_default();
    assert_eq!(
        options
            .get("com.docker.network.bridge.enable_icc")
            .map(String::as_str),
        Some("false")
    );
}

/// A bridge of the test's own on the host, without ports, with addresses tasks on the bridge may try to
/// reach; removed when dropped.
struct TestInterface {
    name: &'static str,
}

impl TestInterface {
    fn create(name: &'static str, addresses: &[&str]) -> Self {
        let ip = |args: &[&str]| {
            let output = Command::new("ip").args(args).output().expect("run ip");
            assert!(output.status.success(), "ip {args:?}: {output:?}");
        };
        let _ = Command::new("ip").args(["link", "delete", name]).output();
        ip(&["link", "add", name, "type", "bridge"]);
        let interface = Self { name };
        for address in addresses {
            ip(&["address", "add", &format!("{address}/32"), "dev", name]);
        }
        ip(&["link", "set", name, "up"]);
        interface
    }
}

impl Drop for TestInterface {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "delete", self.name])
            .output();
    }
}

/// The agent's nftables table, deleted when the test ends however it ends: an agent keeps its
/// table when it stops, since the task containers it leaves running stay under it.
struct NftTable(String);

impl Drop for NftTable {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.0])
            .output();
    }
}

/// Whether the nftables table `table` exists on the host.
fn nft_table_exists(table: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", table])
        .output()
        .expect("run nft")
        .status
        .success()
}

/// What a Bridge task said of its attempt to reach `address`: `reached` or `blocked`.
async fn probe(ns: &TestNamespace, name: &str, address: &str) -> String {
    ns.create(&common::taskrun_yaml(
        name,
        &format!(
            "image: busybox\ncommand: [sh, -c, 'if nc -w 3 {address} 7100 </dev/null | grep -q hello; then echo reached; else echo blocked; fi']"
        ),
    ))
    .await;
    let done = ns.wait_done(name).await;
    let tail = done.status.and_then(|s| s.log_tail).unwrap_or_default();
    for word in ["reached", "blocked"] {
        if tail.lines().any(|line| line == word) {
            return word.to_string();
        }
    }
    panic!("{name} said neither: {tail}");
}

#[tokio::test]
async fn bridge_tasks_cannot_reach_what_the_policy_denies() {
    const DENIED: &str = "198.18.7.1";
    const ALLOWED: &str = "198.19.7.1";
    let ns = TestNamespace::new("egress").await;
    let _interface = TestInterface::create("trtest-egress", &[DENIED, ALLOWED]);
    for address in [DENIED, ALLOWED] {
        let listener = tokio::net::TcpListener::bind((address, 7100))
            .await
            .expect("listen on the test interface");
        tokio::spawn(async move {
            while let Ok((mut connection, _)) = listener.accept().await {
                let _ = connection.write_all(b"hello\n").await;
            }
        });
    }
    let mut objects = ClusterObjects::default();
    objects
        .policy(&ns.client, &ns.name, "deniedEgressCIDRs: [198.18.7.0/24]")
        .await;
    let table = format!("taskrun-{}", ns.node());
    let _table = NftTable(table.clone());

    let mut unenforcing = agent_with_policy(&ns, &[]);
    ns.create(&common::taskrun_yaml(
        "held",
        "image: busybox\ncommand: [true]",
    ))
    .await;
    ns.wait_for(
        "held",
        "EgressUnenforced for want of --firewall-image",
        |tr| {
            reason(tr) == Some(Reason::EgressUnenforced)
                && tr
                    .status
                    .as_ref()
                    .and_then(|s| s.message.as_deref())
                    .is_some_and(|m| m.contains("runs without --firewall-image"))
        },
    )
    .await;
    ns.create(&common::taskrun_yaml(
        "isolated",
        "image: busybox\ncommand: [true]\nnetwork: None",
    ))
    .await;
    assert_eq!(
        reason(&ns.wait_done("isolated").await),
        Some(Reason::Completed),
        "a run without a network needs no firewall"
    );
    unenforcing.kill();

    let _agent = agent_with_policy(&ns, &["--firewall-image", "taskrun-firewall:dev"]);
    assert_eq!(
        reason(&ns.wait_done("held").await),
        Some(Reason::Completed),
        "the held run starts once the firewall holds the refusals"
    );
    assert!(nft_table_exists(&table), "the agent's table {table}");
    assert_eq!(probe(&ns, "denied", DENIED).await, "blocked");
    assert_eq!(probe(&ns, "allowed", ALLOWED).await, "reached");

    objects
        .policy(&ns.client, &ns.name, "maxRunningPerNamespace: 100")
        .await;
    common::eventually("the agent's table removed", || async {
        !nft_table_exists(&table)
    })
    .await;
    assert_eq!(probe(&ns, "undenied", DENIED).await, "reached");
}

/// This namespace's agent, enforcing the TaskRunPolicy of the namespace's name.
fn agent_with_policy(ns: &TestNamespace, extra: &[&str]) -> ControllerProcess {
    let mut flags = vec!["--policy", ns.name.as_str()];
    flags.extend_from_slice(extra);
    ControllerProcess::start_with(&ns.name, &ns.node(), "127.0.0.1:0", &flags)
}
