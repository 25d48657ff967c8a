//! The cluster's `TaskRunPolicy`: what an administrator allows TaskRuns to be, read by two
//! enforcers from one set of rules. The API server refuses a violating TaskRun at creation
//! through a ValidatingAdmissionPolicy whose CEL is generated here ([`admission_policy`]);
//! the agent checks the same rules in Rust ([`policy_violations`]) before it creates anything,
//! for clusters without the admission policy and for policies changed after a TaskRun was
//! admitted. Each rule is written once, in both languages, side by side in [`POLICY_RULES`].

use std::sync::LazyLock;

use ipnet::IpNet;
use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::quantity::{parse_cpu_nanos, parse_memory_bytes};
use super::security::{Capability, Network};
use super::spec::{ResourceLimits, TaskRunSpec};
use super::validation;

/// The name of the policy object the agents and the admission binding in `deploy/` read.
pub const CLUSTER_POLICY: &str = "cluster";

/// The name of the ValidatingAdmissionPolicy that enforces TaskRunPolicies at admission.
pub const ADMISSION_POLICY: &str = "taskrun-policy";

/// What TaskRuns may be on this cluster. The agents and the admission binding in `deploy/`
/// read the one named `cluster`; without it, the agents hold runs to a built-in policy, which
/// `taskrun policy` prints.
/// An unset field allows anything.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "taskrun.dev",
    version = "v1alpha1",
    kind = "TaskRunPolicy",
    plural = "taskrunpolicies",
    shortname = "trpol",
    category = "taskrun-dev",
    doc = "What TaskRuns may be on this cluster, enforced at admission and again by each node's agent before it creates a container."
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::policy_rules)]
pub struct TaskRunPolicySpec {
    /// The namespaces in which TaskRuns may run at all. Any namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 256),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    pub allowed_namespaces: Option<Vec<String>>,

    /// Patterns of the images TaskRuns may run, matched against the image as written in the spec, with or without its tag and digest: `busybox` allows `busybox`, `busybox:1.36` and `busybox@sha256:...`; `*` stands for any characters but `/`, `**` for any characters at all (`registry.example.com/team/*`, `registry.example.com/**`). Any image when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        inner(length(min = 1, max = 512), regex(pattern = r"^[a-zA-Z0-9._:/@*+-]+$"))
    )]
    pub allowed_images: Option<Vec<String>>,

    /// When true, images must be pinned by digest (`...@sha256:...`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_digest: bool,

    /// The largest limits a TaskRun may ask for. A TaskRun without a limit gets `defaultLimits`, or else these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_limits: Option<ResourceLimits>,

    /// The limits of a TaskRun that sets none, at most `maxLimits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_limits: Option<ResourceLimits>,

    /// Most processes and threads a task's container may have at once. 4096 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16, max = 4194304))]
    pub pids_limit: Option<i64>,

    /// The capabilities a TaskRun may add (`securityContext.capabilities.add`). Any of Docker's default set when unset; none when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 14), extend("x-kubernetes-list-type" = "set"))]
    pub allowed_capabilities: Option<Vec<Capability>>,

    /// When true, TaskRuns must say they run as non-root: `securityContext.runAsNonRoot: true` (the agent then refuses an image whose user is root) or a non-zero `runAsUser`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_non_root: bool,

    /// When true, TaskRuns must set `securityContext.readOnlyRootFilesystem: true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_read_only_root_filesystem: bool,

    /// When false, TaskRuns may not set `securityContext.allowPrivilegeEscalation: true`. Allowed when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,

    /// The networks TaskRuns may join (`Bridge`, `None`), after `defaultNetwork` applies. Any when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2), extend("x-kubernetes-list-type" = "set"))]
    pub allowed_networks: Option<Vec<Network>>,

    /// The network of a TaskRun that names none. `Bridge` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_network: Option<Network>,

    /// When true, every run pulls its image with its own pull secrets, whatever its `imagePullPolicy` says, as Kubernetes' AlwaysPullImages admission plugin makes Pods do: an image another tenant's credentials brought onto a node is never run without credentials of one's own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub always_pull_images: bool,

    /// Most TaskRuns of one namespace whose containers run at once, over the whole cluster, as the agents count them from the runs they see. A run over it waits `Pending` with reason `NamespaceLimit` until one of its namespace ends. No ceiling when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_running_per_namespace: Option<i32>,

    /// Address ranges (CIDRs such as `10.0.0.0/8`, `169.254.169.254/32` or `fd00::/8`) that tasks on the `Bridge` network may not reach: the node's firewall refuses their packets before they leave the task's network. An agent that cannot enforce them starts no `Bridge` task (reason `EgressUnenforced`). None when unset.
    #[serde(
        default,
        rename = "deniedEgressCIDRs",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(
        length(max = 256),
        inner(length(min = 3, max = 43)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub denied_egress_cidrs: Option<Vec<String>>,
}

/// Processes and threads a task's container may have unless the policy says otherwise.
pub const DEFAULT_PIDS_LIMIT: i64 = 4096;

/// The annotation that marks the policy the agents follow where the cluster has none of the
/// name they enforce. It is never written to the API server.
const BUILT_IN_ANNOTATION: &str = "taskrun.dev/built-in";

impl TaskRunPolicySpec {
    /// What the agents hold runs to where the cluster has no TaskRunPolicy of the name they
    /// enforce: bounded cpu and memory, so that no author takes a node's whole capacity by
    /// setting no limit or a huge one. `taskrun policy` prints it as a manifest to start from.
    pub fn built_in() -> Self {
        let limits = |cpu: &str, memory: &str| ResourceLimits {
            cpu: Some(Quantity(cpu.to_string())),
            memory: Some(Quantity(memory.to_string())),
        };
        Self {
            default_limits: Some(limits("1", "512Mi")),
            max_limits: Some(limits("4", "8Gi")),
            pids_limit: Some(DEFAULT_PIDS_LIMIT),
            ..Self::default()
        }
    }

    /// The network a TaskRun with `spec` joins under this policy.
    pub fn network_of(&self, spec: &TaskRunSpec) -> Network {
        spec.network.or(self.default_network).unwrap_or_default()
    }

    /// The pids limit of every task's container.
    pub fn pids_limit(&self) -> i64 {
        self.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT)
    }

    /// The address ranges tasks on the bridge may not reach, each in its canonical form
    /// (host bits cleared), sorted, without repeats; or what is not a CIDR.
    pub fn denied_egress(&self) -> Result<Vec<IpNet>, String> {
        let mut denied = self
            .denied_egress_cidrs
            .iter()
            .flatten()
            .map(|cidr| {
                cidr.parse::<IpNet>()
                    .map(|net| net.trunc())
                    .map_err(|_| format!("deniedEgressCIDRs: {cidr:?} is not a CIDR"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        denied.sort();
        denied.dedup();
        Ok(denied)
    }

    /// Why a run of `namespace` may not start while `running` of its namespace's runs do, if
    /// the namespace is at its ceiling.
    pub fn namespace_ceiling(&self, namespace: &str, running: usize) -> Option<String> {
        let ceiling = usize::try_from(self.max_running_per_namespace?).ok()?;
        (running >= ceiling).then(|| {
            format!(
                "namespace {namespace} has {running} TaskRuns running, its ceiling under the TaskRunPolicy's maxRunningPerNamespace ({ceiling}); the run starts when one of them ends"
            )
        })
    }
}

impl TaskRunPolicy {
    /// The built-in policy, followed in place of the absent object `name`.
    pub fn built_in(name: &str) -> Self {
        let mut policy = Self::new(name, TaskRunPolicySpec::built_in());
        policy
            .annotations_mut()
            .insert(BUILT_IN_ANNOTATION.to_string(), "true".to_string());
        policy
    }

    /// How messages name this policy: `TaskRunPolicy cluster`, and for the built-in one why
    /// it applies.
    pub fn title(&self) -> String {
        let name = self.metadata.name.as_deref().unwrap_or(CLUSTER_POLICY);
        // An object read from the API server has a uid, whatever its annotations say.
        if self.metadata.uid.is_none() && self.annotations().contains_key(BUILT_IN_ANNOTATION) {
            format!("TaskRunPolicy {name} (built in: the cluster has no such object)")
        } else {
            format!("TaskRunPolicy {name}")
        }
    }
}

/// What a rule looks at: the TaskRun's namespace and spec, and the policy.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub namespace: &'a str,
    pub spec: &'a TaskRunSpec,
    pub policy: &'a TaskRunPolicySpec,
}

/// One rule of a TaskRunPolicy, written once: the admission policy carries its CEL (over
/// `object`, `params`, `request` and the `variables` of [`admission_policy`]), the agent checks
/// the Rust predicate; both say the same message.
pub struct AdmissionRule {
    /// The policy field the rule enforces.
    pub rule: &'static str,
    /// The TaskRun field it looks at.
    pub field: &'static str,
    /// True when the TaskRun keeps the rule.
    pub cel: &'static str,
    /// What is wrong, after `TaskRunPolicy NAME: `.
    pub message: &'static str,
    pub holds: fn(Subject<'_>) -> bool,
}

/// A rule of a policy that a TaskRun breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyViolation {
    /// The policy field the rule enforces (`allowedImages`).
    pub rule: &'static str,
    /// The TaskRun field that breaks it (`spec.image`).
    pub field: &'static str,
    /// The sentence both enforcers give: `TaskRunPolicy NAME: ...`.
    pub message: String,
}

impl std::fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The regular expression (RE2 and Rust's alike) of an image pattern, built the same way in
/// CEL (see [`GLOB_CEL`]): `**` any characters, `*` any but `/`, everything else itself.
fn glob_regex(pattern: &str) -> String {
    let escaped = pattern
        .replace('.', "\\.")
        .replace('+', "\\+")
        .replace("**", "#")
        .replace('*', "[^/]*")
        .replace('#', ".*");
    format!("^{escaped}$")
}

/// [`glob_regex`] in CEL, for the pattern `p`. `#` cannot appear in a pattern (the schema
/// refuses it), so it can stand for `**` on the way.
const GLOB_CEL: &str = r"'^' + p.replace('.', '\\.').replace('+', '\\+').replace('**', '#').replace('*', '[^/]*').replace('#', '.*') + '$'";

/// An image reference without its digest and tag: the repository as written.
fn repository(image: &str) -> &str {
    let named = image.split('@').next().unwrap_or(image);
    match (named.rfind(':'), named.rfind('/')) {
        (Some(colon), Some(slash)) if colon > slash => &named[..colon],
        (Some(colon), None) => &named[..colon],
        _ => named,
    }
}

/// Whether `image` is one that the pattern allows: the reference as written, or its
/// repository without tag and digest.
pub fn image_matches(pattern: &str, image: &str) -> bool {
    regex::Regex::new(&glob_regex(pattern))
        .is_ok_and(|re| re.is_match(image) || re.is_match(repository(image)))
}

/// The rules, in the order the admission policy checks them (the API server reports the
/// first one broken; the agent reports them all).
pub const POLICY_RULES: [AdmissionRule; 11] = [
    AdmissionRule {
        rule: "allowedNamespaces",
        field: "metadata.namespace",
        cel: "!has(params.spec.allowedNamespaces) || request.namespace in params.spec.allowedNamespaces",
        message: "TaskRuns may not run in this namespace (allowedNamespaces)",
        holds: |s| {
            s.policy
                .allowed_namespaces
                .as_ref()
                .is_none_or(|allowed| allowed.iter().any(|n| n == s.namespace))
        },
    },
    AdmissionRule {
        rule: "allowedImages",
        field: "spec.image",
        cel: "!has(params.spec.allowedImages) || params.spec.allowedImages.exists(p, variables.image.matches(GLOB) || variables.repository.matches(GLOB))",
        message: "spec.image matches none of allowedImages",
        holds: |s| {
            s.policy
                .allowed_images
                .as_ref()
                .is_none_or(|patterns| patterns.iter().any(|p| image_matches(p, &s.spec.image)))
        },
    },
    AdmissionRule {
        rule: "requireDigest",
        field: "spec.image",
        cel: "!has(params.spec.requireDigest) || !params.spec.requireDigest || variables.image.contains('@')",
        message: "spec.image must be pinned by digest (requireDigest)",
        holds: |s| !s.policy.require_digest || s.spec.image.contains('@'),
    },
    AdmissionRule {
        rule: "maxLimits.cpu",
        field: "spec.resources.limits.cpu",
        cel: "!has(params.spec.maxLimits) || !has(params.spec.maxLimits.cpu) || !has(object.spec.resources) || !has(object.spec.resources.limits) || !has(object.spec.resources.limits.cpu) || quantity(string(object.spec.resources.limits.cpu)).compareTo(quantity(string(params.spec.maxLimits.cpu))) <= 0",
        message: "spec.resources.limits.cpu is above maxLimits.cpu",
        holds: |s| {
            validation::at_most(
                s.spec.limits(),
                s.policy.max_limits.as_ref(),
                |l| l.cpu.as_ref(),
                parse_cpu_nanos,
            )
        },
    },
    AdmissionRule {
        rule: "maxLimits.memory",
        field: "spec.resources.limits.memory",
        cel: "!has(params.spec.maxLimits) || !has(params.spec.maxLimits.memory) || !has(object.spec.resources) || !has(object.spec.resources.limits) || !has(object.spec.resources.limits.memory) || quantity(string(object.spec.resources.limits.memory)).compareTo(quantity(string(params.spec.maxLimits.memory))) <= 0",
        message: "spec.resources.limits.memory is above maxLimits.memory",
        holds: |s| {
            validation::at_most(
                s.spec.limits(),
                s.policy.max_limits.as_ref(),
                |l| l.memory.as_ref(),
                parse_memory_bytes,
            )
        },
    },
    AdmissionRule {
        rule: "allowedCapabilities",
        field: "spec.securityContext.capabilities.add",
        cel: "!has(params.spec.allowedCapabilities) || !has(object.spec.securityContext) || !has(object.spec.securityContext.capabilities) || !has(object.spec.securityContext.capabilities.add) || object.spec.securityContext.capabilities.add.all(c, c in params.spec.allowedCapabilities)",
        message: "spec.securityContext.capabilities.add names a capability outside allowedCapabilities",
        holds: |s| {
            s.policy
                .allowed_capabilities
                .as_ref()
                .is_none_or(|allowed| {
                    s.spec
                        .security_context
                        .as_ref()
                        .is_none_or(|c| c.added().iter().all(|cap| allowed.contains(cap)))
                })
        },
    },
    AdmissionRule {
        rule: "requireNonRoot",
        field: "spec.securityContext.runAsNonRoot",
        cel: "!has(params.spec.requireNonRoot) || !params.spec.requireNonRoot || (has(object.spec.securityContext) && ((has(object.spec.securityContext.runAsNonRoot) && object.spec.securityContext.runAsNonRoot) || (has(object.spec.securityContext.runAsUser) && object.spec.securityContext.runAsUser != 0)))",
        message: "spec.securityContext must set runAsNonRoot: true or a non-zero runAsUser (requireNonRoot)",
        holds: |s| {
            !s.policy.require_non_root
                || s.spec
                    .security_context
                    .as_ref()
                    .is_some_and(|c| c.non_root() || c.run_as_user.is_some_and(|user| user != 0))
        },
    },
    AdmissionRule {
        rule: "requireNonRoot",
        field: "spec.securityContext.allowPrivilegeEscalation",
        cel: "!has(params.spec.requireNonRoot) || !params.spec.requireNonRoot || !has(object.spec.securityContext) || !has(object.spec.securityContext.allowPrivilegeEscalation) || !object.spec.securityContext.allowPrivilegeEscalation",
        message: "spec.securityContext.allowPrivilegeEscalation may not be true where runs must be non-root: a setuid binary would make the task root (requireNonRoot)",
        holds: |s| {
            !s.policy.require_non_root
                || !s
                    .spec
                    .security_context
                    .as_ref()
                    .is_some_and(|c| c.privilege_escalation())
        },
    },
    AdmissionRule {
        rule: "requireReadOnlyRootFilesystem",
        field: "spec.securityContext.readOnlyRootFilesystem",
        cel: "!has(params.spec.requireReadOnlyRootFilesystem) || !params.spec.requireReadOnlyRootFilesystem || (has(object.spec.securityContext) && has(object.spec.securityContext.readOnlyRootFilesystem) && object.spec.securityContext.readOnlyRootFilesystem)",
        message: "spec.securityContext.readOnlyRootFilesystem must be true (requireReadOnlyRootFilesystem)",
        holds: |s| {
            !s.policy.require_read_only_root_filesystem
                || s.spec
                    .security_context
                    .as_ref()
                    .is_some_and(|c| c.read_only_root())
        },
    },
    AdmissionRule {
        rule: "allowPrivilegeEscalation",
        field: "spec.securityContext.allowPrivilegeEscalation",
        cel: "!has(params.spec.allowPrivilegeEscalation) || params.spec.allowPrivilegeEscalation || !has(object.spec.securityContext) || !has(object.spec.securityContext.allowPrivilegeEscalation) || !object.spec.securityContext.allowPrivilegeEscalation",
        message: "spec.securityContext.allowPrivilegeEscalation may not be true (allowPrivilegeEscalation)",
        holds: |s| {
            s.policy.allow_privilege_escalation != Some(false)
                || !s
                    .spec
                    .security_context
                    .as_ref()
                    .is_some_and(|c| c.privilege_escalation())
        },
    },
    AdmissionRule {
        rule: "allowedNetworks",
        field: "spec.network",
        cel: "!has(params.spec.allowedNetworks) || (has(object.spec.network) ? object.spec.network : (has(params.spec.defaultNetwork) ? params.spec.defaultNetwork : 'Bridge')) in params.spec.allowedNetworks",
        message: "spec.network (defaultNetwork when unset) is not among allowedNetworks",
        holds: |s| {
            s.policy
                .allowed_networks
                .as_ref()
                .is_none_or(|allowed| allowed.contains(&s.policy.network_of(s.spec)))
        },
    },
];

/// The rules of the policy `policy` that a TaskRun in `namespace` with `spec` breaks, in
/// order; none when it keeps them all. Pure: the agent's check, and the table the admission
/// policy is held to.
pub fn policy_violations(
    policy: &TaskRunPolicy,
    namespace: &str,
    spec: &TaskRunSpec,
) -> Vec<PolicyViolation> {
    let title = policy.title();
    let subject = Subject {
        namespace,
        spec,
        policy: &policy.spec,
    };
    POLICY_RULES
        .iter()
        .filter(|rule| !(rule.holds)(subject))
        .map(|rule| PolicyViolation {
            rule: rule.rule,
            field: rule.field,
            message: format!("{title}: {}", rule.message),
        })
        .collect()
}

/// The ValidatingAdmissionPolicy that holds every new TaskRun to the TaskRunPolicy its
/// binding names (`paramRef`), with the rules of [`POLICY_RULES`]. Only creation is checked:
/// the spec cannot change afterwards, and a later policy is the agents' to enforce. A request
/// the API server could not judge (its read of the policy timed out, as under a burst on a busy
/// server) is admitted: the agents check every run again before anything is created, so
/// refusing it would only fail the create of a run that may well be allowed.
pub fn admission_policy() -> ValidatingAdmissionPolicy {
    static POLICY: LazyLock<serde_json::Value> = LazyLock::new(|| {
        let validations: Vec<serde_json::Value> = POLICY_RULES
            .iter()
            .map(|rule| {
                json!({
                    "expression": rule.cel.replace("GLOB", &format!("({GLOB_CEL})")),
                    "messageExpression": format!("'TaskRunPolicy ' + params.metadata.name + ': {}'", rule.message),
                    "reason": "Forbidden",
                })
            })
            .collect();
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": { "name": ADMISSION_POLICY },
            "spec": {
                "failurePolicy": "Ignore",
                "paramKind": { "apiVersion": "taskrun.dev/v1alpha1", "kind": "TaskRunPolicy" },
                "matchConstraints": {
                    "resourceRules": [{
                        "apiGroups": ["taskrun.dev"],
                        "apiVersions": ["*"],
                        "operations": ["CREATE"],
                        "resources": ["taskruns"],
                    }],
                },
                "variables": [
                    { "name": "image", "expression": "object.spec.image" },
                    { "name": "named", "expression": "variables.image.split('@')[0]" },
                    {
                        "name": "repository",
                        "expression": "variables.named.lastIndexOf(':') > variables.named.lastIndexOf('/') ? variables.named.substring(0, variables.named.lastIndexOf(':')) : variables.named",
                    },
                ],
                "validations": validations,
            },
        })
    });
    serde_json::from_value(POLICY.clone()).expect("the admission policy is well-formed")
}

/// A binding of [`admission_policy`] named `name` to the TaskRunPolicy `policy`, for the
/// TaskRuns `scope` matches (every one when `None`). A missing policy object allows
/// everything, as a cluster without one does.
pub fn admission_policy_binding(
    name: &str,
    policy: &str,
    scope: Option<MatchResources>,
) -> ValidatingAdmissionPolicyBinding {
    let mut binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": { "name": name },
        "spec": {
            "policyName": ADMISSION_POLICY,
            "paramRef": { "name": policy, "parameterNotFoundAction": "Allow" },
            "validationActions": ["Deny"],
        },
    });
    if let Some(scope) = scope {
        binding["spec"]["matchResources"] =
            serde_json::to_value(scope).expect("match resources serialize");
    }
    serde_json::from_value(binding).expect("the admission binding is well-formed")
}

#[cfg(test)]
mod tests;
