//! What wakes a pass over a run besides a change to its TaskRun: the daemon's container events
//! ([`follow_container_stops`]), a change every run depends on ([`resync_open_runs`]) and a place
//! freed on this node ([`wake_runs_waiting_for_room`]). Each only queues the run for the controller, where
//! it goes through the same pass and the same backoff as any other; none of them writes to the API
//! server or to Docker.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::claims::{claim_attempt, claimed_by};
use super::context::Context;
use crate::api::{TaskRun, TaskRunStatus};
use crate::lifecycle::{Claim, Placement, place};

/// Turns the daemon's container events into reconciles of the owning TaskRuns, so an exit is
/// seen when it happens. When the event stream breaks (daemon restart), it reconnects and asks
/// for every run not yet ended to be looked at again, since events in between are lost; the
/// backoff of runs that failed while the daemon was away is over, since it answers again.
pub async fn follow_container_stops(
    context: Arc<Context>,
    stopped: mpsc::Sender<ObjectRef<DeserializeGuard<TaskRun>>>,
    resync: mpsc::Sender<()>,
) {
    let reconnect = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(10))
        .without_max_times();
    let mut delays = reconnect.build();
    let executor = &context.executor;
    loop {
        let mut events = executor.container_stops();
        while let Some(event) = events.next().await {
            match event {
                Ok(owner) => {
                    delays = reconnect.build();
                    debug!(namespace = %owner.namespace, name = %owner.name, "container stopped");
                    let object = ObjectRef::new(&owner.name).within(&owner.namespace);
                    if stopped.send(object).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "Docker event stream broke");
                    break;
                }
            }
        }
        tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(10))).await;
        // Exits while the stream was broken were missed: once the daemon answers again, every
        // run not yet ended is looked at (a resync already queued is enough).
        if executor.ping().await.is_ok() {
            context.forget_all_failures();
            if resync.try_send(()).is_err() && resync.is_closed() {
                return;
            }
        }
    }
}

/// Looks again at every run that may still change whenever something all runs depend on
/// changed: this agent's Lease, the Node objects, the policy, or the daemon after its events
/// were lost. A run that ended needs no such look: it is looked at when its TaskRun changes or
/// its pruning is due, and with thousands of ended runs, looking at each again would fill the
/// controller's queue with them.
pub async fn resync_open_runs(
    store: Store<DeserializeGuard<TaskRun>>,
    mut resync: mpsc::Receiver<()>,
    wake: mpsc::Sender<ObjectRef<DeserializeGuard<TaskRun>>>,
) {
    while resync.recv().await.is_some() {
        let open = store.state().into_iter().filter(|guard| match &guard.0 {
            Ok(taskrun) => may_change(taskrun),
            Err(_) => false,
        });
        for guard in open {
            if wake.send(ObjectRef::from_obj(&*guard)).await.is_err() {
                return;
            }
        }
    }
}

/// Whether a run may still change without its TaskRun changing: it has not ended, or it is
/// being deleted.
fn may_change(taskrun: &TaskRun) -> bool {
    let ended = taskrun
        .status
        .as_ref()
        .is_some_and(|status| status.phase().is_final());
    !ended || taskrun.meta().deletion_timestamp.is_some()
}

/// When this node has room again, looks at the runs waiting for a node first, instead of
/// leaving them to their periodic retry.
pub async fn wake_runs_waiting_for_room(
    context: Arc<Context>,
    store: Store<DeserializeGuard<TaskRun>>,
    wake: mpsc::Sender<ObjectRef<DeserializeGuard<TaskRun>>>,
) {
    let node = context.executor.node().to_string();
    loop {
        context.nodes.room.notified().await;
        // The runs this node would claim now that it has room, by the same rule as a pass.
        let no_status = TaskRunStatus::default();
        let waiting = store.state().into_iter().filter(|guard| match &guard.0 {
            Ok(taskrun) if taskrun.meta().deletion_timestamp.is_none() => {
                let claim = Claim {
                    spec: &taskrun.spec,
                    status: taskrun.status.as_ref().unwrap_or(&no_status),
                    claimed_by: claimed_by(taskrun),
                    claim_attempt: claim_attempt(taskrun),
                    node: &node,
                    can_take: true,
                    vouched: taskrun
                        .metadata
                        .uid
                        .as_deref()
                        .is_some_and(|uid| context.nodes.vouches(uid)),
                };
                place(claim, |other| context.nodes.state(other)) == Placement::Claim
            }
            _ => false,
        });
        for guard in waiting.take(WAKE_AT_ONCE) {
            if wake.send(ObjectRef::from_obj(&*guard)).await.is_err() {
                return;
            }
        }
    }
}

/// How many waiting runs one freed place wakes: more than one, since some of them will be
/// claimed by other nodes first.
const WAKE_AT_ONCE: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Phase;

    fn taskrun_in(phase: Option<Phase>) -> TaskRun {
        let mut taskrun: TaskRun =
            serde_yaml::from_str("metadata: {name: a}\nspec: {image: busybox}").expect("TaskRun");
        taskrun.status = phase.map(|phase| TaskRunStatus {
            phase: Some(phase),
            ..TaskRunStatus::default()
        });
        taskrun
    }

    #[test]
    fn only_runs_that_may_still_change_are_looked_at_again() {
        assert!(may_change(&taskrun_in(None)));
        assert!(may_change(&taskrun_in(Some(Phase::Pending))));
        assert!(may_change(&taskrun_in(Some(Phase::Running))));
        assert!(!may_change(&taskrun_in(Some(Phase::Succeeded))));
        assert!(!may_change(&taskrun_in(Some(Phase::Failed))));
        let mut deleted = taskrun_in(Some(Phase::Succeeded));
        deleted.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        assert!(may_change(&deleted));
    }
}
