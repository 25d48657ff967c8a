//! Kubernetes Events about TaskRuns (`kubectl describe` shows them). They are published in the
//! background through a bounded queue, so a slow API server never holds up a reconcile and a
//! burst never grows memory without bound; an Event that does not fit is dropped and counted.

use std::sync::Arc;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc;
use tracing::warn;

use super::FIELD_MANAGER;
use super::metrics::Metrics;
use crate::api::{TaskRun, api_safe};

/// Longest Event name the API server accepts (a DNS subdomain).
const NAME_BYTES: usize = 253;
/// Longest `note` the API server accepts.
const NOTE_BYTES: usize = 1024;
/// Longest `reportingInstance`, `reason` and `action` the API server accepts.
const FIELD_BYTES: usize = 128;
/// Events waiting to be published at most; more are dropped.
const QUEUE: usize = 1024;
/// Events being published at once.
const CONCURRENCY: usize = 4;

/// Whether an Event reports something normal or something to look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Queues Events for publishing.
#[derive(Clone)]
pub struct Events {
    queue: mpsc::Sender<Event>,
    node: String,
    metrics: Arc<Metrics>,
}

impl Events {
    /// Starts the publisher of this node's Events; it runs until every [`Events`] is dropped.
    pub fn start(client: Client, node: &str, metrics: Arc<Metrics>) -> Self {
        let (queue, pending) = mpsc::channel::<Event>(QUEUE);
        let published = metrics.clone();
        tokio::spawn(async move {
            tokio_stream::wrappers::ReceiverStream::new(pending)
                .for_each_concurrent(CONCURRENCY, |event| {
                    let client = client.clone();
                    let metrics = published.clone();
                    async move {
                        let namespace = event.metadata.namespace.clone().unwrap_or_default();
                        let events: Api<Event> = Api::namespaced(client, &namespace);
                        match events.create(&PostParams::default(), &event).await {
                            Ok(_) => {
                                metrics.events_published.inc();
                            }
                            Err(e) => warn!(error = %e, "could not publish an Event"),
                        }
                    }
                })
                .await;
        });
        Self {
            queue,
            node: node.to_string(),
            metrics,
        }
    }

    /// Queues an Event about `taskrun`; drops it when the queue is full.
    pub fn publish(&self, taskrun: &TaskRun, type_: EventType, reason: &str, note: &str) {
        let event = event(taskrun, type_, reason, note, &self.node, Timestamp::now());
        if self.queue.try_send(event).is_err() {
            self.metrics.events_dropped.inc();
        }
    }
}

/// The Event, with every field within the API server's limits whatever the TaskRun's name
/// and whatever text the note carries.
fn event(
    taskrun: &TaskRun,
    type_: EventType,
    reason: &str,
    note: &str,
    node: &str,
    now: Timestamp,
) -> Event {
    let regarding: ObjectReference = taskrun.object_ref(&());
    Event {
        metadata: ObjectMeta {
            name: Some(event_name(&taskrun.name_any(), now)),
            namespace: taskrun.namespace(),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some(
            match type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
        ),
        reason: Some(api_safe(reason, FIELD_BYTES)),
        action: Some(api_safe(reason, FIELD_BYTES)),
        note: Some(api_safe(note, NOTE_BYTES)),
        regarding: Some(regarding),
        reporting_controller: Some(FIELD_MANAGER.into()),
        reporting_instance: Some(api_safe(node, FIELD_BYTES)),
        ..Event::default()
    }
}

/// `<object name>.<time in hex>`, the object's name cut so the whole stays a valid name.
fn event_name(object: &str, now: Timestamp) -> String {
    let suffix = format!(".{:x}", now.as_nanosecond());
    let keep = NAME_BYTES - suffix.len();
    let prefix = object
        .get(..object.len().min(keep))
        .unwrap_or("taskrun")
        .trim_end_matches(['-', '.']);
    format!("{prefix}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taskrun(name: &str) -> TaskRun {
        let mut taskrun = TaskRun::new(name, crate::api::TaskRunSpec::for_image("busybox"));
        taskrun.metadata.namespace = Some("team".into());
        taskrun.metadata.uid = Some("u1".into());
        taskrun
    }

    fn is_dns_subdomain(name: &str) -> bool {
        name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    }

    #[test]
    fn names_stay_valid_for_the_longest_taskrun_names() {
        let now = Timestamp::from_second(1_795_514_400).unwrap();
        let longest = format!("{}.{}", "a".repeat(63), "b-".repeat(94));
        for name in [
            "hello".to_string(),
            "a".repeat(253),
            longest.trim_end_matches('-').to_string(),
            format!("{}-{}", "x".repeat(234), "y".repeat(18)),
        ] {
            let event = event(&taskrun(&name), EventType::Normal, "Started", "", "n", now);
            let event_name = event.metadata.name.unwrap();
            assert!(is_dns_subdomain(&event_name), "{event_name}");
            assert!(event_name.starts_with(&name[..5]));
        }
    }

    #[test]
    fn notes_are_safe_and_bounded() {
        let note = format!("{}\u{7f}", "é".repeat(2000));
        let event = event(
            &taskrun("t"),
            EventType::Warning,
            "Error",
            &note,
            &"n".repeat(300),
            Timestamp::UNIX_EPOCH,
        );
        let note = event.note.unwrap();
        assert!(note.len() <= NOTE_BYTES && !note.contains('\u{7f}'));
        assert_eq!(event.reporting_instance.unwrap().len(), FIELD_BYTES);
        assert_eq!(event.regarding.unwrap().uid.as_deref(), Some("u1"));
    }
}
