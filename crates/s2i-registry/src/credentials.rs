//! Registry credentials, found where Docker finds them: a `config.json` (`auths`, `credHelpers`,
//! `credsStore`) or the legacy `~/.dockercfg`, named explicitly (`--dockercfg-path`) or at Docker's
//! default places. Credential helpers run as `docker-credential-NAME get`, found on `PATH`.
//!
//! `docker_credential` (the crate) was considered: it runs helpers without a timeout, takes a helper
//! name with `/` as a path, treats "credentials not found" as a failure, skips `~/.dockercfg`, and
//! its errors and `Debug` lose what a user needs (or show the secret). Hence this module.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::debug;

use crate::image_ref::DOCKER_HUB;

/// The key Docker Hub's credentials are stored under, and the server name its helpers expect.
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// Credentials for one registry. `Debug` never shows the secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// An OAuth refresh token (`identitytoken` in Docker's config.json), used instead of a password.
    pub identity_token: Option<String>,
    /// The registry these credentials are for, as the engine names it (`127.0.0.1:5000`, or
    /// `https://index.docker.io/v1/` for Docker Hub).
    pub server: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &if self.password.is_empty() { "" } else { "<redacted>" })
            .field("identity_token", &self.identity_token.as_ref().map(|_| "<redacted>"))
            .field("server", &self.server)
            .finish()
    }
}

/// Which file to read credentials from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigLocation {
    /// A file the user named (`--dockercfg-path`): it must exist. Either format is accepted.
    Explicit(PathBuf),
    /// Docker's places: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; when that file
    /// does not exist, the legacy `~/.dockercfg`. None of them existing means anonymous access.
    Default,
}

/// How a credential look-up goes: its helper programs' limits and where they are found.
#[derive(Debug, Clone)]
pub struct LookupOptions {
    /// How long a `docker-credential-*` helper may take to answer.
    pub helper_timeout: Duration,
    /// Where helpers are searched (a `PATH`-like list); `None` is this process's `PATH`.
    pub helper_path: Option<OsString>,
}

/// The environment variable that changes [`LookupOptions::helper_timeout`], named in its error.
/// This crate does not read it: s2i-core does, once per run.
pub const HELPER_TIMEOUT_ENV: &str = "S2I_CREDENTIAL_HELPER_TIMEOUT";

impl Default for LookupOptions {
    fn default() -> Self {
        LookupOptions { helper_timeout: Duration::from_secs(30), helper_path: None }
    }
}

/// Where credentials came from, or where they were looked for; for messages, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// An `auths` entry of a config file (or an entry of a legacy `.dockercfg`).
    File { path: PathBuf, key: String },
    /// A credential helper, named by `credHelpers` or `credsStore` in `config`.
    Helper { program: String, config: PathBuf },
    /// Handed over by the caller, not looked up.
    Given,
    /// Nothing for this registry: `looked_in` says where we looked.
    None { looked_in: String },
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::File { path, key } => write!(f, "auths entry {key:?} in {}", path.display()),
            CredentialSource::Helper { program, config } => write!(f, "{program} (configured in {})", config.display()),
            CredentialSource::Given => f.write_str("credentials given by the caller"),
            CredentialSource::None { looked_in } => f.write_str(looked_in),
        }
    }
}

/// The outcome of a look-up for one registry: credentials, or none, and where from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub credentials: Option<Credentials>,
    pub source: CredentialSource,
}

impl Resolved {
    /// Anonymous access, having looked in `looked_in` (`/root/.docker/config.json`).
    pub fn anonymous(looked_in: impl Into<String>) -> Resolved {
        Resolved { credentials: None, source: CredentialSource::None { looked_in: looked_in.into() } }
    }

    /// Credentials the caller already has.
    pub fn given(credentials: Credentials) -> Resolved {
        Resolved { credentials: Some(credentials), source: CredentialSource::Given }
    }

    /// The credentials an engine was handed for an image, or anonymous access when none were
    /// (which still gets a registry's anonymous token when it hands those out).
    pub fn given_or_anonymous(credentials: Option<&Credentials>) -> Resolved {
        match credentials {
            Some(c) => Resolved::given(c.clone()),
            None => Resolved::anonymous("no credentials were given for it"),
        }
    }

    /// Where credentials were looked for (anonymous) or found, for an error message.
    pub fn looked_in(&self) -> String {
        self.source.to_string()
    }
}

#[derive(Debug, Error)]
pub enum CredentialsError {
    #[error("the credentials file {path} does not exist")]
    ConfigMissing { path: PathBuf },

    #[error("cannot read the credentials file {path}: {source}")]
    ConfigUnreadable { path: PathBuf, source: std::io::Error },

    #[error("the credentials file {path} is not valid JSON: {reason}")]
    ConfigInvalid { path: PathBuf, reason: String },

    /// An `auth` value that is not base64 of `user:password` (the value itself is never shown).
    #[error("the auths entry {key:?} in {path} has an invalid \"auth\" value: {reason}")]
    BadAuthEntry { path: PathBuf, key: String, reason: &'static str },

    #[error("invalid credential helper name {name:?} in {config}: a helper is named by a word, run as docker-credential-NAME from PATH")]
    BadHelperName { name: String, config: PathBuf },

    #[error("credential helper docker-credential-{name} (configured in {config}) is not installed: no such program on PATH")]
    HelperNotFound { name: String, config: PathBuf },

    #[error("credential helper {program} (configured in {config}) did not answer within {} s", .timeout.as_secs())]
    HelperTimeout { program: String, config: PathBuf, timeout: Duration },

    #[error("credential helper {program} (configured in {config}) failed for {server}: {detail}")]
    HelperFailed { program: String, config: PathBuf, server: String, detail: String },
}

impl CredentialsError {
    /// What the user can do about it, in one line.
    pub fn hint(&self) -> String {
        match self {
            CredentialsError::ConfigMissing { .. } => "check the --dockercfg-path value, or leave it out to use Docker's config".into(),
            CredentialsError::ConfigUnreadable { .. } => "check the file's permissions".into(),
            CredentialsError::ConfigInvalid { .. } | CredentialsError::BadAuthEntry { .. } => {
                "fix the file, or log in again with `docker login` to rewrite it".into()
            }
            CredentialsError::BadHelperName { .. } => "name the helper as Docker does, e.g. \"credsStore\": \"pass\"".into(),
            CredentialsError::HelperNotFound { name, .. } => {
                format!("install docker-credential-{name} on PATH, or remove it from the config file")
            }
            CredentialsError::HelperTimeout { .. } => {
                format!("check that the helper works (`echo SERVER | docker-credential-NAME get`), or raise the limit with {HELPER_TIMEOUT_ENV}=SECONDS")
            }
            CredentialsError::HelperFailed { .. } => "check the helper by hand: `echo SERVER | docker-credential-NAME get`".into(),
        }
    }
}

/// The registry a config key or an image's domain designates, compared as Docker compares them:
/// no scheme, no path (`https://h:5000/v1/` is `h:5000`), and every name of Docker Hub is `docker.io`.
pub fn registry_key(name: &str) -> String {
    let rest = name.strip_prefix("https://").or_else(|| name.strip_prefix("http://")).unwrap_or(name);
    let host = rest.split('/').next().unwrap_or("");
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        other => other.to_string(),
    }
}

/// The server name to hand a helper (and the engine) for `registry`: Docker Hub's is its v1 URL.
pub fn server_name(registry: &str) -> String {
    if registry_key(registry) == DOCKER_HUB {
        DOCKER_HUB_SERVER.to_string()
    } else {
        registry.to_string()
    }
}

/// One `auths` entry, decoded.
#[derive(Clone, Default)]
struct AuthEntry {
    username: String,
    password: String,
    identity_token: Option<String>,
}

impl AuthEntry {
    fn is_empty(&self) -> bool {
        self.username.is_empty() && self.password.is_empty() && self.identity_token.is_none()
    }
}

/// A parsed credentials file (or the absence of one).
#[derive(Clone, Default)]
pub struct DockerConfig {
    /// The file read; `None` when none of the default places had one.
    path: Option<PathBuf>,
    /// The places looked at, for messages.
    looked_in: Vec<PathBuf>,
    /// `(key as written, entry)`, in the file's order.
    auths: Vec<(String, AuthEntry)>,
    creds_store: Option<String>,
    cred_helpers: Vec<(String, String)>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("path", &self.path)
            .field("auths", &self.auths.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("creds_store", &self.creds_store)
            .field("cred_helpers", &self.cred_helpers)
            .finish()
    }
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    auths: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: Option<std::collections::BTreeMap<String, String>>,
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

impl DockerConfig {
    /// Read the credentials file at `location`.
    pub fn load(location: &ConfigLocation) -> Result<DockerConfig, CredentialsError> {
        match location {
            ConfigLocation::Explicit(path) => match std::fs::read(path) {
                Ok(bytes) => DockerConfig::parse(path, &bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CredentialsError::ConfigMissing { path: path.clone() }),
                Err(source) => Err(CredentialsError::ConfigUnreadable { path: path.clone(), source }),
            },
            ConfigLocation::Default => {
                let mut looked_in = Vec::new();
                let config_json = match std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
                    Some(dir) => Some(PathBuf::from(dir).join("config.json")),
                    None => home_dir().map(|h| h.join(".docker/config.json")),
                };
                // Docker reads the legacy file only when config.json does not exist.
                let legacy = home_dir().map(|h| h.join(".dockercfg"));
                for path in config_json.into_iter().chain(legacy) {
                    match std::fs::read(&path) {
                        Ok(bytes) => {
                            let mut config = DockerConfig::parse(&path, &bytes)?;
                            looked_in.push(path);
                            config.looked_in = looked_in;
                            return Ok(config);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => looked_in.push(path),
                        Err(source) => return Err(CredentialsError::ConfigUnreadable { path, source }),
                    }
                }
                Ok(DockerConfig { looked_in, ..Default::default() })
            }
        }
    }

    /// Parse a file's content: a `config.json` (`auths`, `credHelpers`, `credsStore`) or a legacy
    /// `.dockercfg` (a map of registry to `{"auth", "email"}`).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<DockerConfig, CredentialsError> {
        let invalid = |reason: String| CredentialsError::ConfigInvalid { path: path.to_path_buf(), reason };
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        let serde_json::Value::Object(top) = value else {
            return Err(invalid("the top level is not an object".into()));
        };
        let is_config_json = ["auths", "credsStore", "credHelpers"].iter().any(|k| top.contains_key(*k));
        let is_legacy = !is_config_json
            && !top.is_empty()
            && top.values().all(|v| v.as_object().is_some_and(|o| o.contains_key("auth")));
        let (raw_auths, creds_store, cred_helpers) = if is_legacy {
            (top, None, Vec::new())
        } else {
            let raw: RawConfig = serde_json::from_value(serde_json::Value::Object(top)).map_err(|e| invalid(e.to_string()))?;
            (raw.auths.unwrap_or_default(), raw.creds_store, raw.cred_helpers.unwrap_or_default().into_iter().collect())
        };
        let mut auths = Vec::new();
        for (key, value) in raw_auths {
            let raw: RawEntry =
                serde_json::from_value(value).map_err(|e| invalid(format!("auths entry {key:?}: {e}")))?;
            let entry = decode_entry(raw).map_err(|reason| CredentialsError::BadAuthEntry {
                path: path.to_path_buf(),
                key: key.clone(),
                reason,
            })?;
            if !entry.is_empty() {
                auths.push((key, entry));
            }
        }
        Ok(DockerConfig {
            path: Some(path.to_path_buf()),
            looked_in: vec![path.to_path_buf()],
            auths,
            creds_store: creds_store.filter(|s| !s.is_empty()),
            cred_helpers: cred_helpers.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        })
    }

    /// The file that was read, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn looked_in_text(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None if self.looked_in.is_empty() => "no credentials file (neither DOCKER_CONFIG nor HOME is set)".into(),
            None => {
                let places: Vec<_> = self.looked_in.iter().map(|p| p.display().to_string()).collect();
                format!("no credentials file ({} do not exist)", places.join(", "))
            }
        }
    }

    /// The credentials for `registry` (an image's domain: `127.0.0.1:5000`, `docker.io`), looked up
    /// as Docker does: a `credHelpers` entry for it, else the `credsStore`, else an `auths` entry.
    pub async fn resolve(&self, registry: &str, opts: &LookupOptions) -> Result<Resolved, CredentialsError> {
        let wanted = registry_key(registry);
        let server = server_name(registry);
        let config_path = self.path.clone().unwrap_or_default();
        let helper = self
            .cred_helpers
            .iter()
            .find(|(k, _)| registry_key(k) == wanted)
            .map(|(_, h)| h)
            .or(self.creds_store.as_ref());
        if let Some(name) = helper {
            let program = format!("docker-credential-{name}");
            let found = run_helper(name, &server, &config_path, opts).await?;
            let source = CredentialSource::Helper { program: program.clone(), config: config_path.clone() };
            debug!("credentials for {registry}: {} {program}", if found.is_some() { "from" } else { "none in" });
            return Ok(match found {
                Some(credentials) => Resolved { credentials: Some(credentials), source },
                None => Resolved::anonymous(format!("no credentials for {registry} in {program} (configured in {})", config_path.display())),
            });
        }
        // An exact key first, then any key that designates the same registry.
        let entry = self
            .auths
            .iter()
            .find(|(k, _)| k == registry)
            .or_else(|| self.auths.iter().find(|(k, _)| registry_key(k) == wanted));
        match entry {
            Some((key, entry)) => {
                debug!("credentials for {registry}: auths entry {key:?} in {}", config_path.display());
                Ok(Resolved {
                    credentials: Some(Credentials {
                        username: entry.username.clone(),
                        password: entry.password.clone(),
                        identity_token: entry.identity_token.clone(),
                        server,
                    }),
                    source: CredentialSource::File { path: config_path, key: key.clone() },
                })
            }
            None => {
                debug!("no credentials for {registry} in {}", self.looked_in_text());
                let looked_in = match &self.path {
                    Some(p) => format!("no credentials for {registry} in {}", p.display()),
                    None => self.looked_in_text(),
                };
                Ok(Resolved::anonymous(looked_in))
            }
        }
    }
}

/// Decode one `auths` entry: `auth` (base64 of `user:password`) wins over `username`/`password`.
fn decode_entry(raw: RawEntry) -> Result<AuthEntry, &'static str> {
    let mut entry = AuthEntry {
        username: raw.username.unwrap_or_default(),
        password: raw.password.unwrap_or_default(),
        identity_token: raw.identitytoken.filter(|t| !t.is_empty()),
    };
    if let Some(auth) = raw.auth.filter(|a| !a.is_empty()) {
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new().with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let bytes = engine.decode(auth.trim()).map_err(|_| "not base64")?;
        let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 once decoded")?;
        let (user, password) = text.split_once(':').ok_or("no ':' between user and password once decoded")?;
        entry.username = user.to_string();
        entry.password = password.to_string();
    }
    Ok(entry)
}

/// A helper's name is one word: it is only ever run as `docker-credential-NAME` from PATH.
fn valid_helper_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && !name.starts_with('.')
}

/// `docker-credential-NAME` on the search path, as an absolute path.
fn find_helper(program: &str, search_path: Option<&OsString>) -> Option<PathBuf> {
    let path = search_path.cloned().or_else(|| std::env::var_os("PATH"))?;
    // Absolute directories only: a relative one would make the helper depend on the working directory.
    let dirs = std::env::join_paths(std::env::split_paths(&path).filter(|dir| dir.is_absolute())).ok()?;
    which::which_in(program, Some(dirs), "/").ok()
}

/// What helpers print on stdout.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// The most a helper may print: an answer is a few hundred bytes.
const HELPER_OUTPUT_CAP: u64 = 64 * 1024;

/// Run `docker-credential-NAME get` with the server name on stdin. `Ok(None)` when the helper
/// says it has no credentials for it.
async fn run_helper(name: &str, server: &str, config: &Path, opts: &LookupOptions) -> Result<Option<Credentials>, CredentialsError> {
    if !valid_helper_name(name) {
        return Err(CredentialsError::BadHelperName { name: name.to_string(), config: config.to_path_buf() });
    }
    let program = format!("docker-credential-{name}");
    let path = find_helper(&program, opts.helper_path.as_ref())
        .ok_or_else(|| CredentialsError::HelperNotFound { name: name.to_string(), config: config.to_path_buf() })?;
    let failed = |detail: String| CredentialsError::HelperFailed {
        program: program.clone(),
        config: config.to_path_buf(),
        server: server.to_string(),
        detail,
    };
    let mut child = tokio::process::Command::new(&path)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", path.display())))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = child.stdout.take().expect("piped stdout").take(HELPER_OUTPUT_CAP);
    let mut stderr = child.stderr.take().expect("piped stderr").take(HELPER_OUTPUT_CAP);
    let talk = async {
        // A helper that exits without reading its input is judged by its answer, not by the pipe.
        let _ = stdin.write_all(server.as_bytes()).await;
        drop(stdin);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (r1, r2) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        r1.and(r2)?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, out, err))
    };
    let (status, out, err) = match tokio::time::timeout(opts.helper_timeout, talk).await {
        Ok(result) => result.map_err(|e| failed(e.to_string()))?,
        // Dropping the future drops the child, which kill_on_drop kills (and tokio reaps).
        Err(_) => {
            return Err(CredentialsError::HelperTimeout {
                program,
                config: config.to_path_buf(),
                timeout: opts.helper_timeout,
            })
        }
    };
    if !status.success() {
        // Helpers report errors on stdout (docker-credential-helpers does); a failure prints no secret.
        let said = String::from_utf8_lossy(&out).trim().to_string();
        if said.contains("credentials not found") {
            return Ok(None);
        }
        let stderr_text = String::from_utf8_lossy(&err).trim().to_string();
        let mut detail = format!("exit status {}", status.code().map_or("signal".into(), |c| c.to_string()));
        for text in [said, stderr_text].into_iter().filter(|t| !t.is_empty()) {
            detail.push_str(": ");
            detail.push_str(&one_line(&text, 300));
        }
        return Err(failed(detail));
    }
    // The answer holds the secret: its parse error must not quote it.
    let answer: HelperAnswer = serde_json::from_slice(&out)
        .map_err(|_| failed("its answer is not the expected {\"Username\", \"Secret\"} JSON".into()))?;
    if answer.username.is_empty() && answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if answer.username == "<token>" {
        Credentials { identity_token: Some(answer.secret), server: server.to_string(), ..Default::default() }
    } else {
        Credentials { username: answer.username, password: answer.secret, identity_token: None, server: server.to_string() }
    }))
}

/// `text` on one line, at most `max` characters.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn parse(json: &str) -> DockerConfig {
        DockerConfig::parse(Path::new("/cfg/config.json"), json.as_bytes()).unwrap()
    }

    fn resolve(config: &DockerConfig, registry: &str) -> Resolved {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(config.resolve(registry, &LookupOptions::default())).unwrap()
    }

    #[test]
    fn keys_match_as_docker_matches_them() {
        for (key, registry) in [
            ("127.0.0.1:5000", "127.0.0.1:5000"),
            ("https://127.0.0.1:5000", "127.0.0.1:5000"),
            ("http://127.0.0.1:5000/v1/", "127.0.0.1:5000"),
            ("https://index.docker.io/v1/", "docker.io"),
            ("index.docker.io", "docker.io"),
            ("docker.io", "index.docker.io"),
            ("registry-1.docker.io", "docker.io"),
        ] {
            let config = parse(&format!(r#"{{"auths":{{"{key}":{{"auth":"{}"}}}}}}"#, b64("u:p")));
            let found = resolve(&config, registry);
            let creds = found.credentials.unwrap_or_else(|| panic!("{key} should match {registry}"));
            assert_eq!((creds.username.as_str(), creds.password.as_str()), ("u", "p"));
            assert_eq!(found.source, CredentialSource::File { path: "/cfg/config.json".into(), key: key.into() });
        }
        let config = parse(&format!(r#"{{"auths":{{"quay.io":{{"auth":"{}"}}}}}}"#, b64("u:p")));
        let found = resolve(&config, "127.0.0.1:5000");
        assert_eq!(found.credentials, None);
        assert_eq!(found.looked_in(), "no credentials for 127.0.0.1:5000 in /cfg/config.json");
    }

    #[test]
    fn hub_credentials_name_the_v1_server() {
        let config = parse(&format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#, b64("u:p")));
        assert_eq!(resolve(&config, "docker.io").credentials.unwrap().server, DOCKER_HUB_SERVER);
        assert_eq!(server_name("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn exact_key_wins_over_an_equivalent_one() {
        let config = parse(&format!(
            r#"{{"auths":{{"https://h:1/":{{"auth":"{}"}},"h:1":{{"auth":"{}"}}}}}}"#,
            b64("a:1"),
            b64("b:2")
        ));
        assert_eq!(resolve(&config, "h:1").credentials.unwrap().username, "b");
    }

    #[test]
    fn entry_forms() {
        // username/password fields, a password with ':' inside auth, an identity token, and an
        // empty placeholder (what docker login writes next to a credsStore) that counts as none.
        let config = parse(&format!(
            r#"{{"auths":{{"a:1":{{"username":"ua","password":"pa"}},"b:1":{{"auth":"{}"}},"c:1":{{"identitytoken":"tok","auth":"{}"}},"d:1":{{}}}}}}"#,
            b64("ub:p:b"),
            b64("uc:")
        ));
        let a = resolve(&config, "a:1").credentials.unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("ua", "pa"));
        let b = resolve(&config, "b:1").credentials.unwrap();
        assert_eq!((b.username.as_str(), b.password.as_str()), ("ub", "p:b"));
        let c = resolve(&config, "c:1").credentials.unwrap();
        assert_eq!((c.username.as_str(), c.identity_token.as_deref()), ("uc", Some("tok")));
        assert_eq!(resolve(&config, "d:1").credentials, None);
    }

    #[test]
    fn legacy_dockercfg_is_read() {
        let config = parse(&format!(r#"{{"https://index.docker.io/v1/":{{"auth":"{}","email":"x@y"}}}}"#, b64("u:p")));
        assert_eq!(resolve(&config, "docker.io").credentials.unwrap().password, "p");
    }

    #[test]
    fn bad_entries_are_errors_that_never_quote_the_secret() {
        let path = Path::new("/cfg/config.json");
        let secret = "hunter2-not-base64!";
        let err = DockerConfig::parse(path, format!(r#"{{"auths":{{"r:1":{{"auth":"{secret}"}}}}}}"#).as_bytes()).unwrap_err();
        assert!(matches!(err, CredentialsError::BadAuthEntry { ref key, .. } if key == "r:1"), "{err}");
        assert!(!err.to_string().contains(secret), "{err}");
        let err = DockerConfig::parse(path, format!(r#"{{"auths":{{"r:1":{{"auth":"{}"}}}}}}"#, b64("nocolon")).as_bytes()).unwrap_err();
        assert!(err.to_string().contains("no ':'"), "{err}");
        let err = DockerConfig::parse(path, b"{\"auths\": ").unwrap_err();
        assert!(matches!(err, CredentialsError::ConfigInvalid { .. }) && err.to_string().contains("/cfg/config.json"), "{err}");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let creds = Credentials {
            username: "user".into(),
            password: "s3cret-pw".into(),
            identity_token: Some("s3cret-token".into()),
            server: "r:1".into(),
        };
        let text = format!("{creds:?} {:?}", Resolved::given(creds.clone()));
        assert!(!text.contains("s3cret") && text.contains("user") && text.contains("<redacted>"), "{text}");
        let config = parse(&format!(r#"{{"auths":{{"r:1":{{"auth":"{}"}}}}}}"#, b64("user:s3cret-pw")));
        let text = format!("{config:?}");
        assert!(!text.contains("s3cret") && text.contains("r:1"), "{text}");
    }

    #[test]
    fn helper_names_are_words() {
        for ok in ["pass", "secretservice", "ecr-login", "gcloud", "osxkeychain", "my_helper.v2"] {
            assert!(valid_helper_name(ok), "{ok}");
        }
        for bad in ["", "../../bin/sh", "/bin/sh", "a/b", ".hidden", "a b", "x\0y"] {
            assert!(!valid_helper_name(bad), "{bad:?}");
        }
        let config = parse(r#"{"credsStore":"../../../bin/true"}"#);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let err = rt.block_on(config.resolve("r:1", &LookupOptions::default())).unwrap_err();
        assert!(matches!(err, CredentialsError::BadHelperName { .. }), "{err}");
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let err = DockerConfig::load(&ConfigLocation::Explicit(missing.clone())).unwrap_err();
        assert!(matches!(err, CredentialsError::ConfigMissing { ref path } if *path == missing), "{err}");
    }
}
