//! The `taskrun` command: `controller` (the agent of one node), `run` (task.yaml files and
//! TaskRun manifests on the local Docker daemon, without a cluster), `crd`, `admission` and
//! `policy` (manifests generated from the Rust types and rules), and `probe` (the DaemonSet's
//! health checks). It turns flags and their defaults into the library's configuration and
//! decides nothing about runs.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kube::CustomResourceExt;
use taskrun_operator::api::{
    ADMISSION_POLICY, CLUSTER_POLICY, TaskRun, TaskRunPolicy, TaskRunPolicySpec, admission_policy,
    admission_policy_binding,
};
use taskrun_operator::controller::{self, ControllerConfig};
use taskrun_operator::docker::{
    DEFAULT_CONTAINER_LOG_BYTES, DEFAULT_LOG_TAIL_BYTES, MAX_LOG_TAIL_BYTES,
};
use taskrun_operator::lifecycle::OutputLimits;
use taskrun_operator::standalone::{self, OutputFormat, RunOptions};
use taskrun_operator::telemetry::{self, LogFormat};

/// Runs TaskRun custom resources as Docker containers, in a cluster or locally.
#[derive(Parser)]
#[command(name = "taskrun", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator for one node: watch TaskRuns and run them on this node's Docker daemon.
    Controller {
        /// Name of the node this agent serves.
        #[arg(long, env = "NODE_NAME")]
        node_name: Option<String>,
        /// Longest an image pull may take, in seconds.
        #[arg(long, default_value_t = 300)]
        pull_timeout_seconds: u64,
        /// Seconds between looks for containers whose TaskRun is gone.
        #[arg(long, default_value_t = 60)]
        sweep_interval_seconds: u64,
        /// Most runs this node takes at once (default: 8 per CPU).
        #[arg(long)]
        max_running: Option<usize>,
        /// Namespace of the agents' Leases (default: the watched namespace, else `default`).
        #[arg(long, env = "POD_NAMESPACE")]
        lease_namespace: Option<String>,
        /// Seconds an agent that stopped renewing its Lease still counts as alive.
        #[arg(long, default_value_t = 15)]
        lease_duration_seconds: u64,
        /// Most bytes of output the Docker daemon keeps per container (two rotated files);
        /// `status.logTail` is read from the newest.
        #[arg(long, default_value_t = DEFAULT_CONTAINER_LOG_BYTES, value_parser = clap::value_parser!(u64).range(8192..))]
        container_log_max_bytes: u64,
        /// Most bytes of the end of a container's output recorded in its run's
        /// `status.logTail` (0 records none and reads no logs).
        #[arg(long, default_value_t = DEFAULT_LOG_TAIL_BYTES, value_parser = parse_log_tail_bytes)]
        log_tail_bytes: usize,
        /// Address of the /healthz, /readyz and /metrics endpoints. Loopback by default, out of
        /// reach of the task containers; the DaemonSet's probes ask through `taskrun probe`.
        #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_socket_address)]
        health_addr: std::net::SocketAddr,
        /// Watch only this namespace instead of every namespace.
        #[arg(long, env = "WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// Take only TaskRuns labelled `taskrun.dev/class=CLASS` (a separate set of agents, like
        /// a Pod's schedulerName); without it, only TaskRuns without that label.
        #[arg(long, value_parser = parse_class)]
        class: Option<String>,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// API server address given to tasks with a `serviceAccountName`, as
        /// `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT` (`HOST:PORT` or
        /// `https://HOST:PORT`); the host must be a name or address the server's certificate
        /// carries. Default: the address this agent uses.
        #[arg(long, value_parser = parse_host_port)]
        task_api_server: Option<(String, u16)>,
        /// The address the host of `--task-api-server` stands for inside task containers, added
        /// to their /etc/hosts, when it is a name they cannot resolve.
        #[arg(long)]
        task_api_server_ip: Option<std::net::IpAddr>,
        /// Name of the TaskRunPolicy to enforce before creating a container (see `taskrun crd
        /// taskrunpolicy`). Without that object, or its kind, runs are held to the built-in
        /// policy that `taskrun policy` prints.
        #[arg(long = "policy", value_name = "NAME", default_value = CLUSTER_POLICY)]
        policy_name: String,
        /// Run tasks even on a Docker daemon whose containers get no seccomp filter; without it
        /// the agent takes no run there and is not ready.
        #[arg(long)]
        allow_unconfined_seccomp: bool,
    },
    /// Print a CustomResourceDefinition as YAML: TaskRun's, or TaskRunPolicy's.
    Crd {
        /// Which one.
        #[arg(value_enum, default_value_t = CrdKind::Taskrun)]
        kind: CrdKind,
    },
    /// Run task.yaml files or TaskRun manifests on the local Docker daemon, without a cluster.
    ///
    /// Exits 0 when every task succeeded, 1 when any failed, 2 when the input cannot run.
    Run {
        /// task.yaml files (version v0.0.1) or TaskRun manifests; `-` reads standard input.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
        /// How many tasks run at once.
        #[arg(short, long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
        parallel: u16,
        /// How to report on the tasks.
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        /// Node name recorded in the containers' `taskrun.dev/node` label.
        #[arg(long, default_value = "local", hide = true)]
        node_name: String,
        /// A TaskRunPolicy manifest to hold every task to, as the agents hold TaskRuns to the
        /// cluster's (a task breaking it ends Failed/PolicyViolation, and nothing is created).
        #[arg(long, value_name = "FILE")]
        policy: Option<String>,
    },
    /// Print the ValidatingAdmissionPolicy that enforces the TaskRunPolicy `cluster` at
    /// admission, with its binding, as YAML (`deploy/admission.yaml`).
    Admission,
    /// Ask the agent's endpoints for PATH, as the DaemonSet's liveness and readiness probes do.
    ///
    /// Exits 0 when the agent answers 200, 1 otherwise, saying why.
    Probe {
        /// `/healthz` or `/readyz`.
        path: String,
        /// The agent's `--health-addr`.
        #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_socket_address)]
        address: std::net::SocketAddr,
    },
    /// Print the policy the agents follow where the cluster has no TaskRunPolicy `cluster`,
    /// as a manifest of that name to apply and tighten (`deploy/policies/cluster.yaml`).
    Policy,
}

/// The custom resources of the operator.
#[derive(Clone, Copy, clap::ValueEnum)]
enum CrdKind {
    Taskrun,
    Taskrunpolicy,
}

/// Prints `objects` as YAML documents after `header`.
fn print_yaml<T: serde::Serialize>(header: &str, objects: &[T]) -> ExitCode {
    let mut out = String::from(header);
    for (i, object) in objects.iter().enumerate() {
        match serde_yaml::to_string(object) {
            Ok(yaml) => {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&yaml);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    print!("{out}");
    ExitCode::SUCCESS
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run {
            files,
            parallel,
            output,
            node_name,
            policy,
        } => {
            standalone::run(RunOptions {
                files,
                parallel: usize::from(parallel),
                output,
                node_name,
                policy,
            })
            .await
        }
        Command::Crd {
            kind: CrdKind::Taskrun,
        } => print_yaml("", &[TaskRun::crd()]),
        Command::Crd {
            kind: CrdKind::Taskrunpolicy,
        } => print_yaml("", &[TaskRunPolicy::crd()]),
        Command::Probe { path, address } => match controller::probe(address, &path).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(why) => {
                eprintln!("{why}");
                ExitCode::FAILURE
            }
        },
        Command::Policy => print_yaml(
            POLICY_HEADER,
            &[TaskRunPolicy::new(
                CLUSTER_POLICY,
                TaskRunPolicySpec::built_in(),
            )],
        ),
        Command::Admission => {
            let policy = serde_json::to_value(admission_policy());
            let binding = serde_json::to_value(admission_policy_binding(
                ADMISSION_POLICY,
                CLUSTER_POLICY,
                None,
            ));
            match (policy, binding) {
                (Ok(policy), Ok(binding)) => print_yaml(ADMISSION_HEADER, &[policy, binding]),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Controller {
            node_name,
            pull_timeout_seconds,
            sweep_interval_seconds,
            max_running,
            lease_namespace,
            lease_duration_seconds,
            container_log_max_bytes,
            log_tail_bytes,
            health_addr,
            namespace,
            class,
            log_format,
            task_api_server,
            task_api_server_ip,
            policy_name,
            allow_unconfined_seccomp,
        } => {
            telemetry::init(log_format, "info,kube=warn");
            let config = ControllerConfig {
                node_name: node_name.unwrap_or_else(default_node_name),
                pull_timeout: Duration::from_secs(pull_timeout_seconds),
                sweep_interval: Duration::from_secs(sweep_interval_seconds.max(1)),
                lease_namespace: lease_namespace
                    .or_else(|| namespace.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "default".into()),
                namespace: namespace.filter(|n| !n.is_empty()),
                class,
                health_address: health_addr,
                max_running: max_running.unwrap_or_else(default_max_running).max(1),
                lease_duration: Duration::from_secs(lease_duration_seconds.max(1)),
                output: OutputLimits {
                    node_bytes: container_log_max_bytes,
                    tail_bytes: log_tail_bytes,
                },
                task_api_server,
                task_api_server_ip,
                policy_name,
                allow_unconfined_seccomp,
            };
            match controller::run(config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "controller failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// What `taskrun admission` prints first.
const ADMISSION_HEADER: &str = "\
# Generated by `taskrun admission` (`make crds`) from the rules in src/api/policy.rs: the API
# server refuses a new TaskRun that breaks the TaskRunPolicy named `cluster`, naming the rule
# and the field. Without that object every TaskRun is admitted; the agents check the same
# rules again before they create a container, and hold runs to their built-in policy
# (`taskrun policy`) where there is no such object.
";

const POLICY_HEADER: &str = "\
# Generated by `taskrun policy` (`make crds`): the policy every agent follows while the cluster
# has no TaskRunPolicy named `cluster`. Apply it to make it visible and to tighten it
# (`kubectl apply -f deploy/policies/cluster.yaml`); the admission policy then refuses at
# creation what breaks it.
";

/// A label value: at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter
/// or digit.
fn parse_class(text: &str) -> Result<String, String> {
    let edges_alphanumeric = text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric());
    let allowed = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if text.len() <= 63 && edges_alphanumeric && allowed {
        Ok(text.to_string())
    } else {
        Err(format!("{text:?} is not a label value"))
    }
}

/// A byte count from 0 to [`MAX_LOG_TAIL_BYTES`].
fn parse_log_tail_bytes(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(bytes) if bytes <= MAX_LOG_TAIL_BYTES => Ok(bytes),
        Ok(_) => Err(format!("at most {MAX_LOG_TAIL_BYTES} bytes")),
        Err(e) => Err(format!("{text:?}: {e}")),
    }
}

/// `ADDRESS:PORT`, the address in brackets or not, so `$(POD_IP):8080` works for IPv6 pods.
fn parse_socket_address(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse().or_else(|_| {
        let (ip, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not ADDRESS:PORT"))?;
        let ip: std::net::IpAddr = ip.parse().map_err(|e| format!("{ip:?}: {e}"))?;
        let port: u16 = port.parse().map_err(|e| format!("{port:?}: {e}"))?;
        Ok((ip, port).into())
    })
}

/// `HOST:PORT`, `[IPV6]:PORT` or `https://HOST[:PORT]` (port 443 when left out).
fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let rest = text.strip_prefix("https://").unwrap_or(text);
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(']') => (
            host,
            port.parse::<u16>()
                .map_err(|e| format!("{port:?} is not a port: {e}"))?,
        ),
        _ if text.starts_with("https://") => (rest, 443),
        _ => return Err(format!("{text:?} is not HOST:PORT or https://HOST[:PORT]")),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') {
        return Err(format!("{text:?} names no host"));
    }
    Ok((host.to_string(), port))
}

fn default_max_running() -> usize {
    std::thread::available_parallelism().map_or(1, |cpus| cpus.get()) * 8
}

fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::{parse_host_port, parse_socket_address};

    #[test]
    fn task_api_servers_with_or_without_a_scheme() {
        assert_eq!(
            parse_host_port("kubernetes.default.svc:6443").unwrap(),
            ("kubernetes.default.svc".to_string(), 6443)
        );
        assert_eq!(
            parse_host_port("https://10.96.0.1").unwrap(),
            ("10.96.0.1".to_string(), 443)
        );
        assert_eq!(
            parse_host_port("https://[fd00::1]:6443/").unwrap(),
            ("fd00::1".to_string(), 6443)
        );
        assert!(parse_host_port("kubernetes").is_err());
        assert!(parse_host_port("host:port").is_err());
    }

    #[test]
    fn socket_addresses_with_or_without_brackets() {
        assert_eq!(
            parse_socket_address("10.0.0.7:8080").unwrap().to_string(),
            "10.0.0.7:8080"
        );
        assert_eq!(
            parse_socket_address("fd00::7:8080").unwrap().to_string(),
            "[fd00::7]:8080"
        );
        assert_eq!(
            parse_socket_address("[fd00::7]:8080").unwrap().to_string(),
            "[fd00::7]:8080"
        );
        assert!(parse_socket_address("pod:8080").is_err());
    }
}
