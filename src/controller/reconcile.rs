//! One pass over a TaskRun ([`reconcile`]): plan what this agent does about it ([`plan`]),
//! claiming, releasing or ending it as that says, then observe its containers, [`decide`] the next step,
//! have the executor perform it and record the status; [`error_policy`] counts a failed pass and
//! retries it with the TaskRun's backoff.
//!
//! The finalizer is not left to kube-runtime's `finalizer()` helper: the claim adds it in the
//! same resourceVersion-guarded patch as the `taskrun.dev/node` annotation, so of several agents
//! exactly one wins, the finalizer and the claim land together or not at all, and the claim costs
//! one write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{Span, field, info, instrument, warn};

use super::claims::{
    self, Claimed, WAIT_FOR_ROOM, claim_attempt, claim_run, claimed_by, confirm_gone,
    delete_guarded, patch_metadata_guarded,
};
use super::context::Context;
use super::error::{Error, Result};
use super::events::EventType;
use super::policy::PolicyView;
use super::references;
use super::status_writer::write_status;
use crate::api::{FINALIZER, Reason, TaskRun, TaskRunStatus};
use crate::docker::ContainerState;
use crate::lifecycle::gates::{self, Gate, gate};
use crate::lifecycle::inputs::Resolution;
use crate::lifecycle::plan::{Step, View, plan};
use crate::lifecycle::{
    self, Action, Claim, Disowned, Ending, NodeState, Observed, Outcome, Prepared, Room, Run,
    StopCause, Transition, decide, decide_deletion, decide_pruning,
};

/// How long a run that waits on nothing but Docker events goes before it is looked at again.
const RESYNC: Duration = Duration::from_secs(600);

/// How often a run waiting for a Secret, ConfigMap or ServiceAccount looks again, besides
/// being woken when a Secret or ConfigMap it names changes (ServiceAccounts are not watched).
const REFERENCE_RECHECK: Duration = Duration::from_secs(10);

/// What one pass came to.
enum Pass {
    Performed(Box<Outcome>),
    /// The run waits for something it refers to, or for its namespace's ceiling.
    Waiting {
        reason: Reason,
        message: String,
    },
    /// The step would create or start a container and this node has no room; `free_claim`
    /// when nothing of the run exists here yet.
    NoRoom {
        free_claim: bool,
    },
}

/// How long a pass that found the copy its own write replaced waits, should the watch not
/// bring the write sooner.
const OWN_WRITE_WAIT: Duration = Duration::from_secs(5);

/// The time a pass decides by, read once at its start.
#[derive(Clone, Copy, Debug)]
struct Clock {
    now: Timestamp,
    instant: Instant,
}

/// One pass over a TaskRun: observe, decide, act, record.
#[instrument(skip(guard, context), fields(namespace = field::Empty, name = field::Empty))]
pub async fn reconcile(
    guard: Arc<DeserializeGuard<TaskRun>>,
    context: Arc<Context>,
) -> Result<Requeue> {
    let clock = Clock {
        now: Timestamp::now(),
        instant: Instant::now(),
    };
    let object = ObjectRef::from_obj(&*guard);
    if let Some(wait) = context.retry_wait(&object, clock.instant) {
        return Ok(Requeue::requeue(wait));
    }
    context.metrics.reconciles.inc();
    let taskrun = match &guard.0 {
        Ok(taskrun) => Arc::new(taskrun.clone()),
        Err(invalid) => {
            warn!(name = ?invalid.metadata.name, error = %invalid.error, "ignoring a TaskRun that does not parse");
            return Ok(Requeue::await_change());
        }
    };
    if context.own_writes.replaced(&taskrun) {
        // The watch brings this agent's own write, and with it the next pass.
        return Ok(Requeue::requeue(OWN_WRITE_WAIT));
    }
    let namespace = taskrun.namespace().unwrap_or_default();
    Span::current()
        .record("namespace", namespace.as_str())
        .record("name", taskrun.name_any().as_str());
    let api: Api<TaskRun> = Api::namespaced(context.client.clone(), &namespace);
    let result = if taskrun.meta().deletion_timestamp.is_some() {
        delete(&taskrun, &api, &context).await
    } else {
        place_and_act(&taskrun, &api, &context, clock).await
    };
    if result.is_ok() {
        context.clear_failures(&object);
    }
    result
}

/// Decides whose run this is, then acts as this node's agent.
async fn place_and_act(
    taskrun: &TaskRun,
    api: &Api<TaskRun>,
    context: &Context,
    clock: Clock,
) -> Result<Requeue> {
    let uid = taskrun
        .uid()
        .ok_or_else(|| Error::MissingMetadata(taskrun.name_any(), "uid"))?;
    let status = taskrun.status.clone().unwrap_or_default();
    let node = context.executor.node();
    let deadline = match unclaimed_deadline(taskrun, &status, api, context, clock).await? {
        Unclaimed::Ended => return Ok(Requeue::await_change()),
        Unclaimed::Due(deadline) => deadline,
    };
    let by_deadline = |wait: Duration| requeue_by(wait, deadline);
    let claim = Claim {
        spec: &taskrun.spec,
        status: &status,
        claimed_by: claimed_by(taskrun),
        claim_attempt: claim_attempt(taskrun),
        node,
        can_take: context.nodes.can_take(clock.instant),
        vouched: vouched(taskrun, &uid, &status, context),
    };
    let node_state = |other: &str| {
        if other == node {
            NodeState::Live
        } else {
            context.nodes.state(other)
        }
    };
    let closed = lifecycle::closed(
        node,
        context.nodes.refusal().as_deref(),
        context.nodes.cordoned(),
    );
    let view = View {
        claim,
        pruning: decide_pruning(&taskrun.spec, &status, clock.now),
        closed: closed.as_deref(),
    };
    match plan(view, node_state) {
        Step::Prune => {
            context.nodes.release(&uid);
            prune(taskrun, api, context).await
        }
        Step::Act => apply(taskrun, api, context, None, clock).await,
        Step::Finish { prune_at } => {
            context.nodes.release(&uid);
            apply(taskrun, api, context, prune_at, clock).await
        }
        // A won claim goes on at once with the TaskRun it wrote, not a watch event later.
        Step::Claim => match claim_run(taskrun, &uid, api, context).await? {
            Claimed::Won(claimed) => apply(&claimed, api, context, None, clock).await,
            Claimed::Not(requeue) => Ok(requeue),
        },
        Step::HoldClosed { message } => {
            hold_closed(taskrun, &status, api, context, &message, clock).await?;
            Ok(by_deadline(RESYNC))
        }
        Step::WaitForRoom => Ok(by_deadline(WAIT_FOR_ROOM)),
        Step::LeaveAlone { ended } => {
            context.nodes.release(&uid);
            Ok(if ended {
                Requeue::await_change()
            } else {
                by_deadline(RESYNC)
            })
        }
        Step::Attend { prune_at } => {
            context.nodes.release(&uid);
            // A spec change to a run no live agent looks after (a cancel after the fact) is
            // recorded as seen by whichever agent looks: nothing else will.
            if let Some(seen) = lifecycle::status::observed(&status, taskrun.meta().generation) {
                write_status(api, taskrun, &seen, context).await?;
            }
            Ok(requeue_at(prune_at, true))
        }
        Step::FreeAbsent { node: absent } => {
            if confirm_gone(context, &absent, NodeState::Absent).await? {
                claims::release(
                    taskrun,
                    api,
                    &absent,
                    "a node no agent ever announced",
                    context,
                )
                .await?;
            }
            Ok(Requeue::await_change())
        }
        Step::Disown { why } => disown(taskrun, &uid, why, api, context, clock).await,
        Step::Handover { node: lost } => {
            context.nodes.release(&uid);
            claims::release(
                taskrun,
                api,
                &lost,
                "a lost node, for its next attempt",
                context,
            )
            .await?;
            Ok(Requeue::await_change())
        }
        Step::EndLost { node: lost } => end_lost(taskrun, &uid, &lost, api, context, clock).await,
        Step::Unavailable { message } => {
            hold(
                taskrun,
                api,
                context,
                Reason::NodeUnavailable,
                &message,
                clock,
            )
            .await?;
            Ok(Requeue::requeue(RESYNC))
        }
    }
}

/// What became of a run's deadlines before any agent claimed it.
enum Unclaimed {
    /// A deadline passed: the run's end was recorded.
    Ended,
    /// The next deadline, if the run is unclaimed and has one.
    Due(Option<Timestamp>),
}

/// Ends a run no agent holds yet whose deadline passed: whichever agent sees it first does.
async fn unclaimed_deadline(
    taskrun: &TaskRun,
    status: &TaskRunStatus,
    api: &Api<TaskRun>,
    context: &Context,
    clock: Clock,
) -> Result<Unclaimed> {
    if claimed_by(taskrun).is_some() {
        return Ok(Unclaimed::Due(None));
    }
    let created = created(taskrun, clock.now);
    Ok(
        match lifecycle::decide_unclaimed(&taskrun.spec, status, created, clock.now) {
            Action::RecordEnd(ending) => {
                let generation = taskrun.meta().generation;
                let ended =
                    lifecycle::status::unclaimed_end(status, &ending, generation, clock.now);
                if write_status(api, taskrun, &ended, context).await? {
                    announce(taskrun, &Transition::Ended(ending), context);
                }
                Unclaimed::Ended
            }
            Action::Wait { until } => Unclaimed::Due(until),
            _ => Unclaimed::Due(None),
        },
    )
}

/// Says in the status of a run this closed node cannot take why it waits, when this node is
/// the one to say it.
async fn hold_closed(
    taskrun: &TaskRun,
    status: &TaskRunStatus,
    api: &Api<TaskRun>,
    context: &Context,
    message: &str,
    clock: Clock,
) -> Result<()> {
    let node = context.executor.node();
    let pinned_here = taskrun.spec.node_name.as_deref() == Some(node);
    let others_live = context.nodes.others_live(node);
    if lifecycle::holds_unschedulable(pinned_here, others_live, status, message) {
        hold(taskrun, api, context, Reason::Unschedulable, message, clock).await?;
    }
    Ok(())
}

/// Frees a claim this agent does not keep, unless a container of the run here shows the claim
/// was its own after all.
async fn disown(
    taskrun: &TaskRun,
    uid: &str,
    why: Disowned,
    api: &Api<TaskRun>,
    context: &Context,
    clock: Clock,
) -> Result<Requeue> {
    let attempt = taskrun.status.as_ref().map_or(1, TaskRunStatus::attempt);
    // A container of the run here is this agent's own, made after a claim it wrote before a
    // restart and before any status recorded it: the claim is its own too.
    if why == Disowned::NotWrittenHere
        && context
            .executor
            .observe(uid, attempt)
            .await
            .map_err(Error::Docker)?
            .current
            .is_some()
    {
        context.nodes.vouch(uid);
        return apply(taskrun, api, context, None, clock).await;
    }
    context.nodes.disown(uid);
    // The value of a claim that names no node is not logged: it is the author's text.
    let owner = match why {
        Disowned::NotWrittenHere => context.executor.node(),
        Disowned::NotANodeName => "-",
    };
    claims::release(taskrun, api, owner, why.as_str(), context).await?;
    Ok(Requeue::await_change())
}

/// Records that the attempt of a run on the lost node `lost` ended `NodeLost`, once the node is
/// confirmed gone.
async fn end_lost(
    taskrun: &TaskRun,
    uid: &str,
    lost: &str,
    api: &Api<TaskRun>,
    context: &Context,
    clock: Clock,
) -> Result<Requeue> {
    if !confirm_gone(context, lost, context.nodes.state(lost)).await? {
        return Ok(Requeue::await_change());
    }
    let status = taskrun.status.clone().unwrap_or_default();
    let ending = lifecycle::node_lost(&status, lost, clock.now);
    let container = status.container_name.clone().unwrap_or_default();
    let location = lifecycle::status::Location {
        node: lost,
        container_name: &container,
        generation: taskrun.meta().generation,
    };
    let namespace = taskrun.namespace().unwrap_or_default();
    let name = taskrun.name_any();
    let run = run_of(taskrun, &namespace, &name, uid, &status, clock);
    // With `NodeLost` in `retries.reasons` this records the next attempt; the pass after this
    // write frees the claim for it (`Step::Handover`).
    let tail = status.log_tail.clone();
    let outcome = lifecycle::ended(run, location, ending, None, tail, clock.now);
    if let Some(next) = &outcome.status
        && write_status(api, taskrun, next, context).await?
        && let Some(transition) = &outcome.transition
    {
        announce(taskrun, transition, context);
    }
    Ok(Requeue::await_change())
}

/// Whether this agent vouches for a claim of the run in its node's name: it wrote the claim,
/// or a status it wrote records the run on this node (only agents write the status).
fn vouched(taskrun: &TaskRun, uid: &str, status: &TaskRunStatus, context: &Context) -> bool {
    let node = context.executor.node();
    if context.nodes.vouches(uid) {
        return true;
    }
    let recorded_here = claimed_by(taskrun) == Some(node)
        && taskrun.finalizers().iter().any(|f| f == FINALIZER)
        && status.node_name.as_deref() == Some(node);
    if recorded_here {
        context.nodes.vouch(uid);
    }
    recorded_here
}

/// Records that the run waits, for `reason`, on something outside it.
async fn hold(
    taskrun: &TaskRun,
    api: &Api<TaskRun>,
    context: &Context,
    reason: Reason,
    message: &str,
    clock: Clock,
) -> Result<bool> {
    let status = taskrun.status.clone().unwrap_or_default();
    let waiting = lifecycle::status::held_up(
        &status,
        reason,
        message,
        taskrun.meta().generation,
        clock.now,
    );
    write_status(api, taskrun, &waiting, context).await
}

/// A TaskRun being deleted: the agent holding it stops and removes its container, then lets
/// the object go. A run nobody holds, or whose node is lost, is let go by any agent.
async fn delete(taskrun: &TaskRun, api: &Api<TaskRun>, context: &Context) -> Result<Requeue> {
    if !taskrun.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Requeue::await_change());
    }
    let node = context.executor.node();
    match claimed_by(taskrun) {
        Some(owner) if owner == node => cleanup(taskrun, context).await?,
        Some(owner) => match context.nodes.state(owner) {
            NodeState::Live | NodeState::Unknown => return Ok(Requeue::await_change()),
            gone => {
                if !confirm_gone(context, owner, gone).await? {
                    return Ok(Requeue::await_change());
                }
            }
        },
        None => {}
    }
    let remaining: Vec<&String> = taskrun
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    patch_metadata_guarded(api, taskrun, json!({ "finalizers": remaining }), context)
        .await
        .map_err(|cause| Error::ReleaseFinalizer {
            name: taskrun.name_any(),
            cause,
        })?;
    if let Some(uid) = taskrun.uid() {
        context.nodes.release(&uid);
        context.own_writes.forget(&uid);
    }
    Ok(Requeue::await_change())
}

/// Deletes the TaskRun of a run whose `deleteAfterSeconds` has passed, if it is still the
/// object this pass decided on; its finalizer then has the container removed.
async fn prune(taskrun: &TaskRun, api: &Api<TaskRun>, context: &Context) -> Result<Requeue> {
    let deleted = delete_guarded(api, taskrun)
        .await
        .map_err(|cause| Error::Prune {
            name: taskrun.name_any(),
            cause,
        })?;
    if deleted {
        context.metrics.pruned.inc();
        info!("deleted the TaskRun: deleteAfterSeconds passed since its run ended");
    }
    Ok(Requeue::await_change())
}

/// Logs and counts the failure, then retries the TaskRun with a growing delay.
pub fn error_policy(
    guard: Arc<DeserializeGuard<TaskRun>>,
    error: &Error,
    context: Arc<Context>,
) -> Requeue {
    context.metrics.reconcile_errors.inc();
    let delay = context.backoff(&ObjectRef::from_obj(&*guard), Instant::now());
    warn!(error = %error, retry_in = ?delay, "reconcile failed");
    Requeue::requeue(delay)
}

/// The run as the executor and the lifecycle see it, before its inputs are read.
fn run_of<'a>(
    taskrun: &'a TaskRun,
    namespace: &'a str,
    name: &'a str,
    uid: &'a str,
    status: &'a TaskRunStatus,
    clock: Clock,
) -> Run<'a> {
    Run {
        namespace,
        name,
        uid,
        generation: taskrun.meta().generation,
        created: created(taskrun, clock.now),
        spec: &taskrun.spec,
        status,
        inputs: None,
        prepared: None,
        policy: None,
    }
}

/// One step of a run this agent holds; `prune_at` is when its TaskRun is due for deletion.
async fn apply(
    taskrun: &TaskRun,
    api: &Api<TaskRun>,
    context: &Context,
    prune_at: Option<Timestamp>,
    clock: Clock,
) -> Result<Requeue> {
    let uid = taskrun
        .uid()
        .ok_or_else(|| Error::MissingMetadata(taskrun.name_any(), "uid"))?;
    let namespace = taskrun.namespace().unwrap_or_default();
    let name = taskrun.name_any();
    let status = taskrun.status.clone().unwrap_or_default();
    let run = run_of(taskrun, &namespace, &name, &uid, &status, clock);
    let policy = context.policy.view();

    let performed = step(taskrun, context, run, &policy, clock).await;
    let outcome = match performed {
        Ok(Pass::Performed(outcome)) => *outcome,
        Ok(Pass::NoRoom { free_claim }) => {
            if !free_claim {
                return Ok(Requeue::requeue(WAIT_FOR_ROOM));
            }
            // Nothing of the run exists here yet: any node with room may take it.
            context.nodes.disown(&uid);
            claims::release(
                taskrun,
                api,
                context.executor.node(),
                "this node, which has no room for it now",
                context,
            )
            .await?;
            return Ok(Requeue::await_change());
        }
        Ok(Pass::Waiting { reason, message }) => {
            context.nodes.release(&uid);
            let waiting =
                lifecycle::status::held_up(&status, reason, &message, run.generation, clock.now);
            let news = gates::is_news(&status, reason, &message);
            if write_status(api, taskrun, &waiting, context).await? && news {
                context
                    .events
                    .publish(taskrun, EventType::Warning, reason.as_str(), &message);
            }
            return Ok(Requeue::requeue(REFERENCE_RECHECK));
        }
        Err(Error::Docker(e)) => {
            let message = e.to_string();
            if status.reason != Some(Reason::DaemonUnavailable) {
                let held = lifecycle::status::held_up(
                    &status,
                    Reason::DaemonUnavailable,
                    &message,
                    run.generation,
                    clock.now,
                );
                write_status(api, taskrun, &held, context).await?;
            }
            return Err(Error::Docker(e));
        }
        Err(other) => return Err(other),
    };

    // A spec change the step left the status alone for (a cancel of an ended run) is still
    // recorded as seen.
    let next = outcome
        .status
        .clone()
        .or_else(|| lifecycle::status::observed(&status, run.generation));
    let recorded = match &next {
        Some(next) => write_status(api, taskrun, next, context).await?,
        None => true,
    };
    if !recorded {
        // A newer TaskRun exists; its watch event brings the next pass.
        return Ok(Requeue::await_change());
    }
    if let Some(transition) = &outcome.transition {
        announce(taskrun, transition, context);
    }
    let ended = next.as_ref().unwrap_or(&status).phase().is_final();
    Ok(requeue_after(&outcome, prune_at, ended))
}

/// The step of a run this agent holds: observe its containers, decide, pass the gates, read
/// what it takes from its namespace, and have the executor perform it.
async fn step(
    taskrun: &TaskRun,
    context: &Context,
    run: Run<'_>,
    policy: &PolicyView,
    clock: Clock,
) -> Result<Pass> {
    let observed = context
        .executor
        .observe(run.uid, run.status.attempt())
        .await
        .map_err(Error::Docker)?;
    let now = clock.now;
    let action = decide(Observed {
        uid: run.uid,
        node: context.executor.node(),
        spec: &taskrun.spec,
        status: run.status,
        created: run.created,
        container: observed.current.as_ref(),
        previous: observed.previous.as_ref(),
        now,
    });
    let running_here = [observed.current.as_ref(), observed.previous.as_ref()]
        .into_iter()
        .flatten()
        .any(|container| matches!(container.state, ContainerState::Running { .. }));
    let policy = match &policy {
        PolicyView::Known(policy) => Some(policy.as_ref()),
        PolicyView::Unknown => None,
    };
    let egress = context.egress();
    let gate_at = |lease_current: bool, now: Timestamp| {
        gate(gates::Node {
            action: &action,
            namespace: run.namespace,
            spec: &taskrun.spec,
            lease_current,
            policy,
            running_in_namespace: context.running_in_namespace(run.namespace, run.uid),
            container_running: running_here,
            egress: &egress,
            now,
        })
    };
    let lease_current = context.nodes.own_lease_current(clock.instant);
    let (room, reads) = match take_place(gate_at(lease_current, clock.now), &action, run, context) {
        Ok(go) => go,
        Err(pass) => return Ok(pass),
    };
    // Held until the launch is done with what was read: a few launches at once hold data.
    let _reading = if reads {
        Some(context.reference_reads.acquire().await)
    } else {
        None
    };
    let resolved = if reads {
        match references::gather(
            &context.client,
            run.namespace,
            &taskrun.spec,
            &context.task_api,
        )
        .await?
        {
            Resolution::Ready(inputs) => Some(inputs),
            Resolution::Waiting { reason, message } => {
                return Ok(Pass::Waiting { reason, message });
            }
        }
    } else {
        None
    };
    let run = Run {
        inputs: resolved.as_ref(),
        policy,
        ..run
    };
    let prepared = match action {
        Action::Launch => match context.executor.prepare(run).await.map_err(Error::Docker)? {
            Some(prepared) => Some(prepared),
            None => {
                // A pull may take minutes: the run waits for it holding no place, then passes
                // the gates again with what is true once it is done.
                if room == Room::Take {
                    context.nodes.release(run.uid);
                }
                let prepared = context
                    .executor
                    .pull_and_prepare(run)
                    .await
                    .map_err(Error::Docker)?;
                if !matches!(prepared, Prepared::Failed(_)) {
                    let lease_current = context.nodes.own_lease_current(Instant::now());
                    let gate = gate_at(lease_current, Timestamp::now());
                    if let Err(pass) = take_place(gate, &action, run, context) {
                        return Ok(pass);
                    }
                }
                Some(prepared)
            }
        },
        _ => None,
    };
    let run = Run {
        prepared: prepared.as_ref(),
        ..run
    };
    context
        .executor
        .perform(run, action, now)
        .await
        .map(|outcome| Pass::Performed(Box::new(outcome)))
        .map_err(Error::Docker)
}

/// Carries out the gate of a step: the place it asks of the node and whether what the run
/// takes from its namespace is read, or the pass this step comes to instead.
fn take_place(
    gate: Gate,
    action: &Action,
    run: Run<'_>,
    context: &Context,
) -> std::result::Result<(Room, bool), Pass> {
    match gate {
        Gate::Later(recheck_at) => Err(Pass::Performed(Box::new(Outcome {
            recheck_at,
            ..Outcome::default()
        }))),
        Gate::Hold { reason, message } => Err(Pass::Waiting { reason, message }),
        Gate::Go { room, reads } => {
            match room {
                Room::Take if !context.nodes.reserve(run.uid) => {
                    return Err(Pass::NoRoom {
                        free_claim: matches!(action, Action::Launch),
                    });
                }
                Room::Take => {}
                Room::Keep => context.nodes.hold(run.uid),
                Room::Free => context.nodes.release(run.uid),
            }
            Ok((room, reads))
        }
    }
}

/// Stops and removes the container of a TaskRun being deleted, as the lifecycle decides.
async fn cleanup(taskrun: &TaskRun, context: &Context) -> Result<()> {
    let Some(uid) = taskrun.uid() else {
        return Ok(());
    };
    let executor = &context.executor;
    let attempt = taskrun.status.as_ref().map_or(1, |s| s.attempt());
    let observed = executor
        .observe(&uid, attempt)
        .await
        .map_err(Error::Docker)?;
    let deletion = decide_deletion(&uid, &taskrun.spec, observed.current.as_ref());
    if executor
        .delete(&uid, attempt, deletion)
        .await
        .map_err(Error::Docker)?
    {
        context.metrics.containers_removed.inc();
        info!("removed the container of a deleted TaskRun");
    }
    Ok(())
}

/// When the TaskRun was created, from which its deadlines count (`now` for an object the API
/// server has not stamped).
fn created(taskrun: &TaskRun, now: Timestamp) -> Timestamp {
    taskrun
        .meta()
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0)
}

/// Looks again after `wait`, or at `deadline` if that comes first.
fn requeue_by(wait: Duration, deadline: Option<Timestamp>) -> Requeue {
    let until_deadline = deadline.map(|at| {
        at.duration_since(Timestamp::now())
            .unsigned_abs()
            .saturating_add(Duration::from_millis(10))
    });
    Requeue::requeue(until_deadline.map_or(wait, |d| d.min(wait)))
}

/// When to look at the run again after a pass that recorded what it did.
fn requeue_after(outcome: &Outcome, prune_at: Option<Timestamp>, ended: bool) -> Requeue {
    if outcome.recheck_now {
        return Requeue::requeue(Duration::ZERO);
    }
    requeue_at(outcome.recheck_at.into_iter().chain(prune_at).min(), ended)
}

/// [`look_again`] counted from this moment rather than from the pass's start: its steps (a
/// pull, a start) may have taken a while.
fn requeue_at(due: Option<Timestamp>, ended: bool) -> Requeue {
    look_again(due, ended, Timestamp::now())
}

/// At `due` when something is due, but no later than [`RESYNC`] from now; with nothing due, a
/// run under way after [`RESYNC`] and an ended run only when its TaskRun changes, so ended runs
/// hold no place in the controller's queue and cost no Docker request while they stay.
fn look_again(due: Option<Timestamp>, ended: bool, now: Timestamp) -> Requeue {
    match due {
        Some(at) => {
            let wait = if at > now {
                at.duration_since(now).unsigned_abs()
            } else {
                Duration::ZERO
            };
            Requeue::requeue(wait.min(RESYNC) + Duration::from_millis(10))
        }
        None if ended => Requeue::await_change(),
        None => Requeue::requeue(RESYNC),
    }
}

/// Counts a step of the run and tells about it in an Event, except for the removal of a
/// finished container, which only the log and the metrics tell: `kubectl describe` shows a
/// run's start and its outcome, two Events for a run that went as planned.
fn announce(taskrun: &TaskRun, transition: &Transition, context: &Context) {
    if let Transition::Started { .. } = transition {
        context.metrics.containers_started.inc();
    }
    if let Transition::Removed { container_name } = transition {
        context.metrics.containers_removed.inc();
        info!(container = %container_name, "removed the container of a finished run");
    }
    if let Transition::Ended(Ending {
        started_at: Some(started),
        finished_at,
        ..
    }) = transition
    {
        context
            .metrics
            .observe_run(finished_at.duration_since(*started).unsigned_abs());
    }
    if let Some((type_, reason, note)) = describe(transition, context.executor.node()) {
        context.events.publish(taskrun, type_, reason, &note);
    }
}

/// The Event that tells of a step of a run on `node`, if any does.
fn describe<'a>(transition: &'a Transition, node: &str) -> Option<(EventType, &'a str, String)> {
    Some(match transition {
        Transition::Started { container_name } => (
            EventType::Normal,
            "Started",
            format!("started container {container_name} on node {node}"),
        ),
        Transition::Adopted { container_name } => (
            EventType::Normal,
            "Adopted",
            format!("found container {container_name} running on node {node}"),
        ),
        Transition::Stopping(StopCause::DeadlineExceeded) => (
            EventType::Warning,
            "DeadlineExceeded",
            "stopping the container: timeoutSeconds passed".into(),
        ),
        Transition::Stopping(StopCause::ActiveDeadlineExceeded) => (
            EventType::Warning,
            "ActiveDeadlineExceeded",
            "stopping the container: activeDeadlineSeconds passed".into(),
        ),
        Transition::Retrying {
            ending,
            next_attempt,
            at,
        } => (
            EventType::Warning,
            "BackOff",
            format!(
                "{}: {}; attempt {next_attempt} starts at {at}",
                ending.reason, ending.message
            ),
        ),
        Transition::Stopping(StopCause::Cancelled) => (
            EventType::Normal,
            "Cancelling",
            "stopping the container on request".into(),
        ),
        Transition::Stopping(StopCause::AlreadyEnded) => (
            EventType::Normal,
            "Stopping",
            "stopping a container whose run has ended".into(),
        ),
        Transition::Ended(ending) => {
            let type_ = if ending.phase == crate::api::Phase::Succeeded {
                EventType::Normal
            } else {
                EventType::Warning
            };
            (
                type_,
                ending.reason.as_str(),
                format!("{}: {}", ending.phase, ending.message),
            )
        }
        Transition::Removed { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_run_with_nothing_due_waits_for_a_change() {
        let now = Timestamp::now();
        assert_eq!(look_again(None, true, now), Requeue::await_change());
        assert_eq!(look_again(None, false, now), Requeue::requeue(RESYNC));
    }

    #[test]
    fn something_due_is_looked_at_then_but_no_later_than_a_resync() {
        let now = Timestamp::now();
        let soon = now + jiff::SignedDuration::from_secs(30);
        let late = now + jiff::SignedDuration::from_hours(5);
        let past = now - jiff::SignedDuration::from_secs(30);
        let margin = Duration::from_millis(10);
        for ended in [true, false] {
            assert_eq!(
                look_again(Some(soon), ended, now),
                Requeue::requeue(Duration::from_secs(30) + margin)
            );
            assert_eq!(
                look_again(Some(late), ended, now),
                Requeue::requeue(RESYNC + margin)
            );
            assert_eq!(look_again(Some(past), ended, now), Requeue::requeue(margin));
        }
    }
}
