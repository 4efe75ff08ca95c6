//! `s2i verify` against the real engine, with builders the test kit makes (tests-support/builders/
//! verify-*): two builders on different bases that run an app alike are the same (exit 0); a run
//! script that sets another value, an assemble that drops a file and an app that answers HTTP
//! otherwise differ (exit 1) and the report names the cause; a flaky app is flaky, not different;
//! a build that fails on one side is an error naming the side (exit 2); existing images compare
//! with --images; --twice tells whether two builds are one image; an interruption leaves nothing;
//! the same pair on the daemonless engine. After each: no container, and none of the run's images.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use s2i_testkit::{docker_output, fixture, write_file, TestEnv};
use serde_json::Value;

use crate::oci::{archive_of, Oci};

/// The app every fixture builds: a greeting, a data file, a page, and how it runs (`APP_MODE`,
/// `PORT` in .s2i/environment).
fn app(env: &TestEnv, name: &str, mode: Option<&str>, port: Option<u16>) -> String {
    let root = env.work().join(name);
    write_file(&root.join("greeting.txt"), "hi\n", 0o644);
    write_file(&root.join("data.txt"), "some data\n", 0o644);
    write_file(&root.join("www/index.html"), "<h1>hello</h1>\n", 0o644);
    let mut environment = String::new();
    if let Some(mode) = mode {
        environment.push_str(&format!("APP_MODE={mode}\n"));
    }
    if let Some(port) = port {
        environment.push_str(&format!("PORT={port}\n"));
    }
    write_file(&root.join(".s2i/environment"), &environment, 0o644);
    name.to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The run's id, from the names it announces (`s2i-verify-<id>/a:latest`).
fn run_id(stderr: &str) -> String {
    let at = stderr.find("s2i-verify-").unwrap_or_else(|| panic!("no temporary image named in:\n{stderr}"));
    stderr[at + "s2i-verify-".len()..].chars().take_while(|c| c.is_ascii_hexdigit()).collect()
}

/// Nothing of run `id` is left in Docker: no image named after it, no container.
fn assert_nothing_left(id: &str) {
    let images = docker_output(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let left: Vec<&str> = images.lines().filter(|l| l.contains(&format!("s2i-verify-{id}"))).collect();
    assert!(left.is_empty(), "images left: {left:?}");
    let containers = docker_output(&["ps", "-a", "--format", "{{.Names}}"]);
    let left: Vec<&str> = containers.lines().filter(|l| l.contains(&format!("s2i_verify_{id}"))).collect();
    assert!(left.is_empty(), "containers left: {left:?}");
}

/// Waits (two minutes at most) until a `s2i verify` says it runs both images, gives the first
/// side's container time to come up (or be in the making), interrupts it as Ctrl-C does, and
/// returns whether it got that far, how it ended and its stderr.
fn interrupt_once_running(mut child: std::process::Child) -> (bool, std::process::ExitStatus, String) {
    let stderr = child.stderr.take().unwrap();
    let (running_tx, running_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("Running both images") {
                let _ = running_tx.send(());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    let running = running_rx.recv_timeout(std::time::Duration::from_secs(120)).is_ok();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    (running, status, reader.join().unwrap())
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn assert_fits(report: &str) {
    for line in report.lines() {
        assert!(line.chars().count() <= 100, "a line wider than 100 columns:\n{line}");
    }
    assert!(!report.contains('\x1b'), "colours in a report that is not on a terminal:\n{report}");
}

/// A row of the outcome table, as far as its B column: field, A, B.
fn row(field: &str, a: &str, b: &str) -> String {
    format!("    {field:<20}  {a:<31}  {b:<31}")
}

fn aspect<'a>(doc: &'a Value, check: &str, field: &str) -> &'a Value {
    doc["outcomes"]["aspects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["check"] == check && a["field"] == field)
        .unwrap_or_else(|| panic!("no aspect {check} {field} in {doc}"))
}

#[test]
fn two_builders_on_different_bases_that_run_the_app_alike_are_the_same() {
    let env = TestEnv::new("verify_same");
    let (a, b) = (env.alias(&fixture("verify-a")), env.alias(&fixture("verify-b")));
    let src = app(&env, "app", None, None);
    let (code, stdout, stderr) = env.run(&["verify", &src, &a, &b, "--runs", "2", "--exec", "ls /opt/app-root/src; cat /etc/os-release 2>/dev/null | head -1"]);
    assert_eq!(code, 1, "the os-release line differs between the bases: {stdout}{stderr}");
    assert!(stdout.contains("A and B differ: exec: ls /opt/app-root/src"), "{stdout}");
    assert_nothing_left(&run_id(&stderr));

    // The app's own run: the same output (its time and hostname masked) on both bases.
    let (code, stdout, stderr) = env.run(&["verify", &src, &a, &b, "--runs", "2"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("s2i verify: SAME (0 of 3 aspects differ; exit 0)"), "{stdout}");
    assert!(stdout.contains(&row("stdout", "GREETING=hello (+3 lines)", "GREETING=hello (+3 lines)")), "{stdout}");
    // What differs between the images is shown, and does not count.
    assert!(stdout.contains("The images differ") && stdout.contains("though not in anything the checks saw"), "{stdout}");
    assert!(stdout.contains(&format!("  env    {:<22}  (none) → merged-usr", "BASE_FLAVOUR")), "{stdout}");
    assert!(stdout.contains("  label  io.k8s.description"), "{stdout}");
    assert!(stdout.contains("  env    PATH"), "{stdout}");
    assert!(stdout.contains("0 added, 0 removed, 0 changed"), "the builds added the same files: {stdout}");
    assert_fits(&stdout);
    assert!(stderr.contains("Building side A with") && stderr.contains("Building side B with"), "{stderr}");
    assert_nothing_left(&run_id(&stderr));
    env.assert_clean();
}

#[test]
fn a_run_script_that_sets_another_value_differs_and_the_report_names_it() {
    let env = TestEnv::new("verify_env");
    let (a, b) = (env.alias(&fixture("verify-a")), env.alias(&fixture("verify-env")));
    let src = app(&env, "app", None, None);
    let (code, stdout, stderr) = env.run(&["verify", &src, &a, &b]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.starts_with("s2i verify: DIFFER (1 of 3 aspects differ; exit 1)"), "{stdout}");
    assert!(stdout.contains("A and B differ: run stdout\n    --- A\n    +++ B\n"), "{stdout}");
    assert!(stdout.contains("    -GREETING=hello\n    +GREETING=bonjour\n"), "{stdout}");
    // The cause: the run script.
    assert!(stdout.contains("  script /usr/libexec/s2i/run differs:"), "{stdout}");
    assert!(stdout.contains("    -export GREETING=hello\n    +export GREETING=bonjour\n"), "{stdout}");
    assert_fits(&stdout);
    assert_nothing_left(&run_id(&stderr));
    env.assert_clean();
}

#[test]
fn an_assemble_that_drops_a_file_differs_and_the_file_is_named() {
    let env = TestEnv::new("verify_drop");
    let (a, b) = (env.alias(&fixture("verify-a")), env.alias(&fixture("verify-drop")));
    let src = app(&env, "app", None, None);
    let (code, stdout, stderr) = env.run(&["verify", &src, &a, &b, "--json"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let doc = json(&stdout);
    assert_eq!((doc["verdict"].as_str(), doc["exit_code"].as_u64()), (Some("differ"), Some(1)), "{doc}");
    assert_eq!(aspect(&doc, "run", "stdout")["verdict"], "differ");
    let removed = doc["image"]["files"]["removed"].as_array().unwrap();
    let paths: Vec<&str> = removed.iter().filter_map(|f| f["path"].as_str()).collect();
    assert_eq!(paths, ["opt/app-root/src/data.txt"], "{doc}");
    assert_eq!(removed[0]["a"]["size"], 10);
    assert_eq!(doc["image"]["files"]["counts"]["removed"], 1);
    // The same as a table.
    let (code, stdout, stderr) = env.run(&["verify", &src, &a, &b]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.contains("    - opt/app-root/src/data.txt  (10 B)"), "{stdout}");
    assert!(stdout.contains("    -files: data.txt greeting.txt www \n    +files: greeting.txt www \n"), "{stdout}");
    assert_nothing_left(&run_id(&stderr));
    env.assert_clean();
}

#[test]
fn an_app_that_answers_http_otherwise_differs() {
    let env = TestEnv::new("verify_http");
    let (a, b) = (env.alias(&fixture("verify-a")), env.alias(&fixture("verify-http-b")));
    let port = free_port().to_string();
    let src = app(&env, "app", Some("http"), Some(port.parse().unwrap()));
    let probe = format!("{port}/index.html");
    let (code, stdout, stderr) = env.run(&["verify", &src, &a, &b, "--http", &probe, "--http", &format!("{port}/nope"), "--json"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let doc = json(&stdout);
    let page = format!("GET :{port}/index.html");
    assert_eq!(aspect(&doc, &page, "status")["verdict"], "same", "{doc}");
    assert_eq!(aspect(&doc, &page, "status")["a"]["values"][0], "200");
    assert_eq!(aspect(&doc, &page, "header content-type")["a"]["values"][0], "text/html");
    let body = aspect(&doc, &page, "body");
    assert_eq!(body["verdict"], "differ");
    assert_eq!((body["a"]["values"][0].as_str(), body["b"]["values"][0].as_str()), (Some("<h1>hello</h1>\n"), Some("<h1>served by B</h1>\n")));
    assert_eq!(aspect(&doc, &format!("GET :{port}/nope"), "status")["a"]["values"][0], "404");
    // A server runs until the checks are done, then it is stopped.
    assert_eq!(aspect(&doc, "run", "exit")["a"]["values"][0], "still running after the checks");
    assert_eq!(doc["outcomes"]["differences"], 1);
    assert!(doc["image"]["scripts"].as_array().unwrap().iter().any(|s| s["path"] == "/usr/libexec/s2i/run"), "{doc}");
    assert_nothing_left(&run_id(&stderr));
    env.assert_clean();
}

#[test]
fn a_flaky_app_is_reported_flaky_not_different() {
    let env = TestEnv::new("verify_flaky");
    let (a, b) = (env.alias(&fixture("verify-a")), env.alias(&fixture("verify-b")));
    let src = app(&env, "app", Some("random"), None);
    let (code, stdout, stderr) = env.run(&["verify", &src, &a, &b, "--runs", "3"]);
    assert_eq!(code, 0, "flaky on both sides is not the builders' doing: {stdout}{stderr}");
    assert!(stdout.starts_with("s2i verify: SAME (0 of 3 aspects differ, 1 flaky on both sides; exit 0)"), "{stdout}");
    assert!(stdout.contains(&format!("{}  flaky", row("stdout", "(varies: 3 values)", "(varies: 3 values)"))), "{stdout}");
    assert!(stdout.contains("Changes between runs on both sides (not counted): run stdout"), "{stdout}");
    assert!(stdout.contains("  side A: 3 values (runs: 1, 1, 1); the first two:"), "{stdout}");
    assert_fits(&stdout);
    // One run of each cannot tell: the random numbers then differ.
    let (code, stdout, _) = env.run(&["verify", &src, &a, &b]);
    assert_eq!(code, 1, "{stdout}");
    env.assert_clean();
}

#[test]
fn a_build_that_fails_on_one_side_is_an_error_naming_the_side() {
    let env = TestEnv::new("verify_fail");
    let (a, b) = (env.alias(&fixture("verify-a")), env.alias(&fixture("verify-fail")));
    let src = app(&env, "app", None, None);
    let (code, stdout, stderr) = env.run(&["verify", &src, &a, &b]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains(&format!("error: side B ({b}): assemble exited with status 3 in {b}")), "{stderr}");
    assert!(stderr.contains("verify-fail: cannot build this app"), "{stderr}");
    assert!(stderr.contains("hint: the builder's assemble script failed"), "{stderr}");
    assert_nothing_left(&run_id(&stderr));
    let (code, stdout, stderr) = env.run(&["verify", &src, &a, &b, "--json"]);
    assert_eq!(code, 2, "{stderr}");
    let doc = json(&stdout);
    assert_eq!((doc["verdict"].as_str(), doc["exit_code"].as_u64()), (Some("error"), Some(2)), "{doc}");
    assert!(doc["error"]["message"].as_str().unwrap().starts_with("side B ("), "{doc}");
    // Bad arguments are errors too, before any work.
    for (args, says) in [
        (vec!["verify", &src, &a], "s2i verify needs SOURCE BUILDER_A BUILDER_B"),
        (vec!["verify", &src, &a, &b, "--http", "http://x"], "invalid --http"),
        (vec!["verify", &src, &a, &b, "--ignore", "("], "invalid --ignore"),
        (vec!["verify", &src, &a, &b, "--no-run", "--http", "8080"], "--http cannot be used with --no-run"),
        (vec!["verify", "--images", &a, &b, &src], "--images cannot be used with SOURCE and builders"),
        (vec!["verify", &src, &a, &b, "--callback-url", "http://127.0.0.1:1/"], "--callback-url cannot be used with s2i verify"),
    ] {
        let (code, _, stderr) = env.run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    env.assert_clean();
}

/// The build flags are build's, for both sides: -e reaches assemble, and --incremental builds
/// each side twice, the second time on the artifacts of the first.
#[test]
fn build_flags_apply_to_both_sides_and_incremental_builds_on_the_first_build() {
    let env = TestEnv::new("verify_flags");
    let builder = env.alias(&fixture("sti-fake"));
    write_file(&env.work().join("app/index.html"), "hi\n", 0o644);
    write_file(&env.work().join("app/artifacts/cache.txt"), "cached\n", 0o644);
    let (code, stdout, stderr) = env.run(&["verify", "app", &builder, &builder, "--incremental", "-e", "VERIFY_FLAG=on", "--exec", "grep VERIFY_FLAG .sti-fake-assemble-env", "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let doc = json(&stdout);
    let exec = aspect(&doc, "exec: grep VERIFY_FLAG .sti-fake-assemble-env", "stdout");
    assert_eq!((exec["verdict"].as_str(), exec["a"]["values"][0].as_str()), (Some("same"), Some("VERIFY_FLAG=on\n")), "{doc}");
    assert_eq!(stderr.matches("---> sti-fake assemble").count(), 4, "two builds a side: {stderr}");
    assert_eq!(stderr.matches("---> restoring artifacts").count(), 2, "each second build used the first's artifacts: {stderr}");
    assert_nothing_left(&run_id(&stderr));
    env.assert_clean();
}

#[test]
fn images_compares_two_images_that_exist() {
    let env = TestEnv::new("verify_images");
    let (a, b) = (env.alias(&fixture("verify-a")), env.alias(&fixture("verify-drop")));
    let src = app(&env, "app", None, None);
    let (one, two) = (env.tag("one"), env.tag("two"));
    for (builder, tag) in [(&a, &one), (&b, &two)] {
        let (code, _, stderr) = env.run(&["build", &src, builder, tag]);
        assert_eq!(code, 0, "{stderr}");
    }
    let (code, stdout, stderr) = env.run(&["verify", "--images", &one, &two, "--exec", "cat data.txt", "--no-run"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("  A  {one} (")), "{stdout}");
    assert!(stdout.contains("A and B differ: exec: cat data.txt stdout"), "{stdout}");
    assert!(stdout.contains("    +cat: can't open 'data.txt': No such file or directory") || stdout.contains("A and B differ: exec: cat data.txt stderr"), "{stdout}");
    let (code, stdout, _) = env.run(&["verify", "--images", &one, &one]);
    assert_eq!(code, 0, "an image against itself: {stdout}");
    assert!(stdout.contains("The images differ in nothing else that s2i compares"), "{stdout}");
    let (code, _, stderr) = env.run(&["verify", "--images", &one, "s2i-test/no-such-image:x"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("error: side B (s2i-test/no-such-image:x): image \"s2i-test/no-such-image:x\" not found"), "{stderr}");
    env.assert_clean();
}

#[test]
fn twice_on_docker_says_the_builds_are_different_images_and_how() {
    let env = TestEnv::new("verify_twice");
    let a = env.alias(&fixture("verify-a"));
    let src = app(&env, "app", None, None);
    let (code, stdout, stderr) = env.run(&["verify", &src, &a, "--twice"]);
    assert_eq!(code, 1, "Docker stamps each commit with its time: {stdout}{stderr}");
    assert!(stdout.starts_with("s2i verify: DIFFER (the two builds are different images; exit 1)"), "{stdout}");
    assert!(stdout.contains("Built twice with A: different images ("), "{stdout}");
    assert!(stdout.contains("  config created "), "{stdout}");
    assert!(stdout.contains("0 added, 0 removed, 0 changed"), "the same files: {stdout}");
    assert!(stdout.contains("Only times differ"), "{stdout}");
    assert_fits(&stdout);
    assert_nothing_left(&run_id(&stderr));
    env.assert_clean();
}

/// Ctrl-C while a server is being waited for: every container and image of the run goes.
#[test]
fn an_interrupted_verify_leaves_nothing() {
    let env = TestEnv::new("verify_interrupt");
    let (a, b) = (env.alias(&fixture("verify-a")), env.alias(&fixture("verify-b")));
    let port = free_port();
    let src = app(&env, "app", Some("http"), Some(port));
    // Nothing answers on the port asked for: the check waits until the timeout.
    let silent = format!("{}/", free_port());
    let child = env.s2i().args(["verify", &src, &a, &b, "--http", &silent, "--timeout", "5m"]).stderr(Stdio::piped()).spawn().unwrap();
    let (running, status, seen) = interrupt_once_running(child);
    assert!(running, "{seen}");
    assert_eq!(status.code(), Some(2), "{seen}");
    assert!(seen.contains("error: interrupted"), "{seen}");
    assert_nothing_left(&run_id(&seen));
    env.assert_clean();
}

/// Interrupted on the daemonless engine while an app is being waited for: no mount, runc
/// container, bundle or cgroup is left, and none of the run's images in the store.
#[test]
fn an_interrupted_verify_on_the_oci_engine_leaves_nothing() {
    let t = Oci::new("verify-oci-interrupt");
    let (a, b) = (archive_of(&fixture("verify-a")), archive_of(&fixture("verify-b")));
    let src = app(&t.env, "app", Some("http"), Some(free_port()));
    let silent = format!("{}/", free_port());
    let child = t.command(&["verify", &src, &a, &b, "--http", &silent, "--timeout", "5m"]).stderr(Stdio::piped()).spawn().unwrap();
    let (running, status, seen) = interrupt_once_running(child);
    t.note_containers(&seen);
    assert!(running, "{seen}");
    assert_eq!(status.code(), Some(2), "{seen}");
    assert!(seen.contains("created container") && seen.contains("error: interrupted"), "{seen}");
    let left = t.store_tags();
    assert!(left.keys().all(|name| !name.contains("s2i-verify-")), "images left in the store: {left:?}");
    t.assert_clean();
}

/// The daemonless engine: builders from archives, sides run one after the other on the host's
/// network; the pair that runs alike is the same, the differing pair differs, a --twice is one
/// image (SOURCE_DATE_EPOCH), and nothing is left in the store.
#[test]
fn on_the_oci_engine_the_same_pair_is_same_and_the_differing_pair_differs() {
    let t = Oci::new("verify-oci");
    let (a, b, env_b) = (archive_of(&fixture("verify-a")), archive_of(&fixture("verify-b")), archive_of(&fixture("verify-env")));
    let port = free_port();
    let src = app(&t.env, "app", None, None);
    let (code, stdout, stderr) = t.run(&["verify", &src, &a, &b]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("s2i verify: SAME"), "{stdout}");
    let (code, stdout, stderr) = t.run(&["verify", &src, &a, &env_b]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("    -GREETING=hello\n    +GREETING=bonjour\n"), "{stdout}");
    // HTTP: the app listens on the host's own port, one side after the other.
    let http = app(&t.env, "http", Some("http"), Some(port));
    let (code, stdout, stderr) = t.run(&["verify", &http, &a, &b, "--http", &format!("{port}/"), "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let doc = json(&stdout);
    assert_eq!(aspect(&doc, &format!("GET :{port}/"), "body")["a"]["values"][0], "<h1>hello</h1>\n", "{doc}");
    assert_eq!(doc["engine"]["kind"], "oci");
    let (code, stdout, stderr) = t.run(&["verify", &src, &a, "--twice"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("Built twice with A: the same image ("), "{stdout}");
    let left = t.store_tags();
    assert!(left.keys().all(|name| !name.contains("s2i-verify-")), "images left in the store: {left:?}");
    t.assert_clean();
}

/// The Python builder on bookworm's Python 3.11 against the same builder on trixie's 3.13, with
/// the hello example: the page names the Python, so it differs, and the report says why (the
/// builders' PYTHON_VERSION, the virtualenv's lib/python3.X); /healthz and the app's log (its
/// times and addresses masked) are the same.
#[cfg(feature = "python-tests")]
#[test]
fn the_python_builder_on_two_pythons_and_the_hello_example() {
    use s2i_testkit::{builder_image_on, other_python_base_image, python_base_image, repo_path};
    let env = TestEnv::new("verify_python");
    let dir = repo_path("builders/python");
    let a = env.alias(&builder_image_on(&dir, &python_base_image()));
    let b = env.alias(&builder_image_on(&dir, &other_python_base_image()));
    let src = repo_path("examples/python-hello").to_string_lossy().into_owned();
    let (code, stdout, stderr) = env.run(&["verify", &src, &a, &b, "--http", "8080/", "--http", "8080/healthz", "--runs", "2"]);
    // Shown for docs/verify.md, which quotes it.
    eprintln!("{stdout}");
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.starts_with("s2i verify: DIFFER (1 of "), "{stdout}");
    assert!(stdout.contains("A and B differ: GET :8080/ body"), "{stdout}");
    let minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
    let version = |image: &str| {
        let env = s2i_testkit::image_config(image)["Env"].as_array().unwrap().iter().filter_map(|v| v.as_str()?.strip_prefix("PYTHON_VERSION=").map(str::to_string)).next();
        env.unwrap_or_else(|| panic!("{image} records no PYTHON_VERSION"))
    };
    let (va, vb) = (version(&a), version(&b));
    assert!(va.starts_with("3.11.") && vb.starts_with("3.13."), "{va} {vb}");
    assert!(stdout.contains(&format!("    -Hello from Python {va}, built with s2i!\n    +Hello from Python {vb}, built with s2i!\n")), "{stdout}");
    assert!(stdout.contains(&format!("  {:<22}  {va:<31}  {vb}", "PYTHON_VERSION")), "{stdout}");
    // The rest is the same: status, headers, /healthz, the app's log with addresses masked.
    for same in [row("status", "200", "200"), row("body", "ok", "ok"), row("stderr", "---> Running python app.py", "---> Running python app.py")] {
        assert!(stdout.contains(&format!("{same}  same")), "{same}: {stdout}");
    }
    assert!(stdout.contains(&format!("opt/app-root/venv/lib/python{}/  (a directory: ", minor(&vb))), "{stdout}");
    assert!(stdout.contains(&format!("opt/app-root/venv/lib/python{}/  (a directory: ", minor(&va))), "{stdout}");
    assert_fits(&stdout);
    assert_nothing_left(&run_id(&stderr));
    env.assert_clean();
}
