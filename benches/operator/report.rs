//! The figures of a run: what they are, the table and summary line printed from them, and
//! the JSON written beside.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::requests::Requests;
use crate::{Params, Result};

/// Targets from issue 16. Reported against, never asserted.
/// Operator over raw Docker, create -> done, at p50 and at p99.
pub const TARGET_LATENCY_RATIO_P50: f64 = 1.05;
pub const TARGET_LATENCY_RATIO_P99: f64 = 1.10;
/// Operator TaskRuns per second over raw Docker's at its best concurrency.
pub const TARGET_THROUGHPUT_RATIO: f64 = 0.95;
/// Writes to the TaskRun itself over its life, run and deletion.
pub const TARGET_WRITES_PER_TASKRUN: f64 = 4.0;
/// Every API write over a TaskRun's life, its Events included.
pub const TARGET_ALL_WRITES_PER_TASKRUN: f64 = 6.0;
/// Peak RSS targets (MiB) by the number of TaskRuns present.
pub const TARGET_RSS_MIB: [(usize, f64); 3] = [(1_000, 20.0), (10_000, 40.0), (50_000, 150.0)];
/// A restarted agent with this many finished TaskRuns present is Ready, and has reconciled
/// them all, within this many seconds.
pub const TARGET_CATCH_UP: (usize, f64) = (10_000, 10.0);

/// Everything one run measured, as written to the JSON.
#[derive(Debug, Serialize)]
pub struct Results {
    pub machine: Machine,
    pub params: Params,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The figures of the scenarios that ran.
#[derive(Debug, Default, Serialize)]
pub struct Figures {
    pub latency: Option<Latency>,
    pub throughput: Option<Throughput>,
    /// Per phase: `latency` (sequential runs), `burst` (the throughput burst, create to
    /// container removed), `delete` (deleting the burst's TaskRuns).
    pub cost: Vec<Cost>,
    pub memory: Option<Memory>,
    pub catch_up: Option<CatchUp>,
    /// What the finished TaskRuns the memory and catch-up scenarios add take in etcd and on
    /// the wire.
    pub storage: Option<Storage>,
}

/// Where the figures came from.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub os: String,
    pub kernel: String,
    pub docker: String,
    pub kubernetes: String,
}

impl Machine {
    pub async fn describe(kube: &kube::Client, docker: &bollard::Docker) -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "unknown".into());
        Self {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            memory_gib: memory_kib / (1024.0 * 1024.0),
            os,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            docker: docker
                .version()
                .await
                .ok()
                .and_then(|v| v.version)
                .unwrap_or_else(|| "unknown".into()),
            kubernetes: kube
                .apiserver_version()
                .await
                .map_or_else(|_| "unknown".into(), |v| v.git_version),
        }
    }

    fn line(&self) -> String {
        format!(
            "{} cores, {:.1} GiB, {}, kernel {}, Docker {}, Kubernetes {}",
            self.cores, self.memory_gib, self.os, self.kernel, self.docker, self.kubernetes
        )
    }
}

/// Percentiles of a set of durations, in milliseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Summary {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    /// Nearest-rank percentiles of `samples_ms`, which must not be empty.
    pub fn of(samples_ms: &[f64]) -> Self {
        let mut sorted = samples_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = (p * sorted.len() as f64).ceil() as usize;
            sorted[index.clamp(1, sorted.len()) - 1]
        };
        Self {
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            mean_ms: sorted.iter().sum::<f64>() / sorted.len() as f64,
            min_ms: sorted[0],
            max_ms: sorted[sorted.len() - 1],
        }
    }
}

/// Scenario 1: N sequential runs each way, interleaved.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub n: usize,
    /// Create request sent -> the daemon's `start` event for the TaskRun's container.
    pub operator_started: Summary,
    /// Create request sent -> the bench's watch delivers the TaskRun `Succeeded`.
    pub operator_succeeded: Summary,
    /// Create request sent -> the daemon's `destroy` event (cleanup `OnSuccess`).
    pub operator_removed: Summary,
    /// Create call made -> the daemon's `start` event.
    pub raw_started: Summary,
    /// Create call made -> the wait call returned.
    pub raw_exited: Summary,
    /// Create call made -> the remove call returned.
    pub raw_removed: Summary,
    pub started_ratio_p50: f64,
    pub started_ratio_p99: f64,
    /// `operator_succeeded` over `raw_exited`: the headline latency ratio.
    pub done_ratio_p50: f64,
    pub done_ratio_p99: f64,
    /// Every run's latencies, in the order they ran, for the pictures.
    pub samples: LatencySamples,
}

/// The latencies of every sequential run, in milliseconds, as in [`Latency`].
#[derive(Debug, Default, Serialize)]
pub struct LatencySamples {
    pub operator_started_ms: Vec<f64>,
    pub operator_succeeded_ms: Vec<f64>,
    pub raw_started_ms: Vec<f64>,
    pub raw_exited_ms: Vec<f64>,
}

/// Scenario 2: M runs at once.
#[derive(Debug, Serialize)]
pub struct Throughput {
    pub m: usize,
    pub operator: Option<OperatorBurst>,
    pub raw: Vec<RawBurst>,
    pub raw_best: Option<RawBurst>,
    /// Operator TaskRuns per second over the best raw containers per second.
    pub ratio: Option<f64>,
}

/// The operator's burst, timed from just before the first create.
#[derive(Debug, Serialize)]
pub struct OperatorBurst {
    /// Until every create request had returned (32 in flight).
    pub created_seconds: f64,
    /// Until the watch had seen every TaskRun `Succeeded`.
    pub succeeded_seconds: f64,
    /// Until the daemon had destroyed every container.
    pub removed_seconds: f64,
    /// M over `succeeded_seconds`.
    pub per_second: f64,
}

/// M raw create/start/wait/remove cycles at one concurrency.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RawBurst {
    pub concurrency: usize,
    pub seconds: f64,
    pub per_second: f64,
}

/// Scenario 3: what the controller spent on one phase, per TaskRun.
#[derive(Debug, Serialize)]
pub struct Cost {
    pub phase: &'static str,
    pub taskruns: usize,
    /// The controller's requests by verb and resource, from its own request log.
    pub requests: Requests,
    /// Requests and writes per TaskRun count those about TaskRuns and their Events, not the
    /// node Lease the controller renews on a timer (it is in `requests`).
    pub requests_per_taskrun: f64,
    pub writes_per_taskrun: f64,
    pub status_writes_per_taskrun: f64,
    pub event_writes_per_taskrun: f64,
    /// Status writes by the controller's own count (`taskrun_status_writes_total`).
    pub operator_status_writes: Option<u64>,
    pub cpu_seconds: f64,
    pub cpu_ms_per_taskrun: f64,
    /// Writes to TaskRuns and Events the API server counted in the same window, less the
    /// bench's own creates and deletes; `None` when its `/metrics` could not be read.
    pub apiserver_writes: Option<Requests>,
    /// Whether the API server's count matches the controller's log (it does not when
    /// other clients wrote TaskRuns or Events meanwhile).
    pub apiserver_agrees: Option<bool>,
}

impl Cost {
    fn per_taskrun(&self, count: u64) -> f64 {
        count as f64 / self.taskruns.max(1) as f64
    }
}

/// Scenario 4: the controller's memory.
#[derive(Debug, Default, Serialize)]
pub struct Memory {
    pub idle: Option<MemoryLevel>,
    pub levels: Vec<MemoryLevel>,
}

/// A fresh controller started with `objects` finished TaskRuns present, once it has looked at
/// every one and gone idle.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct MemoryLevel {
    pub objects: usize,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
    /// From start until it had reconciled every TaskRun once.
    pub seconds_to_process: f64,
    pub cpu_seconds: f64,
    /// How long the bench took to create the TaskRuns added for this level.
    pub create_seconds: f64,
}

/// Scenario 5: an agent started (as after a restart) with `objects` finished TaskRuns present,
/// timed from just before its process was spawned.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CatchUp {
    pub objects: usize,
    /// Until `/readyz` first answered 200: its TaskRun cache has synced and Docker answers.
    pub ready_seconds: f64,
    /// Until its `taskrun_reconciles_total` reached `objects`. The agent exposes no count of
    /// distinct TaskRuns reconciled, so this is every one only when none was reconciled twice
    /// before the last was reconciled once: see `reconciles_when_idle`.
    pub reconciled_seconds: f64,
    /// Until it was last seen busy (CPU used or a request made) before a quiet spell: every
    /// TaskRun had been reconciled by then, whatever the order. At most 100 ms late, later when
    /// a node Lease renewal fell just after the work.
    pub busy_seconds: f64,
    /// `taskrun_reconciles_total` once it had gone idle: `objects` when each TaskRun was
    /// reconciled exactly once, and then `reconciled_seconds` is when every one had been.
    pub reconciles_when_idle: u64,
}

/// What finished TaskRuns take in etcd and on the wire.
#[derive(Debug, Default, Serialize)]
pub struct Storage {
    /// One entry per batch of finished TaskRuns the bench added, in order.
    pub seeding: Vec<Seeding>,
    /// Bytes of one finished TaskRun as the API server returns it (compact JSON, averaged
    /// over up to 500 of them), and of its `managedFields` alone.
    pub json_bytes: Option<f64>,
    pub managed_fields_json_bytes: Option<f64>,
}

/// One batch of finished TaskRuns created by the bench: claimed, finalized and with the status
/// the operator writes, each a create and a status patch.
#[derive(Debug, Serialize)]
pub struct Seeding {
    /// TaskRuns present before and after.
    pub from: usize,
    pub to: usize,
    pub seconds: f64,
    /// Creates and status patches in flight.
    pub concurrency: usize,
    /// `None` when etcd's `/metrics` could not be read.
    pub etcd: Option<EtcdGrowth>,
}

/// etcd's `etcd_mvcc_db_total_size_in_use_in_bytes` around one batch. Each TaskRun is written
/// twice (create, status), and etcd keeps both revisions until a compaction; the API server
/// compacts every five minutes, so the bench compacts before the batch and after it.
#[derive(Debug, Serialize)]
pub struct EtcdGrowth {
    /// Compacted, before the batch.
    pub before_bytes: u64,
    /// Right after the batch, its history still there.
    pub after_bytes: u64,
    /// After compacting: only the live objects; `None` when the compaction failed.
    pub compacted_bytes: Option<u64>,
    /// `after_bytes - before_bytes` over the TaskRuns added.
    pub bytes_per_taskrun_with_history: f64,
    /// `compacted_bytes - before_bytes` over the TaskRuns added.
    pub bytes_per_taskrun: Option<f64>,
}

impl Storage {
    /// The batch that added the most TaskRuns: its per-TaskRun figures are the least noisy.
    pub fn largest(&self) -> Option<&Seeding> {
        self.seeding.iter().max_by_key(|s| s.to - s.from)
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "ok" } else { "MISS" }
}

fn ms(value: f64) -> String {
    format!("{value:.1} ms")
}

/// `n` with a comma between each group of three digits.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Which Events a write count takes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Events {
    /// Writes to the TaskRun itself only: claim, status, finalizer removal.
    Apart,
    /// Every write the controller made for the TaskRun, its Events too.
    Included,
}

/// The figure compared with a writes target: the controller's writes per TaskRun over its
/// whole life when the burst and its deletion were measured, else over the sequential runs
/// (whose deletion is not measured). The node Lease is never in it.
pub fn lifecycle_writes(figures: &Figures, events: Events) -> Option<(f64, &'static str)> {
    let phase = |name: &str| figures.cost.iter().find(|c| c.phase == name);
    let writes = |cost: &Cost| match events {
        Events::Apart => cost.writes_per_taskrun - cost.event_writes_per_taskrun,
        Events::Included => cost.writes_per_taskrun,
    };
    match (phase("burst"), phase("delete"), phase("latency")) {
        (Some(burst), Some(delete), _) => Some((writes(burst) + writes(delete), "run + delete")),
        (Some(burst), None, _) => Some((writes(burst), "run")),
        (None, _, Some(latency)) => Some((writes(latency), "run")),
        _ => None,
    }
}

/// The target of a level of the memory scenario, if it has one.
fn rss_target(objects: usize) -> Option<f64> {
    TARGET_RSS_MIB
        .iter()
        .find(|(count, _)| *count == objects)
        .map(|(_, mib)| *mib)
}

/// `<= target ok` or `<= target MISS`.
fn at_most(value: f64, target: f64, unit: &str) -> String {
    format!("<= {target}{unit} {}", verdict(value <= target))
}

fn seconds(value: f64) -> String {
    format!("{value:.2} s")
}

/// The table: scenario, operator, raw Docker, ratio, target.
pub fn table(results: &Results) -> String {
    let Results {
        machine,
        params,
        figures,
    } = results;
    let mut out = String::new();
    let mut row = |scenario: &str, operator: &str, raw: &str, ratio: &str, target: &str| {
        let line = format!("{scenario:<40} {operator:>16} {raw:>20} {ratio:>7}  {target}");
        let _ = writeln!(out, "{}", line.trim_end());
    };
    let header = format!(
        "taskrun-operator bench: {} controller; {}",
        params.profile,
        machine.line()
    );
    let mut text = format!("\n{header}\n");
    if params.quick {
        text.push_str("QUICK smoke run: tiny sizes, the figures mean nothing\n");
    }
    row("scenario", "operator", "raw Docker", "ratio", "target");
    row(
        &"-".repeat(40),
        &"-".repeat(16),
        &"-".repeat(20),
        "-------",
        "-------------",
    );

    if let Some(l) = &figures.latency {
        let n = l.n;
        row(
            &format!("latency create->started p50 (N={n})"),
            &ms(l.operator_started.p50_ms),
            &ms(l.raw_started.p50_ms),
            &format!("{:.2}x", l.started_ratio_p50),
            "",
        );
        row(
            "latency create->started p99",
            &ms(l.operator_started.p99_ms),
            &ms(l.raw_started.p99_ms),
            &format!("{:.2}x", l.started_ratio_p99),
            "",
        );
        row(
            "latency create->done p50",
            &ms(l.operator_succeeded.p50_ms),
            &ms(l.raw_exited.p50_ms),
            &format!("{:.2}x", l.done_ratio_p50),
            &at_most(l.done_ratio_p50, TARGET_LATENCY_RATIO_P50, "x"),
        );
        row(
            "latency create->done p99",
            &ms(l.operator_succeeded.p99_ms),
            &ms(l.raw_exited.p99_ms),
            &format!("{:.2}x", l.done_ratio_p99),
            &at_most(l.done_ratio_p99, TARGET_LATENCY_RATIO_P99, "x"),
        );
        row(
            "latency create->container removed p50",
            &ms(l.operator_removed.p50_ms),
            &ms(l.raw_removed.p50_ms),
            &format!("{:.2}x", l.operator_removed.p50_ms / l.raw_removed.p50_ms),
            "",
        );
    }
    if let Some(t) = &figures.throughput {
        let raw = t.raw_best.map_or_else(
            || "-".to_string(),
            |b| format!("{:.1}/s (c={})", b.per_second, b.concurrency),
        );
        let operator = t
            .operator
            .as_ref()
            .map_or_else(|| "-".to_string(), |o| format!("{:.1}/s", o.per_second));
        let (ratio, target) = match t.ratio {
            Some(r) => (
                format!("{r:.2}x"),
                format!(
                    ">= {TARGET_THROUGHPUT_RATIO}x {}",
                    verdict(r >= TARGET_THROUGHPUT_RATIO)
                ),
            ),
            None => ("-".into(), String::new()),
        };
        row(
            &format!("throughput, burst of {}", t.m),
            &operator,
            &raw,
            &ratio,
            &target,
        );
    }
    for cost in &figures.cost {
        let phase = match cost.phase {
            "latency" => "sequential",
            other => other,
        };
        row(
            &format!("API requests/TaskRun ({phase})"),
            &format!("{:.2}", cost.requests_per_taskrun),
            "",
            "",
            "",
        );
        row(
            &format!("  writes/TaskRun ({phase})"),
            &format!("{:.2}", cost.writes_per_taskrun),
            "",
            "",
            "",
        );
        row(
            &format!("  status writes/TaskRun ({phase})"),
            &format!("{:.2}", cost.status_writes_per_taskrun),
            "",
            "",
            "",
        );
        row(
            &format!("controller CPU/TaskRun ({phase})"),
            &ms(cost.cpu_ms_per_taskrun),
            "",
            "",
            "",
        );
    }
    if let Some((writes, what)) = lifecycle_writes(figures, Events::Apart) {
        row(
            &format!("TaskRun writes/TaskRun ({what})"),
            &format!("{writes:.2}"),
            "",
            "",
            &at_most(writes, TARGET_WRITES_PER_TASKRUN, ""),
        );
    }
    if let Some((writes, what)) = lifecycle_writes(figures, Events::Included) {
        row(
            &format!("all API writes/TaskRun ({what})"),
            &format!("{writes:.2}"),
            "",
            "",
            &at_most(writes, TARGET_ALL_WRITES_PER_TASKRUN, ""),
        );
    }
    if let Some(memory) = &figures.memory {
        if let Some(idle) = &memory.idle {
            row(
                "controller peak RSS, idle",
                &format!("{:.1} MiB", idle.peak_rss_mib),
                "",
                "",
                "",
            );
        }
        for level in &memory.levels {
            let target = rss_target(level.objects)
                .map_or_else(String::new, |mib| at_most(level.peak_rss_mib, mib, " MiB"));
            row(
                &format!("controller peak RSS, {} TaskRuns", thousands(level.objects)),
                &format!("{:.1} MiB", level.peak_rss_mib),
                "",
                "",
                &target,
            );
        }
    }
    if let Some(c) = &figures.catch_up {
        let (objects, limit) = TARGET_CATCH_UP;
        let target = |value: f64| {
            if c.objects == objects {
                at_most(value, limit, " s")
            } else {
                String::new()
            }
        };
        row(
            &format!("catch-up, {} TaskRuns: Ready", thousands(c.objects)),
            &seconds(c.ready_seconds),
            "",
            "",
            &target(c.ready_seconds),
        );
        row(
            &format!("catch-up: {} reconciles", thousands(c.objects)),
            &seconds(c.reconciled_seconds),
            "",
            "",
            &target(c.reconciled_seconds),
        );
        row(
            &format!(
                "catch-up: idle ({} reconciles)",
                thousands(c.reconciles_when_idle as usize)
            ),
            &seconds(c.busy_seconds),
            "",
            "",
            &target(c.busy_seconds),
        );
    }
    if let Some(storage) = &figures.storage {
        if let Some(seeding) = storage.largest() {
            let added = thousands(seeding.to - seeding.from);
            match &seeding.etcd {
                Some(etcd) => {
                    if let Some(bytes) = etcd.bytes_per_taskrun {
                        row(
                            &format!("etcd bytes/finished TaskRun (+{added})"),
                            &format!("{bytes:.0} B"),
                            "",
                            "",
                            "",
                        );
                    }
                    row(
                        "  before compaction (2 revisions)",
                        &format!("{:.0} B", etcd.bytes_per_taskrun_with_history),
                        "",
                        "",
                        "",
                    );
                }
                None => row("etcd bytes/finished TaskRun", "n/a", "", "", ""),
            }
        }
        if let Some(bytes) = storage.json_bytes {
            row(
                "JSON bytes/finished TaskRun (API)",
                &format!("{bytes:.0} B"),
                "",
                "",
                "",
            );
        }
    }
    text.push_str(&out);
    if figures.latency.is_some() || figures.throughput.is_some() {
        text.push_str(
            "(from the create call: started = the daemon's start event; done = Succeeded seen by \
             a watch / the wait call returned;\n removed = the daemon's destroy event / the \
             remove call returned. Throughput: until every TaskRun is Succeeded; raw Docker at \
             its best concurrency c)\n",
        );
    }
    if figures.catch_up.is_some() || figures.storage.is_some() {
        text.push_str(
            "(catch-up: from spawning the agent to /readyz answering 200, to its \
             taskrun_reconciles_total reaching the count, and to the last moment it was busy \
             before going idle;\n etcd: \
             etcd_mvcc_db_total_size_in_use_in_bytes after the batch less before it, over the \
             TaskRuns added, both compacted)\n",
        );
    }
    text.push_str(&breakdown(figures));
    text
}

/// The controller's requests per TaskRun by verb and resource, one column per cost phase.
fn breakdown(figures: &Figures) -> String {
    if figures.cost.is_empty() {
        return String::new();
    }
    let mut keys: Vec<&String> = figures
        .cost
        .iter()
        .flat_map(|c| c.requests.0.keys())
        .collect();
    keys.sort();
    keys.dedup();
    let mut out = String::from(
        "\nAPI requests per TaskRun made by the controller, by verb (its own request log):\n",
    );
    let _ = write!(out, "  {:<30}", "request");
    for cost in &figures.cost {
        let _ = write!(out, " {:>10}", cost.phase);
    }
    out.push('\n');
    for key in keys {
        let _ = write!(out, "  {key:<30}");
        for cost in &figures.cost {
            let _ = write!(out, " {:>10.2}", cost.per_taskrun(cost.requests.get(key)));
        }
        out.push('\n');
    }
    let _ = write!(out, "  {:<30}", "status writes, own /metrics");
    for cost in &figures.cost {
        let writes = cost.operator_status_writes.map_or_else(
            || "n/a".to_string(),
            |w| format!("{:.2}", cost.per_taskrun(w)),
        );
        let _ = write!(out, " {writes:>10}");
    }
    out.push('\n');
    let _ = write!(out, "  {:<30}", "API server /metrics agrees");
    for cost in &figures.cost {
        let agrees = match cost.apiserver_agrees {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "n/a",
        };
        let _ = write!(out, " {agrees:>10}");
    }
    out.push('\n');
    if figures
        .cost
        .iter()
        .any(|c| c.requests.0.keys().any(|k| k.ends_with(" leases")))
    {
        out.push_str(
            "  (leases: the controller's node Lease, renewed on a timer whatever the load; not in the per-TaskRun totals)\n",
        );
    }
    if figures
        .cost
        .iter()
        .any(|c| c.apiserver_agrees == Some(false))
    {
        out.push_str(
            "  (the API server counted other writes meanwhile: other clients used it during the run)\n",
        );
    }
    out
}

/// One line with every figure that has a target, and where the JSON and pictures are.
pub fn summary(results: &Results, json: &Path, pictures: &[PathBuf]) -> String {
    let figures = &results.figures;
    let mut parts = Vec::new();
    let target = |value: f64, limit: f64, unit: &str| {
        format!("target <= {limit}{unit}: {}", verdict(value <= limit))
    };
    if let Some(l) = &figures.latency {
        parts.push(format!(
            "latency p50 {:.2}x raw Docker ({}), p99 {:.2}x ({})",
            l.done_ratio_p50,
            target(l.done_ratio_p50, TARGET_LATENCY_RATIO_P50, "x"),
            l.done_ratio_p99,
            target(l.done_ratio_p99, TARGET_LATENCY_RATIO_P99, "x"),
        ));
    }
    if let Some(r) = figures.throughput.as_ref().and_then(|t| t.ratio) {
        parts.push(format!(
            "throughput {r:.2}x raw Docker (target >= {TARGET_THROUGHPUT_RATIO}x: {})",
            verdict(r >= TARGET_THROUGHPUT_RATIO)
        ));
    }
    if let Some((writes, what)) = lifecycle_writes(figures, Events::Apart) {
        parts.push(format!(
            "{writes:.2} TaskRun writes/TaskRun, {what}, Events apart ({})",
            target(writes, TARGET_WRITES_PER_TASKRUN, "")
        ));
    }
    if let Some((writes, what)) = lifecycle_writes(figures, Events::Included) {
        parts.push(format!(
            "{writes:.2} API writes/TaskRun with Events, {what} ({})",
            target(writes, TARGET_ALL_WRITES_PER_TASKRUN, "")
        ));
    }
    if let Some(cost) = figures.cost.iter().find(|c| c.phase == "burst") {
        parts.push(format!(
            "{:.2} ms controller CPU/TaskRun",
            cost.cpu_ms_per_taskrun
        ));
    }
    for level in figures.memory.iter().flat_map(|m| &m.levels) {
        let verdict = rss_target(level.objects).map_or_else(String::new, |mib| {
            format!(" ({})", target(level.peak_rss_mib, mib, " MiB"))
        });
        parts.push(format!(
            "peak RSS {:.1} MiB with {} TaskRuns{verdict}",
            level.peak_rss_mib,
            thousands(level.objects)
        ));
    }
    if let Some(c) = &figures.catch_up {
        let (objects, limit) = TARGET_CATCH_UP;
        let verdicts = if c.objects == objects {
            format!(
                " ({}; {}; {})",
                target(c.ready_seconds, limit, " s"),
                target(c.reconciled_seconds, limit, " s"),
                target(c.busy_seconds, limit, " s")
            )
        } else {
            String::new()
        };
        parts.push(format!(
            "catch-up with {} TaskRuns: Ready in {:.2} s, {} reconciles in {:.2} s, idle at \
             {:.2} s{verdicts}",
            thousands(c.objects),
            c.ready_seconds,
            thousands(c.objects),
            c.reconciled_seconds,
            c.busy_seconds
        ));
    }
    if let Some(bytes) = figures
        .storage
        .as_ref()
        .and_then(Storage::largest)
        .and_then(|s| s.etcd.as_ref()?.bytes_per_taskrun)
    {
        parts.push(format!("{bytes:.0} etcd bytes/finished TaskRun"));
    }
    parts.push(format!("JSON: {}", json.display()));
    if !pictures.is_empty() {
        let names: Vec<String> = pictures.iter().map(|p| p.display().to_string()).collect();
        parts.push(format!("pictures: {}", names.join(", ")));
    }
    format!("bench summary: {}", parts.join("; "))
}

impl Results {
    /// Writes the figures as pretty JSON, making the folder if needed.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("failed to write {}: {e}", path.display()))?;
        Ok(())
    }
}
