//! One module per subcommand; this one dispatches and holds what they share: connecting to the
//! engine and running a future so that Ctrl-C (or SIGTERM, SIGHUP, SIGQUIT) removes what it made.

mod build;
mod completion;
mod create;
mod generate;
mod rebuild;
mod report;
mod usage;

use std::future::Future;
use std::time::Duration;

use s2i_core::BuildError;
use s2i_engine::{ConnectOptions, DockerEngine, Engine, EngineError, ImageInfo};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::cli::{Cli, Command, GlobalArgs};

pub async fn run(cli: Cli) -> Result<(), BuildError> {
    match cli.command {
        None => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            Ok(())
        }
        Some(Command::Build(args)) => build::run(&cli.global, *args).await,
        Some(Command::Version) => {
            println!("s2i v{} (commit {})", crate::VERSION, crate::GIT_COMMIT);
            Ok(())
        }
        Some(Command::Rebuild(args)) => rebuild::run(&cli.global, args).await,
        Some(Command::Usage(args)) => usage::run(&cli.global, args).await,
        Some(Command::Create(args)) => create::run(args),
        Some(Command::Generate(args)) => generate::run(&cli.global, args).await,
        Some(Command::Completion(args)) => completion::run(args),
    }
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
    Ok(opts)
}

pub async fn connect(global: &GlobalArgs) -> Result<DockerEngine, BuildError> {
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

/// Run `work`; on a terminating signal drop it, remove every container the engine created, and
/// fail with [`BuildError::Interrupted`].
pub async fn interruptible<T>(
    engine: &dyn Engine,
    work: impl Future<Output = Result<T, BuildError>>,
) -> Result<T, BuildError> {
    let mut signals = Vec::new();
    for kind in [SignalKind::interrupt(), SignalKind::terminate(), SignalKind::hangup(), SignalKind::quit()] {
        signals.push(signal(kind).map_err(|e| BuildError::io("installing signal handlers", e))?);
    }
    let any_signal = async {
        let waits = signals.iter_mut().map(|s| Box::pin(s.recv()));
        futures_select_all(waits).await;
    };
    let outcome = tokio::select! {
        r = work => r,
        _ = any_signal => {
            warn!("Interrupted: removing the build's containers");
            Err(BuildError::Interrupted)
        }
    };
    // On every path: nothing this run created may outlive it.
    engine.remove_leftovers().await;
    outcome
}

async fn futures_select_all<F: Future + Unpin>(futs: impl Iterator<Item = F>) {
    let all: Vec<F> = futs.collect();
    let _ = futures_util::future::select_all(all).await;
}
