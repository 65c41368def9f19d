//! An agent from the future sends an event of a kind this collector does not know
//! (kind 142): the collector stores it verbatim (kind number and bytes), and every
//! reader (Query, a `since` Watch, VerifyLog, offline verify, a restart) skips it and
//! says so instead of failing. An event with no kind at all is refused with
//! INVALID_ARGUMENT naming why.

use std::time::Duration;

use base64::Engine as _;
use tonic::Code;
use warrant_proto::event::Event as Kind;
use warrant_proto::{CollectorWatchRequest, Event, EventFilter, QueryRequest, VerifyLogRequest};
use warrant_tests::collector::client::raw::{self, with_field};
use warrant_tests::collector::client::{self, exec_event, hello};
use warrant_tests::{CollectorOptions, TestCollector, now_unix_ns};

/// The future kind's number and its message bytes (field 1 = "abc").
const FUTURE_KIND: u32 = 142;
const FUTURE_PAYLOAD: &[u8] = b"\x0a\x03abc";

async fn query_all(c: &TestCollector) -> (Vec<u64>, Vec<String>) {
    let mut q = client::collector(&c.url(), &c.identity("watcher")).await;
    let r = q
        .query(QueryRequest { filter: Some(EventFilter { agent_id: "agent-1".into(), ..EventFilter::default() }), limit: 100, ..QueryRequest::default() })
        .await
        .expect("query must not fail on a record it cannot interpret")
        .into_inner();
    (r.events.iter().map(|e| e.seq).collect(), r.skipped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_from_the_future_is_kept_verbatim_and_readers_skip_and_report_it() {
    let mut c = TestCollector::start(CollectorOptions::default());
    let t0 = i64::try_from(now_unix_ns()).expect("fits");
    let mut a = raw::open(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-1", "b1")).await.expect("open");
    let future = Event { seq: 2, agent_id: "agent-1".into(), boot_id: "b1".into(), host: "host-1".into(), time_unix_ns: t0 + 2, ..Event::default() };
    let batch = vec![
        prost::Message::encode_to_vec(&exec_event("agent-1", "host-1", "b1", 1, "s-1", t0 + 1)),
        with_field(&future, FUTURE_KIND, FUTURE_PAYLOAD),
        prost::Message::encode_to_vec(&exec_event("agent-1", "host-1", "b1", 3, "s-1", t0 + 3)),
    ];
    assert!(a.send(batch).await);
    a.wait_ack("b1", 3).await.expect("the batch with a future kind is acked");

    // Stored verbatim: "unknown" with its number and bytes.
    let text: String = c.segments().iter().map(|p| std::fs::read_to_string(p).expect("read segment")).collect();
    let line = text.lines().find(|l| l.contains("\"kind_number\":142")).unwrap_or_else(|| panic!("no verbatim record in:\n{text}"));
    let b64 = base64::engine::general_purpose::STANDARD.encode(FUTURE_PAYLOAD);
    assert!(line.contains(&format!("\"payload\":\"{b64}\"")) && line.contains("\"kind\":\"unknown\""), "{line}");

    // No kind at all: refused, and the reason named.
    let none = Event { seq: 4, agent_id: "agent-1".into(), boot_id: "b1".into(), time_unix_ns: t0 + 4, ..Event::default() };
    assert!(a.send(vec![prost::Message::encode_to_vec(&none)]).await);
    let s = a.end_status().await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("seq 4") && s.message().contains("has no kind"), "{s:?}");
    drop(a);

    // Counted once, as what an operator watches for (an agent newer than its collector).
    let metrics = c.metrics();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("warrant_collector_unknown_kind_events_total"))
        .unwrap_or_else(|| panic!("no unknown-kind counter in:\n{metrics}"));
    assert!(line.ends_with(" 1"), "{line}");

    // Query: the events around it, and the record named as skipped.
    let (seqs, skipped) = query_all(&c).await;
    assert_eq!(seqs, vec![1, 3]);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].contains("seq 2") && skipped[0].contains("event kind 142"), "{skipped:?}");

    // A since-watch replays past it and says what it skipped.
    let mut w = client::collector(&c.url(), &c.identity("watcher")).await;
    let mut watch = w
        .watch(CollectorWatchRequest { filter: Some(EventFilter { agent_id: "agent-1".into(), ..EventFilter::default() }), since_unix_ns: t0 })
        .await
        .expect("watch")
        .into_inner();
    let mut got = Vec::new();
    while got.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(10), watch.message()).await.expect("timely").expect("the replay must not fail").expect("open");
        got.push(ev);
    }
    let notice = got.iter().find_map(|e| match &e.event {
        Some(Kind::WatchMissed(m)) => Some(m.clone()),
        _ => None,
    });
    let notice = notice.unwrap_or_else(|| panic!("no skip notice in {got:?}"));
    assert!(notice.count == 1 && notice.reason.contains("event kind 142"), "{notice:?}");
    let replayed: Vec<u64> = got.iter().filter(|e| matches!(e.event, Some(Kind::Exec(_)))).map(|e| e.seq).collect();
    assert_eq!(replayed, vec![1, 3]);
    drop(watch);

    // VerifyLog: the chain is fine, the record is reported as skipped, not a problem.
    let mut admin = client::collector(&c.url(), &c.identity("admin")).await;
    let v = admin.verify_log(VerifyLogRequest {}).await.expect("verify").into_inner();
    assert!(v.ok, "{:?}", v.problems);
    assert!(v.skipped.iter().any(|s| s.contains("event kind 142")), "{:?}", v.skipped);
    // The collector's own chain is keyed from its first record.
    assert_eq!((v.keyed, v.unkeyed_records), (true, 0), "{v:?}");
    drop((w, admin));

    // A restart (which re-reads the log) and offline verify both cope.
    c.restart();
    let (seqs, skipped) = query_all(&c).await;
    assert_eq!((seqs, skipped.len()), (vec![1, 3], 1));
    c.stop();
    let out = c.verify_offline();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("skipped: record") && stdout.contains("event kind 142"), "{stdout}");
    assert!(stdout.contains("every record marked with the log's key"), "{stdout}");
}
