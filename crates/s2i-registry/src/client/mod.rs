//! A client for the registry API (the OCI distribution spec): pulls and pushes for the daemonless
//! engine, and [`RegistryClient::diagnose`], which asks a registry why a pull failed.
//!
//! Like Docker, registries on `localhost` and 127.0.0.0/8 (and `::1`) are insecure: HTTPS is tried
//! without verifying the certificate, then plain HTTP. Every other registry needs valid TLS.

mod auth;
mod blob;
mod error;
pub mod manifest;
mod trust;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use tracing::debug;

use crate::credentials::Resolved;
use crate::image_ref::ImageRef;
use auth::{parse_www_authenticate, Challenge, TokenAnswer};
pub use blob::BlobStream;
pub use crate::digest::sha256_digest;
pub use error::RegistryError;
pub use error::error_chain;
pub use trust::CaFile;
use manifest::{Manifest, Parsed, RawManifest};
use crate::oci::{Descriptor, Platform};

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// A client made on first use and shared after: an engine that never talks to a registry makes
/// none, and one that does makes one (one connection pool, one token cache).
#[derive(Default)]
pub struct LazyClient(Mutex<Option<Arc<RegistryClient>>>);

impl LazyClient {
    /// The client, made with `options` the first time.
    pub fn get(&self, options: impl FnOnce() -> ClientOptions) -> Result<Arc<RegistryClient>> {
        let mut client = self.0.lock().unwrap();
        if let Some(c) = client.as_ref() {
            return Ok(c.clone());
        }
        let made = Arc::new(RegistryClient::new(options())?);
        *client = Some(made.clone());
        Ok(made)
    }
}

/// The environment variables that change the [`Limits`], named in the errors of each limit. This
/// crate does not read them: s2i-core does, once per run, and hands the values in.
pub const CONNECT_TIMEOUT_ENV: &str = "S2I_REGISTRY_CONNECT_TIMEOUT";
pub const IDLE_TIMEOUT_ENV: &str = "S2I_REGISTRY_IDLE_TIMEOUT";
pub const REQUEST_TIMEOUT_ENV: &str = "S2I_REGISTRY_REQUEST_TIMEOUT";
pub const MANIFEST_MAX_ENV: &str = "S2I_REGISTRY_MANIFEST_MAX_BYTES";
pub const CONFIG_MAX_ENV: &str = "S2I_REGISTRY_CONFIG_MAX_BYTES";

/// How long and how much: every one has an error naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Establishing a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// A blob transfer without progress.
    pub idle_timeout: Duration,
    /// A whole small request: ping, token, manifest, config, the start and end of an upload.
    pub request_timeout: Duration,
    /// The largest manifest read (distribution itself refuses manifests over 4 MiB).
    pub manifest_max_bytes: u64,
    /// The largest image config read into memory.
    pub config_max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(120),
            manifest_max_bytes: 4 << 20,
            config_max_bytes: 32 << 20,
        }
    }
}

/// How the client is set up.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub limits: Limits,
    /// PEM files of CA certificates, trusted beside the built-in and the system's roots.
    pub ca_files: Vec<CaFile>,
    /// The platform picked from manifest lists; the host's when `None`.
    pub platform: Option<Platform>,
    /// Verify TLS for loopback registries too, instead of treating them as insecure as Docker does.
    pub verify_loopback: bool,
}

/// Where a registry answers and how it wants to be authenticated; learnt once per registry.
#[derive(Debug)]
struct Endpoint {
    /// `https://host:port` or `http://host:port`.
    base: String,
    insecure: bool,
    challenge: Challenge,
}

impl Endpoint {
    /// Whether `url` is at the endpoint's own origin (scheme, host and port): the only place its
    /// credentials go.
    fn owns(&self, url: &reqwest::Url) -> bool {
        reqwest::Url::parse(&self.base).is_ok_and(|base| base.origin() == url.origin())
    }
}

/// A URL's origin as shown in logs and errors: never its path or query, which may hold a
/// storage service's signature.
fn origin_of(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

fn is_loopback_url(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(|h| is_loopback_registry(h.trim_matches(['[', ']'])))
}

/// A redirect from HTTPS to plain HTTP, refused by [`redirect_policy`].
#[derive(Debug, thiserror::Error)]
#[error("a redirect from HTTPS to plain HTTP ({to})")]
struct DowngradeRefused {
    to: String,
}

/// How both HTTP clients follow redirects: at most 10, never from HTTPS down to plain HTTP
/// (whatever the host), and for the insecure client only to loopback hosts, so that its lack of
/// verification never extends to a registry's storage elsewhere. reqwest itself drops the
/// `Authorization` header when a redirect leaves the host or port: a registry's storage gets no
/// credentials, as with Docker and containerd.
fn redirect_policy(loopback_only: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let downgrade = attempt.url().scheme() != "https" && attempt.previous().iter().any(|u| u.scheme() == "https");
        if attempt.previous().len() >= 10 {
            attempt.error("too many redirects")
        } else if downgrade {
            let to = origin_of(attempt.url());
            attempt.error(DowngradeRefused { to })
        } else if loopback_only && !is_loopback_url(attempt.url()) {
            attempt.error("an insecure (loopback) registry redirected elsewhere")
        } else {
            attempt.follow()
        }
    })
}

/// A registry client. Cheap to share; it remembers each registry's endpoint.
pub struct RegistryClient {
    secure: reqwest::Client,
    insecure: reqwest::Client,
    limits: Limits,
    platform: Platform,
    verify_loopback: bool,
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
}

/// `localhost`, 127.0.0.0/8 and `::1`, with or without a port: Docker's implicitly insecure registries.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = if registry.parse::<std::net::IpAddr>().is_ok() {
        registry
    } else if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match registry.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|c| c.is_ascii_digit()) => h,
            _ => registry,
        }
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Where a registry's API answers: its name, except for Docker Hub (registry-1.docker.io).
fn api_host(registry: &str) -> String {
    if crate::credentials::registry_key(registry) == crate::image_ref::DOCKER_HUB {
        "registry-1.docker.io".to_string()
    } else {
        registry.to_string()
    }
}

/// A transport error, classified: TLS, a timeout (which one), or unreachable.
pub(crate) fn transport_error(registry: &str, e: reqwest::Error, limits: &Limits) -> RegistryError {
    if let Some(refused) = find_cause::<DowngradeRefused>(&e) {
        return RegistryError::Downgrade { registry: registry.into(), to: refused.to.clone() };
    }
    if is_tls_failure(&e) {
        return RegistryError::Tls { registry: registry.into(), detail: tls_detail(&e), cause: Some(Box::new(e)) };
    }
    if e.is_timeout() {
        return if e.is_connect() {
            RegistryError::Timeout {
                registry: registry.into(),
                what: "did not accept a connection",
                limit: "connect timeout",
                after: limits.connect_timeout,
                env: CONNECT_TIMEOUT_ENV,
            }
        } else {
            RegistryError::Timeout {
                registry: registry.into(),
                what: "stopped answering",
                limit: "idle timeout",
                after: limits.idle_timeout,
                env: IDLE_TIMEOUT_ENV,
            }
        };
    }
    RegistryError::Unreachable { registry: registry.into(), detail: short_chain(&e), cause: Some(Box::new(e)) }
}

/// The first cause of type `T`.
fn find_cause<'e, T: std::error::Error + 'static>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e T> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(found) = c.downcast_ref::<T>() {
            return Some(found);
        }
        cause = c.source();
    }
    None
}

/// Whether a rustls error is among the causes. I/O errors wrap it, sometimes twice, and an I/O
/// error's `source()` skips what it wraps: look inside them too.
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if is_tls_failure(inner) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

/// The causes of a transport error without reqwest's "error sending request for url (…)" preamble.
fn short_chain(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let text = match e.source() {
        Some(s) => error_chain(s),
        None => e.to_string(),
    };
    // hyper's "client error (Connect): " says nothing a user needs.
    match text.strip_prefix("client error (") {
        Some(rest) => rest.split_once("): ").map_or(text.clone(), |(_, tail)| tail.to_string()),
        None => text,
    }
}

fn tls_detail(e: &reqwest::Error) -> String {
    let text = short_chain(e);
    // The useful part is rustls's, at the end of the chain.
    text.rsplit(": ").take(2).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(": ")
}

impl RegistryClient {
    pub fn new(options: ClientOptions) -> Result<RegistryClient> {
        let limits = options.limits;
        let base = || {
            reqwest::Client::builder()
                .connect_timeout(limits.connect_timeout)
                .user_agent(concat!("s2i/", env!("CARGO_PKG_VERSION")))
                .dns_resolver(crate::dns::resolver())
                // Registries are asked directly; a proxy from the environment still applies.
                .pool_idle_timeout(Duration::from_secs(30))
        };
        let mut secure = base();
        for ca in &options.ca_files {
            for cert in ca.certificates()? {
                secure = secure.add_root_certificate(cert);
            }
        }
        let build_error = |e: reqwest::Error| RegistryError::Protocol { registry: String::new(), detail: format!("cannot set up HTTP: {}", error_chain(&e)) };
        let secure = secure.redirect(redirect_policy(false)).build().map_err(build_error)?;
        let insecure = base().danger_accept_invalid_certs(true).redirect(redirect_policy(true)).build().map_err(build_error)?;
        Ok(RegistryClient {
            secure,
            insecure,
            limits,
            platform: options.platform.unwrap_or_else(Platform::host),
            verify_loopback: options.verify_loopback,
            endpoints: Mutex::new(HashMap::new()),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A repository of `registry` (`127.0.0.1:5000`, `docker.io`), to be accessed with `credentials`.
    pub fn repository(&self, registry: &str, path: &str, credentials: Resolved) -> Repository<'_> {
        Repository {
            client: self,
            registry: registry.to_string(),
            api_host: api_host(registry),
            path: path.to_string(),
            credentials,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The repository `image` lives in.
    pub fn repository_of(&self, image: &ImageRef, credentials: Resolved) -> Repository<'_> {
        self.repository(image.registry(), &image.remote_path(), credentials)
    }

    /// Check that `registry` answers the registry API (over HTTPS, or HTTP for a loopback one).
    pub async fn ping(&self, registry: &str) -> Result<()> {
        self.endpoint(registry, &api_host(registry)).await.map(|_| ())
    }

    /// Ask the registry for `image`'s manifest (and its platform's, for a list) and say what is
    /// wrong with it: `None` when the registry serves it (so a failed pull failed for another
    /// reason), else the error a pull would meet. Used when an engine's pull failed, since an
    /// engine's own wording can mislead (Docker 20.10 reports a loopback registry's 401 as
    /// "Client sent an HTTP request to an HTTPS server").
    pub async fn diagnose(&self, image: &ImageRef, credentials: &Resolved) -> Option<RegistryError> {
        let repo = self.repository_of(image, credentials.clone());
        repo.image_manifest(image.reference()).await.err()
    }

    fn http(&self, endpoint: &Endpoint) -> &reqwest::Client {
        if endpoint.insecure {
            &self.insecure
        } else {
            &self.secure
        }
    }

    /// The client for a URL that is not an endpoint's (a token realm, an upload's Location): TLS
    /// goes unverified only for a loopback host, as for a loopback registry.
    fn http_for(&self, url: &reqwest::Url) -> &reqwest::Client {
        if is_loopback_url(url) && !self.verify_loopback {
            &self.insecure
        } else {
            &self.secure
        }
    }

    /// `fut` within the request timeout, its transport errors classified.
    async fn timed<T>(&self, registry: &str, fut: impl std::future::Future<Output = reqwest::Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.limits.request_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(transport_error(registry, e, &self.limits)),
            Err(_) => Err(RegistryError::Timeout {
                registry: registry.into(),
                what: "did not answer",
                limit: "request timeout",
                after: self.limits.request_timeout,
                env: REQUEST_TIMEOUT_ENV,
            }),
        }
    }

    /// The endpoint of `registry` (reached at `host`), pinged once and remembered.
    async fn endpoint(&self, registry: &str, host: &str) -> Result<Arc<Endpoint>> {
        if let Some(ep) = self.endpoints.lock().unwrap().get(host) {
            return Ok(ep.clone());
        }
        let insecure = !self.verify_loopback && is_loopback_registry(host);
        let endpoint = match self.ping_at(registry, &format!("https://{host}"), insecure).await {
            Ok(ep) => ep,
            // Only a failure to talk HTTPS at all falls back to HTTP, never an answer (a 401 over
            // HTTPS means credentials are missing, not that HTTP would do better).
            Err(PingFailure::Transport(https_error)) if insecure => {
                match self.ping_at(registry, &format!("http://{host}"), true).await {
                    Ok(ep) => ep,
                    Err(_) => return Err(https_error),
                }
            }
            Err(PingFailure::Transport(e) | PingFailure::Answer(e)) => return Err(e),
        };
        debug!("registry {registry}: API at {}, auth {:?}", endpoint.base, endpoint.challenge);
        let endpoint = Arc::new(endpoint);
        self.endpoints.lock().unwrap().insert(host.to_string(), endpoint.clone());
        Ok(endpoint)
    }

    async fn ping_at(&self, registry: &str, base: &str, insecure: bool) -> Result<Endpoint, PingFailure> {
        let http = if insecure { &self.insecure } else { &self.secure };
        let resp = self.timed(registry, http.get(format!("{base}/v2/")).send()).await.map_err(PingFailure::Transport)?;
        let status = resp.status();
        let challenge = if status.is_success() {
            Challenge::None
        } else if status == StatusCode::UNAUTHORIZED {
            let header = resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or("");
            parse_www_authenticate(header).and_then(|h| h.challenge()).ok_or_else(|| {
                PingFailure::Answer(RegistryError::Protocol {
                    registry: registry.into(),
                    detail: format!("{base}/v2/ asks for authentication s2i does not know: {header:?}"),
                })
            })?
        } else {
            return Err(PingFailure::Answer(RegistryError::Protocol {
                registry: registry.into(),
                detail: format!("{base}/v2/ answered {status}: this is not a registry (distribution API v2)"),
            }));
        };
        Ok(Endpoint { base: base.to_string(), insecure, challenge })
    }
}

enum PingFailure {
    /// No HTTP answer at all.
    Transport(RegistryError),
    /// An HTTP answer that is not a registry's.
    Answer(RegistryError),
}

/// What a request wants to do with a repository: the token scope's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Access {
    Pull,
    Push,
}

impl Access {
    fn actions(self) -> &'static str {
        match self {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        }
    }
}

/// What happened to a blob pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPush {
    /// The registry already had it: nothing was sent.
    Exists,
    Uploaded,
}

/// One repository of one registry, with the credentials to use there. Tokens are kept per
/// repository and access.
pub struct Repository<'c> {
    client: &'c RegistryClient,
    /// The registry as named (in messages).
    registry: String,
    /// Where its API answers (Docker Hub's differs from its name).
    api_host: String,
    path: String,
    credentials: Resolved,
    tokens: Mutex<HashMap<Access, String>>,
}

/// The distribution API's error body, `{"errors": [{"code", "message"}]}`.
#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(serde::Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The most of an error body read (for its message).
const ERROR_BODY_CAP: u64 = 64 * 1024;
/// The most of a token service's answer read.
const TOKEN_BODY_CAP: u64 = 1 << 20;

impl<'c> Repository<'c> {
    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    fn name(&self, reference: &str) -> String {
        let sep = if reference.starts_with("sha256:") { '@' } else { ':' };
        format!("{}/{}{sep}{reference}", self.registry, self.path)
    }

    async fn endpoint(&self) -> Result<Arc<Endpoint>> {
        self.client.endpoint(&self.registry, &self.api_host).await
    }

    /// Send a request made by `build` (given the HTTP client and the API base), authenticated for
    /// `access`. A request that `can_retry` is sent again once with a fresh token when a cached
    /// one was refused. Only the response head is waited for here.
    async fn send(
        &self,
        access: Access,
        can_retry: bool,
        build: &mut (dyn FnMut(&reqwest::Client, &str) -> RequestBuilder + Send),
    ) -> Result<Response> {
        let endpoint = self.endpoint().await?;
        let http = self.client.http(&endpoint);
        let mut fresh = false;
        loop {
            let req = build(http, &endpoint.base);
            let (req, used_cached) = self.authorize(req, &endpoint, access, fresh).await?;
            let resp = self.client.timed(&self.registry, req.send()).await?;
            debug!("registry {}: {} {}", self.registry, resp.status(), resp.url().path());
            if resp.status() == StatusCode::UNAUTHORIZED && used_cached && can_retry {
                fresh = true;
                continue;
            }
            return Ok(resp);
        }
    }

    /// Add the credentials the endpoint wants. Returns whether a cached token was used.
    async fn authorize(&self, req: RequestBuilder, endpoint: &Endpoint, access: Access, fresh: bool) -> Result<(RequestBuilder, bool)> {
        match &endpoint.challenge {
            Challenge::None => Ok((req, false)),
            Challenge::Basic => Ok((
                match &self.credentials.credentials {
                    Some(c) if !c.username.is_empty() => req.basic_auth(&c.username, Some(&c.password)),
                    _ => req,
                },
                false,
            )),
            Challenge::Bearer { realm, service } => {
                let cached = if fresh { None } else { self.tokens.lock().unwrap().get(&access).cloned() };
                let used_cached = cached.is_some();
                let token = match cached {
                    Some(t) => t,
                    None => {
                        let t = self.fetch_token(realm, service.as_deref(), access).await?;
                        self.tokens.lock().unwrap().insert(access, t.clone());
                        t
                    }
                };
                Ok((req.bearer_auth(token), used_cached))
            }
        }
    }

    /// A token for `access` from the token service at `realm`: with a refresh token (identity
    /// token) by the OAuth2 form, else by GET with Basic credentials (anonymous without).
    async fn fetch_token(&self, realm: &str, service: Option<&str>, access: Access) -> Result<String> {
        let url = reqwest::Url::parse(realm)
            .map_err(|e| RegistryError::Protocol { registry: self.registry.clone(), detail: format!("invalid token realm {realm:?}: {e}") })?;
        let http = self.client.http_for(&url);
        let scope = format!("repository:{}:{}", self.path, access.actions());
        // The registry names its token service, wherever it is, and gets the credentials sent
        // there (as Docker does): say where that is.
        debug!("registry {}: asking the token service at {} for {scope}", self.registry, origin_of(&url));
        let creds = self.credentials.credentials.as_ref();
        let req = match creds {
            Some(c) if c.identity_token.is_some() => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", c.identity_token.as_deref().unwrap_or_default()),
                    ("client_id", "s2i"),
                    ("scope", scope.as_str()),
                ];
                if let Some(s) = service {
                    form.push(("service", s));
                }
                http.post(url).form(&form)
            }
            _ => {
                let mut query = vec![("scope", scope.as_str())];
                if let Some(s) = service {
                    query.push(("service", s));
                }
                let req = http.get(url);
                match creds {
                    Some(c) if !c.username.is_empty() => req.query(&[("account", c.username.as_str())]).query(&query).basic_auth(&c.username, Some(&c.password)),
                    _ => req.query(&query),
                }
            }
        };
        let resp = self.client.timed(&self.registry, req.send()).await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.auth_error(access, "the token service refused them", true));
        }
        if !status.is_success() {
            let detail = self.error_detail(resp).await;
            return Err(RegistryError::Protocol {
                registry: self.registry.clone(),
                detail: format!("the token service {realm} answered {status}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") }),
            });
        }
        let body = self.read_small(resp, TOKEN_BODY_CAP).await?.ok_or_else(|| RegistryError::Protocol {
            registry: self.registry.clone(),
            detail: format!("the token service {realm} answered more than {TOKEN_BODY_CAP} bytes"),
        })?;
        // The answer holds the token: its parse error must not quote it.
        serde_json::from_slice::<TokenAnswer>(&body).ok().and_then(TokenAnswer::into_token).ok_or_else(|| RegistryError::Protocol {
            registry: self.registry.clone(),
            detail: format!("the token service {realm} answered without a token"),
        })
    }

    /// The error for a refused request: missing credentials, rejected ones, or not enough rights.
    fn auth_error(&self, access: Access, detail: &str, credentials_checked: bool) -> RegistryError {
        match &self.credentials.credentials {
            None => RegistryError::AuthRequired { registry: self.registry.clone(), looked_in: self.credentials.looked_in() },
            Some(c) if credentials_checked => RegistryError::CredentialsRejected {
                registry: self.registry.clone(),
                username: if c.username.is_empty() { "<identity token>".into() } else { c.username.clone() },
                source_desc: self.credentials.looked_in(),
            },
            Some(_) => RegistryError::Denied {
                registry: self.registry.clone(),
                repository: self.path.clone(),
                action: access.actions(),
                detail: detail.to_string(),
            },
        }
    }

    /// Turn an error status into its error; `what` names the thing asked for (for "not found").
    async fn check(&self, resp: Response, access: Access, what: &str) -> Result<Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let endpoint = self.endpoint().await?;
        let detail = self.error_detail(resp).await;
        Err(match status {
            // With Basic auth a 401 means the credentials were checked; with a token, that the token
            // (which the service granted) does not allow this.
            StatusCode::UNAUTHORIZED => self.auth_error(access, &detail, endpoint.challenge == Challenge::Basic),
            StatusCode::FORBIDDEN => self.auth_error(access, &detail, false),
            StatusCode::NOT_FOUND => RegistryError::NotFound { registry: self.registry.clone(), image: what.to_string(), detail },
            StatusCode::TOO_MANY_REQUESTS => RegistryError::Unavailable {
                registry: self.registry.clone(),
                what: what.to_string(),
                status: "429 too many requests (rate limited)".into(),
                detail,
            },
            s if s.is_server_error() => RegistryError::Unavailable { registry: self.registry.clone(), what: what.to_string(), status: s.to_string(), detail },
            _ => RegistryError::Protocol {
                registry: self.registry.clone(),
                detail: format!("{what}: {status}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") }),
            },
        })
    }

    /// The registry's own words about an error, from its JSON error body (capped, best effort).
    async fn error_detail(&self, resp: Response) -> String {
        let Ok(Some(body)) = self.read_small(resp, ERROR_BODY_CAP).await else { return String::new() };
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(b) if !b.errors.is_empty() => {
                let parts: Vec<String> = b
                    .errors
                    .iter()
                    .map(|e| if e.message.is_empty() { e.code.clone() } else { format!("{} ({})", e.message, e.code) })
                    .collect();
                crate::credentials::one_line(&parts.join("; "), 300)
            }
            _ => crate::credentials::one_line(&String::from_utf8_lossy(&body), 200),
        }
    }

    /// Read a small body whole, within the request timeout; `None` when it is larger than `max`
    /// (what was read so far is dropped, and the rest never read).
    async fn read_small(&self, resp: Response, max: u64) -> Result<Option<Bytes>> {
        if resp.content_length().is_some_and(|n| n > max) {
            return Ok(None);
        }
        let read = async {
            let mut body = Vec::new();
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                if body.len() as u64 + chunk.len() as u64 > max {
                    return Ok(None);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Some(Bytes::from(body)))
        };
        self.client.timed(&self.registry, read).await
    }

    /// A manifest as the registry serves it for `reference` (a tag or a digest), whatever its type;
    /// checked against the digest when asked by one.
    pub async fn raw_manifest(&self, reference: &str) -> Result<RawManifest> {
        let what = self.name(reference);
        let path = format!("/v2/{}/manifests/{reference}", self.path);
        let mut build = |http: &reqwest::Client, base: &str| http.get(format!("{base}{path}")).header(ACCEPT, manifest::ACCEPT_MANIFESTS);
        let resp = self.send(Access::Pull, true, &mut build).await?;
        let resp = self.check(resp, Access::Pull, &what).await?;
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|t| t.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let limits = &self.client.limits;
        let bytes = self.read_small(resp, limits.manifest_max_bytes).await?.ok_or_else(|| RegistryError::TooLarge {
            registry: self.registry.clone(),
            what: format!("the manifest of {what}"),
            limit: "manifest size limit",
            max: limits.manifest_max_bytes,
            env: MANIFEST_MAX_ENV,
        })?;
        let digest = sha256_digest(&bytes);
        if reference.contains(':') && digest != reference {
            return Err(RegistryError::DigestMismatch {
                registry: self.registry.clone(),
                what: format!("the manifest of {what}"),
                expected: reference.to_string(),
                detail: format!("its content has digest {digest}"),
            });
        }
        Ok(RawManifest { digest, media_type, bytes })
    }

    /// The image manifest for `reference`: for a manifest list or index, the entry for the
    /// client's platform.
    pub async fn image_manifest(&self, reference: &str) -> Result<Manifest> {
        let raw = self.raw_manifest(reference).await?;
        let what = self.name(reference);
        let protocol = |detail: String| RegistryError::Protocol { registry: self.registry.clone(), detail: format!("{what}: {detail}") };
        match raw.parse().map_err(protocol)? {
            Parsed::Image(manifest) => Ok(Manifest { raw, manifest, index: None }),
            Parsed::Index(index) => {
                let platform = &self.client.platform;
                let entry = manifest::pick_platform(&index, platform).ok_or_else(|| RegistryError::NoMatchingPlatform {
                    registry: self.registry.clone(),
                    image: what.clone(),
                    platform: platform.to_string(),
                    available: manifest::platforms_of(&index),
                })?;
                let chosen = self.raw_manifest(entry.digest.as_str()).await?;
                match chosen.parse().map_err(protocol)? {
                    Parsed::Image(manifest) => Ok(Manifest { raw: chosen, manifest, index: Some(raw) }),
                    Parsed::Index(_) => Err(protocol(format!("the {platform} entry is a list again"))),
                    Parsed::Other(media_type) => Err(RegistryError::UnsupportedManifest { registry: self.registry.clone(), image: what, media_type }),
                }
            }
            Parsed::Other(media_type) => Err(RegistryError::UnsupportedManifest { registry: self.registry.clone(), image: what, media_type }),
        }
    }

    async fn get_blob(&self, digest: &str) -> Result<Response> {
        let what = format!("blob {digest} of {}/{}", self.registry, self.path);
        if blob::sha256_hex(digest).is_none() {
            return Err(RegistryError::Protocol { registry: self.registry.clone(), detail: format!("{what}: not a sha256 digest") });
        }
        let path = format!("/v2/{}/blobs/{digest}", self.path);
        let mut build = |http: &reqwest::Client, base: &str| http.get(format!("{base}{path}"));
        let resp = self.send(Access::Pull, true, &mut build).await?;
        self.check(resp, Access::Pull, &what).await
    }

    /// A blob as a stream, verified against `descriptor`'s digest and size as it arrives.
    pub async fn blob(&self, descriptor: &Descriptor) -> Result<BlobStream> {
        let resp = self.get_blob(descriptor.digest.as_str()).await?;
        let body = resp.bytes_stream();
        Ok(BlobStream::new(Box::pin(body), descriptor.digest.as_str(), descriptor.size, &self.registry, &self.client.limits))
    }

    /// An image's config blob, read whole (it is small; capped) and verified.
    pub async fn config(&self, manifest: &Manifest) -> Result<Bytes> {
        let descriptor = manifest.config();
        let limits = &self.client.limits;
        if descriptor.size > limits.config_max_bytes {
            return Err(RegistryError::TooLarge {
                registry: self.registry.clone(),
                what: format!("the config {}", descriptor.digest),
                limit: "config size limit",
                max: limits.config_max_bytes,
                env: CONFIG_MAX_ENV,
            });
        }
        let mut stream = self.blob(descriptor).await?;
        let read = async {
            let mut body = Vec::with_capacity(descriptor.size as usize);
            while let Some(chunk) = stream.next().await {
                body.extend_from_slice(&chunk?);
            }
            Ok::<_, std::io::Error>(body)
        };
        match tokio::time::timeout(limits.request_timeout, read).await {
            Ok(Ok(body)) => Ok(Bytes::from(body)),
            Ok(Err(e)) => Err(unwrap_io(e, &self.registry)),
            Err(_) => Err(RegistryError::Timeout {
                registry: self.registry.clone(),
                what: "did not send an image config",
                limit: "request timeout",
                after: limits.request_timeout,
                env: REQUEST_TIMEOUT_ENV,
            }),
        }
    }

    /// The size of a blob the repository has, or `None`.
    pub async fn blob_exists(&self, digest: &str, access_push: bool) -> Result<Option<u64>> {
        let access = if access_push { Access::Push } else { Access::Pull };
        let path = format!("/v2/{}/blobs/{digest}", self.path);
        let mut build = |http: &reqwest::Client, base: &str| http.head(format!("{base}{path}"));
        let resp = self.send(access, true, &mut build).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp, access, &format!("blob {digest}")).await?;
        Ok(Some(content_length(resp.headers()).unwrap_or(0)))
    }

    /// Ask the registry to mount `digest` from its repository `from` into this one (a
    /// cross-repository mount: nothing is transferred). `Ok(true)` when it did; `Ok(false)` when
    /// it would not (it does not have the blob there, the credentials do not reach `from`, or it
    /// does not mount): the caller then uploads the blob.
    pub async fn mount_blob(&self, digest: &str, from: &str) -> Result<bool> {
        if blob::sha256_hex(digest).is_none() {
            return Err(RegistryError::Protocol { registry: self.registry.clone(), detail: format!("cannot mount {digest:?}: not a sha256 digest") });
        }
        let path = format!("/v2/{}/blobs/uploads/", self.path);
        let (digest, from) = (digest.to_string(), from.to_string());
        let mut build = |http: &reqwest::Client, base: &str| {
            http.post(format!("{base}{path}")).query(&[("mount", digest.as_str()), ("from", from.as_str())]).header(CONTENT_LENGTH, 0)
        };
        let resp = self.send(Access::Push, true, &mut build).await?;
        // 201: mounted. 202: the registry started an ordinary upload instead (left to expire).
        Ok(resp.status() == StatusCode::CREATED)
    }

    /// Upload a blob unless the repository has it: `POST` an upload, then one `PUT` streaming
    /// `body` (which must yield exactly `descriptor.size` bytes of that digest; the registry
    /// checks). Progress without stalls is bounded by the idle timeout.
    pub async fn push_blob<S>(&self, descriptor: &Descriptor, body: S) -> Result<BlobPush>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let digest = descriptor.digest.as_str();
        if blob::sha256_hex(digest).is_none() {
            return Err(RegistryError::Protocol { registry: self.registry.clone(), detail: format!("cannot push {digest:?}: not a sha256 digest") });
        }
        if self.blob_exists(digest, true).await?.is_some() {
            debug!("registry {}: blob {digest} exists", self.registry);
            return Ok(BlobPush::Exists);
        }
        let what = format!("an upload to {}/{}", self.registry, self.path);
        let path = format!("/v2/{}/blobs/uploads/", self.path);
        let mut build = |http: &reqwest::Client, base: &str| http.post(format!("{base}{path}")).header(CONTENT_LENGTH, 0);
        let resp = self.send(Access::Push, true, &mut build).await?;
        let resp = self.check(resp, Access::Push, &what).await?;
        let mut location = self.location(&resp, &what)?;
        location.query_pairs_mut().append_pair("digest", digest);
        // The upload may go elsewhere (a registry behind another name, its storage): credentials
        // go only to the registry's own origin, and never from HTTPS down to plain HTTP.
        let endpoint = self.endpoint().await?;
        let authenticate = endpoint.owns(&location);
        if !authenticate {
            if endpoint.base.starts_with("https:") && location.scheme() != "https" {
                return Err(RegistryError::Downgrade { registry: self.registry.clone(), to: origin_of(&location) });
            }
            debug!("registry {}: the upload of {digest} goes to {}, without credentials", self.registry, origin_of(&location));
        }
        let http = self.client.http_for(&location).clone();

        // Record the source's failure before the request sees the broken body, and each chunk's
        // arrival for the idle watchdog.
        let source_error: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
        let progress = Arc::new(tokio::sync::Notify::new());
        let body = {
            let (source_error, progress) = (source_error.clone(), progress.clone());
            body.map(move |item| {
                progress.notify_one();
                item.map_err(|e| {
                    let copy = std::io::Error::new(e.kind(), e.to_string());
                    *source_error.lock().unwrap() = Some(e);
                    copy
                })
            })
        };
        let body = reqwest::Body::wrap_stream(body);
        let req = http.put(location).header(CONTENT_TYPE, "application/octet-stream").header(CONTENT_LENGTH, descriptor.size).body(body);
        // Not through send(): its request timeout would cap the whole upload, however big. The
        // watchdog below stops an upload that makes no progress instead.
        let idle = self.client.limits.idle_timeout;
        let put = async {
            let req = if authenticate { self.authorize(req, &endpoint, Access::Push, false).await?.0 } else { req };
            req.send().await.map_err(|e| transport_error(&self.registry, e, &self.client.limits))
        };
        tokio::pin!(put);
        let resp = loop {
            tokio::select! {
                resp = &mut put => break resp,
                _ = progress.notified() => continue,
                _ = tokio::time::sleep(idle) => {
                    return Err(RegistryError::Timeout {
                        registry: self.registry.clone(),
                        what: "made no progress on an upload",
                        limit: "idle timeout",
                        after: idle,
                        env: IDLE_TIMEOUT_ENV,
                    });
                }
            }
        };
        if let Some(source) = source_error.lock().unwrap().take() {
            return Err(RegistryError::Source { registry: self.registry.clone(), what: format!("blob {digest}"), source });
        }
        let resp = resp?;
        let resp = self.check(resp, Access::Push, &format!("the upload of blob {digest}")).await?;
        if let Some(stored) = header_str(resp.headers(), "docker-content-digest") {
            if stored != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: self.registry.clone(),
                    what: "an uploaded blob".into(),
                    expected: digest.to_string(),
                    detail: format!("the registry stored it as {stored}"),
                });
            }
        }
        Ok(BlobPush::Uploaded)
    }

    fn location(&self, resp: &Response, what: &str) -> Result<reqwest::Url> {
        let location = header_str(resp.headers(), LOCATION.as_str()).ok_or_else(|| RegistryError::Protocol {
            registry: self.registry.clone(),
            detail: format!("{what}: no Location in the answer"),
        })?;
        resp.url().join(location).map_err(|e| RegistryError::Protocol {
            registry: self.registry.clone(),
            detail: format!("{what}: invalid Location {location:?}: {e}"),
        })
    }

    /// Store a manifest under `reference` (a tag, or its digest); returns its digest.
    pub async fn push_manifest(&self, reference: &str, media_type: &str, bytes: Bytes) -> Result<String> {
        let digest = sha256_digest(&bytes);
        let what = format!("the manifest of {}", self.name(reference));
        let path = format!("/v2/{}/manifests/{reference}", self.path);
        let mut build = |http: &reqwest::Client, base: &str| {
            http.put(format!("{base}{path}")).header(CONTENT_TYPE, media_type).body(bytes.clone())
        };
        let resp = self.send(Access::Push, true, &mut build).await?;
        let resp = self.check(resp, Access::Push, &what).await?;
        if let Some(stored) = header_str(resp.headers(), "docker-content-digest") {
            if stored != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: self.registry.clone(),
                    what,
                    expected: digest,
                    detail: format!("the registry stored it as {stored}"),
                });
            }
        }
        Ok(digest)
    }

    /// Whether the repository has a manifest for `reference`, without reading it.
    pub async fn manifest_exists(&self, reference: &str) -> Result<bool> {
        let path = format!("/v2/{}/manifests/{reference}", self.path);
        let mut build = |http: &reqwest::Client, base: &str| http.request(Method::HEAD, format!("{base}{path}")).header(ACCEPT, manifest::ACCEPT_MANIFESTS);
        let resp = self.send(Access::Pull, true, &mut build).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.check(resp, Access::Pull, &self.name(reference)).await.map(|_| true)
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, CONTENT_LENGTH.as_str()).and_then(|v| v.parse().ok())
}

/// The registry error inside an I/O error from a [`BlobStream`], or a transport error.
fn unwrap_io(e: std::io::Error, registry: &str) -> RegistryError {
    if e.get_ref().is_some_and(|inner| inner.is::<RegistryError>()) {
        return *e.into_inner().and_then(|inner| inner.downcast::<RegistryError>().ok()).expect("checked above");
    }
    RegistryError::Unreachable { registry: registry.into(), detail: e.to_string(), cause: Some(Box::new(e)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries() {
        for yes in ["localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:5000", "127.3.4.5:1", "[::1]:5000", "::1"] {
            assert!(is_loopback_registry(yes), "{yes}");
        }
        for no in ["quay.io", "10.0.0.1:5000", "localhost.example.com", "128.0.0.1", "[::2]:5000", "docker.io"] {
            assert!(!is_loopback_registry(no), "{no}");
        }
    }

    #[test]
    fn default_limits() {
        let l = Limits::default();
        assert_eq!(l.manifest_max_bytes, 4 << 20);
        assert!(l.connect_timeout < l.request_timeout);
    }
}
