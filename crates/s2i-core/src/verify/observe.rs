//! Running an image as a user would and writing down what happened: its own command (bounded by
//! a timeout, or kept running while HTTP requests are made to it), and commands run in fresh
//! containers of it. Every value is masked before it is kept, so that what is compared is what
//! was written down.
//!
//! The image, and everything it prints or answers, is untrusted: output and bodies are kept up
//! to the verify output limit, a request goes only to the address the engine published the port
//! on (127.0.0.1), never follows a redirect, and never goes through a proxy.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use s2i_engine::{ContainerSpec, Engine, OutputSink, OutputStream};
use serde::Serialize;
use tokio::time::Instant;
use tracing::debug;

use super::mask::Masks;
use crate::container;
use crate::error::{BuildError, Result};
use crate::limits::{Limit, Limits};

/// How long output must pause, once the HTTP checks are done, before a server is stopped: what it
/// logs about the last request is then in its output on both sides alike.
const SETTLE_QUIET: Duration = Duration::from_millis(300);
/// The longest that wait may take.
const SETTLE_MAX: Duration = Duration::from_secs(2);
/// How often a port that does not answer yet is tried again.
const RETRY: Duration = Duration::from_millis(100);

/// What to run and how, the same for both sides.
#[derive(Debug, Clone)]
pub struct Checks {
    /// Run the image's own command (`--no-run` turns it off).
    pub run: bool,
    /// How long each run may take; a command still running then is stopped.
    pub timeout: Duration,
    /// How many times everything is run on each side.
    pub runs: u32,
    /// `--exec`: commands run with `/bin/sh -c` in a fresh container of the image.
    pub execs: Vec<String>,
    /// `--http`: requests made while the image's own command runs.
    pub http: Vec<HttpProbe>,
    /// Response headers compared (lower case).
    pub headers: Vec<String>,
    pub masks: Masks,
    pub limits: Limits,
}

/// `--http PORT[/PATH]`: a GET of PATH on the container's PORT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    pub port: u16,
    /// Starts with `/`.
    pub path: String,
}

impl FromStr for HttpProbe {
    type Err = BuildError;

    fn from_str(s: &str) -> Result<HttpProbe> {
        let bad = |reason: &str| BuildError::InvalidValue { what: "--http", value: s.to_string(), reason: reason.into() };
        let (port, path) = match s.find('/') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, "/"),
        };
        let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| bad("use PORT or PORT/PATH, e.g. 8080 or 8080/healthz"))?;
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) || path.contains('#') {
            return Err(bad("the path must be a URL path without spaces or a fragment"));
        }
        Ok(HttpProbe { port, path: path.to_string() })
    }
}

impl std::fmt::Display for HttpProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GET :{}{}", self.port, self.path)
    }
}

/// One thing observed: a check (`run`, `exec: CMD`, `GET :8080/`) and a field of it (`exit`,
/// `stdout`, `status`…).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Aspect {
    pub check: String,
    pub field: String,
}

impl Aspect {
    fn new(check: &str, field: &str) -> Aspect {
        Aspect { check: check.to_string(), field: field.to_string() }
    }
}

/// What one run of one image gave: each aspect with its masked value, in the order observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    pub values: Vec<(Aspect, String)>,
}

impl Observation {
    fn push(&mut self, check: &str, field: &str, value: String) {
        self.values.push((Aspect::new(check, field), value));
    }
}

/// The check name of `--exec CMD`.
pub fn exec_check(cmd: &str) -> String {
    format!("exec: {cmd}")
}

/// Run everything `checks` asks for once on `image`; containers are named after `name_base`
/// and removed before this returns (on interruption, by the engine's leftovers).
pub async fn observe(engine: &dyn Engine, image: &str, name_base: &str, checks: &Checks) -> Result<Observation> {
    let client = http_client(checks.timeout)?;
    let mut obs = Observation::default();
    if checks.run {
        let spec = ContainerSpec {
            name: Some(container::name(name_base)),
            image: image.to_string(),
            publish: dedup_ports(&checks.http),
            ..Default::default()
        };
        let (run, answers) = run_container(engine, &spec, checks, &client).await;
        obs.push("run", "exit", run.ended.describe(checks.timeout, !checks.http.is_empty()));
        obs.push("run", "stdout", checks.masks.apply(&run.stdout, &run.hostnames));
        obs.push("run", "stderr", checks.masks.apply(&run.stderr, &run.hostnames));
        for (probe, answer) in checks.http.iter().zip(answers) {
            let check = probe.to_string();
            match answer {
                Answer::Got { status, headers, body } => {
                    obs.push(&check, "status", status.to_string());
                    for (name, value) in headers {
                        let value = value.map(|v| checks.masks.apply(&v, &run.hostnames)).unwrap_or_else(|| "(none)".into());
                        obs.push(&check, &format!("header {name}"), value);
                    }
                    obs.push(&check, "body", checks.masks.apply(&body, &run.hostnames));
                }
                Answer::None(why) => {
                    obs.push(&check, "status", format!("no answer: {why}"));
                    for name in &checks.headers {
                        obs.push(&check, &format!("header {name}"), "(no answer)".into());
                    }
                    obs.push(&check, "body", "(no answer)".into());
                }
            }
        }
    }
    for cmd in &checks.execs {
        let spec = ContainerSpec {
            name: Some(container::name(name_base)),
            image: image.to_string(),
            cmd: vec!["/bin/sh".into(), "-c".into(), cmd.clone()],
            entrypoint: Some(Vec::new()),
            ..Default::default()
        };
        let (run, _) = run_container(engine, &spec, &Checks { http: Vec::new(), ..checks.clone() }, &client).await;
        let check = exec_check(cmd);
        obs.push(&check, "exit", run.ended.describe(checks.timeout, false));
        obs.push(&check, "stdout", checks.masks.apply(&run.stdout, &run.hostnames));
        obs.push(&check, "stderr", checks.masks.apply(&run.stderr, &run.hostnames));
    }
    Ok(obs)
}

fn dedup_ports(probes: &[HttpProbe]) -> Vec<u16> {
    let mut ports: Vec<u16> = probes.iter().map(|p| p.port).collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// A client for the app's own port: no proxy (the environment's must not see the request), no
/// redirects (a 3xx is an answer to compare), no cookies.
fn http_client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .build()
        .map_err(|e| BuildError::io("setting up the HTTP client", std::io::Error::other(e)))
}

/// How a container's command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    Exited(i64),
    /// Still running at the timeout: stopped.
    TimedOut,
    /// Still running when the HTTP checks were done: stopped.
    Serving,
    /// The engine could not create or start it.
    NotStarted(String),
}

impl Ended {
    fn describe(&self, timeout: Duration, serving: bool) -> String {
        match self {
            Ended::Exited(code) => format!("exit {code}"),
            Ended::TimedOut if serving => format!("still running at the timeout ({} s)", timeout.as_secs()),
            Ended::TimedOut => format!("timed out after {} s", timeout.as_secs()),
            Ended::Serving => "still running after the checks".into(),
            Ended::NotStarted(why) => format!("did not start: {why}"),
        }
    }
}

/// What a container printed, kept up to a limit per stream.
struct Captured {
    streams: [(Vec<u8>, bool); 2],
    limit: u64,
    /// Bumped on every chunk: a settle wait sees whether output is still coming.
    chunks: u64,
}

impl Captured {
    fn text(&self, i: usize, limits: &Limits) -> String {
        let (data, cut) = &self.streams[i];
        let mut text = String::from_utf8_lossy(data).into_owned();
        if *cut {
            text.push_str(&format!("\n[cut here: the output goes on beyond {} of {}]", Limit::VerifyOutput, limits.shown(Limit::VerifyOutput)));
        }
        text
    }
}

struct CaptureSink(Arc<Mutex<Captured>>);

impl OutputSink for CaptureSink {
    fn output(&mut self, stream: OutputStream, data: &[u8]) {
        let mut c = self.0.lock().unwrap();
        c.chunks += 1;
        let limit = c.limit as usize;
        let (kept, cut) = &mut c.streams[if stream == OutputStream::Stdout { 0 } else { 1 }];
        let room = limit.saturating_sub(kept.len());
        kept.extend_from_slice(&data[..data.len().min(room)]);
        *cut |= data.len() > room;
    }
}

struct RunResult {
    ended: Ended,
    stdout: String,
    stderr: String,
    /// Names the container knows itself by, masked as `<hostname>`.
    hostnames: Vec<String>,
}

/// An HTTP check's answer, or why there was none.
enum Answer {
    Got { status: u16, headers: Vec<(String, Option<String>)>, body: String },
    None(String),
}

/// Create and run one container: until it exits or the timeout, or, with HTTP checks, until they
/// are done. The container is removed before this returns.
async fn run_container(engine: &dyn Engine, spec: &ContainerSpec, checks: &Checks, client: &reqwest::Client) -> (RunResult, Vec<Answer>) {
    let captured = Arc::new(Mutex::new(Captured { streams: Default::default(), limit: checks.limits.verify_output, chunks: 0 }));
    let not_started = |why: String, answers| {
        let result = RunResult { ended: Ended::NotStarted(why), stdout: String::new(), stderr: String::new(), hostnames: Vec::new() };
        (result, answers)
    };
    let no_answers = |why: &str| checks.http.iter().map(|_| Answer::None(why.to_string())).collect::<Vec<_>>();
    let id = match engine.create_container(spec).await {
        Ok(id) => id,
        Err(e) => return not_started(s2i_engine::error_chain(&e), no_answers("the container did not start")),
    };
    let deadline = Instant::now() + checks.timeout;
    let mut sink = CaptureSink(captured.clone());
    let answered = Mutex::new(Vec::new());
    let ended = {
        let run = engine.run_container(&id, None, &mut sink);
        tokio::pin!(run);
        let exited = |r: s2i_engine::Result<i64>| match r {
            Ok(code) => Ended::Exited(code),
            Err(e) => Ended::NotStarted(s2i_engine::error_chain(&e)),
        };
        if checks.http.is_empty() {
            tokio::select! {
                r = &mut run => exited(r),
                () = tokio::time::sleep_until(deadline) => Ended::TimedOut,
            }
        } else {
            let probes = probe_all(engine, &id, checks, client, deadline, &answered);
            tokio::pin!(probes);
            tokio::select! {
                r = &mut run => exited(r),
                () = &mut probes => {
                    settle(&mut run, &captured, deadline).await.map(exited).unwrap_or(if Instant::now() >= deadline { Ended::TimedOut } else { Ended::Serving })
                }
            }
        }
    };
    drop(sink);
    container::remove(engine, &id).await;
    // Checks the container did not live to answer.
    let mut answers = answered.into_inner().unwrap();
    let missing = checks.http.len() - answers.len();
    answers.extend(no_answers("the container exited first").into_iter().take(missing));
    let c = captured.lock().unwrap();
    let hostnames = vec![id.clone(), id.chars().take(12).collect()];
    (RunResult { ended, stdout: c.text(0, &checks.limits), stderr: c.text(1, &checks.limits), hostnames }, answers)
}

/// Keep the container running until its output pauses (or it exits, or the deadline): `Some`
/// with its result if it exited meanwhile.
async fn settle<F: std::future::Future<Output = s2i_engine::Result<i64>> + Unpin>(
    run: &mut F,
    captured: &Mutex<Captured>,
    deadline: Instant,
) -> Option<s2i_engine::Result<i64>> {
    let until = deadline.min(Instant::now() + SETTLE_MAX);
    loop {
        let before = captured.lock().unwrap().chunks;
        tokio::select! {
            r = &mut *run => return Some(r),
            () = tokio::time::sleep(SETTLE_QUIET) => {
                if captured.lock().unwrap().chunks == before || Instant::now() >= until {
                    return None;
                }
            }
        }
    }
}

/// Each HTTP check in turn, each waiting for its port to answer until the deadline; the answers
/// go to `answered` as they come.
async fn probe_all(engine: &dyn Engine, id: &str, checks: &Checks, client: &reqwest::Client, deadline: Instant, answered: &Mutex<Vec<Answer>>) {
    for probe in &checks.http {
        let answer = probe_one(engine, id, probe, checks, client, deadline).await;
        answered.lock().unwrap().push(answer);
    }
}

async fn probe_one(engine: &dyn Engine, id: &str, probe: &HttpProbe, checks: &Checks, client: &reqwest::Client, deadline: Instant) -> Answer {
    let mut last = String::from("the port was never published");
    loop {
        let addr = match engine.published_port(id, probe.port).await {
            Ok(Some(addr)) => Some(addr),
            Ok(None) => None,
            Err(e) => {
                last = s2i_engine::error_chain(&e);
                None
            }
        };
        if let Some(addr) = addr {
            match get(client, addr, probe, checks, deadline).await {
                Ok(answer) => return answer,
                Err(why) => {
                    debug!("{probe}: no answer yet at {addr}: {why}");
                    last = why;
                }
            }
        }
        if Instant::now() + RETRY >= deadline {
            return Answer::None(format!("none within {} s (last: {})", checks.timeout.as_secs(), last));
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// One GET, with the body kept up to the limit. `Host` names the container's port, so that both
/// sides see the same request whatever port the engine published it on.
async fn get(client: &reqwest::Client, addr: SocketAddr, probe: &HttpProbe, checks: &Checks, deadline: Instant) -> std::result::Result<Answer, String> {
    let url = format!("http://{addr}{}", probe.path);
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
    let request = client.get(&url).header(reqwest::header::HOST, format!("localhost:{}", probe.port)).timeout(left);
    let mut resp = request.send().await.map_err(|e| s2i_engine::error_chain(&e))?;
    let status = resp.status().as_u16();
    let headers = checks
        .headers
        .iter()
        .map(|name| (name.clone(), resp.headers().get(name.as_str()).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())))
        .collect();
    let limit = checks.limits.verify_output as usize;
    let mut body = Vec::new();
    let mut cut = false;
    loop {
        // An answer that started counts even if its body breaks off: what came is compared.
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() > room {
                    cut = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                body.extend_from_slice(format!("\n[the body broke off: {}]", s2i_engine::error_chain(&e)).as_bytes());
                break;
            }
        }
    }
    let mut text = match String::from_utf8(body) {
        Ok(text) => text,
        Err(e) => {
            let bytes = e.into_bytes();
            format!("({} bytes of binary data, sha256 {})", bytes.len(), s2i_registry::digest::hex_sha256(&bytes))
        }
    };
    if cut {
        text.push_str(&format!("\n[cut here: the body goes on beyond {} of {}]", Limit::VerifyOutput, checks.limits.shown(Limit::VerifyOutput)));
    }
    Ok(Answer::Got { status, headers, body: text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_checks_parse() {
        assert_eq!("8080".parse::<HttpProbe>().unwrap(), HttpProbe { port: 8080, path: "/".into() });
        assert_eq!("8080/healthz?full=1".parse::<HttpProbe>().unwrap(), HttpProbe { port: 8080, path: "/healthz?full=1".into() });
        assert_eq!("80/".parse::<HttpProbe>().unwrap().to_string(), "GET :80/");
        for bad in ["", "0", "http", "70000/", "8080/a b", "8080/#x", ":8080/"] {
            let err = bad.parse::<HttpProbe>().unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid --http {bad:?}")), "{err}");
        }
    }

    #[test]
    fn output_is_kept_up_to_the_limit_and_says_where_it_was_cut() {
        let captured = Arc::new(Mutex::new(Captured { streams: Default::default(), limit: 8, chunks: 0 }));
        let mut sink = CaptureSink(captured.clone());
        sink.output(OutputStream::Stdout, b"hello ");
        sink.output(OutputStream::Stdout, b"world\n");
        sink.output(OutputStream::Stderr, b"ok\n");
        let c = captured.lock().unwrap();
        let limits = Limits { verify_output: 8, ..Limits::default() };
        assert_eq!(c.text(0, &limits), "hello wo\n[cut here: the output goes on beyond the verify output limit (S2I_LIMIT_VERIFY_OUTPUT) of 8 bytes]");
        assert_eq!(c.text(1, &limits), "ok\n");
        assert_eq!(c.chunks, 3);
    }

    #[test]
    fn outcomes_read_as_words() {
        let t = Duration::from_secs(30);
        assert_eq!(Ended::Exited(3).describe(t, false), "exit 3");
        assert_eq!(Ended::TimedOut.describe(t, false), "timed out after 30 s");
        assert_eq!(Ended::TimedOut.describe(t, true), "still running at the timeout (30 s)");
        assert_eq!(Ended::Serving.describe(t, true), "still running after the checks");
    }
}
