//! [`DockerClient`]: the [`Daemon`] of a real Docker daemon, through bollard. The daemon's 404 on
//! an inspect, a stop, a removal or a wait is an answer (no such thing, or already done), never an
//! error. The client keeps how each managed container ended from the daemon's `die` and `oom`
//! events, because an inspect alone can miss an OOM kill and, after a daemon restart, the exit
//! code. It decides nothing about runs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;

use super::container::{
    ContainerState, ContainerTemplate, ImageConfig, ObservedContainer, RegistryAuth, ReportedEnd,
};
use super::daemon::Daemon;
use super::error::DockerError;
use super::naming::{ContainerOwner, LABEL_MANAGED_BY, LABEL_NODE, MANAGED_BY};
use super::setup::DaemonSetup;

/// A connection to one Docker daemon.
#[derive(Clone)]
pub struct DockerClient {
    docker: bollard::Docker,
    /// How managed containers ended, by container id, as the daemon's events reported it, until
    /// they are destroyed: the daemon keeps only its last 1,024 events to ask again, and one
    /// restarted in between forgets an exit code it had not saved.
    reported_ends: Arc<Mutex<HashMap<String, ReportedEnd>>>,
}

/// How much of the end of a container's output its run records, unless the agent is told
/// otherwise.
pub const DEFAULT_LOG_TAIL_BYTES: usize = 4096;

/// The most the agent may be told to record: a TaskRun object must stay well within what the
/// API server stores.
pub const MAX_LOG_TAIL_BYTES: usize = 64 * 1024;

/// Most bytes of output kept on the node per container, unless the agent is told otherwise.
pub const DEFAULT_CONTAINER_LOG_BYTES: u64 = 10 * 1024 * 1024;

/// The bridge driver's option that turns traffic between a network's containers on or off.
const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";

/// The daemon's own bridge network, `docker0`.
const DEFAULT_BRIDGE: &str = "bridge";

/// The bridge driver's option that names a network's host interface; without it, the
/// interface is `br-` and the first 12 characters of the network's ID.
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// How much of a network admin container's output is kept.
const NETWORK_ADMIN_OUTPUT_BYTES: usize = 4096;

impl DockerClient {
    /// Connects to `DOCKER_HOST`, or the default socket, and settles on an API version both
    /// sides speak (Debian's engine speaks 1.41, older than this client's default).
    pub async fn connect() -> Result<Self, DockerError> {
        let docker = bollard::Docker::connect_with_defaults().map_err(DockerError::Connect)?;
        Self::negotiate(docker).await
    }

    async fn negotiate(docker: bollard::Docker) -> Result<Self, DockerError> {
        let docker = docker
            .negotiate_version()
            .await
            .map_err(DockerError::Connect)?;
        Ok(Self {
            docker,
            reported_ends: Arc::default(),
        })
    }
}

#[async_trait]
impl Daemon for DockerClient {
    async fn ping(&self) -> Result<(), DockerError> {
        self.docker
            .ping()
            .await
            .map(drop)
            .map_err(DockerError::Connect)
    }

    async fn default_bridge_isolates(&self) -> Result<bool, DockerError> {
        let bridge = self
            .docker
            .inspect_network(DEFAULT_BRIDGE, None)
            .await
            .map_err(|cause| DockerError::Network {
                name: DEFAULT_BRIDGE.to_string(),
                cause,
            })?;
        Ok(bridge
            .options
            .unwrap_or_default()
            .get(ICC_OPTION)
            .is_some_and(|v| v == "false"))
    }

    async fn ensure_task_network(&self, name: &str) -> Result<(), DockerError> {
        let error = |cause| DockerError::Network {
            name: name.to_string(),
            cause,
        };
        match self.docker.inspect_network(name, None).await {
            Ok(found) => {
                let ours = found
                    .labels
                    .unwrap_or_default()
                    .get(LABEL_MANAGED_BY)
                    .is_some_and(|v| v == MANAGED_BY);
                let icc_off = found
                    .options
                    .unwrap_or_default()
                    .get(ICC_OPTION)
                    .is_some_and(|v| v == "false");
                return if ours && icc_off {
                    Ok(())
                } else {
                    Err(DockerError::ForeignNetwork {
                        name: name.to_string(),
                    })
                };
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(cause) => return Err(error(cause)),
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            options: Some(HashMap::from([(
                ICC_OPTION.to_string(),
                "false".to_string(),
            )])),
            labels: Some(HashMap::from([(
                LABEL_MANAGED_BY.to_string(),
                MANAGED_BY.to_string(),
            )])),
            ..NetworkCreateRequest::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            // Another agent on the same daemon made it first.
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(cause) => Err(error(cause)),
        }
    }

    async fn bridge_interface(&self, name: &str) -> Result<String, DockerError> {
        let found = self
            .docker
            .inspect_network(name, None)
            .await
            .map_err(|cause| DockerError::Network {
                name: name.to_string(),
                cause,
            })?;
        let named = found.options.unwrap_or_default().remove(BRIDGE_NAME_OPTION);
        let id = found.id.unwrap_or_default();
        Ok(named.unwrap_or_else(|| format!("br-{}", id.get(..12).unwrap_or(&id))))
    }

    async fn run_network_admin(
        &self,
        name: &str,
        image: &str,
        command: &[String],
    ) -> Result<(i64, String), DockerError> {
        // One left by an agent that stopped halfway.
        self.remove_container(name).await?;
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(command.to_vec()),
            user: Some("0".into()),
            labels: Some(HashMap::from([(
                LABEL_MANAGED_BY.to_string(),
                MANAGED_BY.to_string(),
            )])),
            host_config: Some(HostConfig {
                network_mode: Some("host".into()),
                privileged: Some(false),
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: Some(vec!["NET_ADMIN".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                readonly_rootfs: Some(true),
                pids_limit: Some(16),
                memory: Some(64 << 20),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(|cause| DockerError::CreateContainer {
                name: name.to_string(),
                cause,
            })?;
        let ran = async {
            self.start_container(name).await?;
            let mut wait = Box::pin(self.docker.wait_container(name, None));
            let exit_code = match wait.next().await {
                Some(Ok(exited)) => exited.status_code,
                Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
                Some(Err(cause)) => {
                    return Err(DockerError::WaitContainer {
                        name: name.to_string(),
                        cause,
                    });
                }
                None => -1,
            };
            let output = self.log_tail(name, NETWORK_ADMIN_OUTPUT_BYTES).await?;
            Ok((exit_code, output))
        }
        .await;
        let removed = self.remove_container(name).await;
        let ran = ran?;
        removed.map(|()| ran)
    }

    async fn setup(&self) -> Result<DaemonSetup, DockerError> {
        let info = self.docker.info().await.map_err(DockerError::Info)?;
        let mut runtimes: Vec<(String, String)> = info
            .runtimes
            .unwrap_or_default()
            .into_iter()
            .map(|(name, runtime)| (name, runtime.path.unwrap_or_default()))
            .collect();
        runtimes.sort();
        let setup = DaemonSetup {
            version: info.server_version.unwrap_or_default(),
            default_runtime: info.default_runtime.unwrap_or_default(),
            runtimes,
            runc_commit: info.runc_commit.and_then(|c| c.id).unwrap_or_default(),
            cgroup_version: info
                .cgroup_version
                .map(|v| v.to_string())
                .unwrap_or_default(),
            ..DaemonSetup::default()
        };
        Ok(setup.with_security_options(&info.security_options.unwrap_or_default()))
    }

    async fn inspect_container(
        &self,
        name: &str,
    ) -> Result<Option<ObservedContainer>, DockerError> {
        match self.docker.inspect_container(name, None).await {
            Ok(inspect) => match ObservedContainer::from_inspect(inspect) {
                Some(container) => self.with_reported_end(container).await.map(Some),
                None => Ok(None),
            },
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(cause) => Err(DockerError::InspectContainer {
                name: name.to_string(),
                cause,
            }),
        }
    }

    async fn inspect_image(&self, image: &str) -> Result<Option<ImageConfig>, DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(inspect) => {
                let config = inspect.config.unwrap_or_default();
                Ok(Some(ImageConfig {
                    id: inspect.id.unwrap_or_default(),
                    user: config.user.unwrap_or_default(),
                    working_dir: config.working_dir.unwrap_or_default(),
                }))
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(cause) => Err(DockerError::InspectImage {
                image: image.to_string(),
                cause,
            }),
        }
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
        timeout: Duration,
    ) -> Result<(), DockerError> {
        let (repository, tag) = split_image_reference(image);
        let options = CreateImageOptionsBuilder::default()
            .from_image(repository)
            .tag(tag)
            .build();
        let credentials = auth.map(|auth| bollard::auth::DockerCredentials {
            username: Some(auth.username.clone()),
            password: Some(auth.password.clone()),
            serveraddress: Some(auth.server.clone()),
            ..Default::default()
        });
        let pull = self
            .docker
            .create_image(Some(options), None, credentials)
            .try_for_each(|_| async { Ok(()) });
        match tokio::time::timeout(timeout, pull).await {
            Ok(result) => result.map_err(|cause| DockerError::PullImage {
                image: image.to_string(),
                cause,
            }),
            Err(_) => Err(DockerError::PullTimeout {
                image: image.to_string(),
                seconds: timeout.as_secs(),
            }),
        }
    }

    async fn create_container(&self, template: &ContainerTemplate) -> Result<String, DockerError> {
        let name = template.owner.container_name();
        let security = &template.security;
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let body = ContainerCreateBody {
            image: Some(template.image.clone()),
            entrypoint: (!template.entrypoint.is_empty()).then(|| template.entrypoint.clone()),
            cmd: (!template.args.is_empty()).then(|| template.args.clone()),
            env: Some(
                template
                    .env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            ),
            working_dir: template.working_dir.clone(),
            user: security.user.clone(),
            labels: Some(template.owner.labels()),
            host_config: Some(HostConfig {
                memory: template.memory_bytes,
                memory_swap: template.memory_bytes,
                nano_cpus: template.nano_cpus,
                log_config: Some(capped_log(template.log_max_bytes)),
                tmpfs: (!template.tmpfs.is_empty())
                    .then(|| template.tmpfs.iter().cloned().collect()),
                extra_hosts: (!template.extra_hosts.is_empty())
                    .then(|| template.extra_hosts.clone()),
                // Said out loud rather than left to the daemon's defaults: never privileged,
                // no host IPC, and no seccomp option, so Docker's default profile applies.
                privileged: Some(false),
                ipc_mode: Some("private".into()),
                security_opt: security
                    .no_new_privileges
                    .then(|| vec!["no-new-privileges".to_string()]),
                pids_limit: Some(security.pids_limit),
                readonly_rootfs: Some(security.read_only_root),
                cap_add: (!security.cap_add.is_empty()).then(|| security.cap_add.clone()),
                cap_drop: (!security.cap_drop.is_empty()).then(|| security.cap_drop.clone()),
                network_mode: Some(security.network_mode.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.docker
            .create_container(Some(options), body)
            .await
            .map(|created| created.id)
            .map_err(|cause| DockerError::CreateContainer { name, cause })
    }

    async fn upload_archive(&self, name: &str, archive: Vec<u8>) -> Result<(), DockerError> {
        let options = UploadToContainerOptionsBuilder::default().path("/").build();
        self.docker
            .upload_to_container(name, Some(options), bollard::body_full(archive.into()))
            .await
            .map_err(|cause| DockerError::UploadArchive {
                name: name.to_string(),
                cause,
            })
    }

    async fn start_container(&self, name: &str) -> Result<(), DockerError> {
        self.docker
            .start_container(name, None)
            .await
            .map_err(|cause| DockerError::StartContainer {
                name: name.to_string(),
                cause,
            })
    }

    async fn stop_container(&self, name: &str, grace: Duration) -> Result<(), DockerError> {
        let seconds = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(seconds).build();
        // The daemon answers only once the grace period is over: wait for it that long.
        let patient = self
            .docker
            .clone()
            .with_timeout(self.docker.timeout() + grace);
        match patient.stop_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => Ok(()),
            Err(cause) => Err(DockerError::StopContainer {
                name: name.to_string(),
                cause,
            }),
        }
    }

    async fn remove_container(&self, name: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // "removal already in progress"
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(cause) => Err(DockerError::RemoveContainer {
                name: name.to_string(),
                cause,
            }),
        }
    }

    async fn log_tail(&self, name: &str, max_bytes: usize) -> Result<String, DockerError> {
        // The daemon tails by lines; the last bytes lie within as many lines as there are bytes.
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&max_bytes.to_string())
            .build();
        let mut logs = self.docker.logs(name, Some(options));
        let mut tail = Vec::with_capacity(2 * max_bytes);
        while let Some(chunk) = logs.next().await {
            let chunk = chunk.map_err(|cause| DockerError::ReadLogs {
                name: name.to_string(),
                cause,
            })?;
            tail.extend_from_slice(&chunk.into_bytes());
            if tail.len() > 2 * max_bytes {
                tail.drain(..tail.len() - max_bytes);
            }
        }
        Ok(String::from_utf8_lossy(last_bytes(&tail, max_bytes)).into_owned())
    }

    async fn last_line(&self, name: &str) -> Result<Option<String>, DockerError> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail("1")
            .build();
        let mut logs = self.docker.logs(name, Some(options));
        let mut line = Vec::new();
        while let Some(chunk) = logs.next().await {
            match chunk {
                Ok(chunk) => line.extend_from_slice(&chunk.into_bytes()),
                Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(None),
                Err(cause) => {
                    return Err(DockerError::ReadLogs {
                        name: name.to_string(),
                        cause,
                    });
                }
            }
        }
        Ok(Some(String::from_utf8_lossy(&line).into_owned()))
    }

    async fn wait_until_stopped(&self, name: &str) -> Result<(), DockerError> {
        let mut wait = Box::pin(self.docker.wait_container(name, None));
        match wait.next().await {
            None | Some(Ok(_)) => Ok(()),
            // The wait API reports a non-zero exit as an error; the exit code is the run's
            // result, read from inspect, not a failure to wait.
            Some(Err(BollardError::DockerContainerWaitError { .. })) => Ok(()),
            Some(Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            })) => Ok(()),
            Some(Err(cause)) => Err(DockerError::WaitContainer {
                name: name.to_string(),
                cause,
            }),
        }
    }

    async fn list_managed(&self, node: &str) -> Result<Vec<(String, ContainerOwner)>, DockerError> {
        let filters = managed_filters(node);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(DockerError::ListContainers)?;
        let managed: Vec<(String, ContainerOwner)> = containers
            .into_iter()
            .filter_map(|c| Some((c.id?, ContainerOwner::from_labels(&c.labels?)?)))
            .collect();
        // Ends of containers destroyed while no event stream was open.
        {
            let mut ends = self.reported_ends.lock();
            let ids: HashSet<&String> = managed.iter().map(|(id, _)| id).collect();
            ends.retain(|id, _| ids.contains(id));
        }
        Ok(managed)
    }

    fn container_stops(
        &self,
        node: &str,
    ) -> BoxStream<'static, Result<ContainerOwner, DockerError>> {
        let mut filters = managed_filters(node);
        filters.insert("type".into(), vec!["container".into()]);
        filters.insert(
            "event".into(),
            vec!["oom".into(), "die".into(), "destroy".into()],
        );
        let options = EventsOptionsBuilder::default().filters(&filters).build();
        let reported_ends = self.reported_ends.clone();
        self.docker
            .events(Some(options))
            .filter_map(move |event| {
                let reported_ends = reported_ends.clone();
                async move {
                    let event = match event {
                        Ok(event) => event,
                        Err(e) => return Some(Err(DockerError::Events(e))),
                    };
                    let actor = event.actor?;
                    let attributes = actor.attributes?;
                    if let Some(id) = actor.id {
                        let mut ends = reported_ends.lock();
                        match event.action.as_deref() {
                            Some("oom") => ends.entry(id).or_default().oom_killed = true,
                            Some("die") => {
                                let end = ends.entry(id).or_default();
                                end.exit_code = end.exit_code.or_else(|| {
                                    attributes.get("exitCode").and_then(|c| c.parse().ok())
                                });
                            }
                            Some("destroy") => drop(ends.remove(&id)),
                            _ => {}
                        }
                    }
                    ContainerOwner::from_labels(&attributes).map(Ok)
                }
            })
            .boxed()
    }
}

impl DockerClient {
    /// The container with what the daemon's events reported of its end. The daemon sets the
    /// OOM flag it reports in an inspect only when the runtime tells of the OOM kill before
    /// the exit; told after it, the daemon still sends the event, and keeps it among its recent
    /// events, which are asked when no event of ours was seen.
    async fn with_reported_end(
        &self,
        container: ObservedContainer,
    ) -> Result<ObservedContainer, DockerError> {
        let reported = self
            .reported_ends
            .lock()
            .get(&container.id)
            .copied()
            .unwrap_or_default();
        let mut container = container.with_reported_end(reported);
        if !container.killed_without_oom_flag() {
            return Ok(container);
        }
        let ContainerState::Exited {
            started_at: Some(started),
            oom_killed,
            ..
        } = &mut container.state
        else {
            return Ok(container);
        };
        let filters = HashMap::from([
            ("container".to_string(), vec![container.id.clone()]),
            ("event".to_string(), vec!["oom".to_string()]),
        ]);
        let options = EventsOptionsBuilder::default()
            .since(&started.as_second().to_string())
            .until(&Timestamp::now().as_second().saturating_add(1).to_string())
            .filters(&filters)
            .build();
        let reported = self
            .docker
            .events(Some(options))
            .try_next()
            .await
            .map_err(DockerError::Events)?;
        *oom_killed = reported.is_some();
        Ok(container)
    }
}

/// Docker's json-file driver, rotating between two files of half the cap each, so a container
/// never keeps more than `max_bytes` of output on the node and the newest output is always
/// there to read.
fn capped_log(max_bytes: u64) -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some("json-file".into()),
        config: Some(HashMap::from([
            ("max-size".into(), (max_bytes / 2).max(1024).to_string()),
            ("max-file".into(), "2".into()),
        ])),
    }
}

fn managed_filters(node: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![
            format!("{LABEL_MANAGED_BY}={MANAGED_BY}"),
            format!("{LABEL_NODE}={node}"),
        ],
    )])
}

/// Splits `repo[:tag]` or `repo@digest`; a missing tag means `latest`, because the pull API
/// fetches every tag when given none.
fn split_image_reference(image: &str) -> (&str, &str) {
    if let Some((repository, digest)) = image.split_once('@') {
        return (repository, digest);
    }
    let last_segment = image.rfind('/').map_or(0, |slash| slash + 1);
    match image[last_segment..].rfind(':') {
        Some(colon) => (
            &image[..last_segment + colon],
            &image[last_segment + colon + 1..],
        ),
        None => (image, "latest"),
    }
}

/// The end of `bytes`, at most `max` of them, not starting inside a UTF-8 character.
fn last_bytes(bytes: &[u8], max: usize) -> &[u8] {
    let mut start = bytes.len().saturating_sub(max);
    let continuation = |b: u8| b & 0b1100_0000 == 0b1000_0000;
    let limit = (start + 3).min(bytes.len());
    while start > 0 && start < limit && continuation(bytes[start]) {
        start += 1;
    }
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_into_repository_and_tag() {
        assert_eq!(split_image_reference("busybox"), ("busybox", "latest"));
        assert_eq!(split_image_reference("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(
            split_image_reference("registry:5000/team/tool"),
            ("registry:5000/team/tool", "latest")
        );
        assert_eq!(
            split_image_reference("registry:5000/tool:v2"),
            ("registry:5000/tool", "v2")
        );
        assert_eq!(
            split_image_reference("tool@sha256:abc"),
            ("tool", "sha256:abc")
        );
    }

    #[test]
    fn log_tail_keeps_the_end_at_a_character_boundary() {
        let tail = |text: &str, max| {
            String::from_utf8_lossy(last_bytes(text.as_bytes(), max)).into_owned()
        };
        assert_eq!(tail("hello", 10), "hello");
        assert_eq!(tail("hello", 3), "llo");
        assert_eq!(tail("aé", 1), "");
        assert_eq!(tail("aéb", 2), "b");
        assert_eq!(
            last_bytes(&[0x80; 7], 6),
            &[0x80; 3],
            "skips at most 3 bytes"
        );
    }
}
