//! Reconcile passes against an API server that answers from a script and an in-memory Docker
//! daemon: the exact writes each step of a run costs, and none when nothing changed.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use jiff::Timestamp;
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::{Api, Client};
use serde_json::{Value, json};

use super::context::{Context, LeaseView, NodeObjects};
use super::policy::Policy;
use super::reconcile::reconcile;
use crate::api::{CLUSTER_POLICY, Phase, Reason, TaskRun, TaskRunPolicy, TaskRunStatus};
use crate::docker::fake::FakeDaemon;
use crate::docker::{ContainerState, container_name};
use crate::lifecycle::{Executor, NodeState, OutputLimits};

const NODE: &str = "node-a";

/// A request the agent made: method, path and body.
#[derive(Clone, Debug)]
struct Made {
    method: String,
    path: String,
    body: Value,
}

/// The requests made so far, and how status writes are answered.
#[derive(Default)]
struct ApiServer {
    made: Mutex<Vec<Made>>,
    refuse_status_writes: bool,
    /// Answer writes to the TaskRun itself (claims) with 409, as when another agent came first.
    refuse_claims: bool,
    /// The TaskRun as stored, when it is not the copy the pass looks at.
    stored: Option<TaskRun>,
    /// The Leases in the agents' namespace, by name; a read of any other is a 404.
    leases: HashMap<String, Value>,
    /// The Node objects, by name; a read of any other is a 404.
    nodes: HashMap<String, Value>,
}

impl ApiServer {
    /// The writes to the TaskRun (Events apart).
    fn taskrun_writes(&self) -> Vec<Made> {
        self.made
            .lock()
            .iter()
            .filter(|m| m.path.contains("/taskruns/") && m.method != "GET")
            .cloned()
            .collect()
    }
}

/// A client whose API server is `server`, answering each request as a real one would in
/// shape: the patched TaskRun back, an Event created, a 409 for refused status writes.
fn client(server: Arc<ApiServer>, taskrun: &TaskRun) -> Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let answer = serde_json::to_vec(server.stored.as_ref().unwrap_or(taskrun)).unwrap();
    tokio::spawn(async move {
        while let Some((request, respond)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            server.made.lock().push(Made {
                method,
                path: path.clone(),
                body: body.clone(),
            });
            let found = |objects: &HashMap<String, Value>, prefix: &str| {
                path.strip_prefix(prefix)
                    .map(|name| objects.get(name).cloned())
            };
            let read = found(
                &server.leases,
                "/apis/coordination.k8s.io/v1/namespaces/team/leases/",
            )
            .or_else(|| found(&server.nodes, "/api/v1/nodes/"));
            let (status, reply) = if let Some(object) = read {
                match object {
                    Some(object) => (StatusCode::OK, serde_json::to_vec(&object).unwrap()),
                    None => {
                        let missing = json!({
                            "kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "message": "not found", "reason": "NotFound", "code": 404
                        });
                        (StatusCode::NOT_FOUND, serde_json::to_vec(&missing).unwrap())
                    }
                }
            } else if path.ends_with("/events") {
                (StatusCode::CREATED, serde_json::to_vec(&body).unwrap())
            } else if (path.ends_with("/status") && server.refuse_status_writes)
                || (path.ends_with("/taskruns/hello") && server.refuse_claims)
            {
                let conflict = json!({
                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "the object has been modified", "reason": "Conflict", "code": 409
                });
                (StatusCode::CONFLICT, serde_json::to_vec(&conflict).unwrap())
            } else {
                (StatusCode::OK, answer.clone())
            };
            let response = Response::builder()
                .status(status)
                .body(Body::from(reply))
                .unwrap();
            respond.send_response(response);
        }
    });
    Client::new(service, "team")
}

fn taskrun(yaml: &str) -> TaskRun {
    let mut taskrun: TaskRun = serde_yaml::from_str(yaml).unwrap();
    taskrun.metadata.namespace = Some("team".into());
    taskrun.metadata.uid = Some("u1".into());
    taskrun.metadata.resource_version = Some("7".into());
    taskrun.metadata.generation = Some(1);
    taskrun
}

const NEW: &str = "metadata: {name: hello}\nspec: {image: busybox}";
const CLAIMED_HEAD: &str = "metadata: {name: hello, annotations: {taskrun.dev/node: node-a}, finalizers: [taskrun.dev/container]}";
const CLAIMED: &str = "metadata: {name: hello, annotations: {taskrun.dev/node: node-a}, finalizers: [taskrun.dev/container]}\nspec: {image: busybox}";

/// One pass over `taskrun` by the agent of [`NODE`], on a cluster without a TaskRunPolicy.
async fn pass(taskrun: &TaskRun, fake: &Arc<FakeDaemon>, server: &Arc<ApiServer>) {
    pass_under(Policy::known(CLUSTER_POLICY, None), taskrun, fake, server).await;
}

/// One pass over `taskrun` by the agent of [`NODE`], which knows `policy` as it does and wrote
/// the run's claim, if it has one, in an earlier pass.
async fn pass_under(
    policy: Policy,
    taskrun: &TaskRun,
    fake: &Arc<FakeDaemon>,
    server: &Arc<ApiServer>,
) {
    let agent = Agent {
        policy,
        vouches: true,
        cordoned: false,
        refusal: None,
    };
    pass_by(agent, taskrun, fake, server).await;
}

/// What the agent making a pass knows.
struct Agent {
    policy: Policy,
    /// It wrote the run's claim itself.
    vouches: bool,
    /// Its Node is cordoned.
    cordoned: bool,
    /// Why it takes no run at all, if it takes none (its daemon's setup).
    refusal: Option<&'static str>,
}

/// One pass over `taskrun` by `agent`, of [`NODE`].
async fn pass_by(agent: Agent, taskrun: &TaskRun, fake: &Arc<FakeDaemon>, server: &Arc<ApiServer>) {
    let Agent {
        policy,
        vouches,
        cordoned,
        refusal,
    } = agent;
    let context = agent_context(client(server.clone(), taskrun), fake, 8, policy);
    context.nodes.set_node_objects(NodeObjects {
        cordoned,
        ..NodeObjects::default()
    });
    if let Some(why) = refusal {
        context.nodes.refuse(why.into());
    }
    if vouches && let Some(uid) = &taskrun.metadata.uid {
        context.nodes.vouch(uid);
    }
    let guard = Arc::new(DeserializeGuard(Ok(taskrun.clone())));
    reconcile(guard, context).await.expect("the pass succeeds");
}

/// The context of the agent of [`NODE`], taking at most `max_running` runs at once, with a
/// current Lease and a Node object that is not cordoned.
fn agent_context(
    client: Client,
    fake: &Arc<FakeDaemon>,
    max_running: usize,
    policy: Policy,
) -> Arc<Context> {
    let executor = Executor::new(
        fake.clone(),
        NODE,
        Duration::from_secs(5),
        OutputLimits::default(),
    );
    let leases = Api::namespaced(client.clone(), "team");
    let context = Arc::new(
        Context::new(
            client,
            executor,
            leases,
            max_running,
            Duration::from_secs(15),
        )
        .with_policy(policy),
    );
    context.nodes.renewed(Instant::now());
    context.nodes.set_node_objects(NodeObjects::default());
    context
}

/// The status a status write applied.
fn written_status(made: &Made) -> TaskRunStatus {
    serde_json::from_value(made.body["status"].clone()).unwrap()
}

#[tokio::test]
async fn a_new_run_costs_one_guarded_claim_then_starts_from_the_claimed_copy() {
    let (fake, server) = (
        Arc::new(FakeDaemon::with_images(&["busybox"])),
        Arc::default(),
    );
    pass(&taskrun(NEW), &fake, &server).await;
    let writes = server.taskrun_writes();
    assert_eq!(writes.len(), 2, "{writes:#?}");
    assert_eq!(writes[0].method, "PATCH");
    assert!(writes[0].path.ends_with("/namespaces/team/taskruns/hello"));
    let metadata = &writes[0].body["metadata"];
    assert_eq!(metadata["resourceVersion"], "7");
    assert_eq!(metadata["annotations"]["taskrun.dev/node"], NODE);
    assert_eq!(metadata["finalizers"], json!(["taskrun.dev/container"]));
    assert!(writes[1].path.ends_with("/taskruns/hello/status"));
    assert_eq!(written_status(&writes[1]).phase, Some(Phase::Running));
    assert_eq!(fake.state().containers.len(), 1);
}

#[tokio::test]
async fn a_run_pulling_its_image_holds_no_place_and_takes_one_again_to_create_its_container() {
    let registry = Arc::new(tokio::sync::Semaphore::new(0));
    let fake = Arc::new(FakeDaemon {
        pull_gate: Some(registry.clone()),
        ..FakeDaemon::with_images(&["busybox"])
    });
    fake.state().pullable.insert("registry.test/slow".into());
    let pulling = taskrun("metadata: {name: hello}\nspec: {image: registry.test/slow}");
    let mut quick = taskrun(CLAIMED);
    quick.metadata.name = Some("quick".into());
    quick.metadata.uid = Some("u2".into());
    let server = Arc::<ApiServer>::default();
    let context = agent_context(
        client(server.clone(), &pulling),
        &fake,
        1,
        Policy::known(CLUSTER_POLICY, None),
    );
    context.nodes.vouch("u2");
    let pass = |taskrun: &TaskRun| {
        reconcile(
            Arc::new(DeserializeGuard(Ok(taskrun.clone()))),
            context.clone(),
        )
    };

    let first = tokio::spawn(pass(&pulling));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fake
        .calls()
        .contains(&"pull registry.test/slow".to_string())
    {
        assert!(Instant::now() < deadline, "no pull: {:?}", fake.calls());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        server.taskrun_writes()[0].path.ends_with("/taskruns/hello"),
        "claimed"
    );
    assert_eq!(
        context.nodes.held(),
        0,
        "a pull holds no place, not even the claim's"
    );
    pass(&quick).await.expect("the pass succeeds");
    assert!(
        context.nodes.holds("u2"),
        "the other run took the one place"
    );
    assert!(fake.state().containers.contains_key(&container_name("u2")));

    registry.add_permits(1);
    first.await.unwrap().expect("the pass succeeds");
    assert!(!context.nodes.holds("u1"), "no room once pulled");
    assert!(!fake.state().containers.contains_key(&container_name("u1")));

    context.nodes.release("u2");
    pass(&pulling).await.expect("the pass succeeds");
    assert!(context.nodes.holds("u1"));
    let pulls = fake
        .calls()
        .iter()
        .filter(|c| c.starts_with("pull "))
        .count();
    assert_eq!(pulls, 1, "the image pulled once is not pulled again");
    let containers = &fake.state().containers;
    assert_eq!(
        containers[&container_name("u1")].template.image,
        "sha256:registry.test/slow"
    );
}

#[tokio::test]
async fn a_claim_another_agent_won_starts_nothing() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    let server = Arc::new(ApiServer {
        refuse_claims: true,
        ..ApiServer::default()
    });
    pass(&taskrun(NEW), &fake, &server).await;
    let writes = server.taskrun_writes();
    assert_eq!(writes.len(), 1, "only the claim: {writes:#?}");
    assert!(fake.state().containers.is_empty(), "{:?}", fake.calls());
}

#[tokio::test]
async fn a_claim_this_agent_did_not_write_is_claimed_again_or_freed_never_trusted() {
    for cordoned in [false, true] {
        let (fake, server) = (
            Arc::new(FakeDaemon::with_images(&["busybox"])),
            Arc::<ApiServer>::default(),
        );
        let agent = Agent {
            policy: Policy::known(CLUSTER_POLICY, None),
            vouches: false,
            cordoned,
            refusal: None,
        };
        pass_by(agent, &taskrun(CLAIMED), &fake, &server).await;
        let writes = server.taskrun_writes();
        assert_eq!(writes[0].method, "PATCH", "{writes:#?}");
        assert!(writes[0].path.ends_with("/namespaces/team/taskruns/hello"));
        let metadata = &writes[0].body["metadata"];
        assert_eq!(metadata["resourceVersion"], "7");
        if cordoned {
            assert_eq!(writes.len(), 1, "only the release: {writes:#?}");
            assert_eq!(metadata["annotations"]["taskrun.dev/node"], Value::Null);
            assert!(fake.state().containers.is_empty(), "{:?}", fake.calls());
        } else {
            assert_eq!(writes.len(), 2, "the claim, then Running: {writes:#?}");
            assert_eq!(metadata["annotations"]["taskrun.dev/node"], NODE);
            assert_eq!(written_status(&writes[1]).phase, Some(Phase::Running));
            assert_eq!(fake.state().containers.len(), 1);
        }
    }
}

#[tokio::test]
async fn a_node_whose_daemon_cannot_confine_a_task_takes_no_run_and_says_why() {
    let (fake, server) = (
        Arc::new(FakeDaemon::with_images(&["busybox"])),
        Arc::<ApiServer>::default(),
    );
    let agent = Agent {
        policy: Policy::known(CLUSTER_POLICY, None),
        vouches: false,
        cordoned: false,
        refusal: Some("the Docker daemon runs containers with seccomp unconfined"),
    };
    let pinned = taskrun(&format!(
        "metadata: {{name: hello}}\nspec: {{image: busybox, nodeName: {NODE}}}"
    ));
    pass_by(agent, &pinned, &fake, &server).await;
    let writes = server.taskrun_writes();
    assert_eq!(writes.len(), 1, "no claim, one status: {writes:#?}");
    let status = written_status(&writes[0]);
    assert_eq!(status.reason, Some(Reason::Unschedulable));
    assert!(
        status
            .message
            .unwrap_or_default()
            .contains("takes no runs: the Docker daemon runs containers with seccomp unconfined"),
    );
    assert!(fake.state().containers.is_empty(), "{:?}", fake.calls());
}

#[tokio::test]
async fn a_claimed_run_starts_its_container_and_writes_running_once() {
    let (fake, server) = (
        Arc::new(FakeDaemon::with_images(&["busybox"])),
        Arc::default(),
    );
    pass(&taskrun(CLAIMED), &fake, &server).await;
    let writes = server.taskrun_writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert!(writes[0].path.ends_with("/taskruns/hello/status"));
    assert_eq!(writes[0].body["metadata"]["resourceVersion"], "7");
    let status = written_status(&writes[0]);
    assert_eq!(status.phase, Some(Phase::Running));
    assert_eq!(status.node_name.as_deref(), Some(NODE));
    assert_eq!(fake.state().containers.len(), 1);
}

#[tokio::test]
async fn a_second_pass_over_what_the_first_wrote_writes_nothing() {
    let (fake, first) = (
        Arc::new(FakeDaemon::with_images(&["busybox"])),
        Arc::<ApiServer>::default(),
    );
    let mut run = taskrun(CLAIMED);
    pass(&run, &fake, &first).await;
    run.status = Some(written_status(&first.taskrun_writes()[0]));

    let second = Arc::<ApiServer>::default();
    pass(&run, &fake, &second).await;
    assert_eq!(
        second.taskrun_writes().len(),
        0,
        "{:#?}",
        second.taskrun_writes()
    );
}

#[tokio::test]
async fn an_exit_is_recorded_once_then_the_container_is_removed() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    let mut run = taskrun(CLAIMED);
    let started = Arc::<ApiServer>::default();
    pass(&run, &fake, &started).await;
    run.status = Some(written_status(&started.taskrun_writes()[0]));
    fake.state().output = "done\n".into();
    {
        let mut state = fake.state();
        let container = state.containers.get_mut(&container_name("u1")).unwrap();
        container.state = ContainerState::Exited {
            exit_code: 0,
            oom_killed: false,
            started_at: Some(Timestamp::now()),
            finished_at: Some(Timestamp::now()),
            error: None,
        };
    }

    let exited = Arc::<ApiServer>::default();
    pass(&run, &fake, &exited).await;
    let writes = exited.taskrun_writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    let status = written_status(&writes[0]);
    assert_eq!(status.phase, Some(Phase::Succeeded));
    assert_eq!(status.log_tail.as_deref(), Some("done\n"));

    run.status = Some(status);
    let removed = Arc::<ApiServer>::default();
    pass(&run, &fake, &removed).await;
    assert_eq!(removed.taskrun_writes().len(), 0);
    assert!(fake.state().containers.is_empty(), "removed once recorded");
}

#[tokio::test]
async fn a_status_write_refused_for_a_newer_taskrun_is_not_retried_in_the_pass() {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    let server = Arc::new(ApiServer {
        refuse_status_writes: true,
        ..ApiServer::default()
    });
    pass(&taskrun(CLAIMED), &fake, &server).await;
    assert_eq!(
        server.taskrun_writes().len(),
        1,
        "one attempt, then the watch brings the news"
    );
}

/// A context whose API server never answers.
fn silent_context() -> (
    Context,
    tower_test::mock::Handle<Request<Body>, Response<Body>>,
) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "team");
    let fake = Arc::new(FakeDaemon::default());
    let executor = Executor::new(fake, NODE, Duration::from_secs(5), OutputLimits::default());
    let leases = Api::namespaced(client.clone(), "team");
    let context = Context::new(client, executor, leases, 8, Duration::from_secs(15));
    (context, handle)
}

#[tokio::test]
async fn events_beyond_the_queue_are_dropped_and_counted_not_spawned() {
    let (context, _handle) = silent_context();
    let run = taskrun(NEW);
    for _ in 0..1100 {
        context
            .events
            .publish(&run, super::events::EventType::Normal, "Started", "note");
    }
    let dropped = context.metrics.events_dropped.get();
    assert!(
        (60..=1100 - 1024).contains(&dropped),
        "{dropped} of 1100 dropped with 1024 queued and a few in flight"
    );
}

#[tokio::test]
async fn the_backoff_of_a_deleted_taskrun_is_forgotten() {
    let (context, _handle) = silent_context();
    let gone = kube::runtime::reflector::ObjectRef::new("gone").within("team");
    let kept = kube::runtime::reflector::ObjectRef::new("kept").within("team");
    let now = Instant::now();
    context.backoff(&gone, now);
    context.backoff(&kept, now);
    context.forget_failures_except(&[kept.clone()].into_iter().collect());
    assert_eq!(context.retry_wait(&gone, now), None);
    assert_eq!(context.retry_wait(&kept, now), Some(Duration::from_secs(1)));
    context.forget_all_failures();
    assert_eq!(context.retry_wait(&kept, now), None, "the daemon is back");
}

#[tokio::test]
async fn a_run_the_policy_refuses_fails_in_one_status_write_and_no_docker_call() {
    let (fake, server) = (
        Arc::new(FakeDaemon::with_images(&["busybox"])),
        Arc::default(),
    );
    let policy = TaskRunPolicy::new(
        CLUSTER_POLICY,
        serde_yaml::from_str("allowedNamespaces: [elsewhere]").unwrap(),
    );
    pass_under(
        Policy::known(CLUSTER_POLICY, Some(policy)),
        &taskrun(CLAIMED),
        &fake,
        &server,
    )
    .await;
    let writes = server.taskrun_writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    let status = written_status(&writes[0]);
    assert_eq!(
        (status.phase, status.reason),
        (Some(Phase::Failed), Some(Reason::PolicyViolation))
    );
    assert_eq!(
        status.message.as_deref(),
        Some("TaskRunPolicy cluster: TaskRuns may not run in this namespace (allowedNamespaces)")
    );
    assert!(
        fake.calls().iter().all(|c| c.starts_with("inspect ")),
        "only looked for the container: {:?}",
        fake.calls()
    );
}

#[tokio::test]
async fn nothing_starts_before_the_policy_was_read() {
    let (fake, server) = (
        Arc::new(FakeDaemon::with_images(&["busybox"])),
        Arc::default(),
    );
    pass_under(
        Policy::new(CLUSTER_POLICY),
        &taskrun(CLAIMED),
        &fake,
        &server,
    )
    .await;
    assert!(server.taskrun_writes().is_empty());
    assert!(fake.state().containers.is_empty());
}

#[test]
fn a_watch_that_keeps_failing_backs_off_though_every_list_starts_as_an_event() {
    use kube::runtime::utils::Backoff;
    let mut backoff = super::WatchBackoff::new(Duration::from_secs(5));
    let first = backoff.next().unwrap();
    let mut last = first;
    for _ in 0..8 {
        backoff.reset();
        last = backoff.next().unwrap();
    }
    assert!(first < Duration::from_millis(600), "first retry {first:?}");
    assert!(
        last >= Duration::from_secs(4),
        "retry after 9 failed lists {last:?}"
    );
}

/// A run of [`NODE`] that succeeded at `ended`, with `deleteAfterSeconds: 60`, claimed by
/// `claimed_by` if any.
fn succeeded_at(ended: Timestamp, claimed_by: Option<&str>) -> TaskRun {
    let claim = claimed_by.map_or(String::new(), |node| {
        format!(", annotations: {{taskrun.dev/node: {node}}}, finalizers: [taskrun.dev/container]")
    });
    taskrun(&format!(
        "metadata: {{name: hello{claim}}}\nspec: {{image: busybox, deleteAfterSeconds: 60}}\nstatus: {{phase: Succeeded, reason: Completed, nodeName: {NODE}, completionTime: '{ended}', observedGeneration: 1}}"
    ))
}

#[tokio::test]
async fn a_run_past_its_delete_after_seconds_costs_one_delete_guarded_by_uid_and_version() {
    let long_ago = Timestamp::now() - jiff::SignedDuration::from_secs(61);
    for claimed_by in [Some(NODE), None] {
        let (fake, server) = (
            Arc::new(FakeDaemon::with_images(&["busybox"])),
            Arc::<ApiServer>::default(),
        );
        pass(&succeeded_at(long_ago, claimed_by), &fake, &server).await;
        let writes = server.taskrun_writes();
        assert_eq!(writes.len(), 1, "claimed by {claimed_by:?}: {writes:#?}");
        assert_eq!(writes[0].method, "DELETE");
        assert!(writes[0].path.ends_with("/namespaces/team/taskruns/hello"));
        assert_eq!(
            writes[0].body["preconditions"],
            json!({"uid": "u1", "resourceVersion": "7"})
        );
        assert!(
            fake.calls().is_empty(),
            "the finalizer removes the container: {:?}",
            fake.calls()
        );
    }
}

#[tokio::test]
async fn a_run_before_its_delete_after_seconds_costs_nothing() {
    let just_now = Timestamp::now();
    for claimed_by in [Some(NODE), None] {
        let (fake, server) = (
            Arc::new(FakeDaemon::with_images(&["busybox"])),
            Arc::<ApiServer>::default(),
        );
        pass(&succeeded_at(just_now, claimed_by), &fake, &server).await;
        let writes = server.taskrun_writes();
        assert!(writes.is_empty(), "claimed by {claimed_by:?}: {writes:#?}");
    }
}

#[tokio::test]
async fn a_status_written_over_an_ended_run_keeps_the_stored_log_tail_and_conditions() {
    let mut stored = taskrun(&format!(
        "{CLAIMED_HEAD}\nspec: {{image: busybox, cancel: true}}\nstatus: {{phase: Succeeded, reason: Completed, nodeName: {NODE}, observedGeneration: 1, logTail: \"last words\\n\", conditions: [{{type: Ready, status: \"True\", reason: Completed, message: done, observedGeneration: 1, lastTransitionTime: \"2026-11-26T01:00:00Z\"}}]}}"
    ));
    stored.metadata.generation = Some(2);
    let mut cached = stored.clone();
    super::leave_out_record(&mut cached);
    let left = cached.status.as_ref().unwrap();
    assert!(left.log_tail.is_none() && left.conditions.is_empty());
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    let server = Arc::new(ApiServer {
        stored: Some(stored),
        ..ApiServer::default()
    });
    pass(&cached, &fake, &server).await;
    let made = server.made.lock().clone();
    let gets = made.iter().filter(|m| m.method == "GET").count();
    assert_eq!(gets, 1, "{made:#?}");
    let writes = server.taskrun_writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    let status = written_status(&writes[0]);
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(status.log_tail.as_deref(), Some("last words\n"));
    let ready = &status.conditions[..];
    assert_eq!(ready.len(), 1, "{ready:#?}");
    assert_eq!(
        (ready[0].type_.as_str(), ready[0].status.as_str()),
        ("Ready", "True")
    );
    assert_eq!(ready[0].observed_generation, Some(2));
    assert_eq!(
        ready[0].last_transition_time.0.to_string(),
        "2026-11-26T01:00:00Z"
    );
}

#[test]
fn the_cache_keeps_what_the_controller_reads() {
    let stored = |phase: &str| -> DeserializeGuard<TaskRun> {
        serde_json::from_value(json!({
            "apiVersion": "taskrun.dev/v1alpha1",
            "kind": "TaskRun",
            "metadata": {
                "name": "hello", "namespace": "team", "uid": "u-1", "resourceVersion": "7",
                "generation": 2, "creationTimestamp": "2026-11-26T01:00:00Z",
                "finalizers": ["taskrun.dev/container"],
                "labels": { "app": "nightly" },
                "annotations": {
                    "taskrun.dev/node": NODE, "taskrun.dev/claim-attempt": "1",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a",
                },
                "managedFields": [{ "manager": "kubectl", "operation": "Update" }],
            },
            "spec": { "image": "busybox" },
            "status": {
                "phase": phase, "logTail": "done\n",
                "conditions": [{
                    "type": "Done", "status": "True", "reason": "Completed", "message": "",
                    "lastTransitionTime": "2026-11-26T01:00:00Z",
                }],
            },
        }))
        .unwrap()
    };
    let mut ended = stored("Succeeded");
    super::slim(&mut ended);
    let ended = ended.0.unwrap();
    let metadata = serde_json::to_value(&ended.metadata).unwrap();
    assert_eq!(
        metadata,
        json!({
            "name": "hello", "namespace": "team", "uid": "u-1", "resourceVersion": "7",
            "generation": 2, "creationTimestamp": "2026-11-26T01:00:00Z",
            "finalizers": ["taskrun.dev/container"],
            "annotations": { "taskrun.dev/node": NODE, "taskrun.dev/claim-attempt": "1" },
        })
    );
    let ended = ended.status.unwrap();
    assert!(ended.log_tail.is_none() && ended.conditions.is_empty());

    let mut running = stored("Running");
    super::slim(&mut running);
    let running = running.0.unwrap().status.unwrap();
    assert_eq!(running.log_tail.as_deref(), Some("done\n"));
    assert_eq!(running.conditions.len(), 1);
}

/// The Lease of `node`'s agent, last renewed at `renewed` for 15 seconds.
fn lease(node: &str, renewed: Timestamp) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": format!("taskrun-node-{node}"), "namespace": "team"},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": 15, "renewTime": renewed.to_string()},
    })
}

/// One pass over `taskrun` by the agent of [`NODE`], which has watched the Leases for a whole
/// duration and sees the other nodes in `states`, answered by `server`.
async fn pass_seeing(
    states: &[(&str, NodeState)],
    taskrun: &TaskRun,
    server: &Arc<ApiServer>,
) -> Arc<FakeDaemon> {
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    let context = agent_context(
        client(server.clone(), taskrun),
        &fake,
        8,
        Policy::known(CLUSTER_POLICY, None),
    );
    context.nodes.set_leases(LeaseView {
        states: states
            .iter()
            .map(|(node, state)| (node.to_string(), *state))
            .collect(),
        settled: true,
    });
    let guard = Arc::new(DeserializeGuard(Ok(taskrun.clone())));
    reconcile(guard, context).await.expect("the pass succeeds");
    fake
}

/// The paths of the reads the pass made of Leases and Nodes.
fn node_reads(server: &ApiServer) -> Vec<String> {
    server
        .made
        .lock()
        .iter()
        .filter(|m| {
            m.method == "GET" && (m.path.contains("/leases/") || m.path.contains("/nodes/"))
        })
        .map(|m| m.path.clone())
        .collect()
}

const ON_NODE_B: &str = "metadata: {name: hello, annotations: {taskrun.dev/node: node-b, taskrun.dev/claim-attempt: '1'}, finalizers: [taskrun.dev/container]}
spec: {image: busybox}
status: {phase: Running, nodeName: node-b, containerName: taskrun-u1, containerId: c1, startTime: '2026-01-01T00:00:00Z'}";

#[tokio::test]
async fn a_run_of_a_lost_node_ends_node_lost_only_once_a_fresh_read_of_its_lease_agrees() {
    let expired = Timestamp::now() - jiff::SignedDuration::from_secs(60);
    for (renewed, ends) in [(expired, true), (Timestamp::now(), false)] {
        let server = Arc::new(ApiServer {
            leases: HashMap::from([("taskrun-node-node-b".into(), lease("node-b", renewed))]),
            ..ApiServer::default()
        });
        let fake = pass_seeing(&[("node-b", NodeState::Lost)], &taskrun(ON_NODE_B), &server).await;
        assert_eq!(
            node_reads(&server),
            ["/apis/coordination.k8s.io/v1/namespaces/team/leases/taskrun-node-node-b"]
        );
        let writes = server.taskrun_writes();
        if ends {
            assert_eq!(writes.len(), 1, "{writes:#?}");
            assert!(writes[0].path.ends_with("/taskruns/hello/status"));
            let ended = written_status(&writes[0]);
            assert_eq!(
                (ended.phase, ended.reason),
                (Some(Phase::Failed), Some(Reason::NodeLost))
            );
            assert_eq!(writes[0].body["metadata"]["resourceVersion"], "7");
        } else {
            assert!(writes.is_empty(), "the node came back: {writes:#?}");
        }
        assert!(
            fake.calls().is_empty(),
            "no Docker call for another node's run"
        );
    }
}

#[tokio::test]
async fn a_claim_naming_a_node_no_agent_announced_is_freed_once_its_lease_is_read_missing() {
    let server = Arc::<ApiServer>::default();
    let claimed = taskrun(
        "metadata: {name: hello, annotations: {taskrun.dev/node: node-z}, finalizers: [taskrun.dev/container]}\nspec: {image: busybox}",
    );
    pass_seeing(&[], &claimed, &server).await;
    assert_eq!(
        node_reads(&server),
        ["/apis/coordination.k8s.io/v1/namespaces/team/leases/taskrun-node-node-z"]
    );
    let writes = server.taskrun_writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert!(writes[0].path.ends_with("/taskruns/hello"));
    let metadata = &writes[0].body["metadata"];
    assert_eq!(metadata["annotations"]["taskrun.dev/node"], Value::Null);
    assert_eq!(metadata["resourceVersion"], "7");
}

#[tokio::test]
async fn a_run_of_a_deleted_node_is_judged_by_a_fresh_read_of_the_node_object() {
    let server = Arc::new(ApiServer {
        leases: HashMap::from([(
            "taskrun-node-node-b".into(),
            lease("node-b", Timestamp::now()),
        )]),
        ..ApiServer::default()
    });
    let fake = Arc::new(FakeDaemon::with_images(&["busybox"]));
    let context = agent_context(
        client(server.clone(), &taskrun(ON_NODE_B)),
        &fake,
        8,
        Policy::known(CLUSTER_POLICY, None),
    );
    context.nodes.set_node_objects(NodeObjects {
        deleted: ["node-b".to_string()].into(),
        ..NodeObjects::default()
    });
    let guard = Arc::new(DeserializeGuard(Ok(taskrun(ON_NODE_B))));
    reconcile(guard, context).await.expect("the pass succeeds");
    assert_eq!(node_reads(&server), ["/api/v1/nodes/node-b"]);
    let writes = server.taskrun_writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(written_status(&writes[0]).reason, Some(Reason::NodeLost));
}

#[tokio::test]
async fn the_attempt_after_a_lost_one_is_handed_over_by_freeing_the_claim() {
    let server = Arc::<ApiServer>::default();
    let handed = taskrun(
        "metadata: {name: hello, annotations: {taskrun.dev/node: node-b, taskrun.dev/claim-attempt: '1'}, finalizers: [taskrun.dev/container]}
spec: {image: busybox}
status: {phase: Pending, attempt: 2, previousAttempts: [{attempt: 1, nodeName: node-b, reason: NodeLost, message: lost, completionTime: '2026-01-01T00:00:00Z'}]}",
    );
    pass_seeing(&[("node-b", NodeState::Lost)], &handed, &server).await;
    assert!(node_reads(&server).is_empty());
    let writes = server.taskrun_writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert!(writes[0].path.ends_with("/taskruns/hello"));
    assert_eq!(
        writes[0].body["metadata"]["annotations"]["taskrun.dev/claim-attempt"],
        Value::Null
    );
}

#[tokio::test]
async fn a_run_pinned_to_a_node_without_an_agent_says_so_once() {
    let pinned = taskrun("metadata: {name: hello}\nspec: {image: busybox, nodeName: node-z}");
    let server = Arc::<ApiServer>::default();
    let fake = pass_seeing(&[], &pinned, &server).await;
    let writes = server.taskrun_writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    let waiting = written_status(&writes[0]);
    assert_eq!(waiting.reason, Some(Reason::NodeUnavailable));
    assert_eq!(
        waiting.message.as_deref(),
        Some("spec.nodeName names node node-z, which has no live agent; waiting for one")
    );
    assert!(fake.calls().is_empty());

    let mut said = pinned.clone();
    said.status = Some(waiting);
    let server = Arc::<ApiServer>::default();
    pass_seeing(&[], &said, &server).await;
    assert!(server.taskrun_writes().is_empty(), "said already");
}

#[tokio::test]
async fn a_cordoned_node_says_why_it_holds_a_run_pinned_to_it_and_starts_nothing() {
    let pinned = taskrun(&format!(
        "metadata: {{name: hello}}\nspec: {{image: busybox, nodeName: {NODE}}}"
    ));
    let (fake, server) = (
        Arc::new(FakeDaemon::with_images(&["busybox"])),
        Arc::<ApiServer>::default(),
    );
    let agent = Agent {
        policy: Policy::known(CLUSTER_POLICY, None),
        vouches: false,
        cordoned: true,
        refusal: None,
    };
    pass_by(agent, &pinned, &fake, &server).await;
    let writes = server.taskrun_writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    let held = written_status(&writes[0]);
    assert_eq!(held.reason, Some(Reason::Unschedulable));
    assert!(
        held.message
            .as_deref()
            .is_some_and(|m| m.contains("cordoned")),
        "{held:?}"
    );
    assert!(fake.state().containers.is_empty());
}

#[tokio::test]
async fn an_ended_run_no_live_agent_attends_has_its_cancel_recorded_as_seen_by_this_agent() {
    let mut ended = taskrun(
        "metadata: {name: hello, annotations: {taskrun.dev/node: node-b}}
spec: {image: busybox, cancel: true}
status: {phase: Succeeded, reason: Completed, nodeName: node-b, observedGeneration: 1}",
    );
    ended.metadata.generation = Some(2);
    let server = Arc::<ApiServer>::default();
    let fake = pass_seeing(&[("node-b", NodeState::Lost)], &ended, &server).await;
    let writes = server.taskrun_writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    let seen = written_status(&writes[0]);
    assert_eq!(seen.observed_generation, Some(2));
    assert_eq!(seen.phase, Some(Phase::Succeeded));
    assert!(fake.calls().is_empty());
}
