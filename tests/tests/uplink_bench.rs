//! Benchmark (ignored; run by hand): one tagged process → agent → collector → a
//! watcher, end to end over TCP with mTLS.
//!
//! ```text
//! cargo test --release -p warrant-tests --test uplink_bench -- --ignored --nocapture
//! ```
//!
//! - throughput: a burst of `BURST` file opens from one tagged process; the watcher
//!   (a `Collector.Watch` client as `watcher`) counts them; events/s from the first
//!   to the last one received, and the loss (kernel ring, spool, watcher) must be 0;
//! - latency: a paced workload (one open every 5 ms); for each event the watcher's
//!   receive time minus the event's kernel time (`time_unix_ns`), p50/p99. Same
//!   host, same clock.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use warrant_proto::event::Event as Kind;
use warrant_proto::{CollectorWatchRequest, EventFilter};
use warrant_tests::collector::client;
use warrant_tests::fleet::{start_agent, wait_connected};
use warrant_tests::workload::testbin;
use warrant_tests::{AgentOptions, CollectorOptions, Marker, TestCollector};

/// Opens in the throughput burst.
const BURST: u64 = 100_000;
/// Opens in the latency run, one every `PACE`.
const PACED: u64 = 2_000;
const PACE: Duration = Duration::from_millis(5);

fn now_ns() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos()).expect("fits")
}

fn quantile(sorted: &[i64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i] as f64
}

/// Watches `grant`'s file opens through the collector until `want` arrived (or
/// 120 s pass); returns (receive time, event time) per event and the missed count.
async fn watch(url: String, grant: String, want: u64, ready: tokio::sync::oneshot::Sender<()>, watcher: warrant_tests::ClientIdentity) -> (Vec<(i64, i64)>, u64) {
    let mut c = client::collector(&url, &watcher).await;
    let filter = EventFilter { grant, kinds: vec!["file_open".into(), "watch_missed".into()], ..EventFilter::default() };
    let mut stream = c.watch(CollectorWatchRequest { filter: Some(filter), since_unix_ns: 0 }).await.expect("watch").into_inner();
    let _ = ready.send(());
    let (mut got, mut missed) = (Vec::with_capacity(want as usize), 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while (got.len() as u64) < want && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
            Ok(Ok(Some(ev))) => match &ev.event {
                Some(Kind::WatchMissed(m)) => missed += m.count,
                Some(Kind::FileOpen(_)) => got.push((now_ns(), ev.time_unix_ns)),
                _ => {}
            },
            _ => break,
        }
    }
    (got, missed)
}

fn run_phase(c: &TestCollector, agent: &warrant_tests::TestAgent, mark: &Marker, argv: &[&str], want: u64) -> (Vec<(i64, i64)>, u64, Duration) {
    let grant = agent.issue_grant("10m");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let watcher = rt.spawn(watch(c.url(), grant.clone(), want, ready_tx, c.identity("watcher")));
    rt.block_on(ready_rx).expect("watcher ready");
    // The watch is subscribed; give the collector a moment to register it everywhere.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let mut s = agent.exec(&grant, mark, argv);
    assert!(s.wait_for(Duration::from_secs(120)).success(), "workload failed");
    let (got, missed) = rt.block_on(watcher).expect("watcher task");
    (got, missed, started.elapsed())
}

#[test]
#[ignore = "benchmark: run by hand with --ignored --nocapture"]
fn uplink_throughput_and_latency() {
    let c = TestCollector::start(CollectorOptions { log_level: Some("warn".into()), ..CollectorOptions::default() });
    let agent = start_agent(&c, "agent-1", AgentOptions { log_level: Some("info".into()), ..AgentOptions::default() });
    wait_connected(&agent, Duration::from_secs(20));
    let mark = Marker::new();
    let bin = testbin();

    // Throughput.
    let burst = BURST.to_string();
    let (got, missed, wall) = run_phase(&c, &agent, &mark, &[&bin, "open-burst", &burst, "/etc/hostname"], BURST);
    let lost = agent.status()["events_lost_total"].as_u64().unwrap_or(0);
    let full = agent.status()["spool_full_total"].as_u64().unwrap_or(0);
    let first = got.first().map_or(0, |g| g.0);
    let last = got.last().map_or(0, |g| g.0);
    let span = Duration::from_nanos(u64::try_from(last - first).unwrap_or(1).max(1));
    let rate = got.len() as f64 / span.as_secs_f64();
    let mut lat: Vec<i64> = got.iter().map(|(r, t)| r - t).collect();
    lat.sort_unstable();
    println!(
        "burst: {} of {BURST} file_open events at the watcher in {:.2?} (workload start to last: {wall:.2?}); {rate:.0} events/s; \
         watcher missed {missed}, kernel lost {lost}, spool refused {full}; latency under the burst p50 {:.1} ms p99 {:.1} ms",
        got.len(),
        span,
        quantile(&lat, 0.5) / 1e6,
        quantile(&lat, 0.99) / 1e6
    );

    // Latency at a steady pace.
    let script = format!(
        "i=0; while [ $i -lt {PACED} ]; do {bin} open-burst 1 /etc/hostname >/dev/null; i=$((i+1)); sleep {}; done",
        PACE.as_secs_f64()
    );
    let (got, missed, wall) = run_phase(&c, &agent, &mark, &["/bin/sh", "-c", &script], PACED);
    let mut lat: Vec<i64> = got.iter().map(|(r, t)| r - t).collect();
    lat.sort_unstable();
    println!(
        "paced: {} of {PACED} opens (one per {PACE:?} + a fork/exec) in {wall:.2?}; watcher missed {missed}; \
         kernel event → watcher latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        got.len(),
        quantile(&lat, 0.5) / 1e6,
        quantile(&lat, 0.99) / 1e6,
        lat.last().copied().unwrap_or(0) as f64 / 1e6
    );
}
