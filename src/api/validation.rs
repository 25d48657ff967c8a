//! CEL rules the API server enforces beyond what the field types and bounds say.

use std::sync::LazyLock;

use jsonschema::error::ValidationErrorKind;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResourceExt;
use schemars::Schema;
use serde_json::{Value, json};

use super::policy::TaskRunPolicySpec;
use super::quantity::{parse_cpu_nanos, parse_memory_bytes};
use super::security::{Capabilities, Capability, SecurityContext};
use super::spec::{Backoff, EnvVar};
use super::workloads::{
    EmptyDirVolumeSource, EnvFromSource, EnvVarSource, KeyToPath, Volume, VolumeMount,
};
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
    insert_rules(schema, &SPEC_RULES);
}

/// A rule on one kind of object in the spec, written once: the CRD carries its CEL, and
/// `taskrun run`, which never meets an API server, checks the same rule in Rust.
struct ObjectRule<T> {
    /// The field the API server names, below the object (`.valueFrom`); empty for the object.
    field: &'static str,
    cel: &'static str,
    message: &'static str,
    holds: fn(&T) -> bool,
}

/// Adds `rules` to the CEL rules of the schema.
fn insert_rules<T>(schema: &mut Schema, rules: &[ObjectRule<T>]) {
    let mut all: Vec<Value> = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    all.extend(rules.iter().map(|rule| {
        let mut value = json!({ "rule": rule.cel, "message": rule.message });
        if !rule.field.is_empty() {
            value["fieldPath"] = Value::from(rule.field);
        }
        value
    }));
    schema.insert("x-kubernetes-validations".into(), Value::Array(all));
}

/// The problems `rules` find in `object`, which the spec names `at`.
fn broken<T>(rules: &[ObjectRule<T>], object: &T, at: &str) -> Vec<SpecProblem> {
    rules
        .iter()
        .filter(|rule| !(rule.holds)(object))
        .map(|rule| SpecProblem {
            field: format!("{at}{}", rule.field)
                .trim_start_matches('.')
                .to_string(),
            problem: rule.message.into(),
        })
        .collect()
}

/// Whether a path has a `..` segment.
fn climbs(path: &str) -> bool {
    path.split('/').any(|segment| segment == "..")
}

/// The top directories whose files are the kernel's and the node's devices, not the image's: a
/// working directory or mount there reaches the node (`/proc/self/fd/...` is the way out of
/// CVE-2024-21626).
const KERNEL_DIRECTORIES: [&str; 3] = ["proc", "sys", "dev"];

/// Whether `path`, however spelled (`//proc`, `/./sys`), is under a directory the kernel owns,
/// or climbs out of where it says it is with `..`, so it may be.
pub fn kernel_owned(path: &str) -> bool {
    climbs(path)
        || path
            .split('/')
            .find(|segment| !segment.is_empty() && *segment != ".")
            .is_some_and(|top| KERNEL_DIRECTORIES.contains(&top))
}

/// The CEL that the path at `field` is not under a directory the kernel owns (its `..`
/// segments are another rule's).
macro_rules! not_kernel_owned_cel {
    ($field:literal) => {
        concat!(
            "!(",
            $field,
            ".split('/').filter(s, s != '' && s != '.').size() > 0 && ",
            $field,
            ".split('/').filter(s, s != '' && s != '.')[0] in ['proc', 'sys', 'dev'])"
        )
    };
}

const SPEC_RULES: [ObjectRule<TaskRunSpec>; 3] = [
    ObjectRule {
        field: ".workingDir",
        cel: concat!(
            "!has(self.workingDir) || (!self.workingDir.split('/').exists(s, s == '..') && ",
            not_kernel_owned_cel!("self.workingDir"),
            ")"
        ),
        message: "workingDir must not be under /proc, /sys or /dev, nor have a '..' segment",
        holds: |spec| {
            spec.working_dir
                .as_deref()
                .is_none_or(|dir| !kernel_owned(dir))
        },
    },
    ObjectRule {
        field: ".volumeMounts",
        cel: "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && self.volumes.exists(v, v.name == m.name))",
        message: "every volumeMount must name a volume in volumes",
        holds: |spec| {
            spec.volume_mounts
                .iter()
                .all(|m| spec.volumes.iter().any(|v| v.name == m.name))
        },
    },
    // Docker writes files into a created container only where its root filesystem is writable.
    ObjectRule {
        field: ".securityContext.readOnlyRootFilesystem",
        cel: "!has(self.securityContext) || !has(self.securityContext.readOnlyRootFilesystem) || !self.securityContext.readOnlyRootFilesystem || ((!has(self.volumes) || self.volumes.all(v, has(v.emptyDir))) && !has(self.serviceAccountName))",
        message: "readOnlyRootFilesystem cannot be combined with secret or configMap volumes or serviceAccountName, whose files are written into the root filesystem",
        holds: |spec| {
            !spec
                .security_context
                .as_deref()
                .is_some_and(SecurityContext::read_only_root)
                || (spec.volumes.iter().all(|v| v.empty_dir.is_some())
                    && spec.service_account_name.is_none())
        },
    },
];

const SECURITY_CONTEXT_RULES: [ObjectRule<SecurityContext>; 2] = [
    ObjectRule {
        field: ".runAsUser",
        cel: "!has(self.runAsNonRoot) || !self.runAsNonRoot || !has(self.runAsUser) || self.runAsUser != 0",
        message: "runAsUser 0 is root, which runAsNonRoot forbids",
        holds: |context| !context.non_root() || context.run_as_user != Some(0),
    },
    ObjectRule {
        field: ".runAsGroup",
        cel: "!has(self.runAsGroup) || has(self.runAsUser)",
        message: "runAsGroup needs runAsUser",
        holds: |context| context.run_as_group.is_none() || context.run_as_user.is_some(),
    },
];

const CAPABILITIES_RULES: [ObjectRule<Capabilities>; 1] = [ObjectRule {
    field: ".add",
    cel: "!has(self.add) || !self.add.exists(c, c == 'ALL')",
    message: "ALL can only be dropped, not added",
    holds: |capabilities| !capabilities.add.contains(&Capability::ALL),
}];

const ENV_VAR_RULES: [ObjectRule<EnvVar>; 1] = [ObjectRule {
    field: ".valueFrom",
    cel: "!has(self.valueFrom) || !has(self.value) || self.value == ''",
    message: "value and valueFrom cannot both be set",
    holds: |env| env.value_from.is_none() || env.value.is_empty(),
}];

const ENV_SOURCE_RULES: [ObjectRule<EnvVarSource>; 1] = [ObjectRule {
    field: "",
    cel: "has(self.secretKeyRef) != has(self.configMapKeyRef)",
    message: "exactly one of secretKeyRef and configMapKeyRef must be set",
    holds: |source| source.secret_key_ref.is_some() != source.config_map_key_ref.is_some(),
}];

const ENV_FROM_RULES: [ObjectRule<EnvFromSource>; 1] = [ObjectRule {
    field: "",
    cel: "has(self.secretRef) != has(self.configMapRef)",
    message: "exactly one of secretRef and configMapRef must be set",
    holds: |source| source.secret_ref.is_some() != source.config_map_ref.is_some(),
}];

const VOLUME_RULES: [ObjectRule<Volume>; 1] = [ObjectRule {
    field: "",
    cel: "(has(self.secret) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.emptyDir) ? 1 : 0) == 1",
    message: "exactly one of secret, configMap and emptyDir must be set",
    holds: |volume| {
        [
            volume.secret.is_some(),
            volume.config_map.is_some(),
            volume.empty_dir.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count()
            == 1
    },
}];

const KEY_TO_PATH_RULES: [ObjectRule<KeyToPath>; 1] = [ObjectRule {
    field: ".path",
    cel: "!self.path.split('/').exists(s, s == '..')",
    message: "path must not contain a '..' segment",
    holds: |item| !climbs(&item.path),
}];

const EMPTY_DIR_RULES: [ObjectRule<EmptyDirVolumeSource>; 1] = [ObjectRule {
    field: ".sizeLimit",
    cel: "!has(self.sizeLimit) || (isQuantity(string(self.sizeLimit)) && quantity(string(self.sizeLimit)).compareTo(quantity('1Mi')) >= 0 && quantity(string(self.sizeLimit)).compareTo(quantity('1Pi')) <= 0)",
    message: "sizeLimit must be a quantity of at least 1Mi, such as 64Mi",
    holds: |dir| {
        dir.size_limit
            .as_ref()
            .is_none_or(|q| parse_memory_bytes(q).is_some_and(|b| (1 << 20..=1 << 50).contains(&b)))
    },
}];

const VOLUME_MOUNT_RULES: [ObjectRule<VolumeMount>; 2] = [
    ObjectRule {
        field: ".mountPath",
        cel: "!self.mountPath.split('/').exists(s, s == '..') && self.mountPath.split('/').exists(s, s != '')",
        message: "mountPath must be an absolute path other than / without a '..' segment",
        holds: |mount| {
            !climbs(&mount.mount_path) && mount.mount_path.split('/').any(|s| !s.is_empty())
        },
    },
    ObjectRule {
        field: ".mountPath",
        cel: not_kernel_owned_cel!("self.mountPath"),
        message: "mountPath must not be under /proc, /sys or /dev",
        holds: |mount| climbs(&mount.mount_path) || !kernel_owned(&mount.mount_path),
    },
];

/// Whether the limit `pick` of `lower` is at most that of `upper`; true unless both set it,
/// false when either is not a quantity.
pub(super) fn at_most(
    lower: Option<&super::spec::ResourceLimits>,
    upper: Option<&super::spec::ResourceLimits>,
    pick: fn(&super::spec::ResourceLimits) -> Option<&Quantity>,
    parse: fn(&Quantity) -> Option<i64>,
) -> bool {
    match (lower.and_then(pick), upper.and_then(pick)) {
        (Some(lower), Some(upper)) => {
            matches!((parse(lower), parse(upper)), (Some(l), Some(u)) if l <= u)
        }
        _ => true,
    }
}

const POLICY_SPEC_RULES: [ObjectRule<TaskRunPolicySpec>; 5] = [
    ObjectRule {
        field: ".defaultNetwork",
        cel: "!has(self.defaultNetwork) || !has(self.allowedNetworks) || self.defaultNetwork in self.allowedNetworks",
        message: "defaultNetwork must be one of allowedNetworks",
        holds: |policy| match (policy.default_network, &policy.allowed_networks) {
            (Some(default), Some(allowed)) => allowed.contains(&default),
            _ => true,
        },
    },
    ObjectRule {
        field: ".defaultLimits.cpu",
        cel: "!has(self.defaultLimits) || !has(self.defaultLimits.cpu) || !has(self.maxLimits) || !has(self.maxLimits.cpu) || quantity(string(self.defaultLimits.cpu)).compareTo(quantity(string(self.maxLimits.cpu))) <= 0",
        message: "defaultLimits.cpu must be at most maxLimits.cpu",
        holds: |policy| {
            at_most(
                policy.default_limits.as_ref(),
                policy.max_limits.as_ref(),
                |l| l.cpu.as_ref(),
                parse_cpu_nanos,
            )
        },
    },
    ObjectRule {
        field: ".defaultLimits.memory",
        cel: "!has(self.defaultLimits) || !has(self.defaultLimits.memory) || !has(self.maxLimits) || !has(self.maxLimits.memory) || quantity(string(self.defaultLimits.memory)).compareTo(quantity(string(self.maxLimits.memory))) <= 0",
        message: "defaultLimits.memory must be at most maxLimits.memory",
        holds: |policy| {
            at_most(
                policy.default_limits.as_ref(),
                policy.max_limits.as_ref(),
                |l| l.memory.as_ref(),
                parse_memory_bytes,
            )
        },
    },
    ObjectRule {
        field: ".allowedCapabilities",
        cel: "!has(self.allowedCapabilities) || !self.allowedCapabilities.exists(c, c == 'ALL')",
        message: "allowedCapabilities cannot hold ALL, which can only be dropped",
        holds: |policy| {
            policy
                .allowed_capabilities
                .as_ref()
                .is_none_or(|caps| !caps.contains(&Capability::ALL))
        },
    },
    ObjectRule {
        field: ".deniedEgressCIDRs",
        cel: "!has(self.deniedEgressCIDRs) || self.deniedEgressCIDRs.all(c, isCIDR(c))",
        message: "deniedEgressCIDRs must hold CIDRs, such as 10.0.0.0/8 or fd00::/8",
        holds: |policy| policy.denied_egress().is_ok(),
    },
];

/// A policy's defaults lie within what it allows.
pub fn policy_rules(schema: &mut Schema) {
    insert_rules(schema, &POLICY_SPEC_RULES);
}

/// What the API server's CEL rules refuse in a TaskRunPolicy's spec, checked in Rust for a
/// policy read from a file (`taskrun run --policy`). The schema's own bounds are the parser's.
pub fn policy_problems(policy: &TaskRunPolicySpec) -> Vec<SpecProblem> {
    let mut problems = broken(&POLICY_SPEC_RULES, policy, "");
    for (field, limits) in [
        ("maxLimits", policy.max_limits.as_ref()),
        ("defaultLimits", policy.default_limits.as_ref()),
    ] {
        let Some(limits) = limits else { continue };
        for rule in &LIMIT_RULES {
            let value = match rule.field {
                "cpu" => limits.cpu.as_ref(),
                _ => limits.memory.as_ref(),
            };
            if value.is_some_and(|q| !(rule.holds)(q)) {
                problems.push(SpecProblem {
                    field: format!("{field}.{}", rule.field),
                    problem: rule.message.into(),
                });
            }
        }
    }
    problems
}

/// A non-root user is not user 0; a group needs a user.
pub fn security_context_rules(schema: &mut Schema) {
    insert_rules(schema, &SECURITY_CONTEXT_RULES);
}

/// `ALL` is only for dropping.
pub fn capabilities_rules(schema: &mut Schema) {
    insert_rules(schema, &CAPABILITIES_RULES);
}

/// Exactly one of `value` and `valueFrom`.
pub fn env_var_rules(schema: &mut Schema) {
    insert_rules(schema, &ENV_VAR_RULES);
}

/// Exactly one of `secretKeyRef` and `configMapKeyRef`.
pub fn env_source_rules(schema: &mut Schema) {
    insert_rules(schema, &ENV_SOURCE_RULES);
}

/// Exactly one of `secretRef` and `configMapRef`.
pub fn env_from_rules(schema: &mut Schema) {
    insert_rules(schema, &ENV_FROM_RULES);
}

/// Exactly one source per volume.
pub fn volume_rules(schema: &mut Schema) {
    insert_rules(schema, &VOLUME_RULES);
}

/// Item paths stay below the mount path.
pub fn key_to_path_rules(schema: &mut Schema) {
    insert_rules(schema, &KEY_TO_PATH_RULES);
}

/// A size limit Docker's tmpfs can take.
pub fn empty_dir_rules(schema: &mut Schema) {
    insert_rules(schema, &EMPTY_DIR_RULES);
}

/// Mount paths that name a directory other than the root, without climbing.
pub fn volume_mount_rules(schema: &mut Schema) {
    insert_rules(schema, &VOLUME_MOUNT_RULES);
}

/// What the object rules above find in a spec.
fn object_rule_problems(spec: &TaskRunSpec) -> Vec<SpecProblem> {
    let mut problems = broken(&SPEC_RULES, spec, "");
    for (i, env) in spec.env.iter().enumerate() {
        problems.extend(broken(&ENV_VAR_RULES, env, &format!("env[{i}]")));
        if let Some(source) = &env.value_from {
            problems.extend(broken(
                &ENV_SOURCE_RULES,
                source,
                &format!("env[{i}].valueFrom"),
            ));
        }
    }
    for (i, source) in spec.env_from.iter().enumerate() {
        problems.extend(broken(&ENV_FROM_RULES, source, &format!("envFrom[{i}]")));
    }
    for (i, volume) in spec.volumes.iter().enumerate() {
        let at = format!("volumes[{i}]");
        problems.extend(broken(&VOLUME_RULES, volume, &at));
        let items = volume
            .secret
            .as_ref()
            .map(|s| (".secret", &s.items))
            .or(volume.config_map.as_ref().map(|c| (".configMap", &c.items)));
        if let Some((source, items)) = items {
            for (j, item) in items.iter().enumerate() {
                problems.extend(broken(
                    &KEY_TO_PATH_RULES,
                    item,
                    &format!("{at}{source}.items[{j}]"),
                ));
            }
        }
        if let Some(dir) = &volume.empty_dir {
            problems.extend(broken(&EMPTY_DIR_RULES, dir, &format!("{at}.emptyDir")));
        }
    }
    for (i, mount) in spec.volume_mounts.iter().enumerate() {
        problems.extend(broken(
            &VOLUME_MOUNT_RULES,
            mount,
            &format!("volumeMounts[{i}]"),
        ));
    }
    if let Some(context) = &spec.security_context {
        problems.extend(broken(&SECURITY_CONTEXT_RULES, context, "securityContext"));
        if let Some(capabilities) = &context.capabilities {
            problems.extend(broken(
                &CAPABILITIES_RULES,
                capabilities,
                "securityContext.capabilities",
            ));
        }
    }
    problems
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
    problems.extend(object_rule_problems(spec));
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
    fn paths_the_kernel_owns_are_refused_however_spelled() {
        for path in [
            "/proc/self/fd/8",
            "/proc",
            "//proc/1/root",
            "/./sys/fs",
            "/.//dev/",
            "/tmp/../proc",
        ] {
            assert!(kernel_owned(path), "{path}");
            let found = problems(&format!(
                "image: busybox\nworkingDir: {path}\nvolumes: [{{name: t, emptyDir: {{}}}}]\nvolumeMounts: [{{name: t, mountPath: '{path}'}}]"
            ));
            let fields: Vec<&str> = found.iter().map(|(field, _)| field.as_str()).collect();
            assert!(
                fields.contains(&"workingDir") && fields.contains(&"volumeMounts[0].mountPath"),
                "{path}: {found:?}"
            );
        }
        for path in ["/", "/work", "/procfs", "/srv/proc", "/device"] {
            assert!(!kernel_owned(path), "{path}");
        }
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
    fn references_volumes_and_mounts_are_checked_like_a_pods() {
        assert_eq!(
            problems(
                "image: busybox\nenv: [{name: A, valueFrom: {secretKeyRef: {name: s, key: k}}}]\nenvFrom: [{prefix: P_, configMapRef: {name: c}}]\nvolumes: [{name: v, secret: {secretName: s, items: [{key: k, path: a/b, mode: 256}]}}, {name: t, emptyDir: {sizeLimit: 64Mi}}]\nvolumeMounts: [{name: v, mountPath: /etc/v, readOnly: true}, {name: t, mountPath: /t}]\nimagePullSecrets: [{name: pull}]\nserviceAccountName: robot"
            ),
            []
        );
        let found = problems(
            "image: busybox\nenv: [{name: A, value: x, valueFrom: {secretKeyRef: {name: s, key: k}, configMapKeyRef: {name: c, key: k}}}]\nenvFrom: [{}]\nvolumes: [{name: v, secret: {secretName: s, items: [{key: k, path: ../up}]}, emptyDir: {}}, {name: w}, {name: t, emptyDir: {sizeLimit: 1Ki}}]\nvolumeMounts: [{name: v, mountPath: /a/../b}, {name: x, mountPath: //}, {name: v, mountPath: relative}]",
        );
        let fields: Vec<&str> = found.iter().map(|(field, _)| field.as_str()).collect();
        for field in [
            "env[0].valueFrom",
            "envFrom[0]",
            "volumes[0]",
            "volumes[0].secret.items[0].path",
            "volumes[1]",
            "volumes[2].emptyDir.sizeLimit",
            "volumeMounts[0].mountPath",
            "volumeMounts[1].mountPath",
            "volumeMounts[2].mountPath",
            "volumeMounts",
        ] {
            assert!(fields.contains(&field), "{field} in {found:#?}");
        }
        assert!(
            found
                .iter()
                .any(|(f, p)| f == "env[0].valueFrom" && p.contains("exactly one")),
            "{found:#?}"
        );
    }

    #[test]
    fn security_contexts_are_checked_like_the_api_server_checks_them() {
        assert_eq!(
            problems(
                "image: busybox\nnetwork: None\nsecurityContext: {runAsUser: 1, runAsGroup: 2, runAsNonRoot: true, readOnlyRootFilesystem: true, capabilities: {add: [CHOWN], drop: [ALL]}}\nvolumes: [{name: t, emptyDir: {}}]\nvolumeMounts: [{name: t, mountPath: /t}]"
            ),
            []
        );
        let found = problems(
            "image: busybox\nsecurityContext: {runAsUser: 0, runAsNonRoot: true, readOnlyRootFilesystem: true, capabilities: {add: [ALL]}}\nserviceAccountName: robot",
        );
        let fields: Vec<&str> = found.iter().map(|(field, _)| field.as_str()).collect();
        for field in [
            "securityContext.runAsUser",
            "securityContext.readOnlyRootFilesystem",
            "securityContext.capabilities.add",
        ] {
            assert!(fields.contains(&field), "{field} in {found:?}");
        }
        let group = problems("image: busybox\nsecurityContext: {runAsGroup: 5}");
        assert_eq!(group.len(), 1, "{group:?}");
        assert_eq!(group[0].0, "securityContext.runAsGroup");
    }

    #[test]
    fn a_policy_s_defaults_must_lie_within_what_it_allows() {
        let policy: TaskRunPolicySpec = serde_yaml::from_str(
            "defaultNetwork: Bridge\nallowedNetworks: [None]\ndefaultLimits: {cpu: '2', memory: 1Gi}\nmaxLimits: {cpu: '1', memory: 64Mi}\nallowedCapabilities: [ALL]",
        )
        .unwrap();
        let fields: Vec<String> = policy_problems(&policy)
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "defaultNetwork",
                "defaultLimits.cpu",
                "defaultLimits.memory",
                "allowedCapabilities"
            ]
        );
        let fine: TaskRunPolicySpec = serde_yaml::from_str(
            "defaultNetwork: None\nallowedNetworks: [None]\ndefaultLimits: {memory: 32Mi}\nmaxLimits: {memory: 64Mi}",
        )
        .unwrap();
        assert!(policy_problems(&fine).is_empty());
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
