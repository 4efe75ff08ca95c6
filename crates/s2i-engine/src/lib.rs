//! The container engine behind s2i: the [`Engine`] trait and the types it speaks.
//!
//! Strategies talk to an [`Engine`] and never know which one runs them. The implementations sit
//! side by side, each in its own crate: `s2i-docker` (the Docker Engine API, for Docker and
//! Podman), `s2i-oci` (daemonless: an OCI image store and runc), and the test kit's fake.

mod error;
pub mod input;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use tokio::io::AsyncRead;

pub use error::{error_chain, EngineError, Result};

/// What the engine knows of an image, reduced to what s2i reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageInfo {
    /// Full image id (`sha256:…`).
    pub id: String,
    pub user: String,
    pub env: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: String,
    pub labels: HashMap<String, String>,
    pub on_build: Vec<String>,
    /// Bytes on disk, when the engine says.
    pub size: Option<u64>,
    /// `repository@sha256:…` of the manifests it was pulled or pushed as (none for an image only
    /// built here).
    pub repo_digests: Vec<String>,
}

impl ImageInfo {
    /// The value of an environment variable baked into the image, if any.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env.iter().find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then_some(v)
        })
    }

    /// A non-empty label value.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// Which kind of engine answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// The Docker Engine API of Docker itself.
    #[default]
    Docker,
    /// Podman's Docker-compatible API.
    Podman,
    /// The daemonless engine: an image store and an OCI runtime (runc).
    Oci,
    /// s2i inside a container of the builder itself: scripts run as child processes, the commit
    /// is a snapshot of the root filesystem.
    InPlace,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
            EngineKind::Oci => "oci",
            EngineKind::InPlace => "in-place",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who and what answers at the other end of the connection.
#[derive(Debug, Clone, Default)]
pub struct EngineVersion {
    pub kind: EngineKind,
    pub version: String,
    /// The API version in use (`1.41`); empty for the OCI engine.
    pub api_version: String,
    /// Where the engine was reached (`unix:///var/run/docker.sock`, or the OCI store's path).
    pub endpoint: String,
}

impl EngineVersion {
    pub fn is_podman(&self) -> bool {
        self.kind == EngineKind::Podman
    }
}

/// Everything needed to create one container.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// Container name; the engine picks one when `None`.
    pub name: Option<String>,
    pub image: String,
    pub cmd: Vec<String>,
    /// `Some` replaces the image's entrypoint (an empty list clears it); `None` keeps it.
    pub entrypoint: Option<Vec<String>>,
    pub user: Option<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// Keep stdin open for one attach; the container sees EOF when the writer is done.
    pub open_stdin: bool,
    /// Don't keep a copy of the output in the engine's log driver (faster for big streams).
    pub no_log: bool,
    pub binds: Vec<String>,
    pub cap_drop: Vec<String>,
    pub network_mode: Option<String>,
    pub extra_hosts: Vec<String>,
    pub publish_all_ports: bool,
    /// TCP ports of the container to publish on the host's 127.0.0.1, each at a port the engine
    /// picks ([`Engine::published_port`] says which). An engine whose containers share the host's
    /// network publishes nothing: the port is the host's own.
    pub publish: Vec<u16>,
    pub shm_size: Option<i64>,
    /// tmpfs mounts: the path in the container and its mount options in Docker's `--tmpfs`
    /// spelling (`rw,noexec,mode=1777,uid=1001,size=65536`). What is written there lives in memory
    /// only and is never part of a commit. `uid=` gives the tmpfs its owner (on Podman, which has no
    /// such option, the container's user gets it, with `U`).
    pub tmpfs: Vec<(String, String)>,
    /// `--security-opt`: the seccomp filter and no-new-privileges.
    pub security: SecurityOptions,
}

/// The process a container of an image runs, as Docker resolves it from the spec and the
/// image's config: the command line, the environment and the working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessLine {
    /// Entrypoint then command; empty when neither names one (an error for the caller).
    pub args: Vec<String>,
    /// The image's variables, each replaced by the spec's of the same name, and `PATH` when
    /// neither sets it.
    pub env: Vec<String>,
    /// The spec's working directory, else the image's, else `/`.
    pub cwd: String,
}

impl ContainerSpec {
    /// What a container of an image with `config` runs for this spec.
    pub fn process_in(&self, config: &s2i_registry::oci::ImageConfig) -> ProcessLine {
        let entrypoint = self.entrypoint.clone().unwrap_or_else(|| config.entrypoint.clone().unwrap_or_default());
        let cmd = if !self.cmd.is_empty() {
            self.cmd.clone()
        } else if self.entrypoint.is_some() {
            Vec::new()
        } else {
            config.cmd.clone().unwrap_or_default()
        };
        let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
        let mut env: Vec<String> = config.env.clone();
        for kv in &self.env {
            env.retain(|e| env_key(e) != env_key(kv));
            env.push(kv.clone());
        }
        if !env.iter().any(|kv| env_key(kv) == "PATH") {
            env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        }
        let cwd = self.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| config.working_dir.clone());
        let cwd = if cwd.is_empty() { "/".to_string() } else { cwd };
        ProcessLine { args, env, cwd }
    }
}

/// The name of a `NAME=value` variable.
pub fn env_key(kv: &str) -> &str {
    kv.split_once('=').map_or(kv, |(k, _)| k)
}

/// `--security-opt`, in the words Docker and Podman use for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityOptions {
    pub seccomp: SeccompProfile,
    /// `no-new-privileges`: setuid and setgid bits and file capabilities grant nothing.
    pub no_new_privileges: bool,
}

/// The system call filter of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SeccompProfile {
    /// The engine's default: Docker's and Podman's own, the same profile on the oci engine.
    #[default]
    Default,
    /// No filter (`seccomp=unconfined`).
    Unconfined,
    /// A profile in Docker's JSON format (`seccomp=PATH`), read when the flag was parsed.
    File { path: PathBuf, json: String },
}

/// The configuration recorded in a committed image.
#[derive(Debug, Clone, Default)]
pub struct CommitSpec {
    /// `repo[:tag]` to tag the result with; untagged when `None`.
    pub repo: Option<String>,
    pub tag: Option<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub user: String,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
}

impl CommitSpec {
    /// The full name a commit tags with: `repo[:tag]`; `None` for an untagged commit.
    pub fn full_tag(&self) -> Option<String> {
        let repo = self.repo.as_deref().filter(|r| !r.is_empty())?;
        Some(match self.tag.as_deref().filter(|t| !t.is_empty()) {
            Some(tag) => format!("{repo}:{tag}"),
            None => repo.to_string(),
        })
    }
}

/// What [`Engine::build_image`] builds: a Dockerfile inside a tar build context.
#[derive(Debug, Clone, Default)]
pub struct ImageBuildSpec {
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    /// `repo[:tag]` to tag the result with; untagged when `None`.
    pub tag: Option<String>,
    /// Network mode of the build's RUN steps.
    pub network_mode: Option<String>,
    /// `host:ip` entries added to `/etc/hosts` of the RUN steps.
    pub extra_hosts: Vec<String>,
}

/// Which of a container's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Receives a running container's output as it arrives.
pub trait OutputSink: Send {
    fn output(&mut self, stream: OutputStream, data: &[u8]);
}

impl<F: FnMut(OutputStream, &[u8]) + Send> OutputSink for F {
    fn output(&mut self, stream: OutputStream, data: &[u8]) {
        self(stream, data)
    }
}

/// A byte stream fed to a container's stdin.
pub type ContainerInput = Box<dyn AsyncRead + Send + Unpin>;

/// A container started for its output: `stdout` streams what it writes (bounded in memory: the
/// container waits while nobody reads), `exit` resolves to its exit code once it has stopped and
/// its output was drained.
pub struct RunningOutput {
    pub stdout: ContainerInput,
    pub exit: Pin<Box<dyn std::future::Future<Output = Result<i64>> + Send>>,
}

/// A byte stream read from the engine (an archive, say).
pub type ByteStream = Pin<Box<dyn Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send>>;

/// Registry credentials for one pull or push (they live in `s2i-registry`, where they are looked up).
/// `Debug` never shows the secrets.
pub use s2i_registry::Credentials as RegistryAuth;

/// What a layer (or blob) of a pull or push is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerPhase {
    Waiting,
    Downloading,
    Verifying,
    Extracting,
    Pushing,
    /// Finished: pulled or pushed.
    Done,
    /// Nothing to transfer: the engine or the registry already has it.
    Exists,
}

/// One step of a pull or push, as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress<'a> {
    /// A layer moved on: `current` of `total` bytes (the total is unknown for some phases).
    Layer { id: &'a str, phase: LayerPhase, current: u64, total: Option<u64> },
    /// A line about the whole image (`Digest: sha256:…`, `Status: Downloaded newer image …`).
    Status(&'a str),
    /// A long step of the engine's own, as it starts and as it ends. Reported through a
    /// [`TaskReporter`]: no method's sink covers these steps.
    Task { task: EngineTask, subject: &'a str, state: TaskState },
}

/// Where an [`EngineTask`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Started,
    Done,
    /// Ended without its result: an error, or an interruption.
    Failed,
}

/// A long step an engine takes without a daemon to report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineTask {
    /// Unpacking an image's layers (`subject`: the image) for a container's root file system.
    Unpack,
    /// Making a layer from a container's changes (`subject`: the container) for a commit.
    Snapshot,
}

/// Where an engine reports its [`Progress::Task`] steps. Handed to an engine when it is made;
/// clones share the one receiver.
#[derive(Clone)]
pub struct TaskReporter(std::sync::Arc<dyn Fn(Progress<'_>) + Send + Sync>);

impl TaskReporter {
    pub fn new(f: impl Fn(Progress<'_>) + Send + Sync + 'static) -> TaskReporter {
        TaskReporter(std::sync::Arc::new(f))
    }

    /// Reports `task` as started; the returned guard reports it done ([`TaskGuard::done`]) or,
    /// dropped without that (an error, a cancellation), failed.
    pub fn start(&self, task: EngineTask, subject: &str) -> TaskGuard {
        (self.0)(Progress::Task { task, subject, state: TaskState::Started });
        TaskGuard { reporter: self.clone(), task, subject: subject.to_string(), state: TaskState::Failed }
    }
}

impl std::fmt::Debug for TaskReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskReporter")
    }
}

/// Reports its task's end when dropped: failed, unless [`TaskGuard::done`] said otherwise.
pub struct TaskGuard {
    reporter: TaskReporter,
    task: EngineTask,
    subject: String,
    state: TaskState,
}

impl TaskGuard {
    /// The task produced its result.
    pub fn done(mut self) {
        self.state = TaskState::Done;
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        (self.reporter.0)(Progress::Task { task: self.task, subject: &self.subject, state: self.state });
    }
}

/// Receives the progress of a pull or push as it happens.
pub trait ProgressSink: Send {
    fn progress(&mut self, event: Progress<'_>);
}

impl<F: FnMut(Progress<'_>) + Send> ProgressSink for F {
    fn progress(&mut self, event: Progress<'_>) {
        self(event)
    }
}

/// The image archive formats engines read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// What `docker save` writes and `docker load` reads.
    DockerArchive,
    /// An OCI image layout in a tar.
    OciArchive,
}

/// A byte sink an engine writes an image archive to.
pub type ArchiveOutput = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// What an engine can do that the plan must know before anything runs. The default (every
/// engine but the in-place one) allows everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineCapabilities {
    /// The engine cannot switch users: every script runs as this uid and gid (the process's own).
    pub fixed_user: Option<(u32, u32)>,
    /// Containers can be started only from the image the process itself runs in: no runtime
    /// image with its own scripts, no previous image to take artifacts from, no image build.
    pub only_builder: bool,
    /// The engine writes the input into the container's files itself ([`Engine::upload_archive`])
    /// rather than through the image's `tar` on stdin: the in-place engine, whose container is
    /// its own root, saves a pipe, a process and most of the file system calls of a `tar -x`.
    pub unpacks_input: bool,
}

/// The engines that run containers of any image as any user, named in the errors of an engine
/// that cannot.
pub const GENERAL_ENGINES: &str = "--engine docker, podman (--engine docker with its socket) or --engine oci";

#[async_trait]
pub trait Engine: Send + Sync {
    /// Which engine this is and its version; also proves it answers.
    async fn version(&self) -> Result<EngineVersion>;

    /// What the engine can do; see [`EngineCapabilities`]. The default allows everything.
    fn capabilities(&self) -> EngineCapabilities {
        EngineCapabilities::default()
    }

    /// `Ok(None)` when the image is not present locally.
    async fn inspect_image(&self, name: &str) -> Result<Option<ImageInfo>>;

    /// Pull `name` from its registry, reporting progress as it goes.
    async fn pull_image(&self, name: &str, auth: Option<&RegistryAuth>, progress: &mut dyn ProgressSink) -> Result<()>;

    /// Push the local image `name` to the registry its name points at; returns the pushed
    /// manifest's digest (`sha256:…`).
    async fn push_image(&self, name: &str, auth: Option<&RegistryAuth>, progress: &mut dyn ProgressSink) -> Result<String>;

    /// Write the image `name` as an archive of `format` to `out`, streamed.
    async fn save_image(&self, name: &str, format: ArchiveFormat, out: ArchiveOutput) -> Result<()>;

    /// Load the images of an archive (`docker save` output, or an OCI archive where supported);
    /// returns what the engine reports it loaded (names or ids).
    async fn load_image(&self, archive: ContainerInput) -> Result<Vec<String>>;

    /// Create a container and return its id. The engine remembers it until it is removed, so that
    /// [`Engine::remove_leftovers`] can clean up after an interruption.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String>;

    /// Start a created container, feed it `input` on stdin (then close stdin), relay its output to
    /// `output` while it runs, and return its exit code once it has stopped.
    ///
    /// A container that exits before reading all its input is not an error: its exit code says what
    /// happened. An error reading `input` itself is ([`EngineError::Input`]).
    async fn run_container(
        &self,
        id: &str,
        input: Option<ContainerInput>,
        output: &mut dyn OutputSink,
    ) -> Result<i64>;

    /// Start a created container and hand back its stdout as a stream; its stderr goes to
    /// `stderr`. `input`, when given, is fed to its stdin (then closed) while it runs, as
    /// [`Engine::run_container`] does (the spec must have `open_stdin`); a container that stops
    /// reading early is no error. Read `stdout` to the end, then await `exit`.
    async fn run_with_stdout(&self, id: &str, input: Option<ContainerInput>, stderr: Box<dyn OutputSink>) -> Result<RunningOutput>;

    /// Have the engine unpack a tar stream into `path` of a created or stopped container. The
    /// engine extracts it itself, so the image needs no tar; `path` must exist.
    async fn upload_archive(&self, id: &str, path: &str, tar: ContainerInput) -> Result<()>;

    /// Commit a (stopped) container to an image; returns the image id.
    async fn commit_container(&self, id: &str, spec: &CommitSpec) -> Result<String>;

    /// Kill and remove a container with its anonymous volumes. Removing a missing one is fine.
    async fn remove_container(&self, id: &str) -> Result<()>;

    /// Remove an image by id or name.
    async fn remove_image(&self, name: &str) -> Result<()>;

    /// A tar of `path` inside a container, or `None` when the path does not exist.
    async fn download_archive(&self, id: &str, path: &str) -> Result<Option<ByteStream>>;

    /// Whether `path` exists in a created (or stopped) container; a symlink counts, whatever it
    /// points at. The default asks for the path's archive and reads no more than its first chunk.
    async fn path_exists(&self, id: &str, path: &str) -> Result<bool> {
        use futures_util::StreamExt;
        match self.download_archive(id, path).await? {
            None => Ok(false),
            Some(mut stream) => match stream.next().await {
                Some(Err(e)) => Err(EngineError::Input(e)),
                _ => Ok(true),
            },
        }
    }

    /// Build an image from a Dockerfile with the engine's own builder (the classic builder, not
    /// BuildKit) and return the new image's id. `context` is the build context as a tar stream,
    /// sent as it is read (never buffered whole). The build's output (step lines, RUN output) goes
    /// to `output` as [`OutputStream::Stdout`]; a failing step is an error carrying its message.
    /// Intermediate containers are removed by the engine, on failure too.
    async fn build_image(&self, context: ContainerInput, spec: &ImageBuildSpec, output: &mut dyn OutputSink) -> Result<String>;

    /// Where this host reaches TCP port `port` of the running container `id`: the address the
    /// engine published it on (see [`ContainerSpec::publish`]), or `127.0.0.1:port` when the
    /// container shares the host's network. `None` while the container is not running, or when
    /// the port was not published and the container has a network of its own.
    async fn published_port(&self, id: &str, port: u16) -> Result<Option<SocketAddr>>;

    /// Remove every container this engine created and has not removed yet. Used on interruption
    /// and as a last line of defence; never fails, only logs.
    async fn remove_leftovers(&self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_line_resolves_as_docker_does() {
        let config = s2i_registry::oci::ImageConfig {
            env: vec!["A=image".into(), "B=image".into()],
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["run".into()]),
            working_dir: "/opt".into(),
            ..Default::default()
        };
        let spec = ContainerSpec { env: vec!["B=spec".into()], ..Default::default() };
        let p = spec.process_in(&config);
        assert_eq!(p.args, ["/entry", "run"]);
        assert_eq!(p.env[0], "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        assert_eq!(&p.env[1..], ["A=image", "B=spec"]);
        assert_eq!(p.cwd, "/opt");
        // A spec's entrypoint drops the image's command; its own command replaces it.
        let spec = ContainerSpec { entrypoint: Some(vec!["/bin/sh".into()]), working_dir: Some("/w".into()), ..Default::default() };
        assert_eq!((spec.process_in(&config).args, spec.process_in(&config).cwd), (vec!["/bin/sh".to_string()], "/w".to_string()));
        let spec = ContainerSpec { cmd: vec!["x".into()], ..Default::default() };
        assert_eq!(spec.process_in(&config).args, ["/entry", "x"]);
        assert_eq!(ContainerSpec::default().process_in(&Default::default()).cwd, "/");
    }
}
