//! Whether the step [`decide()`](super::decide()) chose may go on this node now, decided from
//! what the agent knows of its node alone: its Lease, the TaskRunPolicy it has read, the runs
//! of the namespace that run, and whether a container of the run runs here. Nothing here waits
//! or writes; the controller carries out the [`Gate`] it gets.

use jiff::{SignedDuration, Timestamp};

use super::Action;
use super::egress::{Egress, unenforced};
use super::placement::{Room, room_for};
use crate::api::{Network, Reason, TaskRunPolicy, TaskRunSpec, TaskRunStatus, policy_violations};

/// How long a run waits to start while this agent's own Lease is not current.
pub const LEASE_WAIT: SignedDuration = SignedDuration::from_secs(1);

/// How long a run waits to start while this agent has not read the TaskRunPolicy yet; the
/// read itself wakes every run sooner.
const POLICY_WAIT: SignedDuration = SignedDuration::from_secs(1);

/// What the gates look at.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    /// The step [`decide()`](super::decide()) chose.
    pub action: &'a Action,
    pub namespace: &'a str,
    pub spec: &'a TaskRunSpec,
    /// Whether this agent renewed its own Lease recently enough to start containers.
    pub lease_current: bool,
    /// The policy this agent enforces; `None` while it has not been read.
    pub policy: Option<&'a TaskRunPolicy>,
    /// How many of the namespace's other runs have a container running, cluster-wide.
    pub running_in_namespace: usize,
    /// Whether a container of the run (this attempt's or the previous one's) runs here.
    pub container_running: bool,
    /// What this node's firewall enforces of the policy's egress refusals.
    pub egress: &'a Egress,
    pub now: Timestamp,
}

/// What becomes of the step.
#[derive(Clone, Debug, PartialEq)]
pub enum Gate {
    /// Not now: look again at the time given. Another agent may judge this node lost while its
    /// Lease is not current, and a run must not slip past a policy not read yet.
    Later(Option<Timestamp>),
    /// The run waits `Pending` for `reason`, holding no place.
    Hold { reason: Reason, message: String },
    /// Go on: with the place the step asks of the node, and whether what the run takes from
    /// its namespace must be read first.
    Go { room: Room, reads: bool },
}

/// The gate of one step. Pure.
pub fn gate(node: Node<'_>) -> Gate {
    let starts = matches!(node.action, Action::Launch | Action::Start { .. });
    let launches = matches!(node.action, Action::Launch);
    if starts && !node.lease_current {
        return Gate::Later(node.now.checked_add(LEASE_WAIT).ok());
    }
    if starts && node.policy.is_none() {
        return Gate::Later(node.now.checked_add(POLICY_WAIT).ok());
    }
    let room = room_for(node.action, node.container_running);
    if room == Room::Take
        && launches
        && let Some(message) = node.policy.and_then(|policy| {
            policy
                .spec
                .namespace_ceiling(node.namespace, node.running_in_namespace)
        })
    {
        return Gate::Hold {
            reason: Reason::NamespaceLimit,
            message,
        };
    }
    // A launch the policy refuses creates nothing, so it needs nothing from the namespace; and
    // what a run takes from it is read only on the way to a start, never once its container
    // runs or ran.
    let refused = launches
        && node
            .policy
            .is_some_and(|policy| !policy_violations(policy, node.namespace, node.spec).is_empty());
    if starts
        && !refused
        && let Some(policy) = node.policy
        && policy.spec.network_of(node.spec) == Network::Bridge
        && let Some(message) = unenforced(&policy.spec, node.egress)
    {
        return Gate::Hold {
            reason: Reason::EgressUnenforced,
            message,
        };
    }
    let reads = starts && !refused && !node.spec.cluster_only_fields().is_empty();
    Gate::Go { room, reads }
}

/// Whether recording that a run waits for `reason` with `message` is news, worth an Event:
/// the status said something else before.
pub fn is_news(status: &TaskRunStatus, reason: Reason, message: &str) -> bool {
    !super::status::says(status, reason, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TaskRunPolicySpec;

    fn spec(yaml: &str) -> TaskRunSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn node<'a>(
        action: &'a Action,
        spec: &'a TaskRunSpec,
        policy: Option<&'a TaskRunPolicy>,
    ) -> Node<'a> {
        Node {
            action,
            namespace: "team",
            spec,
            lease_current: true,
            policy,
            running_in_namespace: 0,
            container_running: false,
            egress: &Egress::NotYet,
            now: Timestamp::UNIX_EPOCH,
        }
    }

    fn policy(yaml: &str) -> TaskRunPolicy {
        let spec: TaskRunPolicySpec = serde_yaml::from_str(yaml).unwrap();
        TaskRunPolicy::new("cluster", spec)
    }

    #[test]
    fn nothing_starts_without_a_current_lease_or_a_policy_read_but_the_rest_goes_on() {
        let plain = spec("image: busybox");
        let built_in = TaskRunPolicy::built_in("cluster");
        let later = Gate::Later(Timestamp::UNIX_EPOCH.checked_add(LEASE_WAIT).ok());
        for action in [
            Action::Launch,
            Action::Start {
                container_id: "c".into(),
            },
        ] {
            let lapsed = Node {
                lease_current: false,
                ..node(&action, &plain, Some(&built_in))
            };
            assert_eq!(gate(lapsed), later);
            assert_eq!(gate(node(&action, &plain, None)), later);
        }
        let waiting = Action::Wait { until: None };
        let lapsed = Node {
            lease_current: false,
            ..node(&waiting, &plain, None)
        };
        assert_eq!(
            gate(lapsed),
            Gate::Go {
                room: Room::Free,
                reads: false
            }
        );
    }

    #[test]
    fn a_launch_at_its_namespaces_ceiling_is_held_and_takes_no_place() {
        let plain = spec("image: busybox");
        let ceiling = policy("maxRunningPerNamespace: 2");
        let at = |running| Node {
            running_in_namespace: running,
            ..node(&Action::Launch, &plain, Some(&ceiling))
        };
        assert_eq!(
            gate(at(1)),
            Gate::Go {
                room: Room::Take,
                reads: false
            }
        );
        let Gate::Hold { reason, message } = gate(at(2)) else {
            panic!("held at the ceiling");
        };
        assert_eq!(reason, Reason::NamespaceLimit);
        assert!(message.contains("maxRunningPerNamespace (2)"), "{message}");
    }

    #[test]
    fn references_are_read_only_on_the_way_to_a_start_the_policy_allows() {
        let referring =
            spec("image: busybox\nenv: [{name: X, valueFrom: {secretKeyRef: {name: s, key: k}}}]");
        let allowing = policy("allowedImages: [busybox]");
        let refusing = policy("allowedImages: [alpine]");
        let reads = |action: &Action, policy: &TaskRunPolicy| match gate(node(
            action,
            &referring,
            Some(policy),
        )) {
            Gate::Go { reads, .. } => reads,
            other => panic!("{other:?}"),
        };
        assert!(reads(&Action::Launch, &allowing));
        assert!(
            !reads(&Action::Launch, &refusing),
            "refused: nothing to read"
        );
        assert!(!reads(&Action::Wait { until: None }, &allowing));
    }

    #[test]
    fn a_running_container_keeps_its_place_and_an_idle_run_frees_it() {
        let plain = spec("image: busybox");
        let built_in = TaskRunPolicy::built_in("cluster");
        let waiting = Action::Wait { until: None };
        let running = Node {
            container_running: true,
            ..node(&waiting, &plain, Some(&built_in))
        };
        assert_eq!(
            gate(running),
            Gate::Go {
                room: Room::Keep,
                reads: false
            }
        );
    }

    #[test]
    fn a_bridge_run_waits_for_the_firewall_and_a_run_without_a_network_does_not() {
        let denying = policy("deniedEgressCIDRs: [10.0.0.0/8]");
        let bridge = spec("image: busybox");
        let Gate::Hold { reason, .. } = gate(node(&Action::Launch, &bridge, Some(&denying))) else {
            panic!("held until the firewall holds the refusals");
        };
        assert_eq!(reason, Reason::EgressUnenforced);
        let enforced = Egress::Enforced(denying.spec.denied_egress().unwrap());
        let applied = Node {
            egress: &enforced,
            ..node(&Action::Launch, &bridge, Some(&denying))
        };
        assert!(matches!(gate(applied), Gate::Go { .. }));
        let isolated = spec("image: busybox\nnetwork: None");
        assert!(matches!(
            gate(node(&Action::Launch, &isolated, Some(&denying))),
            Gate::Go { .. }
        ));
        let refused = policy("deniedEgressCIDRs: [10.0.0.0/8]\nallowedImages: [alpine]");
        assert!(
            matches!(
                gate(node(&Action::Launch, &bridge, Some(&refused))),
                Gate::Go { .. }
            ),
            "a launch the policy refuses goes on to its refusal"
        );
    }

    #[test]
    fn a_wait_is_news_when_its_reason_or_message_changed() {
        let status = TaskRunStatus {
            reason: Some(Reason::ReferenceMissing),
            message: Some("secret s is missing".into()),
            ..TaskRunStatus::default()
        };
        assert!(!is_news(
            &status,
            Reason::ReferenceMissing,
            "secret s is missing"
        ));
        assert!(is_news(
            &status,
            Reason::ReferenceMissing,
            "secret t is missing"
        ));
        assert!(is_news(
            &status,
            Reason::NamespaceLimit,
            "secret s is missing"
        ));
    }
}
