//! The `taskrun` command: `controller` (the agent of one node), `run` (task.yaml files and
//! TaskRun manifests on the local Docker daemon, without a cluster), `crd`, `admission` and
//! `policy` (manifests generated from the Rust types and rules), and `probe` (the DaemonSet's
//! health checks). It turns flags and their defaults into the library's configuration and
//! decides nothing about runs.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kube::CustomResourceExt;
use taskrun_operator::api::{
    ADMISSION_POLICY, CLUSTER_POLICY, TaskRun, TaskRunPolicy, TaskRunPolicySpec, admission_policy,
    admission_policy_binding,
};
use taskrun_operator::controller::{self, ControllerArgs};
use taskrun_operator::standalone::{self, OutputFormat, RunOptions};
use taskrun_operator::telemetry;

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
    Controller(Box<ControllerArgs>),
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
        #[arg(long, default_value = "127.0.0.1:8080", value_parser = controller::parse_socket_address)]
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
        Command::Controller(args) => {
            telemetry::init(args.log_format, "info,kube=warn");
            let config = args.into_config();
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
