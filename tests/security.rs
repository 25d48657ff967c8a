//! What a TaskRun author can and cannot do on a node, against the real API server and Docker
//! daemon: every container hardened, the securityContext and network reaching the container
//! (seen with `docker inspect` and from inside), and a TaskRunPolicy enforced by both of its
//! enforcers: the admission policy at `kubectl apply`, and the agent before it creates a
//! container; both held to the same table of cases.

mod common;

use std::collections::BTreeMap;

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::InspectContainerOptions;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde::Deserialize;
use taskrun_operator::api::{Phase, Reason, TaskRun, TaskRunSpec, policy_violations};
use taskrun_operator::lifecycle::security::node_pids_ceiling;

use common::{ClusterObjects, ControllerProcess, TestNamespace, outcome, reason, status};

/// Starts this namespace's agent, enforcing the TaskRunPolicy `policy`.
fn agent(ns: &TestNamespace, policy: &str) -> ControllerProcess {
    ControllerProcess::start_with(&ns.name, &ns.node(), "127.0.0.1:0", &["--policy", policy])
}

/// `docker inspect` of the container the run recorded.
async fn inspect(taskrun: &TaskRun) -> ContainerInspectResponse {
    let name = status(taskrun)
        .container_name
        .clone()
        .expect("a container name");
    common::docker()
        .await
        .inspect_container(&name, None::<InspectContainerOptions>)
        .await
        .expect("inspect the run's container")
}

#[tokio::test]
async fn every_container_is_hardened_by_default() {
    let ns = TestNamespace::new("hardened").await;
    let _agent = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "plain",
        "image: busybox\ncommand: [sh, -c, 'grep -E \"^(Seccomp|NoNewPrivs):\" /proc/self/status; id -u']\ncleanup: Never",
    ))
    .await;
    let done = ns.wait_done("plain").await;
    assert_eq!(
        outcome(&done),
        (Some(Phase::Succeeded), Some(Reason::Completed)),
        "{:?}",
        done.status
    );
    let inside = status(&done).log_tail.clone().unwrap_or_default();
    // 2: a seccomp filter is in place (Docker's default profile); the image's root user.
    assert_eq!(inside, "NoNewPrivs:\t1\nSeccomp:\t2\n0\n", "{inside:?}");
    let host = inspect(&done).await.host_config.expect("host config");
    assert_eq!(host.security_opt, Some(vec!["no-new-privileges".into()]));
    let max_running = std::thread::available_parallelism().unwrap().get() * 8;
    assert_eq!(
        host.pids_limit,
        Some(4096.min(node_pids_ceiling(pid_max(), max_running)))
    );
    assert_eq!(host.privileged, Some(false));
    let bridge = common::bridge_network(&common::docker().await).await;
    assert_eq!(host.network_mode.as_deref(), Some(bridge));
    assert_eq!(host.ipc_mode.as_deref(), Some("private"));
    assert_eq!(host.pid_mode.as_deref().unwrap_or(""), "");
    assert_eq!(host.uts_mode.as_deref().unwrap_or(""), "");
    assert!(host.binds.unwrap_or_default().is_empty());
    assert!(host.devices.unwrap_or_default().is_empty());
    assert!(host.cap_add.unwrap_or_default().is_empty());
}

/// The kernel's ceiling of processes and threads on this machine.
fn pid_max() -> i64 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_cluster_without_a_policy_gets_the_built_in_bounds() {
    let ns = TestNamespace::new("built-in-policy").await;
    let absent = format!("{}-absent", ns.name);
    let _agent = ControllerProcess::start_with(
        &ns.name,
        &ns.node(),
        "127.0.0.1:0",
        &["--policy", &absent, "--max-running", "4"],
    );
    ns.create(&common::taskrun_yaml(
        "unbounded",
        "image: busybox\ncommand: [true]\ncleanup: Never",
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "huge",
        "image: busybox\ncommand: [true]\nresources: {limits: {cpu: '64', memory: 64Gi}}",
    ))
    .await;

    let unbounded = ns.wait_done("unbounded").await;
    assert_eq!(
        outcome(&unbounded),
        (Some(Phase::Succeeded), Some(Reason::Completed)),
        "{:?}",
        unbounded.status
    );
    let host = inspect(&unbounded).await.host_config.unwrap();
    assert_eq!(host.memory, Some(512 << 20));
    assert_eq!(host.nano_cpus, Some(1_000_000_000));
    assert_eq!(
        host.pids_limit,
        Some(4096.min(node_pids_ceiling(pid_max(), 4)))
    );

    let huge = ns.wait_done("huge").await;
    assert_eq!(
        outcome(&huge),
        (Some(Phase::Failed), Some(Reason::PolicyViolation)),
        "{:?}",
        huge.status
    );
    let message = status(&huge).message.clone().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "TaskRunPolicy {absent} (built in: the cluster has no such object): spec.resources.limits.cpu is above maxLimits.cpu"
        )) && message.contains("spec.resources.limits.memory is above maxLimits.memory"),
        "{message}"
    );
    assert_eq!(ns.container_count("huge").await, 0);
}

#[tokio::test]
async fn the_security_context_reaches_the_container_and_holds_inside() {
    let ns = TestNamespace::new("secctx").await;
    let _agent = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "confined",
        "image: busybox\ncommand: [sh, -c, 'id -u; id -g; grep ^CapEff: /proc/self/status']\nsecurityContext: {runAsUser: 1000, runAsGroup: 2000, runAsNonRoot: true, capabilities: {drop: [ALL]}}\ncleanup: Never",
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "read-only",
        "image: busybox\ncommand: [sh, -c, 'touch /x 2>&1; touch /scratch/x && echo scratch-written']\nvolumes: [{name: scratch, emptyDir: {sizeLimit: 8Mi}}]\nvolumeMounts: [{name: scratch, mountPath: /scratch}]\nsecurityContext: {readOnlyRootFilesystem: true}\ncleanup: Never",
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "escalating",
        "image: busybox\ncommand: [sh, -c, 'grep ^NoNewPrivs: /proc/self/status; grep ^CapEff: /proc/self/status']\nsecurityContext: {allowPrivilegeEscalation: true, capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}\ncleanup: Never",
    ))
    .await;

    let confined = ns.wait_done("confined").await;
    assert_eq!(
        outcome(&confined),
        (Some(Phase::Succeeded), Some(Reason::Completed)),
        "{:?}",
        confined.status
    );
    assert_eq!(
        status(&confined).log_tail.as_deref(),
        Some("1000\n2000\nCapEff:\t0000000000000000\n")
    );
    let seen = inspect(&confined).await;
    assert_eq!(
        seen.config.and_then(|c| c.user).as_deref(),
        Some("1000:2000")
    );
    assert_eq!(seen.host_config.unwrap().cap_drop, Some(vec!["ALL".into()]));

    // As root, so only the read-only filesystem stands in the way.
    let read_only = ns.wait_done("read-only").await;
    assert_eq!(
        outcome(&read_only),
        (Some(Phase::Succeeded), Some(Reason::Completed)),
        "{:?}",
        read_only.status
    );
    let tail = status(&read_only).log_tail.clone().unwrap_or_default();
    assert!(
        tail.contains("Read-only file system") && tail.ends_with("scratch-written\n"),
        "{tail:?}"
    );
    let host = inspect(&read_only).await.host_config.unwrap();
    assert_eq!(host.readonly_rootfs, Some(true));

    let escalating = ns.wait_done("escalating").await;
    assert_eq!(
        outcome(&escalating),
        (Some(Phase::Succeeded), Some(Reason::Completed))
    );
    // Only NET_BIND_SERVICE (bit 10) is left.
    assert_eq!(
        status(&escalating).log_tail.as_deref(),
        Some("NoNewPrivs:\t0\nCapEff:\t0000000000000400\n")
    );
    let host = inspect(&escalating).await.host_config.unwrap();
    assert_eq!(host.security_opt, None);
    assert_eq!(host.cap_add, Some(vec!["NET_BIND_SERVICE".into()]));
}

#[tokio::test]
async fn a_non_root_run_of_a_root_image_never_gets_a_container() {
    let ns = TestNamespace::new("nonroot").await;
    let _agent = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "root-image",
        "image: busybox\ncommand: ['true']\nsecurityContext: {runAsNonRoot: true}",
    ))
    .await;
    let done = ns.wait_done("root-image").await;
    assert_eq!(
        outcome(&done),
        (Some(Phase::Failed), Some(Reason::StartFailed))
    );
    let message = status(&done).message.clone().unwrap_or_default();
    assert!(
        message.contains("image busybox runs as root") && message.contains("runAsUser"),
        "{message}"
    );
    assert!(ns.containers(&common::docker().await).await.is_empty());
}

#[tokio::test]
async fn network_none_has_only_loopback_and_the_bridge_reaches_its_gateway() {
    let ns = TestNamespace::new("network").await;
    let _agent = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "isolated",
        "image: busybox\ncommand: [sh, -c, 'ls /sys/class/net']\nnetwork: None\ncleanup: Never",
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "bridged",
        "image: busybox\ncommand: [sh, -c, 'gw=$(ip route | awk \"/^default/ {print \\$3}\"); ping -c 1 -W 5 $gw >/dev/null && echo reached $gw']\nnetwork: Bridge\nsecurityContext: {capabilities: {add: [NET_RAW]}}",
    ))
    .await;
    let isolated = ns.wait_done("isolated").await;
    assert_eq!(
        outcome(&isolated),
        (Some(Phase::Succeeded), Some(Reason::Completed))
    );
    assert_eq!(status(&isolated).log_tail.as_deref(), Some("lo\n"));
    let host = inspect(&isolated).await.host_config.unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    let bridged = ns.wait_done("bridged").await;
    assert_eq!(
        outcome(&bridged),
        (Some(Phase::Succeeded), Some(Reason::Completed)),
        "{:?}",
        bridged.status
    );
    assert!(
        status(&bridged)
            .log_tail
            .as_deref()
            .is_some_and(|tail| tail.starts_with("reached ")),
        "{:?}",
        bridged.status
    );
}

#[tokio::test]
async fn a_task_container_cannot_reach_the_agents_endpoints() {
    let ns = TestNamespace::new("endpoints").await;
    let address = common::free_address();
    let port = address.rsplit_once(':').unwrap().1.to_string();
    let _agent = ControllerProcess::start_serving(&ns.name, &ns.node(), &address);
    common::eventually("the agent serves /healthz", || async {
        common::http_get(&address, "/healthz").await.is_some()
    })
    .await;
    // From the bridge the node is the gateway: the agent's port there is closed.
    ns.create(&common::taskrun_yaml(
        "probe",
        &format!(
            "image: busybox\ncommand: [sh, -c, 'gw=$(ip route | awk \"/^default/ {{print \\$3}}\"); if echo | nc -w 3 $gw {port}; then echo reached; else echo refused; fi']"
        ),
    ))
    .await;
    // The port answers with a reset: nothing listens there, rather than nc failing to try.
    let done = ns.wait_done("probe").await;
    let tail = status(&done).log_tail.clone().unwrap_or_default();
    // stdout and stderr reach the log in either order.
    assert!(
        tail.contains("Connection refused")
            && tail.lines().any(|line| line == "refused")
            && !tail.contains("reached"),
        "{:?}",
        done.status
    );
}

#[tokio::test]
async fn the_agent_refuses_what_the_policy_forbids_and_creates_nothing() {
    let ns = TestNamespace::new("policy-node").await;
    let other = TestNamespace::new("policy-elsewhere").await;
    let mut objects = ClusterObjects::default();
    // No admission binding matches these namespaces: only the agents stand in the way, as
    // on a cluster without the admission policy or for TaskRuns created before the policy.
    objects
        .policy(
            &ns.client,
            &ns.name,
            "allowedImages: [busybox]\nrequireDigest: true\nmaxLimits: {memory: 64Mi}\nallowedCapabilities: [NET_BIND_SERVICE]\nrequireNonRoot: true",
        )
        .await;
    objects
        .policy(
            &ns.client,
            &other.name,
            &format!("allowedNamespaces: [{}]", ns.name),
        )
        .await;
    let _agent = agent(&ns, &ns.name);
    let _other_agent = agent(&other, &other.name);
    let pinned = "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let cases = [
        (
            "image",
            "image: alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\nsecurityContext: {runAsUser: 1000}".to_string(),
            "spec.image matches none of allowedImages",
        ),
        (
            "digest",
            "image: busybox\nsecurityContext: {runAsUser: 1000}".to_string(),
            "spec.image must be pinned by digest (requireDigest)",
        ),
        (
            "memory",
            format!("image: {pinned}\nsecurityContext: {{runAsUser: 1000}}\nresources: {{limits: {{memory: 1Gi}}}}"),
            "spec.resources.limits.memory is above maxLimits.memory",
        ),
        (
            "capability",
            format!("image: {pinned}\nsecurityContext: {{runAsUser: 1000, capabilities: {{add: [CHOWN]}}}}"),
            "spec.securityContext.capabilities.add names a capability outside allowedCapabilities",
        ),
        (
            "root",
            format!("image: {pinned}"),
            "spec.securityContext must set runAsNonRoot: true or a non-zero runAsUser (requireNonRoot)",
        ),
    ];
    for (name, spec, _) in &cases {
        ns.create(&common::taskrun_yaml(name, spec)).await;
    }
    other
        .create(&common::taskrun_yaml(
            "namespace",
            "image: busybox\ncommand: ['true']",
        ))
        .await;
    for (name, _, message) in &cases {
        let done = ns.wait_done(name).await;
        assert_eq!(
            outcome(&done),
            (Some(Phase::Failed), Some(Reason::PolicyViolation)),
            "{name}: {:?}",
            done.status
        );
        assert_eq!(
            status(&done).message.as_deref(),
            Some(format!("TaskRunPolicy {}: {message}", ns.name).as_str()),
            "{name}"
        );
    }
    let elsewhere = other.wait_done("namespace").await;
    assert_eq!(
        outcome(&elsewhere),
        (Some(Phase::Failed), Some(Reason::PolicyViolation))
    );
    assert_eq!(
        status(&elsewhere).message.as_deref(),
        Some(
            format!(
                "TaskRunPolicy {}: TaskRuns may not run in this namespace (allowedNamespaces)",
                other.name
            )
            .as_str()
        )
    );
    let docker = common::docker().await;
    assert!(ns.containers(&docker).await.is_empty());
    assert!(other.containers(&docker).await.is_empty());
}

#[tokio::test]
async fn the_policy_defaults_reach_a_run_that_sets_none() {
    let ns = TestNamespace::new("policy-defaults").await;
    let mut objects = ClusterObjects::default();
    objects
        .policy(
            &ns.client,
            &ns.name,
            "defaultLimits: {cpu: 250m, memory: 32Mi}\nmaxLimits: {memory: 64Mi}\npidsLimit: 128\ndefaultNetwork: None",
        )
        .await;
    let _agent = agent(&ns, &ns.name);
    ns.create(&common::taskrun_yaml(
        "defaulted",
        "image: busybox\ncommand: [sh, -c, 'ls /sys/class/net']\ncleanup: Never",
    ))
    .await;
    let done = ns.wait_done("defaulted").await;
    assert_eq!(
        outcome(&done),
        (Some(Phase::Succeeded), Some(Reason::Completed)),
        "{:?}",
        done.status
    );
    assert_eq!(status(&done).log_tail.as_deref(), Some("lo\n"));
    let host = inspect(&done).await.host_config.unwrap();
    assert_eq!(host.memory, Some(32 << 20));
    assert_eq!(host.nano_cpus, Some(250_000_000));
    assert_eq!(host.pids_limit, Some(128));
    assert_eq!(host.network_mode.as_deref(), Some("none"));
}

/// A case of `tests/data/policy-cases.yaml`.
#[derive(Deserialize)]
struct Case {
    name: String,
    policy: serde_yaml::Value,
    spec: serde_yaml::Value,
}

/// Creates `taskrun` as a server-side dry run: `Err` holds the API server's refusal.
async fn admit(api: &Api<TaskRun>, taskrun: &TaskRun) -> Result<(), String> {
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api.create(&dry_run, taskrun).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) => Err(e.message),
        Err(other) => panic!("the API server did not answer: {other}"),
    }
}

#[tokio::test]
async fn the_admission_policy_and_the_agent_agree_on_every_case() {
    let ns = TestNamespace::new("policy-admission").await;
    let text = std::fs::read_to_string(common::repo_root().join("tests/data/policy-cases.yaml"))
        .unwrap()
        .replace("$NAMESPACE", &ns.name);
    let cases: Vec<Case> = serde_yaml::from_str(&text).unwrap();
    let mut objects = ClusterObjects::default();
    let mut expected = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let name = format!("{}-{i}", ns.name);
        let policy = objects
            .policy(
                &ns.client,
                &name,
                &serde_yaml::to_string(&case.policy).unwrap(),
            )
            .await;
        objects
            .binding(&ns.client, &ns.name, &name, Some(&i.to_string()))
            .await;
        let spec: TaskRunSpec = serde_yaml::from_value(case.spec.clone()).unwrap();
        let mut taskrun = TaskRun::new(&format!("case-{i}"), spec.clone());
        taskrun.metadata.labels = Some(BTreeMap::from([(
            "taskrun.dev/policy-case".to_string(),
            i.to_string(),
        )]));
        let first = policy_violations(&policy, &ns.name, &spec)
            .into_iter()
            .next()
            .map(|v| v.message);
        expected.push((taskrun, first));
    }
    let api = ns.taskruns();
    let mut disagreements = Vec::new();
    for ((taskrun, agent), case) in expected.iter().zip(&cases) {
        // A binding or policy reaches the admission chain moments after it is written: until
        // then the API server admits what it should refuse, never the other way round.
        let mut server = admit(&api, taskrun).await;
        let started = std::time::Instant::now();
        while agent.is_some() && server.is_ok() && started.elapsed() < common::TIMEOUT {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            server = admit(&api, taskrun).await;
        }
        let agrees = match (&server, agent) {
            (Ok(()), None) => true,
            (Err(refusal), Some(message)) => {
                refusal.ends_with(&format!("denied request: {message}"))
            }
            _ => false,
        };
        if !agrees {
            disagreements.push(format!(
                "{}: the API server says {server:?}, the agent {agent:?}",
                case.name
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} cases disagree:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements.join("\n")
    );

    // And as a user meets it: `kubectl apply` refused, naming the policy, rule and field.
    let refused = cases
        .iter()
        .position(|c| c.name == "an image outside the allowed ones")
        .unwrap();
    let manifest = format!(
        "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: by-kubectl\n  labels: {{taskrun.dev/policy-case: \"{refused}\"}}\nspec:\n  image: alpine\n"
    );
    let output = common::kubectl_with_input(&["apply", "-n", &ns.name, "-f", "-"], &manifest);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stderr.contains(&format!(
                "TaskRunPolicy {}-{refused}: spec.image matches none of allowedImages",
                ns.name
            )),
        "kubectl apply: {stderr}"
    );
    let _ = Api::<TaskRun>::namespaced(ns.client.clone(), &ns.name)
        .delete("by-kubectl", &DeleteParams::default())
        .await;
}

#[tokio::test]
async fn a_namespace_at_its_ceiling_waits_and_runs_no_more_at_once_than_it_allows() {
    let ns = TestNamespace::new("ceiling").await;
    let mut objects = ClusterObjects::default();
    objects
        .policy(&ns.client, &ns.name, "maxRunningPerNamespace: 1")
        .await;
    let _agent = agent(&ns, &ns.name);
    let runs = ["first", "second", "third"];
    for name in runs {
        ns.create(&common::taskrun_yaml(
            name,
            "image: busybox\ncommand: [sleep, '2']\ncleanup: Never",
        ))
        .await;
    }
    let mut waited = false;
    for name in runs {
        let taskrun = ns
            .wait_for(name, "Running or NamespaceLimit", |tr| {
                matches!(
                    reason(tr),
                    Some(Reason::NamespaceLimit | Reason::Running | Reason::Completed)
                )
            })
            .await;
        if let Some(Reason::NamespaceLimit) = status(&taskrun).reason {
            let message = status(&taskrun).message.clone().unwrap_or_default();
            assert!(message.contains("maxRunningPerNamespace (1)"), "{message}");
            waited = true;
        }
    }
    assert!(waited, "two of three runs waited for the ceiling");
    let mut spans = Vec::new();
    for name in runs {
        let done = ns.wait_done(name).await;
        assert_eq!(
            outcome(&done),
            (Some(Phase::Succeeded), Some(Reason::Completed))
        );
        let state = inspect(&done).await.state.expect("a container state");
        let at = |time: Option<String>| -> jiff::Timestamp { time.unwrap().parse().unwrap() };
        spans.push((at(state.started_at), at(state.finished_at)));
    }
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "two runs of one namespace overlapped: {spans:?}"
        );
    }
}
