//! The `TaskRun` custom resource (`taskrun.dev/v1alpha1`): what users write and what the
//! operator reports back.

mod quantity;
mod spec;
mod status;
mod text;
mod validation;
mod workloads;

pub use quantity::{parse_cpu_nanos, parse_memory_bytes};
pub use spec::{
    Backoff, CleanupPolicy, DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS, EnvVar, ImagePullPolicy,
    ResourceLimits, ResourceRequirements, RetryPolicy, RetryReason, TaskRun, TaskRunSpec,
};
pub use status::{
    AttemptRecord, ConditionStatus, ConditionType, MAX_PREVIOUS_ATTEMPTS, Phase, Reason,
    TaskRunStatus,
};
pub use text::{api_safe, api_safe_tail};
pub use validation::{SpecProblem, spec_problems};
pub use workloads::{
    ConfigMapVolumeSource, EmptyDirVolumeSource, EnvFromSource, EnvVarSource, KeySelector,
    KeyToPath, LocalObjectReference, ObjectKind, ObjectReference, SecretVolumeSource, Volume,
    VolumeMount,
};

/// The finalizer that keeps a TaskRun until its container is gone.
pub const FINALIZER: &str = "taskrun.dev/container";
