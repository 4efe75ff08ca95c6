//! [`OciEngine`]: the [`Engine`] trait without a daemon. Images live in the OCI store
//! ([`crate::image::Store`]); a container is a runtime bundle over an overlay of the image's
//! unpacked layers, run by runc in the foreground with the build's input on its stdin.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use s2i_engine::{
    ArchiveFormat, ArchiveOutput, ByteStream, CommitSpec, ContainerInput, ContainerSpec, Engine, EngineError, EngineKind, EngineTask,
    EngineVersion, ImageBuildSpec, ImageInfo, OutputSink, ProcessLine, Progress, ProgressSink, RegistryAuth, Result,
    RunningOutput, TaskReporter,
};
use s2i_registry::client::{CaFile, ClientOptions, Limits as RegistryLimits};
use s2i_registry::digest::short_id;
use s2i_registry::{error_chain, RegistryClient, Resolved};
use tokio::process::Child;
use tracing::{debug, info, warn};

use crate::cancel::{Cancel, Cancelled};
use crate::image::{self, CommitChanges, Diff, Image, Lease, Store, RUNTIME_MOUNT_POINTS};
use crate::run::bundle::{self, Bind, BundleParams, EtcFiles, Network, NetworkMode, Rlimits};
use crate::run::cgroup::{Cgroups, ContainerCgroup};
use crate::run::container::{self, ContainerInfo, StateDir};
use crate::fsroot::RootDir;
use crate::run::rootfs::{self, OverlayDirs, RootfsDriver};
use crate::run::runc::Runtime;
use crate::run::seccomp::Security;
use crate::run::{archive, netns, user, RunError};

/// The default pids limit of a build container: room for a parallel compiler, not for a fork bomb.
pub const DEFAULT_PIDS_LIMIT: u64 = 4096;
/// Environment variables that set the engine's limits and rootfs driver, named in its messages.
/// The engine does not read them: the binary does, with s2i-core's grammar of limits.
pub const MEMORY_LIMIT_ENV: &str = "S2I_OCI_MEMORY_LIMIT";
pub const PIDS_LIMIT_ENV: &str = "S2I_OCI_PIDS_LIMIT";
pub const ROOTFS_ENV: &str = "S2I_OCI_ROOTFS";

/// How the engine is set up (`--oci-store`, `--oci-runtime`, limits).
#[derive(Debug, Clone)]
pub struct OciEngineOptions {
    /// The image store (`--oci-store`), holding the run state under `s2i/run`.
    pub store_root: PathBuf,
    /// The OCI runtime (`--oci-runtime`); a bare name is looked up in `PATH`.
    pub runtime: PathBuf,
    /// `None`: kernel overlay, else fuse-overlayfs, else a copy; `Some`: only that one.
    pub rootfs_driver: Option<RootfsDriver>,
    pub fuse_overlayfs: PathBuf,
    /// Memory limit of a build container in bytes (`None`: no limit).
    pub memory_limit: Option<u64>,
    /// Most processes and threads in a build container (`None`: no limit).
    pub pids_limit: Option<u64>,
    /// What the image store reads of untrusted archives and registries.
    pub store_limits: image::Limits,
    /// The registry client's timeouts and sizes, for pulls and pushes.
    pub registry_limits: RegistryLimits,
    /// CA files the registry client trusts beside its built-in and the system's roots.
    pub registry_ca_files: Vec<CaFile>,
    /// The creation time of committed images, which also caps the mtimes in their layers: the
    /// same input then gives the same image. `None`: `SOURCE_DATE_EPOCH` if set, else now.
    pub source_date_epoch: Option<std::time::SystemTime>,
    /// Where unpacking an image for a container and the snapshot of a commit are reported.
    pub tasks: Option<TaskReporter>,
}

impl OciEngineOptions {
    /// Defaults: the store at `store_root`, `runc`, automatic rootfs, memory limited to half the
    /// host's memory, 4096 pids.
    pub fn new(store_root: impl Into<PathBuf>) -> OciEngineOptions {
        OciEngineOptions {
            store_root: store_root.into(),
            runtime: PathBuf::from("runc"),
            rootfs_driver: None,
            fuse_overlayfs: PathBuf::from("fuse-overlayfs"),
            memory_limit: default_memory_limit(),
            pids_limit: Some(DEFAULT_PIDS_LIMIT),
            store_limits: image::Limits::default(),
            registry_limits: RegistryLimits::default(),
            registry_ca_files: Vec::new(),
            source_date_epoch: None,
            tasks: None,
        }
    }
}

/// Half of the host's memory: a build that runs away gets killed before the host swaps.
fn default_memory_limit() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024 / 2)
}

/// What a container runs, fixed at creation.
#[derive(Debug, Clone)]
struct ProcessPlan {
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
    user: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Running,
    Stopped,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Stopped => "stopped",
        }
    }
}

struct Container {
    id: String,
    dir: PathBuf,
    image: Image,
    driver: RootfsDriver,
    process: ProcessPlan,
    network: Network,
    cap_drop: Vec<String>,
    binds: Vec<Bind>,
    /// tmpfs mounts: the path and its mount options.
    tmpfs: Vec<(String, Vec<String>)>,
    shm_size: u64,
    security: Security,
    cgroup: ContainerCgroup,
    hostname: String,
    state: Mutex<State>,
    /// Held while the container exists: the lock that tells a sweep it is alive, and the
    /// store lease that keeps its layer dirs.
    lock: Mutex<Option<std::fs::File>>,
    _lease: Lease,
}

impl Container {
    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    fn root(&self) -> std::result::Result<RootDir, RunError> {
        RootDir::open(&self.rootfs())
    }

    fn set_state(&self, s: State) {
        *self.state.lock().unwrap() = s;
    }

    fn state(&self) -> State {
        *self.state.lock().unwrap()
    }

    /// What a commit leaves out: where the runtime mounts things, and the binds' targets.
    fn excluded_paths(&self) -> Vec<String> {
        RUNTIME_MOUNT_POINTS
            .iter()
            .map(|s| s.to_string())
            .chain(["/dev/shm".to_string()])
            .chain(self.binds.iter().map(|b| b.destination.display().to_string()))
            .chain(self.tmpfs.iter().map(|(path, _)| path.clone()))
            .collect()
    }
}

/// The daemonless engine.
pub struct OciEngine {
    store: Arc<Store>,
    state: StateDir,
    runtime: Runtime,
    runtime_version: String,
    opts: OciEngineOptions,
    cgroups: Cgroups,
    rlimits: Rlimits,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    /// Names handed to create_container, by name: a container is found by either.
    names: Mutex<HashMap<String, String>>,
    /// The rootfs driver that worked last, tried first next time.
    good_driver: Mutex<Option<RootfsDriver>>,
    /// Counts remove_leftovers calls. Blocking work started before one is cancelled by it
    /// ([`Cancel::when_moved`]), and a creation that saw one start while it was under way removes
    /// its own container. Later work is fine (a build's `--run`, say).
    sweeps: Arc<AtomicU64>,
    /// Blocking work under way, for remove_leftovers to wait out once it has cancelled it.
    jobs: Arc<AtomicUsize>,
    /// The registry client, made at the first pull or push (it remembers each registry's endpoint).
    registry: s2i_registry::client::LazyClient,
}

fn api_error(op: impl Into<String>, e: impl std::fmt::Display) -> EngineError {
    EngineError::Api { op: op.into(), message: e.to_string(), status: None }
}

fn runtime_error(op: &str, e: RunError) -> EngineError {
    match e {
        RunError::NoSuchContainer(_) => EngineError::Api { op: op.into(), message: error_chain(&e), status: Some(404) },
        other => EngineError::Api { op: op.into(), message: error_chain(&other), status: None },
    }
}

async fn on_blocking_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::result::Result<T, EngineError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| api_error("the oci engine", e))
}

/// How long remove_leftovers waits for cancelled blocking work to stop (each piece checks between
/// entries and reads, and removes what it made on its way out), before it goes on without it.
const JOBS_STOP_WAIT: Duration = Duration::from_secs(5);

/// One piece of blocking work under way; counted in `OciEngine::jobs` until it is dropped, on
/// the blocking thread, once the work and its own clean-up are done.
struct Job(Arc<AtomicUsize>);

impl Job {
    fn start(jobs: &Arc<AtomicUsize>) -> Job {
        jobs.fetch_add(1, Ordering::SeqCst);
        Job(jobs.clone())
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn random_id() -> String {
    let mut buf = [0u8; 32];
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("the kernel's random source failed: {e}"),
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Find `prog` in `PATH` unless it is a path already.
fn which(prog: &Path) -> PathBuf {
    if prog.components().count() > 1 {
        return prog.to_path_buf();
    }
    which::which(prog).unwrap_or_else(|_| prog.to_path_buf())
}

/// What create_container decided before any disk work, handed to the blocking thread that
/// makes the container.
struct NewContainer {
    drivers: Vec<RootfsDriver>,
    id: String,
    spec: ContainerSpec,
    image: Image,
    process: ProcessPlan,
    network_mode: NetworkMode,
    binds: Vec<Bind>,
    security: Security,
}

impl OciEngine {
    /// Open the store, check the runtime, and remove what crashed s2i processes left behind.
    pub async fn open(opts: OciEngineOptions) -> Result<OciEngine> {
        if !rustix::process::geteuid().is_root() {
            return Err(runtime_error("starting the oci engine", RunError::NotRoot));
        }
        let (root, limits) = (opts.store_root.clone(), opts.store_limits);
        let mut store = on_blocking_thread(move || Store::open(&root)).await??;
        store.set_limits(limits);
        let state = StateDir::new(store.root().join("s2i/run")).map_err(|e| runtime_error("starting the oci engine", e))?;
        let runtime = Runtime::new(which(&opts.runtime), state.runtime_root());
        let runtime_version = runtime.version().await.map_err(|e| runtime_error("starting the oci engine", e))?;
        let cgroups = Cgroups::detect().map_err(|e| runtime_error("starting the oci engine", e))?;
        container::sweep(&state, &runtime).await;
        debug!("oci engine: store {}, {runtime_version}", store.root().display());
        Ok(OciEngine {
            store: Arc::new(store),
            state,
            runtime,
            runtime_version,
            opts,
            cgroups,
            rlimits: Rlimits::from_host(),
            containers: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            good_driver: Mutex::new(None),
            sweeps: Arc::new(AtomicU64::new(0)),
            jobs: Arc::new(AtomicUsize::new(0)),
            registry: Default::default(),
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The runtime's state directory (its `--root`).
    pub fn runtime_root(&self) -> &Path {
        self.runtime.root()
    }

    /// Where containers' directories are made.
    pub fn containers_dir(&self) -> PathBuf {
        self.state.containers()
    }

    fn registry(&self) -> Result<Arc<RegistryClient>> {
        let options = || ClientOptions { limits: self.opts.registry_limits, ca_files: self.opts.registry_ca_files.clone(), ..Default::default() };
        self.registry.get(options).map_err(|e| EngineError::Failed { op: "setting up the registry client".into(), source: Box::new(e) })
    }

    fn find(&self, id_or_name: &str) -> Option<Arc<Container>> {
        let id = self.names.lock().unwrap().get(id_or_name).cloned().unwrap_or_else(|| id_or_name.to_string());
        self.containers.lock().unwrap().get(&id).cloned()
    }

    fn get(&self, id_or_name: &str) -> Result<Arc<Container>> {
        self.find(id_or_name).ok_or_else(|| runtime_error("finding the container", RunError::NoSuchContainer(id_or_name.to_string())))
    }

    /// What remove_leftovers will cancel: blocking work started now.
    fn cancel(&self) -> Cancel {
        Cancel::when_moved(&self.sweeps)
    }

    /// The store, for blocking work that remove_leftovers stops.
    fn cancellable_store(&self) -> Store {
        self.store.with_cancel(self.cancel())
    }

    /// Runs `f` on a blocking thread, counted as a job that remove_leftovers waits out.
    async fn run_job<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let job = Job::start(&self.jobs);
        on_blocking_thread(move || {
            let _job = job;
            f()
        })
        .await
    }

    async fn image(&self, name: &str) -> Result<Image> {
        let store = self.cancellable_store();
        let n = name.to_string();
        self.run_job(move || store.find_or_import(&n)).await??.ok_or_else(|| EngineError::ImageNotFound(name.to_string()))
    }

    /// Everything of create_container that touches the disk; runs on a blocking thread. A
    /// container that cannot be made, or whose making is cancelled (`store`'s cancel), is
    /// removed here, whatever became of the caller.
    fn make_container(store: &Store, state: &StateDir, cgroups: &Cgroups, opts: &OciEngineOptions, new: NewContainer) -> std::result::Result<Container, RunError> {
        let id = new.id.clone();
        let id = id.as_str();
        let (lock, dir) = state.claim(id)?;
        // The claim stays held (a duplicate of the locked descriptor) while a failure is removed.
        let held = lock.try_clone().map_err(|e| RunError::io(format!("locking container {id}"), e))?;
        let made = Self::fill_container(store, cgroups, opts, new, lock, dir);
        let failure = match made {
            Ok(c) if !store.cancel.is_cancelled() => return Ok(c),
            Ok(c) => {
                drop(c);
                RunError::Cancelled(Cancelled)
            }
            Err(e) => e,
        };
        if let Err(e) = container::remove_files(state, id) {
            warn!("could not remove the container {id} that was being made: {}", error_chain(&e));
        }
        drop(held);
        Err(failure)
    }

    fn fill_container(
        store: &Store,
        cgroups: &Cgroups,
        opts: &OciEngineOptions,
        new: NewContainer,
        lock: std::fs::File,
        dir: PathBuf,
    ) -> std::result::Result<Container, RunError> {
        let NewContainer { drivers, id: id_owned, spec: spec_owned, image, process, network_mode, binds, security } = new;
        let (id, spec) = (id_owned.as_str(), &spec_owned);
        let mut info = ContainerInfo { id: id.to_string(), name: spec.name.clone(), ..Default::default() };
        container::write_info(&dir, &info)?;
        let lease = store.lease().map_err(|e| RunError::io("holding the image store", std::io::Error::other(e.to_string())))?;

        // The root filesystem.
        let rootfs = dir.join("rootfs");
        std::fs::create_dir(&rootfs).map_err(|e| RunError::io(format!("creating {}", rootfs.display()), e))?;
        let mut tried = Vec::new();
        let mut driver = None;
        let mut lowers: Option<Vec<PathBuf>> = None;
        // A refused or broken image, or a cancelled unpack, fails every driver alike: it ends the
        // search at once (another driver would only hide the reason). Other failures (a file
        // system without overlay's xattrs, say) go on to the next driver.
        let unpacking = |what: &'static str| {
            move |e: image::ImageError| match e {
                image::ImageError::Cancelled(c) => RunError::Cancelled(c),
                e if e.faults_the_image() => RunError::Image(e),
                e => RunError::io(what, std::io::Error::other(error_chain(&e))),
            }
        };
        for d in drivers {
            store.cancel.check()?;
            let attempt = (|| -> std::result::Result<(), RunError> {
                match d {
                    RootfsDriver::Overlay | RootfsDriver::FuseOverlayfs => {
                        if lowers.is_none() {
                            lowers = Some(store.layer_dirs(&image).map_err(unpacking("unpacking the image's layers"))?);
                        }
                        let (upper, work) = (dir.join("upper"), dir.join("work"));
                        for p in [&upper, &work] {
                            let _ = std::fs::remove_dir_all(p);
                            std::fs::create_dir(p).map_err(|e| RunError::io(format!("creating {}", p.display()), e))?;
                        }
                        // The merged root's own mode comes from the upper dir.
                        std::fs::set_permissions(&upper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                            .map_err(|e| RunError::io(format!("setting the mode of {}", upper.display()), e))?;
                        let dirs = OverlayDirs { lower: lowers.as_deref().unwrap_or(&[]), upper: &upper, work: &work, target: &rootfs };
                        if d == RootfsDriver::Overlay {
                            rootfs::mount_overlay(&dirs)
                        } else {
                            rootfs::mount_fuse_overlayfs(&which(&opts.fuse_overlayfs), &dirs)
                        }
                    }
                    RootfsDriver::Copy => store.flatten_into(&image, &rootfs).map_err(unpacking("copying the image's files")),
                }
            })();
            match attempt {
                Ok(()) => {
                    driver = Some(d);
                    break;
                }
                Err(e @ (RunError::Image(_) | RunError::Cancelled(_))) => return Err(e),
                Err(e) => {
                    debug!("rootfs driver {d} failed: {e}");
                    tried.push(format!("{d}: {}", error_chain(&e)));
                    if d == RootfsDriver::Copy {
                        let _ = std::fs::remove_dir_all(&rootfs);
                        let _ = std::fs::create_dir(&rootfs);
                    }
                }
            }
        }
        let Some(driver) = driver else {
            return Err(RunError::NoRootfsDriver { image: image.names.first().cloned().unwrap_or(image.id.clone()), tried: tried.join("; ") });
        };
        info.driver = Some(driver.to_string());
        container::write_info(&dir, &info)?;

        // Cgroup, network, and the files bind-mounted into /etc.
        let cgroup = cgroups.create(id, opts.memory_limit, opts.pids_limit)?;
        info.cgroups = cgroup.parents.clone();
        container::write_info(&dir, &info)?;
        let network = match network_mode {
            NetworkMode::Host => Network::Host,
            NetworkMode::None => {
                let path = dir.join("netns");
                netns::create(&path)?;
                Network::None { netns: path }
            }
        };
        let hostname = match network_mode {
            NetworkMode::Host => rustix::system::uname().nodename().to_string_lossy().into_owned(),
            NetworkMode::None => short_id(id).to_string(),
        };
        let host_hosts = std::fs::read_to_string("/etc/hosts").ok();
        let hosts = bundle::hosts_file(network_mode, host_hosts.as_deref(), &spec.extra_hosts)?;
        let etc = etc_files(&dir);
        let write = |p: &Path, text: &str| std::fs::write(p, text).map_err(|e| RunError::io(format!("writing {}", p.display()), e));
        write(&etc.hosts, &hosts)?;
        write(&etc.hostname, &format!("{hostname}\n"))?;
        write(&etc.resolv_conf, &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())?;

        let mut process = process;
        process.env.insert(0, format!("HOSTNAME={hostname}"));
        Ok(Container {
            id: id.to_string(),
            dir,
            image,
            driver,
            process,
            network,
            cap_drop: spec.cap_drop.clone(),
            binds,
            tmpfs: spec.tmpfs.iter().map(|(path, options)| (path.clone(), options.split(',').filter(|o| !o.is_empty()).map(str::to_string).collect())).collect(),
            shm_size: spec.shm_size.filter(|s| *s > 0).map(|s| s as u64).unwrap_or(bundle::DEFAULT_SHM_SIZE),
            security,
            cgroup,
            hostname,
            state: Mutex::new(State::Created),
            lock: Mutex::new(Some(lock)),
            _lease: lease,
        })
    }

    /// Resolve the user in the container's files and write config.json; just before a start, so
    /// that files uploaded after creation (an injected /etc/passwd) count, as with Docker.
    fn write_config(&self, c: &Container) -> std::result::Result<(), RunError> {
        let root = c.root()?;
        let user = user::resolve_in_root(&c.process.user, &root)?;
        let mut env = c.process.env.clone();
        if !env.iter().any(|kv| kv.starts_with("HOME=")) {
            env.push(format!("HOME={}", user.home));
        }
        let etc = etc_files(&c.dir);
        let rootfs = c.rootfs();
        let params = BundleParams {
            rootfs: &rootfs,
            args: c.process.args.clone(),
            env,
            cwd: c.process.cwd.clone(),
            user: &user,
            hostname: c.hostname.clone(),
            network: &c.network,
            cap_drop: &c.cap_drop,
            binds: &c.binds,
            tmpfs: &c.tmpfs,
            etc: &etc,
            cgroups_path: c.cgroup.runc_path.clone(),
            resources: c.cgroup.runc_resources,
            shm_size: c.shm_size,
            rlimits: self.rlimits,
            security: &c.security,
        };
        let spec = bundle::spec(&params)?;
        let path = c.dir.join("config.json");
        spec.save(&path).map_err(|e| RunError::io(format!("writing {}", path.display()), std::io::Error::other(e.to_string())))
    }

    /// Write config.json and start runc for a created container.
    async fn start(&self, id: &str, with_stdin: bool) -> Result<(Arc<Container>, Child)> {
        let c = self.get(id)?;
        let state = c.state();
        if state != State::Created {
            return Err(runtime_error(
                "starting the container",
                RunError::BadState { id: c.id.clone(), state: state.name(), what: "only a created container can be started".into() },
            ));
        }
        self.write_config(&c).map_err(|e| runtime_error("starting the container", e))?;
        let child = self.runtime.spawn_run(&c.id, &c.dir, with_stdin).map_err(|e| runtime_error("starting the container", e))?;
        c.set_state(State::Running);
        Ok((c, child))
    }

    /// After the runtime exited: the process's exit code, or why it did not run or was killed.
    fn exit_code(&self, c: &Container, status: std::io::Result<ExitStatus>) -> Result<i64> {
        exit_code_of(&self.runtime, self.opts.pids_limit, c, status)
    }
}

/// [`OciEngine::exit_code`] for a future that outlives the engine's borrow.
fn exit_code_of(runtime: &Runtime, pids_limit: Option<u64>, c: &Container, status: std::io::Result<ExitStatus>) -> Result<i64> {
    c.set_state(State::Stopped);
    let status = status.map_err(|e| api_error("waiting for the container", e))?;
    if let Some(err) = runtime.run_error(&c.dir) {
        // Core recognises a missing /bin/sh by this op's message, as with Docker's start.
        return Err(runtime_error("starting the container", err));
    }
    let code = match status.code() {
        Some(code) => code as i64,
        None => 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(9) as i64,
    };
    if code == 137 && c.cgroup.oom_killed() {
        let limit_mib = c.cgroup.memory_limit.unwrap_or(0) >> 20;
        return Err(runtime_error("running the container", RunError::OutOfMemory { limit_mib }));
    }
    if code != 0 {
        let hits = c.cgroup.pids_limit_hits();
        if hits > 0 {
            warn!("the container hit its limit of {} processes {hits} times; raise it with {PIDS_LIMIT_ENV}=<number>", pids_limit.unwrap_or(0));
        }
    }
    Ok(code)
}

fn etc_files(dir: &Path) -> EtcFiles {
    EtcFiles { hosts: dir.join("hosts"), resolv_conf: dir.join("resolv.conf"), hostname: dir.join("hostname") }
}

fn is_transport(name: &str) -> bool {
    image::Transport::parse(name).is_some()
}

#[async_trait]
impl Engine for OciEngine {
    async fn version(&self) -> Result<EngineVersion> {
        Ok(EngineVersion {
            kind: EngineKind::Oci,
            version: self.runtime_version.clone(),
            api_version: String::new(),
            endpoint: self.store.root().display().to_string(),
        })
    }

    async fn inspect_image(&self, name: &str) -> Result<Option<ImageInfo>> {
        let store = self.cancellable_store();
        let n = name.to_string();
        Ok(self.run_job(move || store.find_or_import(&n)).await??.map(|i| i.info()))
    }

    async fn pull_image(&self, name: &str, auth: Option<&RegistryAuth>, progress: &mut dyn ProgressSink) -> Result<()> {
        if is_transport(name) {
            let image = self.image(name).await?;
            progress.progress(Progress::Status(&format!("Imported {name} as {}", image.id)));
            return Ok(());
        }
        let client = self.registry()?;
        image::remote::pull(&Arc::new(self.cancellable_store()), &client, name, Resolved::given_or_anonymous(auth), progress).await?;
        Ok(())
    }

    async fn push_image(&self, name: &str, auth: Option<&RegistryAuth>, progress: &mut dyn ProgressSink) -> Result<String> {
        if is_transport(name) {
            return Err(api_error(format!("pushing {name}"), "name the image to push by its registry and tag; an archive is written with save_image"));
        }
        let image = self.image(name).await?;
        let client = self.registry()?;
        image::remote::push(&Arc::new(self.cancellable_store()), &client, &image, name, Resolved::given_or_anonymous(auth), None, progress).await
    }

    async fn save_image(&self, name: &str, format: ArchiveFormat, out: ArchiveOutput) -> Result<()> {
        let image = self.image(name).await?;
        let store = self.cancellable_store();
        // The blocking export hands chunks to this future, which writes them to `out`: when the
        // future is dropped (an interruption) while `out` stalls (a daemon that stopped reading),
        // the export's next send fails at once instead of waiting on `out` for ever.
        let (mut writer, copy) = s2i_engine::input::channel_to(out);
        let export = self.run_job(move || store.export(&image, format, &mut writer));
        let (exported, copied) = tokio::join!(export, copy);
        // A failed write to `out` ends the export too (its sends fail): that write is the cause.
        copied.map_err(EngineError::Input)?;
        exported??;
        Ok(())
    }

    async fn load_image(&self, archive: ContainerInput) -> Result<Vec<String>> {
        let store = self.cancellable_store();
        let mut reader = tokio_util::io::SyncIoBridge::new(archive);
        let images = self.run_job(move || store.import_archive(&mut reader)).await??;
        Ok(images
            .into_iter()
            .flat_map(|i| if i.names.is_empty() { vec![i.id.clone()] } else { i.names.clone() })
            .collect())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let op = format!("creating a container from {:?}", spec.image);
        // Everything a user could have mistyped, before anything is made.
        let network_mode = NetworkMode::parse(spec.network_mode.as_deref()).map_err(|e| runtime_error(&op, e))?;
        let binds = spec.binds.iter().map(|b| Bind::parse(b)).collect::<std::result::Result<Vec<_>, _>>().map_err(|e| runtime_error(&op, e))?;
        bundle::capabilities(&spec.cap_drop).map_err(|e| runtime_error(&op, e))?;
        let security = Security::from_options(&spec.security).map_err(|e| runtime_error(&op, e))?;
        for h in &spec.extra_hosts {
            bundle::host_line(h).map_err(|e| runtime_error(&op, e))?;
        }
        if let Some((path, _)) = spec.tmpfs.iter().find(|(path, _)| !path.starts_with('/') || path.split('/').any(|c| c == "..")) {
            return Err(api_error(&op, format!("the tmpfs mount point {path:?} is not an absolute path")));
        }
        if let Some(name) = &spec.name {
            if self.find(name).is_some() {
                return Err(api_error(&op, format!("the container name {name:?} is already in use")));
            }
        }
        let image = self.image(&spec.image).await?;
        let config = &image.config;
        let ProcessLine { args, env, cwd } = spec.process_in(config);
        if args.is_empty() {
            return Err(runtime_error(&op, RunError::NoCommand { image: spec.image.clone() }));
        }
        if !cwd.starts_with('/') {
            return Err(api_error(&op, format!("the working directory {cwd:?} is not an absolute path")));
        }
        let user = spec.user.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| config.user.clone());
        let process = ProcessPlan { args, env, cwd, user };

        let id = random_id();
        let drivers = container::drivers_to_try(self.opts.rootfs_driver, *self.good_driver.lock().unwrap());
        let store = self.cancellable_store();
        let cancel = store.cancel.clone();
        let (state, cgroups, opts) = (self.state.clone(), self.cgroups.clone(), self.opts.clone());
        let new = NewContainer { drivers, id: id.clone(), spec: spec.clone(), image, process, network_mode, binds, security };
        // A failed or cancelled creation removes its own container (see make_container).
        let unpacking = self.opts.tasks.as_ref().map(|t| t.start(EngineTask::Unpack, &spec.image));
        let made = self
            .run_job(move || Self::make_container(&store, &state, &cgroups, &opts, new))
            .await?
            .map_err(|e| runtime_error(&op, e))?;
        if let Some(g) = unpacking {
            g.done();
        }
        *self.good_driver.lock().unwrap() = Some(made.driver);
        let c = Arc::new(made);
        if cancel.is_cancelled() {
            // remove_leftovers ran while this was being made: nothing may outlive it.
            let lock = c.lock.lock().unwrap().take();
            let _ = container::teardown(&self.state, &self.runtime, &id, lock).await;
            return Err(api_error(&op, "the engine removed its containers (an interruption) while this one was being made"));
        }
        info!("created container {} from {} ({} rootfs)", short_id(&id), spec.image, c.driver);
        self.containers.lock().unwrap().insert(id.clone(), c);
        if let Some(name) = &spec.name {
            self.names.lock().unwrap().insert(name.clone(), id.clone());
        }
        Ok(id)
    }

    async fn run_container(&self, id: &str, input: Option<ContainerInput>, output: &mut dyn OutputSink) -> Result<i64> {
        let (c, mut child) = self.start(id, input.is_some()).await?;
        let stdin = child.stdin.take();
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let pump = async {
            match (input, stdin) {
                (Some(input), Some(mut stdin)) => s2i_engine::input::pump_stdin(input, &mut stdin).await,
                _ => Ok(()),
            }
        };
        let relayed = s2i_engine::input::forward_output(stdout, stderr, output);
        let (pumped, relayed) = tokio::join!(
            async {
                let r = pump.await;
                if r.is_err() {
                    // A truncated input: the container must not carry on with half of it.
                    self.runtime.kill(&c.id, "KILL").await;
                }
                r
            },
            relayed
        );
        let status = child.wait().await;
        let code = self.exit_code(&c, status)?;
        pumped.map_err(EngineError::Input)?;
        relayed.map_err(|e| api_error("reading the container's output", e))?;
        Ok(code)
    }

    async fn run_with_stdout(&self, id: &str, input: Option<ContainerInput>, mut stderr: Box<dyn OutputSink>) -> Result<RunningOutput> {
        let (c, mut child) = self.start(id, input.is_some()).await?;
        let stdout = child.stdout.take().ok_or_else(|| api_error("starting the container", "no stdout pipe"))?;
        let err_pipe = child.stderr.take();
        // The input goes in while the caller reads the output: its own task, ended with the run.
        let pump = match (input, child.stdin.take()) {
            (Some(input), Some(mut stdin)) => Some(tokio::spawn(async move { s2i_engine::input::pump_stdin(input, &mut stdin).await })),
            _ => None,
        };
        let engine_runtime = self.runtime.clone();
        let pids_limit = self.opts.pids_limit;
        let exit = async move {
            let relayed = s2i_engine::input::forward_output(None::<tokio::process::ChildStdout>, err_pipe, &mut *stderr).await;
            drop(stderr);
            let status = child.wait().await;
            let code = exit_code_of(&engine_runtime, pids_limit, &c, status)?;
            if let Some(pump) = pump {
                pump.await.map_err(|e| api_error("feeding the container's input", e))?.map_err(EngineError::Input)?;
            }
            relayed.map_err(|e| api_error("reading the container's output", e))?;
            Ok(code)
        };
        Ok(RunningOutput { stdout: Box::new(stdout), exit: Box::pin(exit) })
    }

    async fn upload_archive(&self, id: &str, path: &str, tar: ContainerInput) -> Result<()> {
        let c = self.get(id)?;
        let op = format!("copying files to {path} in the container");
        let reader = tokio_util::io::SyncIoBridge::new(tar);
        let path = path.to_string();
        let cancel = self.cancel();
        self.run_job(move || -> Result<()> {
            let root = c.root().map_err(|e| runtime_error(&op, e))?;
            if root.open_in(Path::new(&path), rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY, rustix::fs::Mode::empty()).is_err() {
                return Err(EngineError::Api { op, message: format!("Could not find the file {path} in container {}", c.id), status: Some(404) });
            }
            let name = format!("the archive copied to {path}");
            let opts = image::Unpack { name: &name, whiteouts: image::Whiteouts::Plain, under: &path, lowers: &[], cancel: &cancel };
            image::unpack(&c.rootfs(), reader, &opts).map_err(|e| api_error(&op, error_chain(&e)))?;
            Ok(())
        })
        .await?
    }

    async fn commit_container(&self, id: &str, spec: &CommitSpec) -> Result<String> {
        let c = self.get(id)?;
        if c.state() == State::Running {
            return Err(runtime_error(
                "committing the container",
                RunError::BadState { id: c.id.clone(), state: "running", what: "stop it before committing".into() },
            ));
        }
        let created = match self.opts.source_date_epoch {
            Some(t) => Some(t),
            None => image::source_date_epoch()?,
        };
        let changes = CommitChanges::from_spec(spec, created);
        let tag = spec.full_tag();
        let store = self.cancellable_store();
        let snapshot = self.opts.tasks.as_ref().map(|t| t.start(EngineTask::Snapshot, short_id(&c.id)));
        let image = self.run_job(move || {
            let exclude = c.excluded_paths();
            let (upper, rootfs) = (c.dir.join("upper"), c.rootfs());
            let diff = match c.driver {
                RootfsDriver::Overlay | RootfsDriver::FuseOverlayfs => Diff::OverlayUpper { upper: &upper, exclude: &exclude },
                RootfsDriver::Copy => Diff::Rootfs { dir: &rootfs, exclude: &exclude },
            };
            store.commit(&c.image, diff, &changes, tag.as_deref())
        })
        .await??;
        if let Some(g) = snapshot {
            g.done();
        }
        Ok(image.id)
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let Some(c) = self.find(id) else { return Ok(()) };
        let lock = c.lock.lock().unwrap().take();
        let result = container::teardown(&self.state, &self.runtime, &c.id, lock).await;
        self.containers.lock().unwrap().remove(&c.id);
        self.names.lock().unwrap().retain(|_, v| *v != c.id);
        result.map_err(|e| runtime_error(&format!("removing container {}", c.id), e))
    }

    async fn remove_image(&self, name: &str) -> Result<()> {
        let store = self.cancellable_store();
        let n = name.to_string();
        self.run_job(move || store.remove(&n)).await??;
        Ok(())
    }

    async fn download_archive(&self, id: &str, path: &str) -> Result<Option<ByteStream>> {
        let c = self.get(id)?;
        let op = format!("copying {path} out of the container");
        let root = c.root().map_err(|e| runtime_error(&op, e))?;
        let p = PathBuf::from(path);
        if !archive::exists(&root, &p).map_err(|e| runtime_error(&op, e))? {
            return Ok(None);
        }
        // The walk waits while nobody reads.
        let (job, cancel) = (Job::start(&self.jobs), self.cancel());
        Ok(Some(s2i_engine::input::blocking_stream(move |w| {
            let (_job, _keep) = (job, c);
            archive::archive(&root, &p, w, &cancel).map_err(|e| error_chain(&e))
        })))
    }

    async fn build_image(&self, _context: ContainerInput, _spec: &ImageBuildSpec, _output: &mut dyn OutputSink) -> Result<String> {
        Err(EngineError::NotSupported {
            engine: EngineKind::Oci,
            what: "build FROM an ONBUILD builder or a Dockerfile: it has no image builder (use --engine docker for these)".into(),
        })
    }

    async fn published_port(&self, id: &str, port: u16) -> Result<Option<std::net::SocketAddr>> {
        let c = self.get(id)?;
        // Containers share the host's network (there is no bridge to publish from), or have none.
        Ok((c.state() == State::Running && matches!(c.network, Network::Host))
            .then(|| std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port))))
    }

    async fn remove_leftovers(&self) {
        // Cancels the blocking work of every call made so far (unpacking, copies, commits,
        // archives); each stops within an entry or a read and removes what it was making, a
        // container under creation included. Wait for that first: a copy into a container must
        // not run while the container is removed.
        self.sweeps.fetch_add(1, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + JOBS_STOP_WAIT;
        while self.jobs.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = self.jobs.load(Ordering::SeqCst);
        if left > 0 {
            warn!("{left} piece(s) of the engine's work did not stop within {} s of being cancelled", JOBS_STOP_WAIT.as_secs());
        }
        let ids: Vec<String> = self.containers.lock().unwrap().keys().cloned().collect();
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
    fn commit_tags_and_ids() {
        let spec = CommitSpec { repo: Some("127.0.0.1:5000/app".into()), tag: Some("v1".into()), ..Default::default() };
        assert_eq!(spec.full_tag().as_deref(), Some("127.0.0.1:5000/app:v1"));
        assert_eq!(CommitSpec::default().full_tag(), None);
        assert_eq!(random_id().len(), 64);
        assert_ne!(random_id(), random_id());
    }
}
