//! Host names to addresses for every HTTP client of s2i, in Rust (hickory): `/etc/hosts` first
//! (and `localhost` always), then the nameservers of `/etc/resolv.conf`.
//!
//! Never the C library's `getaddrinfo`: a static s2i running inside any builder image (the
//! in-place engine of a Tekton step) would then load that image's NSS modules, built for another
//! libc, or find none. IP literals never get here (the HTTP connector takes them as they are).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use hickory_resolver::config::{LookupIpStrategy, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, TokioResolver};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tracing::debug;

/// A resolver for one HTTP client: `reqwest::ClientBuilder::dns_resolver(dns::resolver())`.
/// Built at its first lookup, inside the runtime that does it (hickory's connections belong to it).
pub fn resolver() -> Arc<SystemResolver> {
    Arc::new(SystemResolver { state: Arc::new(OnceLock::new()) })
}

#[derive(Clone)]
pub struct SystemResolver {
    state: Arc<OnceLock<Built>>,
}

struct Built {
    resolver: TokioResolver,
    /// Why there is no nameserver, when `/etc/resolv.conf` named none.
    no_nameserver: Option<String>,
}

/// A name that neither `/etc/hosts` nor a nameserver could give, with what was missing.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {name}: it is not in /etc/hosts and there is no nameserver ({why})")]
struct NoNameserver {
    name: String,
    why: String,
    #[source]
    cause: ResolveError,
}

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let state = self.state.clone();
        Box::pin(async move {
            let built = state.get_or_init(|| build(hickory_resolver::system_conf::read_system_conf()));
            match built.resolver.lookup_ip(name.as_str()).await {
                Ok(found) => {
                    let addrs: Addrs = Box::new(found.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect::<Vec<_>>().into_iter());
                    Ok(addrs)
                }
                Err(cause) => match &built.no_nameserver {
                    Some(why) => Err(Box::new(NoNameserver { name: name.as_str().to_string(), why: why.clone(), cause }) as _),
                    None => Err(Box::new(cause) as _),
                },
            }
        })
    }
}

/// The resolver for the system's configuration, or, when `/etc/resolv.conf` is missing or names no
/// nameserver (an image run without one), one that still answers from `/etc/hosts` and for
/// `localhost`, as the C library does.
fn build(system: Result<(ResolverConfig, ResolverOpts), ResolveError>) -> Built {
    let provider = TokioConnectionProvider::default();
    let (builder, no_nameserver) = match system {
        Ok((config, options)) => (TokioResolver::builder_with_config(config, provider).with_options(options), None),
        Err(e) => {
            debug!("No nameserver from /etc/resolv.conf ({e}): names resolve from /etc/hosts only");
            let config = ResolverConfig::from_parts(None, Vec::new(), Vec::<hickory_resolver::config::NameServerConfig>::new());
            (TokioResolver::builder_with_config(config, provider), Some(format!("/etc/resolv.conf: {e}")))
        }
    };
    let mut builder = builder;
    // Both families, for the connector's happy eyeballs (as reqwest's own hickory resolver asks).
    builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    Built { resolver: builder.build(), no_nameserver }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn without_resolv_conf() -> SystemResolver {
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        SystemResolver { state: Arc::new(OnceLock::from(build(Err(missing.into())))) }
    }

    async fn lookup(r: &SystemResolver, name: &str) -> Result<Vec<SocketAddr>, String> {
        match r.resolve(name.parse().unwrap()).await {
            Ok(addrs) => Ok(addrs.collect()),
            Err(e) => Err(crate::error_chain(e.as_ref())),
        }
    }

    #[tokio::test]
    async fn localhost_resolves_without_any_nameserver() {
        let r = without_resolv_conf();
        let found = lookup(&r, "localhost").await.unwrap();
        assert!(found.iter().any(|a| a.ip() == std::net::Ipv4Addr::LOCALHOST), "{found:?}");
        // RFC 6761: every name under localhost. is the loopback, never asked of a server.
        let found = lookup(&r, "registry.localhost").await.unwrap();
        assert!(found.iter().all(|a| a.ip().is_loopback()) && !found.is_empty(), "{found:?}");
    }

    #[tokio::test]
    async fn a_name_without_a_nameserver_says_what_is_missing() {
        let err = lookup(&without_resolv_conf(), "registry.s2i-no-such-host.test").await.unwrap_err();
        assert!(err.starts_with("cannot resolve registry.s2i-no-such-host.test: it is not in /etc/hosts and there is no nameserver (/etc/resolv.conf: "), "{err}");
    }
}
