//! The image factory: the Docker daemon that makes every test image (whatever engine is under
//! test, images are made by Docker and handed over), and the `docker` CLI aimed at it. Below both
//! `engine` and `podman`, which use it.

use std::process::Command;

/// The Docker daemon's endpoint: `DOCKER_HOST`, else the default socket.
pub(crate) fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

/// A `docker` CLI command aimed at the Docker daemon, which makes the test images.
pub(crate) fn factory_command() -> Command {
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_HOST", docker_host())
        .env("DOCKER_BUILDKIT", "0")
        .env_remove("DOCKER_CONTEXT");
    cmd
}
