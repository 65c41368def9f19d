//! `warrant exec` and `warrant attach`: starting sessions.
//!
//! `exec` asks the agent to tag *this* process (the agent finds it by the socket's
//! peer credentials and moves it into the session's cgroup), confines itself (a
//! Landlock domain from the grant's exec and file rules plus self-protection, and a
//! seccomp filter: see `sandbox`), then replaces itself with the command via `execv`:
//! same pid, so the command and everything it forks are born tagged and confined,
//! with no window in which they are not. To make that hand-over
//! clean it runs its one RPC on a current-thread runtime, drops the runtime before
//! exec, and restores the signal dispositions Rust changed at startup.

use std::ffi::{CString, OsStr, OsString};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;
use warrant_policy::Policy;
use warrant_proto::token::TokenFile;
use warrant_proto::{AttachRequest, Session, StartSessionRequest, StartSessionWithTokenRequest};

use crate::client::{Agent, Fail, io_cause};
use crate::output::{self, sanitize};
use crate::sandbox::Sandbox;

/// Exit status when the command cannot be found (as in POSIX shells).
const NOT_FOUND: u8 = 127;

/// Exit status when the command was found but could not be executed.
const CANNOT_EXECUTE: u8 = 126;

/// `warrant exec`
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The grant to run under (g-…).
    #[arg(long, value_name = "ID", required_unless_present = "token", conflicts_with = "token")]
    pub grant: Option<String>,
    /// A signed grant token file (from the collector): the agent verifies it
    /// offline and creates its grant; the token's policy confines the command.
    #[arg(long, value_name = "FILE")]
    pub token: Option<PathBuf>,
    /// The command and its arguments; put `--` before them if the command takes flags.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// What lets a session in.
pub enum Authority {
    /// A grant issued on this host.
    Grant(String),
    /// A signed token and its policy; `how` is "exec" or "login", for the record.
    Token { file: TokenFile, how: &'static str },
}

/// `warrant attach`
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The grant to attach under (g-…).
    #[arg(long, value_name = "ID")]
    pub grant: String,
    /// The process to tag; its children from now on inherit the tag.
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: u32,
}

/// `warrant exec`: only returns on failure (or with the exit status to use).
pub fn run(socket: &Path, args: &ExecArgs) -> Result<u8> {
    let authority = match (&args.grant, &args.token) {
        (Some(grant), _) => Authority::Grant(grant.clone()),
        (None, Some(path)) => Authority::Token { file: read_token_file(path)?, how: "exec" },
        (None, None) => anyhow::bail!("missing --grant or --token"),
    };
    run_under(socket, &authority, &args.command, None)
}

/// Reads a token file (`warrant token sign --out`, or the collector's).
pub fn read_token_file(path: &Path) -> Result<TokenFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read token file {}", path.display()))?;
    TokenFile::parse(&text).with_context(|| format!("cannot use token file {}", path.display()))
}

/// Starts a session under `authority`, confines this process, and becomes
/// `command` (with `argv0` as its name when given, e.g. `-bash` for a login shell).
pub fn run_under(socket: &Path, authority: &Authority, command: &[OsString], argv0: Option<&OsStr>) -> Result<u8> {
    let Some(typed) = command.first() else {
        anyhow::bail!("missing the command to run");
    };
    let program = resolve(typed)?;
    let c_program = cstring(program.as_os_str())?;
    let mut c_argv: Vec<CString> = command.iter().map(|a| cstring(a)).collect::<Result<_>>()?;
    if let Some(name) = argv0 {
        c_argv[0] = cstring(name)?;
    }
    let recorded: Vec<String> = command.iter().map(|a| a.to_string_lossy().into_owned()).collect();

    // One thread: the agent tags and moves this process; no worker threads to
    // race with that, and nothing left running when exec replaces the image.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let session = runtime.block_on(async {
        let mut agent = Agent::connect(socket).await?;
        // The Landlock ruleset is planned and filled before the agent tags this
        // process: the directory listings and path opens it takes are not the
        // session's doing.
        let mut agent_paths = Vec::new();
        let (policy, digest) = match authority {
            Authority::Grant(grant) => {
                let grant_policy = agent.get_policy(grant).await?;
                agent_paths.clone_from(&grant_policy.protected_paths);
                let policy = if grant_policy.policy.is_empty() {
                    None
                } else {
                    let file = if grant_policy.policy_file.is_empty() { "policy" } else { &grant_policy.policy_file };
                    Some(Policy::from_yaml(&grant_policy.policy, file).context("the agent sent a policy this warrant cannot read")?)
                };
                (policy, grant_policy.digest)
            }
            // The agent checks the text against the token's signed digest; this
            // side only needs it readable to build the sandbox from.
            Authority::Token { file, .. } if file.policy.trim().is_empty() => (None, String::new()),
            Authority::Token { file, .. } => {
                let p = Policy::from_yaml(&file.policy, "token policy").context("cannot read the token's policy")?;
                let digest = p.digest().to_string();
                (Some(p), digest)
            }
        };
        let sandbox = Sandbox::prepare(policy.as_ref(), &agent_paths)?;
        for (dir, why) in &sandbox.unlisted {
            let _ = writeln!(io::stderr(), "warrant: note: cannot list {} ({why}): what it holds is denied", dir.display());
        }
        let session = match authority {
            Authority::Grant(grant) => {
                let req = StartSessionRequest {
                    grant: grant.clone(),
                    command: recorded,
                    sandboxed: true,
                    sandbox_policy_digest: digest,
                };
                agent.start_session(req).await?
            }
            Authority::Token { file, how } => {
                let req = StartSessionWithTokenRequest {
                    token: file.token.clone(),
                    policy: file.policy.clone(),
                    command: recorded,
                    sandboxed: true,
                    sandbox_policy_digest: digest,
                    how: (*how).to_owned(),
                };
                agent.start_session_with_token(req).await?
            }
        };
        Ok::<_, anyhow::Error>((session, sandbox))
    });
    drop(runtime);
    let (session, sandbox) = session?;
    let rules = sandbox.rules;
    // From here on this process is the session: confine it for good, then become
    // the command. A failure leaves a tagged process that exits at once.
    sandbox.enter().context("cannot confine the session")?;

    let _ = writeln!(
        io::stderr(),
        "warrant: {}, confined ({rules} Landlock path rules, seccomp)",
        started(&session, output::now_unix_ns())
    );
    let err = exec(&c_program, &c_argv);
    let code = if err.kind() == io::ErrorKind::NotFound { NOT_FOUND } else { CANNOT_EXECUTE };
    Err(Fail { code, message: format!("cannot execute {}: {}", lossy(typed), io_cause(&err)) }.into())
}

/// `warrant attach`: prints the new session's id.
pub async fn attach(socket: &Path, args: &AttachArgs, out: &mut impl Write) -> Result<u8> {
    let mut agent = Agent::connect(socket).await?;
    let session = agent.attach(AttachRequest { grant: args.grant.clone(), pid: args.pid }).await?;
    writeln!(out, "{}", session.id)?;
    out.flush()?;
    let _ = writeln!(io::stderr(), "warrant: pid {} is now {}", args.pid, started(&session, output::now_unix_ns()));
    Ok(0)
}

/// `session s-4 under grant g-2 (1m59s left)`
fn started(session: &Session, now: i64) -> String {
    let mut s = format!("session {} under grant {}", sanitize(&session.id), sanitize(&session.grant));
    if session.expires_at_unix_ns != 0 {
        let _ = write!(s, " ({})", output::left(session.expires_at_unix_ns, now));
    }
    s
}

/// Finds the program: a name containing `/` is a path (relative to the current
/// directory), anything else is looked up in `PATH`.
fn resolve(typed: &OsStr) -> Result<PathBuf> {
    let not_found = || Fail { code: NOT_FOUND, message: format!("command not found: {}", lossy(typed)) };
    if typed.as_bytes().contains(&b'/') {
        let path = PathBuf::from(typed);
        if path.symlink_metadata().is_ok() { Ok(path) } else { Err(not_found().into()) }
    } else if typed.is_empty() {
        Err(not_found().into())
    } else {
        which::which(typed).map_err(|_| not_found().into())
    }
}

fn cstring(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).with_context(|| format!("invalid argument {}: contains a NUL byte", lossy(s)))
}

fn lossy(s: &OsStr) -> String {
    sanitize(&s.to_string_lossy()).into_owned()
}

/// Replaces this process with `program`; returns only the reason it could not.
fn exec(program: &CString, argv: &[CString]) -> io::Error {
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: signal() with SIG_DFL installs no handler. Rust's runtime set SIGPIPE
    // to SIG_IGN at startup, and an ignored signal stays ignored across exec: without
    // this, `cmd | head` inside the session would see EPIPE instead of dying quietly.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // SAFETY: `program` and every element of `ptrs` point to NUL-terminated strings
    // that outlive the call, and `ptrs` ends with a null pointer as execv requires.
    unsafe {
        libc::execv(program.as_ptr(), ptrs.as_ptr());
    }
    io::Error::last_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_finds_programs_in_path_and_accepts_paths() {
        let sh = resolve(OsStr::new("sh")).unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        assert_eq!(resolve(OsStr::new("/bin/sh")).unwrap(), PathBuf::from("/bin/sh"));
    }

    #[test]
    fn unknown_command_is_127() {
        for name in ["warrant-no-such-command", "./warrant-no-such-command", ""] {
            let err = resolve(OsStr::new(name)).unwrap_err();
            let fail = err.downcast_ref::<Fail>().unwrap();
            assert_eq!(fail.code, NOT_FOUND);
            assert_eq!(fail.message, format!("command not found: {name}"));
        }
    }

    #[test]
    fn started_line() {
        let now = 1_700_000_000_000_000_000;
        let s = Session {
            id: "s-4".into(),
            grant: "g-2".into(),
            expires_at_unix_ns: now + 119_000_000_000,
            ..Default::default()
        };
        assert_eq!(started(&s, now), "session s-4 under grant g-2 (1m59s left)");
    }
}
