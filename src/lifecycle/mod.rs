//! The rules of a run, shared by the controller and `taskrun run`: what to do next, decided
//! from the TaskRun and its container alone ([`decide()`]); what each outcome records
//! ([`status`]); what a run takes from its namespace ([`inputs`]); and the Docker work
//! behind each action ([`Executor`]).

mod decide;
pub mod egress;
mod executor;
pub mod gates;
pub mod inputs;
mod placement;
pub mod plan;
pub mod security;
pub mod status;

pub use decide::{
    Action, Deletion, Ending, LaunchFailure, Observed, Pruning, StopCause, active_deadline,
    after_attempt, decide, decide_deletion, decide_pruning, decide_unclaimed, launch_failed,
    next_attempt_at, node_lost, pending_deadline,
};
pub use executor::{
    Executor, Observation, Outcome, OutputLimits, Prepared, Run, Transition, ended,
};
pub use placement::{
    CLAIM_ANNOTATION, CLAIM_ATTEMPT_ANNOTATION, Claim, Disowned, NodeState, Placement, Room,
    closed, holds_unschedulable, is_node_name, place, room_for,
};
