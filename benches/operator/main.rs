//! `make bench`: the operator measured against the real API server and Docker daemon, beside
//! the same containers run straight through the Docker API.
//!
//! - latency: N sequential TaskRuns (busybox `true`), create -> container started and create
//!   -> `Succeeded` seen by a watch, interleaved with N raw create/start/wait/remove cycles;
//! - throughput: a burst of M TaskRuns until all are `Succeeded`, beside M raw cycles at the
//!   best of a few concurrencies;
//! - cost: the controller's API requests by verb (its own request log, checked against the
//!   API server's `/metrics`), status writes and CPU seconds per TaskRun, measured over the
//!   latency runs, the burst and the burst's deletion;
//! - memory: the controller's RSS idle and when it starts with 1,000, 10,000 and 50,000
//!   finished TaskRuns present, and what etcd stores for each finished TaskRun;
//! - catch-up: how long an agent started with 10,000 finished TaskRuns present takes to be
//!   Ready and to have reconciled every one.
//!
//! Prints a table and a summary line, writes the figures to `target/bench/results.json` and
//! draws `latency.svg` and `memory.svg` beside it. `--quick` is a smoke run of a few seconds
//! that proves the harness works; its figures mean nothing and its files are `*-quick.*`.
//! Each run has its own namespace, node name and controller processes, and removes them,
//! their TaskRuns and their containers when it ends.

/// Progress on stderr, with the seconds since the bench started.
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("==> bench {:>6.1}s: {}", crate::elapsed(), format_args!($($arg)*))
    };
}

mod cluster;
/// What the end-to-end tests and the bench share: the cluster, the CRD, HTTP to the agent.
#[path = "../../tests/common/mod.rs"]
mod common;
mod controller;
mod docker;
mod etcd;
mod plots;
mod report;
mod requests;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};

/// What can go wrong in the bench; it reports and stops, so one boxed error is enough.
type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

/// Measures the operator against raw Docker: latency, throughput, cost per TaskRun, memory,
/// catch-up after a restart.
#[derive(Parser, Debug)]
#[command(name = "operator-bench")]
struct Args {
    /// A smoke run of a few seconds with tiny sizes, to prove the harness works.
    #[arg(long)]
    quick: bool,
    /// Test filters `cargo test` hands every target; the bench has no tests to filter.
    #[arg(long, hide = true)]
    skip: Vec<String>,
    /// Sequential TaskRuns in the latency scenario [default: 100; quick: 3].
    #[arg(long, env = "TASKRUN_BENCH_N")]
    n: Option<usize>,
    /// TaskRuns in the throughput burst [default: 200; quick: 5].
    #[arg(long, env = "TASKRUN_BENCH_M")]
    m: Option<usize>,
    /// Which scenarios to run. `cost` is measured during `latency` and `throughput`; alone it
    /// runs the operator's burst without the raw Docker baseline.
    #[arg(
        long,
        env = "TASKRUN_BENCH_SCENARIOS",
        value_delimiter = ',',
        default_value = "latency,throughput,cost,memory,catch-up"
    )]
    scenarios: Vec<Scenario>,
    /// Finished TaskRuns present in the memory scenario [default: 1000,10000,50000; quick: 20,50].
    #[arg(long, env = "TASKRUN_BENCH_OBJECTS", value_delimiter = ',')]
    objects: Option<Vec<usize>>,
    /// Finished TaskRuns present when the catch-up scenario starts an agent; a count the memory
    /// scenario also uses is measured on its agent [default: 10000; quick: 50].
    #[arg(long, env = "TASKRUN_BENCH_CATCH_UP")]
    catch_up: Option<usize>,
    /// etcd's client URL, for its `/metrics` [default: from `ports.env` beside the kubeconfig,
    /// as the local control plane writes it; without one, no etcd figures].
    #[arg(long, env = "TASKRUN_BENCH_ETCD_URL")]
    etcd_url: Option<String>,
    /// Concurrencies tried for raw Docker in the throughput scenario; the best counts
    /// [default: 1,4,8,16; quick: 1,4].
    #[arg(long, env = "TASKRUN_BENCH_RAW_CONCURRENCY", value_delimiter = ',')]
    raw_concurrency: Option<Vec<usize>>,
    /// Where the JSON goes, the pictures beside it [default: target/bench/results.json; quick:
    /// results-quick.json].
    #[arg(long, env = "TASKRUN_BENCH_OUT")]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`. Without it (or `--quick`) the bench does nothing, since
    /// `cargo test --all-targets` runs bench targets too.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A part of the bench that can be chosen on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum Scenario {
    Latency,
    Throughput,
    Cost,
    Memory,
    CatchUp,
}

/// The sizes and choices of one run, defaults filled in.
#[derive(Clone, Debug, serde::Serialize)]
struct Params {
    quick: bool,
    /// `release` under `cargo bench`, `dev` under `--profile dev`: the controller's build.
    profile: &'static str,
    n: usize,
    m: usize,
    scenarios: Vec<Scenario>,
    objects: Vec<usize>,
    catch_up: usize,
    raw_concurrency: Vec<usize>,
    /// TaskRun creates and deletes the bench keeps in flight when it makes many at once.
    api_concurrency: usize,
    etcd_url: Option<String>,
    #[serde(skip)]
    out: PathBuf,
}

impl Params {
    fn from_args(args: Args) -> Result<Self> {
        let quick = args.quick;
        let pick = |value: Option<usize>, full: usize, small: usize| {
            value.unwrap_or(if quick { small } else { full })
        };
        let mut objects = args.objects.unwrap_or_else(|| {
            if quick {
                vec![20, 50]
            } else {
                vec![1_000, 10_000, 50_000]
            }
        });
        objects.sort_unstable();
        objects.dedup();
        let raw_concurrency = args
            .raw_concurrency
            .unwrap_or_else(|| if quick { vec![1, 4] } else { vec![1, 4, 8, 16] });
        let params = Self {
            quick,
            profile: if cfg!(debug_assertions) {
                "dev"
            } else {
                "release"
            },
            n: pick(args.n, 100, 3),
            m: pick(args.m, 200, 5),
            scenarios: args.scenarios,
            objects,
            catch_up: pick(args.catch_up, 10_000, 50),
            raw_concurrency,
            api_concurrency: 32,
            etcd_url: args.etcd_url,
            out: args.out.unwrap_or_else(|| {
                bench_dir().join(if quick {
                    "results-quick.json"
                } else {
                    "results.json"
                })
            }),
        };
        if params.n == 0 || params.m == 0 {
            return Err("N and M must be at least 1".into());
        }
        if params.raw_concurrency.contains(&0)
            || params.objects.contains(&0)
            || params.catch_up == 0
        {
            return Err("raw concurrencies and object counts must be at least 1".into());
        }
        Ok(params)
    }

    fn runs(&self, scenario: Scenario) -> bool {
        self.scenarios.contains(&scenario)
    }

    /// The counts of finished TaskRuns the memory and catch-up scenarios start an agent with,
    /// ascending: each is reached by adding to the one before.
    fn levels(&self) -> Vec<usize> {
        let mut levels = Vec::new();
        if self.runs(Scenario::Memory) {
            levels.extend(&self.objects);
        }
        if self.runs(Scenario::CatchUp) {
            levels.push(self.catch_up);
        }
        levels.sort_unstable();
        levels.dedup();
        levels
    }

    /// Where a picture goes: beside the JSON, `-quick` in its name for a quick run.
    fn picture(&self, name: &str) -> PathBuf {
        let file = if self.quick {
            format!("{name}-quick.svg")
        } else {
            format!("{name}.svg")
        };
        self.out.with_file_name(file)
    }
}

/// When the bench started, for [`say!`].
static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

fn elapsed() -> f64 {
    STARTED
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
}

/// `target/bench` (or under `CARGO_TARGET_DIR`): the JSON and the controllers' logs.
fn bench_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench")
}

#[tokio::main]
async fn main() -> ExitCode {
    elapsed();
    let args = Args::parse();
    if !args.bench && !args.quick {
        println!(
            "operator bench: nothing to do under `cargo test`; run `make bench` or `make bench-quick`"
        );
        return ExitCode::SUCCESS;
    }
    let params = match Params::from_args(args) {
        Ok(params) => params,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(params).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(params: Params) -> Result<()> {
    let bench = cluster::Bench::setup(&bench_dir()).await?;
    say!(
        "namespace {}, node {}, {} controller, scenarios {:?}",
        bench.namespace,
        bench.node,
        params.profile,
        params.scenarios
    );
    let mut terminate = signal(SignalKind::terminate())?;
    let figures = tokio::select! {
        figures = scenarios::run_all(&bench, &params) => figures,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
        _ = terminate.recv() => Err("terminated".into()),
    };
    if let Err(e) = bench.teardown().await {
        say!("cleaning up namespace {} failed: {e}", bench.namespace);
    }
    let results = report::Results {
        machine: bench.machine.clone(),
        params: params.clone(),
        figures: figures?,
    };
    println!("{}", report::table(&results));
    results.write_json(&params.out)?;
    let pictures = plots::draw(&results.figures, |name| params.picture(name))?;
    println!("{}", report::summary(&results, &params.out, &pictures));
    Ok(())
}
