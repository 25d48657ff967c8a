//! Taking the operator off a cluster while TaskRuns exist, as `make undeploy` does: every task
//! container stopped and removed, no object left Terminating, nothing of the install left. It
//! takes the CRDs off the shared test cluster, so `make test` runs it alone, after the others.

mod common;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;
use taskrun_operator::api::{Phase, TaskRun};

use common::{TestNamespace, phase_is, repo_root};

const NODE: &str = "node-a";

#[tokio::test]
async fn uninstall_removes_every_task_container_and_leaves_nothing_stuck() {
    let ns = TestNamespace::new("uninstall").await;
    common::apply_deploy();
    // Opted in, as docs/install.md says: the uninstall must take this binding off too.
    ns.opt_in();

    for (name, spec) in [
        ("running", "command: [sleep, '300']"),
        ("kept", "command: ['true']\n  cleanup: Never"),
        (
            "waiting",
            "command: ['true']\n  env: [{name: X, valueFrom: {secretKeyRef: {name: absent, key: x}}}]",
        ),
    ] {
        let yaml = format!(
            "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: {name}\nspec:\n  nodeName: {NODE}\n  image: busybox\n  {spec}\n"
        );
        let taskrun: TaskRun = serde_yaml::from_str(&yaml).unwrap();
        ns.taskruns()
            .create(&PostParams::default(), &taskrun)
            .await
            .expect("create TaskRun");
    }
    ns.wait_for("running", "Running", phase_is(Phase::Running))
        .await;
    ns.wait_done("kept").await;
    let docker = common::docker().await;
    assert_eq!(
        ns.containers(&docker).await.len(),
        2,
        "one running, one kept"
    );

    let undeployed = std::process::Command::new(repo_root().join("scripts/undeploy.sh"))
        .env("KUBECONFIG", common::kubeconfig())
        .output()
        .unwrap();
    assert!(
        undeployed.status.success(),
        "undeploy: {}",
        String::from_utf8_lossy(&undeployed.stderr)
    );

    assert!(
        ns.containers(&docker).await.is_empty(),
        "every task container is gone"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(ns.client.clone());
    for crd in ["taskruns.taskrun.dev", "taskrunpolicies.taskrun.dev"] {
        assert!(crds.get_opt(crd).await.unwrap().is_none(), "{crd} is gone");
    }
    let bindings: Api<RoleBinding> = Api::namespaced(ns.client.clone(), &ns.name);
    assert!(
        bindings
            .get_opt("taskrun-operator")
            .await
            .unwrap()
            .is_none()
    );
    let cluster_bindings: Api<ClusterRoleBinding> = Api::all(ns.client.clone());
    assert!(
        cluster_bindings
            .get_opt("taskrun-operator")
            .await
            .unwrap()
            .is_none()
    );
    let namespaces: Api<Namespace> = Api::all(ns.client.clone());
    assert!(
        namespaces
            .get_opt("taskrun-system")
            .await
            .unwrap()
            .is_none(),
        "the operator's namespace is gone, not Terminating"
    );
}
