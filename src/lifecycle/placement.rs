//! Which node's agent acts on a run. A run is claimed by one agent, which records itself in
//! the `taskrun.dev/node` annotation with the same write that adds the finalizer, guarded by
//! the object's resourceVersion so exactly one claim wins.

use crate::api::{Phase, Reason, TaskRunSpec, TaskRunStatus};

/// The annotation naming the node whose agent claimed a run.
pub const CLAIM_ANNOTATION: &str = "taskrun.dev/node";

/// What an agent sees of a run when deciding whether it is its to act on.
#[derive(Clone, Copy, Debug)]
pub struct Claim<'a> {
    pub spec: &'a TaskRunSpec,
    pub status: &'a TaskRunStatus,
    /// The node named in [`CLAIM_ANNOTATION`], if any.
    pub claimed_by: Option<&'a str>,
    /// This agent's node.
    pub node: &'a str,
    /// Whether this agent may take another run.
    pub has_capacity: bool,
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
    /// Claimed by a node whose agent is gone, before its container started: free it for others.
    Release { node: String },
    /// Claimed by a node whose agent is gone, after its container started: it ended `NodeLost`.
    Lost { node: String },
    /// Pinned by `spec.nodeName` to a node that has no live agent: say so while it waits.
    Unavailable { node: String },
}

/// What is known of another node's agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Its Lease is current.
    Live,
    /// Its Lease has run out.
    Lost,
    /// No Lease seen (yet): an agent that just started, or a node that never had one.
    Unknown,
}

/// Places a run for this agent, given what is known of each node's agent.
///
/// Only a Lease that ran out makes a node lost: an agent whose Lease this one has not seen
/// yet may have just started and claimed runs.
pub fn place(claim: Claim<'_>, node_state: impl Fn(&str) -> NodeState) -> Placement {
    let Claim {
        spec,
        status,
        claimed_by,
        node,
        has_capacity,
    } = claim;
    if let Some(owner) = claimed_by {
        return if owner == node {
            Placement::Mine
        } else if node_state(owner) != NodeState::Lost || status.phase().is_final() {
            Placement::Elsewhere
        } else if status.phase() == Phase::Pending && status.container_id.is_none() {
            Placement::Release {
                node: owner.to_string(),
            }
        } else {
            Placement::Lost {
                node: owner.to_string(),
            }
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
        _ if has_capacity || spec.cancel => Placement::Claim,
        _ => Placement::Full,
    }
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

    fn placed(
        spec: &TaskRunSpec,
        status: &TaskRunStatus,
        claimed_by: Option<&str>,
        has_capacity: bool,
    ) -> Placement {
        let claim = Claim {
            spec,
            status,
            claimed_by,
            node: "a",
            has_capacity,
        };
        place(claim, |node| match node {
            "a" | "b" => NodeState::Live,
            "gone" => NodeState::Lost,
            _ => NodeState::Unknown,
        })
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
    fn runs_of_a_lost_node_are_released_before_start_and_lost_after() {
        let s = spec("image: busybox");
        assert_eq!(
            placed(&s, &status("{}"), Some("gone"), true),
            Placement::Release {
                node: "gone".into()
            }
        );
        assert_eq!(
            placed(&s, &status("{}"), Some("new"), true),
            Placement::Elsewhere,
            "not yet seen is not lost"
        );
        let started = status("phase: Running\ncontainerId: c1");
        assert_eq!(
            placed(&s, &started, Some("gone"), true),
            Placement::Lost {
                node: "gone".into()
            }
        );
        let ended = status("phase: Succeeded\ncontainerId: c1");
        assert_eq!(placed(&s, &ended, Some("gone"), true), Placement::Elsewhere);
    }
}
