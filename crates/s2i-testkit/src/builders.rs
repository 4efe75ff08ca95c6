//! Builder images built from fixture directories, cached by a hash of their content: built once
//! per daemon, not once per run.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};

use crate::engine::*;
use crate::factory::factory_command;
use crate::lock::daemon_lock;
use crate::base::{alt_base_image, base_image, no_tar_image, ALT_BASE_IMAGE, BASE_IMAGE, NO_TAR_IMAGE};

/// Builds (or reuses) a builder image from `fixture_dir`, a directory holding a
/// `Dockerfile` that starts `FROM` one of the test kit's bases
/// ([`BASE_IMAGE`], [`NO_TAR_IMAGE`] or [`ALT_BASE_IMAGE`], made first when missing) and the files it COPYs,
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
    let bases: [(&str, MakeImage); 3] = [
        (BASE_IMAGE, base_image),
        (NO_TAR_IMAGE, no_tar_image),
        (ALT_BASE_IMAGE, alt_base_image),
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
    use std::io::Write;
    use std::time::Instant;

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
}
