//! The manifests in deploy/ as a user applies them.

mod common;

#[tokio::test]
async fn deploy_manifests_are_accepted_by_the_api_server() {
    common::ensure_crd(&common::client().await).await;
    let output = common::kubectl()
        .args(["apply", "--server-side", "--force-conflicts", "-k"])
        .arg(common::repo_root().join("deploy"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubectl apply -k deploy/: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for object in [
        "namespace/taskrun-system",
        "serviceaccount/taskrun-operator",
        "clusterrole.rbac.authorization.k8s.io/taskrun-operator",
        "daemonset.apps/taskrun-operator",
    ] {
        assert!(stdout.contains(object), "{object} missing from: {stdout}");
    }
    let can_i = |verb: &str, resource: &str| {
        let output = common::kubectl()
            .args([
                "auth",
                "can-i",
                verb,
                resource,
                "--as=system:serviceaccount:taskrun-system:taskrun-operator",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    assert_eq!(can_i("watch", "taskruns.taskrun.dev"), "yes");
    assert_eq!(can_i("patch", "taskruns.taskrun.dev/status"), "yes");
    assert_eq!(can_i("get", "secrets"), "no");
    assert_eq!(can_i("list", "pods"), "no");
    assert_eq!(can_i("update", "taskruns.taskrun.dev"), "no");
}
