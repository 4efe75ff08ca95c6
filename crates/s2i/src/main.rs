//! `s2i`: the command line. Parses flags into the library's config, connects the engine, runs
//! the command and renders the outcome. All terminal output happens here.

mod cli;
mod commands;
mod logging;
mod s2ifile;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use s2i_core::BuildError;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from (`-dirty` with uncommitted changes), or `unknown`.
pub const GIT_COMMIT: &str = env!("S2I_GIT_COMMIT");

/// `--use-config`: what to save to `.s2ifile` (and where) once the build's config is valid.
pub static PENDING_CONFIG: std::sync::OnceLock<Option<(s2ifile::Pending, std::path::PathBuf)>> = std::sync::OnceLock::new();

fn main() -> ExitCode {
    let cwd = std::env::current_dir().unwrap_or_default();
    let (argv, pending_config) = s2ifile::restore(std::env::args_os().collect(), &cwd);
    let cli = match cli::Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version go to stdout and succeed; any flag or argument error is exit 1, as in the reference.
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    logging::init(cli.global.loglevel);
    let _ = PENDING_CONFIG.set(pending_config.map(|p| (p, cwd)));
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            report(&BuildError::io("starting the async runtime", e));
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(e.exit_code().clamp(1, 255) as u8)
        }
    }
}

/// Render an error once: `error: …` and, when there is one, `hint: …`.
fn report(e: &BuildError) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {e}");
    if let Some(hint) = e.hint() {
        let _ = writeln!(err, "hint: {hint}");
    }
}
