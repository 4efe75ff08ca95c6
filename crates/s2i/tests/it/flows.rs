//! Build flows beyond the plain one, against the real daemon: incremental builds (and later
//! runtime images, injections, builders without tar, ONBUILD builders).

use crate::apps::incremental_app;
use s2i_testkit::{docker_run, fixture, image_config, image_exists, image_inspect, write_file, TestEnv};

fn image_id(image: &str) -> String {
    image_inspect(image)["Id"].as_str().unwrap().to_string()
}

#[test]
fn incremental_builds_reuse_the_previous_artifacts() {
    let env = TestEnv::new("incremental");
    let builder = env.alias(&fixture("sti-fake"));
    let out = env.tag("app");
    let src = incremental_app(&env).to_string();

    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--incremental", "-e", "BUILD_NO=1", "-e", "BIG_MB=40", "--loglevel", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Clean build will be performed: no previous image"), "{stderr}");
    assert!(stderr.contains("---> installed deps"), "{stderr}");
    let first = image_id(&out);

    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--incremental=true", "-e", "BUILD_NO=2", "--loglevel", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&format!("Existing image for tag {out} detected for incremental build")), "{stderr}");
    assert!(stderr.contains("---> saving deps"), "save-artifacts' stderr is relayed: {stderr}");
    assert!(stderr.contains("---> reusing deps from build-1"), "{stderr}");
    assert_eq!(docker_run(&out, &["cat", "deps/installed"]).1, "build-1\n");
    let sums = docker_run(&out, &["sh", "-c", "md5sum /opt/app-root/src/deps/big | cut -d' ' -f1"]).1;
    let first_sums = docker_run(&first, &["sh", "-c", "md5sum /opt/app-root/src/deps/big | cut -d' ' -f1"]).1;
    assert_eq!(sums, first_sums, "40 MiB of artifacts arrive intact");
    let second = image_id(&out);
    assert_ne!(first, second);
    assert!(image_exists(&first), "without --rm the previous image stays");

    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--incremental", "--rm", "-e", "BUILD_NO=3"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("---> reusing deps from build-1"), "{stderr}");
    assert!(!image_exists(&second), "--rm removed the previous image");
    s2i_testkit::docker_output(&["rmi", &first]);
    env.assert_clean();
}

#[test]
fn a_failing_or_hostile_save_artifacts_falls_back_to_a_clean_build() {
    let env = TestEnv::new("incfallback");
    let builder = env.alias(&fixture("sti-fake"));
    let out = env.tag("app");
    let src = incremental_app(&env).to_string();
    for (what, extra, expect) in [
        ("failing", "SAVE_FAIL=1", "save-artifacts exited with status 3"),
        ("hostile", "SAVE_EVIL=1", "refusing entry \"deps/etc\": it is a symlink to the absolute path \"/etc\""),
    ] {
        // The previous image carries the misbehaviour in its environment.
        let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "-e", "BUILD_NO=1", "-e", extra]);
        assert_eq!(code, 0, "{what}: {stderr}");
        let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--incremental", "-e", "BUILD_NO=2"]);
        assert_eq!(code, 0, "{what}: {stderr}");
        assert!(stderr.contains("Clean build will be performed because of error saving previous build artifacts"), "{what}: {stderr}");
        assert!(stderr.contains(expect), "{what}: {stderr}");
        assert!(stderr.contains("---> installed deps"), "{what}: clean: {stderr}");
        assert_eq!(docker_run(&out, &["cat", "deps/installed"]).1, "build-2\n", "{what}");
        assert_eq!(docker_run(&out, &["test", "-e", "deps/etc/passwd"]).0, 1, "{what}");
        env.assert_clean();
    }
}

#[test]
fn a_failed_incremental_build_leaves_the_previous_image_and_tag_alone() {
    let env = TestEnv::new("incfail");
    let builder = env.alias(&fixture("sti-fake"));
    let out = env.tag("app");
    let src = incremental_app(&env).to_string();
    assert_eq!(env.run(&["build", &src, &builder, &out, "-e", "BUILD_NO=1"]).0, 0);
    let before = image_id(&out);
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--incremental", "--rm", "-e", "ASSEMBLE_FAIL=1"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(image_id(&out), before, "the tag still names the previous image");
    env.assert_clean();
}

#[test]
fn incremental_without_a_save_artifacts_script_is_a_clean_build_that_says_why() {
    let env = TestEnv::new("incnosave");
    let builder = env.alias(&fixture("sti-fake-nolabel"));
    let out = env.tag("app");
    let scripts = env.work().join("scripts");
    write_file(&scripts.join("assemble"), "#!/bin/sh\ncp -R /tmp/src/. ./\n", 0o755);
    write_file(&scripts.join("run"), "#!/bin/sh\nls\n", 0o755);
    write_file(&env.work().join("app/a.txt"), "a", 0o644);
    let url = format!("file://{}", scripts.display());
    assert_eq!(env.run(&["build", "app", &builder, &out, "-s", &url]).0, 0);
    let (code, _, stderr) = env.run(&["build", "app", &builder, &out, "-s", &url, "--incremental", "--loglevel", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Clean build will be performed: there is no save-artifacts script"), "{stderr}");
    env.assert_clean();
}

/// An app whose build output is dist/ (the runtime image's label takes it) next to build-only files.
fn runtime_app(env: &TestEnv) -> String {
    let root = env.work().join("rt");
    write_file(&root.join("dist/app.bin"), "binary\n", 0o755);
    write_file(&root.join("dist/conf/app.conf"), "conf\n", 0o600);
    write_file(&root.join("build-only.txt"), "not shipped\n", 0o644);
    "rt".into()
}

#[test]
fn a_runtime_image_gets_only_the_artifacts_and_runs_assemble_runtime() {
    let env = TestEnv::new("runtime");
    let builder = env.alias(&fixture("sti-fake"));
    let runtime = env.alias(&fixture("sti-fake-runtime"));
    let out = env.tag("app");
    let src = runtime_app(&env);
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--runtime-image", &runtime, "-e", "MODE=prod"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("---> sti-fake assemble"), "{stderr}");
    assert!(stderr.contains("---> runtime assemble as 1001 in /opt/app-root/src: ./app/dist/app.bin ./app/dist/conf/app.conf"), "{stderr}");
    assert_eq!(docker_run(&out, &[]).1, "runtime run: runtime-assembled with MODE=prod\n");
    let listing = docker_run(&out, &["find", "."]).1;
    assert!(!listing.contains("build-only.txt") && !listing.contains(".sti-fake"), "only the artifacts ship: {listing}");
    let modes = docker_run(&out, &["stat", "-c", "%a %n", "app/dist/app.bin", "app/dist/conf/app.conf", "app/dist"]).1;
    assert_eq!(modes, "755 app/dist/app.bin\n644 app/dist/conf/app.conf\n755 app/dist\n", "modes are normalised");
    let cfg = image_config(&out);
    assert_eq!(cfg["Cmd"], serde_json::json!(["/usr/libexec/s2i/run"]));
    assert_eq!(cfg["User"], "1001");
    assert_eq!(cfg["Labels"]["runtime.flavour"], "slim", "labels of the runtime image");
    assert_eq!(cfg["Labels"]["io.openshift.s2i.build.image"], format!("docker.io/{builder}"));
    assert!(image_config(&out)["Env"].as_array().unwrap().iter().any(|e| e == "MODE=prod"));
    env.assert_clean();
}

#[test]
fn runtime_artifact_flags_and_shipped_scripts() {
    let env = TestEnv::new("runtimeflags");
    let builder = env.alias(&fixture("sti-fake"));
    let runtime = env.alias(&fixture("sti-fake-runtime"));
    let out = env.tag("app");
    let src = runtime_app(&env);
    let root = env.work().join("rt");
    write_file(&root.join(".s2i/bin/run"), "#!/bin/sh\necho \"custom run sees $(ls)\"\n", 0o755);
    write_file(&root.join(".s2i/bin/assemble-runtime"), "#!/bin/sh\necho \"custom assemble-runtime\"\n", 0o755);
    let (code, _, stderr) = env.run(
        &["build", &src, &builder, &out, "--runtime-image", &runtime, "-a", "/opt/app-root/src/dist/app.bin:.", "-a", "/opt/app-root/src/build-only.txt:extra"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("custom assemble-runtime"), "{stderr}");
    assert_eq!(image_config(&out)["Cmd"], serde_json::json!(["/opt/app-root/src/scripts/run"]));
    assert_eq!(docker_run(&out, &[]).1, "custom run sees app.bin\nextra\nscripts\n");
    env.assert_clean();
}

#[test]
fn runtime_build_failures_are_clear() {
    let env = TestEnv::new("runtimefail");
    let builder = env.alias(&fixture("sti-fake"));
    let runtime = env.alias(&fixture("sti-fake-runtime"));
    let src = runtime_app(&env);
    let out = env.tag("app");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["-e", "RUNTIME_FAIL=1"], 1, "assemble-runtime exited with status 5"),
        (vec!["-a", "/opt/nothing/here"], 1, "\"/opt/nothing/here\": it does not exist in the builder container"),
        (vec!["-a", "relative/path"], 1, "the source must be an absolute path"),
        (vec!["-a", "/x:../up"], 1, "the destination cannot start with '..'"),
        (vec!["-a", "/a/*.jar"], 1, "invalid characters in filename"),
        (vec!["-u", "1000-", "--assemble-runtime-user", "0"], 15, "--assemble-runtime-user is not allowed"),
    ];
    for (extra, want_code, want) in cases {
        let mut args = vec!["build", &src, &builder, &out, "--runtime-image", &runtime];
        args.extend(extra.iter().copied());
        let (code, _, stderr) = env.run(&args);
        assert_eq!(code, want_code, "{extra:?}: {stderr}");
        assert!(stderr.contains(want), "{extra:?}: {stderr}");
        assert!(!image_exists(&out), "{extra:?}");
    }
    // A runtime image that says nothing about its inputs needs -a.
    let plain = env.alias(&fixture("sti-fake"));
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--runtime-image", &plain]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no runtime artifacts to copy were specified"), "{stderr}");
    env.assert_clean();
}

#[test]
fn incremental_builds_with_a_runtime_image_keep_the_builder_stage() {
    let env = TestEnv::new("runtimeinc");
    let builder = env.alias(&fixture("sti-fake"));
    let runtime = env.alias(&fixture("sti-fake-runtime"));
    let out = env.tag("app");
    let src = incremental_app(&env).to_string();
    let stage = format!("{}-build", out);
    let args = |n: &str| -> Vec<String> {
        ["build", &src, &builder, &out, "--runtime-image", &runtime, "-a", "/opt/app-root/src/deps:.", "--incremental", "-e", n]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let run = |n: &str| {
        let a = args(n);
        env.run(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (code, _, stderr) = run("BUILD_NO=1");
    assert_eq!(code, 0, "{stderr}");
    assert!(image_exists(&stage), "the builder stage is kept as {stage}");
    let (code, _, stderr) = run("BUILD_NO=2");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("---> reusing deps from build-1"), "{stderr}");
    assert_eq!(docker_run(&out, &["cat", "deps/installed"]).1, "build-1\n");
    let stage_id = image_id(&stage);
    s2i_testkit::docker_output(&["rmi", &stage]);
    let _ = s2i_testkit::engine_command().args(["rmi", &stage_id]).output();
    env.assert_clean();
}

#[test]
fn onbuild_builders_build_from_the_source_with_their_triggers() {
    let env = TestEnv::new("onbuild");
    let builder = env.alias(&fixture("sti-fake-onbuild"));
    let out = env.tag("app");
    let root = env.work().join("ob");
    write_file(&root.join("run"), "#!/bin/sh\necho \"onbuild app: $(cat onbuild-ran), GREETING=$GREETING, $(cat assembled)\"\n", 0o755);
    write_file(&root.join(".s2i/environment"), "GREETING=hello there\n", 0o644);
    write_file(&root.join(".s2i/bin/assemble"), "#!/bin/sh\necho assembled-by-hook > assembled\n", 0o755);
    write_file(&root.join("Dockerfile"), "FROM scratch\n# the app's own Dockerfile is replaced\n", 0o644);
    let (code, _, stderr) = env.run(&["build", "ob", &builder, &out]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(docker_run(&out, &[]).1, "onbuild app: onbuild trigger ran, GREETING=hello there, assembled-by-hook\n");
    let cfg = image_config(&out);
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["./run"]));
    assert_eq!(cfg["User"], "1001");
    // The OCI standard keys, as on every result; the reference adds no label of its own here.
    assert_eq!(cfg["Labels"]["org.opencontainers.image.ref.name"], out.as_str(), "{}", cfg["Labels"]);
    assert_eq!(cfg["Labels"]["org.opencontainers.image.base.name"], format!("docker.io/{builder}").as_str(), "{}", cfg["Labels"]);
    assert!(cfg["Labels"]["org.opencontainers.image.created"].is_string(), "{}", cfg["Labels"]);

    // ONBUILD USER lines are held to --allowed-uids too.
    let (code, _, stderr) = env.run(&["build", "ob", &builder, &env.tag("refused"), "-u", "2000-"]);
    assert_eq!(code, 15, "{stderr}");
    assert!(stderr.contains("the ONBUILD USER of image"), "{stderr}");
    // Without anything to run, the build says what it needs.
    std::fs::remove_file(root.join("run")).unwrap();
    let (code, _, stderr) = env.run(&["build", "ob", &builder, &env.tag("noentry")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no valid entrypoint specified"), "{stderr}");
    env.assert_clean();
}
