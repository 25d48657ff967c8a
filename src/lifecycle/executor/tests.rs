//! The executor against the in-memory Docker daemon (`FakeDaemon`): the calls each action makes,
//! what the daemon's refusals and silences do to a run, and the containers it creates. The real
//! daemon is left to the end-to-end tests.

use std::sync::Arc;

use jiff::Timestamp;

use super::*;
use crate::api::{Phase, Reason, TaskRunSpec, TaskRunStatus};
use crate::docker::ContainerState;
use crate::docker::fake::{Answer, FakeDaemon, image_id};

const UID: &str = "u1";
const NAME: &str = "taskrun-u1";

fn executor(fake: &Arc<FakeDaemon>) -> Executor {
    Executor::new(
        fake.clone(),
        "node-a",
        Duration::from_secs(5),
        OutputLimits::default(),
    )
}

fn spec(yaml: &str) -> TaskRunSpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn run<'a>(spec: &'a TaskRunSpec, status: &'a TaskRunStatus) -> Run<'a> {
    Run {
        namespace: "team",
        name: "hello",
        uid: UID,
        generation: Some(1),
        created: Timestamp::UNIX_EPOCH,
        spec,
        status,
        inputs: None,
        prepared: None,
        policy: None,
    }
}

async fn perform(
    fake: &Arc<FakeDaemon>,
    spec_yaml: &str,
    action: Action,
) -> Result<Outcome, DockerError> {
    let spec = spec(spec_yaml);
    let status = TaskRunStatus::default();
    executor(fake)
        .perform(run(&spec, &status), action, Timestamp::UNIX_EPOCH)
        .await
}

fn ended_with(outcome: &Outcome) -> (Option<Phase>, Option<Reason>, String) {
    let status = outcome.status.as_ref().expect("a status");
    (
        status.phase,
        status.reason,
        status.message.clone().unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_launch_with_the_image_present_creates_and_starts_without_pulling() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    let outcome = perform(&fake, "image: busybox\ntimeoutSeconds: 30", Action::Launch)
        .await
        .unwrap();
    assert_eq!(
        fake.calls(),
        [
            "inspect_image busybox",
            "create taskrun-u1",
            "start taskrun-u1"
        ]
    );
    let status = outcome.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Running));
    assert_eq!(status.container_id.as_deref(), Some("id-taskrun-u1"));
    assert_eq!(status.node_name.as_deref(), Some("node-a"));
    assert!(outcome.recheck_at.is_some(), "looks again at the deadline");
    assert!(matches!(
        outcome.transition,
        Some(Transition::Started { .. })
    ));
}

#[tokio::test]
async fn the_container_carries_the_limits_labels_and_log_cap_of_the_spec() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    perform(
        &fake,
        "image: busybox\nenv: [{name: A, value: b}]\nresources: {limits: {cpu: 250m, memory: 64Mi}}",
        Action::Launch,
    )
    .await
    .unwrap();
    let template = fake.state().containers[NAME].template.clone();
    assert_eq!(template.nano_cpus, Some(250_000_000));
    assert_eq!(template.memory_bytes, Some(64 << 20));
    assert_eq!(template.log_max_bytes, DEFAULT_CONTAINER_LOG_BYTES);
    let env: Vec<(&str, &str)> = template
        .env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("A", "b"),
            ("TASKRUN_ATTEMPT", "1"),
            ("TASKRUN_NAME", "hello"),
            ("TASKRUN_NAMESPACE", "team")
        ]
    );
    assert_eq!(template.owner.uid, UID);
    assert_eq!(template.owner.node, "node-a");
}

#[tokio::test]
async fn a_limit_that_is_not_a_quantity_never_reaches_docker_as_no_limit() {
    for limits in ["{cpu: lots}", "{memory: 12Qi}"] {
        let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
        let outcome = perform(
            &fake,
            &format!("image: busybox\nresources: {{limits: {limits}}}"),
            Action::Launch,
        )
        .await
        .unwrap();
        let (phase, reason, message) = ended_with(&outcome);
        assert_eq!(
            (phase, reason),
            (Some(Phase::Failed), Some(Reason::StartFailed))
        );
        assert!(message.contains("is not a quantity"), "{message}");
        assert!(
            fake.state().containers.is_empty(),
            "no container for {limits}"
        );
    }
}

#[tokio::test]
async fn missing_images_are_pulled_unless_the_policy_is_never() {
    let fake = Arc::new(FakeDaemon::default());
    fake.state().pullable.insert("tool".into());
    let outcome = perform(&fake, "image: tool", Action::Launch).await.unwrap();
    assert_eq!(ended_with(&outcome).0, Some(Phase::Running));
    assert_eq!(fake.calls()[..2], ["inspect_image tool", "pull tool"]);

    let fake = Arc::new(FakeDaemon::default());
    let outcome = perform(&fake, "image: tool\nimagePullPolicy: Never", Action::Launch)
        .await
        .unwrap();
    let (phase, reason, message) = ended_with(&outcome);
    assert_eq!(
        (phase, reason),
        (Some(Phase::Failed), Some(Reason::ImageNotPresent))
    );
    assert!(message.contains("node-a"), "{message}");
    assert_eq!(fake.calls(), ["inspect_image tool"]);

    let fake = Arc::new(FakeDaemon::default());
    let outcome = perform(
        &fake,
        "image: tool\nimagePullPolicy: Always",
        Action::Launch,
    )
    .await
    .unwrap();
    let (_, reason, message) = ended_with(&outcome);
    assert_eq!(reason, Some(Reason::ImagePullFailed));
    assert!(message.contains("pull access denied"), "{message}");
}

#[tokio::test]
async fn a_refused_image_reference_ends_the_run_and_a_silent_daemon_is_retried() {
    let fake = Arc::new(FakeDaemon::default());
    fake.state().answers.insert(
        "inspect_image",
        Answer::Status(400, "invalid reference format".into()),
    );
    let outcome = perform(&fake, "image: tool", Action::Launch).await.unwrap();
    assert_eq!(ended_with(&outcome).1, Some(Reason::InvalidImage));

    for answer in [Answer::Status(500, "internal".into()), Answer::Unreachable] {
        let fake = Arc::new(FakeDaemon::default());
        fake.state().answers.insert("inspect_image", answer.clone());
        let failed = perform(&fake, "image: tool", Action::Launch).await;
        assert!(
            failed.is_err(),
            "{answer:?} is the daemon's trouble, retried"
        );
    }

    let fake = Arc::new(FakeDaemon::default());
    fake.state().answers.insert(
        "pull",
        Answer::Status(400, "invalid reference format".into()),
    );
    let outcome = perform(
        &fake,
        "image: tool\nimagePullPolicy: Always",
        Action::Launch,
    )
    .await
    .unwrap();
    assert_eq!(ended_with(&outcome).1, Some(Reason::InvalidImage));
}

#[tokio::test]
async fn a_container_left_by_an_earlier_pass_is_looked_at_again_not_recreated() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    perform(&fake, "image: busybox", Action::Launch)
        .await
        .unwrap();
    let again = perform(&fake, "image: busybox", Action::Launch)
        .await
        .unwrap();
    assert_eq!(again.status, None);
    assert!(again.recheck_now);
    assert_eq!(fake.state().containers.len(), 1);
}

#[tokio::test]
async fn a_start_the_daemon_refuses_fails_the_run_with_its_words() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    fake.state().answers.insert(
        "start",
        Answer::Status(
            500,
            "OCI runtime create failed: exec: \"nope\": not found".into(),
        ),
    );
    let outcome = perform(&fake, "image: busybox", Action::Launch)
        .await
        .unwrap();
    let (phase, reason, message) = ended_with(&outcome);
    assert_eq!(
        (phase, reason),
        (Some(Phase::Failed), Some(Reason::StartFailed))
    );
    assert!(message.contains("OCI runtime create failed"), "{message}");
    assert!(outcome.recheck_now, "looks again to clean up the container");

    fake.state().answers.insert("start", Answer::Unreachable);
    let retried = perform(
        &fake,
        "image: busybox",
        Action::Start {
            container_id: "id-taskrun-u1".into(),
        },
    )
    .await;
    assert!(retried.is_err());
}

#[tokio::test]
async fn an_exit_is_recorded_with_the_output_tail() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    fake.state().output = "last words\n".into();
    let ending = Ending {
        phase: Phase::Failed,
        reason: Reason::Error,
        message: "exited with code 3".into(),
        exit_code: Some(3),
        started_at: None,
        finished_at: Timestamp::UNIX_EPOCH,
        retryable: true,
    };
    let outcome = perform(
        &fake,
        "image: busybox",
        Action::RecordExit {
            ending,
            container_id: "c1".into(),
        },
    )
    .await
    .unwrap();
    let status = outcome.status.unwrap();
    assert_eq!(status.exit_code, Some(3));
    assert_eq!(status.log_tail.as_deref(), Some("last words\n"));
    assert_eq!(fake.calls(), ["logs taskrun-u1"]);
}

#[tokio::test]
async fn the_recorded_tail_is_as_long_as_the_agent_was_told() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    fake.state().output = "first line\nlast line\n".into();
    let ending = Ending {
        phase: Phase::Succeeded,
        reason: Reason::Completed,
        message: "exited with code 0".into(),
        exit_code: Some(0),
        started_at: None,
        finished_at: Timestamp::UNIX_EPOCH,
        retryable: false,
    };
    let spec = spec("image: busybox");
    let status = TaskRunStatus::default();
    let record = Action::RecordExit {
        ending,
        container_id: "c1".into(),
    };
    let limited = |tail_bytes| {
        Executor::new(
            fake.clone(),
            "node-a",
            Duration::from_secs(5),
            OutputLimits {
                tail_bytes,
                ..OutputLimits::default()
            },
        )
    };
    let short = limited(10)
        .perform(run(&spec, &status), record.clone(), Timestamp::UNIX_EPOCH)
        .await
        .unwrap();
    assert_eq!(
        short.status.unwrap().log_tail.as_deref(),
        Some("last line\n")
    );
    assert_eq!(fake.calls(), ["logs taskrun-u1"]);

    let none = limited(0)
        .perform(run(&spec, &status), record, Timestamp::UNIX_EPOCH)
        .await
        .unwrap();
    let none = none.status.unwrap();
    assert_eq!(none.phase, Some(Phase::Succeeded));
    assert_eq!(none.log_tail, None);
    assert_eq!(
        fake.calls(),
        ["logs taskrun-u1"],
        "no second read of the logs"
    );
}

#[tokio::test]
async fn deletion_stops_and_removes_only_the_runs_own_container() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    perform(&fake, "image: busybox", Action::Launch)
        .await
        .unwrap();
    let executor = executor(&fake);
    let observed = executor.observe(UID, 1).await.unwrap().current;
    assert!(matches!(
        observed.as_ref().map(|c| &c.state),
        Some(ContainerState::Running { .. })
    ));
    let spec = spec("image: busybox\nterminationGracePeriodSeconds: 3");
    let deletion = super::super::decide_deletion(UID, &spec, observed.as_ref());
    assert_eq!(
        deletion,
        Deletion::Remove {
            container_id: "id-taskrun-u1".into(),
            grace: Duration::from_secs(3)
        }
    );
    assert!(executor.delete(UID, 1, deletion).await.unwrap());
    assert!(fake.state().containers.is_empty());

    let foreign = super::super::decide_deletion("other-uid", &spec, observed.as_ref());
    assert_eq!(foreign, Deletion::Nothing);
}

#[tokio::test]
async fn a_start_reported_as_failed_that_went_through_is_looked_at_again_not_failed() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    perform(&fake, "image: busybox", Action::Launch)
        .await
        .unwrap();
    fake.state().answers.insert(
        "start",
        Answer::Status(500, "task 7f75303a: already exists".into()),
    );
    let outcome = perform(
        &fake,
        "image: busybox",
        Action::Start {
            container_id: "id-taskrun-u1".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(outcome.status, None, "the run is not failed");
    assert!(outcome.recheck_now);
}

#[tokio::test]
async fn a_start_the_runtime_already_holds_ends_the_run_without_starting_it_again() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    fake.state().answers.insert(
        "start",
        Answer::Status(500, "task 6861b862: already exists".into()),
    );
    let outcome = perform(&fake, "image: busybox", Action::Launch)
        .await
        .unwrap();
    let status = outcome.status.expect("the run ends");
    assert_eq!(
        (status.phase, status.reason),
        (Some(Phase::Failed), Some(Reason::StartFailed))
    );
    let message = status.message.unwrap_or_default();
    assert!(
        message.starts_with("task 6861b862: already exists"),
        "{message}"
    );
    assert!(message.contains("never runs twice"), "{message}");
}

/// Sees a run through on the fake daemon, as a controller's passes would, deciding each step
/// from what the fake shows; the final status and every status written on the way.
async fn run_through(
    fake: &Arc<FakeDaemon>,
    spec: &TaskRunSpec,
    exit_codes: &[i64],
) -> (TaskRunStatus, Vec<TaskRunStatus>) {
    let executor = executor(fake);
    let mut status = TaskRunStatus::default();
    let mut written = Vec::new();
    let mut exits = exit_codes.iter();
    for _ in 0..100 {
        let observation = executor.observe(UID, status.attempt()).await.unwrap();
        // The back-off passes at once: the test plays the clock forward.
        let now = crate::lifecycle::next_attempt_at(UID, spec, &status)
            .filter(|_| observation.current.is_none())
            .map_or_else(Timestamp::now, |at| at.max(Timestamp::now()));
        let action = crate::lifecycle::decide(crate::lifecycle::Observed {
            uid: UID,
            node: "node-a",
            spec,
            status: &status,
            created: Timestamp::UNIX_EPOCH,
            container: observation.current.as_ref(),
            previous: observation.previous.as_ref(),
            now,
        });
        if let Action::Wait { .. } = action {
            let running = observation
                .current
                .as_ref()
                .is_some_and(|c| matches!(c.state, ContainerState::Running { .. }));
            if !running {
                return (status, written);
            }
            fake.state().exit_code = *exits.next().unwrap_or(&0);
            executor.wait_for_exit(UID, status.attempt()).await.unwrap();
            continue;
        }
        let outcome = executor
            .perform(run(spec, &status), action, now)
            .await
            .unwrap();
        if let Some(next) = outcome.status {
            written.push(next.clone());
            status = next;
        }
    }
    panic!("the run never settled: {status:?}");
}

#[tokio::test]
async fn each_attempt_is_its_own_container_told_its_attempt_and_the_last_one_decides() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    let spec = spec("image: busybox\ncleanup: Never\nretries: {limit: 3, backoff: {seconds: 1}}");
    let (status, written) = run_through(&fake, &spec, &[1, 2, 0]).await;
    assert_eq!(
        (status.phase, status.reason, status.attempt()),
        (Some(Phase::Succeeded), Some(Reason::Completed), 3)
    );
    let records: Vec<_> = status
        .previous_attempts
        .iter()
        .map(|r| (r.attempt, r.reason, r.exit_code))
        .collect();
    assert_eq!(
        records,
        [(1, Reason::Error, Some(1)), (2, Reason::Error, Some(2))]
    );
    let creates: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("create"))
        .collect();
    assert_eq!(
        creates,
        [
            "create taskrun-u1",
            "create taskrun-u1-2",
            "create taskrun-u1-3"
        ]
    );
    let state = fake.state();
    let env = &state.containers["taskrun-u1-3"].template.env;
    for (name, value) in [
        ("TASKRUN_ATTEMPT", "3"),
        ("TASKRUN_NAME", "hello"),
        ("TASKRUN_NAMESPACE", "team"),
    ] {
        assert!(
            env.contains(&(name.to_string(), value.to_string())),
            "{env:?}"
        );
    }
    assert_eq!(state.containers["taskrun-u1-2"].template.owner.attempt, 2);
    let backoffs = written
        .iter()
        .filter(|s| s.reason == Some(Reason::BackOff))
        .count();
    assert_eq!(
        backoffs, 2,
        "each retry is recorded before the next attempt starts"
    );
}

#[tokio::test]
async fn cleanup_always_removes_each_attempts_container_and_limits_end_the_retries() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    let spec = spec("image: busybox\ncleanup: Always\nretries: {limit: 1, backoff: {seconds: 1}}");
    let (status, _) = run_through(&fake, &spec, &[5, 6]).await;
    assert_eq!(
        (
            status.phase,
            status.reason,
            status.exit_code,
            status.attempt()
        ),
        (Some(Phase::Failed), Some(Reason::Error), Some(6), 2)
    );
    assert!(
        fake.state().containers.is_empty(),
        "every attempt's container is gone"
    );
}

#[tokio::test]
async fn an_exit_code_outside_exit_codes_and_an_unlisted_reason_are_not_retried() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    let codes = spec("image: busybox\nretries: {limit: 3, exitCodes: [3], backoff: {seconds: 1}}");
    let (status, _) = run_through(&fake, &codes, &[4]).await;
    assert_eq!((status.exit_code, status.attempt()), (Some(4), 1));

    let fake = Arc::new(FakeDaemon::default());
    let unlisted = spec("image: missing\nretries: {limit: 3, backoff: {seconds: 1}}");
    let (status, _) = run_through(&fake, &unlisted, &[]).await;
    assert_eq!(
        (status.reason, status.attempt()),
        (Some(Reason::ImagePullFailed), 1),
        "a pull failure is retried only when listed"
    );
}

#[tokio::test]
async fn a_pull_failure_is_retried_when_listed() {
    let fake = Arc::new(FakeDaemon::default());
    let spec = spec(
        "image: missing\nretries: {limit: 2, reasons: [ImagePullFailed], backoff: {seconds: 1}}",
    );
    let (status, _) = run_through(&fake, &spec, &[]).await;
    assert_eq!(
        (
            status.reason,
            status.attempt(),
            status.previous_attempts.len()
        ),
        (Some(Reason::ImagePullFailed), 3, 2)
    );
    let pulls = fake
        .calls()
        .iter()
        .filter(|c| c.starts_with("pull"))
        .count();
    assert_eq!(pulls, 3);
}

fn resolved_inputs() -> Inputs {
    Inputs {
        env: vec![("PASSWORD".into(), "hunter2".into())],
        directories: vec![inputs::InputDirectory {
            path: "/etc/db".into(),
            mode: 0o755,
        }],
        files: vec![inputs::InputFile {
            path: "/etc/db/password".into(),
            mode: 0o400,
            contents: b"hunter2".to_vec(),
        }],
        scratch: vec![inputs::Scratch {
            path: "/scratch".into(),
            size_bytes: Some(8 << 20),
            read_only: false,
        }],
        registry_auth: Some(crate::docker::RegistryAuth {
            server: "127.0.0.1:5000".into(),
            username: "robot".into(),
            password: "s3cret".into(),
        }),
        extra_hosts: vec!["kubernetes.default.svc:172.17.0.1".into()],
    }
}

#[tokio::test]
async fn resolved_inputs_reach_the_pull_the_container_and_its_files_before_the_start() {
    let fake = Arc::new(FakeDaemon::default());
    fake.state().pullable.insert("127.0.0.1:5000/tool".into());
    let spec = spec(
        "image: 127.0.0.1:5000/tool\nenv: [{name: PASSWORD, valueFrom: {secretKeyRef: {name: db, key: pw}}}]",
    );
    let status = TaskRunStatus::default();
    let inputs = resolved_inputs();
    let outcome = executor(&fake)
        .perform(
            Run {
                inputs: Some(&inputs),
                ..run(&spec, &status)
            },
            Action::Launch,
            Timestamp::UNIX_EPOCH,
        )
        .await
        .unwrap();
    assert_eq!(ended_with(&outcome).0, Some(Phase::Running));
    assert_eq!(
        fake.calls(),
        [
            "inspect_image 127.0.0.1:5000/tool",
            "pull 127.0.0.1:5000/tool",
            "inspect_image 127.0.0.1:5000/tool",
            "create taskrun-u1",
            "upload taskrun-u1",
            "start taskrun-u1"
        ]
    );
    let state = fake.state();
    assert_eq!(state.pulled_with, inputs.registry_auth);
    let template = &state.containers[NAME].template;
    assert_eq!(
        template.image,
        image_id("127.0.0.1:5000/tool"),
        "created from the ID of the image inspected, not its tag"
    );
    assert_eq!(template.env[..inputs.env.len()], inputs.env[..]);
    assert_eq!(
        template.tmpfs,
        [(
            "/scratch".to_string(),
            "rw,exec,mode=1777,size=8388608".to_string()
        )]
    );
    assert_eq!(template.extra_hosts, inputs.extra_hosts);
    assert_eq!(
        state.archives[NAME],
        inputs::archive(&inputs).unwrap(),
        "the files went in as one archive"
    );
}

#[tokio::test]
async fn a_start_after_an_interrupted_launch_writes_the_files_again_and_a_refusal_fails_the_run() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    let spec = spec("image: busybox");
    let status = TaskRunStatus::default();
    let inputs = resolved_inputs();
    let run = Run {
        inputs: Some(&inputs),
        ..run(&spec, &status)
    };
    let executor = executor(&fake);
    let mut template = container_template(
        run,
        executor.owner(run),
        1 << 20,
        security::settle(run.spec, run.namespace, None, TASK_NETWORK).unwrap(),
    );
    template.image = image_id("busybox");
    fake.create_container(&template).await.unwrap();
    executor
        .perform(
            run,
            Action::Start {
                container_id: "id-taskrun-u1".into(),
            },
            Timestamp::UNIX_EPOCH,
        )
        .await
        .unwrap();
    assert_eq!(fake.calls()[1..], ["upload taskrun-u1", "start taskrun-u1"]);

    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    fake.state().answers.insert(
        "upload",
        Answer::Status(400, "cannot overwrite directory with non-directory".into()),
    );
    let outcome = super::Executor::new(
        fake.clone(),
        "node-a",
        Duration::from_secs(5),
        OutputLimits::default(),
    )
    .perform(run, Action::Launch, Timestamp::UNIX_EPOCH)
    .await
    .unwrap();
    let (phase, reason, message) = ended_with(&outcome);
    assert_eq!(
        (phase, reason),
        (Some(Phase::Failed), Some(Reason::StartFailed))
    );
    assert!(
        message.contains("files of the volumes") && message.contains("non-directory"),
        "{message}"
    );
    assert!(
        !fake.calls().iter().any(|c| c.starts_with("start")),
        "never started without its files"
    );
}

#[tokio::test]
async fn every_container_is_hardened_and_carries_its_security_context() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    perform(&fake, "image: busybox", Action::Launch)
        .await
        .unwrap();
    let hardened = fake.state().containers[NAME].template.security.clone();
    assert!(hardened.no_new_privileges);
    assert_eq!(hardened.pids_limit, 4096);
    assert_eq!(
        hardened.network_mode, "taskrun",
        "the operator's own bridge"
    );
    assert_eq!(hardened.cap_drop, ["NET_RAW"]);
    assert_eq!(hardened.user, None);

    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    perform(
        &fake,
        "image: busybox\nnetwork: None\nsecurityContext: {runAsUser: 1000, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}",
        Action::Launch,
    )
    .await
    .unwrap();
    let confined = fake.state().containers[NAME].template.security.clone();
    assert_eq!(confined.user.as_deref(), Some("1000"));
    assert!(confined.read_only_root);
    assert_eq!(confined.cap_drop, ["ALL"]);
    assert_eq!(confined.network_mode, "none");
}

#[tokio::test]
async fn bridge_tasks_join_the_default_bridge_only_where_it_keeps_them_apart() {
    for (isolating, picked) in [(false, "taskrun"), (true, "bridge")] {
        let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
        fake.state().isolating_bridge = isolating;
        let executor = executor(&fake);
        assert_eq!(executor.prepare_network().await.unwrap(), picked);
        let made = fake.calls().iter().any(|c| c.starts_with("network"));
        assert_eq!(
            made,
            !isolating,
            "the operator's network made: {:?}",
            fake.calls()
        );
        executor
            .perform(
                run(&spec("image: busybox"), &TaskRunStatus::default()),
                Action::Launch,
                Timestamp::UNIX_EPOCH,
            )
            .await
            .unwrap();
        assert_eq!(
            fake.state().containers[NAME].template.security.network_mode,
            picked
        );
    }
}

/// Launches `image: busybox` under the TaskRunPolicy `cluster` with `policy_yaml` as its spec.
async fn launch_under(fake: &Arc<FakeDaemon>, policy_yaml: &str) -> Outcome {
    let spec = spec("image: busybox");
    let status = TaskRunStatus::default();
    let policy =
        crate::api::TaskRunPolicy::new("cluster", serde_yaml::from_str(policy_yaml).unwrap());
    executor(fake)
        .perform(
            Run {
                policy: Some(&policy),
                ..run(&spec, &status)
            },
            Action::Launch,
            Timestamp::UNIX_EPOCH,
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_run_the_policy_refuses_touches_nothing_on_the_node() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    let outcome = launch_under(&fake, "allowedImages: [registry.example.com/**]").await;
    let (phase, reason, message) = ended_with(&outcome);
    assert_eq!(
        (phase, reason),
        (Some(Phase::Failed), Some(Reason::PolicyViolation))
    );
    assert_eq!(
        message,
        "TaskRunPolicy cluster: spec.image matches none of allowedImages"
    );
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[tokio::test]
async fn a_policy_default_limit_reaches_a_container_without_limits() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    launch_under(
        &fake,
        "defaultLimits: {cpu: 250m, memory: 32Mi}\npidsLimit: 64",
    )
    .await;
    let template = fake.state().containers[NAME].template.clone();
    assert_eq!(template.memory_bytes, Some(32 << 20));
    assert_eq!(template.nano_cpus, Some(250_000_000));
    assert_eq!(template.security.pids_limit, 64);
}

#[tokio::test]
async fn a_non_root_run_of_a_root_image_fails_before_any_container_exists() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox", "app"]));
    fake.state().image_users.insert("app".into(), "1000".into());
    let outcome = perform(
        &fake,
        "image: busybox\nsecurityContext: {runAsNonRoot: true}",
        Action::Launch,
    )
    .await
    .unwrap();
    let (phase, reason, message) = ended_with(&outcome);
    assert_eq!(
        (phase, reason),
        (Some(Phase::Failed), Some(Reason::StartFailed))
    );
    assert!(message.contains("image busybox runs as root"), "{message}");
    assert!(fake.state().containers.is_empty());

    let outcome = perform(
        &fake,
        "image: app\nsecurityContext: {runAsNonRoot: true}",
        Action::Launch,
    )
    .await
    .unwrap();
    assert_eq!(ended_with(&outcome).0, Some(Phase::Running));
}

#[tokio::test]
async fn an_image_whose_workdir_the_kernel_owns_fails_before_any_container_exists() {
    let fake = Arc::new(FakeDaemon::with_images(&["leaky"]));
    fake.state()
        .image_workdirs
        .insert("leaky".into(), "/proc/self/fd/8".into());
    let outcome = perform(&fake, "image: leaky", Action::Launch)
        .await
        .unwrap();
    let (phase, reason, message) = ended_with(&outcome);
    assert_eq!(
        (phase, reason),
        (Some(Phase::Failed), Some(Reason::StartFailed))
    );
    assert!(message.contains("WORKDIR \"/proc/self/fd/8\""), "{message}");
    assert!(fake.state().containers.is_empty());

    let outcome = perform(&fake, "image: leaky\nworkingDir: /work", Action::Launch)
        .await
        .unwrap();
    assert_eq!(
        ended_with(&outcome).0,
        Some(Phase::Running),
        "the spec's own working directory replaces the image's"
    );
}

#[tokio::test]
async fn an_empty_dir_without_a_size_is_bounded_by_the_runs_memory_limit() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    let spec = spec(
        "image: busybox\nresources: {limits: {memory: 64Mi}}\nvolumes: [{name: t, emptyDir: {}}]\nvolumeMounts: [{name: t, mountPath: /t}]",
    );
    let status = TaskRunStatus::default();
    let inputs = Inputs {
        scratch: vec![inputs::Scratch {
            path: "/t".into(),
            size_bytes: None,
            read_only: false,
        }],
        ..Inputs::default()
    };
    let run = Run {
        inputs: Some(&inputs),
        ..run(&spec, &status)
    };
    let outcome = executor(&fake)
        .perform(run, Action::Launch, Timestamp::UNIX_EPOCH)
        .await
        .unwrap();
    assert_eq!(ended_with(&outcome).0, Some(Phase::Running));
    assert_eq!(
        fake.state().containers[NAME].template.tmpfs,
        [(
            "/t".to_string(),
            "rw,exec,mode=1777,size=67108864".to_string()
        )]
    );
}

#[tokio::test]
async fn under_always_pull_images_a_cached_image_is_pulled_again_with_the_runs_credentials() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    let outcome = launch_under(&fake, "alwaysPullImages: true").await;
    let (phase, reason, _) = ended_with(&outcome);
    assert_eq!(
        (phase, reason),
        (Some(Phase::Failed), Some(Reason::ImagePullFailed)),
        "the node had it, but not for this run"
    );
    assert_eq!(fake.calls(), ["pull busybox"]);

    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    let outcome = launch_under(&fake, "{}").await;
    assert_eq!(ended_with(&outcome).0, Some(Phase::Running));
}

#[tokio::test]
async fn the_firewall_is_set_through_a_network_admin_container_and_its_refusal_is_an_error() {
    let fake = Arc::new(FakeDaemon::default());
    fake.state().pullable.insert("firewall".into());
    let denied: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
    executor(&fake)
        .enforce_egress("firewall", &denied)
        .await
        .unwrap();
    assert_eq!(
        fake.calls(),
        [
            "inspect_image firewall",
            "pull firewall",
            "inspect_network taskrun",
            "network_admin taskrun-firewall-node-a"
        ]
    );
    let (image, command) = fake.state().network_admin_commands[0].clone();
    assert_eq!(image, "firewall");
    assert_eq!(command[0], "nft");
    assert!(
        command[1].contains("iifname \"br-taskrun\" ip daddr @denied4")
            && command[1].contains("10.0.0.0/8"),
        "{}",
        command[1]
    );
    fake.state().exit_code = 1;
    fake.state().output = "Error: Could not process rule\n".into();
    let refused = executor(&fake).enforce_egress("firewall", &denied).await;
    let Err(DockerError::FirewallRefused { output, .. }) = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(output, "Error: Could not process rule");
}
