//! What differs between the engines s2i drives, proven against the engine under test
//! (`S2I_TEST_ENGINE`, Docker or the test kit's Podman service): awkward values reach the image
//! intact (Podman 4 reads commit settings only from `changes` lines), the engine is found and
//! named, and an image that lost its ONBUILD triggers is recognised.

use std::process::{Command, Stdio};

use s2i_docker::{ConnectOptions, DockerEngine};
use s2i_engine::{Engine, EngineKind};
use s2i_testkit::{docker_output, docker_run, engine_host, fixture, image_config, image_inspect, test_engine, write_file, TestEngine, TestEnv};

fn engine_kind() -> &'static str {
    match test_engine() {
        TestEngine::Docker => "docker",
        TestEngine::Podman => "podman",
    }
}

fn app(env: &TestEnv) -> String {
    write_file(&env.work().join("app/index.html"), "hello\n", 0o644);
    "app".into()
}

/// Every image of the engine, intermediate ones too. Podman fails a listing when an image goes
/// away while it is made (other tests remove theirs): it is asked again.
fn all_images() -> Vec<String> {
    for _ in 0..10 {
        let out = s2i_testkit::engine_command().args(["images", "-a", "-q", "--no-trunc"]).output().unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("the engine never listed its images");
}

fn layers(image: &str) -> Vec<String> {
    serde_json::from_value(image_inspect(image)["RootFS"]["Layers"].clone()).unwrap()
}

/// Values that a quoting or a line format could get wrong: quotes, `\`, `$`, spaces, `=`,
/// newlines, and ones that read like an instruction of their own.
const AWKWARD: [&str; 10] = [
    "quote\" inside",
    "\"quoted\"",
    "back\\slash \\n \\\"",
    "$HOME ${PATH} `id`",
    " spaces around ",
    "a=b=c",
    "two\nlines",
    "\"",
    "",
    "x\nLABEL evil=1\nENV EVIL=1",
];

#[test]
fn awkward_env_and_label_values_arrive_intact_in_the_image() {
    let env = TestEnv::new("awkward");
    let builder = env.alias(&fixture("sti-fake"));
    let out = env.tag("app");
    let src = app(&env);
    let mut args: Vec<String> = vec!["build".into(), src, builder.clone(), out.clone(), "--description".into(), "line one\nline two".into()];
    for (i, v) in AWKWARD.iter().enumerate() {
        args.extend(["-e".into(), format!("V{i}={v}"), "--label".into(), format!("l{i}={v}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = env.run(&args);
    assert_eq!(code, 0, "{stderr}");

    let cfg = image_config(&out);
    let image_env: Vec<String> = serde_json::from_value(cfg["Env"].clone()).unwrap();
    for (i, v) in AWKWARD.iter().enumerate() {
        // -e trims its value, as the reference does.
        assert!(image_env.contains(&format!("V{i}={}", v.trim())), "V{i}={v:?} in {image_env:?}");
        assert_eq!(cfg["Labels"][format!("l{i}")], *v, "label l{i}");
    }
    assert_eq!(cfg["Labels"]["io.k8s.description"], "line one\nline two");
    assert!(cfg["Labels"].get("evil").is_none() && !image_env.iter().any(|e| e.starts_with("EVIL=")), "no value adds a setting: {cfg}");
    assert_eq!(cfg["Cmd"], serde_json::json!(["/usr/libexec/s2i/run"]));
    assert_eq!(cfg["User"], "1001");
    // The values are what the application sees.
    assert_eq!(docker_run(&out, &["sh", "-c", "printf '%s|%s' \"$V6\" \"$V2\""]).1, "two\nlines|back\\slash \\n \\\"");

    // Docker commits in one step. Podman's changes lines cannot carry a newline: the labels with
    // one go through a second step, whose first image must not be left behind.
    let (built, base) = (layers(&out), layers(&builder));
    let steps = built.len() - base.len();
    match test_engine() {
        TestEngine::Docker => assert_eq!(steps, 1),
        TestEngine::Podman => {
            assert_eq!(steps, 2, "a two-step commit");
            let first_step = &built[..built.len() - 1];
            for id in all_images() {
                // Other tests remove images meanwhile: one gone since the listing is no leftover.
                let out = s2i_testkit::engine_command().args(["image", "inspect", "--format", "{{json .RootFS.Layers}}", &id]).output().unwrap();
                let left: Vec<String> = serde_json::from_slice(&out.stdout).unwrap_or_default();
                assert_ne!(left, first_step, "the first step {id} of the commit was left behind");
            }
        }
    }
    env.assert_clean();
}

#[test]
fn the_engine_is_named_and_found_through_docker_host_or_container_host() {
    let env = TestEnv::new("engine-named");
    let builder = env.alias(&fixture("sti-fake"));
    let src = app(&env);
    let host = engine_host();

    let (code, stdout, stderr) = env.run(&["build", &src, &builder, &env.tag("a"), "--loglevel", "1", "--output=json"]);
    assert_eq!(code, 0, "{stderr}");
    let using = stderr.lines().find(|l| l.starts_with("Using ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(using.starts_with(&format!("Using {} ", engine_kind())) && using.ends_with(&format!(" at {host}")), "{using}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["engine"]["kind"], engine_kind(), "{doc}");
    assert_eq!(doc["engine"]["endpoint"], host.as_str());
    assert!(doc["engine"]["version"].as_str().is_some_and(|v| !v.is_empty()) && doc["engine"]["api_version"].is_string(), "{doc}");

    // CONTAINER_HOST, as Podman's tools read it, when DOCKER_HOST is not set.
    let out = env
        .s2i()
        .args(["build", &src, &builder, &env.tag("b"), "--loglevel", "1"])
        .env_remove("DOCKER_HOST")
        .env("CONTAINER_HOST", &host)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!(" at {host}\n")), "{stderr}");
    // DOCKER_HOST wins over CONTAINER_HOST.
    let out = env
        .s2i()
        .args(["build", &src, &builder, &env.tag("c")])
        .env("CONTAINER_HOST", "unix:///nonexistent/podman.sock")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = env.s2i().args(["build", &src, &builder, "x"]).env_remove("DOCKER_HOST").env("CONTAINER_HOST", "unix:///nonexistent/podman.sock").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unix:///nonexistent/podman.sock") && stderr.contains("podman.socket"), "{stderr}");
    env.assert_clean();
}

#[test]
fn without_a_named_engine_the_default_sockets_are_tried_in_order() {
    let env = TestEnv::new("discovery");
    let not_a_socket = env.work().join("not-a-socket");
    std::fs::write(&not_a_socket, "").unwrap();
    let bad = vec!["unix:///nonexistent/docker.sock".to_string(), format!("unix://{}", not_a_socket.display())];
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let opts = ConnectOptions::default();

    let mut endpoints = bad.clone();
    endpoints.push(engine_host());
    let engine = rt.block_on(DockerEngine::connect_first(&opts, &endpoints)).expect("the engine under test answers");
    let version = rt.block_on(engine.version()).unwrap();
    assert_eq!(version.endpoint, engine_host());
    let kind = match test_engine() {
        TestEngine::Docker => EngineKind::Docker,
        TestEngine::Podman => EngineKind::Podman,
    };
    assert_eq!(version.kind, kind);

    let err = rt.block_on(DockerEngine::connect_first(&opts, &bad)).err().expect("nothing answers").to_string();
    assert!(err.contains("unix:///nonexistent/docker.sock (no such socket)"), "{err}");
    assert!(err.contains(&format!("unix://{}", not_a_socket.display())), "{err}");
    assert!(err.contains("systemctl --user start podman.socket") && err.contains("podman system service"), "{err}");
    env.assert_clean();
}

/// An ONBUILD builder keeps its triggers only in the Docker image format. Docker's classic
/// builder always writes that format; Podman's own build writes OCI by default and drops them,
/// and Podman's API reports no triggers at all (s2i reads them from the history): each engine's
/// case is checked in its run.
#[test]
fn onbuild_triggers_are_found_and_an_oci_image_that_lost_them_is_named() {
    let env = TestEnv::new("onbuild-format");
    let base = s2i_testkit::base_image();
    let context = env.work().join("onbuild-builder");
    write_file(
        &context.join("Dockerfile"),
        &format!("FROM {base}\nRUN mkdir -p /app && chown 1001:0 /app\nWORKDIR /app\nONBUILD COPY --chown=1001:0 . /app/\nONBUILD RUN echo triggered > /app/triggered\nUSER 1001\n"),
        0o644,
    );
    write_file(&env.work().join("src/run"), "#!/bin/sh\ncat /app/triggered\n", 0o755);
    let docker_format = env.tag("docker-format");
    docker_output(&["build", "-q", "-t", &docker_format, context.to_str().unwrap()]);
    let out = env.tag("app");
    let (code, _, stderr) = env.run(&["build", "src", &docker_format, &out, "--loglevel", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("has ONBUILD instructions"), "{stderr}");
    assert_eq!(docker_run(&out, &[]).1, "triggered\n");

    if test_engine() == TestEngine::Podman {
        // podman's own client, against the same service: an OCI image.
        let oci = env.tag("oci-format");
        let built = Command::new("podman")
            .args(["--url", &engine_host(), "build", "-q", "--format", "oci", "-t", &oci])
            .arg(&context)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
        let (code, _, stderr) = env.run(&["build", "src", &oci, &env.tag("oci-app")]);
        assert_ne!(code, 0, "{stderr}");
        assert!(stderr.contains("in the OCI format, which cannot keep them") && stderr.contains("--format docker"), "{stderr}");
    }
    env.assert_clean();
}

/// What the strategies rely on when they run a container, on the engine itself: stdin reaches
/// EOF when the writer is done (Podman ignores `StdinOnce` and closes stdin on the attach's
/// half-close), the exit code survives a container that stops before reading its input (Podman
/// loses it when one attaches to an exited container: the engine attaches before it starts),
/// and a container's stdout can be read as a stream.
#[test]
fn containers_get_eof_on_stdin_and_keep_their_exit_codes() {
    use s2i_engine::{ContainerSpec, OutputStream};
    let env = TestEnv::new("attach");
    let image = env.alias(&s2i_testkit::base_image());
    // Named the way s2i names its containers, so that assert_clean would see one left behind.
    let prefix = format!("s2i_{}_", image.trim_end_matches(":latest").replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let opts = ConnectOptions { endpoint: engine_host(), ..Default::default() };
    let engine = rt.block_on(DockerEngine::connect(&opts)).unwrap();
    let spec = |name: &str, script: &str, stdin: bool| ContainerSpec {
        name: Some(format!("{prefix}{name}")),
        image: image.clone(),
        cmd: vec!["sh".into(), "-c".into(), script.into()],
        open_stdin: stdin,
        ..Default::default()
    };
    let run = |spec: ContainerSpec, input: Vec<u8>| {
        rt.block_on(async {
            let id = engine.create_container(&spec).await.unwrap();
            let mut out = Vec::new();
            let mut sink = |s: OutputStream, d: &[u8]| {
                if s == OutputStream::Stdout {
                    out.extend_from_slice(d)
                }
            };
            let input: s2i_engine::ContainerInput = Box::new(std::io::Cursor::new(input));
            let code = tokio::time::timeout(std::time::Duration::from_secs(60), engine.run_container(&id, Some(input), &mut sink)).await;
            engine.remove_container(&id).await.unwrap();
            (code.expect("the container ends once its input is done").unwrap(), String::from_utf8_lossy(&out).into_owned())
        })
    };
    assert_eq!(run(spec("count", "wc -c; exit 3", true), vec![b'x'; 1 << 20]), (3, "1048576\n".to_string()));
    assert_eq!(run(spec("early", "exit 5", true), vec![b'x'; 16 << 20]).0, 5, "stopping before the input is read is no error");

    let (stdout, code) = rt.block_on(async {
        let id = engine.create_container(&spec("stdout", "echo out; echo err >&2; exit 4", false)).await.unwrap();
        let mut running = engine.run_with_stdout(&id, None, Box::new(|_: OutputStream, _: &[u8]| {})).await.unwrap();
        let mut stdout = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut running.stdout, &mut stdout).await.unwrap();
        let code = running.exit.await.unwrap();
        engine.remove_container(&id).await.unwrap();
        (stdout, code)
    });
    assert_eq!((stdout.as_str(), code), ("out\n", 4));
    env.assert_clean();
}

/// Rootless Podman, as most Podman users run it: a throwaway user with subordinate ids runs its
/// own service, and s2i, run as that user, finds it at `$XDG_RUNTIME_DIR/podman/podman.sock`
/// when nothing names an engine. The builds use `--network none`: rootless networking needs
/// slirp4netns and a `/dev/net/tun` that users may open, which a test must not change.
#[test]
#[ignore = "needs root and Podman: the Podman run of scripts/test.sh runs it"]
fn rootless_podman_runs_a_standard_and_an_incremental_build() {
    // Holds the engine turn: loading the fixture goes through the test kit's own Podman service.
    let _env = TestEnv::new("rootless");
    let rootless = s2i_testkit::RootlessPodman::start();
    let builder = fixture("sti-fake");
    rootless.load(&builder);
    let src = rootless.home().join("inc");
    write_file(&src.join("app.txt"), "app\n", 0o644);
    write_file(
        &src.join(".s2i/bin/assemble"),
        "#!/bin/sh\nset -e\ncp -R /tmp/src/. ./\ncat /proc/self/uid_map > uid_map\n\
         if [ -f /tmp/artifacts/deps/installed ]; then echo \"---> reusing deps from $(cat /tmp/artifacts/deps/installed)\"; cp -R /tmp/artifacts/deps ./deps;\n\
         else mkdir deps && echo \"build-$BUILD_NO\" > deps/installed && echo '---> installed deps'; fi\n",
        0o755,
    );
    write_file(&src.join(".s2i/bin/save-artifacts"), "#!/bin/sh\ncd /opt/app-root/src && tar cf - deps\n", 0o755);
    let out = "s2i-rootless/app:latest";
    let build = |n: &str| {
        let output = rootless
            .command(s2i_testkit::s2i_bin())
            .args(["build", "inc", &builder, out, "--incremental", "-e", n, "--network", "none", "--loglevel", "1"])
            // Nothing names the engine: s2i looks for it, Docker's socket first.
            .env_remove("DOCKER_HOST")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "as {}: {stderr}", rootless.user());
        stderr
    };
    let first = build("BUILD_NO=1");
    assert!(first.contains("Using podman ") && first.contains(&format!(" at {}\n", rootless.host())), "{first}");
    assert!(first.contains("---> installed deps"), "{first}");
    let second = build("BUILD_NO=2");
    assert!(second.contains("---> reusing deps from build-1"), "{second}");

    let shown = rootless
        .command("docker")
        .args(["run", "--rm", "--network", "none", out, "cat", "deps/installed", "uid_map"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    // assemble ran in the user's namespace: container uid 1 and up are the user's subordinate ids.
    let subid = rootless.subids().0.to_string();
    assert!(shown.starts_with("build-1\n") && shown.lines().any(|l| l.split_whitespace().nth(1) == Some(subid.as_str())), "{shown}");
}
