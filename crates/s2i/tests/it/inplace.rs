//! The in-place engine (`--engine in-place`) in a simulated restricted pod: a container of the
//! builder image itself, as a non-root user (`--user UID:0`), every capability dropped, no
//! privilege escalation, Docker's default seccomp profile (never `--privileged`), the static s2i
//! binary mounted read-only, the source as a volume, pushing to the test kit's registry (TLS and
//! htpasswd) on loopback. Docker then pulls what was pushed and runs it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use s2i_testkit::{docker_output, docker_run, docker_run_with, fixture, static_s2i, write_file, TestEnv, TestRegistry};
use serde_json::Value;

/// A pod's view: the builder's container with the restricted security context.
struct Pod<'a> {
    registry: &'a TestRegistry,
    /// The builder as the pod runs it (a local image of the daemon) and as s2i names it (in the
    /// registry): the same image.
    local_builder: String,
    builder: String,
    /// The builder's manifest digest in the registry.
    builder_digest: String,
    /// Readable by any uid: the registry's CA and a Docker config logged in to it.
    shared: PathBuf,
    results: PathBuf,
}

impl<'a> Pod<'a> {
    fn new(env: &'a TestEnv, registry: &'a TestRegistry, fixture_name: &str, repo: &str) -> Pod<'a> {
        let local_builder = fixture(fixture_name);
        let (builder, builder_digest) = registry.docker_push(&local_builder, repo);
        let shared = env.work().join("pod-shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::copy(registry.ca_cert(), shared.join("ca.pem")).unwrap();
        std::fs::copy(registry.docker_config_dir().join("config.json"), shared.join("config.json")).unwrap();
        for f in ["ca.pem", "config.json"] {
            std::fs::set_permissions(shared.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        let results = env.work().join("pod-results");
        std::fs::create_dir_all(&results).unwrap();
        // As an emptyDir is: writable by the step's user, whoever it is.
        std::fs::set_permissions(&results, std::fs::Permissions::from_mode(0o777)).unwrap();
        Pod { registry, local_builder, builder, builder_digest, shared, results }
    }

    /// `s2i ARGS` in the pod as `user`, with `src` as the source workspace at /workspace/source;
    /// `extra` docker options before the image.
    fn s2i_as(&self, user: &str, src: &Path, extra: &[&str], args: &[&str]) -> (i32, String, String) {
        let bin = format!("{}:/opt/s2i/s2i:ro", static_s2i().display());
        let source = format!("{}:/workspace/source:ro", src.display());
        let shared = format!("{}:/workspace/shared:ro", self.shared.display());
        let results = format!("{}:/workspace/results", self.results.display());
        let mut options = vec![
            "--network", "host", "--user", user, "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "-v", &bin, "-v", &source, "-v", &shared, "-v", &results, "-e", "DOCKER_CONFIG=/workspace/shared",
        ];
        options.extend_from_slice(extra);
        let mut cmd = vec!["/opt/s2i/s2i"];
        cmd.extend_from_slice(args);
        cmd.extend_from_slice(&["--engine", "in-place", "--ca-file", "/workspace/shared/ca.pem"]);
        docker_run_with(&options, &self.local_builder, &cmd)
    }

    fn build(&self, user: &str, src: &Path, out: &str, more: &[&str]) -> (i32, String, String) {
        let mut args = vec!["build", "/workspace/source", &self.builder, out, "--push", "--output=json"];
        args.extend_from_slice(more);
        self.s2i_as(user, src, &[], &args)
    }

    fn result(&self, name: &str) -> String {
        std::fs::read_to_string(self.results.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// The manifest and config of a pushed image, read with the registry's user.
    fn remote(&self, image: &str) -> (Value, Value) {
        let pulled = self.registry.docker_pull(image);
        let config: Value = serde_json::from_str(&docker_output(&["image", "inspect", pulled.name()])).unwrap();
        drop(pulled);
        let manifest = self.registry.raw_manifest(image).unwrap_or_else(|| panic!("the registry has no manifest of {image}"));
        (serde_json::from_slice(&manifest).unwrap(), config[0].clone())
    }
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn app(env: &TestEnv) -> PathBuf {
    let src = env.work().join("app");
    write_file(&src.join("index.html"), "<h1>hello</h1>\n", 0o644);
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
    src
}

/// The whole path of a Tekton step: the builder's own container as a restricted user builds,
/// pushes (the builder's layers mounted from its repository, then one new layer) and writes the
/// digest and the reference for the pipeline's results; Docker pulls the image and runs it.
impl Pod<'_> {
    /// `s2i build` of `src` to `out` with `args` in the pod as uid 1001:0 (`volumes`: more docker options),
    /// stopped with SIGTERM, as a pipeline's timeout stops a step, once assemble says it sleeps
    /// (sti-fake with ASSEMBLE_SLEEP). Returns s2i's exit code, its stderr up to the signal, and
    /// the rest.
    fn terminated_while_assembling(&self, src: &Path, out: &str, what: &str, volumes: &[&str], args: &[&str]) -> (Option<i32>, String, String) {
        let name = format!("s2i-test-inplace-{what}-{}", std::process::id());
        let bin = format!("{}:/opt/s2i/s2i:ro", static_s2i().display());
        let source = format!("{}:/workspace/source:ro", src.display());
        let shared = format!("{}:/workspace/shared:ro", self.shared.display());
        let mut child = s2i_testkit::engine_command()
            .args(["run", "--name", &name, "--network", "host", "--user", "1001:0", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"])
            .args(["-v", &bin, "-v", &source, "-v", &shared])
            .args(volumes)
            .args(["-e", "DOCKER_CONFIG=/workspace/shared", &self.local_builder])
            .args(["/opt/s2i/s2i", "build", "/workspace/source", &self.builder, out, "--engine", "in-place"])
            .args(args)
            .args(["--ca-file", "/workspace/shared/ca.pem"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            assert!(std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0, "s2i ended before assemble slept: {seen}");
            seen.push_str(&line);
            if line.contains("---> sleeping") {
                break;
            }
        }
        docker_output(&["kill", "-s", "TERM", &name]);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        let status = child.wait().unwrap();
        let _ = s2i_testkit::engine_command().args(["rm", "-f", &name]).output();
        (status.code(), seen, rest)
    }
}

#[test]
fn a_restricted_container_of_the_builder_builds_and_pushes_an_image_that_runs() {
    let env = TestEnv::new("inplace-push");
    let registry = TestRegistry::start();
    let pod = Pod::new(&env, &registry, "sti-fake", "inplace/sti-fake:v1");
    let src = app(&env);
    let out = registry.image("inplace/app:v1");
    let (code, stdout, stderr) =
        pod.build("1001:0", &src, &out, &["--digest-file", "/workspace/results/IMAGE_DIGEST", "--image-url-file", "/workspace/results/IMAGE_URL"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("---> sti-fake assemble (uid 1001, in /opt/app-root/src)"), "{stderr}");
    let doc = json(&stdout);
    assert_eq!(doc["engine"]["kind"], "in-place", "{doc}");
    let digest = doc["pushed"][0]["digest"].as_str().unwrap_or_else(|| panic!("{doc}")).to_string();
    assert_eq!(pod.result("IMAGE_DIGEST"), digest);
    assert_eq!(pod.result("IMAGE_URL"), doc["pushed"][0]["name"].as_str().unwrap());

    let (manifest, config) = pod.remote(&out);
    let (builder_manifest, _) = pod.remote(&pod.builder);
    let layers = manifest["layers"].as_array().unwrap();
    let builder_layers = builder_manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), builder_layers.len() + 1, "the builder's layers and one more: {manifest}");
    let log = registry.log();
    for (ours, theirs) in layers.iter().zip(builder_layers) {
        assert_eq!(ours["digest"], theirs["digest"], "the builder's layers as they are");
        // Mounted from the builder's repository, never uploaded.
        let digest = theirs["digest"].as_str().unwrap().replace(':', "%3A");
        assert!(log.contains(&format!("/v2/inplace/app/blobs/uploads/?mount={digest}")), "{digest} was not mounted:\n{log}");
        assert!(!log.lines().any(|l| l.contains("method=PUT") && l.contains("inplace/app/blobs/uploads") && l.contains(&digest)), "{digest} was uploaded");
    }
    assert_eq!(config["Config"]["Cmd"], serde_json::json!(["/usr/libexec/s2i/run"]), "{config}");
    assert_eq!(config["Config"]["User"], "1001");
    assert_eq!(config["Config"]["Labels"]["io.openshift.s2i.build.image"], pod.builder.as_str());
    // The standard keys are the manifest's annotations too, the builder's digest among them.
    assert_eq!(manifest["annotations"]["org.opencontainers.image.base.name"], pod.builder.as_str(), "{manifest}");
    assert_eq!(manifest["annotations"]["org.opencontainers.image.base.digest"], pod.builder_digest.as_str(), "{manifest}");

    let pulled = registry.docker_pull(&out);
    let (code, stdout, stderr) = docker_run(pulled.name(), &[]);
    assert_eq!((code, stdout.as_str()), (0, "sti-fake run: .sti-fake-assemble-env .sti-fake-assembled index.html \n"), "{stderr}");
    drop(pulled);
    assert!(!stderr.contains(&registry.user().password));
    env.assert_clean();
}

/// OpenShift's arbitrary uid in group 0 builds with a builder made for it (group-writable
/// directories); --allowed-uids judges that uid, and refuses root before anything runs or is
/// pushed.
#[test]
fn an_arbitrary_uid_in_group_0_builds_and_allowed_uids_judges_the_uid_that_runs() {
    let env = TestEnv::new("inplace-uid");
    let registry = TestRegistry::start();
    let pod = Pod::new(&env, &registry, "sti-fake", "inplace/sti-fake:v1");
    let src = app(&env);
    let out = registry.image("inplace/openshift:v1");
    let (code, _, stderr) = pod.build("1000680000:0", &src, &out, &["--allowed-uids", "1000-"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("---> sti-fake assemble (uid 1000680000, in /opt/app-root/src)"), "{stderr}");
    let pulled = registry.docker_pull(&out);
    assert_eq!(docker_run(pulled.name(), &["cat", "index.html"]).1, "<h1>hello</h1>\n");
    drop(pulled);

    let refused = registry.image("inplace/refused:v1");
    let (code, _, stderr) = pod.build("0:0", &src, &refused, &["--allowed-uids", "1000-"]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("uid 0") && stderr.contains("not allowed"), "{stderr}");
    assert!(!stderr.contains("sti-fake assemble"), "nothing ran: {stderr}");
    assert!(!registry.holds(&refused), "nothing pushed");
    env.assert_clean();
}

/// Two in-place builds of the same input with SOURCE_DATE_EPOCH push the same digest.
#[test]
fn two_in_place_builds_with_source_date_epoch_push_the_same_digest() {
    let env = TestEnv::new("inplace-reproducible");
    let registry = TestRegistry::start();
    let pod = Pod::new(&env, &registry, "sti-fake", "inplace/sti-fake:v1");
    let src = app(&env);
    let mut digests = Vec::new();
    for n in 1..=2 {
        // One tag: it is a label of the image (io.k8s.display-name).
        let out = registry.image("inplace/repro:v1");
        let archive = format!("docker-archive:/workspace/results/build-{n}.tar");
        let (code, stdout, stderr) = pod.s2i_as(
            "1001:0",
            &src,
            // The same host name: assemble writes its environment into the image.
            &["-e", "SOURCE_DATE_EPOCH=1700000000", "--hostname", "inplace-build"],
            &["build", "/workspace/source", &pod.builder, &out, "--push", "--output=json", "--output-archive", &archive],
        );
        assert_eq!(code, 0, "{stderr}");
        digests.push(json(&stdout)["pushed"][0]["digest"].as_str().unwrap().to_string());
    }
    let saved = [1, 2].map(|n| saved_image(&pod.results.join(format!("build-{n}.tar"))));
    assert_eq!(saved[0].1, saved[1].1, "the same files");
    assert_eq!(saved[0].0, saved[1].0, "the same config");
    assert_eq!(digests[0], digests[1], "the same input, the same image");
    env.assert_clean();
}

/// Not in a container of the builder (in another image than the one named, or on the host), the
/// build is refused before anything runs, and nothing is pushed.
#[test]
fn another_image_than_the_builder_is_refused_and_nothing_is_pushed() {
    let env = TestEnv::new("inplace-wrong-builder");
    let registry = TestRegistry::start();
    let pod = Pod::new(&env, &registry, "sti-fake", "inplace/sti-fake:v1");
    // Another builder on the same base, with the same environment: only its layers differ.
    let (other, _) = registry.docker_push(&fixture("verify-env"), "inplace/other:v1");
    let src = app(&env);
    let out = registry.image("inplace/wrong:v1");
    let (code, _, stderr) = pod.s2i_as("1001:0", &src, &[], &["build", "/workspace/source", &other, &out, "--push"]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains(&format!("this process does not run in {other}")) && stderr.contains("top layer"), "{stderr}");
    assert!(!stderr.contains("sti-fake assemble"), "nothing ran: {stderr}");
    assert!(!registry.holds(&out), "nothing pushed");

    // On this host, outside any container of the builder: refused the same way, nothing pushed.
    let mut cmd = env.s2i();
    cmd.args(["build", src.to_str().unwrap(), &pod.builder, &out, "--push", "--engine", "in-place"]).env("DOCKER_CONFIG", registry.docker_config_dir());
    let done = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("this process does not run in {}", pod.builder)) || stderr.contains("cannot build outside a container"),
        "{stderr}"
    );
    assert!(!stderr.contains("sti-fake assemble"), "nothing ran: {stderr}");
    assert!(!registry.holds(&out), "nothing pushed");
    env.assert_clean();
}

/// The files of the last layer of a `docker save` archive: path, and link target for symlinks.
fn last_layer(archive: &Path) -> Vec<(String, Option<String>)> {
    let dir = tempfile::tempdir().unwrap();
    tar::Archive::new(std::fs::File::open(archive).unwrap()).unpack(dir.path()).unwrap();
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    let file = std::fs::File::open(dir.path().join(layers.last().unwrap().as_str().unwrap())).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(file), &mut raw).ok();
    let data = if raw.is_empty() { std::fs::read(dir.path().join(layers.last().unwrap().as_str().unwrap())).unwrap() } else { raw };
    tar::Archive::new(&data[..])
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().display().to_string(), e.link_name().unwrap().map(|l| l.display().to_string()))
        })
        .collect()
}

/// The config and the last layer's entries (every header field and the content's length and
/// bytes) of a `docker save` archive.
fn saved_image(archive: &Path) -> (Value, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    tar::Archive::new(std::fs::File::open(archive).unwrap()).unpack(dir.path()).unwrap();
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    let config: Value = serde_json::from_slice(&std::fs::read(dir.path().join(manifest[0]["Config"].as_str().unwrap())).unwrap()).unwrap();
    let mut layer = std::fs::read(dir.path().join(manifest[0]["Layers"].as_array().unwrap().last().unwrap().as_str().unwrap())).unwrap();
    if layer.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&layer[..]), &mut plain).unwrap();
        layer = plain;
    }
    let mut entries = Vec::new();
    for e in tar::Archive::new(&layer[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        entries.push(format!(
            "{} {:?} {:o} {}:{} {} {:?}",
            e.path().unwrap().display(),
            h.entry_type(),
            h.mode().unwrap(),
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.mtime().unwrap(),
            String::from_utf8_lossy(&data)
        ));
    }
    (config, entries)
}

/// Hostile assemble scripts (from the source's .s2i/bin): one that deletes a file of the builder
/// (its layer has the whiteout, the image lacks the file), writes under a mounted workspace (not
/// in the layer) and symlinks to /proc (the link is carried, nothing read through it); one that
/// leaves a FIFO (an error naming it, no archive written).
#[test]
fn hostile_assemble_scripts_give_exactly_the_root_s_changes() {
    let env = TestEnv::new("inplace-hostile");
    let registry = TestRegistry::start();
    let pod = Pod::new(&env, &registry, "sti-fake", "inplace/sti-fake:v1");
    let src = app(&env);
    write_file(
        &src.join(".s2i/bin/assemble"),
        "#!/bin/sh\nset -e\ncp -Rf /tmp/src/index.html ./\nrm -f /usr/libexec/s2i/usage\necho leaked > /workspace/results/under-a-mount\nln -s /proc/self/environ ./proc-link\n",
        0o755,
    );
    std::fs::set_permissions(src.join(".s2i"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(src.join(".s2i/bin"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = registry.image("inplace/hostile:v1");
    // Root without capabilities: it owns the builder's files, nothing more.
    let (code, _, stderr) = pod.s2i_as(
        "0:0",
        &src,
        &[],
        &["build", "/workspace/source", &pod.builder, &out, "--output-archive", "docker-archive:/workspace/results/image.tar"],
    );
    assert_eq!(code, 0, "{stderr}");
    let entries = last_layer(&pod.results.join("image.tar"));
    let names: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    assert!(names.contains(&"usr/libexec/s2i/.wh.usage"), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("workspace")), "nothing under a mount: {names:?}");
    assert!(!names.iter().any(|n| n.starts_with("proc/") || n.starts_with("etc/hosts") || n.starts_with("opt/s2i")), "{names:?}");
    let link = entries.iter().find(|(p, _)| p == "opt/app-root/src/proc-link").unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!(link.1.as_deref(), Some("/proc/self/environ"), "the link itself");
    assert_eq!(std::fs::read_to_string(pod.results.join("under-a-mount")).unwrap(), "leaked\n", "it went to the workspace");

    let loaded = docker_output(&["load", "-i", pod.results.join("image.tar").to_str().unwrap()]);
    assert!(loaded.contains("inplace/hostile:v1"), "{loaded}");
    let (code, stdout, _) = docker_run(&out, &["ls", "/usr/libexec/s2i"]);
    assert_eq!((code, stdout.as_str()), (0, "assemble\nrun\nsave-artifacts\n"));
    docker_output(&["rmi", &out]);
    std::fs::remove_file(pod.results.join("image.tar")).unwrap();

    write_file(&src.join(".s2i/bin/assemble"), "#!/bin/sh\nset -e\ncp -Rf /tmp/src/index.html ./\nmkfifo ./a-fifo\n", 0o755);
    let (code, _, stderr) = pod.s2i_as(
        "1001:0",
        &src,
        &[],
        &["build", "/workspace/source", &pod.builder, &out, "--output-archive", "docker-archive:/workspace/results/image.tar"],
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("/opt/app-root/src/a-fifo (a FIFO)") && stderr.contains("cannot carry"), "{stderr}");
    assert!(!pod.results.join("image.tar").exists(), "no archive");
    env.assert_clean();
}

/// Every file under the directories a build touches, as `docker run` of `image` sees them: path,
/// type, mode, owner, size, content digest, link target. Times are left out.
fn files_of(image: &str) -> String {
    let script = "find /opt /tmp /usr/libexec/s2i -xdev | sort | while read -r f; do \
                  if [ -L \"$f\" ]; then echo \"$f link $(stat -c '%a %u:%g' \"$f\") -> $(readlink \"$f\")\"; \
                  elif [ -f \"$f\" ]; then echo \"$f file $(stat -c '%a %u:%g %s' \"$f\") $(md5sum < \"$f\" | cut -c1-32)\"; \
                  else echo \"$f $(stat -c '%F %a %u:%g' \"$f\")\"; fi; done";
    let (code, stdout, stderr) = docker_run_with(&["--user", "0:0"], image, &["sh", "-c", script]);
    assert_eq!(code, 0, "{stderr}");
    stdout
}

/// The same source and builder through the in-place engine (in a restricted container) and
/// through `--engine oci` give the same files (path, type, mode, owner, content, link target) and
/// the same config, times aside.
#[test]
fn in_place_and_the_oci_engine_give_the_same_files_and_config() {
    let t = crate::oci::Oci::new("inplace-vs-oci");
    let registry = TestRegistry::start();
    let pod = Pod::new(&t.env, &registry, "sti-fake", "inplace/sti-fake:v1");
    let src = app(&t.env);
    write_file(&src.join("lib/link-target"), "x\n", 0o644);
    std::os::unix::fs::symlink("../index.html", src.join("lib/link")).unwrap();
    std::fs::set_permissions(src.join("lib"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = registry.image("inplace/same:v1");
    let (code, _, stderr) = pod.s2i_as(
        "1001:0",
        &src,
        &[],
        &["build", "/workspace/source", &pod.builder, &out, "--keep-symlinks", "--output-archive", "docker-archive:/workspace/results/in-place.tar"],
    );
    assert_eq!(code, 0, "{stderr}");
    let oci_archive = t.env.work().join("oci.tar");
    let mut cmd = t.command(&[
        "build", src.to_str().unwrap(), &pod.builder, &out, "--keep-symlinks", "--output-archive", &format!("docker-archive:{}", oci_archive.display()),
    ]);
    cmd.env("DOCKER_CONFIG", registry.docker_config_dir());
    let done = cmd.output().unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));

    let mut seen = Vec::new();
    for archive in [pod.results.join("in-place.tar"), oci_archive] {
        let (config, _) = saved_image(&archive);
        docker_output(&["load", "-i", archive.to_str().unwrap()]);
        // assemble writes its environment (host names differ) into this file: its content is
        // the one thing that may differ.
        let files: Vec<String> =
            files_of(&out).lines().map(|l| if l.starts_with("/opt/app-root/src/.sti-fake-assemble-env ") { l.rsplitn(3, ' ').nth(2).unwrap().to_string() } else { l.to_string() }).collect();
        docker_output(&["rmi", &out]);
        let mut config = config["config"].clone();
        // The source's path is a label: /workspace/source in the pod, a temp dir on the host.
        config["Labels"].as_object_mut().unwrap().remove("io.openshift.s2i.build.source-location");
        // A timestamp: the config "less timestamps" is what must match.
        config["Labels"].as_object_mut().unwrap().remove("org.opencontainers.image.created");
        config.as_object_mut().unwrap().remove("Image");
        seen.push((files, config));
    }
    assert!(seen[0].0.iter().any(|l| l.starts_with("/opt/app-root/src/index.html file 644 1001:0 15 ")), "{:?}", seen[0].0);
    assert!(seen[0].0.iter().any(|l| l.starts_with("/opt/app-root/src/lib/link link") && l.ends_with("-> ../index.html")), "{:?}", seen[0].0);
    assert_eq!(seen[0].0, seen[1].0, "the same files");
    assert_eq!(seen[0].1, seen[1].1, "the same config");
    t.assert_clean();
}

/// SIGTERM (a pipeline's timeout) while assemble runs: the build and its scripts stop, s2i exits
/// non-zero, and nothing is pushed.
#[test]
fn sigterm_during_assemble_stops_the_build_and_pushes_nothing() {
    let env = TestEnv::new("inplace-sigterm");
    let registry = TestRegistry::start();
    let pod = Pod::new(&env, &registry, "sti-fake", "inplace/sti-fake:v1");
    let src = app(&env);
    let out = registry.image("inplace/interrupted:v1");
    let (code, seen, rest) = pod.terminated_while_assembling(&src, &out, "sigterm", &[], &["--push", "-e", "ASSEMBLE_SLEEP=600"]);
    assert_ne!(code, Some(0), "{seen}{rest}");
    assert!(rest.contains("interrupted"), "{seen}{rest}");
    assert!(!registry.holds(&out), "nothing pushed");
    env.assert_clean();
}

/// `--secret` in the pod: the step's memory volume at /run/secrets (what an emptyDir with
/// medium: Memory is: a tmpfs, `--tmpfs` here) takes the secret for assemble; the value is in no
/// pushed blob, the config, the results or anything s2i printed, and the volume is empty again
/// when the build ends. A pod without that volume gets an error that says what it needs, before
/// anything is written or pushed.
#[test]
fn a_secret_lives_in_the_pod_s_memory_volume_and_nowhere_else() {
    use crate::secrets::{assert_absent, assert_archive_clean, forbidden, random_value, sha256_hex};
    let env = TestEnv::new("inplace-secret");
    let registry = TestRegistry::start();
    let pod = Pod::new(&env, &registry, "sti-fake", "inplace/sti-fake:v1");
    let src = app(&env);
    write_file(
        &src.join(".s2i/bin/assemble"),
        "#!/bin/sh\nset -e\ncp -R /tmp/src/. ./\n\
         sha256sum /run/secrets/token | cut -d' ' -f1 > token.sha\n\
         stat -c '%a %u' /run/secrets/token > token.stat\n\
         echo assembled with the secret\n",
        0o755,
    );
    for d in [".s2i", ".s2i/bin"] {
        std::fs::set_permissions(src.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let token = random_value();
    let secrets = env.work().join("secrets");
    write_file(&secrets.join("token"), &token, 0o644);
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mount = format!("{}:/workspace/secrets:ro", secrets.display());
    let out = registry.image("inplace/secret-app:v1");
    let args = [
        "build", "/workspace/source", pod.builder.as_str(), out.as_str(), "--push", "--output=json", "--loglevel", "5",
        "--secret", "id=token,src=/workspace/secrets/token", "--digest-file", "/workspace/results/IMAGE_DIGEST",
    ];
    // A check at the end of the same step: the memory volume holds nothing once s2i is done.
    let (code, stdout, stderr) = pod.s2i_as("1001:0", &src, &["-v", &mount, "--tmpfs", "/run/secrets:rw,mode=1777"], &args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("assembled with the secret"), "{stderr}");
    let forms = forbidden(&token);
    assert_absent("stdout (the JSON result)", stdout.as_bytes(), &forms);
    assert_absent("stderr at --loglevel 5", stderr.as_bytes(), &forms);
    assert_absent("the digest result", pod.result("IMAGE_DIGEST").as_bytes(), &forms);

    let pulled = registry.docker_pull(&out);
    let read = |f: &str| docker_run(pulled.name(), &["cat", f]).1.trim().to_string();
    assert_eq!(read("token.sha"), sha256_hex(&token), "assemble read the secret");
    assert_eq!(read("token.stat"), "400 1001", "the build's uid wrote it, for itself alone");
    let (_, listing, _) = docker_run(pulled.name(), &["sh", "-c", "ls -A /run/secrets 2>/dev/null; true"]);
    assert_eq!(listing.trim(), "", "the image has no secrets");
    let saved = env.tmpdir().join("pushed.tar");
    docker_output(&["save", "-o", saved.to_str().unwrap(), pulled.name()]);
    assert_archive_clean("the pushed image (every layer and the config)", &saved, &forms);
    std::fs::remove_file(&saved).unwrap();
    assert_absent("the pushed image's inspect", docker_output(&["image", "inspect", pulled.name()]).as_bytes(), &forms);
    drop(pulled);

    // Emptied when the build ends: s2i, then a look at the volume, in one container.
    let script = format!(
        "/opt/s2i/s2i build /workspace/source {} {} --push --engine in-place --ca-file /workspace/shared/ca.pem --secret id=token,src=/workspace/secrets/token >/dev/null 2>&1; echo \"exit=$? left=$(ls -A /run/secrets)\"",
        pod.builder,
        registry.image("inplace/secret-app:v2")
    );
    let bin = format!("{}:/opt/s2i/s2i:ro", static_s2i().display());
    let (source, shared) = (format!("{}:/workspace/source:ro", src.display()), format!("{}:/workspace/shared:ro", pod.shared.display()));
    let options = [
        "--network", "host", "--user", "1001:0", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "-v", &bin, "-v", &source, "-v", &shared,
        "-v", &mount, "--tmpfs", "/run/secrets:rw,mode=1777", "-e", "DOCKER_CONFIG=/workspace/shared", "--entrypoint", "/bin/sh",
    ];
    let (_, said, stderr) = docker_run_with(&options, &pod.local_builder, &["-c", &script]);
    assert_eq!(said.trim(), "exit=0 left=", "{stderr}");

    // No memory volume: refused, saying what the step needs; nothing pushed.
    let refused = registry.image("inplace/secret-app:refused");
    let mut args = args.to_vec();
    args[3] = refused.as_str();
    let (code, stdout, stderr) = pod.s2i_as("1001:0", &src, &["-v", &mount], &args);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("/run/secrets") && stderr.contains("emptyDir with medium: Memory") && stderr.contains("never written to disk"), "{stderr}");
    assert!(!stderr.contains("assembled with the secret"), "{stderr}");
    assert_absent("stderr of the refused build", stderr.as_bytes(), &forms);
    assert_absent("stdout of the refused build", stdout.as_bytes(), &forms);
    env.assert_clean();
}

/// A cache workspace as a pod has it: a directory any uid can write.
fn cache_dir(env: &TestEnv) -> PathBuf {
    let dir = env.work().join("pod-cache");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// The cache's files, with their contents.
fn cache_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()).map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())).collect();
    files.sort();
    files
}

impl Pod<'_> {
    /// An incremental build with the cache workspace at /workspace/cache.
    fn cached_build(&self, src: &Path, cache: &Path, out: &str, more: &[&str]) -> (i32, String, String) {
        let volume = format!("{}:/workspace/cache", cache.display());
        let mut args = vec!["build", "/workspace/source", &self.builder, out, "--push", "--incremental", "--cache-dir", "/workspace/cache"];
        args.extend_from_slice(more);
        self.s2i_as("1001:0", src, &["-v", &volume], &args)
    }
}

/// A source whose build leaves artifacts (sti-fake's save-artifacts keeps `artifacts/`).
fn app_with_artifacts(env: &TestEnv) -> PathBuf {
    let src = env.work().join("app-artifacts");
    write_file(&src.join("index.html"), "<h1>first</h1>\n", 0o644);
    write_file(&src.join("artifacts/first.txt"), "kept by the first build\n", 0o644);
    for d in [src.clone(), src.join("artifacts")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    src
}

fn has_first_artifact(registry: &TestRegistry, out: &str) -> bool {
    let pulled = registry.docker_pull(out);
    let (code, stdout, _) = docker_run(pulled.name(), &["cat", "/opt/app-root/src/artifacts/first.txt"]);
    code == 0 && stdout == "kept by the first build\n"
}

/// --incremental with --cache-dir: the first build keeps save-artifacts' tar in the workspace,
/// the second (another source, without those files) restores it to /tmp/artifacts before
/// assemble; a cache entry that is corrupt is a warning and a clean build, and is written anew.
/// Without --cache-dir, --incremental is refused with the flag to pass.
#[test]
fn a_second_incremental_build_restores_the_first_ones_artifacts_from_the_cache_dir() {
    let env = TestEnv::new("inplace-cache");
    let registry = TestRegistry::start();
    let pod = Pod::new(&env, &registry, "sti-fake", "inplace/sti-fake:v1");
    let cache = cache_dir(&env);
    let out = registry.image("inplace/cached:v1");

    let (code, _, stderr) = pod.build("1001:0", &app(&env), &out, &["--incremental"]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("--cache-dir"), "says what to pass: {stderr}");

    let (code, _, stderr) = pod.cached_build(&app_with_artifacts(&env), &cache, &out, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("restoring artifacts"), "a first build is clean: {stderr}");
    assert!(stderr.contains("Read the manifest and config of ") && !stderr.contains("0 layers"), "says what was read: {stderr}");
    let kept = cache_files(&cache);
    assert_eq!(kept.len(), 1, "one entry, no sidecar left: {:?}", kept.iter().map(|f| &f.0).collect::<Vec<_>>());
    assert!(kept[0].0.starts_with("s2i-artifacts-") && kept[0].0.ends_with(".tar"), "{}", kept[0].0);

    // The second build's source has no artifacts of its own: what the image has came from the cache.
    let (code, _, stderr) = pod.cached_build(&app(&env), &cache, &out, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("---> restoring artifacts"), "{stderr}");
    assert!(has_first_artifact(&registry, &out), "the first build's artifacts are in the second image");

    // Another output name is another entry: nothing restored.
    let other = registry.image("inplace/other:v1");
    let (code, _, stderr) = pod.cached_build(&app(&env), &cache, &other, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("restoring artifacts"), "{stderr}");

    // A corrupt entry: a warning, a clean build, and a good entry again afterwards.
    let entry = cache.join(&kept[0].0);
    std::fs::write(&entry, "this is not a tar archive\n".repeat(100)).unwrap();
    let (code, _, stderr) = pod.cached_build(&app_with_artifacts(&env), &cache, &out, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Clean build will be performed") && stderr.contains("not usable"), "{stderr}");
    assert!(!stderr.contains("---> restoring artifacts"), "{stderr}");
    let (code, _, stderr) = pod.cached_build(&app(&env), &cache, &out, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("---> restoring artifacts"), "the entry was written anew: {stderr}");
    env.assert_clean();
}

/// SIGTERM while the second build's assemble runs: the cache entry is the first build's, byte
/// for byte, and no sidecar is left.
#[test]
fn sigterm_during_an_incremental_build_leaves_the_cache_as_it_was() {
    let env = TestEnv::new("inplace-cache-sigterm");
    let registry = TestRegistry::start();
    let pod = Pod::new(&env, &registry, "sti-fake", "inplace/sti-fake:v1");
    let cache = cache_dir(&env);
    let out = registry.image("inplace/cached-term:v1");
    let (code, _, stderr) = pod.cached_build(&app_with_artifacts(&env), &cache, &out, &[]);
    assert_eq!(code, 0, "{stderr}");
    let before = cache_files(&cache);
    assert_eq!(before.len(), 1);

    let src = app(&env);
    let volume = format!("{}:/workspace/cache", cache.display());
    let (code, seen, rest) = pod.terminated_while_assembling(
        &src,
        &out,
        "cache-sigterm",
        &["-v", &volume],
        &["--push", "-e", "ASSEMBLE_SLEEP=600", "--incremental", "--cache-dir", "/workspace/cache"],
    );
    assert_ne!(code, Some(0), "{seen}{rest}");
    assert!(cache_files(&cache) == before, "the cache is the first build's: {seen}{rest}");
    env.assert_clean();
}

/// A cache volume too small for the artifacts: the build fails naming the cache directory and
/// the full volume, before anything is pushed, and the volume holds no sidecar.
#[test]
fn a_full_cache_volume_fails_the_build_before_the_push() {
    let env = TestEnv::new("inplace-cache-full");
    let registry = TestRegistry::start();
    let pod = Pod::new(&env, &registry, "sti-fake", "inplace/sti-fake:v1");
    let src = app_with_artifacts(&env);
    // Artifacts bigger than the volume.
    let big: String = (0..40_000).map(|i| format!("{i:08}\n")).collect();
    write_file(&src.join("artifacts/big.txt"), &big, 0o644);
    let out = registry.image("inplace/cached-full:v1");
    let (code, _, stderr) = pod.s2i_as(
        "1001:0",
        &src,
        &["--tmpfs", "/workspace/cache:size=64k,mode=1777"],
        &["build", "/workspace/source", &pod.builder, &out, "--push", "--incremental", "--cache-dir", "/workspace/cache"],
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("/workspace/cache") && stderr.contains("full"), "{stderr}");
    assert!(!registry.holds(&out), "nothing pushed");
    env.assert_clean();
}

/// --cache-dir is not the in-place engine's alone: with Docker, save-artifacts runs in a
/// container of the new image (the source's own .s2i/bin script), its tar is kept in the
/// directory, and the next build restores it even when the previous image is gone.
#[test]
fn the_docker_engine_keeps_and_restores_artifacts_through_the_cache_dir() {
    let env = TestEnv::new("cache-docker");
    let builder = env.alias(&fixture("sti-fake"));
    let out = env.tag("app");
    let src = crate::apps::incremental_app(&env).to_string();
    let cache = env.work().join("cache");
    let cache_arg = cache.to_str().unwrap();

    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--incremental", "--cache-dir", cache_arg, "-e", "BUILD_NO=1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("---> installed deps") && stderr.contains("---> saving deps"), "{stderr}");
    assert_eq!(cache_files(&cache).len(), 1);
    // The previous image is gone: the artifacts can only come from the cache.
    docker_output(&["rmi", &out]);
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--incremental", "--cache-dir", cache_arg, "-e", "BUILD_NO=2"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("---> reusing deps from build-1"), "{stderr}");
    assert_eq!(docker_run(&out, &["cat", "deps/installed"]).1, "build-1\n");

    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--cache-dir", cache_arg]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--cache-dir") && stderr.contains("--incremental"), "{stderr}");
    env.assert_clean();
}

/// --runtime-image on the in-place engine: a runtime image without scripts of its own is
/// composed from its layers (mounted from its repository) and one layer with the mapped
/// artifacts and the shipped run script, no container of it ever started; Docker pulls and runs
/// the result. A runtime image whose assemble-runtime must run is refused, naming the engines
/// that can, and nothing is pushed.
#[test]
fn a_runtime_image_is_composed_from_its_layers_and_the_artifacts() {
    let env = TestEnv::new("inplace-runtime");
    let registry = TestRegistry::start();
    let pod = Pod::new(&env, &registry, "sti-fake", "inplace/sti-fake:v1");
    let (runtime, _) = registry.docker_push(&s2i_testkit::base_image(), "inplace/slim:v1");
    let src = env.work().join("app-runtime");
    write_file(&src.join("dist/app.txt"), "shipped\n", 0o644);
    write_file(&src.join("build-only.txt"), "not shipped\n", 0o644);
    write_file(&src.join(".s2i/bin/run"), "#!/bin/sh\necho \"slim run: $(cat /app/dist/app.txt)\"\n", 0o755);
    for d in [src.clone(), src.join("dist"), src.join(".s2i"), src.join(".s2i/bin")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = registry.image("inplace/composed:v1");
    let (code, _, stderr) = pod.build("1001:0", &src, &out, &["--runtime-image", &runtime, "-a", "/opt/app-root/src/dist:app"]);
    assert_eq!(code, 0, "{stderr}");
    let (manifest, config) = pod.remote(&out);
    let (runtime_manifest, _) = pod.remote(&runtime);
    let layers = manifest["layers"].as_array().unwrap();
    let runtime_layers = runtime_manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), runtime_layers.len() + 1, "the runtime image's layers and one more: {manifest}");
    for (ours, theirs) in layers.iter().zip(runtime_layers) {
        assert_eq!(ours["digest"], theirs["digest"], "the runtime image's layers as they are");
    }
    assert_eq!(config["Config"]["Cmd"], serde_json::json!(["/scripts/run"]), "{config}");
    let pulled = registry.docker_pull(&out);
    let (code, stdout, stderr) = docker_run(pulled.name(), &[]);
    assert_eq!((code, stdout.as_str()), (0, "slim run: shipped\n"), "{stderr}");
    let (_, listing, _) = docker_run(pulled.name(), &["find", "/app", "/scripts"]);
    assert_eq!(listing, "/app\n/app/dist\n/app/dist/app.txt\n/scripts\n/scripts/run\n", "only the artifacts and the run script");
    drop(pulled);

    let (scripted, _) = registry.docker_push(&fixture("sti-fake-runtime"), "inplace/sti-fake-runtime:v1");
    let refused = registry.image("inplace/refused-runtime:v1");
    let (code, _, stderr) = pod.build("1001:0", &src, &refused, &["--runtime-image", &scripted]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("assemble-runtime") && stderr.contains("--engine docker") && stderr.contains("podman") && stderr.contains("--engine oci"), "{stderr}");
    assert!(!stderr.contains("sti-fake assemble"), "refused before anything ran: {stderr}");
    assert!(!registry.holds(&refused), "nothing pushed");
    env.assert_clean();
}
