//! What a task takes from its namespace, in the shape of a Pod's fields: environment from
//! Secrets and ConfigMaps, files from them, scratch space, registry credentials and an API
//! identity.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validation;

/// An object name as Kubernetes names Secrets, ConfigMaps and ServiceAccounts (a DNS
/// subdomain).
pub(crate) const OBJECT_NAME: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A key of a Secret's or ConfigMap's data.
pub(crate) const DATA_KEY: &str = r"^[-._a-zA-Z0-9]+$";

/// Where an environment variable's value comes from, instead of a literal `value`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::env_source_rules)]
pub struct EnvVarSource {
    /// A key of a Secret in the TaskRun's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeySelector>,

    /// A key of a ConfigMap in the TaskRun's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeySelector>,
}

/// One key of a Secret or ConfigMap in the TaskRun's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeySelector {
    /// Name of the Secret or ConfigMap.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME))]
    pub name: String,

    /// The key whose value is taken.
    #[schemars(length(min = 1, max = 253), regex(pattern = DATA_KEY))]
    pub key: String,

    /// When true, a missing object or key leaves the variable unset; when false (the default) the run waits `Pending` until they exist.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// Every key of a Secret or ConfigMap as environment variables.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::env_from_rules)]
pub struct EnvFromSource {
    /// Put before each key to make the variable's name. Keys that do not make a valid variable name are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128), regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub prefix: Option<String>,

    /// The Secret whose keys become variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ObjectReference>,

    /// The ConfigMap whose keys become variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ObjectReference>,
}

/// A Secret or ConfigMap in the TaskRun's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME))]
    pub name: String,

    /// When true, a missing object is skipped; when false (the default) the run waits `Pending` until it exists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// A set of files the container can mount: exactly one of `secret`, `configMap` and `emptyDir`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::volume_rules)]
pub struct Volume {
    /// Name of the volume, which `volumeMounts` refer to.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// The keys of a Secret as files, written into the container before it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,

    /// The keys of a ConfigMap as files, written into the container before it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,

    /// An empty directory in memory (tmpfs), removed with the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
}

/// Files from a Secret in the TaskRun's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretVolumeSource {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME))]
    pub secret_name: String,

    /// The keys to write and the paths to write them at. Every key, each at a path named after it, when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["path"])
    )]
    pub items: Vec<KeyToPath>,

    /// Mode of the files that do not set their own, such as 256 (0400). Defaults to 420 (0644).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 511))]
    pub default_mode: Option<i32>,

    /// When true, a missing Secret or key leaves the files out; when false (the default) the run waits `Pending` until they exist.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// Files from a ConfigMap in the TaskRun's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapVolumeSource {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME))]
    pub name: String,

    /// The keys to write and the paths to write them at. Every key, each at a path named after it, when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["path"])
    )]
    pub items: Vec<KeyToPath>,

    /// Mode of the files that do not set their own, such as 420 (0644), the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 511))]
    pub default_mode: Option<i32>,

    /// When true, a missing ConfigMap or key leaves the files out; when false (the default) the run waits `Pending` until they exist.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// One key written as one file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::key_to_path_rules)]
pub struct KeyToPath {
    /// The key whose value is the file's content.
    #[schemars(length(min = 1, max = 253), regex(pattern = DATA_KEY))]
    pub key: String,

    /// Path of the file, relative to the mount path, without `..`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[^/]"))]
    pub path: String,

    /// Mode of the file, such as 256 (0400). The volume's `defaultMode` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 511))]
    pub mode: Option<i32>,
}

/// An empty directory in memory.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::empty_dir_rules)]
pub struct EmptyDirVolumeSource {
    /// Most bytes the directory may hold, as a quantity such as `64Mi`. What is written counts against the container's memory limit, as tmpfs does. Half the node's memory when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 32))]
    pub size_limit: Option<Quantity>,
}

/// Where a volume appears in the container.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::volume_mount_rules)]
pub struct VolumeMount {
    /// Name of a volume in `volumes`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Absolute path in the container, not `/`, without `..`. Unique among the mounts.
    #[schemars(length(min = 2, max = 512), regex(pattern = r"^/"))]
    pub mount_path: String,

    /// When true, the task cannot write there: an emptyDir is mounted read-only, and Secret and ConfigMap files and their directory lose their write bits.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// A Secret in the TaskRun's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME))]
    pub name: String,
}

impl Volume {
    /// The Secret or ConfigMap the volume's files come from, if any.
    pub fn source_object(&self) -> Option<(ObjectKind, &str, bool)> {
        if let Some(secret) = &self.secret {
            return Some((ObjectKind::Secret, &secret.secret_name, secret.optional));
        }
        self.config_map.as_ref().map(|config_map| {
            (
                ObjectKind::ConfigMap,
                config_map.name.as_str(),
                config_map.optional,
            )
        })
    }
}

/// The two kinds of object a TaskRun can take values from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Secret,
    ConfigMap,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Secret => "Secret",
            Self::ConfigMap => "ConfigMap",
        })
    }
}
