//! The static s2i binary (glibc linked with `crt-static`, built by the test kit) and the minimal
//! s2i image that `scripts/s2i-image.sh` makes of it: it runs in an image that holds nothing else,
//! and in another image as a non-root user without capabilities (as a Tekton step under the
//! "restricted" Pod Security Standard runs it), after `s2i copy-binary` put it in a shared volume.
//! Its registry connections (names, TLS) are tested with the oci engine, in `oci.rs`.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use s2i_testkit::{base_image, docker_output, docker_run_with, fixture, image_inspect, s2i_image, static_s2i, TestEnv};

/// What `s2i version` prints, whatever the commit.
fn assert_version(stdout: &str) {
    let prefix = format!("s2i v{} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(stdout.starts_with(&prefix) && stdout.ends_with(")\n") && stdout.lines().count() == 1, "{stdout:?}");
}

/// The restrictions of a "restricted" pod: a non-root user, no capabilities, no privilege escalation.
const RESTRICTED: [&str; 5] = ["--user", "1001:0", "--cap-drop", "ALL", "--security-opt=no-new-privileges"];

/// The paths of the files in one layer tar.
fn layer_entries(layer: &mut dyn Read) -> Vec<(String, u32)> {
    let mut archive = tar::Archive::new(layer);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().display().to_string(), e.header().mode().unwrap())
        })
        .collect()
}

/// The image's one layer holds `/s2i` and nothing else: no libc, no shell, no /etc.
fn assert_only_the_binary(image: &str) {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("image.tar");
    docker_output(&["save", "-o", saved.to_str().unwrap(), image]);
    let mut outer = tar::Archive::new(std::fs::File::open(&saved).unwrap());
    outer.unpack(dir.path().join("x")).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("x/manifest.json")).unwrap()).unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap_or_else(|| panic!("{manifest}"));
    assert_eq!(layers.len(), 1, "{manifest}");
    let mut layer = std::fs::File::open(dir.path().join("x").join(layers[0].as_str().unwrap())).unwrap();
    assert_eq!(layer_entries(&mut layer), [("s2i".to_string(), 0o755)]);
}

/// The minimal image: `/s2i` alone, its entrypoint, a non-root user of its own, the OCI version
/// labels; and the binary in it runs with nothing of an image around it (no libc, no /etc files but
/// the engine's). The binary needs no dynamic loader (the test kit checks its ELF headers).
#[test]
fn the_s2i_image_holds_the_static_binary_alone_and_it_runs_there() {
    let image = s2i_image();
    let config = &image_inspect(&image)["Config"];
    assert_eq!(config["Entrypoint"], serde_json::json!(["/s2i"]), "{config}");
    assert_eq!(config["User"], "65532:65532", "{config}");
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"), "{labels}");
    let revision = labels["org.opencontainers.image.revision"].as_str().unwrap_or_else(|| panic!("{labels}"));
    assert!(revision.len() >= 7 && revision != "unknown", "{labels}");
    assert_only_the_binary(&image);

    let (code, stdout, stderr) = docker_run_with(&[], &image, &["version"]);
    assert_eq!(code, 0, "{stderr}");
    assert_version(&stdout);
    assert!(stdout.contains(revision), "{stdout} vs the label {revision}");
    // Bad input still gets s2i's own one-line error there.
    let (code, _, stderr) = docker_run_with(&[], &image, &["build", "--pull-policy", "sometimes"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("valid values are: always, never or if-not-present"), "{stderr}");
}

/// The static binary runs in another image (the test kit's busybox base, which has no glibc) as a
/// non-root user with every capability dropped and no privilege escalation.
#[test]
fn the_static_binary_runs_in_another_image_as_a_restricted_user() {
    let bin = static_s2i();
    let mount = format!("{}:/opt/s2i/s2i:ro", bin.display());
    let mut options = vec!["-v", &mount];
    options.extend(RESTRICTED);
    let (code, stdout, stderr) = docker_run_with(&options, &base_image(), &["/opt/s2i/s2i", "version"]);
    assert_eq!(code, 0, "{stderr}");
    assert_version(&stdout);
    let (code, stdout, stderr) = docker_run_with(&options, &base_image(), &["sh", "-c", "id -u; /opt/s2i/s2i create my-builder /tmp/b && ls /tmp/b/s2i/bin"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "1001\nassemble\nrun\nsave-artifacts\nusage\n", "{stderr}");
}

/// `s2i copy-binary DEST` run from the s2i image fills a shared volume (a directory: DEST/s2i,
/// 0755, the binary byte for byte, no temp file left); a container of the builder image, as a
/// restricted user, runs the copy. A DEST it cannot use is a clear error.
#[test]
fn copy_binary_fills_a_shared_volume_that_the_builder_image_runs_it_from() {
    let image = s2i_image();
    let env = TestEnv::new("copy-binary");
    let shared = env.work().join("shared");
    std::fs::create_dir(&shared).unwrap();
    // As an emptyDir is: writable by the step's user, whoever it is.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mount = format!("{}:/shared", shared.display());
    let (code, stdout, stderr) = docker_run_with(&["-v", &mount, "--cap-drop", "ALL", "--security-opt=no-new-privileges"], &image, &["copy-binary", "/shared"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "", "the copy's report goes to stderr");
    assert!(stderr.contains("Copied s2i v") && stderr.contains("to /shared/s2i"), "{stderr}");
    let names: Vec<_> = std::fs::read_dir(&shared).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names, ["s2i"]);
    let copied = shared.join("s2i");
    assert_eq!(std::fs::metadata(&copied).unwrap().mode() & 0o7777, 0o755);
    assert_eq!(std::fs::metadata(&copied).unwrap().uid(), 65532, "written by the image's own user");
    assert!(std::fs::read(&copied).unwrap() == std::fs::read(static_s2i()).unwrap(), "the copy differs from the binary");

    let ro = format!("{}:/shared:ro", shared.display());
    let mut options = vec!["-v", ro.as_str()];
    options.extend(RESTRICTED);
    let (code, stdout, stderr) = docker_run_with(&options, &fixture("sti-fake"), &["/shared/s2i", "version"]);
    assert_eq!(code, 0, "{stderr}");
    assert_version(&stdout);

    // Again over the existing copy: replaced whole.
    let (code, _, stderr) = docker_run_with(&["-v", &mount], &image, &["copy-binary", "/shared/s2i"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 1);

    let (code, _, stderr) = docker_run_with(&[], &image, &["copy-binary", "/nonexistent/bin/s2i"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("error: cannot copy s2i to /nonexistent/bin/s2i: its directory /nonexistent/bin does not exist"), "{stderr}");
    assert!(stderr.contains("hint: give a directory that exists and that this user may write to"), "{stderr}");
    let locked = env.work().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let mount = format!("{}:/locked", locked.display());
    let (code, _, stderr) = docker_run_with(&["-v", &mount], &image, &["copy-binary", "/locked"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("error: cannot copy s2i to /locked/s2i: cannot write in /locked: Permission denied"), "{stderr}");
    assert!(is_empty(&locked), "nothing left in the directory it could not write");
    env.assert_clean();
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

/// `scripts/s2i-image.sh --oci-archive` writes the same image as an OCI archive, with no daemon:
/// skopeo reads it, its one layer holds `/s2i` alone, and with SOURCE_DATE_EPOCH two runs write
/// the same bytes.
#[test]
fn the_image_script_writes_a_reproducible_oci_archive_without_a_daemon() {
    let env = TestEnv::new("s2i-image-oci-archive");
    let write = |name: &str| {
        let archive = env.work().join(name);
        let out = std::process::Command::new("bash")
            .arg(s2i_testkit::repo_path("scripts/s2i-image.sh"))
            .arg("--binary")
            .arg(static_s2i())
            .arg("--oci-archive")
            .arg(&archive)
            .arg("example.com/team/s2i:v9")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            // No daemon is asked: one that cannot be reached changes nothing.
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), archive.display().to_string());
        archive
    };
    let first = write("s2i-1.tar");
    let second = write("s2i-2.tar");
    assert!(std::fs::read(&first).unwrap() == std::fs::read(&second).unwrap(), "two runs wrote different archives");

    let reference = format!("oci-archive:{}:v9", first.display());
    let config: serde_json::Value = serde_json::from_str(&std::process::Command::new("skopeo")
        .args(["inspect", "--config", &reference])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .expect("skopeo is installed (apt-get install skopeo; scripts/test.sh does)"))
    .unwrap_or_else(|e| panic!("skopeo inspect --config {reference}: {e}"));
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/s2i"]), "{config}");
    assert_eq!(config["config"]["User"], "65532:65532", "{config}");
    assert_eq!(config["config"]["Labels"]["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"), "{config}");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z", "{config}");
    // The layer, read from the layout itself.
    let dir = tempfile::tempdir().unwrap();
    tar::Archive::new(std::fs::File::open(&first).unwrap()).unpack(dir.path()).unwrap();
    let blob = |digest: &str| dir.path().join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap()).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let mut layer = flate2::read::GzDecoder::new(std::fs::File::open(blob(layers[0]["digest"].as_str().unwrap())).unwrap());
    assert_eq!(layer_entries(&mut layer), [("s2i".to_string(), 0o755)]);
    env.assert_clean();
}
