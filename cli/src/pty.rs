//! The session's own terminal, and relaying until the session's first process
//! ends.
//!
//! An interactive session never gets the operator's terminal: the session could
//! push keystrokes into it (`TIOCSTI`) or leave it in any state, and the
//! operator's shell would read them after the session ends. Instead, as sudo's
//! `use_pty` and sshd do, this side opens a pseudo-terminal, gives its slave end
//! to the agent for the session (which makes it the controlling terminal of a new
//! session), puts the operator's terminal in raw mode and copies bytes both ways.
//! Ctrl-C, Ctrl-Z and the like pass as bytes, and the session's terminal turns them
//! into signals for its own foreground job; a window size change is copied onto
//! the pseudo-terminal, whose kernel side sends SIGWINCH. SIGINT, SIGTERM, SIGHUP
//! and SIGQUIT sent to this process are forwarded to the session's process group.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rustix::pty::OpenptFlags;
use rustix::termios::{self, OptionalActions, Termios};
use warrant_proto::v1::LaunchExit;

use crate::launch::Connection;

/// A pseudo-terminal for the session: this side keeps the master.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

impl Pty {
    /// Opens one shaped like `like` (its modes and window size).
    pub fn open(like: BorrowedFd<'_>) -> Result<Self> {
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
        let master = rustix::pty::openpt(flags)
            .map_err(io::Error::from)
            .context("cannot open a pseudo-terminal")?;
        rustix::pty::grantpt(&master)
            .map_err(io::Error::from)
            .context("cannot set up the pseudo-terminal")?;
        rustix::pty::unlockpt(&master)
            .map_err(io::Error::from)
            .context("cannot unlock the pseudo-terminal")?;
        let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags)
            .map_err(io::Error::from)
            .context("cannot open the pseudo-terminal's slave side")?;
        if let Ok(modes) = termios::tcgetattr(like) {
            let _ = termios::tcsetattr(&slave, OptionalActions::Now, &modes);
        }
        if let Ok(size) = termios::tcgetwinsize(like) {
            let _ = termios::tcsetwinsize(&master, size);
        }
        Ok(Self { master, slave })
    }
}

/// The operator's terminal in raw mode until dropped.
pub struct RawMode {
    fd: RawFd,
    saved: Termios,
}

impl RawMode {
    pub fn enter(tty: BorrowedFd<'_>) -> Result<Self> {
        let saved = termios::tcgetattr(tty)
            .map_err(io::Error::from)
            .context("cannot read the terminal's modes")?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(tty, OptionalActions::Flush, &raw)
            .map_err(io::Error::from)
            .context("cannot put the terminal in raw mode")?;
        Ok(Self {
            fd: tty.as_raw_fd(),
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: the descriptor is stdin, open for the life of the process.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(fd, OptionalActions::Flush, &self.saved);
    }
}

/// The write end of the signal pipe, for the handler.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = u8::try_from(sig).unwrap_or(0);
        // SAFETY: write(2) is async-signal-safe; one byte from the stack.
        unsafe { libc::write(fd, (&raw const b).cast(), 1) };
    }
}

/// Signals this process relays, delivered as bytes on a pipe so the loop can
/// poll for them.
struct Signals {
    read: OwnedFd,
    _write: OwnedFd,
}

const RELAYED: [i32; 5] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGWINCH,
];

impl Signals {
    fn install() -> Result<Self> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error()).context("cannot create the signal pipe");
        }
        // SAFETY: both were just created; owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        SIGNAL_PIPE.store(write.as_raw_fd(), Ordering::Relaxed);
        for sig in RELAYED {
            // SAFETY: a zeroed sigaction with a plain handler and SA_RESTART.
            let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            // SAFETY: installing a handler that only writes to a pipe.
            if unsafe { libc::sigaction(sig, &raw const sa, std::ptr::null_mut()) } != 0 {
                return Err(io::Error::last_os_error()).context("cannot install a signal handler");
            }
        }
        Ok(Self {
            read,
            _write: write,
        })
    }

    fn drain(&self) -> Vec<i32> {
        let mut buf = [0u8; 64];
        // SAFETY: reading into a stack buffer of the size given; non-blocking.
        let n = unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        buf[..usize::try_from(n).unwrap_or(0)]
            .iter()
            .map(|b| i32::from(*b))
            .collect()
    }
}

/// What the session's terminal is wired to on this side.
pub struct Wiring {
    /// The master, when the session has a terminal.
    pub master: Option<OwnedFd>,
    /// Whether this side's stdin is the terminal (copied into the master).
    pub input: bool,
    /// Where the master's output goes (stdout or stderr, whichever was a terminal).
    pub output: RawFd,
}

/// How long output may keep coming after the first process ended (background
/// jobs holding the terminal open do not hold the exit up).
const DRAIN: Duration = Duration::from_millis(200);

/// Relays until the first process ends; returns how it ended.
pub fn relay(conn: &mut Connection, wiring: &Wiring) -> Result<LaunchExit> {
    let signals = Signals::install()?;
    let mut exit: Option<LaunchExit> = None;
    let mut exit_at = Instant::now();
    let mut input = wiring.input;
    let mut master_open = wiring.master.is_some();
    let mut buf = vec![0u8; 16 * 1024];
    // The exit may have come in one read with the start's answer.
    if let Some(e) = conn.buffered_exit()? {
        exit = Some(e);
    }
    loop {
        if let Some(e) = &exit
            && (!master_open || exit_at.elapsed() >= DRAIN)
        {
            return Ok(*e);
        }
        let mut polls = vec![
            pollfd(conn.raw_fd(), exit.is_none()),
            pollfd(signals.read.as_raw_fd(), true),
            pollfd(
                wiring.master.as_ref().map_or(-1, AsRawFd::as_raw_fd),
                master_open,
            ),
            pollfd(0, input && exit.is_none()),
        ];
        let timeout = if exit.is_some() { 50 } else { -1 };
        // SAFETY: `polls` is a valid array of the length passed.
        let r = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, timeout) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("poll");
        }
        if ready(&polls[0])
            && let Some(e) = conn.read_exit()?
        {
            exit = Some(e);
            exit_at = Instant::now();
        }
        if ready(&polls[1]) {
            for sig in signals.drain() {
                if sig == libc::SIGWINCH {
                    if let Some(m) = &wiring.master
                        && let Ok(size) = termios::tcgetwinsize(stdin())
                    {
                        let _ = termios::tcsetwinsize(m, size);
                    }
                } else if exit.is_none() {
                    conn.signal(sig)?;
                }
            }
        }
        if let Some(m) = &wiring.master
            && ready(&polls[2])
        {
            match read(m.as_raw_fd(), &mut buf) {
                // EIO: every slave descriptor is closed, the session's terminal is done.
                Ok(0) | Err(_) => master_open = false,
                Ok(n) => write_all(wiring.output, &buf[..n])?,
            }
        }
        if let Some(m) = &wiring.master
            && ready(&polls[3])
        {
            match read(0, &mut buf) {
                Ok(0) | Err(_) => input = false,
                Ok(n) => write_all(m.as_raw_fd(), &buf[..n])?,
            }
        }
    }
}

fn stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

fn pollfd(fd: RawFd, want: bool) -> libc::pollfd {
    libc::pollfd {
        fd: if want { fd } else { -1 },
        events: libc::POLLIN,
        revents: 0,
    }
}

fn ready(p: &libc::pollfd) -> bool {
    p.fd >= 0 && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(usize::try_from(n).unwrap_or(0));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn write_all(fd: RawFd, mut bytes: &[u8]) -> Result<()> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is valid for its length.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("cannot relay the session's terminal");
        }
        bytes = &bytes[usize::try_from(n).unwrap_or(bytes.len())..];
    }
    Ok(())
}
