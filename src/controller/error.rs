use crate::docker::DockerError;

/// What can go wrong in the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to load the Kubernetes client configuration: {0}")]
    KubeConfig(#[source] kube::Error),
    #[error("failed to write the status of TaskRun {namespace}/{name}: {source}")]
    WriteStatus {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("TaskRun {0} has no {1}")]
    MissingMetadata(String, &'static str),
    #[error("failed to serve the health and metrics endpoints: {0}")]
    Serve(#[source] std::io::Error),
    #[error("failed to claim TaskRun {name}: {source}")]
    Claim { name: String, source: kube::Error },
    #[error("failed to release the finalizer of TaskRun {name}: {source}")]
    ReleaseFinalizer { name: String, source: kube::Error },
    #[error("failed to read the Lease of node {node}: {source}")]
    ReadLease { node: String, source: kube::Error },
    #[error("Docker: {0}")]
    Docker(#[source] DockerError),
}

/// The controller's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
