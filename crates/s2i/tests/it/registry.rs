//! Registries, end to end: the real binary, the engine under test and a real registry
//! (`docker-registry` on 127.0.0.1 with TLS and htpasswd, or token auth). Pulls with every
//! credential source, failures said as the registry means them, `--push`, and the CI flow where
//! an incremental build on an empty cache pulls its previous image from the registry.
//!
//! Every s2i run here is at `--loglevel 5` with `--output=json`, and its stderr and stdout are
//! searched for the password (as is, and base64-encoded at any offset, as it travels in headers).

use std::path::{Path, PathBuf};

use regex::Regex;

use crate::apps::incremental_app;
use s2i_testkit::{
    docker_output, docker_run, engine_command, factory_output, fixture, image_exists, image_inspect, run_with_tty_stderr, write_docker_config, write_file, FakeCredentialHelper,
    RegistryUser, TestEnv, TestRegistry,
};

/// The encodings of `secret` that a log could hold: itself, and its base64 (standard and URL-safe)
/// at each of the three offsets it can start at inside a longer encoded text.
fn secret_forms(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    let mut forms = vec![secret.to_string()];
    let n = secret.len();
    for k in 0..3usize {
        let mut bytes = vec![0u8; k];
        bytes.extend_from_slice(secret.as_bytes());
        // Characters whose six bits all come from the secret.
        let (from, to) = ((8 * k).div_ceil(6), 8 * (k + n) / 6);
        for engine in [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE] {
            let encoded = engine.encode(&bytes);
            forms.push(encoded[from..to].to_string());
        }
    }
    forms
}

#[track_caller]
fn assert_no_secret(what: &str, text: &str, secret: &str) {
    for form in secret_forms(secret) {
        assert!(!text.contains(&form), "{what} holds the password (as {form:?}):\n{text}");
    }
}

/// The JSON document s2i printed on stdout.
fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {stdout:?}"))
}

/// The one `error:` line and the `hint:` line of a failed run.
fn error_and_hint(stderr: &str) -> (String, String) {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    let hint = stderr.lines().find(|l| l.starts_with("hint: ")).unwrap_or_else(|| panic!("a hint: {stderr}"));
    (errors[0].to_string(), hint.to_string())
}

/// Containers named after images of this registry (s2i names them after the builder or image).
#[track_caller]
fn assert_no_container_of(reg: &TestRegistry) {
    let mark = format!("s2i_127_0_0_1_{}_", reg.port());
    let names = docker_output(&["ps", "-a", "--format", "{{.Names}}"]);
    let left: Vec<&str> = names.lines().filter(|n| n.starts_with(&mark)).collect();
    assert!(left.is_empty(), "containers left: {left:?}");
}

/// An environment variable for an s2i run.
type EnvVar<'a> = (&'a str, &'a std::ffi::OsStr);

fn remove_local(name: &str) {
    let _ = engine_command().args(["rmi", name]).output();
}

/// On drop, removes every reference the daemon holds to images of a registry (tags, and the
/// digests an image pulled from it keeps once a build took its tag): the registry's port is the
/// test's alone. Images stay when something else also names them (a fixture pushed there, say).
struct ImagesOf(String);

impl Drop for ImagesOf {
    fn drop(&mut self) {
        remove_images_of(&self.0);
    }
}

fn remove_images_of(host: &str) {
    let prefix = format!("{host}/");
    let listed = docker_output(&["images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}"]);
    for line in listed.lines() {
        let mut parts = line.split_whitespace();
        let (Some(repo), Some(tag), Some(digest)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if !repo.starts_with(&prefix) {
            continue;
        }
        if tag != "<none>" {
            remove_local(&format!("{repo}:{tag}"));
        }
        if digest != "<none>" {
            remove_local(&format!("{repo}@{digest}"));
        }
    }
}

/// A registry with a builder pushed as `s2i/builder:v1` (sti-fake plus a layer of its own, so that
/// a pull has a layer to download), a test env, and a HOME of its own (no credentials unless a test
/// writes some), for s2i runs that see only what a test sets.
struct Setup {
    reg: TestRegistry,
    env: TestEnv,
    builder: String,
    home: PathBuf,
    /// Removes what was pulled from (or pushed to) the registry when the test ends.
    _images: ImagesOf,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let reg = TestRegistry::start();
        let env = TestEnv::new(name);
        let context = env.work().join("builder-context");
        write_file(&context.join("unique"), &format!("{}\n", env.id()), 0o644);
        // Made and pushed by the image factory (the Docker daemon) whatever engine the tests drive,
        // so that the engine under test only ever gets it from the registry. A commit, not a
        // build: the classic builder trips over parallel builds of one base.
        let local = format!("s2i-test-registry-builder/{}:v1", env.id());
        let container = format!("s2i-test-registry-builder-{}", env.id());
        factory_output(&["create", "--name", &container, &fixture("sti-fake"), "true"]);
        factory_output(&["cp", &context.join("unique").display().to_string(), &format!("{container}:/etc/s2i-test-unique")]);
        factory_output(&["commit", &container, &local]);
        factory_output(&["rm", &container]);
        let (builder, _) = reg.docker_push(&local, "s2i/builder:v1");
        // Its only tag goes, so the image goes: the first pull downloads the unique layer.
        factory_output(&["rmi", &local]);
        let home = env.work().join("home");
        std::fs::create_dir_all(&home).unwrap();
        write_file(&env.work().join("app/index.html"), "hello from the registry tests\n", 0o644);
        Setup { _images: ImagesOf(reg.host()), reg, env, builder, home }
    }

    /// s2i with `args`, at `--loglevel 5`, with only this test's HOME and no DOCKER_CONFIG;
    /// `extra_env` sets more.
    fn run(&self, args: &[&str], extra_env: &[EnvVar]) -> (i32, String, String) {
        let mut cmd = self.env.s2i();
        cmd.args(args).args(["--loglevel", "5"]).env("HOME", &self.home).env_remove("DOCKER_CONFIG");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("s2i runs");
        let result = (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        if std::env::var_os("S2I_TEST_VERBOSE").is_some() {
            eprintln!("s2i {args:?} -> {}\n--- stdout\n{}--- stderr\n{}", result.0, result.1, result.2);
        }
        result
    }

    /// A config.json with `user`'s credentials for this registry, in `dir`.
    fn auths(&self, dir: &Path, user: &RegistryUser) -> PathBuf {
        write_docker_config(dir, &self.reg.auths_config(&self.reg.host(), user))
    }

    #[track_caller]
    fn assert_clean(&self) {
        self.env.assert_clean();
        assert_no_container_of(&self.reg);
    }
}



#[test]
fn the_builder_is_pulled_with_every_credential_source() {
    let s = Setup::new("regsources");
    let (user, tricky) = (s.reg.user().clone(), s.reg.tricky_user().clone());
    let out = s.env.tag("app");
    let helper = FakeCredentialHelper::new(&s.reg.host(), &user);
    let work = s.env.work();
    let none: &[EnvVar] = &[];

    // ~/.docker/config.json, found through HOME.
    s.auths(&s.home.join(".docker"), &user);
    // DOCKER_CONFIG wins over HOME: its file has the tricky password, whose encodings hold + and /.
    let docker_config = work.join("docker-config");
    s.auths(&docker_config, &tricky);
    let explicit = s.auths(&work.join("explicit"), &user);
    let legacy = work.join("legacy/.dockercfg");
    {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", user.name, user.password));
        write_file(&legacy, &serde_json::json!({ s.reg.host(): { "auth": auth, "email": "x@example.com" } }).to_string(), 0o600);
    }
    let helpers = write_docker_config(&work.join("helpers"), &s.reg.cred_helpers_config(helper.name()));
    let store = write_docker_config(&work.join("store"), &TestRegistry::creds_store_config(helper.name()));
    let path = helper.path_env();
    let explicit_arg = explicit.display().to_string();
    let legacy_arg = legacy.display().to_string();
    let helpers_arg = helpers.display().to_string();
    let store_arg = store.display().to_string();

    let cases: Vec<(&str, Vec<&str>, Vec<EnvVar>, &str)> = vec![
        ("auths in ~/.docker/config.json", vec![], vec![], &user.password),
        ("DOCKER_CONFIG, the tricky password", vec![], vec![("DOCKER_CONFIG", docker_config.as_os_str())], &tricky.password),
        ("--dockercfg-path", vec!["--dockercfg-path", &explicit_arg], vec![], &user.password),
        ("--dockercfg-path to a legacy .dockercfg", vec!["--dockercfg-path", &legacy_arg], vec![], &user.password),
        ("credHelpers", vec!["--dockercfg-path", &helpers_arg], vec![("PATH", path.as_os_str())], &user.password),
        ("credsStore", vec!["--dockercfg-path", &store_arg], vec![("PATH", path.as_os_str())], &user.password),
    ];
    let counts = Regex::new(r": ([1-9]\d*) layers, [0-9.]+ [KM]?B in [0-9.]+s$").unwrap();
    for (what, flags, extra_env, secret) in cases {
        // The output's parent is the builder: both go, so that the pull downloads a layer.
        remove_local(&out);
        remove_local(&s.builder);
        let mut args = vec!["build", "app", &s.builder, &out, "--output=json"];
        args.extend(flags);
        let (code, stdout, stderr) = s.run(&args, if extra_env.is_empty() { none } else { &extra_env });
        assert_eq!(code, 0, "{what}: {stderr}");
        assert!(stderr.contains(&format!("Pulling {}\n", s.builder)), "{what}: the pull is said: {stderr}");
        let pulled = stderr.lines().find(|l| l.starts_with(&format!("Pulled {}: ", s.builder))).unwrap_or_else(|| panic!("{what}: a line for the finished pull: {stderr}"));
        assert!(counts.is_match(pulled), "{what}: layers, bytes and time: {pulled}");
        assert!(image_exists(&s.builder), "{what}: pulled");
        assert_eq!(json(&stdout)["success"], true);
        assert_eq!(docker_run(&out, &["cat", "index.html"]).1, "hello from the registry tests\n");
        assert_no_secret(what, &stderr, secret);
        assert_no_secret(what, &stdout, secret);
    }
    assert_eq!(helper.calls(), vec![format!("get {}", s.reg.host()); 2], "each helper run asked once, for this registry");

    // Quiet: no progress lines at all.
    remove_local(&out);
    remove_local(&s.builder);
    let (code, _, stderr) = s.run(&["build", "app", &s.builder, &out, "-q"], none);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.lines().any(|l| l.starts_with("Pulling ") || l.starts_with("Pulled ")), "{stderr}");
    s.assert_clean();
}

#[test]
fn a_terminal_sees_the_pull_live() {
    let s = Setup::new("regtty");
    s.auths(&s.home.join(".docker"), s.reg.user());
    let mut cmd = s.env.s2i();
    cmd.args(["build", "app", &s.builder, &s.env.tag("app")]).env("HOME", &s.home).env_remove("DOCKER_CONFIG").env("NO_COLOR", "1");
    let run = run_with_tty_stderr(cmd);
    assert!(run.status.success(), "{}", run.terminal);
    // Redrawn in place: the line cleared, a spinner, the text.
    let live = regex::Regex::new(&format!(r"\r\x1b\[2K\S Pulling {}: ", regex::escape(&s.builder))).unwrap();
    assert!(live.is_match(&run.terminal), "a live line, redrawn in place: {:?}", run.terminal);
    assert!(run.terminal.contains(&format!("Pulled {}: ", s.builder)), "{:?}", run.terminal);
    s.assert_clean();
}

#[test]
fn failed_pulls_say_what_the_registry_means_and_leave_nothing() {
    let s = Setup::new("regfail");
    let user = s.reg.user().clone();
    let host = s.reg.host();
    let out = s.env.tag("app");
    let none: &[EnvVar] = &[];
    let good = s.auths(&s.env.work().join("good"), &user);
    let wrong_user = RegistryUser { name: user.name.clone(), password: format!("{}-wrong", user.password) };
    let wrong = s.auths(&s.env.work().join("wrong"), &wrong_user);
    let missing_tag = s.reg.image("s2i/builder:no-such-tag");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let unreachable = format!("{closed}/s2i/builder:v1");
    let (good_arg, wrong_arg) = (good.display().to_string(), wrong.display().to_string());
    let home_config = s.home.join(".docker/config.json").display().to_string();
    let nowhere = s.env.work().join("not-written/config.json").display().to_string();

    let cases: Vec<(&str, &str, Vec<&str>, String, String)> = vec![
        // Docker 20.10 calls this "Client sent an HTTP request to an HTTPS server".
        (
            "no credentials",
            &s.builder,
            vec![],
            format!("error: unable to get {}: {host} requires authentication: no credentials file ({home_config}", s.builder),
            format!("docker login {host}"),
        ),
        (
            "a --dockercfg-path that does not exist",
            &s.builder,
            vec!["--dockercfg-path", &nowhere],
            format!("error: unable to get {}: {host} requires authentication: --dockercfg-path {nowhere} does not exist", s.builder),
            format!("docker login {host}"),
        ),
        (
            "a wrong password",
            &s.builder,
            vec!["--dockercfg-path", &wrong_arg],
            format!("error: unable to get {}: {host} rejected the credentials of \"{}\" (auths entry \"{host}\" in {wrong_arg})", s.builder, user.name),
            "check the user and password".into(),
        ),
        ("a missing tag", &missing_tag, vec!["--dockercfg-path", &good_arg], format!("error: unable to get {missing_tag}: {missing_tag} not found"), "check the image name and tag".into()),
        (
            "a registry that is not there",
            &unreachable,
            vec!["--dockercfg-path", &good_arg],
            format!("error: unable to get {unreachable}: cannot reach registry {closed}"),
            format!("check that {closed} is the right host and port"),
        ),
    ];
    for (what, builder, flags, want_error, want_hint) in cases {
        let mut args = vec!["build", "app", builder, &out, "--output=json"];
        args.extend(flags);
        let (code, stdout, stderr) = s.run(&args, none);
        assert_eq!(code, 2, "{what}: a pull failure exits 2, as in the reference: {stderr}");
        let (error, hint) = error_and_hint(&stderr);
        assert!(error.starts_with(&want_error), "{what}: {error}");
        assert!(!error.contains("HTTP request to an HTTPS server"), "{what}: not the engine's words: {error}");
        assert!(hint.contains(&want_hint), "{what}: {hint}");
        let doc = json(&stdout);
        assert_eq!(doc["success"], false);
        assert_eq!(doc["error"]["exit_code"], 2);
        assert!(doc["error"]["message"].as_str().unwrap().starts_with(want_error.trim_start_matches("error: ")), "{what}: {doc}");
        for secret in [&user.password, &wrong_user.password] {
            assert_no_secret(what, &stderr, secret);
            assert_no_secret(what, &stdout, secret);
        }
        assert!(!image_exists(builder) && !image_exists(&out), "{what}: nothing pulled or built");
    }
    s.assert_clean();
}

#[test]
fn push_then_pull_what_was_pushed() {
    let s = Setup::new("regpush");
    let builder = s.env.alias(&fixture("sti-fake"));
    let user = s.reg.user().clone();
    let config = s.auths(&s.env.work().join("cfg"), &user);
    let config_arg = config.display().to_string();
    let tag = s.reg.image("s2i/app:v1");
    let none: &[EnvVar] = &[];

    let (code, stdout, stderr) = s.run(&["build", "app", &builder, &tag, "--push", "--dockercfg-path", &config_arg, "--output=json"], none);
    assert_eq!(code, 0, "{stderr}");
    assert_no_secret("a push", &stderr, &user.password);
    assert_no_secret("a push", &stdout, &user.password);
    let doc = json(&stdout);
    let digest = doc["pushed"][0]["digest"].as_str().unwrap_or_else(|| panic!("pushed[0].digest: {doc}")).to_string();
    assert_eq!(doc["pushed"][0]["name"], tag);
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    assert!(stderr.contains(&format!("Pushing {tag}\n")), "{stderr}");
    assert!(stderr.lines().any(|l| l == format!("Pushed {tag}@{digest}")), "the digest is printed: {stderr}");
    assert!(doc["phases"].as_array().unwrap().iter().any(|p| p["name"] == "push"), "the push is timed: {doc}");

    // What the registry has is what was built: gone locally, pulled back, it runs.
    let built_id = image_inspect(&tag)["Id"].as_str().unwrap().to_string();
    docker_output(&["rmi", &tag]);
    assert!(!image_exists(&built_id));
    let _pulled = s.reg.docker_pull(&tag);
    assert_eq!(image_inspect(&tag)["Id"].as_str(), Some(built_id.as_str()), "the same image came back");
    let repo_digests = image_inspect(&tag)["RepoDigests"].to_string();
    assert!(repo_digests.contains(&digest), "the registry serves it under the printed digest: {repo_digests}");
    assert_eq!(docker_run(&tag, &["cat", "index.html"]).1, "hello from the registry tests\n");
    s.assert_clean();
}

#[test]
fn rebuild_pulls_its_image_with_the_credentials_of_its_registry() {
    let s = Setup::new("regrebuild");
    let builder = s.env.alias(&fixture("sti-fake"));
    let config = s.auths(&s.env.work().join("cfg"), s.reg.user());
    let config_arg = config.display().to_string();
    let tag = s.reg.image("s2i/app:v1");
    let none: &[EnvVar] = &[];
    let (code, _, stderr) = s.run(&["build", "app", &builder, &tag, "--push", "--dockercfg-path", &config_arg, "-n", "Shop"], none);
    assert_eq!(code, 0, "{stderr}");
    docker_output(&["rmi", &tag]);

    let rebuilt = s.env.tag("rebuilt");
    let (code, _, stderr) = s.run(&["rebuild", &tag, &rebuilt, "--source", "app"], none);
    assert_eq!(code, 2, "no credentials: {stderr}");
    assert!(error_and_hint(&stderr).0.contains(&format!("{} requires authentication", s.reg.host())), "{stderr}");
    let (code, stdout, stderr) = s.run(&["rebuild", &tag, &rebuilt, "--source", "app", "--dockercfg-path", &config_arg, "--output=json"], none);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&format!("Pulling {tag}\n")), "{stderr}");
    assert_eq!(json(&stdout)["tag"], rebuilt.as_str());
    assert_eq!(image_inspect(&rebuilt)["Config"]["Labels"]["io.k8s.display-name"], "Shop", "the pulled image's labels were read");
    assert_no_secret("a rebuild", &stderr, &s.reg.user().password);
    s.assert_clean();
}

#[test]
fn a_failed_push_exits_non_zero_and_keeps_the_image() {
    let s = Setup::new("regpushfail");
    let builder = s.env.alias(&fixture("sti-fake"));
    let user = s.reg.user().clone();
    let host = s.reg.host();
    let none: &[EnvVar] = &[];
    let wrong_user = RegistryUser { name: user.name.clone(), password: format!("{}-wrong", user.password) };
    let wrong = s.auths(&s.env.work().join("wrong"), &wrong_user);
    let wrong_arg = wrong.display().to_string();
    let tag = s.reg.image("s2i/app:v1");

    for (what, flags, want) in [
        ("no credentials", vec![], format!("{host} requires authentication")),
        ("a wrong password", vec!["--dockercfg-path", wrong_arg.as_str()], format!("{host} rejected the credentials of \"{}\"", user.name)),
    ] {
        remove_local(&tag);
        let mut args = vec!["build", "app", &builder, &tag, "--push", "--output=json"];
        args.extend(flags);
        let (code, stdout, stderr) = s.run(&args, none);
        assert_eq!(code, 1, "{what}: {stderr}");
        let (error, hint) = error_and_hint(&stderr);
        assert!(error.starts_with(&format!("error: unable to push {tag}: {want}")), "{what}: {error}");
        assert!(error.ends_with(&format!("; the built image {tag} is kept locally")), "{what}: {error}");
        assert!(hint.contains(&format!("docker push {tag}")), "{what}: {hint}");
        assert!(image_exists(&tag), "{what}: the built image stays");
        let doc = json(&stdout);
        assert_eq!(doc["success"], false);
        assert_eq!(doc["image_id"].as_str(), image_inspect(&tag)["Id"].as_str(), "{what}: the kept image is named: {doc}");
        assert_no_secret(what, &stderr, &wrong_user.password);
        assert_no_secret(what, &stdout, &wrong_user.password);
    }

    // A tag without a registry is refused before anything is built.
    let local = s.env.tag("app");
    let (code, _, stderr) = s.run(&["build", "app", &builder, &local, "--push"], none);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("error: ") && l.contains(&format!("TAG {local} names no registry"))), "{stderr}");
    assert!(!stderr.contains("Streamed "), "nothing was built: {stderr}");
    assert!(!image_exists(&local));
    s.assert_clean();
}

#[test]
fn an_incremental_build_on_an_empty_cache_pulls_its_previous_image_from_the_registry() {
    let s = Setup::new("regci");
    let builder = s.env.alias(&fixture("sti-fake"));
    let src = incremental_app(&s.env);
    let config = s.auths(&s.env.work().join("cfg"), s.reg.user());
    let config_arg = config.display().to_string();
    let tag = s.reg.image("team/app:v1");
    let none: &[EnvVar] = &[];
    let run = |n: &str| s.run(&["build", src, &builder, &tag, "--incremental", "--push", "--dockercfg-path", &config_arg, "-e", n, "--output=json"], none);

    // The first run: the registry has no previous image, and says so; the build is clean.
    let (code, stdout, stderr) = run("BUILD_NO=1");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&format!("Clean build will be performed: no previous image {tag} (unable to get {tag}: {tag} not found")), "{stderr}");
    assert!(stderr.contains("---> installed deps"), "{stderr}");
    let first = json(&stdout)["pushed"][0]["digest"].as_str().unwrap().to_string();

    // A fresh CI machine: nothing local. The previous image comes from the registry.
    docker_output(&["rmi", &tag]);
    let (code, stdout, stderr) = run("BUILD_NO=2");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&format!("Pulling {tag}\n")), "{stderr}");
    assert!(stderr.contains(&format!("Existing image for tag {tag} detected for incremental build")), "{stderr}");
    assert!(stderr.contains("---> reusing deps from build-1"), "{stderr}");
    let second = json(&stdout)["pushed"][0]["digest"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    docker_output(&["rmi", &tag]);
    let _pulled = s.reg.docker_pull(&tag);
    assert_eq!(docker_run(&tag, &["cat", "deps/installed"]).1, "build-1\n", "what the registry has now reused the first build's deps");
    assert_no_secret("the CI flow", &stderr, &s.reg.user().password);

    // Credentials the registry rejects: the build goes on clean, and a warning says why.
    let wrong = s.auths(&s.env.work().join("wrong"), &RegistryUser { name: "nobody".into(), password: "not-it".into() });
    docker_output(&["rmi", &tag]);
    let (code, _, stderr) = s.run(&["build", src, &builder, &tag, "--incremental", "--dockercfg-path", &wrong.display().to_string(), "-e", "BUILD_NO=3"], none);
    assert_eq!(code, 0, "{stderr}");
    let warning = format!("Clean build will be performed: unable to get {tag}: {} rejected the credentials of \"nobody\"", s.reg.host());
    assert!(stderr.lines().any(|l| l.contains(" WARN ") && l.contains(&warning)), "a warning: {stderr}");
    assert!(stderr.contains("---> installed deps"), "{stderr}");
    s.assert_clean();
}

#[test]
fn with_a_runtime_image_the_builder_stage_is_pushed_and_pulled_and_each_registry_gets_its_own_credentials() {
    let s = Setup::new("regruntime");
    // The runtime image lives in a second registry, with token auth and other users.
    let other = TestRegistry::start_with_token_auth();
    let _other_images = ImagesOf(other.host());
    let (runtime, _) = other.docker_push(&fixture("sti-fake-runtime"), "base/runtime:v1");
    let builder = s.env.alias(&fixture("sti-fake"));
    let src = incremental_app(&s.env);
    // One file, the right user for each registry: the tricky one here, the ordinary one there.
    let mut config = s.reg.auths_config(&s.reg.host(), s.reg.tricky_user());
    config["auths"][other.host()] = other.auths_config(&other.host(), other.user())["auths"][other.host()].clone();
    let config = write_docker_config(&s.env.work().join("cfg"), &config);
    let config_arg = config.display().to_string();
    let tag = s.reg.image("team/app:v1");
    let stage = format!("{tag}-build");
    let none: &[EnvVar] = &[];
    let run = |n: &str| {
        s.run(
            &["build", src, &builder, &tag, "--runtime-image", &runtime, "-a", "/opt/app-root/src/deps:.", "--incremental", "--push", "--dockercfg-path", &config_arg, "-e", n, "--output=json"],
            none,
        )
    };

    let (code, stdout, stderr) = run("BUILD_NO=1");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&format!("Pulling {runtime}\n")), "{stderr}");
    let pushed = json(&stdout)["pushed"].clone();
    let names: Vec<&str> = pushed.as_array().unwrap_or_else(|| panic!("a list for two images: {pushed}")).iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, [tag.as_str(), stage.as_str()]);

    // An empty cache: the runtime image and the builder stage come from their registries.
    for name in [&tag, &stage, &runtime] {
        docker_output(&["rmi", name]);
    }
    let (code, stdout, stderr) = run("BUILD_NO=2");
    assert_eq!(code, 0, "{stderr}");
    for pulled in [&runtime, &stage] {
        assert!(stderr.contains(&format!("Pulling {pulled}\n")), "{pulled}: {stderr}");
    }
    assert!(stderr.contains("---> reusing deps from build-1"), "{stderr}");
    assert_eq!(json(&stdout)["pushed"].as_array().map(Vec::len), Some(2));
    assert_eq!(docker_run(&tag, &["cat", "deps/installed"]).1, "build-1\n");
    for secret in [&s.reg.tricky_user().password, &other.user().password] {
        assert_no_secret("a runtime build", &stderr, secret);
        assert_no_secret("a runtime build", &stdout, secret);
    }
    s.assert_clean();
    assert_no_container_of(&other);
}

#[test]
fn secret_forms_catch_an_encoded_password() {
    use base64::Engine as _;
    let secret = "Tricky>>>???~~~pw";
    for prefix in ["", "a", "ab", "{\"password\":\""] {
        for engine in [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE] {
            let encoded = engine.encode(format!("{prefix}{secret}\"}}"));
            assert!(secret_forms(secret).iter().any(|f| encoded.contains(f.as_str())), "{prefix:?}: {encoded}");
        }
    }
    assert!(!secret_forms(secret).iter().any(|f| "nothing to see".contains(f.as_str())));
}
