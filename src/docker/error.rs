//! [`DockerError`]: one variant per Docker operation that failed, naming the container, image or
//! network, with the daemon's cause. It tells an answer from the daemon
//! ([`DockerError::daemon_message`]; a 4xx, [`DockerError::is_refusal`], puts the request at
//! fault) from no answer at all (refused connection, broken stream, timeout), which is worth
//! retrying. What either does to a run is the executor's call.

use bollard::errors::Error as BollardError;

/// A failed call to the Docker daemon, named after the operation, with the daemon's cause in
/// its message (and so not again as a source).
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("failed to connect to the Docker daemon: {0}")]
    Connect(BollardError),
    #[error("failed to inspect container {name}: {cause}")]
    InspectContainer { name: String, cause: BollardError },
    #[error("failed to set up the task network {name}: {cause}")]
    Network { name: String, cause: BollardError },
    #[error(
        "the Docker network {name} exists but was not made by this operator with traffic between containers off; remove it and the agent makes it again"
    )]
    ForeignNetwork { name: String },
    #[error("failed to read the daemon's setup (docker info): {0}")]
    Info(BollardError),
    #[error("failed to inspect image {image}: {cause}")]
    InspectImage { image: String, cause: BollardError },
    #[error("failed to pull image {image}: {cause}")]
    PullImage { image: String, cause: BollardError },
    #[error("pulling image {image} did not finish within {seconds} s")]
    PullTimeout { image: String, seconds: u64 },
    #[error("failed to create container {name}: {cause}")]
    CreateContainer { name: String, cause: BollardError },
    #[error("failed to write files into container {name}: {cause}")]
    UploadArchive { name: String, cause: BollardError },
    #[error("failed to start container {name}: {cause}")]
    StartContainer { name: String, cause: BollardError },
    #[error("failed to stop container {name}: {cause}")]
    StopContainer { name: String, cause: BollardError },
    #[error("failed to remove container {name}: {cause}")]
    RemoveContainer { name: String, cause: BollardError },
    #[error("failed to read the logs of container {name}: {cause}")]
    ReadLogs { name: String, cause: BollardError },
    #[error("failed to wait for container {name}: {cause}")]
    WaitContainer { name: String, cause: BollardError },
    #[error("failed to list containers: {0}")]
    ListContainers(BollardError),
    #[error("failed to follow Docker events: {0}")]
    Events(BollardError),
    #[error("the firewall container of image {image} exited with code {exit_code}: {output}")]
    FirewallRefused {
        image: String,
        exit_code: i64,
        output: String,
    },
}

impl DockerError {
    fn cause(&self) -> Option<&BollardError> {
        match self {
            Self::Connect(e) | Self::ListContainers(e) | Self::Events(e) | Self::Info(e) => Some(e),
            Self::InspectContainer { cause, .. }
            | Self::InspectImage { cause, .. }
            | Self::Network { cause, .. }
            | Self::PullImage { cause, .. }
            | Self::CreateContainer { cause, .. }
            | Self::UploadArchive { cause, .. }
            | Self::StartContainer { cause, .. }
            | Self::StopContainer { cause, .. }
            | Self::RemoveContainer { cause, .. }
            | Self::ReadLogs { cause, .. }
            | Self::WaitContainer { cause, .. } => Some(cause),
            Self::PullTimeout { .. }
            | Self::ForeignNetwork { .. }
            | Self::FirewallRefused { .. } => None,
        }
    }

    /// The daemon's own answer, when it answered at all. A failure without one (refused
    /// connection, broken stream, timeout) says nothing about the run and is worth retrying.
    pub fn daemon_message(&self) -> Option<String> {
        match self.cause()? {
            BollardError::DockerResponseServerError { message, .. } => Some(message.clone()),
            BollardError::DockerStreamError { error } => Some(error.clone()),
            _ => None,
        }
    }

    /// Whether the daemon refused the request itself (an HTTP 4xx): the request is at fault,
    /// and asking again changes nothing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self.cause(),
            Some(BollardError::DockerResponseServerError { status_code, .. }) if (400..500).contains(status_code)
        )
    }

    /// Whether the daemon answered with this HTTP status.
    pub fn has_status(&self, status: u16) -> bool {
        matches!(
            self.cause(),
            Some(BollardError::DockerResponseServerError { status_code, .. }) if *status_code == status
        )
    }
}
