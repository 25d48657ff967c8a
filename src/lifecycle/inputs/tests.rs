//! Pure unit tests of input resolution: a spec and the objects read for it in; the environment,
//! files, pull credentials and API identity out, or the reason the run waits. A property test
//! checks that no Secret value ever shows in a resolution's `Debug` form.

use std::io::Read;

use proptest::prelude::*;

use super::*;

fn spec(yaml: &str) -> TaskRunSpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn object(pairs: &[(&str, &[u8])]) -> Lookup {
    Lookup::Found(ObjectData {
        type_: None,
        data: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect(),
    })
}

fn found(objects: Vec<(ObjectKind, &str, Lookup)>) -> Found {
    Found {
        objects: objects
            .into_iter()
            .map(|(kind, name, lookup)| ((kind, name.to_string()), lookup))
            .collect(),
        over_limit: None,
    }
}

fn ready(resolution: Resolution) -> Inputs {
    match resolution {
        Resolution::Ready(inputs) => inputs,
        other => panic!("expected Ready, got {other:?}"),
    }
}

fn waits(resolution: Resolution) -> (Reason, String) {
    match resolution {
        Resolution::Waiting { reason, message } => (reason, message),
        other => panic!("expected Waiting, got {other:?}"),
    }
}

const ENV_SPEC: &str = "
image: busybox
envFrom:
- {configMapRef: {name: settings}, prefix: CFG_}
- secretRef: {name: extra, optional: true}
env:
- {name: PLAIN, value: literal}
- {name: PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}
- {name: CFG_mode, valueFrom: {configMapKeyRef: {name: settings, key: level}}}
- {name: MAYBE, valueFrom: {secretKeyRef: {name: db, key: absent, optional: true}}}
";

#[test]
fn env_comes_from_secrets_and_config_maps_in_pod_order() {
    let inputs = ready(resolve(
        &spec(ENV_SPEC),
        "team",
        &found(vec![
            (
                ObjectKind::Secret,
                "db",
                object(&[("password", b"hunter2")]),
            ),
            (
                ObjectKind::ConfigMap,
                "settings",
                object(&[("mode", b"fast"), ("level", b"3"), ("bad-name", b"x")]),
            ),
        ]),
    ));
    assert_eq!(
        inputs.env,
        [
            ("CFG_level".to_string(), "3".to_string()),
            ("CFG_mode".into(), "3".into()),
            ("PLAIN".into(), "literal".into()),
            ("PASSWORD".into(), "hunter2".into()),
        ],
        "envFrom first, env overriding it, invalid names and optional absences left out"
    );
}

#[test]
fn a_missing_object_or_key_makes_the_run_wait_naming_it() {
    let (reason, message) = waits(resolve(
        &spec(ENV_SPEC),
        "team",
        &found(vec![(
            ObjectKind::ConfigMap,
            "settings",
            object(&[("level", b"3")]),
        )]),
    ));
    assert_eq!(reason, Reason::ReferenceMissing);
    assert!(
        message.contains("Secret \"db\"") && message.contains("team"),
        "{message}"
    );

    let (reason, message) = waits(resolve(
        &spec(ENV_SPEC),
        "team",
        &found(vec![
            (ObjectKind::Secret, "db", object(&[("user", b"me")])),
            (
                ObjectKind::ConfigMap,
                "settings",
                object(&[("level", b"3")]),
            ),
        ]),
    ));
    assert_eq!(reason, Reason::ReferenceMissing);
    assert!(message.contains("no key \"password\""), "{message}");

    let (_, message) = waits(resolve(
        &spec(ENV_SPEC),
        "team",
        &found(vec![(ObjectKind::ConfigMap, "settings", Lookup::Forbidden)]),
    ));
    assert!(message.contains("may not read ConfigMap"), "{message}");
}

#[test]
fn text_that_cannot_be_an_environment_variable_waits_as_invalid() {
    let (reason, message) = waits(resolve(
        &spec("image: busybox\nenv: [{name: A, valueFrom: {secretKeyRef: {name: s, key: k}}}]"),
        "team",
        &found(vec![(ObjectKind::Secret, "s", object(&[("k", b"a\0b")]))]),
    ));
    assert_eq!(reason, Reason::ReferenceInvalid);
    assert!(message.contains("\"k\""), "{message}");
}

const FILES_SPEC: &str = "
image: busybox
volumes:
- {name: creds, secret: {secretName: db, defaultMode: 256, items: [{key: password, path: pw/secret.txt}]}}
- {name: conf, configMap: {name: settings}}
- {name: ro, configMap: {name: settings, items: [{key: level, path: level, mode: 438}]}}
- {name: scratch, emptyDir: {sizeLimit: 16Mi}}
- {name: gone, secret: {secretName: nothing, optional: true}}
volumeMounts:
- {name: creds, mountPath: /etc/creds}
- {name: conf, mountPath: /etc/conf/}
- {name: ro, mountPath: /etc/ro, readOnly: true}
- {name: scratch, mountPath: /scratch}
- {name: gone, mountPath: /gone}
";

#[test]
fn volumes_become_files_with_their_modes_and_in_memory_directories() {
    let inputs = ready(resolve(
        &spec(FILES_SPEC),
        "team",
        &found(vec![
            (
                ObjectKind::Secret,
                "db",
                object(&[("password", b"hunter2")]),
            ),
            (
                ObjectKind::ConfigMap,
                "settings",
                object(&[("mode", b"fast"), ("level", b"3")]),
            ),
        ]),
    ));
    let files: Vec<(&str, u32, &[u8])> = inputs
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.mode, f.contents.as_slice()))
        .collect();
    assert_eq!(
        files,
        [
            ("/etc/creds/pw/secret.txt", 0o400, b"hunter2".as_slice()),
            ("/etc/conf/level", 0o644, b"3".as_slice()),
            ("/etc/conf/mode", 0o644, b"fast".as_slice()),
            ("/etc/ro/level", 0o444, b"3".as_slice()),
        ]
    );
    let directories: Vec<(&str, u32)> = inputs
        .directories
        .iter()
        .map(|d| (d.path.as_str(), d.mode))
        .collect();
    assert_eq!(
        directories,
        [
            ("/etc/creds", 0o755),
            ("/etc/creds/pw", 0o755),
            ("/etc/conf", 0o755),
            ("/etc/ro", 0o555),
            ("/gone", 0o755),
        ]
    );
    assert_eq!(
        inputs.scratch,
        [Scratch {
            path: "/scratch".into(),
            size_bytes: Some(16 << 20),
            read_only: false,
        }]
    );
    let debug = format!("{inputs:?}");
    assert!(!debug.contains("hunter2"), "Debug shows no values: {debug}");
}

#[test]
fn the_archive_holds_the_directories_then_the_files_owned_by_root() {
    let inputs = Inputs {
        directories: vec![
            InputDirectory {
                path: "/etc/ro".into(),
                mode: 0o555,
            },
            InputDirectory {
                path: "/a".into(),
                mode: 0o755,
            },
        ],
        files: vec![InputFile {
            path: "/etc/ro/secret".into(),
            mode: 0o400,
            contents: b"hunter2".to_vec(),
        }],
        ..Inputs::default()
    };
    let bytes = archive(&inputs).unwrap();
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).unwrap();
        entries.push((
            entry.path().unwrap().to_string_lossy().into_owned(),
            header.mode().unwrap(),
            header.uid().unwrap(),
            contents,
        ));
    }
    assert_eq!(
        entries,
        [
            ("a".to_string(), 0o755, 0, vec![]),
            ("etc/ro".into(), 0o555, 0, vec![]),
            ("etc/ro/secret".into(), 0o400, 0, b"hunter2".to_vec()),
        ]
    );
}

fn docker_config(json: &str) -> Lookup {
    Lookup::Found(ObjectData {
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: [(".dockerconfigjson".to_string(), json.as_bytes().to_vec())].into(),
    })
}

#[test]
fn the_pull_uses_the_credentials_of_the_images_registry() {
    let pull = |image: &str, secrets: Vec<(ObjectKind, &str, Lookup)>| {
        let spec = spec(&format!(
            "image: {image}\nimagePullSecrets: [{{name: hub}}, {{name: private}}]"
        ));
        ready(resolve(&spec, "team", &found(secrets))).registry_auth
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode("robot:s3cret");
    let secrets = || {
        vec![
            (
                ObjectKind::Secret,
                "hub",
                docker_config(
                    r#"{"auths":{"https://index.docker.io/v1/":{"username":"hubuser","password":"hubpass"}}}"#,
                ),
            ),
            (
                ObjectKind::Secret,
                "private",
                docker_config(&format!(
                    r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{encoded}"}}}}}}"#
                )),
            ),
        ]
    };
    let auth = pull("127.0.0.1:5000/team/busybox:1", secrets()).unwrap();
    assert_eq!(
        (
            auth.server.as_str(),
            auth.username.as_str(),
            auth.password.as_str()
        ),
        ("127.0.0.1:5000", "robot", "s3cret")
    );
    assert!(!format!("{auth:?}").contains("s3cret"));
    let hub = pull("busybox", secrets()).unwrap();
    assert_eq!(hub.username, "hubuser");
    assert_eq!(pull("other.example/busybox", secrets()), None);

    let spec = spec("image: busybox\nimagePullSecrets: [{name: wrong}]");
    let (reason, message) = waits(resolve(
        &spec,
        "team",
        &found(vec![(ObjectKind::Secret, "wrong", object(&[("x", b"y")]))]),
    ));
    assert_eq!(reason, Reason::ReferenceInvalid);
    assert!(message.contains(".dockerconfigjson"), "{message}");
}

#[test]
fn registries_are_read_from_image_references_as_docker_reads_them() {
    for (image, registry) in [
        ("busybox", "docker.io"),
        ("library/busybox:1", "docker.io"),
        ("team/tool", "docker.io"),
        ("localhost/tool", "localhost"),
        ("127.0.0.1:5000/team/busybox:1", "127.0.0.1:5000"),
        (
            "Registry.Example.com/tool@sha256:abc",
            "registry.example.com",
        ),
    ] {
        assert_eq!(image_registry(image), registry, "{image}");
    }
    for (server, registry) in [
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("http://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
        ("Registry.Example.com", "registry.example.com"),
    ] {
        assert_eq!(registry_of_server(server), registry, "{server}");
    }
}

#[test]
fn tokens_outlast_the_deadline_and_ten_minutes() {
    assert_eq!(token_seconds(&spec("image: busybox")), 3600);
    assert_eq!(
        token_seconds(&spec("image: busybox\ntimeoutSeconds: 5")),
        615
    );
    assert_eq!(
        token_seconds(&spec(
            "image: busybox\ntimeoutSeconds: 7200\nterminationGracePeriodSeconds: 30"
        )),
        7830
    );
}

#[test]
fn a_service_account_brings_its_files_and_the_api_address() {
    let api = TaskApi {
        host: "kubernetes.default.svc".into(),
        port: 6443,
        address: Some("172.17.0.1".parse().unwrap()),
        ca_pem: Some(b"PEM".to_vec()),
    };
    let inputs = with_service_account(
        Inputs {
            env: vec![("KUBERNETES_SERVICE_PORT".into(), "1".into())],
            ..Inputs::default()
        },
        "team",
        "tok",
        &api,
    );
    assert_eq!(
        inputs.env,
        [
            (
                "KUBERNETES_SERVICE_HOST".to_string(),
                "kubernetes.default.svc".to_string()
            ),
            ("KUBERNETES_SERVICE_PORT".into(), "1".into()),
        ],
        "what the spec sets wins"
    );
    let files: Vec<&str> = inputs.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        files,
        [
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
            "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
            "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
        ]
    );
    assert_eq!(inputs.extra_hosts, ["kubernetes.default.svc:172.17.0.1"]);

    let by_address = with_service_account(
        Inputs::default(),
        "team",
        "tok",
        &TaskApi {
            host: "10.96.0.1".into(),
            ..api
        },
    );
    assert!(by_address.extra_hosts.is_empty());
}

proptest! {
    /// Whatever a Secret holds and whatever is missing, what a resolution shows (its Debug
    /// form, and so any message or log built from it) never holds a value.
    #[test]
    fn no_value_is_ever_shown(value in "[a-zA-Z0-9]{12,40}", drop_key in any::<bool>(), drop_object in any::<bool>()) {
        let secret = if drop_object {
            Lookup::Absent
        } else if drop_key {
            object(&[("other", value.as_bytes())])
        } else {
            object(&[("password", value.as_bytes()), ("other", value.as_bytes())])
        };
        let spec = spec(
            "image: busybox\nenv: [{name: P, valueFrom: {secretKeyRef: {name: db, key: password}}}]\nenvFrom: [{secretRef: {name: db, optional: true}}]\nvolumes: [{name: v, secret: {secretName: db, optional: true}}]\nvolumeMounts: [{name: v, mountPath: /v}]",
        );
        let resolution = resolve(&spec, "team", &found(vec![(ObjectKind::Secret, "db", secret)]));
        let shown = format!("{resolution:?}");
        prop_assert!(!shown.contains(&value), "{}", shown);
    }
}

#[test]
fn the_data_a_run_takes_is_bounded_with_its_own_reason() {
    let mut found = Found::default();
    let mut read = 0;
    let big = ObjectData {
        type_: None,
        data: [("k".to_string(), vec![0; 3 << 20])].into(),
    };
    assert!(found.within_limit(&mut read, &big), "3 MiB is within");
    assert!(!found.within_limit(&mut read, &big), "6 MiB is not");
    let spec: TaskRunSpec = serde_yaml::from_str("image: busybox").unwrap();
    let (reason, message) = waits(resolve(&spec, "team", &found));
    assert_eq!(reason, Reason::ReferencesTooLarge);
    assert!(message.contains("more than 4194304 bytes"), "{message}");
}
