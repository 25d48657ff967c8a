//! taskrun-operator: runs `TaskRun` custom resources as containers on each node's Docker
//! daemon, and the original task.yaml files without any cluster.

pub mod api;
pub mod controller;
pub mod docker;
pub mod lifecycle;
pub mod standalone;
pub mod telemetry;
