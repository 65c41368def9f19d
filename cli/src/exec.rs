//! `warrant exec` and `warrant attach`: starting sessions.
//!
//! `exec` hands the command to the agent's launch socket (see `launch`): the agent
//! creates the session's first process itself, tagged, in the session's cgroup,
//! under Landlock and seccomp before the command's first instruction, as the
//! caller's uid and groups, in the caller's working directory. Nothing of the
//! confinement depends on this client: one that skips a step gets no weaker
//! session. This side relays the terminal (a pseudo-terminal of the session's own
//! when it runs on one, see `pty`), forwards signals, and exits with the command's
//! status. `attach` tags a running process, recorded as unconfined.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;
use warrant_proto::token::TokenFile;
use warrant_proto::v1::{TokenAuthority, launch_request};
use warrant_proto::{AttachRequest, Session};

use crate::client::{Agent, Fail, io_cause};
use crate::launch::{self, Answer, Connection, Start};
use crate::output::{self, sanitize};
use crate::pty::{self, Pty, RawMode, Wiring};

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

/// Starts a session under `authority` running `command` (with `argv0` as its name
/// when given, e.g. `-bash` for a login shell): the agent creates its first
/// process, tagged and confined; this process relays the terminal and returns
/// the command's exit status.
pub fn run_under(
    socket: &Path,
    authority: &Authority,
    command: &[OsString],
    argv0: Option<&OsStr>,
) -> Result<u8> {
    let Some(typed) = command.first() else {
        anyhow::bail!("missing the command to run");
    };
    let program = resolve(typed)?;
    let program = if program.is_absolute() {
        program
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(program)
    };
    let mut argv: Vec<OsString> = command.to_vec();
    if let Some(name) = argv0 {
        argv[0] = name.to_owned();
    }
    let authority = match authority {
        Authority::Grant(grant) => launch_request::Authority::Grant(grant.clone()),
        Authority::Token { file, how } => launch_request::Authority::Token(TokenAuthority {
            token: file.token.clone(),
            policy: file.policy.clone(),
            how: (*how).to_owned(),
        }),
    };
    let start = Start {
        authority,
        program,
        argv,
        env: launch::environment(),
    };
    // As a shell would: an argument list execve would refuse is refused here,
    // before the agent is asked.
    let (size, limit) = launch::args_size_and_limit(&start);
    if size > limit {
        return Err(Fail {
            code: CANNOT_EXECUTE,
            message: format!(
                "argument list too long: {size} bytes of argv+env, the limit is {limit}"
            ),
        }
        .into());
    }

    // Each of stdin, stdout, stderr that is a terminal becomes the session's own
    // pseudo-terminal; the rest pass as they are.
    // SAFETY: descriptors 0, 1 and 2 stay open for the life of the process.
    let stdio: [BorrowedFd<'static>; 3] =
        std::array::from_fn(|i| unsafe { BorrowedFd::borrow_raw(i as i32) });
    let ttys: Vec<u32> = (0..3u32)
        .filter(|i| rustix::termios::isatty(stdio[*i as usize]))
        .collect();
    let pty = match ttys.first() {
        Some(first) => Some(Pty::open(stdio[*first as usize])?),
        None => None,
    };
    let passed: [BorrowedFd<'_>; 3] = std::array::from_fn(|i| match &pty {
        Some(p) if ttys.contains(&(i as u32)) => p.slave.as_fd(),
        _ => stdio[i],
    });
    let mut conn = Connection::open(socket)?;
    conn.start(start, passed, &ttys)?;
    let started = match conn.answer()? {
        Answer::Started(s) => s,
        Answer::Refused(r) => anyhow::bail!("{}", sanitize(&r.message)),
    };
    // The session holds the slave now; this side keeps the master only, so the
    // master reads EIO once the session's last holder of its terminal is gone.
    let (master, output) = match pty {
        Some(p) => {
            drop(p.slave);
            let out = if ttys.contains(&1) { 1 } else { 2 };
            (Some(p.master), out)
        }
        None => (None, 2),
    };
    // One write, and before the command runs: the agent holds it until `ready`,
    // so nothing it writes to the same terminal comes first or in between.
    let mut shown = String::new();
    if let Some(session) = &started.session {
        let _ = writeln!(
            shown,
            "warrant: {}, pid {}, confined by the agent ({} Landlock path rules, seccomp{})",
            started_line(session, output::now_unix_ns()),
            started.pid,
            started.landlock_rules,
            if master.is_some() {
                ", own terminal"
            } else {
                ""
            }
        );
    }
    for note in &started.notes {
        let _ = writeln!(shown, "warrant: note: {}", sanitize(note));
    }
    let _ = io::stderr().write_all(shown.as_bytes());
    conn.ready()?;
    let raw = match (&master, ttys.contains(&0)) {
        (Some(_), true) => Some(RawMode::enter(stdio[0])?),
        _ => None,
    };
    let wiring = Wiring {
        input: raw.is_some(),
        master,
        output,
    };
    let exit = pty::relay(&mut conn, &wiring);
    drop(raw);
    let exit = exit?;
    if exit.exec_errno != 0 {
        let code = if exit.exec_errno == libc::ENOENT {
            NOT_FOUND
        } else {
            CANNOT_EXECUTE
        };
        let cause = io_cause(&io::Error::from_raw_os_error(exit.exec_errno));
        return Err(Fail {
            code,
            message: format!("cannot execute {}: {cause}", lossy(typed)),
        }
        .into());
    }
    if exit.signal != 0 {
        let _ = writeln!(
            io::stderr(),
            "warrant: the session's command was ended by signal {}{}",
            exit.signal,
            if exit.core_dumped {
                " (core dumped)"
            } else {
                ""
            }
        );
        die_like(exit.signal);
        return Ok(u8::try_from(128 + exit.signal).unwrap_or(255));
    }
    Ok(u8::try_from(exit.code).unwrap_or(255))
}

/// Ends this process by `sig`, as the command ended, so a caller sees the same
/// status it would without warrant (as sudo does). No core of this process: the
/// command's own core, if any, is the command's.
fn die_like(sig: i32) {
    let _ = io::stderr().flush();
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls with valid arguments; SIG_DFL installs no handler.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &raw const no_core);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &raw const set, std::ptr::null_mut());
        libc::raise(sig);
    }
}


/// `warrant attach`: prints the new session's id.
pub async fn attach(socket: &Path, args: &AttachArgs, out: &mut impl Write) -> Result<u8> {
    let mut agent = Agent::connect(socket).await?;
    let session = agent.attach(AttachRequest { grant: args.grant.clone(), pid: args.pid }).await?;
    writeln!(out, "{}", session.id)?;
    out.flush()?;
    let _ = writeln!(
        io::stderr(),
        "warrant: pid {} is now {}",
        args.pid,
        started_line(&session, output::now_unix_ns())
    );
    Ok(0)
}

/// `session s-4 under grant g-2 (1m59s left)`
fn started_line(session: &Session, now: i64) -> String {
    let mut s = format!(
        "session {} under grant {}",
        sanitize(&session.id),
        sanitize(&session.grant)
    );
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

fn lossy(s: &OsStr) -> String {
    sanitize(&s.to_string_lossy()).into_owned()
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
    fn the_started_line_names_session_grant_and_time_left() {
        let now = 1_700_000_000_000_000_000;
        let s = Session {
            id: "s-4".into(),
            grant: "g-2".into(),
            expires_at_unix_ns: now + 119_000_000_000,
            ..Default::default()
        };
        assert_eq!(
            started_line(&s, now),
            "session s-4 under grant g-2 (1m59s left)"
        );
    }
}
