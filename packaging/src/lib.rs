//! What each warrant binary prints for its package, from its own clap definition so
//! it cannot drift from the flags: `BINARY --completions SHELL` (a completion script
//! on stdout) and `BINARY --man-pages DIR` (its man pages, in the section it belongs
//! to: 1 for the `warrant` command, 8 for the daemons, one page per subcommand).
//!
//! The two options are read before clap parses, as the only two arguments, so they
//! stay out of the scripts and pages they make (clap_complete keeps hidden flags in).
//! `cargo xtask package` calls them and installs the output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Command;
pub use clap_complete::Shell;

/// What failed while writing a script or a page.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown shell {0:?}: bash, elvish, fish, powershell or zsh")]
    UnknownShell(String),
    #[error("cannot write the completion script: {0}")]
    Script(#[source] std::io::Error),
    #[error("cannot write the man page {}: {source}", path.display())]
    Page {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The man page section a binary's pages go in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// User commands (`warrant`).
    Commands,
    /// System administration and daemons (`warrant-agent`, `warrant-collector`).
    Daemons,
}

impl Section {
    /// Its number, as in the file name (`warrant-agent.8`) and the `.TH` line.
    #[must_use]
    pub fn number(self) -> &'static str {
        match self {
            Section::Commands => "1",
            Section::Daemons => "8",
        }
    }
}

/// Writes the completion script of `cmd` (named `bin`) for `shell` to `out`.
///
/// # Errors
/// [`Error::Script`] when `out` cannot be written (a closed pipe is not an error).
pub fn completions(mut cmd: Command, bin: &str, shell: Shell, out: &mut dyn Write) -> Result<(), Error> {
    // Into memory first: clap_complete panics on a write error, such as a closed pipe.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, bin.to_owned(), &mut script);
    match out.write_all(&script).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Script(e)),
        _ => Ok(()),
    }
}

/// Writes the man pages of `cmd` into `dir`: `NAME.S` and one `NAME-SUB.S` per
/// subcommand (visible ones, at every depth), `S` being `section`'s number. Returns
/// the files written.
///
/// # Errors
/// [`Error::Page`] for a page that cannot be written.
pub fn man_pages(cmd: Command, section: Section, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut cmd = cmd;
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, section, dir, &mut written)?;
    Ok(written)
}

fn write_pages(cmd: &Command, section: Section, dir: &Path, written: &mut Vec<PathBuf>) -> Result<(), Error> {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name()).to_owned();
    let path = dir.join(format!("{name}.{}", section.number()));
    let mut page = Vec::new();
    let rendered = clap_mangen::Man::new(cmd.clone()).section(section.number()).render(&mut page);
    rendered
        .and_then(|()| std::fs::write(&path, &page))
        .map_err(|source| Error::Page { path: path.clone(), source })?;
    written.push(path);
    // clap's own `help` subcommand (added by `build`) gets no page, as with clap_mangen.
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        write_pages(sub, section, dir, written)?;
    }
    Ok(())
}

/// `BIN --completions SHELL` and `BIN --man-pages DIR` for the binary whose clap
/// definition `cmd` gives: `None` for any other command line, else the exit code
/// after doing it (2 and a message on stderr when it failed).
pub fn run(cmd: impl FnOnce() -> Command, bin: &str, section: Section) -> Option<ExitCode> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let [flag, value] = args.as_slice() else { return None };
    let result = match flag.to_str()? {
        "--completions" => match value.to_str().and_then(|v| v.parse::<Shell>().ok()) {
            Some(shell) => completions(cmd(), bin, shell, &mut std::io::stdout().lock()),
            None => Err(Error::UnknownShell(value.to_string_lossy().into_owned())),
        },
        "--man-pages" => man_pages(cmd(), section, Path::new(value)).map(drop),
        _ => return None,
    };
    Some(match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{bin}: {e}");
            ExitCode::from(2)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> Command {
        Command::new("warrant")
            .version("1.2.3")
            .subcommand(Command::new("grant").about("Issue grants.").subcommand(Command::new("issue")))
            .subcommand(Command::new("internal").hide(true))
    }

    #[test]
    fn bash_completion_names_the_subcommands() {
        let mut out = Vec::new();
        completions(cli(), "warrant", Shell::Bash, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("complete -F _warrant"), "{text}");
        assert!(text.contains("grant"), "{text}");
    }

    #[test]
    fn pages_go_in_their_section_one_per_visible_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let mut names: Vec<String> = man_pages(cli(), Section::Commands, dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["warrant-grant-issue.1", "warrant-grant.1", "warrant.1"]);
        let page = std::fs::read_to_string(dir.path().join("warrant-grant.1")).unwrap();
        assert!(page.contains("Issue grants."), "{page}");

        let daemon = Command::new("warrant-agent").about("The host agent.");
        let written = man_pages(daemon, Section::Daemons, dir.path()).unwrap();
        assert_eq!(written, [dir.path().join("warrant-agent.8")]);
        let page = std::fs::read_to_string(&written[0]).unwrap();
        assert!(page.contains(".TH warrant-agent 8"), "{page}");
    }

    #[test]
    fn a_page_that_cannot_be_written_names_it() {
        let err = man_pages(cli(), Section::Commands, Path::new("/nonexistent/dir")).unwrap_err();
        assert!(err.to_string().starts_with("cannot write the man page /nonexistent/dir/warrant.1"), "{err}");
    }
}
