//! A unix-socket proxy in front of the Docker daemon that can be frozen: it then stops passing
//! bytes either way, as a daemon that hangs would. For tests of what s2i does when the engine
//! stops answering (clean-up bounds, a second Ctrl-C).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The proxy; it stops accepting when dropped (frozen connections are let go then).
pub struct FreezableProxy {
    path: PathBuf,
    frozen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// Bytes passed from clients to the daemon.
    sent: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

impl FreezableProxy {
    /// A proxy to the daemon socket `upstream` (e.g. `/var/run/docker.sock`).
    pub fn start(upstream: &Path) -> FreezableProxy {
        let dir = tempfile::Builder::new().prefix("s2i-test-proxy").tempdir().expect("a temp dir for the proxy socket");
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).expect("binding the proxy socket");
        let (frozen, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let sent = Arc::new(AtomicU64::new(0));
        let (f, st, up, counted) = (frozen.clone(), stop.clone(), upstream.to_path_buf(), sent.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = UnixStream::connect(&up) else { continue };
                let upstream = Some(counted.clone());
                for (from, to, count) in [(client.try_clone(), server.try_clone(), upstream), (server.try_clone(), client.try_clone(), None)] {
                    let (Ok(from), Ok(to)) = (from, to) else { continue };
                    let (f, st) = (f.clone(), st.clone());
                    std::thread::spawn(move || relay(from, to, &f, &st, count.as_deref()));
                }
            }
        });
        FreezableProxy { path, frozen, stop, sent, _dir: dir }
    }

    /// `unix://…` for `DOCKER_HOST`.
    pub fn url(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Stop passing bytes (until [`FreezableProxy::thaw`]).
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Pass bytes again.
    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }

    /// How many bytes clients have sent to the daemon so far (say, how far an image load got).
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.frozen.store(false, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path);
    }
}

fn relay(mut from: UnixStream, mut to: UnixStream, frozen: &AtomicBool, stop: &AtomicBool, count: Option<&AtomicU64>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(c) = count {
            c.fetch_add(n as u64, Ordering::SeqCst);
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
