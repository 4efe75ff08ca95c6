//! Where the engine is and how to reach it: `-U/--url`, `DOCKER_HOST`, `CONTAINER_HOST`, the
//! default sockets of Docker and Podman, TLS flags and files.

use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};

/// Docker's socket: the first place s2i looks when nothing names an engine.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";
/// The socket of a rootful Podman service (`systemctl start podman.socket`).
pub const PODMAN_ROOTFUL_ENDPOINT: &str = "unix:///run/podman/podman.sock";

/// Where s2i looks for an engine, in order, when neither `-U`, `DOCKER_HOST` nor `CONTAINER_HOST`
/// names one: Docker's socket, then Podman's rootful socket, then the user's rootless Podman
/// socket (`$XDG_RUNTIME_DIR/podman/podman.sock`).
pub fn default_endpoints() -> Vec<String> {
    endpoints_to_try(non_empty_env("XDG_RUNTIME_DIR").as_deref())
}

fn endpoints_to_try(xdg_runtime_dir: Option<&str>) -> Vec<String> {
    let mut endpoints = vec![DEFAULT_ENDPOINT.to_string(), PODMAN_ROOTFUL_ENDPOINT.to_string()];
    if let Some(dir) = xdg_runtime_dir {
        endpoints.push(format!("unix://{}/podman/podman.sock", dir.trim_end_matches('/')));
    }
    endpoints
}

/// The endpoint the environment names: `DOCKER_HOST` first (what the docker CLI reads), then
/// `CONTAINER_HOST` (what Podman's remote client reads); empty when neither is set.
fn endpoint_from(env: impl Fn(&str) -> Option<String>) -> String {
    env("DOCKER_HOST").or_else(|| env("CONTAINER_HOST")).unwrap_or_default()
}

/// TLS settings as the reference reads them: TLS is on when `tls` or `verify` is set; the server is
/// verified against `ca` only with `verify`; each file is used only if it exists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsOptions {
    pub tls: bool,
    pub verify: bool,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsOptions {
    pub fn enabled(&self) -> bool {
        self.tls || self.verify
    }

    /// The directory holding `ca.pem`, `cert.pem` and `key.pem` by default.
    pub fn default_cert_dir() -> PathBuf {
        if let Some(dir) = non_empty_env("DOCKER_CERT_PATH").or_else(|| non_empty_env("DOCKER_CONFIG")) {
            return PathBuf::from(dir);
        }
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".docker")
    }
}

/// How to reach the engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectOptions {
    /// `unix:///path`, `tcp://host:port`, `http://…` or `https://…`; empty: the first of
    /// `default_endpoints` that answers.
    pub endpoint: String,
    pub tls: TlsOptions,
    /// Pin the API version (`DOCKER_API_VERSION`) instead of negotiating it.
    pub api_version: Option<(usize, usize)>,
}

impl ConnectOptions {
    /// Options from the environment alone (`DOCKER_HOST`, else Podman's `CONTAINER_HOST`, else
    /// none: discover; `DOCKER_TLS`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`, `DOCKER_API_VERSION`),
    /// as the CLI's defaults.
    pub fn from_env() -> Result<Self> {
        let dir = TlsOptions::default_cert_dir();
        Ok(ConnectOptions {
            endpoint: endpoint_from(non_empty_env),
            tls: TlsOptions {
                tls: non_empty_env("DOCKER_TLS").is_some(),
                verify: non_empty_env("DOCKER_TLS_VERIFY").is_some(),
                ca: dir.join("ca.pem"),
                cert: dir.join("cert.pem"),
                key: dir.join("key.pem"),
            },
            api_version: match non_empty_env("DOCKER_API_VERSION") {
                Some(v) => Some(parse_api_version(&v)?),
                None => None,
            },
        })
    }
}

/// `1.41` → `(1, 41)`; a leading `v` is tolerated.
pub fn parse_api_version(text: &str) -> Result<(usize, usize)> {
    let bad = || EngineError::Endpoint {
        endpoint: text.to_string(),
        reason: "DOCKER_API_VERSION must look like 1.41".into(),
    };
    let t = text.trim().trim_start_matches('v');
    let (major, minor) = t.split_once('.').ok_or_else(bad)?;
    Ok((major.parse().map_err(|_| bad())?, minor.parse().map_err(|_| bad())?))
}

/// The transport an endpoint asks for.
#[derive(Debug, PartialEq)]
pub(crate) enum Transport<'a> {
    Unix(&'a str),
    /// `host:port`, with or without TLS.
    Tcp(&'a str),
}

pub(crate) fn parse_endpoint(endpoint: &str) -> Result<Transport<'_>> {
    let unsupported = |reason: &str| EngineError::Endpoint { endpoint: endpoint.to_string(), reason: reason.to_string() };
    if let Some(path) = endpoint.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(unsupported("a unix endpoint needs a socket path, e.g. unix:///var/run/docker.sock"));
        }
        return Ok(Transport::Unix(path));
    }
    for scheme in ["tcp://", "http://", "https://"] {
        if let Some(addr) = endpoint.strip_prefix(scheme) {
            let addr = addr.trim_end_matches('/');
            if addr.is_empty() {
                return Err(unsupported("a tcp endpoint needs host:port"));
            }
            return Ok(Transport::Tcp(addr));
        }
    }
    if endpoint.starts_with('/') {
        return Ok(Transport::Unix(endpoint));
    }
    if endpoint.starts_with("ssh://") {
        return Err(unsupported(
            "ssh:// connections are not supported: forward the remote socket (ssh -L /tmp/engine.sock:/run/podman/podman.sock host) and use unix:///tmp/engine.sock",
        ));
    }
    Err(unsupported("use unix:///path/to/socket or tcp://host:port"))
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub(crate) fn existing(path: &Path) -> Option<&Path> {
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_to_transports() {
        assert_eq!(parse_endpoint("unix:///var/run/docker.sock").unwrap(), Transport::Unix("/var/run/docker.sock"));
        assert_eq!(parse_endpoint("tcp://127.0.0.1:2375").unwrap(), Transport::Tcp("127.0.0.1:2375"));
        assert_eq!(parse_endpoint("http://h:1/").unwrap(), Transport::Tcp("h:1"));
        assert_eq!(parse_endpoint("/run/podman.sock").unwrap(), Transport::Unix("/run/podman.sock"));
        assert!(parse_endpoint("ssh://me@host").is_err());
        assert!(parse_endpoint("unix://").is_err());
        assert!(parse_endpoint("tcp://").is_err());
    }

    #[test]
    fn docker_host_wins_over_container_host_and_nothing_means_discovery() {
        let env = |vars: &'static [(&'static str, &'static str)]| move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
        assert_eq!(endpoint_from(env(&[("DOCKER_HOST", "unix:///d.sock"), ("CONTAINER_HOST", "unix:///p.sock")])), "unix:///d.sock");
        assert_eq!(endpoint_from(env(&[("CONTAINER_HOST", "unix:///p.sock")])), "unix:///p.sock");
        assert_eq!(endpoint_from(env(&[])), "");
        assert_eq!(endpoints_to_try(None), ["unix:///var/run/docker.sock", "unix:///run/podman/podman.sock"]);
        assert_eq!(
            endpoints_to_try(Some("/run/user/1000/")),
            ["unix:///var/run/docker.sock", "unix:///run/podman/podman.sock", "unix:///run/user/1000/podman/podman.sock"]
        );
        let ssh = parse_endpoint("ssh://core@host/run/podman/podman.sock").unwrap_err().to_string();
        assert!(ssh.contains("ssh -L"), "{ssh}");
    }

    #[test]
    fn api_versions_parse() {
        assert_eq!(parse_api_version("1.41").unwrap(), (1, 41));
        assert_eq!(parse_api_version("v1.24").unwrap(), (1, 24));
        assert!(parse_api_version("latest").is_err());
        assert!(parse_api_version("1").is_err());
    }
}
