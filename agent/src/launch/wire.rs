//! The launch socket's messages on a tokio unix stream: frames in and out
//! (`warrant_proto::launch`), and the descriptors that come with the first one.

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use tokio::io::Interest;
use tokio::net::UnixStream;
use warrant_proto::launch::{self, FrameError, Frames};
use warrant_proto::v1::{LaunchClient, LaunchServer};

/// The client's side of a connection as it arrives: a start message of up to
/// [`launch::MAX_START`] bytes, then messages of up to [`launch::MAX_FRAME`]
/// (`Frames::default()`).
pub struct Incoming {
    frames: Frames,
    /// Descriptors received so far, in order.
    pub fds: Vec<OwnedFd>,
    /// The client closed its end.
    pub closed: bool,
}

impl Incoming {
    pub fn new() -> Self {
        Self {
            frames: Frames::default(),
            fds: Vec::new(),
            closed: false,
        }
    }

    /// The next message: `Ok(None)` once the client has closed its end.
    pub async fn next(&mut self, stream: &UnixStream) -> Result<Option<LaunchClient>, WireError> {
        loop {
            if let Some(m) = self.frames.pop::<LaunchClient>()? {
                return Ok(Some(m));
            }
            if self.closed {
                return Ok(None);
            }
            self.read(stream).await?;
        }
    }

    async fn read(&mut self, stream: &UnixStream) -> Result<(), WireError> {
        let mut buf = [0u8; 16 * 1024];
        let mut space =
            [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(launch::START_FDS + 4))];
        let (n, fds, truncated) = stream
            .async_io(Interest::READABLE, || {
                let mut control = RecvAncillaryBuffer::new(&mut space);
                let mut iov = [IoSliceMut::new(&mut buf)];
                let msg =
                    rustix::net::recvmsg(stream, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)
                        .map_err(io::Error::from)?;
                let mut fds = Vec::new();
                for m in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(got) = m {
                        fds.extend(got);
                    }
                }
                Ok((
                    msg.bytes,
                    fds,
                    msg.flags.contains(rustix::net::ReturnFlags::CTRUNC),
                ))
            })
            .await?;
        if truncated {
            return Err(WireError::Protocol(format!(
                "more than {} descriptors came with one message",
                launch::START_FDS + 4
            )));
        }
        self.fds.extend(fds);
        if n == 0 {
            self.closed = true;
        }
        self.frames.push(&buf[..n]);
        Ok(())
    }
}

/// Sends one message (through `&UnixStream`, so a read may wait at the same time),
/// of at most [`launch::MAX_REPLY`] bytes.
pub async fn send(stream: &UnixStream, msg: &LaunchServer) -> Result<(), WireError> {
    let bytes = launch::encode_within(msg, launch::MAX_REPLY)?;
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let n = stream
            .async_io(Interest::WRITABLE, || stream.try_write(rest))
            .await?;
        rest = &rest[n..];
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Over a limit or undecodable: the stream cannot be read further.
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Protocol(String),
    #[error("the connection failed: {0}")]
    Io(#[from] io::Error),
}
