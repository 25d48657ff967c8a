//! Claims: which agent acts on a run. A claim is one metadata write, guarded by the
//! resourceVersion the agent saw, so of several agents exactly one wins. The agents' other
//! writes to the TaskRun object itself (releasing a claim or the finalizer, deleting it once
//! `deleteAfterSeconds` has passed) are guarded the same way.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action as Requeue;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::info;

use super::context::Context;
use super::error::{Error, Result};
use super::leases;
use crate::api::{FINALIZER, TaskRun};
use crate::lifecycle::{CLAIM_ANNOTATION, CLAIM_ATTEMPT_ANNOTATION, NodeState};

/// How long an unclaimed run waits for room before it is looked at again, should no run on
/// this node end sooner.
pub(super) const WAIT_FOR_ROOM: Duration = Duration::from_secs(5);

/// What came of a claim.
pub enum Claimed {
    /// This node holds the run now: the TaskRun as the claim left it.
    Won(Box<TaskRun>),
    /// Another agent came first, or there is no room: look again as this says.
    Not(Requeue),
}

/// Claims the run for this node: one write adds the finalizer and the claim annotation, and
/// carries the resourceVersion this agent saw, so of several agents exactly one succeeds.
pub async fn claim_run(
    taskrun: &TaskRun,
    uid: &str,
    api: &Api<TaskRun>,
    context: &Context,
) -> Result<Claimed> {
    if !context.nodes.reserve(uid) {
        return Ok(Claimed::Not(Requeue::requeue(WAIT_FOR_ROOM)));
    }
    let mut finalizers = taskrun.finalizers().to_vec();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        finalizers.push(FINALIZER.to_string());
    }
    let node = context.executor.node();
    let attempt = taskrun
        .status
        .as_ref()
        .map_or(1, |status| status.attempt())
        .to_string();
    let metadata = json!({
        "finalizers": finalizers,
        "annotations": { CLAIM_ANNOTATION: node, CLAIM_ATTEMPT_ANNOTATION: attempt },
    });
    match patch_metadata_guarded(api, taskrun, metadata, context).await {
        Ok(Some(claimed)) => {
            context.nodes.vouch(uid);
            info!(node = %node, "claimed");
            Ok(Claimed::Won(Box::new(claimed)))
        }
        Ok(None) => {
            context.nodes.release(uid);
            Ok(Claimed::Not(Requeue::await_change()))
        }
        Err(cause) => {
            context.nodes.release(uid);
            Err(Error::Claim {
                name: taskrun.name_any(),
                cause,
            })
        }
    }
}

/// Merges `metadata` into the TaskRun if it is still at the resourceVersion this agent saw,
/// and returns what was written. `None` when another writer came first (or the object is
/// gone): there is nothing left to do.
pub async fn patch_metadata_guarded(
    api: &Api<TaskRun>,
    taskrun: &TaskRun,
    mut metadata: serde_json::Value,
    context: &Context,
) -> Result<Option<TaskRun>, kube::Error> {
    metadata["resourceVersion"] = json!(taskrun.resource_version());
    let patch = json!({ "metadata": metadata });
    match api
        .patch(
            &taskrun.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(written) => {
            context.own_writes.record(taskrun, &written);
            Ok(Some(written))
        }
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes the TaskRun if it is still the object, at the resourceVersion, this agent saw: never
/// one created again under the same name, nor one that changed since. False when another
/// writer came first (or the object is gone): there is nothing left to do.
pub async fn delete_guarded(api: &Api<TaskRun>, taskrun: &TaskRun) -> Result<bool, kube::Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: taskrun.uid(),
            resource_version: taskrun.resource_version(),
        }),
        ..DeleteParams::default()
    };
    match api.delete(&taskrun.name_any(), &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Frees a run claimed by `node` for any node to take, saying `why` in the log.
pub async fn release(
    taskrun: &TaskRun,
    api: &Api<TaskRun>,
    node: &str,
    why: &str,
    context: &Context,
) -> Result<()> {
    let metadata =
        json!({ "annotations": { CLAIM_ANNOTATION: null, CLAIM_ATTEMPT_ANNOTATION: null } });
    let released = patch_metadata_guarded(api, taskrun, metadata, context)
        .await
        .map_err(|cause| Error::Claim {
            name: taskrun.name_any(),
            cause,
        })?;
    if released.is_some() {
        info!(node = %node, "released a run claimed by {why}");
    }
    Ok(())
}

/// Reads the Node object or the Lease of `node` afresh before a run is taken from it: the
/// watch may lag behind a node or an agent that came back.
pub async fn confirm_gone(context: &Context, node: &str, expected: NodeState) -> Result<bool> {
    if context.nodes.node_deleted(node) {
        let nodes: Api<Node> = Api::all(context.client.clone());
        return nodes
            .get_opt(node)
            .await
            .map(|found| found.is_none())
            .map_err(|cause| Error::ReadNode {
                node: node.to_string(),
                cause,
            });
    }
    leases::confirm(&context.leases, node, expected)
        .await
        .map_err(|cause| Error::ReadLease {
            node: node.to_string(),
            cause,
        })
}

/// The attempt the run's claim was made at, if recorded.
pub fn claim_attempt(taskrun: &TaskRun) -> Option<u32> {
    taskrun
        .metadata
        .annotations
        .as_ref()?
        .get(CLAIM_ATTEMPT_ANNOTATION)?
        .parse()
        .ok()
}

/// The node named in the run's claim, if any.
pub fn claimed_by(taskrun: &TaskRun) -> Option<&str> {
    taskrun
        .metadata
        .annotations
        .as_ref()?
        .get(CLAIM_ANNOTATION)
        .map(String::as_str)
}
