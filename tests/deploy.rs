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
        "clusterrole.rbac.authorization.k8s.io/taskrun-operator-workloads",
        "daemonset.apps/taskrun-operator",
        "customresourcedefinition.apiextensions.k8s.io/taskrunpolicies.taskrun.dev",
        "validatingadmissionpolicy.admissionregistration.k8s.io/taskrun-policy",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io/taskrun-policy",
    ] {
        assert!(stdout.contains(object), "{object} missing from: {stdout}");
    }
    // The built-in policy as a manifest: what an administrator applies to start from.
    let output = common::kubectl()
        .args(["apply", "--dry-run=server", "--validate=strict", "-f"])
        .arg(common::repo_root().join("deploy/policies/cluster.yaml"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "deploy/policies/cluster.yaml: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // `RESOURCE/SUBRESOURCE` asks about the subresource (kubectl would read it as a name).
    let can_i = |verb: &str, resource: &str| {
        let (resource, subresource) = match resource.split_once('/') {
            Some((resource, sub)) if resource == "serviceaccounts" => {
                (resource, format!("--subresource={sub}"))
            }
            _ => (resource, String::new()),
        };
        let output = common::kubectl()
            .args([
                "auth",
                "can-i",
                verb,
                resource,
                "--as=system:serviceaccount:taskrun-system:taskrun-operator",
            ])
            .args((!subresource.is_empty()).then_some(subresource))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    assert_eq!(can_i("watch", "taskruns.taskrun.dev"), "yes");
    assert_eq!(can_i("patch", "taskruns.taskrun.dev/status"), "yes");
    // TaskRuns whose deleteAfterSeconds passed; policy.yaml refuses the operator any other.
    assert_eq!(can_i("delete", "taskruns.taskrun.dev"), "yes");
    // The cluster's TaskRunPolicy, read before any run starts; never written.
    assert_eq!(can_i("watch", "taskrunpolicies.taskrun.dev"), "yes");
    assert_eq!(can_i("update", "taskrunpolicies.taskrun.dev"), "no");
    for (verb, resource) in [
        ("create", "secrets"),
        ("update", "secrets"),
        ("patch", "configmaps"),
        ("delete", "secrets"),
        ("get", "serviceaccounts"),
        ("create", "serviceaccounts"),
        ("list", "pods"),
        ("create", "pods"),
        ("update", "taskruns.taskrun.dev"),
    ] {
        assert_eq!(can_i(verb, resource), "no", "{verb} {resource}");
    }
    the_install_can_do_what_the_readme_says().await;
}

/// What `kubectl auth can-i --list` shows the operator's account may do in `namespace`: each
/// resource with its verbs, Kubernetes' own rules for every account left out.
fn rights_in(namespace: &str) -> std::collections::BTreeSet<(String, String)> {
    let output = common::kubectl()
        .args([
            "auth",
            "can-i",
            "--list",
            "-n",
            namespace,
            "--as=system:serviceaccount:taskrun-system:taskrun-operator",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let everyones = [
        "selfsubjectreviews.authentication.k8s.io",
        "selfsubjectaccessreviews.authorization.k8s.io",
        "selfsubjectrulesreviews.authorization.k8s.io",
        "clustertrustbundles.certificates.k8s.io",
    ];
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .skip(1)
        .filter(|line| !line.starts_with(' '))
        .filter_map(|line| {
            let resource = line.split_whitespace().next()?;
            let (_, verbs) = line.rsplit_once('[')?;
            let verbs = verbs.trim_end_matches(']').to_string();
            (!everyones.contains(&resource)).then(|| (resource.to_string(), verbs))
        })
        .collect()
}

/// The table in docs/install.md of what the default install can do: resource, verbs, and where.
fn readme_rights() -> Vec<(String, String, String)> {
    let readme = std::fs::read_to_string(common::repo_root().join("docs/install.md")).unwrap();
    let table = readme
        .split_once("<!-- rbac-table -->")
        .and_then(|(_, rest)| rest.split_once("<!-- /rbac-table -->"))
        .expect("the RBAC table in docs/install.md")
        .0;
    table
        .lines()
        .skip(3)
        .filter_map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            let [resource, verbs, where_] = cells[..] else {
                return None;
            };
            Some((
                resource.trim_matches('`').into(),
                verbs.into(),
                where_.into(),
            ))
        })
        .collect()
}

/// A fresh install can do in each namespace exactly what the table in docs/install.md says: in
/// one not opted in, in `taskrun-system`, and in one opted in by that file's command.
async fn the_install_can_do_what_the_readme_says() {
    let table = readme_rights();
    assert!(table.len() >= 10, "{table:?}");
    let expected = |places: &[&str]| -> std::collections::BTreeSet<(String, String)> {
        table
            .iter()
            .filter(|(_, _, where_)| places.contains(&where_.as_str()))
            .map(|(resource, verbs, _)| (resource.clone(), verbs.clone()))
            .collect()
    };
    let ns = common::TestNamespace::new("rights").await;
    assert_eq!(
        rights_in(&ns.name),
        expected(&["all"]),
        "a namespace not opted in"
    );
    assert_eq!(
        rights_in("taskrun-system"),
        expected(&["all", "taskrun-system"]),
        "the agents' own namespace"
    );
    ns.opt_in();
    assert_eq!(
        rights_in(&ns.name),
        expected(&["all", "opted in"]),
        "a namespace opted in"
    );
}

fn yaml_file(path: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(common::repo_root().join(path)).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

#[test]
fn kind_config_mounts_the_socket_the_daemonset_uses() {
    let daemonset = yaml_file("deploy/daemonset.yaml");
    let socket = daemonset["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(socket, "/var/run/docker.sock");
    let cluster = yaml_file("deploy/kind/cluster.yaml");
    assert_eq!(cluster["kind"].as_str(), Some("Cluster"));
    assert_eq!(
        cluster["apiVersion"].as_str(),
        Some("kind.x-k8s.io/v1alpha4")
    );
    let nodes = cluster["nodes"].as_sequence().expect("nodes listed");
    assert!(!nodes.is_empty());
    for node in nodes {
        let mounts = node["extraMounts"]
            .as_sequence()
            .expect("every node mounts the socket");
        assert!(
            mounts
                .iter()
                .any(|m| m["hostPath"].as_str() == Some(socket.as_str())
                    && m["containerPath"].as_str() == Some(socket.as_str())),
            "node {:?} does not mount {socket}",
            node["role"]
        );
    }
}

/// The API server address and CA certificate (PEM) of the test kubeconfig.
fn cluster_endpoint() -> (String, String, Vec<u8>) {
    let kubeconfig = kube::config::Kubeconfig::read_from(common::kubeconfig()).unwrap();
    let cluster = kubeconfig.clusters[0].cluster.clone().unwrap();
    let server: url_parts::Server = cluster.server.as_deref().unwrap().parse().unwrap();
    let ca = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => base64_decode(data),
        (None, Some(path)) => std::fs::read(path).unwrap(),
        _ => panic!("the test kubeconfig has no CA"),
    };
    (server.host, server.port, ca)
}

mod url_parts {
    /// `https://host:port` split into its parts.
    pub struct Server {
        pub host: String,
        pub port: String,
    }

    impl std::str::FromStr for Server {
        type Err = String;
        fn from_str(url: &str) -> Result<Self, String> {
            let rest = url.strip_prefix("https://").ok_or("not https")?;
            let (host, port) = rest
                .trim_end_matches('/')
                .rsplit_once(':')
                .unwrap_or((rest, "443"));
            Ok(Self {
                host: host.to_string(),
                port: port.to_string(),
            })
        }
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut command = std::process::Command::new("base64");
    command.arg("-d");
    common::run_with_input(command, text.as_bytes()).stdout
}

#[tokio::test]
async fn the_operator_image_runs_with_only_what_a_pod_has() {
    let ns = common::TestNamespace::new("incluster").await;
    common::apply_deploy();

    let token = common::kubectl()
        .args([
            "create",
            "token",
            "taskrun-operator",
            "-n",
            "taskrun-system",
        ])
        .output()
        .unwrap();
    assert!(
        token.status.success(),
        "TokenRequest: {}",
        String::from_utf8_lossy(&token.stderr)
    );
    let (host, port, ca) = cluster_endpoint();
    let secrets = common::repo_root().join(format!("target/test-logs/{}-serviceaccount", ns.name));
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("token"), &token.stdout).unwrap();
    std::fs::write(secrets.join("ca.crt"), ca).unwrap();
    std::fs::write(secrets.join("namespace"), "taskrun-system").unwrap();

    let socket_group = std::process::Command::new("stat")
        .args(["-c", "%g", "/var/run/docker.sock"])
        .output()
        .unwrap();
    let socket_group = String::from_utf8_lossy(&socket_group.stdout)
        .trim()
        .to_string();
    let name = format!("taskrun-operator-{}", ns.name);
    let run = std::process::Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "--read-only",
            "--cap-drop",
            "ALL",
        ])
        .args([
            "--security-opt",
            "no-new-privileges",
            "--group-add",
            &socket_group,
        ])
        .args(["--label", &format!("taskrun.dev/namespace={}", ns.name)])
        .args(["-v", "/var/run/docker.sock:/var/run/docker.sock"])
        .arg("-v")
        .arg(format!(
            "{}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
            secrets.display()
        ))
        .args([
            "-e",
            &format!("KUBERNETES_SERVICE_HOST={host}"),
            "-e",
            &format!("KUBERNETES_SERVICE_PORT={port}"),
        ])
        .args(["-e", &format!("NODE_NAME={}", ns.node())])
        // The DaemonSet's downward API: the agents' Leases live in their own namespace.
        .args(["-e", "POD_NAMESPACE=taskrun-system"])
        .args([
            "taskrun-operator:dev",
            "controller",
            "--namespace",
            &ns.name,
            "--class",
            &ns.name,
            "--health-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "docker run: {}",
        String::from_utf8_lossy(&run.stderr)
    );

    ns.create("apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: in-cluster\nspec:\n  image: busybox\n  command: [echo, hello from the image]\n").await;
    let done = tokio::time::timeout(common::TIMEOUT, ns.wait_done("in-cluster")).await;
    let logs = std::process::Command::new("docker")
        .args(["logs", &name])
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&logs.stderr).to_string();
    let done = done.unwrap_or_else(|_| panic!("no outcome; operator log:\n{logs}"));
    let status = done.status.unwrap();
    assert_eq!(
        status.phase,
        Some(taskrun_operator::api::Phase::Succeeded),
        "operator log:\n{logs}"
    );
    assert_eq!(status.log_tail.as_deref(), Some("hello from the image\n"));
    let user = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.Config.User}}", &name])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&user.stdout).trim(),
        "65532:65532",
        "the image runs as a non-root user"
    );
}

#[tokio::test]
async fn the_operator_account_cannot_change_a_spec_but_can_claim() {
    let ns = common::TestNamespace::new("spec-guard").await;
    common::apply_deploy();
    ns.create("apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: guarded\nspec:\n  image: busybox\n")
        .await;
    let patch_as_operator = |patch: &str, dry_run: bool| {
        let mut command = common::kubectl();
        command
            .args([
                "patch", "taskrun", "guarded", "-n", &ns.name, "--type", "merge", "-p", patch,
            ])
            .arg("--as=system:serviceaccount:taskrun-system:taskrun-operator");
        if dry_run {
            command.arg("--dry-run=server");
        }
        command.output().unwrap()
    };
    // A new policy reaches the API server's admission chain within moments, not at once; a
    // server-side dry run goes through admission without changing the TaskRun.
    let cancel = r#"{"spec":{"cancel":true}}"#;
    common::eventually("a dry-run spec write as the operator refused", || async {
        !patch_as_operator(cancel, true).status.success()
    })
    .await;
    let refused = patch_as_operator(cancel, false);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("never the spec"),
        "spec write as the operator: {stderr}"
    );
    let claimed = patch_as_operator(
        r#"{"metadata":{"annotations":{"taskrun.dev/node":"n1"}}}"#,
        false,
    );
    assert!(
        claimed.status.success(),
        "claim as the operator: {}",
        String::from_utf8_lossy(&claimed.stderr)
    );
    let as_admin = common::kubectl()
        .args([
            "patch",
            "taskrun",
            "guarded",
            "-n",
            &ns.name,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"cancel":true}}"#,
        ])
        .output()
        .unwrap();
    assert!(
        as_admin.status.success(),
        "a user may still cancel: {}",
        String::from_utf8_lossy(&as_admin.stderr)
    );
}

#[tokio::test]
async fn the_operator_account_deletes_only_taskruns_that_ended_and_ask_for_it() {
    let ns = common::TestNamespace::new("delete-guard").await;
    common::apply_deploy();
    for (name, spec) in [
        ("kept", "image: busybox"),
        ("running", "image: busybox\ndeleteAfterSeconds: 0"),
        ("ended", "image: busybox\ndeleteAfterSeconds: 0"),
    ] {
        ns.create(&common::taskrun_yaml(name, spec)).await;
    }
    for name in ["kept", "ended"] {
        let ended = common::kubectl()
            .args([
                "patch",
                "taskrun",
                name,
                "-n",
                &ns.name,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"phase":"Succeeded","completionTime":"2026-01-01T00:00:00Z"}}"#,
            ])
            .output()
            .unwrap();
        assert!(
            ended.status.success(),
            "{}",
            String::from_utf8_lossy(&ended.stderr)
        );
    }
    let delete_as_operator = |name: &str, dry_run: bool| {
        let mut command = common::kubectl();
        command
            .args(["delete", "taskrun", name, "-n", &ns.name, "--wait=false"])
            .arg("--as=system:serviceaccount:taskrun-system:taskrun-operator");
        if dry_run {
            command.arg("--dry-run=server");
        }
        command.output().unwrap()
    };
    // As above: wait, without deleting anything, until the policy is in the admission chain.
    common::eventually(
        "a dry-run delete as the operator of a run that did not ask for it refused",
        || async { !delete_as_operator("kept", true).status.success() },
    )
    .await;
    for name in ["kept", "running"] {
        let refused = delete_as_operator(name, false);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && stderr.contains("deletes only TaskRuns that ended"),
            "deleting {name} as the operator: {stderr}"
        );
    }
    let deleted = delete_as_operator("ended", false);
    assert!(
        deleted.status.success(),
        "deleting an ended run that asked for it: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
}
