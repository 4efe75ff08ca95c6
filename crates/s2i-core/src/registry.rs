//! Registries as a build meets them: the credentials of each image, looked up here and nowhere
//! else (once per registry per run) and handed to the engine's pulls and pushes; what a failed
//! pull or push meant, asked of the registry itself rather than read from the engine's wording
//! (Docker 20.10 reports a loopback registry's 401 as "Client sent an HTTP request to an HTTPS
//! server"); and `--push`.
//!
//! Failures are [`RegistryFailure`]s, which the build's error type wraps (this module does not
//! know that type: it sits below it).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use s2i_engine::{Engine, EngineError, Progress};
pub use s2i_registry::client::CaFile;
use s2i_registry::client::{ClientOptions, Limits as ClientLimits};
use s2i_registry::credentials::registry_key;
use s2i_registry::{ConfigLocation, CredentialsError, DockerConfig, LookupOptions, RegistryClient, RegistryError, Resolved};
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::image_ref::ImageRef;
use crate::limits::Limits;
use crate::report::{Reporter, Transfer};

/// The registries of one run: where credentials are looked up, and what was found. Clones share
/// what was found, so a credential helper runs once per registry whatever asks.
#[derive(Clone, Default)]
pub struct Registries {
    /// `--dockercfg-path`; Docker's own places when `None`.
    config_path: Option<PathBuf>,
    lookup: LookupOptions,
    /// For asking a registry why a transfer failed.
    client_limits: ClientLimits,
    /// CA files trusted for every registry s2i asks itself (`--ca-file`, `SSL_CERT_FILE`).
    ca_files: Vec<CaFile>,
    cache: Arc<tokio::sync::Mutex<CredentialCache>>,
}

/// What the lookups found so far: the Docker config, loaded once, and each registry's credentials.
#[derive(Default)]
struct CredentialCache {
    config: Option<DockerConfig>,
    /// By registry key (`docker.io`, `127.0.0.1:5000`).
    resolved: HashMap<String, Resolved>,
}

impl fmt::Debug for Registries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registries").field("config_path", &self.config_path).field("lookup", &self.lookup).field("ca_files", &self.ca_files).finish()
    }
}

impl Registries {
    /// Credentials from `config_path` (`--dockercfg-path`), else from Docker's places
    /// (`$DOCKER_CONFIG/config.json`, `~/.docker/config.json`, `~/.dockercfg`); credential
    /// helpers and the registry client bounded by `limits`.
    pub fn new(config_path: Option<PathBuf>, limits: &Limits) -> Registries {
        // The reference's default is this same path given as a flag, and a file that is not there
        // means anonymous access: scripts that pass it before any `docker login` keep working.
        if let Some(path) = config_path.as_deref().filter(|p| !p.exists()) {
            warn!("--dockercfg-path {} does not exist: images are pulled and pushed without credentials", path.display());
        }
        let lookup = LookupOptions { helper_timeout: limits.credential_helper_timeout, ..Default::default() };
        Registries { config_path, lookup, client_limits: limits.registry, ca_files: Vec::new(), cache: Arc::default() }
    }

    /// Trust `ca_files` too when asking registries (checked already: see [`CaFile::certificates`]).
    pub fn with_ca_files(mut self, ca_files: Vec<CaFile>) -> Registries {
        self.ca_files = ca_files;
        self
    }

    /// The file named with `--dockercfg-path`, if any.
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// The credentials for the registry `image` lives in (none, and where they were looked for,
    /// for anonymous access).
    pub async fn resolve(&self, image: &ImageRef) -> Result<Resolved, CredentialsError> {
        let registry = image.registry();
        let key = registry_key(registry);
        let mut cache = self.cache.lock().await;
        if let Some(resolved) = cache.resolved.get(&key) {
            return Ok(resolved.clone());
        }
        let resolved = match &self.config_path {
            Some(path) if !path.exists() => Resolved::anonymous(format!("--dockercfg-path {} does not exist", path.display())),
            _ => {
                if cache.config.is_none() {
                    let location = match &self.config_path {
                        Some(path) => ConfigLocation::Explicit(path.clone()),
                        None => ConfigLocation::Default,
                    };
                    cache.config = Some(DockerConfig::load(&location)?);
                }
                cache.config.as_ref().expect("loaded above").resolve(registry, &self.lookup).await?
            }
        };
        match &resolved.credentials {
            Some(c) if c.username.is_empty() => debug!("Registry {registry}: an identity token from {}", resolved.source),
            Some(c) => debug!("Registry {registry}: the credentials of {:?} from {}", c.username, resolved.source),
            None => debug!("Registry {registry}: anonymous ({})", resolved.looked_in()),
        }
        cache.resolved.insert(key, resolved.clone());
        Ok(resolved)
    }

    /// Ask the registry why `transfer` of `image` failed: `None` when it sees nothing wrong (the
    /// engine's own error then stands) or fails in a way the engine's pull would not have.
    pub async fn diagnose(&self, transfer: Transfer, image: &ImageRef, resolved: &Resolved) -> Option<RegistryError> {
        let client = match RegistryClient::new(client_options(image.registry(), self.client_limits, &self.ca_files)) {
            Ok(client) => client,
            Err(e) => {
                debug!("Cannot ask {} why the {} failed: {e}", image.registry(), verb(transfer));
                return None;
            }
        };
        let found = match transfer {
            Transfer::Pull => client.diagnose(image, resolved).await,
            // Asking for a blob with push access gets the token a push would (or the same 401):
            // nothing is written.
            Transfer::Push => client.repository_of(image, resolved.clone()).blob_exists(EMPTY_BLOB, true).await.err(),
        };
        match found {
            Some(e) if explains_a_failure(&e) => Some(e),
            Some(e) => {
                debug!("{} answers for {image}: {e}; the engine's error stands", image.registry());
                None
            }
            None => None,
        }
    }
}

/// The sha256 of nothing: a blob digest to ask about without side effects.
const EMPTY_BLOB: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The registry's answers that explain an engine's failed pull or push. Others (a manifest type
/// or platform s2i's client does not read, say) say more about s2i's client than about the pull.
fn explains_a_failure(e: &RegistryError) -> bool {
    matches!(
        e,
        RegistryError::AuthRequired { .. }
            | RegistryError::CredentialsRejected { .. }
            | RegistryError::Denied { .. }
            | RegistryError::NotFound { .. }
            | RegistryError::Unreachable { .. }
            | RegistryError::Tls { .. }
            | RegistryError::Timeout { .. }
            | RegistryError::Unavailable { .. }
    )
}

/// The client's settings for asking `registry`: the run's limits, the CA files the user gave,
/// and the CA that Docker (or Podman) is given for it in its certs.d, so that both trust the same
/// certificates.
fn client_options(registry: &str, limits: ClientLimits, ca_files: &[CaFile]) -> ClientOptions {
    let engine_ca = ["/etc/docker/certs.d", "/etc/containers/certs.d"]
        .iter()
        .map(|dir| Path::new(dir).join(registry).join("ca.crt"))
        .find(|p| p.is_file())
        .map(|p| CaFile::new(p, "the engine's certs.d"));
    ClientOptions { limits, ca_files: ca_files.iter().cloned().chain(engine_ca).collect(), ..Default::default() }
}

fn verb(transfer: Transfer) -> &'static str {
    match transfer {
        Transfer::Pull => "pull",
        Transfer::Push => "push",
    }
}

/// An image pushed: the name pushed and the digest of the manifest the registry stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub name: String,
    pub digest: String,
}

/// What went wrong between s2i and a registry.
#[derive(Debug, Error)]
pub enum RegistryFailure {
    /// The registry said why a pull or push failed.
    #[error("unable to {} {image}: {source}", if *.transfer == Transfer::Pull { "get" } else { "push" })]
    Registry {
        transfer: Transfer,
        image: String,
        #[source]
        source: Box<RegistryError>,
    },

    /// The credentials for an image could not be looked up.
    #[error("unable to {} {image}: {source}", if *.transfer == Transfer::Pull { "get" } else { "push" })]
    Credentials {
        transfer: Transfer,
        image: String,
        #[source]
        source: Box<CredentialsError>,
    },

    /// The engine's push failed, and the registry did not say why.
    #[error("unable to push {image}: {source}")]
    Engine {
        image: String,
        #[source]
        source: Box<EngineError>,
    },

    /// `--push` failed after the build: the image stays in the engine.
    #[error("{cause}; the built image {image} is kept locally")]
    PushFailed {
        /// The output tag.
        image: String,
        image_id: String,
        /// What was pushed before the failure.
        pushed: Vec<Pushed>,
        #[source]
        cause: Box<RegistryFailure>,
    },
}

impl RegistryFailure {
    /// What the user can do about it, in one line.
    pub fn hint(&self) -> String {
        match self {
            RegistryFailure::Registry { transfer: Transfer::Pull, source, .. } if matches!(**source, RegistryError::AuthRequired { .. }) => {
                format!("{}; some registries answer so for an image that does not exist: check its name too", source.hint())
            }
            RegistryFailure::Registry { source, .. } => source.hint(),
            RegistryFailure::Credentials { source, .. } => source.hint(),
            RegistryFailure::Engine { image, .. } => {
                format!("check that the account s2i found for the registry may push to {image}, and the engine's log")
            }
            RegistryFailure::PushFailed { cause, image, .. } => format!("{}; then push the kept image with `docker push {image}`", cause.hint()),
        }
    }

    /// The process exit code: a pull failure is the reference's 2.
    pub fn exit_code(&self) -> i32 {
        match self {
            RegistryFailure::Registry { transfer: Transfer::Pull, .. } | RegistryFailure::Credentials { transfer: Transfer::Pull, .. } => 2,
            _ => 1,
        }
    }

    /// The image built before a failed `--push`, and what was pushed before it failed.
    pub fn kept_image(&self) -> Option<(&str, &[Pushed])> {
        match self {
            RegistryFailure::PushFailed { image_id, pushed, .. } => Some((image_id, pushed)),
            _ => None,
        }
    }
}

/// How an image's pull goes: its name parsed (for credentials and diagnosis) and the credentials.
pub struct PullAccess {
    image: Option<ImageRef>,
    resolved: Option<Resolved>,
}

impl PullAccess {
    /// Look up the credentials for pulling `name`. A name that is no registry reference (an OCI
    /// engine's `oci-archive:PATH`, say) is pulled without any.
    pub async fn for_image(registries: &Registries, name: &str) -> Result<PullAccess, RegistryFailure> {
        let Ok(image) = ImageRef::parse(name) else {
            return Ok(PullAccess { image: None, resolved: None });
        };
        let resolved = registries
            .resolve(&image)
            .await
            .map_err(|source| RegistryFailure::Credentials { transfer: Transfer::Pull, image: name.to_string(), source: Box::new(source) })?;
        Ok(PullAccess { image: Some(image), resolved: Some(resolved) })
    }

    /// What to hand the engine.
    pub fn auth(&self) -> Option<&s2i_engine::RegistryAuth> {
        self.resolved.as_ref().and_then(|r| r.credentials.as_ref())
    }

    /// Why the engine's pull of `name` failed, when the registry says: in the engine's own error
    /// (an engine that pulls with s2i's registry client), or asked again. Otherwise the engine's
    /// error, as it came.
    pub async fn diagnose(&self, registries: &Registries, name: &str, engine_error: EngineError) -> Result<RegistryFailure, EngineError> {
        let engine_error = match registry_answer(Transfer::Pull, name, engine_error) {
            Ok(failure) => return Ok(failure),
            Err(e) => e,
        };
        let (Some(image), Some(resolved)) = (&self.image, &self.resolved) else { return Err(engine_error) };
        if !worth_diagnosing(&engine_error) {
            return Err(engine_error);
        }
        debug!("The engine's pull of {name} failed: {engine_error}; asking {}", image.registry());
        match registries.diagnose(Transfer::Pull, image, resolved).await {
            Some(source) => Ok(RegistryFailure::Registry { transfer: Transfer::Pull, image: name.to_string(), source: Box::new(source) }),
            None => Err(engine_error),
        }
    }
}

/// The registry's answer an engine's error carries (the OCI engine talks to registries with s2i's
/// own client), as the failure of `transfer`; otherwise the error, untouched.
fn registry_answer(transfer: Transfer, name: &str, e: EngineError) -> Result<RegistryFailure, EngineError> {
    e.into_cause::<RegistryError>().map(|source| RegistryFailure::Registry { transfer, image: name.to_string(), source })
}

/// Errors that a registry may explain; not an engine that cannot pull at all, or is gone.
fn worth_diagnosing(e: &EngineError) -> bool {
    !matches!(e, EngineError::NotSupported { .. } | EngineError::Connect { .. } | EngineError::Endpoint { .. } | EngineError::Tls(_))
}

/// The name to push for `image`: its repository and tag (`latest` when it has none), as committed.
pub fn push_name(image: &ImageRef) -> String {
    format!("{}:{}", image.repository(), image.tag.as_deref().unwrap_or("latest"))
}

/// Push `image` (in the engine) to the registry its name points at, with the credentials found
/// for that registry; progress goes to `reporter`.
pub async fn push(engine: &dyn Engine, registries: &Registries, image: &ImageRef, reporter: &Arc<dyn Reporter>) -> Result<Pushed, RegistryFailure> {
    let name = push_name(image);
    let resolved = registries
        .resolve(image)
        .await
        .map_err(|source| RegistryFailure::Credentials { transfer: Transfer::Push, image: name.clone(), source: Box::new(source) })?;
    info!("Pushing image {name:?} ...");
    reporter.transfer_started(Transfer::Push, &name);
    let mut progress = |event: Progress<'_>| reporter.transfer(Transfer::Push, &name, event);
    let pushed = engine.push_image(&name, resolved.credentials.as_ref(), &mut progress).await;
    reporter.transfer_finished(Transfer::Push, &name, pushed.is_ok());
    match pushed {
        Ok(digest) => {
            info!("Pushed {name} ({digest})");
            Ok(Pushed { name, digest })
        }
        Err(e) => {
            let e = match registry_answer(Transfer::Push, &name, e) {
                Ok(failure) => return Err(failure),
                Err(e) => e,
            };
            debug!("The engine's push of {name} failed: {e}; asking {}", image.registry());
            if worth_diagnosing(&e) {
                if let Some(source) = registries.diagnose(Transfer::Push, image, &resolved).await {
                    return Err(RegistryFailure::Registry { transfer: Transfer::Push, image: name, source: Box::new(source) });
                }
            }
            Err(RegistryFailure::Engine { image: name, source: Box::new(e) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_names_carry_their_tag() {
        assert_eq!(push_name(&ImageRef::parse("127.0.0.1:5000/team/app").unwrap()), "127.0.0.1:5000/team/app:latest");
        assert_eq!(push_name(&ImageRef::parse("quay.io/team/app:v1").unwrap()), "quay.io/team/app:v1");
    }

    #[tokio::test]
    async fn credentials_are_looked_up_once_per_registry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        // "dTpw" is base64 of "u:p".
        std::fs::write(&path, r#"{"auths":{"r.example:5000":{"auth":"dTpw"}}}"#).unwrap();
        let registries = Registries::new(Some(path.clone()), &Limits::default());
        let image = ImageRef::parse("r.example:5000/app:v1").unwrap();
        let found = registries.resolve(&image).await.unwrap();
        assert_eq!(found.credentials.as_ref().map(|c| c.password.as_str()), Some("p"));
        // The file is read once: a change after the first look-up is not seen by this run.
        std::fs::write(&path, "{}").unwrap();
        let clone = registries.clone();
        let again = clone.resolve(&ImageRef::parse("r.example:5000/other").unwrap()).await.unwrap();
        assert_eq!(again, found);
        let elsewhere = clone.resolve(&ImageRef::parse("quay.io/x").unwrap()).await.unwrap();
        assert_eq!(elsewhere.credentials, None);
        assert!(elsewhere.looked_in().contains(&path.display().to_string()), "{}", elsewhere.looked_in());
        assert!(!format!("{registries:?}").contains("dTpw"));
    }

    #[tokio::test]
    async fn a_missing_explicit_file_means_anonymous_and_says_so() {
        let registries = Registries::new(Some("/nonexistent/s2i/config.json".into()), &Limits::default());
        let found = registries.resolve(&ImageRef::parse("r.example/app").unwrap()).await.unwrap();
        assert_eq!(found.credentials, None);
        assert_eq!(found.looked_in(), "--dockercfg-path /nonexistent/s2i/config.json does not exist");
    }

    #[tokio::test]
    async fn an_invalid_file_is_an_error_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{not json").unwrap();
        let registries = Registries::new(Some(path), &Limits::default());
        let err = PullAccess::for_image(&registries, "r.example/app:latest").await.err().expect("an invalid file fails the pull");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().starts_with("unable to get r.example/app:latest: the credentials file"), "{err}");
        assert!(err.hint().contains("docker login"), "{}", err.hint());
    }

    #[tokio::test]
    async fn names_that_are_no_references_go_without_credentials() {
        let registries = Registries::new(Some("/nonexistent".into()), &Limits::default());
        let access = PullAccess::for_image(&registries, "oci-archive:/tmp/x.tar").await.unwrap();
        assert!(access.auth().is_none());
        let e = EngineError::Pull { image: "x".into(), message: "y".into() };
        assert!(access.diagnose(&registries, "oci-archive:/tmp/x.tar", e).await.is_err());
    }

    /// An engine that pulled with s2i's registry client (the OCI engine) already holds the
    /// registry's answer: it is the failure, as it is, and the registry is not asked again (here
    /// it could not be: `r.invalid` does not resolve).
    #[tokio::test]
    async fn a_registry_answer_inside_the_engine_error_is_the_failure() {
        let registries = Registries::new(Some("/nonexistent".into()), &Limits::default());
        let access = PullAccess::for_image(&registries, "r.invalid/team/app:v1").await.unwrap();
        let denied = RegistryError::Denied { registry: "r.invalid".into(), repository: "team/app".into(), action: "pull", detail: String::new() };
        let e = EngineError::Failed { op: "pulling r.invalid/team/app:v1".into(), source: Box::new(denied) };
        let failure = access.diagnose(&registries, "r.invalid/team/app:v1", e).await.expect("the registry's answer");
        assert!(
            matches!(&failure, RegistryFailure::Registry { transfer: Transfer::Pull, source, .. } if matches!(**source, RegistryError::Denied { .. })),
            "{failure:?}"
        );
        assert_eq!(failure.to_string(), "unable to get r.invalid/team/app:v1: r.invalid denied pull access to team/app");
    }

    #[test]
    fn a_failed_push_says_the_image_is_kept() {
        let cause = RegistryFailure::Engine {
            image: "r.example/app:v1".into(),
            source: Box::new(EngineError::Api { op: "pushing".into(), message: "denied".into(), status: None }),
        };
        let e = RegistryFailure::PushFailed { image: "r.example/app:v1".into(), image_id: "sha256:abc".into(), pushed: Vec::new(), cause: Box::new(cause) };
        assert_eq!(e.to_string(), "unable to push r.example/app:v1: pushing failed: denied; the built image r.example/app:v1 is kept locally");
        assert!(e.hint().ends_with("push the kept image with `docker push r.example/app:v1`"), "{}", e.hint());
        assert_eq!(e.exit_code(), 1);
    }
}
