//! `taskrun run`: runs task.yaml files and TaskRun manifests on the local Docker daemon, with
//! no cluster, through the same lifecycle the controller uses.
//!
//! Each task is a loop of observe -> decide -> perform -> record against an in-memory status,
//! waiting between steps on the container itself (or its deadline), never on a timer.

mod input;
mod report;

use std::process::ExitCode;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use jiff::Timestamp;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

// Public so that the fuzz target (fuzz/) can feed it any bytes.
pub use input::parse;
pub use report::OutputFormat;

use crate::api::{Phase, Reason, TaskRunPolicy, TaskRunSpec, TaskRunStatus, policy_problems};
use crate::docker::{DockerClient, DockerError};
use crate::lifecycle::{self, Action, Executor, Observed, OutputLimits, Run, decide};
use input::{Task, load};
use report::{Reporter, TaskReport};

/// Longest an image pull may take before the task fails with `ImagePullFailed`.
const PULL_TIMEOUT: Duration = Duration::from_secs(300);

/// How many times in a row the Docker daemon may fail to answer before a task is given up.
const ATTEMPTS: usize = 5;

/// Exit status when every task succeeded.
const EXIT_SUCCEEDED: u8 = 0;
/// Exit status when a task failed or could not be seen through.
const EXIT_FAILED: u8 = 1;
/// Exit status for input that cannot run; nothing was started.
const EXIT_BAD_INPUT: u8 = 2;
/// Exit status after SIGINT or SIGTERM, as shells report a process ended by SIGINT.
const EXIT_INTERRUPTED: u8 = 130;

/// What `taskrun run` was asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// task.yaml files or TaskRun manifests; `-` is standard input.
    pub files: Vec<String>,
    /// How many tasks run at once.
    pub parallel: usize,
    /// How the tasks are reported.
    pub output: OutputFormat,
    /// Node name recorded in the containers' labels.
    pub node_name: String,
    /// A TaskRunPolicy manifest every task is held to, as an agent holds TaskRuns to the
    /// cluster's; the hardened defaults alone when unset.
    pub policy: Option<String>,
}

/// Reads the TaskRunPolicy manifest at `path` and checks it as the API server would.
fn load_policy(path: &str) -> Result<TaskRunPolicy, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let value: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    if value.get("kind").and_then(serde_yaml::Value::as_str) != Some("TaskRunPolicy") {
        return Err(format!("{path}: not a TaskRunPolicy manifest"));
    }
    let policy: TaskRunPolicy =
        serde_yaml::from_value(value).map_err(|e| format!("{path}: {e}"))?;
    let mut problems: Vec<String> = policy_problems(&policy.spec)
        .into_iter()
        .map(|p| format!("spec.{}: {}", p.field, p.problem))
        .collect();
    // Local runs have no agent to keep a firewall: a refusal that cannot be kept is refused.
    if policy
        .spec
        .denied_egress_cidrs
        .as_ref()
        .is_some_and(|denied| !denied.is_empty())
    {
        problems.push(
            "spec.deniedEgressCIDRs: local runs set no firewall; only the cluster's agents enforce egress refusals"
                .into(),
        );
    }
    if problems.is_empty() {
        Ok(policy)
    } else {
        Err(format!("{path}: {}", problems.join("; ")))
    }
}

/// Runs every task of every file and reports on each. Exits 0 when all succeeded, 1 when
/// any did not, 2 when the input cannot run (then nothing runs), 130 when interrupted.
pub async fn run(options: RunOptions) -> ExitCode {
    let tasks = match load(&options.files) {
        Ok(tasks) => tasks,
        Err(errors) => {
            for error in &errors {
                eprintln!("taskrun: {error}");
            }
            eprintln!("taskrun: nothing was run");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let policy = match options.policy.as_deref().map(load_policy).transpose() {
        Ok(policy) => policy,
        Err(error) => {
            eprintln!("taskrun: {error}");
            eprintln!("taskrun: nothing was run");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let reporter = Reporter::new(options.output, tasks.iter().map(|task| task.name.as_str()));
    let interrupt = Interrupt::default();
    let signals = match watch_signals(interrupt.clone(), reporter.clone()) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("taskrun: cannot handle SIGINT and SIGTERM: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let docker = match DockerClient::connect().await {
        Ok(docker) => docker,
        Err(e) => {
            eprintln!("taskrun: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let executor = Executor::new(
        std::sync::Arc::new(docker),
        options.node_name,
        PULL_TIMEOUT,
        OutputLimits::default(),
    );
    if let Err(e) = executor.prepare_network().await {
        eprintln!("taskrun: {e}");
        return ExitCode::from(EXIT_FAILED);
    }

    let statuses: Vec<TaskRunStatus> = futures::stream::iter(&tasks)
        .map(|task| run_task(&executor, task, &reporter, &interrupt, policy.as_ref()))
        .buffer_unordered(options.parallel.max(1))
        .collect()
        .await;
    signals.abort();
    reporter.summary(&statuses);

    if interrupt.stop.is_cancelled() {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if statuses.iter().all(|s| s.phase() == Phase::Succeeded) {
        ExitCode::from(EXIT_SUCCEEDED)
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// The first SIGINT or SIGTERM cancels every task (containers get their grace period); the
/// second kills what still runs.
#[derive(Clone, Default)]
struct Interrupt {
    stop: CancellationToken,
    kill: CancellationToken,
}

/// Takes over SIGINT and SIGTERM now, before any container exists, so that neither can end
/// the process with containers left running.
fn watch_signals(
    interrupt: Interrupt,
    reporter: Reporter,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    Ok(tokio::spawn(async move {
        let steps = [
            (
                interrupt.stop,
                "interrupted: stopping the tasks and removing their containers; interrupt again to kill them",
            ),
            (
                interrupt.kill,
                "interrupted again: killing the containers still running",
            ),
        ];
        for (token, note) in steps {
            tokio::select! {
                _ = sigint.recv() => {}
                _ = sigterm.recv() => {}
            }
            reporter.note(note);
            token.cancel();
        }
    }))
}

/// Sees one task through from launch to its final phase, and returns its last status.
async fn run_task(
    executor: &Executor,
    task: &Task,
    reporter: &Reporter,
    interrupt: &Interrupt,
    policy: Option<&TaskRunPolicy>,
) -> TaskRunStatus {
    let report = reporter.task(&task.name);
    let mut run = LocalRun::new(task, policy);
    let retries = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_times(ATTEMPTS - 1);
    let mut delays = retries.build();
    loop {
        match run.step(executor, &report, interrupt).await {
            Ok(Step::Continue) => delays = retries.build(),
            Ok(Step::Done) => break,
            Err(error) => match delays.next() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => {
                    run.give_up(&error, &report);
                    break;
                }
            },
        }
    }
    report.finished(&run.status);
    run.status
}

/// A task's run as this process knows it: the TaskRun it would be, and its status so far.
struct LocalRun<'a> {
    task: &'a Task,
    uid: String,
    /// When the task was taken up, as a TaskRun's creation: its deadlines count from here.
    created: Timestamp,
    spec: TaskRunSpec,
    status: TaskRunStatus,
    policy: Option<&'a TaskRunPolicy>,
}

/// Whether a task needs another step.
enum Step {
    Continue,
    Done,
}

impl<'a> LocalRun<'a> {
    /// A run of `task` under a fresh UID, so its container cannot be mistaken for another's.
    fn new(task: &'a Task, policy: Option<&'a TaskRunPolicy>) -> Self {
        Self {
            task,
            uid: uuid::Uuid::new_v4().to_string(),
            created: Timestamp::now(),
            spec: task.spec.clone(),
            status: TaskRunStatus::default(),
            policy,
        }
    }

    fn as_run(&self) -> Run<'_> {
        Run {
            namespace: &self.task.namespace,
            name: &self.task.name,
            uid: &self.uid,
            generation: None,
            created: self.created,
            spec: &self.spec,
            status: &self.status,
            inputs: None,
            prepared: None,
            policy: self.policy,
        }
    }

    /// One pass of observe -> decide -> perform -> record, or a wait for the container.
    async fn step(
        &mut self,
        executor: &Executor,
        report: &TaskReport<'_>,
        interrupt: &Interrupt,
    ) -> Result<Step, DockerError> {
        // An interrupt is a cancel, which the lifecycle already knows how to carry out.
        self.spec.cancel |= interrupt.stop.is_cancelled();
        let attempt = self.status.attempt();
        let observation = executor.observe(&self.uid, attempt).await?;
        let container = observation.current.as_ref();
        let now = Timestamp::now();
        let observed = Observed {
            uid: &self.uid,
            node: executor.node(),
            spec: &self.spec,
            status: &self.status,
            created: self.created,
            container,
            previous: observation.previous.as_ref(),
            now,
        };
        let action = match decide(observed) {
            Action::Wait { .. } if self.status.phase().is_final() => {
                // A container kept by its cleanup policy is still removed after an interrupt:
                // this process started it and will not be around to look after it.
                if self.spec.cancel && container.is_some() {
                    self.perform(executor, Action::Remove, now, report).await?;
                }
                return Ok(Step::Done);
            }
            Action::Wait { until } => {
                // Between attempts there is no container to wait for, only the back-off.
                let has_container = container.is_some();
                tokio::select! {
                    stopped = executor.wait_for_exit(&self.uid, attempt), if has_container => stopped?,
                    () = sleep_until(until) => {}
                    () = interrupt.stop.cancelled(), if !self.spec.cancel => {}
                    () = report.show_output(executor, &self.uid, attempt) => {}
                }
                return Ok(Step::Continue);
            }
            Action::Stop { cause, .. } if interrupt.kill.is_cancelled() => Action::Stop {
                cause,
                grace: Duration::ZERO,
            },
            action => action,
        };
        if action == Action::Launch {
            report.preparing();
        }
        let stopping = matches!(action, Action::Stop { .. });
        let cancelling = self.spec.cancel;
        tokio::select! {
            performed = self.perform(executor, action, now, report) => performed?,
            // A launch may take as long as a pull; the next pass sees what it left behind.
            () = interrupt.stop.cancelled(), if !cancelling => {}
            // The grace period is cut short; the next pass stops with none.
            () = interrupt.kill.cancelled(), if stopping && !interrupt.kill.is_cancelled() => {}
        }
        Ok(Step::Continue)
    }

    async fn perform(
        &mut self,
        executor: &Executor,
        action: Action,
        now: Timestamp,
        report: &TaskReport<'_>,
    ) -> Result<(), DockerError> {
        let outcome = executor.perform(self.as_run(), action, now).await?;
        if let Some(status) = outcome.status {
            self.status = status;
        }
        if let Some(transition) = &outcome.transition {
            report.transition(transition);
        }
        Ok(())
    }

    /// Records that the Docker daemon stopped answering; the task counts as failed.
    fn give_up(&mut self, error: &DockerError, report: &TaskReport<'_>) {
        let message = error.to_string();
        self.status = lifecycle::status::held_up(
            &self.status,
            Reason::DaemonUnavailable,
            &message,
            None,
            Timestamp::now(),
        );
        report.gave_up(error);
    }
}

/// Returns at `until`; never when there is none.
async fn sleep_until(until: Option<Timestamp>) {
    match until {
        Some(until) => {
            let wait = until.duration_since(Timestamp::now());
            tokio::time::sleep(Duration::try_from(wait).unwrap_or(Duration::ZERO)).await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::docker::fake::{Answer, FakeDaemon};

    fn task(spec: &str) -> Task {
        Task {
            file: "task.yaml".into(),
            namespace: "default".into(),
            name: "hello".into(),
            spec: serde_yaml::from_str(spec).unwrap(),
        }
    }

    fn executor(fake: &Arc<FakeDaemon>) -> Executor {
        Executor::new(fake.clone(), "local", PULL_TIMEOUT, OutputLimits::default())
    }

    #[tokio::test]
    async fn a_task_is_seen_through_to_its_end_and_its_container_removed() {
        let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
        fake.state().output = "hello\n".into();
        let status = run_task(
            &executor(&fake),
            &task("image: busybox\ncleanup: Always"),
            &Reporter::new(OutputFormat::Json, ["hello"]),
            &Interrupt::default(),
            None,
        )
        .await;
        assert_eq!(status.phase, Some(Phase::Succeeded));
        assert_eq!(status.log_tail.as_deref(), Some("hello\n"));
        assert!(
            fake.state().containers.is_empty(),
            "removed as cleanup says"
        );
        let creates = fake
            .calls()
            .iter()
            .filter(|c| c.starts_with("create"))
            .count();
        assert_eq!(creates, 1);
    }

    #[tokio::test]
    async fn a_failed_task_keeps_its_container_for_inspection() {
        let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
        fake.state().exit_code = 3;
        let status = run_task(
            &executor(&fake),
            &task("image: busybox"),
            &Reporter::new(OutputFormat::Json, ["hello"]),
            &Interrupt::default(),
            None,
        )
        .await;
        assert_eq!(
            (status.phase, status.reason, status.exit_code),
            (Some(Phase::Failed), Some(Reason::Error), Some(3))
        );
        assert_eq!(fake.state().containers.len(), 1);
    }

    #[tokio::test]
    async fn a_task_is_retried_as_its_spec_says_each_attempt_in_its_own_container() {
        let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
        fake.state().exit_code = 3;
        let status = run_task(
            &executor(&fake),
            &task("image: busybox\ncleanup: Never\nretries: {limit: 1, backoff: {seconds: 1}}"),
            &Reporter::new(OutputFormat::Json, ["hello"]),
            &Interrupt::default(),
            None,
        )
        .await;
        assert_eq!(
            (status.phase, status.exit_code, status.attempt()),
            (Some(Phase::Failed), Some(3), 2)
        );
        assert_eq!(status.previous_attempts.len(), 1);
        assert_eq!(
            fake.state().containers.len(),
            2,
            "one container per attempt"
        );
        let first = status.previous_attempts[0].completion_time.0;
        let second = status.start_time.as_ref().unwrap().0;
        assert!(second.duration_since(first) >= jiff::SignedDuration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_daemon_that_stops_answering_gives_the_task_up_after_a_few_tries() {
        let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
        fake.state().answers.insert("inspect", Answer::Unreachable);
        let status = run_task(
            &executor(&fake),
            &task("image: busybox"),
            &Reporter::new(OutputFormat::Json, ["hello"]),
            &Interrupt::default(),
            None,
        )
        .await;
        assert_eq!(status.reason, Some(Reason::DaemonUnavailable));
        assert_eq!(fake.calls().len(), ATTEMPTS);
    }
}
