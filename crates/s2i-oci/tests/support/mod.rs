//! Shared by the OciEngine tests: the busybox base as a `docker save` archive (made once per
//! test run), an engine on a private store, tar builders, and the check that nothing was left.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use s2i_engine::{ContainerSpec, Engine, OutputStream};
use s2i_oci::run::rootfs::RootfsDriver;
use s2i_oci::{OciEngine, OciEngineOptions};

/// Fails loudly, with what to do, when a part the tests need is missing.
pub fn require_parts() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the OciEngine tests need root (overlay mounts, runc, cgroups): run them as root"
    );
    for (bin, pkg) in [("runc", "runc"), ("fuse-overlayfs", "fuse-overlayfs")] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
            .unwrap_or(false);
        assert!(found, "{bin} is not installed: run `apt-get install {pkg}` (scripts/test.sh does)");
    }
}

/// `docker save` of the test kit's busybox base, written once per test run under cargo's
/// target tmp dir (named by image id, so a changed base makes a new one).
pub fn busybox_archive() -> PathBuf {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE
        .get_or_init(|| {
            let image = s2i_testkit::base_image();
            let id = s2i_testkit::docker_output(&["image", "inspect", "--format", "{{.Id}}", &image]);
            let hex = id.trim_start_matches("sha256:");
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            let path = dir.join(format!("s2i-oci-busybox-{}.tar", &hex[..12]));
            if !path.exists() {
                let tmp = dir.join(format!(".s2i-oci-busybox-{}.{}.tar", &hex[..12], std::process::id()));
                s2i_testkit::docker_output(&["save", "-o", tmp.to_str().unwrap(), &image]);
                std::fs::rename(&tmp, &path).unwrap();
            }
            path
        })
        .clone()
}

/// The busybox base as an image reference of the OCI engine.
pub fn busybox_ref() -> String {
    format!("docker-archive:{}", busybox_archive().display())
}

/// One test's engine, on a store in its own temp dir.
pub struct TestEngine {
    pub engine: OciEngine,
    pub dir: tempfile::TempDir,
    /// Ids of the containers made through [`TestEngine::create`].
    ids: Mutex<Vec<String>>,
    finished: bool,
}

impl Drop for TestEngine {
    /// A test that failed halfway still removes its containers, mounts and cgroups: on a thread
    /// of its own with its own runtime (this may run while a test's runtime unwinds).
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let engine = &self.engine;
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
                rt.block_on(engine.remove_leftovers());
            });
        });
    }
}

impl TestEngine {
    pub async fn new(driver: Option<RootfsDriver>) -> TestEngine {
        Self::with(|o| o.rootfs_driver = driver).await
    }

    pub async fn with(adjust: impl FnOnce(&mut OciEngineOptions)) -> TestEngine {
        require_parts();
        let dir = tempfile::Builder::new().prefix("s2i-oci-test-").tempdir().unwrap();
        let mut opts = OciEngineOptions::new(dir.path().join("store"));
        adjust(&mut opts);
        let engine = OciEngine::open(opts).await.unwrap_or_else(|e| panic!("opening the engine: {e}"));
        TestEngine { engine, dir, ids: Mutex::new(Vec::new()), finished: false }
    }

    /// create_container, remembering the id for the final check.
    pub async fn create(&self, spec: &ContainerSpec) -> String {
        let id = self.engine.create_container(spec).await.unwrap_or_else(|e| panic!("create: {e}"));
        self.ids.lock().unwrap().push(id.clone());
        id
    }

    pub fn store_root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Remove everything the engine made, then check that nothing is left.
    pub async fn finish(mut self) {
        self.finished = true;
        self.engine.remove_leftovers().await;
        let ids = self.ids.lock().unwrap().clone();
        assert_clean(&self.store_root(), self.engine.runtime_root(), &ids);
    }
}

/// No mount, runtime container, container directory, or cgroup of the containers `ids`, is left.
pub fn assert_clean(store: &Path, runtime_root: &Path, ids: &[String]) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let store_s = store.display().to_string();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&store_s)).collect();
    assert!(left.is_empty(), "mounts left under {store_s}:\n{}", left.join("\n"));
    let out = Command::new("runc").arg("--root").arg(runtime_root).args(["list", "-q"]).output().unwrap();
    assert!(out.status.success(), "runc list: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "", "runc still knows containers");
    let containers = store.join("s2i/run/containers");
    let entries: Vec<_> = std::fs::read_dir(&containers).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(entries.is_empty(), "container files left: {entries:?}");
    // Every cgroup hierarchy (v1 ones and a hybrid host's cgroup2 one) below our own cgroups.
    let mut left = Vec::new();
    find_cgroups(Path::new("/sys/fs/cgroup"), 5, ids, &mut left);
    assert!(left.is_empty(), "cgroups left: {left:?}");
}

fn find_cgroups(dir: &Path, depth: u32, ids: &[String], found: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let n = e.file_name().to_string_lossy().into_owned();
        if ids.iter().any(|id| n == format!("s2i-{id}")) {
            found.push(e.path());
        } else if depth > 0 {
            find_cgroups(&e.path(), depth - 1, ids, found);
        }
    }
}

/// What a container printed, by stream.
#[derive(Default, Clone)]
pub struct Captured(pub Arc<Mutex<(Vec<u8>, Vec<u8>)>>);

impl Captured {
    pub fn sink(&self) -> impl FnMut(OutputStream, &[u8]) + Send + 'static {
        let inner = self.0.clone();
        move |s, d| {
            let mut g = inner.lock().unwrap();
            match s {
                OutputStream::Stdout => g.0.extend_from_slice(d),
                OutputStream::Stderr => g.1.extend_from_slice(d),
            }
        }
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap().0).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap().1).into_owned()
    }
}

/// A container spec running `sh -c SCRIPT` in the busybox base.
pub fn sh(script: &str) -> ContainerSpec {
    ContainerSpec { image: busybox_ref(), cmd: vec!["/bin/sh".into(), "-c".into(), script.into()], ..Default::default() }
}

/// A container spec running `sh -c SCRIPT` in `image`.
pub fn sh_on(image: &str, script: &str) -> ContainerSpec {
    ContainerSpec { image: image.to_string(), cmd: vec!["/bin/sh".into(), "-c".into(), script.into()], ..Default::default() }
}

/// Create, run (with `input` on stdin), and return (exit code, stdout, stderr, id); the container
/// is kept for the caller.
pub async fn run(t: &TestEngine, spec: &ContainerSpec, input: Option<Vec<u8>>) -> (i64, String, String, String) {
    let engine = &t.engine;
    let mut spec = spec.clone();
    spec.open_stdin = input.is_some();
    let id = t.create(&spec).await;
    let cap = Captured::default();
    let mut sink = cap.sink();
    let input = input.map(|b| Box::new(std::io::Cursor::new(b)) as s2i_engine::ContainerInput);
    let code = engine.run_container(&id, input, &mut sink).await.unwrap_or_else(|e| panic!("run: {e}"));
    (code, cap.stdout(), cap.stderr(), id)
}

/// A tar of (path, content, mode) regular files.
pub fn tar_files(files: &[(&str, &str, u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, content, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(content.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, content.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// `docker load` an archive and return the loaded image's name or id.
pub fn docker_load(archive: &Path) -> String {
    let out = Command::new("docker")
        .args(["load", "-i"])
        .arg(archive)
        .stdin(Stdio::null())
        .output()
        .expect("docker runs");
    assert!(out.status.success(), "docker load: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Loaded image: ").or_else(|| l.strip_prefix("Loaded image ID: ")))
        .unwrap_or_else(|| panic!("docker load said: {text}"))
        .trim()
        .to_string()
}

pub fn write_all(path: &Path, data: &[u8]) {
    std::fs::File::create(path).and_then(|mut f| f.write_all(data)).unwrap();
}
