//! The node's Docker daemon: a small client with one method per Docker verb, and the names
//! and labels that tie a container to its TaskRun.

mod client;
mod container;
mod daemon;
mod error;
#[cfg(test)]
pub mod fake;
mod naming;
mod setup;

pub use client::{
    DEFAULT_CONTAINER_LOG_BYTES, DEFAULT_LOG_TAIL_BYTES, DockerClient, MAX_LOG_TAIL_BYTES,
};
pub use container::{
    ContainerSecurity, ContainerState, ContainerTemplate, ImageConfig, ObservedContainer,
    RegistryAuth,
};
pub use daemon::Daemon;
pub use error::DockerError;
pub use naming::{
    ContainerOwner, LABEL_ATTEMPT, LABEL_MANAGED_BY, LABEL_NAME, LABEL_NAMESPACE, LABEL_NODE,
    LABEL_UID, MANAGED_BY, attempt_container_name, container_name, firewall_container_name,
};
pub use setup::DaemonSetup;
