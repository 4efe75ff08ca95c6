//! The Debian bases with python3 that the Python builder's tests build on (made by
//! `builders/python/make-base.sh`: debootstrap, once per daemon, cached): bookworm's Python
//! 3.11, and another release's Python for tests that compare two builders.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

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
        make_base(PYTHON_BASE_IMAGE, "bookworm")
    })
    .clone()
}

/// The release of [`other_python_base_image`]: trixie, with Python 3.13.
pub const OTHER_PYTHON_SUITE: &str = "trixie";

/// Ensures a second Debian base with python3, of another release than
/// [`python_base_image`]'s and so another Python ([`OTHER_PYTHON_SUITE`]), and
/// returns its name, `s2i-python-base:<suite>`: made by
/// `builders/python/make-base.sh IMAGE SUITE` like the first (a minute or two
/// the first time, cached after). Both record their Python as `PYTHON_VERSION`.
pub fn other_python_base_image() -> String {
    python_base_image_for(OTHER_PYTHON_SUITE)
}

/// `s2i-python-base:<suite>`, made once per process (and cached per daemon).
pub fn python_base_image_for(suite: &str) -> String {
    static MADE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let mut made = MADE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(image) = made.get(suite) {
        return image.clone();
    }
    let image = make_base(&format!("s2i-python-base:{suite}"), suite);
    made.insert(suite.to_string(), image.clone());
    image
}

/// Run make-base.sh for `image` of `suite` under the daemon-wide image lock.
fn make_base(image: &str, suite: &str) -> String {
    let script = crate::repo_path("builders/python/make-base.sh");
    let _lock = daemon_lock();
    let out = Command::new("bash")
        .arg(&script)
        .args([image, suite])
        .env("DOCKER_HOST", docker_host())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        panic!("{} {suite} failed ({}):\n{stderr}", script.display(), out.status);
    }
    if !stderr.is_empty() {
        eprint!("{stderr}");
    }
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(printed, image, "{} printed an unexpected name", script.display());
    provide(image);
    printed
}

