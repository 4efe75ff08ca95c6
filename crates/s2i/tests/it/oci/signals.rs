//! Interruptions of `s2i build --engine oci`, through the real binary, in every phase that can be
//! made slow at will: a pull from a registry that stalls, the unpack of a huge layer, assemble
//! sleeping, the commit of a huge upper dir, the image streamed into a daemon that stops reading
//! (`--load`), a push to a registry that stops answering. For each, SIGINT and SIGTERM: s2i must
//! exit within 2 s of the signal (plus slack for a loaded machine) with the interruption's exit
//! code, and leave nothing: no mount under the store, no runc container, no bundle, no cgroup, no
//! temp file or directory in the store or in TMPDIR. And an image whose second layer hard-links a
//! FIFO (or a device node) of its first must fail at once, naming the entry.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use s2i_testkit::{engine_socket, write_docker_archive, Answer, FreezableProxy, HttpServer, Layer};

use super::*;

/// What the project promises: every phase ends within 2 s of SIGINT or SIGTERM.
const PROMISED: Duration = Duration::from_secs(2);
/// A debug binary on a loaded two-core machine; a clean-up that waits for anything still fails.
const SLACK: Duration = Duration::from_millis(1000);
/// How long a phase may take to begin (an image import, a container start).
const PHASE_START: Duration = Duration::from_secs(180);

/// A running `s2i build` with its stderr collected as it comes.
struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("s2i starts");
        let pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        Running { child, stderr, reader }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// All of stderr, once s2i has exited.
    fn collected(self) -> String {
        self.reader.join().unwrap();
        let all = self.stderr.lock().unwrap().clone();
        all
    }

    /// Waits until `ready` holds, failing (and killing s2i) when it never does or s2i ends first.
    fn wait_for(&mut self, what: &str, ready: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + PHASE_START;
        loop {
            if ready(&self.stderr()) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("s2i ended ({status}) before {what}:\n{}", self.stderr());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{what} never happened within {PHASE_START:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (`INT`, `TERM`) and waits for s2i to exit: its exit code, how long it took
    /// after the signal, and all it wrote to stderr. Killed (and failed) after a minute.
    fn signal(mut self, signal: &str) -> (Option<i32>, Duration, String) {
        let sent = Instant::now();
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let code = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.code();
            }
            if sent.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("s2i was still running a minute after SIG{signal}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let took = sent.elapsed();
        (code, took, self.collected())
    }
}

/// The store's own temp dir (layers being unpacked, blobs being written) is empty.
fn assert_no_store_temp(t: &Oci) {
    let tmp = t.store().join("s2i/tmp");
    let left: Vec<PathBuf> = std::fs::read_dir(&tmp).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "temp entries left in the store: {left:?}");
}

/// Runs `cmd` once per signal, interrupting it when `ready` says the phase is under way (after
/// `before`, which may freeze something), and checks the exit: in time, code 2, nothing left.
fn interrupt_during(t: &Oci, phase: &str, cmd: impl Fn() -> Command, ready: impl Fn(&str) -> bool, before: impl Fn()) {
    for signal in ["INT", "TERM"] {
        let mut running = Running::start(cmd());
        running.wait_for(phase, &ready);
        before();
        let (code, took, stderr) = running.signal(signal);
        t.note_containers(&stderr);
        assert_eq!(code, Some(2), "{phase}, SIG{signal}: the interruption's exit code\n{stderr}");
        assert!(stderr.contains("Interrupted"), "{phase}, SIG{signal}:\n{stderr}");
        assert!(took <= PROMISED + SLACK, "{phase}, SIG{signal}: s2i took {took:?} to exit\n{stderr}");
        t.assert_clean();
        assert_no_store_temp(t);
        eprintln!("{phase}, SIG{signal}: exited {took:?} after the signal");
    }
}

/// The config of a hand-made builder: sti-fake's scripts label, user 1001.
fn builder_config() -> Value {
    serde_json::json!({
        "User": "1001",
        "Cmd": ["/usr/libexec/s2i/usage"],
        "WorkingDir": "/opt/app-root/src",
        "Labels": {"io.openshift.s2i.scripts-url": "image:///usr/libexec/s2i"},
    })
}

/// One entry of a hand-made layer: path, type, link target, device numbers.
type LayerEntry<'a> = (&'a str, tar::EntryType, Option<&'a str>, (u32, u32));

/// A tar of `entries` made with the `tar` crate.
fn layer(entries: &[LayerEntry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, link, (major, minor)) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(*kind);
        h.set_mode(if *kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        h.set_size(0);
        h.set_mtime(0);
        h.set_device_major(*major).unwrap();
        h.set_device_minor(*minor).unwrap();
        match link {
            Some(target) => b.append_link(&mut h, path, target).unwrap(),
            None => b.append_data(&mut h, path, std::io::empty()).unwrap(),
        }
    }
    b.into_inner().unwrap()
}

/// Layer 1 holds `a/fifo`, a FIFO or a device node; layer 2 a hard link `b/link` to it. The
/// unpack copied the link's target from layer 1's directory: the FIFO's open blocked for ever
/// (and Ctrl-C did not end it), the device's opened the host's device as root. Now the build
/// fails at once, naming the entry and what its target is, and leaves nothing.
#[test]
fn a_hard_link_to_a_fifo_or_a_device_of_an_earlier_layer_fails_at_once() {
    let t = Oci::new("oci-special-links");
    let src = app(&t.env);
    let cases = [
        ("fifo", tar::EntryType::Fifo, (0, 0), "a FIFO"),
        ("zero", tar::EntryType::Char, (1, 5), "a character device"),
        ("null", tar::EntryType::Char, (1, 3), "a character device"),
    ];
    for (name, kind, dev, named) in cases {
        let archive = t.env.work().join(format!("{name}.tar"));
        let layers = [
            Layer::Tar(layer(&[("a", tar::EntryType::Directory, None, (0, 0)), ("a/fifo", kind, None, dev)])),
            Layer::Tar(layer(&[("b", tar::EntryType::Directory, None, (0, 0)), ("b/link", tar::EntryType::Link, Some("a/fifo"), (0, 0))])),
        ];
        write_docker_archive(&archive, &format!("special/{name}:1"), builder_config(), &layers);
        let builder = format!("docker-archive:{}", archive.display());
        let mut running = Running::start(t.command(&["build", src, &builder, &t.env.tag(name)]));
        let started = Instant::now();
        let code = loop {
            if let Some(status) = running.child.try_wait().unwrap() {
                break status.code();
            }
            if started.elapsed() > Duration::from_secs(60) {
                // Ctrl-C did not end it either (the blocked open holds the exit): kill it.
                let _ = running.child.kill();
                let _ = running.child.wait();
                panic!("{name}: the build was still running after 60 s:\n{}", running.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = running.collected();
        t.note_containers(&stderr);
        assert_eq!(code, Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains("\"b/link\"") && stderr.contains(&format!("a hard link to {named} of an earlier layer (a/fifo)")),
            "{name}: the error names the entry, its target and what it is:\n{stderr}"
        );
        assert!(!stderr.contains("Unpacked "), "{name}: an unpack that failed is not reported done:\n{stderr}");
        t.assert_clean();
        assert_no_store_temp(&t);
    }
}

/// A pull from a registry that answers `/v2/` and then stalls in the middle of the manifest.
#[test]
fn interrupted_while_pulling_from_a_registry_that_stalls() {
    let t = Oci::new("oci-int-pull");
    let src = app(&t.env);
    let registry = HttpServer::scripted(|req| match req.path.as_str() {
        "/v2/" => Answer::ok("{}"),
        _ => Answer::Stall { length: 4096, sent: b"{\"schemaVersion\": 2,".to_vec() },
    });
    let builder = format!("127.0.0.1:{}/stall/builder:1", registry.port());
    let manifest_gets = || registry.received().iter().filter(|r| r.path.contains("/manifests/")).count();
    let before = std::cell::Cell::new(0);
    let cmd = || {
        before.set(manifest_gets());
        t.command(&["build", src, &builder, &t.env.tag("pull")])
    };
    interrupt_during(&t, "the pull", cmd, |_| manifest_gets() > before.get(), || {});
}

/// The unpack of a layer holding one 6 GiB file (zeros: a few MB of gzip, but every byte written).
#[test]
fn interrupted_while_unpacking_a_huge_layer() {
    let t = Oci::new("oci-int-unpack");
    let src = app(&t.env);
    let archive = t.env.work().join("huge.tar");
    let layers = [Layer::Tar(layer(&[("tmp", tar::EntryType::Directory, None, (0, 0))])), Layer::Zeros { path: "huge".into(), size: 6 << 30 }];
    write_docker_archive(&archive, "huge/builder:1", builder_config(), &layers);
    let builder = format!("docker-archive:{}", archive.display());
    let tmp = t.store().join("s2i/tmp");
    // A layer being unpacked is a `layer-*` dir of the store's temp dir, with the file growing.
    let unpacking = || {
        std::fs::read_dir(&tmp)
            .map(|rd| rd.flatten().any(|e| std::fs::metadata(e.path().join("huge")).is_ok_and(|m| m.len() > 0)))
            .unwrap_or(false)
    };
    interrupt_during(&t, "the unpack", || t.command(&["build", src, &builder, &t.env.tag("unpack")]), |_| unpacking(), || {});
}

/// Assemble sleeping in its container.
#[test]
fn interrupted_while_assemble_runs() {
    let t = Oci::new("oci-int-run");
    let builder = archive_of(&fixture("sti-fake"));
    let src = app(&t.env);
    let cmd = || t.command(&["build", src, &builder, &t.env.tag("run"), "-e", "ASSEMBLE_SLEEP=120"]);
    interrupt_during(&t, "assemble", cmd, |stderr| stderr.contains("---> sleeping"), || {});
}

/// The commit of an upper dir holding a 64 GiB file (sparse: made at once, read as zeros).
#[test]
fn interrupted_while_committing_a_huge_upper_dir() {
    let t = Oci::new("oci-int-commit");
    let builder = archive_of(&fixture("sti-fake"));
    let src = app(&t.env);
    write_file(
        &t.env.work().join("app/.s2i/bin/assemble"),
        "#!/bin/sh\ndd if=/dev/zero of=/tmp/huge bs=1M count=0 seek=65536 2>/dev/null\necho '---> made /tmp/huge'\n",
        0o755,
    );
    let tmp = t.store().join("s2i/tmp");
    // The commit writes its layer into a `blob-*` temp file of the store.
    let committing = |stderr: &str| {
        stderr.contains("---> made /tmp/huge")
            && std::fs::read_dir(&tmp).map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().starts_with("blob-"))).unwrap_or(false)
    };
    interrupt_during(&t, "the commit", || t.command(&["build", src, &builder, &t.env.tag("commit")]), committing, || {});
}

/// The image streamed into a daemon (`--load`) that stops reading it: the blocking export waits on
/// a full pipe.
#[test]
fn interrupted_while_loading_into_a_daemon_that_stops_reading() {
    let t = Oci::new("oci-int-load");
    let builder = archive_of(&fixture("sti-fake"));
    let src = app(&t.env);
    // 64 MiB that gzip cannot shrink: the image is far larger than any pipe or socket buffer.
    let mut random = std::fs::File::open("/dev/urandom").unwrap();
    let mut data = vec![0u8; 64 << 20];
    std::io::Read::read_exact(&mut random, &mut data).unwrap();
    std::fs::write(t.env.work().join("app/noise.bin"), &data).unwrap();
    let proxy = FreezableProxy::start(&engine_socket());
    let sent_before = std::cell::Cell::new(0);
    let cmd = || {
        proxy.thaw();
        sent_before.set(proxy.bytes_sent());
        let mut cmd = t.command(&["build", src, &builder, &t.env.tag("load"), "--load"]);
        cmd.env("DOCKER_HOST", proxy.url());
        cmd
    };
    let loading = |_: &str| proxy.bytes_sent() > sent_before.get() + (8 << 20);
    interrupt_during(&t, "the load", cmd, loading, || {
        proxy.freeze();
        std::thread::sleep(Duration::from_millis(300));
    });
    proxy.thaw();
}

/// A push to a registry that answers `/v2/` and then never answers again.
#[test]
fn interrupted_while_pushing_to_a_registry_that_stops_answering() {
    let t = Oci::new("oci-int-push");
    let builder = archive_of(&fixture("sti-fake"));
    let src = app(&t.env);
    let registry = HttpServer::scripted(|req| match req.path.as_str() {
        "/v2/" => Answer::ok("{}"),
        _ => Answer::Silence,
    });
    let out = format!("127.0.0.1:{}/stall/out:1", registry.port());
    let blob_requests = || registry.received().iter().filter(|r| r.path.contains("/blobs/")).count();
    let before = std::cell::Cell::new(0);
    let cmd = || {
        before.set(blob_requests());
        t.command(&["build", src, &builder, &out, "--push"])
    };
    interrupt_during(&t, "the push", cmd, |_| blob_requests() > before.get(), || {});
}
