//! `--secret`: a random value is readable by assemble and save-artifacts (which write its hash into the image) and
//! is found nowhere else: not in a layer, the config, the history, a label, the JSON result, or
//! anything s2i printed at --loglevel 5, in plain or base64. On the engine under test (Docker, or
//! Podman with S2I_TEST_ENGINE=podman) and on `--engine oci`.

use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use s2i_testkit::{docker_output, docker_run, fixture, write_file, TestEnv};

use crate::oci::{archive_of, Oci};

/// 32 random hex digits.
pub(crate) fn random_value() -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn sha256_hex(data: &str) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), data.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// The forms of `value` that must appear nowhere: itself and its base64 (with every alignment of
/// a longer base64 text, the middle of each of the three encodings).
pub(crate) fn forbidden(value: &str) -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut forms = vec![value.as_bytes().to_vec()];
    for pad in 0..3 {
        let text = format!("{}{value}", "x".repeat(pad));
        let enc = b64.encode(text.as_bytes());
        // The characters that depend on the value alone.
        let start = (pad * 4).div_ceil(3) + 2;
        forms.push(enc.as_bytes()[start..enc.len() - 4].to_vec());
    }
    forms
}

/// Panics when `data` (or, for gzip data, what it unpacks to) holds any of `forms`.
pub(crate) fn assert_absent(what: &str, data: &[u8], forms: &[Vec<u8>]) {
    let mut owned = Vec::new();
    let data = if data.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(data).read_to_end(&mut owned).map(|_| &owned[..]).unwrap_or(data)
    } else {
        data
    };
    for form in forms {
        assert!(!data.windows(form.len()).any(|w| w == &form[..]), "{what} holds the secret ({})", String::from_utf8_lossy(form));
    }
}

/// Every file of a tar archive (and the archive's own bytes), scanned.
pub(crate) fn assert_archive_clean(what: &str, archive: &Path, forms: &[Vec<u8>]) {
    let bytes = std::fs::read(archive).unwrap();
    assert_absent(what, &bytes, forms);
    let mut tar = tar::Archive::new(&bytes[..]);
    let mut files = 0;
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        assert_absent(&format!("{what}: {name}"), &data, forms);
        files += 1;
    }
    assert!(files > 2, "{what} has its layers and config");
}

/// Every file under `dir`, scanned.
fn assert_tree_clean(dir: &Path, forms: &[Vec<u8>]) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            assert_tree_clean(&path, forms);
        } else if kind.is_file() {
            assert_absent(&path.display().to_string(), &std::fs::read(&path).unwrap(), forms);
        }
    }
}

/// An app whose assemble records what it sees of two secrets: their hashes, mode and owner, and
/// that /run/secrets is not in the image; its .s2i/environment says it needs the first one.
fn secret_app(env: &TestEnv) -> &'static str {
    write_file(&env.work().join("app/index.html"), "hello\n", 0o644);
    write_file(&env.work().join("app/.s2i/environment"), "GREETING=hi\n# s2i:secret token\n", 0o644);
    write_file(
        &env.work().join("app/.s2i/bin/assemble"),
        "#!/bin/sh\nset -e\ncp -R /tmp/src/. ./\n\
         sha256sum /run/secrets/token | cut -d' ' -f1 > token.sha\n\
         sha256sum /run/secrets/envtok | cut -d' ' -f1 > envtok.sha\n\
         stat -c '%a %u' /run/secrets/token > token.stat\n\
         echo assembled with the secrets\n",
        0o755,
    );
    "app"
}

/// What the image says assemble saw: the two hashes and the token file's mode and owner.
fn seen_by_assemble(image: &str) -> (String, String, String) {
    let read = |f: &str| docker_run(image, &["cat", f]).1.trim().to_string();
    (read("token.sha"), read("envtok.sha"), read("token.stat"))
}

#[test]
fn a_secret_is_readable_in_assemble_and_in_nothing_the_build_leaves() {
    let env = TestEnv::new("secret");
    let builder = env.alias(&fixture("sti-fake"));
    let src = secret_app(&env);
    let (token, envtok) = (random_value(), random_value());
    let secret_file = env.work().join("token.txt");
    std::fs::write(&secret_file, &token).unwrap();
    let out = env.tag("app");
    let file_flag = format!("id=token,src={}", secret_file.display());
    let mut cmd = env.s2i();
    cmd.args(["build", src, &builder, &out, "--secret", &file_flag, "--secret", "id=envtok,env=S2I_TEST_ENV_SECRET", "--loglevel", "5", "--output=json"]);
    cmd.env("S2I_TEST_ENV_SECRET", &envtok);
    let run = cmd.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout).into_owned(), String::from_utf8_lossy(&run.stderr).into_owned());
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("assembled with the secrets"), "{stderr}");

    let (token_sha, envtok_sha, stat) = seen_by_assemble(&out);
    assert_eq!(token_sha, sha256_hex(&token), "assemble read the file's secret");
    assert_eq!(envtok_sha, sha256_hex(&envtok), "assemble read the variable's secret");
    assert_eq!(stat, "400 1001", "only the assemble user can read it");
    let (_, listing, _) = docker_run(&out, &["sh", "-c", "ls -A /run/secrets 2>/dev/null; true"]);
    assert_eq!(listing.trim(), "", "the image has no secrets");
    assert_eq!(docker_run(&out, &["sh", "-c", "echo $GREETING"]).1.trim(), "hi", ".s2i/environment still sets variables");

    let mut forms = forbidden(&token);
    forms.extend(forbidden(&envtok));
    assert_absent("stdout (the JSON result)", stdout.as_bytes(), &forms);
    assert_absent("stderr at --loglevel 5", stderr.as_bytes(), &forms);
    let saved = env.tmpdir().join("saved.tar");
    docker_output(&["save", "-o", saved.to_str().unwrap(), &out]);
    assert_archive_clean("the saved image", &saved, &forms);
    std::fs::remove_file(&saved).unwrap();
    assert_absent("the image's inspect (config, labels)", docker_output(&["image", "inspect", &out]).as_bytes(), &forms);
    assert_absent("the image's history", docker_output(&["history", "--no-trunc", &out]).as_bytes(), &forms);
    env.assert_clean();
}

#[test]
fn a_missing_secret_stops_the_build_before_any_container() {
    let env = TestEnv::new("secret-missing");
    let builder = env.alias(&fixture("sti-fake"));
    let src = secret_app(&env);
    let out = env.tag("app");
    let (code, _, stderr) = env.run(&["build", src, &builder, &out, "--secret", "id=token,src=/nonexistent/token", "--secret", "id=envtok,env=S2I_TEST_SURELY_UNSET"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("secret token: cannot read file /nonexistent/token"), "{stderr}");
    assert!(stderr.contains("hint: --secret id=token,src=PATH"), "{stderr}");

    // The file gives one, .s2i/environment needs another that no flag gives.
    let given = env.work().join("other.txt");
    std::fs::write(&given, "x").unwrap();
    let (code, _, stderr) = env.run(&["build", src, &builder, &out, "--secret", &format!("id=other,src={}", given.display())]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(".s2i/environment:2 says the build needs the secret \"token\""), "{stderr}");
    assert!(stderr.contains("hint: pass --secret id=token,src=PATH"), "{stderr}");
    assert!(!stderr.contains("Pulling") && !s2i_testkit::image_exists(&out), "{stderr}");

    let (code, _, stderr) = env.run(&["build", src, &builder, &out, "--secret", "id=../x,src=/etc/hostname"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("invalid --secret"), "{stderr}");
    env.assert_clean();
}

#[test]
fn as_dockerfile_mounts_the_secret_on_the_assemble_step() {
    let env = TestEnv::new("secret-dockerfile");
    let src = secret_app(&env);
    let token = random_value();
    let secret_file = env.work().join("token.txt");
    std::fs::write(&secret_file, &token).unwrap();
    let flag = format!("id=token,src={}", secret_file.display());
    let (code, _, stderr) = env.run(&["build", src, "docker.io/centos/python-36-centos7", "--as-dockerfile", "out/Dockerfile", "--secret", &flag]);
    assert_eq!(code, 0, "{stderr}");
    let dockerfile = std::fs::read_to_string(env.work().join("out/Dockerfile")).unwrap();
    assert!(dockerfile.starts_with("# syntax=docker/dockerfile:1\n"), "{dockerfile}");
    assert!(dockerfile.contains("RUN --mount=type=secret,id=token,target=/run/secrets/token,required=true,uid=1001,mode=0400 "), "{dockerfile}");
    assert_tree_clean(&env.work().join("out"), &forbidden(&token));
    env.assert_clean();
}

/// The daemonless engine: the same checks on what it writes (its store's blobs, the archive) and
/// what it prints.
#[test]
fn a_secret_on_the_oci_engine_is_in_no_blob_of_its_store() {
    let t = Oci::new("oci-secret");
    let builder = archive_of(&fixture("sti-fake"));
    let src = secret_app(&t.env);
    let (token, envtok) = (random_value(), random_value());
    let secret_file = t.env.work().join("token.txt");
    std::fs::write(&secret_file, &token).unwrap();
    let tag = t.env.tag("app");
    let archive = t.env.tmpdir().join("out.tar");
    let target = format!("docker-archive:{}", archive.display());
    let file_flag = format!("id=token,src={}", secret_file.display());
    // As Oci::command runs s2i, at --loglevel 5.
    let mut cmd = t.env.s2i();
    cmd.args(["build", src, &builder, &tag, "--secret", &file_flag, "--secret", "id=envtok,env=S2I_TEST_ENV_SECRET", "--output=json", "--output-archive", &target]);
    cmd.args(["--engine", "oci", "--oci-store"]).arg(t.store_dir()).args(["--loglevel", "5"]);
    cmd.env("DOCKER_HOST", "unix:///nonexistent/docker.sock").env("S2I_TEST_ENV_SECRET", &envtok);
    let run = cmd.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout).into_owned(), String::from_utf8_lossy(&run.stderr).into_owned());
    t.note_containers(&stderr);
    assert!(run.status.success(), "{stderr}");

    let mut forms = forbidden(&token);
    forms.extend(forbidden(&envtok));
    assert_absent("stdout (the JSON result)", stdout.as_bytes(), &forms);
    assert_absent("stderr at --loglevel 5", stderr.as_bytes(), &forms);
    assert_archive_clean("the written archive", &archive, &forms);
    assert_tree_clean(&t.store_dir(), &forms);
    let loaded = docker_output(&["load", "-i", archive.to_str().unwrap()]);
    std::fs::remove_file(&archive).unwrap();
    assert!(loaded.contains(&tag), "{loaded}");
    let (token_sha, envtok_sha, stat) = seen_by_assemble(&tag);
    assert_eq!(token_sha, sha256_hex(&token));
    assert_eq!(envtok_sha, sha256_hex(&envtok));
    assert_eq!(stat, "400 1001");
    let (_, listing, _) = docker_run(&tag, &["sh", "-c", "ls -A /run/secrets 2>/dev/null; true"]);
    assert_eq!(listing.trim(), "", "the image has no secrets");
    t.assert_clean();
}

/// A failing assemble: the build fails, its container goes, and the value is in nothing printed.
#[test]
fn a_failed_build_with_a_secret_leaves_nothing_and_shows_nothing() {
    let env = TestEnv::new("secret-fail");
    let builder = env.alias(&fixture("sti-fake"));
    write_file(&env.work().join("app/index.html"), "hello\n", 0o644);
    write_file(&env.work().join("app/.s2i/bin/assemble"), "#!/bin/sh\ntest -s /run/secrets/token && echo read it\nexit 3\n", 0o755);
    let token = random_value();
    let mut cmd = env.s2i();
    cmd.args(["build", "app", &builder, &env.tag("app"), "--secret", "id=token,env=S2I_TEST_ENV_SECRET", "--loglevel", "5", "--output=json"]);
    cmd.env("S2I_TEST_ENV_SECRET", &token);
    let run = cmd.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout).into_owned(), String::from_utf8_lossy(&run.stderr).into_owned());
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("read it"), "assemble had the secret: {stderr}");
    let forms = forbidden(&token);
    assert_absent("stdout (the JSON result)", stdout.as_bytes(), &forms);
    assert_absent("stderr at --loglevel 5", stderr.as_bytes(), &forms);
    env.assert_clean();
}

/// Ctrl-C while assemble holds the secret: the container (and its tmpfs) goes, nothing is left.
#[test]
fn an_interrupted_build_with_a_secret_leaves_nothing() {
    use std::io::{BufRead, BufReader};
    let env = TestEnv::new("secret-int");
    let builder = env.alias(&fixture("sti-fake"));
    write_file(&env.work().join("app/index.html"), "hello\n", 0o644);
    write_file(&env.work().join("app/.s2i/bin/assemble"), "#!/bin/sh\ntest -s /run/secrets/token && echo holding the secret\nexec sleep 600\n", 0o755);
    let secret = env.work().join("token.txt");
    std::fs::write(&secret, random_value()).unwrap();
    let mut child = env
        .s2i()
        .args(["build", "app", &builder, &env.tag("app"), "--secret", &format!("id=token,src={}", secret.display())])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("holding the secret") {
            break;
        }
    }
    assert!(seen.contains("holding the secret"), "{seen}");
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "{seen}");
    for line in lines.map_while(Result::ok) {
        seen.push_str(&line);
        seen.push('\n');
    }
    env.assert_clean();
}

/// An incremental app: assemble records the secret's hash and takes `deps` from the artifacts
/// when there are some; save-artifacts fails unless it can read the secret, and records in what
/// it saves the secret's hash and the file's mode and owner as it saw them.
fn incremental_secret_app(env: &TestEnv) -> &'static str {
    write_file(&env.work().join("inc/index.html"), "hello\n", 0o644);
    write_file(
        &env.work().join("inc/.s2i/bin/assemble"),
        "#!/bin/sh\nset -e\ncp -R /tmp/src/. ./\n\
         sha256sum /run/secrets/token | cut -d' ' -f1 > token.sha\n\
         if [ -f /tmp/artifacts/deps/saved.sha ]; then cp -R /tmp/artifacts/deps ./deps; echo '---> reusing deps'; else mkdir -p deps; echo '---> fresh deps'; fi\n",
        0o755,
    );
    write_file(
        &env.work().join("inc/.s2i/bin/save-artifacts"),
        "#!/bin/sh\nset -e\ncd /opt/app-root/src\n\
         test -r /run/secrets/token || { echo 'save-artifacts: no secret' >&2; exit 3; }\n\
         sha256sum /run/secrets/token | cut -d' ' -f1 > deps/saved.sha\n\
         stat -c '%a %u' /run/secrets/token > deps/saved.stat\n\
         echo '---> saved with the secret' >&2\n\
         tar cf - deps\n",
        0o755,
    );
    "inc"
}

/// What the second build of [`incremental_secret_app`] must show: save-artifacts read the secret
/// (else the build would have gone on clean), and its stdout and stderr hold no form of it.
fn assert_incremental_with_secret(image: &str, token: &str, stdout: &str, stderr: &str, forms: &[Vec<u8>]) {
    assert!(stderr.contains("---> saved with the secret") && stderr.contains("---> reusing deps"), "{stderr}");
    assert!(!stderr.contains("Clean build will be performed because"), "{stderr}");
    let read = |f: &str| docker_run(image, &["cat", f]).1.trim().to_string();
    assert_eq!(read("deps/saved.sha"), sha256_hex(token), "save-artifacts read the secret");
    assert_eq!(read("deps/saved.stat"), "400 1001", "only the save-artifacts user can read it");
    assert_eq!(read("token.sha"), sha256_hex(token), "assemble read the secret");
    let (_, listing, _) = docker_run(image, &["sh", "-c", "ls -A /run/secrets 2>/dev/null; true"]);
    assert_eq!(listing.trim(), "", "the image has no secrets");
    assert_absent("stdout (the JSON result)", stdout.as_bytes(), forms);
    assert_absent("stderr at --loglevel 5", stderr.as_bytes(), forms);
}

/// Incremental: save-artifacts, in a container of the previous image, has the secret too (the
/// issue says assemble and save-artifacts), and it is nowhere in what the build leaves.
#[test]
fn save_artifacts_reads_the_secret_in_an_incremental_build() {
    let env = TestEnv::new("secret-inc");
    let builder = env.alias(&fixture("sti-fake"));
    let src = incremental_secret_app(&env);
    let token = random_value();
    let out = env.tag("app");
    let build = || {
        let mut cmd = env.s2i();
        cmd.args(["build", src, &builder, &out, "--incremental", "--secret", "id=token,env=S2I_TEST_ENV_SECRET", "--loglevel", "5", "--output=json"]);
        cmd.env("S2I_TEST_ENV_SECRET", &token);
        let run = cmd.output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout).into_owned(), String::from_utf8_lossy(&run.stderr).into_owned());
        assert!(run.status.success(), "{stderr}");
        (stdout, stderr)
    };
    let (_, first) = build();
    assert!(first.contains("---> fresh deps"), "{first}");
    let previous = docker_output(&["image", "inspect", "--format", "{{.Id}}", &out]).trim().to_string();
    let (stdout, stderr) = build();
    let forms = forbidden(&token);
    assert_incremental_with_secret(&out, &token, &stdout, &stderr, &forms);
    for image in [out.as_str(), previous.as_str()] {
        let saved = env.tmpdir().join("saved.tar");
        docker_output(&["save", "-o", saved.to_str().unwrap(), image]);
        assert_archive_clean(&format!("the saved image {image}"), &saved, &forms);
        std::fs::remove_file(&saved).unwrap();
        assert_absent("the image's inspect (config, labels)", docker_output(&["image", "inspect", image]).as_bytes(), &forms);
    }
    docker_output(&["rmi", &previous]);
    env.assert_clean();
}

/// The same on `--engine oci`: the save-artifacts container gets the secret on its stdin, and no
/// blob of the store holds it.
#[test]
fn save_artifacts_reads_the_secret_on_the_oci_engine() {
    let t = Oci::new("oci-secret-inc");
    let builder = archive_of(&fixture("sti-fake"));
    let src = incremental_secret_app(&t.env);
    let token = random_value();
    let tag = t.env.tag("app");
    let archive = t.env.tmpdir().join("out.tar");
    let target = format!("docker-archive:{}", archive.display());
    let build = |extra: &[&str]| {
        let mut cmd = t.env.s2i();
        cmd.args(["build", src, &builder, &tag, "--incremental", "--secret", "id=token,env=S2I_TEST_ENV_SECRET", "--output=json"]).args(extra);
        cmd.args(["--engine", "oci", "--oci-store"]).arg(t.store_dir()).args(["--loglevel", "5"]);
        cmd.env("DOCKER_HOST", "unix:///nonexistent/docker.sock").env("S2I_TEST_ENV_SECRET", &token);
        let run = cmd.output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout).into_owned(), String::from_utf8_lossy(&run.stderr).into_owned());
        t.note_containers(&stderr);
        assert!(run.status.success(), "{stderr}");
        (stdout, stderr)
    };
    let (_, first) = build(&[]);
    assert!(first.contains("---> fresh deps"), "{first}");
    let (stdout, stderr) = build(&["--output-archive", &target]);
    let forms = forbidden(&token);
    assert_archive_clean("the written archive", &archive, &forms);
    assert_tree_clean(&t.store_dir(), &forms);
    let loaded = docker_output(&["load", "-i", archive.to_str().unwrap()]);
    std::fs::remove_file(&archive).unwrap();
    assert!(loaded.contains(&tag), "{loaded}");
    assert_incremental_with_secret(&tag, &token, &stdout, &stderr, &forms);
    t.assert_clean();
}
