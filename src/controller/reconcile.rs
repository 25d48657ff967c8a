use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalized, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{Span, field, info, instrument, warn};

use super::FIELD_MANAGER;
use super::context::{Context, Metrics};
use super::error::{Error, Result};
use crate::api::{FINALIZER, Reason, TaskRun, TaskRunStatus};
use crate::lifecycle::{self, Ending, Observed, Outcome, Run, StopCause, Transition, decide};

/// How long a run that waits on nothing but Docker events goes before it is looked at again.
const RESYNC: Duration = Duration::from_secs(600);

/// One pass over a TaskRun: observe, decide, act, record.
#[instrument(skip(guard, context), fields(namespace = field::Empty, name = field::Empty))]
pub async fn reconcile(
    guard: Arc<DeserializeGuard<TaskRun>>,
    context: Arc<Context>,
) -> Result<Requeue> {
    Metrics::count(&context.metrics.reconciles);
    let taskrun = match &guard.0 {
        Ok(taskrun) => Arc::new(taskrun.clone()),
        Err(invalid) => {
            warn!(name = ?invalid.metadata.name, error = %invalid.error, "ignoring a TaskRun that does not parse");
            return Ok(Requeue::await_change());
        }
    };
    let namespace = taskrun.namespace().unwrap_or_default();
    Span::current()
        .record("namespace", namespace.as_str())
        .record("name", taskrun.name_any().as_str());
    let api: Api<TaskRun> = Api::namespaced(context.client.clone(), &namespace);
    let object = ObjectRef::from_obj(&*taskrun);
    let result = finalizer(&api, FINALIZER, taskrun, |event| async {
        match event {
            Finalized::Apply(taskrun) => apply(&taskrun, &api, &context).await,
            Finalized::Cleanup(taskrun) => cleanup(&taskrun, &context).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        context.clear_failures(&object);
    }
    result
}

/// Logs and counts the failure, then retries the TaskRun with a growing delay.
pub fn error_policy(
    guard: Arc<DeserializeGuard<TaskRun>>,
    error: &Error,
    context: Arc<Context>,
) -> Requeue {
    Metrics::count(&context.metrics.reconcile_errors);
    let delay = match &guard.0 {
        Ok(taskrun) => context.backoff(&ObjectRef::from_obj(taskrun)),
        Err(_) => Duration::from_secs(60),
    };
    warn!(error = %error, retry_in = ?delay, "reconcile failed");
    Requeue::requeue(delay)
}

async fn apply(taskrun: &TaskRun, api: &Api<TaskRun>, context: &Context) -> Result<Requeue> {
    let uid = taskrun
        .uid()
        .ok_or_else(|| Error::MissingMetadata(taskrun.name_any(), "uid"))?;
    let namespace = taskrun.namespace().unwrap_or_default();
    let name = taskrun.name_any();
    let status = taskrun.status.clone().unwrap_or_default();
    let run = Run {
        namespace: &namespace,
        name: &name,
        uid: &uid,
        generation: taskrun.meta().generation,
        spec: &taskrun.spec,
        status: &status,
    };

    let performed = async {
        let container = context.executor.observe(&uid).await?;
        let now = Timestamp::now();
        let action = decide(Observed {
            uid: &uid,
            spec: &taskrun.spec,
            status: &status,
            container: container.as_ref(),
            now,
        });
        context.executor.perform(run, action, now).await
    }
    .await;
    let outcome = match performed {
        Ok(outcome) => outcome,
        Err(e) => {
            let message = e.to_string();
            if status.reason != Some(Reason::DaemonUnavailable) {
                let held = lifecycle::status::held_up(
                    &status,
                    Reason::DaemonUnavailable,
                    &message,
                    run.generation,
                    Timestamp::now(),
                );
                write_status(api, &name, &namespace, &held, context).await?;
            }
            return Err(Error::Docker(e));
        }
    };

    if let Some(next) = outcome.status.as_ref().filter(|next| **next != status) {
        write_status(api, &name, &namespace, next, context).await?;
    }
    if let Some(transition) = &outcome.transition {
        announce(taskrun, transition, context);
    }
    Ok(requeue_after(&outcome, Timestamp::now()))
}

/// Stops and removes the container of a TaskRun being deleted. A container already gone, or
/// one that is not ours, leaves nothing to do.
async fn cleanup(taskrun: &TaskRun, context: &Context) -> Result<Requeue> {
    let Some(uid) = taskrun.uid() else {
        return Ok(Requeue::await_change());
    };
    let container = context
        .executor
        .observe(&uid)
        .await
        .map_err(Error::Docker)?;
    if let Some(container) = container.filter(|c| c.owner.as_ref().is_some_and(|o| o.uid == uid)) {
        let docker = context.executor.docker();
        let grace = Duration::from_secs(
            taskrun
                .spec
                .termination_grace_period_seconds()
                .max(0)
                .unsigned_abs(),
        );
        docker
            .stop_container(&container.id, grace)
            .await
            .map_err(Error::Docker)?;
        docker
            .remove_container(&container.id)
            .await
            .map_err(Error::Docker)?;
        Metrics::count(&context.metrics.containers_removed);
        info!(container = %container.name, "removed the container of a deleted TaskRun");
    }
    Ok(Requeue::await_change())
}

/// Writes the whole status with server-side apply, as the one owner of every status field.
async fn write_status(
    api: &Api<TaskRun>,
    name: &str,
    namespace: &str,
    status: &TaskRunStatus,
    context: &Context,
) -> Result<()> {
    let patch = json!({
        "apiVersion": TaskRun::api_version(&()),
        "kind": TaskRun::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::WriteStatus {
        namespace: namespace.into(),
        name: name.into(),
        source,
    })?;
    Metrics::count(&context.metrics.status_writes);
    Ok(())
}

/// When to look at the run again.
fn requeue_after(outcome: &Outcome, now: Timestamp) -> Requeue {
    if outcome.recheck_now {
        return Requeue::requeue(Duration::ZERO);
    }
    match outcome.recheck_at {
        Some(at) => {
            let wait = at.duration_since(now).unsigned_abs();
            Requeue::requeue(wait.min(RESYNC) + Duration::from_millis(10))
        }
        None => Requeue::requeue(RESYNC),
    }
}

/// Publishes a Kubernetes Event for a step of the run, without holding up the reconcile.
fn announce(taskrun: &TaskRun, transition: &Transition, context: &Context) {
    if let Transition::Started { .. } = transition {
        Metrics::count(&context.metrics.containers_started);
    }
    if let Transition::Removed { .. } = transition {
        Metrics::count(&context.metrics.containers_removed);
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
    let node = context.executor.node();
    let (type_, reason, note) = match transition {
        Transition::Pulling => (
            EventType::Normal,
            "Pulling",
            format!("pulling image {}", taskrun.spec.image),
        ),
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
        Transition::Removed { container_name } => (
            EventType::Normal,
            "ContainerRemoved",
            format!("removed container {container_name}"),
        ),
    };
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: reason.to_string(),
        secondary: None,
    };
    let reference = taskrun.object_ref(&());
    let recorder = context.recorder.clone();
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            warn!(error = %e, "could not publish an Event");
        }
    });
}
