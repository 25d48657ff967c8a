//! The TaskRun versions this agent's own writes replaced. A pass woken before the watch has
//! brought the agent's last write acts on the copy that write replaced: it would decide again
//! what was already decided, and its guarded write could only fail. Such a pass waits for the
//! watch instead.

use parking_lot::Mutex;
use std::collections::HashMap;

use kube::ResourceExt;

use crate::api::TaskRun;

/// Most TaskRuns remembered at once; past it the memory starts over, which costs at most a
/// refused write per run.
const MOST_REMEMBERED: usize = 10_000;

/// By uid, the resourceVersion that this agent's last write to the TaskRun replaced.
#[derive(Debug, Default)]
pub struct OwnWrites {
    replaced: Mutex<HashMap<String, String>>,
}

impl OwnWrites {
    /// Records that this agent turned `before` into `after`. A write that changed nothing
    /// stored (same resourceVersion) brings no watch event, so it is not remembered.
    pub fn record(&self, before: &TaskRun, after: &TaskRun) {
        let (Some(uid), Some(replaced)) = (before.uid(), before.resource_version()) else {
            return;
        };
        if after.resource_version().as_ref() == Some(&replaced) {
            return;
        }
        {
            let mut writes = self.replaced.lock();
            if writes.len() >= MOST_REMEMBERED {
                writes.clear();
            }
            writes.insert(uid, replaced);
        }
    }

    /// Whether `taskrun` is a copy this agent's own write already replaced. Any other copy is
    /// newer than that write, and the write is forgotten.
    pub fn replaced(&self, taskrun: &TaskRun) -> bool {
        let (Some(uid), Some(version)) = (taskrun.uid(), taskrun.resource_version()) else {
            return false;
        };
        let mut writes = self.replaced.lock();
        match writes.get(&uid) {
            Some(replaced) if *replaced == version => true,
            Some(_) => {
                writes.remove(&uid);
                false
            }
            None => false,
        }
    }

    /// Forgets a TaskRun that is going away.
    pub fn forget(&self, uid: &str) {
        self.replaced.lock().remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(version: &str) -> TaskRun {
        let mut taskrun = TaskRun::new("run", serde_yaml::from_str("image: busybox").unwrap());
        taskrun.metadata.uid = Some("u1".into());
        taskrun.metadata.resource_version = Some(version.into());
        taskrun
    }

    #[test]
    fn only_the_copy_a_write_replaced_is_stale() {
        let writes = OwnWrites::default();
        writes.record(&copy("1"), &copy("2"));
        assert!(writes.replaced(&copy("1")));
        assert!(writes.replaced(&copy("1")), "until a newer copy is seen");
        assert!(!writes.replaced(&copy("2")));
        assert!(
            !writes.replaced(&copy("1")),
            "forgotten once the watch caught up"
        );
    }

    #[test]
    fn a_write_that_changed_nothing_is_not_waited_for() {
        let writes = OwnWrites::default();
        writes.record(&copy("5"), &copy("5"));
        assert!(!writes.replaced(&copy("5")));
    }
}
