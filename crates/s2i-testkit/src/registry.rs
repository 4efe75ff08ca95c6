//! A real registry for tests: Debian's `docker-registry` (distribution 2.8) on a free 127.0.0.1
//! port, with TLS (a fresh self-signed certificate for IP 127.0.0.1, localhost and
//! [`REGISTRY_NAME`]) and htpasswd users, its data
//! in a temp dir. Plus what tests around it need: Docker config files for its users, pushes with
//! the `docker` CLI under a private `DOCKER_CONFIG`, and a fake credential helper.
//!
//! The registry process never outlives the test process: it runs under a small shell watchdog
//! that kills it as soon as the pipe from this process closes (on drop, or when the test process
//! dies however it dies).

use std::ffi::OsString;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::random_hex;

/// A name of every test registry besides 127.0.0.1 and localhost, in its certificate (`.test` is
/// reserved: no real host has it).
pub const REGISTRY_NAME: &str = "registry.s2i.test";

/// The registry program, from Debian's `docker-registry` package.
pub const REGISTRY_PROGRAM: &str = "docker-registry";

/// A user of a [`TestRegistry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryUser {
    /// The user name.
    pub name: String,
    /// The password.
    pub password: String,
}

/// A running registry; stopped (killed and reaped) and its data removed on drop.
pub struct TestRegistry {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    watchdog: Child,
    /// The watchdog's stdin: closing it stops the registry.
    lifeline: Option<ChildStdin>,
    user: RegistryUser,
    tricky_user: RegistryUser,
    /// A Docker config dir logged in as [`TestRegistry::user`], for pushes.
    docker_config: tempfile::TempDir,
    /// The token service, when the registry uses token auth.
    token_server: Option<TokenServer>,
}

/// How a [`TestRegistry`] differs from the default one (TLS, htpasswd auth).
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Token auth instead of htpasswd (see [`TestRegistry::start_with_token_auth`]).
    pub token_auth: bool,
    /// Plain HTTP instead of TLS.
    pub plain_http: bool,
    /// The registry's external URL (distribution's `http.host`), e.g. `http://127.0.0.1:PORT`:
    /// the base of every URL it hands out, an upload's `Location` included. With another
    /// server's URL, uploads are sent there.
    pub external_url: Option<String>,
    /// Answer blob downloads with `307 Temporary Redirect` to this base URL followed by the
    /// blob's storage path (distribution's `redirect` storage middleware), as a registry whose
    /// blobs live in S3 or a CDN does.
    pub blob_redirect: Option<String>,
}

impl TestRegistry {
    /// Start a registry with TLS and htpasswd auth (HTTP Basic) on a free port of 127.0.0.1.
    /// Panics, saying what is missing and how to get it, when `docker-registry` is not installed.
    pub fn start() -> TestRegistry {
        Self::start_with_options(RegistryOptions::default())
    }

    /// Start a registry with TLS and token auth (`Bearer`, the distribution token protocol, as
    /// Docker Hub, GHCR or Harbor do it): a token service on another free port of 127.0.0.1
    /// (plain HTTP) grants tokens signed by a key the registry trusts. [`TestRegistry::user`] gets
    /// every action it asks for, [`TestRegistry::tricky_user`] only `pull`, an anonymous client a
    /// token without any access. A POST with `grant_type=refresh_token` and
    /// [`TestRegistry::identity_token`] acts for the ordinary user.
    pub fn start_with_token_auth() -> TestRegistry {
        Self::start_with_options(RegistryOptions { token_auth: true, ..Default::default() })
    }

    /// Start a registry set up as `options` say. A registry whose uploads go elsewhere
    /// ([`RegistryOptions::external_url`]) cannot be pushed to with [`TestRegistry::docker_push`].
    pub fn start_with_options(options: RegistryOptions) -> TestRegistry {
        assert!(
            which(REGISTRY_PROGRAM).is_some(),
            "{REGISTRY_PROGRAM} is not installed: the registry tests need Debian's docker-registry \
             package (apt-get install --no-install-recommends docker-registry, or run scripts/test.sh as root)"
        );
        let dir = tempfile::Builder::new().prefix("s2i-test-registry-").tempdir().expect("creating the registry's temp dir");
        let user = RegistryUser { name: "s2i-user".into(), password: format!("pw-{}", random_hex(12)) };
        let tricky_user = RegistryUser { name: "s2i-tricky".into(), password: TRICKY_PASSWORD.into() };
        write_tls_files(dir.path());
        let htpasswd: String = [&user, &tricky_user]
            .iter()
            .map(|u| format!("{}:{}\n", u.name, bcrypt::hash(&u.password, 5).expect("bcrypt")))
            .collect();
        std::fs::write(dir.path().join("htpasswd"), htpasswd).expect("writing htpasswd");
        std::fs::create_dir(dir.path().join("data")).expect("creating the registry's data dir");
        let mut token_server =
            options.token_auth.then(|| TokenServer::start(dir.path(), vec![(user.clone(), true), (tricky_user.clone(), false)]));

        // The port is free when asked and taken a moment later: a lost race is retried.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let auth = match &token_server {
                Some(t) => token_auth_config(dir.path(), &t.realm()),
                None => htpasswd_auth_config(dir.path()),
            };
            std::fs::write(dir.path().join("config.yml"), registry_config(dir.path(), addr, &auth, &options)).expect("writing config.yml");
            let (mut watchdog, lifeline) = spawn_watchdog(dir.path());
            match wait_listening(addr, &mut watchdog, &dir.path().join("registry.log")) {
                Ok(()) => {
                    let registry = TestRegistry {
                        docker_config: tempfile::Builder::new().prefix("s2i-test-docker-config-").tempdir().expect("temp dir"),
                        dir,
                        addr,
                        watchdog,
                        lifeline: Some(lifeline),
                        user,
                        tricky_user,
                        token_server: token_server.take(),
                    };
                    registry.docker_login(registry.docker_config.path(), &registry.user);
                    return registry;
                }
                Err(log) => {
                    drop(lifeline);
                    let _ = watchdog.wait();
                    last_log = log;
                }
            }
        }
        panic!("the test registry did not start; its log:\n{last_log}");
    }

    /// `127.0.0.1:PORT`, the registry part of image names.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `registry.s2i.test:PORT` ([`REGISTRY_NAME`], which its certificate names too): the registry
    /// under a name that is not loopback to s2i, which then verifies its TLS. Resolves only where
    /// a test maps it to 127.0.0.1 (an /etc/hosts of its own).
    pub fn named_host(&self) -> String {
        format!("{REGISTRY_NAME}:{}", self.port())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:PORT/<repo>`.
    pub fn image(&self, repo: &str) -> String {
        format!("{}/{repo}", self.host())
    }

    /// The refresh token (Docker's `identitytoken`) the token service takes for the ordinary user.
    /// Panics for a registry without token auth.
    pub fn identity_token(&self) -> String {
        self.token_server.as_ref().expect("a registry started with token auth").identity_token.clone()
    }

    /// The token service's `/token` URL, when the registry uses token auth.
    pub fn token_realm(&self) -> Option<String> {
        self.token_server.as_ref().map(TokenServer::realm)
    }

    /// An ordinary user.
    pub fn user(&self) -> &RegistryUser {
        &self.user
    }

    /// A user whose password makes the base64 of Docker's `X-Registry-Auth` JSON contain `+` and
    /// `/` (and the base64 of `user:password` too), whatever the port.
    pub fn tricky_user(&self) -> &RegistryUser {
        &self.tricky_user
    }

    /// The registry's certificate (PEM), to trust it as a CA.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// The Docker config dir that [`TestRegistry::docker_push`] uses: its `config.json` is what
    /// `docker login` wrote for [`TestRegistry::user`].
    pub fn docker_config_dir(&self) -> &Path {
        self.docker_config.path()
    }

    /// The raw manifest the registry serves for `image` (skopeo reads it with the registry's
    /// user), or `None` when it has none.
    pub fn raw_manifest(&self, image: &str) -> Option<Vec<u8>> {
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false", "--authfile"])
            .arg(self.docker_config_dir().join("config.json"))
            .arg(format!("docker://{image}"))
            .output()
            .expect("skopeo is installed (scripts/test.sh installs it)");
        out.status.success().then_some(out.stdout)
    }

    /// Whether the registry holds `image`: whether anything was pushed there.
    pub fn holds(&self, image: &str) -> bool {
        self.raw_manifest(image).is_some()
    }

    /// Where the registry stores its blobs and repositories (its filesystem storage root).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file holding blob `digest` (`sha256:…`) in the registry's storage, to tamper with.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.data_dir().join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }

    /// What the registry logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `docker login` to this registry as `user`, with `DOCKER_CONFIG=config_dir`: writes
    /// `config_dir/config.json` as Docker writes it.
    pub fn docker_login(&self, config_dir: &Path, user: &RegistryUser) {
        let mut child = Command::new("docker")
            .arg("--config")
            .arg(config_dir)
            .args(["login", "--username", &user.name, "--password-stdin", &self.host()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running docker login");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(user.password.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker login {} failed: {}{}\nregistry log:\n{}",
            self.host(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Push the image factory's (the Docker daemon's) image `local` as `<this registry>/<repo_tag>`
    /// with the `docker` CLI (logged in as [`TestRegistry::user`]); the temporary local tag is
    /// removed again. Returns the pushed name and the manifest digest Docker reported.
    pub fn docker_push(&self, local: &str, repo_tag: &str) -> (String, String) {
        let remote = self.image(repo_tag);
        crate::factory_output(&["tag", local, &remote]);
        let out = crate::factory::factory_command()
            .arg("--config")
            .arg(self.docker_config.path())
            .args(["push", &remote])
            .stdin(Stdio::null())
            .output()
            .expect("running docker push");
        let _ = crate::factory::factory_command().args(["rmi", &remote]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "docker push {remote} failed: {stdout}{}\nregistry log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        let digest = stdout
            .split_whitespace()
            .skip_while(|w| *w != "digest:")
            .nth(1)
            .unwrap_or_else(|| panic!("no digest in docker push's output: {stdout}"))
            .to_string();
        (remote, digest)
    }

    /// `docker pull` of `name` into the engine under test, with the registry's pushing user;
    /// returns a guard that removes the pulled tag.
    pub fn docker_pull(&self, name: &str) -> PulledImage {
        let out = crate::engine_command()
            .arg("--config")
            .arg(self.docker_config.path())
            .args(["pull", name])
            .stdin(Stdio::null())
            .output()
            .expect("running docker pull");
        assert!(
            out.status.success(),
            "docker pull {name} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        PulledImage { name: name.to_string() }
    }

    /// A config.json value with an `auths` entry for this registry under `key` (as Docker writes
    /// it: `auth` is base64 of `user:password`).
    pub fn auths_config(&self, key: &str, user: &RegistryUser) -> serde_json::Value {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", user.name, user.password));
        serde_json::json!({ "auths": { key: { "auth": auth } } })
    }

    /// A config.json value that sends this registry to the helper `docker-credential-<name>`.
    pub fn cred_helpers_config(&self, name: &str) -> serde_json::Value {
        serde_json::json!({ "credHelpers": { self.host(): name } })
    }

    /// A config.json value whose credential store is `docker-credential-<name>`.
    pub fn creds_store_config(name: &str) -> serde_json::Value {
        serde_json::json!({ "auths": {}, "credsStore": name })
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        drop(self.token_server.take());
        // The watchdog kills and reaps the registry once its stdin closes, then exits.
        drop(self.lifeline.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.watchdog.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = self.watchdog.kill();
                    let _ = self.watchdog.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// A tag pulled into the engine under test, removed on drop.
pub struct PulledImage {
    name: String,
}

impl PulledImage {
    /// A guard for a name that something else pulls (or may pull), e.g. the engine under test.
    pub fn from_name(name: &str) -> PulledImage {
        PulledImage { name: name.to_string() }
    }

    /// The pulled name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PulledImage {
    fn drop(&mut self) {
        let _ = crate::engine_command().args(["rmi", &self.name]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// `>` and `~` give `+` and `?` gives `/` in base64 at one of any three consecutive offsets (their
/// low six bits are 111110 and 111111), so this holds both whatever the JSON around it.
const TRICKY_PASSWORD: &str = "Tricky>>>???~~~pw";

/// Write `value` as `dir/config.json` (creating `dir`) and return the file's path.
pub fn write_docker_config(dir: &Path, value: &serde_json::Value) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

fn write_tls_files(dir: &Path) {
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string(), REGISTRY_NAME.to_string()])
        .expect("making a self-signed certificate");
    std::fs::write(dir.join("cert.pem"), key.cert.pem()).expect("writing cert.pem");
    std::fs::write(dir.join("key.pem"), key.signing_key.serialize_pem()).expect("writing key.pem");
}

fn registry_config(dir: &Path, addr: SocketAddr, auth: &str, options: &RegistryOptions) -> String {
    let d = dir.display();
    let tls = if options.plain_http { String::new() } else { format!("  tls:\n    certificate: {d}/cert.pem\n    key: {d}/key.pem\n") };
    let host = options.external_url.as_ref().map_or(String::new(), |url| format!("  host: {url}\n"));
    let middleware = options.blob_redirect.as_ref().map_or(String::new(), |url| {
        format!("middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: {url}\n")
    });
    format!(
        "version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {d}/data
  delete:
    enabled: true
http:
  addr: {addr}
  secret: {secret}
{tls}{host}{auth}{middleware}",
        secret = random_hex(32)
    )
}

fn htpasswd_auth_config(dir: &Path) -> String {
    format!("auth:\n  htpasswd:\n    realm: s2i-test\n    path: {}/htpasswd\n", dir.display())
}

const TOKEN_SERVICE: &str = "s2i-test-registry";
const TOKEN_ISSUER: &str = "s2i-test-token-issuer";

fn token_auth_config(dir: &Path, realm: &str) -> String {
    format!(
        "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}/token-cert.pem\n",
        dir.display()
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("finding a free port").port()
}

/// `sh` runs the registry in the background and waits on its stdin; when that closes (we dropped
/// it, or this process died), it kills the registry and reaps it.
fn spawn_watchdog(dir: &Path) -> (Child, ChildStdin) {
    let script = r#"
"$1" serve "$2" >"$3" 2>&1 </dev/null &
pid=$!
read -r _ || true
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 0
"#;
    let mut child = Command::new("sh")
        .args(["-c", script, "s2i-test-registry-watchdog", REGISTRY_PROGRAM])
        .arg(dir.join("config.yml"))
        .arg(dir.join("registry.log"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("running sh for the registry");
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// Wait until the registry accepts connections; `Err(log)` when it stopped or did not listen.
fn wait_listening(addr: SocketAddr, watchdog: &mut Child, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let read_log = || {
        let mut s = String::new();
        let _ = std::fs::File::open(log).and_then(|mut f| f.read_to_string(&mut s));
        s
    };
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        let text = read_log();
        // The registry exits at once on a taken port; the watchdog itself still waits.
        if text.contains("address already in use") || text.contains("level=fatal") || matches!(watchdog.try_wait(), Ok(Some(_))) {
            return Err(text);
        }
        if Instant::now() > deadline {
            return Err(format!("(not listening on {addr} after 20 s)\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(program)).find(|p| p.is_file())
}

/// The token service of a registry with token auth: grants JWTs (ES256, the signing certificate
/// in the `x5c` header, which the registry trusts) over plain HTTP on 127.0.0.1.
struct TokenServer {
    addr: SocketAddr,
    identity_token: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct TokenIssuer {
    key: ring::signature::EcdsaKeyPair,
    cert_der: Vec<u8>,
    /// `(user, may push)`.
    users: Vec<(RegistryUser, bool)>,
    identity_token: String,
}

impl TokenServer {
    fn start(dir: &Path, users: Vec<(RegistryUser, bool)>) -> TokenServer {
        let key_pair = rcgen::KeyPair::generate().expect("a token signing key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("certificate parameters");
        params.distinguished_name.push(rcgen::DnType::CommonName, TOKEN_ISSUER);
        let cert = params.self_signed(&key_pair).expect("the token signing certificate");
        std::fs::write(dir.join("token-cert.pem"), cert.pem()).expect("writing token-cert.pem");
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &key_pair.serialize_der(), &rng)
            .expect("loading the token signing key");
        let identity_token = format!("refresh-{}", random_hex(24));
        let issuer = std::sync::Arc::new(TokenIssuer { key, cert_der: cert.der().to_vec(), users, identity_token: identity_token.clone() });
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the token service");
        let addr = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        let issuer = issuer.clone();
                        std::thread::spawn(move || issuer.answer(conn));
                    }
                }
            })
        };
        TokenServer { addr, identity_token, stop, thread: Some(thread) }
    }

    fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `a=b&c=d` (URL-encoded) as pairs.
fn form_pairs(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

impl TokenIssuer {
    fn answer(&self, conn: TcpStream) {
        use std::io::{BufRead, BufReader, Write};
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reader = BufReader::new(match conn.try_clone() {
            Ok(c) => c,
            Err(_) => return,
        });
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.is_empty() {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let (mut authorization, mut length) = (None, 0usize);
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "authorization" => authorization = Some(value.trim().to_string()),
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length.min(1 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut params = form_pairs(target.split_once('?').map_or("", |(_, q)| q));
        if method == "POST" {
            params.extend(form_pairs(&String::from_utf8_lossy(&body)));
        }
        let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let (status, reply) = match self.grant(&method, authorization.as_deref(), &param) {
            Some((subject, actions_allowed)) => {
                let access: Vec<serde_json::Value> = params
                    .iter()
                    .filter(|(k, _)| k == "scope")
                    .filter_map(|(_, scope)| {
                        let mut it = scope.splitn(3, ':');
                        let (kind, name, actions) = (it.next()?, it.next()?, it.next()?);
                        let granted: Vec<&str> = actions.split(',').filter(|a| actions_allowed.contains(a)).collect();
                        Some(serde_json::json!({"type": kind, "name": name, "actions": granted}))
                    })
                    .collect();
                let token = self.sign(&subject, access);
                ("200 OK", serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string())
            }
            None => ("401 Unauthorized", r#"{"details":"invalid credentials"}"#.to_string()),
        };
        let mut conn = conn;
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
            reply.len()
        );
    }

    /// Who asks and what they may do: `None` refuses them.
    fn grant(&self, method: &str, authorization: Option<&str>, param: &dyn Fn(&str) -> Option<String>) -> Option<(String, Vec<&'static str>)> {
        use base64::Engine as _;
        let all = vec!["pull", "push"];
        let ordinary = &self.users[0].0;
        if method == "POST" {
            return (param("grant_type").as_deref() == Some("refresh_token") && param("refresh_token").as_deref() == Some(self.identity_token.as_str()))
                .then(|| (ordinary.name.clone(), all));
        }
        let Some(auth) = authorization else { return Some((String::new(), Vec::new())) };
        let decoded = base64::engine::general_purpose::STANDARD.decode(auth.strip_prefix("Basic ")?).ok()?;
        let (name, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        let (_, may_push) = self.users.iter().find(|(u, _)| u.name == name && u.password == password)?;
        Some((name.to_string(), if *may_push { all } else { vec!["pull"] }))
    }

    fn sign(&self, subject: &str, access: Vec<serde_json::Value>) -> String {
        use base64::Engine as _;
        let b64url = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.cert_der)],
        });
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now - 10,
            "jti": random_hex(16),
            "access": access,
        });
        let signed = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
        let signature = self.key.sign(&ring::rand::SystemRandom::new(), signed.as_bytes()).expect("signing a token");
        format!("{signed}.{}", b64url(signature.as_ref()))
    }
}

/// A fake `docker-credential-<name>` program (a shell script in its own temp dir): `get` answers
/// the credentials of one server, says "credentials not found" for any other, and can be told to
/// fail or to hang. Put [`FakeCredentialHelper::dir`] on the `PATH` of the process under test.
pub struct FakeCredentialHelper {
    dir: tempfile::TempDir,
    name: String,
}

impl FakeCredentialHelper {
    /// A helper that knows `user`'s credentials for `server` (the server name as s2i or Docker
    /// asks for it, e.g. `127.0.0.1:5000`).
    pub fn new(server: &str, user: &RegistryUser) -> FakeCredentialHelper {
        let dir = tempfile::Builder::new().prefix("s2i-test-cred-helper-").tempdir().expect("temp dir");
        let name = format!("s2itest{}", random_hex(8));
        let answer = serde_json::json!({ "ServerURL": server, "Username": user.name, "Secret": user.password });
        std::fs::write(dir.path().join("server"), server).unwrap();
        std::fs::write(dir.path().join("answer.json"), answer.to_string()).unwrap();
        let script = r#"#!/bin/sh
dir=$(dirname "$0")
server=$(cat)
printf '%s %s\n' "$1" "$server" >>"$dir/calls"
[ "$1" = get ] || { echo "unsupported action: $1" >&2; exit 1; }
[ -f "$dir/hang" ] && exec sleep 600
if [ -f "$dir/fail" ]; then cat "$dir/fail" >&2; exit 3; fi
if [ "$server" = "$(cat "$dir/server")" ]; then cat "$dir/answer.json"; exit 0; fi
echo "credentials not found in native keychain"
exit 1
"#;
        crate::write_file(&dir.path().join(format!("docker-credential-{name}")), script, 0o755);
        FakeCredentialHelper { dir, name }
    }

    /// The `NAME` of `docker-credential-NAME`, for `credsStore` or `credHelpers`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory holding the program.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `PATH` value with the helper's directory first, for the process under test.
    pub fn path_env(&self) -> OsString {
        let mut dirs = vec![self.dir.path().to_path_buf()];
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        std::env::join_paths(dirs).expect("joining PATH")
    }

    /// From now on, fail (exit 3) printing `message` on stderr.
    pub fn fail_with(&self, message: &str) {
        std::fs::write(self.dir.path().join("fail"), message).unwrap();
    }

    /// From now on, never answer.
    pub fn hang(&self) {
        std::fs::write(self.dir.path().join("hang"), "").unwrap();
    }

    /// What it was asked so far: `get <server>` lines.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls")).unwrap_or_default().lines().map(str::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pids of processes whose command line mentions `marker`.
    fn processes_mentioning(marker: &str) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != std::process::id())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
            })
            .collect()
    }

    fn wait_gone(marker: &str) -> Vec<u32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = processes_mentioning(marker);
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn serves_tls_with_auth_and_stops_on_drop() {
        let reg = TestRegistry::start();
        let dir = reg.dir.path().to_path_buf();
        let marker = dir.display().to_string();
        assert_eq!(processes_mentioning(&marker).len(), 2, "the watchdog and the registry");
        // docker login (done by start) proves TLS and htpasswd; the config it wrote has the user.
        let config = std::fs::read_to_string(reg.docker_config_dir().join("config.json")).unwrap();
        assert!(config.contains(&reg.host()), "{config}");
        let docker_config = reg.docker_config_dir().to_path_buf();
        drop(reg);
        assert_eq!(wait_gone(&marker), Vec::<u32>::new(), "registry processes left");
        assert!(!dir.exists() && !docker_config.exists());
    }

    /// Set for the child process of `dies_with_the_test_process`.
    const CHILD: &str = "S2I_TESTKIT_REGISTRY_CHILD";

    /// Run by `dies_with_the_test_process` as a process of its own.
    #[test]
    #[ignore = "a helper process of dies_with_the_test_process"]
    fn registry_in_a_process_that_dies() {
        // Only as the child of that test: a run with --include-ignored (the Podman run of
        // scripts/test.sh) reaches this too, and must not abort its whole test binary.
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let reg = TestRegistry::start();
        println!("REGISTRY_DIR={}", reg.dir.path().display());
        println!("DOCKER_CONFIG_DIR={}", reg.docker_config_dir().display());
        std::process::abort();
    }

    #[test]
    fn dies_with_the_test_process() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "registry::tests::registry_in_a_process_that_dies", "--include-ignored", "--nocapture"])
            .env(CHILD, "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let value = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("no {key} in the child's output: {stdout}{}", String::from_utf8_lossy(&out.stderr)))
        };
        let (dir, docker_config) = (value("REGISTRY_DIR="), value("DOCKER_CONFIG_DIR="));
        assert!(!out.status.success(), "the child aborts");
        let left = wait_gone(&dir.display().to_string());
        // The aborted child could not remove its temp dirs: that is ours to do.
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&docker_config);
        assert_eq!(left, Vec::<u32>::new(), "the registry outlived its test process");
    }

    #[test]
    fn fake_helper_answers_one_server() {
        let user = RegistryUser { name: "u".into(), password: "p".into() };
        let helper = FakeCredentialHelper::new("127.0.0.1:5000", &user);
        let run = |server: &str| {
            let mut child = Command::new(helper.dir().join(format!("docker-credential-{}", helper.name())))
                .arg("get")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(server.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
        };
        let (code, stdout, _) = run("127.0.0.1:5000");
        let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!((code, answer["Username"].as_str(), answer["Secret"].as_str()), (Some(0), Some("u"), Some("p")));
        let (code, stdout, _) = run("other:1");
        assert_eq!((code, stdout.trim()), (Some(1), "credentials not found in native keychain"));
        helper.fail_with("locked");
        let (code, _, stderr) = run("127.0.0.1:5000");
        assert_eq!((code, stderr.as_str()), (Some(3), "locked"));
        assert_eq!(helper.calls(), vec!["get 127.0.0.1:5000", "get other:1", "get 127.0.0.1:5000"]);
    }
}
