//! The Docker Engine API backend (also Podman's Docker-compatible API), on bollard.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::models::{ContainerConfig, ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{
    AttachContainerOptions, CommitContainerOptions, CreateContainerOptions, CreateImageOptions,
    DownloadFromContainerOptions, KillContainerOptions, PushImageOptions, RemoveContainerOptions,
    RemoveImageOptions, UploadToContainerOptions, WaitContainerOptions,
};
use bollard::{ClientVersion, Docker};
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

use crate::connect::{parse_endpoint, ConnectOptions, Transport};
use crate::error::{EngineError, Result};
use crate::{
    ArchiveFormat, ArchiveOutput, ByteStream, CommitSpec, ContainerInput, ContainerSpec, Engine, EngineKind,
    EngineVersion, ImageBuildSpec, ImageInfo, LayerPhase, OutputSink, OutputStream, Progress, ProgressSink,
    RegistryAuth, RunningOutput,
};

/// The newest API version we speak. Negotiation picks the lower of this and the engine's.
const MAX_API_VERSION: (usize, usize) = (1, 47);
/// The oldest API version with everything we use (wait conditions, attach semantics, commit config).
const MIN_API_VERSION: (usize, usize) = (1, 25);
/// Long enough for a commit of a big container or a slow pull; our own steps set tighter limits.
const REQUEST_TIMEOUT_SECS: u64 = 3600;

pub struct DockerEngine {
    docker: Docker,
    endpoint: String,
    version: EngineVersion,
    /// Containers created and not yet removed, for clean-up after an interruption.
    created: Mutex<HashSet<String>>,
}

impl DockerEngine {
    /// Connect, ask the engine for its version and settle on an API version both sides speak.
    pub async fn connect(opts: &ConnectOptions) -> Result<Self> {
        let endpoint = opts.endpoint.clone();
        let connect_err = |reason: String| EngineError::Connect { endpoint: endpoint.clone(), reason };
        // Paths are versioned by the request modifier below, so bollard's own version is irrelevant.
        let client_version = ClientVersion { major_version: MAX_API_VERSION.0, minor_version: MAX_API_VERSION.1 };
        let docker = match parse_endpoint(&opts.endpoint)? {
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
        let is_podman = server
            .components
            .as_ref()
            .is_some_and(|cs| cs.iter().any(|c| c.name.to_ascii_lowercase().contains("podman")));
        let version = EngineVersion {
            kind: if is_podman { EngineKind::Podman } else { EngineKind::Docker },
            version: server.version.unwrap_or_default(),
            api_version: format!("{}.{}", api.0, api.1),
            endpoint: opts.endpoint.clone(),
        };
        debug!("connected to {endpoint}: engine {}, API {}{}", version.version, version.api_version, if is_podman { " (podman)" } else { "" });
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
        Ok(DockerEngine { docker, endpoint: opts.endpoint.clone(), version, created: Mutex::new(HashSet::new()) })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn forget(&self, id: &str) {
        self.created.lock().unwrap().remove(id);
    }

}

/// The exit code of a container that has stopped (or will): a non-zero exit is a result, not an error.
async fn wait_exit_code(docker: &Docker, id: &str) -> Result<i64> {
    let opts = WaitContainerOptions { condition: "not-running".into() };
    let mut waits = docker.wait_container(id, Some(opts));
    match waits.next().await {
        Some(Ok(resp)) => Ok(resp.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(EngineError::api("waiting for the container", e)),
        None => Err(EngineError::Api {
            op: "waiting for the container".into(),
            message: "the engine closed the wait without an exit code".into(),
            status: None,
        }),
    }
}

/// Copy `input` into the container's stdin, then close it. Returns an error only when reading
/// `input` failed; a container that stops reading early just ends the copy.
async fn pump_stdin(mut input: ContainerInput, stdin: &mut (dyn AsyncWrite + Send + Unpin)) -> std::io::Result<()> {
    let mut buf = vec![0u8; 128 * 1024];
    let result = loop {
        let n = match input.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        if let Err(e) = stdin.write_all(&buf[..n]).await {
            debug!("container stopped reading its input: {e}");
            break Ok(());
        }
    };
    let _ = stdin.shutdown().await;
    result
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

/// `repo[:tag]` → (`repo`, `tag`), the tag being `latest` when there is none.
fn split_tag(name: &str) -> (&str, &str) {
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], &name[last_slash + i + 1..]),
        None => (name, "latest"),
    }
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

/// The `changes` lines that make Podman (which ignores a commit's JSON config) record the same
/// configuration. Values are JSON strings, which the Dockerfile parser accepts as quoted words.
fn commit_changes(spec: &CommitSpec) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut lines = vec![
        format!("CMD {}", serde_json::to_string(&spec.cmd).unwrap_or_default()),
        format!("ENTRYPOINT {}", serde_json::to_string(&spec.entrypoint).unwrap_or_default()),
    ];
    if !spec.user.is_empty() {
        lines.push(format!("USER {}", spec.user));
    }
    for kv in &spec.env {
        if let Some((k, v)) = kv.split_once('=') {
            lines.push(format!("ENV {}={}", k, q(v)));
        }
    }
    let mut labels: Vec<_> = spec.labels.iter().collect();
    labels.sort();
    for (k, v) in labels {
        lines.push(format!("LABEL {}={}", q(k), q(v)));
    }
    lines.join("\n")
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
            Err(e) => return Err(EngineError::api(format!("inspecting image {name:?}"), e)),
        };
        let config = inspect.config.unwrap_or_default();
        Ok(Some(ImageInfo {
            id: inspect.id.unwrap_or_default(),
            user: config.user.unwrap_or_default(),
            env: config.env.unwrap_or_default(),
            entrypoint: config.entrypoint.filter(|e| !e.is_empty()),
            cmd: config.cmd,
            working_dir: config.working_dir.unwrap_or_default(),
            labels: config.labels.unwrap_or_default(),
            on_build: config.on_build.unwrap_or_default(),
            size: inspect.size.and_then(|s| u64::try_from(s).ok()),
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
        let (repo, tag) = split_tag(name);
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
            let chunk = chunk.map_err(|e| EngineError::api(format!("saving image {name}"), e))?;
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
            let info = item.map_err(|e| EngineError::api("loading an image archive", e))?;
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
        let host_config = HostConfig {
            binds: non_empty(&spec.binds),
            cap_drop: non_empty(&spec.cap_drop),
            extra_hosts: non_empty(&spec.extra_hosts),
            network_mode: spec.network_mode.clone(),
            publish_all_ports: spec.publish_all_ports.then_some(true),
            shm_size: spec.shm_size,
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
        let created = created.map_err(|e| EngineError::api(format!("creating a container from {:?}", spec.image), e))?;
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
            .map_err(|e| EngineError::api("attaching to the container", e))?;
        let (mut out, mut stdin) = (attached.output, attached.input);
        self.docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| EngineError::api("starting the container", e))?;

        let pump = async {
            let Some(input) = input else { return Ok(()) };
            let result = pump_stdin(input, &mut stdin).await;
            if result.is_err() {
                // The container got a truncated stream; don't let it carry on with half its input.
                let kill = KillContainerOptions { signal: "KILL".into() };
                let _ = self.docker.kill_container(id, Some(kill)).await;
            }
            result
        };
        let relay = async {
            while let Some(item) = out.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                        output.output(OutputStream::Stdout, &message)
                    }
                    Ok(LogOutput::StdErr { message }) => output.output(OutputStream::Stderr, &message),
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(e) => return Err(EngineError::api("reading the container's output", e)),
                }
            }
            Ok(())
        };
        let (pumped, relayed) = tokio::join!(pump, relay);
        let code = wait_exit_code(&self.docker, id).await?;
        pumped.map_err(EngineError::Input)?;
        relayed?;
        Ok(code)
    }

    async fn run_with_stdout(&self, id: &str, mut stderr: Box<dyn OutputSink>) -> Result<RunningOutput> {
        let opts = AttachContainerOptions { stdout: true, stderr: true, stream: true, ..Default::default() };
        let attached = self
            .docker
            .attach_container(id, Some(opts))
            .await
            .map_err(|e| EngineError::api("attaching to the container", e))?;
        self.docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| EngineError::api("starting the container", e))?;
        let (writer, reader) = tokio::io::duplex(256 * 1024);
        let (docker, id) = (self.docker.clone(), id.to_string());
        let mut output = attached.output;
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
                    Err(e) => return Err(EngineError::api("reading the container's output", e)),
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
        let opts = UploadToContainerOptions { path: path.to_string(), ..Default::default() };
        let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(tar));
        self.docker
            .upload_to_container(id, Some(opts), body)
            .await
            .map_err(|e| EngineError::api(format!("copying files to {path} in the container"), e))
    }

    async fn commit_container(&self, id: &str, spec: &CommitSpec) -> Result<String> {
        let opts = CommitContainerOptions {
            container: Some(id.to_string()),
            repo: spec.repo.clone(),
            tag: spec.tag.clone(),
            pause: false,
            changes: self.version.is_podman().then(|| commit_changes(spec)),
            ..Default::default()
        };
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
            .map_err(|e| EngineError::api("committing the container", e))?;
        Ok(res.id)
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let opts = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                self.forget(id);
                Ok(())
            }
            Err(e) => Err(EngineError::api(format!("removing container {id}"), e)),
        }
    }

    async fn remove_image(&self, name: &str) -> Result<()> {
        let opts = RemoveImageOptions { force: false, noprune: false, ..Default::default() };
        self.docker
            .remove_image(name, Some(opts), None)
            .await
            .map(|_| ())
            .map_err(|e| EngineError::api(format!("removing image {name}"), e))
    }

    async fn download_archive(&self, id: &str, path: &str) -> Result<Option<ByteStream>> {
        let opts = DownloadFromContainerOptions { path: path.to_string() };
        let mut stream = self.docker.download_from_container(id, Some(opts)).boxed();
        let first = match stream.next().await {
            None => return Ok(Some(Box::pin(futures_util::stream::empty()))),
            Some(Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })) => return Ok(None),
            Some(Err(e)) => return Err(EngineError::api(format!("copying {path} out of the container"), e)),
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
                Err(e) => return Err(EngineError::api("building the image", e)),
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
                image_id = Some(id);
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

    async fn remove_leftovers(&self) {
        let ids: Vec<String> = self.created.lock().unwrap().iter().cloned().collect();
        for id in ids {
            if let Err(e) = self.remove_container(&id).await {
                warn!("could not remove container {id}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(split_tag("127.0.0.1:5000/team/app:v1"), ("127.0.0.1:5000/team/app", "v1"));
        assert_eq!(split_tag("127.0.0.1:5000/app"), ("127.0.0.1:5000/app", "latest"));
        assert_eq!(layer_phase("Layer already exists"), Some(LayerPhase::Exists));
        assert_eq!(layer_phase("Digest: sha256:x"), None);
    }

    #[test]
    fn commit_changes_quote_every_value() {
        let spec = CommitSpec {
            cmd: vec!["/tmp/scripts/run".into()],
            entrypoint: vec![],
            user: "1001".into(),
            env: vec!["A=x y\"z".into()],
            labels: [("k".to_string(), "v\nLABEL evil=1".to_string())].into(),
            ..Default::default()
        };
        let changes = commit_changes(&spec);
        assert_eq!(
            changes,
            "CMD [\"/tmp/scripts/run\"]\nENTRYPOINT []\nUSER 1001\nENV A=\"x y\\\"z\"\nLABEL \"k\"=\"v\\nLABEL evil=1\""
        );
    }
}
