//! The `TaskRun` custom resource (`taskrun.dev/v1alpha1`): what users write and what the
//! operator reports back.

mod policy;
mod quantity;
mod security;
mod spec;
mod status;
mod text;
mod validation;
mod workloads;

pub use policy::{
    ADMISSION_POLICY, AdmissionRule, CLUSTER_POLICY, DEFAULT_PIDS_LIMIT, POLICY_RULES,
    PolicyViolation, Subject, TaskRunPolicy, TaskRunPolicySpec, admission_policy,
    admission_policy_binding, image_matches, policy_violations,
};
pub use quantity::{parse_cpu_nanos, parse_memory_bytes};
pub use security::{Capabilities, Capability, Network, SecurityContext, TASK_NETWORK};
pub use spec::{
    Backoff, CleanupPolicy, DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS, EnvVar, ImagePullPolicy,
    ResourceLimits, ResourceRequirements, RetryPolicy, RetryReason, TaskRun, TaskRunSpec,
};
pub use status::{
    AttemptRecord, ConditionStatus, ConditionType, MAX_PREVIOUS_ATTEMPTS, Phase, Reason,
    TaskRunStatus,
};
pub use text::{api_safe, api_safe_tail};
pub use validation::{SpecProblem, kernel_owned, policy_problems, spec_problems};
pub use workloads::{
    ConfigMapVolumeSource, EmptyDirVolumeSource, EnvFromSource, EnvVarSource, KeySelector,
    KeyToPath, LocalObjectReference, ObjectKind, ObjectReference, SecretVolumeSource, Volume,
    VolumeMount,
};

/// The finalizer that keeps a TaskRun until its container is gone.
pub const FINALIZER: &str = "taskrun.dev/container";
