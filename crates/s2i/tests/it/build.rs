//! `s2i build` of a local directory, driven through the real binary against the real daemon.
//! Every test ends with `assert_clean`: no container and no temp file may outlive a build.

use s2i_testkit::{docker_run, fixture, image_config, image_exists, image_label, support_dir, write_file, HttpServer, TestEnv};

/// A small application: an index page and an .s2i/environment.
fn app(env: &TestEnv) -> String {
    let dir = env.work().join("app");
    write_file(&dir.join("index.html"), "hello from the app\n", 0o644);
    write_file(&dir.join("lib/util.sh"), "echo util\n", 0o755);
    write_file(&dir.join(".s2i/environment"), "# a comment\nFROM_FILE=file\nSHARED=file\n", 0o644);
    "app".to_string()
}

fn assemble_env(image: &str) -> String {
    docker_run(image, &["cat", ".sti-fake-assemble-env"]).1
}

#[test]
fn builds_a_local_directory_into_a_runnable_image() {
    let env = TestEnv::new("basic");
    let builder = env.alias(&fixture("sti-fake"));
    let out = env.tag("app");
    let src = app(&env);
    let (code, stdout, stderr) = env.run(&["build", &src, &builder, &out]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty(), "stdout is kept for machine output: {stdout:?}");
    assert!(stderr.contains("---> sti-fake assemble (uid 1001, in /opt/app-root/src)"), "assemble output is relayed: {stderr}");
    assert!(stderr.contains("sti-fake: a line on stderr"), "{stderr}");
    assert!(stderr.contains("Build completed successfully"), "{stderr}");

    // The default command is the builder's run script, and the source is in place.
    let (code, run_out, _) = docker_run(&out, &[]);
    assert_eq!(code, 0);
    assert!(run_out.contains("index.html") && run_out.contains(".sti-fake-assembled") && run_out.contains("lib"), "{run_out}");
    assert_eq!(docker_run(&out, &["cat", "index.html"]).1, "hello from the app\n");
    assert_eq!(docker_run(&out, &["sh", "lib/util.sh"]).1, "util\n");
    let mode = docker_run(&out, &["stat", "-c", "%a", "lib/util.sh"]).1;
    assert_eq!(mode.trim(), "755", "modes are preserved");

    let cfg = image_config(&out);
    assert_eq!(cfg["Cmd"], serde_json::json!(["/usr/libexec/s2i/run"]));
    assert_eq!(cfg["User"], "1001");
    assert!(cfg["Entrypoint"].is_null() || cfg["Entrypoint"] == serde_json::json!([]), "{}", cfg["Entrypoint"]);
    let envs: Vec<String> = serde_json::from_value(cfg["Env"].clone()).unwrap();
    assert!(envs.contains(&"FROM_FILE=file".to_string()), "{envs:?}");
    assert!(envs.contains(&"STI_SCRIPTS_PATH=/usr/libexec/s2i".to_string()), "builder env is kept: {envs:?}");

    assert_eq!(image_label(&out, "io.openshift.s2i.build.image").as_deref(), Some(format!("docker.io/{builder}").as_str()));
    assert_eq!(image_label(&out, "io.openshift.s2i.build.source-location").as_deref(), Some("app"));
    assert_eq!(image_label(&out, "io.k8s.display-name").as_deref(), Some(out.as_str()));
    assert_eq!(image_label(&out, "io.openshift.s2i.scripts-url").as_deref(), Some("image:///usr/libexec/s2i"), "builder labels are inherited");
    assert_eq!(image_label(&out, "io.k8s.description"), None);
    env.assert_clean();
}

#[test]
fn name_description_and_image_metadata_become_labels() {
    let env = TestEnv::new("labels");
    let builder = env.alias(&fixture("sti-fake"));
    let out = env.tag("app");
    let src = app(&env);
    let meta = r#"{"labels":[{"team":"payments"},{"io.k8s.display-name":"from-metadata"}]}"#;
    let meta_env = format!("IMAGE_METADATA={meta}");
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "-n", "My App", "--description", "does things", "-e", &meta_env]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(image_label(&out, "io.k8s.description").as_deref(), Some("does things"));
    assert_eq!(image_label(&out, "team").as_deref(), Some("payments"));
    assert_eq!(image_label(&out, "io.k8s.display-name").as_deref(), Some("from-metadata"), "metadata labels win over generated ones");
    env.assert_clean();

    let out2 = env.tag("named");
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out2, "-n", "My App"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(image_label(&out2, "io.k8s.display-name").as_deref(), Some("My App"));
    env.assert_clean();
}

#[test]
fn bad_image_metadata_fails_the_build_without_a_tag() {
    let env = TestEnv::new("badmeta");
    let builder = env.alias(&fixture("sti-fake"));
    let src = app(&env);
    for (what, meta, expect) in [
        ("json", "{not json", "not JSON"),
        ("shape", r#"{"labels":[{"n":1}]}"#, "is not a string"),
        ("size", &format!(r#"{{"labels":[{{"big":"{}"}}]}}"#, "x".repeat(10300)), "exceeds the maximum limit 10240"),
    ] {
        let out = env.tag(what);
        let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "-e", &format!("IMAGE_METADATA={meta}")]);
        assert_eq!(code, 1, "{what}: {stderr}");
        assert!(stderr.contains(expect), "{what}: {stderr}");
        assert!(!image_exists(&out), "{what}: no half-made tag");
    }
    env.assert_clean();
}

#[test]
fn environment_precedence_is_file_then_flags_then_env_file() {
    let env = TestEnv::new("envprec");
    let builder = env.alias(&fixture("sti-fake"));
    let out = env.tag("app");
    let src = app(&env);
    write_file(&env.work().join("build.env"), "# comment\nSHARED=envfile\nFROM_ENVFILE=yes\nnot a pair\n", 0o644);
    let (code, _, stderr) = env.run(
        &["build", &src, &builder, &out, "-e", "SHARED=flag", "-e", "FROM_FLAG=1", "-e", "FROM_FLAG=2", "-E", "build.env"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("build.env:4") && stderr.contains("not a pair"), "a skipped line is named: {stderr}");
    let seen = assemble_env(&out);
    for expected in ["FROM_FILE=file", "SHARED=envfile", "FROM_FLAG=2", "FROM_ENVFILE=yes"] {
        assert!(seen.lines().any(|l| l == expected), "assemble saw {expected}: {seen}");
    }
    let envs: Vec<String> = serde_json::from_value(image_config(&out)["Env"].clone()).unwrap();
    assert_eq!(envs.iter().filter(|e| e.starts_with("SHARED=")).collect::<Vec<_>>(), ["SHARED=envfile"], "committed once, last wins");
    assert_eq!(envs.iter().filter(|e| e.starts_with("FROM_FLAG=")).collect::<Vec<_>>(), ["FROM_FLAG=2"]);
    env.assert_clean();
}

#[test]
fn a_malformed_s2i_environment_line_is_skipped_with_a_warning() {
    let env = TestEnv::new("envwarn");
    let builder = env.alias(&fixture("sti-fake"));
    let out = env.tag("app");
    let src = app(&env);
    write_file(&env.work().join("app/.s2i/environment"), "GOOD=1\njust words\n", 0o644);
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("WARNING:") && stderr.contains(".s2i/environment:2"), "{stderr}");
    assert!(assemble_env(&out).lines().any(|l| l == "GOOD=1"));
    env.assert_clean();
}

#[test]
fn source_scripts_override_the_image_and_can_call_the_stock_ones() {
    let env = TestEnv::new("hooks");
    let builder = env.alias(&fixture("sti-fake"));
    let out = env.tag("app");
    let src = app(&env);
    write_file(
        &env.work().join("app/.s2i/bin/assemble"),
        "#!/bin/sh\nset -e\necho \"Running custom assemble\"\n\"${STI_SCRIPTS_PATH}/assemble\"\necho hooked > hook-ran\n",
        0o755,
    );
    write_file(&env.work().join("app/.s2i/bin/run"), "#!/bin/sh\necho \"Running custom run\"\nexec \"${STI_SCRIPTS_PATH}/run\"\n", 0o755);
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Running custom assemble") && stderr.contains("sti-fake assemble"), "{stderr}");
    assert_eq!(docker_run(&out, &["cat", "hook-ran"]).1, "hooked\n");
    let (_, run_out, _) = docker_run(&out, &[]);
    assert!(run_out.contains("Running custom run") && run_out.contains("sti-fake run:"), "{run_out}");
    assert_eq!(image_config(&out)["Cmd"], serde_json::json!(["/tmp/scripts/run"]));
    // Scripts are moved out of the source, as in the reference.
    let (code, _, _) = docker_run(&out, &["test", "-e", ".s2i/bin/assemble"]);
    assert_ne!(code, 0, "the assemble override is not copied into the app");
    env.assert_clean();
}

#[test]
fn scripts_from_file_and_http_urls() {
    let env = TestEnv::new("scripturls");
    let builder = env.alias(&fixture("sti-fake-nolabel"));
    let src = app(&env);
    let scripts = env.work().join("scripts");
    write_file(&scripts.join("assemble"), "#!/bin/sh\nset -e\ncp -R /tmp/src/. ./\necho \"assembled by $ORIGIN\" > origin\n", 0o644);
    write_file(&scripts.join("run"), "#!/bin/sh\ncat origin\n", 0o644);

    // file:// absolute, file:// relative to the working directory, and http://.
    let server = HttpServer::serve_dir(&scripts);
    let cases = [
        ("abs", format!("file://{}", scripts.display())),
        ("rel", "file://scripts".to_string()),
        ("http", format!("{}/", server.url())),
    ];
    for (what, url) in cases {
        let out = env.tag(what);
        let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--scripts-url", &url, "-e", &format!("ORIGIN={what}")]);
        assert_eq!(code, 0, "{what}: {stderr}");
        assert_eq!(docker_run(&out, &[]).1, format!("assembled by {what}\n"), "{what}");
    }
    let requested = server.requests();
    assert!(requested.iter().any(|p| p == "/assemble") && requested.iter().any(|p| p == "/run"), "{requested:?}");
    env.assert_clean();
}

#[test]
fn a_scripts_url_with_nothing_there_is_an_error() {
    let env = TestEnv::new("badscripts");
    let builder = env.alias(&fixture("sti-fake"));
    let src = app(&env);
    let server = HttpServer::serve_dir(&env.work());
    let out = env.tag("x");
    let url = format!("{}/nothing", server.url());
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "-s", &url]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("could not download any scripts from URL") && stderr.contains("response code 404"), "{stderr}");
    assert!(!image_exists(&out));
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "-s", "ftp://example/x"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("use image://, file:// or http(s)://"), "{stderr}");
    env.assert_clean();
}

#[test]
fn missing_required_scripts_say_which_and_where() {
    let env = TestEnv::new("noscripts");
    let builder = env.alias(&fixture("sti-fake-nolabel"));
    let src = app(&env);
    write_file(&env.work().join("app/.s2i/bin/assemble"), "#!/bin/sh\ntrue\n", 0o755);
    let (code, _, stderr) = env.run(&["build", &src, &builder, &env.tag("x")]);
    assert_eq!(code, 11, "{stderr}");
    assert!(stderr.contains("failed to install [run]"), "{stderr}");
    assert!(stderr.contains(".s2i/bin") && stderr.contains("no io.openshift.s2i.scripts-url label"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    env.assert_clean();
}

#[test]
fn deprecated_labels_destination_and_entrypoint_of_old_builders() {
    let env = TestEnv::new("legacy");
    let builder = env.alias(&fixture("sti-fake-legacy"));
    let out = env.tag("app");
    let src = app(&env);
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("deprecated label 'io.s2i.scripts-url'"), "{stderr}");
    assert!(stderr.contains("legacy assemble:") && stderr.contains("index.html"), "source went to the label's destination: {stderr}");
    let cfg = image_config(&out);
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/usr/bin/env", "LEGACY_ENTRYPOINT=1"]), "the builder's entrypoint is kept");
    assert_eq!(cfg["Cmd"], serde_json::json!(["/usr/local/sti/run"]));
    assert_eq!(image_label(&out, "vendor").as_deref(), Some("acme"));
    assert!(docker_run(&out, &[]).1.contains("LEGACY_ENTRYPOINT=1"));
    env.assert_clean();

    // -d overrides the label: the source lands in /opt instead.
    let out2 = env.tag("dest");
    let scripts = env.work().join("s");
    write_file(&scripts.join("assemble"), "#!/bin/sh\nls /opt/src > /listing\n", 0o755);
    write_file(&scripts.join("run"), "#!/bin/sh\ncat /listing\n", 0o755);
    let url = format!("file://{}", scripts.display());
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out2, "-d", "/opt", "-s", &url]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(image_config(&out2)["Cmd"], serde_json::json!(["/opt/scripts/run"]));
    assert!(docker_run(&out2, &["/opt/scripts/run"]).1.contains("index.html"));
    env.assert_clean();
}

#[test]
fn a_failing_assemble_reports_its_status_and_stderr_and_leaves_nothing() {
    let env = TestEnv::new("assemblefail");
    let builder = env.alias(&fixture("sti-fake"));
    let out = env.tag("app");
    let src = app(&env);
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "-e", "ASSEMBLE_FAIL=7"]);
    assert_eq!(code, 1, "{stderr}");
    let error_line = stderr.lines().find(|l| l.starts_with("error:")).expect("an error line");
    assert!(error_line.contains("assemble exited with status 7"), "{error_line}");
    assert!(stderr.contains("its last error output:\nsti-fake: dependency resolution failed\nsti-fake: giving up with status 7"), "{stderr}");
    assert!(!image_exists(&out), "no half-made tag");
    env.assert_clean();
}

#[test]
fn quiet_mutes_the_scripts_stdout_but_not_its_stderr() {
    let env = TestEnv::new("quiet");
    let builder = env.alias(&fixture("sti-fake"));
    let src = app(&env);
    let (code, _, stderr) = env.run(&["build", &src, &builder, &env.tag("app"), "-q"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("sti-fake assemble"), "{stderr}");
    assert!(stderr.contains("sti-fake: a line on stderr"), "{stderr}");
    env.assert_clean();
}

#[test]
fn ignore_rules_and_exclude_shape_the_streamed_tree() {
    let env = TestEnv::new("ignore");
    let builder = env.alias(&fixture("sti-fake"));
    let out = env.tag("app");
    let src = app(&env);
    let root = env.work().join("app");
    write_file(&root.join(".s2iignore"), "*.log\ntmp\n!keep.log\n", 0o644);
    write_file(&root.join("debug.log"), "x", 0o644);
    write_file(&root.join("keep.log"), "x", 0o644);
    write_file(&root.join("tmp/big"), "x", 0o644);
    write_file(&root.join("sub/deep.log"), "x", 0o644);
    write_file(&root.join(".git/HEAD"), "ref: refs/heads/main\n", 0o644);
    write_file(&root.join("secret.key"), "k", 0o600);
    // A .git without commits is a git source unless --copy says to take the directory as it is.
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--copy", "--exclude", r"\.key$"]);
    assert_eq!(code, 0, "{stderr}");
    let listing = docker_run(&out, &["find", ".", "-path", "./.sti-fake*", "-prune", "-o", "-print"]).1;
    for present in ["./keep.log", "./sub/deep.log", "./index.html", "./.s2iignore"] {
        assert!(listing.lines().any(|l| l == present), "{present} in {listing}");
    }
    for absent in ["./debug.log", "./tmp", "./secret.key"] {
        assert!(!listing.lines().any(|l| l == absent), "{absent} not in {listing}");
    }
    // The default --exclude keeps .git out; --exclude "" lets it through.
    assert!(listing.lines().any(|l| l == "./.git/HEAD"), "a custom --exclude replaces the default: {listing}");
    let out2 = env.tag("default");
    assert_eq!(env.run(&["build", &src, &builder, &out2, "-c"]).0, 0);
    let listing = docker_run(&out2, &["find", "."]).1;
    assert!(!listing.contains(".git/") && listing.contains("secret.key"), "{listing}");
    env.assert_clean();
}

#[test]
fn symlinks_are_followed_unless_kept() {
    let env = TestEnv::new("symlinks");
    let builder = env.alias(&fixture("sti-fake"));
    let src = app(&env);
    let root = env.work().join("app");
    std::os::unix::fs::symlink("index.html", root.join("link.html")).unwrap();
    let (out, kept) = (env.tag("followed"), env.tag("kept"));
    assert_eq!(env.run(&["build", &src, &builder, &out]).0, 0);
    assert_eq!(env.run(&["build", &src, &builder, &kept, "--keep-symlinks"]).0, 0);
    assert_eq!(docker_run(&out, &["sh", "-c", "test -L link.html && echo link || cat link.html"]).1, "hello from the app\n");
    assert_eq!(docker_run(&kept, &["sh", "-c", "test -L link.html && readlink link.html"]).1, "index.html\n");
    env.assert_clean();
}

#[test]
fn bad_input_fails_clearly_and_leaves_nothing() {
    let env = TestEnv::new("badinput");
    let builder = env.alias(&fixture("sti-fake"));
    let src = app(&env);
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (vec!["build".into(), "missing-dir".into(), builder.clone(), "x".into()], 1, "source \"missing-dir\" does not exist"),
        (vec!["build".into(), src.clone(), builder.clone(), "x".into(), "-e".into(), "NOVALUE".into()], 1, "must be NAME=VALUE"),
        (vec!["build".into(), src.clone(), builder.clone(), "Bad_Tag".into()], 1, "lowercase"),
        (vec!["build".into(), src.clone(), builder.clone(), "x".into(), "--context-dir".into(), "nope".into()], 1, "context directory \"nope\" does not exist"),
        (vec!["build".into(), src.clone(), "s2i-test/does-not-exist:1".into(), "x".into(), "--pull-policy".into(), "never".into()], 1, "unable to get metadata for s2i-test/does-not-exist:1"),
        (vec!["build".into(), src.clone(), builder.clone(), "x".into(), "--pull-policy".into(), "sometimes".into()], 1, "valid values are: always, never or if-not-present"),
        (vec!["build".into(), src.clone(), builder.clone(), "x".into(), "--push".into()], 1, "TAG x names no registry"),
        (vec!["build".into(), src.clone(), builder.clone(), "x".into(), "-U".into(), "unix:///nonexistent/docker.sock".into()], 1, "cannot connect to the container engine at unix:///nonexistent/docker.sock"),
        (vec!["build".into(), src.clone(), builder.clone(), "x".into(), "-u".into(), "1-".into(), "--assemble-user".into(), "0".into()], 15, "--assemble-user is not allowed"),
    ];
    for (args, want_code, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, stderr) = env.run(&args);
        assert_eq!(code, want_code, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        let error_lines = stderr.lines().filter(|l| l.starts_with("error:") || l.starts_with("error: ")).count();
        assert!(error_lines <= 1, "one error line: {stderr}");
    }
    // Pulling what no registry has fails as a pull, with the reference's exit code.
    let (code, _, stderr) = env.run(&["build", &src, "s2i-test/not-here:1", "x"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unable to get s2i-test/not-here:1"), "{stderr}");
    assert!(!image_exists("x"));
    env.assert_clean();
}

#[test]
fn allowed_uids_refuse_a_root_builder_and_accept_a_numeric_one() {
    let env = TestEnv::new("uids");
    let src = app(&env);
    let root_builder = env.alias(&fixture("sti-fake-legacy"));
    let (code, _, stderr) = env.run(&["build", &src, &root_builder, &env.tag("a"), "--allowed-uids", "1-"]);
    assert_eq!(code, 15, "{stderr}");
    assert!(stderr.contains("USER of image") && stderr.contains("1-"), "{stderr}");
    let numeric = env.alias(&fixture("sti-fake"));
    let (code, _, stderr) = env.run(&["build", &src, &numeric, &env.tag("b"), "-u", "1000-2000"]);
    assert_eq!(code, 0, "{stderr}");

    // A named USER is looked up in the image's /etc/passwd (fakeuser is uid 431).
    let named = env.alias(&fixture("sti-fake-user"));
    let out = env.tag("named");
    let (code, _, stderr) = env.run(&["build", &src, &named, &out, "-u", "400-500"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(docker_run(&out, &[]).1, "assembled as 431\n");
    let (code, _, stderr) = env.run(&["build", &src, &named, &env.tag("c"), "-u", "1000-"]);
    assert_eq!(code, 15, "{stderr}");
    assert!(stderr.contains("\"fakeuser\" must be a numeric uid within the allowed ranges 1000-"), "{stderr}");
    let (code, _, stderr) = env.run(&["build", &src, &named, &env.tag("d"), "-u", "400-500", "--assemble-user", "ghost"]);
    assert_eq!(code, 15, "a name missing from /etc/passwd is refused: {stderr}");
    env.assert_clean();
}

#[test]
fn a_builder_without_tar_gets_its_input_from_the_engine() {
    let env = TestEnv::new("notar");
    let src = app(&env);
    let no_tar = env.alias(&fixture("sti-fake-no-tar"));
    let out = env.tag("a");
    let (code, _, stderr) = env.run(&["build", &src, &no_tar, &out, "--loglevel", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("has no tar: the engine will copy the input into the container instead"), "{stderr}");
    assert!(stderr.contains("no-tar assemble sees: index.html lib"), "{stderr}");
    assert_eq!(docker_run(&out, &[]).1, "hello from the app\n");
    assert_eq!(image_config(&out)["Cmd"], serde_json::json!(["/usr/libexec/s2i/run"]));
    env.assert_clean();
}

#[test]
fn a_builder_without_a_shell_is_named_as_such() {
    let env = TestEnv::new("noshell");
    let src = app(&env);
    let no_shell = env.alias(&fixture("sti-fake-no-shell"));
    let (code, _, stderr) = env.run(&["build", &src, &no_shell, &env.tag("b")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("has no /bin/sh"), "{stderr}");
    env.assert_clean();
}

#[test]
fn injections_are_readable_during_assemble_and_empty_afterwards() {
    let env = TestEnv::new("inject");
    let builder = env.alias(&fixture("sti-fake"));
    let out = env.tag("app");
    let src = app(&env);
    let secrets = env.work().join("secrets");
    write_file(&secrets.join("token"), "s3cr3t\n", 0o600);
    write_file(&secrets.join("nested/key"), "k3y\n", 0o600);
    write_file(&env.work().join("single.txt"), "single\n", 0o600);
    write_file(
        &env.work().join("app/.s2i/bin/assemble"),
        "#!/bin/sh\nset -e\ncat /tmp/secret/token /tmp/secret/nested/key secret.txt > /tmp/seen\n\"${STI_SCRIPTS_PATH}/assemble\"\ncp /tmp/seen ./seen\n",
        0o755,
    );
    let dir_spec = format!("{}:/tmp/secret", secrets.display());
    let file_spec = format!("{}:secret.txt", env.work().join("single.txt").display());
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out, "--inject", &dir_spec, "-i", &file_spec]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(docker_run(&out, &["cat", "seen"]).1, "s3cr3t\nk3y\nsingle\n", "assemble read them");
    let sizes = docker_run(&out, &["sh", "-c", "wc -c < /tmp/secret/token; wc -c < /tmp/secret/nested/key; wc -c < secret.txt; wc -c < /tmp/rm-injections"]).1;
    assert_eq!(sizes.split_whitespace().collect::<Vec<_>>(), ["0", "0", "0", "0"], "emptied afterwards");

    let bad = format!("{}:/no/such/dir/secret", secrets.display());
    let (code, _, stderr) = env.run(&["build", &src, &builder, &env.tag("bad"), "--inject", &bad]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("must exist in the container (/no/such/dir/secret)"), "{stderr}");
    let (code, _, stderr) = env.run(&["build", &src, &builder, &env.tag("bad2"), "--inject", "/nonexistent/secret:/tmp/x"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("reading the injection source /nonexistent/secret"), "{stderr}");
    let (code, _, stderr) = env.run(&["build", &src, &builder, &env.tag("bad3"), "--inject", "/a/b*:/tmp"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("invalid characters in filename"), "{stderr}");
    env.assert_clean();
}

#[test]
fn container_settings_reach_the_assemble_container() {
    let env = TestEnv::new("settings");
    let builder = env.alias(&fixture("sti-fake-nolabel"));
    let src = app(&env);
    let shared = env.work().join("shared");
    write_file(&shared.join("data.txt"), "from the host\n", 0o644);
    let scripts = env.work().join("s");
    write_file(
        &scripts.join("assemble"),
        "#!/bin/sh\nset -e\ngrep build-host /etc/hosts > hosts\ncat /mnt/shared/data.txt > volume\ngrep CapBnd /proc/self/status > caps\necho \"nets: $(ls /sys/class/net | tr '\\n' ' ')\" > nets\n",
        0o755,
    );
    write_file(&scripts.join("run"), "#!/bin/sh\ncat hosts volume caps nets\n", 0o755);
    let url = format!("file://{}", scripts.display());
    let vol = format!("{}:/mnt/shared:ro", shared.display());
    let (with, without) = (env.tag("with"), env.tag("without"));
    let (code, _, stderr) = env.run(
        &["build", &src, &builder, &with, "-s", &url, "--add-host", "build-host:10.1.2.3", "-v", &vol, "--cap-drop", "ALL", "--assemble-user", "0", "--network", "none"],
    );
    assert_eq!(code, 0, "{stderr}");
    let shown = docker_run(&with, &[]).1;
    assert!(shown.contains("10.1.2.3") && shown.contains("build-host"), "{shown}");
    assert!(shown.contains("from the host"), "{shown}");
    assert!(shown.contains("CapBnd:\t0000000000000000"), "all capabilities dropped: {shown}");
    assert!(shown.contains("nets: lo \n"), "--network none leaves only loopback: {shown}");
    let (code, _, stderr) = env.run(&["build", &src, &builder, &without, "-s", &url, "--assemble-user", "0", "-v", &vol, "--add-host", "build-host:10.9.9.9"]);
    assert_eq!(code, 0, "{stderr}");
    let shown = docker_run(&without, &[]).1;
    assert!(!shown.contains("CapBnd:\t0000000000000000") && shown.contains("eth0"), "{shown}");
    env.assert_clean();
}

#[test]
fn save_temp_dir_keeps_what_assemble_was_fed() {
    let env = TestEnv::new("savetemp");
    let builder = env.alias(&fixture("sti-fake"));
    let src = app(&env);
    let (code, _, stderr) = env.run(&["build", &src, &builder, &env.tag("a"), "--save-temp-dir"]);
    assert_eq!(code, 0, "{stderr}");
    let kept = env.leftover_temp_entries();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let tar = kept[0].join("upload.tar");
    let listing = std::process::Command::new("tar").arg("tf").arg(&tar).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.lines().any(|l| l.trim_end_matches('/') == "src/index.html"), "{listing}");
    assert!(stderr.contains(&kept[0].display().to_string()), "the kept dir is named: {stderr}");
    std::fs::remove_dir_all(&kept[0]).unwrap();
    env.assert_clean();
}

#[test]
fn an_untagged_build_reports_its_image_id() {
    let env = TestEnv::new("untagged");
    let builder = env.alias(&fixture("sti-fake"));
    let src = app(&env);
    let (code, _, stderr) = env.run(&["build", &src, &builder, "--loglevel", "1"]);
    assert_eq!(code, 0, "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("Image ") && l.ends_with("built (untagged)")).expect(&stderr);
    let id = line.split_whitespace().nth(1).unwrap();
    assert!(image_exists(id));
    s2i_testkit::docker_output(&["rmi", id]);
    env.assert_clean();
}

#[test]
fn ctrl_c_removes_the_build_container() {
    let env = TestEnv::new("interrupt");
    let builder = env.alias(&fixture("sti-fake"));
    let src = app(&env);
    let mut child = env.s2i().args(["build", &src, &builder, &env.tag("a"), "-e", "ASSEMBLE_SLEEP=30"]).spawn().unwrap();
    // Wait until the build container exists, then interrupt.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while env.leftover_containers().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the build container never appeared");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let started = std::time::Instant::now();
    let _ = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    assert!(started.elapsed().as_secs() < 15, "interruption is prompt");
    env.assert_clean();
}

#[test]
fn the_api_version_can_be_pinned() {
    let env = TestEnv::new("apiversion");
    let builder = env.alias(&fixture("sti-fake"));
    let src = app(&env);
    let out = env.tag("a");
    let output = env.s2i().args(["build", &src, &builder, &out, "--loglevel", "2"]).env("DOCKER_API_VERSION", "1.40").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("API 1.40"), "{stderr}");
    let output = env.s2i().args(["build", &src, &builder, &out]).env("DOCKER_API_VERSION", "latest").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    env.assert_clean();
}

/// The unix socket of the engine under test (the Docker daemon's, or the test kit's Podman service).
fn engine_socket() -> String {
    let host = s2i_testkit::engine_host();
    host.strip_prefix("unix://").unwrap_or_else(|| panic!("these tests need the engine on a unix socket, not {host}")).to_string()
}

#[test]
fn the_daemon_can_be_reached_through_docker_host() {
    let env = TestEnv::new("dockerhost");
    let builder = env.alias(&fixture("sti-fake"));
    let src = app(&env);
    let output = env
        .s2i()
        .args(["build", &src, &builder, &env.tag("a")])
        .env("DOCKER_HOST", format!("unix://{}", engine_socket()))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = env.s2i().args(["build", &src, &builder, "x"]).env("DOCKER_HOST", "tcp://127.0.0.1:1").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to the container engine at tcp://127.0.0.1:1") && stderr.contains("hint:"), "{stderr}");
    env.assert_clean();
}

#[test]
fn the_readme_example_builds_and_serves_its_page() {
    let env = TestEnv::new("readme");
    let base = s2i_testkit::base_image();
    let builder = env.tag("static-web-builder");
    let root = support_dir("..");
    let context = root.join("builders/static-web");
    s2i_testkit::docker_output(&["build", "-q", "-t", &builder, "--build-arg", &format!("BASE_IMAGE={base}"), context.to_str().unwrap()]);
    let out = env.tag("hello-web");
    let example = root.join("examples/hello-web");
    let (code, _, stderr) = env.run(&["build", example.to_str().unwrap(), &builder, &out]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("---> Running .s2i/build-hook"), "{stderr}");
    let (code, page, err) = docker_run(&out, &["sh", "-c", "/usr/libexec/s2i/run & sleep 1; wget -qO- http://127.0.0.1:8080/"]);
    assert_eq!(code, 0, "{err}");
    assert!(page.contains("<h1>Hello from s2i</h1>") && page.contains("GREETING=hello"), "{page}");
    env.assert_clean();
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
fn make_certs(dir: &std::path::Path, ca_name: &str) {
    let sh = |script: &str| {
        let out = std::process::Command::new("sh").arg("-c").arg(script).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::create_dir_all(dir).unwrap();
    sh(&format!("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 2 -subj /CN={ca_name} 2>/dev/null"));
    for (who, ext) in [("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"), ("client", "extendedKeyUsage=clientAuth")] {
        std::fs::write(dir.join(format!("{who}.ext")), ext).unwrap();
        sh(&format!(
            "openssl req -newkey rsa:2048 -nodes -keyout {who}-key.pem -out {who}.csr -subj /CN={who} 2>/dev/null && \
             openssl x509 -req -in {who}.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out {who}.pem -days 2 -extfile {who}.ext 2>/dev/null"
        ));
    }
    // Docker's names for the client side, as found in DOCKER_CERT_PATH.
    std::fs::copy(dir.join("client.pem"), dir.join("cert.pem")).unwrap();
    std::fs::copy(dir.join("client-key.pem"), dir.join("key.pem")).unwrap();
}

/// socat terminating TLS (client certificate required) in front of the daemon's socket.
struct TlsProxy {
    child: std::process::Child,
    port: u16,
}

impl TlsProxy {
    fn start(certs: &std::path::Path) -> TlsProxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={0}/server.pem,key={0}/server-key.pem,cafile={0}/ca.pem,verify=1",
            certs.display()
        );
        let child = std::process::Command::new("socat")
            .args([&listen, &format!("UNIX-CONNECT:{}", engine_socket())])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("socat is installed (apt-get install socat)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        TlsProxy { child, port }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn builds_through_a_tls_daemon_endpoint() {
    let env = TestEnv::new("tls");
    let builder = env.alias(&fixture("sti-fake"));
    let src = app(&env);
    let certs = env.work().join("certs");
    make_certs(&certs, "s2i-test-ca");
    let other = env.work().join("other");
    make_certs(&other, "another-ca");
    let proxy = TlsProxy::start(&certs);
    let url = format!("tcp://127.0.0.1:{}", proxy.port);
    let c = |f: &str| certs.join(f).display().to_string();

    // --tlsverify with the right CA and a client certificate: a whole build goes through TLS.
    let out = env.tag("verified");
    let (code, _, stderr) =
        env.run(&["build", &src, &builder, &out, "-U", &url, "--tlsverify", "--ca", &c("ca.pem"), "--cert", &c("cert.pem"), "--key", &c("key.pem")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("sti-fake assemble"), "output is relayed over TLS too: {stderr}");
    assert!(image_exists(&out));

    // The same from the environment, as the docker CLI reads it.
    let out_env = env.tag("fromenv");
    let output = env
        .s2i()
        .args(["build", &src, &builder, &out_env])
        .env("DOCKER_HOST", &url)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", &certs)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // --tls alone encrypts without checking the daemon: a CA we don't have is fine.
    let out_tls = env.tag("unverified");
    let (code, _, stderr) = env.run(
        &["build", &src, &builder, &out_tls, "-U", &url, "--tls", "--ca", "/nonexistent/ca.pem", "--cert", &c("cert.pem"), "--key", &c("key.pem")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr.matches("--tls without --tlsverify").count(), 1, "one warning: {stderr}");

    // An https:// endpoint is spoken to with TLS even without --tls (never plain HTTP).
    let https = url.replacen("tcp://", "https://", 1);
    let (code, _, stderr) = env.run(&["build", &src, &builder, &out_tls, "-U", &https, "--cert", &c("cert.pem"), "--key", &c("key.pem")]);
    assert_eq!(code, 0, "{stderr}");

    // A daemon signed by another CA is refused under --tlsverify.
    let wrong_ca = other.join("ca.pem").display().to_string();
    let (code, _, stderr) =
        env.run(&["build", &src, &builder, "x", "-U", &url, "--tlsverify", "--ca", &wrong_ca, "--cert", &c("cert.pem"), "--key", &c("key.pem")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot connect to the container engine"), "{stderr}");
    // No client certificate: the daemon side hangs up.
    let (code, _, stderr) = env.run(&["build", &src, &builder, "x", "-U", &url, "--tlsverify", "--ca", &c("ca.pem"), "--cert", "/none", "--key", "/none"]);
    assert_eq!(code, 1, "{stderr}");
    // A certificate without its key is a configuration error.
    let (code, _, stderr) = env.run(&["build", &src, &builder, "x", "-U", &url, "--tls", "--cert", &c("cert.pem"), "--key", "/none"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("a client certificate needs its key"), "{stderr}");
    // Plain HTTP to a TLS port fails clearly.
    let (code, _, stderr) = env.run(&["build", &src, &builder, "x", "-U", &url]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot connect to the container engine"), "{stderr}");
    drop(proxy);
    env.assert_clean();
}
