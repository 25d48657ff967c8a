//! The operator as users install it: `make test` brings up a kubelet node (`node-a`, with
//! containerd, a CNI bridge and kube-proxy) and these tests install `deploy/` on it, so the agent
//! runs as its DaemonSet pod and the control plane's own controllers (namespace, garbage
//! collector, DaemonSet) act on TaskRuns. Each test's TaskRuns carry no class, as a user's would,
//! and are pinned to `node-a` with `spec.nodeName`, the node of the DaemonSet agent the tests
//! deploy. The tests take turns: one cordons the node.

mod common;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use taskrun_operator::api::{Phase, Reason, TaskRun};
use tokio::sync::{Mutex, MutexGuard};

use common::{TestNamespace, kubectl, phase, phase_is, reason_is};

const NODE: &str = "node-a";
const AGENTS: &str = "taskrun-system";

/// Installs the operator on the node once per test binary, running the image just built, and
/// lets one test at a time use it.
async fn node_agent() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::const_new(());
    static DEPLOYED: std::sync::Once = std::sync::Once::new();
    let turn = TURN.lock().await;
    DEPLOYED.call_once(|| {
        common::apply_deploy();
        for (what, args) in [
            (
                "restart",
                [
                    "-n",
                    AGENTS,
                    "rollout",
                    "restart",
                    "daemonset/taskrun-operator",
                ]
                .as_slice(),
            ),
            (
                "rollout",
                &[
                    "-n",
                    AGENTS,
                    "rollout",
                    "status",
                    "daemonset/taskrun-operator",
                    "--timeout=120s",
                ],
            ),
        ] {
            let output = kubectl().args(args).output().unwrap();
            assert!(output.status.success(), "{what}: {output:?}");
        }
    });
    turn
}

/// Creates a TaskRun as a user would: no class, pinned to the node.
async fn create(ns: &TestNamespace, name: &str, spec: &str, extra_metadata: &str) -> TaskRun {
    let yaml = format!(
        "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: {name}\n{extra_metadata}spec:\n  nodeName: {NODE}\n{}\n",
        spec.lines()
            .map(|line| format!("  {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let taskrun: TaskRun = serde_yaml::from_str(&yaml).unwrap();
    ns.taskruns()
        .create(&PostParams::default(), &taskrun)
        .await
        .expect("create TaskRun")
}

async fn agent_pods(ns: &TestNamespace) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), AGENTS);
    pods.list(&ListParams::default().labels("app.kubernetes.io/name=taskrun-operator"))
        .await
        .unwrap()
        .items
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
async fn a_users_taskrun_runs_through_the_daemonset_pod_on_a_ready_node() {
    let _turn = node_agent().await;
    let ns = TestNamespace::new("kubelet").await;
    let nodes: Api<Node> = Api::all(ns.client.clone());
    let node = nodes.get(NODE).await.expect("the node is registered");
    let node_ready = node
        .status
        .and_then(|s| s.conditions)
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    assert!(node_ready, "node {NODE} is Ready");
    let pods = agent_pods(&ns).await;
    assert_eq!(pods.len(), 1, "one agent pod for the one node");
    let pod = &pods[0];
    assert!(ready(pod), "the agent pod is Ready (its /readyz answers)");
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(NODE)
    );

    create(
        &ns,
        "hello",
        "image: busybox\ncommand: [sh, -c, 'echo hello from the node']",
        "",
    )
    .await;
    let done = ns.wait_done("hello").await;
    let status = done.status.unwrap();
    assert_eq!(
        (status.phase, status.node_name.as_deref()),
        (Some(Phase::Succeeded), Some(NODE)),
        "the agent names itself after the Node, from the downward API"
    );
    assert_eq!(status.log_tail.as_deref(), Some("hello from the node\n"));

    // The agent serves on the pod's loopback: a task on the node reaches the pod's address,
    // where nothing of the agent's listens, and the pod answers so (a refusal, not silence).
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("the agent pod has an address");
    create(
        &ns,
        "reach",
        &format!(
            "image: busybox\ncommand: [sh, -c, 'if echo | nc -w 3 {pod_ip} 8080; then echo reached; else echo out of reach; fi']"
        ),
        "",
    )
    .await;
    let reach = ns.wait_done("reach").await;
    let tail = reach.status.unwrap().log_tail.unwrap_or_default();
    // stdout and stderr reach the log in either order.
    assert!(
        tail.lines().any(|line| line == "out of reach")
            && tail.contains("Connection refused")
            && !tail.lines().any(|line| line == "reached"),
        "{tail:?}"
    );

    let logs = kubectl()
        .args(["logs", "-n", AGENTS, &pod.name_any()])
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains("controller started") && logs.contains(NODE),
        "kubectl logs shows the agent: {logs}"
    );
}

#[tokio::test]
async fn deleting_a_namespace_with_finished_and_running_runs_completes() {
    let _turn = node_agent().await;
    let ns = TestNamespace::new("kubelet-ns").await;
    create(
        &ns,
        "finished",
        "image: busybox\ncommand: ['true']\ncleanup: Never",
        "",
    )
    .await;
    create(
        &ns,
        "running",
        "image: busybox\ncommand: [sleep, '300']\nterminationGracePeriodSeconds: 0",
        "",
    )
    .await;
    ns.wait_done("finished").await;
    ns.wait_for("running", "Running", phase_is(Phase::Running))
        .await;

    let namespaces: Api<Namespace> = Api::all(ns.client.clone());
    namespaces
        .delete(&ns.name, &DeleteParams::default())
        .await
        .unwrap();
    common::eventually("the namespace is gone", || async {
        namespaces.get_opt(&ns.name).await.unwrap().is_none()
    })
    .await;
    let docker = common::docker().await;
    assert!(
        ns.containers(&docker).await.is_empty(),
        "no container of the namespace is left"
    );
}

#[tokio::test]
async fn a_taskrun_owned_by_a_configmap_goes_with_it() {
    let _turn = node_agent().await;
    let ns = TestNamespace::new("kubelet-gc").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(ns.client.clone(), &ns.name);
    let owner = config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "owner" } })).unwrap(),
        )
        .await
        .unwrap();
    let owned_by = format!(
        "  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: owner, uid: {}}}\n",
        owner.uid().unwrap()
    );
    create(
        &ns,
        "owned",
        "image: busybox\ncommand: [sleep, '300']\nterminationGracePeriodSeconds: 0",
        &owned_by,
    )
    .await;
    ns.wait_for("owned", "Running", phase_is(Phase::Running))
        .await;

    config_maps
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    common::eventually("the garbage collector deletes the TaskRun", || async {
        ns.taskruns().get_opt("owned").await.unwrap().is_none()
    })
    .await;
    let docker = common::docker().await;
    assert!(
        ns.containers(&docker).await.is_empty(),
        "its container went too"
    );
}

#[tokio::test]
async fn a_cordoned_node_takes_no_new_runs_until_uncordoned() {
    let _turn = node_agent().await;
    let ns = TestNamespace::new("kubelet-cordon").await;
    let cordon = |verb: &'static str| {
        let output = kubectl().args([verb, NODE]).output().unwrap();
        assert!(output.status.success(), "kubectl {verb}: {output:?}");
    };
    cordon("cordon");
    struct Uncordon;
    impl Drop for Uncordon {
        fn drop(&mut self) {
            let _ = kubectl().args(["uncordon", NODE]).output();
        }
    }
    let _uncordon = Uncordon;

    create(&ns, "waits", "image: busybox\ncommand: ['true']", "").await;
    let waiting = ns
        .wait_for("waits", "Unschedulable", reason_is(Reason::Unschedulable))
        .await;
    assert_eq!(phase(&waiting), Some(Phase::Pending));
    let docker = common::docker().await;
    assert!(ns.containers(&docker).await.is_empty(), "nothing started");

    cordon("uncordon");
    let done = ns.wait_done("waits").await;
    assert_eq!(phase(&done), Some(Phase::Succeeded));
}

#[tokio::test]
async fn the_daemonsets_new_pod_adopts_a_run_whose_agent_pod_was_deleted() {
    let _turn = node_agent().await;
    let ns = TestNamespace::new("kubelet-adopt").await;
    create(
        &ns,
        "outlives",
        "image: busybox\ncommand: [sh, -c, 'sleep 8; exit 7']\ncleanup: Never",
        "",
    )
    .await;
    ns.wait_for("outlives", "Running", phase_is(Phase::Running))
        .await;
    let old = agent_pods(&ns).await[0].name_any();
    let deleted = kubectl()
        .args(["delete", "pod", "-n", AGENTS, &old, "--wait=false"])
        .output()
        .unwrap();
    assert!(deleted.status.success(), "{deleted:?}");

    let done = ns.wait_done("outlives").await;
    let status = done.status.unwrap();
    assert_eq!(
        (status.phase, status.exit_code),
        (Some(Phase::Failed), Some(7)),
        "the exit was recorded by the new pod"
    );
    let pods = agent_pods(&ns).await;
    assert!(
        pods.iter().all(|p| p.name_any() != old),
        "a new agent pod recorded it"
    );
    let docker = common::docker().await;
    assert_eq!(
        ns.containers(&docker).await.len(),
        1,
        "one container, adopted"
    );
    common::eventually("the new agent pod is Ready", || async {
        agent_pods(&ns).await.iter().any(ready)
    })
    .await;
}
