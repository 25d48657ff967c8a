//! The status each step of a run records. Pure functions of the previous status, what
//! happened, and the time.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::decide::Ending;
use crate::api::{
    AttemptRecord, ConditionStatus, ConditionType, MAX_PREVIOUS_ATTEMPTS, Phase, Reason,
    TaskRunStatus, api_safe, api_safe_tail,
};
use crate::docker::MAX_LOG_TAIL_BYTES;

/// Longest `message` written, in bytes; the schema allows 2048 characters.
const MESSAGE_BYTES: usize = 1024;

/// Longest message of a previous attempt, in bytes; the schema allows 512 characters.
const RECORD_MESSAGE_BYTES: usize = 256;

/// Where a run's container lives.
#[derive(Clone, Copy, Debug)]
pub struct Location<'a> {
    pub node: &'a str,
    pub container_name: &'a str,
    pub generation: Option<i64>,
}

/// The status of a run whose container has started.
pub fn running(
    previous: &TaskRunStatus,
    location: Location<'_>,
    container_id: &str,
    started_at: Timestamp,
    now: Timestamp,
) -> TaskRunStatus {
    let status = TaskRunStatus {
        phase: Some(Phase::Running),
        reason: Some(Reason::Running),
        message: Some(format!("container {} is running", location.container_name)),
        exit_code: None,
        node_name: Some(location.node.to_string()),
        container_name: Some(location.container_name.to_string()),
        container_id: Some(container_id.to_string()),
        start_time: Some(Time(started_at)),
        completion_time: None,
        observed_generation: location.generation,
        log_tail: None,
        attempt: previous.attempt,
        previous_attempts: previous.previous_attempts.clone(),
        conditions: Vec::new(),
    };
    with_conditions(previous, status, now)
}

/// The final status of a run.
pub fn ended(
    previous: &TaskRunStatus,
    location: Location<'_>,
    ending: &Ending,
    container_id: Option<&str>,
    log_tail: Option<String>,
    now: Timestamp,
) -> TaskRunStatus {
    let status = TaskRunStatus {
        phase: Some(ending.phase),
        reason: Some(ending.reason),
        message: Some(api_safe(&ending.message, MESSAGE_BYTES)),
        exit_code: ending.exit_code,
        node_name: Some(location.node.to_string()),
        container_name: Some(location.container_name.to_string()),
        container_id: container_id
            .map(str::to_string)
            .or_else(|| previous.container_id.clone()),
        start_time: ending
            .started_at
            .map(Time)
            .or_else(|| previous.start_time.clone()),
        completion_time: Some(Time(ending.finished_at)),
        observed_generation: location.generation,
        log_tail: safe_log_tail(log_tail),
        attempt: previous.attempt,
        previous_attempts: previous.previous_attempts.clone(),
        conditions: Vec::new(),
    };
    with_conditions(previous, status, now)
}

/// The status of a run whose attempt ended in a way that is retried: the attempt joins
/// `previousAttempts` (the last [`MAX_PREVIOUS_ATTEMPTS`] are kept) and the next one waits,
/// `Pending` with reason `BackOff`, until `next_at`. The failed attempt's log tail stays
/// until the next attempt starts.
pub fn retrying(
    previous: &TaskRunStatus,
    location: Location<'_>,
    ending: &Ending,
    log_tail: Option<String>,
    next_at: Timestamp,
    now: Timestamp,
) -> TaskRunStatus {
    let failed = previous.attempt();
    let next = failed.saturating_add(1);
    let message = api_safe(&ending.message, RECORD_MESSAGE_BYTES);
    let record = AttemptRecord {
        attempt: i32::try_from(failed).unwrap_or(i32::MAX),
        node_name: Some(location.node.to_string()).filter(|n| !n.is_empty()),
        exit_code: ending.exit_code,
        reason: ending.reason,
        start_time: ending
            .started_at
            .map(Time)
            .or_else(|| previous.start_time.clone()),
        completion_time: Time(ending.finished_at),
        message: message.clone(),
    };
    let mut previous_attempts = previous.previous_attempts.clone();
    previous_attempts.push(record);
    let excess = previous_attempts
        .len()
        .saturating_sub(MAX_PREVIOUS_ATTEMPTS);
    previous_attempts.drain(..excess);
    let next_at = next_at.round(jiff::Unit::Second).unwrap_or(next_at);
    let status = TaskRunStatus {
        phase: Some(Phase::Pending),
        reason: Some(Reason::BackOff),
        message: Some(api_safe(
            &format!(
                "attempt {failed} failed ({}: {message}); attempt {next} starts at {next_at}",
                ending.reason
            ),
            MESSAGE_BYTES,
        )),
        exit_code: None,
        node_name: None,
        container_name: None,
        container_id: None,
        start_time: None,
        completion_time: None,
        observed_generation: location.generation,
        log_tail: safe_log_tail(log_tail).or_else(|| previous.log_tail.clone()),
        attempt: Some(i32::try_from(next).unwrap_or(i32::MAX)),
        previous_attempts,
        conditions: Vec::new(),
    };
    with_conditions(previous, status, now)
}

/// The status after an attempt ended: the next attempt's back-off when `next_at` says one
/// follows, the final status otherwise.
pub fn concluded(
    previous: &TaskRunStatus,
    location: Location<'_>,
    ending: &Ending,
    container_id: Option<&str>,
    log_tail: Option<String>,
    next_at: Option<Timestamp>,
    now: Timestamp,
) -> TaskRunStatus {
    match next_at {
        Some(at) => retrying(previous, location, ending, log_tail, at, now),
        None => ended(previous, location, ending, container_id, log_tail, now),
    }
}

/// The final status of a run no node has taken, ended by one of its deadlines: nothing of a
/// container to record.
pub fn unclaimed_end(
    previous: &TaskRunStatus,
    ending: &Ending,
    generation: Option<i64>,
    now: Timestamp,
) -> TaskRunStatus {
    let status = TaskRunStatus {
        phase: Some(ending.phase),
        reason: Some(ending.reason),
        message: Some(api_safe(&ending.message, MESSAGE_BYTES)),
        completion_time: Some(Time(ending.finished_at)),
        observed_generation: generation,
        ..previous.clone()
    };
    with_conditions(previous, status, now)
}

/// The status of a run held up by something that may pass, such as the Docker daemon not
/// answering. The phase stays; the reason and message say what is wrong. An ended run is
/// held up by nothing: its status stays as it is.
pub fn held_up(
    previous: &TaskRunStatus,
    reason: Reason,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> TaskRunStatus {
    if previous.phase().is_final() {
        return previous.clone();
    }
    let status = TaskRunStatus {
        phase: Some(previous.phase()),
        reason: Some(reason),
        message: Some(api_safe(message, MESSAGE_BYTES)),
        observed_generation: generation,
        ..previous.clone()
    };
    with_conditions(previous, status, now)
}

/// The same status, recording that `generation` of the spec was seen; `None` when it
/// already says so or no status was recorded yet.
pub fn observed(previous: &TaskRunStatus, generation: Option<i64>) -> Option<TaskRunStatus> {
    if previous.phase.is_none() || previous.observed_generation == generation {
        return None;
    }
    let mut status = previous.clone();
    status.observed_generation = generation;
    for condition in &mut status.conditions {
        condition.observed_generation = generation;
    }
    Some(status)
}

/// The output tail as the API server takes it, at most the largest tail an agent records;
/// `None` when there was no output.
fn safe_log_tail(log_tail: Option<String>) -> Option<String> {
    log_tail
        .map(|t| api_safe_tail(&t, MAX_LOG_TAIL_BYTES))
        .filter(|t| !t.is_empty())
}

/// The conditions a phase shows. `Succeeded` and `Done` tell the run's outcome; `Ready`,
/// `Reconciling` and `Stalled` are what kstatus and `kubectl wait` read: in progress until
/// the run ends, then ready on success or stalled on failure.
fn conditions_of(phase: Phase) -> Vec<(ConditionType, ConditionStatus)> {
    use ConditionStatus::{False, True, Unknown};
    use ConditionType::{Done, Ready, Reconciling, Stalled, Succeeded};
    match phase {
        Phase::Pending | Phase::Running => vec![
            (Succeeded, Unknown),
            (Done, False),
            (Ready, False),
            (Reconciling, True),
        ],
        Phase::Succeeded => vec![(Succeeded, True), (Done, True), (Ready, True)],
        Phase::Failed | Phase::Cancelled => vec![
            (Succeeded, False),
            (Done, True),
            (Ready, False),
            (Stalled, True),
        ],
    }
}

/// Sets the conditions the phase shows, keeping each condition's transition time when its
/// status did not change.
fn with_conditions(
    previous: &TaskRunStatus,
    mut status: TaskRunStatus,
    now: Timestamp,
) -> TaskRunStatus {
    let reason = status.reason.map_or("Pending", Reason::as_str).to_string();
    let message = status.message.clone().unwrap_or_default();
    status.conditions = conditions_of(status.phase())
        .into_iter()
        .map(|(type_, state)| {
            let last_transition_time = previous
                .condition(type_)
                .filter(|c| c.status == state.as_str())
                .map_or(Time(now), |c| c.last_transition_time.clone());
            Condition {
                type_: type_.as_str().to_string(),
                status: state.as_str().to_string(),
                reason: reason.clone(),
                message: message.clone(),
                observed_generation: status.observed_generation,
                last_transition_time,
            }
        })
        .collect();
    status
}

/// Whether the status already says the run is where `reason` and `message` put it.
pub fn says(status: &TaskRunStatus, reason: Reason, message: &str) -> bool {
    status.reason == Some(reason) && status.message.as_deref() == Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCATION: Location<'static> = Location {
        node: "node-a",
        container_name: "taskrun-u1",
        generation: Some(1),
    };

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn condition(status: &TaskRunStatus, type_: ConditionType) -> &Condition {
        status.condition(type_).unwrap()
    }

    #[test]
    fn running_is_succeeded_unknown_and_not_done() {
        let status = running(&TaskRunStatus::default(), LOCATION, "c1", at(100), at(101));
        assert_eq!(status.phase, Some(Phase::Running));
        assert_eq!(status.start_time, Some(Time(at(100))));
        assert_eq!(
            condition(&status, ConditionType::Succeeded).status,
            "Unknown"
        );
        assert_eq!(condition(&status, ConditionType::Done).status, "False");
        assert_eq!(
            condition(&status, ConditionType::Done).last_transition_time,
            Time(at(101))
        );
    }

    #[test]
    fn failure_is_succeeded_false_and_done_true_with_the_reason() {
        let before = running(&TaskRunStatus::default(), LOCATION, "c1", at(100), at(101));
        let ending = Ending {
            phase: Phase::Failed,
            reason: Reason::Error,
            message: "exited with code 3".into(),
            exit_code: Some(3),
            started_at: Some(at(100)),
            finished_at: at(105),
            retryable: true,
        };
        let status = ended(
            &before,
            LOCATION,
            &ending,
            Some("c1"),
            Some("boom\n".into()),
            at(106),
        );
        assert_eq!(status.exit_code, Some(3));
        assert_eq!(status.log_tail.as_deref(), Some("boom\n"));
        assert_eq!(status.completion_time, Some(Time(at(105))));
        let succeeded = condition(&status, ConditionType::Succeeded);
        assert_eq!(
            (succeeded.status.as_str(), succeeded.reason.as_str()),
            ("False", "Error")
        );
        let done = condition(&status, ConditionType::Done);
        assert_eq!(
            (done.status.as_str(), done.last_transition_time.clone()),
            ("True", Time(at(106)))
        );
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let first = running(&TaskRunStatus::default(), LOCATION, "c1", at(100), at(101));
        let held = held_up(
            &first,
            Reason::DaemonUnavailable,
            "connection refused",
            Some(1),
            at(200),
        );
        assert_eq!(held.phase, Some(Phase::Running));
        assert_eq!(held.reason, Some(Reason::DaemonUnavailable));
        assert_eq!(
            condition(&held, ConditionType::Succeeded).last_transition_time,
            Time(at(101))
        );
        assert_eq!(
            condition(&held, ConditionType::Succeeded).reason,
            "DaemonUnavailable"
        );
    }

    #[test]
    fn an_ended_run_is_never_held_up() {
        let ending = Ending {
            phase: Phase::Succeeded,
            reason: Reason::Completed,
            message: "exited with code 0".into(),
            exit_code: Some(0),
            started_at: Some(at(100)),
            finished_at: at(105),
            retryable: true,
        };
        let done = ended(
            &TaskRunStatus::default(),
            LOCATION,
            &ending,
            Some("c1"),
            None,
            at(106),
        );
        let held = held_up(
            &done,
            Reason::DaemonUnavailable,
            "no answer",
            Some(1),
            at(200),
        );
        assert_eq!(held, done);
    }

    fn shown(status: &TaskRunStatus) -> Vec<(&str, &str)> {
        status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect()
    }

    fn ending(phase: Phase, reason: Reason) -> Ending {
        Ending {
            phase,
            reason,
            message: "how it ended".into(),
            exit_code: None,
            started_at: Some(at(100)),
            finished_at: at(105),
            retryable: true,
        }
    }

    #[test]
    fn each_phase_shows_the_conditions_kstatus_and_kubectl_wait_read() {
        let waiting = held_up(
            &TaskRunStatus::default(),
            Reason::DaemonUnavailable,
            "no answer",
            Some(1),
            at(1),
        );
        let running = running(&waiting, LOCATION, "c1", at(100), at(101));
        let in_progress = [
            ("Succeeded", "Unknown"),
            ("Done", "False"),
            ("Ready", "False"),
            ("Reconciling", "True"),
        ];
        assert_eq!(shown(&waiting), in_progress);
        assert_eq!(shown(&running), in_progress);
        assert_eq!(
            condition(&running, ConditionType::Reconciling).reason,
            "Running"
        );
        let end = |phase, reason| {
            ended(
                &running,
                LOCATION,
                &ending(phase, reason),
                None,
                None,
                at(106),
            )
        };
        assert_eq!(
            shown(&end(Phase::Succeeded, Reason::Completed)),
            [("Succeeded", "True"), ("Done", "True"), ("Ready", "True")]
        );
        for (phase, reason) in [
            (Phase::Failed, Reason::Error),
            (Phase::Failed, Reason::DeadlineExceeded),
            (Phase::Cancelled, Reason::Cancelled),
        ] {
            let status = end(phase, reason);
            assert_eq!(
                shown(&status),
                [
                    ("Succeeded", "False"),
                    ("Done", "True"),
                    ("Ready", "False"),
                    ("Stalled", "True")
                ]
            );
            let stalled = condition(&status, ConditionType::Stalled);
            assert_eq!(
                (stalled.reason.as_str(), stalled.message.as_str()),
                (reason.as_str(), "how it ended")
            );
            assert_eq!(
                condition(&status, ConditionType::Ready).last_transition_time,
                Time(at(1)),
                "Ready has been False since the run was first held up"
            );
        }
    }

    #[test]
    fn a_new_generation_is_recorded_as_seen_without_changing_anything_else() {
        let done = ended(
            &TaskRunStatus::default(),
            LOCATION,
            &ending(Phase::Succeeded, Reason::Completed),
            Some("c1"),
            None,
            at(106),
        );
        assert_eq!(observed(&done, Some(1)), None, "generation 1 was seen");
        let seen = observed(&done, Some(2)).unwrap();
        assert_eq!(seen.observed_generation, Some(2));
        assert!(
            seen.conditions
                .iter()
                .all(|c| c.observed_generation == Some(2))
        );
        assert_eq!(
            TaskRunStatus {
                observed_generation: Some(1),
                conditions: done.conditions.clone(),
                ..seen.clone()
            },
            TaskRunStatus {
                conditions: done.conditions.clone(),
                ..done.clone()
            }
        );
        let unwritten = TaskRunStatus {
            observed_generation: Some(0),
            ..TaskRunStatus::default()
        };
        assert_eq!(observed(&unwritten, Some(1)), None, "no agent wrote it yet");
    }

    #[test]
    fn a_retried_attempt_is_recorded_and_the_next_waits_pending_in_back_off() {
        let first = running(&TaskRunStatus::default(), LOCATION, "c1", at(100), at(101));
        let mut failure = ending(Phase::Failed, Reason::Error);
        failure.exit_code = Some(3);
        failure.message = "bad\u{7f}".repeat(200);
        let status = retrying(
            &first,
            LOCATION,
            &failure,
            Some("out\n".into()),
            at(120),
            at(106),
        );
        assert_eq!(status.attempt(), 2);
        assert_eq!(
            (status.phase, status.reason),
            (Some(Phase::Pending), Some(Reason::BackOff))
        );
        assert_eq!(
            (status.container_id.as_ref(), status.start_time.as_ref()),
            (None, None)
        );
        assert_eq!(status.log_tail.as_deref(), Some("out\n"));
        let message = status.message.clone().unwrap();
        assert!(
            message.starts_with("attempt 1 failed (Error: bad"),
            "{message}"
        );
        assert!(
            message.ends_with("attempt 2 starts at 1970-01-01T00:02:00Z"),
            "{message}"
        );
        let record = &status.previous_attempts[0];
        assert_eq!(
            (
                record.attempt,
                record.reason,
                record.exit_code,
                record.node_name.as_deref()
            ),
            (1, Reason::Error, Some(3), Some("node-a"))
        );
        assert!(record.message.len() <= RECORD_MESSAGE_BYTES && !record.message.contains('\u{7f}'));
        assert_eq!(condition(&status, ConditionType::Done).status, "False");

        let mut many = status;
        for _ in 0..15 {
            many = retrying(&many, LOCATION, &failure, None, at(200), at(201));
        }
        assert_eq!(many.attempt(), 17);
        assert_eq!(many.previous_attempts.len(), MAX_PREVIOUS_ATTEMPTS);
        assert_eq!(many.previous_attempts[0].attempt, 7);
        assert_eq!(many.previous_attempts[9].attempt, 16);

        let started = running(&many, LOCATION, "c17", at(300), at(300));
        assert_eq!((started.attempt(), started.log_tail.as_ref()), (17, None));
        assert_eq!(started.previous_attempts.len(), MAX_PREVIOUS_ATTEMPTS);
    }

    #[test]
    fn long_messages_are_cut_to_a_bound() {
        let held = held_up(
            &TaskRunStatus::default(),
            Reason::DaemonUnavailable,
            &"é".repeat(2000),
            None,
            at(1),
        );
        let message = held.message.unwrap();
        assert!(message.len() <= MESSAGE_BYTES && message.chars().all(|c| c == 'é'));
    }
}
