//! The operator's own endpoints on one port: `/healthz` (the process serves), `/readyz` (the
//! agent would start a run now: the TaskRun cache has synced, the TaskRunPolicy has been
//! read, the node's Lease is held and the Docker daemon answers) and `/metrics` (OpenMetrics
//! text).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::context::Context;
use super::metrics::PhaseLabel;
use super::policy::PolicyView;
use crate::api::{Phase, TaskRun};

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the handlers read.
#[derive(Clone)]
struct Endpoints {
    context: Arc<Context>,
    store: Store<DeserializeGuard<TaskRun>>,
}

/// Asks the agent at `address` for `path`, as the DaemonSet's exec probes do: `Ok` on an
/// answer of 200, else why not, naming the URL.
pub async fn probe(address: SocketAddr, path: &str) -> Result<(), String> {
    let url = format!("http://{address}{path}");
    let uri: axum::http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = tokio::time::timeout(PROBE_TIMEOUT, client.get(uri))
        .await
        .map_err(|_| format!("{url}: no answer within {PROBE_TIMEOUT:?}"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    if status == StatusCode::OK {
        return Ok(());
    }
    let body = tokio::time::timeout(PROBE_TIMEOUT, response.into_body().collect())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|body| String::from_utf8_lossy(&body.to_bytes()).trim().to_string())
        .unwrap_or_default();
    Err(format!("{url}: {status} {body}").trim_end().to_string())
}

/// How long a probe waits for the agent's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the endpoint address.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Serves the endpoints on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    context: Arc<Context>,
    store: Store<DeserializeGuard<TaskRun>>,
) {
    if let Ok(address) = listener.local_addr() {
        info!(%address, "serving /healthz, /readyz and /metrics");
    }
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Endpoints { context, store });
    if let Err(e) = axum::serve(listener, router).await {
        warn!(error = %e, "the health and metrics endpoints stopped");
    }
}

async fn readyz(State(endpoints): State<Endpoints>) -> (StatusCode, String) {
    match readiness(&endpoints.context, &endpoints.store).await {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

async fn readiness(
    context: &Context,
    store: &Store<DeserializeGuard<TaskRun>>,
) -> Result<(), String> {
    if let Some(why) = context.nodes.refusal() {
        return Err(format!("this node takes no runs: {why}"));
    }
    // A fresh future sees readiness at once; a long wait on one is not needed here.
    let synced = tokio::time::timeout(Duration::from_millis(50), store.wait_until_ready()).await;
    if !matches!(synced, Ok(Ok(()))) {
        return Err("the TaskRun watch has not synced yet".into());
    }
    if matches!(context.policy.view(), PolicyView::Unknown) {
        return Err(format!(
            "the TaskRunPolicy {} has not been read yet",
            context.policy.name
        ));
    }
    if !context.nodes.own_lease_current(Instant::now()) {
        return Err("this node's Lease is not held yet".into());
    }
    match tokio::time::timeout(Duration::from_secs(2), context.executor.ping()).await {
        Ok(Ok(())) => Ok(()),
        _ => Err("the Docker daemon does not answer".into()),
    }
}

async fn metrics(State(Endpoints { context, store }): State<Endpoints>) -> Response {
    set_gauges(&context, &store);
    match context.metrics.encode() {
        Ok(text) => ([(CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(e) => {
            warn!(error = %e, "could not encode the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Sets the gauges to what this node and the TaskRun cache show now.
fn set_gauges(context: &Context, store: &Store<DeserializeGuard<TaskRun>>) {
    let metrics = &context.metrics;
    metrics
        .runs_held
        .set(i64::try_from(context.nodes.held()).unwrap_or(i64::MAX));
    let mut phases = [
        (Phase::Pending, 0),
        (Phase::Running, 0),
        (Phase::Succeeded, 0),
        (Phase::Failed, 0),
        (Phase::Cancelled, 0),
    ];
    for guard in store.state() {
        if let Ok(taskrun) = &guard.0 {
            let phase = taskrun
                .status
                .as_ref()
                .map_or(Phase::Pending, |s| s.phase());
            if let Some(entry) = phases.iter_mut().find(|(p, _)| *p == phase) {
                entry.1 += 1;
            }
        }
    }
    for (phase, count) in phases {
        let label = PhaseLabel {
            phase: phase.to_string(),
        };
        metrics.taskruns.get_or_create(&label).set(count);
    }
}
