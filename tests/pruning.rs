//! `deleteAfterSeconds` end to end: the built `taskrun controller` against the real API server
//! and Docker daemon deletes a TaskRun that long after its run ended, and its container with it,
//! whether an agent ran it or none ever claimed it; a TaskRun without it stays.

mod common;

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};
use kube::ResourceExt;
use kube::api::{WatchEvent, WatchParams};
use taskrun_operator::api::{Phase, Reason, TaskRun};

use common::{TestNamespace, status};

#[tokio::test]
async fn a_taskrun_goes_delete_after_seconds_after_its_run_ended_and_one_without_it_stays() {
    let ns = TestNamespace::new("prune").await;
    let address = common::free_address();
    let _controller = common::ControllerProcess::start_serving(&ns.name, &ns.node(), &address);
    let mut watch = ns
        .taskruns()
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch the TaskRuns")
        .boxed();
    let node = ns.node();
    ns.create(&common::taskrun_yaml(
        "pruned",
        &format!(
            "image: busybox\ncommand: ['true']\ncleanup: Never\ndeleteAfterSeconds: 1\nnodeName: {node}"
        ),
    ))
    .await;
    ns.create(&common::taskrun_yaml(
        "kept",
        &format!("image: busybox\ncommand: ['true']\ncleanup: Never\nnodeName: {node}"),
    ))
    .await;
    // No agent serves the node it is pinned to: it ends by its pending timeout, unclaimed.
    ns.create(&common::taskrun_yaml(
        "unclaimed",
        "image: busybox\nnodeName: ghost\npendingTimeoutSeconds: 1\ndeleteAfterSeconds: 1",
    ))
    .await;

    // The last state of each TaskRun, taken from the watch, so a deletion cannot be missed.
    let mut deleted: HashMap<String, TaskRun> = HashMap::new();
    let both_deleted = async {
        while !(deleted.contains_key("pruned") && deleted.contains_key("unclaimed")) {
            match watch.try_next().await.expect("watch the TaskRuns") {
                Some(WatchEvent::Deleted(taskrun)) => {
                    deleted.insert(taskrun.name_any(), taskrun);
                }
                Some(_) => {}
                None => panic!("the watch ended"),
            }
        }
    };
    tokio::time::timeout(common::TIMEOUT, both_deleted)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "pruned and unclaimed were not both deleted within {:?}",
                common::TIMEOUT
            )
        });
    assert!(
        !deleted.contains_key("kept"),
        "a TaskRun without deleteAfterSeconds is never deleted"
    );

    let pruned = &deleted["pruned"];
    let s = status(pruned);
    assert_eq!(
        (s.phase, s.reason, s.exit_code),
        (Some(Phase::Succeeded), Some(Reason::Completed), Some(0)),
        "{s:#?}"
    );
    let completed = s.completion_time.as_ref().expect("completion time").0;
    let deleted_at = pruned
        .metadata
        .deletion_timestamp
        .as_ref()
        .expect("a claimed run leaves through its finalizer")
        .0;
    assert!(
        deleted_at >= completed + jiff::SignedDuration::from_secs(1),
        "deleted at {deleted_at}, not before deleteAfterSeconds after {completed}"
    );
    assert_eq!(
        ns.container_count("pruned").await,
        0,
        "the finalizer removed the container, which cleanup: Never would have kept"
    );

    let unclaimed = status(&deleted["unclaimed"]);
    assert_eq!(
        (unclaimed.phase, unclaimed.reason),
        (Some(Phase::Failed), Some(Reason::PendingTimeout)),
        "{unclaimed:#?}"
    );

    let kept = ns.wait_done("kept").await;
    assert_eq!(status(&kept).phase, Some(Phase::Succeeded));
    assert_eq!(
        ns.container_count("kept").await,
        1,
        "cleanup: Never keeps it"
    );

    let (code, metrics) = common::http_get(&address, "/metrics")
        .await
        .expect("metrics served");
    assert_eq!(code, 200);
    assert_eq!(
        common::metric(&metrics, "taskrun_pruned_total"),
        Some(2.0),
        "{metrics}"
    );
}
