//! Builds in an unprivileged pod, without a cluster: the steps of the project's Tekton Task
//! (`deploy/tekton/s2i.yaml`) and Shipwright strategy (`deploy/shipwright/s2i.yaml`), read from
//! those files and run by the test kit's pod harness ([`TaskPod`]) the way Tekton runs them: each
//! step a container of its image, its securityContext mapped (`--user`, `--cap-drop ALL`,
//! `--security-opt no-new-privileges`, the engine's default seccomp profile, never privileged),
//! params, workspaces and results substituted, pushing to the test kit's registry on loopback
//! with TLS and credentials.
//!
//! First the harness itself, on a small Task of the test's own: that what a step sees is what a
//! restricted pod's container sees, so that the tests of the real files mean something.

use std::path::{Path, PathBuf};

use s2i_testkit::{
    base_image, docker_output, docker_run, fixture, s2i_image, write_docker_config, write_file, PodOutcome, PulledImage, TaskPod, TestEnv, TestRegistry,
};

/// OpenShift's kind of user: an arbitrary uid of the namespace's range, in group 0.
const OPENSHIFT_UID: u32 = 1_000_680_000;

/// A Task of the test's own, with the real Task's first step and a step that reports what it sees,
/// both under the restricted securityContext of its stepTemplate (which the harness applies as
/// Tekton does); the last step's own securityContext replaces the template's.
const HARNESS_TASK: &str = r#"
apiVersion: tekton.dev/v1
kind: Task
metadata:
  name: harness-check
spec:
  params:
    - name: S2I_IMAGE
      type: string
    - name: STEP_IMAGE
      type: string
    - name: WORDS
      type: array
  workspaces:
    - name: source
      readOnly: true
    - name: unbound
      optional: true
  results:
    - name: OUT
  volumes:
    - name: s2i-bin
      emptyDir: {}
  stepTemplate:
    securityContext:
      runAsNonRoot: true
      allowPrivilegeEscalation: false
      capabilities:
        drop: ["ALL"]
      seccompProfile:
        type: RuntimeDefault
  steps:
    - name: copy-s2i
      image: $(params.S2I_IMAGE)
      command: ["/s2i"]
      args: ["copy-binary", "/s2i-bin"]
      volumeMounts:
        - name: s2i-bin
          mountPath: /s2i-bin
    - name: look
      image: $(params.STEP_IMAGE)
      workingDir: $(workspaces.source.path)
      volumeMounts:
        - name: s2i-bin
          mountPath: /s2i-bin
          readOnly: true
      env:
        - name: BOUND
          value: $(workspaces.unbound.bound)
      args: ["$(params.WORDS[*])"]
      script: |
        #!/bin/sh
        set -e
        [ "$1" != fail ] || exit 7
        echo "uid=$(id -u) gid=$(id -g) pwd=$(pwd) bound=$BOUND args=$*"
        grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\t ' ' '
        cat app.txt
        if touch app.txt 2>/dev/null; then echo "the read-only workspace took a write"; fi
        /s2i-bin/s2i version
        printf done > $(results.OUT.path)
    - name: after
      image: $(params.STEP_IMAGE)
      command: ["/bin/sh", "-c", "echo after"]
      securityContext:
        runAsNonRoot: true
"#;

fn harness_task(env: &TestEnv) -> PathBuf {
    let file = env.work().join("task.yaml");
    write_file(&file, HARNESS_TASK, 0o644);
    file
}

fn source(env: &TestEnv) -> PathBuf {
    let src = env.work().join("src");
    write_file(&src.join("app.txt"), "the app\n", 0o644);
    src
}

/// Whether a container named in the step's `docker run` arguments still exists.
fn container_left(args: &[String]) -> bool {
    let name = &args[args.iter().position(|a| a == "--name").expect("--name") + 1];
    !docker_output(&["ps", "-a", "--filter", &format!("name=^{name}$"), "--format", "{{.Names}}"]).is_empty()
}

/// A step sees what a container of a restricted pod sees: the pod's arbitrary uid in group 0, no
/// capability at all, no_new_privs, the runtime's default seccomp filter (mode 2), the workspace
/// read-only as declared, an unbound optional workspace as `bound=false`, the array param as its
/// arguments, the binary the first step copied through the emptyDir, and its result; every
/// container is removed afterwards.
#[test]
fn the_pod_harness_runs_steps_as_a_restricted_pod_runs_them() {
    let env = TestEnv::new("pod-harness");
    let outcome = TaskPod::tekton_task(&harness_task(&env), "harness-check")
        .param("S2I_IMAGE", &s2i_image())
        .param("STEP_IMAGE", &fixture("sti-fake"))
        .array_param("WORDS", &["a b", "c"])
        .workspace("source", &source(&env))
        .run_as(OPENSHIFT_UID, Some(0))
        .run();
    outcome.assert_succeeded();
    let look = outcome.step("look");
    let lines: Vec<&str> = look.stdout.lines().collect();
    assert_eq!(
        lines[..5],
        [
            &format!("uid={OPENSHIFT_UID} gid=0 pwd=/workspace/source bound=false args=a b c") as &str,
            "CapEff: 0000000000000000",
            "NoNewPrivs: 1",
            "Seccomp: 2",
            "the app",
        ],
        "{}",
        outcome.log()
    );
    assert!(lines[5].starts_with("s2i v"), "{}", outcome.log());
    assert_eq!(lines.len(), 6, "{}", outcome.log());
    assert_eq!(outcome.step("after").stdout, "after\n");
    assert_eq!(outcome.result("OUT"), "done");
    for step in &outcome.steps {
        assert!(!container_left(&step.docker_args), "step {}'s container is left", step.name);
    }
    env.assert_clean();
}

/// Without a pod user, a step runs as its image's user; `runAsNonRoot` refuses an image whose
/// user is root, as the kubelet does, and a failing step ends the pod: the steps after it never run.
#[test]
fn the_pod_harness_refuses_root_and_stops_at_a_failing_step() {
    let env = TestEnv::new("pod-harness-fail");
    let task = harness_task(&env);
    let pod = |image: &str, words: &[&str]| {
        TaskPod::tekton_task(&task, "harness-check")
            .param("S2I_IMAGE", &s2i_image())
            .param("STEP_IMAGE", image)
            .array_param("WORDS", words)
            .workspace("source", &source(&env))
            .run()
    };
    // The test kit's busybox base runs as root.
    let refused = pod(&base_image(), &["x"]);
    assert!(!refused.succeeded());
    assert_eq!(refused.steps.len(), 2, "{}", refused.log());
    assert_eq!(refused.step("copy-s2i").exit_code, 0, "{}", refused.log());
    assert_eq!(refused.step("look").stderr, "container has runAsNonRoot and image will run as root");

    let failed = pod(&fixture("sti-fake"), &["fail"]);
    assert!(!failed.succeeded());
    assert_eq!(failed.steps.iter().map(|s| (s.name.as_str(), s.exit_code)).collect::<Vec<_>>(), [("copy-s2i", 0), ("look", 7)]);
    assert!(failed.results.is_empty(), "{:?}", failed.results);
    for step in &failed.steps {
        assert!(!container_left(&step.docker_args), "step {}'s container is left", step.name);
    }
    env.assert_clean();
}

/// The registry side of a pod build: the test kit's registry (TLS, htpasswd), the sti-fake
/// builder pushed there and pulled into the engine (the kubelet's pull), and the directories a
/// TaskRun binds: registry credentials (a Docker config.json) and the registry's CA.
struct Cluster {
    registry: TestRegistry,
    builder: String,
    _builder_pulled: PulledImage,
    docker_config: PathBuf,
    ca: PathBuf,
}

impl Cluster {
    fn new(env: &TestEnv) -> Cluster {
        let registry = TestRegistry::start();
        let (builder, _) = registry.docker_push(&fixture("sti-fake"), "builders/sti-fake:1");
        let builder_pulled = registry.docker_pull(&builder);
        let docker_config = env.work().join("dockerconfig");
        write_docker_config(&docker_config, &registry.auths_config(&registry.host(), registry.user()));
        let ca = env.work().join("ca");
        std::fs::create_dir_all(&ca).unwrap();
        std::fs::copy(registry.ca_cert(), ca.join("ca-bundle.crt")).unwrap();
        for dir in [&docker_config, &ca] {
            open_to_all(dir);
        }
        Cluster { registry, builder, _builder_pulled: builder_pulled, docker_config, ca }
    }

    /// A test's environment (`test`: its name), a cluster, and the name in the cluster's registry
    /// of the image the test builds (`repo`: path and tag).
    fn pushing_to(test: &str, repo: &str) -> (TestEnv, Cluster, String) {
        let (env, cluster) = Cluster::for_test(test);
        let out = cluster.registry.image(repo);
        (env, cluster, out)
    }

    /// A test's environment (`test`: its name) and a cluster of its own.
    fn for_test(test: &str) -> (TestEnv, Cluster) {
        let env = TestEnv::new(test);
        let cluster = Cluster::new(&env);
        (env, cluster)
    }

    /// The digest under which the registry serves `image` (Docker's pull of it says).
    fn digest_of(&self, image: &str) -> (PulledImage, String) {
        let pulled = self.registry.docker_pull(image);
        let repo_digests = docker_output(&["image", "inspect", "--format", "{{range .RepoDigests}}{{println .}}{{end}}", image]);
        let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
        let digest = repo_digests
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{repo}@")))
            .unwrap_or_else(|| panic!("no digest of {repo} among {repo_digests:?}"))
            .to_string();
        (pulled, digest)
    }

    /// A pod of the Shipwright strategy `strategy` (a document of deploy/shipwright/s2i.yaml) that
    /// builds with this cluster's builder, the project's s2i image, and outputs `out`.
    fn shipwright(&self, strategy: &str, out: &str) -> TaskPod {
        TaskPod::shipwright_strategy(&shipwright_strategy(), strategy).param("builder-image", &self.builder).param("s2i-image", &s2i_image()).param("shp-output-image", out)
    }
}

/// A new directory of the test's work area (for a workspace or a volume).
fn new_dir(env: &TestEnv, name: &str) -> PathBuf {
    let dir = env.work().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Makes a directory and its files readable (and the directory writable) by any user, as a
/// volume a pod of an arbitrary uid is given.
fn open_to_all(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// An app for sti-fake: files to install, and `artifacts/` (what its save-artifacts keeps).
fn app(env: &TestEnv, name: &str, artifact: &str) -> PathBuf {
    let src = env.work().join(name);
    write_file(&src.join("index.html"), "hello from the pod\n", 0o644);
    write_file(&src.join(format!("artifacts/{artifact}")), "kept\n", 0o644);
    src
}

/// What a step printed, on both streams (s2i relays the scripts' output to its stderr).
fn said(outcome: &PodOutcome, step: &str) -> String {
    let step = outcome.step(step);
    format!("{}{}", step.stdout, step.stderr)
}

fn tekton_task() -> PathBuf {
    s2i_testkit::repo_path("deploy/tekton/s2i.yaml")
}

fn shipwright_strategy() -> PathBuf {
    s2i_testkit::repo_path("deploy/shipwright/s2i.yaml")
}

/// An ENV_VARS item that would run commands if the Task pasted params into its script's text.
const TRICK: &str = "TRICK=$(id -u) `uname`; exit 9";

/// The Task's own steps, from deploy/tekton/s2i.yaml, as OpenShift runs them (uid 1000680000 in
/// group 0): the build pushes to the registry with the dockerconfig workspace's credentials and
/// trusts it through the ca-bundle workspace; Docker pulls the image and runs it: the app is
/// installed (by that uid), ENV_VARS reached assemble as they were (one that looks like shell
/// code too), the digest in IMAGE_DIGEST is the registry's and IMAGE_URL names the image. No credential and nothing of the pod's volumes is in
/// the image.
#[test]
fn the_tekton_task_builds_and_pushes_from_a_restricted_pod() {
    let (env, cluster, out) = Cluster::pushing_to("pod-tekton", "team/app:v1");
    let outcome = TaskPod::tekton_task(&tekton_task(), "s2i")
        .param("BUILDER_IMAGE", &cluster.builder)
        .param("IMAGE", &out)
        .param("S2I_IMAGE", &s2i_image())
        .array_param("ENV_VARS", &["GREETING=hello there", "MODE=pod", TRICK])
        .workspace("source", &app(&env, "src", "one.txt"))
        .workspace("dockerconfig", &cluster.docker_config)
        .workspace("ca-bundle", &cluster.ca)
        // Where Tekton copies a docker secret linked to the service account ($HOME/.docker).
        .mount(&cluster.docker_config, "/tekton/home/.docker", true)
        .run_as(OPENSHIFT_UID, Some(0))
        .run();
    outcome.assert_succeeded();
    assert!(said(&outcome, "build").contains(&format!("sti-fake assemble (uid {OPENSHIFT_UID}")), "{}", outcome.log());
    assert_eq!(outcome.result("IMAGE_URL"), out, "{}", outcome.log());
    let (pulled, digest) = cluster.digest_of(&out);
    assert_eq!(outcome.result("IMAGE_DIGEST"), digest, "{}", outcome.log());

    let (code, stdout, stderr) = docker_run(pulled.name(), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "sti-fake run: .sti-fake-assemble-env .sti-fake-assembled artifacts index.html \n");
    let (_, env_seen, _) = docker_run(pulled.name(), &["cat", ".sti-fake-assemble-env"]);
    assert!(env_seen.lines().any(|l| l == "GREETING=hello there") && env_seen.lines().any(|l| l == "MODE=pod"), "{env_seen}");
    // The value reached assemble as it was, never run by the step's shell.
    assert!(env_seen.lines().any(|l| l == TRICK), "{env_seen}");
    let (_, owner, _) = docker_run(pulled.name(), &["stat", "-c", "%u:%g", "index.html"]);
    assert_eq!(owner.trim(), format!("{OPENSHIFT_UID}:0"));
    let (_, found, _) = docker_run(pulled.name(), &["sh", "-c", "ls -d /tekton /s2i-bin /workspace 2>/dev/null; find / -xdev -name config.json -path '*.docker*' 2>/dev/null; true"]);
    assert_eq!(found, "", "pod volumes or credentials in the image");
    assert!(!outcome.log().contains(&cluster.registry.user().password), "a password in the log");
    env.assert_clean();
}

/// An incremental build through the Task: the first run keeps save-artifacts' output in the cache
/// workspace, the second restores it before assemble, so its image holds the first source's
/// artifact beside its own.
#[test]
fn the_tekton_task_restores_the_previous_artifacts_from_the_cache_workspace() {
    let (env, cluster) = Cluster::for_test("pod-tekton-cache");
    let cache = new_dir(&env, "cache");
    open_to_all(&cache);
    let out = cluster.registry.image("team/inc:v1");
    let build = |src: &Path| {
        TaskPod::tekton_task(&tekton_task(), "s2i")
            .param("BUILDER_IMAGE", &cluster.builder)
            .param("IMAGE", &out)
            .param("S2I_IMAGE", &s2i_image())
            .param("INCREMENTAL", "true")
            .workspace("source", src)
            .workspace("cache", &cache)
            .workspace("dockerconfig", &cluster.docker_config)
            .workspace("ca-bundle", &cluster.ca)
            .run_as(OPENSHIFT_UID, Some(0))
            .run()
    };
    let first = build(&app(&env, "src-1", "from-build-1.txt"));
    first.assert_succeeded();
    assert!(!said(&first, "build").contains("restoring artifacts"), "{}", first.log());
    let second = build(&app(&env, "src-2", "from-build-2.txt"));
    second.assert_succeeded();
    assert!(said(&second, "build").contains("---> restoring artifacts"), "{}", second.log());
    let (pulled, digest) = cluster.digest_of(&out);
    assert_eq!(second.result("IMAGE_DIGEST"), digest);
    let (_, listing, _) = docker_run(pulled.name(), &["ls", "artifacts"]);
    assert_eq!(listing, "from-build-1.txt\nfrom-build-2.txt\n");
    env.assert_clean();
}

/// The Shipwright strategy's own steps, from deploy/shipwright/s2i.yaml, with the system params a
/// BuildRun gets: the source (its context directory) at /workspace/source, the push secret where
/// Tekton's credential initialisation puts it (/tekton/home/.docker), the registry's CA through the
/// overridable volume s2i-ca; the image is pushed, Docker runs it, and shp-image-digest is the
/// registry's digest. Run as the builder's own user (no pod user).
#[test]
fn the_shipwright_strategy_builds_and_pushes_from_a_restricted_pod() {
    let (env, cluster, out) = Cluster::pushing_to("pod-shipwright", "team/shp:v1");
    let root = env.work().join("source");
    app(&env, "source/app", "one.txt");
    let outcome = cluster
        .shipwright("s2i", &out)
        .array_param("env-vars", &["GREETING=from shipwright"])
        .param("shp-source-context", "/workspace/source/app")
        .workspace("source", &root)
        .volume("s2i-ca", &cluster.ca)
        .mount(&cluster.docker_config, "/tekton/home/.docker", true)
        .run();
    outcome.assert_succeeded();
    assert!(said(&outcome, "build").contains("sti-fake assemble (uid 1001"), "{}", outcome.log());
    let (pulled, digest) = cluster.digest_of(&out);
    assert_eq!(outcome.result("shp-image-digest"), digest, "{}", outcome.log());
    let (code, stdout, stderr) = docker_run(pulled.name(), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "sti-fake run: .sti-fake-assemble-env .sti-fake-assembled artifacts index.html \n");
    let (_, env_seen, _) = docker_run(pulled.name(), &["cat", ".sti-fake-assemble-env"]);
    assert!(env_seen.lines().any(|l| l == "GREETING=from shipwright"), "{env_seen}");
    let (_, found, _) = docker_run(pulled.name(), &["sh", "-c", "ls -d /tekton /s2i-bin /s2i-cache /s2i-ca /workspace 2>/dev/null; true"]);
    assert_eq!(found, "", "pod volumes in the image");

    // An insecure registry is refused, before anything runs.
    let insecure = cluster
        .shipwright("s2i", &out)
        .param("shp-output-insecure", "true")
        .workspace("source", &root)
        .run();
    assert!(!insecure.succeeded());
    assert!(insecure.step("build").stderr.contains("shp-output-insecure is not supported"), "{}", insecure.log());
    env.assert_clean();
}

/// Under `runAsNonRoot`, a builder image whose user is root never starts: the build step of the
/// Task and of the strategy is refused as the kubelet refuses it, after the copy step ran.
#[test]
fn the_task_and_the_strategy_refuse_a_builder_that_runs_as_root() {
    let env = TestEnv::new("pod-root-builder");
    let src = source(&env);
    let outcomes = [
        TaskPod::tekton_task(&tekton_task(), "s2i")
            .param("BUILDER_IMAGE", &base_image())
            .param("IMAGE", "127.0.0.1:1/team/app:v1")
            .param("S2I_IMAGE", &s2i_image())
            .workspace("source", &src)
            .run(),
        TaskPod::shipwright_strategy(&shipwright_strategy(), "s2i")
            .param("builder-image", &base_image())
            .param("shp-output-image", "127.0.0.1:1/team/app:v1")
            .param("s2i-image", &s2i_image())
            .workspace("source", &src)
            .run(),
    ];
    for outcome in outcomes {
        assert!(!outcome.succeeded());
        assert_eq!(outcome.step("copy-s2i").exit_code, 0, "{}", outcome.log());
        assert_eq!(outcome.step("build").stderr, "container has runAsNonRoot and image will run as root", "{}", outcome.log());
    }
    env.assert_clean();
}

/// The strategy that leaves the push to Shipwright (`s2i-shipwright-push`, the second document
/// of deploy/shipwright/s2i.yaml): as OpenShift runs it, it writes the whole image as one
/// docker-archive, the only entry of `$(params.shp-output-directory)` (what Shipwright's
/// image-processing step loads and pushes), pushes nothing itself and sets no digest; Docker loads
/// the archive and runs the app.
#[test]
fn the_shipwright_managed_push_strategy_writes_the_image_to_the_output_directory() {
    let (env, cluster, out) = Cluster::pushing_to("pod-shipwright-output", "team/shp-archive:v1");
    let output = new_dir(&env, "output-image");
    open_to_all(&output);
    let root = env.work().join("source");
    app(&env, "source", "one.txt");
    let outcome = cluster.shipwright("s2i-shipwright-push", &out)
        .workspace("source", &root)
        .volume("s2i-ca", &cluster.ca)
        .mount(&cluster.docker_config, "/tekton/home/.docker", true)
        .output_directory(&output)
        .run_as(OPENSHIFT_UID, Some(0))
        .run();
    outcome.assert_succeeded();
    assert!(outcome.results.is_empty(), "Shipwright sets the digest of this push: {:?}", outcome.results);
    let entries: Vec<_> = std::fs::read_dir(&output).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(entries, ["image.tar"], "Shipwright loads a directory of exactly one tarball");
    assert!(!cluster.registry.holds(&out), "the strategy pushed {out} itself");

    let loaded = docker_output(&["load", "-i", output.join("image.tar").to_str().unwrap()]);
    let _loaded = PulledImage::from_name(&out);
    assert!(loaded.contains(&out), "{loaded}");
    let (code, stdout, stderr) = docker_run(&out, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "sti-fake run: .sti-fake-assemble-env .sti-fake-assembled artifacts index.html \n");
    env.assert_clean();
}

/// The dockerconfig workspace as a `kubernetes.io/dockerconfigjson` Secret mounts it (the file
/// `.dockerconfigjson`) works as well as a `config.json`; a workspace with neither fails the step
/// with a message that says so, before s2i runs.
#[test]
fn the_tekton_task_takes_a_dockerconfigjson_secret_and_says_when_the_workspace_has_none() {
    let (env, cluster) = Cluster::for_test("pod-tekton-dockerconfigjson");
    let secret = new_dir(&env, "secret");
    std::fs::copy(cluster.docker_config.join("config.json"), secret.join(".dockerconfigjson")).unwrap();
    open_to_all(&secret);
    let empty = new_dir(&env, "empty-secret");
    open_to_all(&empty);
    let out = cluster.registry.image("team/djson:v1");
    let src = app(&env, "src", "one.txt");
    let build = |dockerconfig: &Path| {
        TaskPod::tekton_task(&tekton_task(), "s2i")
            .param("BUILDER_IMAGE", &cluster.builder)
            .param("IMAGE", &out)
            .param("S2I_IMAGE", &s2i_image())
            .workspace("source", &src)
            .workspace("dockerconfig", dockerconfig)
            .workspace("ca-bundle", &cluster.ca)
            .run_as(OPENSHIFT_UID, Some(0))
            .run()
    };
    let outcome = build(&secret);
    outcome.assert_succeeded();
    let (_pulled, digest) = cluster.digest_of(&out);
    assert_eq!(outcome.result("IMAGE_DIGEST"), digest);

    let outcome = build(&empty);
    assert!(!outcome.succeeded());
    let step = outcome.step("build");
    assert_eq!((step.exit_code, step.stderr.as_str()), (1, "the dockerconfig workspace holds neither config.json nor .dockerconfigjson\n"));
    env.assert_clean();
}

/// `--secret` from the pod: each key of the Task's `secrets` workspace (the strategy's
/// `s2i-secrets` volume) is at /run/secrets/KEY for assemble, on the step's memory volume; the
/// value is in no pushed blob, the config, the results or any step's output.
#[test]
fn the_task_and_the_strategy_hand_a_secret_to_assemble_and_nowhere_else() {
    use crate::secrets::{assert_absent, assert_archive_clean, forbidden, random_value, sha256_hex};
    let (env, cluster) = Cluster::for_test("pod-secrets");
    let token = random_value();
    let secrets = new_dir(&env, "secret-volume");
    std::fs::write(secrets.join("token"), &token).unwrap();
    open_to_all(&secrets);
    let forms = forbidden(&token);
    let with_assemble = |root: &Path| {
        write_file(
            &root.join(".s2i/bin/assemble"),
            "#!/bin/sh\nset -e\ncp -R /tmp/src/. ./\nsha256sum /run/secrets/token | cut -d' ' -f1 > token.sha\necho assembled with the secret\n",
            0o755,
        );
    };
    let check = |outcome: &PodOutcome, out: &str| {
        outcome.assert_succeeded();
        assert!(said(outcome, "build").contains("assembled with the secret"), "{}", outcome.log());
        for step in &outcome.steps {
            assert_absent(&format!("step {}'s output", step.name), format!("{}{}", step.stdout, step.stderr).as_bytes(), &forms);
        }
        for (name, value) in &outcome.results {
            assert_absent(&format!("result {name}"), value.as_bytes(), &forms);
        }
        let (pulled, _) = cluster.digest_of(out);
        assert_eq!(docker_run(pulled.name(), &["cat", "token.sha"]).1.trim(), sha256_hex(&token));
        let saved = env.tmpdir().join("pushed.tar");
        docker_output(&["save", "-o", saved.to_str().unwrap(), pulled.name()]);
        assert_archive_clean("the pushed image", &saved, &forms);
        std::fs::remove_file(&saved).unwrap();
    };

    let src = app(&env, "src", "one.txt");
    with_assemble(&src);
    let out = cluster.registry.image("team/secret-tekton:v1");
    let outcome = TaskPod::tekton_task(&tekton_task(), "s2i")
        .param("BUILDER_IMAGE", &cluster.builder)
        .param("IMAGE", &out)
        .param("S2I_IMAGE", &s2i_image())
        .workspace("source", &src)
        .workspace("secrets", &secrets)
        .workspace("ca-bundle", &cluster.ca)
        .mount(&cluster.docker_config, "/tekton/home/.docker", true)
        .run_as(OPENSHIFT_UID, Some(0))
        .run();
    check(&outcome, &out);

    let root = env.work().join("source");
    app(&env, "source/app", "one.txt");
    with_assemble(&root.join("app"));
    let out = cluster.registry.image("team/secret-shp:v1");
    let outcome = cluster.shipwright("s2i", &out)
        .param("shp-source-context", "/workspace/source/app")
        .workspace("source", &root)
        .volume("s2i-ca", &cluster.ca)
        .volume("s2i-secrets", &secrets)
        .mount(&cluster.docker_config, "/tekton/home/.docker", true)
        .run();
    check(&outcome, &out);
    env.assert_clean();
}
