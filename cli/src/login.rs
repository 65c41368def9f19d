//! `warrant login`: an SSH login let in only with a signed grant token, tagged and
//! confined before the user's shell runs.
//!
//! sshd runs it as the user's `ForceCommand` (README: "SSH logins"). It takes the
//! token from `WARRANT_TOKEN` (sent by the client with `SetEnv`/`SendEnv`, accepted
//! with `AcceptEnv`) or `--token-file`, asks the agent to verify it and make this
//! process a session, confines itself like `warrant exec`, and then becomes the
//! user's shell, or `$SHELL -c "$SSH_ORIGINAL_COMMAND"` when the client asked for
//! a command. Without a valid token nothing runs: the agent records the refusal,
//! and the login ends with its reason.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;
use warrant_proto::token::TokenFile;

use crate::exec::{Authority, read_token_file, run_under};

/// The environment variable holding the token (compact form or a token file's text).
pub const TOKEN_ENV: &str = "WARRANT_TOKEN";

/// `warrant login`
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Token file to use when WARRANT_TOKEN is not set.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// `warrant login`: only returns on failure.
pub fn run(socket: &Path, args: &LoginArgs) -> Result<u8> {
    let file = token(args)?;
    let shell = std::env::var_os("SHELL").filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into());
    let (command, argv0) = command(&shell, std::env::var_os("SSH_ORIGINAL_COMMAND"));
    run_under(socket, &Authority::Token { file, how: "login" }, &command, argv0.as_deref())
        .context("login refused")
}

/// The token presented, or an empty one (the agent refuses it and records that
/// a login came without one).
fn token(args: &LoginArgs) -> Result<TokenFile> {
    if let Some(text) = std::env::var_os(TOKEN_ENV).filter(|t| !t.is_empty()) {
        return TokenFile::parse(&text.to_string_lossy()).with_context(|| format!("login refused: {TOKEN_ENV}"));
    }
    match &args.token_file {
        Some(path) => read_token_file(path).context("login refused"),
        None => Ok(TokenFile { token: String::new(), policy: String::new() }),
    }
}

/// What to run: the client's command through the shell, or the shell as a login
/// shell (`argv[0]` `-bash`, as sshd itself starts it).
fn command(shell: &OsStr, original: Option<OsString>) -> (Vec<OsString>, Option<OsString>) {
    match original.filter(|c| !c.is_empty()) {
        Some(cmd) => (vec![shell.to_owned(), "-c".into(), cmd], None),
        None => {
            let base = Path::new(shell).file_name().unwrap_or(shell);
            let mut argv0 = OsString::from("-");
            argv0.push(base);
            (vec![shell.to_owned()], Some(argv0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_runs_through_the_shell_and_a_bare_login_gets_a_login_shell() {
        let (cmd, argv0) = command(OsStr::new("/bin/bash"), Some("id -u".into()));
        assert_eq!(cmd, ["/bin/bash", "-c", "id -u"]);
        assert_eq!(argv0, None);
        let (cmd, argv0) = command(OsStr::new("/bin/bash"), None);
        assert_eq!(cmd, ["/bin/bash"]);
        assert_eq!(argv0.as_deref(), Some(OsStr::new("-bash")));
        let (_, argv0) = command(OsStr::new("/bin/sh"), Some(OsString::new()));
        assert_eq!(argv0.as_deref(), Some(OsStr::new("-sh")));
    }
}
