//! `s2i`: the command line. Parses flags into the library's config, connects the engine, runs
//! the command and renders the outcome. All terminal output goes through [`ui`].

mod cli;
mod commands;
mod delivery;
mod engine;
mod json_output;
mod logging;
mod provenance;
mod s2ifile;
mod ui;
mod verify_output;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use s2i_core::BuildError;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from (`-dirty` with uncommitted changes), or `unknown`.
pub const GIT_COMMIT: &str = env!("S2I_GIT_COMMIT");

fn main() -> ExitCode {
    let cwd = std::env::current_dir().unwrap_or_default();
    let (argv, pending) = s2ifile::restore(std::env::args_os().collect(), &cwd);
    let cli = match cli::Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version go to stdout and succeed; any flag or argument error is exit 1, as in the reference.
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    logging::init(cli.global.loglevel);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            report(&BuildError::io("starting the async runtime", e));
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(commands::run(cli, pending));
    // A blocking task still reading an archive after an interruption must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(failed) => {
            report(&failed.error);
            ExitCode::from(failed.exit_code)
        }
    }
}

/// Render an error once: `error: …` with the causes its message does not already say, and
/// `hint: …` when there is one.
fn report(e: &BuildError) {
    let message = s2i_core::redact::text(&s2i_engine::error_chain(e));
    ui::ui().error(&message, e.hint().as_deref());
}
