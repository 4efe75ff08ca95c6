//! The rest of the command line: `--as-dockerfile`, `generate`, `--build-method=dockerfile`, `create`,
//! `usage`, `rebuild`, `version`, `completion`, `--label`, `--run`, `--callback-url`, `--use-config`
//! and `--output=json`, driven through the real binary against the real daemon. Every test ends with
//! `assert_clean`.

use std::path::Path;
use std::process::{Command, Stdio};

use s2i_testkit::{docker_run, fixture, image_exists, image_inspect, image_label, write_file, TestEnv};

fn sti_fake() -> String {
    fixture("sti-fake")
}

/// `docker build` with the classic builder, on the engine under test.
fn docker_build(dir: &Path, dockerfile: &str, tag: &str) -> (bool, String) {
    let out = s2i_testkit::engine_command()
        .args(["build", "-f", dockerfile, "-t", tag, "."])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("docker build runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn image_env(image: &str) -> Vec<String> {
    serde_json::from_value(image_inspect(image)["Config"]["Env"].clone()).unwrap()
}

/// A small application with an assemble hook and an .s2i/environment.
fn app(env: &TestEnv, name: &str) -> String {
    let dir = env.work().join(name);
    write_file(&dir.join("index.html"), "hello\n", 0o644);
    write_file(&dir.join(".s2i/environment"), "FROM_FILE=file\n", 0o644);
    write_file(
        &dir.join(".s2i/bin/assemble"),
        "#!/bin/sh\nset -e\necho \"Running custom assemble\"\nexec /usr/libexec/s2i/assemble\n",
        0o755,
    );
    name.to_string()
}

const TRICKY: &str = "quote\" dollar$HOME back\\slash\nRUN touch /pwned";

#[test]
fn as_dockerfile_writes_a_context_that_docker_builds() {
    let env = TestEnv::new("as-dockerfile");
    let builder = env.alias(&sti_fake());
    let src = app(&env, "app");
    let tricky_env = format!("TRICKY={TRICKY}");
    let tricky_label = format!("tricky={TRICKY}");
    let (code, stdout, stderr) = env.run(
        &["build", &src, &builder, "app:v1", "--as-dockerfile", "out/MyDockerfile", "-e", &tricky_env, "--label", &tricky_label, "-n", "My App"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("Application dockerfile generated in") && stderr.contains("out/MyDockerfile"), "{stderr}");
    let out = env.work().join("out");
    let dockerfile = std::fs::read_to_string(out.join("MyDockerfile")).unwrap();
    assert!(dockerfile.starts_with(&format!("FROM {builder}\n")), "{dockerfile}");
    assert!(dockerfile.contains("COPY --chown=1001:0 upload/scripts /tmp/scripts\n"), "{dockerfile}");
    assert!(dockerfile.contains("COPY --chown=1001:0 upload/src /tmp/src\nUSER 1001\nRUN /tmp/scripts/assemble\n"), "{dockerfile}");
    assert!(dockerfile.ends_with("CMD /usr/libexec/s2i/run\n"), "{dockerfile}");
    assert!(!dockerfile.lines().any(|l| l.starts_with("RUN touch")), "{dockerfile}");
    assert!(out.join("upload/src/index.html").is_file());
    assert!(out.join("upload/scripts/assemble").is_file());
    assert!(!out.join("upload/src/.s2i/bin/assemble").exists(), "scripts are moved out of the source");

    let tag = env.tag("built");
    let (ok, log) = docker_build(&out, "MyDockerfile", &tag);
    assert!(ok, "{log}");
    assert!(log.contains("Running custom assemble"), "{log}");
    let (code, run_out, _) = docker_run(&tag, &[]);
    assert_eq!(code, 0);
    assert!(run_out.contains("index.html") && run_out.contains(".sti-fake-assembled"), "{run_out}");
    // Values arrive whole; a newline, which a Dockerfile cannot hold, arrives as the two characters \n.
    let arrived = TRICKY.replace('\n', "\\n");
    assert_eq!(image_label(&tag, "tricky").as_deref(), Some(arrived.as_str()));
    assert!(image_env(&tag).contains(&format!("TRICKY={arrived}")), "{:?}", image_env(&tag));
    assert!(image_env(&tag).contains(&"FROM_FILE=file".to_string()));
    assert_eq!(image_label(&tag, "io.k8s.display-name").as_deref(), Some("My App"));
    assert_eq!(image_label(&tag, "io.openshift.s2i.build.source-location").as_deref(), Some("app"));
    assert_ne!(docker_run(&tag, &["test", "-e", "/pwned"]).0, 0);

    // A second run replaces the upload/ it wrote; an upload/ it did not write is left alone.
    write_file(&env.work().join("app/second.txt"), "2\n", 0o644);
    let (code, _, stderr) = env.run(&["build", &src, &builder, "--as-dockerfile", "out/"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(out.join("Dockerfile").is_file() && out.join("upload/src/second.txt").is_file());
    write_file(&env.work().join("other/upload/mine.txt"), "mine\n", 0o644);
    let (code, _, stderr) = env.run(&["build", &src, &builder, "--as-dockerfile", "other/Dockerfile"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("which s2i did not write"), "{stderr}");
    assert!(env.work().join("other/upload/mine.txt").is_file());
    env.assert_clean();
}

#[test]
fn as_dockerfile_inside_the_source_and_its_conflicts() {
    let env = TestEnv::new("as-dockerfile-inside");
    let builder = env.alias(&sti_fake());
    let src = app(&env, "app");
    // The output lies inside the source: it must not copy itself.
    let (code, _, stderr) = env.run(&["build", &src, &builder, "--as-dockerfile", "app/Dockerfile"]);
    assert_eq!(code, 0, "{stderr}");
    let upload_src = env.work().join("app/upload/src");
    assert!(upload_src.join("index.html").is_file());
    assert!(!upload_src.join("upload").exists() && !upload_src.join("Dockerfile").exists());

    for (flags, expect) in [
        (&["--run"][..], "--run cannot be used with --as-dockerfile"),
        (&["--build-method=dockerfile"][..], "use one of them"),
        (&["--assemble-user", "root", "-u", "1000-"][..], "must be a numeric uid"),
        (&["--destination", "/tmp/a b"][..], "cannot be written into a Dockerfile"),
        (&["--incremental"][..], "needs the TAG"),
    ] {
        let mut args = vec!["build", src.as_str(), builder.as_str(), "--as-dockerfile", "x/Dockerfile"];
        args.extend_from_slice(flags);
        let (code, _, stderr) = env.run(&args);
        assert_ne!(code, 0, "{flags:?}: {stderr}");
        assert!(stderr.contains(expect), "{flags:?}: {stderr}");
    }
    env.assert_clean();
}

#[test]
fn generate_writes_a_dockerfile_for_a_builder() {
    let env = TestEnv::new("generate");
    let builder = env.alias(&sti_fake());
    let (code, _, stderr) = env.run(&["generate", &builder, "gen/", "-e", "MODE=prod", "--assemble-user", "1001"]);
    assert_eq!(code, 0, "{stderr}");
    let gen = env.work().join("gen");
    let dockerfile = std::fs::read_to_string(gen.join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("ENV MODE=\"prod\"\n"), "{dockerfile}");
    assert!(dockerfile.contains("RUN /usr/libexec/s2i/assemble\n"), "{dockerfile}");
    assert!(gen.join("upload/src").is_dir());
    // Whatever is put in upload/src is the application.
    write_file(&gen.join("upload/src/page.txt"), "generated\n", 0o644);
    let tag = env.tag("gen");
    let (ok, log) = docker_build(&gen, "Dockerfile", &tag);
    assert!(ok, "{log}");
    assert_eq!(docker_run(&tag, &["cat", "page.txt"]).1, "generated\n");

    let (code, _, stderr) = env.run(&["generate", &builder]);
    assert_ne!(code, 0);
    assert!(stderr.contains("OUTPUT_FILE"), "{stderr}");
    env.assert_clean();
}

#[test]
fn build_method_dockerfile_builds_through_the_engine() {
    let env = TestEnv::new("build-method");
    let builder = env.alias(&sti_fake());
    let src = app(&env, "app");
    write_file(&env.work().join("app/artifacts/cache.txt"), "cached\n", 0o644);
    let out = env.tag("app");
    let (code, stdout, stderr) = env.run(&["build", &src, &builder, &out, "--build-method=dockerfile", "-e", "A=1", "--label", "team=x"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("Running custom assemble") && stderr.contains("sti-fake: a line on stderr"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "colour codes are stripped: {stderr:?}");
    let cfg = &image_inspect(&out)["Config"];
    assert_eq!(cfg["User"], "1001");
    assert_eq!(image_label(&out, "team").as_deref(), Some("x"));
    assert_eq!(image_label(&out, "io.openshift.s2i.scripts-url").as_deref(), Some("image:///usr/libexec/s2i"));
    // The OCI standard keys, as the other flows write them.
    assert_eq!(image_label(&out, "org.opencontainers.image.ref.name").as_deref(), Some(out.as_str()));
    assert_eq!(image_label(&out, "org.opencontainers.image.base.name"), Some(format!("docker.io/{builder}")));
    assert!(image_env(&out).contains(&"A=1".to_string()));
    let (code, run_out, _) = docker_run(&out, &[]);
    assert_eq!(code, 0);
    assert!(run_out.contains("index.html") && run_out.contains("artifacts"), "{run_out}");

    // Incremental: the previous image's artifacts come back although the source no longer has them.
    std::fs::remove_dir_all(env.work().join("app/artifacts")).unwrap();
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--build-method=dockerfile", "--incremental", "--loglevel=1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Existing image for tag") && stderr.contains("restoring artifacts"), "{stderr}");
    assert_eq!(docker_run(&out, &["cat", "artifacts/cache.txt"]).1, "cached\n");

    // A failing assemble fails the build with the engine's message and leaves no tag behind.
    let failed = env.tag("failed");
    let (code, _, stderr) = env.run(&["build", &src, &builder, &failed, "--build-method=dockerfile", "-e", "ASSEMBLE_FAIL=3"]);
    assert_eq!(code, 1, "{stderr}");
    // The failing step is named in the engine's own words: Docker's classic builder and Podman's
    // (buildah) word it differently.
    let engine_says = match s2i_testkit::test_engine() {
        s2i_testkit::TestEngine::Docker => "returned a non-zero code: 3",
        s2i_testkit::TestEngine::Podman => "RUN /tmp/scripts/assemble\": while running runtime: exit status 3",
    };
    assert!(stderr.contains("sti-fake: giving up with status 3") && stderr.contains(engine_says), "{stderr}");
    assert!(!image_exists(&failed));
    env.assert_clean();
}

#[test]
fn create_makes_a_builder_that_passes_its_own_test() {
    let env = TestEnv::new("create");
    let candidate = env.tag("candidate");
    let (code, _, stderr) = env.run(&["create", "acme/widget", "widget"]);
    assert_eq!(code, 0, "{stderr}");
    let dir = env.work().join("widget");
    for f in ["Dockerfile", "Makefile", "README.md", "s2i/bin/assemble", "s2i/bin/run", "s2i/bin/save-artifacts", "s2i/bin/usage", "test/run", "test/test-app/index.html"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    // Existing files are kept.
    write_file(&dir.join("README.md"), "my notes\n", 0o644);
    let (code, _, stderr) = env.run(&["create", "acme/widget", "widget"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("File already exists: README.md, skipping"), "{stderr}");
    assert_eq!(std::fs::read_to_string(dir.join("README.md")).unwrap(), "my notes\n");

    // The scaffold builds FROM a local base and its own test passes with our s2i first in PATH.
    let base = s2i_testkit::base_image();
    let out = s2i_testkit::engine_command()
        .args(["build", "--build-arg", &format!("BASE_IMAGE={base}"), "-t", &candidate, "."])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bin_dir = s2i_testkit::s2i_bin().parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    // test/run calls docker and s2i: both go to the engine under test.
    let out = s2i_testkit::point_at_engine(&mut Command::new("sh"))
        .arg("test/run")
        .current_dir(&dir)
        .env("PATH", path)
        .env("IMAGE_NAME", &candidate)
        .env("TMPDIR", env.tmpdir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");
    assert!(log.contains("PASS:"), "{log}");
    assert!(!image_exists(&format!("{candidate}-testapp")), "test/run removes its application image");

    let (code, _, stderr) = env.run(&["create", "acme/widget"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("DESTINATION"), "{stderr}");
    env.assert_clean();
}

#[test]
fn usage_prints_the_builder_usage_on_stdout() {
    let env = TestEnv::new("usage");
    let builder = env.alias(&sti_fake());
    let (code, stdout, stderr) = env.run(&["usage", &builder]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "sti-fake: a fake s2i builder image for tests\n");

    // A builder that declares no scripts location has no usage script to run.
    let nolabel = env.alias(&fixture("sti-fake-nolabel"));
    let (code, _, stderr) = env.run(&["usage", &nolabel]);
    assert_eq!(code, 11, "{stderr}");
    assert!(stderr.contains("failed to install [usage]"), "{stderr}");

    let (code, _, stderr) = env.run(&["usage", "s2i-test/does-not-exist", "--pull-policy=never"]);
    assert_eq!(code, 1, "{stderr}");
    env.assert_clean();
}

#[test]
fn version_names_the_commit_and_completion_knows_three_shells() {
    let env = TestEnv::new("version");
    let (code, stdout, _) = env.run(&["version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with(&format!("s2i v{} (commit ", env!("CARGO_PKG_VERSION"))) && stdout.ends_with(")\n"), "{stdout}");
    for (shell, marker) in [("bash", "complete -F _s2i"), ("zsh", "#compdef s2i"), ("fish", "complete -c s2i")] {
        let (code, stdout, stderr) = env.run(&["completion", shell]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains(marker) && stdout.contains("as-dockerfile"), "{shell}: {}", &stdout[..200.min(stdout.len())]);
    }
    for (args, expect) in [(&["completion"][..], "shell not specified"), (&["completion", "tcsh"][..], "unsupported shell"), (&["completion", "bash", "zsh"][..], "too many arguments")] {
        let (code, stdout, stderr) = env.run(args);
        assert_eq!(code, 1, "{args:?}");
        assert!(stdout.is_empty() && stderr.contains(expect), "{args:?}: {stderr}");
    }
    env.assert_clean();
}

#[test]
fn output_json_is_the_only_thing_on_stdout_on_success_and_failure() {
    let env = TestEnv::new("json");
    let builder = env.alias(&sti_fake());
    let src = app(&env, "app");
    let out = env.tag("app");
    let (code, stdout, stderr) = env.run(&["build", &src, &builder, &out, "--output=json", "--label", "team=payments"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["success"], true);
    assert_eq!(doc["tag"], out.as_str());
    assert_eq!(doc["builder_image"], builder.as_str());
    assert_eq!(doc["strategy"], "standard");
    assert_eq!(doc["image_id"], image_inspect(&out)["Id"]);
    assert_eq!(doc["labels"]["team"], "payments", "--label is applied: {doc}");
    assert_eq!(image_label(&out, "team").as_deref(), Some("payments"));
    assert!(doc["phases"].as_array().unwrap().iter().any(|p| p["name"] == "assemble" && p["seconds"].is_number()), "{doc}");

    let failed = env.tag("failed");
    let (code, stdout, stderr) = env.run(&["build", &src, &builder, &failed, "--output=json", "-e", "ASSEMBLE_FAIL=7"]);
    assert_eq!(code, 1, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["success"], false);
    assert_eq!(doc["error"]["exit_code"], 1);
    assert!(doc["error"]["message"].as_str().unwrap().contains("exited with status 7"), "{doc}");
    assert!(stderr.contains("error: "), "the error is still rendered for people: {stderr}");

    // Invalid flags too.
    let (code, stdout, _) = env.run(&["build", &src, &builder, "--output=json", "-e", "NOEQUALS"]);
    assert_eq!(code, 1);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["success"], false);
    let (code, _, _) = env.run(&["build", &src, &builder, "--label", "=novalue"]);
    assert_eq!(code, 1);
    env.assert_clean();
}

#[test]
fn callback_url_receives_the_outcome_without_changing_the_exit_code() {
    let env = TestEnv::new("callback");
    let builder = env.alias(&sti_fake());
    let src = app(&env, "app");
    let server = s2i_testkit::HttpServer::recorder();
    let url = format!("{}/hook", server.url());
    let out = env.tag("app");
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--callback-url", &url]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = env.run(&["build", &src, &builder, &env.tag("failed"), "--callback-url", &url, "-e", "ASSEMBLE_FAIL=2"]);
    assert_eq!(code, 1, "{stderr}");
    let posts = server.wait_for_requests(2, std::time::Duration::from_secs(10));
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(posts[0].path, "/hook");
    assert_eq!(posts[0].header("Content-Type"), Some("application/json"));
    let ok: serde_json::Value = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(ok["success"], true);
    assert_eq!(ok["labels"]["io.openshift.s2i.build.image"], format!("docker.io/{builder}"));
    assert_eq!(posts[1].body_str(), "{\"success\":false}\n");

    // Nobody listening: a warning, and the build still succeeds.
    let dead = format!("http://127.0.0.1:{}/hook", free_port());
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--callback-url", &dead]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("WARNING:") && stderr.contains("3 attempts failed"), "{stderr}");
    env.assert_clean();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn run_starts_the_image_and_ctrl_c_removes_its_container() {
    let env = TestEnv::new("run");
    let builder = env.alias(&sti_fake());
    let src = app(&env, "app");
    let out = env.tag("app");
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("as a result of the --run=true option"), "{stderr}");
    assert!(stderr.contains("sti-fake run: "), "the image's output is relayed: {stderr}");
    env.assert_clean();

    // A long-running application: Ctrl-C stops it and removes its container.
    write_file(&env.work().join("app/.s2i/bin/run"), "#!/bin/sh\necho started\nexec sleep 120\n", 0o755);
    let mut child = env.s2i().args(["build", &src, &builder, &out, "--run"]).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    // Keep reading to the end: s2i must never write into a closed pipe.
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = String::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line == "started" {
                let _ = started_tx.send(());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    let started = started_rx.recv_timeout(std::time::Duration::from_secs(60)).is_ok();
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    let seen = reader.join().unwrap();
    assert!(started, "{seen}");
    assert_eq!(status.code(), Some(2), "{seen}");
    env.assert_clean();
}

#[test]
fn rebuild_builds_again_from_the_labels() {
    let env = TestEnv::new("rebuild");
    let builder = env.alias(&sti_fake());
    let src = app(&env, "app");
    let out = env.tag("app");
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "-n", "Shop"]);
    assert_eq!(code, 0, "{stderr}");
    write_file(&env.work().join("app/added.txt"), "new\n", 0o644);

    let rebuilt = env.tag("rebuilt");
    // The labels name a plain directory: the user must name it before s2i reads it.
    let (code, _, stderr) = env.run(&["rebuild", &out, &rebuilt, "--pull-policy=never"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("which is not a git repository") && stderr.contains("--source app"), "{stderr}");
    assert!(!image_exists(&rebuilt));
    let (code, stdout, stderr) = env.run(&["rebuild", &out, &rebuilt, "--pull-policy=never", "--output=json", "--source", &src]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Rebuilding") && stderr.contains("with the builder"), "rebuild says what it will use: {stderr}");
    assert!(stderr.contains("Running custom assemble"), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["tag"], rebuilt.as_str());
    assert_eq!(docker_run(&rebuilt, &["cat", "added.txt"]).1, "new\n");
    assert_eq!(image_label(&rebuilt, "io.k8s.display-name").as_deref(), Some("Shop"));
    assert_eq!(image_label(&rebuilt, "io.openshift.s2i.build.image"), image_label(&out, "io.openshift.s2i.build.image"));

    // Without NEW_TAG the image's own tag moves to the new build.
    let before = image_inspect(&out)["Id"].clone();
    let (code, _, stderr) = env.run(&["rebuild", &out, "--source", &src]);
    assert_eq!(code, 0, "{stderr}");
    assert_ne!(image_inspect(&out)["Id"], before);

    let (code, _, stderr) = env.run(&["rebuild", &builder]);
    assert_eq!(code, 1);
    assert!(stderr.contains("required label \"io.openshift.s2i.build.image\""), "{stderr}");
    env.assert_clean();
}

#[test]
fn rebuild_of_a_git_source_builds_the_recorded_commit_not_the_branch_tip() {
    let env = TestEnv::new("rebuildgit");
    let builder = env.alias(&sti_fake());
    let repo = env.work().join("repo");
    write_file(&repo.join("version.txt"), "one\n", 0o644);
    s2i_testkit::git(&repo, &["init", "-q"]);
    s2i_testkit::git(&repo, &["add", "."]);
    s2i_testkit::git(&repo, &["commit", "-qm", "first"]);
    let first = s2i_testkit::git(&repo, &["rev-parse", "HEAD"]);
    let url = format!("file://{}", repo.display());
    let out = env.tag("app");
    let (code, _, stderr) = env.run(&["build", &url, &builder, &out]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(image_label(&out, "io.openshift.s2i.build.commit.id").as_deref(), Some(first.as_str()));

    // The branch moves on; a rebuild still builds what the image was made from.
    write_file(&repo.join("version.txt"), "two\n", 0o644);
    s2i_testkit::git(&repo, &["commit", "-qam", "second"]);
    let rebuilt = env.tag("rebuilt");
    let (code, _, stderr) = env.run(&["rebuild", &out, &rebuilt]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(docker_run(&rebuilt, &["cat", "version.txt"]).1, "one\n");
    assert_eq!(image_label(&rebuilt, "io.openshift.s2i.build.commit.id").as_deref(), Some(first.as_str()));
    let original_ref = image_label(&out, "io.openshift.s2i.build.commit.ref");
    assert_eq!(original_ref.as_deref(), Some("main"));
    assert_eq!(image_label(&rebuilt, "io.openshift.s2i.build.commit.ref"), original_ref, "the rebuild keeps the original ref, not HEAD");
    env.assert_clean();
}

#[test]
fn rebuild_refuses_host_paths_that_an_image_names() {
    let env = TestEnv::new("rebuildhostile");
    let builder = env.alias(&sti_fake());
    let hostile = env.tag("hostile");
    let dir = env.work().join("hostile");
    let dockerfile = format!(
        "FROM {builder}\nLABEL io.openshift.s2i.build.image={builder} io.openshift.s2i.build.source-location=/etc\n"
    );
    write_file(&dir.join("Dockerfile"), &dockerfile, 0o644);
    let (built, out) = docker_build(&dir, "Dockerfile", &hostile);
    assert!(built, "{out}");
    let (code, _, stderr) = env.run(&["rebuild", &hostile, &env.tag("stolen")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("built from /etc, which is not a git repository"), "{stderr}");
    assert!(stderr.contains("hint:") && stderr.contains("--source /etc"), "{stderr}");
    assert!(!stderr.contains("Running custom assemble") && !stderr.contains("sti-fake assemble"), "nothing ran: {stderr}");
    assert!(!image_exists(&env.tag("stolen")));
    env.assert_clean();
}

#[test]
fn use_config_saves_the_command_line_and_brings_it_back() {
    let env = TestEnv::new("useconfig");
    let builder = env.alias(&sti_fake());
    let src = app(&env, "app");
    let out = env.tag("app");
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--use-config", "-e", "SAVED=yes", "-n", "Saved App", "--label", "team=red"]);
    assert_eq!(code, 0, "{stderr}");
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(env.work().join(".s2ifile")).unwrap()).unwrap();
    assert_eq!(saved["tag"], out.as_str());
    assert_eq!(saved["flags"]["env-0"], "SAVED=yes");

    docker_run(&out, &["true"]);
    s2i_testkit::docker_output(&["rmi", &out]);
    let (code, _, stderr) = env.run(&["build", "--use-config", "--label", "team=blue"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(image_env(&out).contains(&"SAVED=yes".to_string()));
    assert_eq!(image_label(&out, "io.k8s.display-name").as_deref(), Some("Saved App"));
    assert_eq!(image_label(&out, "team").as_deref(), Some("blue"), "the command line wins over the file");
    env.assert_clean();
}
