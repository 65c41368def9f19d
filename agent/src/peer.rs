//! Who is on the other end of the agent's unix sockets, decided by the kernel, and
//! the gate that refuses every call from inside a session.
//!
//! At accept, [`incoming`] takes the peer's credentials (`SO_PEERCRED`) and a pidfd
//! for it (`SO_PEERPIDFD`, Linux 6.5+): a handle on that very process, so a caller
//! that exits and has its pid reused cannot pass for another. [`Gate`] runs before
//! every rpc of the API and the door: a caller any of whose threads carries a kernel
//! tag is a session (or escaped from one) and is refused, whatever it asks for:
//! from inside a session a root shell could otherwise start a session under another
//! grant (re-tagging itself out of its own, so it survives the kill), issue grants,
//! swap its policy or kill other sessions. Each refusal is a `violation`.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures::Stream;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{UnixListener, UnixStream},
};
use tonic::{Request, Status, service::Interceptor, transport::server::Connected};
use warrant_common::TaskTag;

use crate::{host::Host, loader::TaskTags, procfs};

/// `SO_PEERPIDFD` (include/uapi/asm-generic/socket.h), not yet in libc.
const SO_PEERPIDFD: libc::c_int = 77;

/// The kernel's word on who connected.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Effective uid at connect.
    pub uid: u32,
    /// Effective gid at connect.
    pub gid: u32,
    /// Pid at connect (only meaningful while `pidfd` says the process lives).
    pub pid: u32,
    /// The process itself; `None` on a kernel without `SO_PEERPIDFD`.
    pub pidfd: Option<Arc<OwnedFd>>,
}

impl PeerInfo {
    /// Reads the peer of `stream`.
    pub fn of(stream: &UnixStream) -> io::Result<Self> {
        let fd = stream.as_fd().as_raw_fd();
        let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
        let mut len = size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` and `len` are valid out pointers of the sizes given.
        let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &raw mut len) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut pidfd: libc::c_int = -1;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: as above; on success the kernel hands us a new descriptor.
        let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, SO_PEERPIDFD, (&raw mut pidfd).cast(), &raw mut len) };
        // SAFETY: a non-negative descriptor just returned by the kernel, owned here.
        let pidfd =
            (r == 0 && pidfd >= 0).then(|| Arc::new(unsafe { OwnedFd::from_raw_fd(pidfd) }));
        Ok(Self {
            uid: cred.uid,
            gid: cred.gid,
            pid: u32::try_from(cred.pid).unwrap_or(0),
            pidfd,
        })
    }

    /// The request's peer, as read at accept.
    pub fn of_request<T>(req: &Request<T>) -> Result<&PeerInfo, Status> {
        req.extensions()
            .get::<PeerInfo>()
            .ok_or_else(|| Status::unauthenticated("no peer credentials on this connection"))
    }

    /// The kernel tag of the peer, if any of its threads carries one. Checked on
    /// every thread, not only the leader: a thread group whose leader has exited
    /// keeps its other threads' tags. Without a pidfd the pid is used, which is
    /// enough while the connection is open (the peer cannot exit and be replaced
    /// without closing its end, unless it passed the socket on; a tagged receiver
    /// then still fails the per-thread check below).
    pub fn tag(&self, tags: &TaskTags) -> Option<TaskTag> {
        if let Some(fd) = &self.pidfd
            && let Ok(Some(tag)) = tags.get(fd.as_fd())
        {
            return Some(tag);
        }
        let found = procfs::threads(self.pid).into_iter().find_map(|tid| {
            let fd = procfs::thread_pidfd(tid).ok()?;
            tags.get(fd.as_fd()).ok().flatten()
        });
        // The threads listed must still be the caller's: the pid was not reused.
        if found.is_some() && self.pidfd.as_ref().is_some_and(|fd| !alive(fd)) {
            return None;
        }
        found
    }
}

/// Whether the process behind `pidfd` still runs (signal 0 through it).
pub fn alive(pidfd: &OwnedFd) -> bool {
    // SAFETY: pidfd_send_signal with signal 0 only checks; no siginfo, no flags.
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), 0, std::ptr::null::<u8>(), 0) == 0 }
}

/// A unix connection and its peer, for tonic's `serve_with_incoming`.
pub struct PeerStream {
    inner: UnixStream,
    info: PeerInfo,
    /// Its place among the socket's open connections ([`incoming_limited`]).
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Until the first bytes arrive: when a silent connection is cut.
    silent: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Connected for PeerStream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let me = &mut *self;
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        if let Some(deadline) = me.silent.as_mut() {
            match &r {
                Poll::Ready(Ok(())) if buf.filled().len() > before => me.silent = None,
                Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client sent nothing in time")));
                }
                _ => {}
            }
        }
        r
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts connections on `listener`, each with its peer read by the kernel. A
/// connection whose peer cannot be read is dropped (and logged), not served.
pub fn incoming(listener: UnixListener) -> impl Stream<Item = io::Result<PeerStream>> {
    futures::stream::unfold(listener, |listener| async move {
        loop {
            match listener.accept().await {
                Ok((inner, _)) => match PeerInfo::of(&inner) {
                    Ok(info) => return Some((Ok(PeerStream { inner, info, _slot: None, silent: None }), listener)),
                    Err(e) => tracing::warn!("dropped a connection whose peer cannot be read: {e}"),
                },
                Err(e) => return Some((Err(e), listener)),
            }
        }
    })
}

/// [`incoming`] with limits, for a socket every local user may open: at most
/// `max` connections at once (one more is closed at once; refusals are logged at
/// the first and then at every power of two), and a connection that sends nothing
/// within `silent` is closed.
pub fn incoming_limited(
    listener: UnixListener,
    socket: &'static str,
    max: usize,
    silent: std::time::Duration,
) -> impl Stream<Item = io::Result<PeerStream>> {
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    futures::stream::unfold(listener, move |listener| {
        let (slots, refused) = (Arc::clone(&slots), Arc::clone(&refused));
        async move {
            loop {
                match listener.accept().await {
                    Ok((inner, _)) => {
                        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                            let n = refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                            if n.is_power_of_two() {
                                tracing::warn!("the {socket} socket has {max} connections open: closed a new one ({n} so far)");
                            }
                            continue;
                        };
                        match PeerInfo::of(&inner) {
                            Ok(info) => {
                                let silent = Some(Box::pin(tokio::time::sleep(silent)));
                                return Some((Ok(PeerStream { inner, info, _slot: Some(slot), silent }), listener));
                            }
                            Err(e) => tracing::warn!("dropped a connection whose peer cannot be read: {e}"),
                        }
                    }
                    Err(e) => return Some((Err(e), listener)),
                }
            }
        }
    })
}

/// Runs before every rpc: refuses callers from inside a session.
#[derive(Clone)]
pub struct Gate {
    host: Arc<Host>,
    /// The socket's name in refusals (`agent` or `door`).
    socket: &'static str,
}

impl Gate {
    pub fn new(host: Arc<Host>, socket: &'static str) -> Self {
        Self { host, socket }
    }
}

impl Interceptor for Gate {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let peer = PeerInfo::of_request(&req)?;
        if let Some(tag) = peer.tag(self.host.task_tags()) {
            let (host, pid, socket) = (Arc::clone(&self.host), peer.pid, self.socket);
            tokio::spawn(async move { host.refused_from_session(tag, pid, socket).await });
            return Err(Status::permission_denied(format!(
                "the warrant {} socket refuses processes of a session (pid {} is in session {}): a session may not start, \
                 change or end sessions or grants",
                self.socket,
                peer.pid,
                crate::ids::session(tag.session_id)
            )));
        }
        Ok(req)
    }
}
