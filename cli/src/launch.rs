//! The client side of the agent's launch socket (`warrant/v1/launch.proto`): hand
//! the agent this process's stdio and working directory and the command, then
//! relay until the session's first process ends.
//!
//! Nothing here confines anything: the agent creates the first process already
//! tagged and confined. This side only chooses what to pass: when any of stdin,
//! stdout, stderr is a terminal, the session gets a pseudo-terminal of its own
//! (see [`crate::pty`]) in place of each of those, so nothing the session does can
//! reach the operator's terminal; other descriptors (pipes, files) pass as they are.

use std::ffi::OsString;
use std::io::{self, IoSlice, IoSliceMut, Read as _, Write as _};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use warrant_proto::launch::{self, Frames};
use warrant_proto::v1::{
    LaunchClient, LaunchExit, LaunchReady, LaunchRequest, LaunchServer, LaunchStarted, Terminal, launch_client,
    launch_server,
};

use crate::client::{connect_error, io_cause};

/// A front socket's launch socket: its path with this appended (as the agent
/// serves it).
const SUFFIX: &str = ".launch";

/// The launch socket beside `socket`.
pub fn path_for(socket: &Path) -> PathBuf {
    let mut s = socket.as_os_str().to_owned();
    s.push(SUFFIX);
    PathBuf::from(s)
}

/// What to start.
pub struct Start {
    pub authority: warrant_proto::v1::launch_request::Authority,
    pub program: PathBuf,
    pub argv: Vec<OsString>,
    /// `NAME=value` entries (see [`environment`]).
    pub env: Vec<Vec<u8>>,
}

/// This process's environment, as the command gets it.
pub fn environment() -> Vec<Vec<u8>> {
    std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            kv
        })
        .collect()
}

/// How many bytes of argv+env `execve` will count for `start` (see
/// [`launch::exec_args_size`]), and the most this start may have: what the
/// kernel allows under this process's stack limit (as `sysconf(_SC_ARG_MAX)`
/// derives it, with the kernel's 6 MiB cap), and never more than the agent takes
/// ([`launch::MAX_ARGS`]). The agent's child may have a lower stack limit; then
/// its `execve` fails with E2BIG, reported like any exec failure.
pub fn args_size_and_limit(start: &Start) -> (usize, usize) {
    let size = launch::exec_args_size(
        start.program.as_os_str().as_bytes(),
        start.argv.iter().map(|a| a.as_bytes()),
        start.env.iter().map(Vec::as_slice),
    );
    let stack = rustix::process::getrlimit(rustix::process::Resource::Stack)
        .current
        .unwrap_or(u64::MAX);
    (size, launch::exec_args_limit(stack).min(launch::MAX_ARGS))
}

/// A connection with a session starting or running on it.
pub struct Connection {
    stream: UnixStream,
    frames: Frames,
    path: PathBuf,
}

/// How the agent answered the start.
pub enum Answer {
    /// Boxed: the refusal is the small, common case of a failed start.
    Started(Box<LaunchStarted>),
    Refused(warrant_proto::v1::LaunchRefused),
}

impl Connection {
    /// Connects to the launch socket beside `socket`.
    pub fn open(socket: &Path) -> Result<Self> {
        let path = path_for(socket);
        let stream = UnixStream::connect(&path).map_err(|e| connect_error(&path, &e))?;
        Ok(Self {
            stream,
            frames: Frames::replies(),
            path,
        })
    }

    /// Sends the start message with `stdio` and the working directory.
    pub fn start(
        &mut self,
        start: Start,
        stdio: [BorrowedFd<'_>; 3],
        terminal: &[u32],
    ) -> Result<()> {
        let cwd = rustix::fs::open(
            ".",
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(io::Error::from)
        .context("cannot open the current directory to hand it to the session")?;
        // umask can only be read by setting it: set it back at once.
        let mask = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        rustix::process::umask(mask);
        let req = LaunchRequest {
            authority: Some(start.authority),
            program: start.program.into_os_string().into_vec(),
            argv: start.argv.into_iter().map(OsString::into_vec).collect(),
            env: start.env,
            umask: mask.bits(),
            terminal: (!terminal.is_empty()).then(|| Terminal {
                fds: terminal.to_vec(),
            }),
        };
        let msg = LaunchClient {
            msg: Some(launch_client::Msg::Start(req)),
        };
        let bytes = launch::encode(&msg)
            .context("the command and its environment are too large to start")?;
        let fds: [BorrowedFd<'_>; launch::START_FDS] = [stdio[0], stdio[1], stdio[2], cwd.as_fd()];
        let mut space =
            [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(launch::START_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            anyhow::bail!("cannot attach the descriptors to the start message");
        }
        // The descriptors travel with the first byte; the rest follows plainly.
        let sent = rustix::net::sendmsg(
            &self.stream,
            &[IoSlice::new(&bytes)],
            &mut control,
            SendFlags::empty(),
        )
        .map_err(io::Error::from)
        .map_err(|e| self.lost(&e))?;
        (&self.stream)
            .write_all(&bytes[sent..])
            .map_err(|e| self.lost(&e))?;
        Ok(())
    }

    /// Tells the agent the start has been shown: the command runs from now on.
    pub fn ready(&mut self) -> Result<()> {
        self.send(launch_client::Msg::Ready(LaunchReady {}))
    }

    /// Forwards a signal to the session's process group.
    pub fn signal(&mut self, sig: i32) -> Result<()> {
        self.send(launch_client::Msg::Signal(sig))
    }

    fn send(&mut self, msg: launch_client::Msg) -> Result<()> {
        let bytes = launch::encode_within(&LaunchClient { msg: Some(msg) }, launch::MAX_FRAME)?;
        (&self.stream).write_all(&bytes).map_err(|e| self.lost(&e))
    }

    /// Blocks for the agent's answer to the start.
    pub fn answer(&mut self) -> Result<Answer> {
        match self.next()? {
            Some(launch_server::Msg::Started(s)) => Ok(Answer::Started(Box::new(s))),
            Some(launch_server::Msg::Refused(r)) => Ok(Answer::Refused(r)),
            Some(launch_server::Msg::Exited(_)) => {
                anyhow::bail!("the agent reported an exit before the start")
            }
            None => anyhow::bail!(
                "the agent at {} closed the connection before the session started\n\nDid warrant-agent stop or restart? `warrant status` tells.",
                self.path.display()
            ),
        }
    }

    /// Reads whatever is waiting (the socket is readable): the exit, once it came;
    /// `Err` when the agent went away without one.
    pub fn read_exit(&mut self) -> Result<Option<LaunchExit>> {
        let mut buf = [0u8; 4096];
        let n = (&self.stream).read(&mut buf).map_err(|e| self.lost(&e))?;
        if n == 0 {
            anyhow::bail!(
                "lost the connection to the agent at {}; the session may still run (exit status unknown)\n\nDid warrant-agent stop or restart? `warrant status` tells.",
                self.path.display()
            );
        }
        self.frames.push(&buf[..n]);
        self.buffered_exit()
    }

    /// The exit, if it already arrived with an earlier read.
    pub fn buffered_exit(&mut self) -> Result<Option<LaunchExit>> {
        while let Some(m) = self.frames.pop::<LaunchServer>()? {
            if let Some(launch_server::Msg::Exited(e)) = m.msg {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    fn next(&mut self) -> Result<Option<launch_server::Msg>> {
        loop {
            if let Some(m) = self.frames.pop::<LaunchServer>()? {
                return Ok(m.msg);
            }
            let mut buf = [0u8; 4096];
            let mut iov = [IoSliceMut::new(&mut buf)];
            let n = (&self.stream)
                .read_vectored(&mut iov)
                .map_err(|e| self.lost(&e))?;
            if n == 0 {
                return Ok(None);
            }
            self.frames.push(&buf[..n]);
        }
    }

    fn lost(&self, e: &io::Error) -> anyhow::Error {
        anyhow::anyhow!(
            "lost the connection to the agent at {}: {}",
            self.path.display(),
            io_cause(e)
        )
    }

    pub fn raw_fd(&self) -> i32 {
        self.stream.as_raw_fd()
    }
}
