//! The daemonless engine through the real binary: `s2i build --engine oci` with the Docker socket
//! unreachable (`DOCKER_HOST` points nowhere), builders given as `docker save` archives of the test
//! kit's images or pulled from its registry, results written as archives that Docker loads and
//! runs (and handed to Docker with `--load`). Runs as root with runc and the kernel's overlay;
//! fails loudly when they are missing. After every build: no mount, runc container, bundle
//! directory or cgroup of s2i's is left.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::apps::{incremental_app, probe_app, renice_denying_profile};
use s2i_testkit::{
    docker_output, docker_run, fixture, image_config, static_s2i, write_docker_config, write_file, HttpServer, TestEnv, TestRegistry, REGISTRY_NAME,
};
use serde_json::Value;

const NO_DOCKER: &str = "unix:///nonexistent/docker.sock";

fn require_parts() {
    assert!(rustix_is_root(), "the oci engine's tests need root (overlay mounts, runc, cgroups): run them as root");
    let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("runc").is_file()));
    assert!(found, "runc is not installed: run `apt-get install runc` (scripts/test.sh does)");
}

fn rustix_is_root() -> bool {
    // The effective uid of this process, from /proc (no extra dependency for one number).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1)).is_some_and(|u| u == "0")
}

/// `docker-archive:PATH` of a `docker save` of `image`, written once per test run (named by the
/// image id, so a rebuilt fixture gets a new archive).
pub(crate) fn archive_of(image: &str) -> String {
    static MADE: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let made = MADE.get_or_init(Default::default);
    let mut made = made.lock().unwrap();
    if let Some(p) = made.get(image) {
        return format!("docker-archive:{}", p.display());
    }
    let id = docker_output(&["image", "inspect", "--format", "{{.Id}}", image]);
    let hex = &id.trim_start_matches("sha256:")[..12];
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("s2i-oci-{hex}.tar"));
    if !path.exists() {
        let tmp = dir.join(format!(".s2i-oci-{hex}.{}.tar", std::process::id()));
        docker_output(&["save", "-o", tmp.to_str().unwrap(), image]);
        std::fs::rename(&tmp, &path).unwrap();
    }
    made.insert(image.to_string(), path.clone());
    format!("docker-archive:{}", path.display())
}

/// One test's environment for the oci engine: the test kit's env (temp dir, tags it removes from
/// Docker) and a private store, with every build's containers checked for leftovers.
pub(crate) struct Oci {
    pub(crate) env: TestEnv,
    store: tempfile::TempDir,
    /// The first 12 hex digits of each container a build reported creating.
    containers: Mutex<Vec<String>>,
}

impl Oci {
    pub(crate) fn new(name: &str) -> Oci {
        require_parts();
        let store = tempfile::Builder::new().prefix("s2i-test-oci-store-").tempdir().unwrap();
        Oci { env: TestEnv::new(name), store, containers: Mutex::new(Vec::new()) }
    }

    fn store(&self) -> &Path {
        self.store.path()
    }

    /// The private store's directory.
    pub(crate) fn store_dir(&self) -> PathBuf {
        self.store.path().to_path_buf()
    }

    /// The same, running another s2i binary (the static one).
    fn with_bin(mut self, bin: PathBuf) -> Oci {
        self.env = self.env.with_bin(bin);
        self
    }

    /// `s2i ARGS --engine oci --oci-store STORE --loglevel 1`, the Docker socket unreachable.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        self.command_on(self.store(), args)
    }

    /// [`Oci::command`] on another store.
    fn command_on(&self, store: &Path, args: &[&str]) -> Command {
        let mut cmd = self.env.s2i();
        cmd.args(args).args(["--engine", "oci", "--oci-store"]).arg(store).args(["--loglevel", "1"]).env("DOCKER_HOST", NO_DOCKER);
        cmd
    }

    pub(crate) fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_with(self.command(args))
    }

    fn run_with(&self, mut cmd: Command) -> (i32, String, String) {
        let out = cmd.output().expect("s2i runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        self.note_containers(&stderr);
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    }

    pub(crate) fn note_containers(&self, stderr: &str) {
        let mut seen = self.containers.lock().unwrap();
        for line in stderr.lines() {
            if let Some(rest) = line.split("created container ").nth(1) {
                seen.push(rest.chars().take(12).collect());
            }
        }
    }

    /// Builds `args` and writes the result as a docker-archive that Docker loads under its tag.
    pub(crate) fn build_and_load(&self, args: &[&str]) -> String {
        let archive = self.env.tmpdir().join(format!("out-{}.tar", self.containers.lock().unwrap().len()));
        let target = format!("docker-archive:{}", archive.display());
        let mut all = args.to_vec();
        all.extend(["--output-archive", &target]);
        let (code, _, stderr) = self.run(&all);
        assert_eq!(code, 0, "{stderr}");
        let loaded = docker_output(&["load", "-i", archive.to_str().unwrap()]);
        std::fs::remove_file(&archive).unwrap();
        loaded_name(&loaded)
    }

    /// The store's images: tag name → manifest digest.
    pub(crate) fn store_tags(&self) -> HashMap<String, String> {
        let index: Value = serde_json::from_slice(&std::fs::read(self.store().join("index.json")).unwrap()).unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| Some((m["annotations"]["org.opencontainers.image.ref.name"].as_str()?.to_string(), m["digest"].as_str()?.to_string())))
            .collect()
    }

    /// Nothing of a build container is left: mounts under the store, runc containers, bundle
    /// directories, cgroups; and nothing of Docker's (the test kit's check).
    pub(crate) fn assert_clean(&self) {
        self.assert_clean_on(self.store());
    }

    /// [`Oci::assert_clean`] for another store.
    fn assert_clean_on(&self, store_dir: &Path) {
        let store = store_dir.display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&store)).collect();
        assert!(left.is_empty(), "mounts left under the store:\n{}", left.join("\n"));
        let runc_root = store_dir.join("s2i/run/runc");
        if runc_root.exists() {
            let out = Command::new("runc").arg("--root").arg(&runc_root).args(["list", "-q"]).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "", "runc still has containers");
        }
        let bundles: Vec<PathBuf> = std::fs::read_dir(store_dir.join("s2i/run/containers"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(bundles.is_empty(), "bundle directories left: {bundles:?}");
        let ids = self.containers.lock().unwrap().clone();
        let mut cgroups = Vec::new();
        find_cgroups(Path::new("/sys/fs/cgroup"), 6, &ids, &mut cgroups);
        assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
        self.env.assert_clean();
    }
}

fn find_cgroups(dir: &Path, depth: u32, ids: &[String], found: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if ids.iter().any(|id| name.starts_with(&format!("s2i-{id}"))) {
            found.push(e.path());
        } else if depth > 0 {
            find_cgroups(&e.path(), depth - 1, ids, found);
        }
    }
}

fn app(env: &TestEnv) -> &'static str {
    write_file(&env.work().join("app/index.html"), "<h1>hello</h1>\n", 0o644);
    "app"
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// What a person sees of the engine's own long steps: on a terminal, a live line while it unpacks
/// the builder and while it takes the container's snapshot; without one, a plain line each.
#[test]
fn unpacking_and_the_snapshot_show_on_a_terminal_and_as_plain_lines() {
    let t = Oci::new("oci-progress");
    let builder = archive_of(&fixture("sti-fake"));
    let src = app(&t.env);
    let out = t.env.tag("app");
    let mut cmd = t.command(&["build", src, &builder, &out]);
    cmd.env_remove("NO_COLOR");
    let run = s2i_testkit::run_with_tty_stderr(cmd);
    t.note_containers(&run.terminal);
    assert!(run.status.success(), "{}", run.terminal);
    assert!(run.terminal.contains(&format!("Unpacking {builder}")), "a live line while the builder unpacks: {:?}", run.terminal);
    assert!(run.terminal.contains("Taking the snapshot of container "), "a live line during the snapshot: {:?}", run.terminal);
    assert!(!run.terminal.contains("Unpacked ") && !run.terminal.contains("Took the snapshot"), "no plain lines on a terminal: {:?}", run.terminal);

    let (code, _, stderr) = t.run(&["build", src, &builder, &out]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains('\r'), "nothing redrawn in a pipe: {stderr:?}");
    assert!(stderr.lines().any(|l| l.starts_with(&format!("Unpacked {builder} in "))), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("Took the snapshot of container ")).count(), 1, "{stderr}");
    t.assert_clean();
}

/// The plain flow: a builder from a `docker save` archive, the image written as a docker-archive
/// and an oci-archive, Docker loads and runs the first; `--load` hands it to Docker directly, and
/// says so plainly when no daemon answers; --run runs the result. The engine is named at
/// --loglevel 1 and in the JSON.
#[test]
fn a_standard_build_without_a_daemon_runs_in_docker() {
    let t = Oci::new("oci-standard");
    let builder = archive_of(&fixture("sti-fake"));
    let src = app(&t.env);
    let out = t.env.tag("app");
    let docker_archive = t.env.work().join("image.tar");
    let oci_archive = t.env.work().join("image-oci.tar");
    let (code, stdout, stderr) = t.run(&[
        "build", src, &builder, &out, "--output=json", "--output-archive", &format!("docker-archive:{}", docker_archive.display()),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Using the oci engine (runc version"), "{stderr}");
    assert!(stderr.contains("---> sti-fake assemble (uid 1001, in /opt/app-root/src)"), "{stderr}");
    let doc = json(&stdout);
    assert_eq!(doc["engine"]["kind"], "oci");
    assert!(doc["engine"]["version"].as_str().unwrap().starts_with("runc version"), "{doc}");
    assert_eq!(doc["engine"]["endpoint"], t.store().display().to_string());
    assert_eq!(doc["archive"]["format"], "docker-archive");
    let image_id = doc["image_id"].as_str().unwrap().to_string();

    let loaded = docker_output(&["load", "-i", docker_archive.to_str().unwrap()]);
    assert_eq!(loaded_name(&loaded), out);
    assert_eq!(docker_output(&["image", "inspect", "--format", "{{.Id}}", &out]), image_id, "Docker's id is the store's");
    let (code, stdout, _) = docker_run(&out, &[]);
    assert_eq!((code, stdout.as_str()), (0, "sti-fake run: .sti-fake-assemble-env .sti-fake-assembled index.html \n"));
    let cfg = image_config(&out);
    assert_eq!(cfg["Cmd"], serde_json::json!(["/usr/libexec/s2i/run"]));
    assert_eq!(cfg["User"], "1001");
    assert_eq!(cfg["Labels"]["io.openshift.s2i.build.image"], builder.as_str());
    assert_eq!(cfg["Labels"]["io.k8s.display-name"], out.as_str());
    docker_output(&["rmi", &out]);

    // An OCI archive of the same image, through S2I_ENGINE instead of the flag.
    let mut cmd = t.env.s2i();
    cmd.args(["build", src, &builder, &out, "--oci-store"])
        .arg(t.store())
        .args(["--loglevel", "1", "--output-archive", &format!("oci-archive:{}", oci_archive.display())])
        .env("S2I_ENGINE", "oci")
        .env("DOCKER_HOST", NO_DOCKER);
    let (code, _, stderr) = t.run_with(cmd);
    assert_eq!(code, 0, "{stderr}");
    let listing = Command::new("tar").arg("-tf").arg(&oci_archive).output().unwrap();
    let names = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(names.lines().any(|l| l == "oci-layout") && names.lines().any(|l| l == "index.json"), "{names}");
    assert!(!names.lines().any(|l| l == "manifest.json"), "an OCI archive, not Docker's: {names}");

    // --run starts the built image on the same engine once the build is done.
    let (code, stdout, stderr) = t.run(&["build", src, &builder, &out, "--run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(format!("{stdout}{stderr}").contains("sti-fake run: .sti-fake-assemble-env"), "{stdout}{stderr}");

    // --load: straight into the daemon when one answers…
    let mut cmd = t.command(&["build", src, &builder, &out, "--load"]);
    cmd.env("DOCKER_HOST", s2i_testkit::engine_host());
    let (code, _, stderr) = t.run_with(cmd);
    assert_eq!(code, 0, "{stderr}");
    // The name as the daemon reports it: Podman's is fully qualified.
    let host = s2i_testkit::engine_host();
    let said = |name: &str| stderr.contains(&format!("Loaded {name} into the daemon at {host}"));
    assert!(said(&out) || said(&format!("docker.io/{out}")), "{stderr}");
    assert_eq!(docker_run(&out, &[]).0, 0);
    // …and a plain error when none does; the image stays in the store.
    let other = t.env.tag("other");
    let (code, _, stderr) = t.run(&["build", src, &builder, &other, "--load"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--load needs a Docker or Podman daemon") && stderr.contains(NO_DOCKER), "{stderr}");
    assert!(stderr.contains(&t.store().display().to_string()), "it says where the image is: {stderr}");
    assert!(t.store_tags().contains_key(&format!("docker.io/{other}")), "{:?}", t.store_tags());
    t.assert_clean();
}

/// Scripts from the image (above), from the source's .s2i/bin, and from an http URL.
#[test]
fn scripts_from_the_source_and_a_url() {
    let t = Oci::new("oci-scripts");
    let src = app(&t.env);
    write_file(&t.env.work().join("app/.s2i/bin/assemble"), "#!/bin/sh\necho \"source assemble wraps: $STI_SCRIPTS_PATH\"\nexec \"$STI_SCRIPTS_PATH/assemble\"\n", 0o755);
    let builder = archive_of(&fixture("sti-fake"));
    let (code, _, stderr) = t.run(&["build", src, &builder, &t.env.tag("a")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("source assemble wraps: /usr/libexec/s2i") && stderr.contains("---> sti-fake assemble"), "{stderr}");

    let scripts = t.env.work().join("scripts");
    write_file(&scripts.join("assemble"), "#!/bin/sh\nset -e\ncp -R /tmp/src/. ./\necho \"assembled by $ORIGIN\" > origin\n", 0o644);
    write_file(&scripts.join("run"), "#!/bin/sh\ncat origin\n", 0o644);
    let server = HttpServer::serve_dir(&scripts);
    let nolabel = archive_of(&fixture("sti-fake-nolabel"));
    let out = t.env.tag("url");
    let url = format!("{}/", server.url());
    let loaded = t.build_and_load(&["build", "scripts", &nolabel, &out, "-s", &url, "-e", "ORIGIN=http"]);
    assert_eq!(loaded, out);
    assert_eq!(docker_run(&out, &[]).1, "assembled by http\n");
    assert!(server.requests().iter().any(|p| p == "/assemble"), "{:?}", server.requests());
    t.assert_clean();
}

/// Incremental builds take the previous image from the store, --rm removes it there; with a
/// runtime image the builder stage (`<tag>-build`) is kept in the store and reused.
#[test]
fn incremental_and_runtime_builds_use_the_store() {
    let t = Oci::new("oci-incremental");
    let builder = archive_of(&fixture("sti-fake"));
    let src = incremental_app(&t.env);
    let out = t.env.tag("app");
    let (code, _, stderr) = t.run(&["build", src, &builder, &out, "--incremental", "-e", "BUILD_NO=1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("---> installed deps"), "{stderr}");
    let first = t.store_tags()[&format!("docker.io/{out}")].clone();
    let (code, _, stderr) = t.run(&["build", src, &builder, &out, "--incremental", "--rm", "-e", "BUILD_NO=2"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&format!("Existing image for tag {out} detected for incremental build")), "{stderr}");
    assert!(stderr.contains("---> saving deps") && stderr.contains("---> reusing deps from build-1"), "{stderr}");
    let index = std::fs::read_to_string(t.store().join("index.json")).unwrap();
    assert!(!index.contains(&first), "--rm removed the previous image from the store: {index}");
    let loaded = t.build_and_load(&["build", src, &builder, &out, "--incremental", "-e", "BUILD_NO=3"]);
    assert_eq!(docker_run(&loaded, &["cat", "deps/installed"]).1, "build-1\n");

    // A runtime image, incremental too.
    let runtime = archive_of(&fixture("sti-fake-runtime"));
    let rt = t.env.tag("rt");
    let args = |n: &'static str| vec!["build", src, &builder, &rt, "--runtime-image", &runtime, "-a", "/opt/app-root/src/deps:.", "--incremental", "-e", n, "-e", "MODE=prod"];
    let (code, _, stderr) = t.run(&args("BUILD_NO=1"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("---> runtime assemble as 1001 in /opt/app-root/src: ./deps/installed"), "{stderr}");
    assert!(t.store_tags().contains_key(&format!("docker.io/{rt}-build")), "the builder stage is kept: {:?}", t.store_tags());
    let loaded = t.build_and_load(&args("BUILD_NO=2"));
    assert_eq!(docker_run(&loaded, &[]).1, "runtime run: runtime-assembled with MODE=prod\n");
    assert_eq!(docker_run(&loaded, &["cat", "deps/installed"]).1, "build-1\n", "the stage's artifacts were reused");
    let listing = docker_run(&loaded, &["find", "."]).1;
    assert!(!listing.contains("app.txt"), "only the artifacts ship: {listing}");
    t.assert_clean();
}

/// Injected files are readable during assemble and empty afterwards; users given by name are
/// read from the builder's /etc/passwd and held to --allowed-uids.
#[test]
fn injections_users_and_allowed_uids() {
    let t = Oci::new("oci-inject");
    let builder = archive_of(&fixture("sti-fake"));
    let src = app(&t.env);
    let secrets = t.env.work().join("secrets");
    write_file(&secrets.join("token"), "s3cr3t\n", 0o600);
    write_file(&t.env.work().join("app/.s2i/bin/assemble"), "#!/bin/sh\nset -e\ncat /tmp/secret/token > /tmp/seen\n\"${STI_SCRIPTS_PATH}/assemble\"\ncp /tmp/seen ./seen\n", 0o755);
    let out = t.env.tag("app");
    let spec = format!("{}:/tmp/secret", secrets.display());
    let loaded = t.build_and_load(&["build", src, &builder, &out, "--inject", &spec]);
    assert_eq!(docker_run(&loaded, &["cat", "seen"]).1, "s3cr3t\n", "assemble read it");
    assert_eq!(docker_run(&loaded, &["sh", "-c", "wc -c < /tmp/secret/token"]).1.trim(), "0", "emptied afterwards");
    std::fs::remove_dir_all(t.env.work().join("app/.s2i")).unwrap();

    let named = archive_of(&fixture("sti-fake-user"));
    let out = t.env.tag("named");
    let loaded = t.build_and_load(&["build", src, &named, &out, "-u", "400-500"]);
    assert_eq!(docker_run(&loaded, &[]).1, "assembled as 431\n");
    let (code, _, stderr) = t.run(&["build", src, &named, &t.env.tag("c"), "-u", "1000-"]);
    assert_eq!(code, 15, "{stderr}");
    assert!(stderr.contains("\"fakeuser\" must be a numeric uid within the allowed ranges 1000-"), "{stderr}");
    let legacy = archive_of(&fixture("sti-fake-legacy"));
    let (code, _, stderr) = t.run(&["build", src, &legacy, &t.env.tag("d"), "--allowed-uids", "1-"]);
    assert_eq!(code, 15, "{stderr}");
    let (code, _, stderr) = t.run(&["build", src, &builder, &t.env.tag("e"), "--assemble-user", "0", "-u", "1-"]);
    assert_eq!(code, 15, "{stderr}");
    t.assert_clean();
}

/// With SOURCE_DATE_EPOCH, two builds of the same input (each in a store of its own) give the
/// same image id and manifest digest; another epoch gives another image.
#[test]
fn builds_are_reproducible_with_source_date_epoch() {
    let t = Oci::new("oci-repro");
    let builder = archive_of(&fixture("sti-fake"));
    let src = app(&t.env);
    let out = t.env.tag("app");
    let second = tempfile::Builder::new().prefix("s2i-test-oci-store-").tempdir().unwrap();
    let build = |store: &Path, epoch: &str| -> (String, String) {
        let mut cmd = t.command_on(store, &["build", src, &builder, &out, "--output=json"]);
        cmd.env("SOURCE_DATE_EPOCH", epoch);
        let (code, stdout, stderr) = t.run_with(cmd);
        assert_eq!(code, 0, "{stderr}");
        let index: Value = serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap()).unwrap();
        let name = format!("docker.io/{out}");
        let digest = index["manifests"].as_array().unwrap().iter().find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name.as_str()).unwrap()["digest"].clone();
        (json(&stdout)["image_id"].as_str().unwrap().to_string(), digest.as_str().unwrap().to_string())
    };
    let one = build(t.store(), "1700000000");
    std::thread::sleep(std::time::Duration::from_millis(1100)); // any clock in the image would differ now
    let two = build(second.path(), "1700000000");
    assert_eq!(one, two, "same input, same SOURCE_DATE_EPOCH: the same image id and digest");
    let three = build(second.path(), "1700000001");
    assert_ne!(one.0, three.0);
    assert_ne!(one.1, three.1);
    t.assert_clean();
}

/// A failed assemble, and an interrupted one (SIGINT, as Ctrl-C), leave nothing behind.
#[test]
fn failures_and_interrupts_leave_nothing() {
    let t = Oci::new("oci-cleanup");
    let builder = archive_of(&fixture("sti-fake"));
    let src = app(&t.env);
    let (code, _, stderr) = t.run(&["build", src, &builder, &t.env.tag("fail"), "-e", "ASSEMBLE_FAIL=3"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("assemble exited with status 3"), "{stderr}");
    t.assert_clean();

    let mut child = t
        .command(&["build", src, &builder, &t.env.tag("int"), "-e", "ASSEMBLE_SLEEP=60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    loop {
        let line = lines.next().expect("s2i ended before assemble started").unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("---> sleeping") {
            break;
        }
    }
    // The bundle and its mounts exist while it runs.
    assert_eq!(std::fs::read_dir(t.store().join("s2i/run/containers")).unwrap().flatten().filter(|e| e.path().is_dir()).count(), 1);
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    for line in lines.map_while(Result::ok) {
        seen.push_str(&line);
        seen.push('\n');
    }
    let code = child.wait().unwrap().code();
    t.note_containers(&seen);
    assert_eq!(code, Some(2), "{seen}");
    assert!(seen.contains("Interrupted"), "{seen}");
    t.assert_clean();
}

/// Runs the shell command `script` as the host user nobody (uid and gid 65534, no groups, no
/// capabilities), with `$1` set to `path`: whether it succeeded, and what it said on stderr.
/// Through a shell: setpriv keeps root's capabilities until its own exec, so a path it executes
/// itself is resolved with them.
fn as_nobody(script: &str, path: &Path) -> (bool, String) {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "/bin/sh", "-c", script, "sh"])
        .arg(path)
        .output()
        .expect("setpriv runs (util-linux)");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// An s2i process that a failed assertion interrupts (as Ctrl-C does) and waits for, so that
/// it removes its container before the test's temp dirs go.
struct Interrupted(std::process::Child);

impl Drop for Interrupted {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
            let _ = self.0.wait();
        }
    }
}

/// `path` is there for root, and the host user nobody can neither stat it, read it (list it, for
/// a directory) nor run it: each attempt is refused with EACCES.
fn assert_closed_to_others(path: &Path) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{} should exist: {e}", path.display()));
    let mut attempts = if meta.is_file() { vec!["\"$1\" id", "cat -- \"$1\""] } else { vec!["ls -- \"$1\""] };
    attempts.push("stat -- \"$1\"");
    for script in attempts {
        let (ok, stderr) = as_nobody(script, path);
        assert!(!ok && stderr.contains("Permission denied"), "nobody ran `{script}` on {}: {stderr}", path.display());
    }
}

/// The store is root's alone (the class of hole of Docker's CVE-2021-41091): during a build and
/// after it, another host user can reach neither the layer that holds a builder's setuid-root
/// binary, nor the running container's root file system or upper dir, nor anything else in the
/// store. The store and the parents s2i makes for it are 0700, under a parent others may
/// traverse (as /var/lib is), and the build still runs as its non-root user.
#[test]
fn other_host_users_cannot_reach_the_store_or_a_builders_setuid_binary() {
    let t = Oci::new("oci-private-store");
    let builder = archive_of(&fixture("sti-fake-setuid"));
    let parent = tempfile::Builder::new().prefix("s2i-test-oci-parent-").tempdir().unwrap();
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = parent.path().join("data/s2i/oci");
    let src = app(&t.env);
    write_file(
        &t.env.work().join("app/.s2i/bin/assemble"),
        "#!/bin/sh\necho \"---> waiting for the test as $(id -u)\"\ni=0\n\
         while [ ! -e /tmp/go ] && [ $i -lt 600 ]; do usleep 100000; i=$((i+1)); done\n\
         [ -e /tmp/go ] || { echo 'the test never said go' >&2; exit 1; }\ncp -Rf /tmp/src/. ./\n",
        0o755,
    );
    write_file(&t.env.work().join("app/.s2i/bin/run"), "#!/bin/sh\ncat index.html\n", 0o755);
    let child = t.command_on(&store, &["build", src, &builder, &t.env.tag("app")]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut child = Interrupted(child);
    let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    loop {
        let line = lines.next().unwrap_or_else(|| panic!("s2i ended before assemble started:\n{seen}")).unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("---> waiting for the test as 1001") {
            break;
        }
    }

    // During the build: the image's layers, the container's bundle, its mounted root file system.
    let bundles: Vec<PathBuf> = std::fs::read_dir(store.join("s2i/run/containers")).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    let [bundle] = bundles.as_slice() else { panic!("one container expected: {bundles:?}") };
    let layers: Vec<PathBuf> = std::fs::read_dir(store.join("s2i/layers")).unwrap().flatten().map(|e| e.path()).collect();
    let layer = layers.iter().find(|l| l.join("bin/suid-busybox").exists()).unwrap_or_else(|| panic!("no layer holds the binary: {layers:?}"));
    let binary = layer.join("bin/suid-busybox");
    let mode = std::fs::metadata(&binary).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o4755, "the layer keeps the setuid bit, as Docker's does");
    let rootfs = bundle.join("rootfs");
    for path in [
        binary.clone(),
        rootfs.join("bin/suid-busybox"),
        layer.clone(),
        rootfs.clone(),
        bundle.join("upper"),
        bundle.join("config.json"),
        store.clone(),
        store.join("index.json"),
        store.join("blobs/sha256"),
    ] {
        assert_closed_to_others(&path);
    }

    std::fs::write(rootfs.join("tmp/go"), "").unwrap();
    for line in lines.map_while(Result::ok) {
        seen.push_str(&line);
        seen.push('\n');
    }
    let code = child.0.wait().unwrap().code();
    t.note_containers(&seen);
    assert_eq!(code, Some(0), "{seen}");

    // After it: the cached layer stays, as closed as before.
    for path in [store.clone(), binary] {
        assert_closed_to_others(&path);
    }
    for dir in [parent.path().join("data"), parent.path().join("data/s2i"), store.clone()] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    }
    t.assert_clean_on(&store);
}

/// Every build container runs under Docker's default seccomp profile: assemble can neither make a
/// user namespace nor mount, even inside one. `--security-opt seccomp=unconfined` lifts the filter
/// (which shows the probe can tell), `seccomp=FILE` replaces it, `no-new-privileges` sets the
/// flag; a bad value or file stops the build before anything is made.
#[test]
fn build_containers_run_under_dockers_seccomp_profile() {
    let t = Oci::new("oci-seccomp");
    let builder = archive_of(&fixture("sti-fake"));
    let src = probe_app(&t.env);
    let probe = |extra: &[&str]| {
        let mut args = vec!["build", src, &builder];
        args.extend_from_slice(extra);
        let (code, _, stderr) = t.run(&args);
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.contains("---> sti-fake assemble (uid 1001"), "{stderr}");
        let line = stderr.lines().find_map(|l| l.split("---> probe: ").nth(1)).unwrap_or_else(|| panic!("no probe: {stderr}"));
        line.trim().to_string()
    };
    assert_eq!(probe(&[]), "userns=denied mount=denied renice=ok NoNewPrivs:0");
    assert_eq!(probe(&["--security-opt", "seccomp=unconfined"]), "userns=ok mount=ok renice=ok NoNewPrivs:0");
    let profile = renice_denying_profile(&t.env);
    let own = format!("seccomp={profile}");
    assert_eq!(probe(&["--security-opt", &own, "--security-opt", "no-new-privileges"]), "userns=ok mount=ok renice=denied NoNewPrivs:1");

    write_file(&t.env.work().join("bad.json"), r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]}"#, 0o644);
    for (value, says) in [
        ("apparmor=unconfined", "invalid --security-opt \"apparmor=unconfined\": s2i takes seccomp=unconfined, seccomp=builtin, seccomp=PROFILE.json and no-new-privileges"),
        ("seccomp=missing.json", "no profile file at "),
        ("seccomp=bad.json", "missing field `action`"),
    ] {
        let (code, _, stderr) = t.run(&["build", src, &builder, "--security-opt", value]);
        assert_ne!(code, 0, "{stderr}");
        assert!(stderr.contains(says), "{value}: {stderr}");
        assert!(!stderr.contains("created container"), "nothing starts: {stderr}");
    }
    t.assert_clean();
}

/// What the daemonless engine cannot do is refused, saying why: Dockerfile builds and ONBUILD
/// builders (no image builder), --load with the Docker engine, and running without root.
#[test]
fn what_the_oci_engine_cannot_do_is_refused_with_the_reason() {
    let t = Oci::new("oci-refusals");
    let builder = archive_of(&fixture("sti-fake"));
    let src = app(&t.env);
    let (code, _, stderr) = t.run(&["build", src, &builder, &t.env.tag("a"), "--build-method=dockerfile"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--build-method=dockerfile cannot be used with --engine oci") && stderr.contains("no image builder"), "{stderr}");
    let onbuild = archive_of(&fixture("sti-fake-onbuild"));
    write_file(&t.env.work().join("ob/run"), "#!/bin/sh\necho app\n", 0o755);
    let (code, _, stderr) = t.run(&["build", "ob", &onbuild, &t.env.tag("b")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("the oci engine cannot build FROM an ONBUILD builder") && stderr.contains("--engine docker"), "{stderr}");
    let (code, _, stderr) = t.env.run(&["build", src, &builder, &t.env.tag("c"), "--load"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--load cannot be used with --engine docker"), "{stderr}");

    // A runtime that is not there is named, with what to do.
    let (code, _, stderr) = t.run(&["build", src, &builder, &t.env.tag("d"), "--oci-runtime", "/nonexistent/runc"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot run the OCI runtime /nonexistent/runc") && stderr.contains("--oci-runtime PATH"), "{stderr}");

    // Not root: the error says so (and nothing is made in the store).
    let bin = s2i_testkit::s2i_bin();
    let store = t.env.work().join("user-store");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .args(["build", "/nonexistent", &builder, "--engine", "oci", "--oci-store"])
        .arg(&store)
        .env("DOCKER_HOST", NO_DOCKER)
        .env("HOME", "/nonexistent")
        .output()
        .expect("setpriv runs (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
    assert!(!store.exists());
    t.assert_clean();
}

/// The registry flow of a CI runner with an empty store: the builder is pulled from the test
/// kit's registry (with the credentials of the Docker config core reads), the result is pushed
/// there with --push (Docker pulls and runs it), and the next incremental build, on another empty
/// store, pulls that previous image and reuses its artifacts.
#[test]
fn an_empty_store_pulls_the_builder_and_the_previous_image_from_a_registry() {
    let t = Oci::new("oci-registry");
    let registry = TestRegistry::start();
    let (builder, _) = registry.docker_push(&fixture("sti-fake"), "oci-test/sti-fake:v1");
    let src = incremental_app(&t.env);
    let out = registry.image("oci-test/inc:v1");
    let cfg = registry.docker_config_dir().to_path_buf();
    let mut cmd = t.command(&["build", src, &builder, &out, "--incremental", "-e", "BUILD_NO=1", "--push", "--output=json"]);
    cmd.env("DOCKER_CONFIG", &cfg);
    let (code, stdout, stderr) = t.run_with(cmd);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&format!("Pulled {builder}")), "{stderr}");
    let doc = json(&stdout);
    let digest = doc["pushed"][0]["digest"].as_str().unwrap_or_else(|| panic!("{doc}")).to_string();
    assert!(stderr.contains(&format!("Pushed {out}@{digest}")), "{stderr}");
    // What the daemonless engine pushed, Docker pulls and runs, under the same id.
    let pulled = registry.docker_pull(&out);
    assert_eq!(docker_output(&["image", "inspect", "--format", "{{.Id}}", pulled.name()]), doc["image_id"].as_str().unwrap());
    assert_eq!(docker_run(pulled.name(), &["cat", "deps/installed"]).1, "build-1\n");
    drop(pulled);

    // Another empty store: the previous image comes from the registry.
    let fresh = tempfile::Builder::new().prefix("s2i-test-oci-store-").tempdir().unwrap();
    let mut cmd = t.command_on(fresh.path(), &["build", src, &builder, &out, "--incremental", "-e", "BUILD_NO=2"]);
    cmd.env("DOCKER_CONFIG", &cfg);
    let (code, _, stderr) = t.run_with(cmd);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&format!("Pulled {out}")) && stderr.contains("---> reusing deps from build-1"), "{stderr}");
    assert!(!stderr.contains(&registry.user().password), "a password in the output");
    // Without credentials, the registry's own answer says what is missing.
    let empty = tempfile::Builder::new().prefix("s2i-test-oci-store-").tempdir().unwrap();
    let mut cmd = t.command_on(empty.path(), &["build", src, &builder, &t.env.tag("anon")]);
    cmd.env("DOCKER_CONFIG", t.env.work().join("no-docker-config"));
    let (code, _, stderr) = t.run_with(cmd);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("requires authentication"), "{stderr}");
    t.assert_clean();
}

/// `--push` from the daemonless engine (s2i's own registry client) to a registry whose uploads
/// go to another host (its external URL names a recorder): the layers are sent there without the
/// registry's token, and the token service the registry named is shown in the debug log. Before,
/// every upload carried the registry's Authorization to that host.
#[test]
fn a_push_whose_uploads_go_elsewhere_sends_no_credentials_there() {
    use s2i_testkit::{Answer, RegistryOptions};
    let t = Oci::new("oci-push-elsewhere");
    let other = HttpServer::scripted(|req| match req.method.as_str() {
        // It takes nothing: the push fails at the manifest, which the registry checks.
        "PUT" => Answer::Status { status: "201 Created".into(), headers: Vec::new(), body: Vec::new() },
        _ => Answer::Status { status: "404 Not Found".into(), headers: Vec::new(), body: Vec::new() },
    });
    let registry = TestRegistry::start_with_options(RegistryOptions { token_auth: true, plain_http: true, external_url: Some(other.url()), ..Default::default() });
    let builder = archive_of(&fixture("sti-fake"));
    let src = app(&t.env);
    let out = registry.image("oci-test/elsewhere:v1");
    let mut cmd = t.env.s2i();
    cmd.args(["build", src, &builder, &out, "--push", "--engine", "oci", "--oci-store"])
        .arg(t.store())
        .args(["--loglevel", "5"])
        .env("DOCKER_HOST", NO_DOCKER)
        .env("DOCKER_CONFIG", registry.docker_config_dir());
    let (code, _, stderr) = t.run_with(cmd);
    assert_ne!(code, 0, "the registry has none of the layers: {stderr}");
    assert!(stderr.lines().any(|l| l.starts_with(&format!("error: unable to push {out}"))), "{stderr}");
    let puts: Vec<_> = other.received().into_iter().filter(|r| r.method == "PUT").collect();
    assert!(!puts.is_empty(), "the layers went to the other host: {stderr}");
    for put in &puts {
        assert_eq!(put.header("authorization"), None, "{} reached the other host with credentials", put.path);
    }
    assert!(stderr.contains(&format!("goes to {}, without credentials", other.url())), "{stderr}");
    let realm = registry.token_realm().unwrap();
    let realm_origin = realm.trim_end_matches("/token");
    assert!(stderr.contains(&format!("asking the token service at {realm_origin} for repository:oci-test/elsewhere:pull,push")), "{stderr}");
    assert!(!stderr.contains(&registry.user().password), "a password in the output");
    t.assert_clean();
}

/// The image `docker load` names, in Docker's short form: Docker prints `s2i-test-out/x:latest`,
/// Podman the full `docker.io/s2i-test-out/x:latest` for the same archive.
fn loaded_name(output: &str) -> String {
    let name = output.lines().find_map(|l| l.strip_prefix("Loaded image: ")).unwrap_or_else(|| panic!("docker load said: {output}"));
    name.strip_prefix("docker.io/").unwrap_or(name).to_string()
}

/// `cmd` run in a mount namespace of its own where each `(file, replacement)` of `files` is bind
/// mounted over the machine's `/etc` file: a test's own `/etc/hosts` (names of the test registry),
/// `nsswitch.conf` or `resolv.conf`, the machine's files untouched.
fn with_own_etc(cmd: &Command, files: &[(&str, &Path)]) -> Command {
    let mut script = String::new();
    for (i, (file, _)) in files.iter().enumerate() {
        assert!(Path::new(file).exists(), "{file} is missing on this machine: a test bind mounts its own over it");
        script.push_str(&format!("mount --bind \"${}\" {file} && ", i + 1));
    }
    script.push_str(&format!("shift {} && exec \"$@\"", files.len()));
    let mut wrapped = Command::new("unshare");
    wrapped.args(["--mount", "--propagation", "private", "sh", "-c", &script, "sh"]);
    wrapped.args(files.iter().map(|(_, with)| with)).arg(cmd.get_program()).args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => wrapped.env(key, v),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped.stdin(Stdio::null());
    wrapped
}

/// The test registry (htpasswd, TLS by its own CA) with the sti-fake builder pushed, and a Docker
/// config with its user's credentials for each name it is reached by.
struct NamedRegistry {
    registry: TestRegistry,
    config_dir: PathBuf,
    repo: &'static str,
}

impl NamedRegistry {
    fn start(env: &TestEnv, repo: &'static str) -> NamedRegistry {
        let registry = TestRegistry::start();
        registry.docker_push(&fixture("sti-fake"), repo);
        let localhost = format!("localhost:{}", registry.port());
        let mut auths = registry.auths_config(&registry.named_host(), registry.user());
        auths["auths"][&localhost] = registry.auths_config(&localhost, registry.user())["auths"][&localhost].clone();
        let config_dir = env.work().join("docker-config");
        write_docker_config(&config_dir, &auths);
        NamedRegistry { registry, config_dir, repo }
    }

    /// The builder's name under `host` (`registry.s2i.test:PORT`, `localhost:PORT`).
    fn image(&self, host: &str) -> String {
        format!("{host}/{}", self.repo)
    }
}

/// `--ca-file` makes the oci engine trust a registry signed by a private CA, and so does
/// `SSL_CERT_FILE`; without either, TLS fails as it must for a registry that is not on loopback
/// (here the test registry under a name that its own /etc/hosts maps to 127.0.0.1). A file that
/// cannot be used stops the command before any work, with an error naming the flag or variable.
#[test]
fn the_oci_engine_trusts_a_registry_ca_given_with_ca_file_or_ssl_cert_file() {
    let t = Oci::new("oci-ca-file");
    let reg = NamedRegistry::start(&t.env, "oci-test/sti-fake:ca");
    let host = reg.registry.named_host();
    let image = reg.image(&host);
    let hosts = t.env.work().join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1 localhost {REGISTRY_NAME}\n")).unwrap();
    let ca = reg.registry.ca_cert();
    let run = |extra: &[&str], ssl_cert_file: Option<&Path>| {
        let mut args = vec!["usage", image.as_str(), "--pull-policy", "always"];
        args.extend_from_slice(extra);
        let mut cmd = t.command(&args);
        cmd.env("DOCKER_CONFIG", &reg.config_dir).env_remove("SSL_CERT_DIR");
        match ssl_cert_file {
            Some(file) => cmd.env("SSL_CERT_FILE", file),
            None => cmd.env_remove("SSL_CERT_FILE"),
        };
        t.run_with(with_own_etc(&cmd, &[("/etc/hosts", &hosts)]))
    };

    let (code, _, stderr) = run(&[], None);
    eprintln!("without the CA:\n{stderr}");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("TLS connection to registry {host} failed")) && stderr.contains("certificate"), "{stderr}");
    let (code, stdout, stderr) = run(&["--ca-file", ca.to_str().unwrap()], None);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "sti-fake: a fake s2i builder image for tests\n", "{stderr}");
    assert!(stderr.contains(&format!("Pulled {image}")), "{stderr}");
    let (code, stdout, stderr) = run(&[], Some(&ca));
    assert_eq!((code, stdout.as_str()), (0, "sti-fake: a fake s2i builder image for tests\n"), "{stderr}");

    let not_pem = t.env.work().join("ca.txt");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let refusals = [
        (vec!["--ca-file", "/nonexistent/ca.pem"], None, "cannot use the CA file /nonexistent/ca.pem (--ca-file): No such file or directory".to_string()),
        (vec!["--ca-file", not_pem.to_str().unwrap()], None, format!("cannot use the CA file {} (--ca-file): no PEM certificate in it", not_pem.display())),
        (vec![], Some(Path::new("/nonexistent/bundle.pem")), "cannot use the CA file /nonexistent/bundle.pem (SSL_CERT_FILE): No such file".to_string()),
    ];
    for (args, ssl_cert_file, error) in refusals {
        let (code, _, stderr) = run(&args, ssl_cert_file);
        eprintln!("{stderr}");
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains(&format!("error: {error}")), "{stderr}");
        assert!(stderr.contains("must name a readable PEM file holding one or more CA certificates"), "{stderr}");
        assert!(!stderr.contains("Pulling"), "refused before any work: {stderr}");
    }
    t.assert_clean();
}

/// The static binary finds registries by name without the C library's resolver (whose NSS modules
/// would be the builder image's, for another libc): from /etc/hosts even where nsswitch.conf
/// says `hosts: dns` and no nameserver answers, and `localhost` with no nameserver at all.
#[test]
fn the_static_binary_resolves_registry_names_without_the_c_library() {
    let t = Oci::new("oci-static-names").with_bin(static_s2i());
    let reg = NamedRegistry::start(&t.env, "oci-test/sti-fake:names");
    let etc = t.env.work().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let file = |name: &str, content: &str| {
        let path = etc.join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    // Only the hosts file names the registry; the C library would never read it (nsswitch), and
    // would ask a nameserver that is not there.
    let hosts = file("hosts", &format!("127.0.0.1 {REGISTRY_NAME}\n"));
    let nsswitch = file("nsswitch.conf", "hosts: dns\n");
    let refused_dns = file("resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
    let no_dns = file("resolv.conf.empty", "");
    let run = |image: &str, resolv_conf: &Path| {
        let mut cmd = t.command(&["usage", image, "--pull-policy", "always"]);
        cmd.env("DOCKER_CONFIG", &reg.config_dir).env("SSL_CERT_FILE", reg.registry.ca_cert()).env_remove("SSL_CERT_DIR");
        t.run_with(with_own_etc(&cmd, &[("/etc/hosts", &hosts), ("/etc/nsswitch.conf", &nsswitch), ("/etc/resolv.conf", resolv_conf)]))
    };
    let usage = "sti-fake: a fake s2i builder image for tests\n";
    let (code, stdout, stderr) = run(&reg.image(&reg.registry.named_host()), &refused_dns);
    assert_eq!((code, stdout.as_str()), (0, usage), "{stderr}");
    let (code, stdout, stderr) = run(&reg.image(&format!("localhost:{}", reg.registry.port())), &no_dns);
    assert_eq!((code, stdout.as_str()), (0, usage), "{stderr}");
    // A name nowhere: the error says what was missing.
    let (code, _, stderr) = run("registry.s2i-nowhere.test:5000/x:v1", &no_dns);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot resolve registry.s2i-nowhere.test: it is not in /etc/hosts and there is no nameserver"), "{stderr}");
    t.assert_clean();
}

mod signals;
