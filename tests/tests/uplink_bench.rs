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
//! - latency: a paced workload (one open every 5 ms, one process); for each event the watcher's
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

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12].iter().filter_map(|i| f.get(*i)?.parse::<f64>().ok()).sum();
    ticks / 100.0
}

/// The pid of the collector listening on `port`.
fn collector_pid(port: u16) -> u32 {
    let needle = format!("127.0.0.1:{port}");
    warrant_tests::procfs::all_pids()
        .into_iter()
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("warrant-collector") && String::from_utf8_lossy(&c).contains(&needle))
        })
        .expect("collector pid")
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

/// A `warrant watch --json --grant G --kind file_open` on the agent's own socket,
/// timestamping each line as it arrives: the agent-local part of the latency.
struct LocalWatch {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<(i64, i64)>>>,
}

impl LocalWatch {
    fn start(agent: &warrant_tests::TestAgent, grant: &str) -> LocalWatch {
        use std::io::BufRead;
        let mut child = agent
            .cli_command(&["watch", "--json", "--grant", grant, "--kind", "file_open"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn warrant watch");
        let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut first = String::new();
        err.read_line(&mut first).expect("watch stderr");
        assert!(first.contains("watching"), "{first}");
        let out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let now = now_ns();
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let t = time::OffsetDateTime::parse(v["time"].as_str().unwrap_or(""), &time::format_description::well_known::Rfc3339)
                    .map_or(0, |t| i64::try_from(t.unix_timestamp_nanos()).unwrap_or(0));
                sink.lock().expect("lock").push((now, t));
            }
        });
        LocalWatch { child, lines }
    }

    fn finish(mut self) -> Vec<(i64, i64)> {
        std::thread::sleep(Duration::from_millis(500));
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lines.lock().expect("lock").clone()
    }
}

/// Runs `argv` under a fresh grant with a collector watcher (and, with
/// `local_watch`, a watcher on the agent's own socket too, which costs the agent CPU).
fn run_phase(
    c: &TestCollector,
    agent: &warrant_tests::TestAgent,
    mark: &Marker,
    argv: &[&str],
    want: u64,
    local_watch: bool,
) -> (Vec<(i64, i64)>, u64, Duration) {
    let grant = agent.issue_grant("10m");
    let local = local_watch.then(|| LocalWatch::start(agent, &grant));
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
    let elapsed = started.elapsed();
    let Some(local) = local else { return (got, missed, elapsed) };
    let mut lat: Vec<i64> = local.finish().iter().map(|(r, t)| r - t).collect();
    lat.sort_unstable();
    println!(
        "  agent-local watcher (same events, `warrant watch` on the agent's socket): {} events, latency p50 {:.2} ms, p99 {:.2} ms",
        lat.len(),
        quantile(&lat, 0.5) / 1e6,
        quantile(&lat, 0.99) / 1e6
    );
    (got, missed, elapsed)
}

/// The same burst with a single-host agent (no collector): what the local pipeline
/// alone keeps, as the baseline for the loss figure.
#[test]
#[ignore = "benchmark: run by hand with --ignored --nocapture"]
fn single_host_baseline() {
    let agent = warrant_tests::TestAgent::start(AgentOptions { log_level: Some("info".into()), ..AgentOptions::default() });
    let mark = Marker::new();
    for rate in [0u64, 10_000] {
        let grant = agent.issue_grant("10m");
        let n = if rate == 0 { BURST } else { BURST / 2 };
        let count = n.to_string();
        let every = 50_000u64.checked_div(rate).unwrap_or(0).to_string();
        let started = Instant::now();
        let a0 = cpu_secs(agent.pid());
        let lost0 = agent.status()["events_lost_total"].as_u64().unwrap_or(0);
        let mut s = agent.exec(&grant, &mark, &[&testbin(), "open-burst", &count, "/etc/hostname", "--every-ms", &every, "--batch", "50"]);
        assert!(s.wait_for(Duration::from_secs(120)).success());
        agent.wait_for_event(|e| warrant_tests::audit::is("session_end", s.id())(e), Duration::from_secs(60));
        let opens = agent.session_events(s.id()).iter().filter(|e| e["kind"] == "file_open").count();
        println!(
            "single-host {}: {opens} of {n} opens in the local log after {:.2?}; kernel lost {}; agent cpu {:.2}s",
            if rate == 0 { "burst".to_owned() } else { format!("paced {rate}/s") },
            started.elapsed(),
            agent.status()["events_lost_total"].as_u64().unwrap_or(0) - lost0,
            cpu_secs(agent.pid()) - a0
        );
    }
}

#[test]
#[ignore = "benchmark: run by hand with --ignored --nocapture"]
fn uplink_throughput_and_latency() {
    let c = TestCollector::start(CollectorOptions { log_level: Some("warn".into()), ..CollectorOptions::default() });
    let agent = start_agent(&c, "agent-1", AgentOptions { log_level: Some("info".into()), ..AgentOptions::default() });
    wait_connected(&agent, Duration::from_secs(20));
    let mark = Marker::new();
    let bin = testbin();

    // Throughput: an unpaced burst, then paced rates, to find the highest one with
    // zero loss end to end on this machine.
    let cpid = collector_pid(c.port());
    for rate in [0u64, 40_000, 30_000, 20_000, 15_000, 10_000] {
        let n = if rate == 0 { BURST } else { BURST / 2 };
        let count = n.to_string();
        // Batches of 50 opens every 50/rate seconds.
        let every = 50_000u64.checked_div(rate).unwrap_or(0);
        let every_s = every.to_string();
        let mut argv = vec![bin.as_str(), "open-burst", count.as_str(), "/etc/hostname"];
        if rate > 0 {
            argv.extend(["--every-ms", every_s.as_str(), "--batch", "50"]);
        }
        let lost0 = agent.status()["events_lost_total"].as_u64().unwrap_or(0);
        let (a0, c0) = (cpu_secs(agent.pid()), cpu_secs(cpid));
        let (got, missed, wall) = run_phase(&c, &agent, &mark, &argv, n, false);
        let lost = agent.status()["events_lost_total"].as_u64().unwrap_or(0) - lost0;
        let full = agent.status()["spool_full_total"].as_u64().unwrap_or(0);
        let first = got.first().map_or(0, |g| g.0);
        let last = got.last().map_or(0, |g| g.0);
        let span = Duration::from_nanos(u64::try_from(last - first).unwrap_or(1).max(1));
        let mut lat: Vec<i64> = got.iter().map(|(r, t)| r - t).collect();
        lat.sort_unstable();
        println!(
            "{}: {} of {n} file_open events at the watcher, {:.0} events/s (first to last received {:.2?}, workload start to last {wall:.2?}); \
             lost: kernel {lost}, watcher missed {missed}, spool refused {full}; kernel → watcher latency p50 {:.1} ms p99 {:.1} ms; \
             cpu: agent {:.2}s, collector {:.2}s",
            if rate == 0 { "burst (unpaced)".to_owned() } else { format!("paced {rate}/s") },
            got.len(),
            got.len() as f64 / span.as_secs_f64(),
            span,
            quantile(&lat, 0.5) / 1e6,
            quantile(&lat, 0.99) / 1e6,
            cpu_secs(agent.pid()) - a0,
            cpu_secs(cpid) - c0
        );
    }

    // Latency at a steady pace.
    let (paced, every) = (PACED.to_string(), PACE.as_millis().to_string());
    let argv = [bin.as_str(), "open-burst", paced.as_str(), "/etc/hostname", "--every-ms", every.as_str()];
    let (got, missed, wall) = run_phase(&c, &agent, &mark, &argv, PACED, true);
    let mut lat: Vec<i64> = got.iter().map(|(r, t)| r - t).collect();
    lat.sort_unstable();
    println!(
        "paced: {} of {PACED} opens (one per {PACE:?}) in {wall:.2?}; watcher missed {missed}; \
         kernel event → watcher latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        got.len(),
        quantile(&lat, 0.5) / 1e6,
        quantile(&lat, 0.99) / 1e6,
        lat.last().copied().unwrap_or(0) as f64 / 1e6
    );
}
