//! The seam between the operator and a node's Docker daemon: the [`Daemon`] trait, one method
//! per Docker verb, which the executor alone holds. The real daemon answers it through
//! [`super::DockerClient`], unit tests through an in-memory fake. A container or image that is
//! not there is `None`, not an error, and stopping or removing a container already stopped or
//! gone succeeds, so a repeated stop or removal is harmless.

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::container::{ContainerTemplate, ImageConfig, ObservedContainer, RegistryAuth};
use super::error::DockerError;
use super::naming::ContainerOwner;
use super::setup::DaemonSetup;

/// What the operator asks of a node's Docker daemon: one method per Docker verb. The real
/// daemon answers through [`super::DockerClient`]; tests may answer from memory.
#[async_trait]
pub trait Daemon: Send + Sync {
    /// Whether the daemon answers.
    async fn ping(&self) -> Result<(), DockerError>;

    /// The container with this name, or `None` when there is none.
    async fn inspect_container(&self, name: &str)
    -> Result<Option<ObservedContainer>, DockerError>;

    /// Whether the daemon's default bridge keeps its containers from reaching each other (the
    /// daemon runs with `--icc=false`).
    async fn default_bridge_isolates(&self) -> Result<bool, DockerError>;

    /// Makes sure the bridge network `name` exists, made by this operator, with traffic between
    /// its containers off; creates it when missing.
    async fn ensure_task_network(&self, name: &str) -> Result<(), DockerError>;

    /// The host interface of the bridge network `name`, as the host's firewall sees it.
    async fn bridge_interface(&self, name: &str) -> Result<String, DockerError>;

    /// Runs `command` in a short-lived container `name` of `image` on the host's network with
    /// only `NET_ADMIN`, so it can change the host's firewall and nothing else; returns its
    /// exit code and the end of its output once it exited and is removed.
    async fn run_network_admin(
        &self,
        name: &str,
        image: &str,
        command: &[String],
    ) -> Result<(i64, String), DockerError>;

    /// The daemon's version, runtimes and confinement.
    async fn setup(&self) -> Result<DaemonSetup, DockerError>;

    /// The image's ID, user and working directory; `None` when the daemon has no such image.
    async fn inspect_image(&self, image: &str) -> Result<Option<ImageConfig>, DockerError>;

    /// Pulls the image with the registry's credentials, if any, giving up after `timeout`.
    async fn pull_image(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
        timeout: Duration,
    ) -> Result<(), DockerError>;

    /// Creates the container and returns its ID. A name already taken answers 409.
    async fn create_container(&self, template: &ContainerTemplate) -> Result<String, DockerError>;

    /// Unpacks a tar archive at `/` in a created container.
    async fn upload_archive(&self, name: &str, archive: Vec<u8>) -> Result<(), DockerError>;

    /// Starts a created container.
    async fn start_container(&self, name: &str) -> Result<(), DockerError>;

    /// Sends SIGTERM, then SIGKILL after `grace`. A container already stopped or gone is fine.
    async fn stop_container(&self, name: &str, grace: Duration) -> Result<(), DockerError>;

    /// Removes the container, killing it if it still runs. A container already gone is fine.
    async fn remove_container(&self, name: &str) -> Result<(), DockerError>;

    /// The last `max_bytes` of the container's stdout and stderr, interleaved as written.
    async fn log_tail(&self, name: &str, max_bytes: usize) -> Result<String, DockerError>;

    /// The last line the container wrote to stdout or stderr (empty before it wrote any),
    /// `None` when there is no such container. It is at most 16 KiB: Docker splits longer lines.
    async fn last_line(&self, name: &str) -> Result<Option<String>, DockerError>;

    /// Returns once the container is no longer running.
    async fn wait_until_stopped(&self, name: &str) -> Result<(), DockerError>;

    /// The containers this operator created for `node`: their IDs and owners.
    async fn list_managed(&self, node: &str) -> Result<Vec<(String, ContainerOwner)>, DockerError>;

    /// Owners of this node's containers as they stop or disappear, as the daemon reports them.
    fn container_stops(
        &self,
        node: &str,
    ) -> BoxStream<'static, Result<ContainerOwner, DockerError>>;
}
