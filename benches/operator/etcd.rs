//! The API server's etcd, seen through its client URL: how much of its database is in use
//! (`/metrics`), and a compaction of its history, which the API server itself does every five
//! minutes, so what is left is what the objects need now.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use crate::Result;

/// The gauge etcd keeps of the bytes of its database that hold data, free pages left out.
const IN_USE: &str = "etcd_mvcc_db_total_size_in_use_in_bytes";

/// How many times etcd has committed its backend: the count of a histogram.
const COMMITS: &str = "etcd_disk_backend_commit_duration_seconds_count";

/// Commits after which the size in use shows what was written and freed before.
const SETTLING_COMMITS: usize = 3;

/// What the bench reads from etcd's `/metrics`.
struct Reading {
    in_use_bytes: u64,
    commits: Option<u64>,
}

/// How long one request to etcd may take; a compaction of a large history takes longest.
const TIMEOUT: Duration = Duration::from_secs(60);

/// etcd's client URL, plain HTTP on loopback as the local control plane serves it.
pub struct Etcd {
    url: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Etcd {
    /// The etcd at `url` or, without one, the local control plane's: `ports.env` beside the
    /// kubeconfig names its client port. `None` when neither is known.
    pub fn find(url: Option<&str>, kubeconfig: &Path) -> Option<Self> {
        let url = match url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let ports = kubeconfig.parent()?.join("ports.env");
                let port = etcd_port(&std::fs::read_to_string(ports).ok()?)?;
                format!("http://127.0.0.1:{port}")
            }
        };
        let client = Client::builder(TokioExecutor::new()).build_http();
        Some(Self { url, client })
    }

    /// The client URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn call(&self, method: http::Method, path: &str, body: Option<String>) -> Result<String> {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, crate::Error>((status, String::from_utf8_lossy(&body).into_owned()))
        };
        let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| {
                format!(
                    "etcd at {} did not answer {path} within {TIMEOUT:?}",
                    self.url
                )
            })?
            .map_err(|e| format!("failed to reach etcd at {}{path}: {e}", self.url))?;
        if !status.is_success() {
            return Err(format!("etcd answered {path} with {status}: {}", body.trim()).into());
        }
        Ok(body)
    }

    /// The gauges read from etcd's `/metrics` now.
    async fn read(&self) -> Result<Reading> {
        let metrics = self.call(http::Method::GET, "/metrics", None).await?;
        let in_use_bytes =
            gauge(&metrics, IN_USE).ok_or_else(|| format!("no {IN_USE} in etcd's /metrics"))?;
        Ok(Reading {
            in_use_bytes,
            commits: gauge(&metrics, COMMITS),
        })
    }

    /// Bytes in use once etcd has committed [`SETTLING_COMMITS`] times after this call. etcd
    /// sets the gauge when it begins a transaction and only commits when something was
    /// written; a page a commit frees (a compaction's, say) counts as used until the read
    /// transaction open at that commit has closed, which takes another commit or two. `write`
    /// makes one write through the API server, so each commit comes within etcd's batch
    /// interval (100 ms), not whenever another client writes. At most 10 s.
    pub async fn in_use_bytes_after<F, W>(&self, write: W) -> Result<u64>
    where
        F: Future<Output = Result<()>>,
        W: Fn() -> F,
    {
        let started = Instant::now();
        let mut reading = self.read().await?;
        for _ in 0..SETTLING_COMMITS {
            let before = reading.commits;
            write().await?;
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                reading = self.read().await?;
                if started.elapsed() > Duration::from_secs(10) {
                    return Ok(reading.in_use_bytes);
                }
                if matches!((before, reading.commits), (Some(b), Some(n)) if n > b) {
                    break;
                }
            }
        }
        Ok(reading.in_use_bytes)
    }

    /// Compacts every key's history up to the current revision, as the API server does every
    /// five minutes, so that the size in use after the next commit is what the live objects
    /// take.
    pub async fn compact(&self) -> Result<()> {
        let range = json!({ "key": "AA==", "limit": 1, "keys_only": true }).to_string();
        let answer = self
            .call(http::Method::POST, "/v3/kv/range", Some(range))
            .await?;
        let revision = serde_json::from_str::<serde_json::Value>(&answer)?["header"]["revision"]
            .as_str()
            .ok_or("etcd's range answer has no revision")?
            .to_string();
        let compaction = json!({ "revision": revision, "physical": true }).to_string();
        match self
            .call(http::Method::POST, "/v3/kv/compaction", Some(compaction))
            .await
        {
            Err(e) if e.to_string().contains("has been compacted") => Ok(()),
            other => other.map(drop),
        }
    }
}

/// etcd's client port from the line `use_ports APISERVER ETCD ETCD_PEER` of `ports.env`.
fn etcd_port(ports_env: &str) -> Option<u16> {
    ports_env
        .lines()
        .find_map(|line| line.trim().strip_prefix("use_ports "))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The value of an unlabelled sample in the Prometheus text format.
fn gauge(metrics: &str, name: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
}
