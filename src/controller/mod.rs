//! The operator: watches TaskRuns, runs each as a container on this node's Docker daemon and
//! records what happened in the TaskRun's status.

mod args;
mod claims;
mod context;
mod error;
mod events;
mod firewall;
mod http;
mod leases;
mod metrics;
mod node_objects;
mod own_writes;
mod policy;
mod reconcile;
mod references;
mod status_writer;
mod sweep;
mod triggers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{error, info, warn};

pub use args::{ControllerArgs, parse_socket_address};
pub use context::Context;
pub use error::{Error, Result};
pub use http::probe;
pub use metrics::{DaemonLabels, Metrics};
pub use policy::{Policy, PolicyView};

use crate::api::{TaskRun, TaskRunStatus};
use crate::docker::{DockerClient, DockerError};
use crate::lifecycle::inputs::TaskApi;
use crate::lifecycle::{
    CLAIM_ANNOTATION, CLAIM_ATTEMPT_ANNOTATION, Executor, OutputLimits, security,
};

/// Name under which the operator writes status and publishes Events.
pub const FIELD_MANAGER: &str = "taskrun-operator";

/// What the controller needs from its command line.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// The node this agent serves; its containers carry this name in a label.
    pub node_name: String,
    /// Longest a pull may take before the run fails with `ImagePullFailed`.
    pub pull_timeout: Duration,
    /// How often containers whose TaskRun is gone are looked for.
    pub sweep_interval: Duration,
    /// Watch only this namespace; every namespace when unset.
    pub namespace: Option<String>,
    /// Take only the TaskRuns of this class; only those of no class when unset.
    pub class: Option<String>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub health_address: std::net::SocketAddr,
    /// Most runs this node takes at once.
    pub max_running: usize,
    /// Namespace of the agents' Leases.
    pub lease_namespace: String,
    /// How long an agent that stopped renewing its Lease still counts as alive.
    pub lease_duration: Duration,
    /// How much of each container's output is kept on the node and in its run's status.
    pub output: OutputLimits,
    /// The API server address tasks with a ServiceAccount get (`HOST`, `PORT`); the one the
    /// agent uses when unset.
    pub task_api_server: Option<(String, u16)>,
    /// The address that `task_api_server`'s host stands for inside task containers.
    pub task_api_server_ip: Option<std::net::IpAddr>,
    /// The TaskRunPolicy this agent enforces.
    pub policy_name: String,
    /// Run tasks even where the daemon gives containers no seccomp filter.
    pub allow_unconfined_seccomp: bool,
    /// The image that sets this node's firewall for the policy's egress refusals.
    pub firewall_image: Option<String>,
}

/// How the agent waits for its Docker daemon at start: half a second, doubling up to 30 s.
fn daemon_wait() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .without_max_times()
}

/// Connects to the node's Docker daemon, waiting for it as long as it takes: an agent whose
/// daemon is down has nothing to do but wait, and exiting would only make a crash loop.
async fn connect_docker() -> Result<DockerClient> {
    DockerClient::connect
        .retry(daemon_wait())
        .notify(|e, delay| warn!(error = %e, retry_in = ?delay, "waiting for the Docker daemon"))
        .await
        .map_err(Error::Docker)
}

/// Reads how the node's daemon confines containers, logs it once, exposes it as a metric, and
/// makes the node take no run when its containers would get no seccomp filter, unless
/// `allow_unconfined` says otherwise.
async fn judge_daemon(context: &Context, allow_unconfined: bool) -> Result<()> {
    let setup = (|| context.executor.daemon_setup())
        .retry(daemon_wait())
        .notify(|e, delay| warn!(error = %e, retry_in = ?delay, "waiting for the Docker daemon's setup"))
        .await
        .map_err(Error::Docker)?;
    info!(daemon = %setup, "the node's Docker daemon");
    let refusal = setup.refusal();
    match &refusal {
        Some(why) if allow_unconfined => {
            warn!(reason = %why, "running tasks anyway: --allow-unconfined-seccomp");
        }
        Some(why) => {
            error!(reason = %why, "this node takes no runs (--allow-unconfined-seccomp would allow them)");
            context.nodes.refuse(why.clone());
        }
        None => {}
    }
    let labels = DaemonLabels {
        version: setup.version.clone(),
        default_runtime: setup.default_runtime.clone(),
        runc_commit: setup.runc_commit.clone(),
        seccomp: setup.seccomp.clone().unwrap_or_else(|| "none".into()),
        apparmor: setup.apparmor.to_string(),
        userns: setup.userns.to_string(),
        cgroup_version: setup.cgroup_version.clone(),
        accepted: (refusal.is_none() || allow_unconfined).to_string(),
    };
    context.metrics.docker_daemon.get_or_create(&labels).set(1);
    Ok(())
}

/// Picks the network of `Bridge` tasks, and makes it where it is the operator's own, waiting
/// for the daemon as long as it takes. A network of that name the operator did not make is never used: the node takes no
/// run until it is removed.
async fn prepare_network(context: &Context) -> Result<()> {
    let prepared = (|| context.executor.prepare_network())
        .retry(daemon_wait())
        .when(|e| !matches!(e, DockerError::ForeignNetwork { .. }))
        .notify(
            |e, delay| warn!(error = %e, retry_in = ?delay, "waiting to set up the task network"),
        )
        .await;
    match prepared {
        Ok(network) => {
            info!(
                network,
                "Bridge tasks join this network, on which they cannot reach each other"
            );
            Ok(())
        }
        Err(e @ DockerError::ForeignNetwork { .. }) => {
            error!(error = %e, "this node takes no runs");
            context.nodes.refuse(e.to_string());
            Ok(())
        }
        Err(e) => Err(Error::Docker(e)),
    }
}

/// Where task containers reach the API server: the configured address, else the one the
/// agent itself uses, with the CA the agent trusts.
fn task_api(config: &ControllerConfig, kube_config: &kube::Config) -> TaskApi {
    let (host, port) = config.task_api_server.clone().unwrap_or_else(|| {
        let url = &kube_config.cluster_url;
        let host = url
            .host()
            .unwrap_or("kubernetes.default.svc")
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        (host, url.port_u16().unwrap_or(443))
    });
    TaskApi {
        host,
        port,
        address: config.task_api_server_ip,
        ca_pem: references::ca_pem(kube_config),
    }
}

/// How the agent's watches retry after the API server failed them: soon, and never more than
/// a few seconds apart, so what an agent knows of runs and nodes is current again within
/// seconds of an outage (client-go's 30 s cap suits thousands of clients, not one per node
/// deciding on Leases of a few seconds).
fn watch_backoff() -> WatchBackoff {
    WatchBackoff::new(Duration::from_secs(5))
}

/// An exponential backoff from 250 ms up to a cap that a watch stream resets only once it has
/// gone on for a while without failing. The watcher reports the start of every initial list
/// as an event before making the list, so the stream resets its backoff before each list,
/// failed or not; taken at its word, a list that keeps failing (a kind not installed, a
/// forbidden resource, an API server that is down) would be retried four times a second
/// forever.
struct WatchBackoff {
    builder: ExponentialBuilder,
    delays: backon::ExponentialBackoff,
    /// When the stream first reported an event since it last failed.
    healthy_since: Option<Instant>,
}

impl WatchBackoff {
    /// How long a stream must go without failing before its next failure is retried soon.
    const SETTLED: Duration = Duration::from_secs(10);

    fn new(max_delay: Duration) -> Self {
        let builder = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(250))
            .with_max_delay(max_delay)
            .with_jitter()
            .without_max_times();
        Self {
            builder,
            delays: builder.build(),
            healthy_since: None,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self
            .healthy_since
            .take()
            .is_some_and(|since| since.elapsed() >= Self::SETTLED)
        {
            self.delays = self.builder.build();
        }
        self.delays.next()
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.healthy_since.get_or_insert_with(Instant::now);
    }
}

/// TaskRuns per page of a list. A page is held whole while it is read, each TaskRun several
/// times its cached size: with pages of 500, the usual size, the agent peaked about 7 MB
/// higher.
const LIST_PAGE_SIZE: u32 = 100;

/// Most TaskRuns reconciled at once. Each pass may hold a Docker connection; unbounded, a
/// burst of thousands of objects opens thousands of them.
const RECONCILE_CONCURRENCY: u16 = 32;

/// Keeps of each cached TaskRun what the controller reads. Of the metadata that is its identity,
/// generation, times, finalizers and claim: labels (selected by the API server), managed fields
/// and kubectl's copy of the last applied object outweigh the rest. Of a run that ended it
/// drops the log tail (up to 64 KiB) and the conditions, which only repeat the phase, reason
/// and message; the status writer puts the stored ones back should such a run's status be
/// written again.
fn slim(taskrun: &mut DeserializeGuard<TaskRun>) {
    let metadata = taskrun.meta_mut();
    let claim = metadata
        .annotations
        .take()
        .map(|mut annotations| {
            annotations.retain(|key, _| {
                [CLAIM_ANNOTATION, CLAIM_ATTEMPT_ANNOTATION].contains(&key.as_str())
            });
            annotations
        })
        .filter(|claim| !claim.is_empty());
    *metadata = ObjectMeta {
        name: metadata.name.take(),
        namespace: metadata.namespace.take(),
        uid: metadata.uid.take(),
        resource_version: metadata.resource_version.take(),
        generation: metadata.generation,
        creation_timestamp: metadata.creation_timestamp.take(),
        deletion_timestamp: metadata.deletion_timestamp.take(),
        finalizers: metadata.finalizers.take(),
        annotations: claim,
        ..ObjectMeta::default()
    };
    if let Ok(taskrun) = taskrun.0.as_mut() {
        leave_out_record(taskrun);
    }
}

/// Drops the log tail and conditions of a run that ended.
fn leave_out_record(taskrun: &mut TaskRun) {
    if let Some(status) = taskrun.status.as_mut()
        && status.phase().is_final()
    {
        status.log_tail = None;
        status.conditions = Vec::new();
    }
}

/// Whether `taskrun` is a cached copy that left out the log tail and conditions of its ended
/// run (see [`slim`]): a recorded status always has conditions.
fn record_left_out(taskrun: &TaskRun) -> bool {
    taskrun
        .status
        .as_ref()
        .is_some_and(|status| status.phase().is_final() && status.conditions.is_empty())
}

/// Puts the stored log tail and conditions back into a status computed from a copy that left
/// them out; the conditions record the generation the new status observed.
fn put_back_record(status: &mut TaskRunStatus, stored: TaskRunStatus) {
    if status.log_tail.is_none() {
        status.log_tail = stored.log_tail;
    }
    if status.conditions.is_empty() {
        status.conditions = stored.conditions;
        for condition in &mut status.conditions {
            condition.observed_generation = status.observed_generation;
        }
    }
}

/// The label that puts a TaskRun in a class of agents, as `spec.schedulerName` does for Pods:
/// agents of one class never see another's runs.
pub const CLASS_LABEL: &str = "taskrun.dev/class";

/// The label selector of the TaskRuns an agent of `class` takes.
fn class_selector(class: Option<&str>) -> String {
    match class {
        Some(class) => format!("{CLASS_LABEL}={class}"),
        None => format!("!{CLASS_LABEL}"),
    }
}

/// Runs the controller until SIGTERM or SIGINT. Running containers are left alone on the way
/// out; the next controller adopts them.
pub async fn run(config: ControllerConfig) -> Result<()> {
    let kube_config = kube::Config::infer()
        .await
        .map_err(|e| Error::KubeConfig(kube::Error::InferConfig(e)))?;
    let task_api = task_api(&config, &kube_config);
    let client = kube::Client::try_from(kube_config).map_err(Error::KubeConfig)?;
    let docker = connect_docker().await?;
    let executor = executor_of(docker, &config);
    let writer = reflector::store::Writer::default();
    let cache = writer.as_reader();
    let context = Arc::new(
        Context::new(
            client.clone(),
            executor,
            Api::namespaced(client.clone(), &config.lease_namespace),
            config.max_running,
            config.lease_duration,
        )
        .with_task_api(task_api)
        .with_policy(Policy::new(config.policy_name.clone()))
        .with_firewall_image(config.firewall_image.clone())
        .with_taskruns(cache.clone()),
    );

    judge_daemon(&context, config.allow_unconfined_seccomp).await?;
    prepare_network(&context).await?;

    let (stopped_tx, stopped_rx) = mpsc::channel(1024);
    let (resync_tx, resync_rx) = mpsc::channel(1);
    let triggers = tokio::spawn(triggers::follow_container_stops(
        context.clone(),
        stopped_tx.clone(),
        resync_tx.clone(),
    ));
    let lease = tokio::spawn(leases::keep_lease(
        context.clone(),
        config.lease_duration,
        resync_tx.clone(),
    ));
    let node_objects = tokio::spawn(node_objects::follow_nodes(
        context.clone(),
        resync_tx.clone(),
    ));
    let firewall = tokio::spawn(firewall::keep_firewall(context.clone(), resync_tx.clone()));
    let policy = tokio::spawn(policy::follow_policy(context.clone(), resync_tx));

    let taskruns: Api<DeserializeGuard<TaskRun>> = match &config.namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let selector = class_selector(config.class.as_deref());
    // Lists are paged and each TaskRun slimmed as its page is read. A list that may be served
    // stale from the API server's cache ignores paging and arrives whole, managed fields and
    // all: about 2.5 KB a TaskRun.
    let watched = watcher(
        taskruns,
        watcher::Config::default()
            .labels(&selector)
            .page_size(LIST_PAGE_SIZE),
    )
    .backoff(watch_backoff())
    .modify(slim);
    let controller = Controller::for_stream(reflector(writer, watched).applied_objects(), cache)
        .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .reconcile_on(ReceiverStream::new(stopped_rx))
        .shutdown_on_signal();
    let listener = http::bind(config.health_address)
        .await
        .map_err(Error::Serve)?;
    let endpoints = tokio::spawn(http::serve(listener, context.clone(), controller.store()));
    let waiting = tokio::spawn(triggers::wake_runs_waiting_for_room(
        context.clone(),
        controller.store(),
        stopped_tx.clone(),
    ));
    let resync = tokio::spawn(triggers::resync_open_runs(
        controller.store(),
        resync_rx,
        stopped_tx.clone(),
    ));
    let referenced = tokio::spawn(references::wake_runs_waiting_for_references(
        client,
        config.namespace.clone(),
        controller.store(),
        stopped_tx,
    ));
    let sweeper = tokio::spawn(sweep::sweep_orphans(
        context.clone(),
        controller.store(),
        config.sweep_interval,
    ));

    info!(node = %config.node_name, "controller started");
    controller
        .run(reconcile::reconcile, reconcile::error_policy, context)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "reconcile failed");
            }
        })
        .await;
    for task in [
        triggers,
        lease,
        node_objects,
        firewall,
        policy,
        waiting,
        resync,
        referenced,
        sweeper,
    ] {
        task.abort();
    }
    endpoints.abort();
    info!("controller stopped; running containers are left for the next controller to adopt");
    Ok(())
}

#[cfg(test)]
mod tests;

/// The executor of this node's runs, holding each container to its share of the node's pids.
fn executor_of(docker: DockerClient, config: &ControllerConfig) -> Executor {
    let executor = Executor::new(
        Arc::new(docker),
        config.node_name.clone(),
        config.pull_timeout,
        config.output,
    );
    match read_pid_max() {
        Some(pid_max) => {
            let ceiling = security::node_pids_ceiling(pid_max, config.max_running);
            info!(
                pid_max,
                ceiling, "no container gets more processes than its share of the node's"
            );
            executor.with_pids_ceiling(ceiling)
        }
        None => {
            warn!(
                "cannot read /proc/sys/kernel/pid_max; containers get their policy's pidsLimit alone"
            );
            executor
        }
    }
}

/// The kernel's ceiling of processes and threads on this node.
fn read_pid_max() -> Option<i64> {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()?
        .trim()
        .parse()
        .ok()
}
