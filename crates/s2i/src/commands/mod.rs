//! One module per subcommand; this one dispatches and holds what they share: running a future so
//! that Ctrl-C (or SIGTERM, SIGHUP, SIGQUIT) removes what it made.

mod build;
mod completion;
mod copy_binary;
mod create;
mod generate;
mod rebuild;
mod usage;

use std::future::Future;

use s2i_core::limits::Limits;
use s2i_core::BuildError;
use s2i_engine::Engine;
use tokio::signal::unix::{signal, SignalKind};
use tracing::warn;

use crate::cli::{Cli, Command};
use crate::s2ifile::Pending;

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
