use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::decide::{Action, Ending, StopCause};
use super::status::{self, Placement};
use crate::api::{
    ImagePullPolicy, Phase, Reason, TaskRunSpec, TaskRunStatus, parse_cpu_nanos, parse_memory_bytes,
};
use crate::docker::{
    ContainerOwner, ContainerTemplate, DockerClient, DockerError, ObservedContainer,
};

/// Performs the Docker side of each [`Action`] for the runs of one node.
#[derive(Clone)]
pub struct Executor {
    docker: DockerClient,
    node: String,
    pull_timeout: Duration,
    log_max_bytes: u64,
}

/// A run as the executor sees it.
#[derive(Clone, Copy, Debug)]
pub struct Run<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub generation: Option<i64>,
    pub spec: &'a TaskRunSpec,
    pub status: &'a TaskRunStatus,
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
    /// The finished container was removed.
    Removed { container_name: String },
}

impl Executor {
    /// An executor for the node `node`, pulling for at most `pull_timeout` and keeping at
    /// most `log_max_bytes` of each container's output on the node.
    pub fn new(
        docker: DockerClient,
        node: impl Into<String>,
        pull_timeout: Duration,
        log_max_bytes: u64,
    ) -> Self {
        Self {
            docker,
            node: node.into(),
            pull_timeout,
            log_max_bytes,
        }
    }

    /// The Docker client.
    pub fn docker(&self) -> &DockerClient {
        &self.docker
    }

    /// The node this executor runs containers on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The run's container, if it exists.
    pub async fn observe(&self, uid: &str) -> Result<Option<ObservedContainer>, DockerError> {
        self.docker
            .inspect_container(&crate::docker::container_name(uid))
            .await
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
        let placement = Placement {
            node: &self.node,
            container_name: &name,
            generation: run.generation,
        };
        match action {
            Action::Launch => self.launch(run, owner, placement).await,
            Action::Start { container_id } => match self.docker.start_container(&name).await {
                Ok(()) => Ok(started(run, placement, &container_id, Timestamp::now())),
                Err(e) => fail_or_retry(e, Reason::StartFailed, run, placement),
            },
            Action::RecordRunning {
                container_id,
                started_at,
                deadline,
            } => Ok(Outcome {
                status: Some(status::running(
                    run.status,
                    placement,
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
                let log_tail = self.docker.log_tail(&name).await?;
                Ok(ended(
                    run,
                    placement,
                    ending,
                    Some(&container_id),
                    Some(log_tail),
                    now,
                ))
            }
            Action::RecordEnd(ending) => Ok(ended(run, placement, ending, None, None, now)),
            Action::Remove => {
                self.docker.remove_container(&name).await?;
                Ok(Outcome {
                    transition: Some(Transition::Removed {
                        container_name: name,
                    }),
                    ..Outcome::default()
                })
            }
            Action::Wait { until } => Ok(Outcome {
                recheck_at: until,
                ..Outcome::default()
            }),
        }
    }

    async fn launch(
        &self,
        run: Run<'_>,
        owner: ContainerOwner,
        placement: Placement<'_>,
    ) -> Result<Outcome, DockerError> {
        let image = &run.spec.image;
        let present = match run.spec.image_pull_policy {
            ImagePullPolicy::Always => false,
            ImagePullPolicy::IfNotPresent | ImagePullPolicy::Never => {
                match self.docker.has_image(image).await {
                    Ok(present) => present,
                    Err(e) => return fail_or_retry(e, Reason::InvalidImage, run, placement),
                }
            }
        };
        if !present {
            if run.spec.image_pull_policy == ImagePullPolicy::Never {
                let message = format!(
                    "image {image} is not present on node {} and imagePullPolicy is Never",
                    self.node
                );
                return Ok(ended(
                    run,
                    placement,
                    failure(Reason::ImageNotPresent, message),
                    None,
                    None,
                    Timestamp::now(),
                ));
            }
            if let Err(e) = self.docker.pull_image(image, self.pull_timeout).await {
                let reason = if e.has_status(400) {
                    Reason::InvalidImage
                } else {
                    Reason::ImagePullFailed
                };
                return fail_or_retry(e, reason, run, placement);
            }
        }
        let template = match container_template(run.spec, owner, self.log_max_bytes) {
            Ok(template) => template,
            Err(message) => {
                return Ok(ended(
                    run,
                    placement,
                    failure(Reason::StartFailed, message),
                    None,
                    None,
                    Timestamp::now(),
                ));
            }
        };
        let container_id = match self.docker.create_container(&template).await {
            Ok(id) => id,
            // An earlier attempt created it; the next look decides what it needs.
            Err(e) if e.has_status(409) => {
                return Ok(Outcome {
                    recheck_now: true,
                    ..Outcome::default()
                });
            }
            Err(e) if e.has_status(404) => {
                return fail_or_retry(e, Reason::ImageNotPresent, run, placement);
            }
            Err(e) => return fail_or_retry(e, Reason::StartFailed, run, placement),
        };
        match self.docker.start_container(placement.container_name).await {
            Ok(()) => Ok(started(run, placement, &container_id, Timestamp::now())),
            Err(e) => fail_or_retry(e, Reason::StartFailed, run, placement),
        }
    }

    fn owner(&self, run: Run<'_>) -> ContainerOwner {
        ContainerOwner {
            namespace: run.namespace.to_string(),
            name: run.name.to_string(),
            uid: run.uid.to_string(),
            node: self.node.clone(),
        }
    }
}

/// The outcome of starting the container: the run is Running from now, until its deadline.
fn started(run: Run<'_>, placement: Placement<'_>, container_id: &str, now: Timestamp) -> Outcome {
    let deadline = run
        .spec
        .timeout_seconds
        .and_then(|s| now.checked_add(jiff::SignedDuration::from_secs(s)).ok());
    Outcome {
        status: Some(status::running(
            run.status,
            placement,
            container_id,
            now,
            now,
        )),
        transition: Some(Transition::Started {
            container_name: placement.container_name.to_string(),
        }),
        recheck_at: deadline,
        recheck_now: false,
    }
}

/// The container a spec describes; an error names a limit that is not a quantity, so no
/// container ever runs without the limit its spec set.
pub fn container_template(
    spec: &TaskRunSpec,
    owner: ContainerOwner,
    log_max_bytes: u64,
) -> Result<ContainerTemplate, String> {
    let limits = spec.limits();
    let limit = |quantity: Option<&Quantity>, field: &str, parse: fn(&Quantity) -> Option<i64>| {
        quantity
            .map(|q| {
                parse(q)
                    .ok_or_else(|| format!("resources.limits.{field} {:?} is not a quantity", q.0))
            })
            .transpose()
    };
    Ok(ContainerTemplate {
        image: spec.image.clone(),
        entrypoint: spec.command.clone(),
        args: spec.args.clone(),
        env: spec
            .env
            .iter()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect(),
        working_dir: spec.working_dir.clone(),
        memory_bytes: limit(
            limits.and_then(|l| l.memory.as_ref()),
            "memory",
            parse_memory_bytes,
        )?,
        nano_cpus: limit(limits.and_then(|l| l.cpu.as_ref()), "cpu", parse_cpu_nanos)?,
        log_max_bytes,
        owner,
    })
}

fn failure(reason: Reason, message: String) -> Ending {
    Ending {
        phase: Phase::Failed,
        reason,
        message,
        exit_code: None,
        started_at: None,
        finished_at: Timestamp::now(),
    }
}

/// A failure the daemon explained ends the run with `reason`; one it did not (no answer)
/// is returned as an error, to be retried. An image inspect answers only 4xx for the image
/// itself; its 5xx is the daemon's trouble.
fn fail_or_retry(
    error: DockerError,
    reason: Reason,
    run: Run<'_>,
    placement: Placement<'_>,
) -> Result<Outcome, DockerError> {
    if matches!(error, DockerError::PullTimeout { .. }) {
        return Ok(ended(
            run,
            placement,
            failure(reason, error.to_string()),
            None,
            None,
            Timestamp::now(),
        ));
    }
    let daemons_trouble = reason == Reason::InvalidImage && !error.is_refusal();
    match error.daemon_message().filter(|_| !daemons_trouble) {
        Some(message) => Ok(ended(
            run,
            placement,
            failure(reason, message),
            None,
            None,
            Timestamp::now(),
        )),
        None => Err(error),
    }
}

fn ended(
    run: Run<'_>,
    placement: Placement<'_>,
    ending: Ending,
    container_id: Option<&str>,
    log_tail: Option<String>,
    now: Timestamp,
) -> Outcome {
    Outcome {
        status: Some(status::ended(
            run.status,
            placement,
            &ending,
            container_id,
            log_tail,
            now,
        )),
        transition: Some(Transition::Ended(ending)),
        recheck_at: None,
        recheck_now: true,
    }
}
