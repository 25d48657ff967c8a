//! The command-line arguments of `taskrun controller`, beside the controller they configure,
//! and how they become its [`ControllerConfig`]: flags, their environment variables and their
//! defaults (the node's name from the kernel, eight runs per CPU).

use std::time::Duration;

use super::ControllerConfig;
use crate::api::CLUSTER_POLICY;
use crate::docker::{DEFAULT_CONTAINER_LOG_BYTES, DEFAULT_LOG_TAIL_BYTES, MAX_LOG_TAIL_BYTES};
use crate::lifecycle::OutputLimits;
use crate::telemetry::LogFormat;

/// Run the operator for one node: watch TaskRuns and run them on this node's Docker daemon.
#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Name of the node this agent serves.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// Longest an image pull may take, in seconds.
    #[arg(long, default_value_t = 300)]
    pub pull_timeout_seconds: u64,
    /// Seconds between looks for containers whose TaskRun is gone.
    #[arg(long, default_value_t = 60)]
    pub sweep_interval_seconds: u64,
    /// Most runs this node takes at once (default: 8 per CPU).
    #[arg(long)]
    pub max_running: Option<usize>,
    /// Namespace of the agents' Leases (default: the watched namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Seconds an agent that stopped renewing its Lease still counts as alive.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Most bytes of output the Docker daemon keeps per container (two rotated files);
    /// `status.logTail` is read from the newest.
    #[arg(long, default_value_t = DEFAULT_CONTAINER_LOG_BYTES, value_parser = clap::value_parser!(u64).range(8192..))]
    pub container_log_max_bytes: u64,
    /// Most bytes of the end of a container's output recorded in its run's
    /// `status.logTail` (0 records none and reads no logs).
    #[arg(long, default_value_t = DEFAULT_LOG_TAIL_BYTES, value_parser = parse_log_tail_bytes)]
    pub log_tail_bytes: usize,
    /// Address of the /healthz, /readyz and /metrics endpoints. Loopback by default, out of
    /// reach of the task containers; the DaemonSet's probes ask through `taskrun probe`.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_socket_address)]
    pub health_addr: std::net::SocketAddr,
    /// Watch only this namespace instead of every namespace.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Take only TaskRuns labelled `taskrun.dev/class=CLASS` (a separate set of agents, like
    /// a Pod's schedulerName); without it, only TaskRuns without that label.
    #[arg(long, value_parser = parse_class)]
    pub class: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// API server address given to tasks with a `serviceAccountName`, as
    /// `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT` (`HOST:PORT` or
    /// `https://HOST:PORT`); the host must be a name or address the server's certificate
    /// carries. Default: the address this agent uses.
    #[arg(long, value_parser = parse_host_port)]
    pub task_api_server: Option<(String, u16)>,
    /// The address the host of `--task-api-server` stands for inside task containers, added
    /// to their /etc/hosts, when it is a name they cannot resolve.
    #[arg(long)]
    pub task_api_server_ip: Option<std::net::IpAddr>,
    /// Name of the TaskRunPolicy to enforce before creating a container (see `taskrun crd
    /// taskrunpolicy`). Without that object, or its kind, runs are held to the built-in
    /// policy that `taskrun policy` prints.
    #[arg(long = "policy", value_name = "NAME", default_value = CLUSTER_POLICY)]
    pub policy_name: String,
    /// Run tasks even on a Docker daemon whose containers get no seccomp filter; without it
    /// the agent takes no run there and is not ready.
    #[arg(long)]
    pub allow_unconfined_seccomp: bool,
    /// An image with `nft` (nftables) that the agent runs, on the host's network with only
    /// NET_ADMIN, to make the node's firewall refuse what the TaskRunPolicy's
    /// `deniedEgressCIDRs` deny to Bridge tasks. Without it, Bridge runs wait
    /// (`EgressUnenforced`) under a policy that denies any address.
    #[arg(long, value_name = "IMAGE")]
    pub firewall_image: Option<String>,
}

impl ControllerArgs {
    /// The controller's configuration, with every default filled in.
    pub fn into_config(self) -> ControllerConfig {
        let Self {
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
            task_api_server,
            task_api_server_ip,
            policy_name,
            allow_unconfined_seccomp,
            firewall_image,
            log_format: _,
        } = self;
        ControllerConfig {
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
            firewall_image,
        }
    }
}

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
pub fn parse_socket_address(text: &str) -> Result<std::net::SocketAddr, String> {
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
