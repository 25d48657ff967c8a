//! The TaskRun API as users meet it: the generated CRD is the checked-in one, the API server
//! accepts the examples, and rejects bad input with a message that names the field.

mod common;

use std::process::Output;

use kube::CustomResourceExt;
use taskrun_operator::api::TaskRun;

use common::{TestNamespace, kubectl};

fn apply(namespace: &str, yaml: &str) -> Output {
    common::kubectl_with_input(
        &["apply", "--validate=strict", "-n", namespace, "-f", "-"],
        yaml,
    )
}

#[test]
fn checked_in_crd_matches_the_rust_types() {
    let generated = serde_yaml::to_string(&TaskRun::crd()).unwrap();
    let checked_in =
        std::fs::read_to_string(common::repo_root().join("crds/taskrun.yaml")).unwrap();
    assert!(
        generated == checked_in,
        "crds/taskrun.yaml is stale: run `make crds` and commit the result"
    );
}

#[test]
fn checked_in_policy_crd_admission_policy_and_built_in_policy_match_the_rust_rules() {
    for (args, file) in [
        (&["crd", "taskrunpolicy"][..], "crds/taskrunpolicy.yaml"),
        (&["admission"][..], "deploy/admission.yaml"),
        (&["policy"][..], "deploy/policies/cluster.yaml"),
    ] {
        let generated = std::process::Command::new(env!("CARGO_BIN_EXE_taskrun"))
            .args(args)
            .output()
            .unwrap();
        assert!(generated.status.success(), "taskrun {args:?}");
        let checked_in = std::fs::read_to_string(common::repo_root().join(file)).unwrap();
        assert!(
            String::from_utf8_lossy(&generated.stdout) == checked_in,
            "{file} is stale: run `make crds` and commit the result"
        );
    }
}

#[tokio::test]
async fn examples_are_accepted_and_listed_with_printer_columns() {
    let ns = TestNamespace::new("crd-examples").await;
    for example in ["hello-gopher", "gopher-loops", "failing", "limited"] {
        let path = common::repo_root().join(format!("examples/{example}.yaml"));
        let output = kubectl()
            .args(["apply", "--validate=strict", "-n", &ns.name, "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = kubectl()
        .args(["get", "taskruns", "-n", &ns.name, "-o", "wide"])
        .output()
        .unwrap();
    let table = String::from_utf8(output.stdout).unwrap();
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "PHASE", "EXIT", "CODE", "REASON", "AGE", "IMAGE", "NODE"
        ],
        "{table}"
    );
    assert_eq!(table.lines().count(), 5, "{table}");

    let short = kubectl()
        .args(["get", "trun", "-n", &ns.name, "-o", "name"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&short.stdout).lines().count(), 4);
    let category = kubectl()
        .args(["get", "taskrun-dev", "-n", &ns.name, "-o", "name"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&category.stdout);
    assert_eq!(
        listed.lines().filter(|l| l.starts_with("taskrun.")).count(),
        4,
        "{listed}{}",
        String::from_utf8_lossy(&category.stderr)
    );
}

#[tokio::test]
async fn kubectl_explain_shows_the_field_docs() {
    common::ensure_crd(&common::client().await).await;
    // The API server publishes a new CRD's OpenAPI schema a moment after it is established.
    let output = common::eventually_some("kubectl explain taskrun.spec.cleanup", || async {
        let output = kubectl()
            .args(["explain", "taskrun.spec.cleanup"])
            .output()
            .unwrap();
        output.status.success().then_some(output)
    })
    .await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("When the finished container is removed"),
        "{text}"
    );
    assert!(text.contains("OnSuccess"), "{text}");
}

#[tokio::test]
async fn malformed_taskruns_are_rejected_with_the_field_named() {
    let ns = TestNamespace::new("crd-invalid").await;
    let long = "a".repeat(600);
    let many: Vec<String> = (0..257).map(|i| format!("\"{i}\"")).collect();
    let cases: Vec<(&str, String, &str)> = vec![
        ("missing image", "command: [\"true\"]".into(), "spec.image"),
        (
            "working directory in the node's /proc",
            "image: busybox\nworkingDir: /proc/self/fd/8".into(),
            "spec.workingDir",
        ),
        (
            "working directory spelled around /sys",
            "image: busybox\nworkingDir: //./sys/kernel".into(),
            "spec.workingDir",
        ),
        (
            "mount over /dev",
            "image: busybox\nvolumes: [{name: t, emptyDir: {}}]\nvolumeMounts: [{name: t, mountPath: /dev/shm}]".into(),
            "spec.volumeMounts[0].mountPath",
        ),
        ("empty image", "image: \"\"".into(), "spec.image"),
        (
            "image with whitespace",
            "image: \"busy box\"".into(),
            "spec.image",
        ),
        ("image too long", format!("image: {long}"), "spec.image"),
        (
            "unknown pull policy",
            "image: busybox\nimagePullPolicy: Sometimes".into(),
            "spec.imagePullPolicy",
        ),
        (
            "unknown cleanup",
            "image: busybox\ncleanup: Maybe".into(),
            "spec.cleanup",
        ),
        (
            "negative timeout",
            "image: busybox\ntimeoutSeconds: -5".into(),
            "spec.timeoutSeconds",
        ),
        (
            "negative retry limit",
            "image: busybox\nretries: {limit: -1}".into(),
            "spec.retries.limit",
        ),
        (
            "retry limit over 100",
            "image: busybox\nretries: {limit: 101}".into(),
            "spec.retries.limit",
        ),
        (
            "unknown retry reason",
            "image: busybox\nretries: {limit: 1, reasons: [Cancelled]}".into(),
            "spec.retries.reasons",
        ),
        (
            "back-off cap below its first wait",
            "image: busybox\nretries: {limit: 1, backoff: {seconds: 30, maxSeconds: 10}}".into(),
            "spec.retries.backoff.maxSeconds",
        ),
        (
            "default back-off cap below its first wait",
            "image: busybox\nretries: {limit: 1, backoff: {seconds: 400}}".into(),
            "spec.retries.backoff.maxSeconds",
        ),
        (
            "zero back-off",
            "image: busybox\nretries: {limit: 1, backoff: {seconds: 0}}".into(),
            "spec.retries.backoff.seconds",
        ),
        (
            "exit code out of range",
            "image: busybox\nretries: {limit: 1, exitCodes: [256]}".into(),
            "spec.retries.exitCodes",
        ),
        (
            "zero pending timeout",
            "image: busybox\npendingTimeoutSeconds: 0".into(),
            "spec.pendingTimeoutSeconds",
        ),
        (
            "negative active deadline",
            "image: busybox\nactiveDeadlineSeconds: -1".into(),
            "spec.activeDeadlineSeconds",
        ),
        (
            "zero timeout",
            "image: busybox\ntimeoutSeconds: 0".into(),
            "spec.timeoutSeconds",
        ),
        (
            "absurd timeout",
            "image: busybox\ntimeoutSeconds: 99999999".into(),
            "spec.timeoutSeconds",
        ),
        (
            "negative ttl",
            "image: busybox\nttlSecondsAfterFinished: -1".into(),
            "spec.ttlSecondsAfterFinished",
        ),
        (
            "negative deleteAfterSeconds",
            "image: busybox\ndeleteAfterSeconds: -1".into(),
            "spec.deleteAfterSeconds",
        ),
        (
            "deleteAfterSeconds beyond a year",
            "image: busybox\ndeleteAfterSeconds: 31536001".into(),
            "spec.deleteAfterSeconds",
        ),
        (
            "absurd grace period",
            "image: busybox\nterminationGracePeriodSeconds: 99999".into(),
            "spec.terminationGracePeriodSeconds",
        ),
        (
            "env name starting with a digit",
            "image: busybox\nenv: [{name: 1BAD, value: x}]".into(),
            "spec.env[0].name",
        ),
        (
            "env name with a dash",
            "image: busybox\nenv: [{name: HAS-DASH, value: x}]".into(),
            "spec.env[0].name",
        ),
        (
            "duplicate env names",
            "image: busybox\nenv: [{name: A, value: x}, {name: A, value: y}]".into(),
            "spec.env[1]",
        ),
        (
            "env value too long",
            format!(
                "image: busybox\nenv: [{{name: A, value: {}}}]",
                "v".repeat(33000)
            ),
            "spec.env[0].value",
        ),
        (
            "too many command items",
            format!("image: busybox\ncommand: [{}]", many.join(",")),
            "spec.command",
        ),
        (
            "argument too long",
            format!("image: busybox\nargs: [\"{}\"]", "x".repeat(5000)),
            "spec.args[0]",
        ),
        (
            "relative working dir",
            "image: busybox\nworkingDir: tmp".into(),
            "spec.workingDir",
        ),
        (
            "a capability beyond Docker's default set",
            "image: busybox\nsecurityContext: {capabilities: {add: [SYS_ADMIN]}}".into(),
            "spec.securityContext.capabilities.add[0]",
        ),
        (
            "ALL added",
            "image: busybox\nsecurityContext: {capabilities: {add: [ALL]}}".into(),
            "spec.securityContext.capabilities.add",
        ),
        (
            "root with runAsNonRoot",
            "image: busybox\nsecurityContext: {runAsUser: 0, runAsNonRoot: true}".into(),
            "spec.securityContext.runAsUser",
        ),
        (
            "the host network",
            "image: busybox\nnetwork: Host".into(),
            "spec.network",
        ),
        (
            "a read-only root with files to write",
            "image: busybox\nsecurityContext: {readOnlyRootFilesystem: true}\nvolumes: [{name: v, configMap: {name: c}}]".into(),
            "spec.securityContext.readOnlyRootFilesystem",
        ),
        (
            "unknown field",
            "image: busybox\nrunner: busybox".into(),
            "spec.runner",
        ),
        (
            "wrongly typed cancel",
            "image: busybox\ncancel: \"yes\"".into(),
            "spec.cancel",
        ),
        (
            "negative cpu",
            "image: busybox\nresources: {limits: {cpu: \"-1\"}}".into(),
            "spec.resources.limits.cpu",
        ),
        (
            "tiny memory",
            "image: busybox\nresources: {limits: {memory: 1Mi}}".into(),
            "spec.resources.limits.memory",
        ),
        (
            "memory that is not a quantity",
            "image: busybox\nresources: {limits: {memory: lots}}".into(),
            "spec.resources.limits.memory",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (what, spec, field)) in cases.iter().enumerate() {
        let output = apply(&ns.name, &common::taskrun_yaml(&format!("bad-{i}"), spec));
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() || !stderr.contains(field) {
            failures.push(format!(
                "{what}: expected a rejection naming {field}, got {:?}: {stderr}",
                output.status.code()
            ));
        }
    }
    let stored = kubectl()
        .args(["get", "taskruns", "-n", &ns.name, "-o", "name"])
        .output()
        .unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases were not rejected properly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(
        String::from_utf8_lossy(&stored.stdout).trim(),
        "",
        "no malformed TaskRun may be stored"
    );
}

#[tokio::test]
async fn the_spec_is_immutable_except_cancel_going_true() {
    let ns = TestNamespace::new("crd-immutable").await;
    let created = apply(
        &ns.name,
        &common::taskrun_yaml("fixed", "image: busybox\ncommand: [\"true\"]"),
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let changes = [
        (
            "image change",
            "image: busybox:other\ncommand: [\"true\"]",
            "spec.image",
        ),
        (
            "command change",
            "image: busybox\ncommand: [\"false\"]",
            "spec.command",
        ),
        (
            "added timeout",
            "image: busybox\ncommand: [\"true\"]\ntimeoutSeconds: 5",
            "spec.timeoutSeconds",
        ),
        (
            "cleanup change",
            "image: busybox\ncommand: [\"true\"]\ncleanup: Never",
            "spec.cleanup",
        ),
        (
            "added retries",
            "image: busybox\ncommand: [\"true\"]\nretries: {limit: 3}",
            "spec.retries",
        ),
        (
            "added active deadline",
            "image: busybox\ncommand: [\"true\"]\nactiveDeadlineSeconds: 30",
            "spec.activeDeadlineSeconds",
        ),
        (
            "added deleteAfterSeconds",
            "image: busybox\ncommand: [\"true\"]\ndeleteAfterSeconds: 60",
            "spec.deleteAfterSeconds",
        ),
    ];
    for (what, spec, field) in changes {
        let output = apply(&ns.name, &common::taskrun_yaml("fixed", spec));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(field),
            "{what}: {stderr}"
        );
        assert!(stderr.contains("cannot be changed"), "{what}: {stderr}");
    }

    let cancelled = apply(
        &ns.name,
        &common::taskrun_yaml("fixed", "image: busybox\ncommand: [\"true\"]\ncancel: true"),
    );
    assert!(
        cancelled.status.success(),
        "cancel false -> true: {}",
        String::from_utf8_lossy(&cancelled.stderr)
    );
    let uncancelled = apply(
        &ns.name,
        &common::taskrun_yaml(
            "fixed",
            "image: busybox\ncommand: [\"true\"]\ncancel: false",
        ),
    );
    let stderr = String::from_utf8_lossy(&uncancelled.stderr);
    assert!(
        !uncancelled.status.success() && stderr.contains("spec.cancel"),
        "cancel true -> false: {stderr}"
    );
}

#[tokio::test]
async fn taskrun_run_refuses_exactly_what_the_api_server_refuses() {
    let ns = TestNamespace::new("one-source").await;
    let api = ns.taskruns();
    let specs = [
        "image: busybox",
        "image: BusyBox:latest",
        "image: 'busybox:'",
        "image: busybox@sha256:abc",
        "image: registry.example.com:5000/team/tool:v2",
        "image: busybox\ntimeoutSeconds: 0",
        "image: busybox\ntimeoutSeconds: 604800",
        "image: busybox\nterminationGracePeriodSeconds: 3601",
        "image: busybox\nworkingDir: tmp",
        "image: busybox\nenv: [{name: 1A}]",
        "image: busybox\nenv: [{name: A}, {name: A}]",
        "image: busybox\nresources: {limits: {cpu: 9m}}",
        "image: busybox\nresources: {limits: {cpu: 10m}}",
        "image: busybox\nresources: {limits: {cpu: '1025'}}",
        "image: busybox\nresources: {limits: {memory: 6Mi}}",
        "image: busybox\nresources: {limits: {memory: 6291455}}",
        "image: busybox\nnodeName: Node_A",
        "image: busybox\nenv: [{name: A, valueFrom: {secretKeyRef: {name: s, key: k}}}]",
        "image: busybox\nenv: [{name: A, value: x, valueFrom: {secretKeyRef: {name: s, key: k}}}]",
        "image: busybox\nenv: [{name: A, valueFrom: {}}]",
        "image: busybox\nenv: [{name: A, valueFrom: {secretKeyRef: {name: s, key: k}, configMapKeyRef: {name: c, key: k}}}]",
        "image: busybox\nenv: [{name: A, valueFrom: {configMapKeyRef: {name: Bad_Name, key: k}}}]",
        "image: busybox\nenvFrom: [{prefix: P_, secretRef: {name: s, optional: true}}]",
        "image: busybox\nenvFrom: [{prefix: P_}]",
        "image: busybox\nenvFrom: [{prefix: 1P, configMapRef: {name: c}}]",
        "image: busybox\nvolumes: [{name: v, secret: {secretName: s, defaultMode: 256, items: [{key: k, path: a/b, mode: 511}]}}]\nvolumeMounts: [{name: v, mountPath: /etc/v, readOnly: true}]",
        "image: busybox\nvolumes: [{name: v, secret: {secretName: s, items: [{key: k, path: ../b}]}}]",
        "image: busybox\nvolumes: [{name: v, secret: {secretName: s, items: [{key: k, path: /abs}]}}]",
        "image: busybox\nvolumes: [{name: v, configMap: {name: c, defaultMode: 512}}]",
        "image: busybox\nvolumes: [{name: v, configMap: {name: c}, emptyDir: {}}]",
        "image: busybox\nvolumes: [{name: v}]",
        "image: busybox\nvolumes: [{name: v, emptyDir: {sizeLimit: 64Mi}}]",
        "image: busybox\nvolumes: [{name: v, emptyDir: {sizeLimit: 1Ki}}]",
        "image: busybox\nvolumes: [{name: v, emptyDir: {sizeLimit: lots}}]",
        "image: busybox\nvolumes: [{name: v, emptyDir: {}}, {name: v, emptyDir: {}}]",
        "image: busybox\nvolumes: [{name: v, emptyDir: {}}]\nvolumeMounts: [{name: w, mountPath: /w}]",
        "image: busybox\nvolumes: [{name: v, emptyDir: {}}]\nvolumeMounts: [{name: v, mountPath: /a/../b}]",
        "image: busybox\nvolumes: [{name: v, emptyDir: {}}]\nvolumeMounts: [{name: v, mountPath: //}]",
        "image: busybox\nvolumes: [{name: v, emptyDir: {}}]\nvolumeMounts: [{name: v, mountPath: relative}]",
        "image: busybox\nvolumes: [{name: v, emptyDir: {}}]\nvolumeMounts: [{name: v, mountPath: /a}, {name: v, mountPath: /a}]",
        "image: busybox\nvolumeMounts: [{name: v, mountPath: /a}]",
        "image: busybox\nimagePullSecrets: [{name: pull}]",
        "image: busybox\nimagePullSecrets: [{name: pull}, {name: pull}]",
        "image: busybox\nserviceAccountName: robot",
        "image: busybox\nserviceAccountName: Robot",
        "image: busybox\nretries: {limit: -1}",
        "image: busybox\nretries: {limit: 100, reasons: [Error, NodeLost], exitCodes: [1, 255]}",
        "image: busybox\nretries: {limit: 1, backoff: {seconds: 30, maxSeconds: 10}}",
        "image: busybox\nretries: {limit: 1, backoff: {seconds: 400}}",
        "image: busybox\nretries: {limit: 1, backoff: {seconds: 10, maxSeconds: 10}}",
        "image: busybox\npendingTimeoutSeconds: 0\nactiveDeadlineSeconds: 5",
        "image: busybox\ndeleteAfterSeconds: 0",
        "image: busybox\ndeleteAfterSeconds: 31536000",
        "image: busybox\ndeleteAfterSeconds: 31536001",
        "image: busybox\ndeleteAfterSeconds: -1",
        "image: busybox\nnetwork: None",
        "image: busybox\nsecurityContext: {runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {add: [NET_BIND_SERVICE], drop: [ALL]}}",
        "image: busybox\nsecurityContext: {runAsUser: 0, runAsNonRoot: true}",
        "image: busybox\nsecurityContext: {runAsGroup: 10}",
        "image: busybox\nsecurityContext: {runAsUser: -1}",
        "image: busybox\nsecurityContext: {capabilities: {add: [ALL]}}",
        "image: busybox\nsecurityContext: {readOnlyRootFilesystem: true}\nvolumes: [{name: v, emptyDir: {}}]\nvolumeMounts: [{name: v, mountPath: /v}]",
        "image: busybox\nsecurityContext: {readOnlyRootFilesystem: true}\nvolumes: [{name: v, secret: {secretName: s}}]",
        "image: busybox\nsecurityContext: {readOnlyRootFilesystem: true}\nserviceAccountName: robot",
    ];
    for (index, spec) in specs.iter().enumerate() {
        let manifest = common::taskrun_yaml(&format!("t{index}"), spec);
        let taskrun: TaskRun = serde_yaml::from_str(&manifest).unwrap();
        let dry_run = kube::api::PostParams {
            dry_run: true,
            ..Default::default()
        };
        let server = api.create(&dry_run, &taskrun).await;
        let local = taskrun_operator::api::spec_problems(&taskrun.spec);
        assert_eq!(
            server.is_ok(),
            local.is_empty(),
            "{spec:?}: the API server says {server:?}, taskrun run says {local:?}"
        );
    }
}
