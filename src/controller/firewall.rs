//! This node's firewall, kept to the TaskRunPolicy's `deniedEgressCIDRs`: applied when the agent
//! starts and each time the policy changes, applied again now and then in case something else
//! flushed it, and retried while it fails. What it enforces is recorded in the context, where the
//! gates hold `Bridge` starts until it matches the policy.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::context::Context;
use super::policy::PolicyView;
use crate::api::TaskRunPolicySpec;
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
                let egress = enforce(&context, &policy.spec).await;
                let again = match &egress {
                    Egress::Failed(_) if context.firewall_image.is_some() => Some(RETRY),
                    Egress::Enforced(denied) if !denied.is_empty() => Some(REAPPLY),
                    _ => None,
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

/// Applies what `policy` denies and says what is enforced now.
async fn enforce(context: &Context, policy: &TaskRunPolicySpec) -> Egress {
    let denied = match policy.denied_egress() {
        Ok(denied) => denied,
        Err(problem) => return Egress::Failed(problem),
    };
    let Some(image) = &context.firewall_image else {
        return if denied.is_empty() {
            Egress::Enforced(denied)
        } else {
            Egress::Failed("the agent runs without --firewall-image, so it sets no firewall".into())
        };
    };
    let node = context.executor.node();
    match context.executor.enforce_egress(image, &denied).await {
        Ok(()) => {
            if Egress::Enforced(denied.clone()) != context.egress() {
                info!(table = %table_of(node), denied = ?denied, "egress refusals applied to the node's firewall");
            }
            Egress::Enforced(denied)
        }
        Err(e) => {
            warn!(error = %e, "cannot apply the TaskRunPolicy's deniedEgressCIDRs; Bridge runs wait");
            Egress::Failed(e.to_string())
        }
    }
}
