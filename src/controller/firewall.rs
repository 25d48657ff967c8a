//! This node's firewall, kept to the TaskRunPolicy's `deniedEgressCIDRs`: applied when the agent
//! starts and each time the policy changes, applied again now and then in case something else
//! flushed it, and retried while it fails. What it enforces is recorded in the context, where the
//! gates hold `Bridge` starts until it matches the policy.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::context::Context;
use super::policy::PolicyView;
use crate::lifecycle::egress::{Egress, table_of};

/// How often refusals in force are applied again, in case the host's firewall was flushed.
const REAPPLY: Duration = Duration::from_secs(300);

/// How soon a failed attempt is tried again.
const RETRY: Duration = Duration::from_secs(10);

/// Keeps the firewall to the policy until the agent stops; wakes every open run each time what
/// it enforces changes, so runs held for it start at once.
pub async fn keep_firewall(context: Arc<Context>, resync: mpsc::Sender<()>) {
    let mut changes = context.policy.changes();
    loop {
        let view = changes.borrow_and_update().clone();
        let again = match view {
            PolicyView::Unknown => None,
            PolicyView::Known(policy) => {
                // A policy that is not understood waits for the next one: trying it again
                // changes nothing.
                let (egress, again) = match policy.spec.denied_egress() {
                    Ok(denied) => enforce(&context, denied).await,
                    Err(problem) => (Egress::Failed(problem), None),
                };
                if context.set_egress(egress) {
                    let _ = resync.try_send(());
                }
                again
            }
        };
        let changed = match again {
            Some(after) => tokio::select! {
                changed = changes.changed() => changed,
                () = tokio::time::sleep(after) => Ok(()),
            },
            None => changes.changed().await,
        };
        if changed.is_err() {
            return;
        }
    }
}

/// Makes the firewall refuse `denied` and says what is enforced now, and when to apply it
/// again: soon after a failure, now and then while it refuses anything.
async fn enforce(context: &Context, denied: Vec<IpNet>) -> (Egress, Option<Duration>) {
    let Some(image) = &context.firewall_image else {
        return if denied.is_empty() {
            (Egress::Enforced(denied), None)
        } else {
            let why = "the agent runs without --firewall-image, so it sets no firewall";
            (Egress::Failed(why.into()), None)
        };
    };
    match context.executor.enforce_egress(image, &denied).await {
        Ok(()) => {
            if Egress::Enforced(denied.clone()) != context.egress() {
                let table = table_of(context.executor.node());
                info!(%table, ?denied, "egress refusals applied to the node's firewall");
            }
            let again = (!denied.is_empty()).then_some(REAPPLY);
            (Egress::Enforced(denied), again)
        }
        Err(e) => {
            warn!(error = %e, "cannot apply the TaskRunPolicy's deniedEgressCIDRs; Bridge runs wait");
            (Egress::Failed(e.to_string()), Some(RETRY))
        }
    }
}
