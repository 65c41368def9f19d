//! Bad batches end the stream with INVALID_ARGUMENT and the reason, never with OK:
//! a batch over the decoder's limit (the default 4 MiB, made the way a real agent
//! makes one: 512 execs with long argv; and a configured limit), and an event with
//! invalid UTF-8. Acks of the batches before the bad one arrive first.

use std::time::Duration;

use tonic::Code;
use warrant_proto::Event;
use warrant_tests::collector::client::raw::{self, with_field};
use warrant_tests::collector::client::{exec_event, hello, open_stream};
use warrant_tests::{CollectorOptions, TestCollector, now_unix_ns};

fn now_ns() -> i64 {
    i64::try_from(now_unix_ns()).expect("fits")
}

/// 512 execs of `argv_bytes` of argv each.
fn big_batch(agent: &str, boot: &str, first: u64, argv_bytes: usize) -> Vec<Event> {
    let t0 = now_ns();
    (first..first + 512)
        .map(|s| {
            let mut ev = exec_event(agent, "host-1", boot, s, "s-1", t0 + i64::try_from(s).expect("small"));
            if let Some(warrant_proto::event::Event::Exec(e)) = ev.event.as_mut() {
                e.argv = vec!["x".repeat(argv_bytes)];
            }
            ev
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_batch_is_invalid_argument_with_the_limit_named() {
    let c = TestCollector::start(CollectorOptions::default());
    let mut a = open_stream(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-1", "b1")).await.expect("open");
    // A small good batch first: its ack comes before the refusal.
    assert!(a.send(big_batch("agent-1", "b1", 1, 10)).await);
    // 512 × 9 KiB argv ≈ 4.7 MB: over the default 4 MiB.
    let big = big_batch("agent-1", "b1", 513, 9 * 1024);
    let bytes: usize = big.iter().map(prost::Message::encoded_len).sum();
    assert!(bytes > 4 << 20, "{bytes}");
    assert!(a.send(big).await);
    let mut acked = 0;
    let status = loop {
        match a.rx.message().await {
            Ok(Some(m)) => {
                if let Some(warrant_proto::collector_message::Msg::Ack(k)) = m.msg {
                    acked = acked.max(k.seq);
                }
            }
            Ok(None) => panic!("the stream ended with status OK after an oversized batch"),
            Err(s) => break s,
        }
    };
    assert_eq!(acked, 512, "the good batch was acked before the refusal");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("limit of 4194304 bytes") && status.message().contains("max_message_bytes"), "{status:?}");
    assert!(c.metric("warrant_collector_batches_refused_total") >= 1.0);
    // The refusal is on the collector's own record, naming the agent and why.
    // The record is written as the stream ends: give it a moment.
    let refused = c.refusals(Duration::from_secs(5), |a| a.target == "agent agent-1").await;
    assert!(
        refused.iter().any(|a| a.target == "agent agent-1" && a.by == "agent-1" && a.detail.contains("INVALID_ARGUMENT: message over")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_is_configured_and_invalid_utf8_is_named() {
    let c = TestCollector::start(CollectorOptions { extra_args: vec!["--max-message-bytes".into(), "200000".into()], ..CollectorOptions::default() });
    // Under the configured limit: stored.
    let mut a = open_stream(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-1", "b1")).await.expect("open");
    assert!(a.send(big_batch("agent-1", "b1", 1, 200)).await);
    a.wait_ack("b1", 512).await.expect("a 120 KB batch is under 200000 bytes");
    // Over it: refused, naming the configured limit.
    assert!(a.send(big_batch("agent-1", "b1", 513, 600)).await);
    let err = loop {
        match a.next().await {
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(err.contains("invalid argument") && err.contains("limit of 200000 bytes"), "{err}");

    // Invalid UTF-8 in an event's host (field 1003): refused, naming the event.
    let mut r = raw::open(&c.url(), &c.identity("agent-2"), hello("agent-2", "host-2", "b2")).await.expect("open raw");
    let good = prost::Message::encode_to_vec(&exec_event("agent-2", "host-2", "b2", 1, "s-2", now_ns()));
    let bad = with_field(&Event { seq: 2, ..exec_event("agent-2", "", "b2", 2, "s-2", now_ns()) }, 1003, &[0xff, 0xfe, b'x']);
    assert!(r.send(vec![good, bad]).await);
    let s = r.end_status().await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("event 1 of the batch") && s.message().contains("UTF-8"), "{s:?}");
    // The record is written as the stream ends: give it a moment.
    let refused = c.refusals(Duration::from_secs(5), |a| a.target == "agent agent-2").await;
    let utf8 = refused.iter().find(|a| a.target == "agent agent-2").unwrap_or_else(|| panic!("{refused:?}"));
    assert!(utf8.detail.contains("UTF-8") && utf8.detail.len() <= 600, "{utf8:?}");
}
