//! SIGTERM stops the collector within a few seconds even with an agent stream, a
//! live watch and a `since` watch open: each stream ends with UNAVAILABLE (which
//! makes agents reconnect), after the acks of what is durable; everything acked is
//! in the log after a restart, and the log verifies.

use std::time::{Duration, Instant};

use tonic::Code;
use warrant_proto::{CollectorWatchRequest, Event, EventFilter, QueryRequest};
use warrant_tests::collector::client::{self, exec_event, hello, open_stream};
use warrant_tests::{CollectorOptions, TestCollector, now_unix_ns};

fn batch(seqs: std::ops::RangeInclusive<u64>, t0: i64) -> Vec<Event> {
    seqs.map(|s| exec_event("agent-1", "host-1", "b1", s, "s-1", t0 + i64::try_from(s).expect("small"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_with_unavailable_and_exits_promptly() {
    let mut c = TestCollector::start(CollectorOptions::default());
    let t0 = i64::try_from(now_unix_ns()).expect("fits");
    let mut a = open_stream(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-1", "b1")).await.expect("open");
    assert!(a.send(batch(1..=200, t0)).await);
    a.wait_ack("b1", 200).await.expect("acked");
    let mut w = client::collector(&c.url(), &c.identity("watcher")).await;
    let live = w.watch(CollectorWatchRequest { filter: Some(EventFilter::default()), since_unix_ns: 0 }).await.expect("watch").into_inner();
    let mut since = w.watch(CollectorWatchRequest { filter: Some(EventFilter::default()), since_unix_ns: t0 }).await.expect("watch").into_inner();
    // The since-watch has replayed (so it is live too).
    let mut replayed = 0;
    while replayed < 200 {
        let ev = tokio::time::timeout(Duration::from_secs(10), since.message()).await.expect("timely").expect("ok").expect("open");
        if ev.agent_id == "agent-1" {
            replayed += 1;
        }
    }
    // More in flight as the signal lands.
    assert!(a.send(batch(201..=400, t0)).await);

    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let s = c.terminate(Duration::from_secs(10));
        (c, s)
    });
    // The agent's stream ends with UNAVAILABLE; acks before it are what is durable.
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), a.rx.message()).await.expect("the agent stream ends within 10s") {
            Ok(Some(m)) => {
                if let Some(warrant_proto::collector_message::Msg::Ack(k)) = m.msg {
                    a.acked.insert(k.boot_id.clone(), k.seq);
                }
            }
            Ok(None) => panic!("the agent stream ended with status OK: agents would not know to reconnect"),
            Err(s) => break s,
        }
    };
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert!(end.message().contains("shutting down"), "{end:?}");
    for (name, mut s) in [("live", live), ("since", since)] {
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(10), s.message()).await.expect("the watch ends within 10s") {
                Ok(Some(_)) => {}
                Ok(None) => break tonic::Status::ok("ended OK"),
                Err(e) => break e,
            }
        };
        assert_eq!(end.code(), Code::Unavailable, "{name} watch: {end:?}");
    }
    let (mut c, exit) = status.await.expect("join");
    let took = started.elapsed();
    let exit = exit.unwrap_or_else(|| panic!("the collector did not exit within 10s of SIGTERM:\n{}", c.log()));
    assert!(exit.success(), "{exit:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    println!("sigterm to exit with an agent stream and two watches open: {took:?}");

    // What was acked is durable; the log verifies.
    let acked = a.acked.get("b1").copied().unwrap_or(0);
    assert!(acked >= 200);
    drop(a);
    let out = c.verify_offline();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    c.start_again();
    let mut q = client::collector(&c.url(), &c.identity("watcher")).await;
    let r = q
        .query(QueryRequest { filter: Some(EventFilter { agent_id: "agent-1".into(), ..EventFilter::default() }), limit: 1000, ..QueryRequest::default() })
        .await
        .expect("query")
        .into_inner();
    let max = r.events.iter().map(|e| e.seq).max().unwrap_or(0);
    assert!(max >= acked, "acked {acked}, stored up to {max}");
    let b = open_stream(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-1", "b1")).await.expect("the agent reconnects");
    assert!(b.welcome_seq("b1") >= acked);
}
