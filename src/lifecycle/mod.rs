//! The rules of a run, shared by the controller and `taskrun run`: what to do next, decided
//! from the TaskRun and its container alone ([`decide`]); what each outcome records
//! ([`status`]); what a run takes from its namespace ([`inputs`]); and the Docker work
//! behind each action ([`Executor`]).

mod decide;
mod executor;
pub mod inputs;
mod placement;
pub mod status;

pub use decide::{
    Action, Deletion, Ending, LaunchFailure, Observed, StopCause, decide, decide_deletion,
    launch_failed, node_lost,
};
pub use executor::{Executor, Outcome, Run, Transition};
pub use placement::{CLAIM_ANNOTATION, Claim, NodeState, Placement, place};
