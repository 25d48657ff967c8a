//! Pure unit tests of what `taskrun run` reads, from text: task.yaml files and TaskRun manifests
//! turned into specs, and each problem reported with its file, task and field.

use super::*;
use crate::api::{EnvVar, ImagePullPolicy};

const TASK_FILE: &str = include_str!("../../../examples/task.yaml");

/// Every message the input gives, one per line.
fn errors(text: &str) -> Vec<String> {
    match parse("bad.yaml", text) {
        Ok(tasks) => panic!("expected errors, got {tasks:?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn one_error(text: &str) -> String {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors.into_iter().next().unwrap_or_default()
}

fn task_file(tasks: &str) -> String {
    format!("version: v0.0.1\ntasks:\n{tasks}")
}

fn taskrun(spec: &str) -> String {
    let spec: String = spec.lines().map(|line| format!("  {line}\n")).collect();
    format!(
        "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: hello\nspec:\n{spec}"
    )
}

#[test]
fn the_original_format_maps_onto_taskrun_specs() {
    let tasks = parse("task.yaml", TASK_FILE).unwrap();
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["hello-gopher", "gopher-loops"]);

    let hello = &tasks[0];
    assert_eq!(hello.file, "task.yaml");
    assert_eq!(hello.namespace, "default");
    assert_eq!(
        hello.spec,
        TaskRunSpec {
            command: vec!["echo".into(), "Hello, Gopher!".into()],
            cleanup: CleanupPolicy::Never,
            ..TaskRunSpec::for_image("busybox")
        }
    );
    assert_eq!(tasks[1].spec.cleanup, CleanupPolicy::Always);
    assert_eq!(tasks[1].spec.command[0], "sh");
}

#[test]
fn cleanup_defaults_to_keeping_the_container() {
    let tasks = parse(
        "t.yaml",
        &task_file("  - name: a\n    runner: busybox\n    command: [true]\n"),
    )
    .unwrap();
    assert_eq!(tasks[0].spec.cleanup, CleanupPolicy::Never);
}

#[test]
fn taskrun_manifests_are_read_document_by_document() {
    let text = format!(
        "{}---\n{}",
        include_str!("../../../examples/hello-gopher.yaml"),
        include_str!("../../../examples/limited.yaml")
            .replace("name: limited", "name: limited\n  namespace: team-a"),
    );
    let tasks = parse("two.yaml", &text).unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(
        (tasks[0].name.as_str(), tasks[0].namespace.as_str()),
        ("hello-gopher", "default")
    );
    assert_eq!(tasks[0].spec.cleanup, CleanupPolicy::Never);
    assert_eq!(
        tasks[0].spec.image_pull_policy,
        ImagePullPolicy::IfNotPresent
    );
    assert_eq!(
        (tasks[1].name.as_str(), tasks[1].namespace.as_str()),
        ("limited", "team-a")
    );
    assert_eq!(
        tasks[1].spec.env,
        [EnvVar {
            name: "GREETING".into(),
            value: "a limited task".into(),
            value_from: None,
        }]
    );
}

#[test]
fn every_example_is_valid() {
    for example in [
        include_str!("../../../examples/task.yaml"),
        include_str!("../../../examples/hello-gopher.yaml"),
        include_str!("../../../examples/gopher-loops.yaml"),
        include_str!("../../../examples/failing.yaml"),
        include_str!("../../../examples/limited.yaml"),
    ] {
        if let Err(errors) = parse("example.yaml", example) {
            panic!("{errors:#?}");
        }
    }
}

#[test]
fn a_missing_runner_names_the_file_the_task_and_the_field() {
    let error = one_error(&task_file("  - name: hello\n    command: [echo, hi]\n"));
    assert!(
        error.starts_with("bad.yaml: task hello: runner: missing"),
        "{error}"
    );
}

#[test]
fn an_empty_command_names_the_task_and_the_field() {
    let error = one_error(&task_file(
        "  - name: hello\n    runner: busybox\n    command: []\n",
    ));
    assert!(
        error.starts_with("bad.yaml: task hello: command: empty"),
        "{error}"
    );
    let error = one_error(&task_file("  - name: hello\n    runner: busybox\n"));
    assert!(
        error.starts_with("bad.yaml: task hello: command: empty"),
        "{error}"
    );
}

#[test]
fn an_unknown_key_names_the_task_the_key_and_where_it_is() {
    let text = task_file(
        "  - name: fine\n    runner: busybox\n    command: [true]\n  - name: typo\n    image: busybox\n    command: [true]\n",
    );
    let error = one_error(&text);
    assert!(error.starts_with("bad.yaml: task typo: "), "{error}");
    assert!(
        error.contains(
            "unknown field `image`, expected one of `name`, `runner`, `command`, `cleanup`"
        ),
        "{error}"
    );
    assert!(error.contains("line 7 column 5"), "{error}");
}

#[test]
fn an_unknown_top_level_key_names_the_key() {
    let error = one_error("version: v0.0.1\ntask:\n  - name: a\n");
    assert!(
        error.starts_with("bad.yaml: unknown field `task`"),
        "{error}"
    );
}

#[test]
fn a_value_of_the_wrong_type_names_the_field_and_where_it_is() {
    let error = one_error(&task_file(
        "  - name: hello\n    runner: busybox\n    command: echo hi\n",
    ));
    assert!(
        error.starts_with("bad.yaml: task hello: tasks[0].command: invalid type"),
        "{error}"
    );
    assert!(error.contains("line 5 column 14"), "{error}");
}

#[test]
fn duplicate_names_are_refused_across_files() {
    let tasks = |file: &str| parse(file, TASK_FILE).unwrap();
    let all: Vec<Task> = tasks("a.yaml").into_iter().chain(tasks("b.yaml")).collect();
    let errors: Vec<String> = duplicate_names(&all)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        [
            "b.yaml: task hello-gopher: the name is already used by a task in a.yaml",
            "b.yaml: task gopher-loops: the name is already used by a task in a.yaml",
        ]
    );
}

#[test]
fn duplicate_names_are_refused_within_a_file() {
    let text = task_file(
        "  - name: twin\n    runner: busybox\n    command: [true]\n  - name: twin\n    runner: busybox\n    command: [false]\n",
    );
    let tasks = parse("t.yaml", &text).unwrap();
    assert_eq!(duplicate_names(&tasks).len(), 1);
}

#[test]
fn only_version_v0_0_1_is_accepted() {
    let error = one_error("version: v0.0.2\ntasks: []\n");
    assert_eq!(
        error,
        "bad.yaml: version: v0.0.2 is not supported; the only version is v0.0.1"
    );
    let error = one_error("tasks:\n  - name: a\n");
    assert!(error.starts_with("bad.yaml: version: missing"), "{error}");
}

#[test]
fn a_task_without_a_name_is_called_by_its_position() {
    let error = one_error(&task_file("  - runner: busybox\n    command: [true]\n"));
    assert!(
        error.starts_with("bad.yaml: task #1: name: missing"),
        "{error}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let errors = errors(&task_file(
        "  - name: a\n  - name: b\n    runner: bad image\n    command: [true]\n",
    ));
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with("bad.yaml: task a: runner: missing"));
    assert!(errors[1].starts_with("bad.yaml: task a: command: empty"));
    assert_eq!(
        errors[2],
        "bad.yaml: task b: runner: is not of the form it must have: Container image to run, as Docker names it (`busybox`, `busybox:1.36`, `registry.example:5000/team/tool@sha256:...`)."
    );
}

#[test]
fn syntax_errors_give_the_line_and_column() {
    let error = one_error("version: v0.0.1\ntasks: [\n");
    assert!(error.starts_with("bad.yaml: "), "{error}");
    assert!(error.contains("line 3 column 1"), "{error}");
}

#[test]
fn a_syntax_error_in_a_later_document_ends_the_file_with_one_error() {
    let text = format!(
        "{}---\nkind: [\n",
        include_str!("../../../examples/hello-gopher.yaml")
    );
    assert_eq!(errors(&text).len(), 1);
}

#[test]
fn files_without_tasks_or_in_no_known_format_are_refused() {
    assert_eq!(one_error(""), "bad.yaml: has no tasks");
    assert_eq!(
        one_error("version: v0.0.1\ntasks: []\n"),
        "bad.yaml: has no tasks"
    );
    assert!(
        one_error("- just\n- a list\n").starts_with("bad.yaml: document 1 is neither a task.yaml")
    );
}

#[test]
fn manifests_of_other_kinds_are_refused() {
    let error = one_error("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n");
    assert_eq!(
        error,
        "bad.yaml: document 1: apiVersion \"v1\", kind \"Pod\" is not a TaskRun; expected apiVersion taskrun.dev/v1alpha1, kind TaskRun"
    );
}

#[test]
fn taskrun_specs_are_checked_as_the_crd_schema_would() {
    let error = |spec: &str| one_error(&taskrun(spec));
    assert_eq!(
        errors(&taskrun("image: ''")),
        [
            "bad.yaml: task hello: spec.image: should be at least 1 chars long".to_string(),
            "bad.yaml: task hello: spec.image: is not of the form it must have: Container image to run, as Docker names it (`busybox`, `busybox:1.36`, `registry.example:5000/team/tool@sha256:...`).".to_string(),
        ]
    );
    for image in ["busy box", "BusyBox:latest", "busybox@sha256:abc"] {
        assert_eq!(
            error(&format!("image: '{image}'")),
            "bad.yaml: task hello: spec.image: is not of the form it must have: Container image to run, as Docker names it (`busybox`, `busybox:1.36`, `registry.example:5000/team/tool@sha256:...`)."
        );
    }
    assert_eq!(
        error("image: busybox\nenv:\n  - name: 1ST\n    value: x"),
        "bad.yaml: task hello: spec.env[0].name: is not of the form it must have: Name of the variable: letters, digits and underscores, not starting with a digit."
    );
    assert_eq!(
        error("image: busybox\nenv:\n  - name: A\n  - name: A"),
        "bad.yaml: task hello: spec.env[1]: repeats the name of env[0]"
    );
    assert_eq!(
        error("image: busybox\ntimeoutSeconds: 0"),
        "bad.yaml: task hello: spec.timeoutSeconds: should be greater than or equal to 1"
    );
    assert_eq!(
        error("image: busybox\ntimeoutSeconds: 604801"),
        "bad.yaml: task hello: spec.timeoutSeconds: should be less than or equal to 604800"
    );
    assert_eq!(
        error("image: busybox\nworkingDir: tmp"),
        "bad.yaml: task hello: spec.workingDir: is not of the form it must have: Absolute path of the working directory inside the container. The image's is used when unset."
    );
    assert_eq!(
        error("image: busybox\nresources:\n  limits:\n    cpu: 1m"),
        "bad.yaml: task hello: spec.resources.limits.cpu: cpu must be a quantity of at least 10m (the smallest limit Docker enforces) and at most 1024, such as 500m or 2"
    );
    assert!(
        error("image: busybox\nresources:\n  limits:\n    memory: 1Mi")
            .starts_with("bad.yaml: task hello: spec.resources.limits.memory:")
    );
    assert_eq!(
        error("image: busybox\ncomand: [echo]"),
        "bad.yaml: task hello: spec.comand: unknown field"
    );
}

#[test]
fn a_manifest_of_the_wrong_shape_names_the_taskrun_and_the_field() {
    let error = one_error(&taskrun("image: busybox\ntimeoutSeconds: soon"));
    assert!(
        error.starts_with("bad.yaml: task hello: spec.timeoutSeconds: invalid type"),
        "{error}"
    );
    assert!(error.contains("line 7 column 19"), "{error}");
}

#[test]
fn a_manifest_without_a_name_is_called_by_its_document() {
    let text =
        "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata: {}\nspec:\n  image: busybox\n";
    assert_eq!(
        one_error(text),
        "bad.yaml: task #1: metadata.name: missing; every TaskRun needs a name"
    );
}

#[test]
fn unreadable_files_are_reported_with_the_rest() {
    let errors = load(&["/nonexistent/task.yaml".into()]).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .to_string()
            .starts_with("/nonexistent/task.yaml: cannot read it: ")
    );
}

#[test]
fn text_quoted_from_the_input_stays_on_one_line() {
    assert_eq!(
        one_error("version: {a: 1, b: [2, 3]}\ntasks: []\n"),
        r"bad.yaml: version: a: 1\nb:\n- 2\n- 3 is not supported; the only version is v0.0.1"
    );
    let error = one_error(&task_file(
        "  - name: \"clear\\e[2J\\u202Eesrever\"\n    command: [x]\n",
    ));
    assert!(
        error.starts_with(r"bad.yaml: task clear\u{1b}[2J\u{202e}esrever: runner: missing"),
        "{error}"
    );
    let error = one_error(&task_file(
        "  - name: a\n    runner: b\n    command: [x]\n    \"two\\nlines\": 1\n",
    ));
    assert!(
        error.starts_with(r"bad.yaml: task a: tasks[0]: unknown field `two\nlines`"),
        "{error}"
    );
}

#[test]
fn fields_that_need_a_cluster_are_refused_each_by_name() {
    let found = errors(&taskrun(
        "image: busybox\nenv: [{name: A, value: a}, {name: B, valueFrom: {configMapKeyRef: {name: c, key: k}}}]\nenvFrom: [{secretRef: {name: s}}]\nvolumes: [{name: v, emptyDir: {}}]\nvolumeMounts: [{name: v, mountPath: /v}]\nimagePullSecrets: [{name: p}]\nserviceAccountName: robot",
    ));
    for field in [
        "spec.env[1].valueFrom",
        "spec.envFrom",
        "spec.volumes",
        "spec.volumeMounts",
        "spec.imagePullSecrets",
        "spec.serviceAccountName",
    ] {
        assert!(
            found
                .iter()
                .any(|e| e.contains(&format!("{field}: needs a cluster"))),
            "{field} in {found:#?}"
        );
    }
    assert_eq!(found.len(), 6, "{found:#?}");
}
