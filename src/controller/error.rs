//! The controller's [`Error`]: one variant per operation that failed, named after it, with the
//! TaskRun, node or object it was for and the cause; Docker's failures arrive wrapped in
//! [`Error::Docker`]. An error a pass returns is counted, logged and retried with the TaskRun's
//! backoff by `reconcile::error_policy`; nothing here decides that.

use crate::docker::DockerError;

/// What can go wrong in the controller; each message carries its cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to load the Kubernetes client configuration: {0}")]
    KubeConfig(kube::Error),
    #[error("failed to write the status of TaskRun {namespace}/{name}: {cause}")]
    WriteStatus {
        namespace: String,
        name: String,
        cause: kube::Error,
    },
    #[error("TaskRun {0} has no {1}")]
    MissingMetadata(String, &'static str),
    #[error("failed to serve the health and metrics endpoints: {0}")]
    Serve(std::io::Error),
    #[error("failed to claim TaskRun {name}: {cause}")]
    Claim { name: String, cause: kube::Error },
    #[error("failed to release the finalizer of TaskRun {name}: {cause}")]
    ReleaseFinalizer { name: String, cause: kube::Error },
    #[error("failed to delete TaskRun {name} after its deleteAfterSeconds: {cause}")]
    Prune { name: String, cause: kube::Error },
    #[error("failed to read the Lease of node {node}: {cause}")]
    ReadLease { node: String, cause: kube::Error },
    #[error("failed to read the Node object {node}: {cause}")]
    ReadNode { node: String, cause: kube::Error },
    #[error("failed to read {kind} {namespace}/{name}: {cause}")]
    ReadReference {
        kind: crate::api::ObjectKind,
        namespace: String,
        name: String,
        cause: kube::Error,
    },
    #[error("failed to request a token for ServiceAccount {namespace}/{name}: {cause}")]
    RequestToken {
        namespace: String,
        name: String,
        cause: kube::Error,
    },
    #[error("the API server issued no token for ServiceAccount {namespace}/{name}")]
    NoToken { namespace: String, name: String },
    #[error("Docker: {0}")]
    Docker(DockerError),
}

/// The controller's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
