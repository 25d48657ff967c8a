//! What ties a container to its TaskRun. Its name comes from the TaskRun's UID and attempt alone
//! ([`attempt_container_name`]), so a second pass finds the container an earlier one created
//! instead of making a twin; its labels record the owner ([`ContainerOwner`]), so the agent finds
//! its own containers again by label. A container without [`LABEL_MANAGED_BY`] set to
//! [`MANAGED_BY`] has no owner here.

use std::collections::HashMap;

/// Label every container of this operator carries, with the value [`MANAGED_BY`].
pub const LABEL_MANAGED_BY: &str = "taskrun.dev/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "taskrun-operator";
/// Label holding the namespace of the owning TaskRun.
pub const LABEL_NAMESPACE: &str = "taskrun.dev/namespace";
/// Label holding the name of the owning TaskRun.
pub const LABEL_NAME: &str = "taskrun.dev/name";
/// Label holding the UID of the owning TaskRun.
pub const LABEL_UID: &str = "taskrun.dev/uid";
/// Label holding the node whose agent created the container.
pub const LABEL_NODE: &str = "taskrun.dev/node";
/// Label holding the attempt of the run the container is for; absent means the first.
pub const LABEL_ATTEMPT: &str = "taskrun.dev/attempt";

/// The TaskRun a container belongs to, as recorded in its labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerOwner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    /// The attempt of the run, counting from 1.
    pub attempt: u32,
}

impl ContainerOwner {
    /// The container name, derived from the TaskRun UID and the attempt alone, so a second
    /// pass over the same attempt finds the container an earlier pass created instead of
    /// creating a twin.
    pub fn container_name(&self) -> String {
        attempt_container_name(&self.uid, self.attempt)
    }

    /// The labels that mark a container as this owner's.
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
            (LABEL_NAMESPACE.to_string(), self.namespace.clone()),
            (LABEL_NAME.to_string(), self.name.clone()),
            (LABEL_UID.to_string(), self.uid.clone()),
            (LABEL_NODE.to_string(), self.node.clone()),
            (LABEL_ATTEMPT.to_string(), self.attempt.to_string()),
        ])
    }

    /// The owner recorded in a container's labels, if the container is one of ours.
    pub fn from_labels(labels: &HashMap<String, String>) -> Option<Self> {
        if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(MANAGED_BY) {
            return None;
        }
        Some(Self {
            namespace: labels.get(LABEL_NAMESPACE)?.clone(),
            name: labels.get(LABEL_NAME)?.clone(),
            uid: labels.get(LABEL_UID)?.clone(),
            node: labels.get(LABEL_NODE).cloned().unwrap_or_default(),
            attempt: labels
                .get(LABEL_ATTEMPT)
                .and_then(|a| a.parse().ok())
                .unwrap_or(1),
        })
    }
}

/// The container name of the first attempt of the TaskRun with this UID.
pub fn container_name(uid: &str) -> String {
    format!("taskrun-{uid}")
}

/// The container name of one attempt of the TaskRun with this UID. The first keeps the name
/// it had before runs had attempts, so agents of either version find the same container.
pub fn attempt_container_name(uid: &str, attempt: u32) -> String {
    if attempt <= 1 {
        container_name(uid)
    } else {
        format!("taskrun-{uid}-{attempt}")
    }
}

/// The name of the short-lived container that sets the firewall of the node `node`.
pub fn firewall_container_name(node: &str) -> String {
    format!("taskrun-firewall-{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> ContainerOwner {
        ContainerOwner {
            namespace: "team-a".into(),
            name: "hello".into(),
            uid: "0b6f7e2a-1111-2222-3333-444455556666".into(),
            node: "node-a".into(),
            attempt: 1,
        }
    }

    #[test]
    fn labels_round_trip_to_the_same_owner() {
        assert_eq!(
            ContainerOwner::from_labels(&owner().labels()),
            Some(owner())
        );
    }

    #[test]
    fn each_attempt_has_its_own_name_and_the_first_keeps_the_old_one() {
        let mut third = owner();
        third.attempt = 3;
        assert_eq!(
            third.container_name(),
            "taskrun-0b6f7e2a-1111-2222-3333-444455556666-3"
        );
        assert_eq!(ContainerOwner::from_labels(&third.labels()), Some(third));
        let mut old = owner().labels();
        old.remove(LABEL_ATTEMPT);
        assert_eq!(
            ContainerOwner::from_labels(&old).map(|o| o.attempt),
            Some(1)
        );
    }

    #[test]
    fn containers_without_our_marker_have_no_owner() {
        let mut labels = owner().labels();
        labels.insert(LABEL_MANAGED_BY.into(), "someone-else".into());
        assert_eq!(ContainerOwner::from_labels(&labels), None);
        assert_eq!(ContainerOwner::from_labels(&HashMap::new()), None);
    }

    #[test]
    fn name_depends_only_on_the_uid() {
        let mut renamed = owner();
        renamed.name = "other".into();
        assert_eq!(renamed.container_name(), owner().container_name());
        assert_eq!(
            owner().container_name(),
            "taskrun-0b6f7e2a-1111-2222-3333-444455556666"
        );
    }
}
