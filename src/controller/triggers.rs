use std::time::Duration;

use futures::StreamExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::api::TaskRun;
use crate::docker::DockerClient;

/// Turns the daemon's container events into reconciles of the owning TaskRuns, so an exit is
/// seen when it happens. When the event stream breaks (daemon restart), it reconnects and asks
/// for every TaskRun to be looked at again, since events in between are lost.
pub async fn follow_container_stops(
    docker: DockerClient,
    node: String,
    stopped: mpsc::Sender<ObjectRef<DeserializeGuard<TaskRun>>>,
    resync: mpsc::Sender<()>,
) {
    let mut delay = Duration::from_millis(250);
    loop {
        let mut events = Box::pin(docker.container_stops(&node));
        while let Some(event) = events.next().await {
            match event {
                Ok(owner) => {
                    delay = Duration::from_millis(250);
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
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
        if docker.ping().await.is_ok() && resync.try_send(()).is_err() && resync.is_closed() {
            return;
        }
    }
}
