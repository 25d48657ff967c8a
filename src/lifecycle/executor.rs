//! The act step of a run: [`Executor::perform`] carries out one [`Action`] on the node's Docker
//! daemon and returns what it changed as an [`Outcome`], the status to record included; it writes
//! no status itself, and it is the one holder of the [`Daemon`]. What the daemon answers about the
//! run (a refused image, create or start) ends the attempt with a reason; only a daemon that does
//! not answer is an error, for the caller to retry.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::stream::BoxStream;
use ipnet::IpNet;
use jiff::Timestamp;

use super::decide::{
    Action, Deletion, Ending, LaunchFailure, StopCause, active_deadline, after_attempt,
    launch_failed,
};
use super::egress;
use super::inputs::{self, Inputs};
use super::security::{self, Settled};
use super::status::{self, Location};
use crate::api::{
    ImagePullPolicy, TASK_NETWORK, TaskRunPolicy, TaskRunSpec, TaskRunStatus, api_safe,
    api_safe_tail, kernel_owned,
};
use crate::docker::{
    ContainerOwner, ContainerState, ContainerTemplate, DEFAULT_CONTAINER_LOG_BYTES,
    DEFAULT_LOG_TAIL_BYTES, Daemon, DaemonSetup, DockerError, ImageConfig, ObservedContainer,
    attempt_container_name, firewall_container_name,
};

/// Performs the Docker side of each [`Action`] for the runs of one node: the one door
/// through which the operator reaches Docker.
#[derive(Clone)]
pub struct Executor {
    docker: Arc<dyn Daemon>,
    node: String,
    pull_timeout: Duration,
    output: OutputLimits,
    /// Most processes and threads one container gets on this node, whatever the policy says.
    pids_ceiling: Option<i64>,
    /// The network `Bridge` tasks join, once picked.
    bridge_network: OnceLock<&'static str>,
}

/// The daemon's own bridge network, `docker0`.
const DEFAULT_BRIDGE: &str = "bridge";

/// How much of a container's output is kept, and where.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutputLimits {
    /// Most bytes of output the daemon keeps on the node per container.
    pub node_bytes: u64,
    /// Most bytes of the end of the output recorded in `status.logTail`; 0 records none.
    pub tail_bytes: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        Self {
            node_bytes: DEFAULT_CONTAINER_LOG_BYTES,
            tail_bytes: DEFAULT_LOG_TAIL_BYTES,
        }
    }
}

/// A run as the executor sees it.
#[derive(Clone, Copy, Debug)]
pub struct Run<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub generation: Option<i64>,
    /// When the TaskRun was created.
    pub created: Timestamp,
    pub spec: &'a TaskRunSpec,
    pub status: &'a TaskRunStatus,
    /// What the run takes from its namespace, resolved; `None` for a spec that refers to
    /// nothing, whose literal env is all it needs.
    pub inputs: Option<&'a Inputs>,
    /// The cluster's TaskRunPolicy as the agent last read it; `None` when there is none.
    pub policy: Option<&'a TaskRunPolicy>,
    /// The run's launch as [`Executor::prepare`] made it ready; `None` for a launch to prepare
    /// when it is performed.
    pub prepared: Option<&'a Prepared>,
}

/// A launch made ready before its container is created: the container's confinement, settled
/// with the policy, and the ID of the image it runs, on the daemon and checked; or why the run
/// cannot be launched.
#[derive(Clone, Debug)]
pub enum Prepared {
    Ready { settled: Settled, image_id: String },
    Failed(LaunchFailure),
}

/// What performing an action changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// The status to record, when the action changed it.
    pub status: Option<TaskRunStatus>,
    /// The step of the run's life this was, for Events and progress lines.
    pub transition: Option<Transition>,
    /// Look at the run again at this time even if nothing else happens.
    pub recheck_at: Option<Timestamp>,
    /// Look at the run again right away: the action changed the container.
    pub recheck_now: bool,
}

/// A step in a run's life worth telling people about.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    /// The container was started.
    Started { container_name: String },
    /// A running container was found and adopted.
    Adopted { container_name: String },
    /// The container is being stopped.
    Stopping(StopCause),
    /// The run ended.
    Ended(Ending),
    /// An attempt ended and the next one starts at `at`.
    Retrying {
        ending: Ending,
        next_attempt: u32,
        at: Timestamp,
    },
    /// The finished container was removed.
    Removed { container_name: String },
}

impl Executor {
    /// An executor for the node `node`, pulling for at most `pull_timeout` and keeping the
    /// containers' output within `output`.
    pub fn new(
        docker: Arc<dyn Daemon>,
        node: impl Into<String>,
        pull_timeout: Duration,
        output: OutputLimits,
    ) -> Self {
        Self {
            docker,
            node: node.into(),
            pull_timeout,
            output,
            pids_ceiling: None,
            bridge_network: OnceLock::new(),
        }
    }

    /// The same executor, giving no container more than `ceiling` processes and threads.
    pub fn with_pids_ceiling(self, ceiling: i64) -> Self {
        Self {
            pids_ceiling: Some(ceiling),
            ..self
        }
    }

    /// The node this executor runs containers on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether the daemon answers.
    pub async fn ping(&self) -> Result<(), DockerError> {
        self.docker.ping().await
    }

    /// Picks the network of `Bridge` tasks, one on which they cannot reach each other, and
    /// returns its name: the daemon's default bridge where the daemon runs with `--icc=false`,
    /// else the operator's own network, made when missing. A user-defined network costs each
    /// container's start its embedded DNS set-up; the default bridge does not.
    pub async fn prepare_network(&self) -> Result<&'static str, DockerError> {
        let network = if self.docker.default_bridge_isolates().await? {
            DEFAULT_BRIDGE
        } else {
            self.docker.ensure_task_network(TASK_NETWORK).await?;
            TASK_NETWORK
        };
        let _ = self.bridge_network.set(network);
        Ok(network)
    }

    /// The network `Bridge` tasks join: the one [`Self::prepare_network`] picked.
    fn bridge_network(&self) -> &'static str {
        self.bridge_network.get().copied().unwrap_or(TASK_NETWORK)
    }

    /// Makes the node's firewall refuse what `Bridge` tasks send to the `denied` ranges, and
    /// nothing else of theirs, with a container of `image` (pulled when the daemon lacks it)
    /// that runs `nft`; with nothing denied, removes what an earlier call set.
    pub async fn enforce_egress(&self, image: &str, denied: &[IpNet]) -> Result<(), DockerError> {
        if self.docker.inspect_image(image).await?.is_none() {
            self.docker
                .pull_image(image, None, self.pull_timeout)
                .await?;
        }
        let interface = self.docker.bridge_interface(self.bridge_network()).await?;
        let script = egress::nft_script(&egress::table_of(&self.node), &interface, denied);
        let command = ["nft".to_string(), script];
        let (exit_code, output) = self
            .docker
            .run_network_admin(&firewall_container_name(&self.node), image, &command)
            .await?;
        if exit_code == 0 {
            Ok(())
        } else {
            Err(DockerError::FirewallRefused {
                image: image.to_string(),
                exit_code,
                output: api_safe_tail(output.trim(), 512),
            })
        }
    }

    /// How the daemon confines containers.
    pub async fn daemon_setup(&self) -> Result<DaemonSetup, DockerError> {
        self.docker.setup().await
    }

    /// The container of the run's `attempt`, and the previous attempt's, where they exist.
    pub async fn observe(&self, uid: &str, attempt: u32) -> Result<Observation, DockerError> {
        let current = self
            .docker
            .inspect_container(&attempt_container_name(uid, attempt))
            .await?;
        let previous = if attempt > 1 {
            self.docker
                .inspect_container(&attempt_container_name(uid, attempt - 1))
                .await?
        } else {
            None
        };
        Ok(Observation { current, previous })
    }

    /// Returns once the container of the run's `attempt` is no longer running.
    pub async fn wait_for_exit(&self, uid: &str, attempt: u32) -> Result<(), DockerError> {
        self.docker
            .wait_until_stopped(&attempt_container_name(uid, attempt))
            .await
    }

    /// The last line the container of the run's `attempt` wrote (empty before it wrote any),
    /// `None` when it has no container.
    pub async fn last_line(&self, uid: &str, attempt: u32) -> Result<Option<String>, DockerError> {
        self.docker
            .last_line(&attempt_container_name(uid, attempt))
            .await
    }

    /// This node's containers, by ID, with the TaskRun each belongs to.
    pub async fn containers(&self) -> Result<Vec<(String, ContainerOwner)>, DockerError> {
        self.docker.list_managed(&self.node).await
    }

    /// Removes a container of this node whose TaskRun is gone.
    pub async fn remove_orphan(&self, container_id: &str) -> Result<(), DockerError> {
        self.docker.remove_container(container_id).await
    }

    /// Owners of this node's containers as they stop or disappear.
    pub fn container_stops(&self) -> BoxStream<'static, Result<ContainerOwner, DockerError>> {
        self.docker.container_stops(&self.node)
    }

    /// Carries out what the deletion of a TaskRun needs, and removes the containers of its
    /// earlier attempts; true when the current attempt's container was removed.
    pub async fn delete(
        &self,
        uid: &str,
        attempt: u32,
        deletion: Deletion,
    ) -> Result<bool, DockerError> {
        self.remove_earlier_attempts(uid, attempt).await?;
        match deletion {
            Deletion::Nothing => Ok(false),
            Deletion::Remove {
                container_id,
                grace,
            } => {
                self.docker.stop_container(&container_id, grace).await?;
                self.docker.remove_container(&container_id).await?;
                Ok(true)
            }
        }
    }

    /// Removes the containers of the attempts before `attempt`; those already gone are fine.
    async fn remove_earlier_attempts(&self, uid: &str, attempt: u32) -> Result<(), DockerError> {
        for earlier in (1..attempt).rev() {
            self.docker
                .remove_container(&attempt_container_name(uid, earlier))
                .await?;
        }
        Ok(())
    }

    /// Performs `action` for `run`. Errors are the daemon failing to answer; everything the
    /// daemon answered about the run itself becomes the run's status instead.
    pub async fn perform(
        &self,
        run: Run<'_>,
        action: Action,
        now: Timestamp,
    ) -> Result<Outcome, DockerError> {
        let owner = self.owner(run);
        let name = owner.container_name();
        let location = Location {
            node: &self.node,
            container_name: &name,
            generation: run.generation,
        };
        match action {
            Action::Launch => {
                let prepared = match run.prepared {
                    Some(prepared) => prepared.clone(),
                    None => match self.prepare(run).await? {
                        Some(prepared) => prepared,
                        None => self.pull_and_prepare(run).await?,
                    },
                };
                let launched = self.launch(run, owner, prepared).await?;
                Ok(self.launched(run, location, launched, now))
            }
            Action::Start { container_id } => {
                // An earlier pass may have stopped between the create and the files: they are
                // written again (the same archive) before every start.
                let started = match self.write_files(run, &name).await? {
                    Some(failure) => Launched::Failed(failure),
                    None => match self.docker.start_container(&name).await {
                        Ok(()) => Launched::Started(container_id),
                        Err(e) => self.start_refused(&name, e).await?,
                    },
                };
                Ok(self.launched(run, location, started, now))
            }
            Action::RecordRunning {
                container_id,
                started_at,
                deadline,
            } => Ok(Outcome {
                status: Some(status::running(
                    run.status,
                    location,
                    &container_id,
                    started_at,
                    now,
                )),
                transition: Some(Transition::Adopted {
                    container_name: name,
                }),
                recheck_at: deadline,
                recheck_now: false,
            }),
            Action::Stop { cause, grace } => {
                self.docker.stop_container(&name, grace).await?;
                Ok(Outcome {
                    transition: Some(Transition::Stopping(cause)),
                    recheck_now: true,
                    ..Outcome::default()
                })
            }
            Action::RecordExit {
                ending,
                container_id,
            } => {
                let log_tail = match self.output.tail_bytes {
                    0 => None,
                    bytes => Some(api_safe_tail(
                        &self.docker.log_tail(&name, bytes).await?,
                        bytes,
                    )),
                };
                Ok(ended(
                    run,
                    location,
                    ending,
                    Some(&container_id),
                    log_tail,
                    now,
                ))
            }
            Action::RecordEnd(ending) => Ok(ended(run, location, ending, None, None, now)),
            Action::Remove => {
                self.docker.remove_container(&name).await?;
                self.remove_earlier_attempts(run.uid, owner.attempt).await?;
                Ok(Outcome {
                    transition: Some(Transition::Removed {
                        container_name: name,
                    }),
                    ..Outcome::default()
                })
            }
            Action::RemovePrevious => {
                let previous = attempt_container_name(run.uid, owner.attempt.saturating_sub(1));
                self.docker.remove_container(&previous).await?;
                Ok(Outcome {
                    transition: Some(Transition::Removed {
                        container_name: previous,
                    }),
                    recheck_now: true,
                    ..Outcome::default()
                })
            }
            Action::StopPrevious { grace } => {
                let previous = attempt_container_name(run.uid, owner.attempt.saturating_sub(1));
                self.docker.stop_container(&previous, grace).await?;
                Ok(Outcome {
                    transition: Some(Transition::Stopping(StopCause::AlreadyEnded)),
                    recheck_now: true,
                    ..Outcome::default()
                })
            }
            Action::Wait { until } => Ok(Outcome {
                recheck_at: until,
                ..Outcome::default()
            }),
        }
    }

    /// Makes the run's launch ready without creating anything and without pulling: settles
    /// the container's confinement with the cluster's policy, finds the image on the daemon
    /// and checks its `WORKDIR` and, where root is forbidden, its user. `None` when the pull
    /// policy asks for a pull first ([`Self::pull_and_prepare`]): a pull may take minutes, and
    /// the controller lets a run wait for it holding none of the node's places. Only a daemon
    /// that did not answer is an error.
    pub async fn prepare(&self, run: Run<'_>) -> Result<Option<Prepared>, DockerError> {
        self.prepare_from(run, false).await
    }

    /// Pulls the run's image with its credentials, then prepares its launch from what was
    /// pulled.
    pub async fn pull_and_prepare(&self, run: Run<'_>) -> Result<Prepared, DockerError> {
        if let Some(failure) = self.pull(run).await? {
            return Ok(Prepared::Failed(failure));
        }
        Ok(self.prepare_from(run, true).await?.unwrap_or_else(|| {
            Prepared::Failed(LaunchFailure::ImageGone(format!(
                "No such image: {}",
                run.spec.image
            )))
        }))
    }

    async fn prepare_from(
        &self,
        run: Run<'_>,
        pulled: bool,
    ) -> Result<Option<Prepared>, DockerError> {
        let settled = security::settle(run.spec, run.namespace, run.policy, self.bridge_network());
        let mut settled = match settled {
            Ok(settled) => settled,
            Err(failure) => return Ok(Some(Prepared::Failed(failure))),
        };
        if let Some(ceiling) = self.pids_ceiling {
            settled.security.pids_limit = settled.security.pids_limit.min(ceiling);
        }
        let image = &run.spec.image;
        let policy = if run.policy.is_some_and(|p| p.spec.always_pull_images) {
            ImagePullPolicy::Always
        } else {
            run.spec.image_pull_policy
        };
        if policy == ImagePullPolicy::Always && !pulled {
            return Ok(None);
        }
        let config = match self.inspect_image(image).await? {
            Ok(Some(config)) => config,
            Ok(None) if policy == ImagePullPolicy::Never => {
                return Ok(Some(Prepared::Failed(LaunchFailure::ImageMissing)));
            }
            Ok(None) if !pulled => return Ok(None),
            Ok(None) => {
                return Ok(Some(Prepared::Failed(LaunchFailure::ImageGone(format!(
                    "No such image: {image}"
                )))));
            }
            Err(failure) => return Ok(Some(Prepared::Failed(failure))),
        };
        if run.spec.working_dir.is_none() && kernel_owned(&config.working_dir) {
            return Ok(Some(Prepared::Failed(LaunchFailure::UnsafeWorkingDir(
                format!(
                    "image {image} sets WORKDIR {:?}, under a directory the kernel owns (/proc, /sys, /dev) or with a '..' segment; set spec.workingDir",
                    api_safe(&config.working_dir, 256)
                ),
            ))));
        }
        if settled.check_image_user
            && let Err(message) = security::non_root_user(image, &config.user)
        {
            return Ok(Some(Prepared::Failed(LaunchFailure::RunsAsRoot(message))));
        }
        Ok(Some(Prepared::Ready {
            settled,
            image_id: config.id,
        }))
    }

    /// Creates and starts the container of a prepared launch. What the daemon answered is a
    /// [`Launched`]; only a daemon that did not answer is an error.
    async fn launch(
        &self,
        run: Run<'_>,
        owner: ContainerOwner,
        prepared: Prepared,
    ) -> Result<Launched, DockerError> {
        let (settled, image_id) = match prepared {
            Prepared::Ready { settled, image_id } => (settled, image_id),
            Prepared::Failed(failure) => return Ok(Launched::Failed(failure)),
        };
        let mut template = container_template(run, owner, self.output.node_bytes, settled);
        template.image = image_id;
        let container_id = match self.docker.create_container(&template).await {
            Ok(id) => id,
            Err(e) if e.has_status(409) => return Ok(Launched::LookAgain),
            Err(e) if e.has_status(404) => {
                return Ok(Launched::Failed(LaunchFailure::ImageGone(answer(e)?)));
            }
            Err(e) => return Ok(Launched::Failed(LaunchFailure::CreateFailed(answer(e)?))),
        };
        if let Some(failure) = self
            .write_files(run, &template.owner.container_name())
            .await?
        {
            return Ok(Launched::Failed(failure));
        }
        match self
            .docker
            .start_container(&template.owner.container_name())
            .await
        {
            Ok(()) => Ok(Launched::Started(container_id)),
            Err(e) => {
                self.start_refused(&template.owner.container_name(), e)
                    .await
            }
        }
    }

    /// What the daemon has of `image`: its config, `None` when it has no such image, or the
    /// run's failure when it refuses the reference as malformed (its 5xx is the daemon's own
    /// trouble, an error).
    async fn inspect_image(
        &self,
        image: &str,
    ) -> Result<Result<Option<ImageConfig>, LaunchFailure>, DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(config) => Ok(Ok(config)),
            Err(e) if e.is_refusal() => Ok(Err(LaunchFailure::InvalidImage(answer(e)?))),
            Err(e) => Err(e),
        }
    }

    /// Pulls the run's image with its credentials; the failure of the run when the image
    /// cannot be had.
    async fn pull(&self, run: Run<'_>) -> Result<Option<LaunchFailure>, DockerError> {
        let auth = run.inputs.and_then(|i| i.registry_auth.as_ref());
        match self
            .docker
            .pull_image(&run.spec.image, auth, self.pull_timeout)
            .await
        {
            Ok(()) => Ok(None),
            Err(e) => {
                let malformed = e.has_status(400);
                let message = answer(e)?;
                Ok(Some(if malformed {
                    LaunchFailure::InvalidImage(message)
                } else {
                    LaunchFailure::PullFailed(message)
                }))
            }
        }
    }

    /// Writes the files of the run's volumes into its created container; the daemon's refusal
    /// is the run's failure.
    async fn write_files(
        &self,
        run: Run<'_>,
        name: &str,
    ) -> Result<Option<LaunchFailure>, DockerError> {
        let Some(inputs) = run
            .inputs
            .filter(|i| !i.files.is_empty() || !i.directories.is_empty())
        else {
            return Ok(None);
        };
        let archive = match inputs::archive(inputs) {
            Ok(archive) => archive,
            Err(e) => {
                return Ok(Some(LaunchFailure::FilesRefused(format!(
                    "the files of the volumes could not be packed: {e}"
                ))));
            }
        };
        match self.docker.upload_archive(name, archive).await {
            Ok(()) => Ok(None),
            Err(e) => Ok(Some(LaunchFailure::FilesRefused(answer(e)?))),
        }
    }

    /// A start the daemon answered with an error may still have gone through (its answer
    /// lost across a daemon restart): the container's own state decides, on the next look,
    /// whether the run started.
    async fn start_refused(&self, name: &str, error: DockerError) -> Result<Launched, DockerError> {
        let container = self.docker.inspect_container(name).await?;
        let started = container.is_some_and(|c| match c.state {
            ContainerState::Running { .. } => true,
            ContainerState::Exited { started_at, .. } => started_at.is_some(),
            ContainerState::Created { .. } => false,
        });
        if started {
            Ok(Launched::LookAgain)
        } else {
            Ok(Launched::Failed(LaunchFailure::StartFailed(answer(error)?)))
        }
    }

    fn launched(
        &self,
        run: Run<'_>,
        location: Location<'_>,
        launched: Launched,
        now: Timestamp,
    ) -> Outcome {
        match launched {
            // The run's start time is when the daemon accepted the start, which a pull may
            // have put well after the pass began: the one time the executor reads the clock.
            Launched::Started(container_id) => {
                started(run, location, &container_id, Timestamp::now())
            }
            Launched::LookAgain => Outcome {
                recheck_now: true,
                ..Outcome::default()
            },
            Launched::Failed(failure) => {
                let ending = launch_failed(failure, run.spec, &self.node, now);
                ended(run, location, ending, None, None, now)
            }
        }
    }

    fn owner(&self, run: Run<'_>) -> ContainerOwner {
        ContainerOwner {
            namespace: run.namespace.to_string(),
            name: run.name.to_string(),
            uid: run.uid.to_string(),
            node: self.node.clone(),
            attempt: run.status.attempt(),
        }
    }
}

/// The containers [`decide`](fn@super::decide) looks at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// The current attempt's container.
    pub current: Option<ObservedContainer>,
    /// The previous attempt's container, on this node.
    pub previous: Option<ObservedContainer>,
}

/// How far a launch got.
enum Launched {
    Started(String),
    /// The container exists in a state the next look must judge: an earlier pass created it,
    /// or a start reported as failed went through.
    LookAgain,
    Failed(LaunchFailure),
}

/// The daemon's own words, when it answered; a daemon that did not answer (refused
/// connection, broken stream) says nothing about the run, and the pass is retried.
fn answer(error: DockerError) -> Result<String, DockerError> {
    if matches!(error, DockerError::PullTimeout { .. }) {
        return Ok(error.to_string());
    }
    error.daemon_message().ok_or(error)
}

/// The outcome of starting the container: the run is Running from now, until its deadline.
fn started(run: Run<'_>, location: Location<'_>, container_id: &str, now: Timestamp) -> Outcome {
    let timeout = run
        .spec
        .timeout_seconds
        .and_then(|s| now.checked_add(jiff::SignedDuration::from_secs(s)).ok());
    let deadline = [timeout, active_deadline(run.spec, run.created)]
        .into_iter()
        .flatten()
        .min();
    Outcome {
        status: Some(status::running(
            run.status,
            location,
            container_id,
            now,
            now,
        )),
        transition: Some(Transition::Started {
            container_name: location.container_name.to_string(),
        }),
        recheck_at: deadline,
        recheck_now: false,
    }
}

/// The container a run describes, confined as [`security::settle`] decided.
fn container_template(
    run: Run<'_>,
    owner: ContainerOwner,
    log_max_bytes: u64,
    settled: Settled,
) -> ContainerTemplate {
    let spec = run.spec;
    let literal;
    let inputs = match run.inputs {
        Some(inputs) => inputs,
        None => {
            literal = Inputs::literal(spec);
            &literal
        }
    };
    // The run's own variables come last, so the task can rely on them.
    let run_env = [
        ("TASKRUN_ATTEMPT", owner.attempt.to_string()),
        ("TASKRUN_NAME", owner.name.clone()),
        ("TASKRUN_NAMESPACE", owner.namespace.clone()),
    ];
    ContainerTemplate {
        image: spec.image.clone(),
        entrypoint: spec.command.clone(),
        args: spec.args.clone(),
        env: inputs
            .env
            .iter()
            .cloned()
            .chain(run_env.map(|(name, value)| (name.to_string(), value)))
            .collect(),
        working_dir: spec.working_dir.clone(),
        memory_bytes: settled.memory_bytes,
        nano_cpus: settled.nano_cpus,
        log_max_bytes,
        tmpfs: inputs
            .scratch
            .iter()
            .map(|scratch| {
                let options = tmpfs_options(scratch, settled.memory_bytes);
                (scratch.path.clone(), options)
            })
            .collect(),
        extra_hosts: inputs.extra_hosts.clone(),
        security: settled.security,
        owner,
    }
}

/// Docker's tmpfs options for an emptyDir: writable by every user and executable, as a Pod's
/// emptyDir is, within its size limit, or else the run's memory limit, which its pages count
/// against anyway (the kernel's default is half the node's memory).
fn tmpfs_options(scratch: &inputs::Scratch, memory_bytes: Option<i64>) -> String {
    let mut options = vec![if scratch.read_only { "ro" } else { "rw" }.to_string()];
    options.push("exec".into());
    options.push("mode=1777".into());
    if let Some(bytes) = scratch.size_bytes.or(memory_bytes) {
        options.push(format!("size={bytes}"));
    }
    options.join(",")
}

/// The outcome of an attempt that ended: the run's end, or the next attempt's back-off when
/// `spec.retries` asks for one.
pub fn ended(
    run: Run<'_>,
    location: Location<'_>,
    ending: Ending,
    container_id: Option<&str>,
    log_tail: Option<String>,
    now: Timestamp,
) -> Outcome {
    let next_at = after_attempt(run.uid, run.spec, run.status, run.created, &ending);
    let status = status::concluded(
        run.status,
        location,
        &ending,
        container_id,
        log_tail,
        next_at,
        now,
    );
    let transition = match next_at {
        Some(at) => Transition::Retrying {
            ending,
            next_attempt: run.status.attempt().saturating_add(1),
            at,
        },
        None => Transition::Ended(ending),
    };
    Outcome {
        status: Some(status),
        transition: Some(transition),
        recheck_at: next_at,
        recheck_now: next_at.is_none(),
    }
}

#[cfg(test)]
mod tests;
