//! The collector's ingest path, over real TCP with real mTLS: a fake agent (a real
//! tonic client) streams real batches; the log stores each (agent, boot, seq) once
//! whatever is resent, across a SIGKILL of the collector; watchers see each event
//! once, replayed from the log and then live with no gap.

use std::collections::BTreeSet;
use std::time::Duration;

use warrant_proto::{CollectorWatchRequest, Event, EventFilter, QueryRequest};
use warrant_tests::collector::client::{self, AgentStream, exec_event, hello, open_stream};
use warrant_tests::{CollectorOptions, TestCollector, now_unix_ns};

fn now_ns() -> i64 {
    i64::try_from(now_unix_ns()).expect("fits")
}

fn batch(agent: &str, boot: &str, seqs: std::ops::RangeInclusive<u64>, t0: i64) -> Vec<Event> {
    seqs.map(|s| exec_event(agent, "host-a", boot, s, "s-1", t0 + i64::try_from(s).expect("small"))).collect()
}

/// Every event of `agent` in the log, in log order, paging through Query.
async fn all_seqs(c: &TestCollector, agent: &str) -> Vec<(String, u64)> {
    let mut q = client::collector(&c.url(), &c.identity("watcher")).await;
    let mut page = String::new();
    let mut out = Vec::new();
    loop {
        let r = q
            .query(QueryRequest {
                filter: Some(EventFilter { agent_id: agent.into(), ..EventFilter::default() }),
                limit: 700,
                page: page.clone(),
                ..QueryRequest::default()
            })
            .await
            .expect("query")
            .into_inner();
        out.extend(r.events.into_iter().map(|e| (e.boot_id, e.seq)));
        if r.next_page.is_empty() {
            return out;
        }
        page = r.next_page;
    }
}

/// Overlapping resends are stored once, acks name the high-water mark, a watcher
/// sees every event once, and a reconnect's welcome says where to resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resends_are_stored_once_and_watchers_see_each_event_once() {
    let c = TestCollector::start(CollectorOptions::default());
    let mut w = client::collector(&c.url(), &c.identity("watcher")).await;
    let mut watch = w
        .watch(CollectorWatchRequest { filter: Some(EventFilter { agent_id: "agent-1".into(), ..EventFilter::default() }), since_unix_ns: 0 })
        .await
        .expect("watch")
        .into_inner();

    let t0 = now_ns();
    let mut a = open_stream(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-a", "boot-1")).await.expect("stream");
    assert_eq!(a.welcome_seq("boot-1"), 0);
    assert!(a.send(batch("agent-1", "boot-1", 1..=100, t0)).await);
    assert!(a.send(batch("agent-1", "boot-1", 51..=150, t0)).await, "overlap 51..=100");
    assert!(a.send(batch("agent-1", "boot-1", 1..=150, t0)).await, "all again");
    assert!(a.send(batch("agent-1", "boot-1", 151..=300, t0)).await);
    a.wait_ack("boot-1", 300).await.expect("acked through 300");
    drop(a);

    let mut seen = Vec::new();
    while seen.len() < 300 {
        let ev = tokio::time::timeout(Duration::from_secs(10), watch.message()).await.expect("watch timely").expect("ok").expect("open");
        seen.push(ev.seq);
    }
    assert_eq!(seen, (1..=300).collect::<Vec<_>>(), "each event once, in order");
    assert!(tokio::time::timeout(Duration::from_millis(300), watch.message()).await.is_err(), "no duplicate follows");

    let stored = all_seqs(&c, "agent-1").await;
    assert_eq!(stored.len(), 300);
    assert_eq!(stored.iter().map(|(_, s)| *s).collect::<Vec<_>>(), (1..=300).collect::<Vec<_>>());

    let b = open_stream(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-a", "boot-1")).await.expect("reconnect");
    assert_eq!(b.welcome_seq("boot-1"), 300, "welcome says where to resume");
    assert_eq!(c.metric("warrant_collector_events_in_total"), 300.0);
    assert_eq!(c.metric("warrant_collector_duplicates_dropped_total"), 200.0);
}

/// The collector is SIGKILLed while an agent streams; the agent keeps every
/// unacknowledged event (its spool), reconnects when the collector is back and
/// resends from its last ack (overlapping what was stored but not acked). The log
/// then holds seqs 1..=N exactly once, across two boots, and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_sigkill_mid_stream_loses_and_doubles_nothing() {
    const TOTAL: u64 = 20_000;
    const BATCH: u64 = 250;
    let mut c = TestCollector::start(CollectorOptions { segment_bytes: Some(1 << 20), ..CollectorOptions::default() });
    let agent = c.identity("agent-2");
    let t0 = now_ns();
    // Boot "old" left 500 unacked events in the spool; boot "new" is current.
    let mut h = hello("agent-2", "host-a", "new");
    h.pending_boots = vec!["old".into(), "new".into()];

    let mut acked_old = 0u64;
    let mut acked_new = 0u64;
    let mut killed = false;
    let mut connections = 0;
    while acked_new < TOTAL || acked_old < 500 {
        let mut s: AgentStream = match open_stream(&c.url(), &agent, h.clone()).await {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        connections += 1;
        // Resend from the last *ack* we saw, not from the welcome: overlap on purpose.
        let (w_old, w_new) = (s.welcome_seq("old"), s.welcome_seq("new"));
        assert!(w_old >= acked_old && w_new >= acked_new, "welcome never goes back: {w_old} {w_new}");
        if acked_old < 500 {
            s.send(batch("agent-2", "old", (acked_old + 1)..=500, t0)).await;
        }
        let mut next = acked_new + 1;
        let mut broke = false;
        while next <= TOTAL {
            let end = (next + BATCH - 1).min(TOTAL);
            if !s.send(batch("agent-2", "new", next..=end, t0)).await {
                broke = true;
                break;
            }
            next = end + 1;
            // Keep a few batches in flight, as a real agent would.
            if next > acked_new + 4 * BATCH {
                if s.wait_ack("new", next - 1 - 2 * BATCH).await.is_err() {
                    broke = true;
                    break;
                }
                acked_new = s.acked.get("new").copied().unwrap_or(0);
                acked_old = acked_old.max(s.acked.get("old").copied().unwrap_or(0));
            }
            if !killed && acked_new >= TOTAL / 3 {
                killed = true;
                c.kill_hard();
                c.start_again();
                broke = true;
                break;
            }
        }
        if !broke && s.wait_ack("new", TOTAL).await.is_ok() {
            let _ = s.wait_ack("old", 500).await;
        }
        acked_new = acked_new.max(s.acked.get("new").copied().unwrap_or(0));
        acked_old = acked_old.max(s.acked.get("old").copied().unwrap_or(0));
    }
    assert!(killed && connections >= 2, "the collector was killed mid-stream ({connections} connections)");

    let stored = all_seqs(&c, "agent-2").await;
    let new: Vec<u64> = stored.iter().filter(|(b, _)| b == "new").map(|(_, s)| *s).collect();
    let old: BTreeSet<u64> = stored.iter().filter(|(b, _)| b == "old").map(|(_, s)| *s).collect();
    assert_eq!(new.len() as u64, TOTAL, "nothing lost or doubled in boot new");
    assert_eq!(new, (1..=TOTAL).collect::<Vec<_>>());
    assert_eq!(old, (1..=500).collect::<BTreeSet<_>>());
    assert_eq!(stored.len() as u64, TOTAL + 500);

    c.stop();
    let out = c.verify_offline();
    assert!(out.status.success(), "verify: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// `since` replays matching events from the log, then the stream continues live
/// with the next events: no gap, no duplicate, and the filter applies to both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_since_then_live_without_gap_or_duplicate() {
    let c = TestCollector::start(CollectorOptions::default());
    let t0 = now_ns() - 1_000_000_000;
    let mut a = open_stream(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-a", "b1")).await.expect("stream");
    // 1..=200 at t0+seq ms; a second session's events interleaved must be filtered out.
    let mut evs = Vec::new();
    for s in 1..=200u64 {
        let session = if s % 2 == 0 { "s-even" } else { "s-odd" };
        evs.push(exec_event("agent-1", "host-a", "b1", s, session, t0 + i64::try_from(s).unwrap() * 1_000_000));
    }
    a.send(evs).await;
    a.wait_ack("b1", 200).await.expect("ack");

    let since = t0 + 101 * 1_000_000; // from seq 101 on
    let mut w = client::collector(&c.url(), &c.identity("watcher")).await;
    let mut watch = w
        .watch(CollectorWatchRequest { filter: Some(EventFilter { session: "s-odd".into(), ..EventFilter::default() }), since_unix_ns: since })
        .await
        .expect("watch")
        .into_inner();
    // Live events arrive while the replay may still be running.
    let mut live = Vec::new();
    for s in 201..=400u64 {
        let session = if s % 2 == 0 { "s-even" } else { "s-odd" };
        live.push(exec_event("agent-1", "host-a", "b1", s, session, now_ns()));
    }
    a.send(live[..100].to_vec()).await;
    a.send(live[50..].to_vec()).await; // overlapping resend
    a.wait_ack("b1", 400).await.expect("ack");

    let expect: Vec<u64> = (101..=400).filter(|s| s % 2 == 1).collect();
    let mut got = Vec::new();
    while got.len() < expect.len() {
        let ev = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .unwrap_or_else(|_| panic!("stalled after {got:?}"))
            .expect("ok")
            .expect("open");
        assert_eq!(ev.session, "s-odd");
        got.push(ev.seq);
    }
    assert_eq!(got, expect);
    assert!(tokio::time::timeout(Duration::from_millis(300), watch.message()).await.is_err(), "nothing extra");
}

/// Streams `n` events as `agent` in batches of 500 and returns how long until all
/// were acknowledged.
async fn timed_ingest(c: &TestCollector, agent: &str, boot: &str, n: u64) -> Duration {
    let mut a = open_stream(&c.url(), &c.identity(agent), hello(agent, "host-a", boot)).await.expect("stream");
    let t0 = now_ns();
    let start = std::time::Instant::now();
    let mut next = 1;
    while next <= n {
        let end = (next + 499).min(n);
        assert!(a.send(batch(agent, boot, next..=end, t0)).await);
        next = end + 1;
        if next > 4000 {
            a.wait_ack(boot, next - 4000).await.expect("ack");
        }
    }
    a.wait_ack(boot, n).await.expect("ack");
    start.elapsed()
}

/// A watcher that stops reading does not slow ingest: the collector drops what it
/// cannot buffer for that watcher and tells it how many it missed; a watcher that
/// reads gets every event or a notice for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_is_told_what_it_missed_and_ingest_keeps_its_rate() {
    const N: u64 = 30_000;
    let c = TestCollector::start(CollectorOptions { watch_buffer: Some(4096), ..CollectorOptions::default() });
    let base = timed_ingest(&c, "agent-1", "warmup", N).await;

    let mut w = client::collector(&c.url(), &c.identity("watcher")).await;
    let filter = Some(EventFilter { agent_id: "agent-2".into(), ..EventFilter::default() });
    let mut slow = w.watch(CollectorWatchRequest { filter: filter.clone(), since_unix_ns: 0 }).await.expect("watch").into_inner();
    let mut fast = w.clone().watch(CollectorWatchRequest { filter, since_unix_ns: 0 }).await.expect("watch").into_inner();
    let fast_reader = tokio::spawn(async move {
        let (mut got, mut missed) = (0u64, 0u64);
        while got + missed < N {
            match tokio::time::timeout(Duration::from_secs(20), fast.message()).await {
                Ok(Ok(Some(ev))) => match ev.event {
                    Some(warrant_proto::event::Event::WatchMissed(m)) => missed += m.count,
                    _ => got += 1,
                },
                _ => break,
            }
        }
        (got, missed)
    });
    let with_slow = timed_ingest(&c, "agent-2", "b1", N).await;
    eprintln!("ingest of {N} events: {base:?} alone, {with_slow:?} with a stalled watcher");
    assert!(with_slow < base * 3 + Duration::from_secs(2), "a stalled watcher slowed ingest: {base:?} → {with_slow:?}");

    // The stalled watcher now reads: somewhere in what it gets is the notice.
    let mut missed = 0;
    let mut got = 0u64;
    while missed == 0 {
        let ev = tokio::time::timeout(Duration::from_secs(10), slow.message())
            .await
            .unwrap_or_else(|_| panic!("no watch_missed after {got} events"))
            .expect("ok")
            .expect("open");
        match ev.event {
            Some(warrant_proto::event::Event::WatchMissed(m)) => missed = m.count,
            _ => got += 1,
        }
    }
    assert!(missed > 0 && got < N, "missed {missed}, got {got}");
    let (fast_got, fast_missed) = fast_reader.await.unwrap();
    eprintln!("fast watcher: {fast_got} events, {fast_missed} missed; slow watcher: missed {missed} after {got}");
    // `missed` also counts events the filter would have skipped (other agents'
    // and the collector's own records).
    assert!(fast_got + fast_missed >= N, "fast watcher: {fast_got} + {fast_missed} missed < {N}");
    assert!(c.metric("warrant_collector_watch_missed_total") >= 1.0);
}

/// An ack goes out when its batch is durable, not when TCP gets round to it: with
/// several batches in flight (as an agent keeps them), each batch's time from send
/// to ack stays near the cost of writing and fsyncing the batches before it.
/// (Nagle's algorithm on the collector's side held an ack back until the agent's
/// delayed ACK, 40 ms or more, and the agent's whole window with it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_are_not_held_back_behind_the_agents_delayed_acks() {
    const BATCHES: u64 = 96;
    const SIZE: u64 = 256;
    const WINDOW: u64 = 8;
    let c = TestCollector::start(CollectorOptions::default());
    let (agent, boot) = ("agent-acks", "b");
    let mut a = open_stream(&c.url(), &c.pki().issue(agent), hello(agent, "host-a", boot)).await.expect("stream");
    let t0 = now_ns();
    let mut sent = Vec::new();
    let mut latencies = Vec::new();
    for i in 0..BATCHES {
        let from = i * SIZE + 1;
        sent.push(std::time::Instant::now());
        assert!(a.send(batch(agent, boot, from..=from + SIZE - 1, t0)).await);
        if i + 1 >= WINDOW {
            let j = i + 1 - WINDOW;
            a.wait_ack(boot, (j + 1) * SIZE).await.expect("ack");
            latencies.push(sent[usize::try_from(j).expect("small")].elapsed());
        }
    }
    for j in BATCHES + 1 - WINDOW..BATCHES {
        a.wait_ack(boot, (j + 1) * SIZE).await.expect("ack");
        latencies.push(sent[usize::try_from(j).expect("small")].elapsed());
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let held = latencies.iter().filter(|l| **l >= Duration::from_millis(38)).count();
    println!("send to ack, {BATCHES} batches of {SIZE} with {WINDOW} in flight: median {median:?}, max {:?}, {held} of 38 ms or more", latencies.last().expect("some"));
    // A held ack waits for the delayed-ACK timer (40 ms at least); a busy machine
    // may make one or two batches that slow by itself.
    assert!(held <= 2, "{held} of {BATCHES} batches waited 38 ms or more for their ack (median {median:?}): acks are held back");
}
