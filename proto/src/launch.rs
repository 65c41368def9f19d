//! Framing of the launch socket (`warrant/v1/launch.proto`): a 4-byte big-endian
//! length, then one message. Both ends read through [`Frames`], which takes bytes
//! as they arrive and yields whole messages, so a short read never splits one.
//!
//! **Limits.** The client's first message, `start`, carries the command's argv and
//! environment, which the kernel lets reach several MiB, so it may be up to
//! [`MAX_START`] bytes: [`MAX_ARGS`] of argv+env plus [`START_HEADROOM`] for
//! everything else it holds. Every later client message (`ready`, signals) is a few
//! bytes and is held to [`MAX_FRAME`]. The agent's answers are held to
//! [`MAX_REPLY`] (its `started` repeats the command).

use prost::Message;

/// The most argv+env bytes a start message may carry, counted as the kernel counts
/// them for `execve` (each string with its NUL, plus one pointer per string; see
/// [`exec_args_size`]). A fixed bound, not the client's `RLIMIT_STACK`: the agent
/// does not take a client's word for how much memory it may make it hold. The
/// kernel itself allows at most 6 MiB (3/4 of its 8 MiB `_STK_LIM`), and with the
/// usual 8 MiB stack limit 2 MiB ([`exec_args_limit`]).
pub const MAX_ARGS: usize = 4 << 20;

/// Room in a start message for what is not argv+env: the program's path (at most
/// `PATH_MAX`), a token (at most 16 KiB) and its policy (at most 128 KiB), the
/// terminal list, and protobuf's own tags and lengths (fewer bytes per string than
/// the NUL and pointer the kernel counts for it).
pub const START_HEADROOM: usize = 256 << 10;

/// The largest start message the agent accepts.
pub const MAX_START: usize = MAX_ARGS + START_HEADROOM;

/// The largest client message after the start.
pub const MAX_FRAME: usize = 64 << 10;

/// The largest message the agent sends: `started` repeats the session, its
/// command (argv, up to [`MAX_ARGS`]) included, so a start's size and 1 MiB for the
/// session's other fields and the notes.
pub const MAX_REPLY: usize = MAX_START + (1 << 20);

/// Descriptors the client passes with its `start` message: stdin, stdout, stderr
/// and the working directory.
pub const START_FDS: usize = 4;

/// The kernel's longest single argument or environment string, its NUL included
/// (`MAX_ARG_STRLEN`, 32 pages).
pub const MAX_ARG_STRLEN: usize = 32 * 4096;

/// How many bytes of argv+env `execve` accepts under a stack limit of
/// `rlimit_stack` bytes (`RLIM_INFINITY` as `u64::MAX`), as the kernel computes
/// it (`bprm_stack_limits` in fs/exec.c): a quarter of the stack limit, at most
/// 3/4 of `_STK_LIM` (6 MiB), at least `ARG_MAX` (32 pages, 128 KiB). glibc's
/// `sysconf(_SC_ARG_MAX)` is the same quarter without the 6 MiB cap.
#[must_use]
pub fn exec_args_limit(rlimit_stack: u64) -> usize {
    const STK_LIM: u64 = 8 << 20;
    const ARG_MAX: u64 = 32 * 4096;
    let limit = (rlimit_stack / 4).clamp(ARG_MAX, STK_LIM / 4 * 3);
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// The bytes of argv+env `execve` counts against [`exec_args_limit`]: every string
/// (the program's path, each environment entry, each argument) with its NUL, and
/// one pointer per argument and environment entry.
#[must_use]
pub fn exec_args_size<'a>(
    program: &[u8],
    argv: impl IntoIterator<Item = &'a [u8]>,
    env: impl IntoIterator<Item = &'a [u8]>,
) -> usize {
    let mut pointers = 0usize;
    let mut bytes = program.len() + 1;
    for s in argv.into_iter().chain(env) {
        pointers += 1;
        bytes += s.len() + 1;
    }
    bytes + pointers.max(1) * std::mem::size_of::<usize>()
}

/// Why a frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("a launch message of {len} bytes is over the {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    #[error("a launch message does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// `msg` framed for the socket, if it is at most [`MAX_START`] bytes (the largest
/// any receiver takes; see [`encode_within`] for a tighter bound).
pub fn encode<M: Message>(msg: &M) -> Result<Vec<u8>, FrameError> {
    encode_within(msg, MAX_START)
}

/// `msg` framed for the socket, if it is at most `limit` bytes.
pub fn encode_within<M: Message>(msg: &M, limit: usize) -> Result<Vec<u8>, FrameError> {
    let len = msg.encoded_len();
    let too_large = FrameError::TooLarge { len, limit };
    if len > limit {
        return Err(too_large);
    }
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&u32::try_from(len).map_err(|_| too_large)?.to_be_bytes());
    msg.encode(&mut out)
        .map_err(|_| FrameError::TooLarge { len, limit })?;
    Ok(out)
}

/// Bytes received so far, cut into messages: the first of at most `first` bytes,
/// every later one of at most `rest`.
#[derive(Debug)]
pub struct Frames {
    buf: Vec<u8>,
    limit: usize,
    rest: usize,
}

impl Default for Frames {
    /// What a client sends: a start message of up to [`MAX_START`] bytes, then
    /// messages of up to [`MAX_FRAME`].
    fn default() -> Self {
        Self::new(MAX_START, MAX_FRAME)
    }
}

impl Frames {
    /// Frames whose first message may be `first` bytes and every later one `rest`.
    #[must_use]
    pub fn new(first: usize, rest: usize) -> Self {
        Self {
            buf: Vec::new(),
            limit: first,
            rest,
        }
    }

    /// What the agent sends: messages of up to [`MAX_REPLY`] bytes.
    #[must_use]
    pub fn replies() -> Self {
        Self::new(MAX_REPLY, MAX_REPLY)
    }

    /// Appends bytes read from the socket. Once a frame's length is in (and within
    /// the limit), room for exactly that frame is reserved, so a large start
    /// message costs its own size, not the next power of two.
    pub fn push(&mut self, bytes: &[u8]) {
        let head = 4usize.saturating_sub(self.buf.len()).min(bytes.len());
        self.buf.extend_from_slice(&bytes[..head]);
        if let Some(len) = self.announced()
            && len <= self.limit
        {
            self.buf.reserve_exact((4 + len).saturating_sub(self.buf.len()));
        }
        self.buf.extend_from_slice(&bytes[head..]);
    }

    /// The length the frame at the front announces, once its 4 bytes are in.
    fn announced(&self) -> Option<usize> {
        self.buf
            .first_chunk::<4>()
            .map(|h| u32::from_be_bytes(*h) as usize)
    }

    /// The next whole message, if one has arrived. A length over the limit is an
    /// error as soon as the length is in, before its bytes are awaited.
    pub fn pop<M: Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        let Some(len) = self.announced() else {
            return Ok(None);
        };
        if len > self.limit {
            return Err(FrameError::TooLarge {
                len,
                limit: self.limit,
            });
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let msg = M::decode(&self.buf[4..4 + len])?;
        self.buf.drain(..4 + len);
        if self.buf.capacity() > 2 * self.rest.max(64 << 10) {
            // A large first message is done with: its buffer is not kept.
            self.buf.shrink_to_fit();
        }
        self.limit = self.rest;
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{LaunchClient, launch_client};

    #[test]
    fn frames_survive_any_split() {
        let msgs: Vec<LaunchClient> = (1..4)
            .map(|s| LaunchClient {
                msg: Some(launch_client::Msg::Signal(s)),
            })
            .collect();
        let wire: Vec<u8> = msgs.iter().flat_map(|m| encode(m).unwrap()).collect();
        for cut in 0..wire.len() {
            let mut f = Frames::default();
            let mut got = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                f.push(part);
                while let Some(m) = f.pop::<LaunchClient>().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got, msgs, "split at {cut}");
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_its_bytes() {
        let mut f = Frames::default();
        f.push(&u32::try_from(MAX_START + 1).unwrap().to_be_bytes());
        assert!(matches!(
            f.pop::<LaunchClient>(),
            Err(FrameError::TooLarge { len, limit: MAX_START }) if len == MAX_START + 1
        ));
    }

    fn start_of(env_bytes: usize) -> LaunchClient {
        let entry = vec![b'x'; 100_000];
        LaunchClient {
            msg: Some(launch_client::Msg::Start(crate::v1::LaunchRequest {
                program: b"/bin/true".to_vec(),
                argv: vec![b"true".to_vec()],
                env: vec![entry; env_bytes.div_ceil(100_000)],
                ..Default::default()
            })),
        }
    }

    #[test]
    fn the_start_may_be_large_and_what_follows_may_not() {
        let big = start_of(3 << 20);
        let signal = LaunchClient {
            msg: Some(launch_client::Msg::Signal(2)),
        };
        let mut wire = encode(&big).unwrap();
        assert!(wire.len() > 3 << 20);
        wire.extend(encode(&signal).unwrap());
        let mut f = Frames::default();
        for chunk in wire.chunks(16 << 10) {
            f.push(chunk);
        }
        assert_eq!(f.pop::<LaunchClient>().unwrap(), Some(big.clone()));
        assert!(f.buf.capacity() < 1 << 20, "the start's buffer is let go");
        assert_eq!(f.pop::<LaunchClient>().unwrap(), Some(signal));
        // A second message of the start's size is over the later limit.
        let mut f = Frames::default();
        f.push(&encode(&LaunchClient {
            msg: Some(launch_client::Msg::Signal(2)),
        })
        .unwrap());
        f.push(&encode(&big).unwrap());
        assert!(f.pop::<LaunchClient>().unwrap().is_some());
        let err = f.pop::<LaunchClient>().unwrap_err();
        assert!(
            err.to_string().ends_with(&format!("over the {MAX_FRAME}-byte limit")),
            "{err}"
        );
    }

    #[test]
    fn a_start_frame_costs_its_own_size() {
        let wire = encode(&start_of(3 << 20)).unwrap();
        let mut f = Frames::default();
        for chunk in wire.chunks(16 << 10) {
            f.push(chunk);
        }
        assert_eq!(f.buf.capacity(), wire.len(), "reserved exactly, not doubled");
    }

    #[test]
    fn encoding_refuses_what_the_receiver_would() {
        let err = encode(&start_of(MAX_START + 100_000)).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { limit: MAX_START, .. }), "{err}");
        assert!(encode_within(&start_of(200_000), MAX_FRAME).is_err());
    }

    #[test]
    fn the_exec_limit_is_the_kernels() {
        assert_eq!(exec_args_limit(8 << 20), 2 << 20, "the usual 8 MiB stack");
        assert_eq!(exec_args_limit(u64::MAX), 6 << 20, "unlimited: 3/4 of _STK_LIM");
        assert_eq!(exec_args_limit(64 << 10), 128 << 10, "never under ARG_MAX");
        assert_eq!(
            exec_args_size(b"/bin/echo", [&b"echo"[..], b"hi"], [&b"A=1"[..]]),
            10 + 5 + 3 + 4 + 3 * 8
        );
    }
}
