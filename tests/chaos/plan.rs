//! The seeded plan of a chaos run: which TaskRuns arrive when, how each should end, and which
//! faults are injected when. Pure: the same seed and sizes give the same plan, so a failing run
//! is replayed from the seed it printed.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use taskrun_operator::api::{
    CleanupPolicy, ImagePullPolicy, ResourceLimits, ResourceRequirements, TaskRun, TaskRunSpec,
};
use taskrun_operator::controller::CLASS_LABEL;

/// The two nodes of the suite, one agent and one Docker daemon each.
pub const NODES: [&str; 2] = ["chaos-a", "chaos-b"];

/// What a run does, which decides how it should end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `exit K` at once.
    Exit,
    /// `sleep S; exit K`: in flight while faults happen.
    Sleep,
    /// Sleeps past `timeoutSeconds`.
    Deadline,
    /// `spec.cancel` is set a moment after creation.
    Cancel,
    /// The TaskRun is deleted a moment after creation.
    Delete,
    /// Prints bytes that are not clean text (controls, invalid UTF-8, NULs), then `exit K`.
    BadBytes,
    /// An image name the CRD schema accepts and Docker refuses, or cannot find.
    BadImage,
    /// A command that does not exist in the image.
    MissingExecutable,
    /// Allocates past its memory limit.
    OutOfMemory,
}

impl Kind {
    /// Every kind with its share of the runs, in percent.
    const WEIGHTS: [(Kind, u32); 9] = [
        (Kind::Exit, 18),
        (Kind::Sleep, 24),
        (Kind::Deadline, 7),
        (Kind::Cancel, 10),
        (Kind::Delete, 8),
        (Kind::BadBytes, 15),
        (Kind::BadImage, 10),
        (Kind::MissingExecutable, 4),
        (Kind::OutOfMemory, 4),
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Exit => "exit",
            Kind::Sleep => "sleep",
            Kind::Deadline => "deadline",
            Kind::Cancel => "cancel",
            Kind::Delete => "delete",
            Kind::BadBytes => "bad-bytes",
            Kind::BadImage => "bad-image",
            Kind::MissingExecutable => "no-exec",
            Kind::OutOfMemory => "oom",
        }
    }
}

/// How a run should end when no fault gets in its way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// `Succeeded`/`Completed` with exit code 0, or `Failed`/`Error` with this exit code.
    Exit(i64),
    /// `Failed`/`DeadlineExceeded`.
    Deadline,
    /// `Cancelled`/`Cancelled`; as `Exit(code)` if the run had ended before the cancel.
    Cancelled { otherwise: i64 },
    /// The TaskRun is gone, and so is its container.
    Gone,
    /// `Failed`, no exit code, with a reason that blames the image.
    ImageRejected,
    /// `Failed`/`StartFailed`.
    StartFailed,
    /// `Failed`/`OOMKilled` with exit code 137.
    OomKilled,
}

/// One TaskRun of the stream.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub name: String,
    pub kind: Kind,
    /// When it is created, from the start of the stream.
    pub at: Duration,
    /// `spec.nodeName`, or any node.
    pub node: Option<&'static str>,
    pub spec: TaskRunSpec,
    pub expect: Expect,
    /// When the cancel or the delete comes, after the creation.
    pub touch_after: Option<Duration>,
    /// How long it takes from creation to its end when nothing goes wrong and a node has room.
    pub natural: Duration,
    /// What is odd about it (the bytes it prints, the image it names), for the report.
    pub note: &'static str,
}

impl RunPlan {
    /// The TaskRun to create in `namespace`, in the class of the suite's agents.
    pub fn taskrun(&self, namespace: &str) -> TaskRun {
        let mut taskrun = TaskRun::new(&self.name, self.spec.clone());
        taskrun.metadata.namespace = Some(namespace.to_string());
        taskrun.metadata.labels = Some(
            [(CLASS_LABEL.to_string(), namespace.to_string())]
                .into_iter()
                .collect(),
        );
        taskrun
    }
}

/// The kinds of fault the suite injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL an agent; start it again after `hold`.
    KillAgent,
    /// Cut an agent off from the API server for `hold`.
    CutApi,
    /// Make an agent's Docker socket refuse connections for `hold`.
    PauseDocker,
    /// SIGKILL a node's dockerd; start it again after `hold`.
    RestartDockerd,
    /// SIGKILL kube-apiserver; start it again after `hold`.
    RestartApiserver,
    /// SIGKILL etcd; start it again after `hold`.
    RestartEtcd,
}

impl FaultKind {
    const ALL: [FaultKind; 6] = [
        FaultKind::KillAgent,
        FaultKind::CutApi,
        FaultKind::PauseDocker,
        FaultKind::RestartDockerd,
        FaultKind::RestartApiserver,
        FaultKind::RestartEtcd,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FaultKind::KillAgent => "kill-agent",
            FaultKind::CutApi => "cut-api",
            FaultKind::PauseDocker => "pause-docker",
            FaultKind::RestartDockerd => "restart-dockerd",
            FaultKind::RestartApiserver => "restart-apiserver",
            FaultKind::RestartEtcd => "restart-etcd",
        }
    }

    /// Whether the fault takes one node's agent away from the API server, which is what lets
    /// its peer declare the node lost.
    pub fn loses_agent(self) -> bool {
        matches!(self, FaultKind::KillAgent | FaultKind::CutApi)
    }

    /// Whether it strikes one node (else the whole control plane).
    fn per_node(self) -> bool {
        !matches!(self, FaultKind::RestartApiserver | FaultKind::RestartEtcd)
    }

    /// The range of how long the fault lasts before it is healed, in milliseconds.
    fn hold_millis(self) -> std::ops::RangeInclusive<u64> {
        match self {
            FaultKind::KillAgent => 500..=8_000,
            FaultKind::CutApi | FaultKind::PauseDocker => 1_000..=10_000,
            FaultKind::RestartDockerd | FaultKind::RestartApiserver => 0..=3_000,
            FaultKind::RestartEtcd => 0..=4_000,
        }
    }
}

/// One fault of the schedule.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    pub kind: FaultKind,
    /// The node it strikes; `None` for the control plane.
    pub node: Option<&'static str>,
    /// When it is injected, from the start of the stream (later if the one before is still
    /// being healed).
    pub at: Duration,
    /// How long it lasts before it is healed.
    pub hold: Duration,
}

/// The whole run: the stream of TaskRuns and the faults.
#[derive(Clone, Debug)]
pub struct Plan {
    pub seed: u64,
    pub runs: Vec<RunPlan>,
    pub faults: Vec<FaultPlan>,
    /// From the start of the stream to the last creation.
    pub window: Duration,
}

/// Makes the plan of `runs` TaskRuns and `faults` faults from `seed`.
pub fn plan(seed: u64, runs: usize, faults: usize) -> Plan {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut at = Duration::ZERO;
    let mut planned = Vec::with_capacity(runs);
    for index in 0..runs {
        at += Duration::from_millis(rng.random_range(200..=1_800));
        planned.push(run(&mut rng, index, at));
    }
    let window = at;

    // Faults one after another over the stream, each kind once per round of six, so even a
    // short run meets every kind.
    let mut schedule = Vec::with_capacity(faults);
    let slot = window / u32::try_from(faults.max(1)).unwrap_or(u32::MAX);
    let mut round = Vec::new();
    for index in 0..faults {
        if round.is_empty() {
            round = FaultKind::ALL.to_vec();
            shuffle(&mut rng, &mut round);
        }
        let kind = round.pop().expect("a round has a fault left");
        let jitter = slot.mul_f64(rng.random_range(0.0..0.5));
        schedule.push(FaultPlan {
            kind,
            node: kind.per_node().then(|| pick(&mut rng, &NODES)),
            at: slot * u32::try_from(index).unwrap_or(u32::MAX) + jitter,
            hold: Duration::from_millis(rng.random_range(kind.hold_millis())),
        });
    }
    Plan {
        seed,
        runs: planned,
        faults: schedule,
        window,
    }
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.random_range(0..=i));
    }
}

/// Exit codes a script ends with: mostly success, some common failures.
const EXIT_CODES: [i64; 8] = [0, 0, 0, 0, 1, 2, 3, 42];

/// Output that is not clean text, as real tools print it: `printf` formats for busybox sh.
const BAD_BYTES: [(&str, &str); 7] = [
    (
        "DEL, a C1 control and a noncharacter",
        r"printf '\177\302\205 \357\277\276'",
    ),
    ("NUL bytes", r"printf 'a\000b\000c\n'"),
    ("invalid UTF-8", r"printf '\377\376\375 not utf-8\n'"),
    (
        "terminal escapes",
        r"printf '\033[31mred\033[0m\r\n\a\033]0;title\007'",
    ),
    (
        "an encoded surrogate and an overlong slash on stderr",
        r"printf '\355\240\200 \300\257\n' >&2",
    ),
    (
        "4.5 KiB of three-byte characters, so the 4 KiB tail starts inside one",
        r"i=0; while [ $i -lt 1500 ]; do printf '\342\202\254'; i=$((i+1)); done",
    ),
    (
        "a lone continuation byte after a long line",
        r"head -c 3000 /dev/zero | tr '\000' x; printf '\n\200\n'",
    ),
];

/// Image names the CRD schema accepts: too long, not lowercase, a malformed digest or tag, a
/// registry that refuses connections (on the node's own loopback), and one that is not there
/// with `imagePullPolicy: Never`.
/// Image names the schema accepts (malformed ones it refuses at admission) but the daemon
/// cannot use.
fn bad_image(rng: &mut ChaCha8Rng) -> (&'static str, String, ImagePullPolicy) {
    match rng.random_range(0..5) {
        0 => (
            "a repository name over 255 characters",
            format!("team/{}", "a".repeat(300)),
            ImagePullPolicy::IfNotPresent,
        ),
        1 => (
            "a repository name over 255 characters, always pulled",
            format!("team/{}", "b".repeat(300)),
            ImagePullPolicy::Always,
        ),
        2 => (
            "a registry on loopback that refuses connections",
            "127.0.0.1:1/nothing/here:v1".into(),
            ImagePullPolicy::IfNotPresent,
        ),
        3 => (
            "a registry on loopback with a name over 255 characters",
            format!("127.0.0.1:1/{}", "c".repeat(280)),
            ImagePullPolicy::Never,
        ),
        _ => (
            "an image the node lacks, never pulled",
            "not-here:v1".into(),
            ImagePullPolicy::Never,
        ),
    }
}

fn shell(script: impl Into<String>) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn seconds(millis: u64) -> String {
    format!("{}.{:03}", millis / 1000, millis % 1000)
}

fn run(rng: &mut ChaCha8Rng, index: usize, at: Duration) -> RunPlan {
    let total: u32 = Kind::WEIGHTS.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0..total);
    let kind = Kind::WEIGHTS
        .iter()
        .find(|(_, weight)| {
            let hit = roll < *weight;
            roll = roll.saturating_sub(*weight);
            hit
        })
        .map_or(Kind::Exit, |(kind, _)| *kind);
    let node = pick(rng, &[Some(NODES[0]), Some(NODES[1]), None]);
    let code = pick(rng, &EXIT_CODES);
    let mut spec = TaskRunSpec::for_image("busybox");
    spec.node_name = node.map(str::to_string);
    spec.cleanup = pick(
        rng,
        &[
            CleanupPolicy::Never,
            CleanupPolicy::Never,
            CleanupPolicy::Never,
            CleanupPolicy::Always,
            CleanupPolicy::OnSuccess,
        ],
    );
    spec.termination_grace_period_seconds = Some(1);
    let mut touch_after = None;
    let mut note = "";
    let (expect, natural) = match kind {
        Kind::Exit => {
            spec.command = shell(format!("exit {code}"));
            (Expect::Exit(code), Duration::ZERO)
        }
        Kind::Sleep => {
            let millis = rng.random_range(300..=5_000);
            spec.command = shell(format!("sleep {}; exit {code}", seconds(millis)));
            (Expect::Exit(code), Duration::from_millis(millis))
        }
        Kind::Deadline => {
            let timeout = rng.random_range(1..=3);
            spec.timeout_seconds = Some(timeout);
            spec.command = shell(format!("sleep {}", timeout + 30));
            (
                Expect::Deadline,
                Duration::from_secs(timeout.unsigned_abs() + 1),
            )
        }
        Kind::Cancel => {
            let millis = rng.random_range(8_000..=20_000);
            let after = Duration::from_millis(rng.random_range(0..=5_000));
            spec.command = shell(format!("sleep {}; exit {code}", seconds(millis)));
            touch_after = Some(after);
            (
                Expect::Cancelled { otherwise: code },
                after + Duration::from_secs(1),
            )
        }
        Kind::Delete => {
            let millis = rng.random_range(1_000..=15_000);
            let after = Duration::from_millis(rng.random_range(0..=5_000));
            spec.command = shell(format!("sleep {}; exit {code}", seconds(millis)));
            touch_after = Some(after);
            (Expect::Gone, after + Duration::from_secs(1))
        }
        Kind::BadBytes => {
            let (what, script) = pick(rng, &BAD_BYTES);
            note = what;
            spec.command = shell(format!("{script}; exit {code}"));
            (Expect::Exit(code), Duration::ZERO)
        }
        Kind::BadImage => {
            let (what, image, policy) = bad_image(rng);
            note = what;
            spec.image = image;
            spec.image_pull_policy = policy;
            spec.command = shell("exit 0");
            (Expect::ImageRejected, Duration::ZERO)
        }
        Kind::MissingExecutable => {
            spec.command = vec!["/no/such/tool".into()];
            (Expect::StartFailed, Duration::ZERO)
        }
        Kind::OutOfMemory => {
            spec.resources = Some(Box::new(ResourceRequirements {
                limits: Some(ResourceLimits {
                    cpu: None,
                    memory: Some(Quantity("16Mi".into())),
                }),
            }));
            spec.command = shell("dd if=/dev/zero of=/dev/null bs=128M count=1");
            // The agent gives the daemon 5 s to report an OOM kill.
            (Expect::OomKilled, Duration::from_secs(6))
        }
    };
    RunPlan {
        name: format!("r{index:04}-{}", kind.label()),
        kind,
        at,
        node,
        spec,
        expect,
        touch_after,
        natural,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_plan() {
        let (a, b) = (plan(7, 80, 8), plan(7, 80, 8));
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_ne!(format!("{a:?}"), format!("{:?}", plan(8, 80, 8)));
    }

    #[test]
    fn every_fault_kind_comes_once_per_round() {
        let plan = plan(1, 60, 6);
        let mut kinds: Vec<FaultKind> = plan.faults.iter().map(|f| f.kind).collect();
        kinds.sort();
        assert_eq!(kinds, FaultKind::ALL);
        assert!(plan.faults.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(plan.faults.iter().all(|f| f.at < plan.window));
    }

    #[test]
    fn runs_are_valid_taskruns_with_unique_names() {
        let plan = plan(3, 300, 0);
        let mut names: Vec<&str> = plan.runs.iter().map(|r| r.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 300);
        for run in &plan.runs {
            assert!(run.name.len() <= 63, "{}", run.name);
            assert!(run.spec.image.len() <= 512, "{}", run.name);
            let yaml = serde_yaml::to_string(&run.taskrun("ns")).unwrap();
            let back: TaskRun = serde_yaml::from_str(&yaml).unwrap();
            assert_eq!(back.spec, run.spec);
        }
        let kinds: std::collections::HashSet<Kind> = plan.runs.iter().map(|r| r.kind).collect();
        assert_eq!(kinds.len(), Kind::WEIGHTS.len(), "300 runs meet every kind");
    }
}
