//! What `taskrun run` prints: a line per step of each task for people, or a JSON object per
//! finished task for scripts. On a terminal, people get a live view instead of step lines: a
//! line per running task with its phase, elapsed time and last line of output, which becomes
//! the task's result line when it ends, and a line of totals at the end.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::api::{Phase, Reason, TaskRunStatus};
use crate::docker::DockerError;
use crate::lifecycle::{Ending, Executor, Transition};

/// How often the live view reads a running task's last line of output. Reading the newest
/// line costs the daemon the same whatever the container writes; following the output would
/// carry all of it, however much, to show one line.
const OUTPUT_INTERVAL: Duration = Duration::from_millis(500);

/// How often a live line's spinner and elapsed time move.
const SPINNER_INTERVAL: Duration = Duration::from_millis(120);

/// Names longer than this are not padded: one long name should not push every line right.
const MAX_NAME_COLUMN: usize = 32;

/// Most characters of a task's output kept for its live line; the terminal's width cuts it
/// shorter.
const MAX_SHOWN_CHARS: usize = 512;

/// `{prefix}` is the name and phase, `{wide_msg}` the last line of output.
const LIVE_TEMPLATE: &str = "{spinner:.cyan} {prefix:.bold} {elapsed:>4}  {wide_msg:.dim}";

/// How `taskrun run` reports on its tasks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A line per step of each task, such as `completed task – hello`; on a terminal, a live
    /// view of the running tasks and a line per task as it ends.
    #[default]
    Text,
    /// A JSON object per line for each task as it ends: its `name` and the fields of a
    /// TaskRun's status.
    Json,
}

/// Writes the output of one `taskrun run` to stdout.
#[derive(Clone)]
pub struct Reporter {
    format: OutputFormat,
    live: Option<LiveView>,
}

/// The live view: one line per running task, redrawn in place.
#[derive(Clone)]
struct LiveView {
    lines: MultiProgress,
    style: ProgressStyle,
    name_column: usize,
    started: Instant,
}

/// What one task reports, through its [`Reporter`].
pub struct TaskReport<'a> {
    reporter: &'a Reporter,
    name: &'a str,
    /// The task's live line, while the live view is shown.
    line: Option<ProgressBar>,
}

/// One line of `--output json`.
#[derive(Serialize)]
struct TaskResult<'a> {
    name: &'a str,
    #[serde(flatten)]
    status: &'a TaskRunStatus,
}

impl Reporter {
    /// A reporter writing in `format`, with the live view when stdout is a terminal that can
    /// redraw lines. `names` are the tasks', to line up the live view's columns.
    pub fn new<'a>(format: OutputFormat, names: impl IntoIterator<Item = &'a str>) -> Self {
        // indicatif draws nothing on a terminal that cannot move the cursor (TERM unset or
        // dumb): those get lines.
        let live = format == OutputFormat::Text
            && std::io::stdout().is_terminal()
            && !ProgressDrawTarget::stdout().is_hidden();
        Self {
            format,
            live: live.then(|| LiveView::new(names)),
        }
    }

    /// The reporter of the task `name`, from the moment it is taken up.
    pub fn task<'a>(&'a self, name: &'a str) -> TaskReport<'a> {
        TaskReport {
            reporter: self,
            name,
            line: self.live.as_ref().map(|live| live.add(name)),
        }
    }

    /// A note for people on stderr, such as what an interrupt does.
    pub fn note(&self, note: &str) {
        let write = || eprintln!("taskrun: {note}");
        match &self.live {
            Some(live) => live.lines.suspend(write),
            None => write(),
        }
    }

    /// Every task is over: the live view ends with a line of totals.
    pub fn summary(&self, statuses: &[TaskRunStatus]) {
        if let Some(live) = &self.live {
            let _ = live.lines.clear();
            emit(&totals_line(
                statuses.iter().map(TaskRunStatus::phase),
                live.started.elapsed(),
            ));
        }
    }

    fn text(&self, line: &str) {
        if self.format == OutputFormat::Text && self.live.is_none() {
            emit(line);
        }
    }
}

impl TaskReport<'_> {
    /// The task's container is about to be created.
    pub fn preparing(&self) {
        self.reporter
            .text(&format!("preparing task – {}", self.name));
    }

    /// A step of the task's run.
    pub fn transition(&self, transition: &Transition) {
        if let Some(line) = transition_line(self.name, transition) {
            self.reporter.text(&line);
            // A retry is worth a line of its own in the live view too.
            if let (Some(live), Transition::Retrying { .. }) = (&self.reporter.live, transition) {
                let _ = live.lines.println(terminal_safe(&line));
            }
        }
        if let (Some(live), Some(line)) = (&self.reporter.live, &self.line)
            && let Some(phase) = live_phase(transition)
        {
            line.set_prefix(live.prefix(self.name, &phase));
        }
    }

    /// The Docker daemon stopped answering and the task was given up.
    pub fn gave_up(&self, error: &DockerError) {
        self.reporter.text(&format!(
            "failed task – {} ({}: {error})",
            self.name,
            Reason::DaemonUnavailable
        ));
    }

    /// The task is over; `status` is all that is known of it.
    pub fn finished(&self, status: &TaskRunStatus) {
        if self.reporter.format == OutputFormat::Json {
            match serde_json::to_string(&TaskResult {
                name: self.name,
                status,
            }) {
                Ok(line) => emit(&line),
                Err(e) => eprintln!(
                    "taskrun: cannot write the result of task {} as JSON: {e}",
                    self.name
                ),
            }
        }
        if let (Some(live), Some(line)) = (&self.reporter.live, &self.line) {
            line.finish_and_clear();
            let result = result_line(
                &terminal_safe(self.name),
                live.name_column,
                status,
                line.elapsed(),
            );
            // As `emit`: a closed stdout must not stop the tasks.
            let _ = live.lines.println(result);
        }
    }

    /// Shows the last line of output of the run `uid` on the task's live line, as long as it
    /// is awaited; never returns. Without a live view it reads nothing.
    pub async fn show_output(&self, executor: &Executor, uid: &str, attempt: u32) {
        let Some(line) = &self.line else {
            return std::future::pending().await;
        };
        let mut interval = tokio::time::interval(OUTPUT_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            // The view is a courtesy: a failed read keeps the line it had, and the run's own
            // calls to the daemon report its failures.
            if let Ok(Some(text)) = executor.last_line(uid, attempt).await
                && let Some(shown) = shown_line(&text)
            {
                line.set_message(shown);
            }
        }
    }
}

impl LiveView {
    fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let name_column = names
            .into_iter()
            .map(|name| terminal_safe(name).chars().count())
            .max()
            .unwrap_or(0)
            .min(MAX_NAME_COLUMN);
        Self {
            lines: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            style: ProgressStyle::with_template(LIVE_TEMPLATE)
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            name_column,
            started: Instant::now(),
        }
    }

    /// A live line for the task `name`, at the bottom of the view.
    fn add(&self, name: &str) -> ProgressBar {
        let line = self.lines.add(
            ProgressBar::new_spinner()
                .with_style(self.style.clone())
                .with_prefix(self.prefix(name, &Phase::Pending.to_string())),
        );
        line.enable_steady_tick(SPINNER_INTERVAL);
        line
    }

    fn prefix(&self, name: &str, phase: &str) -> String {
        format!(
            "{:<width$}  {phase:<9}",
            terminal_safe(name),
            width = self.name_column
        )
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
        Transition::Retrying {
            ending,
            next_attempt,
            at,
        } => {
            let how = match ending.exit_code {
                Some(code) => format!("exit {code}: {}", ending.reason),
                None => format!("{}: {}", ending.reason, ending.message),
            };
            let at = at.round(jiff::Unit::Second).unwrap_or(*at);
            Some(format!(
                "retrying task – {name} (attempt {} failed, {how}; attempt {next_attempt} at {at})",
                next_attempt.saturating_sub(1)
            ))
        }
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

/// The phase a live line shows after a step; `None` when the step changes nothing shown.
fn live_phase(transition: &Transition) -> Option<String> {
    match transition {
        Transition::Started { .. } | Transition::Adopted { .. } => Some(Phase::Running.to_string()),
        Transition::Stopping(_) => Some("Stopping".into()),
        Transition::Ended(ending) => Some(ending.phase.to_string()),
        Transition::Retrying { .. } => Some(Reason::BackOff.to_string()),
        Transition::Removed { .. } => None,
    }
}

/// A task's line in the live view once it ended, in the columns of its live line: a mark, the
/// name, the phase, how long it took, and what went wrong, with the last line of output of a
/// task that failed.
fn result_line(name: &str, name_column: usize, status: &TaskRunStatus, took: Duration) -> String {
    let phase = status.phase();
    let mark = match phase {
        Phase::Succeeded => '✔',
        Phase::Cancelled => '–',
        _ => '✘',
    };
    let reason = status.reason.map_or("", Reason::as_str);
    let detail = match (phase, status.exit_code) {
        (Phase::Succeeded, _) => String::new(),
        (Phase::Cancelled, _) if status.start_time.is_some() => "stopped".into(),
        (Phase::Cancelled, _) => "stopped before it started".into(),
        (_, Some(code)) => format!("exit {code}: {reason}"),
        (_, None) => format!(
            "{reason}: {}",
            terminal_safe(status.message.as_deref().unwrap_or_default())
        ),
    };
    let last_output = match phase {
        Phase::Succeeded | Phase::Cancelled => None,
        _ => status.log_tail.as_deref().and_then(shown_line),
    };
    let detail = match last_output {
        Some(output) => format!("{detail} – {output}"),
        None => detail,
    };
    let line = format!(
        "{mark} {name:<name_column$}  {:<9} {:>4}  {detail}",
        phase.to_string(),
        format!("{:#}", HumanDuration(took)),
    );
    line.trim_end().to_string()
}

/// The live view's last line: how many tasks ended how, and how long they all took.
fn totals_line(phases: impl IntoIterator<Item = Phase>, took: Duration) -> String {
    let (mut succeeded, mut failed, mut cancelled) = (0, 0, 0);
    for phase in phases {
        match phase {
            Phase::Succeeded => succeeded += 1,
            Phase::Cancelled => cancelled += 1,
            // A task seen no further than Pending or Running was given up: it did not succeed.
            Phase::Failed | Phase::Pending | Phase::Running => failed += 1,
        }
    }
    let tasks = succeeded + failed + cancelled;
    let counts: Vec<String> = [
        (succeeded, "succeeded"),
        (failed, "failed"),
        (cancelled, "cancelled"),
    ]
    .into_iter()
    .filter(|(count, _)| *count > 0)
    .map(|(count, outcome)| format!("{count} {outcome}"))
    .collect();
    format!(
        "{tasks} task{} in {:#}: {}",
        if tasks == 1 { "" } else { "s" },
        HumanDuration(took),
        counts.join(", ")
    )
}

/// What a terminal would show of a container's last line of output (the text after its last
/// carriage return, as progress output redraws), made safe by [`terminal_safe`] and cut to
/// [`MAX_SHOWN_CHARS`]; `None` when that is blank.
fn shown_line(text: &str) -> Option<String> {
    let line = text
        .trim_end_matches(['\r', '\n'])
        .rsplit(['\r', '\n'])
        .next()?;
    let cut: String = line.chars().take(MAX_SHOWN_CHARS).collect();
    let shown = terminal_safe(&cut);
    let shown = shown.trim();
    (!shown.is_empty()).then(|| shown.to_string())
}

/// `text` with nothing that could move the cursor, change the terminal's state or reorder
/// what follows: control characters (escape sequences start with one) and bidirectional
/// overrides become U+FFFD, tabs spaces.
fn terminal_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() || is_bidi_control(c) => '\u{FFFD}',
            c => c,
        })
        .collect()
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn ending(phase: Phase, reason: Reason, exit_code: Option<i64>, started: bool) -> Transition {
        Transition::Ended(Ending {
            phase,
            reason,
            message: "the daemon's words".into(),
            exit_code,
            started_at: started.then_some(Timestamp::UNIX_EPOCH),
            finished_at: Timestamp::UNIX_EPOCH,
            retryable: true,
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
    fn the_live_template_is_valid() {
        assert!(ProgressStyle::with_template(LIVE_TEMPLATE).is_ok());
    }

    #[test]
    fn each_live_line_turns_into_a_result_line_in_the_same_columns() {
        let status = |phase, reason, exit_code, started: bool| TaskRunStatus {
            phase: Some(phase),
            reason: Some(reason),
            exit_code,
            message: Some("pull access denied\x1b[2J".into()),
            start_time: started.then_some(Time(Timestamp::UNIX_EPOCH)),
            log_tail: Some("step 1\nsomething went wrong\n".into()),
            ..TaskRunStatus::default()
        };
        let took = Duration::from_secs(3);
        let line = |s: &TaskRunStatus| result_line("hello", 7, s, took);
        assert_eq!(
            line(&status(Phase::Succeeded, Reason::Completed, Some(0), true)),
            "✔ hello    Succeeded   3s"
        );
        assert_eq!(
            line(&status(Phase::Failed, Reason::Error, Some(3), true)),
            "✘ hello    Failed      3s  exit 3: Error – something went wrong"
        );
        assert_eq!(
            line(&status(Phase::Failed, Reason::ImagePullFailed, None, false)),
            "✘ hello    Failed      3s  ImagePullFailed: pull access denied\u{FFFD}[2J – something went wrong"
        );
        assert_eq!(
            line(&status(
                Phase::Cancelled,
                Reason::Cancelled,
                Some(137),
                true
            )),
            "– hello    Cancelled   3s  stopped"
        );
        assert_eq!(
            line(&status(Phase::Cancelled, Reason::Cancelled, None, false)),
            "– hello    Cancelled   3s  stopped before it started"
        );
    }

    #[test]
    fn totals_name_each_outcome_that_happened() {
        let took = Duration::from_secs(75);
        assert_eq!(
            totals_line([Phase::Succeeded], took),
            "1 task in 75s: 1 succeeded"
        );
        assert_eq!(
            totals_line(
                [
                    Phase::Succeeded,
                    Phase::Failed,
                    Phase::Cancelled,
                    Phase::Pending,
                    Phase::Succeeded
                ],
                took
            ),
            "5 tasks in 75s: 2 succeeded, 2 failed, 1 cancelled"
        );
    }

    #[test]
    fn a_shown_line_is_what_a_terminal_would_show_last() {
        assert_eq!(shown_line("step 1\nstep 2\n").as_deref(), Some("step 2"));
        assert_eq!(shown_line("10%\r20%\r30%\n").as_deref(), Some("30%"));
        assert_eq!(shown_line("\tindented \r\n").as_deref(), Some("indented"));
        assert_eq!(
            shown_line("\x1b[31mred\x1b[0m\n").as_deref(),
            Some("\u{FFFD}[31mred\u{FFFD}[0m")
        );
        assert_eq!(shown_line(" \n"), None);
        assert_eq!(shown_line(""), None);
        let long = "x".repeat(MAX_SHOWN_CHARS + 10);
        assert_eq!(
            shown_line(&long).map(|l| l.chars().count()),
            Some(MAX_SHOWN_CHARS)
        );
    }

    /// What could act on a terminal instead of being shown.
    fn acts_on_a_terminal(c: char) -> bool {
        c.is_control() || is_bidi_control(c)
    }

    #[test]
    fn no_byte_of_output_reaches_the_terminal_as_a_control() {
        for byte in 0..=u8::MAX {
            let text = String::from_utf8_lossy(&[b'a', byte, b'b', b'\n']).into_owned();
            let shown = shown_line(&text).unwrap_or_default();
            assert!(
                !shown.chars().any(acts_on_a_terminal),
                "byte {byte:#04x}: {shown:?}"
            );
        }
        for code in 0..=0x10FFFFu32 {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            let safe = terminal_safe(&format!("a{c}b"));
            assert!(
                !safe.chars().any(acts_on_a_terminal),
                "U+{code:04X}: {safe:?}"
            );
            if !acts_on_a_terminal(c) && c != '\t' {
                assert_eq!(safe, format!("a{c}b"), "U+{code:04X} is kept");
            }
        }
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
