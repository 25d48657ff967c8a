//! `taskrun run` as a user runs it: the built binary against the real Docker daemon, with no
//! cluster. Each test labels its containers with a node name of its own and removes them
//! when it ends, passing or not.

mod common;

use std::collections::HashMap;
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

use common::{TIMEOUT, repo_root};

/// The size of the pseudo-terminal of [`Node::run_on_terminal`].
const COLUMNS: NonZeroU16 = NonZeroU16::new(100).unwrap();
const ROWS: NonZeroU16 = NonZeroU16::new(30).unwrap();

/// A node name of the test's own; dropping it removes every container labelled with it.
struct Node {
    name: String,
}

impl Node {
    fn new(test: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self {
            name: format!("standalone-{test}-{}-{nanos}-{n}", std::process::id()),
        }
    }

    /// `taskrun run` with this node's name and `args`.
    fn run(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_taskrun"));
        command
            .current_dir(repo_root())
            .args(["run", "--node-name", &self.name])
            .args(args);
        command
    }

    /// The same, for tests that talk to the process while it runs.
    fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        let mut command = tokio::process::Command::from(self.run(args));
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command.spawn().expect("start taskrun")
    }

    /// `taskrun run` with this node's name and `args` on a terminal of [`COLUMNS`] by [`ROWS`]
    /// of the kind `term`: script(1) gives it a pseudo-terminal and copies all it draws there to
    /// its own stdout, and exits with its exit status.
    fn run_on_terminal(&self, term: &str, args: &[&str]) -> Output {
        let taskrun = [
            env!("CARGO_BIN_EXE_taskrun"),
            "run",
            "--node-name",
            &self.name,
        ];
        let words: Vec<String> = taskrun
            .iter()
            .chain(args)
            .map(|w| shell_quoted(w))
            .collect();
        let command = format!(
            "stty cols {COLUMNS} rows {ROWS} && exec {}",
            words.join(" ")
        );
        Command::new("script")
            .args([
                "--quiet",
                "--flush",
                "--return",
                "--command",
                &command,
                "/dev/null",
            ])
            .env("TERM", term)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .output()
            .expect("run script(1), from util-linux")
    }

    /// The containers labelled with this node, by the task name in their labels.
    fn containers(&self) -> HashMap<String, HashMap<String, String>> {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=taskrun.dev/node={}", self.name),
        ]);
        ids.lines()
            .map(|id| {
                let labels = docker(&["inspect", "--format", "{{json .Config.Labels}}", id]);
                let labels: HashMap<String, String> =
                    serde_json::from_str(&labels).expect("labels as JSON");
                (labels["taskrun.dev/name"].clone(), labels)
            })
            .collect()
    }

    fn container_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.containers().into_keys().collect();
        names.sort();
        names
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        common::remove_containers_labelled(&format!("taskrun.dev/node={}", self.name));
    }
}

fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `word` as one word for sh.
fn shell_quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The screen's rows, without trailing blanks, and without blank rows.
fn shown_rows(terminal: &vt100::Parser) -> Vec<String> {
    terminal
        .screen()
        .rows(0, COLUMNS.get())
        .map(|row| row.trim_end().to_string())
        .filter(|row| !row.is_empty())
        .collect()
}

/// Asserts that `lines` appear in `output` in this order, each as a whole line.
fn assert_lines_in_order(output: &str, lines: &[&str]) {
    let all: Vec<&str> = output.lines().collect();
    let mut from = 0;
    for line in lines {
        match all[from..].iter().position(|l| l == line) {
            Some(at) => from += at + 1,
            None => panic!("expected {line:?} after line {from} in:\n{output}"),
        }
    }
}

/// A YAML file that is removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(node: &Node, name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{}-{name}.yaml", node.name));
        std::fs::write(&path, text).expect("write a temp file");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads lines from the child's stdout until one equals `wanted`, failing after [`TIMEOUT`].
async fn wait_for_line(
    lines: &mut Lines<BufReader<ChildStdout>>,
    wanted: &str,
    seen: &mut Vec<String>,
) {
    let found = tokio::time::timeout(TIMEOUT, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            seen.push(line.clone());
            if line == wanted {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "no line {wanted:?} in:\n{}",
        seen.join("\n")
    );
}

fn interrupt(child: &tokio::process::Child) {
    let pid = child.id().expect("taskrun still runs").to_string();
    let status = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[test]
fn task_yaml_runs_every_task_and_removes_only_the_containers_it_should() {
    let node = Node::new("task-yaml");
    let output = node.run(&["examples/task.yaml"]).output().unwrap();
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}{}", stderr(&output));
    assert_lines_in_order(
        &out,
        &[
            "preparing task – hello-gopher",
            "starting task – hello-gopher",
            "completed task – hello-gopher",
        ],
    );
    assert_lines_in_order(
        &out,
        &[
            "preparing task – gopher-loops",
            "starting task – gopher-loops",
            "completed task – gopher-loops",
            "cleanup task – gopher-loops",
        ],
    );
    assert!(!out.contains("cleanup task – hello-gopher"), "{out}");
    assert_eq!(out.lines().count(), 7, "{out}");

    let containers = node.containers();
    assert_eq!(
        containers.keys().collect::<Vec<_>>(),
        ["hello-gopher"],
        "cleanup: false keeps the container"
    );
    let labels = &containers["hello-gopher"];
    assert_eq!(labels["taskrun.dev/managed-by"], "taskrun-operator");
    assert_eq!(labels["taskrun.dev/namespace"], "default");
    assert_eq!(labels["taskrun.dev/node"], node.name);
}

#[test]
fn a_failing_task_exits_1_and_shows_its_exit_code() {
    let node = Node::new("failing");
    let output = node
        .run(&["examples/failing.yaml", "examples/hello-gopher.yaml"])
        .output()
        .unwrap();
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}{}", stderr(&output));
    assert_lines_in_order(
        &out,
        &[
            "preparing task – failing",
            "starting task – failing",
            "failed task – failing (exit 3: Error)",
        ],
    );
    assert_lines_in_order(&out, &["completed task – hello-gopher"]);
    // cleanup: OnSuccess keeps a failed container for inspection.
    assert_eq!(node.container_names(), ["failing", "hello-gopher"]);
}

#[test]
fn parallel_1_runs_one_task_at_a_time_in_file_order() {
    let node = Node::new("parallel");
    let output = node
        .run(&[
            "--parallel",
            "1",
            "examples/hello-gopher.yaml",
            "examples/limited.yaml",
        ])
        .output()
        .unwrap();
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}{}", stderr(&output));
    assert_lines_in_order(
        &out,
        &[
            "preparing task – hello-gopher",
            "completed task – hello-gopher",
            "preparing task – limited",
            "completed task – limited",
        ],
    );
}

#[test]
fn taskrun_manifests_run_as_their_cleanup_policy_says() {
    let node = Node::new("manifests");
    let output = node
        .run(&["examples/hello-gopher.yaml", "examples/gopher-loops.yaml"])
        .output()
        .unwrap();
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}{}", stderr(&output));
    assert_lines_in_order(
        &out,
        &[
            "preparing task – hello-gopher",
            "starting task – hello-gopher",
            "completed task – hello-gopher",
        ],
    );
    assert_lines_in_order(
        &out,
        &[
            "completed task – gopher-loops",
            "cleanup task – gopher-loops",
        ],
    );
    assert!(!out.contains("cleanup task – hello-gopher"), "{out}");
    assert_eq!(
        node.container_names(),
        ["hello-gopher"],
        "cleanup: Never keeps it, Always removes it"
    );
}

#[test]
fn json_output_is_one_status_object_per_task() {
    let node = Node::new("json");
    let output = node
        .run(&[
            "--output",
            "json",
            "examples/task.yaml",
            "examples/failing.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let results: HashMap<String, serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            (value["name"].as_str().expect("a name").to_string(), value)
        })
        .collect();
    assert_eq!(results.len(), 3, "{results:#?}");
    let hello = &results["hello-gopher"];
    assert_eq!(
        (hello["phase"].as_str(), hello["exitCode"].as_i64()),
        (Some("Succeeded"), Some(0))
    );
    assert_eq!(hello["logTail"], "Hello, Gopher!\n");
    assert_eq!(hello["nodeName"], node.name.as_str());
    assert_eq!(results["gopher-loops"]["phase"], "Succeeded");
    let failing = &results["failing"];
    assert_eq!(
        (failing["phase"].as_str(), failing["exitCode"].as_i64()),
        (Some("Failed"), Some(3))
    );
    assert_eq!(failing["reason"], "Error");
    assert_eq!(failing["logTail"], "something went wrong\n");
    let done = failing["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Done"));
    assert_eq!(done.map(|c| &c["status"]), Some(&serde_json::json!("True")));
}

#[test]
fn standard_input_is_read_for_a_dash() {
    let node = Node::new("stdin");
    let task_yaml = std::fs::read(repo_root().join("examples/task.yaml")).unwrap();
    let output = common::run_with_input(node.run(&["-"]), &task_yaml);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}{}", stderr(&output));
    assert_lines_in_order(
        &out,
        &[
            "completed task – gopher-loops",
            "cleanup task – gopher-loops",
        ],
    );
    assert_lines_in_order(&out, &["completed task – hello-gopher"]);
}

#[test]
fn bad_input_is_refused_with_exit_2_and_nothing_runs() {
    let task = |fields: &str| {
        format!(
            "version: v0.0.1\ntasks:\n  - name: ok\n    runner: busybox\n    command: [\"true\"]\n  - name: bad\n{fields}"
        )
    };
    let cases = [
        ("missing-runner", task("    command: [echo]\n"), "task bad: runner: missing"),
        ("empty-command", task("    runner: busybox\n    command: []\n"), "task bad: command: empty"),
        ("unknown-key", task("    image: busybox\n    command: [echo]\n"), "task bad: tasks[1]: unknown field `image`"),
        ("version", "version: v2\ntasks: []\n".to_string(), "version: v2 is not supported"),
        (
            "image-whitespace",
            "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: spaced\nspec:\n  image: busy box\n".to_string(),
            "task spaced: spec.image: is not of the form it must have: Container image to run",
        ),
        (
            "env-name",
            "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: envy\nspec:\n  image: busybox\n  env:\n    - name: NO-DASHES\n".to_string(),
            "task envy: spec.env[0].name: is not of the form it must have: Name of the variable: letters, digits and underscores",
        ),
        (
            "timeout",
            "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: hasty\nspec:\n  image: busybox\n  timeoutSeconds: 0\n".to_string(),
            "task hasty: spec.timeoutSeconds: should be greater than or equal to 1",
        ),
        (
            "secret-env",
            "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: secretive\nspec:\n  image: busybox\n  env:\n    - name: PASSWORD\n      valueFrom: {secretKeyRef: {name: db, key: password}}\n".to_string(),
            "task secretive: spec.env[0].valueFrom: needs a cluster",
        ),
        (
            "service-account",
            "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: robot\nspec:\n  image: busybox\n  serviceAccountName: deployer\n".to_string(),
            "task robot: spec.serviceAccountName: needs a cluster",
        ),
        (
            "kind",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n".to_string(),
            "document 1: apiVersion \"v1\", kind \"Pod\" is not a TaskRun",
        ),
    ];
    for (case, text, expected) in cases {
        let node = Node::new(case);
        let file = TempFile::new(&node, case, &text);
        let path = file.path();
        // A good file next to the bad one must not run either.
        let output = node
            .run(&["examples/hello-gopher.yaml", path])
            .output()
            .unwrap();
        let err = stderr(&output);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{case}: {}{err}",
            stdout(&output)
        );
        assert!(
            err.contains(&format!("{path}: {expected}")),
            "{case}: expected {expected:?} in:\n{err}"
        );
        assert_eq!(stdout(&output), "", "{case}");
        assert!(
            node.containers().is_empty(),
            "{case}: a container was created"
        );
    }
}

#[test]
fn duplicate_task_names_across_files_are_refused() {
    let node = Node::new("duplicates");
    let output = node
        .run(&["examples/task.yaml", "examples/hello-gopher.yaml"])
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("examples/hello-gopher.yaml: task hello-gopher: the name is already used by a task in examples/task.yaml"),
        "{err}"
    );
    assert!(node.containers().is_empty());
}

#[test]
fn a_task_past_its_timeout_is_stopped_and_fails() {
    let node = Node::new("timeout");
    let manifest = "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: slow\nspec:\n  image: busybox\n  command: [sleep, \"30\"]\n  cleanup: Always\n  timeoutSeconds: 1\n  terminationGracePeriodSeconds: 0\n";
    let file = TempFile::new(&node, "slow", manifest);
    let started = Instant::now();
    let output = node.run(&[file.path()]).output().unwrap();
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}{}", stderr(&output));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_lines_in_order(
        &out,
        &[
            "starting task – slow",
            "failed task – slow (exit 137: DeadlineExceeded)",
            "cleanup task – slow",
        ],
    );
    assert!(node.containers().is_empty());
}

#[test]
fn retries_and_deadlines_run_as_in_the_cluster_with_a_line_per_retry() {
    let node = Node::new("retries");
    let manifest = "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: flaky\nspec:\n  image: busybox\n  command: [sh, -c, '[ $TASKRUN_ATTEMPT -ge 3 ] || exit 7']\n  cleanup: Never\n  retries: {limit: 3, backoff: {seconds: 1}}\n---\napiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: endless\nspec:\n  image: busybox\n  command: [sleep, '30']\n  terminationGracePeriodSeconds: 0\n  activeDeadlineSeconds: 2\n";
    let file = TempFile::new(&node, "retries", manifest);
    let output = node.run(&[file.path()]).output().unwrap();
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}{}", stderr(&output));
    let retries: Vec<&str> = out
        .lines()
        .filter(|line| line.starts_with("retrying task – flaky"))
        .collect();
    assert_eq!(retries.len(), 2, "{out}");
    assert!(
        retries[0].contains("attempt 1 failed, exit 7: Error; attempt 2 at"),
        "{out}"
    );
    assert_lines_in_order(&out, &["completed task – flaky"]);
    assert_lines_in_order(
        &out,
        &["failed task – endless (exit 137: ActiveDeadlineExceeded)"],
    );
    let attempts = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=taskrun.dev/node={}", node.name),
        "--filter",
        "label=taskrun.dev/name=flaky",
    ]);
    assert_eq!(attempts.lines().count(), 3, "one container per attempt");
}

#[tokio::test]
async fn an_interrupt_stops_and_removes_the_containers_it_started() {
    let node = Node::new("sigint");
    let manifest = "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: sleeper\nspec:\n  image: busybox\n  command: [sleep, \"30\"]\n  cleanup: Never\n  terminationGracePeriodSeconds: 1\n";
    let file = TempFile::new(&node, "sleeper", manifest);
    let mut child = node.spawn(&[file.path()]);
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    wait_for_line(&mut lines, "starting task – sleeper", &mut seen).await;
    assert_eq!(node.container_names(), ["sleeper"]);

    let interrupted = Instant::now();
    interrupt(&child);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exited in time")
        .unwrap();
    let took = interrupted.elapsed();
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push(line);
    }
    let out = seen.join("\n");
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_lines_in_order(
        &out,
        &[
            "starting task – sleeper",
            "stopped task – sleeper",
            "cleanup task – sleeper",
        ],
    );
    assert!(
        node.containers().is_empty(),
        "the container is removed even though cleanup is Never"
    );
}

#[tokio::test]
async fn a_second_interrupt_kills_without_waiting_out_the_grace_period() {
    let node = Node::new("sigint-twice");
    // `sleep` as PID 1 ignores SIGTERM, so only SIGKILL, after the default 10 s, would stop it.
    let task_yaml = "version: v0.0.1\ntasks:\n  - name: stubborn\n    runner: busybox\n    command: [sleep, \"30\"]\n";
    let file = TempFile::new(&node, "stubborn", task_yaml);
    let mut child = node.spawn(&[file.path()]);
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut errors = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = Vec::new();
    wait_for_line(&mut lines, "starting task – stubborn", &mut seen).await;

    let interrupted = Instant::now();
    interrupt(&child);
    let note = tokio::time::timeout(TIMEOUT, errors.next_line())
        .await
        .expect("a note in time")
        .unwrap();
    assert!(note.is_some_and(|n| n.contains("interrupt again to kill")));
    interrupt(&child);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exited in time")
        .unwrap();
    let took = interrupted.elapsed();
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push(line);
    }
    let out = seen.join("\n");
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_lines_in_order(
        &out,
        &["stopped task – stubborn", "cleanup task – stubborn"],
    );
    assert!(node.containers().is_empty());
}

#[test]
fn on_a_terminal_each_task_has_a_live_line_that_ends_in_the_summary() {
    let node = Node::new("terminal");
    let task_yaml = "version: v0.0.1\ntasks:\n  - name: talker\n    runner: busybox\n    command: [sh, -c, \"echo working on step 1; sleep 2\"]\n    cleanup: true\n  - name: failing\n    runner: busybox\n    command: [sh, -c, \"echo something went wrong; exit 3\"]\n    cleanup: true\n";
    let file = TempFile::new(&node, "terminal", task_yaml);
    let output = node.run_on_terminal("xterm-256color", &[file.path()]);
    let drawn = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{drawn:?}{}",
        stderr(&output)
    );

    // Every redraw of the live view starts at the start of a line: look at the screen after
    // each one, as a person watching it would.
    let live_line = regex::Regex::new(r"^\S talker +Running +\d+s +working on step 1$").unwrap();
    let mut terminal = vt100::Parser::new(ROWS, COLUMNS, 0);
    let mut saw_live_line = false;
    for redraw in output.stdout.split_inclusive(|&b| b == b'\r') {
        terminal.process(redraw);
        saw_live_line |= shown_rows(&terminal)
            .iter()
            .any(|row| live_line.is_match(row));
    }
    assert!(
        saw_live_line,
        "no live line of talker with its output in:\n{drawn:?}"
    );

    let screen = shown_rows(&terminal);
    let expected = [
        r"^✘ failing +Failed +\d+s +exit 3: Error – something went wrong$",
        r"^✔ talker +Succeeded +\d+s$",
        r"^2 tasks in \d+s: 1 succeeded, 1 failed$",
    ];
    assert_eq!(
        screen.len(),
        expected.len(),
        "the screen at the end:\n{}",
        screen.join("\n")
    );
    for (row, pattern) in screen.iter().zip(expected) {
        assert!(
            regex::Regex::new(pattern).unwrap().is_match(row),
            "{row:?} is not {pattern:?}; the screen at the end:\n{}",
            screen.join("\n")
        );
    }
    assert!(node.containers().is_empty());
}

/// What `taskrun run` draws of examples/task.yaml on a terminal of the kind `term`, asserting
/// that it succeeded with nothing but lines: no escape sequence of a live view.
fn drawn_as_lines(node: &Node, term: &str, args: &[&str]) -> String {
    let args = [args, &["examples/task.yaml"]].concat();
    let output = node.run_on_terminal(term, &args);
    let drawn = stdout(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{drawn:?}{}",
        stderr(&output)
    );
    assert!(!drawn.contains('\x1b'), "{drawn:?}");
    // The terminal turns each newline into a carriage return and a newline.
    drawn.replace("\r\n", "\n")
}

#[test]
fn a_terminal_that_cannot_redraw_lines_gets_the_step_lines() {
    let node = Node::new("dumb-terminal");
    let drawn = drawn_as_lines(&node, "dumb", &[]);
    assert_lines_in_order(
        &drawn,
        &[
            "preparing task – gopher-loops",
            "starting task – gopher-loops",
            "completed task – gopher-loops",
            "cleanup task – gopher-loops",
        ],
    );
    assert_eq!(drawn.lines().count(), 7, "{drawn}");
}

#[test]
fn json_output_on_a_terminal_is_one_object_per_task() {
    let node = Node::new("json-terminal");
    let drawn = drawn_as_lines(&node, "xterm-256color", &["--output", "json"]);
    let mut names: Vec<String> = drawn
        .lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            value["name"].as_str().expect("a name").to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["gopher-loops", "hello-gopher"], "{drawn}");
}

#[test]
fn local_runs_are_hardened_and_held_to_a_policy_file() {
    let node = Node::new("hardened");
    let dir = std::env::temp_dir().join(&node.name);
    std::fs::create_dir_all(&dir).unwrap();
    let manifests = dir.join("runs.yaml");
    std::fs::write(
        &manifests,
        "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata: {name: confined}\nspec:\n  image: busybox\n  command: [sh, -c, 'id -u; grep -E \"^(Seccomp|NoNewPrivs):\" /proc/self/status; ls /sys/class/net']\n  securityContext: {runAsUser: 1000, capabilities: {drop: [ALL]}}\n  network: None\n  cleanup: Never\n",
    )
    .unwrap();
    let output = node
        .run(&["--output", "json", manifests.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let result: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(result["logTail"], "1000\nNoNewPrivs:\t1\nSeccomp:\t2\nlo\n");
    let pids = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.PidsLimit}} {{.HostConfig.Privileged}} {{json .HostConfig.SecurityOpt}}",
        result["containerId"].as_str().unwrap(),
    ]);
    assert_eq!(pids, "4096 false [\"no-new-privileges\"]");

    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRunPolicy\nmetadata: {name: local}\nspec: {allowedImages: ['registry.example.com/**']}\n",
    )
    .unwrap();
    let output = node
        .run(&[
            "--output",
            "json",
            "--policy",
            policy.to_str().unwrap(),
            "examples/failing.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let result: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(
        (result["phase"].as_str(), result["reason"].as_str()),
        (Some("Failed"), Some("PolicyViolation"))
    );
    assert_eq!(
        result["message"],
        "TaskRunPolicy local: spec.image matches none of allowedImages"
    );
    assert!(node.container_names().iter().all(|n| n == "confined"));

    std::fs::write(
        &policy,
        "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRunPolicy\nmetadata: {name: local}\nspec: {deniedEgressCIDRs: [10.0.0.0/8]}\n",
    )
    .unwrap();
    let output = node
        .run(&[
            "--policy",
            policy.to_str().unwrap(),
            "examples/failing.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("spec.deniedEgressCIDRs: local runs set no firewall"),
        "{}",
        stderr(&output)
    );
    assert!(node.container_names().iter().all(|n| n == "confined"));
    let _ = std::fs::remove_dir_all(&dir);
}
