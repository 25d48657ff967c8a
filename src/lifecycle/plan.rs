//! The plan of a pass before it looks at the node's daemon: from where the run belongs
//! ([`place`]), when its TaskRun is due for deletion and whether this node takes new runs, the
//! one [`Step`] the controller carries out. Pure; the step of a run this node holds is then
//! decided from its container ([`decide()`](super::decide())) and gated
//! ([`gate`](super::gates::gate)).

use jiff::Timestamp;

use super::decide::Pruning;
use super::placement::{Claim, Disowned, NodeState, Placement, place};

/// What the pass knows of the run and of this node, besides the other nodes' states.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub claim: Claim<'a>,
    /// When the run's TaskRun is deleted.
    pub pruning: Pruning,
    /// Why this node takes no new run, if it takes none ([`closed`](super::closed)).
    pub closed: Option<&'a str>,
}

/// What the pass does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Delete the TaskRun: its `deleteAfterSeconds` have passed.
    Prune,
    /// Run it as this node's.
    Act,
    /// An ended run of this node: give up its place and finish what is left of it (its
    /// container, a spec change to record as seen); look again at `prune_at`, when its TaskRun
    /// is due for deletion.
    Finish { prune_at: Option<Timestamp> },
    /// Claim it for this node.
    Claim,
    /// This node takes no new run: say why in the run's status, where this node is the one
    /// to say it.
    HoldClosed { message: String },
    /// Wait for one of this node's places to free up.
    WaitForRoom,
    /// Another node's, or not this node's to take; `ended` runs need nothing until they
    /// change.
    LeaveAlone { ended: bool },
    /// Ended and no live agent looks after it: record a spec change as seen; look again at
    /// `prune_at`.
    Attend { prune_at: Option<Timestamp> },
    /// Free the claim of a node no agent ever announced, once that is confirmed.
    FreeAbsent { node: String },
    /// End the run `NodeLost`, once the loss of its node is confirmed.
    EndLost { node: String },
    /// Say that the node the run is pinned to has no live agent.
    Unavailable { message: String },
    /// Free the claim of a lost node whose attempt ended, for the next attempt.
    Handover { node: String },
    /// Free a claim this agent does not keep.
    Disown { why: Disowned },
}

/// The step of a pass over the run `view` shows, given what is known of each node's agent.
pub fn plan(view: View<'_>, node_state: impl Fn(&str) -> NodeState) -> Step {
    let ended = view.claim.status.phase().is_final();
    match place(view.claim, node_state) {
        Placement::Mine | Placement::Unattended if view.pruning == Pruning::Delete => Step::Prune,
        Placement::Mine if ended => Step::Finish {
            prune_at: view.pruning.due_at(),
        },
        Placement::Mine => Step::Act,
        Placement::Claim => Step::Claim,
        Placement::Full => match view.closed {
            Some(message) => Step::HoldClosed {
                message: message.to_string(),
            },
            None => Step::WaitForRoom,
        },
        Placement::Elsewhere => Step::LeaveAlone { ended },
        Placement::Unattended => Step::Attend {
            prune_at: view.pruning.due_at(),
        },
        Placement::Release { node } => Step::FreeAbsent { node },
        Placement::Lost { node } => Step::EndLost { node },
        Placement::Unavailable { node } => Step::Unavailable {
            message: format!(
                "spec.nodeName names node {node}, which has no live agent; waiting for one"
            ),
        },
        Placement::Handover { node } => Step::Handover { node },
        Placement::Disown { why } => Step::Disown { why },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{TaskRunSpec, TaskRunStatus};

    fn spec(yaml: &str) -> TaskRunSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn status(yaml: &str) -> TaskRunStatus {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn claim<'a>(
        spec: &'a TaskRunSpec,
        status: &'a TaskRunStatus,
        claimed_by: Option<&'a str>,
        can_take: bool,
    ) -> Claim<'a> {
        Claim {
            spec,
            status,
            claimed_by,
            claim_attempt: Some(1),
            node: "node-a",
            can_take,
            vouched: true,
        }
    }

    fn live(_: &str) -> NodeState {
        NodeState::Live
    }

    #[test]
    fn a_run_of_this_node_is_acted_on_finished_once_ended_and_deleted_when_due() {
        let spec = spec("image: busybox");
        let running = status("phase: Running");
        let ended = status("phase: Succeeded");
        let at = Timestamp::from_second(1_000).unwrap();
        let view = |status, pruning| View {
            claim: claim(&spec, status, Some("node-a"), true),
            pruning,
            closed: None,
        };
        assert_eq!(plan(view(&running, Pruning::Keep), live), Step::Act);
        assert_eq!(
            plan(view(&ended, Pruning::At(at)), live),
            Step::Finish { prune_at: Some(at) }
        );
        assert_eq!(plan(view(&ended, Pruning::Delete), live), Step::Prune);
    }

    #[test]
    fn an_ended_run_no_live_agent_attends_is_attended_and_deleted_when_due() {
        let spec = spec("image: busybox");
        let ended = status("phase: Failed\nnodeName: node-b");
        let at = Timestamp::from_second(1_000).unwrap();
        let view = |pruning| View {
            claim: claim(&spec, &ended, Some("node-b"), true),
            pruning,
            closed: None,
        };
        let lost = |_: &str| NodeState::Lost;
        assert_eq!(
            plan(view(Pruning::At(at)), lost),
            Step::Attend { prune_at: Some(at) }
        );
        assert_eq!(plan(view(Pruning::Delete), lost), Step::Prune);
        assert_eq!(
            plan(view(Pruning::Delete), live),
            Step::LeaveAlone { ended: true },
            "its own node's agent deletes it"
        );
    }

    #[test]
    fn a_full_node_waits_for_room_and_a_closed_one_says_why() {
        let spec = spec("image: busybox");
        let pending = TaskRunStatus::default();
        let view = |closed| View {
            claim: claim(&spec, &pending, None, false),
            pruning: Pruning::Keep,
            closed,
        };
        assert_eq!(plan(view(None), live), Step::WaitForRoom);
        assert_eq!(
            plan(view(Some("node node-a is cordoned")), live),
            Step::HoldClosed {
                message: "node node-a is cordoned".into()
            }
        );
    }

    #[test]
    fn a_run_pinned_to_a_node_without_a_live_agent_says_which() {
        let spec = spec("image: busybox\nnodeName: node-z");
        let pending = TaskRunStatus::default();
        let view = View {
            claim: claim(&spec, &pending, None, true),
            pruning: Pruning::Keep,
            closed: None,
        };
        assert_eq!(
            plan(view, |_| NodeState::Absent),
            Step::Unavailable {
                message:
                    "spec.nodeName names node node-z, which has no live agent; waiting for one"
                        .into(),
            }
        );
        assert_eq!(plan(view, live), Step::LeaveAlone { ended: false });
    }
}
