//! Properties of the input parser: any text gives tasks, or errors that name the file on one
//! line of text, never a panic; generated valid files give exactly the specs they describe;
//! generated files with one known fault give exactly the error for that fault.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::json;

use super::*;
use crate::api::{EnvVar, ImagePullPolicy, ResourceLimits, ResourceRequirements};

const FILE: &str = "gen.yaml";

/// What every outcome of `parse` must look like, whatever the text: tasks that can run, all
/// from this file, or at least one error, each naming the file on one line of printable text.
fn check_outcome(text: &str) -> Result<(), TestCaseError> {
    match parse(FILE, text) {
        Ok(tasks) => {
            prop_assert!(!tasks.is_empty(), "no tasks and no error for {text:?}");
            for task in &tasks {
                prop_assert_eq!(&task.file, FILE);
                prop_assert!(!task.name.trim().is_empty(), "{:?}", task);
                prop_assert!(!task.spec.image.is_empty(), "{:?}", task);
                prop_assert!(!task.spec.image.contains(char::is_whitespace), "{:?}", task);
            }
        }
        Err(errors) => {
            prop_assert!(!errors.is_empty(), "an empty list of errors for {text:?}");
            for error in &errors {
                let message = error.to_string();
                let detail = message.strip_prefix(&format!("{FILE}: "));
                prop_assert!(
                    detail.is_some_and(|d| !d.trim().is_empty()),
                    "{message:?} does not name the file and the problem"
                );
                let breaking = |c: char| {
                    c.is_control()
                        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
                };
                prop_assert!(
                    !message.contains(breaking),
                    "{message:?} is not one line of text"
                );
            }
        }
    }
    Ok(())
}

/// The tasks of a text that must parse.
fn tasks(text: &str) -> Result<Vec<Task>, TestCaseError> {
    parse(FILE, text).map_err(|errors| {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        TestCaseError::fail(format!("{text}\n{errors:#?}"))
    })
}

/// Checks that a text gives exactly one error, and that it starts as expected.
fn one_error(text: &str, expected: &str) -> Result<(), TestCaseError> {
    let errors: Vec<String> = match parse(FILE, text) {
        Ok(tasks) => return Err(TestCaseError::fail(format!("{text}\nparsed: {tasks:?}"))),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    };
    prop_assert_eq!(errors.len(), 1, "{}\n{:#?}", text, errors);
    prop_assert!(
        errors[0].starts_with(expected),
        "{}\n{:?} is not {:?}",
        text,
        errors[0],
        expected
    );
    Ok(())
}

/// A YAML double-quoted scalar holding exactly `text`, whatever characters it has.
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~'
            | '\u{A0}'..='\u{D7FF}'
            | '\u{E000}'..='\u{FEFE}'
            | '\u{FF00}'..='\u{FFFD}' => out.push(c),
            c if u32::from(c) > 0xFFFF => out.push(c),
            c => out.push_str(&format!("\\u{:04X}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

/// Any text at all, control characters and YAML's own punctuation included.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{0,12}",
        1 => any::<String>(),
        1 => select(&["true", "null", "~", "- x", "a: b", "#", "'", "\"", "*x", "&x", "{", "]"][..])
            .prop_map(String::from),
    ]
}

fn image() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,10}(/[a-z0-9]{1,4}([._-][a-z0-9]{1,3})?)?(:[a-z0-9][a-z0-9.]{0,5})?"
}

/// Distinct task names: a name each, and an index so that none repeats.
fn names(count: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[a-z][a-z0-9-]{0,12}", count).prop_map(|bases| {
        bases
            .into_iter()
            .enumerate()
            .map(|(index, base)| format!("{base}-{index}"))
            .collect()
    })
}

/// One task of a task.yaml file.
#[derive(Clone, Debug)]
struct OldTaskText {
    name: String,
    runner: Option<String>,
    command: Vec<String>,
    cleanup: Option<bool>,
    /// A key the format does not have, with its value.
    extra: Option<(String, String)>,
    /// The order its keys are written in.
    order: Vec<usize>,
    flow_lists: bool,
}

impl OldTaskText {
    fn render(&self) -> String {
        let list = |items: &[String]| {
            if self.flow_lists || items.is_empty() {
                let items: Vec<String> = items.iter().map(|i| quoted(i)).collect();
                format!(" [{}]", items.join(", "))
            } else {
                items
                    .iter()
                    .map(|i| format!("\n      - {}", quoted(i)))
                    .collect()
            }
        };
        let keys = [
            Some(format!("name: {}", quoted(&self.name))),
            self.runner
                .as_ref()
                .map(|r| format!("runner: {}", quoted(r))),
            Some(format!("command:{}", list(&self.command))),
            self.cleanup.map(|c| format!("cleanup: {c}")),
            self.extra
                .as_ref()
                .map(|(k, v)| format!("{k}: {}", quoted(v))),
        ];
        let lines: Vec<&String> = self
            .order
            .iter()
            .filter_map(|&index| keys[index].as_ref())
            .collect();
        let mut out = String::new();
        for (index, line) in lines.into_iter().enumerate() {
            out.push_str(if index == 0 { "  - " } else { "    " });
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    fn expected(&self) -> Task {
        Task {
            file: FILE.into(),
            namespace: "default".into(),
            name: self.name.clone(),
            spec: TaskRunSpec {
                command: self.command.clone(),
                cleanup: CleanupPolicy::from_flag(self.cleanup.unwrap_or(false)),
                ..TaskRunSpec::for_image(self.runner.clone().unwrap_or_default())
            },
        }
    }
}

/// A whole task.yaml file.
#[derive(Clone, Debug)]
struct TaskFileText {
    version: String,
    version_last: bool,
    comment: Option<String>,
    tasks: Vec<OldTaskText>,
}

impl TaskFileText {
    fn render(&self) -> String {
        let version = format!("version: {}\n", self.version);
        let tasks: String = self.tasks.iter().map(OldTaskText::render).collect();
        let comment = self
            .comment
            .as_ref()
            .map(|c| format!("# {c}\n"))
            .unwrap_or_default();
        if self.version_last {
            format!("{comment}tasks:\n{tasks}{version}")
        } else {
            format!("{comment}{version}tasks:\n{tasks}")
        }
    }

    fn expected(&self) -> Vec<Task> {
        self.tasks.iter().map(OldTaskText::expected).collect()
    }
}

fn task_file() -> impl Strategy<Value = TaskFileText> {
    (1usize..4)
        .prop_flat_map(|count| {
            let task = (
                image(),
                proptest::collection::vec(text(), 1..4),
                proptest::option::of(any::<bool>()),
                Just(vec![0, 1, 2, 3]).prop_shuffle(),
                any::<bool>(),
            );
            (
                names(count),
                proptest::collection::vec(task, count),
                select(&["v0.0.1", "\"v0.0.1\"", "'v0.0.1'"][..]),
                any::<bool>(),
                proptest::option::of("[a-zA-Z0-9 ,.:#-]{0,20}"),
            )
        })
        .prop_map(
            |(names, tasks, version, version_last, comment)| TaskFileText {
                version: version.into(),
                version_last,
                comment,
                tasks: names
                    .into_iter()
                    .zip(tasks)
                    .map(
                        |(name, (runner, command, cleanup, order, flow_lists))| OldTaskText {
                            name,
                            runner: Some(runner),
                            command,
                            cleanup,
                            extra: None,
                            order,
                            flow_lists,
                        },
                    )
                    .collect(),
            },
        )
}

/// A TaskRun manifest and the task it stands for.
#[derive(Clone, Debug)]
struct Manifest {
    value: serde_json::Value,
    expected: Task,
}

/// A manifest as YAML, or as JSON (which is YAML too) compact or pretty.
fn render_manifest(value: &serde_json::Value, style: u8) -> String {
    let text = match style % 3 {
        0 => serde_yaml::to_string(value).unwrap_or_default(),
        1 => serde_json::to_string(value).unwrap_or_default(),
        _ => serde_json::to_string_pretty(value).unwrap_or_default(),
    };
    format!("{}\n", text.trim_end())
}

fn cpu() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u32..=1024).prop_map(|cores| cores.to_string()),
        (1u32..=1_024_000).prop_map(|milli| format!("{milli}m")),
    ]
}

fn memory() -> impl Strategy<Value = String> {
    prop_oneof![
        (6u32..=4096).prop_map(|mi| format!("{mi}Mi")),
        (1u32..=1024).prop_map(|gi| format!("{gi}Gi")),
        (6_291_456u64..=1 << 40).prop_map(|bytes| bytes.to_string()),
    ]
}

fn manifest(name: String) -> impl Strategy<Value = Manifest> {
    const POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];
    const CLEANUPS: [&str; 3] = ["Always", "OnSuccess", "Never"];
    (
        (
            proptest::option::of("[a-z][a-z0-9-]{0,10}"),
            image(),
            proptest::collection::vec(text(), 0..3),
            proptest::collection::vec(text(), 0..3),
            proptest::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,10}", text(), 0..3),
            proptest::option::of(
                "/[a-z0-9/._-]{0,12}".prop_filter("a directory the schema admits", |dir| {
                    !crate::api::kernel_owned(dir)
                }),
            ),
        ),
        (
            proptest::option::of(select(&POLICIES[..])),
            proptest::option::of(select(&CLEANUPS[..])),
            proptest::option::of(1i64..=604_800),
            proptest::option::of(0i64..=2_592_000),
            proptest::option::of(0i64..=3600),
            proptest::option::of((proptest::option::of(cpu()), proptest::option::of(memory()))),
            proptest::option::of("[a-z0-9]([-a-z0-9.]{0,10}[a-z0-9])?"),
            any::<bool>(),
        ),
    )
        .prop_map(move |(first, second)| {
            let (namespace, image, command, args, env, working_dir) = first;
            let (policy, cleanup, timeout, ttl, grace, limits, node_name, cancel) = second;
            manifest_of(
                &name,
                namespace,
                TaskRunSpec {
                    image,
                    command,
                    args,
                    env: env
                        .into_iter()
                        .map(|(name, value)| EnvVar {
                            name,
                            value,
                            value_from: None,
                        })
                        .collect(),
                    env_from: Vec::new(),
                    volumes: Vec::new(),
                    volume_mounts: Vec::new(),
                    image_pull_secrets: Vec::new(),
                    service_account_name: None,
                    working_dir,
                    image_pull_policy: match policy {
                        Some("Always") => ImagePullPolicy::Always,
                        Some("Never") => ImagePullPolicy::Never,
                        _ => ImagePullPolicy::IfNotPresent,
                    },
                    cleanup: match cleanup {
                        Some("Always") => CleanupPolicy::Always,
                        Some("Never") => CleanupPolicy::Never,
                        _ => CleanupPolicy::OnSuccess,
                    },
                    timeout_seconds: timeout,
                    ttl_seconds_after_finished: ttl,
                    delete_after_seconds: None,
                    termination_grace_period_seconds: grace,
                    resources: limits.map(|(cpu, memory)| {
                        Box::new(ResourceRequirements {
                            limits: Some(ResourceLimits {
                                cpu: cpu.map(Quantity),
                                memory: memory.map(Quantity),
                            }),
                        })
                    }),
                    security_context: None,
                    network: None,
                    node_name,
                    cancel,
                    retries: None,
                    pending_timeout_seconds: None,
                    active_deadline_seconds: None,
                },
                (policy, cleanup),
            )
        })
}

/// The manifest, written field by field rather than by the spec's own serializer, so that the
/// field names are checked too.
fn manifest_of(
    name: &str,
    namespace: Option<String>,
    spec: TaskRunSpec,
    (policy, cleanup): (Option<&str>, Option<&str>),
) -> Manifest {
    let mut fields = serde_json::Map::new();
    let mut set = |key: &str, value: serde_json::Value| {
        fields.insert(key.into(), value);
    };
    set("image", json!(spec.image));
    if !spec.command.is_empty() {
        set("command", json!(spec.command));
    }
    if !spec.args.is_empty() {
        set("args", json!(spec.args));
    }
    if !spec.env.is_empty() {
        let env: Vec<_> = spec
            .env
            .iter()
            .map(|v| json!({"name": v.name, "value": v.value}))
            .collect();
        set("env", json!(env));
    }
    if let Some(dir) = &spec.working_dir {
        set("workingDir", json!(dir));
    }
    if let Some(policy) = policy {
        set("imagePullPolicy", json!(policy));
    }
    if let Some(cleanup) = cleanup {
        set("cleanup", json!(cleanup));
    }
    for (key, value) in [
        ("timeoutSeconds", spec.timeout_seconds),
        ("ttlSecondsAfterFinished", spec.ttl_seconds_after_finished),
        (
            "terminationGracePeriodSeconds",
            spec.termination_grace_period_seconds,
        ),
    ] {
        if let Some(value) = value {
            set(key, json!(value));
        }
    }
    if let Some(limits) = spec.limits() {
        let mut quantities = serde_json::Map::new();
        if let Some(cpu) = &limits.cpu {
            quantities.insert("cpu".into(), json!(cpu.0));
        }
        if let Some(memory) = &limits.memory {
            quantities.insert("memory".into(), json!(memory.0));
        }
        set("resources", json!({"limits": quantities}));
    }
    if let Some(node) = &spec.node_name {
        set("nodeName", json!(node));
    }
    if spec.cancel {
        set("cancel", json!(true));
    }
    let mut metadata = json!({"name": name});
    if let Some(namespace) = &namespace {
        metadata["namespace"] = json!(namespace);
    }
    Manifest {
        value: json!({
            "apiVersion": "taskrun.dev/v1alpha1",
            "kind": "TaskRun",
            "metadata": metadata,
            "spec": fields,
        }),
        expected: Task {
            file: FILE.into(),
            namespace: namespace.unwrap_or_else(|| "default".into()),
            name: name.into(),
            spec,
        },
    }
}

/// One YAML document of a file, a task.yaml or a manifest, and the tasks it stands for.
#[derive(Clone, Debug)]
struct Document {
    text: String,
    expected: Vec<Task>,
}

fn document() -> impl Strategy<Value = Document> {
    prop_oneof![
        task_file().prop_map(|file| Document {
            text: file.render(),
            expected: file.expected(),
        }),
        ("[a-z][a-z0-9-]{0,12}", any::<u8>()).prop_flat_map(|(name, style)| {
            manifest(name).prop_map(move |manifest| Document {
                text: render_manifest(&manifest.value, style),
                expected: vec![manifest.expected],
            })
        }),
    ]
}

/// Documents joined with `---`, sometimes with an empty document between them.
fn join(documents: &[Document], empty_between: bool) -> String {
    let separator = if empty_between { "---\n---\n" } else { "---\n" };
    documents
        .iter()
        .map(|document| document.text.as_str())
        .collect::<Vec<_>>()
        .join(separator)
}

/// One thing wrong with an otherwise valid task.yaml, and the error it must give.
#[derive(Clone, Copy, Debug)]
enum TaskFileFault {
    NoRunner,
    RunnerWithSpace,
    EmptyCommand,
    UnknownKey,
    OtherVersion,
}

/// One thing wrong with an otherwise valid manifest, and the error it must give.
#[derive(Clone, Copy, Debug)]
enum ManifestFault {
    Timeout(i64),
    RelativeWorkingDir,
    TinyMemory,
    DuplicateEnv,
    OtherKind,
}

proptest! {
    #[test]
    fn any_bytes_give_tasks_or_errors_naming_the_file(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        check_outcome(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn yaml_like_text_gives_tasks_or_errors_naming_the_file(
        text in "([ \n\t:,\\[\\]{}#&*!|>'\"%@`?-]|[a-z]{1,8}|version|tasks|apiVersion|kind|v0.0.1|taskrun.dev/v1alpha1|TaskRun|spec|image|\n  |\n- |---\n){0,40}",
    ) {
        check_outcome(&text)?;
    }

    #[test]
    fn damaged_valid_files_give_tasks_or_errors_naming_the_file(
        documents in proptest::collection::vec(document(), 1..3),
        cut in any::<proptest::sample::Index>(),
        splice in any::<proptest::sample::Index>(),
        inserted in "\\PC{0,3}",
    ) {
        let text = join(&documents, false);
        let chars: Vec<char> = text.chars().collect();
        let truncated: String = chars[..cut.index(chars.len() + 1)].iter().collect();
        check_outcome(&truncated)?;
        let at = splice.index(chars.len() + 1);
        let spliced: String = chars[..at]
            .iter()
            .copied()
            .chain(inserted.chars())
            .chain(chars[at..].iter().copied())
            .collect();
        check_outcome(&spliced)?;
    }

    #[test]
    fn text_from_the_input_stays_on_one_line_in_errors(
        template in select(&[
            "version: {}\ntasks: []\n",
            "apiVersion: {}\nkind: TaskRun\n",
            "apiVersion: taskrun.dev/v1alpha1\nkind: {}\n",
            "version: v0.0.1\ntasks:\n  - name: {}\n    command: [x]\n",
            "version: v0.0.1\ntasks:\n  - name: a\n    runner: b\n    command: [x]\n    {}: 1\n",
            "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: {}\nspec:\n  image: ''\n",
            "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: a\nspec:\n  image: b\n  {}: 1\n",
            "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: a\nspec:\n  image: b\n  env:\n    - name: {}\n",
            "apiVersion: taskrun.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: a\nspec:\n  image: {}\n",
        ][..]),
        value in prop_oneof![
            text().prop_map(|t| quoted(&t)),
            Just("{a: 1, b: [2, 3]}".to_string()),
            Just("[x, y]".to_string()),
        ],
    ) {
        check_outcome(&template.replace("{}", &value))?;
    }

    #[test]
    fn valid_task_files_give_their_tasks(file in task_file()) {
        let text = file.render();
        prop_assert_eq!(tasks(&text)?, file.expected(), "{}", text);
    }

    #[test]
    fn valid_documents_give_their_tasks_in_order(
        documents in proptest::collection::vec(document(), 1..4),
        empty_between in any::<bool>(),
    ) {
        let text = join(&documents, empty_between);
        let expected: Vec<Task> = documents.iter().flat_map(|d| d.expected.clone()).collect();
        prop_assert_eq!(tasks(&text)?, expected, "{}", text);
    }

    #[test]
    fn a_fault_in_a_task_file_gives_its_one_error(
        mut file in task_file(),
        which in any::<proptest::sample::Index>(),
        fault in select(&[
            TaskFileFault::NoRunner,
            TaskFileFault::RunnerWithSpace,
            TaskFileFault::EmptyCommand,
            TaskFileFault::UnknownKey,
            TaskFileFault::OtherVersion,
        ][..]),
    ) {
        let index = which.index(file.tasks.len());
        let task = &mut file.tasks[index];
        let name = task.name.clone();
        let expected = match fault {
            TaskFileFault::NoRunner => {
                task.runner = None;
                format!("{FILE}: task {name}: runner: missing; ")
            }
            TaskFileFault::RunnerWithSpace => {
                task.runner = Some("busy box".into());
                format!("{FILE}: task {name}: runner: is not of the form it must have: Container image to run, as Docker names it (`busybox`, `busybox:1.36`, `registry.example:5000/team/tool@sha256:...`).")
            }
            TaskFileFault::EmptyCommand => {
                task.command.clear();
                format!("{FILE}: task {name}: command: empty; ")
            }
            TaskFileFault::UnknownKey => {
                task.extra = Some(("image".into(), "busybox".into()));
                task.order.push(4);
                format!("{FILE}: task {name}: tasks[{index}]: unknown field `image`")
            }
            TaskFileFault::OtherVersion => {
                file.version = "v0.0.2".into();
                format!("{FILE}: version: v0.0.2 is not supported")
            }
        };
        let text = file.render();
        one_error(&text, &expected)?;
    }

    #[test]
    fn a_fault_in_a_manifest_gives_its_one_error(
        manifest in "[a-z][a-z0-9-]{0,12}".prop_flat_map(manifest),
        style in any::<u8>(),
        fault in prop_oneof![
            prop_oneof![i64::MIN..=0, 604_801..=i64::MAX].prop_map(ManifestFault::Timeout),
            Just(ManifestFault::RelativeWorkingDir),
            Just(ManifestFault::TinyMemory),
            Just(ManifestFault::DuplicateEnv),
            Just(ManifestFault::OtherKind),
        ],
    ) {
        let Manifest { mut value, expected } = manifest;
        let name = expected.name;
        let spec = &mut value["spec"];
        let expected = match fault {
            ManifestFault::Timeout(seconds) => {
                spec["timeoutSeconds"] = json!(seconds);
                format!("{FILE}: task {name}: spec.timeoutSeconds: should be ")
            }
            ManifestFault::RelativeWorkingDir => {
                spec["workingDir"] = json!("tmp");
                format!("{FILE}: task {name}: spec.workingDir: is not of the form it must have: ")
            }
            ManifestFault::TinyMemory => {
                spec["resources"] = json!({"limits": {"memory": "6291455"}});
                format!("{FILE}: task {name}: spec.resources.limits.memory: memory must be")
            }
            ManifestFault::DuplicateEnv => {
                spec["env"] = json!([{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]);
                format!("{FILE}: task {name}: spec.env[1]: repeats the name of env[0]")
            }
            ManifestFault::OtherKind => {
                value["kind"] = json!("Pod");
                format!("{FILE}: document 1: apiVersion \"taskrun.dev/v1alpha1\", kind \"Pod\" is not a TaskRun")
            }
        };
        let text = render_manifest(&value, style);
        one_error(&text, &expected)?;
    }
}

#[test]
fn quoting_keeps_every_character() {
    let every: String = [
        '\0', '\u{7}', '\u{7F}', '\u{85}', '\u{FEFF}', '\u{FFFE}', '"', '\\',
    ]
    .into_iter()
    .chain('\u{1F600}'..='\u{1F601}')
    .collect();
    let parsed: String = serde_yaml::from_str(&quoted(&every)).unwrap_or_default();
    assert_eq!(parsed, every);
}
