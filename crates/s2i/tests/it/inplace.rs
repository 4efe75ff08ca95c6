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
    /// Readable by any uid: the registry's CA and a Docker config logged in to it.
    shared: PathBuf,
    results: PathBuf,
}

impl<'a> Pod<'a> {
    fn new(env: &'a TestEnv, registry: &'a TestRegistry, fixture_name: &str, repo: &str) -> Pod<'a> {
        let local_builder = fixture(fixture_name);
        let (builder, _) = registry.docker_push(&local_builder, repo);
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
        Pod { registry, local_builder, builder, shared, results }
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
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false", "--authfile"])
            .arg(self.registry.docker_config_dir().join("config.json"))
            .arg(format!("docker://{image}"))
            .output()
            .expect("skopeo");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (serde_json::from_slice(&out.stdout).unwrap(), config[0].clone())
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
    for (ours, theirs) in layers.iter().zip(builder_layers) {
        assert_eq!(ours["digest"], theirs["digest"], "the builder's layers as they are");
    }
    assert_eq!(config["Config"]["Cmd"], serde_json::json!(["/usr/libexec/s2i/run"]), "{config}");
    assert_eq!(config["Config"]["User"], "1001");
    assert_eq!(config["Config"]["Labels"]["io.openshift.s2i.build.image"], pod.builder.as_str());

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
    assert!(std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", "--authfile"])
        .arg(registry.docker_config_dir().join("config.json"))
        .arg(format!("docker://{refused}"))
        .output()
        .map(|o| !o.status.success())
        .unwrap(), "nothing pushed");
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
        let out = registry.image(&format!("inplace/repro:v{n}"));
        let (code, stdout, stderr) = pod.s2i_as(
            "1001:0",
            &src,
            &["-e", "SOURCE_DATE_EPOCH=1700000000"],
            &["build", "/workspace/source", &pod.builder, &out, "--push", "--output=json"],
        );
        assert_eq!(code, 0, "{stderr}");
        digests.push(json(&stdout)["pushed"][0]["digest"].as_str().unwrap().to_string());
    }
    assert_eq!(digests[0], digests[1], "the same input, the same image");
    env.assert_clean();
}

/// Not in a container of the builder: run with another image than the one named, the build is
/// refused before anything runs, and nothing is pushed.
#[test]
fn another_image_than_the_builder_is_refused_and_nothing_is_pushed() {
    let env = TestEnv::new("inplace-wrong-builder");
    let registry = TestRegistry::start();
    let pod = Pod::new(&env, &registry, "sti-fake", "inplace/sti-fake:v1");
    // A builder with other environment variables and scripts, named on the command line.
    let (other, _) = registry.docker_push(&fixture("sti-fake-runtime"), "inplace/other:v1");
    let src = app(&env);
    let out = registry.image("inplace/wrong:v1");
    let (code, _, stderr) = pod.s2i_as("1001:0", &src, &[], &["build", "/workspace/source", &other, &out, "--push"]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains(&format!("this process does not run in {other}")) && stderr.contains("top layer"), "{stderr}");
    assert!(!stderr.contains("assemble"), "nothing ran: {stderr}");
    let listed = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", "--authfile"])
        .arg(registry.docker_config_dir().join("config.json"))
        .arg(format!("docker://{out}"))
        .output()
        .unwrap();
    assert!(!listed.status.success(), "nothing pushed");
    env.assert_clean();
}
