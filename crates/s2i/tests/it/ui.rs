//! What a person at a terminal, and a tool reading s2i's output, sees: help and error texts
//! (insta snapshots, with temp paths and generated names filtered), the live lines and colours on
//! a terminal (under a pseudo-terminal), plain lines and a clean stdout without one.

use s2i_testkit::{fixture, run_with_tty_stderr, write_file, TestEnv};

/// Snapshots live in tests/it/snapshots; names, ids and times of a run are filtered.
fn settings(env: &TestEnv) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    s.add_filter(&regex_escape(&env.tmpdir().display().to_string()), "[TMP]");
    s.add_filter(&regex_escape(env.id()), "[ID]");
    s.add_filter(r"\b[0-9]+\.[0-9]+s\b", "[SECS]");
    s
}

fn regex_escape(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_string() } else { format!("\\{c}") }).collect()
}

#[test]
fn help_texts_match_their_snapshots() {
    let env = TestEnv::new("help");
    for (args, name) in [(&["--help"][..], "s2i-help"), (&["build", "--help"][..], "build-help"), (&["rebuild", "--help"][..], "rebuild-help"), (&["verify", "--help"][..], "verify-help")] {
        // A fixed width, whatever the terminal the tests run in.
        let out = env.s2i().args(args).env("COLUMNS", "100").output().unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8(out.stdout).unwrap();
        settings(&env).bind(|| insta::assert_snapshot!(name, stdout));
    }
    env.assert_clean();
}

#[test]
fn error_texts_match_their_snapshots() {
    let env = TestEnv::new("errors");
    let builder = env.alias(&fixture("sti-fake"));
    write_file(&env.work().join("app/index.html"), "hi\n", 0o644);
    let cases: [(&str, Vec<&str>); 5] = [
        ("error-missing-arguments", vec!["build"]),
        ("error-pull-policy", vec!["build", "app", &builder, "--pull-policy", "sometimes"]),
        ("error-image-not-local", vec!["build", "app", "s2i-test/not-here:1", "--pull-policy", "never"]),
        ("error-context-dir", vec!["build", "app", &builder, "--context-dir", "nope"]),
        ("error-limit", vec!["build", "app", &builder]),
    ];
    for (name, args) in cases {
        let mut cmd = env.s2i();
        if name == "error-limit" {
            cmd.env("S2I_LIMIT_FILE_SIZE", "lots");
        }
        let out = cmd.args(&args).output().unwrap();
        assert!(!out.status.success(), "{name}");
        assert!(out.stdout.is_empty(), "{name}: nothing on stdout");
        let stderr = String::from_utf8(out.stderr).unwrap();
        settings(&env).bind(|| insta::assert_snapshot!(name, stderr));
    }
    env.assert_clean();
}

/// The `--output=json` documents of a real build and of a failure, as printed: the fields, their
/// order and their kinds (ids, times and the engine's version filtered). docs/json-output.md
/// describes each field.
#[test]
fn json_documents_match_their_snapshots() {
    let env = TestEnv::new("json-shape");
    let builder = env.alias(&fixture("sti-fake"));
    write_file(&env.work().join("app/index.html"), "hi\n", 0o644);
    let out = env.tag("app");
    let mut s = settings(&env);
    s.add_filter(r#""seconds":[0-9.]+"#, r#""seconds":[SECS]"#);
    s.add_filter(r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]");
    s.add_filter(r#""org.opencontainers.image.created":"[0-9T:Z-]+""#, r#""org.opencontainers.image.created":"[TIME]""#);
    // Podman gives an image built locally the digest of its stored manifest, Docker gives none
    // (docs/compatibility.md): the label is the engine's, not the document's shape.
    s.add_filter(r#""org.opencontainers.image.base.digest":"sha256:\[DIGEST\]","#, "");
    s.add_filter(r#""kind":"(docker|podman|oci)""#, r#""kind":"[ENGINE]""#);
    s.add_filter(r#""(version|api_version|endpoint)":"[^"]*""#, r#""$1":"[…]""#);
    for (name, args, code) in [
        ("json-build-success", vec!["build", "app", &builder, &out, "--output=json", "--label", "team=payments"], 0),
        ("json-build-failure", vec!["build", "app", "s2i-test/not-here:1", &out, "--pull-policy", "never", "--output=json"], 1),
    ] {
        let output = env.s2i().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(code), "{name}: {}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "one document: {stdout}");
        s.bind(|| insta::assert_snapshot!(name, stdout));
    }
    env.assert_clean();
}

/// Every limit variable is read with one grammar, and a value it cannot read is an error that
/// names it: the registry client's, the credential helpers' and the OCI store's were dropped
/// without a word, and the build went on with the default.
#[test]
fn a_limit_variable_that_cannot_be_read_is_an_error_naming_it() {
    let env = TestEnv::new("limit-vars");
    write_file(&env.work().join("app/index.html"), "hi\n", 0o644);
    let store = env.work().join("oci-store");
    let store = store.to_str().unwrap();
    for (variable, value, engine) in [
        ("S2I_REGISTRY_IDLE_TIMEOUT", "lots", "docker"),
        ("S2I_REGISTRY_CONFIG_MAX_BYTES", "big", "docker"),
        ("S2I_CREDENTIAL_HELPER_TIMEOUT", "soon", "docker"),
        ("S2I_OCI_MAX_JSON_BYTES", "lots", "oci"),
    ] {
        let out = env
            .s2i()
            .args(["build", "app", "s2i-test/not-here:1", "--pull-policy", "never", "--engine", engine, "--oci-store", store])
            .env(variable, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&format!("invalid {variable} {value:?}: use ")), "{variable}: {stderr}");
    }
    env.assert_clean();
}

#[test]
fn a_terminal_gets_a_live_line_and_colours_and_no_color_turns_them_off() {
    let env = TestEnv::new("tty");
    let builder = env.alias(&fixture("sti-fake"));
    write_file(&env.work().join("app/index.html"), "hi\n", 0o644);
    let out = env.tag("app");

    let mut cmd = env.s2i();
    cmd.args(["build", "app", &builder, &out]).env_remove("NO_COLOR");
    let run = run_with_tty_stderr(cmd);
    assert!(run.status.success(), "{}", run.terminal);
    assert!(run.stdout.is_empty(), "nothing extra on stdout: {:?}", run.stdout);
    assert!(run.terminal.contains("Streaming the source:"), "a live line while the source streams: {:?}", run.terminal);
    assert!(run.terminal.contains("\r\x1b[2K"), "the live line is redrawn in place: {:?}", run.terminal);
    assert!(run.terminal.contains("\x1b[32mBuilt "), "the summary is coloured: {:?}", run.terminal);
    assert!(run.terminal.contains("sti-fake assemble"), "the script's output is relayed: {:?}", run.terminal);
    assert!(run.terminal.contains("Committing the image"), "a spinner while the engine commits: {:?}", run.terminal);

    let mut cmd = env.s2i();
    cmd.args(["build", "app", &builder, &out]).env("NO_COLOR", "1");
    let run = run_with_tty_stderr(cmd);
    assert!(run.status.success(), "{}", run.terminal);
    assert!(!run.terminal.contains("\x1b[3"), "no colour with NO_COLOR: {:?}", run.terminal);
    assert!(run.terminal.contains("Built "), "{:?}", run.terminal);

    // Errors are coloured too, on a terminal.
    let mut cmd = env.s2i();
    cmd.args(["build", "app", &builder, &out, "--context-dir", "nope"]).env_remove("NO_COLOR");
    let run = run_with_tty_stderr(cmd);
    assert!(!run.status.success());
    assert!(run.terminal.contains("\x1b[1;31merror:\x1b[0m context directory"), "{:?}", run.terminal);
    env.assert_clean();
}

#[test]
fn without_a_terminal_progress_is_a_few_plain_lines() {
    let env = TestEnv::new("plain");
    let builder = env.alias(&fixture("sti-fake"));
    write_file(&env.work().join("app/index.html"), "hi\n", 0o644);
    let (code, stdout, stderr) = env.run(&["build", "app", &builder, &env.tag("app")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty());
    assert!(!stderr.contains('\x1b') && !stderr.contains('\r'), "no escape sequences in a pipe: {stderr:?}");
    let streamed: Vec<&str> = stderr.lines().filter(|l| l.starts_with("Streamed ")).collect();
    assert_eq!(streamed.len(), 1, "one line about the stream: {stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("Built ") && l.contains("assemble")), "a summary with the phases: {stderr}");
    // -q: the script's stdout and our progress go; errors would still show.
    let (code, _, stderr) = env.run(&["build", "app", &builder, &env.tag("app"), "-q"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("Streamed ") && !stderr.contains("Built "), "{stderr}");
    env.assert_clean();
}
