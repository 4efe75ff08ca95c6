//! The daemonless engine driven through the `Engine` trait against real parts: runc, the kernel's
//! overlay, fuse-overlayfs, cgroups, and Docker (only to make the base archive and to load and run
//! what the engine committed). Needs root; fails loudly when runc or fuse-overlayfs is missing.

mod support;

use std::collections::HashMap;
use std::path::Path;

use s2i_engine::{ArchiveFormat, CommitSpec, ContainerSpec, Engine, EngineError};
use s2i_oci::run::rootfs::RootfsDriver;
use support::*;
use tokio::io::AsyncReadExt;

/// What the standard strategy does: the source as a tar on stdin, an assemble script that
/// prints to both streams, deletes a file of the image and exits with its own code, then a
/// commit with the run command, labels and env; Docker loads and runs the result.
async fn assemble_commit_and_load(driver: RootfsDriver) {
    let t = TestEngine::new(Some(driver)).await;
    let env = s2i_testkit::TestEnv::new(&format!("oci-assemble-{driver}"));
    let source = tar_files(&[("src/hello.txt", "hello from the source\n", 0o644), ("src/run", "#!/bin/sh\ncat /opt/app/hello.txt\n", 0o755)]);
    let script = "mkdir -p /tmp && tar -C /tmp -xf - && echo to-stdout && echo to-stderr >&2 \
        && mkdir -p /opt/app && cp /tmp/src/hello.txt /tmp/src/run /opt/app/ && rm /etc/group \
        && chown -R 1001:0 /opt/app && exit 0";
    let (code, out, err, id) = run(&t, &sh(script), Some(source)).await;
    assert_eq!((code, out.as_str(), err.as_str()), (0, "to-stdout\n", "to-stderr\n"));

    let tag = env.tag("out");
    let labels: HashMap<String, String> = [("io.k8s.display-name".to_string(), "hello".to_string())].into();
    let (repo, version) = tag.rsplit_once(':').unwrap();
    let spec = CommitSpec {
        repo: Some(repo.to_string()),
        tag: Some(version.to_string()),
        cmd: vec!["/opt/app/run".into()],
        entrypoint: vec![],
        user: "1001".into(),
        env: vec!["GREETING=hi there".into()],
        labels,
    };
    let image_id = t.engine.commit_container(&id, &spec).await.unwrap();
    assert!(image_id.starts_with("sha256:") && image_id.len() == 71, "{image_id}");
    let info = t.engine.inspect_image(&tag).await.unwrap().expect("the committed image is in the store");
    assert_eq!(info.id, image_id);
    assert_eq!(info.cmd, Some(vec!["/opt/app/run".to_string()]));
    assert_eq!(info.user, "1001");
    assert!(info.env.contains(&"GREETING=hi there".to_string()), "{:?}", info.env);
    t.engine.remove_container(&id).await.unwrap();

    // Saved as Docker writes it, loaded by Docker, run by Docker.
    let archive = t.dir.path().join("out.tar");
    let file = tokio::fs::File::create(&archive).await.unwrap();
    t.engine.save_image(&tag, ArchiveFormat::DockerArchive, Box::new(file)).await.unwrap();
    let loaded = docker_load(&archive);
    assert_eq!(loaded, tag);
    let (code, stdout, stderr) = s2i_testkit::docker_run(&tag, &[]);
    assert_eq!((code, stdout.as_str()), (0, "hello from the source\n"), "{stderr}");
    let (code, stdout, _) = s2i_testkit::docker_run(&tag, &["sh", "-c", "id -u; ls /etc/group 2>&1; echo $GREETING; ls -d /proc /tmp/src"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("1001\n"), "{stdout}");
    assert!(stdout.contains("No such file"), "the deleted /etc/group came back: {stdout}");
    assert!(stdout.contains("hi there\n"), "{stdout}");
    let config = s2i_testkit::image_config(&tag);
    assert_eq!(config["Labels"]["io.k8s.display-name"], "hello");
    t.finish().await;
    env.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn assemble_commit_and_load_on_kernel_overlay() {
    assemble_commit_and_load(RootfsDriver::Overlay).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn assemble_commit_and_load_on_fuse_overlayfs() {
    assemble_commit_and_load(RootfsDriver::FuseOverlayfs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn assemble_commit_and_load_on_a_copy() {
    assemble_commit_and_load(RootfsDriver::Copy).await;
}

/// Users (by name, uid, uid:gid) resolved in the image's /etc/passwd, capabilities as Docker
/// gives them minus --cap-drop, env, working dir, rlimits.
#[tokio::test(flavor = "multi_thread")]
async fn users_caps_env_and_workdir() {
    let t = TestEngine::new(None).await;
    let probe = "id -u; id -g; grep CapEff /proc/self/status; grep CapBnd /proc/self/status; pwd; echo $HOME; echo $FOO; ulimit -n";
    let mut spec = sh(probe);
    spec.user = Some("default".into());
    spec.env = vec!["FOO=bar baz".into()];
    let (code, out, err, _) = run(&t, &spec, None).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let hard_nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum.unwrap().to_string();
    // Docker: a non-root user starts with no effective capabilities, the default bounding set.
    assert_eq!(
        lines,
        ["1001", "0", "CapEff:\t0000000000000000", "CapBnd:\t00000000a80425fb", "/", "/home/default", "bar baz", hard_nofile.as_str()],
        "{out}"
    );

    let mut spec = sh(probe);
    spec.user = Some("0:65534".into());
    spec.cap_drop = vec!["NET_RAW".into(), "cap_chown".into()];
    spec.working_dir = Some("/tmp/new/dir".into());
    let (code, out, _, _) = run(&t, &spec, None).await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    // a80425fb minus CAP_NET_RAW (bit 13) and CAP_CHOWN (bit 0).
    let caps = format!("{:016x}", 0xa80425fbu64 & !(1 << 13) & !1);
    assert_eq!(lines[..5], ["0", "65534", format!("CapEff:\t{caps}").as_str(), format!("CapBnd:\t{caps}").as_str(), "/tmp/new/dir"]);

    let mut spec = sh("true");
    spec.user = Some("nosuchuser".into());
    let id = t.create(&spec).await;
    let mut sink = |_: s2i_engine::OutputStream, _: &[u8]| {};
    let err = t.engine.run_container(&id, None, &mut sink).await.unwrap_err();
    assert!(err.to_string().contains("unable to find user nosuchuser"), "{err}");

    let mut spec = sh("true");
    spec.cap_drop = vec!["CAP_WIZARDRY".into()];
    let err = t.engine.create_container(&spec).await.unwrap_err();
    assert!(err.to_string().contains("CAP_WIZARDRY"), "{err}");
    t.finish().await;
}

/// Every container gets Docker's default seccomp profile, whoever it runs as: no user namespace,
/// and so no mount even inside one. `seccomp=unconfined` lifts the filter (which shows this test
/// can fail), a profile file replaces it, and no-new-privileges sets the process's flag.
#[tokio::test(flavor = "multi_thread")]
async fn seccomp_filters_every_container_unless_told_otherwise() {
    use s2i_engine::{SeccompProfile, SecurityOptions};
    let t = TestEngine::new(None).await;
    let probe = "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status | tr '\\t\\n' ' '; \
        if unshare -U true 2>/dev/null; then echo -n 'userns=ok '; else echo -n 'userns=denied '; fi; \
        if unshare -Urm mount -t tmpfs none /tmp 2>/dev/null; then echo -n 'mount=ok '; else echo -n 'mount=denied '; fi; \
        if renice -n 1 -p $$ >/dev/null 2>&1; then echo 'renice=ok'; else echo 'renice=denied'; fi";
    let probe_as = |user: &str, security: SecurityOptions| {
        let mut spec = sh(probe);
        spec.user = Some(user.into());
        spec.security = security;
        spec
    };
    for user in ["1001", "0"] {
        let (code, out, err, _) = run(&t, &probe_as(user, SecurityOptions::default()), None).await;
        assert_eq!((code, out.as_str()), (0, "NoNewPrivs: 0 Seccomp: 2 userns=denied mount=denied renice=ok\n"), "as {user}: {err}");
    }
    let unconfined = SecurityOptions { seccomp: SeccompProfile::Unconfined, no_new_privileges: false };
    let (code, out, err, _) = run(&t, &probe_as("1001", unconfined), None).await;
    assert_eq!((code, out.as_str()), (0, "NoNewPrivs: 0 Seccomp: 0 userns=ok mount=ok renice=ok\n"), "{err}");

    // A profile of one's own: everything but setpriority(2) (renice), and no setuid gains.
    let json = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["setpriority"], "action": "SCMP_ACT_ERRNO"}]}"#;
    let own = SecurityOptions { seccomp: SeccompProfile::File { path: "/own.json".into(), json: json.into() }, no_new_privileges: true };
    let (code, out, err, _) = run(&t, &probe_as("1001", own), None).await;
    assert_eq!((code, out.as_str()), (0, "NoNewPrivs: 1 Seccomp: 2 userns=ok mount=ok renice=denied\n"), "{err}");

    // A broken one is refused before anything is made.
    let bad = SecurityOptions { seccomp: SeccompProfile::File { path: "/bad.json".into(), json: "{".into() }, no_new_privileges: false };
    let err = t.engine.create_container(&probe_as("1001", bad)).await.unwrap_err().to_string();
    assert!(err.contains("the seccomp profile /bad.json cannot be used"), "{err}");
    t.finish().await;
}

/// Docker's masked and read-only paths, as the container's root sees them: those of the kernel's
/// memory image, keyrings, interrupt counts, timers and firmware tables that the host has (and
/// that are not empty there) read empty, and /proc/sys refuses writes (the probe writes back the
/// value it read, so that a failure of this test changes nothing).
#[tokio::test(flavor = "multi_thread")]
async fn masked_and_read_only_paths() {
    let t = TestEngine::new(None).await;
    let files: Vec<&str> = ["/proc/kcore", "/proc/keys", "/proc/interrupts", "/proc/timer_list", "/proc/sched_debug"]
        .into_iter()
        .filter(|f| std::fs::read(f).is_ok_and(|c| !c.is_empty()))
        .collect();
    assert!(files.len() >= 2, "the host shows too few of the masked files to test: {files:?}");
    assert!(std::fs::read_dir("/sys/firmware").is_ok_and(|mut d| d.next().is_some()), "the host's /sys/firmware is empty");
    let probe = format!(
        "for f in {}; do echo \"$f $(wc -c < $f)\"; done; echo \"/sys/firmware $(ls -A /sys/firmware | wc -l)\"; \
         v=$(cat /proc/sys/kernel/printk_ratelimit); \
         if echo \"$v\" 2>/dev/null > /proc/sys/kernel/printk_ratelimit; then echo proc-sys=written; else echo proc-sys=read-only; fi",
        files.join(" ")
    );
    let mut spec = sh(&probe);
    spec.user = Some("0".into());
    let (code, out, err, _) = run(&t, &spec, None).await;
    assert_eq!(code, 0, "{err}");
    let expected: String = files.iter().map(|f| format!("{f} 0\n")).collect::<String>() + "/sys/firmware 0\nproc-sys=read-only\n";
    assert_eq!(out, expected, "{err}");
    t.finish().await;
}

/// --network none has only lo, up; host sees the host's interfaces; --add-host and binds.
#[tokio::test(flavor = "multi_thread")]
async fn networks_hosts_and_binds() {
    let t = TestEngine::new(None).await;
    let mut spec = sh("ls /sys/class/net; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags; grep db /etc/hosts; \
        nc -l -p 8123 -e echo served & sleep 0.3; nc 127.0.0.1 8123 </dev/null");
    spec.network_mode = Some("none".into());
    spec.extra_hosts = vec!["db:10.1.2.3".into()];
    let (code, out, err, _) = run(&t, &spec, None).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lo", "{out}");
    let flags = u32::from_str_radix(lines[2].trim_start_matches("0x"), 16).unwrap();
    assert!(flags & 1 == 1, "lo is not up: {out}");
    assert!(out.contains("10.1.2.3\tdb\n") && out.contains("served\n"), "{out}");

    let mut host_ifaces: Vec<String> = std::fs::read_dir("/sys/class/net").unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    host_ifaces.sort();
    let mut spec = sh("ls /sys/class/net");
    spec.network_mode = Some("host".into());
    let (_, out, _, _) = run(&t, &spec, None).await;
    let mut seen: Vec<&str> = out.split_whitespace().collect();
    seen.sort();
    assert_eq!(seen, host_ifaces);

    let data = t.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "from the host\n").unwrap();
    let out_dir = t.dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let mut spec = sh("cat /data/in.txt; echo x > /data/no 2>/dev/null || echo read-only; echo written > /out/made");
    spec.binds = vec![format!("{}:/data:ro", data.display()), format!("{}:/out", out_dir.display())];
    let (code, out, _, id) = run(&t, &spec, None).await;
    assert_eq!((code, out.as_str()), (0, "from the host\nread-only\n"));
    assert_eq!(std::fs::read_to_string(out_dir.join("made")).unwrap(), "written\n");
    assert!(!data.join("no").exists());
    // The bind targets and the runtime's mount points are not part of a commit.
    let image = t.engine.commit_container(&id, &CommitSpec::default()).await.unwrap();
    let archive = t.dir.path().join("img.tar");
    let file = tokio::fs::File::create(&archive).await.unwrap();
    t.engine.save_image(&image, ArchiveFormat::OciArchive, Box::new(file)).await.unwrap();
    let names = layer_names_of_last_layer(&archive);
    for gone in ["data", "out", "etc/hosts", "etc/resolv.conf", "etc/hostname", "proc", "dev", "sys"] {
        assert!(!names.iter().any(|n| n.trim_end_matches('/') == gone || n.starts_with(&format!("{gone}/"))), "{gone} is in the layer: {names:?}");
    }

    for bad in [("container:x", "network"), ("bridge2", "network")] {
        let mut spec = sh("true");
        spec.network_mode = Some(bad.0.into());
        let err = t.engine.create_container(&spec).await.unwrap_err();
        assert!(err.to_string().contains(bad.1), "{err}");
    }
    t.finish().await;
}

/// The entry names of the top layer of the single image in an OCI archive.
fn layer_names_of_last_layer(archive: &Path) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(dir.path()).status().unwrap();
    assert!(status.success());
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| dir.path().join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap()).unwrap();
    let top = manifest["layers"].as_array().unwrap().last().unwrap()["digest"].as_str().unwrap().to_string();
    let out = std::process::Command::new("tar").arg("-tzf").arg(blob(&top)).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim_start_matches("./").to_string()).collect()
}

/// save-artifacts: stdout streamed as it is read, memory bounded, stderr relayed, exit code kept.
#[tokio::test(flavor = "multi_thread")]
async fn run_with_stdout_streams_with_bounded_memory() {
    let t = TestEngine::new(None).await;
    const SIZE: u64 = 256 << 20;
    let id = t.create(&sh(&format!("echo starting >&2; head -c {SIZE} /dev/zero; exit 7"))).await;
    let cap = Captured::default();
    let before = peak_rss_kib();
    let mut running = t.engine.run_with_stdout(&id, None, Box::new(cap.sink())).await.unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = running.stdout.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let code = running.exit.await.unwrap();
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert_eq!((total, code, cap.stderr().as_str()), (SIZE, 7, "starting\n"));
    assert!(grown_mib < 32, "reading {} MiB grew the peak memory by {grown_mib} MiB", SIZE >> 20);
    eprintln!("run_with_stdout: {} MiB streamed, peak memory grew {grown_mib} MiB", SIZE >> 20);
    t.finish().await;
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// upload_archive and download_archive resolve inside the container's root: a hostile archive
/// reaches no host path, `..` is refused, a missing destination is an error, a missing source None.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_upload_stays_inside_and_download_reads_back() {
    let t = TestEngine::new(None).await;
    let id = t.create(&sh("cat /tmp/up/esc/canary /tmp/up/f")).await;
    let host_dir = t.dir.path().join("host");
    std::fs::create_dir(&host_dir).unwrap();
    let canary = host_dir.join("canary");

    // A symlink to an absolute host path, then a file through it.
    let hdr = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h
    };
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut hdr(tar::EntryType::Directory, 0o755, 0), "up/", std::io::empty()).unwrap();
    b.append_link(&mut hdr(tar::EntryType::Symlink, 0o777, 0), "up/esc", &host_dir).unwrap();
    for (name, data) in [("up/esc/canary", "inside\n"), ("up/f", "file\n")] {
        b.append_data(&mut hdr(tar::EntryType::Regular, 0o644, data.len() as u64), name, data.as_bytes()).unwrap();
    }
    let tar_bytes = b.into_inner().unwrap();
    // The symlink's target does not exist in the container: whether the unpacker refuses it or
    // makes the target inside the container, nothing reaches the host.
    let dangling = t.engine.upload_archive(&id, "/tmp", Box::new(std::io::Cursor::new(tar_bytes.clone()))).await;
    assert!(!canary.exists(), "the upload wrote through a symlink onto the host ({dangling:?})");
    // Once the same path exists inside the container, the file lands there, not on the host.
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut hdr(tar::EntryType::Directory, 0o755, 0), host_dir.strip_prefix("/").unwrap(), std::io::empty()).unwrap();
    t.engine.upload_archive(&id, "/", Box::new(std::io::Cursor::new(b.into_inner().unwrap()))).await.unwrap();
    t.engine.upload_archive(&id, "/tmp", Box::new(std::io::Cursor::new(tar_bytes))).await.unwrap();
    assert!(!canary.exists(), "the upload wrote through a symlink onto the host");

    // `..` climbing out of the destination is refused.
    let mut raw = hdr(tar::EntryType::Regular, 0o644, 1);
    raw.as_gnu_mut().unwrap().name[..14].copy_from_slice(b"../../../canar");
    raw.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&raw, &b"x"[..]).unwrap();
    let err = t.engine.upload_archive(&id, "/tmp", Box::new(std::io::Cursor::new(b.into_inner().unwrap()))).await.unwrap_err();
    assert!(err.to_string().contains(".."), "{err}");
    let err = t.engine.upload_archive(&id, "/no/such/dir", Box::new(std::io::Cursor::new(tar_files(&[("a", "b", 0o644)])))).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    let mut sink = |_: s2i_engine::OutputStream, _: &[u8]| {};
    let cap = Captured::default();
    let mut s2 = cap.sink();
    assert_eq!(t.engine.run_container(&id, None, &mut s2).await.unwrap(), 0);
    let _ = &mut sink;
    assert_eq!(cap.stdout(), "inside\nfile\n");

    // Read back: the directory's name first, the symlink kept as a symlink.
    let stream = t.engine.download_archive(&id, "/tmp/up").await.unwrap().expect("it exists");
    let bytes: Vec<u8> = futures_util::TryStreamExt::try_concat(futures_util::TryStreamExt::map_ok(stream, |b| b.to_vec())).await.unwrap();
    let mut ar = tar::Archive::new(&bytes[..]);
    let names: Vec<String> = ar.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    assert_eq!(names, ["up", "up/esc", "up/f"]);
    assert!(t.engine.download_archive(&id, "/tmp/nothing/here").await.unwrap().is_none());
    t.engine.remove_container(&id).await.unwrap();
    assert!(!canary.exists());
    t.finish().await;
}

/// Failures leave nothing: a missing image, a command that does not exist (an error, as Docker's
/// start), containers created and never run (remove_leftovers), a removed one removed twice; and
/// the engine works on after remove_leftovers.
#[tokio::test(flavor = "multi_thread")]
async fn failures_and_leftovers_leave_nothing() {
    let t = TestEngine::new(None).await;
    let mut spec = sh("true");
    spec.image = "docker-archive:/no/such/archive.tar".into();
    assert!(t.engine.create_container(&spec).await.is_err());
    spec.image = "never-imported:latest".into();
    assert!(matches!(t.engine.create_container(&spec).await, Err(EngineError::ImageNotFound(_))));

    let spec = ContainerSpec { image: busybox_ref(), cmd: vec!["/bin/no-such-shell".into()], ..Default::default() };
    let id = t.create(&spec).await;
    let mut sink = |_: s2i_engine::OutputStream, _: &[u8]| {};
    let err = t.engine.run_container(&id, None, &mut sink).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/bin/no-such-shell") && text.contains("no such file"), "{text}");
    t.engine.remove_container(&id).await.unwrap();
    t.engine.remove_container(&id).await.unwrap();

    // Created, never started; and one whose run was dropped halfway (Ctrl-C in the caller).
    t.create(&sh("true")).await;
    let id = t.create(&sh("echo started; sleep 600")).await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut tx = Some(tx);
    let mut sink = move |_: s2i_engine::OutputStream, _: &[u8]| {
        if let Some(tx) = tx.take() {
            let _ = tx.send(());
        }
    };
    tokio::select! {
        _ = t.engine.run_container(&id, None, &mut sink) => panic!("the sleep ended"),
        _ = rx => {}
    }
    // The CLI removes leftovers after each piece of work; the engine still serves the next one
    // (`s2i build --run` starts the built image afterwards).
    t.engine.remove_leftovers().await;
    assert!(std::fs::read_dir(t.engine.containers_dir()).unwrap().next().is_none(), "the sweep removed them all");
    let (code, out, _, _) = run(&t, &sh("echo again"), None).await;
    assert_eq!((code, out.as_str()), (0, "again\n"));
    t.finish().await;
}

/// The memory limit protects the host, and going over it is an error that names the limit.
#[tokio::test(flavor = "multi_thread")]
async fn memory_limit_is_enforced_and_named() {
    let t = TestEngine::with(|o| o.memory_limit = Some(64 << 20)).await;
    let spec = sh("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived");
    let id = t.create(&spec).await;
    let cap = Captured::default();
    let mut sink = cap.sink();
    let err = t.engine.run_container(&id, None, &mut sink).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("64 MiB") && text.contains("S2I_OCI_MEMORY_LIMIT"), "{text}");
    assert!(!cap.stdout().contains("survived"));
    t.finish().await;
}

/// The child side of [`interrupted_and_killed_builds_leave_nothing`]: an engine that builds with
/// no Docker reachable (`DOCKER_HOST` points nowhere), starts a long "assemble", prints
/// `started`, and on SIGINT does what the CLI does (drop the work, remove_leftovers).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by interrupted_and_killed_builds_leave_nothing"]
async fn child_process_build() {
    // Only as that test's child (not in a run with --include-ignored).
    let Ok(store) = std::env::var("S2I_OCI_TEST_CHILD_STORE") else { return };
    assert_eq!(std::env::var("DOCKER_HOST").as_deref(), Ok("unix:///nonexistent/docker.sock"));
    let engine = s2i_oci::OciEngine::open(s2i_oci::OciEngineOptions::new(&store)).await.unwrap();
    let archive = std::env::var("S2I_OCI_TEST_CHILD_ARCHIVE").unwrap();
    // A whole build first: the source in, assemble, commit, an archive out; no Docker anywhere.
    let mut spec = ContainerSpec {
        image: format!("docker-archive:{archive}"),
        cmd: vec!["/bin/sh".into(), "-c".into(), "tar -C /tmp -xf - && cat /tmp/src/x".into()],
        open_stdin: true,
        ..Default::default()
    };
    let id = engine.create_container(&spec).await.unwrap();
    let mut out = Vec::new();
    let mut sink = |_: s2i_engine::OutputStream, d: &[u8]| out.extend_from_slice(d);
    let input = Box::new(std::io::Cursor::new(tar_files(&[("src/x", "built\n", 0o644)])));
    assert_eq!(engine.run_container(&id, Some(input), &mut sink).await.unwrap(), 0);
    assert_eq!(out, b"built\n");
    let image = engine.commit_container(&id, &CommitSpec { cmd: vec!["cat".into(), "/tmp/src/x".into()], ..Default::default() }).await.unwrap();
    engine.remove_container(&id).await.unwrap();
    let file = tokio::fs::File::create(format!("{store}.out.tar")).await.unwrap();
    engine.save_image(&image, ArchiveFormat::DockerArchive, Box::new(file)).await.unwrap();

    spec.cmd = vec!["/bin/sh".into(), "-c".into(), "echo started; sleep 600".into()];
    spec.open_stdin = false;
    spec.network_mode = Some("none".into());
    let id = engine.create_container(&spec).await.unwrap();
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).unwrap();
    let mut sink = |_: s2i_engine::OutputStream, d: &[u8]| {
        use std::io::Write;
        let mut o = std::io::stdout();
        let _ = o.write_all(d);
        let _ = o.flush();
    };
    tokio::select! {
        _ = engine.run_container(&id, None, &mut sink) => panic!("the sleep ended"),
        _ = sigint.recv() => {}
    }
    engine.remove_leftovers().await;
    println!("cleaned");
}

/// Ctrl-C (SIGINT, handled as the CLI does) leaves nothing; SIGKILL leaves a running container,
/// its mounts and cgroup, and the next engine opened on the store removes them all.
#[tokio::test(flavor = "multi_thread")]
async fn interrupted_and_killed_builds_leave_nothing() {
    use std::io::BufRead;
    require_parts();
    let dir = tempfile::Builder::new().prefix("s2i-oci-test-").tempdir().unwrap();
    let store = dir.path().join("store");
    let archive = busybox_archive();
    let start_child = || {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "child_process_build", "--nocapture", "--test-threads=1"])
            .env("S2I_OCI_TEST_CHILD_STORE", &store)
            .env("S2I_OCI_TEST_CHILD_ARCHIVE", &archive)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = lines.next().expect("the child ended before it started its container").unwrap();
            if line.contains("started") {
                break;
            }
        }
        let ids: Vec<String> = std::fs::read_dir(store.join("s2i/run/containers"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        (child, lines, ids)
    };
    let runtime_root = store.join("s2i/run/runc");
    let pid = |c: &std::process::Child| rustix::process::Pid::from_child(c);

    // SIGINT: the child cleans up itself.
    let (mut child, lines, ids) = start_child();
    rustix::process::kill_process(pid(&child), rustix::process::Signal::INT).unwrap();
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    assert!(child.wait().unwrap().success(), "the child failed: {rest:?}");
    assert!(rest.iter().any(|l| l == "cleaned"), "{rest:?}");
    assert_clean(&store, &runtime_root, &ids);
    // What it built without Docker, Docker runs.
    let env = s2i_testkit::TestEnv::new("oci-child-build");
    let loaded = docker_load(Path::new(&format!("{}.out.tar", store.display())));
    let tag = env.tag("child");
    // Loaded untagged (by id): the test's tag is what removes it afterwards.
    assert!(loaded.starts_with("sha256:"), "{loaded}");
    s2i_testkit::docker_output(&["tag", &loaded, &tag]);
    let (code, stdout, stderr) = s2i_testkit::docker_run(&tag, &[]);
    assert_eq!((code, stdout.as_str()), (0, "built\n"), "{stderr}");

    // SIGKILL: everything is left behind…
    let (mut child, _lines, ids) = start_child();
    rustix::process::kill_process(pid(&child), rustix::process::Signal::KILL).unwrap();
    child.wait().unwrap();
    let containers = store.join("s2i/run/containers");
    let id = ids[0].clone();
    assert!(containers.join(&id).is_dir());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(mounts.contains(&containers.join(&id).join("rootfs").display().to_string()));
    let listed = std::process::Command::new("runc").arg("--root").arg(&runtime_root).args(["list", "-q"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), id);
    // …until the next engine on the store sweeps it.
    let engine = s2i_oci::OciEngine::open(s2i_oci::OciEngineOptions::new(&store)).await.unwrap();
    assert_clean(&store, &runtime_root, &[id]);
    drop(engine);
    env.assert_clean();
}

/// version, load_image, inspect, pull of archive transports and from a registry that is down, save as an
/// OCI archive, remove_image, and build_image refused with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn images_through_the_engine() {
    let t = TestEngine::new(None).await;
    let v = t.engine.version().await.unwrap();
    assert_eq!(v.kind, s2i_engine::EngineKind::Oci);
    assert!(v.version.starts_with("runc version"), "{}", v.version);
    assert_eq!(v.endpoint, t.store_root().display().to_string());

    let archive = tokio::fs::File::open(busybox_archive()).await.unwrap();
    let loaded = t.engine.load_image(Box::new(archive)).await.unwrap();
    assert_eq!(loaded, ["docker.io/s2i-test/busybox:latest"]);
    let info = t.engine.inspect_image("s2i-test/busybox").await.unwrap().expect("loaded");
    assert_eq!(info.cmd, Some(vec!["/bin/sh".to_string()]));
    let docker_id = s2i_testkit::docker_output(&["image", "inspect", "--format", "{{.Id}}", &s2i_testkit::base_image()]);
    assert_eq!(info.id, docker_id, "the image id is Docker's (the config digest)");

    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let mut progress = move |p: s2i_engine::Progress<'_>| seen.lock().unwrap().push(format!("{p:?}"));
    t.engine.pull_image(&busybox_ref(), None, &mut progress).await.unwrap();
    let events = events.lock().unwrap().clone();
    assert!(events.iter().any(|e| e.contains("Imported")), "{events:?}");
    // A registry that does not answer: its error, typed (tests/registry.rs pulls for real).
    let err = t.engine.pull_image("127.0.0.1:1/app:v1", None, &mut progress).await.unwrap_err();
    assert!(matches!(err.find_cause::<s2i_registry::RegistryError>(), Some(s2i_registry::RegistryError::Unreachable { .. })), "{err}");
    let err = t.engine.build_image(Box::new(std::io::Cursor::new(Vec::new())), &Default::default(), &mut |_: s2i_engine::OutputStream, _: &[u8]| {}).await.unwrap_err();
    assert!(err.to_string().contains("--engine docker"), "{err}");

    t.engine.remove_image("s2i-test/busybox").await.unwrap();
    assert!(t.engine.inspect_image("s2i-test/busybox").await.unwrap().is_none());
    t.finish().await;
}

/// The child side of [`same_input_same_image_with_source_date_epoch`]: two builds of the same
/// input, each printing the committed image's id.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by same_input_same_image_with_source_date_epoch"]
async fn child_reproducible_builds() {
    // Only as that test's child (not in a run with --include-ignored).
    let Ok(store) = std::env::var("S2I_OCI_TEST_REPRO_STORE") else { return };
    let engine = s2i_oci::OciEngine::open(s2i_oci::OciEngineOptions::new(&store)).await.unwrap();
    let archive = std::env::var("S2I_OCI_TEST_CHILD_ARCHIVE").unwrap();
    for _ in 0..2 {
        let spec = ContainerSpec {
            image: format!("docker-archive:{archive}"),
            cmd: vec!["/bin/sh".into(), "-c".into(), "mkdir -p /tmp && tar -C /tmp -xf - && hostname > /tmp/src/host && mkdir /opt/out && echo new > /opt/out/f && rm /etc/group".into()],
            open_stdin: true,
            ..Default::default()
        };
        let id = engine.create_container(&spec).await.unwrap();
        let input = Box::new(std::io::Cursor::new(tar_files(&[("src/a", "same\n", 0o644)])));
        let mut sink = |_: s2i_engine::OutputStream, _: &[u8]| {};
        assert_eq!(engine.run_container(&id, Some(input), &mut sink).await.unwrap(), 0);
        let image = engine.commit_container(&id, &CommitSpec { cmd: vec!["sh".into()], ..Default::default() }).await.unwrap();
        engine.remove_container(&id).await.unwrap();
        println!("image {image}");
    }
}

/// With SOURCE_DATE_EPOCH, two builds of the same input give the same image id, although their
/// containers, bundles and mount points had other names and the files other mtimes; another
/// epoch gives another id.
#[tokio::test(flavor = "multi_thread")]
async fn same_input_same_image_with_source_date_epoch() {
    require_parts();
    let dir = tempfile::Builder::new().prefix("s2i-oci-test-").tempdir().unwrap();
    let store = dir.path().join("store");
    let ids = |epoch: &str| -> Vec<String> {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "child_reproducible_builds", "--nocapture", "--test-threads=1"])
            .env("S2I_OCI_TEST_REPRO_STORE", &store)
            .env("S2I_OCI_TEST_CHILD_ARCHIVE", busybox_archive())
            .env("SOURCE_DATE_EPOCH", epoch)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        // libtest may print its own "test … " on the same line before the test's first line.
        text.lines().filter_map(|l| l.find("image sha256:").map(|i| l[i + 6..].trim().to_string())).collect()
    };
    let first = ids("1700000000");
    assert_eq!(first.len(), 2);
    assert_eq!(first[0], first[1], "the same input must give the same image");
    let later = ids("1700000001");
    eprintln!("SOURCE_DATE_EPOCH builds: {first:?} then {later:?}");
    assert_ne!(first[0], later[0], "another epoch must change the image");
    assert_eq!(later[0], later[1]);
    assert_clean(&store, &store.join("s2i/run/runc"), &[]);
}
