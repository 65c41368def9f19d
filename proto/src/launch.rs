//! Framing of the launch socket (`warrant/v1/launch.proto`): a 4-byte big-endian
//! length, then one message. Both ends read through [`Frames`], which takes bytes
//! as they arrive and yields whole messages, so a short read never splits one.

use prost::Message;

/// The largest message either end sends or accepts.
pub const MAX_FRAME: usize = 1 << 20;

/// Descriptors the client passes with its `start` message: stdin, stdout, stderr
/// and the working directory.
pub const START_FDS: usize = 4;

/// Why a frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("a launch message of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("a launch message does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// `msg` framed for the socket.
pub fn encode<M: Message>(msg: &M) -> Result<Vec<u8>, FrameError> {
    let len = msg.encoded_len();
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(
        &u32::try_from(len)
            .map_err(|_| FrameError::TooLarge(len))?
            .to_be_bytes(),
    );
    msg.encode(&mut out)
        .map_err(|_| FrameError::TooLarge(len))?;
    Ok(out)
}

/// Bytes received so far, cut into messages.
#[derive(Debug, Default)]
pub struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    /// Appends bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, if one has arrived. A length over [`MAX_FRAME`] is
    /// an error as soon as the length is in, before its bytes are awaited.
    pub fn pop<M: Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        let Some(head) = self.buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*head) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let msg = M::decode(&self.buf[4..4 + len])?;
        self.buf.drain(..4 + len);
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
        f.push(&u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes());
        assert!(matches!(
            f.pop::<LaunchClient>(),
            Err(FrameError::TooLarge(_))
        ));
    }
}
