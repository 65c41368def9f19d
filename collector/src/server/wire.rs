//! The agent stream as it arrives on the wire, before interpretation.
//!
//! `RawAgentMessage` has the wire format of `warrant.v1.AgentMessage`, except that a
//! batch's events stay bytes (a message and a `bytes` field are encoded alike), so
//! [`decode_event`] can see every field of an event, including a kind this build
//! does not know, which prost would otherwise drop without a trace.

use prost::Message;
use prost::bytes::Buf;
use prost::encoding::{WireType, decode_key, decode_varint};
use warrant_proto::{AgentHello, CommandResult, Event, UnknownKind};

/// `warrant.v1.AgentMessage` with undecoded events.
#[derive(Clone, PartialEq, Message)]
pub struct RawAgentMessage {
    /// As `AgentMessage.msg`.
    #[prost(oneof = "RawMsg", tags = "1, 2, 3")]
    pub msg: Option<RawMsg>,
}

/// As `AgentMessage.msg`, with the batch raw.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum RawMsg {
    /// The agent's hello.
    #[prost(message, tag = "1")]
    Hello(AgentHello),
    /// A batch of events, each still encoded.
    #[prost(message, tag = "2")]
    Batch(RawBatch),
    /// A command result.
    #[prost(message, tag = "3")]
    Result(CommandResult),
}

/// `warrant.v1.EventBatch` with each event still encoded.
#[derive(Clone, PartialEq, Message)]
pub struct RawBatch {
    /// The encoded `Event`s: slices of the message as received, not copies.
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub events: Vec<prost::bytes::Bytes>,
}

/// Field numbers of `Event` at or above this are the envelope; below are kinds.
const ENVELOPE_FIRST: u32 = 1000;

/// Decodes one event of a batch. An event whose kind this build does not know
/// comes back with `event` unset and `unknown_kind` holding the kind's field
/// number and bytes, verbatim.
///
/// # Errors
/// A description (naming the event's seq when it can be read) when the bytes are
/// not a valid `Event` (invalid UTF-8 in a string, a truncated field), when the
/// event has no kind at all, or when it sets `unknown_kind` itself (only the
/// collector does).
pub fn decode_event(bytes: &[u8]) -> Result<Event, String> {
    let mut ev = Event::decode(bytes).map_err(|e| format!("not a valid warrant.v1.Event: {e}"))?;
    let who = |ev: &Event| format!("event seq {}", ev.seq);
    if ev.unknown_kind.is_some() {
        return Err(format!("{}: sets unknown_kind, which only the collector sets", who(&ev)));
    }
    if ev.event.is_some() {
        return Ok(ev);
    }
    // No kind prost knows: look for a kind field it skipped (the last one wins, as
    // for any oneof).
    let mut buf = bytes;
    let mut found = None;
    while buf.has_remaining() {
        let (number, wire_type) = decode_key(&mut buf).map_err(|e| format!("{}: {e}", who(&ev)))?;
        let before = buf;
        match wire_type {
            WireType::Varint => {
                decode_varint(&mut buf).map_err(|e| format!("{}: {e}", who(&ev)))?;
            }
            WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                let n = if wire_type == WireType::SixtyFourBit { 8 } else { 4 };
                if buf.remaining() < n {
                    return Err(format!("{}: field {number} is truncated", who(&ev)));
                }
                buf.advance(n);
            }
            WireType::LengthDelimited => {
                let len = decode_varint(&mut buf).map_err(|e| format!("{}: {e}", who(&ev)))?;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if buf.remaining() < len {
                    return Err(format!("{}: field {number} is truncated", who(&ev)));
                }
                let value = &buf[..len];
                buf.advance(len);
                if number < ENVELOPE_FIRST {
                    found = Some((number, wire_type, value.to_vec()));
                }
                continue;
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(format!("{}: field {number} uses the deprecated group encoding", who(&ev)));
            }
        }
        if number < ENVELOPE_FIRST {
            let used = before.len() - buf.len();
            found = Some((number, wire_type, before[..used].to_vec()));
        }
    }
    match found {
        Some((number, wire_type, payload)) => {
            ev.unknown_kind = Some(UnknownKind { number, wire_type: wire_type as u32, payload });
            Ok(ev)
        }
        None => Err(format!("{}: has no kind (no field of `oneof event` is set)", who(&ev))),
    }
}

/// The generated server (collector/build.rs).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/warrant.v1.Ingest.rs"));
}
pub use generated::ingest_server;

#[cfg(test)]
mod tests {
    use super::*;
    use warrant_proto::event::Event as Kind;

    fn future_kind(number: u32, payload: &[u8], seq: u64) -> Vec<u8> {
        let mut b = Event { seq, agent_id: "a".into(), ..Event::default() }.encode_to_vec();
        prost::encoding::encode_key(number, WireType::LengthDelimited, &mut b);
        prost::encoding::encode_varint(payload.len() as u64, &mut b);
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn a_future_kind_is_kept_verbatim() {
        let ev = decode_event(&future_kind(142, b"\x0a\x03abc", 7)).unwrap();
        assert_eq!(ev.seq, 7);
        assert!(ev.event.is_none());
        let u = ev.unknown_kind.unwrap();
        assert_eq!((u.number, u.wire_type, u.payload.as_slice()), (142, 2, b"\x0a\x03abc".as_slice()));
    }

    #[test]
    fn known_kinds_decode_and_no_kind_is_refused() {
        let ex = Event { seq: 1, event: Some(Kind::Exit(warrant_proto::Exit { code: 3, signal: 0 })), ..Event::default() };
        assert_eq!(decode_event(&ex.encode_to_vec()).unwrap(), ex);
        let none = Event { seq: 9, ..Event::default() }.encode_to_vec();
        assert!(decode_event(&none).unwrap_err().contains("event seq 9: has no kind"));
        let forged = Event { seq: 2, unknown_kind: Some(UnknownKind::default()), ..Event::default() }.encode_to_vec();
        assert!(decode_event(&forged).unwrap_err().contains("only the collector"));
        // Invalid UTF-8 in `host` (field 1003).
        let mut bad = Vec::new();
        prost::encoding::encode_key(1003, WireType::LengthDelimited, &mut bad);
        prost::encoding::encode_varint(2, &mut bad);
        bad.extend_from_slice(&[0xff, 0xfe]);
        assert!(decode_event(&bad).unwrap_err().contains("not a valid warrant.v1.Event"));
    }
}
