//! Retries and deadlines end to end: attempts as containers of their own, counted from the
//! Docker events stream, across agent crashes, and each deadline with its own reason.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::query_parameters::{EventsOptionsBuilder, InspectContainerOptions};
use futures::StreamExt;
use jiff::Timestamp;
use kube::ResourceExt;
use taskrun_operator::api::{Phase, Reason, TaskRun};

use common::{ControllerProcess, TestNamespace, phase_is, reason_is, status};

/// The containers created for the namespace's TaskRuns, followed live from the Docker events
/// stream from the moment it is made: the daemon keeps only its last 1,024 events, which a busy
/// test run goes through in seconds.
struct Creations(
    Arc<Mutex<Vec<(String, String, String)>>>,
    tokio::task::JoinHandle<()>,
);

impl Creations {
    async fn follow(ns: &TestNamespace) -> Self {
        let docker = common::docker().await;
        let filters = HashMap::from([
            ("type", vec!["container".to_string()]),
            ("event", vec!["create".to_string()]),
            ("label", vec![format!("taskrun.dev/namespace={}", ns.name)]),
        ]);
        // From this second on, so nothing between here and the stream's first poll is missed.
        let since = Timestamp::now().as_second().to_string();
        let options = EventsOptionsBuilder::default()
            .since(&since)
            .filters(&filters)
            .build();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let mut events = docker.events(Some(options));
        let following = tokio::spawn(async move {
            while let Some(Ok(event)) = events.next().await {
                let attributes = event.actor.and_then(|a| a.attributes).unwrap_or_default();
                let get = |key: &str| attributes.get(key).cloned().unwrap_or_default();
                into.lock().unwrap().push((
                    get("taskrun.dev/name"),
                    get("taskrun.dev/attempt"),
                    get("name"),
                ));
            }
        });
        Self(seen, following)
    }

    fn seen(&self) -> Vec<(String, String, String)> {
        self.0.lock().unwrap().clone()
    }
}

impl Drop for Creations {
    fn drop(&mut self) {
        self.1.abort();
    }
}

/// The containers created for the TaskRun `name`: one per attempt, in attempt order.
fn attempts_of(created: &[(String, String, String)], name: &str) -> Vec<String> {
    let mut attempts: Vec<String> = created
        .iter()
        .filter(|(run, _, _)| run == name)
        .map(|(_, attempt, _)| attempt.clone())
        .collect();
    attempts.sort();
    attempts
}

/// When the container of one attempt started and finished, as the daemon recorded them.
async fn container_times(container: &str) -> (Timestamp, Timestamp) {
    let docker = common::docker().await;
    let inspect = docker
        .inspect_container(container, None::<InspectContainerOptions>)
        .await
        .expect("inspect an attempt's container");
    let state = inspect.state.unwrap();
    (
        state.started_at.unwrap().parse().unwrap(),
        state.finished_at.unwrap().parse().unwrap(),
    )
}

#[tokio::test]
async fn a_task_failing_twice_succeeds_on_its_third_attempt_in_three_containers() {
    let ns = TestNamespace::new("retry-third").await;
    let creations = Creations::follow(&ns).await;
    let _controller = ns.start_controller();
    let created = ns
        .create(&common::taskrun_yaml(
            "third",
            "image: busybox\ncommand: [sh, -c, 'echo attempt $TASKRUN_ATTEMPT of $TASKRUN_NAMESPACE/$TASKRUN_NAME; [ $TASKRUN_ATTEMPT -ge 3 ] || exit 7']\ncleanup: Never\nretries: {limit: 4, backoff: {seconds: 1}}",
        ))
        .await;
    let done = ns.wait_done("third").await;
    let s = status(&done);
    assert_eq!(
        (s.phase, s.reason, s.attempt, s.exit_code),
        (
            Some(Phase::Succeeded),
            Some(Reason::Completed),
            Some(3),
            Some(0)
        ),
        "{s:#?}"
    );
    assert_eq!(
        s.log_tail.as_deref(),
        Some(format!("attempt 3 of {}/third\n", ns.name).as_str()),
        "the last attempt's output"
    );
    let records: Vec<_> = s
        .previous_attempts
        .iter()
        .map(|r| (r.attempt, r.reason, r.exit_code, r.node_name.clone()))
        .collect();
    assert_eq!(
        records,
        [1, 2].map(|a| (a, Reason::Error, Some(7), Some(ns.node()))),
    );

    let events = creations.seen();
    assert_eq!(
        attempts_of(&events, "third"),
        ["1", "2", "3"],
        "exactly one container per attempt: {events:?}"
    );
    let uid = created.uid().unwrap();
    let names = [
        format!("taskrun-{uid}"),
        format!("taskrun-{uid}-2"),
        format!("taskrun-{uid}-3"),
    ];
    for pair in names.windows(2) {
        let (_, finished) = container_times(&pair[0]).await;
        let (started, _) = container_times(&pair[1]).await;
        let gap = started.duration_since(finished);
        assert!(
            gap >= jiff::SignedDuration::from_secs(1),
            "{} started {gap:?} after {} ended, under the 1 s back-off",
            pair[1],
            pair[0]
        );
    }
}

#[tokio::test]
async fn only_listed_exit_codes_and_reasons_are_retried_and_a_cancel_never_is() {
    let ns = TestNamespace::new("retry-rules").await;
    let creations = Creations::follow(&ns).await;
    let _controller = ns.start_controller();
    let every_reason = "reasons: [Error, OOMKilled, DeadlineExceeded, ImagePullFailed, StartFailed, ContainerLost, NodeLost]";
    ns.create(&common::taskrun_yaml(
        "other-code",
        "image: busybox\ncommand: [sh, -c, 'exit 4']\nretries: {limit: 3, exitCodes: [3], backoff: {seconds: 1}}",
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "listed-code",
        "image: busybox\ncommand: [sh, -c, 'exit 3']\nretries: {limit: 1, exitCodes: [3], backoff: {seconds: 1}}",
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "pull-unlisted",
        "image: registry.invalid/nothing:1\nimagePullPolicy: Always\nretries: {limit: 2, backoff: {seconds: 1}}",
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "pull-listed",
        "image: registry.invalid/nothing:1\nimagePullPolicy: Always\nretries: {limit: 1, reasons: [ImagePullFailed], backoff: {seconds: 1}}",
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "cancelled",
        &format!("image: busybox\ncommand: [sleep, '30']\nterminationGracePeriodSeconds: 1\nretries: {{limit: 3, {every_reason}, backoff: {{seconds: 1}}}}"),
    ))
    .await;
    ns.wait_for("cancelled", "Running", phase_is(Phase::Running))
        .await;
    ns.cancel("cancelled").await;

    let expected = [
        ("other-code", Phase::Failed, Reason::Error, 1),
        ("listed-code", Phase::Failed, Reason::Error, 2),
        ("pull-unlisted", Phase::Failed, Reason::ImagePullFailed, 1),
        ("pull-listed", Phase::Failed, Reason::ImagePullFailed, 2),
        ("cancelled", Phase::Cancelled, Reason::Cancelled, 1),
    ];
    for (name, phase, reason, attempts) in expected {
        let done = ns.wait_done(name).await;
        let s = status(&done);
        assert_eq!(
            (s.phase, s.reason, s.attempt.unwrap_or(1)),
            (Some(phase), Some(reason), attempts),
            "{name}: {s:#?}"
        );
        assert_eq!(
            s.previous_attempts.len(),
            usize::try_from(attempts - 1).unwrap(),
            "{name}"
        );
    }
    let events = creations.seen();
    for (name, containers) in [
        ("other-code", 1),
        ("listed-code", 2),
        ("cancelled", 1),
        ("pull-listed", 0),
    ] {
        assert_eq!(
            attempts_of(&events, name).len(),
            containers,
            "{name}: {events:?}"
        );
    }
}

/// Kills the agent when `moment` holds for the run, starts it again, and checks that every
/// attempt had exactly one container and the run still ends as it should.
async fn crash_when(test: &str, moment: fn(&TaskRun) -> Option<Timestamp>) {
    let ns = TestNamespace::new(test).await;
    let creations = Creations::follow(&ns).await;
    let mut controller = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "crashy",
        "image: busybox\ncommand: [sh, -c, '[ $TASKRUN_ATTEMPT -ge 3 ] || exit 5']\ncleanup: Never\nretries: {limit: 4, backoff: {seconds: 2, maxSeconds: 2}}",
    ))
    .await;
    let seen = ns
        .wait_for("crashy", "the moment to crash", |tr| moment(tr).is_some())
        .await;
    if let Some(at) = moment(&seen) {
        let wait = at.duration_since(Timestamp::now());
        tokio::time::sleep(Duration::try_from(wait).unwrap_or(Duration::ZERO)).await;
    }
    controller.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    controller.restart();

    let done = ns.wait_done("crashy").await;
    let s = status(&done);
    assert_eq!(
        (s.phase, s.attempt, s.previous_attempts.len()),
        (Some(Phase::Succeeded), Some(3), 2),
        "{s:#?}"
    );
    let events = creations.seen();
    assert_eq!(
        attempts_of(&events, "crashy"),
        ["1", "2", "3"],
        "exactly one container per attempt: {events:?}"
    );
}

#[tokio::test]
async fn kill_9_during_a_back_off_still_gives_one_container_per_attempt() {
    crash_when("crash-backoff", |tr| {
        reason_is(Reason::BackOff)(tr).then(Timestamp::now)
    })
    .await;
}

#[tokio::test]
async fn kill_9_as_an_attempt_starts_still_gives_one_container_per_attempt() {
    // The agent dies at the moment its back-off ends: as it creates and starts attempt 2.
    crash_when("crash-start", |tr| {
        let status = tr.status.as_ref()?;
        (status.reason == Some(Reason::BackOff))
            .then(|| taskrun_operator::lifecycle::next_attempt_at(&tr.uid()?, &tr.spec, status))
            .flatten()
    })
    .await;
}

#[tokio::test]
async fn each_deadline_ends_the_run_with_its_own_reason() {
    let ns = TestNamespace::new("deadlines").await;
    let creations = Creations::follow(&ns).await;
    // Ready first: the active deadline counts from creation, and the agent's start-up on a
    // busy machine must not eat the seconds its container has to be created in.
    let _controller = ControllerProcess::start_ready(&ns.name, &ns.node()).await;
    ns.create(&common::taskrun_yaml(
        "active",
        "image: busybox\ncommand: [sleep, '30']\nterminationGracePeriodSeconds: 1\nactiveDeadlineSeconds: 5\nretries: {limit: 3, reasons: [Error, DeadlineExceeded], backoff: {seconds: 1}}",
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "per-attempt",
        "image: busybox\ncommand: [sleep, '30']\nterminationGracePeriodSeconds: 1\ntimeoutSeconds: 1\nretries: {limit: 1, reasons: [DeadlineExceeded], backoff: {seconds: 1}}",
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "nowhere",
        "image: busybox\nnodeName: ghost\npendingTimeoutSeconds: 3",
    ))
    .await;

    let active = ns.wait_done("active").await;
    let s = status(&active);
    assert_eq!(
        (s.phase, s.reason, s.attempt.unwrap_or(1)),
        (Some(Phase::Failed), Some(Reason::ActiveDeadlineExceeded), 1),
        "{s:#?}"
    );
    let took = s
        .completion_time
        .as_ref()
        .unwrap()
        .0
        .duration_since(active.creation_timestamp().unwrap().0);
    assert!(
        took < jiff::SignedDuration::from_secs(12),
        "stopped at its deadline, took {took:?}"
    );

    let per_attempt = ns.wait_done("per-attempt").await;
    let s = status(&per_attempt);
    assert_eq!(
        (s.phase, s.reason, s.attempt),
        (Some(Phase::Failed), Some(Reason::DeadlineExceeded), Some(2)),
        "{s:#?}"
    );
    assert_eq!(s.previous_attempts[0].reason, Reason::DeadlineExceeded);

    let nowhere = ns.wait_done("nowhere").await;
    let s = status(&nowhere);
    assert_eq!(
        (s.phase, s.reason),
        (Some(Phase::Failed), Some(Reason::PendingTimeout)),
        "{s:#?}"
    );
    assert!(
        s.message
            .as_deref()
            .unwrap_or_default()
            .contains("pendingTimeoutSeconds"),
        "{s:#?}"
    );
    let events = creations.seen();
    assert_eq!(attempts_of(&events, "active"), ["1"]);
    assert_eq!(attempts_of(&events, "per-attempt"), ["1", "2"]);
    assert!(attempts_of(&events, "nowhere").is_empty());
}
