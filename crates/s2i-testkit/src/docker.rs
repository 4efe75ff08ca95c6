//! The `docker` CLI wrappers, the switch between the engines under test, and the locally made
//! base and builder images.
//!
//! Every `docker` command of the test kit, and every s2i it runs, goes through
//! [`point_at_engine`]: `S2I_TEST_ENGINE` (`docker`, the default, or `podman`) says which engine
//! the tests drive. The test images are always made by Docker (the image factory: imports and
//! classic builds, cached across runs); when the tests drive Podman, each image is then loaded
//! into the test process's own Podman service ([`crate::podman_service`]) the first time it is
//! asked for, so both engines run bit-for-bit the same images.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

/// Name of the base image made by [`base_image`].
pub const BASE_IMAGE: &str = "s2i-test/busybox:latest";

/// The import message (the image's `Comment`, which, unlike a label, images
/// built from it do not inherit). Bump the version when the base image's
/// layout changes, so that an image left in the daemon by an older testkit is
/// replaced rather than reused.
const BASE_COMMENT: &str = "s2i-testkit base image v1";
const BUSYBOX: &str = "/bin/busybox";
const PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The engines the tests can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestEngine {
    /// The Docker daemon at `DOCKER_HOST` (default `unix:///var/run/docker.sock`).
    Docker,
    /// A private Podman service started by the test kit ([`crate::podman_service`]).
    Podman,
}

/// The engine under test, from `S2I_TEST_ENGINE` (`docker` when unset). Panics on another value.
pub fn test_engine() -> TestEngine {
    static ENGINE: OnceLock<TestEngine> = OnceLock::new();
    *ENGINE.get_or_init(|| match std::env::var("S2I_TEST_ENGINE").unwrap_or_default().as_str() {
        "" | "docker" => TestEngine::Docker,
        "podman" => TestEngine::Podman,
        other => panic!("S2I_TEST_ENGINE={other:?}: use docker or podman"),
    })
}

/// The Docker daemon's endpoint: `DOCKER_HOST`, else the default socket.
fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

/// The endpoint of the engine under test, in the form `DOCKER_HOST` and `s2i -U` take.
pub fn engine_host() -> String {
    match test_engine() {
        TestEngine::Docker => docker_host(),
        TestEngine::Podman => crate::podman_service().host(),
    }
}

/// Points `cmd` (the `docker` CLI, s2i, a script calling either) at the engine under test:
/// `DOCKER_HOST` names it, Podman's own `CONTAINER_HOST` cannot override it, and `docker build`
/// uses the classic builder, as s2i does (Podman has no BuildKit).
pub fn point_at_engine(cmd: &mut Command) -> &mut Command {
    cmd.env("DOCKER_HOST", engine_host())
        .env("DOCKER_BUILDKIT", "0")
        .env_remove("CONTAINER_HOST")
        .env_remove("DOCKER_CONTEXT")
}

/// Whether the engine under test can be asked without starting anything: Docker always, the
/// Podman service once it runs (before that it holds nothing a clean-up could look for).
pub(crate) fn engine_started() -> bool {
    match test_engine() {
        TestEngine::Docker => true,
        TestEngine::Podman => crate::podman::podman_service_started(),
    }
}

/// A `docker` CLI command aimed at the engine under test.
pub fn engine_command() -> Command {
    let mut cmd = Command::new("docker");
    point_at_engine(&mut cmd);
    cmd
}

/// A `docker` CLI command aimed at the Docker daemon, which makes the test images.
pub(crate) fn factory_command() -> Command {
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_HOST", docker_host())
        .env("DOCKER_BUILDKIT", "0")
        .env_remove("DOCKER_CONTEXT");
    cmd
}

fn run_cli(mut cmd: Command, args: &[&str]) -> Output {
    cmd.args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the docker CLI ({e}); is docker installed?"))
}

fn docker_cmd(args: &[&str]) -> Output {
    let _turn = matches!(args.first(), Some(&("tag" | "rmi" | "load"))).then(name_change_turn);
    run_cli(engine_command(), args)
}

/// Podman 4 renames an image by a read-modify-write of its list of names (libimage's Tag and
/// Untag): two tests tagging or untagging the same fixture at once can lose a name. The test
/// kit's calls that change names take turns there.
fn name_change_turn() -> Option<std::sync::MutexGuard<'static, ()>> {
    static NAMES: Mutex<()> = Mutex::new(());
    (test_engine() == TestEngine::Podman).then(|| NAMES.lock().unwrap_or_else(|e| e.into_inner()))
}

fn factory_cmd(args: &[&str]) -> Output {
    run_cli(factory_command(), args)
}

/// Like [`docker_output`], against the Docker daemon that makes the test images.
fn factory_output(args: &[&str]) -> String {
    let out = factory_cmd(args);
    if !out.status.success() {
        panic!(
            "docker {:?} (image factory at {}) failed ({}):\n{}",
            args,
            docker_host(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

fn factory_image_id(image: &str) -> Option<String> {
    let out = factory_cmd(&["image", "inspect", "--format", "{{.Id}}", image]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Makes `image`, which the Docker daemon has, available to the engine under test: nothing to do
/// for Docker; for Podman, `docker save` is piped into the service's image load, once per image
/// and test process. Panics with both sides' errors if the transfer fails.
fn provide(image: &str) {
    if test_engine() == TestEngine::Docker {
        return;
    }
    static PROVIDED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut provided = PROVIDED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if provided.contains(image) {
        return;
    }
    if !image_exists(image) {
        let mut save = factory_command()
            .args(["save", image])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run docker save: {e}"));
        let archive = save.stdout.take().expect("piped stdout");
        let _turn = name_change_turn();
        let load = engine_command()
            .args(["load", "-q"])
            .stdin(archive)
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker load: {e}"));
        let saved = save.wait_with_output().expect("docker save finishes");
        if !saved.status.success() || !load.status.success() {
            panic!(
                "loading {image} into {} failed:\n  docker save: {} {}\n  docker load: {} {}",
                engine_host(),
                saved.status,
                String::from_utf8_lossy(&saved.stderr).trim(),
                load.status,
                String::from_utf8_lossy(&load.stderr).trim()
            );
        }
        assert!(image_exists(image), "{image} is missing in {} after its load", engine_host());
    }
    provided.insert(image.to_string());
}

/// Runs `docker ARGS…` and returns its stdout with trailing whitespace
/// trimmed. Panics with docker's stderr if it exits non-zero.
pub fn docker_output(args: &[&str]) -> String {
    let out = docker_cmd(args);
    if !out.status.success() {
        panic!(
            "docker {:?} failed ({}):\n{}",
            args,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// Runs `docker run --rm IMAGE CMD…` and returns (exit code, stdout, stderr),
/// untrimmed. The exit code is the command's, or docker's own (125-127) when
/// the container could not be run; -1 if killed by a signal.
pub fn docker_run(image: &str, cmd: &[&str]) -> (i32, String, String) {
    docker_run_with(&[], image, cmd)
}

/// [`docker_run`] with more `docker run` options (`-e`, `-v`, `--user`…) before the image.
pub fn docker_run_with(options: &[&str], image: &str, cmd: &[&str]) -> (i32, String, String) {
    // Podman 4's compat API answers the wait for removal of `docker run --rm` with status 0,
    // whatever the command's exit code: there the container is named, and removed afterwards.
    let name = format!("s2i-test-run-{}", crate::random_hex(12));
    let mut args = match test_engine() {
        TestEngine::Docker => vec!["run", "--rm"],
        TestEngine::Podman => vec!["run", "--name", &name],
    };
    args.extend_from_slice(options);
    args.push(image);
    args.extend_from_slice(cmd);
    let out = docker_cmd(&args);
    if test_engine() == TestEngine::Podman {
        let _ = docker_cmd(&["rm", "-f", &name]);
    }
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The first element of `docker image inspect IMAGE` as JSON (so
/// `["Config"]["Labels"]`, `["Config"]["User"]`, `["Id"]`…). Panics if the
/// image does not exist.
pub fn image_inspect(image: &str) -> serde_json::Value {
    let text = docker_output(&["image", "inspect", image]);
    let mut v: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("docker image inspect {image}: bad JSON ({e}): {text}"));
    match v.get_mut(0) {
        Some(first) => first.take(),
        None => panic!("docker image inspect {image}: empty answer"),
    }
}

/// Whether the daemon has an image by this name or id.
pub fn image_exists(image: &str) -> bool {
    docker_cmd(&["image", "inspect", "--format", "{{.Id}}", image])
        .status
        .success()
}

/// A daemon-wide lock (an `flock` on a fixed file in /tmp) held while images
/// are checked and made, so that test processes running at the same time do
/// not import or build the same image twice.
struct DaemonLock(#[allow(dead_code)] File);

fn daemon_lock() -> DaemonLock {
    use std::os::raw::c_int;
    use std::os::unix::io::AsRawFd;
    extern "C" {
        fn flock(fd: c_int, operation: c_int) -> c_int;
    }
    const LOCK_EX: c_int = 2;
    let path = "/tmp/s2i-testkit-images.lock";
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening lock file {path}: {e}"));
    let _ = file.set_permissions(fs::Permissions::from_mode(0o666));
    loop {
        // SAFETY: flock on a file descriptor we own; it is released when the
        // file is closed (when DaemonLock is dropped).
        if unsafe { flock(file.as_raw_fd(), LOCK_EX) } == 0 {
            return DaemonLock(file);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            panic!("locking {path}: {err}");
        }
    }
}

/// Ensures the image `s2i-test/busybox:latest` exists and returns its name.
///
/// It is imported once from a root filesystem holding the host's static
/// busybox (`/bin/busybox`, from Debian's `busybox-static`) with a symlink per
/// applet, `/tmp` (1777), `/etc/passwd` and `/etc/group` with `root` (0) and
/// `default` (1001, group 0, home `/home/default`), and `/home/default`,
/// `/opt/app-root/src` owned by 1001:0. `PATH` is set, `CMD` is `/bin/sh`,
/// there are no labels. An image of that name already in the daemon (from an
/// earlier run) is reused. Panics if busybox-static is not installed.
///
/// Beware: Debian's static busybox runs its applets directly from `sh` (and
/// `env`), without looking at `PATH`: deleting `/bin/tar` or putting a fake
/// `tar` first in `PATH` changes nothing for `sh -c 'tar …'`. Use
/// [`no_tar_image`] for an image without tar, and full paths for fakes.
pub fn base_image() -> String {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| ensure_imported(BASE_IMAGE, BASE_COMMENT, false))
        .clone()
}

/// Name of the image made by [`no_tar_image`].
pub const NO_TAR_IMAGE: &str = "s2i-test/busybox-no-tar:latest";
const NO_TAR_COMMENT: &str = "s2i-testkit base image without tar v1";

/// Ensures `s2i-test/busybox-no-tar:latest` exists and returns its name: the
/// base image's layout, but no `/bin/tar` and a busybox whose `tar` applet is
/// renamed (`tas`), so that `sh -c 'tar …'` fails with status 127 (`tar:
/// applet not found` / `sh: tar: not found`). For testing images without tar.
pub fn no_tar_image() -> String {
    static NO_TAR: OnceLock<String> = OnceLock::new();
    NO_TAR
        .get_or_init(|| ensure_imported(NO_TAR_IMAGE, NO_TAR_COMMENT, true))
        .clone()
}

/// Imports `image` unless the Docker daemon already has it with this `comment`, and makes it
/// available to the engine under test.
fn ensure_imported(image: &str, comment: &str, without_tar: bool) -> String {
    let _lock = daemon_lock();
    let current = factory_image_id(image).is_some()
        && factory_output(&["image", "inspect", "--format", "{{.Comment}}", image]) == comment;
    if !current {
        import_base(image, comment, without_tar);
    }
    provide(image);
    image.to_string()
}

fn import_base(image: &str, comment: &str, without_tar: bool) {
    let mut busybox = fs::read(BUSYBOX).unwrap_or_else(|e| {
        panic!("{BUSYBOX} not readable ({e}): the test images need a static busybox; run `apt-get install busybox-static`")
    });
    if elf_is_dynamic(&busybox) {
        panic!("{BUSYBOX} is dynamically linked (Debian's `busybox` package?): run `apt-get install busybox-static`");
    }
    let list = Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .unwrap_or_else(|e| {
            panic!("running {BUSYBOX} --list-full: {e}; run `apt-get install busybox-static`")
        });
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    // `bin/busybox` is the binary itself; `linuxrc` (at /) is only for initrds.
    let applets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| l.contains('/') && *l != "bin/busybox")
        .filter(|l| !(without_tar && *l == "bin/tar"))
        .collect();
    assert!(
        applets.len() > 100,
        "{BUSYBOX} --list-full listed only {} applets",
        applets.len()
    );
    if without_tar {
        rename_tar_applet(&mut busybox);
    }

    let mut tarball = tempfile::NamedTempFile::new().expect("temp file for the base rootfs");
    write_base_tar(tarball.as_file_mut(), &busybox, &applets)
        .unwrap_or_else(|e| panic!("writing the base rootfs tar: {e}"));
    let old_id = factory_image_id(image);
    let path = tarball
        .path()
        .to_str()
        .expect("utf-8 temp path")
        .to_string();
    let env_change = format!("ENV PATH={PATH_ENV}");
    factory_output(&[
        "import",
        "--change",
        &env_change,
        "--change",
        "CMD [\"/bin/sh\"]",
        "--message",
        comment,
        &path,
        image,
    ]);
    if let Some(old) = old_id {
        // An outdated image from an older testkit: drop it unless images use it.
        let _ = factory_cmd(&["rmi", &old]);
    }
}

/// Renames the `tar` applet to `tas` in busybox's sorted, NUL-separated table
/// of applet names (`…\0tail\0tar\0taskset\0…`; `tas` keeps it sorted for the
/// binary search), so that no `tar` command exists at all.
fn rename_tar_applet(busybox: &mut [u8]) {
    let needle = b"\0tail\0tar\0taskset\0";
    let at = busybox
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("busybox's applet table does not have tail, tar, taskset in a row");
    busybox[at + b"\0tail\0ta".len()] = b's';
}

/// Whether an ELF file has a PT_INTERP program header (needs a dynamic loader).
fn elf_is_dynamic(elf: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    // Only 64-bit little-endian ELF is inspected; anything else is assumed fine.
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= elf.len() && u32_at(o) == 3 // PT_INTERP
    })
}

fn write_base_tar(out: &mut File, busybox: &[u8], applets: &[&str]) -> std::io::Result<()> {
    // Fixed mtime: the same busybox gives the same layer digest on every import.
    const MTIME: u64 = 1_600_000_000;
    let mut b = tar::Builder::new(out);
    let mut dirs_done: Vec<String> = Vec::new();
    let mut dir = |b: &mut tar::Builder<&mut File>, path: &str, mode: u32, uid: u64| {
        dirs_done.push(path.to_string());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(0);
        b.append_data(&mut h, format!("{path}/"), std::io::empty())
    };
    for d in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "usr/local",
        "usr/local/bin",
        "etc",
        "dev",
        "proc",
        "sys",
        "var",
        "home",
        "opt",
    ] {
        dir(&mut b, d, 0o755, 0)?;
    }
    dir(&mut b, "tmp", 0o1777, 0)?;
    dir(&mut b, "var/tmp", 0o1777, 0)?;
    dir(&mut b, "root", 0o700, 0)?;
    dir(&mut b, "home/default", 0o775, 1001)?;
    dir(&mut b, "opt/app-root", 0o775, 1001)?;
    dir(&mut b, "opt/app-root/src", 0o775, 1001)?;

    let file = |b: &mut tar::Builder<&mut File>, path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data)
    };
    file(&mut b, "bin/busybox", 0o755, busybox)?;
    file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n\
          default:x:1001:0::/home/default:/bin/sh\n\
          nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    file(&mut b, "etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;

    for applet in applets {
        if let Some((parent, _)) = applet.rsplit_once('/') {
            assert!(
                dirs_done.iter().any(|d| d == parent),
                "busybox applet {applet} is in an unexpected directory"
            );
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(0);
        b.append_link(&mut h, applet, BUSYBOX)?;
    }
    b.into_inner()?.flush()
}

/// Builds (or reuses) a builder image from `fixture_dir`, a directory holding a
/// `Dockerfile` that starts `FROM` one of the test kit's bases
/// ([`BASE_IMAGE`] or [`NO_TAR_IMAGE`], made first when missing) and the files it COPYs,
/// and returns its tag: `s2i-test/<dir name>:<12 hex>`, the hex being a hash of
/// every file's path, mode and content (and of the base image's id). An image
/// with that tag already in the daemon is reused, so an unchanged fixture is
/// built once per daemon, not once per run. Panics with docker's stderr if the
/// build fails.
pub fn builder_image(fixture_dir: &Path) -> String {
    let dockerfile = fixture_dir.join("Dockerfile");
    let text = fs::read_to_string(&dockerfile)
        .unwrap_or_else(|e| panic!("builder fixture {}: {e}", dockerfile.display()));
    let base = fixture_base(&text)
        .unwrap_or_else(|why| panic!("builder fixture {}: {why}", dockerfile.display()));
    build_cached(fixture_dir, &base, None)
}

/// The test-kit base image a fixture's Dockerfile is `FROM`, made here if the
/// daemon lacks it: a fixture never relies on an image that an earlier run or
/// another test happened to leave behind.
fn fixture_base(dockerfile: &str) -> Result<String, String> {
    let froms: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let first = words.next()?;
            first.eq_ignore_ascii_case("FROM").then(|| words.next()).flatten()
        })
        .collect();
    let [from] = froms.as_slice() else {
        return Err(format!("expected exactly one FROM line, found {}", froms.len()));
    };
    let name = from.strip_suffix(":latest").unwrap_or(from);
    type MakeImage = fn() -> String;
    let bases: [(&str, MakeImage); 2] = [
        (BASE_IMAGE, base_image),
        (NO_TAR_IMAGE, no_tar_image),
    ];
    bases
        .iter()
        .find(|(image, _)| image.strip_suffix(":latest") == Some(name))
        .map(|(_, make)| make())
        .ok_or_else(|| {
            format!(
                "FROM {from} is not an image the test kit makes ({}); no registry can be reached",
                bases.map(|(i, _)| i).join(", ")
            )
        })
}

/// Name of the image made by [`python_base_image`].
pub const PYTHON_BASE_IMAGE: &str = "s2i-python-base:bookworm";

/// Ensures a Debian base image with python3, venv and pip exists and returns
/// its name: `$S2I_PYTHON_BASE_IMAGE` when set (an image the daemon already
/// has, such as `python:3.11-slim`), else [`PYTHON_BASE_IMAGE`], made by
/// `builders/python/make-base.sh` (debootstrap and `docker import`; a minute
/// or two the first time, nothing when the image exists, a few seconds from
/// its cached tarball). Runs the script once per process, under the
/// daemon-wide image lock. Panics with the script's output if it fails.
pub fn python_base_image() -> String {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        if let Some(image) = std::env::var("S2I_PYTHON_BASE_IMAGE")
            .ok()
            .filter(|s| !s.is_empty())
        {
            assert!(
                factory_image_id(&image).is_some(),
                "S2I_PYTHON_BASE_IMAGE={image}: no such image in the Docker daemon"
            );
            provide(&image);
            return image;
        }
        let script = crate::repo_path("builders/python/make-base.sh");
        let _lock = daemon_lock();
        let out = Command::new("bash")
            .arg(&script)
            .arg(PYTHON_BASE_IMAGE)
            .env("DOCKER_HOST", docker_host())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", script.display()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            panic!("{} failed ({}):\n{stderr}", script.display(), out.status);
        }
        if !stderr.is_empty() {
            eprint!("{stderr}");
        }
        let image = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            image,
            PYTHON_BASE_IMAGE,
            "{} printed an unexpected name",
            script.display()
        );
        provide(&image);
        image
    })
    .clone()
}

/// Builds (or reuses) the image of `dir`, a builder directory whose
/// Dockerfile takes its base from `ARG BASE_IMAGE`, on top of `base`, and
/// returns its tag `s2i-test/<dir name>:<12 hex>`: the hex hashes every
/// file under `dir` and the base image's id, so an unchanged builder on an
/// unchanged base is built once per daemon. Panics if the build fails.
pub fn builder_image_on(dir: &Path, base: &str) -> String {
    build_cached(dir, base, Some("-builder"))
}

/// Build `dir` on `base` once per process and once per daemon: the tag
/// `s2i-test/<dir name><suffix>:<12 hex>` hashes every file under `dir` and the
/// base image's id. With a `suffix` the base is passed as `ARG BASE_IMAGE`;
/// without, the Dockerfile names its own `FROM`. Panics if the build fails.
fn build_cached(dir: &Path, base: &str, suffix: Option<&str>) -> String {
    static BUILT: OnceLock<Mutex<HashMap<(PathBuf, String), String>>> = OnceLock::new();
    let dir = dir
        .canonicalize()
        .unwrap_or_else(|e| panic!("builder directory {}: {e}", dir.display()));
    // Held during the build: one build per directory per process; tests asking
    // for the same one wait for it.
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let key = (dir.clone(), base.to_string());
    if let Some(tag) = built.get(&key) {
        return tag.clone();
    }
    let base_id = factory_image_id(base).unwrap_or_else(|| panic!("base image {base} does not exist in the Docker daemon"));
    let mut hash = Fnv64::new();
    if suffix.is_some() {
        hash.write(b"builder_image_on\0");
    }
    hash.write(base_id.as_bytes());
    hash_tree(&dir, &dir, &mut hash);
    let name = dir
        .file_name()
        .map(|n| crate::docker_component(&n.to_string_lossy()))
        .unwrap_or_else(|| "builder".to_string());
    let tag = format!("s2i-test/{name}{}:{:012x}", suffix.unwrap_or(""), hash.finish() >> 16);
    {
        let _lock = daemon_lock();
        if factory_image_id(&tag).is_none() {
            let args: Vec<String> = suffix.map(|_| format!("BASE_IMAGE={base}")).into_iter().collect();
            docker_build(&dir, &tag, &args);
        }
        provide(&tag);
    }
    built.insert(key, tag.clone());
    tag
}

/// `docker build -q -t TAG [--build-arg A]… DIR` with the classic builder
/// (it uses local images for FROM without asking a registry, and needs no
/// buildx plugin). Panics with docker's output on failure.
fn docker_build(dir: &Path, tag: &str, build_args: &[String]) {
    let mut cmd = factory_command();
    cmd.args(["build", "-q", "-t", tag]);
    for arg in build_args {
        cmd.args(["--build-arg", arg]);
    }
    let out = cmd
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker build: {e}"));
    if !out.status.success() {
        panic!(
            "docker build of {} failed ({}):\n{}{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Hashes every entry under `dir` (sorted): relative path, kind, mode, and the
/// content of files or the target of symlinks.
fn hash_tree(root: &Path, dir: &Path, hash: &mut Fnv64) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let meta = fs::symlink_metadata(&path).expect("fixture file metadata");
        let rel = path.strip_prefix(root).unwrap();
        hash.write(rel.to_string_lossy().as_bytes());
        hash.write(&[0]);
        hash.write(&(meta.mode() & 0o177777).to_le_bytes());
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).expect("readlink");
            hash.write(target.to_string_lossy().as_bytes());
        } else if meta.is_dir() {
            hash_tree(root, &path, hash);
        } else {
            let data =
                fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            hash.write(&(data.len() as u64).to_le_bytes());
            hash.write(&data);
        }
        hash.write(&[0xff]);
    }
}

/// FNV-1a, 64 bits: stable across Rust versions, unlike std's hashers.
struct Fnv64(u64);

impl Fnv64 {
    fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn base_image_runs_busybox() {
        let t = Instant::now();
        let image = base_image();
        eprintln!("base_image() took {:?}", t.elapsed());
        assert_eq!(image, BASE_IMAGE);
        assert!(image_exists(&image));
        let (code, out, err) =
            docker_run(&image, &["sh", "-c", "tar --help >/dev/null 2>&1; echo ok"]);
        assert_eq!((code, out.as_str()), (0, "ok\n"), "stderr: {err}");
        let (code, out, err) = docker_run(
            &image,
            &[
                "sh",
                "-c",
                "echo $PATH; id -u default; stat -c '%a %u' /tmp /opt/app-root/src; which env tar",
            ],
        );
        assert_eq!(code, 0, "stderr: {err}");
        assert_eq!(
            out,
            format!("{PATH_ENV}\n1001\n1777 0\n775 1001\n/usr/bin/env\n/bin/tar\n")
        );
        let inspect = image_inspect(&image);
        assert_eq!(inspect["Config"]["Cmd"][0], "/bin/sh");
        assert_eq!(inspect["Comment"], BASE_COMMENT);
        // No labels of its own: builder and output images inherit labels.
        assert!(
            inspect["Config"]["Labels"]
                .as_object()
                .filter(|m| !m.is_empty())
                .is_none(),
            "{inspect}"
        );
    }

    #[test]
    fn builder_image_is_built_once_and_cached() {
        let tmp = tempfile::tempdir().unwrap();
        // A fixed directory name and content: the tag (and so the cached image)
        // is the same on every run.
        let dir = tmp.path().join("testkit-fixture");
        crate::write_file(
            &dir.join("Dockerfile"),
            "FROM s2i-test/busybox\n\
             LABEL io.openshift.s2i.scripts-url=image:///usr/libexec/s2i\n\
             COPY s2i/ /usr/libexec/s2i/\n\
             USER 1001\n",
            0o644,
        );
        crate::write_file(
            &dir.join("s2i/assemble"),
            "#!/bin/sh\necho assembling\n",
            0o755,
        );
        let t = Instant::now();
        let tag = builder_image(&dir);
        eprintln!("builder_image() took {:?}", t.elapsed());
        assert!(tag.starts_with("s2i-test/testkit-fixture:"), "{tag}");
        assert_eq!(tag.len(), "s2i-test/testkit-fixture:".len() + 12);
        assert_eq!(builder_image(&dir), tag);
        let (code, out, err) = docker_run(&tag, &["sh", "-c", "id -u; /usr/libexec/s2i/assemble"]);
        assert_eq!(
            (code, out.as_str()),
            (0, "1001\nassembling\n"),
            "stderr: {err}"
        );
        assert_eq!(
            image_inspect(&tag)["Config"]["Labels"]["io.openshift.s2i.scripts-url"],
            "image:///usr/libexec/s2i"
        );

        // Another mode or content gives another tag.
        let dir2 = tmp.path().join("other").join("testkit-fixture");
        crate::write_file(
            &dir2.join("Dockerfile"),
            &fs::read_to_string(dir.join("Dockerfile")).unwrap(),
            0o644,
        );
        crate::write_file(
            &dir2.join("s2i/assemble"),
            "#!/bin/sh\necho assembling\n",
            0o700,
        );
        let mut h1 = Fnv64::new();
        hash_tree(&dir, &dir, &mut h1);
        let mut h2 = Fnv64::new();
        hash_tree(&dir2, &dir2, &mut h2);
        assert_ne!(h1.finish(), h2.finish());
    }

    /// Does by hand what s2i does with the shared sti-fake builder: stream a
    /// tar of `src/…` into `tar -C /tmp -xf -` as the image's user, then run
    /// assemble (and run).
    #[test]
    fn sti_fake_builder_assembles_a_streamed_source_tar() {
        let builder = builder_image(&crate::support_dir("builders/sti-fake"));
        assert!(builder.starts_with("s2i-test/sti-fake:"), "{builder}");
        let mut tarball = tar::Builder::new(Vec::new());
        for (path, data, mode) in [
            ("src/app.txt", "app\n", 0o644),
            ("src/bin/start", "#!/bin/sh\n", 0o755),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_mtime(1_600_000_000);
            tarball.append_data(&mut h, path, data.as_bytes()).unwrap();
        }
        let tarball = tarball.into_inner().unwrap();
        let mut child = engine_command()
            .args(["run", "-i", "--rm", &builder, "/bin/sh", "-c"])
            .arg("tar -C /tmp -xf - && /usr/libexec/s2i/assemble && /usr/libexec/s2i/run && stat -c '%a %u %n' bin/start")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&tarball).unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("sti-fake assemble (uid 1001, in /opt/app-root/src)"),
            "{stdout}"
        );
        assert!(
            stdout.contains("sti-fake run: .sti-fake-assemble-env .sti-fake-assembled app.txt bin"),
            "{stdout}"
        );
        assert!(stdout.contains("755 1001 bin/start"), "{stdout}");
        let (code, usage, _) = docker_run(&builder, &[]);
        assert_eq!(
            (code, usage.as_str()),
            (0, "sti-fake: a fake s2i builder image for tests\n")
        );
    }

    #[test]
    fn no_tar_image_has_no_tar() {
        let image = no_tar_image();
        assert_eq!(image, NO_TAR_IMAGE);
        let (code, out, _) = docker_run(&image, &["sh", "-c", "tar -xf - </dev/null"]);
        assert_eq!(code, 127, "{out}");
        let (code, out, err) = docker_run(
            &image,
            &["sh", "-c", "test ! -e /bin/tar && wc -l </etc/passwd"],
        );
        assert_eq!((code, out.trim()), (0, "3"), "{err}");
    }

    #[test]
    fn docker_run_reports_exit_codes() {
        let (code, _, _) = docker_run(&base_image(), &["sh", "-c", "echo err >&2; exit 3"]);
        assert_eq!(code, 3);
        assert!(!image_exists("s2i-test/no-such-image:nope"));
    }
}
