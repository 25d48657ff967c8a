//! Node Leases: each agent renews its own and watches the others', so the agents agree on
//! which nodes are alive without talking to each other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::FIELD_MANAGER;
use super::context::{Context, LeaseView};
use crate::lifecycle::NodeState;

/// Label on every agent Lease, so agents find each other's.
const LEASE_LABEL: &str = "taskrun.dev/node-lease";

/// The name of the Lease of `node`'s agent.
fn lease_name(node: &str) -> String {
    format!("taskrun-node-{node}")
}

/// Renews this node's Lease and follows the others' through a watch. When what is known of
/// the nodes changes, every TaskRun is looked at again, so runs of a lost node are ended.
pub async fn keep_lease(context: Arc<Context>, duration: Duration, resync: mpsc::Sender<()>) {
    let leases = context.leases.clone();
    let node = context.executor.node().to_string();
    let seconds = i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let (store, writer) = reflector::store();
    let selector = format!("{LEASE_LABEL}=true");
    let watch = watcher(leases.clone(), watcher::Config::default().labels(&selector))
        .backoff(super::watch_backoff())
        .reflect(writer)
        .for_each(|_| std::future::ready(()));
    let watching = tokio::spawn(watch);
    let mut watched_since: Option<Instant> = None;
    let every = (duration / 3).max(Duration::from_millis(200));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let started = Instant::now();
        // A request an API server that is coming back never answers would hold the renewals
        // for the client's read timeout (minutes) while the peers judge this node lost: each
        // renewal gets until the next one is due.
        match tokio::time::timeout(every, renew(&leases, &node, seconds)).await {
            Ok(Ok(())) => context.nodes.renewed(started),
            Ok(Err(e)) => {
                context.nodes.renewal_failed();
                warn!(error = %e, "could not renew this node's Lease");
            }
            Err(_) => {
                context.nodes.renewal_failed();
                warn!(waited = ?every, "renewing this node's Lease took too long; trying again")
            }
        }
        if watched_since.is_none() && store.wait_until_ready().now_or_never().is_some() {
            watched_since = Some(Instant::now());
        }
        let Some(since) = watched_since else {
            continue;
        };
        // Expired Leases say nothing while this agent could not renew its own either.
        let judging = context.nodes.may_judge_others(Instant::now());
        let view = LeaseView {
            states: node_states(&store, Timestamp::now())
                .into_iter()
                .map(|(node, state)| match state {
                    NodeState::Lost if !judging => (node, NodeState::Unknown),
                    state => (node, state),
                })
                .collect(),
            settled: judging && since.elapsed() >= duration,
        };
        let summary = format!("{:?}", view.states);
        if context.nodes.set_leases(view) {
            info!(nodes = %summary, "node Leases changed");
            let _ = resync.try_send(());
        }
        if watching.is_finished() {
            warn!("the node Lease watch ended");
            return;
        }
    }
}

async fn renew(leases: &Api<Lease>, node: &str, seconds: i32) -> Result<(), kube::Error> {
    let name = lease_name(node);
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": name, "labels": { LEASE_LABEL: "true" } },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": seconds,
            "renewTime": MicroTime(Timestamp::now()),
        },
    });
    leases
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&lease),
        )
        .await
        .map(drop)
}

/// Whether `node` is still in the state `expected` (lost, or never announced) when its Lease
/// is read afresh from the API server: an agent may have come back since the watch said so.
pub async fn confirm(
    leases: &Api<Lease>,
    node: &str,
    expected: NodeState,
) -> Result<bool, kube::Error> {
    let lease = leases.get_opt(&lease_name(node)).await?;
    let state = match &lease {
        None => NodeState::Absent,
        Some(lease) => state_of(lease, Timestamp::now()),
    };
    Ok(state == expected)
}

fn node_states(store: &Store<Lease>, now: Timestamp) -> HashMap<String, NodeState> {
    store
        .state()
        .iter()
        .filter_map(|lease| {
            let holder = lease.spec.as_ref()?.holder_identity.clone()?;
            Some((holder, state_of(lease, now)))
        })
        .collect()
}

fn state_of(lease: &Lease, now: Timestamp) -> NodeState {
    let current = lease.spec.as_ref().is_some_and(|spec| {
        let (Some(renewed), Some(seconds)) = (&spec.renew_time, spec.lease_duration_seconds) else {
            return false;
        };
        renewed
            .0
            .checked_add(jiff::SignedDuration::from_secs(i64::from(seconds)))
            .is_ok_and(|expiry| expiry > now)
    });
    if current {
        NodeState::Live
    } else {
        NodeState::Lost
    }
}
