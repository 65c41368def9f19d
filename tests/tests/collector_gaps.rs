//! An agent's seqs jump: the collector records the gap explicitly (agent, boot,
//! range), stores events that arrive late into it, and counts only real resends
//! as duplicates, across a restart.

use std::collections::BTreeSet;

use warrant_proto::event::Event as Kind;
use warrant_proto::{Event, EventFilter, QueryRequest};
use warrant_tests::collector::client::{self, exec_event, hello, open_stream};
use warrant_tests::{CollectorOptions, TestCollector, now_unix_ns};

fn batch(seqs: impl IntoIterator<Item = u64>) -> Vec<Event> {
    let t0 = i64::try_from(now_unix_ns()).expect("fits");
    seqs.into_iter().map(|s| exec_event("agent-1", "host-1", "b1", s, "s-1", t0 + i64::try_from(s).expect("small"))).collect()
}

async fn query(c: &TestCollector, filter: EventFilter) -> Vec<Event> {
    let mut q = client::collector(&c.url(), &c.identity("watcher")).await;
    q.query(QueryRequest { filter: Some(filter), limit: 1000, ..QueryRequest::default() }).await.expect("query").into_inner().events
}

async fn gap_records(c: &TestCollector) -> Vec<String> {
    query(c, EventFilter { agent_id: "collector".into(), kinds: vec!["control_action".into()], ..EventFilter::default() })
        .await
        .into_iter()
        .filter_map(|e| match e.event {
            Some(Kind::ControlAction(a)) if a.action == "gap" => Some(a.target),
            _ => None,
        })
        .collect()
}

async fn stored(c: &TestCollector) -> BTreeSet<u64> {
    query(c, EventFilter { agent_id: "agent-1".into(), ..EventFilter::default() }).await.into_iter().map(|e| e.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_is_recorded_late_events_fill_it_and_resends_are_duplicates() {
    let mut c = TestCollector::start(CollectorOptions::default());
    let mut a = open_stream(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-1", "b1")).await.expect("open");
    assert!(a.send(batch(1..=10)).await);
    assert!(a.send(batch(21..=30)).await);
    a.wait_ack("b1", 30).await.expect("acked");
    assert_eq!(gap_records(&c).await, vec!["agent agent-1 boot b1 seqs 11..=20".to_owned()]);

    // 15 arrives late: stored. 5 is a resend: a duplicate.
    assert!(a.send(batch([15])).await);
    assert!(a.send(batch([5])).await);
    assert!(a.send(batch(31..=31)).await);
    a.wait_ack("b1", 31).await.expect("acked");
    let expect: BTreeSet<u64> = (1..=10).chain([15]).chain(21..=31).collect();
    assert_eq!(stored(&c).await, expect);
    assert_eq!(c.metric("warrant_collector_seq_gaps_total"), 1.0);
    assert_eq!(c.metric("warrant_collector_gap_filled_total"), 1.0);
    assert_eq!(c.metric("warrant_collector_duplicates_dropped_total"), 1.0);
    assert_eq!(c.metric("warrant_collector_events_in_total"), 22.0, "the gap record is not an agent event");
    drop(a);

    // After a restart the gap is still known: 16 is stored, 15 is now a duplicate.
    c.restart();
    let mut a = open_stream(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-1", "b1")).await.expect("reopen");
    assert_eq!(a.welcome_seq("b1"), 31);
    assert!(a.send(batch([16, 15])).await);
    assert!(a.send(batch([32])).await);
    a.wait_ack("b1", 32).await.expect("acked");
    let expect: BTreeSet<u64> = (1..=10).chain([15, 16]).chain(21..=32).collect();
    assert_eq!(stored(&c).await, expect);
    assert_eq!(c.metric("warrant_collector_gap_filled_total"), 1.0);
    assert_eq!(c.metric("warrant_collector_duplicates_dropped_total"), 1.0);
    assert_eq!(gap_records(&c).await.len(), 1, "no new gap");
}
