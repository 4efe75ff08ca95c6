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

/// `containers.conf` and `storage.conf` of the service, so that no system-wide setting (or
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
    fs::write(dir.join("storage.conf"), storage).expect("writing storage.conf");
}

/// The hard limit of a resource as `/proc/self/limits` names it (`Max open files`).
fn hard_limit(name: &str) -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let fields: Vec<&str> = line[name.len()..].split_whitespace().collect();
    fields.get(1)?.parse().ok()
}

/// The supervisor: starts the service, and when its stdin reaches EOF (the test process has
/// ended) stops it and removes everything it made. `$1` dir, `$2` storage driver, `$3` podman.
const SUPERVISOR_SCRIPT: &str = r#"
set -u
dir=$1 driver=$2 podman=$3
# fd 3: the test process's end of the pipe; it only ever reaches EOF.
exec 3<&0 </dev/null
flags="--root $dir/root --runroot $dir/runroot --tmpdir $dir/tmp --storage-driver $driver --cgroup-manager cgroupfs --events-backend file"
"$podman" $flags system service --time=0 "unix://$dir/podman.sock" 3<&- &
service=$!
# Clean up even when nobody reads our stderr any more.
trap '' PIPE
(while read -r _ <&3; do :; done; kill -TERM "$service" 2>/dev/null) &
watcher=$!
exec 3<&-
wait "$service"
status=$?
kill "$watcher" 2>/dev/null
# Containers still there (running ones with their conmon), images, volumes, the store itself.
"$podman" $flags system reset --force >/dev/null 2>&1 || echo "podman system reset failed in $dir" >&2
awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
  umount -l "$m" 2>/dev/null
done
rm -rf "$dir"
exit $status
"#;

fn launch(podman: &Path, dir: &Path, socket: &Path, driver: &'static str) -> Result<Child, String> {
    let mut supervisor = Command::new("sh")
        .arg("-c")
        .arg(SUPERVISOR_SCRIPT)
        .arg("s2i-podman-supervisor")
        .arg(dir)
        .arg(driver)
        .arg(podman)
        .env("CONTAINERS_CONF", dir.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
        .env("TMPDIR", dir.join("tmp"))
        // Podman's own client settings would make it talk to another service.
        .env_remove("CONTAINER_HOST")
        .env_remove("CONTAINER_CONNECTION")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Out of the terminal's process group: Ctrl-C ends the tests, and the supervisor cleans up.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let log = drain_log(supervisor.stderr.take().expect("piped stderr"));
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

/// Reads the service's log as long as it runs, keeping the last lines for error messages
/// (and echoing them with `S2I_TEST_VERBOSE`).
fn drain_log(stderr: impl Read + Send + 'static) -> Arc<Mutex<VecDeque<String>>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_limits_are_read() {
        assert!(hard_limit("Max open files").unwrap() >= 1024);
        assert_eq!(hard_limit("No such limit"), None);
    }
}
