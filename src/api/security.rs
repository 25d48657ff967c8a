//! What a task may do on its node, in the shape of a Pod's `securityContext`, and the network
//! it joins.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validation;

/// Who the task runs as and what it may do, with a Pod's names. Every field is optional; the
/// container is hardened either way (see the threat model in docs/security.md).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::security_context_rules)]
pub struct SecurityContext {
    /// The user ID the task's process runs as, instead of the image's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub run_as_user: Option<i64>,

    /// The primary group ID of the task's process. Needs `runAsUser`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub run_as_group: Option<i64>,

    /// When true, the task must not run as root: with `runAsUser` it must not be 0; without it, the image's user must be a non-zero numeric user ID, or the run fails with `StartFailed` before a container is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,

    /// When true, the container's root filesystem is read-only; `emptyDir` volumes stay writable. Not together with Secret or ConfigMap volumes or `serviceAccountName`, whose files are written into the root filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,

    /// When true, a process may gain more privileges than its parent (setuid binaries); false by default: the container runs with `no-new-privileges`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,

    /// Capabilities to add to or drop from Docker's default set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
}

/// Linux capabilities of the task's process.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::capabilities_rules)]
pub struct Capabilities {
    /// Capabilities to add, from Docker's default set only (so after dropping `ALL`, what the task needs back); never `ALL`. A cluster's TaskRunPolicy may narrow them further.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 14), extend("x-kubernetes-list-type" = "set"))]
    pub add: Vec<Capability>,

    /// Capabilities to drop; `ALL` drops every one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 15), extend("x-kubernetes-list-type" = "set"))]
    pub drop: Vec<Capability>,
}

/// The capabilities Docker gives a container by default, and `ALL` (every capability, only
/// to drop). Nothing beyond them can be added: no `SYS_ADMIN`, `NET_ADMIN`, `SYS_PTRACE` or
/// the like, ever.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum Capability {
    ALL,
    AUDIT_WRITE,
    CHOWN,
    DAC_OVERRIDE,
    FOWNER,
    FSETID,
    KILL,
    MKNOD,
    NET_BIND_SERVICE,
    NET_RAW,
    SETFCAP,
    SETGID,
    SETPCAP,
    SETUID,
    SYS_CHROOT,
}

impl Capability {
    /// The name Docker and Kubernetes give it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ALL => "ALL",
            Self::AUDIT_WRITE => "AUDIT_WRITE",
            Self::CHOWN => "CHOWN",
            Self::DAC_OVERRIDE => "DAC_OVERRIDE",
            Self::FOWNER => "FOWNER",
            Self::FSETID => "FSETID",
            Self::KILL => "KILL",
            Self::MKNOD => "MKNOD",
            Self::NET_BIND_SERVICE => "NET_BIND_SERVICE",
            Self::NET_RAW => "NET_RAW",
            Self::SETFCAP => "SETFCAP",
            Self::SETGID => "SETGID",
            Self::SETPCAP => "SETPCAP",
            Self::SETUID => "SETUID",
            Self::SYS_CHROOT => "SYS_CHROOT",
        }
    }
}

/// The network the task's container joins.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Network {
    /// Docker's default bridge: the node's outside world through NAT, as before.
    #[default]
    Bridge,
    /// Loopback only: no way in or out.
    None,
}

/// The Docker bridge network the operator creates for `Bridge` tasks, with inter-container
/// traffic off, on a node whose daemon's default bridge lets containers reach each other.
pub const TASK_NETWORK: &str = "taskrun";

impl Network {
    /// Docker's `NetworkMode` for it on a node whose `Bridge` tasks join `bridge`, a network on
    /// which they cannot reach each other.
    pub fn docker_mode(self, bridge: &str) -> &str {
        match self {
            Self::Bridge => bridge,
            Self::None => "none",
        }
    }

    /// The name the spec gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bridge => "Bridge",
            Self::None => "None",
        }
    }
}

impl SecurityContext {
    /// Whether the spec says the task must not run as root.
    pub fn non_root(&self) -> bool {
        self.run_as_non_root == Some(true)
    }

    /// Whether the spec asks for a read-only root filesystem.
    pub fn read_only_root(&self) -> bool {
        self.read_only_root_filesystem == Some(true)
    }

    /// Whether the spec lets processes gain privileges.
    pub fn privilege_escalation(&self) -> bool {
        self.allow_privilege_escalation == Some(true)
    }

    /// The capabilities to add.
    pub fn added(&self) -> &[Capability] {
        self.capabilities.as_ref().map_or(&[], |c| c.add.as_slice())
    }

    /// The capabilities to drop.
    pub fn dropped(&self) -> &[Capability] {
        self.capabilities
            .as_ref()
            .map_or(&[], |c| c.drop.as_slice())
    }
}
