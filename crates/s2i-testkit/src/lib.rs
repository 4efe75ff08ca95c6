//! Test fixtures for driving the real `s2i` binary against a real engine: the
//! Docker daemon, or with `S2I_TEST_ENGINE=podman` a private Podman service the
//! test kit starts ([`podman_service`]; see [`point_at_engine`]).
//!
//! No image can ever be pulled in the test environment, so every image a test
//! needs is made locally:
//!
//! * [`base_image`] imports `s2i-test/busybox:latest` from the host's
//!   `busybox-static` binary (once per daemon; later runs reuse it);
//! * [`builder_image`] builds a builder image from a fixture directory holding a
//!   `Dockerfile` (`FROM s2i-test/busybox`), tagged by a hash of its content so
//!   that unchanged fixtures are never rebuilt.
//!
//! Each test makes a [`TestEnv`]: a private `TMPDIR`, a work directory, unique
//! image aliases and output tags, and checks for containers and temporary files
//! that `s2i` left behind. Everything is safe to use from tests running in
//! parallel threads, and from several test processes (one daemon-wide file lock
//! serialises image creation).
//!
//! Shared fixtures live in the workspace's `tests-support/` ([`support_dir`]):
//! `builders/sti-fake` is a minimal builder image (scripts in
//! `/usr/libexec/s2i`, user 1001, workdir `/opt/app-root/src`).
//!
//! ```no_run
//! use s2i_testkit::{builder_image, docker_run, support_dir, write_file, TestEnv};
//!
//! let env = TestEnv::new("build_from_local_dir");
//! let builder = env.alias(&builder_image(&support_dir("builders/sti-fake")));
//! let out = env.tag("app");
//! write_file(&env.work().join("app/index.html"), "hi\n", 0o644);
//! let status = env.s2i().args(["build", "app", &builder, &out]).status().unwrap();
//! assert!(status.success());
//! let (code, stdout, _) = docker_run(&out, &["cat", "index.html"]);
//! assert_eq!((code, stdout.as_str()), (0, "hi\n"));
//! env.assert_clean();
//! ```
//!
//! For the Python builder (`builders/python`), [`python_base_image`] makes a
//! Debian base with python3 by debootstrap (once per daemon, cached) and
//! [`builder_image_on`] builds a builder directory on a given base.
//!
//! One module per job: `engine` (which engine the tests drive, and the `docker`
//! CLI wrappers [`docker_output`], [`docker_run`], [`image_inspect`],
//! [`image_exists`]), `lock` (the machine-wide lock for making images), `base`
//! (the busybox base images), `builders` (builder images cached by content),
//! `python` (the Python base), `podman` (a private Podman service, a rootless
//! user), `registry` ([`TestRegistry`]: a real registry with TLS and auth),
//! `http` ([`HttpServer`]: files, a POST recorder, scripted answers), `proxy`
//! ([`FreezableProxy`]: a daemon that stops answering), `image_archive`
//! ([`write_docker_archive`]: hand-made images with special files or huge layers), `pty`
//! ([`run_with_tty_stderr`]), `fake` (an in-memory engine for flow tests and
//! fault injection), `env` ([`TestEnv`]), `static_bin` (the static s2i binary,
//! [`static_s2i`], and the minimal s2i image made from it, [`s2i_image`]), `pod` ([`TaskPod`]:
//! the steps of a Tekton Task or a Shipwright strategy, read from its YAML file, run as a pod
//! runs them); and
//! [`write_file`], [`git`].

#![warn(missing_docs)]

mod base;
mod builders;
mod engine;
mod factory;
mod env;
// The fake mirrors the Engine types field for field; those are documented in s2i-engine.
#[allow(missing_docs)]
pub mod fake;
mod http;
mod image_archive;
mod lock;
mod pod;
mod podman;
mod proxy;
mod pty;
mod python;
mod registry;
mod static_bin;

pub use base::{alt_base_image, base_image, no_tar_image, ALT_BASE_IMAGE, BASE_IMAGE, NO_TAR_IMAGE};
pub use builders::{builder_image, builder_image_on};
pub use engine::{
    docker_output, docker_run, docker_run_with, engine_command, engine_host, engine_socket, factory_output, image_exists,
    image_inspect, point_at_engine, test_engine, TestEngine,
};
pub use python::{other_python_base_image, python_base_image, python_base_image_for, OTHER_PYTHON_SUITE, PYTHON_BASE_IMAGE};
pub use env::{s2i_bin, TestEnv};
pub use http::{Answer, HttpServer, RecordedRequest};
pub use image_archive::{docker_archive, write_docker_archive, Layer};
pub use pod::{PodFlavor, PodOutcome, StepOutcome, TaskPod};
pub use podman::{podman_service, PodmanService, RootlessPodman};
pub use proxy::FreezableProxy;
pub use pty::{run_with_tty_stderr, TtyRun};
pub use static_bin::{s2i_image, static_s2i, STATIC_TARGET};
pub use registry::{write_docker_config, FakeCredentialHelper, PulledImage, RegistryOptions, RegistryUser, TestRegistry, REGISTRY_NAME, REGISTRY_PROGRAM};

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The builder image made from `tests-support/builders/<name>` (see [`builder_image`]).
pub fn fixture(name: &str) -> String {
    builder_image(&support_dir(&format!("builders/{name}")))
}

/// An image's `Config` (command, user, env, labels …), as `docker image inspect` shows it.
pub fn image_config(image: &str) -> serde_json::Value {
    image_inspect(image)["Config"].clone()
}

/// One label of an image, if it has it.
pub fn image_label(image: &str, key: &str) -> Option<String> {
    image_config(image)["Labels"][key].as_str().map(str::to_string)
}

/// `tests-support/<rel>` in this workspace: fixtures shared by the tests, such
/// as the builder image directory `builders/sti-fake` (for [`builder_image`]).
pub fn support_dir(rel: &str) -> PathBuf {
    repo_path("tests-support").join(rel)
}

/// `<rel>` in this workspace's root, e.g. `builders/python` or
/// `examples/python-hello`.
pub fn repo_path(rel: &str) -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = crate_dir
        .parent()
        .and_then(Path::parent)
        .expect("workspace root");
    workspace.join(rel)
}

/// Writes `content` to `path` with permission bits `mode` (e.g. `0o755`),
/// creating parent directories as needed. Panics on any I/O error.
pub fn write_file(path: &Path, content: &str, mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
    }
    fs::write(path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

/// Runs `git -C dir ARGS…` with a fixed author/committer identity and without
/// reading the user's or system's git config (`init.defaultBranch` is `main`,
/// commit signing is off, and the `file` protocol is allowed for submodules).
/// Returns stdout with trailing whitespace trimmed; panics with stderr on
/// failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
            "-c",
            "protocol.file.allow=always",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .env("GIT_AUTHOR_NAME", "s2i test")
        .env("GIT_AUTHOR_EMAIL", "s2i-test@example.com")
        .env("GIT_COMMITTER_NAME", "s2i test")
        .env("GIT_COMMITTER_EMAIL", "s2i-test@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot run git: {e}"));
    if !out.status.success() {
        panic!(
            "git {:?} in {} failed ({}):\n{}{}",
            args,
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// `n` random lowercase hex characters (not cryptographic; for unique names).
pub(crate) fn random_hex(n: usize) -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut s = String::new();
    while s.len() < n {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(d.as_nanos());
        }
        s.push_str(&format!("{:016x}", h.finish()));
    }
    s.truncate(n);
    s
}

/// Turns arbitrary text into a valid lowercase Docker repository path
/// component: `[a-z0-9]+` runs joined by single `-`, at most 40 chars.
pub(crate) fn docker_component(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(40);
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "x".to_string()
    } else {
        out
    }
}

/// The way s2i derives container names from image names: every character that
/// is not an ASCII letter or digit becomes `_`.
pub(crate) fn s2i_sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised() {
        assert_eq!(docker_component("tests::Build_Works"), "tests-build-works");
        assert_eq!(docker_component("__"), "x");
        assert_eq!(docker_component(&"a".repeat(50)).len(), 40);
        assert_eq!(s2i_sanitize("s2i-test/x:latest"), "s2i_test_x_latest");
        let a = random_hex(6);
        assert_eq!(a.len(), 6);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(random_hex(20), random_hex(20));
    }

    #[test]
    fn write_file_and_git() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        write_file(&repo.join("sub/run.sh"), "#!/bin/sh\necho hi\n", 0o755);
        let mode = fs::metadata(repo.join("sub/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        git(&repo, &["init", "-q"]);
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "-q", "-m", "first"]);
        assert_eq!(
            git(&repo, &["log", "-1", "--format=%an <%ae> %s"]),
            "s2i test <s2i-test@example.com> first"
        );
        assert_eq!(git(&repo, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
        assert_eq!(git(&repo, &["rev-parse", "HEAD"]).len(), 40);
    }
}
