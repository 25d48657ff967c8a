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
/// for every TaskRun to be looked at again, since events in between are lost; the backoff of
/// runs that failed while the daemon was away is over, since it answers again.
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
        // TaskRun is looked at (a resync already queued is enough).
        if executor.ping().await.is_ok() {
            context.forget_all_failures();
            if resync.try_send(()).is_err() && resync.is_closed() {
                return;
            }
        }
    }
}

/// When this node has room again, looks at the runs waiting for a node first, instead of
/// leaving them to their periodic retry.
pub async fn wake_waiting_runs(
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
