use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::Notify;

use crate::api::TaskRun;
use crate::lifecycle::{Executor, NodeState};

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub executor: Executor,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Consecutive failures per TaskRun, for backoff.
    failures: Mutex<HashMap<ObjectRef<TaskRun>, u32>>,
    /// Which nodes have live agents, and which runs this one holds.
    pub nodes: Nodes,
}

/// This agent's view of the nodes: its own capacity and the other agents' liveness.
#[derive(Debug)]
pub struct Nodes {
    /// Runs this node holds: claimed and not yet ended.
    held: Mutex<HashSet<String>>,
    max_running: usize,
    /// Nodes by the state of their agents' Leases; empty until the first look.
    leases: RwLock<HashMap<String, NodeState>>,
    /// Woken when this node has room for another run.
    pub room: Notify,
}

impl Nodes {
    pub fn new(max_running: usize) -> Self {
        Self {
            held: Mutex::default(),
            max_running,
            leases: RwLock::default(),
            room: Notify::new(),
        }
    }

    /// Whether this node may take another run.
    pub fn has_room(&self) -> bool {
        self.held
            .lock()
            .is_ok_and(|held| held.len() < self.max_running)
    }

    /// Takes a place for the run, if there is room or it already has one.
    pub fn reserve(&self, uid: &str) -> bool {
        let Ok(mut held) = self.held.lock() else {
            return false;
        };
        if held.contains(uid) {
            return true;
        }
        held.len() < self.max_running && held.insert(uid.to_string())
    }

    /// Marks the run as held by this node (it was claimed here, perhaps before a restart).
    pub fn hold(&self, uid: &str) {
        if let Ok(mut held) = self.held.lock() {
            held.insert(uid.to_string());
        }
    }

    /// Gives up the run's place, waking whoever waits for room.
    pub fn release(&self, uid: &str) {
        let released = self.held.lock().is_ok_and(|mut held| held.remove(uid));
        if released {
            self.room.notify_one();
        }
    }

    /// How many runs this node holds.
    pub fn held(&self) -> usize {
        self.held.lock().map_or(0, |held| held.len())
    }

    /// What is known of the agent of `node`.
    pub fn state(&self, node: &str) -> NodeState {
        self.leases
            .read()
            .ok()
            .and_then(|leases| leases.get(node).copied())
            .unwrap_or(NodeState::Unknown)
    }

    /// Records the nodes' Lease states; true when that changed them.
    pub fn set_states(&self, states: HashMap<String, NodeState>) -> bool {
        let Ok(mut leases) = self.leases.write() else {
            return false;
        };
        let changed = *leases != states;
        *leases = states;
        changed
    }
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
    pub fn new(
        client: kube::Client,
        executor: Executor,
        recorder: Recorder,
        max_running: usize,
    ) -> Self {
        Self {
            nodes: Nodes::new(max_running),
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
