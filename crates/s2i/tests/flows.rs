//! Build flows beyond the plain one, against the real daemon: incremental builds (and later
//! runtime images, injections, builders without tar, ONBUILD builders).

use std::process::Output;

use s2i_testkit::{builder_image, docker_run, image_exists, image_inspect, support_dir, write_file, TestEnv};

fn fixture(name: &str) -> String {
    builder_image(&support_dir(&format!("builders/{name}")))
}

fn s2i(env: &TestEnv, args: &[&str]) -> (i32, String, String) {
    let Output { status, stdout, stderr } = env.s2i().args(args).output().expect("s2i runs");
    let out = (status.code().unwrap_or(-1), String::from_utf8_lossy(&stdout).into(), String::from_utf8_lossy(&stderr).into());
    if std::env::var_os("S2I_TEST_VERBOSE").is_some() {
        eprintln!("s2i {args:?} -> {}\n--- stdout\n{}--- stderr\n{}", out.0, out.1, out.2);
    }
    out
}

fn image_id(image: &str) -> String {
    image_inspect(image)["Id"].as_str().unwrap().to_string()
}

/// An app whose assemble installs "dependencies" once and reuses them from /tmp/artifacts after;
/// its save-artifacts hands them on. `SAVE_FAIL` and `SAVE_EVIL` make save-artifacts misbehave.
fn incremental_app(env: &TestEnv) -> String {
    let root = env.work().join("inc");
    write_file(&root.join("app.txt"), "app\n", 0o644);
    write_file(
        &root.join(".s2i/bin/assemble"),
        r#"#!/bin/sh
set -e
cp -R /tmp/src/. ./
if [ -f /tmp/artifacts/deps/installed ]; then
  echo "---> reusing deps from $(cat /tmp/artifacts/deps/installed)"
  cp -R /tmp/artifacts/deps ./deps
else
  mkdir -p deps && echo "build-$BUILD_NO" > deps/installed
  if [ -n "$BIG_MB" ]; then dd if=/dev/urandom of=deps/big bs=1048576 count="$BIG_MB" 2>/dev/null; fi
  echo "---> installed deps"
fi
if [ -n "$ASSEMBLE_FAIL" ]; then exit 1; fi
"#,
        0o755,
    );
    write_file(
        &root.join(".s2i/bin/save-artifacts"),
        r#"#!/bin/sh
cd /opt/app-root/src
echo "---> saving deps" >&2
if [ -n "$SAVE_EVIL" ]; then ln -s /etc deps/etc; fi
tar cf - deps
if [ -n "$SAVE_FAIL" ]; then exit 3; fi
"#,
        0o755,
    );
    "inc".into()
}

#[test]
fn incremental_builds_reuse_the_previous_artifacts() {
    let env = TestEnv::new("incremental");
    let builder = env.alias(&fixture("sti-fake"));
    let out = env.tag("app");
    let src = incremental_app(&env);

    let (code, _, stderr) = s2i(&env, &["build", &src, &builder, &out, "--incremental", "-e", "BUILD_NO=1", "-e", "BIG_MB=40", "--loglevel", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Clean build will be performed: no previous image"), "{stderr}");
    assert!(stderr.contains("---> installed deps"), "{stderr}");
    let first = image_id(&out);

    let (code, _, stderr) = s2i(&env, &["build", &src, &builder, &out, "--incremental=true", "-e", "BUILD_NO=2", "--loglevel", "1"]);
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

    let (code, _, stderr) = s2i(&env, &["build", &src, &builder, &out, "--incremental", "--rm", "-e", "BUILD_NO=3"]);
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
    let src = incremental_app(&env);
    for (what, extra, expect) in [
        ("failing", "SAVE_FAIL=1", "save-artifacts exited with status 3"),
        ("hostile", "SAVE_EVIL=1", "refusing entry \"deps/etc\": it is a link that leads out of the tree"),
    ] {
        // The previous image carries the misbehaviour in its environment.
        let (code, _, stderr) = s2i(&env, &["build", &src, &builder, &out, "-e", "BUILD_NO=1", "-e", extra]);
        assert_eq!(code, 0, "{what}: {stderr}");
        let (code, _, stderr) = s2i(&env, &["build", &src, &builder, &out, "--incremental", "-e", "BUILD_NO=2"]);
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
    let src = incremental_app(&env);
    assert_eq!(s2i(&env, &["build", &src, &builder, &out, "-e", "BUILD_NO=1"]).0, 0);
    let before = image_id(&out);
    let (code, _, stderr) = s2i(&env, &["build", &src, &builder, &out, "--incremental", "--rm", "-e", "ASSEMBLE_FAIL=1"]);
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
    assert_eq!(s2i(&env, &["build", "app", &builder, &out, "-s", &url]).0, 0);
    let (code, _, stderr) = s2i(&env, &["build", "app", &builder, &out, "-s", &url, "--incremental", "--loglevel", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Clean build will be performed: there is no save-artifacts script"), "{stderr}");
    env.assert_clean();
}
