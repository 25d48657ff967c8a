//! Pure unit tests of the policy rules: the agent's Rust checks against the cases in
//! `tests/data/policy-cases.yaml`, which the end-to-end tests also put to the API server's
//! admission policy, and the shape of the generated admission policy and its binding.

use serde::Deserialize;

use super::*;

/// A case of `tests/data/policy-cases.yaml`.
#[derive(Deserialize)]
struct Case {
    name: String,
    policy: TaskRunPolicySpec,
    spec: TaskRunSpec,
    breaks: Vec<String>,
}

fn cases() -> Vec<Case> {
    let text = include_str!("../../../tests/data/policy-cases.yaml").replace("$NAMESPACE", "team");
    serde_yaml::from_str(&text).expect("the policy cases parse")
}

fn policy(name: &str, spec: TaskRunPolicySpec) -> TaskRunPolicy {
    TaskRunPolicy::new(name, spec)
}

#[test]
fn the_agent_breaks_exactly_the_rules_each_case_names() {
    for case in cases() {
        let found: Vec<&str> = policy_violations(&policy("p", case.policy), "team", &case.spec)
            .into_iter()
            .map(|v| v.rule)
            .collect();
        assert_eq!(found, case.breaks, "{}", case.name);
    }
}

#[test]
fn every_rule_is_broken_by_some_case() {
    let broken: Vec<String> = cases().into_iter().flat_map(|c| c.breaks).collect();
    for rule in &POLICY_RULES {
        assert!(
            broken.iter().any(|b| b == rule.rule),
            "no case breaks {}",
            rule.rule
        );
    }
}

#[test]
fn a_violation_names_the_policy_the_field_and_the_rule() {
    let spec: TaskRunSpec = serde_yaml::from_str("image: alpine").unwrap();
    let found = policy_violations(
        &policy(
            "cluster",
            serde_yaml::from_str("allowedImages: [busybox]").unwrap(),
        ),
        "team",
        &spec,
    );
    assert_eq!(
        found,
        [PolicyViolation {
            rule: "allowedImages",
            field: "spec.image",
            message: "TaskRunPolicy cluster: spec.image matches none of allowedImages".into(),
        }]
    );
}

#[test]
fn image_patterns_match_the_reference_or_its_repository() {
    for (pattern, image, allowed) in [
        ("busybox", "busybox", true),
        ("busybox", "busybox:latest", true),
        ("busybox", "library/busybox", false),
        ("busybox", "busyboxes", false),
        ("busybox:1.36", "busybox:1.36", true),
        ("busybox:1.36", "busybox", false),
        ("*", "busybox", true),
        ("*", "team/tool", false),
        ("**", "registry.example.com/a/b:c", true),
        (
            "team/*",
            "team/tool@sha256:0123456789abcdef0123456789abcdef",
            true,
        ),
        ("registry:5000/*", "registry:5000/tool", true),
        ("registry:5000/*", "registry:5001/tool", false),
        ("a.b/c", "axb/c", false),
        ("sha256+x/*", "sha256+x/tool", true),
    ] {
        assert_eq!(
            image_matches(pattern, image),
            allowed,
            "{pattern} against {image}"
        );
    }
    assert_eq!(
        repository("127.0.0.1:5000/tool:v1@sha256:ab"),
        "127.0.0.1:5000/tool"
    );
    assert_eq!(repository("127.0.0.1:5000/tool"), "127.0.0.1:5000/tool");
    assert_eq!(repository("tool:v1"), "tool");
}

#[test]
fn the_admission_policy_carries_every_rule_with_its_message() {
    let policy = admission_policy();
    let spec = policy.spec.unwrap();
    let validations = spec.validations.unwrap();
    assert_eq!(validations.len(), POLICY_RULES.len());
    for (validation, rule) in validations.iter().zip(&POLICY_RULES) {
        assert!(!validation.expression.contains("GLOB"), "{}", rule.rule);
        let message = validation.message_expression.as_deref().unwrap();
        assert!(message.contains(rule.message), "{message}");
        // Messages sit in single-quoted CEL strings.
        assert!(!rule.message.contains('\''), "{}", rule.message);
    }
    assert_eq!(
        spec.param_kind.unwrap().kind.as_deref(),
        Some("TaskRunPolicy")
    );
    let binding = admission_policy_binding("b", CLUSTER_POLICY, None);
    let param = binding.spec.param_ref.unwrap();
    assert_eq!(param.name.as_deref(), Some("cluster"));
    assert_eq!(param.parameter_not_found_action.as_deref(), Some("Allow"));
}

#[test]
fn a_policy_network_default_applies_only_when_the_spec_names_none() {
    let policy: TaskRunPolicySpec = serde_yaml::from_str("defaultNetwork: None").unwrap();
    let bare: TaskRunSpec = serde_yaml::from_str("image: busybox").unwrap();
    let bridged: TaskRunSpec = serde_yaml::from_str("image: busybox\nnetwork: Bridge").unwrap();
    assert_eq!(policy.network_of(&bare), Network::None);
    assert_eq!(policy.network_of(&bridged), Network::Bridge);
    assert_eq!(
        TaskRunPolicySpec::default().network_of(&bare),
        Network::Bridge
    );
    assert_eq!(TaskRunPolicySpec::default().pids_limit(), 4096);
}

#[test]
fn only_the_agents_own_policy_is_named_built_in() {
    let built_in = TaskRunPolicy::built_in("cluster");
    assert_eq!(
        built_in.title(),
        "TaskRunPolicy cluster (built in: the cluster has no such object)"
    );
    // An object read from the API server, whatever annotations its author gave it.
    let mut read = built_in.clone();
    read.metadata.uid = Some("0b6c5d5e-5f2a-4d41-9d53-0d1f0c1e2a3b".into());
    assert_eq!(read.title(), "TaskRunPolicy cluster");
}
