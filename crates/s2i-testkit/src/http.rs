//! A minimal HTTP/1.1 server on 127.0.0.1 for tests: serves files, or records
//! POSTs (for `--callback-url`). One thread per connection, `Connection:
//! close` on every answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`…
    pub method: String,
    /// The request target as sent, query string included (e.g. `/scripts/assemble`).
    pub path: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (after de-chunking).
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

enum Mode {
    Dir(PathBuf),
    Recorder,
    Script(Script),
}

type Script = Arc<dyn Fn(&RecordedRequest) -> Answer + Send + Sync>;

/// What a [`HttpServer::scripted`] server answers to one request.
pub enum Answer {
    /// A status (e.g. `302 Found`) with headers and a body.
    Status {
        /// The status line's code and reason, e.g. `"302 Found"`.
        status: String,
        /// Extra headers (`Location`, say).
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// `200 OK` announcing `length` bytes, then `sent` of them, then silence until the server goes.
    Stall {
        /// What the body claims to be.
        length: u64,
        /// What is actually sent before the silence.
        sent: Vec<u8>,
    },
    /// `200 OK`, chunked, zeros without end (until the client hangs up).
    Endless,
    /// No answer at all, not even a status line, until the client hangs up (or 10 minutes).
    Silence,
}

impl Answer {
    /// `302 Found` to `location`.
    pub fn redirect(location: &str) -> Answer {
        Answer::Status { status: "302 Found".into(), headers: vec![("Location".into(), location.into())], body: Vec::new() }
    }

    /// `200 OK` with `body`.
    pub fn ok(body: impl Into<Vec<u8>>) -> Answer {
        Answer::Status { status: "200 OK".into(), headers: Vec::new(), body: body.into() }
    }
}

struct State {
    mode: Mode,
    log: Mutex<Vec<RecordedRequest>>,
    arrived: Condvar,
}

/// A real HTTP server on `127.0.0.1:<random port>`, running in background
/// threads until dropped.
pub struct HttpServer {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serves the files under `dir` to GET (and HEAD): `/a/b` is `dir/a/b`,
    /// and a directory is its `index.html` (so a tree of `index.html` pages
    /// is a PEP 503 package index for pip); 404 for anything missing, a
    /// directory without `index.html`, or a path with `..`; 405 for other
    /// methods. `.html` files are `text/html`, everything else
    /// `application/octet-stream`.
    pub fn serve_dir(dir: &Path) -> HttpServer {
        Self::start(Mode::Dir(dir.to_path_buf()))
    }

    /// Answers every request with what `script` says (and records it): redirects, stalls, bodies
    /// without end.
    pub fn scripted(script: impl Fn(&RecordedRequest) -> Answer + Send + Sync + 'static) -> HttpServer {
        Self::start(Mode::Script(Arc::new(script)))
    }

    /// Answers `200 OK` to every POST and records it (see
    /// [`HttpServer::received`]); 405 to other methods (recorded too).
    pub fn recorder() -> HttpServer {
        Self::start(Mode::Recorder)
    }

    fn start(mode: Mode) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            mode,
            log: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("testkit-http-{}", addr.port()))
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        if let Ok(conn) = conn {
                            let state = state.clone();
                            let _ = std::thread::Builder::new()
                                .name("testkit-http-conn".into())
                                .spawn(move || handle(conn, &state));
                        }
                    }
                })
                .expect("spawning the HTTP server thread")
        };
        HttpServer {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Paths (request targets) of all requests so far, in arrival order.
    pub fn requests(&self) -> Vec<String> {
        self.received().into_iter().map(|r| r.path).collect()
    }

    /// All requests so far, in arrival order, with headers and bodies.
    pub fn received(&self) -> Vec<RecordedRequest> {
        self.state
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The POST requests so far, in arrival order.
    pub fn posts(&self) -> Vec<RecordedRequest> {
        self.received()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }

    /// Waits until at least `n` requests have arrived or `timeout` passed,
    /// and returns all requests so far.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let deadline = Instant::now() + timeout;
        let mut log = self.state.log.lock().unwrap_or_else(|e| e.into_inner());
        while log.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            log = self
                .state
                .arrived
                .wait_timeout(log, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        log.clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(conn: TcpStream, state: &State) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut writer = conn;
    let req = match read_request(&mut reader) {
        Some(r) => r,
        None => return, // Closed, garbage, or the wake-up connection.
    };
    {
        let mut log = state.log.lock().unwrap_or_else(|e| e.into_inner());
        log.push(req.clone());
        state.arrived.notify_all();
    }
    if let Mode::Script(script) = &state.mode {
        answer_scripted(writer, script(&req));
        return;
    }
    let (status, body, content_type): (&str, Vec<u8>, &str) =
        match (&state.mode, req.method.as_str()) {
            (Mode::Recorder, "POST") => ("200 OK", b"OK\n".to_vec(), "text/plain"),
            (Mode::Recorder, _) => (
                "405 Method Not Allowed",
                b"POST only\n".to_vec(),
                "text/plain",
            ),
            (Mode::Dir(root), "GET" | "HEAD") => match resolve(root, &req.path) {
                Some((data, content_type)) => ("200 OK", data, content_type),
                None => ("404 Not Found", b"not found\n".to_vec(), "text/plain"),
            },
            (Mode::Dir(_), _) => (
                "405 Method Not Allowed",
                b"GET only\n".to_vec(),
                "text/plain",
            ),
            (Mode::Script(_), _) => unreachable!("answered above"),
        };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = writer.write_all(head.as_bytes());
    if req.method != "HEAD" {
        let _ = writer.write_all(&body);
    }
    let _ = writer.flush();
    let _ = writer.shutdown(std::net::Shutdown::Write);
}

fn answer_scripted(mut writer: TcpStream, answer: Answer) {
    match answer {
        Answer::Status { status, headers, body } => {
            let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = writer.write_all(head.as_bytes());
            let _ = writer.write_all(&body);
            let _ = writer.shutdown(std::net::Shutdown::Write);
        }
        Answer::Stall { length, sent } => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n");
            let _ = writer.write_all(head.as_bytes());
            let _ = writer.write_all(&sent);
            let _ = writer.flush();
            // Silence; the client's idle limit must end it (or the peer hangs up).
            let mut probe = [0u8; 1];
            let _ = writer.set_read_timeout(Some(Duration::from_secs(600)));
            let _ = writer.read(&mut probe);
        }
        Answer::Silence => {
            let mut probe = [0u8; 1];
            let _ = writer.set_read_timeout(Some(Duration::from_secs(600)));
            let _ = writer.read(&mut probe);
        }
        Answer::Endless => {
            let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
            let chunk = vec![0u8; 64 * 1024];
            let head = format!("{:x}\r\n", chunk.len());
            loop {
                let sent = writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(&chunk)).and_then(|()| writer.write_all(b"\r\n"));
                if sent.is_err() {
                    break;
                }
            }
        }
    }
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<RecordedRequest> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let mut req = RecordedRequest {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        let _ = r.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // Trailers until an empty line.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t).ok()? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = req.body.len();
            req.body.resize(start + size, 0);
            r.read_exact(&mut req.body[start..]).ok()?;
            let mut crlf = String::new();
            r.read_line(&mut crlf).ok()?;
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len.parse().ok()?;
        req.body.resize(len, 0);
        r.read_exact(&mut req.body).ok()?;
    }
    Some(req)
}

/// The content and content type of the file that `target` names under
/// `root` (a directory's `index.html`), if any.
fn resolve(root: &Path, target: &str) -> Option<(Vec<u8>, &'static str)> {
    let path = target.split(['?', '#']).next()?;
    let path = percent_decode(path)?;
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let mut full = root.join(rel);
    if full.is_dir() {
        full.push("index.html");
    }
    if !full.is_file() {
        return None;
    }
    let content_type = match full.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html",
        _ => "application/octet-stream",
    };
    std::fs::read(&full).ok().map(|data| (data, content_type))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain HTTP/1.1 exchange; returns (status code, body).
    fn fetch(url: &str, method: &str, path: &str, body: &[u8], extra: &str) -> (u16, Vec<u8>) {
        let addr = url.strip_prefix("http://").unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let status = std::str::from_utf8(&resp[9..12]).unwrap().parse().unwrap();
        (status, resp[split + 4..].to_vec())
    }

    #[test]
    fn serves_files_and_records_paths() {
        let dir = tempfile::tempdir().unwrap();
        crate::write_file(
            &dir.path().join("scripts/assemble"),
            "#!/bin/sh\necho hi\n",
            0o755,
        );
        let server = HttpServer::serve_dir(dir.path());
        let url = server.url();
        assert!(url.starts_with("http://127.0.0.1:"));
        assert_eq!(
            fetch(&url, "GET", "/scripts/assemble", b"", ""),
            (200, b"#!/bin/sh\necho hi\n".to_vec())
        );
        assert_eq!(fetch(&url, "GET", "/scripts/run", b"", "").0, 404);
        assert_eq!(fetch(&url, "GET", "/scripts", b"", "").0, 404);
        assert_eq!(fetch(&url, "GET", "/../etc/passwd", b"", "").0, 404);
        assert_eq!(
            fetch(&url, "GET", "/scripts/%61ssemble?x=1", b"", "").0,
            200
        );
        assert_eq!(
            server.requests(),
            [
                "/scripts/assemble",
                "/scripts/run",
                "/scripts",
                "/../etc/passwd",
                "/scripts/%61ssemble?x=1"
            ]
        );

        // Concurrent clients, including one that connects and says nothing.
        let idle = TcpStream::connect(server.addr).unwrap();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || fetch(&url, "GET", "/scripts/assemble", b"", "").0)
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 200);
        }
        assert_eq!(server.requests().len(), 13);
        drop(idle);
        let addr = server.addr;
        assert!(listens_here(addr.port()), "the server's socket is found while it runs");
        drop(server);
        // Not by connecting: once freed, the port may already be another test's listener.
        assert!(!listens_here(addr.port()), "dropping the server closes its listening socket");
    }

    /// Whether this process holds a listening IPv4 TCP socket on `port` (/proc/net/tcp's LISTEN
    /// entries, matched by inode against this process's descriptors).
    fn listens_here(port: u16) -> bool {
        let table = std::fs::read_to_string("/proc/self/net/tcp").unwrap();
        let inodes: Vec<String> = table
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let local_port = f.get(1)?.rsplit(':').next()?;
                (u16::from_str_radix(local_port, 16).ok()? == port && f.get(3)? == &"0A").then(|| f.get(9).map(|i| i.to_string()))?
            })
            .collect();
        std::fs::read_dir("/proc/self/fd").unwrap().flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|l| inodes.iter().any(|i| l.to_string_lossy() == format!("socket:[{i}]")))
        })
    }

    #[test]
    fn directories_serve_their_index_html_as_html() {
        let dir = tempfile::tempdir().unwrap();
        let page = "<a href=\"../../files/x-1.0-py3-none-any.whl\">x</a>\n";
        crate::write_file(&dir.path().join("simple/x/index.html"), page, 0o644);
        crate::write_file(
            &dir.path().join("files/x-1.0-py3-none-any.whl"),
            "PK",
            0o644,
        );
        let server = HttpServer::serve_dir(dir.path());
        let url = server.url();
        assert_eq!(
            fetch(&url, "GET", "/simple/x/", b"", ""),
            (200, page.as_bytes().to_vec())
        );
        assert_eq!(fetch(&url, "GET", "/simple/x", b"", "").0, 200);
        assert_eq!(fetch(&url, "GET", "/simple/", b"", "").0, 404);
        let content_type = |path: &str| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .unwrap();
            let mut resp = String::new();
            s.read_to_string(&mut resp).unwrap();
            resp.lines()
                .find_map(|l| l.strip_prefix("Content-Type: "))
                .unwrap()
                .to_string()
        };
        assert_eq!(content_type("/simple/x/"), "text/html");
        assert_eq!(
            content_type("/files/x-1.0-py3-none-any.whl"),
            "application/octet-stream"
        );
    }

    #[test]
    fn recorder_captures_posts() {
        let server = HttpServer::recorder();
        let (status, _) = fetch(
            &server.url(),
            "POST",
            "/callback",
            br#"{"success":true}"#,
            "Content-Type: application/json\r\n",
        );
        assert_eq!(status, 200);
        assert_eq!(fetch(&server.url(), "GET", "/callback", b"", "").0, 405);

        // A chunked body.
        let addr = server.url().strip_prefix("http://").unwrap().to_string();
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

        let posts = server.wait_for_requests(3, Duration::from_secs(5));
        assert_eq!(posts.len(), 3);
        let posts = server.posts();
        assert_eq!(posts.len(), 2);
        assert_eq!(posts[0].path, "/callback");
        assert_eq!(posts[0].header("content-type"), Some("application/json"));
        assert_eq!(posts[0].body_str(), r#"{"success":true}"#);
        assert_eq!(posts[1].body_str(), "hello world");
    }
}
