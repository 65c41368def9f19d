//! Forking the session's first process and walking it, step by step, into its
//! box before the command's first instruction.
//!
//! The child is forked from the agent (untagged) by `clone3` straight into the
//! session's cgroup and, before `execve`, runs the walk below. Between the two it talks to
//! the agent over two pipes, so that nothing of the user's runs before each stage
//! is in place:
//!
//! 1. the child reports its pid (`P` + pid) and waits;
//! 2. the agent tags it in the kernel (it was born in the session's cgroup), then
//!    says go;
//! 3. the child starts a new session (`setsid`, the pty as its controlling terminal
//!    when there is one), takes the caller's groups, gid and uid, enters the
//!    caller's working directory and umask, then no_new_privs (unless it kept
//!    CAP_SYS_ADMIN), capabilities, Landlock and seccomp; reports `C` and waits;
//! 4. the agent reads back from `/proc/PID/status` what is in force, records the
//!    session's start with it, then says go;
//! 5. the child executes the command.
//!
//! A failed step is reported (`E`, the step, the errno) and the child exits; the
//! agent closes the go pipe instead of answering when it gives up, which the child
//! reads as the end. Everything in the child is async-signal-safe: raw syscalls
//! over memory prepared before the fork (the agent is threaded, and another thread
//! may have held the allocator's lock at the fork).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use super::sandbox::{EnterError, Sandbox};

/// What the child becomes.
pub struct Plan {
    pub program: CString,
    /// argv, `argv[0]` included.
    pub argv: Vec<CString>,
    /// `KEY=VALUE` each.
    pub env: Vec<CString>,
    /// stdin, stdout, stderr as the client passed them.
    pub stdio: [OwnedFd; 3],
    pub cwd: OwnedFd,
    pub umask: u32,
    /// The stdio index (0–2) that is the session's terminal, when it has one.
    pub terminal: Option<usize>,
    pub creds: Creds,
    pub sandbox: std::sync::Arc<Sandbox>,
}

/// Whom the child runs as: the caller, as the kernel saw it.
#[derive(Debug, Clone)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
}

/// A stage of the walk in, as the child reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Handshake,
    Setsid,
    Terminal,
    Groups,
    Gid,
    Uid,
    Cwd,
    Confine(EnterError),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Handshake => "cannot talk to the agent",
            Self::Setsid => "cannot start a new session (setsid)",
            Self::Terminal => "cannot make the terminal the session's controlling terminal",
            Self::Groups => "cannot take the caller's groups",
            Self::Gid => "cannot take the caller's gid",
            Self::Uid => "cannot take the caller's uid",
            Self::Cwd => "cannot enter the working directory",
            Self::Confine(e) => return write!(f, "{e}"),
        })
    }
}

impl Step {
    fn code(self) -> u8 {
        match self {
            Self::Handshake => 1,
            Self::Setsid => 2,
            Self::Terminal => 3,
            Self::Groups => 4,
            Self::Gid => 5,
            Self::Uid => 6,
            Self::Cwd => 7,
            Self::Confine(EnterError::NoNewPrivs(_)) => 8,
            Self::Confine(EnterError::Capabilities(_)) => 9,
            Self::Confine(EnterError::Landlock(_)) => 10,
            Self::Confine(EnterError::Seccomp(_)) => 11,
        }
    }

    fn from_code(code: u8, errno: i32) -> Self {
        match code {
            2 => Self::Setsid,
            3 => Self::Terminal,
            4 => Self::Groups,
            5 => Self::Gid,
            6 => Self::Uid,
            7 => Self::Cwd,
            8 => Self::Confine(EnterError::NoNewPrivs(errno)),
            9 => Self::Confine(EnterError::Capabilities(errno)),
            10 => Self::Confine(EnterError::Landlock(errno)),
            11 => Self::Confine(EnterError::Seccomp(errno)),
            _ => Self::Handshake,
        }
    }
}

/// What the child said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Pid(u32),
    Confined,
    Failed(Step, i32),
}

const REPORT_LEN: usize = 5;

impl Report {
    fn encode(self) -> [u8; REPORT_LEN] {
        match self {
            Self::Pid(pid) => {
                let p = pid.to_ne_bytes();
                [b'P', p[0], p[1], p[2], p[3]]
            }
            Self::Confined => [b'C', 0, 0, 0, 0],
            Self::Failed(step, errno) => {
                let e = errno.to_ne_bytes();
                // errno fits in 3 bytes; the step goes in the first.
                [b'E', step.code(), e[0], e[1], e[2]]
            }
        }
    }

    pub fn decode(b: [u8; REPORT_LEN]) -> Option<Self> {
        match b[0] {
            b'P' => Some(Self::Pid(u32::from_ne_bytes([b[1], b[2], b[3], b[4]]))),
            b'C' => Some(Self::Confined),
            b'E' => {
                let errno = i32::from_ne_bytes([b[2], b[3], b[4], 0]);
                Some(Self::Failed(Step::from_code(b[1], errno), errno))
            }
            _ => None,
        }
    }
}

/// The agent's ends of the two pipes.
pub struct Talk {
    /// Reports from the child.
    pub reports: OwnedFd,
    /// Go signals to the child; dropped to give up.
    pub go: OwnedFd,
}

/// A pipe's (read, write) ends, close-on-exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The child, everything it needs built before the fork: nothing in the child
/// allocates.
pub struct Prepared {
    program: CString,
    /// NUL-terminated pointer arrays into `_strings`.
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    _strings: (Vec<CString>, Vec<CString>),
    stdio: [OwnedFd; 3],
    /// The session's cgroup directory: the child is born in it (`CLONE_INTO_CGROUP`).
    cgroup: OwnedFd,
    /// Written with the errno when `execve` fails; closed by a successful one.
    exec_w: OwnedFd,
    exec_r: OwnedFd,
    walk: Walk,
}

// SAFETY: the raw pointers point into `_strings`, which moves with them and is
// never changed.
unsafe impl Send for Prepared {}

/// The child built, to be spawned into `cgroup` (spawning blocks until the child
/// has executed or failed, so it goes on a blocking thread), and the agent's ends
/// of the talk.
pub fn command(plan: Plan, cgroup: OwnedFd) -> io::Result<(Prepared, Talk)> {
    let (reports_r, reports_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let (exec_r, exec_w) = pipe()?;
    let Plan { program, argv, env, stdio, cwd, umask, terminal, creds, sandbox } = plan;
    let ptrs = |v: &[CString]| v.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect::<Vec<_>>();
    let (argv_p, envp_p) = (ptrs(&argv), ptrs(&env));
    let walk = Walk { reports: reports_w, go: go_r, cwd, umask, terminal, creds, sandbox };
    Ok((
        Prepared {
            program,
            argv: argv_p,
            envp: envp_p,
            _strings: (argv, env),
            stdio,
            cgroup,
            exec_w,
            exec_r,
            walk,
        },
        Talk { reports: reports_r, go: go_w },
    ))
}

/// The session's first process, executed.
#[derive(Debug)]
pub struct Spawned {
    pid: u32,
    status: Option<ExitStatus>,
}

impl Spawned {
    /// Blocks until it ends.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(s) = self.try_wait_flags(0)? {
                return Ok(s);
            }
        }
    }

    /// Its end, if it has ended.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.try_wait_flags(libc::WNOHANG)
    }

    fn try_wait_flags(&mut self, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let mut status = 0;
        // SAFETY: our own child; `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(self.pid as libc::pid_t, &raw mut status, flags) };
        match r {
            0 => Ok(None),
            r if r > 0 => {
                let s = ExitStatus::from_raw(status);
                self.status = Some(s);
                Ok(Some(s))
            }
            _ => {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) { Ok(None) } else { Err(e) }
            }
        }
    }
}

/// Forks the child straight into its cgroup (clone3 with `CLONE_INTO_CGROUP`: no
/// migration afterwards, whose cgroup lock was most of a launch's p99) and blocks
/// until it has executed the command, or returns why it could not.
pub fn spawn(p: Prepared) -> io::Result<Spawned> {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
    // stack_size, tls, set_tid, set_tid_size, cgroup.
    let mut args = [0u64; 11];
    args[0] = CLONE_INTO_CGROUP;
    args[4] = libc::SIGCHLD as u64;
    args[10] = p.cgroup.as_raw_fd() as u64;
    // SAFETY: clone3 without CLONE_VM is a fork: the child gets a copy of this
    // process and runs only `child_main`, which is async-signal-safe.
    let r = unsafe { libc::syscall(libc::SYS_clone3, args.as_mut_ptr(), size_of_val(&args)) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if r == 0 {
        // SAFETY: in the child, before anything else runs.
        unsafe { child_main(&p) }
    }
    let pid = u32::try_from(r).map_err(|_| io::Error::other("clone3 returned an impossible pid"))?;
    let Prepared { exec_r, exec_w, .. } = p; // everything else closes here, in the agent
    drop(exec_w);
    let mut spawned = Spawned { pid, status: None };
    // EOF: the exec closed the pipe. Four bytes: its errno.
    let mut said = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::fs::File::from(exec_r), &mut said);
    if let Some(errno) = said.first_chunk::<4>() {
        let _ = spawned.wait();
        return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(*errno)));
    }
    Ok(spawned)
}

/// The child: stdio, signals as a fresh program expects them, the walk, the exec.
///
/// # Safety
/// Only in the child `spawn` forked; never returns.
unsafe fn child_main(p: &Prepared) -> ! {
    // SAFETY (whole body): raw syscalls over memory prepared before the fork.
    unsafe {
        // Off stdio's numbers first, so no source is overwritten by another's dup2.
        let mut high = [-1; 3];
        for (i, fd) in p.stdio.iter().enumerate() {
            high[i] = libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3);
            if high[i] < 0 {
                libc::_exit(127);
            }
        }
        for (i, fd) in high.iter().enumerate() {
            if libc::dup2(*fd, i as RawFd) < 0 {
                libc::_exit(127);
            }
        }
        // Rust ignores SIGPIPE, the agent may have been started with signals
        // ignored (under nohup: SIGHUP), and its threads may block signals; a
        // command starts with none of that (handlers reset at exec by themselves,
        // an ignored signal stays ignored). The raw call, because glibc's refuses
        // the two signals it keeps for itself (32 and 33), which the agent's
        // runtime may have left ignored; SIGKILL and SIGSTOP refuse, harmlessly.
        // The kernel's `struct sigaction` all zero: SIG_DFL, no flags, no mask.
        let default_action = [0u64; 4];
        for sig in 1..=64 {
            libc::syscall(libc::SYS_rt_sigaction, sig, default_action.as_ptr(), std::ptr::null_mut::<u64>(), 8);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const none, std::ptr::null_mut());
        if p.walk.run().is_err() {
            libc::_exit(127);
        }
        libc::execve(p.program.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
        let errno = *libc::__errno_location();
        let _ = write_all(p.exec_w.as_raw_fd(), &errno.to_ne_bytes());
        libc::_exit(127)
    }
}

/// What the child's `pre_exec` owns.
struct Walk {
    reports: OwnedFd,
    go: OwnedFd,
    cwd: OwnedFd,
    umask: u32,
    terminal: Option<usize>,
    creds: Creds,
    sandbox: std::sync::Arc<Sandbox>,
}

impl Walk {
    fn run(&self) -> io::Result<()> {
        match self.steps() {
            Ok(()) => Ok(()),
            Err((step, errno)) => {
                let _ = write_all(
                    self.reports.as_raw_fd(),
                    &Report::Failed(step, errno).encode(),
                );
                Err(io::Error::from_raw_os_error(errno))
            }
        }
    }

    fn steps(&self) -> Result<(), (Step, i32)> {
        let last = |step| {
            (
                step,
                io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO),
            )
        };
        // Nothing of the agent's may reach the command: every descriptor above
        // stdio closes at exec, whatever its flags were.
        // SAFETY: close_range with the CLOEXEC flag only marks descriptors.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        // SAFETY: getpid has no preconditions.
        let pid = u32::try_from(unsafe { libc::getpid() }).unwrap_or(0);
        write_all(self.reports.as_raw_fd(), &Report::Pid(pid).encode())
            .map_err(|e| (Step::Handshake, e))?;
        wait_go(self.go.as_raw_fd()).map_err(|e| (Step::Handshake, e))?;
        // Tagged and in its cgroup from here on.
        // SAFETY: setsid has no preconditions; a forked child is never a group leader.
        if unsafe { libc::setsid() } < 0 {
            return Err(last(Step::Setsid));
        }
        if let Some(fd) = self.terminal {
            // SAFETY: TIOCSCTTY with 0: take the terminal only if no session has it.
            if unsafe { libc::ioctl(fd as RawFd, libc::TIOCSCTTY, 0) } != 0 {
                return Err(last(Step::Terminal));
            }
        }
        let c = &self.creds;
        // Raw syscalls, not glibc's wrappers: those broadcast a credential change to
        // every thread glibc knows of, and after a raw clone3 it still counts the
        // agent's threads, so it would wait on them forever. This process has one.
        // SAFETY: the group list outlives the call; its length is passed with it.
        if unsafe { libc::syscall(libc::SYS_setgroups, c.groups.len(), c.groups.as_ptr()) } != 0 {
            return Err(last(Step::Groups));
        }
        // SAFETY: plain id arguments.
        if unsafe { libc::syscall(libc::SYS_setresgid, c.gid, c.gid, c.gid) } != 0 {
            return Err(last(Step::Gid));
        }
        // SAFETY: plain id arguments. For a uid other than 0 this clears every
        // capability, so the steps below run with the caller's own rights.
        if unsafe { libc::syscall(libc::SYS_setresuid, c.uid, c.uid, c.uid) } != 0 {
            return Err(last(Step::Uid));
        }
        // SAFETY: a directory descriptor the client passed; checked as the caller.
        if unsafe { libc::fchdir(self.cwd.as_raw_fd()) } != 0 {
            return Err(last(Step::Cwd));
        }
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(self.umask & 0o777) };
        self.sandbox.enter().map_err(|e| {
            let errno = match e {
                EnterError::NoNewPrivs(n)
                | EnterError::Capabilities(n)
                | EnterError::Landlock(n)
                | EnterError::Seccomp(n) => n,
            };
            (Step::Confine(e), errno)
        })?;
        write_all(self.reports.as_raw_fd(), &Report::Confined.encode())
            .map_err(|e| (Step::Handshake, e))?;
        wait_go(self.go.as_raw_fd()).map_err(|e| (Step::Handshake, e))
    }
}

fn write_all(fd: RawFd, mut bytes: &[u8]) -> Result<(), i32> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is valid for its length.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[usize::try_from(n).unwrap_or(bytes.len())..];
    }
    Ok(())
}

/// Blocks for one go byte; the agent closing its end instead means stop.
fn wait_go(fd: RawFd) -> Result<(), i32> {
    let mut b = 0u8;
    loop {
        // SAFETY: one byte into `b`.
        let n = unsafe { libc::read(fd, (&raw mut b).cast(), 1) };
        match n {
            1 => return Ok(()),
            0 => return Err(libc::ECANCELED),
            _ => {
                let e = io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO);
                if e != libc::EINTR {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        for r in [
            Report::Pid(4_194_304),
            Report::Confined,
            Report::Failed(Step::Uid, libc::EPERM),
            Report::Failed(
                Step::Confine(EnterError::Landlock(libc::E2BIG)),
                libc::E2BIG,
            ),
        ] {
            assert_eq!(Report::decode(r.encode()), Some(r));
        }
        assert_eq!(Report::decode(*b"xxxxx"), None);
    }
}
