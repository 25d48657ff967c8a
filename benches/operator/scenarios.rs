//! The scenarios, in the order they run: the controller idle, latency, throughput with the
//! cost of the burst and its deletion, then memory and catch-up with many finished TaskRuns
//! present (last, because they leave the API server busiest), with what etcd stores for them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use jiff::Timestamp;
use taskrun_operator::docker::container_name;

use crate::cluster::{self, Bench};
use crate::controller::{Controller, OperatorMetrics, ticks_to_seconds};
use crate::docker;
use crate::etcd::Etcd;
use crate::report::{
    CatchUp, Cost, EtcdGrowth, Figures, Latency, LatencySamples, Memory, MemoryLevel,
    OperatorBurst, RawBurst, Seeding, Storage, Summary, Throughput,
};
use crate::requests::{self, Requests};
use crate::{Params, Result, Scenario};

/// How long one sequential run may take before the bench gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a controller must use no CPU and make no request to count as idle.
fn quiet(params: &Params) -> Duration {
    Duration::from_millis(if params.quick { 300 } else { 1_000 })
}

/// The longest the bench waits for a controller to go idle.
const SETTLE_MAX: Duration = Duration::from_secs(30);

/// Creates and status patches in flight while the bench adds finished TaskRuns, and finalizer
/// removals and deletes when it removes them.
const SEED_CONCURRENCY: usize = 64;

/// Runs the chosen scenarios against `bench`.
pub async fn run_all(bench: &Bench, params: &Params) -> Result<Figures> {
    let mut figures = Figures::default();
    let operator_scenarios = [Scenario::Latency, Scenario::Throughput, Scenario::Cost]
        .into_iter()
        .any(|s| params.runs(s));
    let mut memory = Memory::default();

    if operator_scenarios || params.runs(Scenario::Memory) {
        let mut controller = start_controller(bench, "main")?;
        let ready = controller.ready(Duration::from_secs(30)).await?;
        controller.settle(quiet(params), SETTLE_MAX).await?;
        if params.runs(Scenario::Memory) {
            memory.idle = Some(memory_level(&controller, 0, ready, 0.0)?);
        }
        if operator_scenarios {
            operator_scenarios_with(bench, params, &controller, &mut figures).await?;
        }
        controller.stop().await?;
    }
    if !params.levels().is_empty() {
        let levels = levels(bench, params).await?;
        if params.runs(Scenario::Memory) {
            memory.levels = levels.memory;
            figures.memory = Some(memory);
        }
        figures.catch_up = levels.catch_up;
        figures.storage = Some(levels.storage);
    }
    Ok(figures)
}

fn start_controller(bench: &Bench, role: &str) -> Result<Controller> {
    let log = bench.log_dir.join(format!("{}-{role}.log", bench.node));
    let controller = Controller::start(&bench.kubeconfig, &bench.namespace, &bench.node, log)?;
    say!("controller {role} started, pid {}", controller.pid());
    Ok(controller)
}

async fn operator_scenarios_with(
    bench: &Bench,
    params: &Params,
    controller: &Controller,
    figures: &mut Figures,
) -> Result<()> {
    let api = bench.api();
    say!("warming up (one run each way, not measured)");
    raw_run(bench, &format!("{}-raw-warm-up", bench.node)).await?;
    operator_run(bench, "warm-up").await?;
    let mut leftovers = vec!["warm-up".to_string()];

    if params.runs(Scenario::Latency) {
        say!(
            "latency, {} sequential runs each way, interleaved",
            params.n
        );
        let (latency, cost, names) = latency(bench, params, controller).await?;
        figures.latency = Some(latency);
        figures.cost.push(cost);
        leftovers.extend(names);
    }
    cluster::delete_taskruns(&api, &leftovers, params.api_concurrency).await?;
    bench
        .taskruns
        .until("the latency TaskRuns to be deleted", RUN_TIMEOUT, |seen| {
            leftovers.iter().all(|n| !seen.contains(n))
        })
        .await?;

    if !(params.runs(Scenario::Throughput) || params.runs(Scenario::Cost)) {
        return Ok(());
    }
    let mut raw = Vec::new();
    if params.runs(Scenario::Throughput) {
        for &concurrency in &params.raw_concurrency {
            say!(
                "throughput, {} raw Docker runs, {concurrency} at a time",
                params.m
            );
            raw.push(raw_burst(bench, params.m, concurrency).await?);
        }
    }
    say!(
        "throughput, a burst of {} TaskRuns, then their deletion",
        params.m
    );
    let (operator, burst_cost, delete_cost) = operator_burst(bench, params, controller).await?;
    figures.cost.push(burst_cost);
    figures.cost.push(delete_cost);
    let raw_best = raw
        .iter()
        .copied()
        .max_by(|a, b| a.per_second.total_cmp(&b.per_second));
    figures.throughput = Some(Throughput {
        m: params.m,
        ratio: raw_best.map(|best| operator.per_second / best.per_second),
        operator: Some(operator),
        raw,
        raw_best,
    });
    Ok(())
}

/// Milliseconds from `from` to `to`.
fn ms_between(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64() * 1_000.0
}

/// One raw cycle's latencies.
struct RawSample {
    started_ms: f64,
    exited_ms: f64,
    removed_ms: f64,
}

async fn raw_run(bench: &Bench, name: &str) -> Result<RawSample> {
    let run = docker::run_raw(&bench.docker, name, &bench.node).await?;
    bench
        .containers
        .until(&format!("the start event of {name}"), RUN_TIMEOUT, |seen| {
            seen.times(name).started.is_some()
        })
        .await?;
    let started = bench
        .containers
        .read(|seen| seen.times(name).started)
        .ok_or("no start event")?;
    Ok(RawSample {
        started_ms: ms_between(run.created_at, started),
        exited_ms: ms_between(run.created_at, run.exited_at),
        removed_ms: ms_between(run.created_at, run.removed_at),
    })
}

/// One TaskRun's latencies.
struct OperatorSample {
    started_ms: f64,
    succeeded_ms: f64,
    removed_ms: f64,
}

/// Creates a TaskRun and waits until the watch sees it `Succeeded` and the daemon has
/// destroyed its container, so the next run starts on a quiet daemon.
async fn operator_run(bench: &Bench, name: &str) -> Result<OperatorSample> {
    let created_at = Timestamp::now();
    let uids = cluster::create_taskruns(&bench.api(), &[name.to_string()], 1).await?;
    let container = container_name(uids.get(name).ok_or("no UID")?);
    bench
        .taskruns
        .until(&format!("TaskRun {name} to end"), RUN_TIMEOUT, |seen| {
            seen.final_phase(name).is_some()
        })
        .await?;
    let (phase, succeeded_at) = bench
        .taskruns
        .read(|seen| (seen.final_phase(name), seen.succeeded_at(name)));
    let succeeded_at =
        succeeded_at.ok_or_else(|| format!("TaskRun {name} ended {phase:?}, not Succeeded"))?;
    bench
        .containers
        .until(
            &format!("the container of TaskRun {name} to be removed"),
            RUN_TIMEOUT,
            |seen| seen.times(&container).destroyed.is_some(),
        )
        .await?;
    let times = bench.containers.read(|seen| seen.times(&container));
    let (Some(started), Some(destroyed)) = (times.started, times.destroyed) else {
        return Err(format!("no start event for the container of TaskRun {name}").into());
    };
    Ok(OperatorSample {
        started_ms: ms_between(created_at, started),
        succeeded_ms: ms_between(created_at, succeeded_at),
        removed_ms: ms_between(created_at, destroyed),
    })
}

async fn latency(
    bench: &Bench,
    params: &Params,
    controller: &Controller,
) -> Result<(Latency, Cost, Vec<String>)> {
    let names: Vec<String> = (0..params.n).map(|i| format!("latency-{i:04}")).collect();
    let window = Window::open(bench, controller).await?;
    let mut raw = Vec::with_capacity(params.n);
    let mut operator = Vec::with_capacity(params.n);
    for (i, name) in names.iter().enumerate() {
        raw.push(raw_run(bench, &format!("{}-raw-{i:04}", bench.node)).await?);
        operator.push(operator_run(bench, name).await?);
    }
    let bench_writes = Requests([("create taskruns".to_string(), params.n as u64)].into());
    let cost = window
        .close(bench, params, controller, "latency", params.n, bench_writes)
        .await?;

    let samples = LatencySamples {
        operator_started_ms: operator.iter().map(|s| s.started_ms).collect(),
        operator_succeeded_ms: operator.iter().map(|s| s.succeeded_ms).collect(),
        raw_started_ms: raw.iter().map(|s| s.started_ms).collect(),
        raw_exited_ms: raw.iter().map(|s| s.exited_ms).collect(),
    };
    let operator_started = Summary::of(&samples.operator_started_ms);
    let operator_succeeded = Summary::of(&samples.operator_succeeded_ms);
    let raw_started = Summary::of(&samples.raw_started_ms);
    let raw_exited = Summary::of(&samples.raw_exited_ms);
    let summary = |values: Vec<f64>| Summary::of(&values);
    let latency = Latency {
        n: params.n,
        operator_removed: summary(operator.iter().map(|s| s.removed_ms).collect()),
        raw_removed: summary(raw.iter().map(|s| s.removed_ms).collect()),
        started_ratio_p50: operator_started.p50_ms / raw_started.p50_ms,
        started_ratio_p99: operator_started.p99_ms / raw_started.p99_ms,
        done_ratio_p50: operator_succeeded.p50_ms / raw_exited.p50_ms,
        done_ratio_p99: operator_succeeded.p99_ms / raw_exited.p99_ms,
        operator_started,
        operator_succeeded,
        raw_started,
        raw_exited,
        samples,
    };
    Ok((latency, cost, names))
}

/// `m` raw cycles, `concurrency` at a time.
async fn raw_burst(bench: &Bench, m: usize, concurrency: usize) -> Result<RawBurst> {
    let started = Instant::now();
    stream::iter(0..m)
        .map(|i| {
            let name = format!("{}-raw-c{concurrency}-{i:04}", bench.node);
            async move { docker::run_raw(&bench.docker, &name, &bench.node).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(RawBurst {
        concurrency,
        seconds,
        per_second: m as f64 / seconds,
    })
}

/// M TaskRuns created at once until all are `Succeeded` and their containers removed, then
/// deleted; the cost of both halves.
async fn operator_burst(
    bench: &Bench,
    params: &Params,
    controller: &Controller,
) -> Result<(OperatorBurst, Cost, Cost)> {
    let m = params.m;
    let api = bench.api();
    let names: Vec<String> = (0..m).map(|i| format!("burst-{i:04}")).collect();
    let timeout = Duration::from_secs(60 + m as u64);

    let window = Window::open(bench, controller).await?;
    let started_at = Timestamp::now();
    let uids: HashMap<String, String> =
        cluster::create_taskruns(&api, &names, params.api_concurrency).await?;
    let created_at = Timestamp::now();
    bench
        .taskruns
        .until("every burst TaskRun to end", timeout, |seen| {
            names.iter().all(|n| seen.final_phase(n).is_some())
        })
        .await?;
    let succeeded: Vec<Timestamp> = bench
        .taskruns
        .read(|seen| names.iter().filter_map(|n| seen.succeeded_at(n)).collect());
    if succeeded.len() != m {
        return Err(format!(
            "{} of {m} burst TaskRuns did not succeed",
            m - succeeded.len()
        )
        .into());
    }
    let containers: Vec<String> = uids.values().map(|uid| container_name(uid)).collect();
    bench
        .containers
        .until("every burst container to be removed", timeout, |seen| {
            containers.iter().all(|c| seen.times(c).destroyed.is_some())
        })
        .await?;
    let removed: Vec<Timestamp> = bench.containers.read(|seen| {
        containers
            .iter()
            .filter_map(|c| seen.times(c).destroyed)
            .collect()
    });
    let bench_writes = Requests([("create taskruns".to_string(), m as u64)].into());
    let burst_cost = window
        .close(bench, params, controller, "burst", m, bench_writes)
        .await?;
    let seconds = |times: &[Timestamp]| {
        times
            .iter()
            .max()
            .map_or(0.0, |last| ms_between(started_at, *last) / 1_000.0)
    };
    let succeeded_seconds = seconds(&succeeded);
    let burst = OperatorBurst {
        created_seconds: ms_between(started_at, created_at) / 1_000.0,
        succeeded_seconds,
        removed_seconds: seconds(&removed),
        per_second: m as f64 / succeeded_seconds,
    };

    let window = Window::open(bench, controller).await?;
    cluster::delete_taskruns(&api, &names, params.api_concurrency).await?;
    bench
        .taskruns
        .until("every burst TaskRun to be deleted", timeout, |seen| {
            names.iter().all(|n| !seen.contains(n))
        })
        .await?;
    let bench_writes = Requests([("delete taskruns".to_string(), m as u64)].into());
    let delete_cost = window
        .close(bench, params, controller, "delete", m, bench_writes)
        .await?;
    Ok((burst, burst_cost, delete_cost))
}

/// A stretch of the controller's life whose requests and CPU time are counted.
struct Window {
    log_mark: u64,
    cpu_ticks: u64,
    apiserver: Option<Requests>,
    operator: Option<OperatorMetrics>,
}

impl Window {
    async fn open(bench: &Bench, controller: &Controller) -> Result<Self> {
        Ok(Self {
            log_mark: controller.log_mark(),
            cpu_ticks: controller.cpu_ticks()?,
            apiserver: scrape(bench).await,
            operator: controller.metrics().await.ok(),
        })
    }

    /// Waits for the controller to go idle, then counts what it did for `taskruns` TaskRuns.
    /// `bench_writes` are the bench's own writes in the window, taken from the API server's
    /// count before it is compared with the controller's.
    async fn close(
        self,
        bench: &Bench,
        params: &Params,
        controller: &Controller,
        phase: &'static str,
        taskruns: usize,
        bench_writes: Requests,
    ) -> Result<Cost> {
        controller.settle(quiet(params), SETTLE_MAX).await?;
        let requests = controller.requests_since(self.log_mark)?;
        let cpu_seconds = ticks_to_seconds(controller.cpu_ticks()? - self.cpu_ticks);
        let apiserver_writes = match (self.apiserver, scrape(bench).await) {
            (Some(before), Some(after)) => {
                Some(after.since(&before).only_writes().since(&bench_writes))
            }
            _ => None,
        };
        let per_run = requests.per_run();
        let apiserver_agrees = apiserver_writes
            .as_ref()
            .map(|counted| *counted == per_run.only_writes());
        let operator_status_writes = match (self.operator, controller.metrics().await.ok()) {
            (Some(before), Some(after)) => Some(after.status_writes - before.status_writes),
            _ => None,
        };
        let per = |count: u64| count as f64 / taskruns.max(1) as f64;
        Ok(Cost {
            phase,
            taskruns,
            requests_per_taskrun: per(per_run.total()),
            writes_per_taskrun: per(per_run.writes()),
            status_writes_per_taskrun: per(per_run.status_writes()),
            event_writes_per_taskrun: per(per_run.event_writes()),
            operator_status_writes,
            cpu_seconds,
            cpu_ms_per_taskrun: cpu_seconds * 1_000.0 / taskruns.max(1) as f64,
            requests,
            apiserver_writes,
            apiserver_agrees,
        })
    }
}

/// The API server's request counters, or `None` (said once per scrape) when it will not
/// show them to this kubeconfig.
async fn scrape(bench: &Bench) -> Option<Requests> {
    match requests::scrape_apiserver(&bench.kube).await {
        Ok(requests) => Some(requests),
        Err(e) => {
            say!("cannot read the API server's /metrics: {e}");
            None
        }
    }
}

fn memory_level(
    controller: &Controller,
    objects: usize,
    to_process: Duration,
    create_seconds: f64,
) -> Result<MemoryLevel> {
    let rss = controller.rss()?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(MemoryLevel {
        objects,
        rss_mib: mib(rss.current_kib),
        peak_rss_mib: mib(rss.peak_kib),
        seconds_to_process: to_process.as_secs_f64(),
        cpu_seconds: controller.cpu_seconds()?,
        create_seconds,
    })
}

/// What the memory and catch-up scenarios measured.
#[derive(Default)]
struct Levels {
    memory: Vec<MemoryLevel>,
    catch_up: Option<CatchUp>,
    storage: Storage,
}

/// For each level (the memory scenario's counts and the catch-up count), adds finished TaskRuns
/// up to it, starts a fresh controller, times it to Ready and to having reconciled every one,
/// waits until it has gone idle, reads its RSS and stops it. Then the bench removes the
/// TaskRuns itself: no controller needs to see that.
async fn levels(bench: &Bench, params: &Params) -> Result<Levels> {
    let api = bench.api();
    let name = |i: usize| format!("finished-{i:05}");
    let etcd = Etcd::find(params.etcd_url.as_deref(), &bench.kubeconfig);
    match &etcd {
        Some(etcd) => say!("etcd at {}", etcd.url()),
        None => {
            say!("no etcd URL (no ports.env beside the kubeconfig, no --etcd-url): no etcd figures")
        }
    }
    let levels = params.levels();
    let mut measured = Levels::default();
    let mut present = 0;
    for (index, &objects) in levels.iter().enumerate() {
        let names: Vec<String> = (present..objects).map(name).collect();
        let seeding = seed(bench, etcd.as_ref(), &names, present).await?;
        let create_seconds = seeding.seconds;
        measured.storage.seeding.push(seeding);
        if index == 0 {
            let (json, managed_fields) = cluster::json_bytes(&bench.kube, &bench.namespace).await?;
            measured.storage.json_bytes = Some(json);
            measured.storage.managed_fields_json_bytes = Some(managed_fields);
        }
        present = objects;

        let timeout = Duration::from_secs(120) + Duration::from_millis(20) * objects as u32;
        let mut controller = start_controller(bench, &format!("memory-{objects}"))?;
        let ready = controller.ready(timeout).await?;
        let reconciled = controller.reconciled(objects as u64, timeout).await?;
        say!(
            "{objects} finished TaskRuns: the agent was Ready {:.2} s after it was spawned and \
             had made {objects} reconciles at {:.2} s",
            ready.as_secs_f64(),
            reconciled.as_secs_f64()
        );
        let busy = controller.settle(quiet(params), SETTLE_MAX).await?;
        let reconciles_when_idle = controller.metrics().await?.reconciles;
        let level = memory_level(&controller, objects, reconciled, create_seconds)?;
        say!(
            "{objects} finished TaskRuns: last busy at {:.2} s, then idle with \
             {reconciles_when_idle} reconciles; peak RSS {:.1} MiB",
            busy.as_secs_f64(),
            level.peak_rss_mib
        );
        if params.runs(Scenario::Memory) && params.objects.contains(&objects) {
            measured.memory.push(level);
        }
        if params.runs(Scenario::CatchUp) && objects == params.catch_up {
            measured.catch_up = Some(CatchUp {
                objects,
                ready_seconds: ready.as_secs_f64(),
                reconciled_seconds: reconciled.as_secs_f64(),
                busy_seconds: busy.as_secs_f64(),
                reconciles_when_idle,
            });
        }
        controller.stop().await?;
    }
    let all: Vec<String> = (0..present).map(name).collect();
    say!("deleting the {present} finished TaskRuns");
    let deleting = Instant::now();
    cluster::release_and_delete(&api, &all, SEED_CONCURRENCY).await?;
    let timeout = Duration::from_secs(60);
    bench
        .taskruns
        .until("the finished TaskRuns to be deleted", timeout, |seen| {
            seen.is_empty()
        })
        .await?;
    say!(
        "deleted the {present} finished TaskRuns in {:.1} s",
        deleting.elapsed().as_secs_f64()
    );
    Ok(measured)
}

/// Creates the finished TaskRuns `names`, `present` being there already, and measures what
/// etcd holds before and after.
async fn seed(
    bench: &Bench,
    etcd: Option<&Etcd>,
    names: &[String],
    present: usize,
) -> Result<Seeding> {
    let before = match etcd {
        Some(etcd) => match compacted_in_use(bench, etcd).await {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                say!("cannot measure etcd: {e}");
                None
            }
        },
        None => None,
    };
    say!(
        "creating {} finished TaskRuns, {SEED_CONCURRENCY} requests in flight",
        names.len()
    );
    let creating = Instant::now();
    cluster::create_finished_taskruns(&bench.api(), &bench.node, names, SEED_CONCURRENCY).await?;
    let seconds = creating.elapsed().as_secs_f64();
    say!(
        "created {} finished TaskRuns in {seconds:.1} s ({:.0} a second)",
        names.len(),
        names.len() as f64 / seconds
    );
    let etcd = match (etcd, before) {
        (Some(etcd), Some(before)) => Some(etcd_growth(bench, etcd, before, names.len()).await?),
        _ => None,
    };
    Ok(Seeding {
        from: present,
        to: present + names.len(),
        seconds,
        concurrency: SEED_CONCURRENCY,
        etcd,
    })
}

/// etcd's bytes in use once compacted.
async fn compacted_in_use(bench: &Bench, etcd: &Etcd) -> Result<u64> {
    etcd.compact().await?;
    etcd.in_use_bytes_after(|| bench.touch()).await
}

/// How etcd grew from `before` (compacted) for `added` TaskRuns, history and all and compacted.
async fn etcd_growth(bench: &Bench, etcd: &Etcd, before: u64, added: usize) -> Result<EtcdGrowth> {
    let after = etcd.in_use_bytes_after(|| bench.touch()).await?;
    let compacted = match compacted_in_use(bench, etcd).await {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            say!("cannot compact etcd: {e}");
            None
        }
    };
    let per = |bytes: u64| (bytes as f64 - before as f64) / added.max(1) as f64;
    let growth = EtcdGrowth {
        before_bytes: before,
        after_bytes: after,
        compacted_bytes: compacted,
        bytes_per_taskrun_with_history: per(after),
        bytes_per_taskrun: compacted.map(per),
    };
    say!(
        "etcd in use: {before} B before, {after} B after, {} B compacted: {} B/TaskRun \
         ({:.0} B before compaction)",
        compacted.map_or_else(|| "n/a".to_string(), |b| b.to_string()),
        growth
            .bytes_per_taskrun
            .map_or_else(|| "n/a".to_string(), |b| format!("{b:.0}")),
        growth.bytes_per_taskrun_with_history
    );
    Ok(growth)
}
