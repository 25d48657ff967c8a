//! API requests counted as `verb resource[/subresource]`: from the controller's own log (one
//! kube-client line per HTTP request) and from the API server's `apiserver_request_total`.

use std::collections::BTreeMap;

use kube::Client;
use serde::Serialize;

use crate::Result;

/// Request counts by `verb resource[/subresource]`, e.g. `patch taskruns/status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Requests(pub BTreeMap<String, u64>);

/// Verbs that change what the API server stores.
const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

impl Requests {
    /// Counts the requests in a stretch of the controller's JSON log.
    pub fn from_log(log: &str) -> Self {
        let mut requests = Self::default();
        for line in log.lines().filter(|l| l.contains("\"requesting\"")) {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let span = &entry["span"];
            let (Some(method), Some(url)) =
                (span["http.method"].as_str(), span["http.url"].as_str())
            else {
                continue;
            };
            if let Some(key) = classify(method, url) {
                *requests.0.entry(key).or_default() += 1;
            }
        }
        requests
    }

    /// The count for one key, 0 when absent.
    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }

    /// Every request.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Requests that change stored objects: creates, updates, patches, deletes.
    pub fn writes(&self) -> u64 {
        self.matching(|verb, _| WRITE_VERBS.contains(&verb))
    }

    /// Writes to TaskRun status.
    pub fn status_writes(&self) -> u64 {
        self.matching(|verb, resource| WRITE_VERBS.contains(&verb) && resource == "taskruns/status")
    }

    /// Writes of Kubernetes Events.
    pub fn event_writes(&self) -> u64 {
        self.matching(|verb, resource| WRITE_VERBS.contains(&verb) && resource == "events")
    }

    /// Only the requests about TaskRuns and their Events: what each TaskRun costs. The rest
    /// (the node Lease, renewed on a timer) does not grow with the number of TaskRuns.
    pub fn per_run(&self) -> Requests {
        self.filtered(|_, resource| {
            resource == "events" || resource.split('/').next() == Some("taskruns")
        })
    }

    /// Only the writes.
    pub fn only_writes(&self) -> Requests {
        self.filtered(|verb, _| WRITE_VERBS.contains(&verb))
    }

    fn filtered(&self, keep: impl Fn(&str, &str) -> bool) -> Requests {
        Requests(
            self.0
                .iter()
                .filter(|(key, _)| {
                    let (verb, resource) = key.split_once(' ').unwrap_or((key, ""));
                    keep(verb, resource)
                })
                .map(|(key, n)| (key.clone(), *n))
                .collect(),
        )
    }

    fn matching(&self, keep: impl Fn(&str, &str) -> bool) -> u64 {
        self.filtered(keep).total()
    }

    /// What was added since `before`.
    pub fn since(&self, before: &Requests) -> Requests {
        Requests(
            self.0
                .iter()
                .map(|(key, n)| (key.clone(), n.saturating_sub(before.get(key))))
                .filter(|(_, n)| *n > 0)
                .collect(),
        )
    }
}

/// `verb resource[/subresource]` of a request to the API server, the verb named as the API
/// server's metrics name it (lowercase). `None` for non-resource paths such as `/version`.
pub fn classify(method: &str, url: &str) -> Option<String> {
    let path_and_query = match url.find("://") {
        Some(scheme) => {
            let rest = &url[scheme + 3..];
            &rest[rest.find('/')?..]
        }
        None => url,
    };
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..)?,
        Some(&"apis") => segments.get(3..)?,
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _, resource, more @ ..] => [&[*resource][..], more].concat(),
        other => other.to_vec(),
    };
    let (resource, name, subresource) = (rest.first()?, rest.get(1), rest.get(2));
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (method, name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (other, _) => return Some(format!("{} {resource}", other.to_lowercase())),
    };
    Some(match subresource {
        Some(sub) => format!("{verb} {resource}/{sub}"),
        None => format!("{verb} {resource}"),
    })
}

/// The API server's request counters for TaskRuns and Events, from its `/metrics`.
pub async fn scrape_apiserver(client: &Client) -> Result<Requests> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    Ok(parse_metrics(&text))
}

/// Sums `apiserver_request_total` over codes and scopes, by verb, resource and subresource,
/// for the resources the controller writes. Server-side apply (`APPLY`) counts as a patch.
pub fn parse_metrics(text: &str) -> Requests {
    let mut requests = Requests::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split("\",")
                .filter_map(|pair| pair.split_once("=\""))
                .find(|(key, _)| *key == name)
                .map(|(_, v)| v.trim_end_matches('"'))
                .unwrap_or("")
        };
        let resource = label("resource");
        if resource != "taskruns" && resource != "events" {
            continue;
        }
        let verb = match label("verb") {
            "POST" => "create".to_string(),
            "PUT" => "update".to_string(),
            "PATCH" | "APPLY" => "patch".to_string(),
            "WATCHLIST" => "watch".to_string(),
            other => other.to_lowercase(),
        };
        let key = match label("subresource") {
            "" => format!("{verb} {resource}"),
            sub => format!("{verb} {resource}/{sub}"),
        };
        *requests.0.entry(key).or_default() += value as u64;
    }
    requests
}
