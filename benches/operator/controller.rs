//! The operator binary run as `taskrun controller` for the bench's namespace and node, with
//! what the kernel says about it (CPU time, RSS) and the API requests its log records.

use crate::common;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::Result;
use crate::requests::Requests;

/// Clock ticks per second in `/proc/PID/stat`: `USER_HZ`, 100 on every Linux architecture
/// that matters here.
const USER_HZ: f64 = 100.0;

/// Log filter for the controller: its usual one, plus kube-client's line per HTTP request,
/// which is how the bench counts the controller's own API requests.
const RUST_LOG: &str = "info,kube=warn,kube_client::client::builder=debug";

/// A running controller process.
pub struct Controller {
    child: Child,
    pid: u32,
    /// Just before the process was spawned.
    spawned: Instant,
    log: PathBuf,
    /// Where it serves `/readyz` and `/metrics`.
    endpoint: String,
}

/// Counters from the controller's own `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OperatorMetrics {
    pub reconciles: u64,
    pub status_writes: u64,
}

/// The controller's resident memory.
#[derive(Clone, Copy, Debug)]
pub struct Rss {
    /// `VmRSS`: now.
    pub current_kib: u64,
    /// `VmHWM`: the most it has held since it started.
    pub peak_kib: u64,
}

impl Controller {
    /// Starts `taskrun controller` with its log, JSON lines, in `log`, and its endpoints on a
    /// free loopback port.
    pub fn start(kubeconfig: &Path, namespace: &str, node: &str, log: PathBuf) -> Result<Self> {
        let file = std::fs::File::create(&log)
            .map_err(|e| format!("failed to create {}: {e}", log.display()))?;
        let endpoint = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .to_string();
        let spawned = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_taskrun"))
            .args(["controller", "--namespace", namespace, "--node-name", node])
            .args(["--class", crate::cluster::CLASS])
            .args(["--sweep-interval-seconds", "60", "--log-format", "json"])
            .args(["--health-addr", &endpoint])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", RUST_LOG)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("failed to start the taskrun controller: {e}"))?;
        let pid = child.id().ok_or("the controller exited at once")?;
        Ok(Self {
            child,
            pid,
            spawned,
            log,
            endpoint,
        })
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// CPU time used so far, user and system, in clock ticks.
    pub fn cpu_ticks(&self) -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .map_err(|e| format!("failed to read /proc/{}/stat: {e}", self.pid))?;
        // Fields after the command name, which is in parentheses and may hold spaces:
        // state is field 3 of the whole line, utime 14 and stime 15.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |n: usize| -> Result<u64> {
            Ok(fields
                .get(n - 3)
                .ok_or("short /proc/PID/stat")?
                .parse::<u64>()?)
        };
        Ok(field(14)? + field(15)?)
    }

    /// CPU seconds used so far.
    pub fn cpu_seconds(&self) -> Result<f64> {
        Ok(ticks_to_seconds(self.cpu_ticks()?))
    }

    /// Resident memory now and at its peak.
    pub fn rss(&self) -> Result<Rss> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .map_err(|e| format!("failed to read /proc/{}/status: {e}", self.pid))?;
        let kib = |key: &str| -> Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(key))
                .ok_or_else(|| format!("no {key} in /proc/PID/status"))?;
            Ok(line
                .split_whitespace()
                .nth(1)
                .ok_or("malformed /proc/PID/status")?
                .parse::<u64>()?)
        };
        Ok(Rss {
            current_kib: kib("VmRSS:")?,
            peak_kib: kib("VmHWM:")?,
        })
    }

    /// Bytes of log written so far: a mark to count requests from.
    pub fn log_mark(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }

    /// The API requests the controller has made since `mark`.
    pub fn requests_since(&self, mark: u64) -> Result<Requests> {
        let log = std::fs::read(&self.log)
            .map_err(|e| format!("failed to read {}: {e}", self.log.display()))?;
        let start = usize::try_from(mark).unwrap_or(usize::MAX).min(log.len());
        Ok(Requests::from_log(&String::from_utf8_lossy(&log[start..])))
    }

    /// Waits until the controller says it is ready (`/readyz`: its TaskRun cache has synced
    /// and Docker answers), asking every 50 ms; returns how long after it was spawned.
    pub async fn ready(&mut self, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        loop {
            if let Some((200, _)) = common::http_get(&self.endpoint, "/readyz").await {
                return Ok(self.spawned.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(format!(
                    "the controller exited with {status}; see {}",
                    self.log.display()
                )
                .into());
            }
            if started.elapsed() > timeout {
                return Err(format!(
                    "the controller was not ready within {timeout:?}; see {}",
                    self.log.display()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The controller's own counters.
    pub async fn metrics(&self) -> Result<OperatorMetrics> {
        let (status, body) = common::http_get(&self.endpoint, "/metrics")
            .await
            .ok_or("GET /metrics from the controller failed")?;
        if status != 200 {
            return Err(format!("the controller's /metrics answered {status}").into());
        }
        let counter = |name: &str| {
            body.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|value| value.trim().parse::<f64>().ok())
                .map_or(0, |value| value as u64)
        };
        Ok(OperatorMetrics {
            reconciles: counter("taskrun_reconciles_total"),
            status_writes: counter("taskrun_status_writes_total"),
        })
    }

    /// Waits until the controller has made `reconciles` reconcile passes, asking its
    /// `/metrics` every 100 ms: nothing else shows that it has looked at TaskRuns that need
    /// no change. Returns how long after it was spawned.
    pub async fn reconciled(&self, reconciles: u64, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let done = self.metrics().await?.reconciles;
            if done >= reconciles {
                return Ok(self.spawned.elapsed());
            }
            if started.elapsed() > timeout {
                return Err(format!(
                    "the controller made {done} of {reconciles} reconciles within {timeout:?}"
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the controller is idle: no CPU used and no request made for `quiet`
    /// (at most `max`). Nothing announces that, so CPU time and log are sampled every 100 ms.
    /// Returns when, after it was spawned, it was last seen busy: at most the time it took to
    /// finish what it had to do (its node Lease renewal may come after).
    pub async fn settle(&self, quiet: Duration, max: Duration) -> Result<Duration> {
        let started = Instant::now();
        let mut last = (self.cpu_ticks()?, self.log_mark());
        let mut quiet_since = Instant::now();
        while started.elapsed() < max {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = (self.cpu_ticks()?, self.log_mark());
            if now != last {
                last = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= quiet {
                return Ok(quiet_since.duration_since(self.spawned));
            }
        }
        say!(
            "controller {} still busy after {max:?}; measuring anyway",
            self.pid
        );
        Ok(self.spawned.elapsed())
    }

    /// Stops the controller with SIGTERM, as a kubelet would, and waits for it to exit.
    pub async fn stop(mut self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await?;
        if !status.success() {
            return Err(format!("kill -TERM {} failed", self.pid).into());
        }
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(exit) => {
                exit?;
                Ok(())
            }
            Err(_) => Err(format!(
                "controller {} did not stop within 15 s of SIGTERM; killed",
                self.pid
            )
            .into()),
        }
    }
}

/// Clock ticks from `/proc/PID/stat` as seconds.
pub fn ticks_to_seconds(ticks: u64) -> f64 {
    ticks as f64 / USER_HZ
}
