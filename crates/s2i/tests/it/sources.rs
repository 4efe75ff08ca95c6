//! Every kind of SOURCE `s2i build` takes, built through the real daemon with the real binary
//! and checked inside the resulting image: git repositories (local work trees, file://, dumb
//! http, refs of every kind, submodules, context dirs), archives (tar, tar.gz, zip; local and
//! http; hostile ones) and the errors a user can meet.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use s2i_testkit::{builder_image, docker_run, git, image_exists, image_inspect, support_dir, write_file, HttpServer, TestEnv};

const COMMIT_ID: &str = "io.openshift.s2i.build.commit.id";
const COMMIT_REF: &str = "io.openshift.s2i.build.commit.ref";
const COMMIT_AUTHOR: &str = "io.openshift.s2i.build.commit.author";
const COMMIT_DATE: &str = "io.openshift.s2i.build.commit.date";
const COMMIT_MESSAGE: &str = "io.openshift.s2i.build.commit.message";
const SOURCE_LOCATION: &str = "io.openshift.s2i.build.source-location";
const CONTEXT_DIR: &str = "io.openshift.s2i.build.source-context-dir";

struct Fixture {
    env: TestEnv,
    builder: String,
}

fn fixture(name: &str) -> Fixture {
    let env = TestEnv::new(name).with_bin(env!("CARGO_BIN_EXE_s2i"));
    let builder = env.alias(&builder_image(&support_dir("builders/sti-fake")));
    Fixture { env, builder }
}

impl Fixture {
    /// `s2i build SOURCE BUILDER TAG ARGS…` with git isolated from the host's configuration.
    fn build(&self, source: &str, tag: Option<&str>, extra: &[&str]) -> Output {
        let mut cmd = self.env.s2i();
        cmd.arg("build").arg(source).arg(&self.builder);
        if let Some(t) = tag {
            cmd.arg(t);
        }
        cmd.args(extra)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            // Local submodules need the file protocol, which git refuses by default.
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "protocol.file.allow")
            .env("GIT_CONFIG_VALUE_0", "always");
        cmd.output().expect("running s2i")
    }

    /// Build and expect success; returns stderr.
    fn build_ok(&self, source: &str, tag: &str, extra: &[&str]) -> String {
        let out = self.build(source, Some(tag), extra);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "s2i build {source} {extra:?} failed:\n{stderr}");
        stderr
    }

    /// Build and expect failure with exit code `code`; returns stderr.
    fn build_err(&self, source: &str, extra: &[&str], code: i32) -> String {
        let tag = self.env.tag("never");
        let out = self.build(source, Some(&tag), extra);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "s2i build {source} {extra:?}:\n{stderr}");
        assert!(!image_exists(&tag), "a failed build must not tag an image");
        stderr
    }
}

fn cat(tag: &str, path: &str) -> String {
    let (code, stdout, stderr) = docker_run(tag, &["cat", path]);
    assert_eq!(code, 0, "cat {path} in {tag}: {stderr}");
    stdout
}

fn exists(tag: &str, path: &str) -> bool {
    docker_run(tag, &["test", "-e", path]).0 == 0
}

fn labels(tag: &str) -> BTreeMap<String, String> {
    let v = image_inspect(tag);
    v["Config"]["Labels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default()
}

/// A repository with two commits on main (tag v1 on the first), a branch `feature`, a long
/// commit subject on main and an app/ subdirectory.
fn make_repo(dir: &Path) -> (String, String, String) {
    write_file(&dir.join("version.txt"), "one\n", 0o644);
    write_file(&dir.join("app/index.html"), "app one\n", 0o644);
    git(dir, &["init", "-q"]);
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "first"]);
    git(dir, &["tag", "v1"]);
    let first = git(dir, &["rev-parse", "HEAD"]);
    git(dir, &["checkout", "-q", "-b", "feature"]);
    write_file(&dir.join("version.txt"), "feature\n", 0o644);
    git(dir, &["commit", "-q", "-am", "on feature"]);
    let feature = git(dir, &["rev-parse", "HEAD"]);
    git(dir, &["checkout", "-q", "main"]);
    write_file(&dir.join("version.txt"), "two\n", 0o644);
    let long = format!("second {}", "x".repeat(100));
    git(dir, &["commit", "-q", "-am", &long]);
    let second = git(dir, &["rev-parse", "HEAD"]);
    (first, feature, second)
}

#[test]
fn git_work_tree_builds_head_with_commit_labels() {
    let f = fixture("sources::git_work_tree_builds_head");
    let repo = f.env.work().join("repo");
    let (_, _, second) = make_repo(&repo);
    let tag = f.env.tag("head");
    let stderr = f.build_ok("repo", &tag, &[]);
    assert!(!stderr.contains("uncommitted"), "a clean tree needs no warning:\n{stderr}");
    assert_eq!(cat(&tag, "version.txt"), "two\n");
    assert!(!exists(&tag, ".git"), "the clone's .git is excluded by default");
    let l = labels(&tag);
    assert_eq!(l[COMMIT_ID], second);
    assert_eq!(l[COMMIT_REF], "main");
    assert_eq!(l[COMMIT_AUTHOR], "s2i test <s2i-test@example.com>");
    assert_eq!(l[COMMIT_DATE], git(&repo, &["log", "-1", "--format=%ad"]));
    assert_eq!(l[COMMIT_MESSAGE], format!("second {}..", "x".repeat(71)));
    assert_eq!(l[COMMIT_MESSAGE].chars().count(), 80);
    assert_eq!(l[SOURCE_LOCATION], repo.to_string_lossy());
    assert!(!l.contains_key(CONTEXT_DIR));
    f.env.assert_clean();
}

#[test]
fn refs_branch_tag_full_and_short_sha_and_fragment() {
    let f = fixture("sources::refs");
    let repo = f.env.work().join("repo");
    let (first, feature, _) = make_repo(&repo);
    let url = format!("file://{}", repo.display());

    let tag = f.env.tag("branch");
    f.build_ok(&url, &tag, &["--ref", "feature"]);
    assert_eq!(cat(&tag, "version.txt"), "feature\n");
    assert_eq!(labels(&tag)[COMMIT_REF], "feature");
    assert_eq!(labels(&tag)[COMMIT_ID], feature);
    assert_eq!(labels(&tag)[SOURCE_LOCATION], url);

    let tag = f.env.tag("tag-fragment");
    f.build_ok(&format!("{url}#v1"), &tag, &[]);
    assert_eq!(cat(&tag, "version.txt"), "one\n");
    assert_eq!(labels(&tag)[COMMIT_REF], "HEAD", "a tag is checked out detached");
    assert_eq!(labels(&tag)[COMMIT_ID], first);

    let tag = f.env.tag("full-sha");
    f.build_ok("repo", &tag, &["-r", &feature]);
    assert_eq!(cat(&tag, "version.txt"), "feature\n");
    assert_eq!(labels(&tag)[COMMIT_ID], feature);

    let tag = f.env.tag("short-sha");
    let stderr = f.build_ok(&format!("repo#{}", &feature[..7]), &tag, &["-r", &first[..8]]);
    assert!(stderr.contains("overrides"), "--ref wins over #fragment, and says so:\n{stderr}");
    assert_eq!(cat(&tag, "version.txt"), "one\n");
    assert_eq!(labels(&tag)[COMMIT_ID], first);

    let err = f.build_err("repo", &["--ref", "no-such-branch"], 1);
    assert!(err.contains(r#"git ref "no-such-branch" not found"#), "{err}");
    f.env.assert_clean();
}

#[test]
fn dirty_work_tree_warns_once_and_copy_builds_it_as_it_is() {
    let f = fixture("sources::dirty_work_tree");
    let repo = f.env.work().join("repo");
    make_repo(&repo);
    write_file(&repo.join("version.txt"), "edited\n", 0o644);
    write_file(&repo.join("untracked.txt"), "new\n", 0o644);
    write_file(&repo.join("ignored.log"), "noise\n", 0o644);
    write_file(&repo.join(".gitignore"), "*.log\n", 0o644);

    let tag = f.env.tag("committed");
    let stderr = f.build_ok("repo", &tag, &[]);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("uncommitted")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("3 uncommitted or untracked files are left out"), "{stderr}");
    assert!(warnings[0].contains("--copy"), "{stderr}");
    assert_eq!(cat(&tag, "version.txt"), "two\n");
    assert!(!exists(&tag, "untracked.txt"));
    assert!(labels(&tag).contains_key(COMMIT_ID));

    let tag = f.env.tag("copied");
    let stderr = f.build_ok("repo", &tag, &["--copy"]);
    assert!(!stderr.contains("uncommitted"), "{stderr}");
    assert_eq!(cat(&tag, "version.txt"), "edited\n");
    assert_eq!(cat(&tag, "untracked.txt"), "new\n");
    assert!(!exists(&tag, ".git"));
    let l = labels(&tag);
    assert!(!l.contains_key(COMMIT_ID), "a copy has no commit labels: {l:?}");
    assert_eq!(l[SOURCE_LOCATION], "repo");

    let err = f.build_err("repo", &["--copy", "--ref", "v1"], 1);
    assert!(err.contains("--copy"), "{err}");
    f.env.assert_clean();
}

#[test]
fn submodules_are_initialised_unless_ignored() {
    let f = fixture("sources::submodules");
    let sub = f.env.work().join("sub");
    write_file(&sub.join("lib.txt"), "from the submodule\n", 0o644);
    git(&sub, &["init", "-q"]);
    git(&sub, &["add", "."]);
    git(&sub, &["commit", "-q", "-m", "lib"]);
    let repo = f.env.work().join("repo");
    write_file(&repo.join("main.txt"), "main\n", 0o644);
    git(&repo, &["init", "-q"]);
    git(&repo, &["submodule", "add", "-q", sub.to_str().unwrap(), "vendor/lib"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "with a submodule"]);

    let tag = f.env.tag("with");
    f.build_ok("repo", &tag, &[]);
    assert_eq!(cat(&tag, "vendor/lib/lib.txt"), "from the submodule\n");
    assert_eq!(cat(&tag, "main.txt"), "main\n");

    let tag = f.env.tag("without");
    f.build_ok("repo", &tag, &["--ignore-submodules"]);
    assert!(!exists(&tag, "vendor/lib/lib.txt"));
    assert_eq!(cat(&tag, "main.txt"), "main\n");
    f.env.assert_clean();
}

#[test]
fn context_dir_of_a_clone_reads_its_s2i_files_and_s2iignore() {
    let f = fixture("sources::clone_context_dir");
    let repo = f.env.work().join("repo");
    write_file(&repo.join("top.txt"), "top\n", 0o644);
    write_file(&repo.join("app/index.html"), "app\n", 0o644);
    write_file(&repo.join("app/notes.md"), "ignored\n", 0o644);
    write_file(&repo.join("app/.s2iignore"), "*.md\n", 0o644);
    write_file(&repo.join("app/.s2i/environment"), "FROM_SOURCE=yes\n", 0o644);
    write_file(
        &repo.join("app/.s2i/bin/assemble"),
        "#!/bin/sh\necho source-assemble > /tmp/marker\nexec /usr/libexec/s2i/assemble\n",
        0o755,
    );
    // A committed link to a host path stays a link: a clone never pulls host files in.
    std::os::unix::fs::symlink("/etc/hostname", repo.join("app/host-link")).unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "app"]);

    let tag = f.env.tag("ctx");
    f.build_ok("repo", &tag, &["--context-dir", "app"]);
    assert_eq!(cat(&tag, "index.html"), "app\n");
    assert!(!exists(&tag, "top.txt"));
    assert!(!exists(&tag, "notes.md"), ".s2iignore applies to clones");
    assert!(cat(&tag, ".sti-fake-assemble-env").contains("FROM_SOURCE=yes"));
    assert_eq!(cat(&tag, "/tmp/marker"), "source-assemble\n", "the clone's .s2i/bin/assemble ran");
    let (code, link, _) = docker_run(&tag, &["readlink", "host-link"]);
    assert_eq!((code, link.trim()), (0, "/etc/hostname"));
    assert_eq!(labels(&tag)[CONTEXT_DIR], "app");

    let err = f.build_err("repo", &["--context-dir", "missing"], 1);
    assert!(err.contains(r#"context directory "missing" does not exist"#), "{err}");
    f.env.assert_clean();
}

#[test]
fn clone_links_leaving_the_repository_are_refused() {
    let f = fixture("sources::clone_links_out");
    let repo = f.env.work().join("repo");
    write_file(&repo.join("index.html"), "hi\n", 0o644);
    std::os::unix::fs::symlink("/etc", repo.join("etc-dir")).unwrap();
    fs::create_dir(repo.join(".s2i")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", repo.join(".s2i/environment")).unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "links out"]);

    let err = f.build_err("repo", &["--context-dir", "etc-dir"], 1);
    assert!(err.contains("etc-dir in repo is a symlink to /etc, outside the repository"), "{err}");
    let err = f.build_err("repo", &[], 1);
    assert!(err.contains(".s2i/environment in repo is a symlink to /etc/passwd"), "{err}");
    f.env.assert_clean();
}

/// A bare repository served over "dumb" http (shallow clones are refused there, so this also
/// covers the fallback to a full clone).
#[test]
fn git_over_dumb_http() {
    let f = fixture("sources::git_over_http");
    let repo = f.env.work().join("repo");
    let (first, _, _) = make_repo(&repo);
    let served = f.env.work().join("served");
    fs::create_dir(&served).unwrap();
    git(&f.env.work(), &["clone", "-q", "--bare", repo.to_str().unwrap(), served.join("repo.git").to_str().unwrap()]);
    git(&served.join("repo.git"), &["update-server-info"]);
    let server = HttpServer::serve_dir(&served);
    let url = format!("{}/repo.git", server.url());

    let tag = f.env.tag("http");
    f.build_ok(&format!("{url}#v1"), &tag, &[]);
    assert_eq!(cat(&tag, "version.txt"), "one\n");
    let l = labels(&tag);
    assert_eq!(l[COMMIT_ID], first);
    assert_eq!(l[SOURCE_LOCATION], url);

    let err = f.build_err(&format!("{}/nothing.git", server.url()), &[], 1);
    assert!(err.contains("cannot reach"), "{err}");
    f.env.assert_clean();
}

#[test]
fn git_errors_are_clear_and_fast() {
    let f = fixture("sources::git_errors");
    let empty = f.env.work().join("empty");
    fs::create_dir(&empty).unwrap();
    git(&empty, &["init", "-q"]);
    let err = f.build_err("empty", &[], 16);
    assert!(err.contains(r#"The git repository "empty" has no tracking information or commits"#), "{err}");
    assert!(err.contains("hint:") && err.contains("--copy"), "{err}");

    let started = Instant::now();
    let err = f.build_err("ssh://127.0.0.1:1/x", &[], 1);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(err.contains("cannot reach ssh://127.0.0.1:1/x"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{err}");

    let port = answer_401_forever();
    let err = f.build_err(&format!("http://127.0.0.1:{port}/private.git"), &[], 1);
    assert!(err.contains("requires authentication, and s2i never prompts"), "{err}");
    assert!(err.contains("hint: load an ssh key"), "{err}");

    let err = f.build_err("file://host/x", &[], 1);
    assert!(err.contains(r#"has non-empty host "host""#), "{err}");

    let plain = f.env.work().join("plain");
    write_file(&plain.join("a.txt"), "a\n", 0o644);
    let err = f.build_err("plain", &["--ref", "main"], 1);
    assert!(err.contains("needs a git source"), "{err}");
    f.env.assert_clean();
}

#[test]
fn without_git_a_remote_is_an_error_and_a_work_tree_is_copied_with_a_warning() {
    let f = fixture("sources::no_git");
    let repo = f.env.work().join("repo");
    make_repo(&repo);
    let no_git_path = f.env.work().join("empty-path");
    fs::create_dir(&no_git_path).unwrap();
    let run = |source: &str, tag: &str| {
        let out = f.env.s2i().args(["build", source, &f.builder, tag]).env("PATH", &no_git_path).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run("https://example.invalid/x.git", &f.env.tag("never"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("git is not installed"), "{err}");
    assert!(err.contains("hint: install git"), "{err}");

    let tag = f.env.tag("copied");
    let (code, err) = run("repo", &tag);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("git is not installed: building repo as it is"), "{err}");
    assert_eq!(cat(&tag, "version.txt"), "two\n");
    assert!(!labels(&tag).contains_key(COMMIT_ID));
    f.env.assert_clean();
}

/// A server on 127.0.0.1 that asks every request for credentials; returns its port.
fn answer_401_forever() -> u16 {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(20) {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = conn.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    port
}

// ---- archives -------------------------------------------------------------------------------

/// Entries of a test archive: (name, content) files, and (name, target) links.
enum E<'a> {
    File(&'a str, &'a str, u32),
    Link(&'a str, &'a str),
}

/// A tar written header by header, so that hostile names get through.
fn tar_bytes(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let (name, data, kind, mode, target) = match e {
            E::File(n, d, m) => (*n, d.as_bytes(), tar::EntryType::Regular, *m, None),
            E::Link(n, t) => (*n, &b""[..], tar::EntryType::Symlink, 0o777, Some(*t)),
        };
        h.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(t) = target {
            h.as_ustar_mut().unwrap().linkname[..t.len()].copy_from_slice(t.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn zip_bytes(entries: &[E]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for e in entries {
        match e {
            E::File(n, d, m) => {
                let opts = zip::write::SimpleFileOptions::default().unix_permissions(*m);
                w.start_file(*n, opts).unwrap();
                w.write_all(d.as_bytes()).unwrap();
            }
            E::Link(n, t) => w.add_symlink(*n, *t, zip::write::SimpleFileOptions::default()).unwrap(),
        }
    }
    w.finish().unwrap().into_inner()
}

fn app_entries() -> Vec<E<'static>> {
    vec![
        E::File("other/readme.txt", "outside the context\n", 0o644),
        E::File("app/index.html", "from the archive\n", 0o644),
        E::File("app/bin/tool.sh", "#!/bin/sh\necho tool\n", 0o755),
        E::Link("app/link.html", "index.html"),
        E::File("app/notes.md", "ignored\n", 0o644),
        E::File("app/.s2iignore", "*.md\n", 0o644),
        E::File("app/.s2i/environment", "ARCHIVE_ENV=1\n", 0o644),
        E::File("app/.s2i/bin/assemble", "#!/bin/sh\necho archive-assemble > /tmp/marker\nexec /usr/libexec/s2i/assemble\n", 0o755),
    ]
}

fn check_app_image(tag: &str) {
    assert_eq!(cat(tag, "index.html"), "from the archive\n");
    let (code, out, _) = docker_run(tag, &["sh", "-c", "./bin/tool.sh && readlink link.html && stat -c %a bin/tool.sh"]);
    assert_eq!((code, out.as_str()), (0, "tool\nindex.html\n755\n"));
    assert!(!exists(tag, "notes.md"), ".s2iignore inside the archive applies");
    assert!(!exists(tag, "readme.txt") && !exists(tag, "other"));
    assert!(cat(tag, ".sti-fake-assemble-env").contains("ARCHIVE_ENV=1"));
    assert_eq!(cat(tag, "/tmp/marker"), "archive-assemble\n", "the archive's .s2i/bin/assemble ran");
    assert!(!exists(tag, "/tmp/src/.s2i/bin/assemble"), "scripts are moved out of src/");
    let l = labels(tag);
    assert!(!l.contains_key(COMMIT_ID));
    assert_eq!(l[CONTEXT_DIR], "app");
}

#[test]
fn tar_tgz_and_zip_archives_local_and_over_http() {
    let f = fixture("sources::archives");
    let work = f.env.work();
    let entries = app_entries();
    fs::write(work.join("app.tar"), tar_bytes(&entries)).unwrap();
    fs::write(work.join("app.tgz"), gzip(&tar_bytes(&entries))).unwrap();
    fs::write(work.join("app.zip"), zip_bytes(&entries)).unwrap();
    let served = work.join("served");
    fs::create_dir(&served).unwrap();
    fs::write(served.join("app.tar.gz"), gzip(&tar_bytes(&entries))).unwrap();
    let server = HttpServer::serve_dir(&served);

    for (i, source) in ["app.tar".to_string(), "app.tgz".into(), "app.zip".into(), format!("{}/app.tar.gz", server.url())]
        .iter()
        .enumerate()
    {
        let tag = f.env.tag(&format!("archive-{i}"));
        f.build_ok(source, &tag, &["--context-dir", "app"]);
        check_app_image(&tag);
        assert_eq!(labels(&tag)[SOURCE_LOCATION], *source);
    }

    // The whole archive, without a context dir.
    let tag = f.env.tag("whole");
    f.build_ok("app.tar", &tag, &[]);
    assert_eq!(cat(&tag, "other/readme.txt"), "outside the context\n");
    assert_eq!(cat(&tag, "app/index.html"), "from the archive\n");

    // A file named otherwise is recognised by its content; a file that is no archive is refused.
    fs::copy(work.join("app.tgz"), work.join("app.bundle")).unwrap();
    let tag = f.env.tag("sniffed");
    f.build_ok("app.bundle", &tag, &["--context-dir", "app"]);
    assert_eq!(cat(&tag, "index.html"), "from the archive\n");
    fs::write(work.join("notes.txt"), "just text\n").unwrap();
    let err = f.build_err("notes.txt", &[], 1);
    assert!(err.contains("is neither a directory nor a .tar, .tar.gz, .tgz or .zip archive"), "{err}");

    let err = f.build_err("app.tar", &["--context-dir", "nope"], 1);
    assert!(err.contains(r#"context directory "nope" does not exist"#), "{err}");
    let err = f.build_err("app.tar", &["--ref", "v1"], 1);
    assert!(err.contains("needs a git source"), "{err}");
    let err = f.build_err(&format!("{}/missing.tar", server.url()), &[], 1);
    assert!(err.contains("cannot reach") && err.contains("404"), "{err}");
    f.env.assert_clean();
}

#[test]
fn hostile_archives_are_refused_naming_the_entry() {
    let f = fixture("sources::hostile_archives");
    let work = f.env.work();
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("dotdot.tar", tar_bytes(&[E::File("ok.txt", "ok", 0o644), E::File("../evil", "x", 0o644)]), "../evil", "climbs out"),
        ("abs.tar", tar_bytes(&[E::File("/abs/evil", "x", 0o644)]), "/abs/evil", "absolute"),
        ("etc.tgz", gzip(&tar_bytes(&[E::Link("etc", "/etc"), E::File("etc/passwd", "x", 0o644)])), "etc", "absolute path \"/etc\""),
        (
            "through.tar",
            tar_bytes(&[E::Link("up", "sub"), E::File("up/passwd", "x", 0o644)]),
            "up/passwd",
            "goes through the symlink \"up\"",
        ),
        ("climb-link.zip", zip_bytes(&[E::Link("a/b", "../../outside")]), "a/b", "out of the tree"),
        ("dotdot.zip", zip_bytes(&[E::File("../evil.txt", "x", 0o644)]), "../evil.txt", "climbs out"),
    ];
    for (file, bytes, entry, reason) in cases {
        fs::write(work.join(file), bytes).unwrap();
        let err = f.build_err(file, &[], 1);
        let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{file}: {err}"));
        assert!(line.contains(&format!("refusing entry {entry:?}")), "{file}: {err}");
        assert!(line.contains(reason), "{file}: {err}");
    }
    f.env.assert_clean();
}

#[test]
fn keep_symlinks_and_exclude_on_a_local_directory() {
    let f = fixture("sources::local_shaping");
    let app = f.env.work().join("app");
    write_file(&app.join("real.txt"), "real\n", 0o644);
    write_file(&app.join("skip/me.txt"), "x\n", 0o644);
    std::os::unix::fs::symlink("real.txt", app.join("link.txt")).unwrap();

    let tag = f.env.tag("followed");
    f.build_ok("app", &tag, &["--exclude", "(^|/)skip(/|$)"]);
    assert_eq!(docker_run(&tag, &["readlink", "link.txt"]).0, 1, "followed: a plain file");
    assert_eq!(cat(&tag, "link.txt"), "real\n");
    assert!(!exists(&tag, "skip"));

    let tag = f.env.tag("kept");
    f.build_ok("app", &tag, &["--keep-symlinks"]);
    assert_eq!(docker_run(&tag, &["readlink", "link.txt"]).1, "real.txt\n");
    assert_eq!(cat(&tag, "skip/me.txt"), "x\n");
    f.env.assert_clean();
}
