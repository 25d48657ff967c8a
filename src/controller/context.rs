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
    /// Runs that ended, per bucket of [`DURATION_BUCKETS`] (not cumulative).
    pub run_duration_buckets: [AtomicU64; DURATION_BUCKETS.len()],
    pub run_duration_count: AtomicU64,
    pub run_duration_millis: AtomicU64,
}

/// Upper bounds, in seconds, of the run duration histogram.
pub const DURATION_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];

impl Metrics {
    /// Adds one to a counter.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how long a run took from container start to its end.
    pub fn observe_run(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        if let Some(bucket) = DURATION_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.run_duration_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.run_duration_count.fetch_add(1, Ordering::Relaxed);
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        self.run_duration_millis
            .fetch_add(millis, Ordering::Relaxed);
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
