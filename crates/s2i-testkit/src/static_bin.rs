//! The static s2i binary (glibc, `crt-static`), built once per change for all test processes, and
//! the minimal s2i image made from it by the project's own `scripts/s2i-image.sh`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::base::elf_is_dynamic;
use crate::engine::{factory_image_id, provide};
use crate::factory::docker_host;
use crate::lock::{daemon_lock, file_lock};
use crate::repo_path;

/// The target triple of the static build. Named explicitly, so that build scripts and proc-macros
/// (built for the host) stay dynamic and only the binary is linked statically.
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// The s2i binary linked statically (debug profile), built by `cargo build -p s2i --target
/// x86_64-unknown-linux-gnu` with `RUSTFLAGS=-C target-feature=+crt-static` in its own target dir
/// (`<target>/static`), once per test process and under a file lock, so that test processes
/// running at the same time build it once (cargo does nothing when it is up to date). Panics with
/// cargo's output if the build fails, or if the result needs a dynamic loader.
pub fn static_s2i() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build_static).clone()
}

/// The workspace's target dir: the directory holding cargo's `CACHEDIR.TAG` above the running
/// test executable, else `<workspace>/target`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors().find(|d| d.join("CACHEDIR.TAG").is_file()).map(Path::to_path_buf).unwrap_or_else(|| repo_path("target"))
}

fn build_static() -> PathBuf {
    let dir = target_dir().join("static");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let _lock = file_lock(&dir.join(".s2i-testkit.lock"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(repo_path(""))
        .args(["build", "--locked", "-p", "s2i", "--target", STATIC_TARGET, "--target-dir"])
        .arg(&dir)
        // RUSTFLAGS applies to the target only when --target is given: exactly what is wanted.
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cargo:?} build for the static s2i: {e}"));
    assert!(
        out.status.success(),
        "the static build of s2i failed (cargo build -p s2i --target {STATIC_TARGET}, RUSTFLAGS=-C target-feature=+crt-static; \
         it needs the static C library: apt-get install libc6-dev):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = dir.join(STATIC_TARGET).join("debug/s2i");
    let elf = fs::read(&bin).unwrap_or_else(|e| panic!("reading {}: {e}", bin.display()));
    assert!(!elf_is_dynamic(&elf), "{} needs a dynamic loader: the static build did not link statically", bin.display());
    bin
}

/// The minimal s2i image (`/s2i` alone, `ENTRYPOINT ["/s2i"]`) of [`static_s2i`], made by
/// `scripts/s2i-image.sh --binary` and tagged `s2i-test/s2i:<12 hex of the binary's sha256>`: made
/// once per binary and daemon (under the image lock), reused after, and loaded into the engine
/// under test. Panics with the script's output if it fails.
pub fn s2i_image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let bin = static_s2i();
            let content = fs::read(&bin).unwrap_or_else(|e| panic!("reading {}: {e}", bin.display()));
            let digest = ring::digest::digest(&ring::digest::SHA256, &content);
            let hex: String = digest.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect();
            let tag = format!("s2i-test/s2i:{hex}");
            let _lock = daemon_lock();
            if factory_image_id(&tag).is_none() {
                let out = Command::new("bash")
                    .arg(repo_path("scripts/s2i-image.sh"))
                    .arg("--binary")
                    .arg(&bin)
                    .arg(&tag)
                    .env("DOCKER_HOST", docker_host())
                    .env_remove("DOCKER_CONTEXT")
                    .stdin(Stdio::null())
                    .output()
                    .unwrap_or_else(|e| panic!("running scripts/s2i-image.sh: {e}"));
                assert!(
                    out.status.success() && factory_image_id(&tag).is_some(),
                    "scripts/s2i-image.sh --binary {} {tag} failed ({}):\n{}",
                    bin.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            provide(&tag);
            tag
        })
        .clone()
}
