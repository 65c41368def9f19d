//! What the uplink sends on `Ingest.Stream`, and how it is put on the wire.
//!
//! Spooled events are already protobuf (`warrant.v1.Event`, as the writer encoded
//! them into the spool), so a batch of them is sent as those bytes: an
//! `AgentMessage { batch: EventBatch { events } }` is the oneof's key and length,
//! then each event's key, length and bytes, which is exactly what prost would
//! write for the decoded events. Decoding each event from the spool only to encode
//! it again was a fifth of the agent's CPU per event with a collector.
//! Everything else (the hello, command results, an `events_lost` in place of a
//! refused event) is an ordinary message.

use prost::{
    Message as _,
    bytes::BufMut,
    encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len},
};
use tonic::{
    Status,
    codec::{BufferSettings, Codec, EncodeBuf, Encoder},
};
use tonic_prost::ProstDecoder;
use warrant_proto::v1 as pb;

use crate::spool::Spooled;

/// `AgentMessage.batch`'s field number.
const AGENT_MESSAGE_BATCH: u32 = 2;
/// `EventBatch.events`'s field number.
const EVENT_BATCH_EVENTS: u32 = 1;

/// One message of the agent's side of the stream.
#[derive(Debug)]
pub enum Outgoing {
    Message(pb::AgentMessage),
    /// A batch of spooled events, sent as the spool holds them.
    Spooled(Vec<Spooled>),
}

impl From<pb::AgentMessage> for Outgoing {
    fn from(m: pb::AgentMessage) -> Self {
        Outgoing::Message(m)
    }
}

/// The bytes of one `Event` inside an `EventBatch`: key, length, payload.
pub fn event_len(e: &Spooled) -> usize {
    key_len(EVENT_BATCH_EVENTS) + encoded_len_varint(e.payload.len() as u64) + e.payload.len()
}

/// Bytes `events` take on the wire inside an `EventBatch`.
pub fn batch_len(events: &[Spooled]) -> usize {
    events.iter().map(event_len).sum()
}

/// Writes `AgentMessage { batch: EventBatch { events } }` as prost would.
fn encode_batch(events: &[Spooled], buf: &mut impl BufMut) {
    encode_key(AGENT_MESSAGE_BATCH, WireType::LengthDelimited, buf);
    encode_varint(batch_len(events) as u64, buf);
    for e in events {
        encode_key(EVENT_BATCH_EVENTS, WireType::LengthDelimited, buf);
        encode_varint(e.payload.len() as u64, buf);
        buf.put_slice(&e.payload);
    }
}

/// The stream's codec: [`Outgoing`] out, `CollectorMessage` in.
#[derive(Debug, Default, Clone, Copy)]
pub struct OutgoingCodec;

impl Codec for OutgoingCodec {
    type Encode = Outgoing;
    type Decode = pb::CollectorMessage;
    type Encoder = OutgoingEncoder;
    type Decoder = ProstDecoder<pb::CollectorMessage>;

    fn encoder(&mut self) -> Self::Encoder {
        OutgoingEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::default())
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct OutgoingEncoder;

impl Encoder for OutgoingEncoder {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Outgoing, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            Outgoing::Message(m) => m.encode(buf).map_err(|e| Status::internal(format!("cannot encode a message: {e}"))),
            Outgoing::Spooled(events) => {
                encode_batch(&events, buf);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn spooled(events: &[pb::Event]) -> Vec<Spooled> {
        events.iter().map(|e| Spooled { seq: e.seq, payload: e.encode_to_vec() }).collect()
    }

    proptest! {
        /// The hand-written batch is byte for byte what prost writes for the
        /// decoded events, so the collector cannot tell them apart.
        #[test]
        fn a_spooled_batch_is_the_message_prost_would_write(
            events in prop::collection::vec(
                (1u64..u64::MAX, ".{0,300}", any::<u32>(), prop::collection::vec(".{0,40}", 0..4)),
                0..20,
            )
        ) {
            let events: Vec<pb::Event> = events
                .into_iter()
                .map(|(seq, comm, pid, argv)| pb::Event {
                    seq,
                    comm,
                    pid,
                    event: Some(pb::event::Event::Exec(pb::Exec { argv, ..Default::default() })),
                    ..Default::default()
                })
                .collect();
            let want = pb::AgentMessage {
                msg: Some(pb::agent_message::Msg::Batch(pb::EventBatch { events: events.clone() })),
            }
            .encode_to_vec();
            let mut got = Vec::new();
            encode_batch(&spooled(&events), &mut got);
            prop_assert_eq!(&got, &want);
            let back = pb::AgentMessage::decode(got.as_slice()).expect("decodes");
            let Some(pb::agent_message::Msg::Batch(b)) = back.msg else { panic!("a batch") };
            prop_assert_eq!(b.events, events);
        }
    }

    #[test]
    fn an_empty_batch_is_an_empty_event_batch() {
        let want = pb::AgentMessage { msg: Some(pb::agent_message::Msg::Batch(pb::EventBatch::default())) }.encode_to_vec();
        let mut got = Vec::new();
        encode_batch(&[], &mut got);
        assert_eq!(got, want);
    }
}
