//! The Python builder image (`builders/python`) and the Python examples, end to end: a Debian
//! base with python3 made by debootstrap, the builder built on it, each example built by our s2i,
//! run, and its output or HTTP answer checked. The dependency example installs a wheel from a
//! package index served on the host's 127.0.0.1 (containers reach no other network), and an
//! incremental rebuild must reuse the virtualenv without downloading it again.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use s2i_testkit::{
    builder_image_on, docker_output, image_exists, image_inspect, python_base_image, repo_path, write_file,
    HttpServer, TestEnv,
};

fn python_builder() -> String {
    builder_image_on(&repo_path("builders/python"), &python_base_image())
}

fn example(name: &str) -> String {
    repo_path(&format!("examples/{name}")).to_string_lossy().into_owned()
}

fn s2i(env: &TestEnv, args: &[&str]) -> (i32, String, String) {
    let Output { status, stdout, stderr } = env.s2i().args(args).output().expect("s2i runs");
    let out = (status.code().unwrap_or(-1), String::from_utf8_lossy(&stdout).into(), String::from_utf8_lossy(&stderr).into());
    if std::env::var_os("S2I_TEST_VERBOSE").is_some() {
        eprintln!("s2i {args:?} -> {}\n--- stdout\n{}--- stderr\n{}", out.0, out.1, out.2);
    }
    out
}

/// `docker ARGS…` → (exit code, stdout, stderr), never panicking.
fn docker(args: &[&str]) -> (i32, String, String) {
    let out = s2i_testkit::engine_command().args(args).stdin(Stdio::null()).output().expect("docker runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A detached container, removed (with its volumes) when dropped, whatever the test's outcome.
struct Running {
    id: String,
}

impl Running {
    /// `docker run -d -p 127.0.0.1::8080 [EXTRA…] IMAGE`.
    fn start(image: &str, extra: &[&str]) -> Running {
        let mut args = vec!["run", "-d", "-p", "127.0.0.1::8080"];
        args.extend_from_slice(extra);
        args.push(image);
        Running { id: docker_output(&args) }
    }

    fn port(&self) -> u16 {
        let mapping = docker_output(&["port", &self.id, "8080/tcp"]);
        let first = mapping.lines().next().unwrap_or_default();
        first.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {mapping:?}"))
    }

    fn logs(&self) -> String {
        let (_, out, err) = docker(&["logs", &self.id]);
        format!("{out}{err}")
    }

    /// GETs `path` from the container's port 8080 until it answers (30 s at most) and returns
    /// (status code, body).
    fn get(&self, path: &str) -> (u16, String) {
        let port = self.port();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match http_get(port, path) {
                Ok(answer) => return answer,
                Err(e) if Instant::now() > deadline => {
                    panic!("no HTTP answer on 127.0.0.1:{port}{path}: {e}\ncontainer logs:\n{}", self.logs())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.id]);
    }
}

/// One HTTP/1.0 GET with std's TcpStream; an error until a whole answer arrives.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an HTTP answer: {resp:?}"));
    let (head, body) = resp.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok((status, body.to_string()))
}

/// `docker run --rm [EXTRA…] IMAGE [CMD…]` → (exit code, stdout, stderr).
fn run_image(image: &str, extra: &[&str], cmd: &[&str]) -> (i32, String, String) {
    s2i_testkit::docker_run_with(extra, image, cmd)
}

/// Builds the wheel of `examples/packages/greeting-lib` with the base image's pip (the host
/// needs no Python) and the wheels of the build backend that the base image carries
/// (setuptools, wheel), and lays them out as a PEP 503 simple index under `root`:
/// `root/simple/<project>/index.html` linking to `root/files/<wheel>`. Returns the wheels' names.
fn make_package_index(root: &Path) -> Vec<String> {
    let files = root.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let uid = format!("{}:{}", id("-u"), id("-g"));
    let pkg = format!("{}:/pkg:ro", repo_path("examples/packages/greeting-lib").display());
    let out = format!("{}:/out", files.display());
    let (code, stdout, stderr) = run_image(
        &python_base_image(),
        &["--user", &uid, "-e", "HOME=/tmp", "-e", "PIP_NO_CACHE_DIR=1", "-e", "PIP_DISABLE_PIP_VERSION_CHECK=1", "-v", &pkg, "-v", &out],
        &["sh", "-c", "cp -R /pkg /tmp/pkg && python3 -m pip wheel -q --no-deps --no-build-isolation -w /out /tmp/pkg && cp /usr/share/python-wheels/setuptools-*.whl /usr/share/python-wheels/wheel-*.whl /out/"],
    );
    assert_eq!(code, 0, "building the wheels failed:\n{stdout}{stderr}");
    let mut wheels: Vec<String> = std::fs::read_dir(&files).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    wheels.sort();
    let mut projects: Vec<String> = Vec::new();
    for wheel in &wheels {
        // PEP 503 names: the distribution part of the file name, lowercase, runs of -_. as '-'.
        let project = wheel.split('-').next().unwrap().to_lowercase().replace(['_', '.'], "-");
        let dir = root.join("simple").join(&project);
        let page = dir.join("index.html");
        let links = std::fs::read_to_string(&page).unwrap_or_default();
        write_file(&page, &format!("{links}<a href=\"../../files/{wheel}\">{wheel}</a><br>\n"), 0o644);
        if !projects.contains(&project) {
            projects.push(project);
        }
    }
    let index: String = projects.iter().map(|p| format!("<a href=\"{p}/\">{p}</a><br>\n")).collect();
    write_file(&root.join("simple/index.html"), &index, 0o644);
    wheels
}

fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_python_builder_image_follows_the_builder_contract() {
    let builder = python_builder();
    let inspect = image_inspect(&builder);
    let config = &inspect["Config"];
    assert_eq!(config["Labels"]["io.openshift.s2i.scripts-url"], "image:///usr/libexec/s2i");
    assert_eq!(config["Labels"]["io.k8s.display-name"], "Python builder");
    assert!(config["Labels"]["io.k8s.description"].as_str().is_some_and(|d| d.contains("virtualenv")), "{config}");
    assert_eq!(config["User"], "1001");
    assert_eq!(config["WorkingDir"], "/opt/app-root/src");
    let env: Vec<&str> = config["Env"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert!(env.contains(&"STI_SCRIPTS_PATH=/usr/libexec/s2i"), "{env:?}");
    assert!(env.contains(&"VIRTUAL_ENV=/opt/app-root/venv"), "{env:?}");

    // Its default command prints the usage; the scripts are there, and the user owns the app root.
    let (code, usage, err) = run_image(&builder, &[], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(usage.contains("S2I builder image for Python") && usage.contains("APP_MODULE"), "{usage}");
    let (code, out, err) = run_image(
        &builder,
        &[],
        &["bash", "-c", "id -u; id -g; ls $STI_SCRIPTS_PATH | tr '\\n' ' '; echo; stat -c '%u %a' /opt/app-root/src; python3 -c 'import venv, sys; print(sys.version_info[0])'"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1001\n0\nassemble run save-artifacts usage \n1001 775\n3\n");
}

#[test]
fn the_hello_example_builds_and_answers_http() {
    let env = TestEnv::new("python_hello");
    let builder = env.alias(&python_builder());
    let out = env.tag("hello");
    let (code, _, stderr) = s2i(&env, &["build", &example("python-hello"), &builder, &out]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("---> Creating a virtualenv in /opt/app-root/venv"), "{stderr}");
    assert!(!stderr.contains("Installing dependencies"), "no requirements.txt: {stderr}");

    let inspect = image_inspect(&out);
    assert_eq!(inspect["Config"]["Cmd"][0], "/usr/libexec/s2i/run");
    assert_eq!(inspect["Config"]["User"], "1001");
    {
        let app = Running::start(&out, &[]);
        let (status, body) = app.get("/");
        assert_eq!(status, 200);
        assert!(body.starts_with("Hello from Python 3.") && body.ends_with(", built with s2i!\n"), "{body:?}");
        assert_eq!(app.get("/healthz"), (200, "ok\n".to_string()));
        assert_eq!(app.get("/nope").0, 404);
        assert!(app.logs().contains("---> Running python app.py"), "{}", app.logs());
    }
    // The source is where run looks for it, /tmp/src is gone, and group 0 may write everything
    // the build made: the image also runs under an arbitrary uid in group 0.
    let (code, listing, err) = run_image(
        &out,
        &[],
        &["bash", "-c", "ls; test ! -e /tmp/src && echo no-tmp-src; find /opt/app-root/src /opt/app-root/venv ! -type l ! -perm -g+w | head -n 3"],
    );
    assert_eq!((code, listing.as_str()), (0, "app.py\nno-tmp-src\n"), "{err}");
    {
        let app = Running::start(&out, &["--user", "4242:0"]);
        assert_eq!(app.get("/healthz"), (200, "ok\n".to_string()));
    }
    env.assert_clean();
}

/// The hello example built by the daemonless engine, whose build containers run under Docker's
/// default seccomp profile: python, venv and pip work under it, and Docker runs the result.
#[test]
fn the_hello_example_builds_on_the_oci_engine_under_its_seccomp_filter() {
    let t = crate::oci::Oci::new("python_hello_oci");
    let builder = crate::oci::archive_of(&python_builder());
    let out = t.env.tag("hello-oci");
    let loaded = t.build_and_load(&["build", &example("python-hello"), &builder, &out]);
    assert_eq!(loaded, out);
    {
        let app = Running::start(&out, &[]);
        let (status, body) = app.get("/");
        assert_eq!(status, 200);
        assert!(body.starts_with("Hello from Python 3.") && body.ends_with(", built with s2i!\n"), "{body:?}");
    }
    t.assert_clean();
}

#[test]
fn the_greeter_example_installs_from_a_local_index_and_an_incremental_build_reuses_the_virtualenv() {
    let env = TestEnv::new("python_greeter");
    let builder = env.alias(&python_builder());
    let out = env.tag("greeter");
    let index_dir = env.work().join("index");
    let wheels = make_package_index(&index_dir);
    let wheel = wheels.iter().find(|w| w.starts_with("greeting_lib-1.0.0-")).expect("the greeting-lib wheel").clone();
    let server = HttpServer::serve_dir(&index_dir);
    let index_url = format!("PIP_INDEX_URL={}/simple/", server.url());
    let wheel_downloads = || server.requests().iter().filter(|p| p.ends_with(&format!("/files/{wheel}"))).count();
    // The assemble container shares the host's network to reach the index on 127.0.0.1.
    let src = example("python-greeter");
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "--network", "host", "-e", &index_url, "--incremental"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[&src, &builder, &out]);
        let start = Instant::now();
        let result = s2i(&env, &args);
        (result, start.elapsed())
    };

    let ((code, _, stderr), clean_time) = build(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("---> Creating a virtualenv"), "{stderr}");
    assert!(stderr.contains(&format!("---> PIP_INDEX_URL={}/simple/", server.url())), "{stderr}");
    assert!(stderr.contains("Successfully installed greeting-lib-1.0.0"), "{stderr}");
    assert_eq!(wheel_downloads(), 1, "{:?}", server.requests());
    let first = image_inspect(&out)["Id"].as_str().unwrap().to_string();
    {
        let app = Running::start(&out, &[]);
        assert_eq!(app.get("/?name=s2i"), (200, "Hello, s2i! (greeting-lib 1.0.0)\n".to_string()));
    }

    // Incremental: save-artifacts hands the virtualenv over (and pip's cache, which stays empty
    // here: the index sends no caching headers); pip finds the
    // requirement satisfied and never asks the index again. --rm drops the previous image.
    let requests_before = server.requests().len();
    let ((code, _, stderr), incremental_time) = build(&["--rm"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("---> Reusing the virtualenv of the previous build"), "{stderr}");
    assert!(!stderr.contains("Creating a virtualenv"), "{stderr}");
    assert!(stderr.contains("Requirement already satisfied: greeting-lib==1.0.0"), "{stderr}");
    assert_eq!(wheel_downloads(), 1, "the wheel is not downloaded again: {:?}", server.requests());
    assert_eq!(server.requests().len(), requests_before, "no request to the index at all: {:?}", server.requests());
    assert!(!image_exists(&first), "--rm removed the previous image");
    eprintln!("python-greeter: clean build {clean_time:.1?}, incremental build {incremental_time:.1?}");
    // The restored virtualenv is group-writable again (s2i unpacked it under umask 022).
    let (code, not_group_writable, err) = run_image(
        &out,
        &[],
        &["sh", "-c", "find /opt/app-root/src /opt/app-root/venv ! -type l ! -perm -g+w | head -n 3"],
    );
    assert_eq!((code, not_group_writable.as_str()), (0, ""), "{err}");
    {
        let app = Running::start(&out, &[]);
        assert_eq!(app.get("/?name=again"), (200, "Hello, again! (greeting-lib 1.0.0)\n".to_string()));
    }
    env.assert_clean();
}

#[test]
fn the_hooks_example_wraps_the_stock_scripts_and_sets_app_file() {
    let env = TestEnv::new("python_hooks");
    let builder = env.alias(&python_builder());
    let out = env.tag("hooks");
    let (code, _, stderr) = s2i(&env, &["build", &example("python-hooks"), &builder, &out]);
    assert_eq!(code, 0, "{stderr}");
    let before = stderr.find("---> hooks example: before the stock assemble").expect(&stderr);
    let stock = stderr.find("---> Installing application source").expect(&stderr);
    let after = stderr.find("---> hooks example: after the stock assemble").expect(&stderr);
    assert!(before < stock && stock < after, "{stderr}");
    assert!(stderr.contains("---> wrote build-info.json"), "{stderr}");

    let (code, stdout, stderr) = run_image(&out, &[], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("---> hooks example: starting service/main.py through /usr/libexec/s2i/run"), "{stderr}");
    assert!(stdout.starts_with("hello hooks from service/main.py (built with Python 3."), "{stdout}");
    assert!(stdout.ends_with("arguments: (none)\n"), "{stdout}");
    // The image's command is the run hook (s2i keeps .s2i/bin out of the source); it passes its
    // arguments on, and the environment still rules.
    let cmd = image_inspect(&out)["Config"]["Cmd"][0].as_str().unwrap().to_string();
    assert!(cmd.ends_with("/scripts/run"), "{cmd}");
    let (code, stdout, stderr) = run_image(&out, &["-e", "GREETING_TARGET=you"], &[&cmd, "a", "b"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("hello you from service/main.py") && stdout.ends_with("arguments: a b\n"), "{stdout}");
    env.assert_clean();
}

/// A source with everything `run` can start: app.sh, app.py, other files and a package.
fn run_choices_app(env: &TestEnv) -> String {
    let root = env.work().join("choices");
    write_file(&root.join("app.sh"), "#!/bin/bash\necho \"app.sh $*\"\n", 0o755);
    write_file(&root.join("app.py"), "import sys\nprint('app.py', *sys.argv[1:])\n", 0o644);
    write_file(&root.join("other.sh"), "echo \"other.sh via bash $*\"\n", 0o644);
    write_file(&root.join("tools/job.py"), "import sys\nprint('tools/job.py', *sys.argv[1:])\n", 0o644);
    write_file(&root.join("pkg/__init__.py"), "", 0o644);
    write_file(
        &root.join("pkg/cli.py"),
        "import sys\n\ndef main():\n    print('pkg.cli:main', *sys.argv)\n    return 3\n\nif __name__ == '__main__':\n    print('python -m pkg.cli', *sys.argv[1:])\n",
        0o644,
    );
    "choices".into()
}

#[test]
fn run_starts_app_script_app_file_app_module_or_the_defaults() {
    let env = TestEnv::new("python_run_choices");
    let builder = env.alias(&python_builder());
    let out = env.tag("choices");
    let src = run_choices_app(&env);
    let (code, _, stderr) = s2i(&env, &["build", &src, &builder, &out]);
    assert_eq!(code, 0, "{stderr}");

    let run = "/usr/libexec/s2i/run";
    for (env_var, expect_code, expect_out) in [
        ("", 0, "app.sh x y\n"),
        ("APP_SCRIPT=other.sh", 0, "other.sh via bash x y\n"),
        ("APP_FILE=tools/job.py", 0, "tools/job.py x y\n"),
        ("APP_MODULE=pkg.cli", 0, "python -m pkg.cli x y\n"),
        ("APP_MODULE=pkg.cli:main", 3, "pkg.cli:main pkg.cli x y\n"),
        ("APP_SCRIPT=missing.sh", 1, ""),
    ] {
        let extra: Vec<&str> = if env_var.is_empty() { vec![] } else { vec!["-e", env_var] };
        let (code, stdout, stderr) = run_image(&out, &extra, &[run, "x", "y"]);
        assert_eq!((code, stdout.as_str()), (expect_code, expect_out), "{env_var}: {stderr}");
        if env_var == "APP_SCRIPT=missing.sh" {
            assert!(stderr.contains("error: APP_SCRIPT=missing.sh: no such file"), "{stderr}");
        }
    }
    // Without app.sh, app.py is the default; with neither, run says what to set.
    let (code, stdout, stderr) = run_image(&out, &[], &["bash", "-c", "rm app.sh && /usr/libexec/s2i/run z"]);
    assert_eq!((code, stdout.as_str()), (0, "app.py z\n"), "{stderr}");
    let (code, _, stderr) = run_image(&out, &[], &["bash", "-c", "rm app.sh app.py && /usr/libexec/s2i/run"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("error: nothing to run") && stderr.contains("APP_MODULE"), "{stderr}");
    env.assert_clean();
}

#[test]
fn assemble_installs_a_pyproject_project_and_runs_the_builder_hooks() {
    let env = TestEnv::new("python_project");
    let builder = env.alias(&python_builder());
    let out = env.tag("project");
    let index_dir = env.work().join("index");
    make_package_index(&index_dir);
    let server = HttpServer::serve_dir(&index_dir);

    // A project that depends on greeting-lib and declares a console script; setuptools and
    // wheel (its build backend) come from the index too, as from any private index.
    let root = env.work().join("project");
    write_file(
        &root.join("pyproject.toml"),
        "[build-system]\nrequires = [\"setuptools>=61\", \"wheel\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
         [project]\nname = \"hello-project\"\nversion = \"0.1.0\"\ndependencies = [\"greeting-lib\"]\n\n\
         [project.scripts]\nhello-project = \"hello_project:main\"\n",
        0o644,
    );
    write_file(
        &root.join("hello_project/__init__.py"),
        "import greeting_lib\n\ndef main():\n    print(greeting_lib.greet('project'))\n",
        0o644,
    );
    write_file(&root.join(".s2i/hooks/pre-assemble"), "echo \"pre-assemble hook in $(pwd), venv: ${VIRTUAL_ENV:-none}\"\n", 0o644);
    write_file(&root.join(".s2i/hooks/post-assemble"), "#!/bin/sh\necho \"post-assemble hook: $(command -v hello-project)\"\n", 0o755);
    write_file(&root.join(".s2i/environment"), "APP_MODULE=hello_project:main\n", 0o644);
    // PIP_FIND_LINKS with no index: the other way of pointing pip at local wheels.
    let find_links = format!("PIP_FIND_LINKS={}/files/", server.url());
    // The listing of /files/ is a page of links, as pip expects from --find-links.
    let files: String = std::fs::read_dir(index_dir.join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .map(|f| format!("<a href=\"{f}\">{f}</a><br>\n"))
        .collect();
    write_file(&index_dir.join("files/index.html"), &files, 0o644);

    let (code, _, stderr) = s2i(&env, &["build", "--network", "host", "-e", &find_links, "-e", "PIP_NO_INDEX=1", "project", &builder, &out]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("pre-assemble hook in /opt/app-root/src, venv: /opt/app-root/venv"), "{stderr}");
    assert!(stderr.contains("---> Installing the project (pyproject.toml)"), "{stderr}");
    assert!(stderr.contains("Successfully installed greeting-lib-1.0.0 hello-project-0.1.0"), "{stderr}");
    assert!(stderr.contains("post-assemble hook: /opt/app-root/venv/bin/hello-project"), "{stderr}");
    assert!(stderr.find("pre-assemble hook").unwrap() < stderr.find("post-assemble hook").unwrap());
    assert!(server.requests().iter().any(|p| p.starts_with("/files/setuptools-")), "{:?}", server.requests());

    let (code, stdout, stderr) = run_image(&out, &[], &[]);
    assert_eq!((code, stdout.as_str()), (0, "Hello, project! (greeting-lib 1.0.0)\n"), "{stderr}");
    let (code, stdout, _) = run_image(&out, &[], &["bash", "-c", "ls -d build *.egg-info 2>/dev/null; hello-project"]);
    assert_eq!((code, stdout.as_str()), (0, "Hello, project! (greeting-lib 1.0.0)\n"), "no build leftovers");
    env.assert_clean();
}

/// The private-index recipe of builders/python/README.md: pip reads the index URL, with its
/// token, from a build secret named in `.s2i/environment`; the token reaches no layer, label or
/// output, and a build without the secret stops at once naming the file and line.
#[test]
fn a_private_index_url_from_a_build_secret_never_reaches_the_image() {
    let env = TestEnv::new("python_private_index");
    let builder = env.alias(&python_builder());
    let out = env.tag("greeter");
    // The index's password (the test server takes any; pip shows it as ****).
    let token = format!("tok-{}-{}", std::process::id(), env.id());
    let served = env.work().join("served");
    make_package_index(&served);
    let server = HttpServer::serve_dir(&served);
    let app = env.work().join("greeter");
    std::fs::create_dir_all(&app).unwrap();
    for f in ["app.py", "requirements.txt"] {
        std::fs::copy(Path::new(&example("python-greeter")).join(f), app.join(f)).unwrap();
    }
    write_file(&app.join(".s2i/environment"), "# s2i:secret pip.conf\nPIP_CONFIG_FILE=/run/secrets/pip.conf\n", 0o644);
    let pip_conf = env.work().join("private.conf");
    let with_password = server.url().replacen("http://", &format!("http://build:{token}@"), 1);
    std::fs::write(&pip_conf, format!("[global]\nindex-url = {with_password}/simple/\n")).unwrap();
    let secret = format!("id=pip.conf,src={}", pip_conf.display());
    let src = app.display().to_string();

    let (code, _, stderr) = s2i(&env, &["build", "--network", "host", &src, &builder, &out]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(".s2i/environment:1 says the build needs the secret \"pip.conf\""), "{stderr}");

    let (code, stdout, stderr) = s2i(&env, &["build", "--network", "host", "--secret", &secret, "--output=json", &src, &builder, &out]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Successfully installed greeting-lib-1.0.0"), "{stderr}");
    assert!(server.requests().iter().any(|p| p.starts_with("/simple/greeting-lib")), "{:?}", server.requests());
    assert!(!stdout.contains(&token) && !stderr.contains(&token), "{stdout}{stderr}");
    let saved = env.tmpdir().join("saved.tar");
    docker_output(&["save", "-o", saved.to_str().unwrap(), &out]);
    let bytes = std::fs::read(&saved).unwrap();
    std::fs::remove_file(&saved).unwrap();
    assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()), "the saved image holds the index token");
    env.assert_clean();
}
