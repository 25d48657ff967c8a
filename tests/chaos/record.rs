//! What the suite sees while the stream runs, kept in one ledger: every container the two
//! daemons report for the namespace (from their event streams, which survive daemon restarts,
//! and a last inventory), every TaskRun as the API server shows it, and every fault with the
//! times it was injected and healed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::EventMessage;
use bollard::query_parameters::{
    EventsOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
};
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use taskrun_operator::api::{Phase, TaskRun};
use tokio::sync::watch;

use super::plan::{FaultPlan, NODES};

/// The ledger, shared by the observers, the driver and the fault injector.
pub type Shared = Arc<Mutex<Ledger>>;

/// Everything seen during one chaos run.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Containers labelled with the suite's namespace, by ID.
    pub containers: BTreeMap<String, ContainerRecord>,
    /// TaskRuns by name.
    pub runs: BTreeMap<String, RunRecord>,
    /// Faults in the order they were injected.
    pub faults: Vec<FaultRecord>,
}

/// One container, as its daemon told of it.
#[derive(Clone, Debug, Default)]
pub struct ContainerRecord {
    pub node: &'static str,
    /// The TaskRun it was created for, from its labels.
    pub uid: String,
    pub taskrun: String,
    pub created: Option<Timestamp>,
    pub started: Option<Timestamp>,
    pub died: Option<Timestamp>,
    /// What the container's main process returned, from its `die` event or an inspect.
    pub exit_code: Option<i64>,
    pub destroyed: Option<Timestamp>,
    /// When the daemon reported the kernel's OOM killer at work in it.
    pub oom: Option<Timestamp>,
    /// Whether the last inventory found it, and running.
    pub present: bool,
    pub running: bool,
}

/// One TaskRun of the stream.
#[derive(Clone, Debug, Default)]
pub struct RunRecord {
    pub uid: Option<String>,
    /// When the API server accepted its creation.
    pub created: Option<Timestamp>,
    /// When its cancel or delete was accepted, and whether the run had ended by then.
    pub touched: Option<(Timestamp, bool)>,
    /// The object as last seen.
    pub latest: Option<TaskRun>,
    /// When it was first seen in a final phase.
    pub ended: Option<Timestamp>,
    /// When it was first seen gone.
    pub gone: Option<Timestamp>,
    /// Since when it has been waiting while a node was healthy and had room.
    pub waiting_since: Option<Timestamp>,
    /// The first spell it spent waiting too long, and what held it.
    pub stuck: Option<(Timestamp, String)>,
    /// Each phase and reason it was seen in, with when it was first seen so, for the report.
    pub history: Vec<(Timestamp, String)>,
}

/// One fault as it happened.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    pub plan: FaultPlan,
    pub injected: Timestamp,
    /// When the healing finished (the process answers again); `None` while it lasts.
    pub healed: Option<Timestamp>,
}

impl FaultRecord {
    /// Whether the fault strikes `node` (a control-plane fault strikes every node).
    pub fn strikes(&self, node: &str) -> bool {
        self.plan.node.is_none_or(|n| n == node)
    }

    /// The end of the fault, or `now` while it lasts.
    pub fn until(&self, now: Timestamp) -> Timestamp {
        self.healed.unwrap_or(now)
    }
}

/// The phase a TaskRun shows; `Pending` before any status.
pub fn phase_of(taskrun: &TaskRun) -> Phase {
    taskrun
        .status
        .as_ref()
        .map_or(Phase::Pending, |s| s.phase())
}

/// The node whose agent claimed the run.
pub fn claim_of(taskrun: &TaskRun) -> Option<&str> {
    taskrun
        .annotations()
        .get("taskrun.dev/node")
        .map(String::as_str)
}

impl Ledger {
    /// Records a container event of `node`'s daemon; returns its time, to resume from.
    pub fn docker_event(&mut self, node: &'static str, event: &EventMessage) -> Option<i64> {
        let nanos = event.time_nano?;
        let at = Timestamp::from_nanosecond(i128::from(nanos)).ok()?;
        let actor = event.actor.as_ref()?;
        let id = actor.id.clone()?;
        let attributes = actor.attributes.clone().unwrap_or_default();
        let record = self.container(node, &id, &attributes);
        match event.action.as_deref()? {
            "create" => record.created = Some(at),
            "start" => record.started = Some(at),
            "die" => {
                record.died = Some(at);
                record.exit_code = attributes.get("exitCode").and_then(|c| c.parse().ok());
            }
            "destroy" => record.destroyed = Some(at),
            "oom" => record.oom = Some(at),
            _ => {}
        }
        Some(nanos)
    }

    fn container(
        &mut self,
        node: &'static str,
        id: &str,
        labels: &HashMap<String, String>,
    ) -> &mut ContainerRecord {
        self.containers
            .entry(id.to_string())
            .or_insert_with(|| ContainerRecord {
                node,
                uid: labels.get("taskrun.dev/uid").cloned().unwrap_or_default(),
                taskrun: labels.get("taskrun.dev/name").cloned().unwrap_or_default(),
                ..ContainerRecord::default()
            })
    }

    /// Records a TaskRun as the API server showed it at `now`.
    pub fn saw(&mut self, taskrun: &TaskRun, now: Timestamp) {
        let record = self.runs.entry(taskrun.name_any()).or_default();
        if record.uid.is_none() {
            record.uid = taskrun.uid();
        }
        if phase_of(taskrun).is_final() && record.ended.is_none() {
            record.ended = Some(now);
        }
        let shown = taskrun.status.as_ref().map_or_else(
            || "Pending".to_string(),
            |s| {
                format!(
                    "{:?}/{} on {}",
                    s.phase(),
                    s.reason.map_or("-", |r| r.as_str()),
                    s.node_name.as_deref().unwrap_or("-")
                )
            },
        );
        if record.history.last().is_none_or(|(_, last)| *last != shown) {
            record.history.push((now, shown));
        }
        record.latest = Some(taskrun.clone());
    }

    /// Records that the TaskRun is gone.
    pub fn gone(&mut self, name: &str, now: Timestamp) {
        if let Some(record) = self.runs.get_mut(name) {
            record.gone.get_or_insert(now);
        }
    }

    /// The faults under way at `now`.
    pub fn active_faults(&self, now: Timestamp) -> impl Iterator<Item = &FaultRecord> {
        self.faults
            .iter()
            .filter(move |f| f.injected <= now && f.healed.is_none_or(|h| h > now))
    }

    /// Looks at every waiting run: one that waited `limit` while a node it may run on had no
    /// fault and (for an unclaimed run) room is recorded as stuck.
    pub fn check_waiting(&mut self, now: Timestamp, max_running: usize, limit: Duration) {
        let healthy: HashSet<&str> = NODES
            .iter()
            .copied()
            .filter(|node| !self.active_faults(now).any(|f| f.strikes(node)))
            .collect();
        let mut held: HashMap<String, usize> = HashMap::new();
        for record in self.runs.values() {
            if let Some(taskrun) = record.latest.as_ref().filter(|_| record.gone.is_none())
                && !phase_of(taskrun).is_final()
                && let Some(node) = claim_of(taskrun)
            {
                *held.entry(node.to_string()).or_default() += 1;
            }
        }
        let held = |node: &str| held.get(node).copied().unwrap_or(0);
        let limit = SignedDuration::try_from(limit).unwrap_or(SignedDuration::MAX);
        for (name, record) in &mut self.runs {
            let Some(taskrun) = record.latest.as_ref() else {
                continue;
            };
            let waiting = record.gone.is_none()
                && taskrun.metadata.deletion_timestamp.is_none()
                && phase_of(taskrun) == Phase::Pending;
            let blocked_by = waiting.then(|| {
                let candidates: Vec<&str> = match taskrun.spec.node_name.as_deref() {
                    Some(pinned) => NODES.iter().copied().filter(|n| *n == pinned).collect(),
                    None => NODES.to_vec(),
                };
                match claim_of(taskrun) {
                    Some(node) => healthy
                        .contains(node)
                        .then(|| format!("claimed by {node}, which had no fault")),
                    None => candidates
                        .iter()
                        .find(|node| {
                            healthy.contains(*node) && held(node) < max_running
                        })
                        .map(|node| {
                            format!(
                                "unclaimed while {node} had no fault and held {} of {max_running} runs by the API's count",
                                held(node)
                            )
                        }),
                }
            });
            match blocked_by.flatten() {
                Some(why) => {
                    let since = *record.waiting_since.get_or_insert(now);
                    if record.stuck.is_none() && now.duration_since(since) >= limit {
                        let reason = taskrun
                            .status
                            .as_ref()
                            .and_then(|s| s.reason)
                            .map_or("no reason".to_string(), |r| r.as_str().to_string());
                        record.stuck = Some((
                            since,
                            format!("Pending ({reason}) for {:.0} s, {why}", limit.as_secs_f64()),
                        ));
                        eprintln!(
                            "chaos: {name} looks stuck: {}",
                            record.stuck.as_ref().unwrap().1
                        );
                    }
                }
                None => record.waiting_since = None,
            }
        }
    }
}

/// Follows the container events of `node`'s daemon for the namespace until `stop`, picking the
/// stream up again where it broke when the daemon restarts.
pub async fn follow_docker(
    node: &'static str,
    host: String,
    namespace: String,
    ledger: Shared,
    mut stop: watch::Receiver<bool>,
) {
    let mut since = Timestamp::now()
        .checked_sub(SignedDuration::from_secs(1))
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .as_nanosecond();
    let filters = HashMap::from([
        ("type", vec!["container".to_string()]),
        ("label", vec![format!("taskrun.dev/namespace={namespace}")]),
    ]);
    loop {
        let follow = async {
            let Ok(docker) = bollard::Docker::connect_with_host(&host) else {
                return;
            };
            let Ok(docker) = docker.negotiate_version().await else {
                return;
            };
            let from = format!(
                "{}.{:09}",
                since.div_euclid(1_000_000_000),
                since.rem_euclid(1_000_000_000)
            );
            let options = EventsOptionsBuilder::default()
                .since(&from)
                .filters(&filters)
                .build();
            let mut events = docker.events(Some(options));
            while let Some(Ok(event)) = events.next().await {
                if let Some(at) = ledger.lock().unwrap().docker_event(node, &event) {
                    since = i128::from(at);
                }
            }
        };
        tokio::select! {
            () = follow => {}
            _ = stop.changed() => return,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Lists the namespace's containers on `node`'s daemon into the ledger: which are still
/// there, which run, and the exit code of each that ended.
pub async fn take_inventory(node: &'static str, host: &str, namespace: &str, ledger: &Shared) {
    let docker = crate::common::docker_at(host).await;
    let filters = HashMap::from([("label", vec![format!("taskrun.dev/namespace={namespace}")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let listed = docker
        .list_containers(Some(options))
        .await
        .expect("list the suite's containers");
    let mut present = HashSet::new();
    for summary in listed {
        let Some(id) = summary.id else { continue };
        let Ok(inspect) = docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
        else {
            continue;
        };
        let labels = summary.labels.unwrap_or_default();
        let state = inspect.state.unwrap_or_default();
        let mut ledger = ledger.lock().unwrap();
        let record = ledger.container(node, &id, &labels);
        let time = |text: Option<String>| {
            text.and_then(|t| t.parse::<Timestamp>().ok())
                .filter(|t| t.as_second() > 0)
        };
        record.present = true;
        record.running = state.running.unwrap_or(false);
        record.created = record.created.or(time(inspect.created));
        record.started = record.started.or(time(state.started_at));
        let finished = time(state.finished_at);
        if finished.is_some() && !record.running {
            record.died = record.died.or(finished);
            record.exit_code = state.exit_code;
        }
        present.insert(id);
    }
    let mut ledger = ledger.lock().unwrap();
    for (id, record) in &mut ledger.containers {
        if record.node == node && !present.contains(id) {
            record.present = false;
            record.running = false;
        }
    }
}

/// Follows the namespace's TaskRuns until `stop`, through API server and etcd restarts.
pub async fn follow_taskruns(api: Api<TaskRun>, ledger: Shared, mut stop: watch::Receiver<bool>) {
    // Retried within a second or so, so a deletion is seen when it happens, not when a
    // backoff grown over many faults runs out.
    let retry = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(1))
        .without_max_times();
    let mut stream = Box::pin(
        watcher(api, watcher::Config::default()).backoff(watcher::ExponentialBackoff::from(retry)),
    );
    let mut listed: Option<(Timestamp, HashSet<String>)> = None;
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = stop.changed() => return,
        };
        let now = Timestamp::now();
        let mut ledger = ledger.lock().unwrap();
        match event {
            None => return,
            Some(Err(_)) => {}
            Some(Ok(watcher::Event::Apply(taskrun))) => ledger.saw(&taskrun, now),
            Some(Ok(watcher::Event::Delete(taskrun))) => ledger.gone(&taskrun.name_any(), now),
            Some(Ok(watcher::Event::Init)) => listed = Some((now, HashSet::new())),
            Some(Ok(watcher::Event::InitApply(taskrun))) => {
                listed
                    .get_or_insert_with(|| (now, HashSet::new()))
                    .1
                    .insert(taskrun.name_any());
                ledger.saw(&taskrun, now);
            }
            Some(Ok(watcher::Event::InitDone)) => {
                // Deleted while the watch was down: no Delete event tells of it. A run
                // created before the list began and missing from it is gone, even one the
                // watch never saw at all (created and deleted within one outage).
                let (began, listed) = listed.take().unwrap_or_else(|| (now, HashSet::new()));
                let missing: Vec<String> = ledger
                    .runs
                    .iter()
                    .filter(|(name, record)| {
                        let known = record.latest.is_some()
                            || record.created.is_some_and(|created| created < began);
                        known && !listed.contains(*name)
                    })
                    .map(|(name, _)| name.clone())
                    .collect();
                for name in missing {
                    ledger.gone(&name, now);
                }
            }
        }
    }
}

/// Checks the waiting runs once a second until `stop`.
pub async fn watch_waiting(
    ledger: Shared,
    max_running: usize,
    limit: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ticks.tick() => ledger.lock().unwrap().check_waiting(Timestamp::now(), max_running, limit),
            _ = stop.changed() => return,
        }
    }
}
