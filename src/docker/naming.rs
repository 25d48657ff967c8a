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

/// The TaskRun a container belongs to, as recorded in its labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerOwner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
}

impl ContainerOwner {
    /// The container name, derived from the TaskRun UID alone so a retry finds the container
    /// an earlier attempt created instead of creating a twin.
    pub fn container_name(&self) -> String {
        container_name(&self.uid)
    }

    /// The labels that mark a container as this owner's.
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
            (LABEL_NAMESPACE.to_string(), self.namespace.clone()),
            (LABEL_NAME.to_string(), self.name.clone()),
            (LABEL_UID.to_string(), self.uid.clone()),
            (LABEL_NODE.to_string(), self.node.clone()),
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
        })
    }
}

/// The container name of the TaskRun with this UID.
pub fn container_name(uid: &str) -> String {
    format!("taskrun-{uid}")
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
