//! What GitOps tools read from a TaskRun, computed by their own implementations: kstatus (the
//! library Flux, kpt and kstatus-based pipelines use) and the Argo CD health check in
//! `deploy/argocd/health.lua` run in gopher-lua, both on TaskRuns taken from the real API
//! server in every state of a run.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{DeleteParams, Patch, PatchParams};
use serde::Deserialize;
use serde_json::{Value, json};
use taskrun_operator::api::Phase;

use common::{TestNamespace, kubectl, phase, phase_is, repo_root, taskrun_yaml};

/// What the tools made of one TaskRun.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Verdict {
    name: String,
    kstatus: String,
    kstatus_message: String,
    health: String,
    health_message: String,
}

/// Runs kstatus and the Argo CD health check on `objects`, as the API server returned them.
fn verdicts(objects: &[Value]) -> BTreeMap<String, Verdict> {
    let built = Command::new(repo_root().join("scripts/gitops-verdicts.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/gitops-verdicts.sh");
    assert!(
        built.status.success(),
        "building the GitOps verdict tool failed"
    );
    let tool = String::from_utf8(built.stdout).unwrap().trim().to_string();
    let mut child = Command::new(&tool)
        .arg(repo_root().join("deploy/argocd/health.lua"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the GitOps verdict tool");
    let list = json!({ "apiVersion": "v1", "kind": "List", "items": objects });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(list.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let verdict: Verdict = serde_json::from_str(line).expect("a verdict per line");
            (verdict.name.clone(), verdict)
        })
        .collect()
}

/// The TaskRun exactly as the API server serves it.
fn served(ns: &TestNamespace, name: &str) -> Value {
    let output = kubectl()
        .args(["get", "taskrun", name, "-n", &ns.name, "-o", "json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kubectl get taskrun {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Runs `kubectl wait --for=condition=CONDITION` on a TaskRun; true when it returned in time.
fn kubectl_wait(ns: &TestNamespace, condition: &str, name: &str) -> bool {
    kubectl()
        .args([
            "wait",
            &format!("--for=condition={condition}"),
            &format!("taskrun/{name}"),
            "-n",
            &ns.name,
            "--timeout=3s",
        ])
        .output()
        .unwrap()
        .status
        .success()
}

#[tokio::test]
async fn kstatus_and_argo_cd_read_every_state_of_a_run() {
    let ns = TestNamespace::new("gitops").await;
    let hold = "test.taskrun.dev/hold";
    // Taken before any agent of its class runs: no agent has written its status yet.
    ns.create(&taskrun_yaml(
        "created",
        "image: busybox\ncommand: [\"true\"]",
    ))
    .await;
    let mut objects = vec![served(&ns, "created")];

    let _agent = ns.start_controller();
    let sleeping = "image: busybox\ncommand: [sleep, '300']\nterminationGracePeriodSeconds: 0";
    ns.create(&taskrun_yaml("running", sleeping)).await;
    ns.create(&taskrun_yaml("cancelled", sleeping)).await;
    ns.create(&taskrun_yaml(
        "succeeded",
        "image: busybox\ncommand: [\"true\"]",
    ))
    .await;
    ns.create(&taskrun_yaml(
        "failed",
        "image: busybox\ncommand: [sh, -c, 'exit 3']",
    ))
    .await;
    ns.create(&taskrun_yaml(
        "deadline",
        "image: busybox\ncommand: [sleep, '30']\ntimeoutSeconds: 1\nterminationGracePeriodSeconds: 0",
    ))
    .await;
    let deleting = taskrun_yaml("deleting", sleeping).replace(
        "metadata:\n",
        &format!("metadata:\n  finalizers: [{hold}]\n"),
    );
    ns.create(&deleting).await;

    objects.push(served(
        &ns,
        &ns.wait_for("running", "Running", phase_is(Phase::Running))
            .await
            .metadata
            .name
            .unwrap(),
    ));
    ns.wait_for("cancelled", "Running", phase_is(Phase::Running))
        .await;
    ns.cancel("cancelled").await;
    for name in ["succeeded", "failed", "deadline", "cancelled"] {
        ns.wait_done(name).await;
        objects.push(served(&ns, name));
    }
    ns.wait_for("deleting", "Running", phase_is(Phase::Running))
        .await;
    ns.taskruns()
        .delete("deleting", &DeleteParams::default())
        .await
        .unwrap();
    ns.wait_for("deleting", "deletion", |t| {
        t.metadata.deletion_timestamp.is_some()
    })
    .await;
    objects.push(served(&ns, "deleting"));

    let seen = verdicts(&objects);
    let expected = [
        ("created", "InProgress", "Progressing"),
        ("running", "InProgress", "Progressing"),
        ("succeeded", "Current", "Healthy"),
        ("failed", "Failed", "Degraded"),
        ("deadline", "Failed", "Degraded"),
        ("cancelled", "Failed", "Degraded"),
        ("deleting", "Terminating", "Progressing"),
    ];
    let table: Vec<(&str, &str, &str)> = expected
        .iter()
        .map(|(name, _, _)| {
            let verdict = &seen[*name];
            (*name, verdict.kstatus.as_str(), verdict.health.as_str())
        })
        .collect();
    assert_eq!(table, expected, "verdicts: {seen:#?}");
    assert!(seen["running"].health_message.contains("Running"));
    assert!(seen["failed"].health_message.contains("Error"));
    assert!(seen["failed"].health_message.contains("exited with code 3"));
    assert!(
        seen["failed"]
            .kstatus_message
            .contains("exited with code 3")
    );
    assert!(seen["deadline"].health_message.contains("DeadlineExceeded"));
    assert!(seen["cancelled"].health_message.contains("Cancelled"));

    // `kubectl wait`: Ready only for a success, Done for every end.
    assert!(kubectl_wait(&ns, "Ready", "succeeded"));
    assert!(!kubectl_wait(&ns, "Ready", "failed"));
    assert!(kubectl_wait(&ns, "Done", "succeeded"));
    assert!(kubectl_wait(&ns, "Done", "failed"));

    // A cancel of a run that already ended changes nothing but is recorded as seen. The agent
    // caches no conditions of an ended run: its write must keep the stored ones.
    let conditions_before = ns
        .taskruns()
        .get("succeeded")
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions;
    ns.cancel("succeeded").await;
    let seen_again = ns
        .wait_for("succeeded", "observedGeneration 2", |t| {
            t.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
        })
        .await;
    assert_eq!(seen_again.metadata.generation, Some(2));
    assert_eq!(
        seen_again.status.as_ref().unwrap().phase,
        Some(Phase::Succeeded)
    );
    let conditions = &seen_again.status.as_ref().unwrap().conditions;
    let states = |conditions: &[Condition]| -> Vec<(String, String, Time)> {
        conditions
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.last_transition_time.clone(),
                )
            })
            .collect()
    };
    assert_eq!(states(conditions), states(&conditions_before));
    assert!(
        conditions.iter().all(|c| c.observed_generation == Some(2)),
        "{conditions:#?}"
    );
    assert!(kubectl_wait(&ns, "Ready", "succeeded"));
    let after_cancel = verdicts(&[served(&ns, "succeeded")]);
    assert_eq!(after_cancel["succeeded"].kstatus, "Current");
    assert_eq!(after_cancel["succeeded"].health, "Healthy");

    release_hold(&ns, "deleting", hold).await;
}

/// Takes the test's own finalizer off a TaskRun so its deletion can finish.
async fn release_hold(ns: &TestNamespace, name: &str, hold: &str) {
    common::eventually("the agent lets the deleted run go", || async {
        let Ok(taskrun) = ns.taskruns().get(name).await else {
            return true;
        };
        let others: Vec<&String> = taskrun
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != hold)
            .collect();
        if !others.is_empty() {
            return false;
        }
        ns.taskruns()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "finalizers": others } })),
            )
            .await
            .is_ok()
    })
    .await;
}

#[tokio::test]
async fn the_argo_cd_config_map_patch_adds_the_health_check_as_written() {
    let ns = TestNamespace::new("argocd-cm").await;
    let lua = std::fs::read_to_string(repo_root().join("deploy/argocd/health.lua")).unwrap();
    let output = kubectl()
        .args(["kustomize"])
        .arg(repo_root().join("deploy/argocd"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kubectl kustomize deploy/argocd: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut config_map: Value = serde_yaml::from_slice(&output.stdout).unwrap();
    let key = "resource.customizations.health.taskrun.dev_TaskRun";
    assert_eq!(
        (&config_map["kind"], &config_map["metadata"]["name"]),
        (&json!("ConfigMap"), &json!("argocd-cm"))
    );
    assert_eq!(config_map["data"][key], Value::String(lua.clone()));

    // Applied onto an Argo CD that is already configured, it adds its key and keeps the rest.
    let existing = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "argocd-cm", "namespace": ns.name },
        "data": { "url": "https://argocd.example" },
    });
    let applied = common::kubectl_with_input(
        &[
            "apply",
            "--server-side",
            "--field-manager=argocd-install",
            "-f",
            "-",
        ],
        &existing.to_string(),
    );
    assert!(applied.status.success(), "{applied:?}");
    config_map["metadata"]["namespace"] = json!(ns.name);
    let applied = common::kubectl_with_input(
        &["apply", "--server-side", "-f", "-"],
        &config_map.to_string(),
    );
    assert!(applied.status.success(), "{applied:?}");
    let stored = kubectl()
        .args([
            "get",
            "configmap",
            "argocd-cm",
            "-n",
            &ns.name,
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let stored: Value = serde_json::from_slice(&stored.stdout).unwrap();
    assert_eq!(stored["data"]["url"], "https://argocd.example");
    assert_eq!(stored["data"][key], Value::String(lua));
}

/// The example manifests of docs/gitops.md, each applied as a user would
/// (in this test's class), run to success.
#[tokio::test]
async fn the_gitops_examples_run() {
    let ns = TestNamespace::new("gitops-examples").await;
    let _agent = ns.start_controller();
    let mut names = Vec::new();
    for file in [
        "examples/gitops/argocd/migrate-database.yaml",
        "examples/gitops/argocd/smoke-test.yaml",
        "examples/gitops/flux/tasks/report.yaml",
    ] {
        let yaml = std::fs::read_to_string(repo_root().join(file)).unwrap();
        let created = ns.create(&yaml).await;
        names.push(created.metadata.name.unwrap());
    }
    for name in names {
        let done = ns.wait_done(&name).await;
        assert_eq!(phase(&done), Some(Phase::Succeeded), "{name}");
    }
}
