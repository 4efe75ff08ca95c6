//! The Debian base with python3 that the Python builder's tests build on (made by
//! `builders/python/make-base.sh`: debootstrap, once per daemon, cached).

use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::engine::*;
use crate::factory::docker_host;
use crate::lock::daemon_lock;

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

