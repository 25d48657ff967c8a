//! What a user writes: the `TaskRun` kind of `taskrun.dev/v1alpha1` and its `spec`, from which the
//! CRD is generated. Each field's `///` doc becomes its `kubectl explain` text, and its bounds,
//! patterns and the CEL rules of [`validation`] let the API server refuse a bad spec before it is
//! stored; after creation only `cancel` may change, from false to true. What a spec leads to is
//! decided in `lifecycle`, not here.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::security::{Network, SecurityContext};
use super::status::{Reason, TaskRunStatus};
use super::validation;
use super::workloads::{
    EnvFromSource, EnvVarSource, LocalObjectReference, OBJECT_NAME, Volume, VolumeMount,
};

/// Seconds between SIGTERM and SIGKILL when a run is stopped, unless the spec says otherwise.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 10;

/// A one-off container run on a node's Docker daemon.
///
/// The spec is fixed at creation; only `cancel` may change, from false to true.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "taskrun.dev",
    version = "v1alpha1",
    kind = "TaskRun",
    plural = "taskruns",
    namespaced,
    doc = "A one-off container run on a node's Docker daemon, with its outcome in status.",
    status = "TaskRunStatus",
    shortname = "trun",
    category = "taskrun-dev",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase","description":"Where the run is in its life"}"#,
    printcolumn = r#"{"name":"Exit Code","type":"integer","jsonPath":".status.exitCode","description":"Exit code of the container"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.reason","description":"Why the run is in its phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.image","priority":1,"description":"Container image"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".status.nodeName","priority":1,"description":"Node whose Docker daemon runs the container"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::spec_rules)]
pub struct TaskRunSpec {
    /// Container image to run, as Docker names it (`busybox`, `busybox:1.36`, `registry.example:5000/team/tool@sha256:...`).
    #[schemars(length(min = 1, max = 512), regex(pattern = validation::IMAGE_REFERENCE))]
    pub image: String,

    /// Entrypoint, replacing the image's ENTRYPOINT. The image's is used when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 4096)))]
    pub command: Vec<String>,

    /// Arguments to the entrypoint, replacing the image's CMD. The image's are used when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 4096)))]
    pub args: Vec<String>,

    /// Environment variables set in the container. Names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 128),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])
    )]
    pub env: Vec<EnvVar>,

    /// Environment variables from every key of Secrets and ConfigMaps in the TaskRun's namespace, set before `env`, so `env` wins where a name repeats; a later source wins over an earlier one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub env_from: Vec<EnvFromSource>,

    /// Files the container can mount: Secret and ConfigMap keys written into the container before it starts (never onto the node's disk), and empty in-memory directories. Names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])
    )]
    pub volumes: Vec<Volume>,

    /// Where the volumes appear in the container. Mount paths are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["mountPath"])
    )]
    pub volume_mounts: Vec<VolumeMount>,

    /// Secrets of type `kubernetes.io/dockerconfigjson` in the TaskRun's namespace; the image is pulled with the credentials whose registry is the image's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])
    )]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// A ServiceAccount of the TaskRun's namespace whose API identity the task gets: a token requested for it (valid past the deadline, at least 10 minutes), `ca.crt` and `namespace` at `/var/run/secrets/kubernetes.io/serviceaccount`, and `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`, as a Pod has. No token when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME))]
    pub service_account_name: Option<String>,

    /// Absolute path of the working directory inside the container. The image's is used when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/"))]
    pub working_dir: Option<String>,

    /// When the image is pulled: `Always` before every run, `IfNotPresent` only when the node lacks it, `Never` (the run fails with `ImageNotPresent` when the node lacks it).
    #[serde(default)]
    pub image_pull_policy: ImagePullPolicy,

    /// When the finished container is removed from the node: `Always`, `OnSuccess` (failed containers stay for inspection) or `Never`. The TaskRun object itself always stays; the last lines of output are kept in `status.logTail` either way.
    #[serde(default)]
    pub cleanup: CleanupPolicy,

    /// Deadline for the run, counted from the container's start. When it passes the container is stopped and the run fails with `DeadlineExceeded`. No deadline when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 604800))]
    pub timeout_seconds: Option<i64>,

    /// Removes a container that `cleanup` kept, this many seconds after the run finished. Only the container is removed, never the TaskRun (`deleteAfterSeconds` deletes the TaskRun).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2592000))]
    pub ttl_seconds_after_finished: Option<i64>,

    /// Deletes the TaskRun itself, and with it its container, this many seconds after the run finished (`Succeeded`, `Failed` or `Cancelled`, counted from `status.completionTime`), as a Job's `ttlSecondsAfterFinished` does. For runs that automation creates, often with `generateName`; never for a TaskRun a GitOps tool (Argo CD, Flux) applies from Git, which would create it again and so run the task again. The TaskRun stays when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 31536000))]
    pub delete_after_seconds: Option<i64>,

    /// Seconds between SIGTERM and SIGKILL when the container is stopped by a deadline, a cancel or a deletion. Defaults to 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub termination_grace_period_seconds: Option<i64>,

    /// Limits on what the container may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Box<ResourceRequirements>>,

    /// Who the task runs as and what it may do, with a Pod's names: `runAsUser`, `runAsGroup`, `runAsNonRoot`, `readOnlyRootFilesystem`, `allowPrivilegeEscalation` (false by default) and `capabilities`. The container is never privileged, runs with Docker's default seccomp profile, `no-new-privileges` and a pids limit, and shares no namespace, device or path with the node, whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<Box<SecurityContext>>,

    /// The network the container joins: `Bridge` (Docker's default bridge) or `None` (loopback only). The cluster's TaskRunPolicy gives the default, `Bridge` without one, and may allow only some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,

    /// Runs the task on this node only. When unset, any node's agent with room claims it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub node_name: Option<String>,

    /// Set to true to stop the run: the container gets SIGTERM, then SIGKILL after the grace period, and the run ends `Cancelled`. Cannot be set back to false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel: bool,

    /// Runs the task again, each time in a new container, after the failures listed in `retries.reasons`. No retries when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Box<RetryPolicy>>,

    /// Deadline for waiting, counted from creation (or from the end of the previous attempt) until the container starts: waiting for a node, for room, for the back-off and the pull. When it passes the run fails with `PendingTimeout`. No deadline when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 604800))]
    pub pending_timeout_seconds: Option<i64>,

    /// Deadline for the whole TaskRun, counted from its creation over every attempt and back-off. When it passes a running container is stopped and the run fails with `ActiveDeadlineExceeded`; no further attempt starts. No deadline when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2592000))]
    pub active_deadline_seconds: Option<i64>,
}

/// When and how often a failed run is tried again.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Attempts after the first one, at most. 0 means no retry.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub limit: i32,

    /// The reasons an attempt may end with that start another attempt (not named `on`, which YAML 1.1 tools such as kubectl read as `true`): `Error`, `OOMKilled`, `DeadlineExceeded`, `ImagePullFailed`, `StartFailed`, `ContainerLost`, `NodeLost`. `[Error]` when empty. A cancel and input errors (`InvalidImage`, `ImageNotPresent`, a limit or a container the daemon refuses to create) are never retried, nor are `PendingTimeout` and `ActiveDeadlineExceeded`. With `NodeLost` listed, a run whose node is lost starts its next attempt on any node while the lost node's container may still run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7), extend("x-kubernetes-list-type" = "set"))]
    pub reasons: Vec<RetryReason>,

    /// When set, an `Error` is retried only when the container exited with one of these codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 255),
        inner(range(min = 1, max = 255)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub exit_codes: Vec<i32>,

    /// The wait before each next attempt: `seconds` after the first failure, doubling with each further one up to `maxSeconds`, plus up to a tenth more of jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
}

/// The reasons a retry may be asked for.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RetryReason {
    /// The container exited with a non-zero code.
    Error,
    /// The container was killed for exceeding its memory limit.
    #[serde(rename = "OOMKilled")]
    OomKilled,
    /// The attempt outlived `timeoutSeconds`.
    DeadlineExceeded,
    /// The image could not be pulled.
    ImagePullFailed,
    /// The daemon could not start the container.
    StartFailed,
    /// The container disappeared from the node.
    ContainerLost,
    /// The agent of the attempt's node stopped renewing its Lease.
    NodeLost,
}

/// Seconds before the first retry, doubling up to a cap.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::backoff_rules)]
pub struct Backoff {
    /// Seconds between the end of the first attempt and the start of the second. Defaults to 10.
    #[serde(default = "Backoff::default_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub seconds: i64,

    /// The longest wait between two attempts, in seconds. Defaults to 360; at least `seconds`.
    #[serde(default = "Backoff::default_max_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_seconds: i64,
}

impl Backoff {
    /// Seconds before the first retry unless the spec says otherwise.
    pub const DEFAULT_SECONDS: i64 = 10;
    /// The longest wait between attempts unless the spec says otherwise.
    pub const DEFAULT_MAX_SECONDS: i64 = 360;

    fn default_seconds() -> i64 {
        Self::DEFAULT_SECONDS
    }

    fn default_max_seconds() -> i64 {
        Self::DEFAULT_MAX_SECONDS
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            seconds: Self::DEFAULT_SECONDS,
            max_seconds: Self::DEFAULT_MAX_SECONDS,
        }
    }
}

impl RetryReason {
    /// The status reason an attempt ends with for this retry reason.
    pub fn reason(self) -> Reason {
        match self {
            Self::Error => Reason::Error,
            Self::OomKilled => Reason::OomKilled,
            Self::DeadlineExceeded => Reason::DeadlineExceeded,
            Self::ImagePullFailed => Reason::ImagePullFailed,
            Self::StartFailed => Reason::StartFailed,
            Self::ContainerLost => Reason::ContainerLost,
            Self::NodeLost => Reason::NodeLost,
        }
    }
}

impl RetryPolicy {
    /// Whether an attempt that ended with `reason` (and `exit_code`) may be tried again.
    pub fn covers(&self, reason: Reason, exit_code: Option<i64>) -> bool {
        let listed = if self.reasons.is_empty() {
            reason == Reason::Error
        } else {
            self.reasons.iter().any(|r| r.reason() == reason)
        };
        let code_listed = reason != Reason::Error
            || self.exit_codes.is_empty()
            || exit_code.is_some_and(|code| self.exit_codes.iter().any(|c| i64::from(*c) == code));
        listed && code_listed
    }
}

/// An environment variable of the container.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::env_var_rules)]
pub struct EnvVar {
    /// Name of the variable: letters, digits and underscores, not starting with a digit.
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    pub name: String,

    /// Value of the variable. Empty when unset.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub value: String,

    /// Where the value comes from instead: a key of a Secret or ConfigMap in the TaskRun's namespace. Not together with a non-empty `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// Compute resources of the container, in the shape of a Pod's `resources`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirements {
    /// Upper bounds the container cannot exceed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceLimits>,
}

/// Upper bounds on the container's resources.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::limits_rules)]
pub struct ResourceLimits {
    /// CPU limit in Kubernetes quantity syntax: `500m` is half a core, `2` two cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,

    /// Memory limit in Kubernetes quantity syntax (`64Mi`, `1Gi`), at least `6Mi`. A container that exceeds it is killed and the run fails with `OOMKilled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

/// When the image is pulled before the container is created.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    /// Pull before every run.
    Always,
    /// Pull only when the node does not have the image.
    #[default]
    IfNotPresent,
    /// Never pull; the run fails with `ImageNotPresent` when the node does not have the image.
    Never,
}

/// When a finished container is removed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CleanupPolicy {
    /// Remove the container as soon as the run has finished.
    Always,
    /// Remove the container when the run succeeded; keep it when it failed.
    #[default]
    OnSuccess,
    /// Keep the container (until `ttlSecondsAfterFinished`, if set).
    Never,
}

impl CleanupPolicy {
    /// The policy meant by the `cleanup: true/false` flag of the original task.yaml format.
    pub fn from_flag(remove: bool) -> Self {
        if remove { Self::Always } else { Self::Never }
    }
}

impl TaskRunSpec {
    /// A spec that runs `image` with every other field at its default.
    pub fn for_image(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            env_from: Vec::new(),
            volumes: Vec::new(),
            volume_mounts: Vec::new(),
            image_pull_secrets: Vec::new(),
            service_account_name: None,
            working_dir: None,
            image_pull_policy: ImagePullPolicy::default(),
            cleanup: CleanupPolicy::default(),
            timeout_seconds: None,
            ttl_seconds_after_finished: None,
            delete_after_seconds: None,
            termination_grace_period_seconds: None,
            resources: None,
            security_context: None,
            network: None,
            node_name: None,
            cancel: false,
            retries: None,
            pending_timeout_seconds: None,
            active_deadline_seconds: None,
        }
    }

    /// Seconds between SIGTERM and SIGKILL when the container is stopped.
    pub fn termination_grace_period_seconds(&self) -> i64 {
        self.termination_grace_period_seconds
            .unwrap_or(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS)
    }

    /// The fields that take something from the TaskRun's namespace (Secrets, ConfigMaps, a
    /// ServiceAccount) or describe files for them, by their names in the spec: what only an
    /// agent in a cluster can carry out.
    pub fn cluster_only_fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = self
            .env
            .iter()
            .enumerate()
            .filter(|(_, e)| e.value_from.is_some())
            .map(|(i, _)| format!("env[{i}].valueFrom"))
            .collect();
        let present = [
            ("envFrom", !self.env_from.is_empty()),
            ("volumes", !self.volumes.is_empty()),
            ("volumeMounts", !self.volume_mounts.is_empty()),
            ("imagePullSecrets", !self.image_pull_secrets.is_empty()),
            ("serviceAccountName", self.service_account_name.is_some()),
        ];
        fields.extend(
            present
                .into_iter()
                .filter(|(_, used)| *used)
                .map(|(field, _)| field.to_string()),
        );
        fields
    }

    /// How many attempts the run may have in all: the first and its retries.
    pub fn max_attempts(&self) -> u32 {
        let retries = self.retries.as_ref().map_or(0, |r| r.limit.clamp(0, 100));
        1 + retries.unsigned_abs()
    }

    /// The CPU and memory limits, if any.
    pub fn limits(&self) -> Option<&ResourceLimits> {
        self.resources.as_ref().and_then(|r| r.limits.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_cleanup_flag_maps_to_always_or_never() {
        assert_eq!(CleanupPolicy::from_flag(true), CleanupPolicy::Always);
        assert_eq!(CleanupPolicy::from_flag(false), CleanupPolicy::Never);
    }

    #[test]
    fn omitted_fields_take_their_defaults() {
        let spec: TaskRunSpec = serde_yaml::from_str("image: busybox").unwrap();
        assert_eq!(spec, TaskRunSpec::for_image("busybox"));
        assert_eq!(spec.image_pull_policy, ImagePullPolicy::IfNotPresent);
        assert_eq!(spec.cleanup, CleanupPolicy::OnSuccess);
        assert!(!spec.cancel);
        assert_eq!(spec.termination_grace_period_seconds(), 10);
    }

    #[test]
    fn retries_default_to_error_only_and_respect_exit_codes() {
        let spec: TaskRunSpec =
            serde_yaml::from_str("image: busybox\nretries: {limit: 2}").unwrap();
        let retries = spec.retries.clone().unwrap();
        assert_eq!(spec.max_attempts(), 3);
        assert!(retries.covers(Reason::Error, Some(1)));
        assert!(!retries.covers(Reason::OomKilled, Some(137)));
        let listed: RetryPolicy =
            serde_yaml::from_str("{limit: 1, reasons: [Error, ImagePullFailed], exitCodes: [3]}")
                .unwrap();
        assert!(listed.covers(Reason::Error, Some(3)));
        assert!(!listed.covers(Reason::Error, Some(4)));
        assert!(listed.covers(Reason::ImagePullFailed, None));
        assert!(!listed.covers(Reason::Cancelled, None));
        let backoff: Backoff = serde_yaml::from_str("{}").unwrap();
        assert_eq!(backoff, Backoff::default());
        assert_eq!(TaskRunSpec::for_image("busybox").max_attempts(), 1);
    }

    #[test]
    fn defaults_serialize_back_without_empty_fields() {
        let yaml = serde_yaml::to_string(&TaskRunSpec::for_image("busybox")).unwrap();
        assert_eq!(
            yaml,
            "image: busybox\nimagePullPolicy: IfNotPresent\ncleanup: OnSuccess\n"
        );
    }
}
