//! Which node's agent acts on a run. A run is claimed by one agent, which records itself in
//! the `taskrun.dev/node` annotation with the same write that adds the finalizer, guarded by
//! the object's resourceVersion so exactly one claim wins.
//!
//! The annotation is metadata, which whoever may write the TaskRun may write too. The admission
//! policy in `deploy/` refuses such writes, and the agent does not rely on it: a claim in its
//! own node's name counts only when the agent can vouch for it (it wrote the claim, or a status
//! of its own records the run on this node). Any other is no claim: the run goes through
//! capacity, cordon and policy as an unclaimed run, and is freed when this node cannot take it.

use super::Action;
use crate::api::{Reason, TaskRunSpec, TaskRunStatus};

/// The annotation naming the node whose agent claimed a run.
pub const CLAIM_ANNOTATION: &str = "taskrun.dev/node";

/// The annotation naming the attempt a claim was made at, written with the claim.
pub const CLAIM_ATTEMPT_ANNOTATION: &str = "taskrun.dev/claim-attempt";

/// What an agent sees of a run when deciding whether it is its to act on.
#[derive(Clone, Copy, Debug)]
pub struct Claim<'a> {
    pub spec: &'a TaskRunSpec,
    pub status: &'a TaskRunStatus,
    /// The node named in [`CLAIM_ANNOTATION`], if any.
    pub claimed_by: Option<&'a str>,
    /// The attempt named in [`CLAIM_ATTEMPT_ANNOTATION`]; `None` for claims made before runs
    /// had attempts.
    pub claim_attempt: Option<u32>,
    /// This agent's node.
    pub node: &'a str,
    /// Whether this agent may take another run: it has room and its own Lease is current.
    pub can_take: bool,
    /// Whether this agent vouches for a claim in its node's name: it wrote that claim, or a
    /// status it wrote records the run on this node.
    pub vouched: bool,
}

/// Where a run stands for this agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Claimed by this node: run it.
    Mine,
    /// Unclaimed and this node may take it: claim it.
    Claim,
    /// Unclaimed, but this node is running all it can; another may take it.
    Full,
    /// Another live node's, or not this node's to take.
    Elsewhere,
    /// Ended, and no other live agent looks after it: it ended here without a claim, on a node
    /// whose agent is not live, or on none. This agent finishes what is left (records a spec
    /// change as seen, deletes it once `deleteAfterSeconds` has passed), as may every other
    /// agent that sees it so: each of those writes is guarded.
    Unattended,
    /// Claimed by a node that no agent ever announced, so no container of it can exist: free
    /// it for others.
    Release { node: String },
    /// Claimed by a node whose agent is gone: its container may exist there, so the run is
    /// never started again here; it ended `NodeLost`.
    Lost { node: String },
    /// Pinned by `spec.nodeName` to a node that has no live agent: say so while it waits.
    Unavailable { node: String },
    /// The claiming node was lost and its attempt is recorded as ended `NodeLost`, with a next
    /// attempt to come: free the claim for any node, this one included, to take that attempt.
    Handover { node: String },
    /// Claimed by a write no agent can vouch for (this node's name, written by someone else,
    /// while this node cannot take the run), or in a name that is no node's: free it, so the
    /// run is placed as an unclaimed one.
    Disown { why: Disowned },
}

/// Why a claim is not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disowned {
    /// It names this node, but this agent did not write it, and this node cannot take the run.
    NotWrittenHere,
    /// Its value is not a node name.
    NotANodeName,
}

impl Disowned {
    /// What the log says of the claim: "released a run claimed by ...".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotWrittenHere => "a write in its name that this agent did not make",
            Self::NotANodeName => "a value that is no node's name",
        }
    }
}

/// Whether `name` can be a node's name: a DNS-1123 subdomain, as Kubernetes requires of a
/// Node's, so it is safe in the API paths of Leases and Nodes.
pub fn is_node_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

/// What is known of another node's agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Its Lease is current.
    Live,
    /// Its Lease has run out.
    Lost,
    /// No Lease seen yet: an agent that just started may not have been seen.
    Unknown,
    /// No Lease after watching for a whole Lease duration: no agent of that name exists.
    Absent,
}

/// Places a run for this agent, given what is known of each node's agent.
///
/// Only a Lease that ran out, or none after a whole Lease duration, makes a node gone: an
/// agent whose Lease this one has not seen yet may have just started and claimed runs.
pub fn place(claim: Claim<'_>, node_state: impl Fn(&str) -> NodeState) -> Placement {
    let Claim {
        spec,
        status,
        claimed_by,
        claim_attempt,
        node,
        can_take,
        vouched,
    } = claim;
    if claimed_by.is_some_and(|owner| !is_node_name(owner)) {
        return Placement::Disown {
            why: Disowned::NotANodeName,
        };
    }
    if let Some(owner) = claimed_by
        && handed_over(status, owner, claim_attempt)
    {
        return Placement::Handover {
            node: owner.to_string(),
        };
    }
    if claimed_by == Some(node) {
        if vouched || status.phase().is_final() {
            return Placement::Mine;
        }
        // A claim this agent cannot vouch for is no claim: the run is placed as unclaimed.
        return match place(
            Claim {
                claimed_by: None,
                ..claim
            },
            node_state,
        ) {
            Placement::Claim => Placement::Claim,
            _ => Placement::Disown {
                why: Disowned::NotWrittenHere,
            },
        };
    }
    if status.phase().is_final() {
        let ended_on = claimed_by.or(status.node_name.as_deref());
        let attended =
            ended_on.is_some_and(|owner| owner != node && node_state(owner) == NodeState::Live);
        return if attended {
            Placement::Elsewhere
        } else {
            Placement::Unattended
        };
    }
    if let Some(owner) = claimed_by {
        let owner = owner.to_string();
        return match node_state(&owner) {
            NodeState::Live | NodeState::Unknown => Placement::Elsewhere,
            NodeState::Absent if status.container_id.is_none() => {
                Placement::Release { node: owner }
            }
            NodeState::Absent | NodeState::Lost => Placement::Lost { node: owner },
        };
    }
    match spec.node_name.as_deref() {
        Some(pinned) if pinned != node => {
            if node_state(pinned) == NodeState::Live
                || status.reason == Some(Reason::NodeUnavailable)
            {
                Placement::Elsewhere
            } else {
                Placement::Unavailable {
                    node: pinned.to_string(),
                }
            }
        }
        _ if can_take || spec.cancel => Placement::Claim,
        _ => Placement::Full,
    }
}

/// Why `node` takes no new run at all, if it takes none: its agent refuses every run (`refusal`,
/// as for a daemon it cannot trust) or its Node object is cordoned. The run's message.
pub fn closed(node: &str, refusal: Option<&str>, cordoned: bool) -> Option<String> {
    match refusal {
        Some(why) => Some(format!(
            "node {node} takes no runs: {why}; waiting for a node that does"
        )),
        None => cordoned.then(|| {
            format!("node {node} is cordoned and takes no new runs; waiting for a node that does")
        }),
    }
}

/// Whether a run a closed node cannot take is to be held `Unschedulable` with `message` by this
/// node's agent: the run is pinned here, or no other node's agent is live to take it, and its
/// status does not say so already.
pub fn holds_unschedulable(
    pinned_here: bool,
    others_live: bool,
    status: &TaskRunStatus,
    message: &str,
) -> bool {
    (pinned_here || !others_live) && !super::status::says(status, Reason::Unschedulable, message)
}

/// What a step of a run asks of this node's `--max-running` places, which are for containers:
/// a run waiting for a reference, a back-off or its namespace's ceiling holds none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// The step creates or starts a container: it needs a place.
    Take,
    /// A container of the run runs here: it holds its place, whatever the room.
    Keep,
    /// No container of the run runs or is about to: its place is free.
    Free,
}

/// The place `action` needs, given whether a container of the run (this attempt's or the
/// previous one's) runs on this node.
pub fn room_for(action: &Action, container_running: bool) -> Room {
    match action {
        Action::Launch | Action::Start { .. } => Room::Take,
        _ if container_running => Room::Keep,
        _ => Room::Free,
    }
}

/// Whether the claim of `owner` is one made before its attempt was recorded as lost: the
/// status shows that attempt ended `NodeLost` on `owner` and a later one not yet started. The
/// owner never starts that later attempt under its old claim, so freeing the claim cannot let
/// two nodes run one attempt.
fn handed_over(status: &TaskRunStatus, owner: &str, claim_attempt: Option<u32>) -> bool {
    let attempt = status.attempt();
    let lost_here = status.previous_attempts.last().is_some_and(|record| {
        record.reason == Reason::NodeLost
            && record.node_name.as_deref() == Some(owner)
            && u32::try_from(record.attempt).is_ok_and(|a| a.saturating_add(1) == attempt)
    });
    !status.phase().is_final()
        && status.container_id.is_none()
        && lost_here
        && claim_attempt.is_none_or(|claimed| claimed < attempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> TaskRunSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn status(yaml: &str) -> TaskRunStatus {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_closed_node_says_why_and_holds_a_run_only_it_could_take_once() {
        assert_eq!(closed("a", None, false), None);
        let refused = closed("a", Some("seccomp is unconfined"), true).unwrap();
        assert_eq!(
            refused,
            "node a takes no runs: seccomp is unconfined; waiting for a node that does"
        );
        let cordoned = closed("a", None, true).unwrap();
        assert!(cordoned.contains("is cordoned"), "{cordoned}");

        let fresh = TaskRunStatus::default();
        assert!(holds_unschedulable(true, true, &fresh, &cordoned));
        assert!(holds_unschedulable(false, false, &fresh, &cordoned));
        assert!(
            !holds_unschedulable(false, true, &fresh, &cordoned),
            "another live node may take it"
        );
        let said = TaskRunStatus {
            reason: Some(Reason::Unschedulable),
            message: Some(cordoned.clone()),
            ..TaskRunStatus::default()
        };
        assert!(
            !holds_unschedulable(true, false, &said, &cordoned),
            "said already"
        );
        assert!(
            holds_unschedulable(true, false, &said, &refused),
            "a new reason"
        );
    }

    fn placed(
        spec: &TaskRunSpec,
        status: &TaskRunStatus,
        claimed_by: Option<&str>,
        can_take: bool,
    ) -> Placement {
        let claim = Claim {
            spec,
            status,
            claimed_by,
            claim_attempt: None,
            node: "a",
            can_take,
            vouched: true,
        };
        place(claim, |node| match node {
            "a" | "b" => NodeState::Live,
            "gone" => NodeState::Lost,
            "never" => NodeState::Absent,
            _ => NodeState::Unknown,
        })
    }

    #[test]
    fn only_a_container_takes_or_keeps_a_place() {
        assert_eq!(room_for(&Action::Launch, false), Room::Take);
        let start = Action::Start {
            container_id: "c1".into(),
        };
        assert_eq!(room_for(&start, false), Room::Take);
        let backoff = Action::Wait { until: None };
        assert_eq!(room_for(&backoff, false), Room::Free);
        assert_eq!(room_for(&backoff, true), Room::Keep);
        assert_eq!(room_for(&Action::Remove, false), Room::Free);
    }

    #[test]
    fn an_unclaimed_run_is_claimed_when_there_is_room() {
        let s = spec("image: busybox");
        assert_eq!(placed(&s, &status("{}"), None, true), Placement::Claim);
        assert_eq!(placed(&s, &status("{}"), None, false), Placement::Full);
    }

    #[test]
    fn a_cancelled_run_is_claimed_even_when_full_so_its_end_is_recorded() {
        assert_eq!(
            placed(
                &spec("image: busybox\ncancel: true"),
                &status("{}"),
                None,
                false
            ),
            Placement::Claim
        );
    }

    #[test]
    fn claimed_runs_belong_to_their_node() {
        let s = spec("image: busybox");
        assert_eq!(placed(&s, &status("{}"), Some("a"), false), Placement::Mine);
        assert_eq!(
            placed(&s, &status("{}"), Some("b"), true),
            Placement::Elsewhere
        );
    }

    #[test]
    fn a_claim_in_this_nodes_name_that_this_agent_did_not_write_is_no_claim() {
        let s = spec("image: busybox");
        let forged = |can_take, status: &TaskRunStatus| {
            let claim = Claim {
                spec: &s,
                status,
                claimed_by: Some("a"),
                claim_attempt: None,
                node: "a",
                can_take,
                vouched: false,
            };
            place(claim, |_| NodeState::Live)
        };
        assert_eq!(forged(true, &status("{}")), Placement::Claim);
        assert_eq!(
            forged(false, &status("{}")),
            Placement::Disown {
                why: Disowned::NotWrittenHere
            },
            "full or cordoned: freed, never run past the node's capacity"
        );
        assert_eq!(
            forged(false, &status("phase: Failed")),
            Placement::Mine,
            "an ended run starts nothing"
        );
        let pinned_elsewhere = spec("image: busybox\nnodeName: b");
        let claim = Claim {
            spec: &pinned_elsewhere,
            status: &status("{}"),
            claimed_by: Some("a"),
            claim_attempt: None,
            node: "a",
            can_take: true,
            vouched: false,
        };
        assert_eq!(
            place(claim, |_| NodeState::Live),
            Placement::Disown {
                why: Disowned::NotWrittenHere
            }
        );
    }

    #[test]
    fn a_claim_that_names_no_node_is_freed_by_any_agent() {
        let s = spec("image: busybox");
        for value in ["../../leases/x", "A", "", "a b", "-a", &"a".repeat(254)] {
            assert_eq!(
                placed(&s, &status("{}"), Some(value), true),
                Placement::Disown {
                    why: Disowned::NotANodeName
                },
                "{value:?}"
            );
        }
        assert!(is_node_name("node-a.example.com") && is_node_name("a"));
    }

    #[test]
    fn a_pinned_run_waits_for_its_node() {
        let pinned = spec("image: busybox\nnodeName: b");
        assert_eq!(
            placed(&pinned, &status("{}"), None, true),
            Placement::Elsewhere
        );
        let mine = spec("image: busybox\nnodeName: a");
        assert_eq!(placed(&mine, &status("{}"), None, true), Placement::Claim);
        let ghost = spec("image: busybox\nnodeName: ghost");
        assert_eq!(
            placed(&ghost, &status("{}"), None, true),
            Placement::Unavailable {
                node: "ghost".into()
            }
        );
        assert_eq!(
            placed(&ghost, &status("reason: NodeUnavailable"), None, true),
            Placement::Elsewhere
        );
    }

    #[test]
    fn runs_of_a_lost_node_are_lost_even_before_they_started() {
        let s = spec("image: busybox");
        let lost = Placement::Lost {
            node: "gone".into(),
        };
        assert_eq!(placed(&s, &status("{}"), Some("gone"), true), lost);
        let started = status("phase: Running\ncontainerId: c1");
        assert_eq!(placed(&s, &started, Some("gone"), true), lost);
        let ended = status("phase: Succeeded\ncontainerId: c1");
        assert_eq!(
            placed(&s, &ended, Some("gone"), true),
            Placement::Unattended
        );
    }

    #[test]
    fn an_ended_run_is_left_to_the_live_node_it_ended_on() {
        let s = spec("image: busybox");
        let ended = |node: &str| status(&format!("phase: Failed\nnodeName: {node}"));
        let never_claimed = status("phase: Failed\nreason: PendingTimeout");
        let cases = [
            (ended("b"), Some("b"), Placement::Elsewhere),
            (ended("b"), None, Placement::Elsewhere),
            (ended("a"), Some("b"), Placement::Elsewhere),
            (ended("new"), None, Placement::Unattended),
            (ended("gone"), Some("gone"), Placement::Unattended),
            (ended("gone"), None, Placement::Unattended),
            (ended("a"), None, Placement::Unattended),
            (never_claimed, None, Placement::Unattended),
            (ended("a"), Some("a"), Placement::Mine),
        ];
        for (recorded, claimed_by, expected) in cases {
            assert_eq!(
                placed(&s, &recorded, claimed_by, false),
                expected,
                "{recorded:?} claimed by {claimed_by:?}"
            );
        }
    }

    #[test]
    fn a_claim_naming_a_node_never_announced_is_released_once_known_absent() {
        let s = spec("image: busybox");
        assert_eq!(
            placed(&s, &status("{}"), Some("never"), true),
            Placement::Release {
                node: "never".into()
            }
        );
        assert_eq!(
            placed(&s, &status("{}"), Some("new"), true),
            Placement::Elsewhere,
            "not yet seen is not absent"
        );
        assert_eq!(
            placed(&s, &status("containerId: c1"), Some("never"), true),
            Placement::Lost {
                node: "never".into()
            },
            "a run with a container is never released"
        );
    }

    #[test]
    fn a_lost_nodes_recorded_attempt_is_handed_over_once_and_only_under_the_old_claim() {
        let s = spec("image: busybox\nretries: {limit: 2, reasons: [NodeLost]}");
        let retried = status(
            "phase: Pending\nreason: BackOff\nattempt: 2\npreviousAttempts: [{attempt: 1, nodeName: gone, reason: NodeLost, completionTime: '1970-01-01T00:01:40Z'}]",
        );
        let handover = Placement::Handover {
            node: "gone".into(),
        };
        assert_eq!(placed(&s, &retried, Some("gone"), true), handover);
        let place_with = |claimed_by, claim_attempt, node| {
            let claim = Claim {
                spec: &s,
                status: &retried,
                claimed_by: Some(claimed_by),
                claim_attempt,
                node,
                can_take: true,
                vouched: true,
            };
            place(claim, |_| NodeState::Live)
        };
        assert_eq!(
            place_with("gone", Some(1), "gone"),
            handover,
            "the lost node itself gives the old claim up"
        );
        assert_eq!(
            place_with("gone", Some(2), "gone"),
            Placement::Mine,
            "a fresh claim for attempt 2 is kept"
        );
        let started = TaskRunStatus {
            container_id: Some("c2".into()),
            ..retried.clone()
        };
        assert_eq!(
            placed(&s, &started, Some("gone"), true),
            Placement::Lost {
                node: "gone".into()
            }
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::api::Phase;

        fn node_state() -> impl Strategy<Value = NodeState> {
            prop_oneof![
                Just(NodeState::Live),
                Just(NodeState::Lost),
                Just(NodeState::Unknown),
                Just(NodeState::Absent),
            ]
        }

        fn node() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("a".to_string()),
                Just("b".to_string()),
                Just("c".to_string())
            ]
        }

        proptest! {
            #[test]
            fn a_run_is_never_taken_from_a_node_that_may_run_it(
                phase in proptest::option::of(prop_oneof![
                    Just(Phase::Pending), Just(Phase::Running), Just(Phase::Succeeded),
                    Just(Phase::Failed), Just(Phase::Cancelled),
                ]),
                container_id in proptest::option::of(Just("c1".to_string())),
                claimed_by in proptest::option::of(node()),
                pinned in proptest::option::of(node()),
                cancel in any::<bool>(),
                can_take in any::<bool>(),
                vouched in any::<bool>(),
                states in proptest::collection::vec(node_state(), 3),
            ) {
                let mut spec = TaskRunSpec::for_image("busybox");
                spec.node_name = pinned;
                spec.cancel = cancel;
                let status = TaskRunStatus { phase, container_id, ..TaskRunStatus::default() };
                let state_of = |node: &str| match node {
                    "a" => states[0],
                    "b" => states[1],
                    _ => states[2],
                };
                let claim = Claim {
                    spec: &spec,
                    status: &status,
                    claimed_by: claimed_by.as_deref(),
                    claim_attempt: None,
                    node: "a",
                    can_take,
                    vouched,
                };
                let placement = place(claim, state_of);
                match &placement {
                    Placement::Mine => {
                        prop_assert_eq!(claimed_by.as_deref(), Some("a"));
                        prop_assert!(vouched || status.phase().is_final());
                    }
                    Placement::Claim => prop_assert!(
                        claimed_by.as_deref().is_none_or(|owner| owner == "a" && !vouched)
                            && (can_take || cancel)
                    ),
                    Placement::Disown { .. } => {
                        prop_assert_eq!(claimed_by.as_deref(), Some("a"));
                        prop_assert!(!vouched && !status.phase().is_final());
                    }
                    Placement::Release { node } => {
                        prop_assert_eq!(state_of(node), NodeState::Absent);
                        prop_assert!(status.container_id.is_none() && !status.phase().is_final());
                    }
                    Placement::Lost { node } => {
                        prop_assert!(matches!(state_of(node), NodeState::Lost | NodeState::Absent));
                        prop_assert!(!status.phase().is_final());
                    }
                    Placement::Unavailable { .. } => prop_assert!(!status.phase().is_final()),
                    Placement::Handover { .. } => prop_assert!(status.container_id.is_none()),
                    Placement::Unattended => {
                        prop_assert!(status.phase().is_final());
                        prop_assert!(claimed_by.as_deref().is_none_or(|owner| state_of(owner) != NodeState::Live));
                    }
                    Placement::Full | Placement::Elsewhere => {}
                }
                if claimed_by.as_deref().is_some_and(|owner| owner != "a") {
                    prop_assert!(!matches!(placement, Placement::Mine | Placement::Claim));
                }
            }
        }
    }
}
