//! The operator end to end: the built `taskrun controller` against the real API server and
//! Docker daemon, one namespace and node name per test.

mod common;

use bollard::models::ContainerSummaryStateEnum;
use futures::{StreamExt, TryStreamExt};
use kube::ResourceExt;
use kube::api::{DeleteParams, WatchEvent, WatchParams};
use taskrun_operator::api::{Phase, Reason};

use common::{TestNamespace, kubectl, outcome, phase_is, reason_is, status};

#[tokio::test]
async fn runs_succeed_fail_and_keep_their_output() {
    let ns = TestNamespace::new("lifecycle").await;
    let _controller = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "ok",
        "image: busybox\ncommand: [sh, -c, 'echo first; echo second']\ncleanup: Never",
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "exit3",
        "image: busybox\ncommand: [sh, -c, 'echo bad >&2; exit 3']\ncleanup: Never",
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "chatty",
        "image: busybox\ncommand: [sh, -c, 'seq 1 5000']\ncleanup: Always",
    ))
    .await;

    let ok = ns.wait_done("ok").await;
    assert_eq!(
        (outcome(&ok), status(&ok).exit_code),
        ((Some(Phase::Succeeded), Some(Reason::Completed)), Some(0))
    );
    let s = status(&ok);
    assert!(s.start_time.is_some() && s.completion_time.is_some());
    assert_eq!(s.log_tail.as_deref(), Some("first\nsecond\n"));
    assert_eq!(s.node_name.as_deref(), Some(ns.node().as_str()));
    assert_eq!(s.observed_generation, ok.metadata.generation);
    let succeeded = s
        .condition(taskrun_operator::api::ConditionType::Succeeded)
        .unwrap();
    assert_eq!(succeeded.status, "True");

    let failed = ns.wait_done("exit3").await;
    assert_eq!(
        (outcome(&failed), status(&failed).exit_code),
        ((Some(Phase::Failed), Some(Reason::Error)), Some(3))
    );
    assert_eq!(status(&failed).log_tail.as_deref(), Some("bad\n"));
    let succeeded = status(&failed)
        .condition(taskrun_operator::api::ConditionType::Succeeded)
        .unwrap();
    assert_eq!(
        (succeeded.status.as_str(), succeeded.reason.as_str()),
        ("False", "Error")
    );

    let chatty = ns.wait_done("chatty").await;
    let tail = status(&chatty).log_tail.clone().unwrap();
    assert!(
        tail.len() <= 4096 && tail.ends_with("4999\n5000\n"),
        "log tail is bounded and keeps the end: {} bytes",
        tail.len()
    );

    let wait = kubectl()
        .args([
            "wait",
            "--for=condition=Done",
            "taskrun/ok",
            "taskrun/exit3",
            "-n",
            &ns.name,
            "--timeout=10s",
        ])
        .output()
        .unwrap();
    assert!(
        wait.status.success(),
        "kubectl wait: {}",
        String::from_utf8_lossy(&wait.stderr)
    );

    let events = kubectl()
        .args([
            "get",
            "events",
            "-n",
            &ns.name,
            "--field-selector",
            "involvedObject.name=exit3",
            "-o",
            "jsonpath={.items[*].reason}",
        ])
        .output()
        .unwrap();
    let reasons = String::from_utf8_lossy(&events.stdout).to_string();
    assert!(
        reasons.contains("Started") && reasons.contains("Error"),
        "events of exit3: {reasons}"
    );
}

#[tokio::test]
async fn image_and_start_failures_end_failed_with_the_reason() {
    let ns = TestNamespace::new("failures").await;
    let _controller = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "not-present",
        "image: not-here:latest\nimagePullPolicy: Never",
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "pull-fails",
        "image: registry.invalid/nothing:1\nimagePullPolicy: Always",
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "no-binary",
        "image: busybox\ncommand: [/no/such/binary]",
    ))
    .await;
    ns.create(&common::taskrun_yaml("oom", "image: busybox\ncommand: [dd, if=/dev/zero, of=/dev/null, bs=256M, count=4]\nresources: {limits: {memory: 32Mi}}")).await;

    let not_present = ns.wait_done("not-present").await;
    assert_eq!(
        (outcome(&not_present), status(&not_present).exit_code),
        ((Some(Phase::Failed), Some(Reason::ImageNotPresent)), None)
    );

    let pull = ns.wait_done("pull-fails").await;
    assert_eq!(
        (outcome(&pull), status(&pull).exit_code),
        ((Some(Phase::Failed), Some(Reason::ImagePullFailed)), None)
    );
    assert!(
        status(&pull)
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("registry.invalid"),
        "{:?}",
        status(&pull).message
    );

    let start = ns.wait_done("no-binary").await;
    assert_eq!(
        outcome(&start),
        (Some(Phase::Failed), Some(Reason::StartFailed))
    );
    assert!(
        status(&start)
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("/no/such/binary"),
        "{:?}",
        status(&start).message
    );

    let oom = ns.wait_done("oom").await;
    assert_eq!(
        (outcome(&oom), status(&oom).exit_code),
        ((Some(Phase::Failed), Some(Reason::OomKilled)), Some(137)),
        "{:#?}",
        oom.status
    );
    assert_eq!(
        ns.container_count("not-present").await + ns.container_count("pull-fails").await,
        0
    );
}

#[tokio::test]
async fn timeout_and_cancel_stop_the_container() {
    let ns = TestNamespace::new("stops").await;
    let _controller = ns.start_controller();
    ns.create(&common::taskrun_yaml("slow", "image: busybox\ncommand: [sh, -c, 'echo started; sleep 30']\ntimeoutSeconds: 1\nterminationGracePeriodSeconds: 1\ncleanup: Always")).await;
    ns.create(&common::taskrun_yaml(
        "cancel-me",
        "image: busybox\ncommand: [sleep, '30']\nterminationGracePeriodSeconds: 1\ncleanup: Never",
    ))
    .await;

    let slow = ns.wait_done("slow").await;
    assert_eq!(
        outcome(&slow),
        (Some(Phase::Failed), Some(Reason::DeadlineExceeded))
    );
    assert_eq!(
        status(&slow).log_tail.as_deref(),
        Some("started\n"),
        "output survives the timeout and the cleanup"
    );

    ns.wait_for("cancel-me", "Running", phase_is(Phase::Running))
        .await;
    ns.cancel("cancel-me").await;
    let cancelled = ns.wait_done("cancel-me").await;
    assert_eq!(
        outcome(&cancelled),
        (Some(Phase::Cancelled), Some(Reason::Cancelled))
    );
    assert_eq!(
        ns.container_count("cancel-me").await,
        1,
        "cleanup Never keeps the stopped container"
    );
    assert_eq!(
        ns.container_count("slow").await,
        0,
        "cleanup Always removes it"
    );
}

#[tokio::test]
async fn cleanup_policies_and_ttl_decide_which_containers_remain() {
    let ns = TestNamespace::new("cleanup").await;
    let _controller = ns.start_controller();
    let cases = [
        ("always-ok", "true", "Always", 0),
        ("always-fail", "false", "Always", 0),
        ("onsuccess-ok", "true", "OnSuccess", 0),
        ("onsuccess-fail", "false", "OnSuccess", 1),
        ("never-ok", "true", "Never", 1),
    ];
    for (name, command, cleanup, _) in cases {
        ns.create(&common::taskrun_yaml(
            name,
            &format!("image: busybox\ncommand: [{command}]\ncleanup: {cleanup}"),
        ))
        .await;
    }
    ns.create(&common::taskrun_yaml(
        "ttl",
        "image: busybox\ncommand: ['true']\ncleanup: Never\nttlSecondsAfterFinished: 4",
    ))
    .await;
    ns.wait_done("ttl").await;
    assert_eq!(
        ns.container_count("ttl").await,
        1,
        "the TTL has not passed yet"
    );
    for (name, ..) in cases {
        ns.wait_done(name).await;
    }
    // Removal follows the final status write.
    for (name, _, cleanup, expected) in cases {
        let what = format!("{name} with cleanup {cleanup} keeping {expected} containers");
        common::eventually(&what, || async {
            ns.container_count(name).await == expected
        })
        .await;
    }
    common::eventually("the TTL removing the container", || async {
        ns.container_count("ttl").await == 0
    })
    .await;
    assert!(
        ns.taskruns().get_opt("ttl").await.unwrap().is_some(),
        "the TaskRun itself stays"
    );
}

#[tokio::test]
async fn deleting_a_running_taskrun_removes_its_container_first() {
    let ns = TestNamespace::new("delete").await;
    let _controller = ns.start_controller();
    let created = ns
        .create(&common::taskrun_yaml(
            "doomed",
            "image: busybox\ncommand: [sleep, '30']\nterminationGracePeriodSeconds: 1",
        ))
        .await;
    ns.wait_for("doomed", "Running", phase_is(Phase::Running))
        .await;
    assert_eq!(ns.container_count("doomed").await, 1);
    let taskruns = ns.taskruns();
    taskruns
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let uid = created.uid().unwrap();
    let gone = kube::runtime::wait::await_condition(
        taskruns,
        "doomed",
        kube::runtime::wait::conditions::is_deleted(&uid),
    );
    tokio::time::timeout(common::TIMEOUT, gone)
        .await
        .expect("deleted in time")
        .unwrap();
    assert_eq!(ns.container_count("doomed").await, 0);
}

#[tokio::test]
async fn a_taskrun_costs_at_most_four_writes_and_none_when_nothing_changes() {
    let ns = TestNamespace::new("writes").await;
    let _controller = ns.start_controller();
    let taskruns = ns.taskruns();
    let mut watch = taskruns
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    ns.create(&common::taskrun_yaml(
        "counted",
        "image: busybox\ncommand: ['true']\ncleanup: Always",
    ))
    .await;
    ns.wait_done("counted").await;
    // The container's removal is the last step of a run: every write comes before it.
    common::eventually("the container's removal", || async {
        ns.container_count("counted").await == 0
    })
    .await;
    taskruns
        .delete("counted", &DeleteParams::default())
        .await
        .unwrap();

    let mut versions = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(common::TIMEOUT, watch.try_next())
        .await
        .unwrap()
    {
        match event {
            WatchEvent::Added(tr) | WatchEvent::Modified(tr) => {
                versions.push((tr.resource_version(), tr.status.clone()))
            }
            WatchEvent::Deleted(_) => break,
            _ => {}
        }
    }
    // Added, then finalizer, Running, final status (operator), deletion mark (ours), finalizer removal.
    let operator_writes = versions
        .len()
        .checked_sub(1)
        .expect("the watch saw the TaskRun created and marked for deletion");
    assert!(
        operator_writes <= 4,
        "{operator_writes} operator writes: {versions:#?}"
    );
}

#[tokio::test]
async fn kill_9_while_starting_and_running_still_gives_one_container_and_the_right_outcome_each() {
    let ns = TestNamespace::new("crash").await;
    let mut controller = ns.start_controller();
    let runs: Vec<(String, i64)> = (0..6).map(|i| (format!("run-{i}"), i % 3)).collect();
    for (name, code) in &runs {
        ns.create(&common::taskrun_yaml(
            name,
            &format!("image: busybox\ncommand: [sh, -c, 'sleep 2; exit {code}']\ncleanup: Never"),
        ))
        .await;
    }
    ns.wait_for("run-0", "Running", phase_is(Phase::Running))
        .await;
    controller.kill();
    let docker = common::docker().await;
    common::eventually("the runs finishing while no controller watches", || async {
        let containers = ns.containers(&docker).await;
        containers
            .iter()
            .all(|c| c.state != Some(ContainerSummaryStateEnum::RUNNING))
    })
    .await;
    let _controller = ns.start_controller();
    for (name, code) in &runs {
        let done = ns.wait_done(name).await;
        let expected = if *code == 0 {
            Phase::Succeeded
        } else {
            Phase::Failed
        };
        assert_eq!(
            (status(&done).phase, status(&done).exit_code),
            (Some(expected), Some(*code)),
            "{name}"
        );
        assert_eq!(
            ns.container_count(name).await,
            1,
            "exactly one container for {name}"
        );
    }
}

#[tokio::test]
async fn sigterm_leaves_running_containers_for_the_next_controller() {
    let ns = TestNamespace::new("adopt").await;
    let mut controller = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "long",
        "image: busybox\ncommand: [sh, -c, 'sleep 3; echo done']\ncleanup: Never",
    ))
    .await;
    ns.wait_for("long", "Running", phase_is(Phase::Running))
        .await;
    let exit = controller.terminate();
    assert!(
        exit.success(),
        "controller exits cleanly on SIGTERM: {exit:?}"
    );
    assert_eq!(
        ns.container_count("long").await,
        1,
        "the container survives the controller"
    );
    let _next = ns.start_controller();
    let done = ns.wait_done("long").await;
    assert_eq!(
        (outcome(&done), status(&done).exit_code),
        ((Some(Phase::Succeeded), Some(Reason::Completed)), Some(0))
    );
    assert_eq!(status(&done).log_tail.as_deref(), Some("done\n"));
}

#[tokio::test]
async fn foreign_containers_are_untouched_and_orphans_are_swept() {
    let ns = TestNamespace::new("sweep").await;
    let docker_cli = |args: &[&str]| {
        let output = std::process::Command::new("docker")
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    };
    let ns_label = format!("taskrun.dev/namespace={}", ns.name);
    let foreign = docker_cli(&["create", "--label", &ns_label, "busybox", "true"]);
    let other_node = docker_cli(&[
        "create",
        "--label",
        &ns_label,
        "--label",
        "taskrun.dev/managed-by=taskrun-operator",
        "--label",
        "taskrun.dev/node=some-other-node",
        "--label",
        "taskrun.dev/uid=gone",
        "--label",
        "taskrun.dev/name=gone",
        "busybox",
        "true",
    ]);
    let orphan = docker_cli(&[
        "create",
        "--label",
        &ns_label,
        "--label",
        "taskrun.dev/managed-by=taskrun-operator",
        "--label",
        &format!("taskrun.dev/node={}", ns.node()),
        "--label",
        "taskrun.dev/uid=no-such-taskrun",
        "--label",
        "taskrun.dev/name=gone",
        "busybox",
        "true",
    ]);
    let _controller = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "live",
        "image: busybox\ncommand: ['true']\ncleanup: Never",
    ))
    .await;
    ns.wait_done("live").await;
    let docker = common::docker().await;
    common::eventually("the sweep removing the orphan", || async {
        let ids: Vec<String> = ns
            .containers(&docker)
            .await
            .into_iter()
            .filter_map(|c| c.id)
            .collect();
        !ids.contains(&orphan)
    })
    .await;
    let remaining: Vec<String> = ns
        .containers(&common::docker().await)
        .await
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    assert!(
        remaining.contains(&foreign),
        "a container without our labels is never touched"
    );
    assert!(
        remaining.contains(&other_node),
        "another node's container is never touched"
    );
    assert!(
        !remaining.contains(&orphan),
        "our container whose TaskRun is gone is swept"
    );
    assert_eq!(
        ns.container_count("live").await,
        1,
        "a live TaskRun's container stays"
    );
}

#[tokio::test]
async fn a_daemon_outage_is_shown_and_retried_not_failed() {
    let ns = TestNamespace::new("outage").await;
    let socket = std::env::temp_dir().join(format!("taskrun-{}.sock", ns.name));
    let proxy = common::DockerProxy::start(&socket).await;
    let _controller = common::ControllerProcess::start_with_docker(&ns.name, &ns.node(), &socket);
    ns.create(&common::taskrun_yaml(
        "before",
        "image: busybox\ncommand: ['true']",
    ))
    .await;
    ns.wait_done("before").await;

    proxy.pause();
    ns.create(&common::taskrun_yaml(
        "during",
        "image: busybox\ncommand: ['true']",
    ))
    .await;
    let held = ns
        .wait_for(
            "during",
            "DaemonUnavailable",
            reason_is(Reason::DaemonUnavailable),
        )
        .await;
    assert_eq!(
        status(&held).phase,
        Some(Phase::Pending),
        "an outage never fails a run on its own"
    );
    let condition = status(&held)
        .condition(taskrun_operator::api::ConditionType::Succeeded)
        .unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("Unknown", "DaemonUnavailable")
    );

    proxy.resume();
    let done = ns.wait_done("during").await;
    assert_eq!(
        (outcome(&done), status(&done).exit_code),
        ((Some(Phase::Succeeded), Some(Reason::Completed)), Some(0))
    );
    assert!(
        done.finalizers()
            .iter()
            .any(|f| f == taskrun_operator::api::FINALIZER)
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let ns = TestNamespace::new("endpoints").await;
    let address = common::free_address();
    let _controller = common::ControllerProcess::start_serving(&ns.name, &ns.node(), &address);
    common::eventually(
        "/readyz answering 200: the watch synced, the policy read, the Lease held and Docker answering",
        || async {
            common::http_get(&address, "/readyz")
                .await
                .is_some_and(|(code, _)| code == 200)
        },
    )
    .await;
    // `taskrun probe`, as the DaemonSet's exec probes ask.
    let probe = |path: &str, address: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_taskrun"))
            .args(["probe", path, "--address", address])
            .output()
            .unwrap()
    };
    let answered = probe("/readyz", &address);
    assert!(answered.status.success(), "{answered:?}");
    let missing = probe("/nope", &address);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .starts_with(&format!("http://{address}/nope: 404 Not Found")),
        "{missing:?}"
    );
    let closed = common::free_address();
    let refused = probe("/healthz", &closed);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).starts_with(&format!("http://{closed}/healthz: ")),
        "{refused:?}"
    );
    assert_eq!(
        common::http_get(&address, "/healthz")
            .await
            .map(|(code, _)| code),
        Some(200)
    );
    assert_eq!(
        common::http_get(&address, "/nope")
            .await
            .map(|(code, _)| code),
        Some(404)
    );

    ns.create(&common::taskrun_yaml(
        "measured",
        "image: busybox\ncommand: ['true']",
    ))
    .await;
    ns.wait_done("measured").await;
    // The controller counts a write once the API server answers it, lets go of a run once it
    // sees the final status, and counts phases from its own cache: each may be just after the
    // test's watch shows the run done.
    let (code, metrics) = common::eventually_some("/metrics counting the run", || async {
        let scraped = common::http_get(&address, "/metrics").await.unwrap();
        (scraped.1.contains("taskrun_status_writes_total 2")
            && scraped.1.contains("taskrun_runs_held 0")
            && scraped
                .1
                .contains("taskrun_taskruns{phase=\"Succeeded\"} 1"))
        .then_some(scraped)
    })
    .await;
    assert_eq!(code, 200);
    let value = |line_start: &str| -> Option<f64> {
        metrics
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    assert!(
        value("taskrun_reconciles_total ").is_some_and(|v| v >= 2.0),
        "{metrics}"
    );
    assert_eq!(
        value("taskrun_status_writes_total "),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        value("taskrun_containers_started_total "),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        value("taskrun_run_duration_seconds_count "),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(value("taskrun_runs_held "), Some(0.0), "{metrics}");
    assert_eq!(
        value("taskrun_taskruns{phase=\"Succeeded\"} "),
        Some(1.0),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    let problems = promtool_problems(&metrics);
    assert!(problems.is_empty(), "promtool: {problems:?}\n{metrics}");

    // A scraper picks its parser by the content type.
    let head = http_head(&address, "/metrics").await;
    assert!(
        head.lines().any(|line| line.eq_ignore_ascii_case(
            "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"
        )),
        "{head}"
    );
}

/// What `promtool check metrics` finds wrong with `text`. It reads the classic Prometheus text
/// format, where a counter's family is named with its `_total`; in OpenMetrics the family is
/// named without it, so promtool sees every counter sample without help text. That one
/// complaint about a sample of a declared counter is left out; any other is returned, as is a
/// failure to parse.
fn promtool_problems(text: &str) -> Vec<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian's prometheus package; scripts/test.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&output.stderr);
    // promtool exits 1 when the text does not parse and 3 when it has lint problems.
    if !matches!(output.status.code(), Some(0 | 3)) {
        return vec![format!("{}: {report}", output.status)];
    }
    report
        .lines()
        .filter(|line| {
            let counter = line
                .strip_suffix("_total no help text")
                .is_some_and(|family| text.contains(&format!("# TYPE {family} counter\n")));
            !counter
        })
        .map(str::to_string)
        .collect()
}

/// The status line and headers of a GET of `path`.
async fn http_head(address: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
        .split_once("\r\n\r\n")
        .map_or(response.clone(), |(head, _)| head.to_string())
}

#[tokio::test]
async fn env_working_dir_args_and_limits_reach_the_container() {
    let ns = TestNamespace::new("shaped").await;
    let _controller = ns.start_controller();
    ns.create(&common::taskrun_yaml(
        "shaped",
        "image: busybox\ncommand: [sh, -c]\nargs: ['echo \"$GREETING from $(pwd)\"']\nenv: [{name: GREETING, value: hello}]\nworkingDir: /tmp\nresources: {limits: {cpu: 500m, memory: 64Mi}}\ncleanup: Never",
    ))
    .await;
    let done = ns.wait_done("shaped").await;
    assert_eq!(status(&done).log_tail.as_deref(), Some("hello from /tmp\n"));

    let docker = common::docker().await;
    let id = status(&done)
        .container_id
        .clone()
        .expect("container ID recorded");
    let host = docker
        .inspect_container(&id, None)
        .await
        .unwrap()
        .host_config
        .unwrap();
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.memory, Some(64 * 1024 * 1024));
}

#[tokio::test]
async fn the_agent_records_as_much_output_as_log_tail_bytes_says() {
    for (bytes, expected) in [("6", Some("econd\n")), ("0", None)] {
        let ns = TestNamespace::new("tail-bytes").await;
        let _controller = common::ControllerProcess::start_with(
            &ns.name,
            &ns.node(),
            &common::free_address(),
            &["--log-tail-bytes", bytes],
        );
        ns.create(&common::taskrun_yaml(
            "speaks",
            "image: busybox\ncommand: [sh, -c, 'echo first; echo second']",
        ))
        .await;
        let done = ns.wait_done("speaks").await;
        assert_eq!(
            (status(&done).phase, status(&done).log_tail.as_deref()),
            (Some(Phase::Succeeded), expected),
            "--log-tail-bytes {bytes}"
        );
    }
}
