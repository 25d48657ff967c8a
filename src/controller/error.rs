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
