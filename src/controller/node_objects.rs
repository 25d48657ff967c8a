//! The cluster's Node objects, where the agents run on Kubernetes nodes: a cordoned Node takes
//! no new runs, and a Node that was deleted is a lost node whatever its agent's Lease says.

use std::collections::HashSet;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::context::{Context, NodeObjects};

/// Follows the Node objects and tells the agent's view of the nodes what changed; every
/// TaskRun is looked at again when it does, so a cordon, an uncordon or a deletion acts at
/// once. Nodes are only ever judged by objects seen: an agent that runs where no Node object
/// exists is neither cordoned nor deleted.
pub async fn follow_nodes(context: Arc<Context>, resync: mpsc::Sender<()>) {
    let api: Api<Node> = Api::all(context.client.clone());
    let own = context.executor.node().to_string();
    let (store, writer) = reflector::store();
    let mut changes = watcher(api, watcher::Config::default())
        .backoff(super::watch_backoff())
        .reflect(writer)
        .boxed();
    let mut ever_seen = HashSet::new();
    let mut told_forbidden = false;
    while let Some(change) = changes.next().await {
        let ready = store.wait_until_ready().now_or_never().is_some();
        if let Err(watcher::Error::InitialListFailed(kube::Error::Api(e))) = &change
            && e.code == 403
            && !ready
        {
            if context.nodes.set_node_objects(NodeObjects::default()) || !told_forbidden {
                warn!("may not read Node objects: cordoned and deleted Nodes are not honoured");
                told_forbidden = true;
            }
            continue;
        }
        if change.is_err() || !ready {
            continue;
        }
        let view = node_objects(&store, &own, &mut ever_seen);
        let summary = format!("{view:?}");
        if context.nodes.set_node_objects(view) {
            info!(nodes = %summary, "Node objects changed");
            let _ = resync.try_send(());
        }
    }
}

/// What the Node objects in `store` say, remembering every Node ever seen so that one no
/// longer there is known to be deleted.
fn node_objects(store: &Store<Node>, own: &str, ever_seen: &mut HashSet<String>) -> NodeObjects {
    let present: HashSet<String> = store.state().iter().map(|node| node.name_any()).collect();
    ever_seen.extend(present.iter().cloned());
    let deleted: HashSet<String> = ever_seen.difference(&present).cloned().collect();
    let own_node = store
        .state()
        .into_iter()
        .find(|node| node.name_any() == own);
    let cordoned = deleted.contains(own)
        || own_node
            .and_then(|node| node.spec.as_ref()?.unschedulable)
            .unwrap_or(false);
    NodeObjects { cordoned, deleted }
}
