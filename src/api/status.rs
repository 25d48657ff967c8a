//! What the operator reports back in a TaskRun's `status`: the [`Phase`] and its [`Reason`], the
//! container and its times, the record of earlier attempts and the conditions tools wait on.
//! These are the types and their spelling only; what each step of a run records is decided in
//! `lifecycle::status`, and only the controller's status writer sends it to the API server.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the operator observed of a TaskRun, written only by the operator. Until an agent
/// writes it, the API server shows `observedGeneration: 0`, so tools that compare it with
/// `metadata.generation` read a new run as in progress from the moment it exists.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = { "observedGeneration": 0 }))]
pub struct TaskRunStatus {
    /// Where the run is in its life: `Pending`, `Running`, then one of `Succeeded`, `Failed` or `Cancelled`, which are final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Why the run is in its phase, one CamelCase word such as `Completed`, `Error`, `OOMKilled`, `DeadlineExceeded` or `DaemonUnavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,

    /// A sentence for people about the reason, such as the Docker daemon's own error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub message: Option<String>,

    /// Exit code of the container's main process, once it has exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,

    /// Node whose Docker daemon runs the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub node_name: Option<String>,

    /// Name of the container on the node's Docker daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub container_name: Option<String>,

    /// ID of the container on the node's Docker daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub container_id: Option<String>,

    /// When the container started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the run ended, whatever the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The last lines of the container's output (stdout and stderr, at most 4 KiB), saved before the container may be removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub log_tail: Option<String>,

    /// The attempt this status is about, counting from 1; absent means 1. Each attempt is a container of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 101))]
    pub attempt: Option<i32>,

    /// How the attempts before this one ended, oldest first; the last 10 are kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub previous_attempts: Vec<AttemptRecord>,

    /// `Succeeded` (True, False, or Unknown while undecided) and `Done` (True once the run ended in any way), so `kubectl wait --for=condition=Done` covers every outcome; `Ready` (True once the run succeeded), `Reconciling` (True while pending or running) and `Stalled` (True once it failed or was cancelled), as kstatus-based tools read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 8),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"])
    )]
    pub conditions: Vec<Condition>,
}

/// How many earlier attempts a status keeps.
pub const MAX_PREVIOUS_ATTEMPTS: usize = 10;

/// How one earlier attempt of a run ended.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    /// The attempt's number, counting from 1.
    #[schemars(range(min = 1, max = 101))]
    pub attempt: i32,

    /// Node whose Docker daemon ran, or was to run, the attempt's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub node_name: Option<String>,

    /// Exit code of the attempt's container, if it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,

    /// Why the attempt ended.
    pub reason: Reason,

    /// When the attempt's container started, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the attempt ended.
    pub completion_time: Time,

    /// A short sentence on how it ended.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 512))]
    pub message: String,
}

/// Where a run is in its life. `Pending` and `Running` move forward, except that a failed
/// attempt with a retry left goes back to `Pending` for the next; the other three are final.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Accepted, container not started yet.
    Pending,
    /// The container is running.
    Running,
    /// The container exited with code 0.
    Succeeded,
    /// The run ended without success: non-zero exit, deadline, start or image failure.
    Failed,
    /// Stopped because `spec.cancel` was set.
    Cancelled,
}

impl Phase {
    /// Whether the run has ended; a final phase never changes again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// Why a run is in its phase.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Reason {
    /// Waiting for the container to be created and started.
    Pending,
    /// The container is running.
    Running,
    /// The container exited with code 0.
    Completed,
    /// The container exited with a non-zero code.
    Error,
    /// The container was killed for exceeding its memory limit.
    #[serde(rename = "OOMKilled")]
    OomKilled,
    /// The image could not be pulled.
    ImagePullFailed,
    /// The Docker daemon refused the image reference as malformed.
    InvalidImage,
    /// The image is not on the node and `imagePullPolicy` is `Never`.
    ImageNotPresent,
    /// The container could not be created or started, e.g. its executable does not exist.
    StartFailed,
    /// The run outlived `timeoutSeconds` and was stopped.
    DeadlineExceeded,
    /// The run was stopped because `spec.cancel` was set.
    Cancelled,
    /// The container disappeared from the node without the operator removing it.
    ContainerLost,
    /// The node's Docker daemon does not answer; the run is retried, not failed.
    DaemonUnavailable,
    /// The agent of the node running the container stopped renewing its Lease.
    NodeLost,
    /// An attempt failed and the next waits for its back-off; the message says when it starts.
    BackOff,
    /// The container did not start within `pendingTimeoutSeconds`.
    PendingTimeout,
    /// The TaskRun outlived `activeDeadlineSeconds`; no further attempt starts.
    ActiveDeadlineExceeded,
    /// `spec.nodeName` names a node that has no live agent; the run waits for one.
    NodeUnavailable,
    /// The run's node is cordoned and no other agent is there to take it; it waits.
    Unschedulable,
    /// A Secret, ConfigMap, key or ServiceAccount the spec refers to does not exist (or the
    /// agent may not read it); the run waits, and starts once it appears.
    ReferenceMissing,
    /// A Secret or ConfigMap the spec refers to holds something the run cannot use, such as
    /// a pull secret without registry credentials; the run waits for it to be fixed.
    ReferenceInvalid,
    /// The run breaks the cluster's TaskRunPolicy, as the agent read it before creating
    /// anything; the message names each rule and field. No container was created.
    PolicyViolation,
    /// The Secrets and ConfigMaps the spec names hold more data than a run may take; the run
    /// waits for them to shrink.
    ReferencesTooLarge,
    /// Its namespace runs as many TaskRuns as the TaskRunPolicy's `maxRunningPerNamespace`
    /// allows; the run waits for one of them to end.
    NamespaceLimit,
    /// The TaskRunPolicy denies the bridge some addresses (`deniedEgressCIDRs`) and this
    /// node's agent does not enforce that yet; a `Bridge` run waits until it does.
    EgressUnenforced,
}

/// The condition types a TaskRun reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// True when the run succeeded, False when it ended otherwise, Unknown until then.
    Succeeded,
    /// True once the run has ended in any way.
    Done,
    /// True when the run succeeded; what `kubectl wait --for=condition=Ready` and GitOps
    /// tools wait for.
    Ready,
    /// True while the run is pending or running: kstatus reads the run as in progress.
    Reconciling,
    /// True once the run failed or was cancelled: kstatus reads the run as failed.
    Stalled,
}

/// The status of a condition, as Kubernetes spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionType {
    /// The `type` string of the condition.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "Succeeded",
            Self::Done => "Done",
            Self::Ready => "Ready",
            Self::Reconciling => "Reconciling",
            Self::Stalled => "Stalled",
        }
    }
}

impl ConditionStatus {
    /// The `status` string of the condition.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl Reason {
    /// The reason as it appears in status and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Completed => "Completed",
            Self::Error => "Error",
            Self::OomKilled => "OOMKilled",
            Self::ImagePullFailed => "ImagePullFailed",
            Self::InvalidImage => "InvalidImage",
            Self::ImageNotPresent => "ImageNotPresent",
            Self::StartFailed => "StartFailed",
            Self::DeadlineExceeded => "DeadlineExceeded",
            Self::Cancelled => "Cancelled",
            Self::ContainerLost => "ContainerLost",
            Self::DaemonUnavailable => "DaemonUnavailable",
            Self::NodeLost => "NodeLost",
            Self::BackOff => "BackOff",
            Self::PendingTimeout => "PendingTimeout",
            Self::ActiveDeadlineExceeded => "ActiveDeadlineExceeded",
            Self::NodeUnavailable => "NodeUnavailable",
            Self::Unschedulable => "Unschedulable",
            Self::ReferenceMissing => "ReferenceMissing",
            Self::ReferenceInvalid => "ReferenceInvalid",
            Self::PolicyViolation => "PolicyViolation",
            Self::NamespaceLimit => "NamespaceLimit",
            Self::ReferencesTooLarge => "ReferencesTooLarge",
            Self::EgressUnenforced => "EgressUnenforced",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl TaskRunStatus {
    /// The phase, `Pending` when none was recorded yet.
    pub fn phase(&self) -> Phase {
        self.phase.unwrap_or(Phase::Pending)
    }

    /// The current attempt, counting from 1 (statuses written before retries existed have none).
    pub fn attempt(&self) -> u32 {
        self.attempt
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(1)
            .max(1)
    }

    /// The condition of the given type, if recorded.
    pub fn condition(&self, type_: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_serialize_as_their_display_names() {
        for reason in [
            Reason::OomKilled,
            Reason::DeadlineExceeded,
            Reason::Completed,
        ] {
            let json = serde_json::to_value(reason).unwrap();
            assert_eq!(json, serde_json::Value::from(reason.as_str()));
        }
    }

    #[test]
    fn only_succeeded_failed_and_cancelled_are_final() {
        assert!(!Phase::Pending.is_final());
        assert!(!Phase::Running.is_final());
        assert!(Phase::Succeeded.is_final());
        assert!(Phase::Failed.is_final());
        assert!(Phase::Cancelled.is_final());
    }
}
