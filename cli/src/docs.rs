//! `warrant completions SHELL`, and the packaging options `warrant --completions SHELL`
//! and `warrant --man-pages DIR`: all generated from this binary's own clap definitions,
//! so they cannot drift from the flags.
//!
//! `cargo xtask package` ships their output in the `warrant` package (completions for
//! bash, zsh and fish; `warrant.1` and one page per subcommand, `warrant-grant-issue.1`
//! and so on). `completions` is a real command for people who did not install the
//! package: `warrant completions zsh > ~/.zfunc/_warrant`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Command, CommandFactory as _};
use clap_complete::Shell;

/// `warrant completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print a completion script for.
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

/// Prints the completion script for `args.shell` to `out`.
pub fn completions(mut cmd: Command, args: &CompletionsArgs, out: &mut dyn Write) -> Result<u8> {
    // Into memory first: clap_complete panics on a write error, such as a closed pipe.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "warrant", &mut script);
    out.write_all(&script).and_then(|()| out.flush()).context("cannot write the completion script")?;
    Ok(0)
}

/// Writes warrant.1 and one page per subcommand into `dir`.
pub fn man_pages(cmd: Command, dir: &Path) -> Result<u8> {
    clap_mangen::generate_to(cmd, dir).with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    Ok(0)
}

/// Packaging (`cargo xtask package`): `warrant --completions SHELL` and `warrant
/// --man-pages DIR`, the same options the daemons take. Read before clap parses (as the
/// only two arguments), so that they stay out of the scripts and pages they make:
/// clap_complete keeps hidden commands and flags in. `None` for any other command line.
pub fn packaging() -> Option<ExitCode> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let [flag, value] = args.as_slice() else { return None };
    let result = match flag.to_str()? {
        "--completions" => match value.to_str().and_then(|v| v.parse::<Shell>().ok()) {
            Some(shell) => completions(crate::Cli::command(), &CompletionsArgs { shell }, &mut std::io::stdout().lock()),
            None => Err(anyhow::anyhow!("unknown shell {value:?}: bash, elvish, fish, powershell or zsh")),
        },
        "--man-pages" => man_pages(crate::Cli::command(), Path::new(value)),
        _ => return None,
    };
    Some(match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => crate::report(&err),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> Command {
        Command::new("warrant")
            .version("1.2.3")
            .subcommand(Command::new("grant").about("Issue grants.").subcommand(Command::new("issue")))
    }

    #[test]
    fn bash_completion_names_the_subcommands() {
        let mut out = Vec::new();
        completions(cli(), &CompletionsArgs { shell: Shell::Bash }, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("complete -F _warrant"), "{text}");
        assert!(text.contains("grant"), "{text}");
    }

    #[test]
    fn one_man_page_per_visible_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        man_pages(cli(), dir.path()).unwrap();
        let mut names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["warrant-grant-issue.1", "warrant-grant.1", "warrant.1"]);
        let page = std::fs::read_to_string(dir.path().join("warrant-grant.1")).unwrap();
        assert!(page.contains("Issue grants."), "{page}");
    }
}
