//! Input the schema accepts but nobody here chose: any byte of output, malformed image names,
//! copied claims of nodes that never existed, floods of output, tiny cpu limits, the longest
//! names. Each run still ends, with the right reason, and holds nothing on the node.

mod common;

use std::collections::HashMap;
use std::process::Stdio;

use bollard::errors::Error::DockerResponseServerError;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, RemoveContainerOptionsBuilder,
};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use taskrun_operator::api::{Phase, Reason, TaskRun, TaskRunStatus};

use common::{ControllerProcess, TestNamespace, kubectl, outcome, status};

/// A printf format that prints exactly `bytes`.
fn printf_format(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b {
            b'%' => "%%".to_string(),
            b => format!("\\{b:03o}"),
        })
        .collect()
}

/// Bytes from a fixed seed, so a failure can be replayed.
fn seeded_bytes(seed: u64, count: usize) -> Vec<u8> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// A spec that prints each chunk of `bytes` from its own argument (each stays within the
/// schema's 4096 characters per argument).
fn printing(bytes: &[u8]) -> String {
    let chunks: Vec<String> = bytes.chunks(900).map(printf_format).collect();
    let script: String = (1..=chunks.len())
        .map(|i| format!("printf \"${i}\";"))
        .collect();
    let args = chunks
        .iter()
        .map(|c| format!("'{}'", c.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    format!("image: busybox\ncommand: [sh, -c, '{script}', sh, {args}]\ncleanup: Always")
}

#[tokio::test]
async fn output_and_daemon_errors_with_any_byte_still_end_the_run() {
    let ns = TestNamespace::new("bytes").await;
    let _controller = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "del",
        "image: busybox\ncommand: [printf, 'x\\177y\\n']\ncleanup: Always",
    ))
    .await;
    let every_byte: Vec<u8> = (0..=255).collect();
    ns.create(&common::taskrun_yaml("every-byte", &printing(&every_byte)))
        .await;
    let seed = 0x5eed_0000_0000_0001;
    ns.create(&common::taskrun_yaml(
        "random-bytes",
        &printing(&seeded_bytes(seed, 2700)),
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "bad-working-dir",
        "image: busybox\ncommand: ['true']\nworkingDir: \"/bin/busybox/x\\u007f\\u0085\\uFFFE\"",
    ))
    .await;

    let del = ns.wait_done("del").await;
    assert_eq!(
        outcome(&del),
        (Some(Phase::Succeeded), Some(Reason::Completed))
    );
    assert_eq!(status(&del).log_tail.as_deref(), Some("x\u{FFFD}y\n"));

    let every = ns.wait_done("every-byte").await;
    assert_eq!(
        outcome(&every),
        (Some(Phase::Succeeded), Some(Reason::Completed))
    );
    let tail = status(&every).log_tail.clone().unwrap_or_default();
    assert!(
        tail.contains("0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ") && tail.contains('\u{FFFD}'),
        "{tail:?}"
    );

    let random = ns.wait_done("random-bytes").await;
    assert_eq!(
        outcome(&random),
        (Some(Phase::Succeeded), Some(Reason::Completed)),
        "seed {seed:#x}"
    );

    let workdir = ns.wait_done("bad-working-dir").await;
    assert_eq!(
        outcome(&workdir),
        (Some(Phase::Failed), Some(Reason::StartFailed))
    );
    let message = status(&workdir).message.clone().unwrap_or_default();
    assert!(message.contains("/bin/busybox/x"), "{message}");
}

/// Applies YAML with kubectl, as an admin would.
fn kubectl_apply(yaml: &str) {
    let applied = common::kubectl_with_input(&["apply", "-f", "-"], yaml);
    assert!(
        applied.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
}

/// Refuses every status write to TaskRuns labelled `taskrun.dev/test-deny-status`, until
/// dropped.
struct StatusWritesRefused(String);

impl StatusWritesRefused {
    async fn install(name: &str, probe_namespace: &TestNamespace) -> Self {
        kubectl_apply(&format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {name}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [taskrun.dev]
      apiVersions: ["*"]
      operations: [UPDATE]
      resources: [taskruns/status]
  validations:
  - expression: "!has(object.metadata.labels) || !('taskrun.dev/test-deny-status' in object.metadata.labels)"
    message: status writes are refused for this test
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {name}}}
spec:
  policyName: {name}
  validationActions: [Deny]
"#
        ));
        // A policy reaches admission within moments: wait until a dry run is refused.
        probe_namespace
            .create("apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: probe\n  labels: {taskrun.dev/test-deny-status: 'true'}\nspec:\n  image: busybox\n")
            .await;
        common::eventually(&format!("the policy {name} taking effect"), || async {
            let dry_run = kubectl()
                .args(["patch", "taskrun", "probe", "-n", &probe_namespace.name])
                .args(["--subresource=status", "--type=merge", "--dry-run=server"])
                .args(["-p", r#"{"status":{"message":"probe"}}"#])
                .output()
                .unwrap();
            !dry_run.status.success()
        })
        .await;
        Self(name.to_string())
    }
}

impl Drop for StatusWritesRefused {
    fn drop(&mut self) {
        for kind in [
            "validatingadmissionpolicybinding",
            "validatingadmissionpolicy",
        ] {
            let _ = kubectl()
                .args(["delete", kind, &self.0, "--ignore-not-found"])
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// Creates a container with `labels` and removes it, so that its agent gets a destroy event.
async fn come_and_go(docker: &bollard::Docker, name: &str, labels: &HashMap<String, String>) {
    let body = ContainerCreateBody {
        image: Some("busybox".into()),
        cmd: Some(vec!["true".into()]),
        labels: Some(labels.clone()),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    docker.create_container(Some(options), body).await.unwrap();
    let remove = RemoveContainerOptionsBuilder::default().force(true).build();
    // The agent's sweep may be removing this orphan already (409) or be done (404).
    match docker.remove_container(name, Some(remove)).await {
        Ok(()) => {}
        Err(DockerResponseServerError {
            status_code: 404 | 409,
            ..
        }) => {}
        Err(e) => panic!("failed to remove container {name}: {e}"),
    }
}

/// Whether the agent's JSON log says it read the stop or removal of a container of the TaskRun
/// `namespace/name`.
fn logged_container_stop(log: &std::path::Path, namespace: &str, name: &str) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .any(|entry| {
            entry["message"] == "container stopped"
                && entry["namespace"] == namespace
                && entry["name"] == name
        })
}

#[tokio::test]
async fn container_events_do_not_bypass_the_backoff_of_a_failing_run() {
    let ns = TestNamespace::new("backoff").await;
    let probes = TestNamespace::new("backoff-probe").await;
    let _refused = StatusWritesRefused::install(&ns.name, &probes).await;
    let address = common::free_address();
    let controller = common::Agent {
        health_addr: address.clone(),
        extra: vec!["--log-format".into(), "json".into()],
        ..common::Agent::new(&ns.name, &ns.node())
    }
    .start();
    ns.create("apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: stuck\n  labels: {taskrun.dev/test-deny-status: 'true'}\nspec:\n  image: busybox\n  command: [sleep, '300']\n  terminationGracePeriodSeconds: 0\n")
        .await;

    let metrics = || async {
        let (_, text) = common::http_get(&address, "/metrics")
            .await
            .unwrap_or_default();
        (
            common::metric(&text, "taskrun_reconciles_total").unwrap_or(0.0),
            common::metric(&text, "taskrun_reconcile_errors_total").unwrap_or(0.0),
        )
    };
    common::eventually("a failed status write", || async {
        metrics().await.1 >= 1.0
    })
    .await;

    // Forty containers labelled as the run's come and go: forty destroy events for it.
    let docker = common::docker().await;
    let labels = HashMap::from([
        (
            "taskrun.dev/managed-by".to_string(),
            "taskrun-operator".to_string(),
        ),
        ("taskrun.dev/namespace".to_string(), ns.name.clone()),
        ("taskrun.dev/name".to_string(), "stuck".to_string()),
        ("taskrun.dev/uid".to_string(), "not-a-taskrun".to_string()),
        ("taskrun.dev/node".to_string(), ns.node()),
    ]);
    let (before, _) = metrics().await;
    let started = std::time::Instant::now();
    for i in 0..40 {
        come_and_go(&docker, &format!("{}-event-{i}", ns.name), &labels).await;
    }
    // Then one of a TaskRun that does not exist, whose pass never runs, so it adds none to the
    // count. The agent reads the daemon's events in order and queues each one's pass before it
    // reads the next: once it has read this one, it has queued every pass the forty ask for.
    let mut later = labels.clone();
    later.insert(
        "taskrun.dev/name".to_string(),
        "after-the-forty".to_string(),
    );
    come_and_go(&docker, &format!("{}-after-the-forty", ns.name), &later).await;
    common::eventually("the agent reading the event after the forty", || async {
        logged_container_stop(&controller.log, &ns.name, "after-the-forty")
    })
    .await;
    let (after, _) = metrics().await;
    let seconds = started.elapsed().as_secs_f64();
    // Backoff of 1 s doubling: a handful of passes in this window, not one per event.
    assert!(
        after - before <= 2.0 + seconds.log2().ceil(),
        "{} passes in {seconds:.1} s for 40 container events",
        after - before
    );
    assert!(
        status_of(&ns, "stuck")
            .await
            .and_then(|s| s.phase)
            .is_none(),
        "every status write was refused"
    );
    ns.taskruns()
        .delete("stuck", &DeleteParams::default())
        .await
        .unwrap();
}

/// The status as served: `{observedGeneration: 0}` until an agent writes one.
async fn status_of(ns: &TestNamespace, name: &str) -> Option<TaskRunStatus> {
    ns.taskruns().get(name).await.unwrap().status
}

#[tokio::test]
async fn malformed_image_names_are_refused_or_end_the_run_without_holding_the_node() {
    let ns = TestNamespace::new("images").await;
    for image in [
        "BusyBox:latest",
        "busybox:",
        "busybox@sha256:abc",
        "busybox@",
    ] {
        let manifest = common::taskrun_yaml("bad", &format!("image: '{image}'"));
        let taskrun: TaskRun = serde_yaml::from_str(&manifest).unwrap();
        match ns.taskruns().create(&Default::default(), &taskrun).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{image}");
                assert!(e.message.contains("spec.image"), "{image}: {}", e.message);
            }
            other => panic!("{image} was not refused: {other:?}"),
        }
    }

    // Longer than Docker's 255-character limit on repository names: only the daemon knows.
    let _controller =
        ControllerProcess::start_with(&ns.name, &ns.node(), "127.0.0.1:0", &["--max-running", "1"]);
    let too_long = "a".repeat(300);
    for (name, policy) in [
        ("long-if-not-present", "IfNotPresent"),
        ("long-never", "Never"),
    ] {
        ns.create(&common::taskrun_yaml(
            name,
            &format!("image: {too_long}\nimagePullPolicy: {policy}"),
        ))
        .await;
    }
    ns.create(&common::taskrun_yaml(
        "after",
        "image: busybox\ncommand: ['true']",
    ))
    .await;
    for name in ["long-if-not-present", "long-never"] {
        let done = ns.wait_done(name).await;
        assert_eq!(
            outcome(&done),
            (Some(Phase::Failed), Some(Reason::InvalidImage)),
            "{name}"
        );
        let message = status(&done).message.clone().unwrap_or_default();
        assert!(message.contains("255 characters"), "{name}: {message}");
    }
    let after = ns.wait_done("after").await;
    assert_eq!(
        outcome(&after).0,
        Some(Phase::Succeeded),
        "the node's one place was freed"
    );
}

#[tokio::test]
async fn a_claim_copied_from_a_node_that_never_existed_is_released() {
    let ns = TestNamespace::new("ghost").await;
    let _controller = ControllerProcess::start_with(
        &ns.name,
        &ns.node(),
        "127.0.0.1:0",
        &["--lease-duration-seconds", "2"],
    );
    ns.create("apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: copied\n  annotations: {taskrun.dev/node: ghost-node}\n  finalizers: [taskrun.dev/container]\nspec:\n  image: busybox\n  command: ['true']\n")
        .await;
    let copied = ns.wait_done("copied").await;
    assert_eq!(outcome(&copied).0, Some(Phase::Succeeded));
    assert_eq!(
        status(&copied).node_name.as_deref(),
        Some(ns.node().as_str())
    );

    ns.create("apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: deleted\n  annotations: {taskrun.dev/node: ghost-node}\n  finalizers: [taskrun.dev/container]\nspec:\n  image: busybox\n  nodeName: ghost-node\n")
        .await;
    ns.taskruns()
        .delete("deleted", &DeleteParams::default())
        .await
        .unwrap();
    let gone = tokio::time::timeout(
        common::TIMEOUT,
        kube::runtime::wait::await_condition(
            ns.taskruns(),
            "deleted",
            kube::runtime::wait::conditions::is_deleted(""),
        ),
    )
    .await;
    assert!(matches!(gone, Ok(Ok(_))), "deleting the run finished");
}

#[tokio::test]
async fn a_flood_of_output_is_capped_on_the_node_and_the_tail_is_kept() {
    let ns = TestNamespace::new("flood").await;
    let _controller = ControllerProcess::start_with(
        &ns.name,
        &ns.node(),
        "127.0.0.1:0",
        &["--container-log-max-bytes", "1048576"],
    );
    ns.create(&common::taskrun_yaml(
        "flood",
        "image: busybox\ncommand: [sh, -c, \"head -c 6000000 /dev/zero | tr '\\\\0' x; echo; echo END\"]\ncleanup: Never",
    ))
    .await;
    let done = ns.wait_done("flood").await;
    assert_eq!(outcome(&done).0, Some(Phase::Succeeded));
    let tail = status(&done).log_tail.clone().unwrap_or_default();
    assert!(
        tail.ends_with("x\nEND\n") && tail.len() == 4096,
        "{} bytes",
        tail.len()
    );

    let docker = common::docker().await;
    let container = status(&done).container_id.clone().unwrap();
    let inspect = docker
        .inspect_container(&container, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let log_path = inspect.log_path.unwrap();
    let kept: u64 = [log_path.clone(), format!("{log_path}.1")]
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|meta| meta.len())
        .sum();
    assert!(kept <= 1_200_000, "{kept} bytes of log kept on the node");
}

#[tokio::test]
async fn cpu_limits_below_what_docker_enforces_are_refused() {
    let ns = TestNamespace::new("cpu").await;
    for cpu in ["1n", "1m", "9m", "0.001"] {
        let manifest = common::taskrun_yaml(
            "tiny",
            &format!("image: busybox\nresources: {{limits: {{cpu: '{cpu}'}}}}"),
        );
        let taskrun: TaskRun = serde_yaml::from_str(&manifest).unwrap();
        match ns.taskruns().create(&Default::default(), &taskrun).await {
            Err(kube::Error::Api(e)) => {
                assert!(e.message.contains("at least 10m"), "{cpu}: {}", e.message)
            }
            other => panic!("cpu {cpu} was not refused: {other:?}"),
        }
    }
    let _controller = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "smallest",
        "image: busybox\ncommand: ['true']\ncleanup: Never\nresources: {limits: {cpu: 10m}}",
    ))
    .await;
    let done = ns.wait_done("smallest").await;
    assert_eq!(outcome(&done).0, Some(Phase::Succeeded));
    let docker = common::docker().await;
    let inspect = docker
        .inspect_container(
            &status(&done).container_id.clone().unwrap(),
            None::<InspectContainerOptions>,
        )
        .await
        .unwrap();
    assert_eq!(inspect.host_config.unwrap().nano_cpus, Some(10_000_000));
}

#[tokio::test]
async fn the_longest_taskrun_name_still_gets_its_events() {
    let ns = TestNamespace::new("long-name").await;
    let _controller = ns.start_controller();
    let name = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(name.len(), 253);
    ns.create(&common::taskrun_yaml(
        &name,
        "image: busybox\ncommand: ['true']",
    ))
    .await;
    let done = ns.wait_done(&name).await;
    assert_eq!(outcome(&done).0, Some(Phase::Succeeded));
    let events: Api<Event> = Api::namespaced(ns.client.clone(), &ns.name);
    common::eventually("the run's Started and Completed events", || async {
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(&name))
            .filter_map(|e| e.reason)
            .collect();
        reasons.iter().any(|r| r == "Started") && reasons.iter().any(|r| r == "Completed")
    })
    .await;
}
