//! The Kubernetes side of the bench: clients, the CRD, its namespace, TaskRuns made in bulk,
//! and one watch over the namespace that records when each TaskRun was seen to succeed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common;
use futures::{StreamExt, TryStreamExt, stream};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use serde_json::json;
use taskrun_operator::api::{FINALIZER, Phase, Reason, TaskRun, TaskRunPolicy, TaskRunStatus};
use taskrun_operator::controller::CLASS_LABEL;
use taskrun_operator::lifecycle::{self, CLAIM_ANNOTATION, Ending};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Result;
use crate::docker::{self, ContainerEvents};
use crate::report::Machine;

/// Everything a run of the bench shares: clients, its namespace and node, and what its
/// watches have seen.
pub struct Bench {
    pub kube: Client,
    pub kubeconfig: PathBuf,
    pub docker: bollard::Docker,
    /// The namespace this run's TaskRuns live in, made for it and removed after it.
    pub namespace: String,
    /// The node name this run's controllers use; it labels every container of the run, the
    /// raw Docker ones included.
    pub node: String,
    pub taskruns: TaskRunWatch,
    pub containers: ContainerEvents,
    /// Where the controllers' logs go.
    pub log_dir: PathBuf,
    pub machine: Machine,
}

impl Bench {
    /// Connects to both daemons, installs the CRD and makes a fresh namespace.
    pub async fn setup(bench_dir: &Path) -> Result<Self> {
        let kubeconfig = common::kubeconfig();
        let kube = common::client_from(&kubeconfig).await;
        let docker = docker::connect().await?;
        docker::ensure_image(&docker).await?;
        common::ensure_crd(&kube).await;
        ensure_policy_crd(&kube).await?;

        let run = format!(
            "{:06x}",
            Timestamp::now().as_nanosecond().unsigned_abs() % 0x100_0000
        );
        let namespace = format!("taskrun-bench-{run}");
        let node = format!("bench-{run}");
        let labels = json!({ "taskrun.dev/bench": "true" });
        let object: Namespace =
            serde_json::from_value(json!({ "metadata": { "name": namespace, "labels": labels } }))?;
        Api::<Namespace>::all(kube.clone())
            .create(&PostParams::default(), &object)
            .await
            .map_err(|e| format!("failed to create namespace {namespace}: {e}"))?;

        let log_dir = bench_dir.join("logs");
        std::fs::create_dir_all(&log_dir)
            .map_err(|e| format!("failed to create {}: {e}", log_dir.display()))?;
        let machine = Machine::describe(&kube, &docker).await;
        let taskruns = TaskRunWatch::start(Api::namespaced(kube.clone(), &namespace));
        let containers = ContainerEvents::start(docker.clone(), &node);
        Ok(Self {
            kube,
            kubeconfig,
            docker,
            namespace,
            node,
            taskruns,
            containers,
            log_dir,
            machine,
        })
    }

    /// The TaskRuns of this run's namespace.
    pub fn api(&self) -> Api<TaskRun> {
        Api::namespaced(self.kube.clone(), &self.namespace)
    }

    /// One small write through the API server, for when etcd must commit now: an annotation
    /// on the run's namespace, set to the time.
    pub async fn touch(&self) -> Result<()> {
        let patch = json!({
            "metadata": { "annotations": { "taskrun.dev/bench-touched": Timestamp::now().to_string() } }
        });
        Api::<Namespace>::all(self.kube.clone())
            .patch(
                &self.namespace,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| format!("failed to annotate namespace {}: {e}", self.namespace))?;
        Ok(())
    }

    /// Removes what the run left, whether or not a controller still runs: finalizers, the
    /// TaskRuns, the containers labelled with its node, Events, and the namespace.
    pub async fn teardown(&self) -> Result<()> {
        let api = self.api();
        let left = api.list_metadata(&ListParams::default()).await?;
        let names: Vec<String> = left.items.iter().map(|t| t.name_any()).collect();
        release_and_delete(&api, &names, 32).await?;
        docker::remove_labelled(&self.docker, &self.node).await?;
        let events: Api<KubeEvent> = Api::namespaced(self.kube.clone(), &self.namespace);
        events
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await?;
        remove_namespace(&self.kube, &self.namespace).await
    }
}

/// Installs the TaskRunPolicy CRD, as `deploy/` does, and waits until it is served. Without it
/// an agent keeps asking for the policy and never goes idle.
async fn ensure_policy_crd(client: &Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = TaskRunPolicy::crd();
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply("taskrun-bench").force(),
        &Patch::Apply(&crd),
    )
    .await
    .map_err(|e| format!("failed to apply the TaskRunPolicy CRD: {e}"))?;
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .map_err(|_| "the TaskRunPolicy CRD was not established within 30 s")??;
    Ok(())
}

fn ignore_not_found(result: Result<(), kube::Error>) -> Result<()> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => Ok(other?),
    }
}

/// Deletes the namespace and finalizes it. A control plane without a controller manager (the
/// local one) never finalizes namespaces itself; the bench has emptied it by now.
async fn remove_namespace(client: &Client, name: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    ignore_not_found(
        namespaces
            .delete(name, &DeleteParams::default())
            .await
            .map(drop),
    )?;
    let Some(mut namespace) = namespaces.get_opt(name).await? else {
        return Ok(());
    };
    if let Some(spec) = namespace.spec.as_mut() {
        spec.finalizers = None;
    }
    ignore_not_found(
        namespaces
            .replace_subresource("finalize", name, &PostParams::default(), &namespace)
            .await
            .map(drop),
    )
}

/// The class of the bench's agents and TaskRuns: agents installed on the cluster never see them.
pub const CLASS: &str = "taskrun-bench";

/// A trivial TaskRun: busybox `true`, the image already on the node.
pub fn taskrun(name: &str) -> Result<TaskRun> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "taskrun.dev/v1alpha1",
        "kind": "TaskRun",
        "metadata": { "name": name, "labels": { CLASS_LABEL: CLASS } },
        "spec": { "image": docker::IMAGE, "command": ["true"] },
    }))?)
}

/// Creates TaskRuns, `concurrency` requests in flight, and returns each one's UID by name.
pub async fn create_taskruns(
    api: &Api<TaskRun>,
    names: &[String],
    concurrency: usize,
) -> Result<HashMap<String, String>> {
    stream::iter(names)
        .map(|name| async move {
            let created = api
                .create(&PostParams::default(), &taskrun(name)?)
                .await
                .map_err(|e| format!("failed to create TaskRun {name}: {e}"))?;
            let uid = created.uid().ok_or("a created TaskRun has no UID")?;
            Ok::<_, crate::Error>((name.clone(), uid))
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await
}

/// Creates TaskRuns as a controller on `node` leaves them once their container exited 0 and
/// was removed: claimed by the node, with the finalizer, and the status it writes (through the
/// status subresource). No container runs.
pub async fn create_finished_taskruns(
    api: &Api<TaskRun>,
    node: &str,
    names: &[String],
    concurrency: usize,
) -> Result<()> {
    stream::iter(names)
        .map(|name| async move {
            let mut object = taskrun(name)?;
            object.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
            object.metadata.annotations =
                Some([(CLAIM_ANNOTATION.to_string(), node.to_string())].into());
            let created = api
                .create(&PostParams::default(), &object)
                .await
                .map_err(|e| format!("failed to create TaskRun {name}: {e}"))?;
            let uid = created.uid().ok_or("a created TaskRun has no UID")?;
            let status = finished_status(node, &uid, created.metadata.generation);
            let patch = json!({ "status": status });
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| format!("failed to write the status of TaskRun {name}: {e}"))?;
            Ok::<_, crate::Error>(())
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// The average size of a `Succeeded` TaskRun of `namespace` as the API server returns it, in
/// compact JSON as it sends it, and of its `managedFields` alone, over up to 500 of them.
pub async fn json_bytes(client: &Client, namespace: &str) -> Result<(f64, f64)> {
    let path = <TaskRun as kube::Resource>::url_path(&(), Some(namespace));
    let request = http::Request::get(format!("{path}?limit=500")).body(Vec::new())?;
    let list: serde_json::Value = serde_json::from_str(&client.request_text(request).await?)?;
    let finished: Vec<&serde_json::Value> = list["items"]
        .as_array()
        .ok_or("a TaskRun list without items")?
        .iter()
        .filter(|item| item["status"]["phase"] == "Succeeded")
        .collect();
    if finished.is_empty() {
        return Err(format!("no Succeeded TaskRun in namespace {namespace}").into());
    }
    let mut total = 0;
    let mut managed_fields = 0;
    for item in &finished {
        total += serde_json::to_vec(item)?.len();
        managed_fields += serde_json::to_vec(&item["metadata"]["managedFields"])?.len();
    }
    let count = finished.len() as f64;
    Ok((total as f64 / count, managed_fields as f64 / count))
}

/// The status the operator records for a busybox `true` run, built with its own functions.
fn finished_status(node: &str, uid: &str, generation: Option<i64>) -> TaskRunStatus {
    let container_name = taskrun_operator::docker::container_name(uid);
    let location = lifecycle::status::Location {
        node,
        container_name: &container_name,
        generation,
    };
    let started = Timestamp::now();
    let container_id = format!("{:0>64}", uid.replace('-', ""));
    let running = lifecycle::status::running(
        &TaskRunStatus::default(),
        location,
        &container_id,
        started,
        started,
    );
    let ending = Ending {
        phase: Phase::Succeeded,
        reason: Reason::Completed,
        message: "exited with code 0".into(),
        exit_code: Some(0),
        started_at: Some(started),
        finished_at: started,
        retryable: false,
    };
    lifecycle::status::ended(&running, location, &ending, None, None, started)
}

/// Deletes TaskRuns, `concurrency` requests in flight. Gone already is fine.
pub async fn delete_taskruns(
    api: &Api<TaskRun>,
    names: &[String],
    concurrency: usize,
) -> Result<()> {
    stream::iter(names)
        .map(|name| async move {
            ignore_not_found(api.delete(name, &DeleteParams::default()).await.map(drop))
                .map_err(|e| crate::Error::from(format!("failed to delete TaskRun {name}: {e}")))
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Removes the finalizer of each TaskRun, then deletes it, `concurrency` at a time: faster than
/// a controller's release when no controller needs to see it. Gone already is fine.
pub async fn release_and_delete(
    api: &Api<TaskRun>,
    names: &[String],
    concurrency: usize,
) -> Result<()> {
    stream::iter(names)
        .map(|name| async move {
            let patch = json!({ "metadata": { "finalizers": null } });
            ignore_not_found(
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(drop),
            )?;
            ignore_not_found(api.delete(name, &DeleteParams::default()).await.map(drop))
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// What the bench's watch over its namespace has seen so far.
#[derive(Debug, Default)]
pub struct Seen {
    /// The initial list is done: everything present then has been seen.
    pub synced: bool,
    by_name: HashMap<String, SeenTaskRun>,
    /// Names seen since the watch (re)started listing, to forget the ones deleted meanwhile.
    relisting: Option<HashSet<String>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct SeenTaskRun {
    phase: Option<Phase>,
    /// When the watch first delivered the TaskRun with phase `Succeeded`.
    succeeded_at: Option<Timestamp>,
}

impl Seen {
    fn apply(&mut self, taskrun: &TaskRun, now: Timestamp) {
        let name = taskrun.name_any();
        if let Some(relisting) = self.relisting.as_mut() {
            relisting.insert(name.clone());
        }
        let succeeded = taskrun
            .status
            .as_ref()
            .is_some_and(|s| s.phase == Some(Phase::Succeeded));
        let entry = self.by_name.entry(name).or_default();
        entry.phase = taskrun.status.as_ref().and_then(|s| s.phase);
        if succeeded && entry.succeeded_at.is_none() {
            entry.succeeded_at = Some(now);
        }
    }

    fn remove(&mut self, name: &str) {
        self.by_name.remove(name);
    }

    /// When the TaskRun was first seen `Succeeded`.
    pub fn succeeded_at(&self, name: &str) -> Option<Timestamp> {
        self.by_name.get(name).and_then(|t| t.succeeded_at)
    }

    /// Whether the TaskRun has reached a final phase, and which.
    pub fn final_phase(&self, name: &str) -> Option<Phase> {
        self.by_name
            .get(name)
            .and_then(|t| t.phase)
            .filter(|p| p.is_final())
    }

    /// Whether the TaskRun exists, as far as the watch knows.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Whether the namespace holds no TaskRun.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// One watch over the bench's namespace, kept for the whole run.
pub struct TaskRunWatch {
    seen: watch::Receiver<Seen>,
    task: JoinHandle<()>,
}

impl TaskRunWatch {
    fn start(api: Api<TaskRun>) -> Self {
        let (tx, seen) = watch::channel(Seen::default());
        let task = tokio::spawn(async move {
            let mut events =
                std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
            while let Some(event) = events.next().await {
                let now = Timestamp::now();
                match event {
                    Ok(watcher::Event::Apply(t) | watcher::Event::InitApply(t)) => {
                        tx.send_modify(|seen| seen.apply(&t, now));
                    }
                    Ok(watcher::Event::Delete(t)) => {
                        tx.send_modify(|seen| seen.remove(&t.name_any()));
                    }
                    Ok(watcher::Event::Init) => {
                        tx.send_modify(|seen| seen.relisting = Some(HashSet::new()));
                    }
                    Ok(watcher::Event::InitDone) => tx.send_modify(|seen| {
                        let listed = seen.relisting.take().unwrap_or_default();
                        let gone: Vec<String> = seen
                            .by_name
                            .keys()
                            .filter(|name| !listed.contains(*name))
                            .cloned()
                            .collect();
                        for name in gone {
                            seen.remove(&name);
                        }
                        seen.synced = true;
                    }),
                    Err(e) => say!("TaskRun watch: {e} (retrying)"),
                }
            }
        });
        Self { seen, task }
    }

    /// Waits, watching, until `done` holds for what has been seen.
    pub async fn until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl FnMut(&Seen) -> bool,
    ) -> Result<()> {
        let mut seen = self.seen.clone();
        match tokio::time::timeout(timeout, seen.wait_for(done)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err("the TaskRun watch ended".into()),
            Err(_) => Err(format!("timed out after {timeout:?} waiting for {what}").into()),
        }
    }

    /// Reads what has been seen.
    pub fn read<R>(&self, read: impl FnOnce(&Seen) -> R) -> R {
        read(&self.seen.borrow())
    }
}

impl Drop for TaskRunWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
