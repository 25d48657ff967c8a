use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::FIELD_MANAGER;
use super::context::Context;
use crate::lifecycle::NodeState;

/// Label on every agent Lease, so agents find each other's.
const LEASE_LABEL: &str = "taskrun.dev/node-lease";

/// Renews this node's Lease and watches the others'. When the set of live nodes changes,
/// every TaskRun is looked at again, so runs of a lost node are released or failed.
pub async fn keep_lease(
    context: Arc<Context>,
    namespace: String,
    duration: Duration,
    resync: mpsc::Sender<()>,
) {
    let leases: Api<Lease> = Api::namespaced(context.client.clone(), &namespace);
    let node = context.executor.node().to_string();
    let seconds = i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let mut ticks = tokio::time::interval((duration / 3).max(Duration::from_millis(200)));
    loop {
        ticks.tick().await;
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": { "name": format!("taskrun-node-{node}"), "labels": { LEASE_LABEL: "true" } },
            "spec": {
                "holderIdentity": node,
                "leaseDurationSeconds": seconds,
                "renewTime": MicroTime(Timestamp::now()),
            },
        });
        let name = format!("taskrun-node-{node}");
        if let Err(e) = leases
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&lease),
            )
            .await
        {
            warn!(error = %e, "could not renew this node's Lease");
            continue;
        }
        let listed = match leases
            .list(&ListParams::default().labels(&format!("{LEASE_LABEL}=true")))
            .await
        {
            Ok(listed) => listed,
            Err(e) => {
                warn!(error = %e, "could not read the node Leases");
                continue;
            }
        };
        let now = Timestamp::now();
        let states: HashMap<String, NodeState> = listed
            .items
            .iter()
            .filter_map(|lease| {
                let holder = lease.spec.as_ref()?.holder_identity.clone()?;
                Some((
                    holder,
                    if is_current(lease, now) {
                        NodeState::Live
                    } else {
                        NodeState::Lost
                    },
                ))
            })
            .collect();
        if context.nodes.set_states(states.clone()) {
            info!(nodes = ?states, "node Leases changed");
            let _ = resync.try_send(());
        }
    }
}

fn is_current(lease: &Lease, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else {
        return false;
    };
    let (Some(renewed), Some(seconds)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return false;
    };
    renewed
        .0
        .checked_add(jiff::SignedDuration::from_secs(i64::from(seconds)))
        .is_ok_and(|expiry| expiry > now)
}
