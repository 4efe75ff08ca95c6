//! One module per subcommand; this one dispatches and holds what they share: running a future so
//! that Ctrl-C (or SIGTERM, SIGHUP, SIGQUIT) removes what it made.

mod build;
mod completion;
mod copy_binary;
mod create;
mod generate;
mod rebuild;
mod usage;
mod verify;

pub use verify::ERROR_EXIT as VERIFY_ERROR_EXIT;

use std::future::Future;

use s2i_core::limits::Limits;
use s2i_core::BuildError;
use s2i_engine::Engine;
use tokio::signal::unix::{signal, SignalKind};
use tracing::warn;

use crate::cli::{Cli, Command};
use crate::s2ifile::S2ifileToSave;

/// A command that failed: its error, rendered once by the binary, and the exit code to end with.
pub struct Failed {
    pub error: BuildError,
    pub exit_code: u8,
}

impl From<BuildError> for Failed {
    fn from(error: BuildError) -> Failed {
        let exit_code = error.exit_code().clamp(1, 255) as u8;
        Failed { error, exit_code }
    }
}

/// Run the command; `Ok` holds its exit code (0, or a verdict's).
pub async fn run(cli: Cli, pending: Option<S2ifileToSave>) -> Result<u8, Failed> {
    let done = |r: Result<(), BuildError>| r.map(|()| 0).map_err(Failed::from);
    match cli.command {
        None => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            Ok(0)
        }
        Some(Command::Build(args)) => done(build::run(&cli.global, *args, pending).await),
        Some(Command::Version) => {
            println!("s2i v{} (commit {})", crate::VERSION, crate::GIT_COMMIT);
            Ok(0)
        }
        Some(Command::Rebuild(args)) => done(rebuild::run(&cli.global, args).await),
        Some(Command::Usage(args)) => done(usage::run(&cli.global, args).await),
        Some(Command::Create(args)) => done(create::run(args)),
        Some(Command::Generate(args)) => done(generate::run(&cli.global, args).await),
        Some(Command::Completion(args)) => done(completion::run(args)),
        Some(Command::CopyBinary(args)) => done(copy_binary::run(args)),
        // Every error of verify is 2: its 1 means "they differ".
        Some(Command::Verify(args)) => verify::run(&cli.global, *args).await.map_err(|error| Failed { error, exit_code: VERIFY_ERROR_EXIT }),
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
    interruptible_removing(engine, limits, &[], work).await
}

/// [`interruptible`] for work that makes images of its own, named in advance: whatever happens,
/// they are removed after the containers, within the same clean-up time limit.
pub async fn interruptible_removing<T>(
    engine: Option<&dyn Engine>,
    limits: &Limits,
    images: &[String],
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
        let clean_up = async {
            engine.remove_leftovers().await;
            remove_images(engine, images).await;
        };
        tokio::select! {
            cleaned = tokio::time::timeout(limits.cleanup_time, clean_up) => {
                if cleaned.is_err() {
                    warn!("The engine did not finish removing the build's containers and images within {} s (S2I_LIMIT_CLEANUP_TIME); some may be left", limits.cleanup_time.as_secs());
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

/// Remove `images` that exist (an interruption may have come before some were made).
async fn remove_images(engine: &dyn Engine, images: &[String]) {
    for image in images {
        match engine.inspect_image(image).await {
            Ok(Some(_)) => {
                if let Err(e) = engine.remove_image(image).await {
                    warn!("could not remove the image {image}: {e}");
                }
            }
            Ok(None) => {}
            Err(e) => warn!("could not look for the image {image} to remove it: {e}"),
        }
    }
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
