//! Fault injection: a seeded stream of TaskRuns of every kind of outcome (exit codes,
//! deadlines, cancels, deletes, output that is not text, image names Docker refuses) runs on
//! two agents and two Docker daemons while the suite kills agents, restarts dockerd,
//! kube-apiserver and etcd, pauses a Docker socket and cuts an agent off from the API server.
//! Then the invariants are judged from what the daemons' events and the API server showed.
//!
//! `TASKRUN_CHAOS_SEED` replays a run's plan (printed at the start), `TASKRUN_CHAOS_RUNS` sizes
//! it (60 by default, a few minutes), `TASKRUN_CHAOS_FAULTS` overrides the number of faults
//! (one per ten runs). `make chaos N=1000` is the long run.

#[path = "../common/mod.rs"]
mod common;
mod env;
mod plan;
mod record;
mod verdict;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use taskrun_operator::api::TaskRun;
use tokio::sync::watch;
use tokio::time::Instant;

use env::{ChaosEnv, LEASE_SECONDS, MAX_RUNNING};
use plan::{Expect, Kind, Plan, RunPlan};
use record::{Ledger, Shared, phase_of};
use verdict::{Bounds, Invariant, Tally, Violation};

/// Beyond its own length, how long a run may take in time free of faults, and how long after
/// a fault the agents may take to recover: after a fault of a few seconds, their retries
/// (1 s doubling), their Docker event stream (up to 10 s) and their watch (up to 30 s after
/// many failures) are back well within that.
const BOUNDS: Bounds = Bounds {
    base: Duration::from_secs(30),
    recovery: Duration::from_secs(20),
};

/// How long a run may wait Pending while a node it may run on is healthy and has room.
const STUCK_AFTER: Duration = Duration::from_secs(45);

/// How long the agents get to remove what they should once every run has settled: their
/// orphan sweep runs every 2 s.
const SWEEP_GRACE: Duration = Duration::from_secs(20);

/// How many violations of each invariant the printed report shows; report.txt has them all.
const SHOWN: usize = 12;

/// The size and seed of a run, from the environment.
struct Settings {
    seed: u64,
    runs: usize,
    faults: usize,
}

impl Settings {
    fn from_env() -> Self {
        let number = |name: &str| {
            std::env::var(name).ok().map(|value| {
                value
                    .trim()
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("{name}={value} is not a whole number"))
            })
        };
        let seed = number("TASKRUN_CHAOS_SEED").unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            u64::try_from(nanos % 1_000_000).unwrap_or(0)
        });
        let runs = number("TASKRUN_CHAOS_RUNS").map_or(60, |n| usize::try_from(n).unwrap_or(60));
        let faults = number("TASKRUN_CHAOS_FAULTS")
            .map_or((runs / 10).max(1), |n| usize::try_from(n).unwrap_or(0));
        Self { seed, runs, faults }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_stream_keeps_every_invariant() {
    let settings = Settings::from_env();
    let plan = plan::plan(settings.seed, settings.runs, settings.faults);
    println!(
        "chaos: seed {seed}, {runs} runs over {window:.0} s, {faults} faults; replay with \
         TASKRUN_CHAOS_SEED={seed} TASKRUN_CHAOS_RUNS={runs} TASKRUN_CHAOS_FAULTS={faults}",
        seed = plan.seed,
        runs = plan.runs.len(),
        window = plan.window.as_secs_f64(),
        faults = plan.faults.len(),
    );
    // However the agents behave, the suite ends: the stream, the faults, the settling and the
    // sweep each have their own bound, and this one is over all of them.
    let limit = plan.window * 2 + Duration::from_secs(900);
    let namespace = format!("chaos-{}", plan.seed);
    let outcome = tokio::time::timeout(limit, run(&plan, &namespace)).await;
    let (report, violations) =
        outcome.unwrap_or_else(|_| panic!("the chaos run did not finish within {limit:?}"));
    println!("{report}");
    assert!(
        violations.is_empty(),
        "{} invariant violations (seed {}); report above and in target/chaos/{namespace}/report.txt",
        violations.len(),
        plan.seed
    );
}

/// Sets everything up, runs the stream and the faults, lets it settle and judges it.
async fn run(plan: &Plan, namespace: &str) -> (String, Vec<Violation>) {
    let setup = Instant::now();
    let mut env = ChaosEnv::up(namespace).await;
    println!(
        "chaos: control plane, two daemons and two agents up in {:.0} s; logs in {}",
        setup.elapsed().as_secs_f64(),
        env.dir.display()
    );
    let ledger = Shared::default();
    let (stop, stopped) = watch::channel(false);
    let api: Api<TaskRun> = Api::namespaced(env.client.clone(), namespace);
    let mut observers = Vec::new();
    for node in &env.nodes {
        observers.push(tokio::spawn(record::follow_docker(
            node.name,
            node.docker_host.clone(),
            namespace.to_string(),
            ledger.clone(),
            stopped.clone(),
        )));
    }
    observers.push(tokio::spawn(record::follow_taskruns(
        api.clone(),
        ledger.clone(),
        stopped.clone(),
    )));
    observers.push(tokio::spawn(record::watch_waiting(
        ledger.clone(),
        MAX_RUNNING,
        STUCK_AFTER,
        stopped.clone(),
    )));

    let started = Instant::now();
    let stream = drive(plan, &api, &ledger, started);
    let faults = async {
        for fault in &plan.faults {
            tokio::time::sleep_until(started + fault.at).await;
            println!(
                "chaos: +{:5.1} s {} {} for {:.1} s",
                started.elapsed().as_secs_f64(),
                fault.kind.label(),
                fault.node.unwrap_or("control plane"),
                fault.hold.as_secs_f64()
            );
            env.inject(fault, &ledger).await;
        }
    };
    tokio::join!(stream, faults);
    println!(
        "chaos: +{:5.1} s every run created and every fault healed; settling",
        started.elapsed().as_secs_f64()
    );
    settle(plan, &api, &ledger).await;
    sweep(plan, &env, &ledger).await;
    let mut agents = Vec::new();
    for node in &mut env.nodes {
        agents.push(node.agent_state().await);
    }
    let _ = stop.send(true);
    for observer in observers {
        let _ = observer.await;
    }

    let ledger = ledger.lock().unwrap();
    let (violations, tally) = verdict::judge(plan, &ledger, BOUNDS, Timestamp::now());
    let elapsed = started.elapsed();
    let full = report(
        plan,
        &ledger,
        &violations,
        &tally,
        &agents,
        elapsed,
        usize::MAX,
    );
    let _ = std::fs::write(env.dir.join("report.txt"), full);
    let short = report(plan, &ledger, &violations, &tally, &agents, elapsed, SHOWN);
    (short, violations)
}

/// Creates each run at its time, and cancels or deletes it when its plan says.
async fn drive(plan: &Plan, api: &Api<TaskRun>, ledger: &Shared, started: Instant) {
    let mut touches = Vec::new();
    for run in &plan.runs {
        tokio::time::sleep_until(started + run.at).await;
        let created = create(api, run).await;
        let at = Timestamp::now();
        {
            let mut ledger = ledger.lock().unwrap();
            let record = ledger.runs.entry(run.name.clone()).or_default();
            record.uid = created.uid();
            record.created = Some(at);
        }
        if let Some(after) = run.touch_after {
            let (api, ledger, run) = (api.clone(), ledger.clone(), run.clone());
            touches.push(tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let ended_before = touch(&api, &run).await;
                let at = Timestamp::now();
                ledger
                    .lock()
                    .unwrap()
                    .runs
                    .entry(run.name.clone())
                    .or_default()
                    .touched = Some((at, ended_before));
            }));
        }
    }
    for touch in touches {
        touch.await.expect("cancel or delete a run");
    }
}

/// Calls the API server until it answers, through its restarts: a call that fails for three
/// minutes fails the suite.
async fn retry<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let give_up = Instant::now() + Duration::from_secs(180);
    loop {
        let error = match tokio::time::timeout(Duration::from_secs(10), call()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within 10 s".to_string(),
        };
        assert!(Instant::now() < give_up, "{what}: {error}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

async fn create(api: &Api<TaskRun>, run: &RunPlan) -> TaskRun {
    let taskrun = run.taskrun(api.namespace().unwrap_or_default());
    retry(&format!("create {}", run.name), || async {
        match api.create(&PostParams::default(), &taskrun).await {
            // An earlier try went through without its answer.
            Err(e) if is_status(&e, 409) => api.get(&run.name).await,
            other => other,
        }
    })
    .await
}

/// Cancels or deletes the run; true when it had ended before.
async fn touch(api: &Api<TaskRun>, run: &RunPlan) -> bool {
    match run.kind {
        Kind::Cancel => {
            let patch = Patch::Merge(serde_json::json!({ "spec": { "cancel": true } }));
            let params = PatchParams::default();
            let patched = retry(&format!("cancel {}", run.name), || {
                api.patch(&run.name, &params, &patch)
            })
            .await;
            phase_of(&patched).is_final()
        }
        _ => {
            retry(&format!("delete {}", run.name), || async {
                match api.delete(&run.name, &DeleteParams::default()).await {
                    Err(e) if is_status(&e, 404) => Ok(()),
                    other => other.map(drop),
                }
            })
            .await;
            false
        }
    }
}

/// Waits until every run has ended (or is gone, for deleted ones), or until the last bound
/// has passed; then reads every TaskRun once more from the API server.
async fn settle(plan: &Plan, api: &Api<TaskRun>, ledger: &Shared) {
    let start = Instant::now();
    loop {
        let (unsettled, bound) = {
            let ledger = ledger.lock().unwrap();
            let now = Timestamp::now();
            let unsettled: Vec<&RunPlan> = plan
                .runs
                .iter()
                .filter(|run| {
                    let record = ledger.runs.get(&run.name);
                    let gone = record.is_some_and(|r| r.gone.is_some());
                    let ended = record.is_some_and(|r| r.ended.is_some());
                    !gone && (run.expect == Expect::Gone || !ended)
                })
                .collect();
            let bound = unsettled
                .iter()
                .filter_map(|run| {
                    let record = ledger.runs.get(&run.name)?;
                    let (from, own) = match (run.expect, record.touched) {
                        (Expect::Gone, Some((deleted, _))) => (deleted, Duration::ZERO),
                        _ => (record.created?, run.natural),
                    };
                    Some(verdict::bound(&ledger, from, own, BOUNDS, now))
                })
                .max();
            (unsettled.len(), bound)
        };
        let now = Timestamp::now();
        if unsettled == 0 || bound.is_none_or(|b| b < now) {
            println!(
                "chaos: settled in {:.0} s, {unsettled} runs still open",
                start.elapsed().as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let params = ListParams::default();
    let listed = retry("list the TaskRuns", || api.list(&params)).await;
    let now = Timestamp::now();
    let mut ledger = ledger.lock().unwrap();
    let present: Vec<String> = listed.items.iter().map(ResourceExt::name_any).collect();
    for taskrun in &listed.items {
        ledger.saw(taskrun, now);
    }
    let names: Vec<String> = ledger.runs.keys().cloned().collect();
    for name in names {
        if !present.contains(&name) {
            ledger.gone(&name, now);
        }
    }
}

/// Takes the inventory of both daemons until the agents have removed what they should, or
/// [`SWEEP_GRACE`] has passed.
async fn sweep(plan: &Plan, env: &ChaosEnv, ledger: &Shared) {
    let give_up = Instant::now() + SWEEP_GRACE;
    loop {
        for node in &env.nodes {
            record::take_inventory(node.name, &node.docker_host, &env.namespace, ledger).await;
        }
        let left = {
            let ledger = ledger.lock().unwrap();
            verdict::judge(plan, &ledger, BOUNDS, Timestamp::now())
                .0
                .iter()
                .filter(|v| matches!(v.invariant, Invariant::Orphan | Invariant::Cleanup))
                .count()
        };
        if left == 0 || Instant::now() >= give_up {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The report: the plan in numbers, the faults as they happened, the outcomes and the
/// violations, at most `shown` of each invariant.
fn report(
    plan: &Plan,
    ledger: &Ledger,
    violations: &[Violation],
    tally: &Tally,
    agents: &[String],
    elapsed: Duration,
    shown: usize,
) -> String {
    let mut out = String::new();
    let count = |items: &mut dyn Iterator<Item = String>| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for item in items {
            *counts.entry(item).or_default() += 1;
        }
        counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "chaos report: seed {}, {:.0} s, agents with {LEASE_SECONDS} s Leases and room for {MAX_RUNNING} runs each",
        plan.seed,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "runs: {} ({}); nodeName: {}",
        plan.runs.len(),
        count(&mut plan.runs.iter().map(|r| r.kind.label().to_string())),
        count(
            &mut plan
                .runs
                .iter()
                .map(|r| r.node.unwrap_or("any").to_string())
        ),
    );
    let _ = writeln!(
        out,
        "faults: {} ({})",
        ledger.faults.len(),
        count(
            &mut ledger
                .faults
                .iter()
                .map(|f| f.plan.kind.label().to_string())
        ),
    );
    for fault in &ledger.faults {
        let _ = writeln!(
            out,
            "  {} {} {} for {:.1} s",
            verdict::clock(fault.injected),
            fault.plan.kind.label(),
            fault.plan.node.unwrap_or("control plane"),
            fault
                .healed
                .map_or(f64::NAN, |h| h.duration_since(fault.injected).as_secs_f64()),
        );
    }
    let outcomes: Vec<String> = tally
        .outcomes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(out, "outcomes: {}", outcomes.join(", "));
    let containers: Vec<String> = tally
        .containers
        .iter()
        .map(|(node, n)| format!("{node} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "containers created: {}; exit codes checked against the daemon: {} ({} no longer known)",
        containers.join(", "),
        tally.exit_codes_checked,
        tally.exit_codes_unknown
    );
    for agent in agents {
        let _ = writeln!(out, "at the end, {agent}");
    }
    let _ = writeln!(
        out,
        "violations: {} ({})",
        violations.len(),
        count(&mut violations.iter().map(|v| v.invariant.to_string()))
    );
    let mut listed: BTreeMap<Invariant, usize> = BTreeMap::new();
    for v in violations {
        let count = listed.entry(v.invariant).or_default();
        *count += 1;
        if *count <= shown {
            let _ = writeln!(
                out,
                "  [{}] {}: expected {}; seen {}",
                v.invariant, v.run, v.expected, v.seen
            );
        }
    }
    for (invariant, count) in listed.into_iter().filter(|(_, count)| *count > shown) {
        let _ = writeln!(
            out,
            "  [{invariant}] ... and {} more, in report.txt",
            count - shown
        );
    }
    out
}
