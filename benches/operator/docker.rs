//! The Docker side of the bench: the raw baseline (create, start, wait, remove through the
//! Docker API, as `docker run --rm` would), and one event stream that records when each of
//! the run's containers started and was destroyed, the operator's and the raw ones alike.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::{StreamExt, TryStreamExt, stream};
use jiff::Timestamp;
use taskrun_operator::docker::LABEL_NODE;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Result;

/// The image every container of the bench runs; `make docker-up` builds it locally.
pub const IMAGE: &str = "busybox:latest";

/// Label on the raw baseline's containers, beside [`LABEL_NODE`]. Without the operator's
/// `managed-by` label its controllers never look at them.
const LABEL_RAW: &str = "taskrun.dev/bench";

/// A client for `DOCKER_HOST` or the default socket, at an API version the daemon speaks.
pub async fn connect() -> Result<Docker> {
    let docker = Docker::connect_with_defaults()
        .map_err(|e| format!("failed to connect to Docker (run `make docker-up`): {e}"))?;
    Ok(docker
        .negotiate_version()
        .await
        .map_err(|e| format!("Docker does not answer (run `make docker-up`): {e}"))?)
}

/// Fails early, and says why, when the image is missing: nothing can be pulled here.
pub async fn ensure_image(docker: &Docker) -> Result<()> {
    docker.inspect_image(IMAGE).await.map(drop).map_err(|e| {
        format!("image {IMAGE} is not on the Docker daemon (run `make docker-up`): {e}").into()
    })
}

/// The times of one raw cycle, from just before the create call.
#[derive(Clone, Copy, Debug)]
pub struct RawRun {
    pub created_at: Timestamp,
    /// When the wait call returned: the exit was observed.
    pub exited_at: Timestamp,
    /// When the remove call returned.
    pub removed_at: Timestamp,
}

/// One `docker run --rm busybox true` through the API: create, start, wait, remove.
pub async fn run_raw(docker: &Docker, name: &str, node: &str) -> Result<RawRun> {
    let created_at = Timestamp::now();
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    let body = ContainerCreateBody {
        image: Some(IMAGE.into()),
        entrypoint: Some(vec!["true".into()]),
        labels: Some(HashMap::from([
            (LABEL_NODE.to_string(), node.to_string()),
            (LABEL_RAW.to_string(), "raw".to_string()),
        ])),
        ..Default::default()
    };
    docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| format!("failed to create container {name}: {e}"))?;
    docker
        .start_container(name, None)
        .await
        .map_err(|e| format!("failed to start container {name}: {e}"))?;
    let wait = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    docker
        .wait_container(name, Some(wait))
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| format!("failed to wait for container {name}: {e}"))?;
    let exited_at = Timestamp::now();
    let remove = RemoveContainerOptionsBuilder::default().force(true).build();
    docker
        .remove_container(name, Some(remove))
        .await
        .map_err(|e| format!("failed to remove container {name}: {e}"))?;
    Ok(RawRun {
        created_at,
        exited_at,
        removed_at: Timestamp::now(),
    })
}

/// Removes every container labelled with the bench's node, whatever its state; returns how many.
pub async fn remove_labelled(docker: &Docker, node: &str) -> Result<usize> {
    let filters = HashMap::from([("label", vec![format!("{LABEL_NODE}={node}")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let ids: Vec<String> = docker
        .list_containers(Some(options))
        .await?
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    let removed = ids.len();
    stream::iter(ids)
        .map(|id| async move {
            let options = RemoveContainerOptionsBuilder::default().force(true).build();
            match docker.remove_container(&id, Some(options)).await {
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404 | 409,
                    ..
                }) => Ok(()),
                other => other,
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(removed)
}

/// When the daemon says a container started and was destroyed.
#[derive(Clone, Copy, Debug, Default)]
pub struct ContainerTimes {
    pub started: Option<Timestamp>,
    pub destroyed: Option<Timestamp>,
}

/// What the daemon's event stream has said about the run's containers, by container name.
#[derive(Debug, Default)]
pub struct ContainersSeen {
    by_name: HashMap<String, ContainerTimes>,
}

impl ContainersSeen {
    /// The times of a container, by name.
    pub fn times(&self, name: &str) -> ContainerTimes {
        self.by_name.get(name).copied().unwrap_or_default()
    }
}

/// The daemon's start and destroy events for containers labelled with the bench's node.
pub struct ContainerEvents {
    seen: watch::Receiver<ContainersSeen>,
    task: JoinHandle<()>,
}

impl ContainerEvents {
    /// Follows the events from now on: the daemon replays any that happen before the
    /// stream is connected.
    pub fn start(docker: Docker, node: &str) -> Self {
        let now = Timestamp::now();
        let since = format!("{}.{:09}", now.as_second(), now.subsec_nanosecond());
        let filters = HashMap::from([
            ("type", vec!["container".to_string()]),
            ("event", vec!["start".to_string(), "destroy".to_string()]),
            ("label", vec![format!("{LABEL_NODE}={node}")]),
        ]);
        let options = EventsOptionsBuilder::default()
            .since(&since)
            .filters(&filters)
            .build();
        let (tx, seen) = watch::channel(ContainersSeen::default());
        let task = tokio::spawn(async move {
            let mut events = docker.events(Some(options));
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(e) => {
                        say!("Docker event stream broke: {e}");
                        return;
                    }
                };
                let name = event
                    .actor
                    .and_then(|actor| actor.attributes)
                    .and_then(|mut attributes| attributes.remove("name"));
                let at = event
                    .time_nano
                    .and_then(|nanos| Timestamp::from_nanosecond(i128::from(nanos)).ok());
                let (Some(name), Some(at)) = (name, at) else {
                    continue;
                };
                tx.send_modify(|seen| {
                    let times = seen.by_name.entry(name).or_default();
                    match event.action.as_deref() {
                        Some("start") => times.started = Some(at),
                        Some("destroy") => times.destroyed = Some(at),
                        _ => {}
                    }
                });
            }
        });
        Self { seen, task }
    }

    /// Waits, following events, until `done` holds for what the daemon has said.
    pub async fn until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl FnMut(&ContainersSeen) -> bool,
    ) -> Result<()> {
        let mut seen = self.seen.clone();
        match tokio::time::timeout(timeout, seen.wait_for(done)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err("the Docker event stream ended".into()),
            Err(_) => Err(format!("timed out after {timeout:?} waiting for {what}").into()),
        }
    }

    /// Reads what has been seen.
    pub fn read<R>(&self, read: impl FnOnce(&ContainersSeen) -> R) -> R {
        read(&self.seen.borrow())
    }
}

impl Drop for ContainerEvents {
    fn drop(&mut self) {
        self.task.abort();
    }
}
