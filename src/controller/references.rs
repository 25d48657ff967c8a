//! The one door through which the agent reads what a TaskRun refers to in its own namespace
//! (Secrets, ConfigMaps, a ServiceAccount's token), and the watch that wakes the runs waiting
//! for one of them.
//!
//! Values read here go to [`crate::lifecycle::inputs`] and on to Docker only: nothing here
//! logs an object's data, and errors name objects, never their contents.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::PostParams;
use kube::core::DeserializeGuard;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::error::{Error, Result};
use crate::api::{ObjectKind, Phase, Reason, TaskRun, TaskRunSpec};
use crate::lifecycle::inputs::{
    self, Found, Lookup, ObjectData, Resolution, TaskApi, token_unavailable,
};

/// Reads what `spec` refers to in `namespace` and resolves it: the run's inputs, or why it
/// waits. A ServiceAccount token is requested only once everything else is there.
pub async fn gather(
    client: &Client,
    namespace: &str,
    spec: &TaskRunSpec,
    api: &TaskApi,
) -> Result<Resolution> {
    let found = read(client, namespace, &inputs::references(spec)).await?;
    let resolution = inputs::resolve(spec, namespace, &found);
    let (Resolution::Ready(ready), Some(account)) = (&resolution, &spec.service_account_name)
    else {
        return Ok(resolution);
    };
    let seconds = inputs::token_seconds(spec);
    Ok(
        match request_token(client, namespace, account, seconds).await? {
            Token::Issued(token) => Resolution::Ready(inputs::with_service_account(
                ready.clone(),
                namespace,
                &token,
                api,
            )),
            Token::Absent => token_unavailable(account, namespace, false),
            Token::Forbidden => token_unavailable(account, namespace, true),
        },
    )
}

/// Reads each object; one that does not exist, or that the agent may not read, is recorded
/// as such. Any other failure is the API server's and is retried.
async fn read(
    client: &Client,
    namespace: &str,
    wanted: &BTreeSet<(ObjectKind, String)>,
) -> Result<Found> {
    let mut found = Found::default();
    let mut read_so_far = 0;
    for (kind, name) in wanted {
        let read = match kind {
            ObjectKind::Secret => Api::<Secret>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .map(|secret| {
                    secret.map(|secret| ObjectData {
                        type_: secret.type_,
                        data: secret
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(key, value)| (key, value.0))
                            .collect(),
                    })
                }),
            ObjectKind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .map(|config_map| {
                    config_map.map(|config_map| {
                        let mut data: BTreeMap<String, Vec<u8>> = config_map
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(key, value)| (key, value.into_bytes()))
                            .collect();
                        data.extend(
                            config_map
                                .binary_data
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(key, value)| (key, value.0)),
                        );
                        ObjectData { type_: None, data }
                    })
                }),
        };
        let lookup = match read {
            Ok(Some(object)) => {
                if !found.within_limit(&mut read_so_far, &object) {
                    return Ok(found);
                }
                Lookup::Found(object)
            }
            Ok(None) => Lookup::Absent,
            Err(kube::Error::Api(e)) if e.code == 403 => Lookup::Forbidden,
            Err(cause) => {
                return Err(Error::ReadReference {
                    kind: *kind,
                    namespace: namespace.to_string(),
                    name: name.clone(),
                    cause,
                });
            }
        };
        found.objects.insert((*kind, name.clone()), lookup);
    }
    Ok(found)
}

/// What a TokenRequest answered.
enum Token {
    Issued(String),
    /// No such ServiceAccount.
    Absent,
    /// The agent may not request tokens for it.
    Forbidden,
}

/// Requests a token for the ServiceAccount, valid for `seconds`.
async fn request_token(
    client: &Client,
    namespace: &str,
    account: &str,
    seconds: i64,
) -> Result<Token> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(seconds),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    match api
        .create_token_request(account, &PostParams::default(), &request)
        .await
    {
        Ok(answer) => match answer.status.and_then(|status| status.token) {
            Some(token) => Ok(Token::Issued(token)),
            None => Err(Error::NoToken {
                namespace: namespace.to_string(),
                name: account.to_string(),
            }),
        },
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Token::Absent),
        Err(kube::Error::Api(e)) if e.code == 403 => Ok(Token::Forbidden),
        Err(cause) => Err(Error::RequestToken {
            namespace: namespace.to_string(),
            name: account.to_string(),
            cause,
        }),
    }
}

/// Whether a run waits for something it refers to.
fn waits_on_references(taskrun: &TaskRun) -> bool {
    taskrun.status.as_ref().is_some_and(|status| {
        status.phase() == Phase::Pending
            && matches!(
                status.reason,
                Some(
                    Reason::ReferenceMissing
                        | Reason::ReferenceInvalid
                        | Reason::ReferencesTooLarge
                )
            )
    })
}

/// Follows the names of the Secrets and ConfigMaps of the watched namespaces (their metadata
/// only: no value is ever cached) and wakes each run waiting for one that was created or
/// changed, so a run applied before its Secret starts once the Secret is there. An agent that
/// may not watch them still finds them on its periodic look at waiting runs.
pub async fn wake_runs_waiting_for_references(
    client: Client,
    namespace: Option<String>,
    store: Store<DeserializeGuard<TaskRun>>,
    wake: mpsc::Sender<ObjectRef<DeserializeGuard<TaskRun>>>,
) {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        match namespace {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        }
    }
    let secrets = watcher(
        api::<PartialObjectMeta<Secret>>(&client, namespace.as_deref()),
        watcher::Config::default(),
    )
    .backoff(super::watch_backoff())
    .applied_objects()
    .map(|change| change.map(|object| (ObjectKind::Secret, object.namespace(), object.name_any())))
    .boxed();
    let config_maps = watcher(
        api::<PartialObjectMeta<ConfigMap>>(&client, namespace.as_deref()),
        watcher::Config::default(),
    )
    .backoff(super::watch_backoff())
    .applied_objects()
    .map(|change| {
        change.map(|object| (ObjectKind::ConfigMap, object.namespace(), object.name_any()))
    })
    .boxed();
    let mut changes = futures::stream::select(secrets, config_maps);
    let mut warned = false;
    while let Some(change) = changes.next().await {
        let (kind, object_namespace, name) = match change {
            Ok(change) => change,
            Err(e) => {
                if !warned {
                    warn!(error = %e, "cannot watch Secrets and ConfigMaps; runs waiting for one look again periodically");
                    warned = true;
                }
                continue;
            }
        };
        let wanted = (kind, name);
        for guard in store.state() {
            let Ok(taskrun) = &guard.0 else {
                continue;
            };
            if waits_on_references(taskrun)
                && taskrun.namespace() == object_namespace
                && inputs::references(&taskrun.spec).contains(&wanted)
            {
                debug!(namespace = ?object_namespace, name = %taskrun.name_any(), "waking a run: an object it waits for changed");
                if wake.send(ObjectRef::from_obj(&*guard)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The CA certificates the agent trusts for the API server, as PEM: the file it was
/// configured with, or the certificates of its kubeconfig.
pub fn ca_pem(config: &kube::Config) -> Option<Vec<u8>> {
    use base64::Engine;
    if let Some(file) = &config.root_cert_file
        && let Ok(pem) = std::fs::read(file)
    {
        return Some(pem);
    }
    let certificates = config.root_cert.as_ref()?;
    let mut pem = String::new();
    for der in certificates {
        let encoded = base64::engine::general_purpose::STANDARD.encode(der);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    Some(pem.into_bytes())
}
