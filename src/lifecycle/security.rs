//! How a run's container is confined, decided from its spec and the cluster's TaskRunPolicy
//! alone: the hardened defaults, the spec's `securityContext` and `network`, and the policy's
//! rules and defaults. The executor asks [`settle`] before it pulls or creates anything.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::decide::LaunchFailure;
use crate::api::{
    Capability, DEFAULT_PIDS_LIMIT, TaskRunPolicy, TaskRunSpec, parse_cpu_nanos,
    parse_memory_bytes, policy_violations,
};
use crate::docker::ContainerSecurity;

/// What the container of a run gets, once the policy has had its say.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    pub security: ContainerSecurity,
    pub memory_bytes: Option<i64>,
    pub nano_cpus: Option<i64>,
    /// The run must not run as root and names no user: the image's own user must be checked
    /// before the container is created.
    pub check_image_user: bool,
}

/// The container settings of a run in `namespace` with `spec` under `policy` (none: the
/// hardened defaults alone), on a node whose `Bridge` tasks join the network `bridge`, or why
/// no container may be created: the rules of the policy the run breaks, or a limit that is not
/// a quantity. Pure.
pub fn settle(
    spec: &TaskRunSpec,
    namespace: &str,
    policy: Option<&TaskRunPolicy>,
    bridge: &str,
) -> Result<Settled, LaunchFailure> {
    if let Some(policy) = policy {
        let violations = policy_violations(policy, namespace, spec);
        if !violations.is_empty() {
            let messages: Vec<String> = violations.iter().map(ToString::to_string).collect();
            return Err(LaunchFailure::PolicyViolation(messages.join("; ")));
        }
    }
    let rules = policy.map(|p| &p.spec);
    let context = spec.security_context.clone().unwrap_or_default();
    let limit = |field: &str,
                 pick: fn(&crate::api::ResourceLimits) -> Option<&Quantity>,
                 parse: fn(&Quantity) -> Option<i64>|
     -> Result<Option<i64>, LaunchFailure> {
        let (quantity, whose) = match spec.limits().and_then(pick) {
            Some(q) => (Some(q), "resources.limits".to_string()),
            None => {
                let default = rules.and_then(|r| r.default_limits.as_ref()).and_then(pick);
                let max = rules.and_then(|r| r.max_limits.as_ref()).and_then(pick);
                let title = policy.map(TaskRunPolicy::title).unwrap_or_default();
                match (default, max) {
                    (Some(q), _) => (Some(q), format!("{title} defaultLimits")),
                    (None, Some(q)) => (Some(q), format!("{title} maxLimits")),
                    (None, None) => (None, String::new()),
                }
            }
        };
        quantity
            .map(|q| {
                parse(q).ok_or_else(|| {
                    LaunchFailure::InvalidLimit(format!(
                        "{whose}.{field} {:?} is not a quantity",
                        q.0
                    ))
                })
            })
            .transpose()
    };
    let memory_bytes = limit("memory", |l| l.memory.as_ref(), parse_memory_bytes)?;
    let nano_cpus = limit("cpu", |l| l.cpu.as_ref(), parse_cpu_nanos)?;
    let user = match (context.run_as_user, context.run_as_group) {
        (Some(user), Some(group)) => Some(format!("{user}:{group}")),
        (Some(user), None) => Some(user.to_string()),
        (None, _) => None,
    };
    let non_root = context.non_root() || rules.is_some_and(|r| r.require_non_root);
    let names = |caps: &[Capability]| caps.iter().map(|c| c.as_str().to_string()).collect();
    Ok(Settled {
        security: ContainerSecurity {
            user,
            read_only_root: context.read_only_root(),
            cap_add: names(context.added()),
            cap_drop: dropped(context.added(), context.dropped()),
            no_new_privileges: !context.privilege_escalation(),
            pids_limit: rules.map_or(DEFAULT_PIDS_LIMIT, |r| r.pids_limit()),
            network_mode: rules
                .map_or(spec.network.unwrap_or_default(), |r| r.network_of(spec))
                .docker_mode(bridge)
                .to_string(),
        },
        memory_bytes,
        nano_cpus,
        check_image_user: non_root && context.run_as_user.is_none(),
    })
}

/// The most processes and threads one container may have on a node whose kernel allows
/// `pid_max` at once and that runs up to `max_running` containers: together they hold at most
/// half of the node's, so that the node's own services can always fork. At least 16.
pub fn node_pids_ceiling(pid_max: i64, max_running: usize) -> i64 {
    let running = i64::try_from(max_running.max(1)).unwrap_or(i64::MAX);
    (pid_max / 2 / running).max(16)
}

/// The capabilities to drop: those the spec drops, and `NET_RAW` from Docker's default set
/// unless the spec adds it back. Raw sockets let a task forge packets on the bridge (ARP
/// spoofing of its neighbours); a task that pings asks for them, as under a Pod's restricted
/// profile.
fn dropped(added: &[Capability], dropped: &[Capability]) -> Vec<String> {
    let keeps_raw = added.contains(&Capability::NET_RAW)
        || dropped
            .iter()
            .any(|c| matches!(c, Capability::ALL | Capability::NET_RAW));
    dropped
        .iter()
        .chain((!keeps_raw).then_some(&Capability::NET_RAW))
        .map(|c| c.as_str().to_string())
        .collect()
}

/// Whether the image `image`, whose `USER` is `user`, runs as a user other than root, as a
/// kubelet judges it for `runAsNonRoot`: a user name other than `root` cannot be checked
/// without the image's `/etc/passwd`, so it is refused too. The error is the run's message.
pub fn non_root_user(image: &str, user: &str) -> Result<(), String> {
    let name = user.split(':').next().unwrap_or_default();
    let refusal = match name.parse::<u64>() {
        Ok(0) => format!("image {image} runs as root (USER {user})"),
        Ok(_) => return Ok(()),
        Err(_) if name.is_empty() => format!("image {image} runs as root (it sets no USER)"),
        Err(_) if name == "root" => format!("image {image} runs as root (USER {user})"),
        Err(_) => format!(
            "image {image} runs as user {name:?}, which is not a numeric user ID, so it cannot be verified as non-root"
        ),
    };
    Err(format!(
        "{refusal} and securityContext.runAsNonRoot (or the cluster's requireNonRoot) forbids root: set securityContext.runAsUser to a non-zero user ID, or use an image whose USER is one"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{TASK_NETWORK, TaskRunPolicySpec};

    fn spec(yaml: &str) -> TaskRunSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn policy(yaml: &str) -> TaskRunPolicy {
        let spec: TaskRunPolicySpec = serde_yaml::from_str(yaml).unwrap();
        TaskRunPolicy::new("cluster", spec)
    }

    fn settled(spec_yaml: &str, policy_yaml: Option<&str>) -> Settled {
        let policy = policy_yaml.map(policy);
        settle(&spec(spec_yaml), "team", policy.as_ref(), TASK_NETWORK).unwrap()
    }

    #[test]
    fn without_a_policy_the_container_is_hardened_and_keeps_docker_defaults() {
        let s = settled("image: busybox", None);
        assert_eq!(
            s.security,
            ContainerSecurity {
                user: None,
                read_only_root: false,
                cap_add: vec![],
                cap_drop: vec!["NET_RAW".into()],
                no_new_privileges: true,
                pids_limit: 4096,
                network_mode: "taskrun".into(),
            }
        );
        assert_eq!((s.memory_bytes, s.nano_cpus), (None, None));
        assert!(!s.check_image_user);
    }

    #[test]
    fn the_built_in_policy_bounds_a_run_that_sets_no_limit_and_refuses_a_huge_one() {
        let built_in = TaskRunPolicy::built_in("cluster");
        let s = settle(
            &spec("image: busybox"),
            "team",
            Some(&built_in),
            TASK_NETWORK,
        )
        .unwrap();
        assert_eq!(
            (s.memory_bytes, s.nano_cpus, s.security.pids_limit),
            (Some(512 << 20), Some(1_000_000_000), 4096)
        );
        let huge = spec("image: busybox\nresources: {limits: {memory: 16Gi}}");
        let Err(LaunchFailure::PolicyViolation(message)) =
            settle(&huge, "team", Some(&built_in), TASK_NETWORK)
        else {
            panic!("a limit past the built-in maxLimits is refused");
        };
        assert!(
            message
                .starts_with("TaskRunPolicy cluster (built in: the cluster has no such object): "),
            "{message}"
        );
        assert!(message.contains("maxLimits"), "{message}");
    }

    #[test]
    fn bridge_tasks_join_the_network_the_node_picked_and_none_stays_none() {
        let on = |network: &str| {
            settle(
                &spec(&format!("image: busybox\nnetwork: {network}")),
                "team",
                None,
                "bridge",
            )
            .unwrap()
            .security
            .network_mode
        };
        assert_eq!((on("Bridge"), on("None")), ("bridge".into(), "none".into()));
    }

    #[test]
    fn a_nodes_containers_together_hold_at_most_half_its_pids() {
        assert_eq!(node_pids_ceiling(32768, 16), 1024);
        assert_eq!(node_pids_ceiling(4_194_304, 16), 131_072);
        assert_eq!(node_pids_ceiling(32768, 0), 16384);
        assert_eq!(node_pids_ceiling(301, 64), 16);
    }

    #[test]
    fn each_security_context_field_reaches_the_container() {
        let s = settled(
            "image: busybox\nnetwork: None\nsecurityContext: {runAsUser: 1000, runAsGroup: 2000, readOnlyRootFilesystem: true, allowPrivilegeEscalation: true, capabilities: {add: [NET_BIND_SERVICE], drop: [ALL]}}",
            None,
        );
        assert_eq!(s.security.user.as_deref(), Some("1000:2000"));
        assert!(s.security.read_only_root);
        assert!(!s.security.no_new_privileges);
        assert_eq!(s.security.cap_add, ["NET_BIND_SERVICE"]);
        assert_eq!(s.security.cap_drop, ["ALL"]);
        assert_eq!(s.security.network_mode, "none");
        let raw = |yaml| settled(yaml, None).security.cap_drop;
        assert_eq!(
            raw("image: busybox\nsecurityContext: {capabilities: {drop: [CHOWN]}}"),
            ["CHOWN", "NET_RAW"]
        );
        assert!(
            raw("image: busybox\nsecurityContext: {capabilities: {add: [NET_RAW]}}").is_empty(),
            "a spec may add it back"
        );
        assert_eq!(
            settled("image: busybox\nsecurityContext: {runAsUser: 7}", None)
                .security
                .user
                .as_deref(),
            Some("7")
        );
    }

    #[test]
    fn the_image_user_is_checked_only_for_non_root_runs_without_a_user() {
        assert!(
            settled(
                "image: busybox\nsecurityContext: {runAsNonRoot: true}",
                None
            )
            .check_image_user
        );
        assert!(
            !settled(
                "image: busybox\nsecurityContext: {runAsNonRoot: true, runAsUser: 5}",
                None
            )
            .check_image_user
        );
        assert!(
            settled(
                "image: busybox\nsecurityContext: {runAsNonRoot: true}",
                Some("requireNonRoot: true")
            )
            .check_image_user
        );
    }

    #[test]
    fn the_policy_gives_defaults_the_spec_leaves_open() {
        let s = settled(
            "image: busybox",
            Some(
                "defaultLimits: {memory: 32Mi}\nmaxLimits: {cpu: 500m, memory: 64Mi}\npidsLimit: 100\ndefaultNetwork: None",
            ),
        );
        assert_eq!(s.memory_bytes, Some(32 << 20));
        assert_eq!(
            s.nano_cpus,
            Some(500_000_000),
            "the maximum when no default"
        );
        assert_eq!(s.security.pids_limit, 100);
        assert_eq!(s.security.network_mode, "none");
        let own = settled(
            "image: busybox\nnetwork: Bridge\nresources: {limits: {memory: 16Mi}}",
            Some("defaultLimits: {memory: 32Mi}\ndefaultNetwork: None"),
        );
        assert_eq!(own.memory_bytes, Some(16 << 20));
        assert_eq!(own.security.network_mode, "taskrun");
    }

    #[test]
    fn a_run_breaking_the_policy_gets_no_settings_but_every_broken_rule() {
        let failure = settle(
            &spec("image: alpine\nnetwork: Bridge"),
            "team",
            Some(&policy("allowedImages: [busybox]\nallowedNetworks: [None]")),
            TASK_NETWORK,
        )
        .unwrap_err();
        let LaunchFailure::PolicyViolation(message) = failure else {
            panic!("{failure:?}");
        };
        assert_eq!(
            message,
            "TaskRunPolicy cluster: spec.image matches none of allowedImages; TaskRunPolicy cluster: spec.network (defaultNetwork when unset) is not among allowedNetworks"
        );
    }

    #[test]
    fn a_limit_that_is_not_a_quantity_is_refused_not_dropped() {
        let failure = settle(
            &spec("image: busybox\nresources: {limits: {cpu: lots}}"),
            "team",
            None,
            TASK_NETWORK,
        )
        .unwrap_err();
        assert!(
            matches!(&failure, LaunchFailure::InvalidLimit(m) if m.contains("resources.limits.cpu \"lots\" is not a quantity")),
            "{failure:?}"
        );
    }

    #[test]
    fn root_images_are_refused_as_a_kubelet_refuses_them() {
        for user in ["", "0", "root", "0:0", "root:wheel", "nobody", "app:1000"] {
            assert!(non_root_user("img", user).is_err(), "{user:?}");
        }
        for user in ["1000", "65532:65532", "1:0"] {
            assert!(non_root_user("img", user).is_ok(), "{user:?}");
        }
        let message = non_root_user("busybox", "").unwrap_err();
        assert!(
            message.contains("image busybox runs as root") && message.contains("runAsUser"),
            "{message}"
        );
    }
}
