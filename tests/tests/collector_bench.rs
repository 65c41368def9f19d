//! Collector throughput figures, run by hand (ignored in the normal test run):
//!
//! ```text
//! cargo test --release -p warrant-tests --test collector_bench -- --ignored --nocapture
//! ```
//!
//! - ingest: events/s into the durable log (acknowledged, so fsync'd), batches of 512,
//!   from one agent and from two agents at once;
//! - fan-out: events/s from a fake agent through the collector to a live watcher, end
//!   to end (first send to last event received), with zero loss required.

use std::time::{Duration, Instant};

use warrant_proto::event::Event as Kind;
use warrant_proto::{CollectorWatchRequest, EventFilter, QueryRequest};
use warrant_tests::collector::client::{self, exec_event, hello, open_stream};
use warrant_tests::{CollectorOptions, TestCollector, now_unix_ns};

const BATCH: u64 = 512;
/// Batches in flight per agent before it waits for acks (a real agent's window).
const WINDOW: u64 = 8;

async fn stream(c: &TestCollector, agent: &str, n: u64) -> Duration {
    stream_sessions(c, agent, n, 1).await.0
}

/// Streams `n` events spread over `sessions` sessions (`s-0`, `s-1`, …); event
/// `seq` has time `t0 + seq` ns. Returns how long it took and `t0`.
async fn stream_sessions(c: &TestCollector, agent: &str, n: u64, sessions: u64) -> (Duration, i64) {
    let id = c.pki().issue(agent);
    let host = format!("host-{agent}");
    // The hello names the host the events carry (the collector checks they agree).
    let mut a = open_stream(&c.url(), &id, hello(agent, &host, "b")).await.expect("stream");
    let t0 = i64::try_from(now_unix_ns()).unwrap();
    // Build the batches first so the figure is the collector's, not the generator's.
    let batches: Vec<Vec<_>> = (0..n.div_ceil(BATCH))
        .map(|i| {
            let from = i * BATCH + 1;
            (from..=(from + BATCH - 1).min(n))
                .map(|s| exec_event(agent, &host, "b", s, &format!("s-{}", s % sessions), t0 + i64::try_from(s).unwrap()))
                .collect()
        })
        .collect();
    let start = Instant::now();
    for (i, b) in batches.into_iter().enumerate() {
        let i = i as u64;
        assert!(a.send(b).await);
        if i >= WINDOW {
            a.wait_ack("b", (i - WINDOW + 1) * BATCH).await.expect("ack");
        }
    }
    a.wait_ack("b", n).await.expect("ack");
    (start.elapsed(), t0)
}

#[expect(clippy::cast_precision_loss, reason = "figures")]
fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand with --ignored --nocapture"]
async fn collector_throughput() {
    const N: u64 = 200_000;
    let c = TestCollector::start(CollectorOptions { watch_buffer: Some(1 << 20), log_level: Some("warn".into()), ..CollectorOptions::default() });

    let one = stream(&c, "agent-1", N).await;
    println!("ingest, 1 agent: {N} events in {one:?} = {:.0} events/s (batches of {BATCH}, acked after fsync)", rate(N, one));
    // A query waits until everything acknowledged is indexed: how far the index
    // trails the burst just acknowledged.
    let mut q = client::collector(&c.url(), &c.identity("watcher")).await;
    let t = Instant::now();
    q.query(QueryRequest { filter: Some(EventFilter { session: "s-none".into(), ..EventFilter::default() }), ..QueryRequest::default() }).await.expect("query");
    println!("index caught up with the 1-agent burst {:?} after its last ack", t.elapsed());

    let (a, b) = tokio::join!(stream(&c, "agent-bench-a", N), stream(&c, "agent-bench-b", N));
    let both = a.max(b);
    println!("ingest, 2 agents at once: {} events in {both:?} = {:.0} events/s", 2 * N, rate(2 * N, both));

    let mut w = client::collector(&c.url(), &c.identity("watcher")).await;
    let mut watch = w
        .watch(CollectorWatchRequest { filter: Some(EventFilter { agent_id: "agent-2".into(), ..EventFilter::default() }), since_unix_ns: 0 })
        .await
        .expect("watch")
        .into_inner();
    let reader = tokio::spawn(async move {
        let mut got = 0u64;
        let mut missed = 0u64;
        while got < N {
            match tokio::time::timeout(Duration::from_secs(30), watch.message()).await {
                Ok(Ok(Some(ev))) => match ev.event {
                    Some(Kind::WatchMissed(m)) => missed += m.count,
                    _ => got += 1,
                },
                _ => break,
            }
        }
        (got, missed, Instant::now())
    });
    let start = Instant::now();
    let ingest = stream(&c, "agent-2", N).await;
    let (got, missed, last) = reader.await.unwrap();
    let e2e = last - start;
    println!(
        "agent → collector → watcher: {got} events in {e2e:?} = {:.0} events/s end to end, {missed} missed (ingest alone took {ingest:?})",
        rate(got, e2e)
    );
    assert_eq!((got, missed), (N, 0), "zero loss");
    println!("log: {} records, {} bytes", c.metric("warrant_collector_log_records"), c.metric("warrant_collector_log_bytes"));

    // Queries on a log of over a million records: 200k more events over 1000
    // sessions, then one page by session, grant, host and time range.
    let (_, t0) = stream_sessions(&c, "agent-many", 200_000, 1000).await;
    let records = c.metric("warrant_collector_log_records");
    // Let the indexer catch up first (a query waits for it), so the figures below
    // are the queries' own.
    let t = Instant::now();
    q.query(QueryRequest { filter: Some(EventFilter { session: "s-none".into(), ..EventFilter::default() }), ..QueryRequest::default() }).await.expect("query");
    println!("index caught up with the ingest {:?} after its last ack", t.elapsed());
    let mut timed = async |what: &str, filter: EventFilter, from: i64, to: i64, limit: u32| {
        let t = Instant::now();
        let r = q.query(QueryRequest { filter: Some(filter), from_unix_ns: from, to_unix_ns: to, limit, page: String::new() }).await.expect("query").into_inner();
        println!("query {what} on {records} records: {} events in {:?}", r.events.len(), t.elapsed());
    };
    timed("by session (all 200 of s-7)", EventFilter { session: "s-7".into(), ..EventFilter::default() }, 0, 0, 1000).await;
    timed("by grant (all 200 of g-s-7)", EventFilter { grant: "g-s-7".into(), ..EventFilter::default() }, 0, 0, 1000).await;
    timed("by host (first 1000)", EventFilter { host: "host-agent-many".into(), ..EventFilter::default() }, 0, 0, 1000).await;
    timed("by session and time range (first half)", EventFilter { session: "s-7".into(), ..EventFilter::default() }, t0, t0 + 100_000, 1000).await;
    timed("by time range only (100 events)", EventFilter::default(), t0 + 50_000, t0 + 50_099, 1000).await;
}
