//! The invariants, judged from the plan and the ledger alone once the stream has settled.
//! Pure: no client, no clock; the unit tests below feed it made-up ledgers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use taskrun_operator::api::{CleanupPolicy, Phase, Reason, TaskRun};

use super::plan::{Expect, FaultKind, Plan, RunPlan};
use super::record::{ContainerRecord, Ledger, RunRecord, phase_of};

/// The invariants the suite checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// Every TaskRun reaches a final phase within its bound.
    Final,
    /// A deleted TaskRun is gone within its bound.
    Gone,
    /// The phase, reason and exit code are what the run's script makes them.
    Outcome,
    /// The exit code in status is what the container returned.
    ExitCode,
    /// At most one container is ever created per TaskRun.
    OneContainer,
    /// `status.nodeName` names the node whose daemon ran the container.
    Placement,
    /// No container is left whose TaskRun is gone.
    Orphan,
    /// A finished run's container is stopped, and removed when its cleanup policy says so.
    Cleanup,
    /// No run waits Pending while a node it may run on is healthy and has room.
    Waiting,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::Final => "final-in-time",
            Invariant::Gone => "deleted-in-time",
            Invariant::Outcome => "outcome",
            Invariant::ExitCode => "exit-code",
            Invariant::OneContainer => "one-container",
            Invariant::Placement => "node-name",
            Invariant::Orphan => "no-orphan",
            Invariant::Cleanup => "cleanup",
            Invariant::Waiting => "not-stuck-pending",
        })
    }
}

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    pub invariant: Invariant,
    pub run: String,
    pub expected: String,
    pub seen: String,
}

/// How long runs may take beyond their own duration, counted in time free of faults.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// For any run: claim, create, start, record.
    pub base: Duration,
    /// After each fault is healed, how long the agents may take to recover: that time does
    /// not count either.
    pub recovery: Duration,
}

/// Counts for the report.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Final runs by `phase/reason`, and `gone` for deleted ones.
    pub outcomes: BTreeMap<String, usize>,
    /// Containers created, per node.
    pub containers: BTreeMap<&'static str, usize>,
    /// Exit codes in status checked against the daemon's, and those it no longer knew.
    pub exit_codes_checked: usize,
    pub exit_codes_unknown: usize,
}

/// Judges every invariant.
pub fn judge(
    plan: &Plan,
    ledger: &Ledger,
    bounds: Bounds,
    now: Timestamp,
) -> (Vec<Violation>, Tally) {
    let mut violations = Vec::new();
    let mut tally = Tally::default();
    for container in ledger.containers.values() {
        *tally.containers.entry(container.node).or_default() += 1;
    }
    for run in &plan.runs {
        let record = ledger.runs.get(&run.name).cloned().unwrap_or_default();
        let containers: Vec<(&str, &ContainerRecord)> = ledger
            .containers
            .iter()
            .filter(|(_, c)| record.uid.as_deref() == Some(c.uid.as_str()))
            .map(|(id, c)| (id.as_str(), c))
            .collect();
        let mut judged = Judged {
            run,
            record: &record,
            containers: &containers,
            ledger,
            now,
            violations: &mut violations,
        };
        judged.one_container();
        if run.expect == Expect::Gone {
            judged.deleted_in_time(bounds);
            if record.gone.is_some() {
                *tally.outcomes.entry("gone".into()).or_default() += 1;
            }
            continue;
        }
        if let Some(taskrun) = record.latest.as_ref().filter(|t| phase_of(t).is_final()) {
            let status = taskrun.status.clone().unwrap_or_default();
            let key = format!(
                "{:?}/{}",
                status.phase(),
                status.reason.map_or("-", |r| r.as_str())
            );
            *tally.outcomes.entry(key).or_default() += 1;
            judged.outcome(taskrun);
            judged.placement(taskrun);
            match judged.exit_code(taskrun) {
                Some(true) => tally.exit_codes_checked += 1,
                Some(false) => tally.exit_codes_unknown += 1,
                None => {}
            }
            judged.cleanup(taskrun);
        }
        judged.final_in_time(bounds);
        if let Some((since, why)) = &record.stuck {
            violations.push(Violation {
                invariant: Invariant::Waiting,
                run: run.name.clone(),
                expected: "claimed and started while a node it may run on has room".into(),
                seen: format!("from {}: {why}", clock(*since)),
            });
        }
    }
    orphans(plan, ledger, &mut violations);
    violations.sort();
    (violations, tally)
}

/// A run, what was seen of it, and where its violations go.
struct Judged<'a> {
    run: &'a RunPlan,
    record: &'a RunRecord,
    /// The containers created for it, by ID.
    containers: &'a [(&'a str, &'a ContainerRecord)],
    ledger: &'a Ledger,
    now: Timestamp,
    violations: &'a mut Vec<Violation>,
}

/// An outcome the suite accepts: a phase, one of some reasons, and an exit code rule.
struct Allowed {
    phase: Phase,
    reasons: &'static [Reason],
    exit: Option<Option<i64>>,
}

impl Allowed {
    fn new(phase: Phase, reasons: &'static [Reason], exit: Option<Option<i64>>) -> Self {
        Self {
            phase,
            reasons,
            exit,
        }
    }

    fn admits(&self, phase: Phase, reason: Option<Reason>, exit: Option<i64>) -> bool {
        self.phase == phase
            && reason.is_some_and(|r| self.reasons.contains(&r))
            && self.exit.is_none_or(|e| e == exit)
    }
}

impl fmt::Display for Allowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reasons: Vec<&str> = self.reasons.iter().map(|r| r.as_str()).collect();
        write!(f, "{:?}/{}", self.phase, reasons.join("|"))?;
        match self.exit {
            Some(Some(code)) => write!(f, " exit {code}"),
            Some(None) => write!(f, " no exit code"),
            None => Ok(()),
        }
    }
}

impl Judged<'_> {
    fn violation(&mut self, invariant: Invariant, expected: String, seen: String) {
        let run = if self.run.note.is_empty() {
            self.run.name.clone()
        } else {
            format!("{} ({})", self.run.name, self.run.note)
        };
        self.violations.push(Violation {
            invariant,
            run,
            expected,
            seen,
        });
    }

    fn bound(&self, from: Timestamp, own: Duration, bounds: Bounds) -> Timestamp {
        bound(self.ledger, from, own, bounds, self.now)
    }

    fn final_in_time(&mut self, bounds: Bounds) {
        if let Some(created) = self.record.created {
            let ended = self.record.ended;
            self.in_time(Invariant::Final, created, self.run.natural, ended, bounds);
        }
    }

    fn deleted_in_time(&mut self, bounds: Bounds) {
        if let Some((deleted, _)) = self.record.touched {
            let gone = self.record.gone;
            self.in_time(Invariant::Gone, deleted, Duration::ZERO, gone, bounds);
        }
    }

    /// Whether the run reached its end (`reached`), counted `from`, within its bound.
    fn in_time(
        &mut self,
        invariant: Invariant,
        from: Timestamp,
        own: Duration,
        reached: Option<Timestamp>,
        bounds: Bounds,
    ) {
        let bound = self.bound(from, own, bounds);
        let what = if invariant == Invariant::Gone {
            "gone"
        } else {
            "final"
        };
        let expected = format!(
            "{what} within {:.0} s",
            bound.duration_since(from).as_secs_f64()
        );
        let seen = match reached {
            Some(at) if at <= bound => return,
            Some(at) => format!(
                "{what} after {:.0} s",
                at.duration_since(from).as_secs_f64()
            ),
            None => {
                let seen = self
                    .record
                    .latest
                    .as_ref()
                    .map_or("never seen".into(), describe);
                format!("still {seen}")
            }
        };
        self.violation(invariant, expected, seen);
    }

    fn one_container(&mut self) {
        if self.containers.len() > 1 {
            let seen: Vec<String> = self
                .containers
                .iter()
                .map(|(id, c)| {
                    format!(
                        "{} on {}{}",
                        short(id),
                        c.node,
                        if c.started.is_some() {
                            " (started)"
                        } else {
                            ""
                        }
                    )
                })
                .collect();
            self.violation(
                Invariant::OneContainer,
                "one container".into(),
                format!("{} containers: {}", self.containers.len(), seen.join(", ")),
            );
        }
    }

    /// What the run may end as: its plan's outcome, and what a fault that struck it excuses.
    fn allowed(&self, taskrun: &TaskRun) -> Vec<Allowed> {
        let exit = |code: i64| {
            if code == 0 {
                Allowed::new(Phase::Succeeded, &[Reason::Completed], Some(Some(0)))
            } else {
                Allowed::new(Phase::Failed, &[Reason::Error], Some(Some(code)))
            }
        };
        let mut allowed = vec![match self.run.expect {
            Expect::Exit(code) => exit(code),
            Expect::Cancelled { otherwise } => match self.record.touched {
                Some((_, true)) | None => exit(otherwise),
                Some((_, false)) => Allowed::new(Phase::Cancelled, &[Reason::Cancelled], None),
            },
            Expect::Deadline => Allowed::new(Phase::Failed, &[Reason::DeadlineExceeded], None),
            Expect::ImageRejected => Allowed::new(
                Phase::Failed,
                &[
                    Reason::InvalidImage,
                    Reason::ImagePullFailed,
                    Reason::ImageNotPresent,
                    Reason::StartFailed,
                ],
                Some(None),
            ),
            Expect::StartFailed => Allowed::new(Phase::Failed, &[Reason::StartFailed], None),
            Expect::OomKilled => Allowed::new(Phase::Failed, &[Reason::OomKilled], Some(Some(137))),
            Expect::Gone => return Vec::new(),
        }];
        // The operator knows of an OOM kill only what the daemon knows: a SIGKILL the daemon
        // never reported as an OOM kill (no `oom` event) can only read as an error.
        if self.run.expect == Expect::OomKilled
            && self.containers.iter().all(|(_, c)| c.oom.is_none())
        {
            allowed.push(exit(137));
        }
        // A cancel that came after the container had exited on its own (its call held up by a
        // fault) races with the agent recording that exit: either end is right.
        if let (Expect::Cancelled { otherwise }, Some((cancelled, false))) =
            (self.run.expect, self.record.touched)
            && self
                .containers
                .iter()
                .any(|(_, c)| c.died.is_some_and(|d| d < cancelled))
        {
            allowed.push(exit(otherwise));
        }
        let node = taskrun.status.as_ref().and_then(|s| s.node_name.as_deref());
        let lived = self.lived();
        let struck = |kind: fn(FaultKind) -> bool, node: &str| {
            self.ledger.faults.iter().any(|f| {
                kind(f.plan.kind)
                    && f.strikes(node)
                    && f.injected < lived.1
                    && f.until(self.now) > lived.0
            })
        };
        if node.is_some_and(|n| struck(FaultKind::loses_agent, n)) {
            allowed.push(Allowed::new(Phase::Failed, &[Reason::NodeLost], Some(None)));
        }
        // A daemon restarted while the container ran kills it: the run ends as that exit. The
        // restart strikes from its injection until it healed, so a container that started in
        // that window (before the kill took effect) is struck as well.
        let killed_by_restart = self.containers.iter().any(|(_, c)| {
            self.ledger.faults.iter().any(|f| {
                f.plan.kind == FaultKind::RestartDockerd
                    && f.strikes(c.node)
                    && c.started.is_some_and(|s| s < f.until(self.now))
                    && c.died.is_none_or(|d| d >= f.injected)
            })
        });
        // A daemon restarted while it was starting the container can leave the runtime
        // holding the container's task: the operator ends the run rather than risk a second
        // start.
        let start_interrupted = self.containers.iter().any(|(_, c)| {
            c.started.is_none()
                && self.ledger.faults.iter().any(|f| {
                    f.plan.kind == FaultKind::RestartDockerd
                        && f.strikes(c.node)
                        && c.created.is_some_and(|created| created <= f.injected)
                        && lived.1 >= f.injected
                })
        });
        if start_interrupted {
            allowed.push(Allowed::new(
                Phase::Failed,
                &[Reason::StartFailed],
                Some(None),
            ));
        }
        if killed_by_restart {
            allowed.push(Allowed::new(
                Phase::Failed,
                &[Reason::Error, Reason::DeadlineExceeded],
                None,
            ));
        }
        allowed
    }

    /// From creation to the end (or now).
    fn lived(&self) -> (Timestamp, Timestamp) {
        let from = self.record.created.unwrap_or(Timestamp::UNIX_EPOCH);
        (from, self.record.ended.unwrap_or(self.now))
    }

    fn outcome(&mut self, taskrun: &TaskRun) {
        let status = taskrun.status.clone().unwrap_or_default();
        let allowed = self.allowed(taskrun);
        if !allowed
            .iter()
            .any(|a| a.admits(status.phase(), status.reason, status.exit_code))
        {
            let expected: Vec<String> = allowed.iter().map(ToString::to_string).collect();
            let history: Vec<String> = self
                .record
                .history
                .iter()
                .map(|(at, shown)| format!("{} {shown}", at.strftime("%H:%M:%S%.1f")))
                .collect();
            let seen = format!(
                "{} (created {}, touched {:?}; seen as: {})",
                describe(taskrun),
                self.record
                    .created
                    .map_or("-".into(), |t| t.strftime("%H:%M:%S%.1f").to_string()),
                self.record
                    .touched
                    .map(|(t, ended)| (t.strftime("%H:%M:%S%.1f").to_string(), ended)),
                history.join(", ")
            );
            self.violation(Invariant::Outcome, expected.join(" or "), seen);
        }
    }

    fn placement(&mut self, taskrun: &TaskRun) {
        let status = taskrun.status.clone().unwrap_or_default();
        for (_, container) in self.containers.iter().filter(|(_, c)| c.started.is_some()) {
            if status.node_name.as_deref() != Some(container.node) {
                let seen = format!(
                    "status.nodeName {:?}, container started on {}",
                    status.node_name, container.node
                );
                self.violation(
                    Invariant::Placement,
                    format!("status.nodeName {}", container.node),
                    seen,
                );
            }
        }
        if let Some(id) = &status.container_id
            && !self.ledger.containers.contains_key(id)
        {
            self.violation(
                Invariant::Placement,
                "status.containerId names a container of this run".into(),
                format!("no daemon created {}", short(id)),
            );
        }
    }

    /// Some(true) when the exit code was checked against the daemon's, Some(false) when the
    /// daemon's is unknown (the container was removed while its events were lost).
    fn exit_code(&mut self, taskrun: &TaskRun) -> Option<bool> {
        let status = taskrun.status.as_ref()?;
        let code = status.exit_code?;
        let container = match &status.container_id {
            Some(id) => self.ledger.containers.get(id),
            None => self
                .containers
                .iter()
                .map(|(_, c)| *c)
                .find(|c| c.started.is_some()),
        };
        match container.and_then(|c| c.exit_code) {
            Some(returned) if returned == code => Some(true),
            Some(returned) => {
                self.violation(
                    Invariant::ExitCode,
                    format!("exit code {returned}, as the container returned"),
                    format!("exitCode {code}"),
                );
                Some(true)
            }
            None => Some(false),
        }
    }

    fn cleanup(&mut self, taskrun: &TaskRun) {
        let phase = phase_of(taskrun);
        let removes = match taskrun.spec.cleanup {
            CleanupPolicy::Always => true,
            CleanupPolicy::OnSuccess => phase == Phase::Succeeded,
            CleanupPolicy::Never => false,
        };
        let policy = taskrun.spec.cleanup;
        for (_, container) in self.containers.iter().filter(|(_, c)| c.present) {
            if container.running {
                self.violation(
                    Invariant::Cleanup,
                    "the container of a finished run stopped".into(),
                    format!(
                        "still running on {} after the run ended {phase:?}",
                        container.node
                    ),
                );
            } else if removes {
                self.violation(
                    Invariant::Cleanup,
                    format!("container removed (cleanup {policy:?}, {phase:?})"),
                    format!("container kept on {}", container.node),
                );
            }
        }
    }
}

/// The latest moment a run that began at `from` may end: when it has had its own length plus
/// the base bound of time free of faults, a fault lasting from its injection until
/// `recovery` after it was healed (`now` for one still under way).
pub fn bound(
    ledger: &Ledger,
    from: Timestamp,
    own: Duration,
    bounds: Bounds,
    now: Timestamp,
) -> Timestamp {
    let mut disturbed: Vec<(Timestamp, Timestamp)> = ledger
        .faults
        .iter()
        .map(|f| (f.injected, after(f.until(now), bounds.recovery)))
        .filter(|(_, end)| *end > from)
        .collect();
    disturbed.sort();
    let mut needed = own + bounds.base;
    let mut at = from;
    for (start, end) in disturbed {
        if start > at {
            let free = start.duration_since(at).unsigned_abs();
            if free >= needed {
                break;
            }
            needed -= free;
        }
        at = at.max(end);
    }
    after(at, needed)
}

/// Containers left on a daemon whose TaskRun is gone (or never had this UID).
fn orphans(plan: &Plan, ledger: &Ledger, violations: &mut Vec<Violation>) {
    let live: BTreeSet<&str> = ledger
        .runs
        .values()
        .filter(|r| r.gone.is_none())
        .filter_map(|r| r.uid.as_deref())
        .collect();
    let planned: BTreeSet<&str> = plan.runs.iter().map(|r| r.name.as_str()).collect();
    for (id, container) in &ledger.containers {
        if container.present && !live.contains(container.uid.as_str()) {
            let run = if planned.contains(container.taskrun.as_str()) {
                container.taskrun.clone()
            } else {
                format!("(unknown {})", container.taskrun)
            };
            violations.push(Violation {
                invariant: Invariant::Orphan,
                run,
                expected: "no container once its TaskRun is gone and the sweep has run".into(),
                seen: format!(
                    "{} {} on {}",
                    if container.running {
                        "running"
                    } else {
                        "stopped"
                    },
                    short(id),
                    container.node
                ),
            });
        }
    }
}

/// A TaskRun's status in one line: phase/reason, exit code, node and the message.
pub fn describe(taskrun: &TaskRun) -> String {
    let Some(status) = &taskrun.status else {
        return "without status".into();
    };
    let mut text = format!(
        "{:?}/{}",
        status.phase(),
        status.reason.map_or("-", |r| r.as_str())
    );
    if let Some(code) = status.exit_code {
        text.push_str(&format!(" exit {code}"));
    }
    if let Some(node) = &status.node_name {
        text.push_str(&format!(" on {node}"));
    }
    if let Some(message) = status.message.as_deref().filter(|m| !m.is_empty()) {
        let message: String = message.chars().take(160).collect();
        text.push_str(&format!(": {message:?}"));
    }
    text
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn after(from: Timestamp, by: Duration) -> Timestamp {
    SignedDuration::try_from(by)
        .ok()
        .and_then(|by| from.checked_add(by).ok())
        .unwrap_or(Timestamp::MAX)
}

/// A time of day, to the tenth of a second, for the report.
pub fn clock(at: Timestamp) -> String {
    at.strftime("%H:%M:%S%.1f").to_string()
}

#[cfg(test)]
mod tests {
    use super::super::plan::{self, FaultPlan};
    use super::super::record::FaultRecord;
    use super::*;

    const BOUNDS: Bounds = Bounds {
        base: Duration::from_secs(30),
        recovery: Duration::from_secs(20),
    };

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    /// A plan of one run of `expect`, and a ledger where it was created at 0 s and ended at
    /// 2 s as `status` says, its one container having returned `returned`.
    fn scene(expect: Expect, status: serde_json::Value, returned: i64) -> (Plan, Ledger) {
        let mut plan = plan::plan(1, 1, 0);
        plan.runs[0].expect = expect;
        plan.runs[0].natural = Duration::ZERO;
        let name = plan.runs[0].name.clone();
        let mut taskrun = plan.runs[0].taskrun("ns");
        taskrun.metadata.uid = Some("u1".into());
        taskrun.status = Some(serde_json::from_value(status).unwrap());
        let mut ledger = Ledger::default();
        ledger.runs.insert(
            name.clone(),
            RunRecord {
                uid: Some("u1".into()),
                created: Some(at(0)),
                latest: Some(taskrun),
                ended: Some(at(2)),
                ..RunRecord::default()
            },
        );
        ledger.containers.insert(
            "c1".into(),
            ContainerRecord {
                node: "chaos-a",
                uid: "u1".into(),
                taskrun: name,
                created: Some(at(0)),
                started: Some(at(1)),
                died: Some(at(2)),
                exit_code: Some(returned),
                ..ContainerRecord::default()
            },
        );
        (plan, ledger)
    }

    fn invariants(plan: &Plan, ledger: &Ledger) -> Vec<Invariant> {
        judge(plan, ledger, BOUNDS, at(100))
            .0
            .into_iter()
            .map(|v| v.invariant)
            .collect()
    }

    fn failed(code: i64) -> serde_json::Value {
        serde_json::json!({"phase": "Failed", "reason": "Error", "exitCode": code,
            "nodeName": "chaos-a", "containerId": "c1"})
    }

    #[test]
    fn a_run_that_ended_as_its_script_says_breaks_nothing() {
        let (plan, ledger) = scene(Expect::Exit(3), failed(3), 3);
        assert_eq!(invariants(&plan, &ledger), []);
    }

    #[test]
    fn a_wrong_exit_code_breaks_the_outcome_and_the_exit_code() {
        let (plan, ledger) = scene(Expect::Exit(3), failed(4), 3);
        assert_eq!(
            invariants(&plan, &ledger),
            [Invariant::Outcome, Invariant::ExitCode]
        );
    }

    #[test]
    fn a_second_container_for_the_run_is_caught() {
        let (plan, mut ledger) = scene(Expect::Exit(3), failed(3), 3);
        let mut twin = ledger.containers["c1"].clone();
        twin.node = "chaos-b";
        ledger.containers.insert("c2".into(), twin);
        assert_eq!(
            invariants(&plan, &ledger),
            [Invariant::OneContainer, Invariant::Placement]
        );
    }

    #[test]
    fn a_run_still_pending_after_its_bound_is_not_final() {
        let (plan, mut ledger) = scene(Expect::Exit(0), serde_json::json!({"phase": "Pending"}), 0);
        let record = ledger.runs.values_mut().next().unwrap();
        record.ended = None;
        assert_eq!(invariants(&plan, &ledger), [Invariant::Final]);
    }

    #[test]
    fn node_lost_is_excused_only_when_the_node_lost_its_agent() {
        let lost = serde_json::json!({"phase": "Failed", "reason": "NodeLost",
            "nodeName": "chaos-a", "containerId": "c1"});
        let (plan, mut ledger) = scene(Expect::Exit(0), lost, 0);
        assert_eq!(invariants(&plan, &ledger), [Invariant::Outcome]);
        let fault = |kind, node| FaultRecord {
            plan: FaultPlan {
                kind,
                node,
                at: Duration::ZERO,
                hold: Duration::ZERO,
            },
            injected: at(1),
            healed: Some(at(5)),
        };
        ledger.faults.push(fault(FaultKind::RestartApiserver, None));
        assert_eq!(
            invariants(&plan, &ledger),
            [Invariant::Outcome],
            "the control plane restarting does not lose a node"
        );
        ledger
            .faults
            .push(fault(FaultKind::CutApi, Some("chaos-a")));
        assert_eq!(invariants(&plan, &ledger), []);
    }

    #[test]
    fn time_under_a_fault_and_its_recovery_does_not_count_against_a_run() {
        let mut ledger = Ledger::default();
        assert_eq!(
            bound(&ledger, at(0), Duration::ZERO, BOUNDS, at(100)),
            at(30)
        );
        ledger.faults.push(FaultRecord {
            plan: FaultPlan {
                kind: FaultKind::RestartEtcd,
                node: None,
                at: Duration::ZERO,
                hold: Duration::ZERO,
            },
            injected: at(10),
            healed: Some(at(15)),
        });
        // 10 s before the fault, then 20 s after its 20 s of recovery.
        assert_eq!(
            bound(&ledger, at(0), Duration::ZERO, BOUNDS, at(100)),
            at(55)
        );
        assert_eq!(
            bound(&ledger, at(40), Duration::ZERO, BOUNDS, at(100)),
            at(70),
            "a run that began after it is not held to it"
        );
    }

    #[test]
    fn a_container_left_after_its_taskrun_went_is_an_orphan() {
        let (plan, mut ledger) = scene(Expect::Exit(0), failed(0), 0);
        ledger.runs.values_mut().next().unwrap().gone = Some(at(3));
        ledger.containers.get_mut("c1").unwrap().present = true;
        assert!(invariants(&plan, &ledger).contains(&Invariant::Orphan));
    }
}
