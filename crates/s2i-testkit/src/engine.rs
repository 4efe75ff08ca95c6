//! Which engine the tests drive, pointing commands at it, and the `docker` CLI wrappers.
//!
//! Every `docker` command of the test kit, and every s2i it runs, goes through
//! [`point_at_engine`]: `S2I_TEST_ENGINE` (`docker`, the default, or `podman`) says which engine
//! the tests drive. The test images are always made by Docker (the image factory: imports and
//! classic builds, cached across runs); when the tests drive Podman, each image is then loaded
//! into the test process's own Podman service ([`crate::podman_service`]) the first time it is
//! asked for, so both engines run bit-for-bit the same images.

use std::collections::HashSet;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::factory::{docker_host, factory_command};

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


/// The socket of the engine under test (its [`engine_host`] without `unix://`), for a test
/// that puts a proxy in front of it.
pub fn engine_socket() -> std::path::PathBuf {
    let host = engine_host();
    let path = host.strip_prefix("unix://").unwrap_or_else(|| panic!("the engine under test is not on a unix socket: {host}"));
    std::path::PathBuf::from(path)
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
/// uses the classic builder, as s2i does (Podman has no BuildKit). s2i's own engine choice from
/// the caller's shell (`S2I_ENGINE`, `S2I_OCI_STORE`) goes too: a test that wants the OCI engine
/// says so itself.
pub fn point_at_engine(cmd: &mut Command) -> &mut Command {
    cmd.env("DOCKER_HOST", engine_host())
        .env("DOCKER_BUILDKIT", "0")
        .env_remove("CONTAINER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("S2I_ENGINE")
        .env_remove("S2I_OCI_STORE")
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


pub(crate) fn run_cli(mut cmd: Command, args: &[&str]) -> Output {
    cmd.args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the docker CLI ({e}); is docker installed?"))
}

pub(crate) fn docker_cmd(args: &[&str]) -> Output {
    let _turn = matches!(args.first(), Some(&("tag" | "rmi" | "load"))).then(name_change_turn);
    run_cli(engine_command(), args)
}

/// Podman 4 renames an image by a read-modify-write of its list of names (libimage's Tag and
/// Untag): two tests tagging or untagging the same fixture at once can lose a name. The test
/// kit's calls that change names take turns there.
pub(crate) fn name_change_turn() -> Option<std::sync::MutexGuard<'static, ()>> {
    static NAMES: Mutex<()> = Mutex::new(());
    (test_engine() == TestEngine::Podman).then(|| NAMES.lock().unwrap_or_else(|e| e.into_inner()))
}

pub(crate) fn factory_cmd(args: &[&str]) -> Output {
    run_cli(factory_command(), args)
}

/// Like [`docker_output`], against the Docker daemon that makes the test images (whatever engine
/// the tests drive): for test inputs that the engine under test must only get another way, such
/// as an image it pulls from a test registry.
pub fn factory_output(args: &[&str]) -> String {
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

pub(crate) fn factory_image_id(image: &str) -> Option<String> {
    let out = factory_cmd(&["image", "inspect", "--format", "{{.Id}}", image]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Makes `image`, which the Docker daemon has, available to the engine under test: nothing to do
/// for Docker; for Podman, `docker save` is piped into the service's image load, once per image
/// and test process. Panics with both sides' errors if the transfer fails.
pub(crate) fn provide(image: &str) {
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


#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::base_image;
    #[test]
    fn docker_run_reports_exit_codes() {
        let (code, _, _) = docker_run(&base_image(), &["sh", "-c", "echo err >&2; exit 3"]);
        assert_eq!(code, 3);
        assert!(!image_exists("s2i-test/no-such-image:nope"));
    }
}
