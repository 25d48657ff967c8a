//! The cluster's TaskRunPolicy as this agent follows it. The agent starts nothing until it
//! knows whether there is a policy: a run created while the agent starts must not slip past
//! a policy it has not read yet. Where there is no such object, or the TaskRunPolicy CRD is
//! not installed, the agent follows the built-in policy.

use std::sync::Arc;

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::Api;
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::context::Context;
use crate::api::TaskRunPolicy;

/// What the agent knows of the policy it enforces.
#[derive(Clone, Debug, Default)]
pub enum PolicyView {
    /// Not read yet, or never readable: no run starts.
    #[default]
    Unknown,
    /// Read: the policy, or the built-in one when there is no such object (or no such kind).
    Known(Arc<TaskRunPolicy>),
}

/// The policy the agent enforces, by name, as last read.
#[derive(Debug)]
pub struct Policy {
    /// The TaskRunPolicy's name (`cluster` unless `--policy` says otherwise).
    pub name: String,
    view: watch::Sender<PolicyView>,
}

impl Policy {
    /// The policy named `name`, not read yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            view: watch::Sender::new(PolicyView::Unknown),
        }
    }

    /// A policy already known, for tests: `None` stands for no such object.
    pub fn known(name: impl Into<String>, policy: Option<TaskRunPolicy>) -> Self {
        let known = Self::new(name);
        let policy = policy.unwrap_or_else(|| TaskRunPolicy::built_in(&known.name));
        known.set(PolicyView::Known(Arc::new(policy)));
        known
    }

    /// What is known now.
    pub fn view(&self) -> PolicyView {
        self.view.borrow().clone()
    }

    /// What is known, told again each time that changes.
    pub fn changes(&self) -> watch::Receiver<PolicyView> {
        self.view.subscribe()
    }

    /// Records what was read; true when that changed what is known.
    fn set(&self, seen: PolicyView) -> bool {
        self.view.send_if_modified(|view| {
            let changed = match (&*view, &seen) {
                (PolicyView::Known(old), PolicyView::Known(new)) => {
                    old.spec != new.spec || old.title() != new.title()
                }
                (PolicyView::Unknown, PolicyView::Unknown) => false,
                _ => true,
            };
            *view = seen;
            changed
        })
    }
}

/// How long the agent goes at most between reads of a policy whose kind is not installed, or
/// that it could not read.
const ABSENT_POLICY_RECHECK: Duration = Duration::from_secs(30);

/// Follows the TaskRunPolicy the agent enforces and records each version; every TaskRun is
/// looked at again when it changes, so runs held until it was read start at once.
pub async fn follow_policy(context: Arc<Context>, resync: mpsc::Sender<()>) {
    let name = context.policy.name.clone();
    let api: Api<TaskRunPolicy> = Api::all(context.client.clone());
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let (store, writer) = reflector::store();
    let mut changes = watcher(api, config)
        .backoff(super::WatchBackoff::new(ABSENT_POLICY_RECHECK))
        .reflect(writer)
        .boxed();
    while let Some(change) = changes.next().await {
        let seen = match &change {
            Err(watcher::Error::InitialListFailed(kube::Error::Api(e))) if e.code == 404 => {
                PolicyView::Known(Arc::new(TaskRunPolicy::built_in(&name)))
            }
            Err(e) => {
                if matches!(context.policy.view(), PolicyView::Unknown) {
                    warn!(policy = %name, error = %e, "cannot read the TaskRunPolicy; no run starts until it can");
                }
                continue;
            }
            Ok(_) if store.wait_until_ready().now_or_never().is_none() => continue,
            Ok(_) => PolicyView::Known(
                store
                    .state()
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| Arc::new(TaskRunPolicy::built_in(&name))),
            ),
        };
        let summary = match &seen {
            PolicyView::Known(policy) => format!("{}: {:?}", policy.title(), policy.spec),
            PolicyView::Unknown => "unknown".to_string(),
        };
        if context.policy.set(seen) {
            info!(policy = %name, rules = %summary, "TaskRunPolicy read");
            let _ = resync.try_send(());
        }
    }
}
