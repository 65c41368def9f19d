//! `warrant completions SHELL`, and the packaging options `warrant --completions SHELL`
//! and `warrant --man-pages DIR` (`warrant_packaging`): all generated from this
//! binary's own clap definitions, so they cannot drift from the flags.
//!
//! `cargo xtask package` ships their output in the `warrant` package (completions for
//! bash, zsh and fish; `warrant.1` and one page per subcommand, `warrant-grant-issue.1`
//! and so on). `completions` is a real command for people who did not install the
//! package: `warrant completions zsh > ~/.zfunc/_warrant`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Command, CommandFactory as _};
use warrant_packaging::{Section, Shell};

/// `warrant completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print a completion script for.
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

/// Prints the completion script for `args.shell` to `out`.
pub fn completions(cmd: Command, args: &CompletionsArgs, out: &mut dyn Write) -> Result<u8> {
    warrant_packaging::completions(cmd, "warrant", args.shell, out)?;
    Ok(0)
}

/// `warrant --completions SHELL` and `warrant --man-pages DIR` (section 1); `None`
/// for any other command line.
pub fn packaging() -> Option<ExitCode> {
    warrant_packaging::run(crate::Cli::command, "warrant", Section::Commands)
}
