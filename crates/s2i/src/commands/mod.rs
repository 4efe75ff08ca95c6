//! One module per subcommand; this one dispatches and holds what they share: connecting to the
//! engine (`engine` picks Docker's API or the daemonless one) and running a future so that Ctrl-C (or SIGTERM, SIGHUP, SIGQUIT) removes what it made.

mod build;
mod completion;
mod copy_binary;
mod create;
mod engine;
mod generate;
mod rebuild;
mod report;
mod usage;

use std::future::Future;
use std::time::Duration;

use s2i_core::BuildError;
use s2i_engine::{ConnectOptions, DockerEngine, Engine, EngineError, ImageInfo};
use s2i_core::registry::CaFile;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::cli::{Cli, Command, GlobalArgs};
use crate::s2ifile::Pending;
use s2i_core::limits::Limits;

pub async fn run(cli: Cli, pending: Option<Pending>) -> Result<(), BuildError> {
    match cli.command {
        None => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            Ok(())
        }
        Some(Command::Build(args)) => build::run(&cli.global, *args, pending).await,
        Some(Command::Version) => {
            println!("s2i v{} (commit {})", crate::VERSION, crate::GIT_COMMIT);
            Ok(())
        }
        Some(Command::Rebuild(args)) => rebuild::run(&cli.global, args).await,
        Some(Command::Usage(args)) => usage::run(&cli.global, args).await,
        Some(Command::Create(args)) => create::run(args),
        Some(Command::Generate(args)) => generate::run(&cli.global, args).await,
        Some(Command::Completion(args)) => completion::run(args),
        Some(Command::CopyBinary(args)) => copy_binary::run(args),
    }
}

/// The CA files trusted for registries s2i talks to itself: `--ca-file`, then `SSL_CERT_FILE`
/// (which the system roots also read). Each is read here, so that a file that cannot be used stops
/// the command before any work, with an error that names the flag or the variable.
pub fn registry_ca_files(global: &GlobalArgs) -> Result<Vec<CaFile>, BuildError> {
    let mut files = Vec::new();
    if let Some(path) = global.registry.ca_file.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        files.push(CaFile::new(path, "--ca-file"));
    }
    if let Some(path) = std::env::var_os("SSL_CERT_FILE").filter(|p| !p.is_empty()) {
        files.push(CaFile::new(path, "SSL_CERT_FILE"));
    }
    for file in &files {
        file.certificates().map_err(|e| BuildError::RegistryTrust(Box::new(e)))?;
    }
    Ok(files)
}

/// Connection settings: the environment's, overridden by the global flags.
fn connect_options(global: &GlobalArgs) -> Result<ConnectOptions, BuildError> {
    let mut opts = ConnectOptions::from_env()?;
    if let Some(url) = global.url.as_deref().filter(|u| !u.is_empty()) {
        opts.endpoint = url.to_string();
    }
    if let Some(tls) = global.tls {
        opts.tls.tls = tls;
    }
    if let Some(verify) = global.tlsverify {
        opts.tls.verify = verify;
    }
    if let Some(ca) = &global.ca {
        opts.tls.ca = ca.clone();
    }
    if let Some(cert) = &global.cert {
        opts.tls.cert = cert.clone();
    }
    if let Some(key) = &global.key {
        opts.tls.key = key.clone();
    }
    // An https:// endpoint means TLS: speaking plain HTTP to it would send everything in the clear.
    if opts.endpoint.starts_with("https://") && !opts.tls.enabled() {
        opts.tls.tls = true;
    }
    if opts.tls.tls && !opts.tls.verify {
        warn!("--tls without --tlsverify: the connection to {} is encrypted, but nothing checks that the daemon is the one you meant", opts.endpoint);
    }
    Ok(opts)
}

pub use engine::connect;

/// The Docker API engine (Docker, Podman) at `-U`/`DOCKER_HOST`.
pub async fn connect_docker(global: &GlobalArgs) -> Result<DockerEngine, BuildError> {
    let opts = connect_options(global)?;
    DockerEngine::connect(&opts).await.map_err(|e| match e {
        EngineError::Connect { endpoint, reason } => BuildError::EngineUnreachable { endpoint, reason },
        other => other.into(),
    })
}

/// The builder as the local engine knows it, for Dockerfile generation, which needs no engine: an
/// engine that does not answer within a few seconds, or lacks the image, only means the builder's
/// scripts label is unknown (`--image-scripts-url` stands in for it).
pub async fn inspect_if_reachable(global: &GlobalArgs, image: &str) -> Option<ImageInfo> {
    let name = s2i_core::image_ref::with_default_tag(image);
    let attempt = async {
        let engine = connect(global).await.map_err(|e| e.to_string())?;
        engine.inspect_image(&name).await.map_err(|e| e.to_string())?.ok_or_else(|| "not present locally".to_string())
    };
    let outcome = tokio::time::timeout(Duration::from_secs(5), attempt).await.unwrap_or_else(|_| Err("the engine did not answer".into()));
    match outcome {
        Ok(info) => Some(info),
        Err(why) => {
            info!("Could not inspect the builder image {name} ({why}); its scripts label is unknown");
            None
        }
    }
}

/// Run `work`; on a terminating signal drop it (what it fetched, temp dirs included, goes with
/// it), remove every container the engine created, and fail with [`BuildError::Interrupted`].
/// The clean-up is bounded by the clean-up time limit, and a second signal ends the process at once.
pub async fn interruptible<T>(
    engine: Option<&dyn Engine>,
    limits: &Limits,
    work: impl Future<Output = Result<T, BuildError>>,
) -> Result<T, BuildError> {
    let mut signals = Signals::install()?;
    let outcome = tokio::select! {
        r = work => r,
        _ = signals.next() => {
            warn!("Interrupted: removing what the build made (interrupt again to quit at once)");
            Err(BuildError::Interrupted)
        }
    };
    // On every path: nothing this run created may outlive it.
    if let Some(engine) = engine {
        tokio::select! {
            cleaned = tokio::time::timeout(limits.cleanup_time, engine.remove_leftovers()) => {
                if cleaned.is_err() {
                    warn!("The engine did not finish removing the build's containers within {} s (S2I_LIMIT_CLEANUP_TIME); some may be left", limits.cleanup_time.as_secs());
                }
            }
            _ = signals.next() => {
                warn!("Interrupted again: quitting without waiting for the clean-up");
                std::process::exit(130);
            }
        }
    }
    outcome
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT, received as one stream.
struct Signals(Vec<tokio::signal::unix::Signal>);

impl Signals {
    fn install() -> Result<Signals, BuildError> {
        let mut all = Vec::new();
        for kind in [SignalKind::interrupt(), SignalKind::terminate(), SignalKind::hangup(), SignalKind::quit()] {
            all.push(signal(kind).map_err(|e| BuildError::io("installing signal handlers", e))?);
        }
        Ok(Signals(all))
    }

    async fn next(&mut self) {
        let waits: Vec<_> = self.0.iter_mut().map(|s| Box::pin(s.recv())).collect();
        let _ = futures_util::future::select_all(waits).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn global(args: &[&str]) -> GlobalArgs {
        let mut argv = vec!["s2i"];
        argv.extend_from_slice(args);
        argv.push("version");
        crate::cli::Cli::try_parse_from(argv).unwrap().global
    }

    #[test]
    fn an_https_endpoint_is_spoken_to_with_tls() {
        let opts = connect_options(&global(&["-U", "https://127.0.0.1:2376"])).unwrap();
        assert!(opts.tls.enabled(), "never plain HTTP to an https:// endpoint");
        assert!(!opts.tls.verify, "verification stays as the flags say");
        let opts = connect_options(&global(&["-U", "tcp://127.0.0.1:2375"])).unwrap();
        assert_eq!(opts.tls.enabled(), std::env::var_os("DOCKER_TLS").is_some() || std::env::var_os("DOCKER_TLS_VERIFY").is_some());
    }
}
