//! Hostile inputs and a hanging engine, through the real binary and the real daemon: each test
//! fails on the code before its fix (docs/security.md lists what each check guarantees).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::apps::{probe_app, renice_denying_profile};
use s2i_testkit::{docker_run, engine_socket, fixture, git, image_label, test_engine, write_file, Answer, FreezableProxy, HttpServer, TestEngine, TestEnv};

fn app(env: &TestEnv) -> String {
    write_file(&env.work().join("app/index.html"), "hello\n", 0o644);
    "app".into()
}

/// Send SIGINT to a child.
fn interrupt(child: &std::process::Child) {
    let _ = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
}

#[test]
fn a_local_repositorys_own_git_config_runs_nothing() {
    let env = TestEnv::new("gitconfig");
    let builder = env.alias(&fixture("sti-fake"));
    let repo = env.work().join("repo");
    write_file(&repo.join("index.html"), "committed\n", 0o644);
    write_file(&repo.join(".gitattributes"), "* filter=evil\n", 0o644);
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "first"]);
    // What a repository from elsewhere can carry in its .git/config.
    let marker = env.work().join("pwned");
    let run = format!("touch {}", marker.display());
    git(&repo, &["config", "core.fsmonitor", &run]);
    git(&repo, &["config", "filter.evil.clean", &format!("{run}; cat")]);
    git(&repo, &["config", "filter.evil.smudge", &format!("{run}; cat")]);
    git(&repo, &["config", "core.hooksPath", &env.work().join("hooks").display().to_string()]);
    write_file(&env.work().join("hooks/post-checkout"), &format!("#!/bin/sh\n{run}\n"), 0o755);
    // A modified file makes git status look at contents (the clean filter).
    write_file(&repo.join("index.html"), "changed!!\n", 0o644);
    let out = env.tag("app");
    let (code, _, stderr) = env.run(&["build", "repo", &builder, &out]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!marker.exists(), "the repository's config ran a program on the host");
    assert_eq!(docker_run(&out, &["cat", "index.html"]).1, "committed\n", "the commit was built");
    env.assert_clean();
}

#[test]
fn a_fifo_as_s2i_environment_is_refused_at_once() {
    let env = TestEnv::new("fifo");
    let builder = env.alias(&fixture("sti-fake"));
    let src = app(&env);
    std::fs::create_dir_all(env.work().join("app/.s2i")).unwrap();
    let fifo = env.work().join("app/.s2i/environment");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let started = Instant::now();
    let (code, _, stderr) = env.run(&["build", &src, &builder, &env.tag("app")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(".s2i/environment is not a regular file"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "no hang");
    env.assert_clean();
}

#[test]
fn credentials_in_a_source_url_reach_no_label_log_callback_or_json() {
    let env = TestEnv::new("creds");
    let builder = env.alias(&fixture("sti-fake"));
    // A repository served over dumb http; the server ignores the credentials in the URL.
    let repo = env.work().join("repo");
    write_file(&repo.join("index.html"), "from git\n", 0o644);
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "first"]);
    let served = env.work().join("served");
    std::fs::create_dir_all(&served).unwrap();
    git(&served, &["clone", "-q", "--bare", repo.to_str().unwrap(), "repo.git"]);
    git(&served.join("repo.git"), &["update-server-info"]);
    let server = HttpServer::serve_dir(&served);
    let callback = HttpServer::recorder();
    let secret = "s3cr3t-t0ken";
    let url = format!("http://user:{secret}@127.0.0.1:{}/repo.git", server.port());
    let out = env.tag("app");
    let callback_url = format!("{}/done", callback.url());
    let (code, stdout, stderr) = env.run(&["build", &url, &builder, &out, "--output=json", "--loglevel=5", "--callback-url", &callback_url]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains(secret), "the log shows the secret:\n{stderr}");
    assert!(!stdout.contains(secret), "the JSON shows the secret: {stdout}");
    let location = image_label(&out, "io.openshift.s2i.build.source-location").unwrap();
    assert!(!location.contains(secret) && location.starts_with("http://127.0.0.1:"), "{location}");
    let posts = callback.wait_for_requests(1, Duration::from_secs(10));
    assert!(!posts.is_empty() && !posts[0].body_str().contains(secret), "the callback shows the secret");
    env.assert_clean();
}

#[test]
fn a_save_artifacts_that_never_exits_ends_in_a_clean_build() {
    let env = TestEnv::new("savehang");
    let builder = env.alias(&fixture("sti-fake"));
    let src = env.work().join("inc");
    write_file(&src.join("app.txt"), "app\n", 0o644);
    write_file(&src.join(".s2i/bin/assemble"), "#!/bin/sh\nset -e\ncp -R /tmp/src/. ./\nif [ -d /tmp/artifacts/deps ]; then echo reused; else mkdir -p deps && echo installed; fi\n", 0o755);
    write_file(&src.join(".s2i/bin/save-artifacts"), "#!/bin/sh\ncd /opt/app-root/src\ntar cf - deps\nexec sleep 600\n", 0o755);
    let out = env.tag("app");
    let (code, _, stderr) = env.run(&["build", "inc", &builder, &out]);
    assert_eq!(code, 0, "{stderr}");
    let started = Instant::now();
    let mut cmd = env.s2i();
    cmd.args(["build", "inc", &builder, &out, "--incremental"]).env("S2I_LIMIT_IDLE_TIME", "3s");
    let run = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(90), "the idle limit ended it");
    assert!(stderr.contains("save-artifacts did not exit") && stderr.contains("S2I_LIMIT_IDLE_TIME"), "{stderr}");
    assert!(stderr.contains("installed"), "a clean build: {stderr}");
    env.assert_clean();
}

#[test]
fn an_interrupted_as_dockerfile_download_leaves_no_temp_dir() {
    let env = TestEnv::new("dfinterrupt");
    let stalled = HttpServer::scripted(|_| Answer::Stall { length: 10 << 20, sent: vec![0x1f, 0x8b, 8, 0] });
    let url = format!("{}/app.tgz", stalled.url());
    let mut child = env.s2i().args(["build", &url, "s2i-test/whatever", "--as-dockerfile", "out/Dockerfile"]).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while stalled.requests().is_empty() {
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!env.leftover_temp_entries().is_empty(), "the download is under way in a temp dir");
    let started = Instant::now();
    interrupt(&child);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    assert!(started.elapsed() < Duration::from_secs(5), "prompt");
    env.assert_clean();
}

/// Start a build through a proxy, wait for its assemble to run, freeze the proxy (the engine now
/// hangs) and interrupt: the clean-up cannot finish.
fn build_then_hang(env: &TestEnv, proxy: &FreezableProxy, cleanup_limit: &str) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let builder = env.alias(&fixture("sti-fake"));
    let src = app(env);
    let mut child = env
        .s2i()
        .args(["build", &src, &builder, &env.tag("a"), "-e", "ASSEMBLE_SLEEP=60"])
        .env("DOCKER_HOST", proxy.url())
        .env("S2I_LIMIT_CLEANUP_TIME", cleanup_limit)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("---> sleeping") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        panic!("assemble never started through the proxy:\n{}", reader.join().unwrap());
    }
    proxy.freeze();
    interrupt(&child);
    (child, reader)
}

#[test]
fn a_second_ctrl_c_quits_at_once_while_clean_up_hangs() {
    let env = TestEnv::new("secondsig");
    let proxy = FreezableProxy::start(&engine_socket());
    let (mut child, reader) = build_then_hang(&env, &proxy, "120s");
    std::thread::sleep(Duration::from_secs(2));
    assert!(child.try_wait().unwrap().is_none(), "the clean-up is waiting for the frozen engine");
    let started = Instant::now();
    interrupt(&child);
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "the second signal ends it at once");
    assert_eq!(status.code(), Some(130));
    let stderr = reader.join().unwrap();
    assert!(stderr.contains("Interrupted again"), "{stderr}");
    proxy.thaw();
    // The container it could not remove goes with the test's own clean-up.
}

#[test]
fn clean_up_after_an_interrupt_is_bounded() {
    let env = TestEnv::new("cleanbound");
    let proxy = FreezableProxy::start(&engine_socket());
    let started = Instant::now();
    let (mut child, reader) = build_then_hang(&env, &proxy, "2s");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let stderr = reader.join().unwrap();
    assert!(stderr.contains("S2I_LIMIT_CLEANUP_TIME"), "the warning names the limit: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(90));
    proxy.thaw();
}

#[test]
fn eight_builds_at_once_on_one_builder_all_succeed_and_leave_nothing() {
    let env = TestEnv::new("concurrent");
    let builder = env.alias(&fixture("sti-fake"));
    let src = app(&env);
    let same = env.tag("same");
    let tags: Vec<String> = (0..8).map(|i| if i % 2 == 0 { same.clone() } else { env.tag(&format!("own{i}")) }).collect();
    let children: Vec<_> = tags
        .iter()
        .map(|tag| env.s2i().args(["build", &src, &builder, tag]).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    for (child, tag) in children.into_iter().zip(&tags) {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{tag}: {}", String::from_utf8_lossy(&out.stderr));
    }
    for tag in &tags {
        assert_eq!(docker_run(tag, &["cat", "index.html"]).1, "hello\n", "{tag}");
    }
    env.assert_clean();
}

/// `--security-opt` reaches the Docker and Podman engines as their own CLIs send it. Docker's
/// default profile keeps assemble from making a user namespace (Podman's allows that, and mount,
/// as its own `podman run` does); `seccomp=unconfined` lifts it, a profile file replaces it (its
/// JSON for Docker, its path for Podman), `no-new-privileges` sets the flag.
#[test]
fn security_opts_reach_the_engine() {
    let env = TestEnv::new("security-opt");
    let builder = env.alias(&fixture("sti-fake"));
    let src = probe_app(&env);
    let probe = |extra: &[&str]| {
        let mut args = vec!["build", src, &builder];
        args.extend_from_slice(extra);
        let (code, _, stderr) = env.run(&args);
        assert_eq!(code, 0, "{stderr}");
        let line = stderr.lines().find_map(|l| l.split("---> probe: ").nth(1)).unwrap_or_else(|| panic!("no probe: {stderr}"));
        line.trim().to_string()
    };
    let by_default = match s2i_testkit::test_engine() {
        s2i_testkit::TestEngine::Docker => "userns=denied mount=denied renice=ok NoNewPrivs:0",
        s2i_testkit::TestEngine::Podman => "userns=ok mount=ok renice=ok NoNewPrivs:0",
    };
    assert_eq!(probe(&[]), by_default);
    assert_eq!(probe(&["--security-opt", "seccomp=unconfined"]), "userns=ok mount=ok renice=ok NoNewPrivs:0");
    let own = format!("seccomp={}", renice_denying_profile(&env));
    assert_eq!(probe(&["--security-opt", &own, "--security-opt", "no-new-privileges"]), "userns=ok mount=ok renice=denied NoNewPrivs:1");
    env.assert_clean();
}

/// `cmd`'s exit code, stdout and stderr, and how long it took; `None` (the process killed) when
/// it is still running after `limit`.
fn output_within(mut cmd: std::process::Command, limit: Duration) -> Option<(i32, String, String, Duration)> {
    use std::io::Read;
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("s2i runs");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    status.map(|s| (s.code().unwrap_or(-1), stdout, stderr, elapsed))
}

/// A builder whose tar dies at once (its user cannot write the destination) fed a source far
/// larger than any pipe or socket buffer: the engine stopped reading the upload, and s2i waited
/// for the upload before the container's exit, for ever. Now the exit ends the upload, every
/// time, with tar's own message.
#[test]
fn a_tar_that_dies_at_once_ends_the_build_with_its_own_error_every_time() {
    const RUNS: usize = 10;
    let env = TestEnv::new("tardies");
    let builder = env.alias(&fixture("sti-fake-readonly-dest"));
    // 64 MiB, written in full (no sparse files: tar sends every byte).
    let block = vec![0x5au8; 1 << 20];
    std::fs::create_dir_all(env.work().join("big")).unwrap();
    for f in 0..4 {
        let mut file = std::fs::File::create(env.work().join(format!("big/f{f}"))).unwrap();
        for _ in 0..16 {
            std::io::Write::write_all(&mut file, &block).unwrap();
        }
    }
    let out = env.tag("out");
    let (mut times, mut lost) = (Vec::new(), 0);
    for run in 1..=RUNS {
        let mut cmd = env.s2i();
        cmd.args(["build", "big", &builder, &out]);
        let Some((code, _, stderr, took)) = output_within(cmd, Duration::from_secs(30)) else {
            panic!("run {run} of {RUNS}: s2i was still running after 30 s (earlier runs took {times:?})");
        };
        assert_eq!(code, 1, "run {run}: {stderr}");
        let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("run {run}: no error line: {stderr}"));
        assert!(error.contains("assemble exited with status 1"), "run {run}: the container's own exit: {stderr}");
        let tar_said = stderr.contains("tar: ") && stderr.contains("Permission denied");
        // Podman's conmon closes its attach socket with our unread input in it; Podman's copy of
        // the streams then fails (a reset, a broken pipe), drops the container's last output, and
        // puts its own error in the stream instead. The old code lost it the same way.
        let podman_lost_it = test_engine() == TestEngine::Podman && stderr.contains(" unixpacket ") && stderr.contains("/attach: ");
        assert!(tar_said || podman_lost_it, "run {run}: tar's own message: {stderr}");
        lost += usize::from(!tar_said);
        times.push(took);
        env.assert_clean();
    }
    eprintln!("{RUNS} builds whose tar died at once took {times:?}; the engine lost tar's message in {lost}");
    let slowest = times.iter().max().unwrap();
    assert!(*slowest < Duration::from_secs(15), "each run ends within seconds: {times:?}");
}
