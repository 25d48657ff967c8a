//! Many nodes: two Docker daemons on this machine (the second in a network namespace of its
//! own, as a second node), one agent each, sharing TaskRuns through claims and Leases.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};
use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use taskrun_operator::api::{Phase, Reason, TaskRun};

use common::{ControllerProcess, NodeObject, TestNamespace, phase, phase_is, reason, reason_is};

const MAIN_DOCKER: &str = "unix:///var/run/docker.sock";
const LEASE: [&str; 2] = ["--lease-duration-seconds", "3"];

/// The second node's daemon, started once per test binary.
fn node_b_docker() -> String {
    static HOST: Mutex<Option<String>> = Mutex::new(None);
    let mut host = HOST.lock().unwrap();
    if let Some(host) = host.as_ref() {
        return host.clone();
    }
    let started = common::docker_node("up", "node-b");
    *host = Some(started.clone());
    started
}

/// Removes the test's containers from the second daemon when the test ends, however it ends.
struct NodeBCleanup(String, String);

impl Drop for NodeBCleanup {
    fn drop(&mut self) {
        common::remove_containers_labelled_on(
            Some(&self.0),
            &format!("taskrun.dev/namespace={}", self.1),
        );
    }
}

/// The test's containers on one daemon: TaskRun name -> (started, finished) times.
async fn runs_on(host: &str, namespace: &str) -> HashMap<String, (String, String)> {
    let docker = common::docker_at(host).await;
    let filters = HashMap::from([("label", vec![format!("taskrun.dev/namespace={namespace}")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let mut runs = HashMap::new();
    for summary in docker.list_containers(Some(options)).await.unwrap() {
        let name = summary
            .labels
            .as_ref()
            .and_then(|l| l.get("taskrun.dev/name"))
            .cloned()
            .unwrap_or_default();
        let inspect = docker
            .inspect_container(
                summary.id.as_deref().unwrap(),
                None::<InspectContainerOptions>,
            )
            .await
            .unwrap();
        let state = inspect.state.unwrap();
        let previous = runs.insert(
            name.clone(),
            (
                state.started_at.unwrap_or_default(),
                state.finished_at.unwrap_or_default(),
            ),
        );
        assert!(previous.is_none(), "{name} has two containers on {host}");
    }
    runs
}

/// Most containers that ran at the same time, from their start and finish times.
fn peak_concurrency(runs: &HashMap<String, (String, String)>) -> usize {
    let mut edges: Vec<(jiff::Timestamp, i32)> = Vec::new();
    for (started, finished) in runs.values() {
        edges.push((started.parse().unwrap(), 1));
        edges.push((finished.parse().unwrap(), -1));
    }
    edges.sort_by_key(|(at, delta)| (*at, *delta));
    let (mut running, mut peak) = (0i32, 0i32);
    for (_, delta) in edges {
        running += delta;
        peak = peak.max(running);
    }
    usize::try_from(peak).unwrap_or(0)
}

fn node_of(taskrun: &TaskRun) -> Option<String> {
    taskrun.status.as_ref().and_then(|s| s.node_name.clone())
}

#[tokio::test]
async fn forty_runs_spread_over_two_nodes_each_run_once_within_capacity() {
    let node_b = node_b_docker();
    let ns = TestNamespace::new("spread").await;
    let _cleanup = NodeBCleanup(node_b.clone(), ns.name.clone());
    let (a, b) = (format!("{}-a", ns.name), format!("{}-b", ns.name));
    let capacity = ["--max-running", "4"];
    let _agent_a = ControllerProcess::start_node(
        &ns.name,
        &a,
        MAIN_DOCKER,
        &[&capacity[..], &LEASE[..]].concat(),
    );
    let _agent_b =
        ControllerProcess::start_node(&ns.name, &b, &node_b, &[&capacity[..], &LEASE[..]].concat());

    let started = Instant::now();
    let names: Vec<String> = (0..40).map(|i| format!("run-{i}")).collect();
    for name in &names {
        ns.create(&common::taskrun_yaml(
            name,
            "image: busybox\ncommand: [sleep, '0.3']\ncleanup: Never",
        ))
        .await;
    }
    let mut placed = HashMap::new();
    for name in &names {
        let done = ns.wait_done(name).await;
        assert_eq!(phase(&done), Some(Phase::Succeeded), "{name}");
        placed.insert(name.clone(), node_of(&done).expect("node recorded"));
    }
    println!(
        "40 TaskRuns on two agents: {:.1} per second",
        40.0 / started.elapsed().as_secs_f64()
    );

    let on_a = runs_on(MAIN_DOCKER, &ns.name).await;
    let on_b = runs_on(&node_b, &ns.name).await;
    assert_eq!(on_a.len() + on_b.len(), 40, "one container per run in all");
    for name in &names {
        let (in_a, in_b) = (on_a.contains_key(name), on_b.contains_key(name));
        assert!(
            in_a != in_b,
            "{name} ran on exactly one daemon (a: {in_a}, b: {in_b})"
        );
        let expected = if in_a { &a } else { &b };
        assert_eq!(
            &placed[name], expected,
            "{name}'s status names the node that ran it"
        );
    }
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "both nodes took a share: a {}, b {}",
        on_a.len(),
        on_b.len()
    );
    assert!(
        peak_concurrency(&on_a) <= 4,
        "node a ran {} at once",
        peak_concurrency(&on_a)
    );
    assert!(
        peak_concurrency(&on_b) <= 4,
        "node b ran {} at once",
        peak_concurrency(&on_b)
    );
}

#[tokio::test]
async fn a_lost_node_gives_up_its_queued_runs_and_fails_its_started_ones() {
    let node_b = node_b_docker();
    let ns = TestNamespace::new("lost").await;
    let _cleanup = NodeBCleanup(node_b.clone(), ns.name.clone());
    let (a, b) = (format!("{}-a", ns.name), format!("{}-b", ns.name));
    let mut agent_a = ControllerProcess::start_node(
        &ns.name,
        &a,
        MAIN_DOCKER,
        &[&["--max-running", "2"][..], &LEASE[..]].concat(),
    );

    for name in ["long-1", "long-2"] {
        ns.create(&common::taskrun_yaml(name, "image: busybox\ncommand: [sleep, '60']\nterminationGracePeriodSeconds: 1\ncleanup: Never")).await;
        ns.wait_for(name, "Running", phase_is(Phase::Running)).await;
    }
    for name in ["queued-1", "queued-2"] {
        ns.create(&common::taskrun_yaml(
            name,
            "image: busybox\ncommand: ['true']\ncleanup: Never",
        ))
        .await;
    }
    // Node a answers a run pinned to a node no agent serves even while it is full. It saw the
    // queued runs before this later one, so once it has said this one waits, it has placed them.
    ns.create(&common::taskrun_yaml(
        "after-the-queue",
        &format!(
            "image: busybox\ncommand: ['true']\nnodeName: {}-nowhere",
            ns.name
        ),
    ))
    .await;
    ns.wait_for(
        "after-the-queue",
        "NodeUnavailable",
        reason_is(Reason::NodeUnavailable),
    )
    .await;
    for name in ["queued-1", "queued-2"] {
        let waiting = ns.taskruns().get(name).await.unwrap();
        assert!(
            waiting.annotations().get("taskrun.dev/node").is_none(),
            "{name} waits unclaimed while node a is full"
        );
    }

    agent_a.kill();
    let _agent_b = ControllerProcess::start_node(
        &ns.name,
        &b,
        &node_b,
        &[&["--max-running", "4"][..], &LEASE[..]].concat(),
    );
    for name in ["queued-1", "queued-2"] {
        let done = ns.wait_done(name).await;
        assert_eq!(phase(&done), Some(Phase::Succeeded), "{name}");
        assert_eq!(
            node_of(&done).as_deref(),
            Some(b.as_str()),
            "{name} ran on the surviving node"
        );
    }
    for name in ["long-1", "long-2"] {
        let done = ns.wait_done(name).await;
        let status = done.status.unwrap();
        assert_eq!(
            (status.phase, status.reason),
            (Some(Phase::Failed), Some(Reason::NodeLost)),
            "{name}"
        );
        assert_eq!(status.node_name.as_deref(), Some(a.as_str()));
    }
    let on_a = runs_on(MAIN_DOCKER, &ns.name).await;
    let on_b = runs_on(&node_b, &ns.name).await;
    let mut on_a_names: Vec<_> = on_a.keys().cloned().collect();
    let mut on_b_names: Vec<_> = on_b.keys().cloned().collect();
    on_a_names.sort();
    on_b_names.sort();
    assert_eq!(on_a_names, ["long-1", "long-2"], "nothing ran twice");
    assert_eq!(on_b_names, ["queued-1", "queued-2"], "nothing ran twice");
}

#[tokio::test]
async fn bridge_tasks_join_the_default_bridge_only_where_the_daemon_keeps_it_apart() {
    let node_b = node_b_docker();
    let ns = TestNamespace::new("bridges").await;
    let _cleanup = NodeBCleanup(node_b.clone(), ns.name.clone());
    let (a, b) = (format!("{}-a", ns.name), format!("{}-b", ns.name));
    let _agent_a = ControllerProcess::start_node(&ns.name, &a, MAIN_DOCKER, &LEASE);
    let _agent_b = ControllerProcess::start_node(&ns.name, &b, &node_b, &LEASE);
    // The main daemon runs with --icc=false (scripts/docker-up.sh); node-b's as Docker
    // installs itself, with traffic between containers on its default bridge.
    let main_bridge = common::bridge_network(&common::docker_at(MAIN_DOCKER).await).await;
    for (node, host, expected) in [
        (&a, MAIN_DOCKER, main_bridge),
        (&b, node_b.as_str(), "taskrun"),
    ] {
        let name = format!("on-{node}");
        ns.create(&common::taskrun_yaml(
            &name,
            &format!("image: busybox\ncommand: ['true']\ncleanup: Never\nnodeName: {node}"),
        ))
        .await;
        let done = ns.wait_done(&name).await;
        let container = done
            .status
            .and_then(|s| s.container_name)
            .expect("a container");
        let docker = common::docker_at(host).await;
        let inspected = docker
            .inspect_container(&container, None::<InspectContainerOptions>)
            .await
            .unwrap();
        let mode = inspected.host_config.and_then(|h| h.network_mode);
        assert_eq!(mode.as_deref(), Some(expected), "on {node}");
        let network = docker.inspect_network(expected, None).await.unwrap();
        let options = network.options.unwrap_or_default();
        assert_eq!(
            options
                .get("com.docker.network.bridge.enable_icc")
                .map(String::as_str),
            Some("false"),
            "{expected} on {node}: {options:?}"
        );
    }
    let taskrun_network = common::docker_at(&node_b)
        .await
        .inspect_network("taskrun", None)
        .await
        .unwrap();
    assert_eq!(
        taskrun_network
            .labels
            .unwrap_or_default()
            .get("taskrun.dev/managed-by")
            .map(String::as_str),
        Some("taskrun-operator"),
        "the operator made it"
    );
}

#[tokio::test]
async fn node_name_pins_a_run_and_an_unknown_node_leaves_it_pending() {
    let node_b = node_b_docker();
    let ns = TestNamespace::new("pinned").await;
    let _cleanup = NodeBCleanup(node_b.clone(), ns.name.clone());
    let (a, b) = (format!("{}-a", ns.name), format!("{}-b", ns.name));
    let _agent_a = ControllerProcess::start_node(&ns.name, &a, MAIN_DOCKER, &LEASE);
    let _agent_b = ControllerProcess::start_node(&ns.name, &b, &node_b, &LEASE);

    ns.create(&common::taskrun_yaml(
        "pinned",
        &format!("image: busybox\ncommand: ['true']\ncleanup: Never\nnodeName: {b}"),
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "nowhere",
        "image: busybox\ncommand: ['true']\nnodeName: ghost",
    ))
    .await;
    let pinned = ns.wait_done("pinned").await;
    assert_eq!(node_of(&pinned).as_deref(), Some(b.as_str()));
    assert!(runs_on(&node_b, &ns.name).await.contains_key("pinned"));
    assert!(!runs_on(MAIN_DOCKER, &ns.name).await.contains_key("pinned"));

    let waiting = ns
        .wait_for(
            "nowhere",
            "NodeUnavailable",
            reason_is(Reason::NodeUnavailable),
        )
        .await;
    let status = waiting.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Pending));
    assert!(status.message.unwrap_or_default().contains("ghost"));
}

#[tokio::test]
async fn an_agent_back_after_its_lease_expired_never_shares_a_run_with_a_peer() {
    let node_b = node_b_docker();
    let ns = TestNamespace::new("returning").await;
    let _cleanup = NodeBCleanup(node_b.clone(), ns.name.clone());
    let (a, b) = (format!("{}-a", ns.name), format!("{}-b", ns.name));
    // A longer Lease, so the peer's view of node a stays stale for longer between its looks.
    let lease = ["--lease-duration-seconds", "6"];
    let leases: kube::Api<Lease> = kube::Api::namespaced(ns.client.clone(), &ns.name);
    let lease_of = |node: &str| {
        let leases = leases.clone();
        let name = format!("taskrun-node-{node}");
        async move {
            common::eventually_some(&format!("the Lease {name}"), || async {
                let spec = leases.get_opt(&name).await.unwrap()?.spec.unwrap();
                let seconds = spec.lease_duration_seconds.unwrap();
                Some(
                    spec.renew_time.unwrap().0
                        + jiff::SignedDuration::from_secs(i64::from(seconds)),
                )
            })
            .await
        }
    };

    // Node a's agent leaves a Lease behind and stays away longer than the Lease lasts.
    let mut first_a = ControllerProcess::start_node(&ns.name, &a, MAIN_DOCKER, &lease);
    let expiry = lease_of(&a).await;
    first_a.kill();
    let until_expired = expiry.duration_since(jiff::Timestamp::now()).unsigned_abs();
    tokio::time::sleep(until_expired + Duration::from_millis(500)).await;

    let names: Vec<String> = (0..30).map(|i| format!("run-{i}")).collect();
    for name in &names {
        ns.create(&common::taskrun_yaml(
            name,
            "image: busybox\ncommand: [sleep, '1']\ncleanup: Never",
        ))
        .await;
    }
    // The peer starts first and sees node a's expired Lease; node a's agent comes back while
    // the peer still believes it lost.
    let _agent_b = ControllerProcess::start_node(
        &ns.name,
        &b,
        &node_b,
        &[&["--max-running", "2"][..], &lease[..]].concat(),
    );
    lease_of(&b).await;
    let _agent_a = ControllerProcess::start_node(
        &ns.name,
        &a,
        MAIN_DOCKER,
        &[&["--max-running", "8"][..], &lease[..]].concat(),
    );

    for name in &names {
        let done = ns.wait_done(name).await;
        let status = done.status.unwrap();
        assert_eq!(
            (status.phase, status.reason),
            (Some(Phase::Succeeded), Some(Reason::Completed)),
            "{name}: {:?}",
            status.message
        );
    }
    let on_a = runs_on(MAIN_DOCKER, &ns.name).await;
    let on_b = runs_on(&node_b, &ns.name).await;
    for name in &names {
        assert!(
            on_a.contains_key(name) != on_b.contains_key(name),
            "{name} ran on exactly one node (a: {}, b: {})",
            on_a.contains_key(name),
            on_b.contains_key(name)
        );
    }
}

#[tokio::test]
async fn a_cordoned_node_takes_no_new_runs_until_it_is_uncordoned() {
    let ns = TestNamespace::new("cordon").await;
    let node = NodeObject::create(&ns, &ns.node(), true).await;
    let _agent = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "waits",
        "image: busybox\ncommand: ['true']",
    ))
    .await;
    let waiting = ns
        .wait_for("waits", "Unschedulable", reason_is(Reason::Unschedulable))
        .await;
    assert!(waiting.annotations().get("taskrun.dev/node").is_none());
    let status = waiting.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Pending));
    assert!(status.message.unwrap_or_default().contains("cordoned"));
    let docker = common::docker().await;
    assert!(ns.containers(&docker).await.is_empty(), "nothing started");

    node.uncordon();
    let done = ns.wait_done("waits").await;
    assert_eq!(phase(&done), Some(Phase::Succeeded));
}

#[tokio::test]
async fn a_deleted_node_is_lost_and_its_started_runs_end_node_lost() {
    let ns = TestNamespace::new("deleted-node").await;
    let (a, b) = (format!("{}-a", ns.name), format!("{}-b", ns.name));
    let node_a = NodeObject::create(&ns, &a, false).await;
    let _node_b = NodeObject::create(&ns, &b, false).await;
    let _agent_a = ControllerProcess::start_node(&ns.name, &a, MAIN_DOCKER, &LEASE);
    let _agent_b = ControllerProcess::start_node(&ns.name, &b, MAIN_DOCKER, &LEASE);
    ns.create(&common::taskrun_yaml(
        "long",
        &format!("image: busybox\ncommand: [sleep, '300']\nterminationGracePeriodSeconds: 0\nnodeName: {a}"),
    ))
    .await;
    ns.wait_for("long", "Running", phase_is(Phase::Running))
        .await;

    node_a
        .nodes
        .delete(&a, &kube::api::DeleteParams::default())
        .await
        .expect("delete the Node");
    let lost = ns.wait_done("long").await;
    let status = lost.status.unwrap();
    assert_eq!(
        (status.phase, status.reason, status.node_name.as_deref()),
        (
            Some(Phase::Failed),
            Some(Reason::NodeLost),
            Some(a.as_str())
        )
    );
    // A cancel after the fact is recorded as seen by the surviving agent.
    ns.cancel("long").await;
    let seen = ns
        .wait_for("long", "observedGeneration 2", |tr| {
            tr.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
        })
        .await;
    assert_eq!(reason(&seen), Some(Reason::NodeLost), "the outcome stays");
    let docker = common::docker().await;
    common::eventually("the lost run's container stops", || async {
        ns.containers(&docker)
            .await
            .iter()
            .all(|c| c.state != Some(bollard::models::ContainerSummaryStateEnum::RUNNING))
    })
    .await;
}
