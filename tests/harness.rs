//! The test harness itself: the local control plane enforces RBAC, and the local Docker
//! daemon runs the locally built busybox image.

mod common;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

use common::TestNamespace;

async fn client_as(account: &str, namespace: &str) -> Client {
    let options = kube::config::KubeConfigOptions::default();
    let kubeconfig = kube::config::Kubeconfig::read_from(common::kubeconfig()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .unwrap();
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{account}"));
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn rbac_forbids_a_service_account_until_a_role_binding_grants_it() {
    let ns = TestNamespace::new("rbac").await;
    let accounts: Api<ServiceAccount> = Api::namespaced(ns.client.clone(), &ns.name);
    let account: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "reader"}})).unwrap();
    accounts
        .create(&PostParams::default(), &account)
        .await
        .unwrap();

    let as_reader: Api<Secret> = Api::namespaced(client_as("reader", &ns.name).await, &ns.name);
    match as_reader.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "expected Forbidden, got {status:?}")
        }
        other => panic!("an unbound service account listed secrets: {other:?}"),
    }

    let role: Role = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "secret-reader"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]
    }))
    .unwrap();
    Api::<Role>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "reader-reads-secrets"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns.name}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    // RBAC changes reach the authorizer's cache within moments, not at once.
    let mut listed = Err(None);
    for _ in 0..50 {
        match as_reader.list(&ListParams::default()).await {
            Ok(list) => {
                listed = Ok(list);
                break;
            }
            Err(e) => listed = Err(Some(e)),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        listed.is_ok(),
        "listing secrets stayed forbidden after the binding: {listed:?}"
    );
}

#[tokio::test]
async fn service_account_tokens_are_issued() {
    let ns = TestNamespace::new("token").await;
    let accounts: Api<ServiceAccount> = Api::namespaced(ns.client.clone(), &ns.name);
    let account: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "robot"}})).unwrap();
    accounts
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let output = common::kubectl()
        .args(["create", "token", "robot", "-n", &ns.name])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kubectl create token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        token.trim().split('.').count(),
        3,
        "a JWT has three parts: {token}"
    );
}

#[tokio::test]
async fn docker_runs_the_local_busybox_image_and_reports_exit_code_and_output() {
    let docker = common::docker().await;
    let name = format!("taskrun-harness-{}", std::process::id());
    let body = ContainerCreateBody {
        image: Some("busybox:latest".into()),
        cmd: Some(vec![
            "sh".into(),
            "-c".into(),
            "echo hello from busybox; exit 3".into(),
        ]),
        labels: Some([("taskrun.dev/test".to_string(), "harness".to_string())].into()),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    docker
        .create_container(Some(options), body)
        .await
        .expect("create");
    docker.start_container(&name, None).await.expect("start");
    let exit = docker
        .wait_container(&name, None)
        .next()
        .await
        .expect("a wait result");
    let code = match exit {
        Ok(response) => response.status_code,
        Err(bollard::errors::Error::DockerContainerWaitError { code, .. }) => code,
        Err(e) => panic!("wait failed: {e}"),
    };
    let logs: Vec<_> = docker
        .logs(
            &name,
            Some(
                LogsOptionsBuilder::default()
                    .stdout(true)
                    .stderr(true)
                    .build(),
            ),
        )
        .try_collect()
        .await
        .unwrap();
    let output: String = logs.iter().map(ToString::to_string).collect();
    docker
        .remove_container(
            &name,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .unwrap();
    assert_eq!(code, 3);
    assert_eq!(output, "hello from busybox\n");
}
