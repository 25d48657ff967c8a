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
        container,
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
            until: Some(at(115))
        }
    );
    let Action::RecordExit { ending, .. } = decide_at(&s, &status(RUNNING), Some(&c), 115) else {
        panic!()
    };
    assert_eq!(
        (ending.reason, ending.exit_code),
        (Reason::Error, Some(137))
    );
}
