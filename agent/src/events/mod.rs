//! The event path, in the order an event travels: from the kernel (and the agent
//! itself) to the audit log, the collector's spool and live watchers, and back to
//! the host when a violation asks for more than a refusal.
//!
//! ```text
//! ring buffer ──read──► decode ──► enrich ──┐
//! lost counter ─read::poll_lost─────────────┤
//! Landlock audit ─denials (kill rules)──────┼──► EventSink (bounded mpsc) ──► record:
//! host actions (kill, …) ───────────────────┘    seq + envelope + subject, spool,
//!                      │                          AuditLog::append (one write +
//!                      └──► react (kills, drops)  fdatasync per batch), EventHub
//! ```
//!
//! - [`read`]: the ring buffer and the kernel's lost counter, as events.
//! - [`decode`]: one kernel record (agent-common's layouts) to a proto `Event`.
//! - [`enrich`]: what the agent adds before the log sees an event: the unix peer's
//!   name, the `violation` a file rule makes of an open or exec.
//! - [`record`]: the writer thread: sequence numbers, envelope, redaction, session
//!   reports, spool, audit log, watchers.
//! - [`denials`]: Landlock's audit records of refusals, with the path the kernel
//!   resolved: `kill` and `kill-session` file rules decided again on it.
//! - [`refusals`]: the ring's recent `EACCES` refusals per session, which name the
//!   caller of a Landlock record that came without one.
//! - [`react`]: acting on violations the kernel could only start (tree kills,
//!   process kills, socket drops).
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

pub mod decode;
pub mod denials;
pub mod enrich;
pub mod react;
pub mod read;
pub mod record;
pub mod refusals;

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::mpsc;
use tracing::error;
use warrant_proto::v1::{self as pb, event::Event as Kind};

use crate::clock;

pub use react::react_loop;
pub use read::{poll_lost, read_ring};
pub use record::spawn_writer;

/// Messages waiting for the writer (an event, or a batch of at most [`READ_BATCH`]
/// from the ring); beyond this senders wait. With the ring reader's batches that
/// holds at most 65,536 events.
const SINK_CAPACITY: usize = 128;
/// Most events the ring reader hands the writer in one message: one channel
/// operation per batch rather than per event (per-event sends, each a semaphore
/// permit, a slot write and a wake-up, were a tenth of the agent's CPU per event).
const READ_BATCH: usize = 512;
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
    /// Events in the order they were made (the ring reader's).
    Batch(Vec<pb::Event>),
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

    /// Queues events in order, in one message; waits when the writer is behind.
    pub async fn send_batch(&self, events: Vec<pb::Event>) {
        if events.is_empty() {
            return;
        }
        let n = events.len();
        if self.tx.send(Msg::Batch(events)).await.is_err() {
            error!("event writer has stopped; {n} events not recorded");
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
