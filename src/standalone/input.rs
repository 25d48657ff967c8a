//! What `taskrun run` reads: task.yaml files in the original format and TaskRun manifests,
//! turned into specs. Every file is checked before anything runs, and every problem found is
//! reported with the file, the task and the field.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use kube::Resource;
use serde::Deserialize;
use serde_yaml::Value;

use crate::api::{CleanupPolicy, TaskRun, TaskRunSpec, spec_problems};

/// The one version of the original task.yaml format.
pub const TASK_FILE_VERSION: &str = "v0.0.1";

/// Namespace recorded in the labels of tasks that do not name one.
const DEFAULT_NAMESPACE: &str = "default";

/// Why `taskrun run` refuses the fields that take Secrets, ConfigMaps or a ServiceAccount
/// from the TaskRun's namespace.
const NEEDS_A_CLUSTER: &str = "needs a cluster: it takes objects from the TaskRun's namespace, which `taskrun run` does not have; apply the TaskRun to a cluster running the operator";

/// How `-` is called in messages.
const STDIN: &str = "<stdin>";

/// One task to run, from either format.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// The file it came from, as given on the command line.
    pub file: String,
    /// The TaskRun's namespace; `default` for task.yaml tasks.
    pub namespace: String,
    /// The task's name, unique among all tasks of one `taskrun run`.
    pub name: String,
    /// What to run.
    pub spec: TaskRunSpec,
}

/// A problem with the input. Nothing runs while there is one.
///
/// Every message is one line of printable text: what it quotes from the input (names, keys,
/// values, the parser's own quotes of them) has its control characters and line breaks
/// escaped, so a hostile file can neither break a message up nor send terminal escape codes.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file could not be read.
    #[error("{}: cannot read it: {cause}", printable(.file))]
    Read { file: String, cause: std::io::Error },
    /// The file is not YAML, or its overall shape is wrong.
    #[error("{}: {}", printable(.file), printable(.cause))]
    Malformed {
        file: String,
        cause: serde_yaml::Error,
    },
    /// A task does not have the shape its format requires: an unknown key, a wrong type.
    #[error("{}: task {}: {}", printable(.file), printable(.task), printable(.cause))]
    MalformedTask {
        file: String,
        task: String,
        cause: serde_yaml::Error,
    },
    /// A field of a task has a value that cannot run.
    #[error(
        "{}: task {}: {}: {}",
        printable(.file),
        printable(.task),
        printable(.field),
        printable(.problem)
    )]
    Invalid {
        file: String,
        task: String,
        field: String,
        problem: String,
    },
    /// A task.yaml file of a version other than [`TASK_FILE_VERSION`].
    #[error("{}: version: {}", printable(.file), printable(.problem))]
    Version { file: String, problem: String },
    /// A YAML document that is in neither format.
    #[error(
        "{}: document {document} is neither a task.yaml (with `version` and `tasks`) nor a TaskRun manifest (with `apiVersion` and `kind`)",
        printable(.file)
    )]
    UnknownFormat { file: String, document: usize },
    /// A manifest of some other kind of object.
    #[error(
        "{}: document {document}: {} is not a TaskRun; expected apiVersion {expected}",
        printable(.file),
        printable(.found)
    )]
    NotATaskRun {
        file: String,
        document: usize,
        found: String,
        expected: String,
    },
    /// A file without a single task.
    #[error("{}: has no tasks", printable(.file))]
    NoTasks { file: String },
    /// Two tasks with one name.
    #[error(
        "{}: task {}: the name is already used by a task in {}",
        printable(.file),
        printable(.task),
        printable(.first)
    )]
    DuplicateName {
        file: String,
        task: String,
        first: String,
    },
}

/// Text with what could break a line or reorder it on a terminal (control characters, line
/// and paragraph separators, bidirectional overrides) escaped as Rust writes it (`\n`,
/// `\u{1b}`); everything else as it is.
fn printable(text: &impl std::fmt::Display) -> String {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    let mut out = String::new();
    for c in text.to_string().chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads and checks every file (`-` is standard input). Returns every task, or every problem
/// found in any of the files.
pub fn load(files: &[String]) -> Result<Vec<Task>, Vec<InputError>> {
    let mut tasks = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let (label, text) = if file == "-" {
            (STDIN, std::io::read_to_string(std::io::stdin()))
        } else {
            (file.as_str(), std::fs::read_to_string(file))
        };
        let parsed = match text {
            Ok(text) => parse(label, &text),
            Err(cause) => Err(vec![InputError::Read {
                file: label.to_string(),
                cause,
            }]),
        };
        match parsed {
            Ok(found) => tasks.extend(found),
            Err(problems) => errors.extend(problems),
        }
    }
    errors.extend(duplicate_names(&tasks));
    if errors.is_empty() {
        Ok(tasks)
    } else {
        Err(errors)
    }
}

/// The tasks of one file's text, in either format; `file` names it in messages.
pub fn parse(file: &str, text: &str) -> Result<Vec<Task>, Vec<InputError>> {
    let mut values = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        match Value::deserialize(document) {
            Ok(value) => values.push(value),
            // The document iterator repeats a syntax error forever instead of ending.
            Err(cause) => {
                return Err(vec![InputError::Malformed {
                    file: file.into(),
                    cause,
                }]);
            }
        }
    }

    let mut tasks = Vec::new();
    let mut errors = Vec::new();
    let documents = serde_yaml::Deserializer::from_str(text)
        .zip(&values)
        .enumerate();
    for (index, (document, value)) in documents {
        let number = index + 1;
        let parsed = match classify(value) {
            Format::Empty => continue,
            Format::TaskFile => task_file(file, document, value),
            Format::TaskRun => taskrun(file, number, document, value).map(|task| vec![task]),
            Format::Unknown => Err(vec![InputError::UnknownFormat {
                file: file.into(),
                document: number,
            }]),
        };
        match parsed {
            Ok(found) => tasks.extend(found),
            Err(problems) => errors.extend(problems),
        }
    }
    if tasks.is_empty() && errors.is_empty() {
        errors.push(InputError::NoTasks { file: file.into() });
    }
    if errors.is_empty() {
        Ok(tasks)
    } else {
        Err(errors)
    }
}

enum Format {
    Empty,
    TaskFile,
    TaskRun,
    Unknown,
}

fn classify(value: &Value) -> Format {
    match value {
        Value::Null => Format::Empty,
        Value::Mapping(m) if m.contains_key("tasks") || m.contains_key("version") => {
            Format::TaskFile
        }
        Value::Mapping(m) if m.contains_key("apiVersion") || m.contains_key("kind") => {
            Format::TaskRun
        }
        _ => Format::Unknown,
    }
}

/// The original format: `version: v0.0.1` and a list of tasks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    /// Checked before the rest, so a newer file is reported as such rather than by its fields.
    #[serde(rename = "version")]
    _version: serde::de::IgnoredAny,
    tasks: Vec<OldTask>,
}

/// One task of the original format. Required fields are optional here so that a missing one
/// is reported with the task's name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OldTask {
    name: Option<String>,
    /// The image.
    runner: Option<String>,
    #[serde(default)]
    command: Vec<String>,
    /// Whether to remove the container once the task has finished.
    #[serde(default)]
    cleanup: bool,
}

fn task_file<'de>(
    file: &str,
    document: serde_yaml::Deserializer<'de>,
    value: &Value,
) -> Result<Vec<Task>, Vec<InputError>> {
    let version_problem = match value.get("version") {
        Some(Value::String(v)) if v == TASK_FILE_VERSION => None,
        Some(other) => Some(format!(
            "{} is not supported; the only version is {TASK_FILE_VERSION}",
            render(other)
        )),
        None => Some(format!(
            "missing; a task.yaml starts with `version: {TASK_FILE_VERSION}`"
        )),
    };
    if let Some(problem) = version_problem {
        return Err(vec![InputError::Version {
            file: file.into(),
            problem,
        }]);
    }
    let parsed = TaskFile::deserialize(document).map_err(|cause| {
        vec![match first_malformed_task(value) {
            Some(task) => InputError::MalformedTask {
                file: file.into(),
                task,
                cause,
            },
            None => InputError::Malformed {
                file: file.into(),
                cause,
            },
        }]
    })?;

    let mut tasks = Vec::new();
    let mut errors = Vec::new();
    for (index, old) in parsed.tasks.into_iter().enumerate() {
        match old.into_task(file, index) {
            Ok(task) => tasks.push(task),
            Err(problems) => errors.extend(problems),
        }
    }
    if errors.is_empty() {
        Ok(tasks)
    } else {
        Err(errors)
    }
}

/// The label of the first task that does not deserialize, which is the one a whole-file
/// error is about; the whole-file error has the line and column, this has the name.
fn first_malformed_task(value: &Value) -> Option<String> {
    // Each task goes back through YAML text rather than `from_value`, which would refuse
    // what text accepts (`command: [true]` is a list of strings in text, of bools in a Value).
    let malformed = |task: &Value| {
        serde_yaml::to_string(task)
            .is_ok_and(|text| serde_yaml::from_str::<OldTask>(&text).is_err())
    };
    let tasks = value.get("tasks")?.as_sequence()?;
    tasks
        .iter()
        .enumerate()
        .find(|(_, task)| malformed(task))
        .map(|(index, task)| task_label(task.get("name").and_then(Value::as_str), index + 1))
}

/// A task's name, or its position when it has none.
fn task_label(name: Option<&str>, number: usize) -> String {
    match name {
        Some(name) if !name.trim().is_empty() => name.to_string(),
        _ => format!("#{number}"),
    }
}

impl OldTask {
    fn into_task(self, file: &str, index: usize) -> Result<Task, Vec<InputError>> {
        let label = task_label(self.name.as_deref(), index + 1);
        let mut problems = Vec::new();
        if self.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
            problems.push(problem("name", "missing; every task needs a name"));
        }
        let runner_missing = self.runner.as_deref().is_none_or(|r| r.is_empty());
        if runner_missing {
            problems.push(problem(
                "runner",
                "missing; name the image to run, such as `runner: busybox`",
            ));
        }
        if self.command.is_empty() {
            problems.push(problem("command", "empty; list the program and its arguments, such as `command: [\"echo\", \"hello\"]`"));
        }
        let spec = TaskRunSpec {
            command: self.command,
            cleanup: CleanupPolicy::from_flag(self.cleanup),
            ..TaskRunSpec::for_image(self.runner.unwrap_or_default())
        };
        // The spec's checks know the image as `image`; this format calls it `runner`.
        let spec_problems = check_spec(&spec)
            .into_iter()
            .map(|p| match p.field.as_str() {
                "image" => Problem {
                    field: "runner".into(),
                    ..p
                },
                _ => p,
            });
        problems.extend(spec_problems.filter(|p| !(runner_missing && p.field == "runner")));
        if problems.is_empty() {
            Ok(Task {
                file: file.into(),
                namespace: DEFAULT_NAMESPACE.into(),
                name: label,
                spec,
            })
        } else {
            Err(problems
                .into_iter()
                .map(|p| p.into_error(file, &label))
                .collect())
        }
    }
}

fn taskrun<'de>(
    file: &str,
    number: usize,
    document: serde_yaml::Deserializer<'de>,
    value: &Value,
) -> Result<Task, Vec<InputError>> {
    let expected = (TaskRun::api_version(&()), TaskRun::kind(&()));
    let found = (
        value.get("apiVersion").map(render).unwrap_or_default(),
        value.get("kind").map(render).unwrap_or_default(),
    );
    if found.0 != expected.0 || found.1 != expected.1 {
        return Err(vec![InputError::NotATaskRun {
            file: file.into(),
            document: number,
            found: format!("apiVersion {:?}, kind {:?}", found.0, found.1),
            expected: format!("{}, kind {}", expected.0, expected.1),
        }]);
    }
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str);
    let taskrun = TaskRun::deserialize(document).map_err(|cause| {
        vec![InputError::MalformedTask {
            file: file.into(),
            task: task_label(name, number),
            cause,
        }]
    })?;

    let name = taskrun.metadata.name.as_deref();
    let label = task_label(name, number);
    let mut problems = Vec::new();
    if name.is_none_or(|n| n.trim().is_empty()) {
        problems.push(problem(
            "metadata.name",
            "missing; every TaskRun needs a name",
        ));
    }
    problems.extend(unknown_spec_fields(value.get("spec")));
    problems.extend(check_spec(&taskrun.spec).into_iter().map(|p| Problem {
        field: format!("spec.{}", p.field),
        ..p
    }));
    problems.extend(
        taskrun
            .spec
            .cluster_only_fields()
            .into_iter()
            .map(|field| Problem {
                field: format!("spec.{field}"),
                problem: NEEDS_A_CLUSTER.into(),
            }),
    );
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|p| p.into_error(file, &label))
            .collect());
    }
    Ok(Task {
        file: file.into(),
        namespace: taskrun
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
        name: label,
        spec: taskrun.spec,
    })
}

/// Keys of `spec` the schema does not know, which the API server would refuse under strict
/// validation; left unreported they would silently not apply.
fn unknown_spec_fields(spec: Option<&Value>) -> Vec<Problem> {
    let schema = schemars::schema_for!(TaskRunSpec);
    let known = schema
        .get("properties")
        .and_then(serde_json::Value::as_object);
    let Some(spec) = spec.and_then(Value::as_mapping) else {
        return Vec::new();
    };
    spec.keys()
        .map(render)
        .filter(|key| known.is_some_and(|known| !known.contains_key(key)))
        .map(|key| problem(&format!("spec.{key}"), "unknown field"))
        .collect()
}

/// A field with a value that cannot run.
struct Problem {
    field: String,
    problem: String,
}

fn problem(field: &str, problem: &str) -> Problem {
    Problem {
        field: field.into(),
        problem: problem.into(),
    }
}

impl Problem {
    fn into_error(self, file: &str, task: &str) -> InputError {
        InputError::Invalid {
            file: file.into(),
            task: task.into(),
            field: self.field,
            problem: self.problem,
        }
    }
}

/// What the API server would refuse in a spec, by spec field name: the CRD's own rules.
fn check_spec(spec: &TaskRunSpec) -> Vec<Problem> {
    spec_problems(spec)
        .into_iter()
        .map(|p| Problem {
            field: p.field,
            problem: p.problem,
        })
        .collect()
}

/// A scalar as written; other values as one line of YAML.
fn render(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default(),
    }
}

/// A name is how the output tells tasks apart, so it must be unique across all files.
fn duplicate_names(tasks: &[Task]) -> Vec<InputError> {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    tasks
        .iter()
        .filter_map(|task| match seen.entry(&task.name) {
            Entry::Vacant(entry) => {
                entry.insert(&task.file);
                None
            }
            Entry::Occupied(entry) => Some(InputError::DuplicateName {
                file: task.file.clone(),
                task: task.name.clone(),
                first: entry.get().to_string(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
