//! An in-memory Docker daemon for unit tests: containers by name, the images it has, scripted
//! answers, and a record of every call. The real daemon stays the truth in end-to-end tests.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as BollardError;
use futures::StreamExt;
use futures::stream::BoxStream;
use jiff::Timestamp;

use super::container::{
    ContainerState, ContainerTemplate, ImageConfig, ObservedContainer, RegistryAuth,
};
use super::daemon::Daemon;
use super::error::DockerError;
use super::naming::ContainerOwner;
use super::setup::DaemonSetup;

/// How the fake answers one verb instead of doing it.
#[derive(Clone, Debug)]
pub enum Answer {
    /// The daemon answers with this HTTP status and message.
    Status(u16, String),
    /// The daemon does not answer at all.
    Unreachable,
}

/// A container the fake holds.
#[derive(Clone, Debug)]
pub struct FakeContainer {
    pub id: String,
    pub template: ContainerTemplate,
    pub state: ContainerState,
}

/// What the fake holds and how it is told to answer.
#[derive(Debug, Default)]
pub struct FakeState {
    pub images: HashSet<String>,
    /// The `USER` of images that set one.
    pub image_users: HashMap<String, String>,
    /// The `WORKDIR` of images that set one.
    pub image_workdirs: HashMap<String, String>,
    /// Images a pull can fetch.
    pub pullable: HashSet<String>,
    pub containers: HashMap<String, FakeContainer>,
    /// Answers by verb (`inspect_image`, `pull`, `create`, `start`, ...) in place of doing it.
    pub answers: HashMap<&'static str, Answer>,
    /// The exit code a started container ends with once waited for.
    pub exit_code: i64,
    pub output: String,
    /// Every call, as `verb target`.
    pub calls: Vec<String>,
    /// The credentials of the last pull.
    pub pulled_with: Option<RegistryAuth>,
    /// Archives unpacked into containers, by container name.
    pub archives: HashMap<String, Vec<u8>>,
    /// The default bridge keeps containers apart, as under `dockerd --icc=false`.
    pub isolating_bridge: bool,
    /// The commands network admin containers ran, with their image.
    pub network_admin_commands: Vec<(String, Vec<String>)>,
}

/// The ID the fake gives an image: its name, spelled as an ID, so a container created by name
/// instead of by ID finds no image.
pub fn image_id(image: &str) -> String {
    format!("sha256:{image}")
}

/// The in-memory daemon.
#[derive(Debug, Default)]
pub struct FakeDaemon {
    pub state: Mutex<FakeState>,
    /// When set, a pull waits for one of its permits, as from a slow registry.
    pub pull_gate: Option<std::sync::Arc<tokio::sync::Semaphore>>,
}

impl FakeDaemon {
    /// A daemon that has `images`.
    pub fn with_images(images: &[&str]) -> Self {
        let fake = Self::default();
        fake.state().images = images.iter().map(|i| i.to_string()).collect();
        fake
    }

    /// The state, to arrange or inspect.
    pub fn state(&self) -> parking_lot::MutexGuard<'_, FakeState> {
        self.state.lock()
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    /// Records the call; the scripted answer for `verb`, if any, as the error of `wrap`.
    fn call(
        &self,
        verb: &'static str,
        target: &str,
        wrap: impl FnOnce(BollardError) -> DockerError,
    ) -> Result<(), DockerError> {
        let mut state = self.state();
        state.calls.push(format!("{verb} {target}"));
        match state.answers.get(verb) {
            None => Ok(()),
            Some(Answer::Unreachable) => Err(wrap(BollardError::RequestTimeoutError)),
            Some(Answer::Status(status_code, message)) => {
                Err(wrap(BollardError::DockerResponseServerError {
                    status_code: *status_code,
                    message: message.clone(),
                }))
            }
        }
    }
}

fn refused(status_code: u16, message: &str) -> BollardError {
    BollardError::DockerResponseServerError {
        status_code,
        message: message.to_string(),
    }
}

#[async_trait]
impl Daemon for FakeDaemon {
    async fn ping(&self) -> Result<(), DockerError> {
        self.call("ping", "", DockerError::Connect)
    }

    async fn default_bridge_isolates(&self) -> Result<bool, DockerError> {
        self.call("inspect_network", "bridge", |cause| DockerError::Network {
            name: "bridge".to_string(),
            cause,
        })?;
        Ok(self.state().isolating_bridge)
    }

    async fn ensure_task_network(&self, name: &str) -> Result<(), DockerError> {
        self.call("network", name, |cause| DockerError::Network {
            name: name.to_string(),
            cause,
        })
    }

    async fn bridge_interface(&self, name: &str) -> Result<String, DockerError> {
        self.call("inspect_network", name, |cause| DockerError::Network {
            name: name.to_string(),
            cause,
        })?;
        Ok(format!("br-{name}"))
    }

    async fn run_network_admin(
        &self,
        name: &str,
        image: &str,
        command: &[String],
    ) -> Result<(i64, String), DockerError> {
        self.call("network_admin", name, |cause| {
            DockerError::CreateContainer {
                name: name.to_string(),
                cause,
            }
        })?;
        let mut state = self.state();
        state
            .network_admin_commands
            .push((image.to_string(), command.to_vec()));
        Ok((state.exit_code, state.output.clone()))
    }

    async fn setup(&self) -> Result<DaemonSetup, DockerError> {
        self.call("info", "", DockerError::Info)?;
        Ok(DaemonSetup {
            seccomp: Some("default".into()),
            ..DaemonSetup::default()
        })
    }

    async fn inspect_container(
        &self,
        name: &str,
    ) -> Result<Option<ObservedContainer>, DockerError> {
        self.call("inspect", name, |cause| DockerError::InspectContainer {
            name: name.to_string(),
            cause,
        })?;
        Ok(self
            .state()
            .containers
            .get(name)
            .map(|c| ObservedContainer {
                id: c.id.clone(),
                name: name.to_string(),
                owner: Some(c.template.owner.clone()),
                state: c.state.clone(),
            }))
    }

    async fn inspect_image(&self, image: &str) -> Result<Option<ImageConfig>, DockerError> {
        self.call("inspect_image", image, |cause| DockerError::InspectImage {
            image: image.to_string(),
            cause,
        })?;
        let state = self.state();
        Ok(state.images.contains(image).then(|| ImageConfig {
            id: image_id(image),
            user: state.image_users.get(image).cloned().unwrap_or_default(),
            working_dir: state.image_workdirs.get(image).cloned().unwrap_or_default(),
        }))
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
        _timeout: Duration,
    ) -> Result<(), DockerError> {
        let error = |cause| DockerError::PullImage {
            image: image.to_string(),
            cause,
        };
        self.call("pull", image, error)?;
        if let Some(gate) = &self.pull_gate {
            drop(gate.acquire().await);
        }
        let mut state = self.state();
        state.pulled_with = auth.cloned();
        if !state.pullable.contains(image) {
            return Err(error(BollardError::DockerStreamError {
                error: format!("pull access denied for {image}"),
            }));
        }
        state.images.insert(image.to_string());
        Ok(())
    }

    async fn create_container(&self, template: &ContainerTemplate) -> Result<String, DockerError> {
        let name = template.owner.container_name();
        let error = |cause| DockerError::CreateContainer {
            name: name.clone(),
            cause,
        };
        self.call("create", &name, error)?;
        let mut state = self.state();
        if state.containers.contains_key(&name) {
            return Err(error(refused(
                409,
                "Conflict. The container name is already in use",
            )));
        }
        if !state
            .images
            .iter()
            .any(|image| image_id(image) == template.image)
        {
            return Err(error(refused(404, "No such image")));
        }
        let id = format!("id-{name}");
        state.containers.insert(
            name.clone(),
            FakeContainer {
                id: id.clone(),
                template: template.clone(),
                state: ContainerState::Created { error: None },
            },
        );
        Ok(id)
    }

    async fn upload_archive(&self, name: &str, archive: Vec<u8>) -> Result<(), DockerError> {
        let error = |cause| DockerError::UploadArchive {
            name: name.to_string(),
            cause,
        };
        self.call("upload", name, error)?;
        let mut state = self.state();
        if !state.containers.contains_key(name) {
            return Err(error(refused(404, "No such container")));
        }
        state.archives.insert(name.to_string(), archive);
        Ok(())
    }

    async fn start_container(&self, name: &str) -> Result<(), DockerError> {
        let error = |cause| DockerError::StartContainer {
            name: name.to_string(),
            cause,
        };
        if let Err(e) = self.call("start", name, error) {
            // A refused start leaves its error on a created container; one that runs already
            // keeps running.
            if let Some(container) = self.state().containers.get_mut(name)
                && matches!(container.state, ContainerState::Created { .. })
            {
                container.state = ContainerState::Created {
                    error: e.daemon_message(),
                };
            }
            return Err(e);
        }
        let mut state = self.state();
        let container = state
            .containers
            .get_mut(name)
            .ok_or_else(|| error(refused(404, "No such container")))?;
        container.state = ContainerState::Running {
            started_at: Timestamp::now(),
        };
        Ok(())
    }

    async fn stop_container(&self, name: &str, _grace: Duration) -> Result<(), DockerError> {
        self.call("stop", name, |cause| DockerError::StopContainer {
            name: name.to_string(),
            cause,
        })?;
        if let Some(container) = self.state().containers.get_mut(name)
            && let ContainerState::Running { started_at } = container.state
        {
            container.state = ContainerState::Exited {
                exit_code: 143,
                oom_killed: false,
                started_at: Some(started_at),
                finished_at: Some(Timestamp::now()),
                error: None,
            };
        }
        Ok(())
    }

    async fn remove_container(&self, name: &str) -> Result<(), DockerError> {
        self.call("remove", name, |cause| DockerError::RemoveContainer {
            name: name.to_string(),
            cause,
        })?;
        let mut state = self.state();
        state
            .containers
            .retain(|key, c| key != name && c.id != name);
        Ok(())
    }

    async fn log_tail(&self, name: &str, max_bytes: usize) -> Result<String, DockerError> {
        self.call("logs", name, |cause| DockerError::ReadLogs {
            name: name.to_string(),
            cause,
        })?;
        let output = &self.state().output;
        let mut start = output.len().saturating_sub(max_bytes);
        while !output.is_char_boundary(start) {
            start += 1;
        }
        Ok(output[start..].to_string())
    }

    async fn last_line(&self, name: &str) -> Result<Option<String>, DockerError> {
        self.call("last_line", name, |cause| DockerError::ReadLogs {
            name: name.to_string(),
            cause,
        })?;
        let state = self.state();
        Ok(state.containers.contains_key(name).then(|| {
            let output = state.output.strip_suffix('\n').unwrap_or(&state.output);
            output.rsplit('\n').next().unwrap_or_default().to_string()
        }))
    }

    /// The task ends as soon as someone waits for it, with the scripted exit code.
    async fn wait_until_stopped(&self, name: &str) -> Result<(), DockerError> {
        self.call("wait", name, |cause| DockerError::WaitContainer {
            name: name.to_string(),
            cause,
        })?;
        let mut state = self.state();
        let exit_code = state.exit_code;
        if let Some(container) = state.containers.get_mut(name)
            && let ContainerState::Running { started_at } = container.state
        {
            container.state = ContainerState::Exited {
                exit_code,
                oom_killed: false,
                started_at: Some(started_at),
                finished_at: Some(Timestamp::now()),
                error: None,
            };
        }
        Ok(())
    }

    async fn list_managed(&self, node: &str) -> Result<Vec<(String, ContainerOwner)>, DockerError> {
        self.call("list", node, DockerError::ListContainers)?;
        Ok(self
            .state()
            .containers
            .values()
            .filter(|c| c.template.owner.node == node)
            .map(|c| (c.id.clone(), c.template.owner.clone()))
            .collect())
    }

    fn container_stops(
        &self,
        _node: &str,
    ) -> BoxStream<'static, Result<ContainerOwner, DockerError>> {
        futures::stream::empty().boxed()
    }
}
