//! The in-place engine (`--engine in-place`): s2i running inside a container of the builder image
//! itself, as the pod's user, with no capabilities, no daemon and no mounts (a Kubernetes pod
//! under the "restricted" profile, a Tekton step whose image is the builder).
//!
//! The same [`Engine`] trait as the others, read differently:
//! - an image is its manifest and config, read from its registry (never its layers, unless an
//!   archive must hold them), kept in a private OCI store in a temp dir;
//! - a "container" is a child process of s2i, started with the builder's environment, working
//!   dir and the process's own uid (the engine cannot switch users: [`EngineCapabilities`]);
//!   it can be "created" only from the image the process runs in, which is checked;
//! - a commit is a snapshot: the root walked before the first container and again at the commit,
//!   the changes written as one layer ([`snapshot`]) on top of the builder's layers;
//! - a push sends that layer and the config, and takes the builder's layers from its registry
//!   (a cross-repository mount on the same registry, else streamed blob to blob).

pub mod snapshot;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use s2i_engine::{
    ArchiveFormat, ArchiveOutput, ByteStream, CommitSpec, ContainerInput, ContainerSpec, Engine, EngineCapabilities, EngineError,
    EngineKind, env_key, EngineVersion, ImageBuildSpec, ImageInfo, OutputSink, ProcessLine, Progress, ProgressSink, RegistryAuth, Result,
    RunningOutput,
};
use s2i_oci::cancel::Cancel;
use s2i_oci::image::{self, remote, CommitChanges, Image, ImageError, Store};
use s2i_registry::client::{CaFile, ClientOptions, Limits as RegistryLimits};
use s2i_registry::{error_chain, ImageRef, RegistryClient, Resolved};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info};

use snapshot::{Excluded, Snapshot};

/// The label naming where the builder's scripts are (`image:///usr/libexec/s2i`).
const SCRIPTS_URL_LABEL: &str = "io.openshift.s2i.scripts-url";
/// Variables a runtime or a pipeline sets for itself, whatever the image says: not compared.
const ENV_SET_BY_RUNTIME: &[&str] = &["HOME", "HOSTNAME", "TERM"];

/// How many entries of the builder's top layer are compared with the root.
const TOP_LAYER_ENTRIES: usize = 2000;
/// How many layers, from the top, may be read to find a regular file to compare.
const TOP_LAYERS: usize = 4;

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct InPlaceOptions {
    /// The root filesystem the build changes: `/`.
    pub root: PathBuf,
    /// Where the engine keeps images (manifests, configs, the new layer); a fresh temp dir,
    /// removed at the end, when `None`. Left out of the snapshot either way.
    pub store_root: Option<PathBuf>,
    pub registry_limits: RegistryLimits,
    pub registry_ca_files: Vec<CaFile>,
    /// The creation time of the image and the newest mtime of its layer (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<SystemTime>,
}

impl Default for InPlaceOptions {
    fn default() -> Self {
        InPlaceOptions {
            root: PathBuf::from("/"),
            store_root: None,
            registry_limits: RegistryLimits::default(),
            registry_ca_files: Vec::new(),
            source_date_epoch: None,
        }
    }
}

/// What a "container" runs, fixed at creation.
struct Process {
    image: Image,
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
    /// The process group of the running command, for a kill.
    pgid: Mutex<Option<i32>>,
    started: Mutex<bool>,
    /// The pod's memory volumes standing in for the spec's tmpfs mounts (the secrets), each with
    /// the names it held before: what the build adds there is removed when the process ends.
    memory_dirs: Vec<MemoryDir>,
    /// A container of another image (a runtime image): it runs nothing, it only receives files,
    /// kept here (where they go, the tar) until the commit makes them its layer.
    staged: Option<Mutex<Vec<(String, tempfile::NamedTempFile)>>>,
    name: String,
}

/// A directory of the pod on a tmpfs (an `emptyDir` with `medium: Memory`) that takes the place
/// of a tmpfs mount, which the engine cannot make without privileges.
struct MemoryDir {
    path: PathBuf,
    before: std::collections::HashSet<std::ffi::OsString>,
}

/// `TMPFS_MAGIC` of statfs(2): the file system that keeps its files in memory only.
const TMPFS_MAGIC: i64 = 0x0102_1994;

impl MemoryDir {
    /// `path` must be a writable directory on a tmpfs: the pod's memory volume. Anything else is
    /// an error that says so; a secret is never written to disk instead.
    fn claim(path: &Path) -> Result<MemoryDir> {
        let refuse = |why: String| EngineError::NotSupported {
            engine: EngineKind::InPlace,
            what: format!(
                "give the build secrets (--secret): {} {why}; the build step needs a memory volume there (an emptyDir with medium: Memory mounted at {}), and a secret is never written to disk",
                path.display(),
                path.display()
            ),
        };
        let fs = rustix::fs::statfs(path).map_err(|e| refuse(format!("cannot be used ({e})")))?;
        if fs.f_type as i64 != TMPFS_MAGIC {
            return Err(refuse(format!("is not on a memory file system (tmpfs; its file system type is {:#x})", fs.f_type as i64)));
        }
        let meta = std::fs::symlink_metadata(path).map_err(|e| refuse(format!("cannot be used ({e})")))?;
        if !meta.is_dir() {
            return Err(refuse("is not a directory".into()));
        }
        rustix::fs::access(path, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK)
            .map_err(|_| refuse(format!("is not writable by uid {}", rustix::process::getuid().as_raw())))?;
        let before = std::fs::read_dir(path)
            .and_then(|d| d.map(|e| e.map(|e| e.file_name())).collect::<std::io::Result<_>>())
            .map_err(|e| refuse(format!("cannot be read ({e})")))?;
        Ok(MemoryDir { path: path.to_path_buf(), before })
    }

    /// Remove what the build put there (the secrets), keeping what the pod had.
    fn empty(&self) {
        let Ok(entries) = std::fs::read_dir(&self.path) else { return };
        for entry in entries.flatten() {
            if self.before.contains(&entry.file_name()) {
                continue;
            }
            let path = entry.path();
            let removed = match entry.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
                _ => std::fs::remove_file(&path),
            };
            if let Err(e) = removed {
                tracing::warn!("could not remove {} from the memory volume: {e}", path.display());
            }
        }
    }
}

impl Process {
    fn refuse_to_run(&self) -> EngineError {
        EngineError::NotSupported {
            engine: EngineKind::InPlace,
            what: format!(
                "run a command in a container of {}: it runs only the builder it is in (an image without scripts to run is composed from its layers and the files given to it)",
                self.name
            ),
        }
    }
}

/// The layer of a staged container: every tar uploaded to it, each entry under the path it was
/// uploaded to, mtimes clamped to `clamp`. Returns the number of entries.
fn staged_layer(staged: &[(String, tempfile::NamedTempFile)], out: &mut dyn std::io::Write, clamp: Option<u64>) -> std::io::Result<u64> {
    let mut builder = tar::Builder::new(out);
    let mut entries = 0;
    for (under, file) in staged {
        let under = Path::new(under.trim_start_matches('/'));
        let mut archive = tar::Archive::new(std::io::BufReader::new(file.reopen()?));
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.into_owned();
            let path = under.join(path.strip_prefix("./").unwrap_or(&path));
            if path.as_os_str().is_empty() {
                continue;
            }
            let mut header = entry.header().clone();
            if let Some(c) = clamp {
                if header.mtime().unwrap_or(0) > c {
                    header.set_mtime(c);
                }
            }
            match header.entry_type() {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry.link_name()?.unwrap_or_default().into_owned();
                    let target = if header.entry_type() == tar::EntryType::Link { under.join(target) } else { target };
                    builder.append_link(&mut header, &path, &target)?;
                }
                _ => builder.append_data(&mut header, &path, &mut entry)?,
            }
            entries += 1;
        }
    }
    builder.finish()?;
    Ok(entries)
}

/// Where an image of the store came from: its registry, for the layers the store lacks.
#[derive(Clone)]
struct Origin {
    name: String,
    auth: Option<RegistryAuth>,
}

pub struct InPlaceEngine {
    opts: InPlaceOptions,
    store: Arc<Store>,
    /// The temp dir holding the store, removed with the engine.
    _store_dir: Option<tempfile::TempDir>,
    excluded: Mutex<Excluded>,
    registry: s2i_registry::client::LazyClient,
    origins: Mutex<HashMap<String, Origin>>,
    /// The image id checked to be the one the process runs in.
    own: Mutex<Option<String>>,
    /// Images committed from it: the root is theirs once committed (save-artifacts runs in one).
    committed: Mutex<std::collections::HashSet<String>>,
    /// The root before the first container.
    baseline: Mutex<Option<Arc<Snapshot>>>,
    containers: Mutex<HashMap<String, Arc<Process>>>,
    counter: std::sync::atomic::AtomicU64,
}

fn api_error(op: impl Into<String>, message: impl std::fmt::Display) -> EngineError {
    EngineError::Api { op: op.into(), message: message.to_string(), status: None }
}

async fn on_blocking_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| api_error("the in-place engine", e))
}

/// Whether this process runs in a container at all: the marker files of Docker and Podman
/// (CRI-O), the variables of Kubernetes and systemd's container convention.
fn in_container(root: &Path, env: &dyn Fn(&str) -> Option<String>) -> bool {
    root.join(".dockerenv").exists()
        || root.join("run/.containerenv").exists()
        || env("KUBERNETES_SERVICE_HOST").is_some()
        || env("container").is_some_and(|v| !v.is_empty())
}

/// Check that the process runs in a container of `image`: it is in a container, the image's
/// environment is the process's (the variables a runtime sets left aside), and the image's
/// scripts directory is there. Names what differs, never a value.
fn check_runs_in(image: &ImageInfo, name: &str, root: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
    if !in_container(root, env) {
        return Err(EngineError::NotSupported {
            engine: EngineKind::InPlace,
            what: format!(
                "build outside a container: run s2i inside a container of the builder {name} (a Tekton step or a pod of that image), or use --engine docker or oci here"
            ),
        });
    }
    let op = format!("checking that s2i runs in a container of {name}");
    for kv in &image.env {
        let Some((k, v)) = kv.split_once('=') else { continue };
        if ENV_SET_BY_RUNTIME.contains(&k) {
            continue;
        }
        match env(k) {
            Some(here) if here == v => {}
            here => {
                let how = if here.is_some() { "has another value here" } else { "is not set here" };
                return Err(api_error(
                    op,
                    format!("the builder's environment variable {k} {how}: this process does not run in {name} (the step's image must be the builder given to s2i)"),
                ));
            }
        }
    }
    if let Some(url) = image.label(SCRIPTS_URL_LABEL) {
        if let Some(dir) = url.strip_prefix("image://") {
            let local = root.join(dir.trim_start_matches('/'));
            if !local.is_dir() {
                return Err(api_error(op, format!("the builder's scripts directory {dir} ({SCRIPTS_URL_LABEL}) is not here: this process does not run in {name}")));
            }
        }
    }
    Ok(())
}

impl InPlaceEngine {
    /// Open the engine: a private store (a temp dir unless `opts.store_root`), and the mount
    /// points that the snapshot leaves out.
    pub async fn open(opts: InPlaceOptions) -> Result<InPlaceEngine> {
        let op = "starting the in-place engine";
        let (root, dir) = match &opts.store_root {
            Some(r) => (r.clone(), None),
            None => {
                let d = tempfile::Builder::new()
                    .prefix("s2i-in-place-")
                    .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                    .tempdir()
                    .map_err(|e| api_error(op, format!("creating its temp dir: {e}")))?;
                (d.path().to_path_buf(), Some(d))
            }
        };
        let store_root = root.clone();
        let store = on_blocking_thread(move || Store::open(&store_root)).await??;
        let mut excluded = if opts.root == Path::new("/") {
            Excluded::mount_points_and(&[]).map_err(|e| api_error(op, e))?
        } else {
            Excluded::default()
        };
        // The store's real path: a temp dir may be reached through a symlink.
        excluded.add(&std::fs::canonicalize(&root).unwrap_or(root));
        Ok(InPlaceEngine {
            opts,
            store: Arc::new(store),
            _store_dir: dir,
            excluded: Mutex::new(excluded),
            registry: Default::default(),
            origins: Mutex::new(HashMap::new()),
            own: Mutex::new(None),
            committed: Mutex::new(Default::default()),
            baseline: Mutex::new(None),
            containers: Mutex::new(HashMap::new()),
            counter: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn registry(&self) -> Result<Arc<RegistryClient>> {
        let options = || ClientOptions { limits: self.opts.registry_limits, ca_files: self.opts.registry_ca_files.clone(), ..Default::default() };
        self.registry.get(options).map_err(|e| EngineError::Failed { op: "setting up the registry client".into(), source: Box::new(e) })
    }

    async fn image(&self, name: &str) -> Result<Image> {
        let (store, n) = (self.store.clone(), name.to_string());
        on_blocking_thread(move || store.find_or_import(&n)).await??.ok_or_else(|| EngineError::ImageNotFound(name.to_string()))
    }

    fn get(&self, id: &str) -> Result<Arc<Process>> {
        self.containers
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::Api { op: "finding the container".into(), message: format!("no such container: {id}"), status: Some(404) })
    }

    /// The image is the one this process runs in (checked once), and the root was walked.
    async fn claim(&self, image: &Image, name: &str) -> Result<()> {
        let own = self.own.lock().unwrap().clone();
        match own {
            Some(id) if id == image.id || self.committed.lock().unwrap().contains(&image.id) => {}
            Some(_) => {
                return Err(EngineError::NotSupported {
                    engine: EngineKind::InPlace,
                    what: format!("start a container of {name}: it runs only the image it is in"),
                })
            }
            None => {
                let env = |k: &str| std::env::var(k).ok();
                check_runs_in(&image.info(), name, &self.opts.root, &env)?;
                self.check_top_layer(image, name).await?;
                *self.own.lock().unwrap() = Some(image.id.clone());
            }
        }
        if self.baseline.lock().unwrap().is_none() {
            let (root, excluded) = (self.opts.root.clone(), self.excluded.lock().unwrap().clone());
            let snap = on_blocking_thread(move || Snapshot::take(&root, excluded)).await?.map_err(|e| api_error("walking the root before the build", e))?;
            debug!("in-place: {} paths before the build", snap.len());
            *self.baseline.lock().unwrap() = Some(Arc::new(snap));
        }
        Ok(())
    }

    /// The files of the builder's top layers (the first entries of each, top down, until a
    /// regular file was compared) are in the root as the layers have them: the environment can
    /// match by chance, the layers that made the builder cannot.
    async fn check_top_layer(&self, image: &Image, name: &str) -> Result<()> {
        let client = self.registry()?;
        let Some(repo) = self.origin_repo(&client, image)? else { return Ok(()) };
        let op = format!("checking that s2i runs in a container of {name}");
        let mut above = std::collections::HashSet::new();
        for layer in image.remote_layers().into_iter().rev().take(TOP_LAYERS) {
            let stream = repo.blob(&layer).await.map_err(|e| EngineError::Failed { op: op.clone(), source: Box::new(e) })?;
            let reader = tokio_util::io::SyncIoBridge::new(stream.into_reader());
            let (root, excluded) = (self.opts.root.clone(), self.excluded.lock().unwrap().clone());
            let (compared, back) = on_blocking_thread(move || {
                let r = snapshot::compare_layer(reader, &root, &excluded, TOP_LAYER_ENTRIES, &mut above);
                (r, above)
            })
            .await?;
            above = back;
            let compared = compared.map_err(|e| api_error(&op, e))?;
            if let Some(why) = compared.differs {
                return Err(api_error(op, format!("{why} in the builder's top layers: this process does not run in {name} (the step's image must be the builder given to s2i)")));
            }
            if compared.files > 0 {
                break;
            }
        }
        Ok(())
    }

    fn origin_repo<'c>(&self, client: &'c RegistryClient, image: &Image) -> Result<Option<s2i_registry::client::Repository<'c>>> {
        let Some(origin) = self.origins.lock().unwrap().get(&image.id).cloned() else { return Ok(None) };
        let reference = ImageRef::parse(&origin.name).map_err(|r| api_error(format!("reading the image name {}", origin.name), r))?;
        Ok(Some(client.repository_of(&reference, Resolved::given_or_anonymous(origin.auth.as_ref()))))
    }

    /// Start a created container's command as a child process (in its own process group).
    fn spawn(&self, id: &str, stdin: bool) -> Result<(Arc<Process>, tokio::process::Child)> {
        let p = self.get(id)?;
        if p.staged.is_some() {
            return Err(p.refuse_to_run());
        }
        {
            let mut started = p.started.lock().unwrap();
            if *started {
                return Err(api_error("starting the container", "only a created container can be started"));
            }
            *started = true;
        }
        let mut cmd = tokio::process::Command::new(&p.args[0]);
        cmd.args(&p.args[1..])
            .env_clear()
            .envs(p.env.iter().map(|kv| kv.split_once('=').unwrap_or((kv.as_str(), ""))))
            .current_dir(&p.cwd)
            .stdin(if stdin { std::process::Stdio::piped() } else { std::process::Stdio::null() })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| {
            // Core recognises a missing shell by this op, as with Docker's start.
            api_error("starting the container", format!("exec: {:?}: {e}", p.args[0]))
        })?;
        *p.pgid.lock().unwrap() = child.id().map(|pid| pid as i32);
        Ok((p, child))
    }

    fn kill(p: &Process) {
        if let Some(pgid) = p.pgid.lock().unwrap().take() {
            if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
        }
        Self::ended(p);
    }

    /// The process is gone (exited, failed or killed): its secrets go from the memory volumes.
    fn ended(p: &Process) {
        for dir in &p.memory_dirs {
            dir.empty();
        }
    }
}

fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> Result<i64> {
    let status = status.map_err(|e| api_error("waiting for the container", e))?;
    Ok(match status.code() {
        Some(code) => code as i64,
        None => 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(9) as i64,
    })
}

/// Copy `input` into the child's stdin, then close it. An error only when reading `input` failed.
async fn pump_stdin(mut input: ContainerInput, mut stdin: tokio::process::ChildStdin) -> std::io::Result<()> {
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if let Err(e) = stdin.write_all(&buf[..n]).await {
            debug!("the build process stopped reading its input: {e}");
            break;
        }
    }
    let _ = stdin.shutdown().await;
    Ok(())
}

#[async_trait]
impl Engine for InPlaceEngine {
    async fn version(&self) -> Result<EngineVersion> {
        Ok(EngineVersion {
            kind: EngineKind::InPlace,
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: String::new(),
            endpoint: self.store.root().display().to_string(),
        })
    }

    fn capabilities(&self) -> EngineCapabilities {
        EngineCapabilities {
            fixed_user: Some((rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw())),
            only_builder: true,
            unpacks_input: true,
        }
    }

    async fn inspect_image(&self, name: &str) -> Result<Option<ImageInfo>> {
        let (store, n) = (self.store.clone(), name.to_string());
        Ok(on_blocking_thread(move || store.find_or_import(&n)).await??.map(|i| i.info()))
    }

    async fn pull_image(&self, name: &str, auth: Option<&RegistryAuth>, progress: &mut dyn ProgressSink) -> Result<()> {
        let client = self.registry()?;
        let image = remote::pull_config(&self.store, &client, name, Resolved::given_or_anonymous(auth)).await?;
        progress.progress(Progress::Status(&format!("Digest: {}", image.manifest_digest)));
        progress.progress(Progress::Status(&format!("Status: Read the manifest and config of {name}")));
        self.origins.lock().unwrap().insert(image.id.clone(), Origin { name: name.to_string(), auth: auth.cloned() });
        Ok(())
    }

    async fn push_image(&self, name: &str, auth: Option<&RegistryAuth>, progress: &mut dyn ProgressSink) -> Result<String> {
        let image = self.image(name).await?;
        let client = self.registry()?;
        let from = self.origin_repo(&client, &image)?;
        remote::push(&self.store, &client, &image, name, Resolved::given_or_anonymous(auth), from.as_ref(), progress).await
    }

    async fn save_image(&self, name: &str, format: ArchiveFormat, out: ArchiveOutput) -> Result<()> {
        let image = self.image(name).await?;
        let client = self.registry()?;
        if let Some(from) = self.origin_repo(&client, &image)? {
            // An archive holds every layer: the builder's come from its registry, into the store once.
            remote::fetch_layers(&self.store, &from, &image, &mut |_: Progress<'_>| {}).await?;
        }
        let store = self.store.clone();
        let (mut writer, copy) = s2i_engine::input::channel_to(out);
        let export = on_blocking_thread(move || store.export(&image, format, &mut writer));
        let (exported, copied) = tokio::join!(export, copy);
        copied.map_err(EngineError::Input)?;
        exported??;
        Ok(())
    }

    async fn load_image(&self, _archive: ContainerInput) -> Result<Vec<String>> {
        Err(EngineError::NotSupported { engine: EngineKind::InPlace, what: "load an image archive: it runs only the image it is in".into() })
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let op = format!("creating a container from {:?}", spec.image);
        if !spec.binds.is_empty() {
            return Err(EngineError::NotSupported { engine: EngineKind::InPlace, what: "mount volumes into a build (-v): the build runs in the process's own filesystem".into() });
        }
        // A tmpfs cannot be mounted without privileges: the pod gives one (a memory volume) at
        // the same path, left out of the snapshot, and emptied when the process ends.
        let mut memory_dirs = Vec::new();
        for (path, _) in &spec.tmpfs {
            let dir = MemoryDir::claim(&self.opts.root.join(path.trim_start_matches('/')))?;
            let baseline = self.baseline.lock().unwrap().clone();
            match baseline {
                None => self.excluded.lock().unwrap().add(Path::new(path)),
                Some(snap) if snap.excludes(Path::new(path)) => {}
                Some(_) => return Err(api_error(&op, format!("{path} was walked with the root before the build: it cannot be a memory volume now"))),
            }
            memory_dirs.push(dir);
        }
        let image = self.image(&spec.image).await?;
        let own = self.own.lock().unwrap().clone();
        if own.is_some_and(|own| own != image.id) && !self.committed.lock().unwrap().contains(&image.id) {
            // Another image (a runtime image), after the builder's: it receives files, runs nothing.
            let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let id = format!("in-place-staged-{}-{n}", std::process::id());
            let process = Process {
                image,
                args: Vec::new(),
                env: Vec::new(),
                cwd: "/".into(),
                pgid: Mutex::new(None),
                started: Mutex::new(false),
                memory_dirs: Vec::new(),
                staged: Some(Mutex::new(Vec::new())),
                name: spec.image.clone(),
            };
            self.containers.lock().unwrap().insert(id.clone(), Arc::new(process));
            return Ok(id);
        }
        self.claim(&image, &spec.image).await?;
        let ProcessLine { args, mut env, cwd } = spec.process_in(&image.config);
        if args.is_empty() {
            return Err(api_error(&op, format!("{} has no command", spec.image)));
        }
        for inherited in ["HOME", "HOSTNAME"] {
            if !env.iter().any(|kv| env_key(kv) == inherited) {
                if let Ok(v) = std::env::var(inherited) {
                    env.push(format!("{inherited}={v}"));
                }
            }
        }
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("in-place-{}-{n}", std::process::id());
        let process = Process { image, args, env, cwd, pgid: Mutex::new(None), started: Mutex::new(false), memory_dirs, staged: None, name: spec.image.clone() };
        self.containers.lock().unwrap().insert(id.clone(), Arc::new(process));
        Ok(id)
    }

    async fn run_container(&self, id: &str, input: Option<ContainerInput>, output: &mut dyn OutputSink) -> Result<i64> {
        let (p, mut child) = self.spawn(id, input.is_some())?;
        let stdin = child.stdin.take();
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let pump = async {
            let r = match (input, stdin) {
                (Some(input), Some(stdin)) => pump_stdin(input, stdin).await,
                _ => Ok(()),
            };
            if r.is_err() {
                // A truncated input: the build must not carry on with half of it.
                Self::kill(&p);
            }
            r
        };
        let (pumped, relayed) = tokio::join!(pump, s2i_engine::input::forward_output(stdout, stderr, output));
        let waited = child.wait().await;
        p.pgid.lock().unwrap().take();
        Self::ended(&p);
        let code = exit_code(waited)?;
        pumped.map_err(EngineError::Input)?;
        relayed.map_err(|e| api_error("reading the build's output", e))?;
        Ok(code)
    }

    async fn run_with_stdout(&self, id: &str, input: Option<ContainerInput>, mut stderr: Box<dyn OutputSink>) -> Result<RunningOutput> {
        let (p, mut child) = self.spawn(id, input.is_some())?;
        let stdout = child.stdout.take().ok_or_else(|| api_error("starting the container", "no stdout pipe"))?;
        let err_pipe = child.stderr.take();
        if let (Some(input), Some(stdin)) = (input, child.stdin.take()) {
            tokio::spawn(async move {
                if let Err(e) = pump_stdin(input, stdin).await {
                    debug!("feeding the build process's input failed: {e}");
                }
            });
        }
        let exit = async move {
            let relayed = s2i_engine::input::forward_output(None::<tokio::process::ChildStdout>, err_pipe, &mut *stderr).await;
            drop(stderr);
            let waited = child.wait().await;
            p.pgid.lock().unwrap().take();
            Self::ended(&p);
            let code = exit_code(waited)?;
            relayed.map_err(|e| api_error("reading the build's output", e))?;
            Ok(code)
        };
        Ok(RunningOutput { stdout: Box::new(stdout), exit: Box::pin(exit) })
    }

    async fn upload_archive(&self, id: &str, path: &str, tar: ContainerInput) -> Result<()> {
        let p = self.get(id)?;
        let op = format!("copying files to {path}");
        if let Some(staged) = &p.staged {
            // Kept as it came (the caller's checked stream), for the commit's layer.
            let dir = self.store.root().to_path_buf();
            let mut file = tempfile::Builder::new().prefix("staged-").tempfile_in(&dir).map_err(|e| api_error(&op, e))?;
            let mut reader = tokio_util::io::SyncIoBridge::new(tar);
            let file = on_blocking_thread(move || std::io::copy(&mut reader, file.as_file_mut()).map(|_| file)).await?.map_err(|e| api_error(&op, e))?;
            staged.lock().unwrap().push((path.to_string(), file));
            return Ok(());
        }
        let reader = tokio_util::io::SyncIoBridge::new(tar);
        let (root, path) = (self.opts.root.clone(), path.to_string());
        on_blocking_thread(move || -> Result<()> {
            let name = format!("the archive copied to {path}");
            let cancel = Cancel::never();
            let opts = image::Unpack { name: &name, whiteouts: image::Whiteouts::Plain, under: &path, lowers: &[], cancel: &cancel };
            image::unpack(&root, reader, &opts).map_err(|e| api_error(&op, error_chain(&e)))?;
            Ok(())
        })
        .await?
    }

    async fn commit_container(&self, id: &str, spec: &CommitSpec) -> Result<String> {
        let p = self.get(id)?;
        let snap = self.baseline.lock().unwrap().clone().ok_or_else(|| api_error("committing the container", "the root was never walked"))?;
        let created = match self.opts.source_date_epoch {
            Some(t) => Some(t),
            None => image::source_date_epoch()?,
        };
        let clamp = created.map(|t| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
        let changes = CommitChanges::from_spec(spec, created);
        let tag = spec.full_tag();
        let store = self.store.clone();
        let base = p.image.clone();
        if p.staged.is_some() {
            let process = p.clone();
            let committed = on_blocking_thread(move || {
                let staged = process.staged.as_ref().unwrap().lock().unwrap();
                store.commit_tar(&base, &changes, tag.as_deref(), |out| staged_layer(&staged, out, clamp).map_err(|e| ImageError::Diff(e.to_string())))
            })
            .await?
            .map_err(|e| match e {
                ImageError::Diff(message) => api_error("composing the image's layer", message),
                other => other.into(),
            })?;
            let origin = self.origins.lock().unwrap().get(&p.image.id).cloned();
            if let Some(origin) = origin {
                self.origins.lock().unwrap().insert(committed.id.clone(), origin);
            }
            return Ok(committed.id);
        }
        let committed = on_blocking_thread(move || {
            store.commit_tar(&base, &changes, tag.as_deref(), |out| {
                let stats = snap.write_layer(out, clamp).map_err(|e| ImageError::Diff(e.to_string()))?;
                info!("The build changed {} paths ({} removed, {} bytes of files)", stats.entries, stats.whiteouts, stats.bytes);
                Ok(stats.entries)
            })
        })
        .await?
        .map_err(|e| match e {
            ImageError::Diff(message) => api_error("taking the snapshot of the build", message),
            other => other.into(),
        })?;
        self.committed.lock().unwrap().insert(committed.id.clone());
        let origin = self.origins.lock().unwrap().get(&p.image.id).cloned();
        if let Some(origin) = origin {
            self.origins.lock().unwrap().insert(committed.id.clone(), origin);
        }
        Ok(committed.id)
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        if let Some(p) = self.containers.lock().unwrap().remove(id) {
            Self::kill(&p);
        }
        Ok(())
    }

    async fn remove_image(&self, name: &str) -> Result<()> {
        let (store, n) = (self.store.clone(), name.to_string());
        on_blocking_thread(move || store.remove(&n)).await??;
        Ok(())
    }

    async fn download_archive(&self, id: &str, path: &str) -> Result<Option<ByteStream>> {
        let p = self.get(id)?;
        if p.staged.is_some() {
            // Nothing ran in it: it holds only what was uploaded (no image_metadata.json). Its
            // image's own files are not here (the process's root is the builder's).
            debug!("in-place: {path} of a container of {} is not read", p.name);
            return Ok(None);
        }
        let op = format!("copying {path} out of the build's filesystem");
        let (root, p) = (self.opts.root.clone(), PathBuf::from(path));
        if !s2i_oci::run::exists_under(&root, &p).map_err(|e| api_error(&op, error_chain(&e)))? {
            return Ok(None);
        }
        Ok(Some(s2i_engine::input::blocking_stream(move |w| {
            s2i_oci::run::archive_under(&root, &p, w, &Cancel::never()).map_err(|e| error_chain(&e))
        })))
    }

    async fn build_image(&self, _context: ContainerInput, _spec: &ImageBuildSpec, _output: &mut dyn OutputSink) -> Result<String> {
        Err(EngineError::NotSupported {
            engine: EngineKind::InPlace,
            what: "build FROM an ONBUILD builder or a Dockerfile: it runs only the image it is in (use --engine docker for these)".into(),
        })
    }

    async fn published_port(&self, id: &str, port: u16) -> Result<Option<std::net::SocketAddr>> {
        let p = self.get(id)?;
        let running = p.pgid.lock().unwrap().is_some();
        // A child process shares the pod's network: its port is the pod's own.
        Ok(running.then(|| std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port))))
    }

    async fn remove_leftovers(&self) {
        let all: Vec<Arc<Process>> = self.containers.lock().unwrap().drain().map(|(_, p)| p).collect();
        for p in all {
            Self::kill(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(env: &[&str], labels: &[(&str, &str)]) -> ImageInfo {
        ImageInfo {
            env: env.iter().map(|s| s.to_string()).collect(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }

    /// The secrets' directory must be a memory volume: one on disk is refused with an error that
    /// says what the step needs; on a tmpfs (/dev/shm here) what the build adds goes at its end,
    /// what the pod had stays.
    #[test]
    fn secrets_go_only_to_a_memory_volume_and_leave_with_the_process() {
        let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        assert_ne!(rustix::fs::statfs(disk.path()).unwrap().f_type as i64, TMPFS_MAGIC, "the target dir is on disk");
        let err = MemoryDir::claim(disk.path()).err().expect("a directory on disk is refused").to_string();
        assert!(err.contains("is not on a memory file system") && err.contains("emptyDir with medium: Memory"), "{err}");
        let err = MemoryDir::claim(&disk.path().join("absent")).err().expect("a missing directory is refused").to_string();
        assert!(err.contains("cannot be used") && err.contains("never written to disk"), "{err}");

        let memory = tempfile::tempdir_in("/dev/shm").expect("/dev/shm is a tmpfs");
        std::fs::create_dir(memory.path().join("kubernetes.io")).unwrap();
        let dir = MemoryDir::claim(memory.path()).unwrap();
        std::fs::write(memory.path().join("token"), "s3cr3t").unwrap();
        std::fs::create_dir_all(memory.path().join("more/deep")).unwrap();
        std::fs::write(memory.path().join("more/deep/key"), "k").unwrap();
        dir.empty();
        let left: Vec<_> = std::fs::read_dir(memory.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("kubernetes.io")]);
    }

    #[test]
    fn the_process_must_run_in_the_builder() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/libexec/s2i")).unwrap();
        let img = image(&["PATH=/usr/bin", "APP_ROOT=/opt/app-root", "HOME=/opt/app-root/src"], &[(SCRIPTS_URL_LABEL, "image:///usr/libexec/s2i")]);
        let vars = |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());

        let err = check_runs_in(&img, "b", root.path(), &vars(&[("PATH", "/usr/bin"), ("APP_ROOT", "/opt/app-root")])).unwrap_err();
        assert!(err.to_string().contains("outside a container"), "{err}");

        std::fs::write(root.path().join(".dockerenv"), "").unwrap();
        // HOME is the pipeline's to set (Tekton does).
        check_runs_in(&img, "b", root.path(), &vars(&[("PATH", "/usr/bin"), ("APP_ROOT", "/opt/app-root"), ("HOME", "/tekton/home")])).unwrap();
        let err = check_runs_in(&img, "b", root.path(), &vars(&[("PATH", "/usr/bin"), ("APP_ROOT", "/srv")])).unwrap_err();
        assert!(err.to_string().contains("APP_ROOT has another value") && !err.to_string().contains("/srv"), "names, never values: {err}");
        let err = check_runs_in(&img, "b", root.path(), &vars(&[("PATH", "/usr/bin")])).unwrap_err();
        assert!(err.to_string().contains("APP_ROOT is not set"), "{err}");
        std::fs::remove_dir_all(root.path().join("usr/libexec/s2i")).unwrap();
        let err = check_runs_in(&img, "b", root.path(), &vars(&[("PATH", "/usr/bin"), ("APP_ROOT", "/opt/app-root")])).unwrap_err();
        assert!(err.to_string().contains("scripts directory /usr/libexec/s2i"), "{err}");
    }
}
