//! The operator's view of containers and images, free of bollard's types except where an inspect
//! is read: [`ObservedContainer`], reduced from `docker inspect` to what decides a run, with what
//! the daemon's events reported of its end put over it; [`ImageConfig`]; and the
//! [`ContainerTemplate`] with its [`ContainerSecurity`] that a run's container is created from.
//! Building the create request from a template is the client's work.

use std::collections::HashMap;

use jiff::Timestamp;

use super::naming::ContainerOwner;

/// What the operator needs to know of a container, read from `docker inspect`.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    /// The TaskRun named in the container's labels; `None` for a container we did not create.
    pub owner: Option<ContainerOwner>,
    pub state: ContainerState,
}

/// The state of a container, reduced to what decides a run.
#[derive(Clone, Debug, PartialEq)]
pub enum ContainerState {
    /// Created but not started. `error` is set when a start was tried and failed.
    Created { error: Option<String> },
    /// The main process runs (paused and restarting count as running).
    Running { started_at: Timestamp },
    /// The main process has ended.
    Exited {
        exit_code: i64,
        oom_killed: bool,
        started_at: Option<Timestamp>,
        finished_at: Option<Timestamp>,
        error: Option<String>,
    },
}

/// What the daemon says of an image it has.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageConfig {
    /// The image's ID (`sha256:...`): the container is created from it, so the image checked
    /// is the image run, whatever a pull of the same tag does in between.
    pub id: String,
    /// Its `USER`, empty for root.
    pub user: String,
    /// Its `WORKDIR`, empty when it sets none.
    pub working_dir: String,
}

/// Everything needed to create the container of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerTemplate {
    pub image: String,
    pub entrypoint: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub memory_bytes: Option<i64>,
    pub nano_cpus: Option<i64>,
    /// Most bytes of output the daemon keeps for the container.
    pub log_max_bytes: u64,
    /// In-memory mounts: path and tmpfs options.
    pub tmpfs: Vec<(String, String)>,
    /// `/etc/hosts` entries, `NAME:ADDRESS`.
    pub extra_hosts: Vec<String>,
    /// How the container is confined.
    pub security: ContainerSecurity,
    pub owner: ContainerOwner,
}

/// How a container is confined, beyond what every container of ours gets (never privileged,
/// Docker's default seccomp profile, a private IPC namespace, no host namespace, device or
/// path).
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerSecurity {
    /// `UID` or `UID:GID` the process runs as; the image's user when `None`.
    pub user: Option<String>,
    /// The root filesystem is read-only.
    pub read_only_root: bool,
    /// Capabilities added to Docker's default set.
    pub cap_add: Vec<String>,
    /// Capabilities dropped from it; `ALL` drops every one.
    pub cap_drop: Vec<String>,
    /// `no-new-privileges`: setuid binaries and file capabilities grant nothing.
    pub no_new_privileges: bool,
    /// Most processes and threads at once.
    pub pids_limit: i64,
    /// Docker's network mode: `bridge` or `none`.
    pub network_mode: String,
}

impl ObservedContainer {
    /// Builds the observation from an inspect response; `None` when the daemon left out the
    /// fields every container has.
    pub(super) fn from_inspect(inspect: bollard::models::ContainerInspectResponse) -> Option<Self> {
        use bollard::models::ContainerStateStatusEnum as Status;

        let id = inspect.id?;
        let name = inspect
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let labels: HashMap<String, String> =
            inspect.config.and_then(|c| c.labels).unwrap_or_default();
        let state = inspect.state?;
        let error = state.error.filter(|e| !e.is_empty());
        let started_at = state.started_at.as_deref().and_then(parse_docker_time);
        let finished_at = state.finished_at.as_deref().and_then(parse_docker_time);
        let state = match state.status {
            Some(Status::CREATED) | Some(Status::EMPTY) | None => ContainerState::Created { error },
            Some(Status::RUNNING)
            | Some(Status::PAUSED)
            | Some(Status::RESTARTING)
            | Some(Status::STOPPING) => ContainerState::Running {
                started_at: started_at.unwrap_or(Timestamp::UNIX_EPOCH),
            },
            Some(Status::EXITED) | Some(Status::DEAD) | Some(Status::REMOVING) => {
                ContainerState::Exited {
                    exit_code: state.exit_code.unwrap_or(-1),
                    oom_killed: state.oom_killed.unwrap_or(false),
                    started_at,
                    finished_at,
                    error,
                }
            }
        };
        Some(Self {
            id,
            name,
            owner: ContainerOwner::from_labels(&labels),
            state,
        })
    }
}

/// How a container ended, as the daemon's `die` and `oom` events told it when it happened.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct ReportedEnd {
    /// The exit code of the first `die` event: ours are started once, and a daemon restarted
    /// after the exit but before it saved it restores the container with exit code 255.
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
}

impl ObservedContainer {
    /// The container with what the daemon's events reported of its end put over what the
    /// inspect said.
    pub(super) fn with_reported_end(mut self, reported: ReportedEnd) -> Self {
        if let ContainerState::Exited {
            exit_code,
            oom_killed,
            ..
        } = &mut self.state
        {
            *exit_code = reported.exit_code.unwrap_or(*exit_code);
            *oom_killed |= reported.oom_killed;
        }
        self
    }

    /// Whether the container exited from a SIGKILL the daemon did not flag as an OOM kill.
    pub(super) fn killed_without_oom_flag(&self) -> bool {
        matches!(
            self.state,
            ContainerState::Exited {
                exit_code: 137,
                oom_killed: false,
                ..
            }
        )
    }
}

/// Docker writes `0001-01-01T00:00:00Z` for times that never happened.
fn parse_docker_time(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok().filter(|t| t.as_second() > 0)
}

/// Credentials for one registry.
#[derive(Clone, PartialEq)]
pub struct RegistryAuth {
    /// The registry as the pull secret names it.
    pub server: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryAuth({}, {})", self.server, self.username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(exit_code: i64, oom_killed: bool) -> ObservedContainer {
        ObservedContainer {
            id: "c1".into(),
            name: "taskrun-x".into(),
            owner: None,
            state: ContainerState::Exited {
                exit_code,
                oom_killed,
                started_at: None,
                finished_at: None,
                error: None,
            },
        }
    }

    #[test]
    fn the_reported_end_wins_over_a_restored_one() {
        let reported = ReportedEnd {
            exit_code: Some(1),
            oom_killed: false,
        };
        assert_eq!(
            exited(255, false).with_reported_end(reported),
            exited(1, false)
        );
        let oom = ReportedEnd {
            exit_code: Some(137),
            oom_killed: true,
        };
        assert_eq!(exited(137, false).with_reported_end(oom), exited(137, true));
        assert_eq!(
            exited(3, false).with_reported_end(ReportedEnd::default()),
            exited(3, false)
        );
        let running = ObservedContainer {
            state: ContainerState::Running {
                started_at: Timestamp::UNIX_EPOCH,
            },
            ..exited(0, false)
        };
        assert_eq!(running.clone().with_reported_end(reported), running);
    }

    #[test]
    fn zero_docker_times_are_absent() {
        assert_eq!(parse_docker_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(
            parse_docker_time("2026-11-24T10:00:00.123456789Z").map(|t| t.as_second()),
            Some(1795514400)
        );
    }
}
