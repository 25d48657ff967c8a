//! CEL rules the API server enforces beyond what the field types and bounds say.

use std::sync::LazyLock;

use jsonschema::error::ValidationErrorKind;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResourceExt;
use schemars::Schema;
use serde_json::{Value, json};

use super::quantity::{parse_cpu_nanos, parse_memory_bytes};
use super::spec::Backoff;
use super::{TaskRun, TaskRunSpec};

/// An image reference as Docker reads it: `[domain[:port]/]path[:tag][@algorithm:hex]`, the
/// path in lowercase components. References the daemon would refuse as malformed are refused
/// at admission instead.
pub const IMAGE_REFERENCE: &str = concat!(
    r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?/)?",
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*",
    r"(?::[\w][\w.-]{0,127})?",
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$",
);

/// Makes the spec immutable after creation, except `cancel` going from false to true.
pub fn spec_rules(schema: &mut Schema) {
    let fields: Vec<String> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| {
            properties
                .keys()
                .filter(|k| *k != "cancel")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut rules: Vec<Value> = fields
        .iter()
        .map(|field| {
            json!({
                "rule": format!(
                    "has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || self.{field} == oldSelf.{field})"
                ),
                "message": format!("{field} cannot be changed after the TaskRun is created"),
                "fieldPath": format!(".{field}"),
            })
        })
        .collect();
    rules.push(json!({
        "rule": "!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",
        "message": "cancel cannot go back to false once it is true",
        "fieldPath": ".cancel",
    }));
    schema.insert("x-kubernetes-validations".into(), Value::Array(rules));
}

/// A rule on the limits that the API server checks in CEL, written once: the CRD carries its
/// CEL, and `taskrun run`, which never meets an API server, checks the same rule in Rust.
struct LimitRule {
    field: &'static str,
    cel: &'static str,
    message: &'static str,
    holds: fn(&Quantity) -> bool,
}

const LIMIT_RULES: [LimitRule; 2] = [
    LimitRule {
        field: "cpu",
        cel: "isQuantity(string(self.cpu)) && quantity(string(self.cpu)).compareTo(quantity('10m')) >= 0 && quantity(string(self.cpu)).compareTo(quantity('1024')) <= 0",
        message: "cpu must be a quantity of at least 10m (the smallest limit Docker enforces) and at most 1024, such as 500m or 2",
        holds: |q| {
            parse_cpu_nanos(q).is_some_and(|n| (10_000_000..=1_024_000_000_000).contains(&n))
        },
    },
    LimitRule {
        field: "memory",
        cel: "isQuantity(string(self.memory)) && quantity(string(self.memory)).compareTo(quantity('6Mi')) >= 0 && quantity(string(self.memory)).compareTo(quantity('1Pi')) <= 0",
        message: "memory must be a quantity of at least 6Mi, such as 64Mi or 1Gi",
        holds: |q| parse_memory_bytes(q).is_some_and(|b| (6 << 20..=1 << 50).contains(&b)),
    },
];

/// Requires the limits to be quantities Docker accepts.
pub fn limits_rules(schema: &mut Schema) {
    let rules: Vec<Value> = LIMIT_RULES
        .iter()
        .map(|rule| {
            json!({
                "rule": format!("!has(self.{}) || ({})", rule.field, rule.cel),
                "message": rule.message,
                "fieldPath": format!(".{}", rule.field),
            })
        })
        .collect();
    schema.insert("x-kubernetes-validations".into(), Value::Array(rules));
}

/// The rule on `retries.backoff` the API server checks in CEL, written once: the CRD carries
/// its CEL, and `taskrun run` checks the same rule in Rust.
struct BackoffRule {
    cel: &'static str,
    message: &'static str,
    holds: fn(&Backoff) -> bool,
}

const BACKOFF_RULE: BackoffRule = BackoffRule {
    cel: "self.maxSeconds >= self.seconds",
    message: "maxSeconds must be at least seconds",
    holds: |backoff| backoff.max_seconds >= backoff.seconds,
};

/// Requires the back-off's cap to be no shorter than its first wait.
pub fn backoff_rules(schema: &mut Schema) {
    let rule = json!({
        "rule": BACKOFF_RULE.cel,
        "message": BACKOFF_RULE.message,
        "fieldPath": ".maxSeconds",
    });
    schema.insert("x-kubernetes-validations".into(), Value::Array(vec![rule]));
}

/// A field of a spec and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    /// The field, as `kubectl explain` names it below `spec` (`env[0].name`).
    pub field: String,
    pub problem: String,
}

/// What the API server would refuse in a newly created spec, from one source: the generated
/// CRD's schema (types, bounds, patterns, enums, list-map keys) and the CEL rules above.
pub fn spec_problems(spec: &TaskRunSpec) -> Vec<SpecProblem> {
    static SCHEMA: LazyLock<Option<(Value, jsonschema::Validator)>> = LazyLock::new(|| {
        let crd = serde_json::to_value(TaskRun::crd()).ok()?;
        let schema = crd
            .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec")?
            .clone();
        let validator = jsonschema::validator_for(&schema).ok()?;
        Some((schema, validator))
    });
    let Some((schema, validator)) = SCHEMA.as_ref() else {
        return vec![SpecProblem {
            field: String::new(),
            problem: "the TaskRun schema could not be built".into(),
        }];
    };
    let Ok(instance) = serde_json::to_value(spec) else {
        return Vec::new();
    };
    let mut problems: Vec<SpecProblem> = validator
        .iter_errors(&instance)
        .map(|error| {
            let field = field_name(error.instance_path().as_str());
            // In the API server's own words where it has them.
            let problem = match error.kind() {
                // The field's own description says the form better than its pattern.
                ValidationErrorKind::Pattern { pattern } => {
                    let location = error.schema_path().as_str();
                    let field_schema = location.strip_suffix("/pattern").unwrap_or(location);
                    match schema
                        .pointer(&format!("{field_schema}/description"))
                        .and_then(Value::as_str)
                    {
                        Some(description) => {
                            format!("is not of the form it must have: {description}")
                        }
                        None => format!("should match '{pattern}'"),
                    }
                }
                ValidationErrorKind::Minimum { limit } => {
                    format!("should be greater than or equal to {}", number(limit))
                }
                ValidationErrorKind::Maximum { limit } => {
                    format!("should be less than or equal to {}", number(limit))
                }
                ValidationErrorKind::MinLength { limit } => {
                    format!("should be at least {limit} chars long")
                }
                ValidationErrorKind::MaxLength { limit } => {
                    format!("may not be longer than {limit}")
                }
                _ => error.to_string(),
            };
            SpecProblem { field, problem }
        })
        .collect();
    problems.extend(duplicate_keys(schema, &instance, String::new()));
    if let Some(limits) = spec.limits() {
        for rule in &LIMIT_RULES {
            let value = match rule.field {
                "cpu" => limits.cpu.as_ref(),
                _ => limits.memory.as_ref(),
            };
            if value.is_some_and(|q| !(rule.holds)(q)) {
                problems.push(SpecProblem {
                    field: format!("resources.limits.{}", rule.field),
                    problem: rule.message.into(),
                });
            }
        }
    }
    if let Some(backoff) = spec.retries.as_ref().and_then(|r| r.backoff.as_ref())
        && !(BACKOFF_RULE.holds)(backoff)
    {
        problems.push(SpecProblem {
            field: "retries.backoff.maxSeconds".into(),
            problem: BACKOFF_RULE.message.into(),
        });
    }
    problems
}

/// A bound as written in the schema (which holds `1` as `1.0`).
fn number(value: &Value) -> String {
    match value.as_f64() {
        Some(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", n as i64),
        _ => value.to_string(),
    }
}

/// `/env/0/name` as `env[0].name`.
fn field_name(pointer: &str) -> String {
    let mut field = String::new();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        if segment.chars().all(|c| c.is_ascii_digit()) {
            field.push_str(&format!("[{segment}]"));
        } else {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(segment);
        }
    }
    field
}

/// Entries of a list the schema keys by some fields (`x-kubernetes-list-type: map`) that
/// repeat a key, as the API server refuses them.
fn duplicate_keys(schema: &Value, instance: &Value, path: String) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    match instance {
        Value::Object(fields) => {
            for (name, value) in fields {
                if let Some(field_schema) = schema.pointer(&format!("/properties/{name}")) {
                    let path = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    problems.extend(duplicate_keys(field_schema, value, path));
                }
            }
        }
        Value::Array(items) => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut seen: Vec<(Vec<&Value>, usize)> = Vec::new();
            for (index, item) in items.iter().enumerate() {
                if !keys.is_empty() {
                    let key: Vec<&Value> = keys.iter().filter_map(|k| item.get(k)).collect();
                    match seen.iter().find(|(other, _)| *other == key) {
                        Some((_, first)) => problems.push(SpecProblem {
                            field: format!("{path}[{index}]"),
                            problem: format!("repeats the {} of {path}[{first}]", keys.join(", ")),
                        }),
                        None => seen.push((key, index)),
                    }
                }
                if let Some(item_schema) = schema.get("items") {
                    problems.extend(duplicate_keys(
                        item_schema,
                        item,
                        format!("{path}[{index}]"),
                    ));
                }
            }
        }
        _ => {}
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<(String, String)> {
        let spec: TaskRunSpec = serde_yaml::from_str(yaml).unwrap();
        spec_problems(&spec)
            .into_iter()
            .map(|p| (p.field, p.problem))
            .collect()
    }

    #[test]
    fn a_valid_spec_has_no_problems() {
        assert_eq!(
            problems(
                "image: busybox\nenv: [{name: A, value: b}]\nresources: {limits: {cpu: 10m, memory: 6Mi}}"
            ),
            []
        );
    }

    #[test]
    fn the_schema_and_the_cel_rules_are_checked_with_the_field_named() {
        let found = problems(
            "image: BusyBox\ntimeoutSeconds: 0\nworkingDir: relative\nenv: [{name: 1A}, {name: B}, {name: B}]\nresources: {limits: {cpu: 1m, memory: 1Mi}}",
        );
        let fields: Vec<&str> = found.iter().map(|(field, _)| field.as_str()).collect();
        for field in [
            "image",
            "timeoutSeconds",
            "workingDir",
            "env[0].name",
            "env[2]",
            "resources.limits.cpu",
            "resources.limits.memory",
        ] {
            assert!(fields.contains(&field), "{field} in {found:?}");
        }
        let retries = problems(
            "image: busybox\nretries: {limit: -1, backoff: {seconds: 20, maxSeconds: 5}}\npendingTimeoutSeconds: 0",
        );
        let fields: Vec<&str> = retries.iter().map(|(field, _)| field.as_str()).collect();
        for field in [
            "retries.limit",
            "retries.backoff.maxSeconds",
            "pendingTimeoutSeconds",
        ] {
            assert!(fields.contains(&field), "{field} in {retries:?}");
        }
        let cpu = &found
            .iter()
            .find(|(f, _)| f == "resources.limits.cpu")
            .unwrap()
            .1;
        assert!(cpu.contains("at least 10m"), "{cpu}");
    }

    #[test]
    fn image_references_docker_accepts_match_and_malformed_ones_do_not() {
        let pattern = regex::Regex::new(IMAGE_REFERENCE).unwrap();
        for good in [
            "busybox",
            "busybox:latest",
            "busybox:1.36.1-musl",
            "library/busybox",
            "registry.example.com/team/tool:v2",
            "localhost:5000/tool",
            "127.0.0.1:5000/a/b/c:tag_1",
            "my-registry:5000/some__name/x-y.z",
            "tool@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "tool:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Registry.Example.com/team/tool",
        ] {
            assert!(pattern.is_match(good), "{good} is a valid reference");
        }
        for bad in [
            "BusyBox:latest",
            "busybox:",
            "busybox@sha256:abc",
            "busybox@",
            "busybox:tag with space",
            "-busybox",
            "busybox//x",
            "busybox:-tag",
            "registry.example.com/Team/tool",
            ":latest",
        ] {
            assert!(!pattern.is_match(bad), "{bad} is malformed");
        }
    }
}
