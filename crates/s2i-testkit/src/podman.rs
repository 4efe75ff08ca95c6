//! A private, rootful Podman service for the tests that run against Podman.
//!
//! [`podman_service`] starts `podman system service` once per test process, on its own socket and
//! with its own storage, run root, temp dir, locks, events log and network configuration, all in
//! one temp directory: it shares nothing with a Podman the machine may already run, and nothing of
//! it outlives the test process. A supervisor shell owns the service: the test process holds the
//! supervisor's stdin open and never writes to it, so when the test process ends, however it ends
//! (a normal exit, a panic, Ctrl-C, SIGKILL), the supervisor reads EOF, stops the service, resets
//! its store (containers left running go with it), unmounts what is still mounted below the
//! directory and removes it. On a normal exit the test process also waits for that clean-up.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the service may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// nproc must fit under the machine's hard limit; Podman's default (the kernel maximum) does not.
const MAX_NPROC: u64 = 32768;

/// The Podman service of this test process (see the module documentation).
pub struct PodmanService {
    dir: PathBuf,
    socket: PathBuf,
    driver: &'static str,
}

/// The supervisor, kept here so that its stdin stays open until the process exits.
static SUPERVISOR: Mutex<Option<Child>> = Mutex::new(None);
/// The service, or why it could not start (tried once per process).
static SERVICE: OnceLock<Result<PodmanService, String>> = OnceLock::new();

/// The Podman service of this test process, started on first use. Panics, saying what is
/// missing and how to get it, when Podman is not installed or the service does not come up.
pub fn podman_service() -> &'static PodmanService {
    match SERVICE.get_or_init(PodmanService::start) {
        Ok(service) => service,
        Err(why) => panic!("{why}"),
    }
}

/// Whether the service is up (without starting it): when it is not, it holds nothing to clean.
pub(crate) fn podman_service_started() -> bool {
    matches!(SERVICE.get(), Some(Ok(_)))
}

impl PodmanService {
    /// `unix:///…/podman.sock`, for `DOCKER_HOST` or `-U`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The directory holding everything of this service (removed when the process ends).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The storage driver in use: `overlay`, or `vfs` where overlay mounts are refused.
    pub fn storage_driver(&self) -> &str {
        self.driver
    }

    fn start() -> Result<PodmanService, String> {
        let podman = find_podman()?;
        let mut failures = Vec::new();
        for driver in ["overlay", "vfs"] {
            let dir = service_dir();
            let socket = dir.join("podman.sock");
            write_config(&dir);
            match launch(&podman, &dir, &socket, driver) {
                Ok(supervisor) => {
                    *SUPERVISOR.lock().unwrap_or_else(|e| e.into_inner()) = Some(supervisor);
                    register_exit_cleanup();
                    return Ok(PodmanService { dir, socket, driver });
                }
                Err(why) => failures.push(format!("with the {driver} storage driver: {why}")),
            }
        }
        Err(format!(
            "the Podman service for the tests did not start:\n{}\n\
             The tests run `podman system service` as root with runc, netavark and conmon \
             (apt-get install podman netavark aardvark-dns catatonit runc).",
            failures.join("\n")
        ))
    }
}

fn find_podman() -> Result<PathBuf, String> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("podman"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "S2I_TEST_ENGINE=podman, and podman is not installed: \
             apt-get install podman netavark aardvark-dns catatonit (or run the tests against Docker)"
                .to_string()
        })
}

/// A fresh directory for one service. A unix socket path holds at most 107 bytes, so it goes
/// under `/tmp` when `TMPDIR` is long.
fn service_dir() -> PathBuf {
    let mut base = std::env::temp_dir();
    if base.as_os_str().len() > 60 {
        base = PathBuf::from("/tmp");
    }
    let dir = tempfile::Builder::new()
        .prefix("s2i-podman-")
        .tempdir_in(&base)
        .unwrap_or_else(|e| panic!("creating the Podman service's directory in {}: {e}", base.display()))
        .keep();
    for sub in ["root", "runroot", "tmp", "networks"] {
        fs::create_dir(dir.join(sub)).unwrap_or_else(|e| panic!("creating {}/{sub}: {e}", dir.display()));
    }
    dir
}

/// `containers.conf`, `storage.conf` and `registries.conf` of the service, so that no system-wide setting (or
/// state: locks, networks, image copies in /var/tmp) is shared with another Podman.
fn write_config(dir: &Path) {
    let d = dir.display();
    let nofile = hard_limit("Max open files").unwrap_or(1024);
    let nproc = hard_limit("Max processes").unwrap_or(MAX_NPROC).min(MAX_NPROC);
    let conf = format!(
        "# Written by the s2i test kit for one test process.\n\
         [containers]\n\
         # Podman's defaults ask runc for more than this machine's hard limits.\n\
         default_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
         [engine]\n\
         cgroup_manager = \"cgroupfs\"\n\
         events_logger = \"file\"\n\
         events_logfile_path = \"{d}/events.log\"\n\
         image_copy_tmp_dir = \"{d}/tmp\"\n\
         lock_type = \"file\"\n\
         runtime = \"runc\"\n\
         [network]\n\
         network_backend = \"netavark\"\n\
         network_config_dir = \"{d}/networks\"\n"
    );
    fs::write(dir.join("containers.conf"), conf).expect("writing containers.conf");
    let storage = format!("[storage]\ndriver = \"overlay\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/runroot\"\n");
    fs::write(dir.join("storage.conf"), storage).expect("writing storage.conf");    // The test registries (crate::TestRegistry) serve TLS on 127.0.0.1 with a throwaway
    // certificate. Docker skips verifying 127.0.0.0/8 by default; Podman wants to be told. A
    // prefix without a port matches every port of the host (containers/image's prefix rule).
    let registries = "# Written by the s2i test kit: loopback registries are the tests' own.\n\
                      [[registry]]\n\
                      prefix = \"127.0.0.1\"\n\
                      location = \"127.0.0.1\"\n\
                      insecure = true\n";
    fs::write(dir.join("registries.conf"), registries).expect("writing registries.conf");
}

/// The hard limit of a resource as `/proc/self/limits` names it (`Max open files`).
fn hard_limit(name: &str) -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let fields: Vec<&str> = line[name.len()..].split_whitespace().collect();
    fields.get(1)?.parse().ok()
}

/// What both supervisors do: `supervise PID` waits for the service, and stops it when fd 3 (the
/// test process's end of a pipe, which only ever reaches EOF) closes, leaving its exit status in
/// `$status`; `remove_dir DIR` unmounts what is left below DIR, deepest first, and removes it.
const SUPERVISION: &str = r#"
supervise() {
  # Clean up even when nobody reads our stderr any more.
  trap '' PIPE
  (while read -r _ <&3; do :; done; kill -TERM "$1" 2>/dev/null) &
  watcher=$!
  exec 3<&-
  wait "$1"
  status=$?
  kill "$watcher" 2>/dev/null
}
remove_dir() {
  awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null
  done
  rm -rf "$1"
}
"#;

/// The supervisor: starts the service, and when its stdin reaches EOF (the test process has
/// ended) stops it and removes everything it made. `$1` dir, `$2` storage driver, `$3` podman.
const SUPERVISOR_SCRIPT: &str = r#"
set -u
dir=$1 driver=$2 podman=$3
# fd 3: the test process's end of the pipe; it only ever reaches EOF.
exec 3<&0 </dev/null
flags="--root $dir/root --runroot $dir/runroot --tmpdir $dir/tmp --storage-driver $driver --cgroup-manager cgroupfs --events-backend file"
"$podman" $flags system service --time=0 "unix://$dir/podman.sock" 3<&- &
supervise $!
# Containers still there (running ones with their conmon), images, volumes, the store itself.
"$podman" $flags system reset --force >/dev/null 2>&1 || echo "podman system reset failed in $dir" >&2
remove_dir "$dir"
exit $status
"#;

fn launch(podman: &Path, dir: &Path, socket: &Path, driver: &'static str) -> Result<Child, String> {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("{SUPERVISION}{SUPERVISOR_SCRIPT}"))
        .arg("s2i-podman-supervisor")
        .arg(dir)
        .arg(driver)
        .arg(podman)
        .env("CONTAINERS_CONF", dir.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
        .env("CONTAINERS_REGISTRIES_CONF", dir.join("registries.conf"))
        .env("TMPDIR", dir.join("tmp"))
        // Podman's own client settings would make it talk to another service.
        .env_remove("CONTAINER_HOST")
        .env_remove("CONTAINER_CONNECTION");
    let (mut supervisor, log) = spawn_supervisor(command)?;
    let started = Instant::now();
    loop {
        if ping(socket).is_ok() {
            return Ok(supervisor);
        }
        if let Ok(Some(status)) = supervisor.try_wait() {
            // The supervisor has cleaned up already; give the log reader a moment to finish.
            std::thread::sleep(Duration::from_millis(100));
            return Err(format!("the service exited ({status}):\n{}", log.lock().map(|l| tail(&l)).unwrap_or_default()));
        }
        if started.elapsed() > START_TIMEOUT {
            drop(supervisor.stdin.take());
            let _ = supervisor.wait();
            return Err(format!(
                "no answer on {} after {}s:\n{}",
                socket.display(),
                START_TIMEOUT.as_secs(),
                log.lock().map(|l| tail(&l)).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts a supervisor script with a pipe on its stdin (its lifeline), out of the terminal's
/// process group (Ctrl-C ends the tests, and the supervisor cleans up), its log drained.
fn spawn_supervisor(mut command: Command) -> Result<(Child, ServiceLog), String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let log = drain_log(child.stderr.take().expect("piped stderr"));
    Ok((child, log))
}

/// The last lines a service logged.
type ServiceLog = Arc<Mutex<VecDeque<String>>>;

/// Reads the service's log as long as it runs, keeping the last lines for error messages
/// (and echoing them with `S2I_TEST_VERBOSE`).
fn drain_log(stderr: impl Read + Send + 'static) -> ServiceLog {
    let lines = Arc::new(Mutex::new(VecDeque::new()));
    let keep = lines.clone();
    let verbose = std::env::var_os("S2I_TEST_VERBOSE").is_some();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if verbose {
                eprintln!("podman service: {line}");
            }
            let mut l = keep.lock().unwrap_or_else(|e| e.into_inner());
            if l.len() == 40 {
                l.pop_front();
            }
            l.push_back(line);
        }
    });
    lines
}

fn tail(lines: &VecDeque<String>) -> String {
    lines.iter().map(|l| format!("  {l}\n")).collect()
}

/// `GET /_ping` on the socket.
fn ping(socket: &Path) -> Result<(), String> {
    let mut s = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(answer.lines().next().unwrap_or_default().to_string())
    }
}

/// On a normal exit, close the supervisor's stdin and wait for its clean-up, so that the
/// service and its files are gone before the test process is.
fn register_exit_cleanup() {
    extern "C" fn stop_supervisor() {
        let taken = SUPERVISOR.lock().map(|mut s| s.take()).unwrap_or(None);
        if let Some(mut child) = taken {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
    extern "C" {
        fn atexit(f: extern "C" fn()) -> std::os::raw::c_int;
    }
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // SAFETY: registers a plain function with no arguments; it only touches our own statics.
        unsafe { atexit(stop_supervisor) };
    });
}

/// A rootless Podman for one test: a throwaway user (`s2i-rl-<hex>`, with subordinate ids and a
/// home and `XDG_RUNTIME_DIR` in a temp directory) running `podman system service` on its own
/// socket, with runc and cgroupfs (crun refuses cgroup v1 hosts with a unified hierarchy mounted)
/// and the storage driver of [`PodmanService`]. A supervisor owns it like the rootful service's:
/// when this value is dropped, or the test process ends however it ends, the service and every
/// process of the user are stopped, its store is reset, and the user, its subordinate ids and
/// its files are removed. Needs root (to make the user) and `newuidmap` (`apt-get install uidmap`).
pub struct RootlessPodman {
    dir: PathBuf,
    user: String,
    subids: (u64, u64),
    supervisor: Option<Child>,
    /// The user exists and no supervisor will remove it: dropping this value does.
    user_made: bool,
}

/// Subordinate ids given to a throwaway user: as many as a container image may use.
const SUBID_COUNT: u64 = 65536;

impl RootlessPodman {
    /// Makes the user and starts its service, with the overlay storage driver (native rootless
    /// overlay) or, where that is refused, vfs. Panics, saying what is missing, when it cannot.
    pub fn start() -> RootlessPodman {
        let podman = find_podman().unwrap_or_else(|e| panic!("{e}"));
        let root = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        assert!(matches!(root, Ok(true)), "a rootless Podman test needs root to make its throwaway user");
        for (tool, package) in [("newuidmap", "uidmap"), ("setpriv", "util-linux"), ("useradd", "passwd")] {
            let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .chain(["/usr/sbin".into(), "/sbin".into()])
                .any(|d| d.join(tool).is_file());
            assert!(found, "{tool} is missing: apt-get install {package}");
        }
        let mut failures = Vec::new();
        for driver in ["overlay", "vfs"] {
            match Self::start_with(&podman, driver) {
                Ok(rootless) => return rootless,
                Err(why) => failures.push(format!("with the {driver} storage driver: {why}")),
            }
        }
        panic!("the rootless Podman service did not start:\n{}", failures.join("\n"));
    }

    fn start_with(podman: &Path, driver: &str) -> Result<RootlessPodman, String> {
        let user = format!("s2i-rl-{}", crate::random_hex(8));
        let dir = tempfile::Builder::new()
            .prefix("s2i-rootless-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("a temp dir for the rootless user: {e}"))?
            .keep();
        // From here on, dropping `me` removes the user and the directory.
        let mut me = RootlessPodman { dir, user, subids: free_subid_range(), supervisor: None, user_made: false };
        let run_as_root = |args: &[&str]| -> Result<(), String> {
            let out = Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output().map_err(|e| format!("cannot run {}: {e}", args[0]))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("{args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
            }
        };
        let d = me.dir.display().to_string();
        let home = format!("{d}/home");
        run_as_root(&["useradd", "--no-create-home", "--home-dir", &home, "--shell", "/bin/sh", "--user-group", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", &me.user])?;
        me.user_made = true;
        run_as_root(&["usermod", "--add-subuids", &me.subid_range(), "--add-subgids", &me.subid_range(), &me.user])?;
        let io = |e: std::io::Error| format!("preparing {d}: {e}");
        fs::set_permissions(&me.dir, fs::Permissions::from_mode(0o755)).map_err(io)?;
        for sub in ["home", "run", "run/podman"] {
            fs::create_dir(me.dir.join(sub)).map_err(io)?;
        }
        let nofile = hard_limit("Max open files").unwrap_or(1024);
        let nproc = hard_limit("Max processes").unwrap_or(MAX_NPROC).min(MAX_NPROC);
        fs::write(
            me.dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nevents_logfile_path = \"{d}/run/events.log\"\nruntime = \"runc\"\n"
            ),
        )
        .map_err(io)?;
        fs::write(me.dir.join("storage.conf"), format!("[storage]\ndriver = \"{driver}\"\ngraphroot = \"{d}/home/storage\"\nrunroot = \"{d}/run/storage\"\n"))
            .map_err(io)?;
        run_as_root(&["chown", "-R", &format!("{0}:{0}", me.user), &home, &format!("{d}/run")])?;
        fs::set_permissions(me.dir.join("run"), fs::Permissions::from_mode(0o700)).map_err(io)?;

        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{SUPERVISION}{ROOTLESS_SUPERVISOR_SCRIPT}"))
            .arg("s2i-rootless-supervisor")
            .arg(&me.dir)
            .arg(&me.user)
            .arg(podman)
            .arg(me.subid_range());
        let (supervisor, log) = spawn_supervisor(command)?;
        // The supervisor removes the user and the directory from now on.
        me.user_made = false;
        me.supervisor = Some(supervisor);
        let socket = me.socket();
        let started = Instant::now();
        while ping(&socket).is_err() {
            let exited = me.supervisor.as_mut().and_then(|s| s.try_wait().ok().flatten());
            if let Some(status) = exited {
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!("the service of {} exited ({status}):\n{}", me.user, log.lock().map(|l| tail(&l)).unwrap_or_default()));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!("the service of {} did not answer within {}s", me.user, START_TIMEOUT.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(me)
    }

    fn subid_range(&self) -> String {
        format!("{}-{}", self.subids.0, self.subids.0 + self.subids.1 - 1)
    }

    /// `unix:///…/podman.sock`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Where Podman's tools (and s2i) look for a user's service: `$XDG_RUNTIME_DIR/podman/podman.sock`.
    fn socket(&self) -> PathBuf {
        self.dir.join("run/podman/podman.sock")
    }

    /// The throwaway user's name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The first subordinate id and how many the user has.
    pub fn subids(&self) -> (u64, u64) {
        self.subids
    }

    /// The user's home, which it owns: sources and temp files of its builds go there.
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// `program` run as the user, with its home, `XDG_RUNTIME_DIR`, Podman configuration and
    /// `DOCKER_HOST` (this service), and `TMPDIR` in its home.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let d = &self.dir;
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", &self.user, "--regid", &self.user, "--init-groups", "--"])
            .arg(program)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", d.join("home"))
            .env("USER", &self.user)
            .env("XDG_RUNTIME_DIR", d.join("run"))
            .env("TMPDIR", d.join("home"))
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_BUILDKIT", "0")
            .current_dir(d.join("home"));
        cmd
    }

    /// Loads an image that Docker has (the test kit's image factory) into the user's store.
    pub fn load(&self, image: &str) {
        let mut save = crate::factory::factory_command()
            .args(["save", image])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("running docker save");
        let archive = save.stdout.take().expect("piped stdout");
        let load = Command::new("docker").args(["load", "-q"]).env("DOCKER_HOST", self.host()).stdin(archive).output().expect("running docker load");
        let saved = save.wait().expect("docker save ends");
        assert!(
            saved.success() && load.status.success(),
            "loading {image} into the rootless Podman of {} failed: {}",
            self.user,
            String::from_utf8_lossy(&load.stderr)
        );
    }
}

impl Drop for RootlessPodman {
    fn drop(&mut self) {
        if let Some(mut child) = self.supervisor.take() {
            drop(child.stdin.take());
            let _ = child.wait();
            return;
        }
        // Setting up failed before the supervisor ran.
        if self.user_made {
            let range = self.subid_range();
            let _ = Command::new("usermod").args(["--del-subuids", &range, "--del-subgids", &range, &self.user]).output();
            let _ = Command::new("userdel").arg(&self.user).output();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The first free range of [`SUBID_COUNT`] ids after every range in `/etc/subuid` and
/// `/etc/subgid` (and at least 400000).
fn free_subid_range() -> (u64, u64) {
    let mut start = 400_000u64;
    for file in ["/etc/subuid", "/etc/subgid"] {
        for line in fs::read_to_string(file).unwrap_or_default().lines() {
            let mut f = line.split(':').skip(1).map(|v| v.trim().parse::<u64>().unwrap_or(0));
            if let (Some(first), Some(count)) = (f.next(), f.next()) {
                start = start.max(first + count);
            }
        }
    }
    (start, SUBID_COUNT)
}

/// The rootless supervisor: `$1` dir, `$2` user, `$3` podman, `$4` subordinate id range.
const ROOTLESS_SUPERVISOR_SCRIPT: &str = r#"
set -u
dir=$1 user=$2 podman=$3 range=$4
exec 3<&0 </dev/null
as_user() {
  setpriv --reuid "$user" --regid "$user" --init-groups -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin     HOME="$dir/home" USER="$user" XDG_RUNTIME_DIR="$dir/run"     CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf" "$@"
}
# Every process of the throwaway user, by pid (conmon and Podman's pause process included).
stop_user() {
  for signal in TERM KILL; do
    pids=$(ps -o pid= -u "$user" 2>/dev/null)
    [ -n "$pids" ] || return 0
    kill -s "$signal" $pids 2>/dev/null
    sleep 1
  done
}
(cd "$dir/home" && as_user "$podman" system service --time=0 "unix://$dir/run/podman/podman.sock") 3<&- &
supervise $!
stop_user
(cd "$dir/home" && as_user "$podman" system reset --force) >/dev/null 2>&1 || echo "podman system reset failed for $user" >&2
stop_user
usermod --del-subuids "$range" --del-subgids "$range" "$user" >/dev/null 2>&1
userdel "$user" >/dev/null 2>&1 || echo "userdel $user failed" >&2
remove_dir "$dir"
exit $status
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_limits_are_read() {
        assert!(hard_limit("Max open files").unwrap() >= 1024);
        assert_eq!(hard_limit("No such limit"), None);
    }
}
