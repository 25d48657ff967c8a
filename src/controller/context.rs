use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;

use crate::api::TaskRun;
use crate::lifecycle::Executor;

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub executor: Executor,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Consecutive failures per TaskRun, for backoff.
    failures: Mutex<HashMap<ObjectRef<TaskRun>, u32>>,
}

/// Counters the operator keeps about its own work.
#[derive(Debug, Default)]
pub struct Metrics {
    pub reconciles: AtomicU64,
    pub reconcile_errors: AtomicU64,
    pub status_writes: AtomicU64,
    pub containers_started: AtomicU64,
    pub containers_removed: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Context {
    pub fn new(client: kube::Client, executor: Executor, recorder: Recorder) -> Self {
        Self {
            client,
            executor,
            recorder,
            metrics: Metrics::default(),
            failures: Mutex::default(),
        }
    }

    /// Forgets the failures of a TaskRun that reconciled cleanly.
    pub fn clear_failures(&self, object: &ObjectRef<TaskRun>) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(object);
        }
    }

    /// The wait before retrying a TaskRun that failed again: 1 s doubling up to 60 s.
    pub fn backoff(&self, object: &ObjectRef<TaskRun>) -> Duration {
        let attempts = self.failures.lock().map_or(1, |mut failures| {
            let attempts = failures.entry(object.clone()).or_insert(0);
            *attempts = attempts.saturating_add(1);
            *attempts
        });
        Duration::from_secs(1u64 << attempts.clamp(1, 7).saturating_sub(1))
            .min(Duration::from_secs(60))
    }
}
