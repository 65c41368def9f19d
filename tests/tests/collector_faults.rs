//! Smaller faults an outside client found, each acted out against the real
//! collector: a cancelled Watch stays registered; Sessions' state is always
//! UNSPECIFIED; a Query page is capped by count only (megabytes break clients on
//! gRPC defaults); a batch may have an empty boot, mix boots, name a boot the hello
//! did not, or claim another host.

use std::time::{Duration, Instant};

use tonic::Code;
use warrant_proto::{CollectorSessionsRequest, CollectorWatchRequest, Event, EventFilter, QueryRequest, SessionEnd, SessionState};
use warrant_tests::collector::client::{self, AgentStream, exec_event, hello, open_stream, session_start};
use warrant_tests::{CollectorOptions, TestCollector, now_unix_ns};

fn now_ns() -> i64 {
    i64::try_from(now_unix_ns()).expect("fits")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_watch_is_unregistered_at_once() {
    let c = TestCollector::start(CollectorOptions::default());
    let mut w = client::collector(&c.url(), &c.identity("watcher")).await;
    let watch = w.watch(CollectorWatchRequest { filter: Some(EventFilter { session: "s-quiet".into(), ..EventFilter::default() }), since_unix_ns: 0 }).await.expect("watch");
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.metric("warrant_collector_watchers") < 1.0 {
        assert!(Instant::now() < deadline, "the watch never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(watch);
    // No event arrives for it; it must still go away.
    let deadline = Instant::now() + Duration::from_secs(3);
    while c.metric("warrant_collector_watchers") > 0.0 {
        assert!(Instant::now() < deadline, "a cancelled watch is still registered after 3s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_have_a_state() {
    let c = TestCollector::start(CollectorOptions::default());
    let mut a = open_stream(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-1", "b1")).await.expect("open");
    let end = |seq, session: &str, reason: &str| Event {
        event: Some(warrant_proto::event::Event::SessionEnd(SessionEnd { reason: reason.into() })),
        ..exec_event("agent-1", "host-1", "b1", seq, session, now_ns())
    };
    assert!(a.send(vec![
        session_start("agent-1", "host-1", "b1", 1, "s-live", "g-1"),
        session_start("agent-1", "host-1", "b1", 2, "s-done", "g-1"),
        session_start("agent-1", "host-1", "b1", 3, "s-killed", "g-1"),
        end(4, "s-done", "exited"),
        end(5, "s-killed", "killed: operator"),
    ])
    .await);
    a.wait_ack("b1", 5).await.expect("acked");
    let mut w = client::collector(&c.url(), &c.identity("watcher")).await;
    let all = w.sessions(CollectorSessionsRequest { all: true, host: String::new() }).await.expect("sessions").into_inner().sessions;
    let state = |id: &str| all.iter().filter_map(|r| r.session.as_ref()).find(|s| s.id == id).map(|s| s.state).unwrap_or_else(|| panic!("no {id}"));
    assert_eq!(state("s-live"), SessionState::Live as i32);
    assert_eq!(state("s-done"), SessionState::Ended as i32);
    assert_eq!(state("s-killed"), SessionState::Killed as i32);
}

/// 24 events of ~400 KB each (9.6 MB): every page fits a client on gRPC's default
/// 4 MiB limit, and paging returns all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_pages_are_capped_in_bytes() {
    let c = TestCollector::start(CollectorOptions::default());
    let mut a = open_stream(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-1", "b1")).await.expect("open");
    let t0 = now_ns();
    for b in 0..3u64 {
        let events = (1..=8u64)
            .map(|i| {
                let seq = b * 8 + i;
                let mut ev = exec_event("agent-1", "host-1", "b1", seq, "s-big", t0 + i64::try_from(seq).expect("small"));
                if let Some(warrant_proto::event::Event::Exec(e)) = ev.event.as_mut() {
                    e.argv = vec!["y".repeat(400_000)];
                }
                ev
            })
            .collect();
        assert!(a.send(events).await);
    }
    a.wait_ack("b1", 24).await.expect("acked");
    let mut w = client::collector(&c.url(), &c.identity("watcher")).await;
    for filter in [EventFilter { agent_id: "agent-1".into(), ..EventFilter::default() }, EventFilter::default()] {
        let (mut page, mut seqs, mut pages) = (String::new(), Vec::new(), 0);
        loop {
            let r = w
                .query(QueryRequest { filter: Some(filter.clone()), limit: 1000, page: page.clone(), ..QueryRequest::default() })
                .await
                .expect("a page fits a client on gRPC defaults")
                .into_inner();
            pages += 1;
            let bytes: usize = r.events.iter().map(prost::Message::encoded_len).sum();
            assert!(bytes <= 2 << 20, "page of {bytes} bytes");
            seqs.extend(r.events.iter().filter(|e| e.agent_id == "agent-1").map(|e| e.seq));
            if r.next_page.is_empty() {
                break;
            }
            page = r.next_page;
        }
        assert_eq!(seqs, (1..=24).collect::<Vec<_>>(), "{filter:?}");
        assert!(pages >= 5, "{pages} pages");
    }
}

async fn refused(c: &TestCollector, events: Vec<Event>) -> tonic::Status {
    let mut h = hello("agent-1", "host-1", "b1");
    h.pending_boots = vec!["b0".into(), "b1".into()];
    let mut s: AgentStream = open_stream(&c.url(), &c.identity("agent-1"), h).await.expect("open");
    assert!(s.send(events).await);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.rx.message()).await.expect("an answer") {
            Ok(Some(_)) => {}
            Ok(None) => return tonic::Status::ok("ended OK"),
            Err(e) => return e,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_with_a_bad_boot_or_host_are_refused() {
    let c = TestCollector::start(CollectorOptions::default());
    let ev = |boot: &str, host: &str, seq| exec_event("agent-1", host, boot, seq, "s-1", now_ns());
    for (what, events, words) in [
        ("empty boot", vec![ev("", "host-1", 1)], &["has no boot_id"][..]),
        ("mixed boots", vec![ev("b0", "host-1", 1), ev("b1", "host-1", 1)], &["a batch holds events of one boot"][..]),
        ("unknown boot", vec![ev("b9", "host-1", 1)], &["boot \"b9\"", "did not name"][..]),
        ("other host", vec![ev("b1", "db-7", 1)], &["says host \"db-7\"", "\"host-1\""][..]),
    ] {
        let s = refused(&c, events).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{what}: {s:?}");
        for w in words {
            assert!(s.message().contains(w), "{what}: {w:?} not in {s:?}");
        }
    }
    // An older boot may carry an older host name (a renamed machine's spool).
    let mut h = hello("agent-1", "host-1", "b1");
    h.pending_boots = vec!["b0".into(), "b1".into()];
    let mut s = open_stream(&c.url(), &c.identity("agent-1"), h).await.expect("open");
    assert!(s.send(vec![ev("b0", "old-name", 1)]).await);
    s.wait_ack("b0", 1).await.expect("an older boot's host is not checked");
}
