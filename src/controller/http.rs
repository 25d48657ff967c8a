//! The operator's own endpoints on one port: `/healthz` (the process serves), `/readyz` (the
//! TaskRun cache has synced and the Docker daemon answers) and `/metrics` (Prometheus text).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

use super::context::{Context, DURATION_BUCKETS};
use crate::api::{Phase, TaskRun};

/// Serves the endpoints on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    context: Arc<Context>,
    store: Store<DeserializeGuard<TaskRun>>,
) {
    if let Ok(address) = listener.local_addr() {
        info!(%address, "serving /healthz, /readyz and /metrics");
    }
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let context = context.clone();
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(e) = respond(stream, &context, &store).await {
                warn!(error = %e, "health endpoint request failed");
            }
        });
    }
}

/// Binds the endpoint address.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

async fn respond(
    mut stream: TcpStream,
    context: &Context,
    store: &Store<DeserializeGuard<TaskRun>>,
) -> std::io::Result<()> {
    let mut request = [0u8; 2048];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut request))
        .await
        .unwrap_or(Ok(0))?;
    let head = String::from_utf8_lossy(&request[..read]);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/healthz" => ("200 OK", "ok\n".to_string()),
        "/readyz" => match readiness(context, store).await {
            Ok(()) => ("200 OK", "ok\n".to_string()),
            Err(reason) => ("503 Service Unavailable", format!("{reason}\n")),
        },
        "/metrics" => ("200 OK", metrics_text(context, store)),
        _ => ("404 Not Found", "not found\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn readiness(
    context: &Context,
    store: &Store<DeserializeGuard<TaskRun>>,
) -> Result<(), &'static str> {
    // A fresh future sees readiness at once; a long wait on one is not needed here.
    let synced = tokio::time::timeout(Duration::from_millis(50), store.wait_until_ready()).await;
    if !matches!(synced, Ok(Ok(()))) {
        return Err("the TaskRun watch has not synced yet");
    }
    match tokio::time::timeout(Duration::from_secs(2), context.executor.ping()).await {
        Ok(Ok(())) => Ok(()),
        _ => Err("the Docker daemon does not answer"),
    }
}

fn metrics_text(context: &Context, store: &Store<DeserializeGuard<TaskRun>>) -> String {
    let metrics = &context.metrics;
    let mut text = String::new();
    let counters = [
        (
            "taskrun_reconciles_total",
            "Reconcile passes run.",
            &metrics.reconciles,
        ),
        (
            "taskrun_reconcile_errors_total",
            "Reconcile passes that failed and were retried.",
            &metrics.reconcile_errors,
        ),
        (
            "taskrun_status_writes_total",
            "Status writes to the API server.",
            &metrics.status_writes,
        ),
        (
            "taskrun_containers_started_total",
            "Containers started.",
            &metrics.containers_started,
        ),
        (
            "taskrun_containers_removed_total",
            "Containers removed.",
            &metrics.containers_removed,
        ),
        (
            "taskrun_events_published_total",
            "Kubernetes Events published.",
            &metrics.events_published,
        ),
        (
            "taskrun_events_dropped_total",
            "Kubernetes Events dropped because too many were waiting to be published.",
            &metrics.events_dropped,
        ),
    ];
    for (name, help, counter) in counters {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            counter.load(Ordering::Relaxed)
        );
    }

    let mut phases = [
        (Phase::Pending, 0u64),
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
    let _ = writeln!(
        text,
        "# HELP taskrun_runs_held Runs this node has claimed and not finished.\n# TYPE taskrun_runs_held gauge\ntaskrun_runs_held {}",
        context.nodes.held()
    );
    let _ = writeln!(
        text,
        "# HELP taskrun_taskruns TaskRuns watched, by phase.\n# TYPE taskrun_taskruns gauge"
    );
    for (phase, count) in phases {
        let _ = writeln!(text, "taskrun_taskruns{{phase=\"{phase}\"}} {count}");
    }

    let name = "taskrun_run_duration_seconds";
    let _ = writeln!(
        text,
        "# HELP {name} Time from container start to the end of the run.\n# TYPE {name} histogram"
    );
    let mut cumulative = 0;
    for (bound, bucket) in DURATION_BUCKETS.iter().zip(&metrics.run_duration_buckets) {
        cumulative += bucket.load(Ordering::Relaxed);
        let _ = writeln!(text, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let count = metrics.run_duration_count.load(Ordering::Relaxed);
    let _ = writeln!(text, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let sum_millis = metrics.run_duration_millis.load(Ordering::Relaxed);
    let _ = writeln!(
        text,
        "{name}_sum {}.{:03}\n{name}_count {count}",
        sum_millis / 1000,
        sum_millis % 1000
    );
    text
}
