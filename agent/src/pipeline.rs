//! From the kernel (and the agent itself) to the audit log and live watchers.
//!
//! ```text
//! ring buffer ──read_ring──┐
//! lost counter ─poll_lost──┼──► EventSink (bounded mpsc) ──► writer thread:
//! host actions (kill, …) ──┘        seq + envelope + subject, AuditLog::append (one
//!                                   write + fdatasync per batch), EventHub::publish
//! ```
//!
//! With a collector, the writer also writes each batch to the disk spool, from which
//! the uplink streams it ([`crate::uplink`]): first the spool (readable at once, so
//! the uplink sends while the local log syncs), then the local log, then the
//! spool's fsync.
//!
//! One writer assigns sequence numbers, so the log has one total order. The sink is
//! bounded: if the writer falls behind, the ring reader waits, the ring buffer fills,
//! and the kernel counts what it could not reserve; that count comes back as an
//! `events_lost` event. Nothing is dropped without being counted.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    sync::mpsc,
};
use tracing::{error, warn};
use warrant_collector::{AuditLog, EventHub};
use warrant_proto::v1::{self as pb, event::Event as Kind};

use crate::{clock, convert, file_rules, redact::Redactor, report::SharedLedgers, spool::Spool};

/// Events waiting for the writer; beyond this the ring reader waits.
const SINK_CAPACITY: usize = 65_536;
/// Most events per log append (one fdatasync each).
const MAX_BATCH: usize = 4096;

/// Counters shown by `warrant status` and used for `events_lost`.
#[derive(Debug, Default)]
pub struct Stats {
    pub events_total: AtomicU64,
    pub lost_total: AtomicU64,
    /// Records that reached user space but could not be decoded (a contract bug).
    pub malformed_total: AtomicU64,
    pub log_errors: AtomicU64,
    /// Events the spool had no room for: in the local log, never sent to the collector.
    pub spool_full_total: AtomicU64,
    /// The uplink has a live stream to the collector (welcome received).
    pub uplink_connected: AtomicBool,
    /// Highest seq of this boot the collector acknowledged.
    pub acked_seq: AtomicU64,
    /// Kills done (any reason), and their latency.
    pub kills_total: AtomicU64,
    pub kill_latency: Histogram,
}

/// A Prometheus-style histogram of seconds with fixed buckets, lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Count of observations at or below each bound of [`Histogram::BOUNDS`] (not cumulative).
    buckets: [AtomicU64; Histogram::BOUNDS.len()],
    /// Observations above the last bound.
    over: AtomicU64,
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Upper bounds in seconds: a kill takes from under a millisecond to seconds.
    pub const BOUNDS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        match Self::BOUNDS.iter().position(|b| secs <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bound, the total count and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut acc = 0;
        let cumulative = Self::BOUNDS
            .iter()
            .zip(&self.buckets)
            .map(|(b, c)| {
                acc += c.load(Ordering::Relaxed);
                (*b, acc)
            })
            .collect();
        (cumulative, self.count.load(Ordering::Relaxed), self.sum_us.load(Ordering::Relaxed) as f64 / 1e6)
    }
}

/// Who this agent is, stamped on every event.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub agent_id: String,
    pub boot_id: String,
    pub host: String,
}

/// What the writer adds to kernel events from the grant they name.
#[derive(Debug, Clone, Default)]
pub struct GrantInfo {
    pub subject: String,
    /// The grant's policy name (empty for none), for violation events.
    pub policy: String,
    /// The policy itself, to decide file opens and execs (see `file_rules`).
    pub rules: Option<Arc<warrant_policy::Policy>>,
    /// Why the grant was given and who gave it, for session reports.
    pub reason: String,
    pub issued_by: String,
}

/// Grant id (as printed) to what events are enriched with.
pub type Subjects = Arc<RwLock<HashMap<String, GrantInfo>>>;

/// What the writer receives.
#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "Stop is sent once; boxing every event would cost an allocation each")]
pub enum Msg {
    Event(pb::Event),
    /// Write what is queued, then stop. Explicit, because sinks may outlive the
    /// shutdown in connection tasks the server does not own.
    Stop,
}

/// Where events go; cheap to clone.
#[derive(Clone, Debug)]
pub struct EventSink {
    tx: mpsc::Sender<Msg>,
}

impl EventSink {
    pub fn new() -> (Self, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel(SINK_CAPACITY);
        (Self { tx }, rx)
    }

    /// Queues an event; waits when the writer is behind.
    pub async fn send(&self, ev: pb::Event) {
        if self.tx.send(Msg::Event(ev)).await.is_err() {
            error!("event writer has stopped; event not recorded");
        }
    }

    /// Asks the writer to flush and stop.
    pub async fn stop(&self) {
        let _ = self.tx.send(Msg::Stop).await;
    }
}

/// An event made by the agent (not the kernel), stamped now.
pub fn agent_event(kind: Kind) -> pb::Event {
    pb::Event { event: Some(kind), time_unix_ns: clock::wall_ns(), ..Default::default() }
}

/// Runs the writer on its own thread until every sink is dropped; returns when the
/// last batch is on disk.
#[expect(clippy::too_many_arguments, reason = "wired once, in main")]
pub fn spawn_writer(
    mut rx: mpsc::Receiver<Msg>,
    mut log: AuditLog,
    hub: EventHub,
    envelope: Envelope,
    subjects: Subjects,
    stats: Arc<Stats>,
    ledgers: SharedLedgers,
    redactor: Redactor,
    spool: Option<Arc<Spool>>,
) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("event-writer".into())
        .spawn(move || {
            let mut seq: u64 = 0;
            // Events the spool refused since the last `events_lost` notice about it.
            let mut unspooled: u64 = 0;
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let mut stopping = false;
            while !stopping {
                match rx.blocking_recv() {
                    Some(Msg::Event(ev)) => batch.push(ev),
                    Some(Msg::Stop) | None => stopping = true,
                }
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(Msg::Event(ev)) => batch.push(ev),
                        Ok(Msg::Stop) => stopping = true,
                        Err(_) => break,
                    }
                }
                // Once the spool has room again (the notice itself must fit, hence the
                // margin), or when the agent stops, the refusals become an event: in
                // the local log always, and for the collector when it fits.
                if let Some(spool) = &spool
                    && unspooled > 0
                    && (stopping || spool.free_bytes() >= spool.max_bytes() / 4)
                {
                    let total = stats.spool_full_total.load(Ordering::Relaxed);
                    warn!("{unspooled} events recorded while the spool was full will not reach the collector");
                    batch.insert(
                        0,
                        agent_event(Kind::EventsLost(pb::EventsLost {
                            count: unspooled,
                            total,
                            reason: "spool_full".into(),
                            ..Default::default()
                        })),
                    );
                    unspooled = 0;
                }
                if batch.is_empty() {
                    continue;
                }
                // Secrets are masked before anything else sees the event.
                for ev in &mut batch {
                    redactor.redact(ev);
                }
                {
                    let subjects_now = subjects.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                    for ev in &mut batch {
                        if ev.subject.is_empty()
                            && let Some(info) = subjects_now.get(&ev.grant)
                        {
                            ev.subject.clone_from(&info.subject);
                        }
                    }
                }
                // A session's report goes right after its end, so it sees every event.
                if batch.iter().any(|e| !e.session.is_empty()) {
                    let mut ledgers = ledgers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let mut with_reports = Vec::with_capacity(batch.len() + 1);
                    for ev in batch.drain(..) {
                        let report = ledgers.observe(&ev, &subjects);
                        with_reports.push(ev);
                        with_reports.extend(report);
                    }
                    batch = with_reports;
                }
                {
                    let subjects = subjects.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                    for ev in &mut batch {
                        seq += 1;
                        ev.seq = seq;
                        ev.agent_id.clone_from(&envelope.agent_id);
                        ev.boot_id.clone_from(&envelope.boot_id);
                        ev.host.clone_from(&envelope.host);
                        // (The subject was filled in before the reports were made.)
                        let Some(info) = subjects.get(&ev.grant) else { continue };
                        if let Some(Kind::Violation(v)) = &mut ev.event
                            && v.rule != "self-protection"
                        {
                            v.policy.clone_from(&info.policy);
                        }
                    }
                }
                if let Some(spool) = &spool {
                    let refused = match spool.write(&batch) {
                        Ok(a) => a.rejected,
                        Err(e) => {
                            error!("failed to spool {} events for the collector: {e}", batch.len());
                            batch.len()
                        }
                    };
                    if refused > 0 {
                        if unspooled == 0 {
                            warn!(
                                "the spool is full ({} bytes): events stay in the local log but will not reach \
                                 the collector until it catches up",
                                spool.max_bytes()
                            );
                        }
                        unspooled += refused as u64;
                        stats.spool_full_total.fetch_add(refused as u64, Ordering::Relaxed);
                    }
                }
                if let Err(e) = log.append(&batch) {
                    stats.log_errors.fetch_add(1, Ordering::Relaxed);
                    error!("failed to append {} events to the audit log {}: {e}", batch.len(), log.path().display());
                    // A failed fsync poisons the handle: reopen (which re-reads the
                    // chain's head from disk) and try this batch once more.
                    let path = log.path().to_owned();
                    log = match log.reopen() {
                        Ok(l) => l,
                        Err(e) => {
                            error!("cannot reopen the audit log {}: {e}; events go to watchers only", path.display());
                            return drain_to_hub(rx, &hub, &stats);
                        }
                    };
                    if let Err(e) = log.append(&batch) {
                        error!("retry failed, {} events not in the audit log: {e}", batch.len());
                    }
                }
                stats.events_total.fetch_add(batch.len() as u64, Ordering::Relaxed);
                for ev in batch.drain(..) {
                    hub.publish(Arc::new(ev));
                }
                if let Some(spool) = &spool
                    && let Err(e) = spool.sync()
                {
                    error!("failed to fsync the spool: {e}; a machine crash now could lose events the collector has not acknowledged");
                }
            }
        })
        .context("failed to start the event writer thread")
}

/// Last resort when the log cannot be reopened: keep watchers fed (they are the
/// only record left) and count every event as lost to the log.
fn drain_to_hub(mut rx: mpsc::Receiver<Msg>, hub: &EventHub, stats: &Stats) {
    while let Some(Msg::Event(ev)) = rx.blocking_recv() {
        stats.log_errors.fetch_add(1, Ordering::Relaxed);
        hub.publish(Arc::new(ev));
    }
}

/// Reads kernel records as they arrive and queues them as events. File opens and
/// execs are decided against their grant's policy (`file_rules`), which adds
/// `violation` events after them. Violations that ask for more than refusing (kill,
/// kill-session, drop) are also passed to `reactions`.
pub async fn read_ring(
    ring: RingBuf<MapData>,
    sink: EventSink,
    stats: Arc<Stats>,
    subjects: Subjects,
    reactions: mpsc::UnboundedSender<pb::Event>,
) -> Result<()> {
    // SAFETY: the ring buffer owns its descriptor and is moved into the AsyncFd, so
    // the descriptor stays open (and is the same file) for as long as it is registered.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("failed to poll the ring buffer: {e}"))?;
    let mut batch = Vec::new();
    loop {
        let mut guard = fd.readable_mut().await.context("failed to wait on the ring buffer")?;
        let ring = guard.get_inner_mut();
        let offset = clock::boot_to_wall_ns();
        while let Some(record) = ring.next() {
            match convert::decode(&record, offset) {
                Ok(mut ev) => {
                    name_unix_peer(&mut ev);
                    let extra = file_violation(&ev, &subjects);
                    batch.push(ev);
                    batch.extend(extra);
                }
                Err(e) => {
                    stats.malformed_total.fetch_add(1, Ordering::Relaxed);
                    stats.lost_total.fetch_add(1, Ordering::Relaxed);
                    warn!("dropping an undecodable kernel record: {e}");
                }
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
        }
        if batch.len() < MAX_BATCH {
            guard.clear_ready();
        }
        // Reactions first: a kill must not wait behind the writer's backlog.
        for ev in &batch {
            if let Some(Kind::Violation(v)) = &ev.event
                && needs_reaction(v)
            {
                let _ = reactions.send(ev.clone());
            }
        }
        for ev in batch.drain(..) {
            sink.send(ev).await;
        }
    }
}

/// Whether the agent must act on a violation: the kernel refused the call, but
/// killing the process (for file and exec rules: Landlock cannot), the session's
/// tree kill, and socket teardown are the agent's to do.
fn needs_reaction(v: &pb::Violation) -> bool {
    match v.action.as_str() {
        "kill-session" | "drop" => true,
        // A network `kill` rule dooms the task in the kernel already, as does the
        // kernel's own kill of a nameless exec (a violation without a policy rule).
        "kill" => !matches!(v.op.as_str(), "connect" | "sendmsg" | "bind") && v.rule != "self-protection",
        _ => false,
    }
}

/// The violation event a file open, file change or exec amounts to under its grant's policy.
fn file_violation(ev: &pb::Event, subjects: &Subjects) -> Option<pb::Event> {
    if !matches!(ev.event, Some(Kind::FileOpen(_) | Kind::FileChange(_) | Kind::ExecFailed(_) | Kind::Exec(_))) {
        return None;
    }
    let rules = {
        let subjects = subjects.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        subjects.get(&ev.grant).and_then(|g| g.rules.clone())
    };
    let v = file_rules::violation(ev, rules.as_deref())?;
    Some(pb::Event {
        event: Some(Kind::Violation(v)),
        time_unix_ns: ev.time_unix_ns,
        grant: ev.grant.clone(),
        session: ev.session.clone(),
        pid: ev.pid,
        tid: ev.tid,
        ppid: ev.ppid,
        uid: ev.uid,
        euid: ev.euid,
        gid: ev.gid,
        comm: ev.comm.clone(),
        cgroup_id: ev.cgroup_id,
        ..Default::default()
    })
}

/// Turns growth of the kernel's lost-record counter into `events_lost` events.
/// `read_lost` returns the kernel's running total (it survives agent restarts in
/// the pinned map); `reported` is how much of it earlier agents already reported,
/// so losses while no agent ran are reported too; `remember` persists the new mark.
pub async fn poll_lost(
    read_lost: impl Fn() -> Option<u64>,
    mut reported: u64,
    remember: impl Fn(u64),
    sink: EventSink,
    stats: Arc<Stats>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let Some(now) = read_lost() else { continue };
        if now > reported {
            let count = now - reported;
            reported = now;
            remember(now);
            let total = stats.lost_total.fetch_add(count, Ordering::Relaxed) + count;
            warn!("the kernel could not record {count} events (ring buffer full); {total} since start");
            sink.send(agent_event(Kind::EventsLost(pb::EventsLost { count, total, reason: "ring_buffer".into(), ..Default::default() }))).await;
        }
    }
}

/// A unix connect's peer command name: the kernel gives its pid only. Read at
/// once, while the peer is most likely still the process that listened.
fn name_unix_peer(ev: &mut pb::Event) {
    if let Some(Kind::Connect(n)) = &mut ev.event
        && n.family == "unix"
        && n.peer_pid != 0
        && let Ok(comm) = std::fs::read_to_string(format!("/proc/{}/comm", n.peer_pid))
    {
        n.peer_comm = comm.trim_end().to_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(9));
        let (buckets, count, sum) = h.snapshot();
        assert_eq!(count, 3);
        assert_eq!(buckets[0], (0.001, 1));
        assert_eq!(buckets[2], (0.005, 2));
        assert_eq!(buckets.last().copied(), Some((5.0, 2)), "9 s is above every bound");
        assert!((sum - 9.0035).abs() < 1e-6, "{sum}");
    }
}
