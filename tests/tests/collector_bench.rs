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
use warrant_proto::{CollectorWatchRequest, EventFilter};
use warrant_tests::collector::client::{self, exec_event, hello, open_stream};
use warrant_tests::{CollectorOptions, TestCollector, now_unix_ns};

const BATCH: u64 = 512;
/// Batches in flight per agent before it waits for acks (a real agent's window).
const WINDOW: u64 = 8;

async fn stream(c: &TestCollector, agent: &str, n: u64) -> Duration {
    let id = c.pki().issue(agent);
    let mut a = open_stream(&c.url(), &id, hello(agent, "bench-host", "b")).await.expect("stream");
    let t0 = i64::try_from(now_unix_ns()).unwrap();
    // Build the batches first so the figure is the collector's, not the generator's.
    let batches: Vec<Vec<_>> = (0..n.div_ceil(BATCH))
        .map(|i| {
            let from = i * BATCH + 1;
            (from..=(from + BATCH - 1).min(n)).map(|s| exec_event(agent, "bench-host", "b", s, "s-bench", t0 + i64::try_from(s).unwrap())).collect()
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
    start.elapsed()
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
}
