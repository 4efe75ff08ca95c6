//! The daemonless engine's pulls and pushes against a real registry (the test kit's
//! `docker-registry` with TLS, and Basic or token auth), checked with Docker on the other side:
//! what the engine pushes Docker pulls and runs, what Docker pushes the engine pulls with Docker's
//! image id. Layers stream (memory stays bounded), arrive verified, and a bad one is never stored.

mod support;

use std::sync::{Arc, Mutex};

use s2i_engine::{CommitSpec, Engine, EngineError, Progress, RegistryAuth};
use s2i_registry::RegistryError;
use s2i_testkit::{RegistryUser, TestRegistry};
use support::*;

fn auth(registry: &TestRegistry, user: &RegistryUser) -> RegistryAuth {
    RegistryAuth { username: user.name.clone(), password: user.password.clone(), identity_token: None, server: registry.host() }
}

/// What a pull or push reported, as text: `layer <id> <phase> <current>`, `status <line>`.
#[derive(Default, Clone)]
struct Events(Arc<Mutex<Vec<String>>>);

impl Events {
    fn sink(&self) -> impl FnMut(Progress<'_>) + Send + 'static {
        let events = self.0.clone();
        move |p| {
            let line = match p {
                Progress::Layer { id, phase, current, .. } => format!("layer {id} {phase:?} {current}"),
                Progress::Status(s) => format!("status {s}"),
                Progress::Task { task, subject, state } => format!("task {task:?} {subject} {state:?}"),
            };
            events.lock().unwrap().push(line);
        }
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn registry_cause(e: &EngineError) -> &RegistryError {
    e.find_cause::<RegistryError>().unwrap_or_else(|| panic!("no registry error in {e:?}"))
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// Nothing half-written stays in the store: its temp dir is empty.
fn assert_no_temp_files(t: &TestEngine) {
    let tmp = t.store_root().join("s2i/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "temp files left in the store: {left:?}");
}

/// An image built by the engine (a 96 MiB layer of random bytes on the busybox base) is pushed
/// with credentials, pulled by Docker and run there; a fresh store pulls it back with the same id
/// and digest, streaming the big layer in bounded memory, and runs it. Anonymous, wrong and
/// missing pulls fail with the registry's own error, and leave nothing behind.
#[tokio::test(flavor = "multi_thread")]
async fn push_then_pull_with_basic_auth() {
    let registry = TestRegistry::start();
    let builder = TestEngine::new(None).await;
    let (code, _, err, id) = run(&builder, &sh("head -c 100663296 /dev/urandom > /big && echo pushed-by-oci > /marker"), None).await;
    assert_eq!(code, 0, "{err}");
    let name = format!("{}/oci-test/app:v1", registry.host());
    let spec = CommitSpec { repo: Some(format!("{}/oci-test/app", registry.host())), tag: Some("v1".into()), cmd: vec!["cat".into(), "/marker".into()], ..Default::default() };
    let image_id = builder.engine.commit_container(&id, &spec).await.unwrap();
    builder.engine.remove_container(&id).await.unwrap();

    let user = auth(&registry, registry.user());
    let pushed = Events::default();
    let digest = builder.engine.push_image(&name, Some(&user), &mut pushed.sink()).await.unwrap();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    let events = pushed.all();
    assert!(events.iter().any(|e| e.contains("Pushing")), "{events:?}");
    assert_eq!(events.iter().filter(|e| e.contains(" Done ") || e.contains(" Exists ")).count(), 3, "two layers and the config: {events:?}");
    // Pushed again: the registry has every blob.
    let again = Events::default();
    assert_eq!(builder.engine.push_image(&name, Some(&user), &mut again.sink()).await.unwrap(), digest);
    assert_eq!(again.all().iter().filter(|e| e.contains(" Exists ")).count(), 3, "{:?}", again.all());

    // Docker pulls what the engine pushed, and runs it.
    let pulled = registry.docker_pull(&name);
    assert_eq!(s2i_testkit::docker_output(&["image", "inspect", "--format", "{{.Id}}", pulled.name()]), image_id);
    let (code, stdout, stderr) = s2i_testkit::docker_run(pulled.name(), &[]);
    assert_eq!((code, stdout.as_str()), (0, "pushed-by-oci\n"), "{stderr}");

    // A fresh store pulls it back: same id, same digest, the big layer streamed.
    let t = TestEngine::new(None).await;
    let events = Events::default();
    // Reset the peak-memory mark, so that it measures this pull.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = peak_rss_kib();
    t.engine.pull_image(&name, Some(&user), &mut events.sink()).await.unwrap();
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    eprintln!("pulling a 96 MiB layer grew the peak memory by {grown_mib} MiB");
    assert!(grown_mib < 48, "a 96 MiB layer grew the peak memory by {grown_mib} MiB");
    let events = events.all();
    assert!(events.iter().any(|e| e.contains("Downloading")), "{events:?}");
    assert_eq!(events.iter().filter(|e| e.contains(" Done ")).count(), 2, "{events:?}");
    let first_progress = events.iter().position(|e| e.contains("Downloading")).unwrap();
    let last_done = events.iter().rposition(|e| e.contains(" Done ")).unwrap();
    assert!(first_progress < last_done && events.last().unwrap().starts_with("status"), "reported as it went: {events:?}");
    assert!(events.contains(&format!("status Digest: {digest}")), "{events:?}");
    let info = t.engine.inspect_image(&name).await.unwrap().expect("pulled");
    assert_eq!(info.id, image_id);
    let (code, out, err, _) = run(&t, &support::sh_on(&name, "cat /marker; wc -c < /big"), None).await;
    assert_eq!((code, out.as_str()), (0, "pushed-by-oci\n100663296\n"), "{err}");

    // Pulled again: every layer is there already.
    let events = Events::default();
    t.engine.pull_image(&name, Some(&user), &mut events.sink()).await.unwrap();
    assert_eq!(events.all().iter().filter(|e| e.contains(" Exists ")).count(), 2, "{:?}", events.all());

    // Without credentials, with wrong ones, and for a tag that is not there.
    let other = TestEngine::new(None).await;
    let mut ignore = |_: Progress<'_>| {};
    let err = other.engine.pull_image(&name, None, &mut ignore).await.unwrap_err();
    assert!(matches!(registry_cause(&err), RegistryError::AuthRequired { .. }), "{err}");
    assert!(err.to_string().contains(&registry.host()), "{err}");
    let wrong = RegistryAuth { password: "not-the-password".into(), ..user.clone() };
    let err = other.engine.pull_image(&name, Some(&wrong), &mut ignore).await.unwrap_err();
    assert!(matches!(registry_cause(&err), RegistryError::CredentialsRejected { .. }), "{err}");
    assert!(!format!("{err:?}").contains(&user.password), "a password in an error: {err:?}");
    let missing = format!("{}/oci-test/app:nope", registry.host());
    let err = other.engine.pull_image(&missing, Some(&user), &mut ignore).await.unwrap_err();
    assert!(registry_cause(&err).is_not_found(), "{err}");
    assert!(other.engine.inspect_image(&name).await.unwrap().is_none());
    assert_no_temp_files(&other);
    other.finish().await;
    t.finish().await;
    builder.finish().await;
}

/// Token auth, as Docker Hub and most registries do it: an image Docker pushed (Docker's v2
/// schema 2 manifest) is pulled with an identity token and gets Docker's image id; an anonymous
/// pull gets an anonymous token, which this registry grants no access.
#[tokio::test(flavor = "multi_thread")]
async fn token_auth_pulls_what_docker_pushed() {
    let registry = TestRegistry::start_with_token_auth();
    let base = s2i_testkit::base_image();
    let (name, digest) = registry.docker_push(&base, "oci-test/base:v1");
    let t = TestEngine::new(None).await;
    let token = RegistryAuth { identity_token: Some(registry.identity_token()), server: registry.host(), ..Default::default() };
    let events = Events::default();
    t.engine.pull_image(&name, Some(&token), &mut events.sink()).await.unwrap();
    let info = t.engine.inspect_image(&name).await.unwrap().expect("pulled");
    let docker_id = s2i_testkit::docker_output(&["image", "inspect", "--format", "{{.Id}}", &base]);
    assert_eq!(info.id, docker_id, "the image id is Docker's");
    assert!(events.all().contains(&format!("status Digest: {digest}")), "{:?}", events.all());
    let (code, out, _, _) = run(&t, &support::sh_on(&name, "echo ran"), None).await;
    assert_eq!((code, out.as_str()), (0, "ran\n"));

    let anonymous = TestEngine::new(None).await;
    let err = anonymous.engine.pull_image(&name, None, &mut |_: Progress<'_>| {}).await.unwrap_err();
    assert!(registry_cause(&err).is_auth(), "{err}");
    anonymous.finish().await;
    t.finish().await;
}

/// A layer whose bytes the registry changed (same size) fails the pull with a digest mismatch,
/// and nothing of it is stored: neither the blob nor a temp file.
#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_layer_is_refused_and_not_stored() {
    let registry = TestRegistry::start();
    let builder = TestEngine::new(None).await;
    let (_, _, _, id) = run(&builder, &sh("echo original > /data"), None).await;
    let name = format!("{}/oci-test/tampered:v1", registry.host());
    let spec = CommitSpec { repo: Some(format!("{}/oci-test/tampered", registry.host())), tag: Some("v1".into()), ..Default::default() };
    builder.engine.commit_container(&id, &spec).await.unwrap();
    builder.engine.remove_container(&id).await.unwrap();
    let user = auth(&registry, registry.user());
    builder.engine.push_image(&name, Some(&user), &mut |_: Progress<'_>| {}).await.unwrap();

    // The top layer's blob, flipped in place.
    let manifest: serde_json::Value = {
        let index: serde_json::Value = serde_json::from_slice(&std::fs::read(builder.store_root().join("index.json")).unwrap()).unwrap();
        let m = index["manifests"].as_array().unwrap().iter().find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name.as_str()).unwrap().clone();
        let hex = m["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
        serde_json::from_slice(&std::fs::read(builder.store_root().join("blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let top = manifest["layers"].as_array().unwrap().last().unwrap()["digest"].as_str().unwrap().to_string();
    let file = registry.blob_file(&top);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();

    let t = TestEngine::new(None).await;
    let err = t.engine.pull_image(&name, Some(&user), &mut |_: Progress<'_>| {}).await.unwrap_err();
    assert!(matches!(registry_cause(&err), RegistryError::DigestMismatch { .. }), "{err}");
    assert!(!t.store_root().join("blobs/sha256").join(top.trim_start_matches("sha256:")).exists(), "the bad layer was stored");
    assert!(t.engine.inspect_image(&name).await.unwrap().is_none());
    assert_no_temp_files(&t);
    t.finish().await;
    builder.finish().await;
}

/// A TCP proxy in front of the registry that cuts a connection once it has carried more than
/// `after` bytes from the registry, `cuts` times in all: a registry (or a network) that drops
/// transfers mid-layer, as flaky CI networks do.
struct CuttingProxy {
    addr: std::net::SocketAddr,
    cut: Arc<std::sync::atomic::AtomicUsize>,
}

impl CuttingProxy {
    fn start(upstream: String, after: u64, cuts: usize) -> CuttingProxy {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cuts_left = Arc::new(std::sync::atomic::AtomicUsize::new(cuts));
        let cut = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (left, done) = (cuts_left, cut.clone());
        // Threads end when their sockets do; the listener's thread when the test process does.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(Shutdown::Write);
                });
                let (left, done) = (left.clone(), done.clone());
                std::thread::spawn(move || {
                    let (mut s_in, mut c_out) = (server, client);
                    let mut buf = [0u8; 16 << 10];
                    let mut carried = 0u64;
                    loop {
                        let n = match s_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        carried += n as u64;
                        if carried > after && left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1)).is_ok() {
                            done.fetch_add(1, Ordering::SeqCst);
                            let _ = c_out.shutdown(Shutdown::Both);
                            let _ = s_in.shutdown(Shutdown::Both);
                            return;
                        }
                    }
                    let _ = c_out.shutdown(Shutdown::Write);
                });
            }
        });
        CuttingProxy { addr, cut }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn cuts(&self) -> usize {
        self.cut.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Layers cut mid-transfer are fetched again (as Docker's daemon does), so a blink of the network
/// does not fail a CI job: two cuts, and the pull still lands with the pushed image's id. A
/// connection that keeps being cut fails the pull after the last try, with the registry named
/// and nothing stored.
#[tokio::test(flavor = "multi_thread")]
async fn layers_cut_mid_transfer_are_fetched_again() {
    let registry = TestRegistry::start();
    let builder = TestEngine::new(None).await;
    let (code, _, err, id) = run(&builder, &sh("head -c 4194304 /dev/urandom > /data"), None).await;
    assert_eq!(code, 0, "{err}");
    let spec = CommitSpec { repo: Some(format!("{}/oci-test/blink", registry.host())), tag: Some("v1".into()), ..Default::default() };
    let image_id = builder.engine.commit_container(&id, &spec).await.unwrap();
    builder.engine.remove_container(&id).await.unwrap();
    let user = auth(&registry, registry.user());
    builder.engine.push_image(&format!("{}/oci-test/blink:v1", registry.host()), Some(&user), &mut |_: Progress<'_>| {}).await.unwrap();

    // Cut twice, each time after 1 MiB of a connection (only layers are that big).
    let proxy = CuttingProxy::start(registry.host(), 1 << 20, 2);
    let name = format!("{}/oci-test/blink:v1", proxy.host());
    let user = RegistryAuth { server: proxy.host(), ..auth(&registry, registry.user()) };
    let t = TestEngine::new(None).await;
    let pulled = t.engine.pull_image(&name, Some(&user), &mut |_: Progress<'_>| {}).await;
    assert_eq!(proxy.cuts(), 2, "the proxy cut transfers twice");
    pulled.unwrap_or_else(|e| panic!("the pull did not survive two cuts: {e}"));
    assert_eq!(t.engine.inspect_image(&name).await.unwrap().map(|i| i.id), Some(image_id));
    assert_no_temp_files(&t);
    t.finish().await;

    // Cut every time: the pull fails after its last try, and stores nothing.
    let proxy = CuttingProxy::start(registry.host(), 1 << 20, usize::MAX);
    let name = format!("{}/oci-test/blink:v1", proxy.host());
    let user = RegistryAuth { server: proxy.host(), ..auth(&registry, registry.user()) };
    let t = TestEngine::new(None).await;
    let err = t.engine.pull_image(&name, Some(&user), &mut |_: Progress<'_>| {}).await.unwrap_err();
    let cause = registry_cause(&err);
    assert!(cause.is_transient() && cause.to_string().contains(&proxy.host()), "{err}");
    assert!(proxy.cuts() >= 3, "each layer is tried three times: {} cuts", proxy.cuts());
    assert!(t.engine.inspect_image(&name).await.unwrap().is_none());
    assert_no_temp_files(&t);
    t.finish().await;
    builder.finish().await;
}
