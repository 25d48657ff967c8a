use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use tracing::{info, warn};

use super::context::{Context, Metrics};
use crate::api::TaskRun;

/// Removes this node's containers whose TaskRun no longer exists (deleted while the
/// controller was down, say). Containers without our labels are never looked at.
pub async fn sweep_orphans(context: Arc<Context>, store: Store<DeserializeGuard<TaskRun>>, interval: Duration) {
    if store.wait_until_ready().await.is_err() {
        return;
    }
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        let docker = context.executor.docker();
        let containers = match docker.list_managed(context.executor.node()).await {
            Ok(containers) => containers,
            Err(e) => {
                warn!(error = %e, "orphan sweep could not list containers");
                continue;
            }
        };
        let known: HashSet<String> = store.state().iter().filter_map(|guard| guard.uid()).collect();
        for (id, owner) in containers.into_iter().filter(|(_, owner)| !known.contains(&owner.uid)) {
            match docker.remove_container(&id).await {
                Ok(()) => {
                    Metrics::count(&context.metrics.containers_removed);
                    info!(container = %id, namespace = %owner.namespace, name = %owner.name, "removed container of a deleted TaskRun");
                }
                Err(e) => warn!(error = %e, "orphan sweep could not remove a container"),
            }
        }
    }
}
