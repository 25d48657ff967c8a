//! What `taskrun run` prints: a line per step of each task for people, or a JSON object per
//! finished task for scripts.

use std::io::Write;

use serde::Serialize;

use crate::api::{Phase, Reason, TaskRunStatus};
use crate::docker::DockerError;
use crate::lifecycle::{Ending, Transition};

/// How `taskrun run` reports on its tasks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A line per step of each task, such as `completed task – hello`.
    #[default]
    Text,
    /// A JSON object per line for each task as it ends: its `name` and the fields of a
    /// TaskRun's status.
    Json,
}

/// Writes the output of one `taskrun run` to stdout.
#[derive(Clone, Copy, Debug)]
pub struct Reporter {
    format: OutputFormat,
}

/// One line of `--output json`.
#[derive(Serialize)]
struct TaskResult<'a> {
    name: &'a str,
    #[serde(flatten)]
    status: &'a TaskRunStatus,
}

impl Reporter {
    /// A reporter writing in `format`.
    pub fn new(format: OutputFormat) -> Self {
        Self { format }
    }

    /// The task's container is about to be created.
    pub fn preparing(&self, name: &str) {
        self.text(&format!("preparing task – {name}"));
    }

    /// A step of the task's run.
    pub fn transition(&self, name: &str, transition: &Transition) {
        if let Some(line) = transition_line(name, transition) {
            self.text(&line);
        }
    }

    /// The Docker daemon stopped answering and the task was given up.
    pub fn gave_up(&self, name: &str, error: &DockerError) {
        self.text(&format!(
            "failed task – {name} ({}: {error})",
            Reason::DaemonUnavailable
        ));
    }

    /// The task is over; `status` is all that is known of it.
    pub fn finished(&self, name: &str, status: &TaskRunStatus) {
        if self.format == OutputFormat::Json {
            match serde_json::to_string(&TaskResult { name, status }) {
                Ok(line) => emit(&line),
                Err(e) => eprintln!("taskrun: cannot write the result of task {name} as JSON: {e}"),
            }
        }
    }

    fn text(&self, line: &str) {
        if self.format == OutputFormat::Text {
            emit(line);
        }
    }
}

/// Writes one line whole. A closed stdout (`taskrun run ... | head`) must not stop the tasks
/// from being seen through and cleaned up, so a failed write is dropped.
fn emit(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// The line for a step, in the original runner's words; `None` for steps it did not report.
fn transition_line(name: &str, transition: &Transition) -> Option<String> {
    match transition {
        Transition::Started { .. } => Some(format!("starting task – {name}")),
        Transition::Ended(ending) => Some(ended_line(name, ending)),
        Transition::Removed { .. } => Some(format!("cleanup task – {name}")),
        Transition::Adopted { .. } | Transition::Stopping(_) => None,
    }
}

fn ended_line(name: &str, ending: &Ending) -> String {
    match (ending.phase, ending.exit_code) {
        (Phase::Succeeded, _) => format!("completed task – {name}"),
        (Phase::Cancelled, _) if ending.started_at.is_some() => format!("stopped task – {name}"),
        (Phase::Cancelled, _) => format!("skipped task – {name} (stopped before it started)"),
        (_, Some(code)) => format!("failed task – {name} (exit {code}: {})", ending.reason),
        (_, None) => format!(
            "failed task – {name} ({}: {})",
            ending.reason, ending.message
        ),
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;

    fn ending(phase: Phase, reason: Reason, exit_code: Option<i64>, started: bool) -> Transition {
        Transition::Ended(Ending {
            phase,
            reason,
            message: "the daemon's words".into(),
            exit_code,
            started_at: started.then_some(Timestamp::UNIX_EPOCH),
            finished_at: Timestamp::UNIX_EPOCH,
        })
    }

    #[test]
    fn each_step_has_the_original_runners_line() {
        let line = |t: &Transition| transition_line("hello", t);
        assert_eq!(
            line(&Transition::Started {
                container_name: "c".into()
            })
            .as_deref(),
            Some("starting task – hello")
        );
        assert_eq!(
            line(&Transition::Removed {
                container_name: "c".into()
            })
            .as_deref(),
            Some("cleanup task – hello")
        );
        assert_eq!(
            line(&ending(Phase::Succeeded, Reason::Completed, Some(0), true)).as_deref(),
            Some("completed task – hello")
        );
        assert_eq!(
            line(&ending(Phase::Failed, Reason::Error, Some(3), true)).as_deref(),
            Some("failed task – hello (exit 3: Error)")
        );
        assert_eq!(
            line(&ending(Phase::Failed, Reason::ImagePullFailed, None, false)).as_deref(),
            Some("failed task – hello (ImagePullFailed: the daemon's words)")
        );
        assert_eq!(
            line(&ending(
                Phase::Cancelled,
                Reason::Cancelled,
                Some(137),
                true
            ))
            .as_deref(),
            Some("stopped task – hello")
        );
        assert_eq!(
            line(&Transition::Adopted {
                container_name: "c".into()
            }),
            None
        );
    }

    #[test]
    fn json_results_flatten_the_status_next_to_the_name() {
        let status = TaskRunStatus {
            phase: Some(Phase::Failed),
            exit_code: Some(3),
            ..TaskRunStatus::default()
        };
        let json = serde_json::to_value(TaskResult {
            name: "failing",
            status: &status,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "failing", "phase": "Failed", "exitCode": 3})
        );
    }
}
