//! Pure unit tests of [`decide`] and the decisions beside it, from inline YAML specs and statuses,
//! containers built by hand and a fixed time; a property test checks, over any observation, that
//! [`decide`] never waits for a time already past, reopens an ended run or launches a second
//! container.

use super::*;
use crate::docker::ContainerOwner;

const UID: &str = "uid-1";

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

fn spec(yaml: &str) -> TaskRunSpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn status(yaml: &str) -> TaskRunStatus {
    serde_yaml::from_str(yaml).unwrap()
}

fn container(state: ContainerState) -> ObservedContainer {
    ObservedContainer {
        id: "c1".into(),
        name: "taskrun-uid-1".into(),
        owner: Some(ContainerOwner {
            namespace: "ns".into(),
            name: "run".into(),
            uid: UID.into(),
            node: "n".into(),
            attempt: 1,
        }),
        state,
    }
}

fn exited(code: i64, started: i64, finished: i64) -> ContainerState {
    ContainerState::Exited {
        exit_code: code,
        oom_killed: false,
        started_at: Some(at(started)),
        finished_at: Some(at(finished)),
        error: None,
    }
}

fn decide_at(
    spec: &TaskRunSpec,
    status: &TaskRunStatus,
    container: Option<&ObservedContainer>,
    now: i64,
) -> Action {
    decide(Observed {
        uid: UID,
        node: "n",
        spec,
        status,
        created: at(0),
        container,
        previous: None,
        now: at(now),
    })
}

const RUNNING: &str =
    "phase: Running\nreason: Running\ncontainerId: c1\nstartTime: '1970-01-01T00:01:40Z'";

#[test]
fn a_new_run_launches_its_container() {
    assert_eq!(
        decide_at(&spec("image: busybox"), &status("{}"), None, 100),
        Action::Launch
    );
}

#[test]
fn a_created_but_unstarted_container_is_started_not_recreated() {
    let c = container(ContainerState::Created { error: None });
    assert_eq!(
        decide_at(&spec("image: busybox"), &status("{}"), Some(&c), 100),
        Action::Start {
            container_id: "c1".into()
        }
    );
}

#[test]
fn a_container_that_failed_to_start_fails_the_run_with_the_daemon_message() {
    let c = container(ContainerState::Created {
        error: Some("exec: \"nope\": not found".into()),
    });
    let Action::RecordEnd(ending) =
        decide_at(&spec("image: busybox"), &status("{}"), Some(&c), 100)
    else {
        panic!()
    };
    assert_eq!(
        (ending.phase, ending.reason),
        (Phase::Failed, Reason::StartFailed)
    );
    assert_eq!(ending.message, "exec: \"nope\": not found");
}

#[test]
fn a_container_whose_task_the_runtime_kept_across_a_daemon_restart_is_not_started_again() {
    let c = container(ContainerState::Created {
        error: Some("task 6861b862: already exists".into()),
    });
    let Action::RecordEnd(ending) =
        decide_at(&spec("image: busybox"), &status("{}"), Some(&c), 100)
    else {
        panic!()
    };
    assert_eq!(ending.reason, Reason::StartFailed);
    assert!(
        ending.message.contains("never runs twice"),
        "{}",
        ending.message
    );
}

#[test]
fn a_running_container_not_yet_recorded_is_recorded_with_its_deadline() {
    let c = container(ContainerState::Running {
        started_at: at(100),
    });
    assert_eq!(
        decide_at(
            &spec("image: busybox\ntimeoutSeconds: 30"),
            &status("{}"),
            Some(&c),
            105
        ),
        Action::RecordRunning {
            container_id: "c1".into(),
            started_at: at(100),
            deadline: Some(at(130))
        }
    );
}

#[test]
fn a_recorded_running_container_waits_for_its_deadline() {
    let c = container(ContainerState::Running {
        started_at: at(100),
    });
    let s = spec("image: busybox\ntimeoutSeconds: 30");
    assert_eq!(
        decide_at(&s, &status(RUNNING), Some(&c), 105),
        Action::Wait {
            until: Some(at(130))
        }
    );
    let no_deadline = spec("image: busybox");
    assert_eq!(
        decide_at(&no_deadline, &status(RUNNING), Some(&c), 105),
        Action::Wait { until: None }
    );
}

#[test]
fn a_container_past_its_deadline_is_stopped_with_the_grace_period() {
    let c = container(ContainerState::Running {
        started_at: at(100),
    });
    let s = spec("image: busybox\ntimeoutSeconds: 30\nterminationGracePeriodSeconds: 2");
    assert_eq!(
        decide_at(&s, &status(RUNNING), Some(&c), 130),
        Action::Stop {
            cause: StopCause::DeadlineExceeded,
            grace: Duration::from_secs(2)
        }
    );
}

#[test]
fn cancel_stops_a_running_container() {
    let c = container(ContainerState::Running {
        started_at: at(100),
    });
    assert_eq!(
        decide_at(
            &spec("image: busybox\ncancel: true"),
            &status(RUNNING),
            Some(&c),
            101
        ),
        Action::Stop {
            cause: StopCause::Cancelled,
            grace: Duration::from_secs(10)
        }
    );
}

#[test]
fn cancel_before_start_ends_cancelled_without_a_container() {
    let Action::RecordEnd(ending) = decide_at(
        &spec("image: busybox\ncancel: true"),
        &status("{}"),
        None,
        100,
    ) else {
        panic!()
    };
    assert_eq!(
        (ending.phase, ending.reason, ending.exit_code),
        (Phase::Cancelled, Reason::Cancelled, None)
    );
}

#[test]
fn exit_codes_decide_success_or_error() {
    let s = spec("image: busybox");
    let ok = container(exited(0, 100, 101));
    let Action::RecordExit { ending, .. } = decide_at(&s, &status(RUNNING), Some(&ok), 102) else {
        panic!()
    };
    assert_eq!(
        (ending.phase, ending.reason, ending.exit_code),
        (Phase::Succeeded, Reason::Completed, Some(0))
    );
    assert_eq!(
        (ending.started_at, ending.finished_at),
        (Some(at(100)), at(101))
    );

    let failed = container(exited(3, 100, 101));
    let Action::RecordExit { ending, .. } = decide_at(&s, &status(RUNNING), Some(&failed), 102)
    else {
        panic!()
    };
    assert_eq!(
        (ending.phase, ending.reason, ending.exit_code),
        (Phase::Failed, Reason::Error, Some(3))
    );
}

#[test]
fn an_exit_seen_only_after_a_restart_is_still_recorded() {
    let c = container(exited(7, 100, 101));
    let Action::RecordExit { ending, .. } =
        decide_at(&spec("image: busybox"), &status("{}"), Some(&c), 500)
    else {
        panic!()
    };
    assert_eq!((ending.exit_code, ending.finished_at), (Some(7), at(101)));
}

#[test]
fn oom_kill_is_its_own_reason() {
    let c = container(ContainerState::Exited {
        exit_code: 137,
        oom_killed: true,
        started_at: Some(at(100)),
        finished_at: Some(at(101)),
        error: None,
    });
    let Action::RecordExit { ending, .. } =
        decide_at(&spec("image: busybox"), &status(RUNNING), Some(&c), 102)
    else {
        panic!()
    };
    assert_eq!(
        (ending.phase, ending.reason, ending.exit_code),
        (Phase::Failed, Reason::OomKilled, Some(137))
    );
}

#[test]
fn an_exit_after_the_deadline_is_deadline_exceeded() {
    let c = container(exited(137, 100, 131));
    let s = spec("image: busybox\ntimeoutSeconds: 30");
    let Action::RecordExit { ending, .. } = decide_at(&s, &status(RUNNING), Some(&c), 132) else {
        panic!()
    };
    assert_eq!(
        (ending.phase, ending.reason),
        (Phase::Failed, Reason::DeadlineExceeded)
    );
}

#[test]
fn an_exit_after_cancel_is_cancelled() {
    let c = container(exited(143, 100, 101));
    let Action::RecordExit { ending, .. } = decide_at(
        &spec("image: busybox\ncancel: true"),
        &status(RUNNING),
        Some(&c),
        102,
    ) else {
        panic!()
    };
    assert_eq!(
        (ending.phase, ending.reason, ending.exit_code),
        (Phase::Cancelled, Reason::Cancelled, Some(143))
    );
}

#[test]
fn a_container_that_vanished_while_running_is_lost() {
    let Action::RecordEnd(ending) = decide_at(&spec("image: busybox"), &status(RUNNING), None, 200)
    else {
        panic!()
    };
    assert_eq!(
        (ending.phase, ending.reason),
        (Phase::Failed, Reason::ContainerLost)
    );
    assert_eq!(ending.started_at, Some(at(100)));
}

#[test]
fn a_container_of_someone_else_is_never_adopted() {
    let mut foreign = container(ContainerState::Running {
        started_at: at(100),
    });
    foreign.owner = None;
    let Action::RecordEnd(ending) =
        decide_at(&spec("image: busybox"), &status("{}"), Some(&foreign), 101)
    else {
        panic!()
    };
    assert_eq!(ending.reason, Reason::StartFailed);
    assert!(ending.message.contains("not created for this TaskRun"));
}

#[test]
fn cleanup_removes_finished_containers_by_policy() {
    let succeeded = status("phase: Succeeded\ncompletionTime: '1970-01-01T00:01:50Z'");
    let failed = status("phase: Failed\ncompletionTime: '1970-01-01T00:01:50Z'");
    let c = container(exited(0, 100, 110));
    let cases = [
        ("Always", &succeeded, Action::Remove),
        ("Always", &failed, Action::Remove),
        ("OnSuccess", &succeeded, Action::Remove),
        ("OnSuccess", &failed, Action::Wait { until: None }),
        ("Never", &succeeded, Action::Wait { until: None }),
    ];
    for (policy, recorded, expected) in cases {
        let s = spec(&format!("image: busybox\ncleanup: {policy}"));
        assert_eq!(
            decide_at(&s, recorded, Some(&c), 111),
            expected,
            "cleanup {policy}"
        );
    }
}

#[test]
fn ttl_removes_a_kept_container_once_due() {
    let recorded = status("phase: Failed\ncompletionTime: '1970-01-01T00:01:50Z'");
    let c = container(exited(1, 100, 110));
    let s = spec("image: busybox\ncleanup: Never\nttlSecondsAfterFinished: 60");
    assert_eq!(
        decide_at(&s, &recorded, Some(&c), 111),
        Action::Wait {
            until: Some(at(170))
        }
    );
    assert_eq!(decide_at(&s, &recorded, Some(&c), 170), Action::Remove);
}

#[test]
fn a_taskrun_is_kept_until_its_run_has_a_recorded_end() {
    let s = spec("image: busybox\ndeleteAfterSeconds: 60");
    for unfinished in [
        "{}",
        "phase: Pending",
        RUNNING,
        "phase: Pending\nreason: BackOff\nattempt: 2\ncompletionTime: '1970-01-01T00:01:50Z'",
    ] {
        assert_eq!(
            decide_pruning(&s, &status(unfinished), at(1_000)),
            Pruning::Keep,
            "{unfinished}"
        );
    }
    assert_eq!(
        decide_pruning(&s, &status("phase: Succeeded"), at(1_000)),
        Pruning::Keep,
        "an end without a time is never due"
    );
    let ended = status("phase: Succeeded\ncompletionTime: '1970-01-01T00:01:50Z'");
    assert_eq!(
        decide_pruning(&spec("image: busybox"), &ended, at(1_000)),
        Pruning::Keep,
        "without deleteAfterSeconds the TaskRun stays"
    );
}

#[test]
fn a_taskrun_is_deleted_delete_after_seconds_after_its_run_ended() {
    let s = spec("image: busybox\ndeleteAfterSeconds: 60");
    for phase in ["Succeeded", "Failed", "Cancelled"] {
        let ended = status(&format!(
            "phase: {phase}\ncompletionTime: '1970-01-01T00:01:50Z'"
        ));
        assert_eq!(
            decide_pruning(&s, &ended, at(111)),
            Pruning::At(at(170)),
            "{phase}"
        );
        assert_eq!(
            decide_pruning(&s, &ended, at(170)),
            Pruning::Delete,
            "{phase}"
        );
        assert_eq!(
            decide_pruning(&s, &ended, at(5_000)),
            Pruning::Delete,
            "{phase}"
        );
    }
    let ended = status("phase: Failed\ncompletionTime: '1970-01-01T00:01:50Z'");
    assert_eq!(
        decide_pruning(
            &spec("image: busybox\ndeleteAfterSeconds: 0"),
            &ended,
            at(110)
        ),
        Pruning::Delete
    );
    let year = spec("image: busybox\ndeleteAfterSeconds: 31536000");
    assert_eq!(
        decide_pruning(&year, &ended, at(111)).due_at(),
        Some(at(110 + 31_536_000))
    );
}

#[test]
fn a_final_phase_never_changes() {
    let recorded = status("phase: Succeeded\ncompletionTime: '1970-01-01T00:01:50Z'");
    let s = spec("image: busybox\ncancel: true\ncleanup: Never");
    assert_eq!(
        decide_at(&s, &recorded, None, 200),
        Action::Wait { until: None }
    );
    let c = container(exited(0, 100, 110));
    assert_eq!(
        decide_at(&s, &recorded, Some(&c), 200),
        Action::Wait { until: None }
    );
}

#[test]
fn a_run_held_up_by_the_daemon_records_running_again_once_it_answers() {
    let c = container(ContainerState::Running {
        started_at: at(100),
    });
    let held = status("phase: Running\nreason: DaemonUnavailable\ncontainerId: c1");
    assert_eq!(
        decide_at(&spec("image: busybox"), &held, Some(&c), 150),
        Action::RecordRunning {
            container_id: "c1".into(),
            started_at: at(100),
            deadline: None
        }
    );
}

#[test]
fn a_sigkill_under_a_memory_limit_waits_for_the_oom_report_before_recording() {
    let s = spec("image: busybox\nresources: {limits: {memory: 32Mi}}");
    let c = container(exited(137, 100, 110));
    assert_eq!(
        decide_at(&s, &status(RUNNING), Some(&c), 111),
        Action::Wait {
            until: Some(at(125))
        }
    );
    let Action::RecordExit { ending, .. } = decide_at(&s, &status(RUNNING), Some(&c), 125) else {
        panic!()
    };
    assert_eq!(
        (ending.reason, ending.exit_code),
        (Reason::Error, Some(137))
    );
}

#[test]
fn a_sigkill_the_agent_sent_is_recorded_without_waiting_for_an_oom_report() {
    let s = spec("image: busybox\ncancel: true\nresources: {limits: {memory: 32Mi}}");
    let c = container(exited(137, 100, 110));
    let Action::RecordExit { ending, .. } = decide_at(&s, &status(RUNNING), Some(&c), 111) else {
        panic!()
    };
    assert_eq!(ending.reason, Reason::Cancelled);
    let s = spec("image: busybox\ntimeoutSeconds: 5\nresources: {limits: {memory: 32Mi}}");
    let Action::RecordExit { ending, .. } = decide_at(&s, &status(RUNNING), Some(&c), 111) else {
        panic!()
    };
    assert_eq!(ending.reason, Reason::DeadlineExceeded);
}

#[test]
fn a_run_started_on_another_node_is_never_called_lost_by_this_one() {
    let started_elsewhere = status(&format!("{RUNNING}\nnodeName: other"));
    let Action::RecordEnd(ending) =
        decide_at(&spec("image: busybox"), &started_elsewhere, None, 200)
    else {
        panic!()
    };
    assert_eq!(ending.reason, Reason::NodeLost);
    assert!(ending.message.contains("node other"), "{}", ending.message);
    let started_here = status(&format!("{RUNNING}\nnodeName: n"));
    let Action::RecordEnd(ending) = decide_at(&spec("image: busybox"), &started_here, None, 200)
    else {
        panic!()
    };
    assert_eq!(ending.reason, Reason::ContainerLost);
}

#[test]
fn a_sigkill_exit_says_who_may_have_sent_it() {
    let c = container(exited(137, 100, 110));
    let Action::RecordExit { ending, .. } =
        decide_at(&spec("image: busybox"), &status(RUNNING), Some(&c), 120)
    else {
        panic!()
    };
    assert_eq!(ending.reason, Reason::Error);
    assert!(ending.message.contains("SIGKILL"), "{}", ending.message);
}

fn decide_with(
    spec: &TaskRunSpec,
    status: &TaskRunStatus,
    container: Option<&ObservedContainer>,
    previous: Option<&ObservedContainer>,
    now: i64,
) -> Action {
    decide(Observed {
        uid: UID,
        node: "n",
        spec,
        status,
        created: at(0),
        container,
        previous,
        now: at(now),
    })
}

fn attempt_container(attempt: u32, state: ContainerState) -> ObservedContainer {
    let mut c = container(state);
    c.name = crate::docker::attempt_container_name(UID, attempt);
    c.id = format!("c{attempt}");
    if let Some(owner) = c.owner.as_mut() {
        owner.attempt = attempt;
    }
    c
}

/// Attempt 2 waiting after attempt 1 failed at 110 s.
const BACKING_OFF: &str = "phase: Pending\nreason: BackOff\nattempt: 2\npreviousAttempts: [{attempt: 1, nodeName: n, exitCode: 1, reason: Error, startTime: '1970-01-01T00:01:40Z', completionTime: '1970-01-01T00:01:50Z'}]";

const RETRIED: &str = "image: busybox\nretries: {limit: 2, backoff: {seconds: 10, maxSeconds: 15}}";

#[test]
fn the_back_off_doubles_up_to_its_cap_with_a_little_jitter_from_the_uid() {
    let s = spec(RETRIED);
    let next = |failed, ended| retry_time(UID, &s, failed, at(ended));
    for (failed, base) in [(1, 10), (2, 15), (3, 15)] {
        let wait = next(failed, 110).duration_since(at(111)).as_secs_f64();
        assert!(
            wait >= f64::from(base) && wait <= f64::from(base) * 1.1,
            "attempt {failed} waits {wait}"
        );
    }
    assert_eq!(
        next(1, 110),
        next(1, 110),
        "every agent computes the same time"
    );
    assert_ne!(
        retry_time("another-uid", &s, 1, at(110)),
        next(1, 110),
        "runs that failed together do not retry together"
    );
}

#[test]
fn a_retried_failure_waits_for_its_back_off_then_launches_the_next_attempt() {
    let s = spec(RETRIED);
    let backing_off = status(BACKING_OFF);
    let at_time = next_attempt_at(UID, &s, &backing_off).unwrap();
    assert!(at_time >= at(121), "{at_time}");
    assert_eq!(
        decide_with(&s, &backing_off, None, None, 115),
        Action::Wait {
            until: Some(at_time)
        }
    );
    assert_eq!(
        decide_with(&s, &backing_off, None, None, at_time.as_second() + 1),
        Action::Launch
    );
}

#[test]
fn the_previous_attempts_container_is_stopped_before_and_removed_as_cleanup_says() {
    let backing_off = status(BACKING_OFF);
    let still_running = attempt_container(
        1,
        ContainerState::Running {
            started_at: at(100),
        },
    );
    assert_eq!(
        decide_with(
            &spec(RETRIED),
            &backing_off,
            None,
            Some(&still_running),
            200
        ),
        Action::StopPrevious {
            grace: Duration::from_secs(10)
        }
    );
    let exited_first = attempt_container(1, exited(1, 100, 110));
    let always = spec(&format!("{RETRIED}\ncleanup: Always"));
    assert_eq!(
        decide_with(&always, &backing_off, None, Some(&exited_first), 200),
        Action::RemovePrevious
    );
    assert_eq!(
        decide_with(&spec(RETRIED), &backing_off, None, Some(&exited_first), 200),
        Action::Launch,
        "OnSuccess keeps a failed attempt's container until the run ends"
    );
    let succeeded = status(
        "phase: Succeeded\nattempt: 2\ncompletionTime: '1970-01-01T00:03:00Z'\npreviousAttempts: [{attempt: 1, reason: Error, completionTime: '1970-01-01T00:01:50Z'}]",
    );
    assert_eq!(
        decide_with(&spec(RETRIED), &succeeded, None, Some(&exited_first), 200),
        Action::Remove,
        "a success removes the earlier attempts' containers too"
    );
}

#[test]
fn the_current_attempts_container_is_the_one_decided_on() {
    let s = spec(RETRIED);
    let second = attempt_container(2, exited(0, 130, 135));
    let Action::RecordExit {
        ending,
        container_id,
    } = decide_with(&s, &status(BACKING_OFF), Some(&second), None, 140)
    else {
        panic!()
    };
    assert_eq!(
        (ending.reason, container_id.as_str()),
        (Reason::Completed, "c2")
    );
}

#[test]
fn which_endings_start_another_attempt() {
    let ended = |reason, exit_code, retryable| Ending {
        phase: Phase::Failed,
        reason,
        message: String::new(),
        exit_code,
        started_at: None,
        finished_at: at(110),
        retryable,
    };
    let first = status("phase: Running");
    let retry = |spec_yaml: &str, ending: &Ending| {
        after_attempt(UID, &spec(spec_yaml), &first, at(0), ending).is_some()
    };
    let error = ended(Reason::Error, Some(1), true);
    assert!(retry(RETRIED, &error));
    assert!(!retry("image: busybox", &error), "no retries asked for");
    assert!(!retry("image: busybox\nretries: {limit: 0}", &error));
    assert!(
        !retry(&format!("{RETRIED}\ncancel: true"), &error),
        "a cancel is never retried"
    );
    assert!(!retry(RETRIED, &ended(Reason::OomKilled, Some(137), true)));
    assert!(retry(
        "image: busybox\nretries: {limit: 1, reasons: [OOMKilled]}",
        &ended(Reason::OomKilled, Some(137), true)
    ));
    assert!(
        !retry(
            "image: busybox\nretries: {limit: 1, reasons: [StartFailed]}",
            &ended(Reason::StartFailed, None, false)
        ),
        "input errors are never retried"
    );
    assert!(!retry(
        "image: busybox\nretries: {limit: 1, exitCodes: [2, 3]}",
        &error
    ));
    assert!(retry(
        "image: busybox\nretries: {limit: 1, exitCodes: [1]}",
        &error
    ));
    let cancelled = Ending {
        phase: Phase::Cancelled,
        ..ended(Reason::Cancelled, None, true)
    };
    assert!(!retry(
        "image: busybox\nretries: {limit: 1, reasons: [Error, NodeLost, ContainerLost]}",
        &cancelled
    ));
    let last = status("phase: Running\nattempt: 3");
    assert!(
        after_attempt(UID, &spec(RETRIED), &last, at(0), &error).is_none(),
        "no attempts left"
    );
    assert!(
        after_attempt(
            UID,
            &spec(&format!("{RETRIED}\nactiveDeadlineSeconds: 115")),
            &first,
            at(0),
            &error
        )
        .is_none(),
        "the next attempt would start after activeDeadlineSeconds"
    );
}

#[test]
fn launch_failures_that_are_the_specs_fault_are_never_retried() {
    let s = spec("image: busybox");
    let retryable = |failure| launch_failed(failure, &s, "n", at(1)).retryable;
    assert!(retryable(LaunchFailure::PullFailed("timeout".into())));
    assert!(retryable(LaunchFailure::StartFailed(
        "oci runtime error".into()
    )));
    assert!(!retryable(LaunchFailure::StartFailed(
        "task 1: already exists".into()
    )));
    assert!(!retryable(LaunchFailure::InvalidImage("bad".into())));
    assert!(!retryable(LaunchFailure::ImageMissing));
    assert!(!retryable(LaunchFailure::ImageGone("gone".into())));
    assert!(!retryable(LaunchFailure::InvalidLimit("12Qi".into())));
    assert!(!retryable(LaunchFailure::CreateFailed("bad dir".into())));
    assert!(!retryable(LaunchFailure::PolicyViolation("policy".into())));
    assert!(!retryable(LaunchFailure::RunsAsRoot("root".into())));
    let policy = launch_failed(LaunchFailure::PolicyViolation("p".into()), &s, "n", at(1));
    assert_eq!(
        (policy.phase, policy.reason),
        (Phase::Failed, Reason::PolicyViolation)
    );
    let root = launch_failed(LaunchFailure::RunsAsRoot("r".into()), &s, "n", at(1));
    assert_eq!(root.reason, Reason::StartFailed);
}

#[test]
fn a_run_not_started_within_its_pending_timeout_fails_pending_timeout() {
    let s = spec("image: busybox\npendingTimeoutSeconds: 30");
    assert_eq!(
        decide_unclaimed(&s, &status("{}"), at(0), at(10)),
        Action::Wait {
            until: Some(at(30))
        }
    );
    let Action::RecordEnd(ending) = decide_unclaimed(&s, &status("{}"), at(0), at(30)) else {
        panic!()
    };
    assert_eq!(
        (ending.phase, ending.reason, ending.retryable),
        (Phase::Failed, Reason::PendingTimeout, false)
    );
    let Action::RecordEnd(ending) = decide_at(&s, &status("{}"), None, 31) else {
        panic!()
    };
    assert_eq!(ending.reason, Reason::PendingTimeout);
    let created = container(ContainerState::Created { error: None });
    let Action::RecordEnd(ending) = decide_at(&s, &status("{}"), Some(&created), 31) else {
        panic!()
    };
    assert_eq!(ending.reason, Reason::PendingTimeout);
    let running = container(ContainerState::Running { started_at: at(20) });
    assert_eq!(
        decide_at(&s, &status(RUNNING), Some(&running), 40),
        Action::Wait { until: None },
        "a started container is past waiting"
    );
    assert_eq!(
        pending_deadline(&s, &status(BACKING_OFF), at(0)),
        Some(at(140)),
        "a later attempt's wait counts from the previous attempt's end"
    );
    assert_eq!(
        decide_unclaimed(&spec("image: busybox"), &status("{}"), at(0), at(10)),
        Action::Wait { until: None }
    );
}

#[test]
fn the_active_deadline_stops_a_running_attempt_and_ends_the_run_for_good() {
    let s = spec(&format!(
        "{RETRIED}\nactiveDeadlineSeconds: 60\ntimeoutSeconds: 100"
    ));
    let running = container(ContainerState::Running { started_at: at(20) });
    assert_eq!(
        decide_at(&s, &status(RUNNING), Some(&running), 30),
        Action::Wait {
            until: Some(at(60))
        }
    );
    assert_eq!(
        decide_at(&s, &status(RUNNING), Some(&running), 60),
        Action::Stop {
            cause: StopCause::ActiveDeadlineExceeded,
            grace: Duration::from_secs(10)
        }
    );
    let stopped = container(exited(143, 20, 61));
    let Action::RecordExit { ending, .. } = decide_at(&s, &status(RUNNING), Some(&stopped), 62)
    else {
        panic!()
    };
    assert_eq!(ending.reason, Reason::ActiveDeadlineExceeded);
    assert!(
        after_attempt(UID, &s, &status(RUNNING), at(0), &ending).is_none(),
        "no further attempt"
    );
    let Action::RecordEnd(ending) = decide_with(&s, &status(BACKING_OFF), None, None, 60) else {
        panic!()
    };
    assert_eq!(ending.reason, Reason::ActiveDeadlineExceeded);
}

mod properties {
    use proptest::prelude::*;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn time() -> impl Strategy<Value = Timestamp> {
        (0i64..1_000).prop_map(at)
    }

    fn spec() -> impl Strategy<Value = TaskRunSpec> {
        (
            any::<bool>(),
            proptest::option::of(1i64..100),
            prop_oneof![
                Just(CleanupPolicy::Always),
                Just(CleanupPolicy::OnSuccess),
                Just(CleanupPolicy::Never)
            ],
            proptest::option::of(0i64..100),
            any::<bool>(),
            proptest::option::of((
                0i32..4,
                proptest::collection::vec(0usize..7, 0..3),
                1i64..20,
            )),
            proptest::option::of(1i64..500),
            proptest::option::of(1i64..500),
        )
            .prop_map(
                |(cancel, timeout, cleanup, ttl, memory, retries, pending, active)| {
                    let mut spec = TaskRunSpec::for_image("busybox");
                    spec.retries = retries.map(|(limit, on, seconds)| {
                        Box::new(crate::api::RetryPolicy {
                            limit,
                            reasons: on
                                .into_iter()
                                .map(|i| {
                                    use crate::api::RetryReason::*;
                                    [
                                        Error,
                                        OomKilled,
                                        DeadlineExceeded,
                                        ImagePullFailed,
                                        StartFailed,
                                        ContainerLost,
                                        NodeLost,
                                    ][i]
                                })
                                .collect(),
                            exit_codes: Vec::new(),
                            backoff: Some(crate::api::Backoff {
                                seconds,
                                max_seconds: 40,
                            }),
                        })
                    });
                    spec.pending_timeout_seconds = pending;
                    spec.active_deadline_seconds = active;
                    spec.cancel = cancel;
                    spec.timeout_seconds = timeout;
                    spec.cleanup = cleanup;
                    spec.ttl_seconds_after_finished = ttl;
                    if memory {
                        spec.resources = serde_yaml::from_str("limits: {memory: 32Mi}").ok();
                    }
                    spec
                },
            )
    }

    fn phase() -> impl Strategy<Value = Option<Phase>> {
        proptest::option::of(prop_oneof![
            Just(Phase::Pending),
            Just(Phase::Running),
            Just(Phase::Succeeded),
            Just(Phase::Failed),
            Just(Phase::Cancelled),
        ])
    }

    fn status() -> impl Strategy<Value = TaskRunStatus> {
        (
            phase(),
            proptest::option::of(Just("c1".to_string())),
            proptest::option::of(prop_oneof![
                Just("n".to_string()),
                Just("other".to_string())
            ]),
            proptest::option::of(time()),
            proptest::option::of(time()),
            (1i32..4, time()),
        )
            .prop_map(
                |(phase, container_id, node_name, started, completed, (attempt, ended))| {
                    let previous_attempts = (1..attempt)
                        .map(|a| crate::api::AttemptRecord {
                            attempt: a,
                            node_name: Some("n".into()),
                            exit_code: Some(1),
                            reason: Reason::Error,
                            start_time: None,
                            completion_time: Time(ended),
                            message: String::new(),
                        })
                        .collect();
                    TaskRunStatus {
                        phase,
                        container_id,
                        node_name,
                        start_time: started.map(Time),
                        completion_time: completed.map(Time),
                        attempt: Some(attempt),
                        previous_attempts,
                        ..TaskRunStatus::default()
                    }
                },
            )
    }

    fn state() -> impl Strategy<Value = ContainerState> {
        prop_oneof![
            proptest::option::of(Just("start failed".to_string()))
                .prop_map(|error| ContainerState::Created { error }),
            time().prop_map(|started_at| ContainerState::Running { started_at }),
            (
                -1i64..256,
                any::<bool>(),
                proptest::option::of(time()),
                proptest::option::of(time()),
                proptest::option::of(Just("failed".to_string())),
            )
                .prop_map(|(exit_code, oom_killed, started_at, finished_at, error)| {
                    ContainerState::Exited {
                        exit_code,
                        oom_killed,
                        started_at,
                        finished_at,
                        error,
                    }
                }),
        ]
    }

    fn observed_container() -> impl Strategy<Value = Option<ObservedContainer>> {
        proptest::option::of((state(), any::<bool>()).prop_map(|(state, ours)| {
            let mut observed = container(state);
            if !ours {
                observed.owner = None;
            }
            observed
        }))
    }

    proptest! {
        #[test]
        fn decide_never_panics_never_loops_and_never_reopens_an_ended_run(
            spec in spec(),
            status in status(),
            container in observed_container(),
            previous in observed_container(),
            now in time(),
        ) {
            let action = decide(Observed {
                uid: UID,
                node: "n",
                spec: &spec,
                status: &status,
                created: at(0),
                container: container.as_ref(),
                previous: previous.as_ref(),
                now,
            });
            if let Action::Wait { until: Some(until) } = &action {
                prop_assert!(*until > now, "a wait that is already over loops: {action:?}");
            }
            if status.phase().is_final() {
                prop_assert!(
                    matches!(
                        action,
                        Action::Wait { .. }
                            | Action::Remove
                            | Action::Stop { cause: StopCause::AlreadyEnded, .. }
                            | Action::StopPrevious { .. }
                    ),
                    "an ended run changed: {action:?}"
                );
            }
            // What the step records: the attempt never goes back, a final phase never
            // changes, and a new attempt is counted only once the last one was recorded.
            let ending = match &action {
                Action::RecordExit { ending, .. } | Action::RecordEnd(ending) => Some(ending),
                _ => None,
            };
            if let Some(ending) = ending {
                let next_at = after_attempt(UID, &spec, &status, at(0), ending);
                let location = crate::lifecycle::status::Location {
                    node: "n",
                    container_name: "taskrun-uid-1",
                    generation: None,
                };
                let next = crate::lifecycle::status::concluded(
                    &status, location, ending, None, None, next_at, now,
                );
                prop_assert!(next.attempt() >= status.attempt());
                if next.phase().is_final() {
                    prop_assert_eq!(next.attempt(), status.attempt());
                } else {
                    prop_assert_eq!(next.attempt(), status.attempt() + 1);
                    prop_assert!(next.attempt() <= spec.max_attempts());
                    prop_assert_eq!(
                        next.previous_attempts.last().map(|r| r.attempt),
                        i32::try_from(status.attempt()).ok()
                    );
                    prop_assert!(next_attempt_at(UID, &spec, &next).is_some_and(|t| t > ending.finished_at));
                }
            }
            match &action {
                Action::Launch => {
                    prop_assert!(container.is_none(), "a second container");
                    let previous_running = previous.as_ref().is_some_and(|p| {
                        p.owner.is_some() && matches!(p.state, ContainerState::Running { .. })
                    });
                    prop_assert!(!previous_running, "launched while the last attempt runs");
                    prop_assert!(
                        next_attempt_at(UID, &spec, &status).is_none_or(|t| t <= now),
                        "launched before the back-off ended"
                    );
                }
                Action::Start { .. } => {
                    let startable = matches!(
                        container.as_ref().map(|c| (&c.state, c.owner.is_some())),
                        Some((ContainerState::Created { error: None }, true))
                    );
                    prop_assert!(startable, "started {container:?}");
                }
                Action::RecordRunning { .. } | Action::RecordExit { .. } | Action::Stop { .. } => {
                    prop_assert!(container.as_ref().is_some_and(|c| c.owner.is_some()))
                }
                Action::RecordEnd(ending) => prop_assert!(ending.phase.is_final()),
                Action::StopPrevious { .. } | Action::RemovePrevious => {
                    prop_assert!(previous.as_ref().is_some_and(|p| p.owner.is_some()))
                }
                Action::Remove | Action::Wait { .. } => {}
            }
        }
    }
}
