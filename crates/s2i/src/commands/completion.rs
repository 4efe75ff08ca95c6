//! `s2i completion bash|zsh|fish`: a shell completion script on stdout.

use clap::CommandFactory;
use clap_complete::Shell;
use s2i_core::BuildError;

use crate::cli::{Cli, CompletionArgs};

pub fn run(args: CompletionArgs) -> Result<(), BuildError> {
    let invalid = |value: String, reason: &str| BuildError::InvalidValue { what: "shell", value, reason: reason.into() };
    let shell = match args.shell.as_slice() {
        [] => return Err(invalid(String::new(), "shell not specified: s2i completion bash, zsh or fish")),
        [one] => one,
        more => return Err(invalid(more.join(" "), "too many arguments: give one shell (bash, zsh or fish)")),
    };
    let shell = match shell.as_str() {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        other => return Err(invalid(other.to_string(), "unsupported shell: use bash, zsh or fish")),
    };
    clap_complete::generate(shell, &mut Cli::command(), "s2i", &mut std::io::stdout());
    Ok(())
}
