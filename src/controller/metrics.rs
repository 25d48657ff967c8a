//! What the operator measures about its own work, served on `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};

/// What the operator measures about its own work, registered for `/metrics`. Counters count
/// as the work happens; the gauges describe a moment and are set when scraped.
#[derive(Debug)]
pub struct Metrics {
    /// Reconcile passes run.
    pub reconciles: Counter,
    /// Reconcile passes that failed and were retried.
    pub reconcile_errors: Counter,
    /// Status writes the API server accepted.
    pub status_writes: Counter,
    pub containers_started: Counter,
    pub containers_removed: Counter,
    /// TaskRuns deleted because their `deleteAfterSeconds` passed.
    pub pruned: Counter,
    /// Kubernetes Events the API server accepted.
    pub events_published: Counter,
    /// Events dropped because too many were waiting to be published.
    pub events_dropped: Counter,
    /// Runs this node has claimed and not finished.
    pub runs_held: Gauge,
    /// TaskRuns watched, by phase.
    pub taskruns: Family<PhaseLabel, Gauge>,
    /// Time from container start to the end of the run, in seconds.
    pub run_duration: Histogram,
    /// 1, labelled with how the node's Docker daemon confines containers.
    pub docker_daemon: Family<DaemonLabels, Gauge>,
    registry: Registry,
}

/// The labels of [`Metrics::docker_daemon`]: what `docker info` says of confinement.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DaemonLabels {
    pub version: String,
    pub default_runtime: String,
    pub runc_commit: String,
    pub seccomp: String,
    pub apparmor: String,
    pub userns: String,
    pub cgroup_version: String,
    /// Whether the agent runs tasks on it: `false` when it refused the daemon.
    pub accepted: String,
}

/// The label of [`Metrics::taskruns`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

/// Upper bounds, in seconds, of the run duration histogram.
const DURATION_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];

impl Default for Metrics {
    /// Every metric at zero, registered. prometheus-client ends each help text with a period
    /// and each counter's name with `_total`, so neither is written here.
    fn default() -> Self {
        let mut registry = Registry::with_prefix("taskrun");
        let r = &mut registry;
        Self {
            reconciles: registered(r, "reconciles", "Reconcile passes run"),
            reconcile_errors: registered(
                r,
                "reconcile_errors",
                "Reconcile passes that failed and were retried",
            ),
            status_writes: registered(r, "status_writes", "Status writes to the API server"),
            containers_started: registered(r, "containers_started", "Containers started"),
            containers_removed: registered(r, "containers_removed", "Containers removed"),
            pruned: registered(
                r,
                "pruned",
                "TaskRuns deleted because their deleteAfterSeconds passed",
            ),
            events_published: registered(r, "events_published", "Kubernetes Events published"),
            events_dropped: registered(
                r,
                "events_dropped",
                "Kubernetes Events dropped because too many were waiting to be published",
            ),
            runs_held: registered(
                r,
                "runs_held",
                "Runs this node has claimed and not finished",
            ),
            taskruns: registered(r, "taskruns", "TaskRuns watched, by phase"),
            docker_daemon: registered(
                r,
                "docker_daemon_info",
                "How the node's Docker daemon confines containers, and whether the agent accepted it",
            ),
            run_duration: {
                let histogram = Histogram::new(DURATION_BUCKETS);
                r.register_with_unit(
                    "run_duration",
                    "Time from container start to the end of the run",
                    Unit::Seconds,
                    histogram.clone(),
                );
                histogram
            },
            registry,
        }
    }
}

/// A new metric registered under `name`; the registry keeps a clone that shares its value.
fn registered<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Records how long a run took from container start to its end.
    pub fn observe_run(&self, duration: Duration) {
        self.run_duration.observe(duration.as_secs_f64());
    }

    /// Every metric in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exposed_under_their_names() {
        let metrics = Metrics::default();
        let counters = [
            &metrics.reconciles,
            &metrics.reconcile_errors,
            &metrics.status_writes,
            &metrics.containers_started,
            &metrics.containers_removed,
            &metrics.events_published,
            &metrics.events_dropped,
            &metrics.pruned,
        ];
        for (times, counter) in (1..).zip(counters) {
            counter.inc_by(times);
        }
        metrics.runs_held.set(2);
        let running = PhaseLabel {
            phase: "Running".to_string(),
        };
        metrics.taskruns.get_or_create(&running).set(3);
        metrics.observe_run(Duration::from_millis(700));
        metrics.observe_run(Duration::from_secs(7200));

        let text = metrics.encode().unwrap();
        for line in [
            "# TYPE taskrun_reconciles counter",
            "taskrun_reconciles_total 1",
            "taskrun_reconcile_errors_total 2",
            "taskrun_status_writes_total 3",
            "taskrun_containers_started_total 4",
            "taskrun_containers_removed_total 5",
            "taskrun_events_published_total 6",
            "taskrun_events_dropped_total 7",
            "taskrun_pruned_total 8",
            "# TYPE taskrun_runs_held gauge",
            "taskrun_runs_held 2",
            "# TYPE taskrun_taskruns gauge",
            "taskrun_taskruns{phase=\"Running\"} 3",
            "# TYPE taskrun_run_duration_seconds histogram",
            "# UNIT taskrun_run_duration_seconds seconds",
            "taskrun_run_duration_seconds_bucket{le=\"0.5\"} 0",
            "taskrun_run_duration_seconds_bucket{le=\"1.0\"} 1",
            "taskrun_run_duration_seconds_bucket{le=\"3600.0\"} 1",
            "taskrun_run_duration_seconds_bucket{le=\"+Inf\"} 2",
            "taskrun_run_duration_seconds_sum 7200.7",
            "taskrun_run_duration_seconds_count 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(
            text.contains("# HELP taskrun_reconciles Reconcile passes run.\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
