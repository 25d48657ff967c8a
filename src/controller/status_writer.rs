//! The one place that writes TaskRun status.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::FIELD_MANAGER;
use super::context::Context;
use super::error::{Error, Result};
use crate::api::{TaskRun, TaskRunStatus};

/// Writes the whole status with server-side apply, as the one owner of every status field,
/// unless the TaskRun already shows it. The write happens only if the TaskRun is still at the
/// resourceVersion this agent saw, so an agent never writes over a claim that moved to another
/// node, nor from a copy older than its own last write. Returns whether the status was
/// written (or already shown); when not, the newer TaskRun is on its way through the watch.
pub async fn write_status(
    api: &Api<TaskRun>,
    taskrun: &TaskRun,
    status: &TaskRunStatus,
    context: &Context,
) -> Result<bool> {
    if taskrun.status.as_ref() == Some(status) {
        return Ok(true);
    }
    let name = taskrun.name_any();
    let write_error = |cause| Error::WriteStatus {
        namespace: taskrun.namespace().unwrap_or_default(),
        name: name.clone(),
        cause,
    };
    let mut status = std::borrow::Cow::Borrowed(status);
    if super::record_left_out(taskrun) {
        // The cache keeps no log tail or conditions of an ended run: the write keeps the
        // stored ones.
        match api.get_opt(&name).await.map_err(write_error)? {
            Some(stored) if stored.resource_version() == taskrun.resource_version() => {
                super::put_back_record(status.to_mut(), stored.status.unwrap_or_default());
            }
            _ => return Ok(false),
        }
    }
    let patch = json!({
        "apiVersion": TaskRun::api_version(&()),
        "kind": TaskRun::kind(&()),
        "metadata": { "resourceVersion": taskrun.resource_version() },
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch_status(&name, &params, &Patch::Apply(&patch))
        .await
    {
        Ok(written) => {
            context.own_writes.record(taskrun, &written);
            context.metrics.status_writes.inc();
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(false),
        Err(cause) => Err(write_error(cause)),
    }
}
