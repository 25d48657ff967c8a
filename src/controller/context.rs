//! What every pass shares ([`Context`]: the API client, the executor, Events, metrics, the policy)
//! and what the agent remembers between passes, in memory only: the backoff of each TaskRun whose
//! last pass failed, which every trigger of a pass honours, and its view of the nodes ([`Nodes`]):
//! the places it holds out of `max_running`, the claims it vouches for, its own Lease renewals,
//! the other agents' Leases and the Node objects.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef, Store};
use tokio::sync::{Notify, Semaphore};

use super::events::Events;
use super::metrics::Metrics;
use super::own_writes::OwnWrites;
use super::policy::Policy;
use crate::api::{CLUSTER_POLICY, TaskRun};
use crate::lifecycle::egress::Egress;
use crate::lifecycle::inputs::TaskApi;
use crate::lifecycle::{Executor, NodeState};

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub executor: Executor,
    /// The agents' node Leases, in their namespace.
    pub leases: Api<Lease>,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    /// TaskRuns whose last pass failed, and when the next may run.
    failures: Mutex<HashMap<ObjectRef<DeserializeGuard<TaskRun>>, Retry>>,
    /// Which nodes have live agents, and which runs this one holds.
    pub nodes: Nodes,
    /// Where task containers reach the API server, for the runs with a ServiceAccount.
    pub task_api: TaskApi,
    /// The cluster's TaskRunPolicy, as last read.
    pub policy: Policy,
    /// The TaskRun copies this agent's own writes replaced.
    pub own_writes: OwnWrites,
    /// The TaskRuns this agent watches, as cached.
    taskruns: Store<DeserializeGuard<TaskRun>>,
    /// Launches that may hold what they read of Secrets and ConfigMaps at once, each at most
    /// [`MAX_REFERENCE_BYTES`](crate::lifecycle::inputs::MAX_REFERENCE_BYTES): what the agent
    /// holds for them stays bounded whatever the runs mount.
    pub reference_reads: Semaphore,
    /// The image whose `nft` sets this node's firewall; without one the agent sets none.
    pub firewall_image: Option<String>,
    /// What this node's firewall enforces of the policy's egress refusals.
    egress: RwLock<Egress>,
}

/// How many launches may hold the data of their references at once.
const REFERENCE_READS: usize = 4;

/// Where a TaskRun stands after failed passes.
#[derive(Clone, Copy, Debug)]
struct Retry {
    failures: u32,
    at: Instant,
}

/// This agent's view of the nodes: its own capacity and Lease, and the other agents' liveness.
#[derive(Debug)]
pub struct Nodes {
    /// Runs holding one of this node's `max_running` places: a container of theirs is being
    /// launched or runs. A claimed run waiting for a reference, a back-off or a namespace's
    /// ceiling holds none.
    held: Mutex<HashSet<String>>,
    /// Runs whose claim in this node's name this agent wrote, or found recorded by a status it
    /// wrote: the only claims it trusts.
    vouched: Mutex<HashSet<String>>,
    max_running: usize,
    /// The node Leases seen, and whether they have been watched long enough that a node
    /// without one never announced itself.
    leases: RwLock<LeaseView>,
    /// When this agent's own Lease was last renewed (the renewal's start), and since when it
    /// has been renewed without a lapse.
    own_renewal: Mutex<Option<Renewal>>,
    lease_duration: Duration,
    /// What the cluster's Node objects say; `None` until they were first read (or found
    /// forbidden).
    node_objects: RwLock<Option<NodeObjects>>,
    /// Why this node takes no run at all, when its Docker daemon cannot confine a task.
    refusal: RwLock<Option<String>>,
    /// Woken when this node has room for another run.
    pub room: Notify,
}

/// What the cluster's Node objects say of the agents' nodes.
#[derive(Debug, Default, PartialEq)]
pub struct NodeObjects {
    /// This agent's Node is cordoned (`spec.unschedulable`) or was deleted: it takes no new
    /// runs.
    pub cordoned: bool,
    /// Nodes whose object was seen and then deleted: lost, whatever their Lease says.
    pub deleted: HashSet<String>,
}

/// This agent's own renewals.
#[derive(Clone, Copy, Debug)]
struct Renewal {
    last: Instant,
    /// Since when every renewal succeeded.
    current_since: Instant,
    /// A renewal failed since the last that succeeded.
    failed: bool,
}

/// The other agents' Leases as last seen.
#[derive(Debug, Default, PartialEq)]
pub struct LeaseView {
    pub states: HashMap<String, NodeState>,
    /// The Leases have been watched for a whole Lease duration.
    pub settled: bool,
}

impl Nodes {
    pub fn new(max_running: usize, lease_duration: Duration) -> Self {
        Self {
            held: Mutex::default(),
            vouched: Mutex::default(),
            max_running,
            leases: RwLock::default(),
            own_renewal: Mutex::default(),
            lease_duration,
            node_objects: RwLock::default(),
            refusal: RwLock::default(),
            room: Notify::new(),
        }
    }

    /// Whether this node may take another run: its Node object was read and is not cordoned,
    /// it has room, and its own Lease is current, so no other agent can judge it lost while it
    /// starts something.
    pub fn can_take(&self, now: Instant) -> bool {
        self.refusal().is_none()
            && self
                .node_objects
                .read()
                .as_ref()
                .is_some_and(|o| !o.cordoned)
            && self.own_lease_current(now)
            && self.held.lock().len() < self.max_running
    }

    /// Whether this agent renewed its own Lease recently enough to start containers.
    pub fn own_lease_current(&self, now: Instant) -> bool {
        self.renewal()
            .is_some_and(|renewal| self.current_at(renewal.last, now))
    }

    /// Whether this agent may judge another lost by its expired Lease: only once every renewal
    /// of its own has succeeded for a whole Lease duration, so the API server answered the
    /// others for that long too. Right after this agent's start, or after the API server was
    /// out of reach even for a moment (short enough for this agent's Lease to hold, long
    /// enough for another's to run out), the others have not had that long to renew theirs.
    pub fn may_judge_others(&self, now: Instant) -> bool {
        self.renewal().is_some_and(|renewal| {
            self.current_at(renewal.last, now)
                && now.saturating_duration_since(renewal.current_since) >= self.lease_duration
        })
    }

    /// Records a renewal of this agent's Lease that began at `started`.
    pub fn renewed(&self, started: Instant) {
        {
            let mut renewal = self.own_renewal.lock();
            let current_since = match *renewal {
                Some(previous) if !previous.failed && self.current_at(previous.last, started) => {
                    previous.current_since
                }
                _ => started,
            };
            *renewal = Some(Renewal {
                last: started,
                current_since,
                failed: false,
            });
        }
    }

    /// Records that a renewal of this agent's Lease failed or took too long.
    pub fn renewal_failed(&self) {
        if let Some(renewal) = self.own_renewal.lock().as_mut() {
            renewal.failed = true;
        }
    }

    fn renewal(&self) -> Option<Renewal> {
        *self.own_renewal.lock()
    }

    /// Whether a renewal at `renewed` still counts at `now`: within two thirds of the Lease
    /// duration, a margin for the other agents' clocks.
    fn current_at(&self, renewed: Instant, now: Instant) -> bool {
        now.saturating_duration_since(renewed) < self.lease_duration * 2 / 3
    }

    /// Gives up the places and claims of runs this node no longer holds (ended, deleted, or
    /// taken from it), keeping those in `held`.
    pub fn hold_only(&self, held: &HashSet<String>) {
        self.vouched.lock().retain(|uid| held.contains(uid));
        let released = {
            let mut mine = self.held.lock();
            let before = mine.len();
            mine.retain(|uid| held.contains(uid));
            mine.len() < before
        };
        if released {
            self.room.notify_waiters();
        }
    }

    /// Records that the claim of the run in this node's name is this agent's own.
    pub fn vouch(&self, uid: &str) {
        self.vouched.lock().insert(uid.to_string());
    }

    /// Whether this agent wrote, or found its own, the claim of the run in this node's name.
    pub fn vouches(&self, uid: &str) -> bool {
        self.vouched.lock().contains(uid)
    }

    /// Forgets the run's claim and gives up its place: the run is no longer this node's.
    pub fn disown(&self, uid: &str) {
        self.vouched.lock().remove(uid);
        self.release(uid);
    }

    /// Takes a place for the run, if there is room or it already has one.
    pub fn reserve(&self, uid: &str) -> bool {
        if self.refusal().is_some() {
            return false;
        }
        let mut held = self.held.lock();
        if held.contains(uid) {
            return true;
        }
        held.len() < self.max_running && held.insert(uid.to_string())
    }

    /// Marks the run as holding a place: its container runs here, perhaps since before a
    /// restart, and counts whatever the room.
    pub fn hold(&self, uid: &str) {
        self.held.lock().insert(uid.to_string());
    }

    /// Gives up the run's place, waking whoever waits for room.
    pub fn release(&self, uid: &str) {
        let released = self.held.lock().remove(uid);
        if released {
            self.room.notify_one();
        }
    }

    /// Whether the run holds one of this node's places.
    pub fn holds(&self, uid: &str) -> bool {
        self.held.lock().contains(uid)
    }

    /// How many runs this node holds.
    pub fn held(&self) -> usize {
        self.held.lock().len()
    }

    /// Makes this node take no run, for `why`.
    pub fn refuse(&self, why: String) {
        *self.refusal.write() = Some(why);
    }

    /// Why this node takes no run at all, if it takes none.
    pub fn refusal(&self) -> Option<String> {
        self.refusal.read().clone()
    }

    /// Whether this agent's Node is cordoned or deleted.
    pub fn cordoned(&self) -> bool {
        self.node_objects
            .read()
            .as_ref()
            .is_some_and(|o| o.cordoned)
    }

    /// Whether the Node object of `node` was deleted.
    pub fn node_deleted(&self, node: &str) -> bool {
        self.node_objects
            .read()
            .as_ref()
            .is_some_and(|o| o.deleted.contains(node))
    }

    /// Whether an agent other than `own`'s is live and may take runs.
    pub fn others_live(&self, own: &str) -> bool {
        self.leases.read().states.iter().any(|(node, state)| {
            node != own && *state == NodeState::Live && !self.node_deleted(node)
        })
    }

    /// Records what the Node objects say now; true when that changed what is known.
    pub fn set_node_objects(&self, seen: NodeObjects) -> bool {
        let mut objects = self.node_objects.write();
        let changed = objects.as_ref() != Some(&seen);
        *objects = Some(seen);
        changed
    }

    /// What is known of the agent of `node`. A node whose Node object was deleted is lost.
    pub fn state(&self, node: &str) -> NodeState {
        if self.node_deleted(node) {
            return NodeState::Lost;
        }
        let view = self.leases.read();
        match view.states.get(node) {
            Some(state) => *state,
            None if view.settled => NodeState::Absent,
            None => NodeState::Unknown,
        }
    }

    /// Records the Leases as seen now; true when that changed what is known.
    pub fn set_leases(&self, seen: LeaseView) -> bool {
        let mut view = self.leases.write();
        let changed = *view != seen;
        *view = seen;
        changed
    }
}

impl Context {
    pub fn new(
        client: kube::Client,
        executor: Executor,
        leases: Api<Lease>,
        max_running: usize,
        lease_duration: Duration,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        Self {
            nodes: Nodes::new(max_running, lease_duration),
            events: Events::start(client.clone(), executor.node(), metrics.clone()),
            client,
            executor,
            leases,
            metrics,
            failures: Mutex::default(),
            task_api: TaskApi::default(),
            policy: Policy::new(CLUSTER_POLICY),
            own_writes: OwnWrites::default(),
            taskruns: reflector::store::Writer::default().as_reader(),
            reference_reads: Semaphore::new(REFERENCE_READS),
            firewall_image: None,
            egress: RwLock::default(),
        }
    }

    /// The same context, counting runs in `taskruns`: the controller's cache.
    pub fn with_taskruns(mut self, taskruns: Store<DeserializeGuard<TaskRun>>) -> Self {
        self.taskruns = taskruns;
        self
    }

    /// How many runs of `namespace` other than `uid` have a container running on any node, or
    /// hold a place on this one, as far as this agent sees.
    pub fn running_in_namespace(&self, namespace: &str, uid: &str) -> usize {
        self.taskruns
            .state()
            .iter()
            .filter_map(|guard| guard.0.as_ref().ok())
            .filter(|taskrun| taskrun.metadata.namespace.as_deref() == Some(namespace))
            .filter(|taskrun| {
                let Some(other) = taskrun.metadata.uid.as_deref() else {
                    return false;
                };
                let started = taskrun.status.as_ref().is_some_and(|status| {
                    !status.phase().is_final() && status.container_id.is_some()
                });
                other != uid && (started || self.nodes.holds(other))
            })
            .count()
    }

    /// The same context, enforcing `policy` (the TaskRunPolicy named `cluster`, not read yet,
    /// unless told otherwise).
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The same context, setting the node's firewall with `image`.
    pub fn with_firewall_image(mut self, image: Option<String>) -> Self {
        self.firewall_image = image;
        self
    }

    /// What this node's firewall enforces now.
    pub fn egress(&self) -> Egress {
        self.egress.read().clone()
    }

    /// Records what the firewall enforces; true when that changed.
    pub fn set_egress(&self, egress: Egress) -> bool {
        let mut current = self.egress.write();
        let changed = *current != egress;
        *current = egress;
        changed
    }

    /// The same context, giving ServiceAccount runs the API server at `api`.
    pub fn with_task_api(mut self, api: TaskApi) -> Self {
        self.task_api = api;
        self
    }

    /// Forgets the failures of a TaskRun that reconciled cleanly.
    pub fn clear_failures(&self, object: &ObjectRef<DeserializeGuard<TaskRun>>) {
        self.failures.lock().remove(object);
    }

    /// Forgets the failures of TaskRuns that no longer exist.
    pub fn forget_failures_except(&self, existing: &HashSet<ObjectRef<DeserializeGuard<TaskRun>>>) {
        self.failures
            .lock()
            .retain(|object, _| existing.contains(object));
    }

    /// Forgets every TaskRun's failures: what they waited for (the daemon) is back.
    pub fn forget_all_failures(&self) {
        self.failures.lock().clear();
    }

    /// How long a pass over this TaskRun must still wait after its last failure, if at all.
    /// Every trigger of a pass (a watch event, a container event, a resync) honours it.
    pub fn retry_wait(
        &self,
        object: &ObjectRef<DeserializeGuard<TaskRun>>,
        now: Instant,
    ) -> Option<Duration> {
        let failures = self.failures.lock();
        let retry = failures.get(object)?;
        (retry.at > now).then(|| retry.at - now)
    }

    /// Records one more failure of a TaskRun and returns the wait before its next pass:
    /// 1 s doubling up to 60 s.
    pub fn backoff(&self, object: &ObjectRef<DeserializeGuard<TaskRun>>, now: Instant) -> Duration {
        let mut failures = self.failures.lock();
        let retry = failures.entry(object.clone()).or_insert(Retry {
            failures: 0,
            at: now,
        });
        retry.failures = retry.failures.saturating_add(1);
        let delay = ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(MAX_BACKOFF)
            .without_max_times()
            .build()
            .nth(usize::try_from(retry.failures - 1).unwrap_or(usize::MAX))
            .unwrap_or(MAX_BACKOFF);
        retry.at = now + delay;
        delay
    }
}

/// The longest wait between passes over a failing TaskRun.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_takes_runs_only_once_its_node_object_was_read_and_is_not_cordoned() {
        let nodes = Nodes::new(4, Duration::from_secs(3));
        let now = Instant::now();
        nodes.renewed(now);
        assert!(!nodes.can_take(now), "before the Node objects were read");
        nodes.set_node_objects(NodeObjects {
            cordoned: true,
            ..NodeObjects::default()
        });
        assert!(!nodes.can_take(now) && nodes.cordoned());
        nodes.set_node_objects(NodeObjects::default());
        assert!(nodes.can_take(now));
    }

    #[test]
    fn others_are_judged_only_after_a_whole_lease_of_own_renewals() {
        let nodes = Nodes::new(4, Duration::from_secs(3));
        let start = Instant::now();
        assert!(!nodes.own_lease_current(start) && !nodes.may_judge_others(start));
        for second in 0..=3 {
            nodes.renewed(start + Duration::from_secs(second));
        }
        let now = start + Duration::from_secs(3);
        assert!(nodes.own_lease_current(now) && nodes.may_judge_others(now));

        // Out of reach of the API server for longer than the Lease: judge no one at once.
        let back = start + Duration::from_secs(10);
        assert!(!nodes.own_lease_current(back));
        nodes.renewed(back);
        assert!(nodes.own_lease_current(back) && !nodes.may_judge_others(back));
    }

    #[test]
    fn a_failed_renewal_starts_the_count_again_though_the_lease_held() {
        let nodes = Nodes::new(4, Duration::from_secs(3));
        let start = Instant::now();
        for second in 0..=3 {
            nodes.renewed(start + Duration::from_secs(second));
        }
        assert!(nodes.may_judge_others(start + Duration::from_secs(3)));
        // One renewal out of reach, the next in time: this Lease held, another's may not have.
        nodes.renewal_failed();
        let back = start + Duration::from_millis(4_900);
        nodes.renewed(back);
        assert!(nodes.own_lease_current(back) && !nodes.may_judge_others(back));
        for second in 1..=3 {
            nodes.renewed(back + Duration::from_secs(second));
        }
        assert!(nodes.may_judge_others(back + Duration::from_secs(3)));
    }

    #[test]
    fn places_of_runs_no_longer_held_are_given_up() {
        let nodes = Nodes::new(2, Duration::from_secs(3));
        assert!(nodes.reserve("a") && nodes.reserve("b") && !nodes.reserve("c"));
        nodes.hold_only(&HashSet::from(["b".to_string()]));
        assert_eq!(nodes.held(), 1);
        assert!(nodes.reserve("c"));
    }
}
