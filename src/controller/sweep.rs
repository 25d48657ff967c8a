//! The periodic sweep ([`sweep_orphans`]): removes this node's containers whose TaskRun no longer
//! exists (deleted while the controller was down, say) and forgets what the agent keeps about runs
//! that are gone or no longer its own. A container is an orphan only when the API server, not the
//! cache, has no TaskRun of its name with its UID; containers without the operator's labels are
//! never looked at.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use super::claims::claimed_by;
use super::context::Context;
use crate::api::TaskRun;
use crate::docker::ContainerOwner;

/// Forgets what the agent keeps about TaskRuns that are gone or no longer its own (failure
/// counts, places held), and removes this node's containers whose TaskRun no longer exists
/// (deleted while the controller was down, say). Containers without our labels are never
/// looked at.
pub async fn sweep_orphans(
    context: Arc<Context>,
    store: Store<DeserializeGuard<TaskRun>>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        let existing = store
            .state()
            .iter()
            .map(|guard| ObjectRef::from_obj(&**guard))
            .collect();
        context.forget_failures_except(&existing);
        context
            .nodes
            .hold_only(&still_held(&store, context.executor.node()));
        let containers = match context.executor.containers().await {
            Ok(containers) => containers,
            Err(e) => {
                warn!(error = %e, "orphan sweep could not list containers");
                continue;
            }
        };
        let cached: HashSet<String> = store
            .state()
            .iter()
            .filter_map(|guard| guard.uid())
            .collect();
        for (id, owner) in containers
            .into_iter()
            .filter(|(_, owner)| !cached.contains(&owner.uid))
        {
            // The cache may lag behind; only the API server's answer makes a container an orphan.
            match taskrun_exists(&context.client, &owner).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    warn!(error = %e, "orphan sweep could not look up a TaskRun");
                    continue;
                }
            }
            match context.executor.remove_orphan(&id).await {
                Ok(()) => {
                    context.metrics.containers_removed.inc();
                    info!(container = %id, namespace = %owner.namespace, name = %owner.name, "removed the container of a deleted TaskRun");
                }
                Err(e) => warn!(error = %e, "orphan sweep could not remove a container"),
            }
        }
    }
}

async fn taskrun_exists(
    client: &kube::Client,
    owner: &ContainerOwner,
) -> Result<bool, kube::Error> {
    let api: Api<TaskRun> = Api::namespaced(client.clone(), &owner.namespace);
    let found = api.get_metadata_opt(&owner.name).await?;
    Ok(found.is_some_and(|taskrun| taskrun.uid().as_deref() == Some(owner.uid.as_str())))
}

/// The runs whose places this node may still hold: those in the cache that are unfinished and
/// claimed by it or by no one yet (a claim of its own may be on its way).
fn still_held(store: &Store<DeserializeGuard<TaskRun>>, node: &str) -> HashSet<String> {
    store
        .state()
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|taskrun| {
            let ended = taskrun
                .status
                .as_ref()
                .is_some_and(|s| s.phase().is_final());
            let claim = claimed_by(taskrun);
            !ended && claim.is_none_or(|owner| owner == node)
        })
        .filter_map(|taskrun| taskrun.uid())
        .collect()
}
