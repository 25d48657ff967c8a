//! The decide step of a run: [`decide`] turns what was observed ([`Observed`]: the TaskRun, its
//! containers and the time) into the one next [`Action`], with no client and no clock inside.
//! Beside it are the other decisions of the same kind: what a deletion needs
//! ([`decide_deletion`]), a run no agent has claimed ([`decide_unclaimed`]), when a TaskRun is
//! deleted ([`decide_pruning`]) and whether another attempt follows ([`after_attempt`]). Carrying
//! an action out is the executor's work.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::api::{AttemptRecord, CleanupPolicy, Phase, Reason, TaskRunSpec, TaskRunStatus};
use crate::docker::{ContainerState, ObservedContainer};

/// How long after a SIGKILL exit the daemon may still report that it was an OOM kill.
const OOM_REPORT_DELAY: SignedDuration = SignedDuration::from_secs(15);

/// Everything [`decide`] looks at: the TaskRun, its container as Docker reports it, and the
/// time. Nothing else goes into a decision.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    pub uid: &'a str,
    /// The node of the agent deciding.
    pub node: &'a str,
    pub spec: &'a TaskRunSpec,
    pub status: &'a TaskRunStatus,
    /// When the TaskRun was created: `activeDeadlineSeconds` and the first attempt's
    /// `pendingTimeoutSeconds` count from here.
    pub created: Timestamp,
    /// The container of the run's current attempt, if one exists.
    pub container: Option<&'a ObservedContainer>,
    /// The container of the attempt before the current one, if one exists on this node.
    pub previous: Option<&'a ObservedContainer>,
    pub now: Timestamp,
}

/// The one next step of a run.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Pull the image as the pull policy says, then create and start the container.
    Launch,
    /// Start the container an earlier attempt created but did not get to start.
    Start { container_id: String },
    /// Record that the container runs; look again at `deadline`, if any.
    RecordRunning {
        container_id: String,
        started_at: Timestamp,
        deadline: Option<Timestamp>,
    },
    /// Stop the running container: SIGTERM, then SIGKILL after `grace`.
    Stop { cause: StopCause, grace: Duration },
    /// Save the container's log tail and record how the run ended.
    RecordExit {
        ending: Ending,
        container_id: String,
    },
    /// Record an end that no container exit tells (cancelled before start, container lost).
    RecordEnd(Ending),
    /// Remove the finished containers of every attempt of the run.
    Remove,
    /// Remove the finished container of the previous attempt, which `cleanup: Always` removes
    /// as soon as its attempt was recorded.
    RemovePrevious,
    /// Stop the previous attempt's container, still running though its attempt was recorded
    /// as ended, before the next attempt starts.
    StopPrevious { grace: Duration },
    /// Nothing to do until `until`, or until the TaskRun or its container changes.
    Wait { until: Option<Timestamp> },
}

/// Why a running container is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCause {
    DeadlineExceeded,
    /// The TaskRun outlived `activeDeadlineSeconds`.
    ActiveDeadlineExceeded,
    Cancelled,
    /// The run was already recorded as ended, yet its container still runs.
    AlreadyEnded,
}

/// How a run ended: the final fields of its status.
#[derive(Clone, Debug, PartialEq)]
pub struct Ending {
    pub phase: Phase,
    pub reason: Reason,
    pub message: String,
    pub exit_code: Option<i64>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
    /// Whether another attempt may follow, as `spec.retries` allows: false for input errors
    /// and for ends that must not be run again.
    pub retryable: bool,
}

/// Decides the next step of a run from what was observed. Pure: no client, no clock.
///
/// The container is the source of truth while it exists; the status is the memory of what
/// happened once it may be gone. A final phase never changes.
pub fn decide(observed: Observed<'_>) -> Action {
    let Observed {
        uid,
        spec,
        status,
        created,
        container,
        previous,
        now,
        ..
    } = observed;
    let ours = |c: &&ObservedContainer| c.owner.as_ref().is_some_and(|owner| owner.uid == uid);
    let previous = previous.filter(ours);
    let container = match container {
        Some(c) if ours(&c) => Some(c),
        Some(c) if !status.phase().is_final() => {
            return Action::RecordEnd(Ending {
                phase: Phase::Failed,
                reason: Reason::StartFailed,
                message: format!(
                    "a container named {} exists that was not created for this TaskRun",
                    c.name
                ),
                exit_code: None,
                started_at: None,
                finished_at: now,
                retryable: false,
            });
        }
        _ => None,
    };
    if status.phase().is_final() {
        return decide_ended(spec, status, container, previous, now);
    }
    let Some(container) = container else {
        return decide_without_container(observed, previous);
    };
    let active = active_deadline(spec, created);
    let active_due = active.is_some_and(|d| d <= now);
    let pending_due = pending_deadline(spec, status, created).is_some_and(|d| d <= now);
    match &container.state {
        ContainerState::Created { error: Some(error) } => Action::RecordEnd(Ending {
            phase: Phase::Failed,
            reason: Reason::StartFailed,
            message: start_failure(error),
            exit_code: None,
            started_at: None,
            finished_at: now,
            retryable: start_may_be_retried(error),
        }),
        ContainerState::Created { error: None } if spec.cancel => cancelled_before_start(observed),
        ContainerState::Created { error: None } if active_due || pending_due => {
            match deadline_passed(spec, status, created, now) {
                Some(ending) => Action::RecordEnd(ending),
                None => Action::Start {
                    container_id: container.id.clone(),
                },
            }
        }
        ContainerState::Created { error: None } => Action::Start {
            container_id: container.id.clone(),
        },
        ContainerState::Running { started_at } => {
            decide_running(observed, &container.id, *started_at, active)
        }
        ContainerState::Exited {
            exit_code,
            oom_killed,
            started_at,
            finished_at,
            error,
        } => decide_exited(
            observed,
            container,
            Exit {
                exit_code: *exit_code,
                oom_killed: *oom_killed,
                started_at: *started_at,
                finished_at: *finished_at,
                error: error.as_ref(),
            },
            active,
        ),
    }
}

/// The step of a run that has ended: stop what still runs of it, then remove its container
/// when its cleanup policy says.
fn decide_ended(
    spec: &TaskRunSpec,
    status: &TaskRunStatus,
    container: Option<&ObservedContainer>,
    previous: Option<&ObservedContainer>,
    now: Timestamp,
) -> Action {
    let running = |c: &ObservedContainer| matches!(c.state, ContainerState::Running { .. });
    match (container, previous) {
        (None, None) => Action::Wait { until: None },
        (Some(c), _) if running(c) => Action::Stop {
            cause: StopCause::AlreadyEnded,
            grace: grace_period(spec),
        },
        (None, Some(p)) if running(p) => Action::StopPrevious {
            grace: grace_period(spec),
        },
        _ => match removal_time(spec, status) {
            Some(at) if at <= now => Action::Remove,
            until => Action::Wait { until },
        },
    }
}

/// The step of a run under way whose current attempt has no container on this node.
fn decide_without_container(
    observed: Observed<'_>,
    previous: Option<&ObservedContainer>,
) -> Action {
    let Observed {
        uid,
        node,
        spec,
        status,
        created,
        now,
        ..
    } = observed;
    let active = active_deadline(spec, created);
    let pending = pending_deadline(spec, status, created);
    let started_on = status
        .node_name
        .as_deref()
        .filter(|_| status.container_id.is_some());
    if let Some(other) = started_on.filter(|other| *other != node) {
        // Only the node that has the container can tell that it is gone.
        Action::RecordEnd(ended_without_exit(
            spec,
            status,
            Reason::NodeLost,
            &format!("the container was started on node {other}, not on this node {node}"),
            now,
        ))
    } else if status.container_id.is_some() {
        Action::RecordEnd(ended_without_exit(
            spec,
            status,
            Reason::ContainerLost,
            "the container was removed from the node outside the operator",
            now,
        ))
    } else if spec.cancel {
        cancelled_before_start(observed)
    } else if let Some(ending) = deadline_passed(spec, status, created, now) {
        Action::RecordEnd(ending)
    } else if previous.is_some_and(|c| matches!(c.state, ContainerState::Running { .. })) {
        Action::StopPrevious {
            grace: grace_period(spec),
        }
    } else if previous.is_some() && spec.cleanup == CleanupPolicy::Always {
        Action::RemovePrevious
    } else {
        match next_attempt_at(uid, spec, status) {
            Some(at) if at > now => Action::Wait {
                until: earliest([Some(at), pending, active]),
            },
            _ => Action::Launch,
        }
    }
}

/// The step of a run whose container runs: stop it at a cancel or a deadline, else record
/// that it runs.
fn decide_running(
    observed: Observed<'_>,
    container_id: &str,
    started_at: Timestamp,
    active: Option<Timestamp>,
) -> Action {
    let Observed {
        spec, status, now, ..
    } = observed;
    let timeout = deadline(spec, started_at);
    let deadline = earliest([timeout, active]);
    if spec.cancel {
        Action::Stop {
            cause: StopCause::Cancelled,
            grace: grace_period(spec),
        }
    } else if active.is_some_and(|d| d <= now) {
        Action::Stop {
            cause: StopCause::ActiveDeadlineExceeded,
            grace: grace_period(spec),
        }
    } else if timeout.is_some_and(|d| d <= now) {
        Action::Stop {
            cause: StopCause::DeadlineExceeded,
            grace: grace_period(spec),
        }
    } else if status.phase() != Phase::Running
        || status.reason != Some(Reason::Running)
        || status.container_id.as_deref() != Some(container_id)
    {
        Action::RecordRunning {
            container_id: container_id.to_string(),
            started_at,
            deadline,
        }
    } else {
        Action::Wait { until: deadline }
    }
}

/// What the daemon reports of a container that exited.
#[derive(Clone, Copy, Debug)]
struct Exit<'a> {
    exit_code: i64,
    oom_killed: bool,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    error: Option<&'a String>,
}

/// The end of an attempt whose container exited, with the reason its exit gives.
fn decide_exited(
    observed: Observed<'_>,
    container: &ObservedContainer,
    exit: Exit<'_>,
    active: Option<Timestamp>,
) -> Action {
    let Observed { spec, now, .. } = observed;
    let Exit {
        exit_code,
        oom_killed,
        started_at,
        finished_at,
        error,
    } = exit;
    let finished_at = finished_at.unwrap_or(now);
    let oom_settled = finished_at
        .checked_add(OOM_REPORT_DELAY)
        .unwrap_or(finished_at);
    let memory_limited = spec.limits().is_some_and(|l| l.memory.is_some());
    let ending = |phase, reason, message: String| Ending {
        phase,
        reason,
        message,
        exit_code: Some(exit_code),
        started_at,
        finished_at,
        retryable: true,
    };
    let ending = match (started_at, error) {
        (None, Some(error)) => Ending {
            exit_code: None,
            retryable: start_may_be_retried(error),
            ..ending(Phase::Failed, Reason::StartFailed, error.clone())
        },
        _ if spec.cancel => ending(
            Phase::Cancelled,
            Reason::Cancelled,
            "stopped on request".into(),
        ),
        _ if active.is_some_and(|d| d <= finished_at) => ending(
            Phase::Failed,
            Reason::ActiveDeadlineExceeded,
            active_deadline_message(spec),
        ),
        (Some(started), _) if deadline(spec, started).is_some_and(|d| d <= finished_at) => ending(
            Phase::Failed,
            Reason::DeadlineExceeded,
            format!(
                "ran longer than timeoutSeconds ({} s) and was stopped",
                spec.timeout_seconds.unwrap_or_default()
            ),
        ),
        _ if oom_killed => ending(
            Phase::Failed,
            Reason::OomKilled,
            "killed for exceeding its memory limit".into(),
        ),
        _ if exit_code == 0 => ending(
            Phase::Succeeded,
            Reason::Completed,
            "exited with code 0".into(),
        ),
        // The daemon may report an OOM kill a while after the exit itself: a SIGKILL under a
        // memory limit that nothing else explains is recorded once that while has passed.
        _ if exit_code == 137 && memory_limited && now < oom_settled => {
            return Action::Wait {
                until: Some(oom_settled),
            };
        }
        _ => ending(Phase::Failed, Reason::Error, exit_message(exit_code)),
    };
    Action::RecordExit {
        ending,
        container_id: container.id.clone(),
    }
}

/// The end of a run cancelled before its container started.
fn cancelled_before_start(observed: Observed<'_>) -> Action {
    let message = "cancelled before it started";
    let Observed {
        spec, status, now, ..
    } = observed;
    Action::RecordEnd(ended_without_exit(
        spec,
        status,
        Reason::Cancelled,
        message,
        now,
    ))
}

/// The end of a run no agent holds (or whose attempt has not started), when one of its
/// deadlines has passed: `activeDeadlineSeconds` first, then `pendingTimeoutSeconds`.
pub fn deadline_passed(
    spec: &TaskRunSpec,
    status: &TaskRunStatus,
    created: Timestamp,
    now: Timestamp,
) -> Option<Ending> {
    let end = |reason, message: String| Ending {
        phase: Phase::Failed,
        reason,
        message,
        exit_code: None,
        started_at: None,
        finished_at: now,
        retryable: false,
    };
    if active_deadline(spec, created).is_some_and(|d| d <= now) {
        return Some(end(
            Reason::ActiveDeadlineExceeded,
            active_deadline_message(spec),
        ));
    }
    if pending_deadline(spec, status, created).is_some_and(|d| d <= now) {
        let since = if status.attempt() > 1 {
            format!("the end of attempt {}", status.attempt() - 1)
        } else {
            "its creation".to_string()
        };
        return Some(end(
            Reason::PendingTimeout,
            format!(
                "attempt {} did not start within pendingTimeoutSeconds ({} s) of {since}",
                status.attempt(),
                spec.pending_timeout_seconds.unwrap_or_default()
            ),
        ));
    }
    None
}

/// What a run nobody has claimed yet needs: its end when a deadline passed, else a wait until
/// the next deadline (`None` when it has none). Any agent may record the end.
pub fn decide_unclaimed(
    spec: &TaskRunSpec,
    status: &TaskRunStatus,
    created: Timestamp,
    now: Timestamp,
) -> Action {
    if status.phase().is_final() {
        return Action::Wait { until: None };
    }
    match deadline_passed(spec, status, created, now) {
        Some(ending) => Action::RecordEnd(ending),
        None => Action::Wait {
            until: earliest([
                active_deadline(spec, created),
                pending_deadline(spec, status, created),
            ]),
        },
    }
}

/// When the TaskRun as a whole must have ended, by `activeDeadlineSeconds`.
pub fn active_deadline(spec: &TaskRunSpec, created: Timestamp) -> Option<Timestamp> {
    let seconds = spec.active_deadline_seconds?;
    created.checked_add(SignedDuration::from_secs(seconds)).ok()
}

/// When the current attempt's container must have started, by `pendingTimeoutSeconds`:
/// counted from the end of the previous attempt, or from creation for the first. `None` once
/// the attempt's container has started.
pub fn pending_deadline(
    spec: &TaskRunSpec,
    status: &TaskRunStatus,
    created: Timestamp,
) -> Option<Timestamp> {
    let seconds = spec.pending_timeout_seconds?;
    if status.start_time.is_some() || status.container_id.is_some() {
        return None;
    }
    let since = match previous_attempt(status) {
        Some(record) => record.completion_time.0,
        None => created,
    };
    since.checked_add(SignedDuration::from_secs(seconds)).ok()
}

/// The record of the attempt before the current one, when there is one.
fn previous_attempt(status: &TaskRunStatus) -> Option<&AttemptRecord> {
    let attempt = status.attempt();
    status
        .previous_attempts
        .last()
        .filter(|r| attempt > 1 && r.attempt == i32::try_from(attempt - 1).unwrap_or(i32::MAX))
}

/// When the current attempt may start: the previous attempt's end plus its back-off. `None`
/// for a first attempt. Every agent and every restart computes the same time.
pub fn next_attempt_at(uid: &str, spec: &TaskRunSpec, status: &TaskRunStatus) -> Option<Timestamp> {
    let record = previous_attempt(status)?;
    Some(retry_time(
        uid,
        spec,
        status.attempt() - 1,
        record.completion_time.0,
    ))
}

/// The start of the attempt after `failed`, which ended at `ended`: `backoff.seconds` doubled
/// for each earlier retry, capped at `maxSeconds`, plus up to a tenth more of jitter drawn from
/// the UID, counted from the end of the second the attempt ended in (status keeps whole
/// seconds, so this is the same whether read from memory or from the API server).
fn retry_time(uid: &str, spec: &TaskRunSpec, failed: u32, ended: Timestamp) -> Timestamp {
    let backoff = spec
        .retries
        .as_ref()
        .and_then(|r| r.backoff.clone())
        .unwrap_or_default();
    let first = backoff.seconds.max(1);
    let cap = backoff.max_seconds.max(first);
    let doublings = failed.saturating_sub(1).min(32);
    let seconds = first.saturating_mul(1i64 << doublings).min(cap);
    let millis = seconds.saturating_mul(1000);
    let jitter =
        i64::try_from(stable_hash(uid, failed) % u64::try_from(millis / 10 + 1).unwrap_or(1))
            .unwrap_or(0);
    let base = Timestamp::from_second(ended.as_second().saturating_add(1)).unwrap_or(ended);
    base.checked_add(SignedDuration::from_millis(millis.saturating_add(jitter)))
        .unwrap_or(base)
}

/// FNV-1a of the UID and the attempt: the same on every agent and every build, which the
/// standard library's hasher does not promise.
fn stable_hash(uid: &str, attempt: u32) -> u64 {
    uid.bytes()
        .chain(attempt.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// When an attempt that ended so starts the next one, if another may follow: the ending is
/// retryable, `spec.retries` lists it, attempts remain, and the next would start before
/// `activeDeadlineSeconds`. `None` makes the ending final.
pub fn after_attempt(
    uid: &str,
    spec: &TaskRunSpec,
    status: &TaskRunStatus,
    created: Timestamp,
    ending: &Ending,
) -> Option<Timestamp> {
    let retries = spec.retries.as_ref()?;
    if !ending.retryable
        || ending.phase != Phase::Failed
        || spec.cancel
        || !retries.covers(ending.reason, ending.exit_code)
        || status.attempt() >= spec.max_attempts()
    {
        return None;
    }
    let at = retry_time(uid, spec, status.attempt(), ending.finished_at);
    match active_deadline(spec, created) {
        Some(deadline) if at >= deadline => None,
        _ => Some(at),
    }
}

/// Whether a start the daemon refused may be tried again in a new container: not when the
/// runtime kept the task across a daemon restart, since that task may have begun.
fn start_may_be_retried(daemon_said: &str) -> bool {
    !daemon_said.contains("already exists")
}

fn active_deadline_message(spec: &TaskRunSpec) -> String {
    format!(
        "the TaskRun ran longer than activeDeadlineSeconds ({} s) and no further attempt starts",
        spec.active_deadline_seconds.unwrap_or_default()
    )
}

/// The earliest of the times given, if any.
fn earliest<const N: usize>(times: [Option<Timestamp>; N]) -> Option<Timestamp> {
    times.into_iter().flatten().min()
}

/// Where a launch stopped short, with the daemon's words where it gave any.
#[derive(Clone, Debug, PartialEq)]
pub enum LaunchFailure {
    /// The daemon refused the image reference as malformed.
    InvalidImage(String),
    /// The image is not on the node and the pull policy is `Never`.
    ImageMissing,
    /// The pull failed or timed out.
    PullFailed(String),
    /// The daemon had no such image when the container was created.
    ImageGone(String),
    /// A limit in the spec is not a quantity Docker can take.
    InvalidLimit(String),
    /// The daemon refused to create the container.
    CreateFailed(String),
    /// The daemon could not start the container.
    StartFailed(String),
    /// The daemon refused the files of the volumes.
    FilesRefused(String),
    /// The run breaks the cluster's TaskRunPolicy; nothing was pulled or created.
    PolicyViolation(String),
    /// The run must not run as root and its image's user is root (or cannot be told apart
    /// from root); no container was created.
    RunsAsRoot(String),
    /// The run sets no working directory and its image's `WORKDIR` is under a directory the
    /// kernel owns; no container was created.
    UnsafeWorkingDir(String),
}

/// How a launch that stopped short ends the run.
pub fn launch_failed(
    failure: LaunchFailure,
    spec: &TaskRunSpec,
    node: &str,
    now: Timestamp,
) -> Ending {
    // Input errors (a malformed reference, a missing image that may not be pulled, a limit or
    // a container the daemon refuses) are the spec's fault: another attempt fails the same way.
    let retryable = matches!(
        &failure,
        LaunchFailure::PullFailed(_) | LaunchFailure::StartFailed(_)
    ) && !matches!(&failure, LaunchFailure::StartFailed(m) if !start_may_be_retried(m));
    let (reason, message) = match failure {
        LaunchFailure::InvalidImage(message) => (Reason::InvalidImage, message),
        LaunchFailure::ImageMissing => (
            Reason::ImageNotPresent,
            format!(
                "image {} is not present on node {node} and imagePullPolicy is Never",
                spec.image
            ),
        ),
        LaunchFailure::PullFailed(message) => (Reason::ImagePullFailed, message),
        LaunchFailure::ImageGone(message) => (Reason::ImageNotPresent, message),
        LaunchFailure::InvalidLimit(message) | LaunchFailure::CreateFailed(message) => {
            (Reason::StartFailed, message)
        }
        LaunchFailure::StartFailed(message) => (Reason::StartFailed, start_failure(&message)),
        LaunchFailure::FilesRefused(message) => (
            Reason::StartFailed,
            format!("the files of the volumes could not be written into the container: {message}"),
        ),
        LaunchFailure::PolicyViolation(message) => (Reason::PolicyViolation, message),
        LaunchFailure::RunsAsRoot(message) | LaunchFailure::UnsafeWorkingDir(message) => {
            (Reason::StartFailed, message)
        }
    };
    Ending {
        phase: Phase::Failed,
        reason,
        message,
        exit_code: None,
        started_at: None,
        finished_at: now,
        retryable,
    }
}

/// The message of a start the daemon refused. A refusal saying the task "already exists"
/// means the daemon restarted while starting the container and its runtime kept the task:
/// the task may have begun, so the container is never started again.
fn start_failure(daemon_said: &str) -> String {
    if daemon_said.contains("already exists") {
        format!(
            "{daemon_said}: the Docker daemon restarted while starting the container and its \
             runtime still holds the container's task, which may have begun; the container is \
             not started again so the task never runs twice"
        )
    } else {
        daemon_said.to_string()
    }
}

/// What deleting a TaskRun needs done on the node before the TaskRun may go.
#[derive(Clone, Debug, PartialEq)]
pub enum Deletion {
    /// Stop the run's container (SIGTERM, SIGKILL after `grace`) and remove it.
    Remove {
        container_id: String,
        grace: Duration,
    },
    /// No container of the run exists here: nothing to do.
    Nothing,
}

/// Decides what deleting the TaskRun `uid` needs. A container with the run's name that was
/// not created for it is never touched.
pub fn decide_deletion(
    uid: &str,
    spec: &TaskRunSpec,
    container: Option<&ObservedContainer>,
) -> Deletion {
    match container {
        Some(c) if c.owner.as_ref().is_some_and(|owner| owner.uid == uid) => Deletion::Remove {
            container_id: c.id.clone(),
            grace: grace_period(spec),
        },
        _ => Deletion::Nothing,
    }
}

/// Whether the TaskRun of a run is deleted, by `deleteAfterSeconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pruning {
    /// The TaskRun stays: it has no `deleteAfterSeconds`, or its run has no recorded end.
    Keep,
    /// The TaskRun is deleted at this time.
    At(Timestamp),
    /// The TaskRun's time has come: delete it.
    Delete,
}

impl Pruning {
    /// When the TaskRun is to be deleted, while that time is still to come.
    pub fn due_at(self) -> Option<Timestamp> {
        match self {
            Self::At(at) => Some(at),
            Self::Keep | Self::Delete => None,
        }
    }
}

/// Decides when the TaskRun of a run is deleted: `deleteAfterSeconds` after the
/// `completionTime` of a run that ended. A run that has not ended, or whose end carries no
/// time, is kept.
pub fn decide_pruning(spec: &TaskRunSpec, status: &TaskRunStatus, now: Timestamp) -> Pruning {
    let Some(seconds) = spec.delete_after_seconds else {
        return Pruning::Keep;
    };
    let completed = status
        .completion_time
        .as_ref()
        .filter(|_| status.phase().is_final());
    match completed.map(|t| t.0.checked_add(SignedDuration::from_secs(seconds))) {
        Some(Ok(at)) if at <= now => Pruning::Delete,
        Some(Ok(at)) => Pruning::At(at),
        None | Some(Err(_)) => Pruning::Keep,
    }
}

/// The end of a run whose node's agent is gone: its container may still exist there.
pub fn node_lost(status: &TaskRunStatus, node: &str, now: Timestamp) -> Ending {
    Ending {
        phase: Phase::Failed,
        reason: Reason::NodeLost,
        message: format!(
            "the agent of node {node} stopped renewing its Lease while the run was claimed by it"
        ),
        exit_code: None,
        started_at: status.start_time.as_ref().map(|t| t.0),
        finished_at: now,
        retryable: true,
    }
}

/// Names the signal of an exit code above 128, and who may have sent a SIGKILL.
fn exit_message(exit_code: i64) -> String {
    let signal = match exit_code - 128 {
        9 => {
            " (SIGKILL: killed from outside the task, e.g. by a Docker daemon restart or the kernel)"
        }
        15 => " (SIGTERM)",
        2 => " (SIGINT)",
        6 => " (SIGABRT)",
        11 => " (SIGSEGV)",
        _ => "",
    };
    format!("exited with code {exit_code}{signal}")
}

fn ended_without_exit(
    spec: &TaskRunSpec,
    status: &TaskRunStatus,
    reason: Reason,
    message: &str,
    now: Timestamp,
) -> Ending {
    Ending {
        phase: if spec.cancel {
            Phase::Cancelled
        } else {
            Phase::Failed
        },
        reason: if spec.cancel {
            Reason::Cancelled
        } else {
            reason
        },
        message: message.to_string(),
        exit_code: None,
        started_at: status.start_time.as_ref().map(|t| t.0),
        finished_at: now,
        retryable: !spec.cancel,
    }
}

fn deadline(spec: &TaskRunSpec, started_at: Timestamp) -> Option<Timestamp> {
    let seconds = spec.timeout_seconds?;
    started_at
        .checked_add(SignedDuration::from_secs(seconds))
        .ok()
}

fn grace_period(spec: &TaskRunSpec) -> Duration {
    Duration::from_secs(
        spec.termination_grace_period_seconds()
            .max(0)
            .unsigned_abs(),
    )
}

/// When the finished container of an ended run is due for removal; `None` for never.
fn removal_time(spec: &TaskRunSpec, status: &TaskRunStatus) -> Option<Timestamp> {
    let removed_at_end = match spec.cleanup {
        CleanupPolicy::Always => true,
        CleanupPolicy::OnSuccess => status.phase() == Phase::Succeeded,
        CleanupPolicy::Never => false,
    };
    let completed = status.completion_time.as_ref().map(|t| t.0);
    if removed_at_end {
        return Some(completed.unwrap_or(Timestamp::UNIX_EPOCH));
    }
    let ttl = spec.ttl_seconds_after_finished?;
    completed?.checked_add(SignedDuration::from_secs(ttl)).ok()
}

#[cfg(test)]
mod tests;
