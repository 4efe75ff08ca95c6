//! The Docker Engine API backend (also Podman's Docker-compatible API), on bollard.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::models::{ContainerConfig, ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding, PortMap};
use bollard::query_parameters::{
    AttachContainerOptions, CommitContainerOptions, ContainerArchiveInfoOptions, CreateContainerOptions, CreateImageOptions,
    DownloadFromContainerOptions, KillContainerOptions, PushImageOptions, RemoveContainerOptions,
    RemoveImageOptions, UploadToContainerOptions, WaitContainerOptions,
};
use bollard::{ClientVersion, Docker};
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn};

use crate::connect::{parse_endpoint, ConnectOptions, Transport};
use crate::error::{api_error, EngineError, Result};
use s2i_engine::{
    ArchiveFormat, ArchiveOutput, ByteStream, CommitSpec, ContainerInput, ContainerSpec, Engine, EngineKind,
    EngineVersion, ImageBuildSpec, ImageInfo, LayerPhase, OutputSink, OutputStream, Progress, ProgressSink,
    RegistryAuth, RunningOutput, SeccompProfile, SecurityOptions,
};

/// The newest API version we speak. Negotiation picks the lower of this and the engine's.
const MAX_API_VERSION: (usize, usize) = (1, 47);
/// The oldest API version with everything we use (wait conditions, attach semantics, commit config).
const MIN_API_VERSION: (usize, usize) = (1, 25);
/// Long enough for a commit of a big container or a slow pull; our own steps set tighter limits.
const REQUEST_TIMEOUT_SECS: u64 = 3600;

pub struct DockerEngine {
    docker: Docker,
    /// The same connection without the API version prefix, for Podman's own (libpod) API.
    unversioned: Docker,
    endpoint: String,
    version: EngineVersion,
    /// Containers created and not yet removed, for clean-up after an interruption.
    created: Mutex<HashSet<String>>,
    /// Images made on the way (a two-step commit's first step) and not yet removed.
    intermediate: Mutex<HashSet<String>>,
}

/// How long output may pause, once a container has exited, before the rest of it is given up
/// (the engine may never end the attach; see `run_container`).
const OUTPUT_AFTER_EXIT: Duration = Duration::from_secs(2);

/// How long a default socket may take to answer before the next one is tried.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(15);

impl DockerEngine {
    /// Connect to `opts.endpoint`, or when it is empty to the first of the default sockets that
    /// answers (Docker's, then Podman's rootful and rootless ones); ask the engine for its version
    /// and settle on an API version both sides speak.
    pub async fn connect(opts: &ConnectOptions) -> Result<Self> {
        if !opts.endpoint.is_empty() {
            return Self::connect_to(opts, &opts.endpoint).await;
        }
        Self::connect_first(opts, &crate::connect::default_endpoints()).await
    }

    /// Connect to the first of `endpoints` that answers. The error says what each one answered
    /// and how to start an engine.
    pub async fn connect_first(opts: &ConnectOptions, endpoints: &[String]) -> Result<Self> {
        let mut tried = Vec::new();
        for endpoint in endpoints {
            if let Some(path) = endpoint.strip_prefix("unix://") {
                if !std::path::Path::new(path).exists() {
                    tried.push(format!("{endpoint} (no such socket)"));
                    continue;
                }
            }
            match tokio::time::timeout(DISCOVERY_TIMEOUT, Self::connect_to(opts, endpoint)).await {
                Ok(Ok(engine)) => return Ok(engine),
                Ok(Err(EngineError::Connect { reason, .. })) => tried.push(format!("{endpoint} ({reason})")),
                Ok(Err(other)) => return Err(other),
                Err(_) => tried.push(format!("{endpoint} (no answer within {}s)", DISCOVERY_TIMEOUT.as_secs())),
            }
        }
        Err(EngineError::Connect {
            endpoint: if endpoints.len() == 1 { endpoints[0].clone() } else { "any of the endpoints tried".into() },
            reason: format!(
                "tried {}; start Docker, or Podman's API service (systemctl --user start podman.socket, \
                 systemctl start podman.socket as root, or podman system service --time=0 &)",
                tried.join(", ")
            ),
        })
    }

    async fn connect_to(opts: &ConnectOptions, endpoint: &str) -> Result<Self> {
        let connect_err = |reason: String| EngineError::Connect { endpoint: endpoint.to_string(), reason };
        // Paths are versioned by the request modifier below, so bollard's own version is irrelevant.
        let client_version = ClientVersion { major_version: MAX_API_VERSION.0, minor_version: MAX_API_VERSION.1 };
        let docker = match parse_endpoint(endpoint)? {
            Transport::Unix(path) => {
                if !std::path::Path::new(path).exists() {
                    return Err(connect_err(format!("socket {path} does not exist")));
                }
                Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, &client_version).map_err(|e| connect_err(e.to_string()))
            }
            Transport::Tcp(addr) if opts.tls.enabled() => {
                crate::tls::connect(addr, &opts.tls, REQUEST_TIMEOUT_SECS, &client_version)
            }
            Transport::Tcp(addr) => {
                Docker::connect_with_http(addr, REQUEST_TIMEOUT_SECS, &client_version).map_err(|e| connect_err(e.to_string()))
            }
        }?;

        let server = docker.version().await.map_err(|e| connect_err(crate::error::error_chain(&e)))?;
        let server_api = server
            .api_version
            .as_deref()
            .and_then(|v| crate::connect::parse_api_version(v).ok())
            .unwrap_or(MIN_API_VERSION);
        let api = match opts.api_version {
            Some(pinned) => pinned,
            None => std::cmp::min(server_api, MAX_API_VERSION),
        };
        if opts.api_version.is_none() && api < MIN_API_VERSION {
            return Err(connect_err(format!(
                "the engine speaks API {}.{}, and s2i needs {}.{} or newer",
                api.0, api.1, MIN_API_VERSION.0, MIN_API_VERSION.1
            )));
        }
        let podman = server
            .components
            .as_ref()
            .and_then(|cs| cs.iter().find(|c| c.name.to_ascii_lowercase().contains("podman")));
        let version = EngineVersion {
            kind: if podman.is_some() { EngineKind::Podman } else { EngineKind::Docker },
            // Podman answers with its own version in its component, and the Docker version it
            // emulates at the top.
            version: podman.map(|c| c.version.clone()).or(server.version).unwrap_or_default(),
            api_version: format!("{}.{}", api.0, api.1),
            endpoint: endpoint.to_string(),
        };
        info!("Using {} {} (API {}) at {endpoint}", version.kind, version.version, version.api_version);
        let unversioned = docker.clone();
        let prefix = format!("/v{}.{}", api.0, api.1);
        let docker = docker.with_request_modifier(move |mut req| {
            registry_auth_url_safe(&mut req);
            let uri = req.uri().clone();
            let mut parts = uri.into_parts();
            if let Some(pq) = parts.path_and_query.as_ref() {
                if let Ok(versioned) = format!("{prefix}{pq}").parse() {
                    parts.path_and_query = Some(versioned);
                    if let Ok(new_uri) = http::Uri::from_parts(parts) {
                        *req.uri_mut() = new_uri;
                    }
                }
            }
            req
        });
        Ok(DockerEngine {
            docker,
            unversioned,
            endpoint: endpoint.to_string(),
            version,
            created: Mutex::new(HashSet::new()),
            intermediate: Mutex::new(HashSet::new()),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn forget(&self, id: &str) {
        self.created.lock().unwrap().remove(id);
    }

    /// A `GET` of Podman's own API (`/v4.0.0/libpod{path}`), for what its Docker-compatible API
    /// leaves out; `None` on 404. bollard has no raw request: `export_image` is a plain GET whose
    /// body it hands back untouched, so a client whose request modifier swaps the path serves as one.
    async fn libpod_get(&self, path: &str) -> Result<Option<Vec<u8>>> {
        const MAX_ANSWER: usize = 16 << 20;
        let target: http::uri::PathAndQuery = format!("/v4.0.0/libpod{path}")
            .parse()
            .map_err(|e| EngineError::Api { op: format!("asking Podman for {path}"), message: format!("{e}"), status: None })?;
        let client = self.unversioned.clone().with_request_modifier(move |mut req| {
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = Some(target.clone());
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
            req
        });
        let mut body = Vec::new();
        let mut stream = client.export_image("libpod").boxed();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) if body.len() + bytes.len() <= MAX_ANSWER => body.extend_from_slice(&bytes),
                Ok(_) => {
                    return Err(EngineError::Api {
                        op: format!("asking Podman for {path}"),
                        message: format!("the answer exceeds {} MiB", MAX_ANSWER >> 20),
                        status: None,
                    })
                }
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return Ok(None),
                Err(e) => return Err(api_error(format!("asking Podman for {path}"), e)),
            }
        }
        Ok(Some(body))
    }

    /// The ONBUILD triggers of an image on Podman, whose APIs do not report them: read from the
    /// image's history (see [`pending_onbuild`]). An image in the OCI format cannot hold any (Podman
    /// drops them when it builds one), which is worth a warning when its history lists some.
    async fn podman_onbuild(&self, name: &str, id: &str) -> Result<Vec<String>> {
        // Asked by id: a name (from a label, say) never becomes part of the path.
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        let Some(body) = self.libpod_get(&format!("/images/{hex}/json")).await? else {
            return Ok(Vec::new());
        };
        let image: LibpodImage = serde_json::from_slice(&body).map_err(|e| EngineError::Api {
            op: format!("reading Podman's description of image {name:?}"),
            message: e.to_string(),
            status: None,
        })?;
        let triggers = pending_onbuild(&image.history);
        if image.manifest_type.contains("oci") {
            if !triggers.is_empty() {
                warn!(
                    "Image {name} lists ONBUILD instructions in its history, but it is in the OCI format, which cannot keep them: \
                     Podman will not run them (rebuild it with `podman build --format docker`)"
                );
            }
            return Ok(Vec::new());
        }
        Ok(triggers)
    }

    /// Podman 4 reads a commit's settings only from `changes` lines, which cannot carry a newline
    /// in a value (nor `=` in a key). A container's own settings reach its commit verbatim,
    /// though: whatever the lines cannot say is given to a container created (never started) from
    /// a first, untagged commit, and that container is committed again.
    async fn podman_commit(&self, id: &str, spec: &CommitSpec, opts: CommitContainerOptions) -> Result<String> {
        let container = self
            .docker
            .inspect_container(id, None::<bollard::query_parameters::InspectContainerOptions>)
            .await
            .map_err(|e| api_error("inspecting the container to commit", e))?;
        let config = container.config.unwrap_or_default();
        let plan = PodmanCommit::plan(spec, &config.env.unwrap_or_default(), &config.labels.unwrap_or_default());
        let changes = Some(plan.changes.join("\n"));
        if plan.rest_env.is_empty() && plan.rest_labels.is_empty() && !plan.rest_user {
            let opts = CommitContainerOptions { changes, ..opts };
            return self.commit_request(opts).await;
        }
        debug!(
            "committing in two steps: Podman's changes lines cannot carry {} env, {} label and {} user settings",
            plan.rest_env.len(),
            plan.rest_labels.len(),
            u8::from(plan.rest_user)
        );
        let first = self
            .commit_request(CommitContainerOptions { repo: None, tag: None, changes: changes.clone(), ..opts.clone() })
            .await?;
        self.intermediate.lock().unwrap().insert(first.clone());
        // Named after the container it continues, so that whoever looks for that one finds it too.
        let name = container
            .name
            .as_deref()
            .map(|n| n.trim_start_matches('/'))
            .filter(|n| !n.is_empty())
            .map(|n| format!("{n}_commit"));
        let body = ContainerCreateBody {
            image: Some(first.clone()),
            cmd: Some(spec.cmd.clone()),
            entrypoint: Some(spec.entrypoint.clone()),
            user: Some(spec.user.clone()).filter(|u| !u.is_empty()),
            env: Some(plan.rest_env),
            labels: Some(plan.rest_labels),
            ..Default::default()
        };
        if let Some(name) = &name {
            self.created.lock().unwrap().insert(name.clone());
        }
        let second = self
            .docker
            .create_container(Some(CreateContainerOptions { name: name.clone(), ..Default::default() }), body)
            .await
            .map_err(|e| api_error("creating the container of the second commit step", e));
        if let Some(name) = &name {
            self.forget(name);
        }
        let outcome = match second {
            Ok(created) => {
                self.created.lock().unwrap().insert(created.id.clone());
                let committed = self
                    .commit_request(CommitContainerOptions { container: Some(created.id.clone()), changes, ..opts })
                    .await;
                if let Err(e) = self.remove_container(&created.id).await {
                    warn!("could not remove container {}: {e}", created.id);
                }
                committed
            }
            Err(e) => Err(e),
        };
        // The result keeps the first step's layers; only the first image goes.
        match self.remove_image(&first).await {
            Ok(()) => {
                self.intermediate.lock().unwrap().remove(&first);
            }
            Err(e) => warn!("could not remove image {first}, the first step of a commit: {e}"),
        }
        outcome
    }

    async fn commit_request(&self, opts: CommitContainerOptions) -> Result<String> {
        // Podman 4 reads no body: every setting is in `changes`.
        let res = self
            .docker
            .commit_container(opts, ContainerConfig::default())
            .await
            .map_err(|e| api_error("committing the container", e))?;
        Ok(full_image_id(res.id))
    }

}

/// The exit code of a container that has stopped (or will): a non-zero exit is a result, not an error.
async fn wait_exit_code(docker: &Docker, id: &str) -> Result<i64> {
    let opts = WaitContainerOptions { condition: "not-running".into() };
    let mut waits = docker.wait_container(id, Some(opts));
    match waits.next().await {
        Some(Ok(resp)) => Ok(resp.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(api_error("waiting for the container", e)),
        None => Err(EngineError::Api {
            op: "waiting for the container".into(),
            message: "the engine closed the wait without an exit code".into(),
            status: None,
        }),
    }
}

/// Registry credentials as the engine reads them from the `X-Registry-Auth` header.
fn credentials(auth: &RegistryAuth) -> DockerCredentials {
    DockerCredentials {
        username: Some(auth.username.clone()).filter(|u| !u.is_empty()),
        password: Some(auth.password.clone()).filter(|p| !p.is_empty()),
        identitytoken: auth.identity_token.clone(),
        serveraddress: Some(auth.server.clone()),
        ..Default::default()
    }
}

/// Docker and Podman decode `X-Registry-Auth` (and `X-Registry-Config`) as URL-safe base64, and
/// bollard encodes it with the standard alphabet: whenever the encoding holds `+` or `/`, the
/// engine would silently pull without credentials. Re-encode the header URL-safe.
fn registry_auth_url_safe(req: &mut bollard::BollardRequest) {
    use base64::Engine as _;
    for name in ["X-Registry-Auth", "X-Registry-Config"] {
        let Some(value) = req.headers().get(name).and_then(|v| v.to_str().ok()) else { continue };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(value) else { continue };
        let safe = base64::engine::general_purpose::URL_SAFE.encode(raw);
        if let Ok(v) = http::HeaderValue::from_str(&safe) {
            req.headers_mut().insert(name, v);
        }
    }
}

fn progress_numbers(detail: Option<&bollard::models::ProgressDetail>) -> (u64, Option<u64>) {
    let current = detail.and_then(|d| d.current).unwrap_or(0).max(0) as u64;
    let total = detail.and_then(|d| d.total).filter(|t| *t > 0).map(|t| t as u64);
    (current, total)
}

/// The phase a pull or push status line names, for lines about one layer.
fn layer_phase(status: &str) -> Option<LayerPhase> {
    Some(match status {
        "Waiting" | "Preparing" | "Pulling fs layer" => LayerPhase::Waiting,
        "Downloading" => LayerPhase::Downloading,
        "Verifying Checksum" | "Download complete" => LayerPhase::Verifying,
        "Extracting" => LayerPhase::Extracting,
        "Pushing" => LayerPhase::Pushing,
        "Pull complete" | "Pushed" => LayerPhase::Done,
        "Already exists" | "Layer already exists" | "Mounted from" => LayerPhase::Exists,
        s if s.starts_with("Mounted from ") => LayerPhase::Exists,
        _ => return None,
    })
}

/// The digest in a push's closing line, `v1: digest: sha256:… size: 527`.
fn pushed_digest(status: &str) -> Option<&str> {
    let rest = &status[status.find("digest: ")? + "digest: ".len()..];
    let digest = rest.split_whitespace().next()?;
    digest.starts_with("sha256:").then_some(digest)
}

fn stream_error(e: bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerStreamError { error } => error,
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        other => crate::error::error_chain(&other),
    }
}

/// The classic builder marks a RUN step's stderr with the escape sequences `ESC[91m` … `ESC[0m`
/// (which may open and close in different messages): route those parts to stderr, without them.
fn relay_build_stream(mut text: &str, in_stderr: &mut bool, output: &mut dyn OutputSink) {
    const START: &str = "\x1b[91m";
    const END: &str = "\x1b[0m";
    while !text.is_empty() {
        let marker = if *in_stderr { END } else { START };
        let (part, rest, found) = match text.find(marker) {
            Some(i) => (&text[..i], &text[i + marker.len()..], true),
            None => (text, "", false),
        };
        if !part.is_empty() {
            let stream = if *in_stderr { OutputStream::Stderr } else { OutputStream::Stdout };
            output.output(stream, part.as_bytes());
        }
        if found {
            *in_stderr = !*in_stderr;
        }
        text = rest;
    }
}

/// A commit as Podman 4 can take it: `changes` lines for what they can carry, and the rest
/// (values with a newline, label keys with `=`, a user with a newline) for a second step.
#[derive(Debug, Default, PartialEq)]
struct PodmanCommit {
    changes: Vec<String>,
    rest_env: Vec<String>,
    rest_labels: HashMap<String, String>,
    rest_user: bool,
}

impl PodmanCommit {
    /// `container_env` and `container_labels` are the container's own settings, which Podman
    /// copies into the image by itself: what they already hold needs no line.
    fn plan(spec: &CommitSpec, container_env: &[String], container_labels: &HashMap<String, String>) -> PodmanCommit {
        let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_default();
        // JSON arrays never hold a raw newline: CMD and ENTRYPOINT always fit on their line.
        let mut plan = PodmanCommit {
            changes: vec![format!("CMD {}", json(&spec.cmd)), format!("ENTRYPOINT {}", json(&spec.entrypoint))],
            ..Default::default()
        };
        if !spec.user.is_empty() {
            if spec.user.contains('\n') {
                plan.rest_user = true;
            } else {
                plan.changes.push(format!("USER {}", spec.user));
            }
        }
        for kv in &spec.env {
            let Some((k, v)) = kv.split_once('=') else { continue };
            if container_env.iter().any(|e| e == kv) {
                continue;
            }
            match change_pair(k, v) {
                Some(pair) => plan.changes.push(format!("ENV {pair}")),
                None => plan.rest_env.push(kv.clone()),
            }
        }
        let mut labels: Vec<_> = spec.labels.iter().collect();
        labels.sort();
        for (k, v) in labels {
            if container_labels.get(k) == Some(v) {
                continue;
            }
            match change_pair(k, v) {
                Some(pair) => plan.changes.push(format!("LABEL {pair}")),
                None => {
                    plan.rest_labels.insert(k.clone(), v.clone());
                }
            }
        }
        plan
    }
}

/// `"key"="value"` as Podman 4 reads an ENV or LABEL change: the lines are split at newlines,
/// a pair at its first `=`, and one pair of surrounding quotes is stripped from each side, with
/// no unescaping. Always quoting keeps quotes, `\`, `$`, spaces and `=` in a value intact and
/// leading or trailing spaces from being trimmed. `None` when the pair cannot be written so.
fn change_pair(key: &str, value: &str) -> Option<String> {
    if key.is_empty() || key.contains('=') || key.contains('\n') || value.contains('\n') {
        return None;
    }
    Some(format!("\"{key}\"=\"{value}\""))
}

/// Docker names images `sha256:<hex>`; Podman answers some calls with the bare hex.
/// The address a published port answers on: its loopback binding (an empty or unspecified host
/// address, as Podman reports one, means every address, loopback included).
fn published_address(bindings: &[PortBinding]) -> Option<SocketAddr> {
    bindings.iter().find_map(|b| {
        let port: u16 = b.host_port.as_deref()?.parse().ok().filter(|p| *p != 0)?;
        let ip: std::net::IpAddr = match b.host_ip.as_deref().unwrap_or("") {
            "" | "0.0.0.0" | "127.0.0.1" => std::net::Ipv4Addr::LOCALHOST.into(),
            "::" | "::1" => std::net::Ipv6Addr::LOCALHOST.into(),
            _ => return None,
        };
        Some(SocketAddr::new(ip, port))
    })
}

fn full_image_id(id: String) -> String {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("sha256:{id}")
    } else {
        id
    }
}

/// What s2i reads of Podman's own image description.
#[derive(Debug, serde::Deserialize)]
struct LibpodImage {
    #[serde(rename = "ManifestType", default)]
    manifest_type: String,
    #[serde(rename = "History", default)]
    history: Vec<HistoryEntry>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct HistoryEntry {
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    empty_layer: bool,
}

/// The ONBUILD triggers an image holds, read from its history (oldest entry first): the ONBUILD
/// steps after its last layer. Triggers run when an image is built FROM it and are not inherited,
/// so steps made by layers after them (a child's COPY or RUN) mean they were used up; when only
/// metadata steps follow, they were used up if those repeat the triggers themselves.
fn pending_onbuild(history: &[HistoryEntry]) -> Vec<String> {
    let trailing_start = history.iter().rposition(|h| !h.empty_layer).map_or(0, |i| i + 1);
    let trailing: Vec<Option<String>> = history[trailing_start..].iter().map(|h| nop_instruction(&h.created_by)).collect();
    let Some(last) = trailing.iter().rposition(|i| i.as_deref().is_some_and(|i| i.starts_with("ONBUILD "))) else {
        return Vec::new();
    };
    let triggers: Vec<String> = trailing[..=last]
        .iter()
        .flatten()
        .filter_map(|i| i.strip_prefix("ONBUILD ").map(|t| t.trim().to_string()))
        .collect();
    if triggers.is_empty() {
        return triggers;
    }
    let after: Vec<&str> = trailing[last + 1..].iter().map(|i| i.as_deref().unwrap_or("")).collect();
    let ran = after.windows(triggers.len()).any(|w| w.iter().zip(&triggers).all(|(a, t)| a == t));
    if ran {
        Vec::new()
    } else {
        triggers
    }
}

/// The instruction of a metadata step, `USER 1001` from `/bin/sh -c #(nop)  USER 1001`.
fn nop_instruction(created_by: &str) -> Option<String> {
    Some(created_by.split_once("#(nop)")?.1.trim().to_string())
}

/// Podman's tmpfs options for Docker's: Podman has no `uid=` (an unknown option there); `U`
/// gives the tmpfs to the container's user instead, and `notmpcopyup` keeps the directory the
/// image has at the mount point (root's, in a previous image built with secrets) from being
/// copied onto it. Both are needed for save-artifacts to write its secrets there.
fn podman_tmpfs_options(options: &str) -> String {
    let mut kept: Vec<&str> = options.split(',').filter(|o| !o.starts_with("uid=") && !o.starts_with("gid=") && !o.is_empty()).collect();
    if !kept.contains(&"notmpcopyup") && !kept.contains(&"tmpcopyup") {
        kept.push("notmpcopyup");
        kept.push("U");
    }
    kept.join(",")
}

/// `HostConfig.SecurityOpt`: Docker takes a seccomp profile's JSON itself (its CLI reads the
/// file), Podman's compatible API a path that the service opens.
fn security_opt(security: &SecurityOptions, podman: bool) -> Option<Vec<String>> {
    let mut opts = Vec::new();
    match &security.seccomp {
        SeccompProfile::Default => {}
        SeccompProfile::Unconfined => opts.push("seccomp=unconfined".to_string()),
        SeccompProfile::File { path, .. } if podman => opts.push(format!("seccomp={}", path.display())),
        SeccompProfile::File { json, .. } => opts.push(format!("seccomp={json}")),
    }
    if security.no_new_privileges {
        opts.push("no-new-privileges".to_string());
    }
    (!opts.is_empty()).then_some(opts)
}

#[async_trait]
impl Engine for DockerEngine {
    async fn version(&self) -> Result<EngineVersion> {
        Ok(self.version.clone())
    }

    async fn inspect_image(&self, name: &str) -> Result<Option<ImageInfo>> {
        let inspect = match self.docker.inspect_image(name).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return Ok(None),
            Err(e) => return Err(api_error(format!("inspecting image {name:?}"), e)),
        };
        let config = inspect.config.unwrap_or_default();
        let id = full_image_id(inspect.id.unwrap_or_default());
        let mut on_build = config.on_build.unwrap_or_default();
        if on_build.is_empty() && self.version.is_podman() {
            on_build = self.podman_onbuild(name, &id).await?;
        }
        Ok(Some(ImageInfo {
            id,
            user: config.user.unwrap_or_default(),
            env: config.env.unwrap_or_default(),
            entrypoint: config.entrypoint.filter(|e| !e.is_empty()),
            cmd: config.cmd,
            working_dir: config.working_dir.unwrap_or_default(),
            labels: config.labels.unwrap_or_default(),
            on_build,
            size: inspect.size.and_then(|s| u64::try_from(s).ok()),
            repo_digests: inspect.repo_digests.unwrap_or_default(),
        }))
    }

    async fn pull_image(&self, name: &str, auth: Option<&RegistryAuth>, progress: &mut dyn ProgressSink) -> Result<()> {
        let opts = CreateImageOptions { from_image: Some(name.to_string()), ..Default::default() };
        let mut stream = self.docker.create_image(Some(opts), None, auth.map(credentials));
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        return Err(EngineError::Pull { image: name.to_string(), message: detail });
                    }
                    let Some(status) = info.status else { continue };
                    let (current, total) = progress_numbers(info.progress_detail.as_ref());
                    match (info.id.as_deref(), layer_phase(&status)) {
                        (Some(id), Some(phase)) => progress.progress(Progress::Layer { id, phase, current, total }),
                        _ => progress.progress(Progress::Status(&status)),
                    }
                }
                Err(e) => return Err(EngineError::Pull { image: name.to_string(), message: stream_error(e) }),
            }
        }
        Ok(())
    }

    async fn push_image(&self, name: &str, auth: Option<&RegistryAuth>, progress: &mut dyn ProgressSink) -> Result<String> {
        let (repo, tag) = s2i_registry::image_ref::split_tag(name);
        let opts = PushImageOptions { tag: Some(tag.to_string()), ..Default::default() };
        let mut stream = self.docker.push_image(repo, Some(opts), auth.map(credentials));
        let mut digest = None;
        let failed = |message: String| EngineError::Api { op: format!("pushing {name}"), message, status: None };
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| failed(stream_error(e)))?;
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(failed(detail));
            }
            let Some(status) = info.status else { continue };
            // The engine's API description has no layer id for push messages: bytes are reported
            // per layer size, which tells layers apart well enough for a progress line.
            let (current, total) = progress_numbers(info.progress_detail.as_ref());
            match (layer_phase(&status), total) {
                (Some(phase), Some(t)) => {
                    let id = format!("{t}");
                    progress.progress(Progress::Layer { id: &id, phase, current, total })
                }
                _ => {
                    if let Some(d) = pushed_digest(&status) {
                        digest = Some(d.to_string());
                    }
                    progress.progress(Progress::Status(&status));
                }
            }
        }
        digest.ok_or_else(|| failed("the engine did not report the pushed digest".into()))
    }

    async fn save_image(&self, name: &str, format: ArchiveFormat, mut out: ArchiveOutput) -> Result<()> {
        if format != ArchiveFormat::DockerArchive {
            return Err(EngineError::NotSupported { engine: self.version.kind, what: "write OCI archives".into() });
        }
        let mut stream = self.docker.export_image(name);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| api_error(format!("saving image {name}"), e))?;
            out.write_all(&chunk).await.map_err(EngineError::Input)?;
        }
        out.shutdown().await.map_err(EngineError::Input)?;
        Ok(())
    }

    async fn load_image(&self, archive: ContainerInput) -> Result<Vec<String>> {
        let opts = bollard::query_parameters::ImportImageOptions { quiet: true, ..Default::default() };
        let body = tokio_util::io::ReaderStream::new(archive);
        let mut stream = self.docker.import_image_stream(opts, body, None);
        let mut loaded = Vec::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| api_error("loading an image archive", e))?;
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(EngineError::Api { op: "loading an image archive".into(), message: detail, status: None });
            }
            for text in [info.stream, info.status].into_iter().flatten() {
                for line in text.lines() {
                    if let Some(what) = line.strip_prefix("Loaded image: ").or_else(|| line.strip_prefix("Loaded image ID: ")) {
                        loaded.push(what.trim().to_string());
                    }
                }
            }
        }
        Ok(loaded)
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let published: Vec<String> = spec.publish.iter().map(|p| format!("{p}/tcp")).collect();
        // Published on the loopback address only, at a port the engine picks.
        let port_bindings: PortMap = published
            .iter()
            .map(|p| (p.clone(), Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) }])))
            .collect();
        let host_config = HostConfig {
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            binds: non_empty(&spec.binds),
            cap_drop: non_empty(&spec.cap_drop),
            extra_hosts: non_empty(&spec.extra_hosts),
            network_mode: spec.network_mode.clone(),
            publish_all_ports: spec.publish_all_ports.then_some(true),
            shm_size: spec.shm_size,
            tmpfs: (!spec.tmpfs.is_empty()).then(|| {
                let podman = self.version.is_podman();
                spec.tmpfs.iter().map(|(path, options)| (path.clone(), if podman { podman_tmpfs_options(options) } else { options.clone() })).collect()
            }),
            security_opt: security_opt(&spec.security, self.version.is_podman()),
            log_config: spec
                .no_log
                .then(|| HostConfigLogConfig { typ: Some("none".into()), config: None }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(spec.cmd.clone()),
            entrypoint: spec.entrypoint.clone(),
            user: spec.user.clone().filter(|u| !u.is_empty()),
            env: non_empty(&spec.env),
            working_dir: spec.working_dir.clone(),
            open_stdin: Some(spec.open_stdin),
            stdin_once: Some(spec.open_stdin),
            attach_stdin: Some(spec.open_stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            exposed_ports: non_empty(&published),
            host_config: Some(host_config),
            ..Default::default()
        };
        let opts = CreateContainerOptions { name: spec.name.clone(), ..Default::default() };
        // Remembered by name before the request: an interruption that drops this future after the
        // engine made the container, but before its id arrived, must still find it to remove it.
        if let Some(name) = &spec.name {
            self.created.lock().unwrap().insert(name.clone());
        }
        let created = self.docker.create_container(Some(opts), body).await;
        if let Some(name) = &spec.name {
            self.forget(name);
        }
        let created = created.map_err(|e| api_error(format!("creating a container from {:?}", spec.image), e))?;
        for w in created.warnings.iter().filter(|w| !w.is_empty()) {
            warn!("{w}");
        }
        self.created.lock().unwrap().insert(created.id.clone());
        Ok(created.id)
    }

    async fn run_container(&self, id: &str, input: Option<ContainerInput>, output: &mut dyn OutputSink) -> Result<i64> {
        let opts = AttachContainerOptions {
            stdin: input.is_some(),
            stdout: true,
            stderr: true,
            stream: true,
            ..Default::default()
        };
        let attached = self
            .docker
            .attach_container(id, Some(opts))
            .await
            .map_err(|e| api_error("attaching to the container", e))?;
        let (mut out, mut stdin) = (attached.output, attached.input);
        self.docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| api_error("starting the container", e))?;

        let pump = async {
            match input {
                Some(input) => s2i_engine::input::pump_stdin(input, &mut stdin).await,
                None => Ok(()),
            }
        };
        let exited = wait_exit_code(&self.docker, id);
        tokio::pin!(pump, exited);
        // The container's exit ends the run, not the end of the streams: a container that dies
        // without reading its input (a tar that cannot write) leaves our write blocked, and Docker
        // holds the attach open, its output included, for as long as its own copy of that input
        // is stuck. Once the exit is known, output still arriving is relayed until it pauses.
        let (mut pumped, mut code, mut output_ended, mut cut_short) = (None, None, false, None);
        loop {
            tokio::select! {
                item = out.next(), if !output_ended => match item {
                    Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => output.output(OutputStream::Stdout, &message),
                    Some(Ok(LogOutput::StdErr { message })) => output.output(OutputStream::Stderr, &message),
                    Some(Ok(LogOutput::StdIn { .. })) => {}
                    Some(Err(e)) => {
                        cut_short = Some(e);
                        output_ended = true;
                    }
                    None => output_ended = true,
                },
                result = &mut pump, if pumped.is_none() => {
                    if result.is_err() {
                        // The container got a truncated stream; don't let it carry on with half its input.
                        let kill = KillContainerOptions { signal: "KILL".into() };
                        let _ = self.docker.kill_container(id, Some(kill)).await;
                    }
                    pumped = Some(result);
                }
                exit = &mut exited, if code.is_none() => code = Some(exit?),
                () = tokio::time::sleep(OUTPUT_AFTER_EXIT), if code.is_some() => {
                    debug!("the engine kept the attach open {OUTPUT_AFTER_EXIT:?} after the container exited; not waiting for it");
                    break;
                }
            }
            if output_ended && code.is_some() {
                break;
            }
        }
        if let Some(Err(e)) = pumped {
            return Err(EngineError::Input(e));
        }
        if let Some(e) = cut_short {
            // Podman resets the attach connection when a container stops while input it never
            // read is still queued: the exit code stands, the end of the output may be lost.
            warn!("the engine cut the container's output short ({}); its last lines may be missing", stream_error(e));
        }
        // Dropping the pump here ends an upload the container never read: the input's writer sees
        // a closed pipe and stops.
        Ok(code.expect("the loop ends only after the exit"))
    }

    async fn run_with_stdout(&self, id: &str, input: Option<ContainerInput>, mut stderr: Box<dyn OutputSink>) -> Result<RunningOutput> {
        let opts = AttachContainerOptions { stdin: input.is_some(), stdout: true, stderr: true, stream: true, ..Default::default() };
        let attached = self
            .docker
            .attach_container(id, Some(opts))
            .await
            .map_err(|e| api_error("attaching to the container", e))?;
        self.docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| api_error("starting the container", e))?;
        let (writer, reader) = tokio::io::duplex(256 * 1024);
        let (docker, id) = (self.docker.clone(), id.to_string());
        let mut output = attached.output;
        // The input goes in while the caller reads the output; a container that stops reading it
        // ends the copy, its exit code tells the rest.
        if let Some(input) = input {
            let mut stdin = attached.input;
            tokio::spawn(async move {
                if let Err(e) = s2i_engine::input::pump_stdin(input, &mut stdin).await {
                    debug!("feeding the container's input failed: {e}");
                }
            });
        }
        let pump = tokio::spawn(async move {
            let mut writer = Some(writer);
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                        if let Some(w) = writer.as_mut() {
                            if w.write_all(&message).await.is_err() {
                                // The reader is gone; keep draining so the container can finish.
                                writer = None;
                            }
                        }
                    }
                    Ok(LogOutput::StdErr { message }) => stderr.output(OutputStream::Stderr, &message),
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(e) => return Err(api_error("reading the container's output", e)),
                }
            }
            drop(writer);
            drop(stderr);
            wait_exit_code(&docker, &id).await
        });
        let exit = async move {
            pump.await.map_err(|e| EngineError::Api { op: "reading the container's output".into(), message: e.to_string(), status: None })?
        };
        Ok(RunningOutput { stdout: Box::new(reader), exit: Box::pin(exit) })
    }

    async fn upload_archive(&self, id: &str, path: &str, tar: ContainerInput) -> Result<()> {
        if self.version.is_podman() {
            // Podman makes a missing directory where Docker answers 404: ask first.
            let stat = ContainerArchiveInfoOptions { path: path.to_string() };
            self.docker
                .get_container_archive_info(id, Some(stat))
                .await
                .map_err(|e| api_error(format!("copying files to {path} in the container"), e))?;
        }
        let opts = UploadToContainerOptions { path: path.to_string(), ..Default::default() };
        let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(tar));
        self.docker
            .upload_to_container(id, Some(opts), body)
            .await
            .map_err(|e| api_error(format!("copying files to {path} in the container"), e))
    }

    async fn commit_container(&self, id: &str, spec: &CommitSpec) -> Result<String> {
        let opts = CommitContainerOptions {
            container: Some(id.to_string()),
            repo: spec.repo.clone(),
            tag: spec.tag.clone(),
            pause: false,
            ..Default::default()
        };
        if self.version.is_podman() {
            return self.podman_commit(id, spec, opts).await;
        }
        let config = ContainerConfig {
            cmd: Some(spec.cmd.clone()),
            entrypoint: Some(spec.entrypoint.clone()),
            user: Some(spec.user.clone()),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            ..Default::default()
        };
        let res = self
            .docker
            .commit_container(opts, config)
            .await
            .map_err(|e| api_error("committing the container", e))?;
        Ok(full_image_id(res.id))
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let opts = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                self.forget(id);
                Ok(())
            }
            Err(e) => Err(api_error(format!("removing container {id}"), e)),
        }
    }

    async fn remove_image(&self, name: &str) -> Result<()> {
        let opts = RemoveImageOptions { force: false, noprune: false, ..Default::default() };
        self.docker
            .remove_image(name, Some(opts), None)
            .await
            .map(|_| ())
            .map_err(|e| api_error(format!("removing image {name}"), e))
    }

    async fn download_archive(&self, id: &str, path: &str) -> Result<Option<ByteStream>> {
        let opts = DownloadFromContainerOptions { path: path.to_string() };
        let mut stream = self.docker.download_from_container(id, Some(opts)).boxed();
        let first = match stream.next().await {
            None => return Ok(Some(Box::pin(futures_util::stream::empty()))),
            Some(Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })) => return Ok(None),
            Some(Err(e)) => return Err(api_error(format!("copying {path} out of the container"), e)),
            Some(Ok(bytes)) => bytes,
        };
        let rest = stream.map_err(|e| std::io::Error::other(e.to_string()));
        Ok(Some(Box::pin(futures_util::stream::once(async { Ok(first) }).chain(rest))))
    }

    async fn build_image(&self, context: ContainerInput, spec: &ImageBuildSpec, output: &mut dyn OutputSink) -> Result<String> {
        let opts = bollard::query_parameters::BuildImageOptions {
            dockerfile: spec.dockerfile.clone(),
            t: spec.tag.clone(),
            rm: true,
            forcerm: true,
            networkmode: spec.network_mode.clone(),
            extrahosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.join(",")),
            ..Default::default()
        };
        // The context flows from the reader to the request body chunk by chunk.
        let body = bollard::body_try_stream(tokio_util::io::ReaderStream::with_capacity(context, 128 * 1024));
        let mut stream = self.docker.build_image(opts, None, Some(body));
        let mut image_id = None;
        let mut in_stderr = false;
        let failed = |message: String| EngineError::Api { op: "building the image".into(), message, status: None };
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => return Err(failed(error)),
                Err(e) => return Err(api_error("building the image", e)),
            };
            if let Some(detail) = info.error_detail {
                return Err(failed(detail.message.unwrap_or_else(|| "the build failed".into())));
            }
            if let Some(text) = info.stream.as_deref() {
                relay_build_stream(text, &mut in_stderr, output);
            } else if let Some(status) = info.status.as_deref() {
                output.output(OutputStream::Stdout, format!("{status}\n").as_bytes());
            }
            if let Some(id) = info.aux.and_then(|a| a.id) {
                image_id = Some(full_image_id(id));
            }
        }
        match image_id {
            Some(id) => Ok(id),
            // Engines that do not report the id (old APIs): ask by tag.
            None => match &spec.tag {
                Some(tag) => self.inspect_image(tag).await?.map(|i| i.id).ok_or_else(|| failed(format!("{tag} is missing after the build"))),
                None => Err(failed("the engine did not report the new image's id".into())),
            },
        }
    }

    async fn published_port(&self, id: &str, port: u16) -> Result<Option<SocketAddr>> {
        let inspect = self
            .docker
            .inspect_container(id, None::<bollard::query_parameters::InspectContainerOptions>)
            .await
            .map_err(|e| api_error("inspecting the container's ports", e))?;
        if !inspect.state.and_then(|s| s.running).unwrap_or(false) {
            return Ok(None);
        }
        let ports = inspect.network_settings.and_then(|n| n.ports).unwrap_or_default();
        let bindings = ports.get(&format!("{port}/tcp")).cloned().flatten().unwrap_or_default();
        Ok(published_address(&bindings))
    }

    async fn remove_leftovers(&self) {
        let ids: Vec<String> = self.created.lock().unwrap().iter().cloned().collect();
        for id in ids {
            if let Err(e) = self.remove_container(&id).await {
                warn!("could not remove container {id}: {e}");
            }
        }
        let images: Vec<String> = self.intermediate.lock().unwrap().drain().collect();
        for image in images {
            if let Err(e) = self.remove_image(&image).await {
                warn!("could not remove image {image}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Podman refuses `uid=` as a tmpfs option: it goes, and the tmpfs is the user's by `U`.
    #[test]
    fn podman_gets_its_own_tmpfs_options_for_the_owner() {
        assert_eq!(podman_tmpfs_options("rw,nosuid,mode=1777,uid=1001,size=65536"), "rw,nosuid,mode=1777,size=65536,notmpcopyup,U");
        assert_eq!(podman_tmpfs_options("rw,tmpcopyup"), "rw,tmpcopyup", "an explicit choice stays");
    }

    #[test]
    fn security_options_in_docker_and_podman_words() {
        assert_eq!(security_opt(&SecurityOptions::default(), false), None, "the engine's default profile");
        let unconfined = SecurityOptions { seccomp: SeccompProfile::Unconfined, no_new_privileges: true };
        assert_eq!(security_opt(&unconfined, false).unwrap(), ["seccomp=unconfined", "no-new-privileges"]);
        let file = SecurityOptions {
            seccomp: SeccompProfile::File { path: "/etc/s2i/profile.json".into(), json: r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#.into() },
            no_new_privileges: false,
        };
        assert_eq!(security_opt(&file, false).unwrap(), [r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#]);
        assert_eq!(security_opt(&file, true).unwrap(), ["seccomp=/etc/s2i/profile.json"]);
    }

    #[test]
    fn build_output_colours_mark_stderr() {
        let mut seen: Vec<(OutputStream, String)> = Vec::new();
        let mut sink = |s: OutputStream, d: &[u8]| seen.push((s, String::from_utf8_lossy(d).into_owned()));
        let mut in_stderr = false;
        relay_build_stream("out\n\x1b[91merr one\n", &mut in_stderr, &mut sink);
        relay_build_stream("err two\n\x1b[0mRemoving\n", &mut in_stderr, &mut sink);
        assert_eq!(
            seen,
            vec![
                (OutputStream::Stdout, "out\n".into()),
                (OutputStream::Stderr, "err one\n".into()),
                (OutputStream::Stderr, "err two\n".into()),
                (OutputStream::Stdout, "Removing\n".into()),
            ]
        );
    }

    #[test]
    fn registry_auth_is_re_encoded_url_safe() {
        use base64::Engine as _;
        // A password whose standard encoding holds '+' and '/'.
        let json = r#"{"username":"u","password":"p>?>?~~~"}"#;
        let standard = base64::engine::general_purpose::STANDARD.encode(json);
        assert!(standard.contains('+') || standard.contains('/'), "{standard}");
        let mut req = http::Request::builder()
            .header("X-Registry-Auth", &standard)
            .body(bollard::body_full(bytes::Bytes::new()))
            .unwrap();
        registry_auth_url_safe(&mut req);
        let sent = req.headers()["X-Registry-Auth"].to_str().unwrap();
        assert!(!sent.contains('+') && !sent.contains('/'), "{sent}");
        assert_eq!(base64::engine::general_purpose::URL_SAFE.decode(sent).unwrap(), json.as_bytes());
    }

    #[test]
    fn push_lines_give_the_digest_and_names_split() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(pushed_digest(&format!("v1: digest: {d} size: 527")), Some(d.as_str()));
        assert_eq!(pushed_digest("Pushing"), None);
        assert_eq!(layer_phase("Layer already exists"), Some(LayerPhase::Exists));
        assert_eq!(layer_phase("Digest: sha256:x"), None);
    }

    /// Podman 4.3's reading of one ENV or LABEL change value (pkg/util GetImageConfig): the whole
    /// `changes` string is split at newlines, each line at its first space, the value trimmed,
    /// split at its first `=`, and one pair of surrounding quotes stripped from key and value.
    fn podman_reads(changes: &str) -> Vec<(String, String, String)> {
        let unquote = |s: &str| -> String {
            if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
                s[1..s.len() - 1].to_string()
            } else {
                s.to_string()
            }
        };
        changes
            .split('\n')
            .filter_map(|line| {
                let (instr, value) = line.split_once(' ')?;
                let (k, v) = value.trim().split_once('=').unwrap_or((value.trim(), ""));
                Some((instr.to_string(), unquote(k), unquote(v)))
            })
            .collect()
    }

    #[test]
    fn podman_changes_carry_tricky_values_intact_and_leave_newlines_to_the_second_step() {
        let tricky = [
            "plain",
            "",
            "\"",
            "\"quoted\"",
            "back\\slash \\\"",
            "$HOME and ${PATH} `id`",
            " spaces around ",
            "a=b=c",
            "tab\there\r",
            "LABEL evil=1",
        ];
        let spec = CommitSpec {
            cmd: vec!["/tmp/scripts/run".into()],
            entrypoint: vec![],
            user: "1001".into(),
            env: tricky.iter().enumerate().map(|(i, v)| format!("V{i}={v}")).chain(["NL=one\ntwo".to_string()]).collect(),
            labels: tricky
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("l{i}"), v.to_string()))
                .chain([("nl".to_string(), "x\nLABEL evil=1".to_string()), ("k=ey".to_string(), "v".to_string())])
                .collect(),
            ..Default::default()
        };
        let plan = PodmanCommit::plan(&spec, &[], &HashMap::new());
        assert_eq!(plan.changes[..3], ["CMD [\"/tmp/scripts/run\"]", "ENTRYPOINT []", "USER 1001"]);
        let read = podman_reads(&plan.changes.join("\n"));
        for (i, v) in tricky.iter().enumerate() {
            assert!(read.contains(&("ENV".into(), format!("V{i}"), v.to_string())), "ENV V{i}={v:?}: {read:?}");
            assert!(read.contains(&("LABEL".into(), format!("l{i}"), v.to_string())), "LABEL l{i}={v:?}: {read:?}");
        }
        // Nothing else was read: no line was added by a value.
        assert_eq!(read.len(), 3 + 2 * tricky.len(), "{read:?}");
        assert_eq!(plan.rest_env, ["NL=one\ntwo"]);
        assert_eq!(
            plan.rest_labels,
            HashMap::from([("nl".to_string(), "x\nLABEL evil=1".to_string()), ("k=ey".to_string(), "v".to_string())])
        );
        assert!(!plan.rest_user);
    }

    #[test]
    fn what_the_container_already_holds_needs_no_change_line() {
        let spec = CommitSpec {
            cmd: vec!["run".into()],
            user: "web\nUSER 0".into(),
            env: vec!["NL=one\ntwo".into(), "A=1".into(), "B=2".into()],
            labels: HashMap::from([("l".to_string(), "v\nw".to_string()), ("m".to_string(), "1".to_string())]),
            ..Default::default()
        };
        let container_env = vec!["NL=one\ntwo".to_string(), "A=old".to_string()];
        let container_labels = HashMap::from([("l".to_string(), "v\nw".to_string())]);
        let plan = PodmanCommit::plan(&spec, &container_env, &container_labels);
        assert_eq!(plan.changes, ["CMD [\"run\"]", "ENTRYPOINT []", "ENV \"A\"=\"1\"", "ENV \"B\"=\"2\"", "LABEL \"m\"=\"1\""]);
        assert!(plan.rest_env.is_empty() && plan.rest_labels.is_empty());
        assert!(plan.rest_user, "a user with a newline waits for the second step");
    }

    fn history(entries: &[(&str, bool)]) -> Vec<HistoryEntry> {
        entries.iter().map(|(c, e)| HistoryEntry { created_by: c.to_string(), empty_layer: *e }).collect()
    }

    #[test]
    fn onbuild_triggers_are_the_onbuild_steps_after_the_last_layer() {
        let builder = [
            ("", false),
            ("/bin/sh -c mkdir -p /tmp/src", false),
            ("/bin/sh -c #(nop) WORKDIR /tmp/src", true),
            ("/bin/sh -c #(nop)  ONBUILD USER 1001", true),
            ("/bin/sh -c #(nop)  ONBUILD COPY --chown=1001:0 . /tmp/src/", true),
            ("/bin/sh -c #(nop) ONBUILD RUN echo \"a  b\" > /x", true),
            ("/bin/sh -c #(nop)  CMD [\"run\"]", true),
        ];
        assert_eq!(
            pending_onbuild(&history(&builder)),
            ["USER 1001", "COPY --chown=1001:0 . /tmp/src/", "RUN echo \"a  b\" > /x"]
        );
        // A child whose triggers made layers: used up.
        let mut child = builder.to_vec();
        child.extend([("/bin/sh -c #(nop) USER 1001", true), ("/bin/sh -c #(nop) COPY dir:abc in /tmp/src/", false), ("/bin/sh -c echo hi", false)]);
        assert!(pending_onbuild(&history(&child)).is_empty());
        // A child of metadata-only triggers: they repeat after the ONBUILD steps.
        let meta = [("/bin/sh -c true", false), ("/bin/sh -c #(nop)  ONBUILD ENV A=1", true), ("/bin/sh -c #(nop)  ONBUILD USER 7", true)];
        assert_eq!(pending_onbuild(&history(&meta)), ["ENV A=1", "USER 7"]);
        let mut meta_child = meta.to_vec();
        meta_child.extend([("/bin/sh -c #(nop)  ENV A=1", true), ("/bin/sh -c #(nop)  USER 7", true), ("/bin/sh -c #(nop)  LABEL x=y", true)]);
        assert!(pending_onbuild(&history(&meta_child)).is_empty());
        assert!(pending_onbuild(&history(&[("/bin/sh -c #(nop)  CMD [\"x\"]", true)])).is_empty());
        assert!(pending_onbuild(&[]).is_empty());
    }

    #[test]
    fn a_published_port_is_reached_on_the_loopback_address() {
        let binding = |ip: &str, port: &str| PortBinding { host_ip: Some(ip.into()), host_port: Some(port.into()) };
        assert_eq!(published_address(&[binding("127.0.0.1", "49153")]), Some("127.0.0.1:49153".parse().unwrap()));
        assert_eq!(published_address(&[binding("", "8080")]), Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(published_address(&[binding("::", "8080")]), Some("[::1]:8080".parse().unwrap()));
        assert_eq!(published_address(&[binding("10.0.0.5", "8080"), binding("0.0.0.0", "9")]), Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(published_address(&[binding("127.0.0.1", "")]), None, "not started yet");
        assert_eq!(published_address(&[]), None);
    }

    #[test]
    fn image_ids_are_normalised() {
        let hex = "a".repeat(64);
        assert_eq!(full_image_id(hex.clone()), format!("sha256:{hex}"));
        assert_eq!(full_image_id(format!("sha256:{hex}")), format!("sha256:{hex}"));
        assert_eq!(full_image_id("abc".into()), "abc");
    }
}
