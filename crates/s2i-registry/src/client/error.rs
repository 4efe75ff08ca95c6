//! What can go wrong talking to a registry, each with what the user needs to act on it.

use std::time::Duration;

use thiserror::Error;

type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Error)]
pub enum RegistryError {
    /// The registry wants credentials and we had none.
    #[error("{registry} requires authentication: {looked_in}")]
    AuthRequired { registry: String, looked_in: String },

    /// The registry (or its token service) refused the credentials we sent.
    #[error("{registry} rejected the credentials of {username:?} ({source_desc})")]
    CredentialsRejected { registry: String, username: String, source_desc: String },

    /// Authenticated, but not allowed to do this with this repository.
    #[error("{registry} denied {action} access to {repository}{}", detail_suffix(.detail))]
    Denied { registry: String, repository: String, action: &'static str, detail: String },

    /// No such repository, tag, digest or blob; `image` names it with its registry.
    #[error("{image} not found{}", detail_suffix(.detail))]
    NotFound { registry: String, image: String, detail: String },

    #[error("cannot reach registry {registry}: {detail}")]
    Unreachable {
        registry: String,
        detail: String,
        #[source]
        cause: Option<Cause>,
    },

    #[error("TLS connection to registry {registry} failed: {detail}")]
    Tls {
        registry: String,
        detail: String,
        #[source]
        cause: Option<Cause>,
    },

    /// A limit on time ran out; `limit` names it and `env` is how to raise it.
    #[error("registry {registry} {what} within the {limit} of {} s", .after.as_secs())]
    Timeout { registry: String, what: &'static str, limit: &'static str, after: Duration, env: &'static str },

    /// A limit on size was exceeded; `env` is how to raise it.
    #[error("{what} from {registry} is larger than the {limit} of {max} bytes")]
    TooLarge { registry: String, what: String, limit: &'static str, max: u64, env: &'static str },

    /// Content that does not match the digest (or size) it was asked by.
    #[error("{what} from {registry} does not match {expected}: {detail}")]
    DigestMismatch { registry: String, what: String, expected: String, detail: String },

    /// A manifest list or index without an image for the platform we run on.
    #[error("{image} in {registry} has no image for {platform} (it has {available})")]
    NoMatchingPlatform { registry: String, image: String, platform: String, available: String },

    #[error("{image} in {registry} is a {media_type} manifest, which s2i does not read")]
    UnsupportedManifest { registry: String, image: String, media_type: String },

    /// The registry sent s2i (by a redirect, or an upload's Location) from HTTPS to plain HTTP.
    #[error("registry {registry} sent s2i from HTTPS to plain HTTP ({to}); s2i does not follow it there")]
    Downgrade { registry: String, to: String },

    /// The registry answered something the distribution API does not allow.
    #[error("registry {registry}: {detail}")]
    Protocol { registry: String, detail: String },

    /// The registry is overloaded or failing (429, or a 5xx status): worth another try later.
    #[error("registry {registry}: {what}: {status}{}", detail_suffix(.detail))]
    Unavailable { registry: String, what: String, status: String, detail: String },

    /// Reading what we were pushing failed (our side).
    #[error("reading {what} to push to {registry}: {source}")]
    Source { registry: String, what: String, source: std::io::Error },

    /// A CA file (named by `given_by`: `--ca-file`, `SSL_CERT_FILE`…) that cannot be used.
    #[error("cannot use the CA file {} ({given_by}): {detail}", path.display())]
    CaFile { path: std::path::PathBuf, given_by: &'static str, detail: String },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl RegistryError {
    /// What the user can do about it, in one line.
    pub fn hint(&self) -> String {
        match self {
            RegistryError::AuthRequired { registry, .. } => {
                format!("log in with `docker login {registry}`, or give a credentials file with --dockercfg-path")
            }
            RegistryError::CredentialsRejected { registry, .. } => {
                format!("check the user and password, then log in again with `docker login {registry}`")
            }
            RegistryError::Denied { .. } => "ask the registry's administrator for access, or use an account that has it".into(),
            RegistryError::NotFound { .. } => "check the image name and tag (`docker manifest inspect IMAGE` shows what the registry has)".into(),
            RegistryError::Unreachable { registry, .. } => {
                format!("check that {registry} is the right host and port and that it runs, and your network or proxy settings")
            }
            RegistryError::Tls { .. } => {
                "check the registry's certificate; for a private CA, give its file with --ca-file (a Docker or Podman daemon's own pulls read its certs.d)".into()
            }
            RegistryError::Timeout { env, .. } => format!("check the registry and the network, or raise the limit with {env}=SECONDS"),
            RegistryError::TooLarge { env, .. } => format!("if the registry is trusted, raise the limit with {env}=BYTES"),
            RegistryError::DigestMismatch { .. } => {
                "the content changed or was corrupted on the way: try again, and report a registry that keeps answering this".into()
            }
            RegistryError::NoMatchingPlatform { .. } => "use an image built for this platform, or name a single-platform image by its digest".into(),
            RegistryError::UnsupportedManifest { .. } => "push the image again with a current Docker, Podman or Buildah".into(),
            RegistryError::Downgrade { .. } => {
                "a registry served over HTTPS must not send its clients to plain HTTP: check its configuration (its external URL, its storage's redirects)".into()
            }
            RegistryError::Protocol { .. } => "the registry misbehaved: try again, or check the registry's logs".into(),
            RegistryError::Unavailable { .. } => "the registry is overloaded or failing: try again later, or check the registry's logs".into(),
            RegistryError::Source { .. } => "check the local image store".into(),
            RegistryError::CaFile { given_by, .. } => format!("{given_by} must name a readable PEM file holding one or more CA certificates"),
        }
    }

    /// True for a missing image (so callers may try elsewhere, or build instead).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
    }

    /// True for failures that another try may not meet: the registry could not be reached, went
    /// quiet, cut a transfer short, or answered 429 or 5xx. Content that does not match its digest
    /// counts too (cut or corrupted on the way): a try again fetches it whole.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RegistryError::Unreachable { .. }
                | RegistryError::Timeout { .. }
                | RegistryError::Unavailable { .. }
                | RegistryError::DigestMismatch { .. }
        )
    }

    /// True when credentials are missing, rejected or not enough.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            RegistryError::AuthRequired { .. } | RegistryError::CredentialsRejected { .. } | RegistryError::Denied { .. }
        )
    }
}

/// An error and its causes, `: `-separated (transport errors hide the useful part in their sources).
/// The one copy for every s2i crate (s2i-engine re-exports it).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
