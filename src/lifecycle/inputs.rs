//! What a run takes from its namespace, resolved just before its container is created: a pure
//! step from the spec and the objects read for it to the container's environment, files,
//! in-memory directories and pull credentials, or the reason the run waits instead.
//!
//! Values read from Secrets are held here and handed to Docker, never to a status, an Event
//! or a log: every `Debug` form below names keys and paths, never values.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use base64::Engine;
use serde::Deserialize;

use crate::api::{KeyToPath, ObjectKind, Reason, TaskRunSpec, parse_memory_bytes};
use crate::docker::RegistryAuth;

/// Where a ServiceAccount's token, `ca.crt` and `namespace` go, as in a Pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Mode of the files whose spec sets none, as for a Pod's volumes.
const DEFAULT_FILE_MODE: u32 = 0o644;

/// Mode of a mounted directory, and of the directories between it and its files.
const DIRECTORY_MODE: u32 = 0o755;

/// The write bits a read-only mount takes away.
const WRITE_BITS: u32 = 0o222;

/// The shortest a ServiceAccount token is requested for, as the TokenRequest API requires.
const MIN_TOKEN_SECONDS: i64 = 600;

/// How long a token lasts when the run has no deadline.
const TOKEN_SECONDS_WITHOUT_DEADLINE: i64 = 3600;

/// Time a token covers beyond the run's deadline and grace period: the pull and create before
/// the deadline starts counting.
const TOKEN_MARGIN_SECONDS: i64 = 600;

/// A Secret or ConfigMap as read: its data (a ConfigMap's `data` and `binaryData` together)
/// and, for a Secret, its type.
#[derive(Clone, Default, PartialEq)]
pub struct ObjectData {
    pub type_: Option<String>,
    pub data: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for ObjectData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectData")
            .field("type_", &self.type_)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What reading one referenced object found.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    Found(ObjectData),
    Absent,
    /// The agent may not read it.
    Forbidden,
}

/// The objects a spec refers to, as read from the TaskRun's namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Found {
    pub objects: BTreeMap<(ObjectKind, String), Lookup>,
    /// The bytes of data read when they passed [`MAX_REFERENCE_BYTES`]: the reading stopped
    /// there.
    pub over_limit: Option<u64>,
}

/// Most bytes of Secret and ConfigMap data one run may take from its namespace. Each object
/// is at most about 1 MiB (etcd's limit), but a spec may name dozens: the agent holds what it
/// read, and the archive made of it, while the run launches.
pub const MAX_REFERENCE_BYTES: u64 = 4 << 20;

impl Found {
    /// Counts `object`'s data against [`MAX_REFERENCE_BYTES`]: whether reading may go on.
    pub fn within_limit(&mut self, read_so_far: &mut u64, object: &ObjectData) -> bool {
        let bytes: usize = object
            .data
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum();
        *read_so_far = read_so_far.saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
        if *read_so_far > MAX_REFERENCE_BYTES {
            self.over_limit = Some(*read_so_far);
            return false;
        }
        true
    }
}

/// The objects `spec` refers to, each once.
pub fn references(spec: &TaskRunSpec) -> BTreeSet<(ObjectKind, String)> {
    let mut objects = BTreeSet::new();
    for env in &spec.env {
        if let Some(source) = &env.value_from {
            if let Some(selector) = &source.secret_key_ref {
                objects.insert((ObjectKind::Secret, selector.name.clone()));
            }
            if let Some(selector) = &source.config_map_key_ref {
                objects.insert((ObjectKind::ConfigMap, selector.name.clone()));
            }
        }
    }
    for source in &spec.env_from {
        if let Some(reference) = &source.secret_ref {
            objects.insert((ObjectKind::Secret, reference.name.clone()));
        }
        if let Some(reference) = &source.config_map_ref {
            objects.insert((ObjectKind::ConfigMap, reference.name.clone()));
        }
    }
    for volume in &spec.volumes {
        if let Some((kind, name, _)) = volume.source_object() {
            objects.insert((kind, name.to_string()));
        }
    }
    for secret in &spec.image_pull_secrets {
        objects.insert((ObjectKind::Secret, secret.name.clone()));
    }
    objects
}

/// What the container gets beyond its spec's literal fields.
#[derive(Clone, Default, PartialEq)]
pub struct Inputs {
    /// Every environment variable, in order, values resolved.
    pub env: Vec<(String, String)>,
    /// Directories to create, with their modes (mount paths of Secret and ConfigMap volumes).
    pub directories: Vec<InputDirectory>,
    /// Files to write into the container before it starts.
    pub files: Vec<InputFile>,
    /// In-memory directories (emptyDir).
    pub scratch: Vec<Scratch>,
    /// Credentials for the image's registry.
    pub registry_auth: Option<RegistryAuth>,
    /// `/etc/hosts` entries, `NAME:ADDRESS`.
    pub extra_hosts: Vec<String>,
}

impl std::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("env", &self.env.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .field("directories", &self.directories)
            .field("files", &self.files)
            .field("scratch", &self.scratch)
            .field("registry_auth", &self.registry_auth)
            .field("extra_hosts", &self.extra_hosts)
            .finish()
    }
}

/// A directory to create in the container.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct InputDirectory {
    /// Absolute path.
    pub path: String,
    pub mode: u32,
}

/// A file to write into the container.
#[derive(Clone, PartialEq)]
pub struct InputFile {
    /// Absolute path.
    pub path: String,
    pub mode: u32,
    pub contents: Vec<u8>,
}

impl std::fmt::Debug for InputFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "InputFile({}, {:o}, {} bytes)",
            self.path,
            self.mode,
            self.contents.len()
        )
    }
}

/// An in-memory directory, gone with the container.
#[derive(Clone, Debug, PartialEq)]
pub struct Scratch {
    pub path: String,
    pub size_bytes: Option<i64>,
    pub read_only: bool,
}

/// Where tasks reach the API server, and the CA that signs its certificate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskApi {
    /// `KUBERNETES_SERVICE_HOST`: a name or address the server's certificate carries.
    pub host: String,
    /// `KUBERNETES_SERVICE_PORT`.
    pub port: u16,
    /// The address `host` stands for inside the container, when it is a name the container
    /// cannot resolve.
    pub address: Option<IpAddr>,
    /// The CA certificate(s), PEM, written as `ca.crt`.
    pub ca_pem: Option<Vec<u8>>,
}

/// Either everything the run needs, or why it waits.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    Ready(Inputs),
    Waiting { reason: Reason, message: String },
}

impl Inputs {
    /// The inputs of a spec that refers to nothing: its literal environment.
    pub fn literal(spec: &TaskRunSpec) -> Self {
        let mut inputs = Self::default();
        for env in &spec.env {
            set_env(&mut inputs.env, &env.name, env.value.clone());
        }
        inputs
    }
}

/// Sets `name`, replacing an earlier value in place.
fn set_env(env: &mut Vec<(String, String)>, name: &str, value: String) {
    match env.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = value,
        None => env.push((name.to_string(), value)),
    }
}

/// A name `sh` and Docker take as an environment variable.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why a run waits on the object `kind/name` (and its `key`), in a sentence that names them
/// and never a value.
/// Why a run waits for what it refers to.
struct Wait {
    reason: Reason,
    message: String,
}

impl From<Wait> for Resolution {
    fn from(Wait { reason, message }: Wait) -> Self {
        Resolution::Waiting { reason, message }
    }
}

fn waiting(reason: Reason, message: String) -> Wait {
    Wait { reason, message }
}

fn not_readable(kind: ObjectKind, name: &str, namespace: &str, lookup: &Lookup) -> Wait {
    match lookup {
        Lookup::Forbidden => waiting(
            Reason::ReferenceMissing,
            format!(
                "the agent may not read {kind} {name:?} in namespace {namespace}; the run starts once it may"
            ),
        ),
        _ => waiting(
            Reason::ReferenceMissing,
            format!(
                "{kind} {name:?} not found in namespace {namespace}; the run starts once it exists"
            ),
        ),
    }
}

fn key_missing(kind: ObjectKind, name: &str, key: &str, namespace: &str) -> Wait {
    waiting(
        Reason::ReferenceMissing,
        format!(
            "{kind} {name:?} in namespace {namespace} has no key {key:?}; the run starts once it has"
        ),
    )
}

/// Resolves what `spec` refers to from the objects `found` in `namespace`. Pure.
///
/// Env follows a Pod's order: `envFrom` sources first (a later one wins), then `env`. A
/// missing object or key that is not `optional` makes the run wait, as does an object the
/// agent may not read.
pub fn resolve(spec: &TaskRunSpec, namespace: &str, found: &Found) -> Resolution {
    if let Some(bytes) = found.over_limit {
        return waiting(
            Reason::ReferencesTooLarge,
            format!(
                "the Secrets and ConfigMaps the spec names in namespace {namespace} hold more than {MAX_REFERENCE_BYTES} bytes ({bytes} read before the agent stopped); a run may take at most that much"
            ),
        )
        .into();
    }
    let lookup = |kind: ObjectKind, name: &str| {
        found
            .objects
            .get(&(kind, name.to_string()))
            .unwrap_or(&Lookup::Absent)
    };
    let mut inputs = Inputs::default();

    let parts = [
        resolve_env_from,
        resolve_env,
        resolve_volumes,
        resolve_pull_secrets,
    ];
    for part in parts {
        if let Err(wait) = part(spec, namespace, &lookup, &mut inputs) {
            return wait.into();
        }
    }
    Resolution::Ready(inputs)
}

/// Why a run waits, out of one part of [`resolve`].
type Waits = Result<(), Wait>;

/// What the spec's references found, by kind and name.
type Lookups<'a> = dyn Fn(ObjectKind, &str) -> &'a Lookup + 'a;

/// `envFrom`: every key of each Secret and ConfigMap that is a valid variable name.
fn resolve_env_from(
    spec: &TaskRunSpec,
    namespace: &str,
    lookup: &Lookups<'_>,
    inputs: &mut Inputs,
) -> Waits {
    for source in &spec.env_from {
        let (kind, reference) = match (&source.secret_ref, &source.config_map_ref) {
            (Some(reference), _) => (ObjectKind::Secret, reference),
            (None, Some(reference)) => (ObjectKind::ConfigMap, reference),
            (None, None) => continue,
        };
        match lookup(kind, &reference.name) {
            Lookup::Found(object) => {
                let prefix = source.prefix.as_deref().unwrap_or_default();
                for (key, value) in &object.data {
                    let name = format!("{prefix}{key}");
                    if !is_env_name(&name) {
                        continue;
                    }
                    match env_text(kind, &reference.name, key, value) {
                        Ok(text) => set_env(&mut inputs.env, &name, text),
                        Err(message) => return Err(waiting(Reason::ReferenceInvalid, message)),
                    }
                }
            }
            Lookup::Absent if reference.optional => {}
            other => return Err(not_readable(kind, &reference.name, namespace, other)),
        }
    }

    Ok(())
}

/// `env`: values, and keys of Secrets and ConfigMaps.
fn resolve_env(
    spec: &TaskRunSpec,
    namespace: &str,
    lookup: &Lookups<'_>,
    inputs: &mut Inputs,
) -> Waits {
    for env in &spec.env {
        let Some(source) = &env.value_from else {
            set_env(&mut inputs.env, &env.name, env.value.clone());
            continue;
        };
        let (kind, selector) = match (&source.secret_key_ref, &source.config_map_key_ref) {
            (Some(selector), _) => (ObjectKind::Secret, selector),
            (None, Some(selector)) => (ObjectKind::ConfigMap, selector),
            (None, None) => continue,
        };
        match lookup(kind, &selector.name) {
            Lookup::Found(object) => match object.data.get(&selector.key) {
                Some(value) => match env_text(kind, &selector.name, &selector.key, value) {
                    Ok(text) => set_env(&mut inputs.env, &env.name, text),
                    Err(message) => return Err(waiting(Reason::ReferenceInvalid, message)),
                },
                None if selector.optional => {}
                None => return Err(key_missing(kind, &selector.name, &selector.key, namespace)),
            },
            Lookup::Absent if selector.optional => {}
            other => return Err(not_readable(kind, &selector.name, namespace, other)),
        }
    }

    Ok(())
}

/// `volumeMounts`: `emptyDir`s, and the files of Secret and ConfigMap volumes.
fn resolve_volumes(
    spec: &TaskRunSpec,
    namespace: &str,
    lookup: &Lookups<'_>,
    inputs: &mut Inputs,
) -> Waits {
    for mount in &spec.volume_mounts {
        let Some(volume) = spec.volumes.iter().find(|v| v.name == mount.name) else {
            return Err(waiting(
                Reason::ReferenceInvalid,
                format!("volumeMount {} names no volume", mount.mount_path),
            ));
        };
        let mount_path = mount.mount_path.trim_end_matches('/');
        if let Some(dir) = &volume.empty_dir {
            inputs.scratch.push(Scratch {
                path: mount_path.to_string(),
                size_bytes: dir.size_limit.as_ref().and_then(parse_memory_bytes),
                read_only: mount.read_only,
            });
            continue;
        }
        let (kind, name, optional, items, default_mode) = match (&volume.secret, &volume.config_map)
        {
            (Some(s), _) => (
                ObjectKind::Secret,
                &s.secret_name,
                s.optional,
                &s.items,
                s.default_mode,
            ),
            (None, Some(c)) => (
                ObjectKind::ConfigMap,
                &c.name,
                c.optional,
                &c.items,
                c.default_mode,
            ),
            (None, None) => continue,
        };
        let strip = if mount.read_only { WRITE_BITS } else { 0 };
        inputs.directories.push(InputDirectory {
            path: mount_path.to_string(),
            mode: DIRECTORY_MODE & !strip,
        });
        let object = match lookup(kind, name) {
            Lookup::Found(object) => object,
            Lookup::Absent if optional => continue,
            other => return Err(not_readable(kind, name, namespace, other)),
        };
        let every_key: Vec<KeyToPath>;
        let items = if items.is_empty() {
            every_key = object
                .data
                .keys()
                .map(|key| KeyToPath {
                    key: key.clone(),
                    path: key.clone(),
                    mode: None,
                })
                .collect();
            &every_key
        } else {
            items
        };
        for item in items {
            let Some(contents) = object.data.get(&item.key) else {
                if optional {
                    continue;
                }
                return Err(key_missing(kind, name, &item.key, namespace));
            };
            let mode = item
                .mode
                .or(default_mode)
                .and_then(|m| u32::try_from(m).ok())
                .unwrap_or(DEFAULT_FILE_MODE)
                & 0o777;
            let relative = item.path.trim_start_matches('/');
            let mut parent = mount_path.to_string();
            let segments: Vec<&str> = relative.split('/').filter(|s| !s.is_empty()).collect();
            for segment in segments.iter().take(segments.len().saturating_sub(1)) {
                parent = format!("{parent}/{segment}");
                let directory = InputDirectory {
                    path: parent.clone(),
                    mode: DIRECTORY_MODE & !strip,
                };
                if !inputs.directories.contains(&directory) {
                    inputs.directories.push(directory);
                }
            }
            inputs.files.push(InputFile {
                path: format!("{mount_path}/{}", segments.join("/")),
                mode: mode & !strip,
                contents: contents.clone(),
            });
        }
    }

    Ok(())
}

/// `imagePullSecrets`: the credentials for the image's registry.
fn resolve_pull_secrets(
    spec: &TaskRunSpec,
    namespace: &str,
    lookup: &Lookups<'_>,
    inputs: &mut Inputs,
) -> Waits {
    let registry = image_registry(&spec.image);
    for secret in &spec.image_pull_secrets {
        let object = match lookup(ObjectKind::Secret, &secret.name) {
            Lookup::Found(object) => object,
            other => {
                return Err(not_readable(
                    ObjectKind::Secret,
                    &secret.name,
                    namespace,
                    other,
                ));
            }
        };
        match registry_credentials(object) {
            Ok(auths) => {
                if inputs.registry_auth.is_none() {
                    inputs.registry_auth = auths
                        .into_iter()
                        .find(|auth| registry_of_server(&auth.server) == registry);
                }
            }
            Err(problem) => {
                return Err(waiting(
                    Reason::ReferenceInvalid,
                    format!(
                        "imagePullSecret {:?} in namespace {namespace} {problem}; the run starts once it is fixed",
                        secret.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A value as an environment variable: text without NUL, as the environment holds it.
/// The error is why the run waits.
fn env_text(kind: ObjectKind, name: &str, key: &str, value: &[u8]) -> Result<String, String> {
    match String::from_utf8(value.to_vec()) {
        Ok(text) if !text.contains('\0') => Ok(text),
        _ => Err(format!(
            "key {key:?} of {kind} {name:?} is not text (UTF-8 without NUL) and cannot be an environment variable; the run starts once it is"
        )),
    }
}

/// The registry an image is pulled from, as Docker reads a reference: the first component
/// when it looks like a host (a dot, a port or `localhost`), else Docker Hub.
pub fn image_registry(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => {
            first.to_ascii_lowercase()
        }
        _ => "docker.io".into(),
    }
}

/// The registry host a Docker config key names (`https://registry:5000/v2/`,
/// `registry:5000`, `https://index.docker.io/v1/`).
pub fn registry_of_server(server: &str) -> String {
    let rest = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = rest
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => host,
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

/// The credentials of a pull secret: `.dockerconfigjson` (type
/// `kubernetes.io/dockerconfigjson`) or the older `.dockercfg`. The error says what is wrong,
/// never what the secret holds.
fn registry_credentials(secret: &ObjectData) -> Result<Vec<RegistryAuth>, &'static str> {
    let auths = if let Some(json) = secret.data.get(".dockerconfigjson") {
        serde_json::from_slice::<DockerConfig>(json)
            .map_err(|_| "holds a .dockerconfigjson that is not a Docker config file")?
            .auths
    } else if let Some(json) = secret.data.get(".dockercfg") {
        serde_json::from_slice::<BTreeMap<String, DockerAuth>>(json)
            .map_err(|_| "holds a .dockercfg that is not a Docker config file")?
    } else {
        return Err(
            "has no .dockerconfigjson key: pull secrets are of type kubernetes.io/dockerconfigjson",
        );
    };
    auths
        .into_iter()
        .map(|(server, auth)| {
            let (username, password) = match (auth.username, auth.password, auth.auth) {
                (Some(username), Some(password), _) => (username, password),
                (_, _, Some(encoded)) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(encoded.trim())
                        .ok()
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                        .ok_or("holds an auth entry that is not base64 of user:password")?;
                    let (username, password) = decoded
                        .split_once(':')
                        .ok_or("holds an auth entry that is not base64 of user:password")?;
                    (username.to_string(), password.to_string())
                }
                _ => return Err("holds a registry entry without username and password"),
            };
            Ok(RegistryAuth {
                server,
                username,
                password,
            })
        })
        .collect()
}

/// Why a run waits for the token of a ServiceAccount that does not exist (or that the agent
/// may not request tokens for).
pub fn token_unavailable(account: &str, namespace: &str, forbidden: bool) -> Resolution {
    let message = if forbidden {
        format!(
            "the agent may not request a token for ServiceAccount {account:?} in namespace {namespace}; the run starts once it may"
        )
    } else {
        format!(
            "ServiceAccount {account:?} not found in namespace {namespace}; the run starts once it exists"
        )
    };
    waiting(Reason::ReferenceMissing, message).into()
}

/// How long the token of a run is requested for: past its deadline and grace period, with a
/// margin for the pull, and never under the API's minimum of 10 minutes.
pub fn token_seconds(spec: &TaskRunSpec) -> i64 {
    spec.timeout_seconds
        .map_or(TOKEN_SECONDS_WITHOUT_DEADLINE, |timeout| {
            timeout
                .saturating_add(spec.termination_grace_period_seconds())
                .saturating_add(TOKEN_MARGIN_SECONDS)
        })
        .max(MIN_TOKEN_SECONDS)
}

/// Adds a ServiceAccount's identity to the inputs, as a Pod has it: `token`, `ca.crt` and
/// `namespace` under [`SERVICE_ACCOUNT_DIR`], and the API server's address in
/// `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT` unless the spec sets them.
pub fn with_service_account(
    mut inputs: Inputs,
    namespace: &str,
    token: &str,
    api: &TaskApi,
) -> Inputs {
    inputs.directories.push(InputDirectory {
        path: SERVICE_ACCOUNT_DIR.into(),
        mode: DIRECTORY_MODE,
    });
    let mut file = |name: &str, contents: Vec<u8>| {
        inputs.files.push(InputFile {
            path: format!("{SERVICE_ACCOUNT_DIR}/{name}"),
            mode: DEFAULT_FILE_MODE,
            contents,
        });
    };
    file("token", token.as_bytes().to_vec());
    file("namespace", namespace.as_bytes().to_vec());
    if let Some(ca) = &api.ca_pem {
        file("ca.crt", ca.clone());
    }
    for (name, value) in [
        ("KUBERNETES_SERVICE_HOST", api.host.clone()),
        ("KUBERNETES_SERVICE_PORT", api.port.to_string()),
    ] {
        if !inputs.env.iter().any(|(n, _)| n == name) {
            inputs.env.insert(0, (name.to_string(), value));
        }
    }
    if let Some(address) = api.address
        && api.host.parse::<IpAddr>().is_err()
    {
        inputs.extra_hosts.push(format!("{}:{address}", api.host));
    }
    inputs
}

/// The directories and files of `inputs` as a tar archive to unpack at `/` in the container:
/// directories first, each before what it holds, owned by root with their modes.
pub fn archive(inputs: &Inputs) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut directories = inputs.directories.clone();
    directories.sort();
    directories.dedup_by(|a, b| a.path == b.path);
    for directory in &directories {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(directory.mode);
        header.set_size(0);
        header.set_uid(0);
        header.set_gid(0);
        builder.append_data(
            &mut header,
            directory.path.trim_start_matches('/'),
            std::io::empty(),
        )?;
    }
    for file in &inputs.files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(file.mode);
        header.set_size(file.contents.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        builder.append_data(
            &mut header,
            file.path.trim_start_matches('/'),
            file.contents.as_slice(),
        )?;
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests;
