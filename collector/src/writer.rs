//! The two threads that write: the log writer and the indexer.
//!
//! Every stored event goes through the log writer: agent batches and the
//! collector's own records (control actions). Requests waiting in its queue are
//! written together with one fsync (group commit), so several agents streaming at
//! once share the cost of durability. Right after the fsync it answers (acks),
//! publishes the new events to live watchers, and hands the records to the
//! indexer, so the next group is written while the index is updated.
//! [`Writer::sync`] waits until everything stored so far is indexed: reads that
//! must see what was acknowledged call it first, and a `since` watch calls it
//! after subscribing and before replaying, so an event is either published after
//! the subscription or already in the index the replay reads: no gap.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use warrant_audit::hub::EventHub;
use warrant_audit::log::Anchor;
use warrant_proto::event::Event as Kind;
use warrant_proto::{ControlAction, Event};

use crate::metrics::Metrics;
use crate::store::{BatchOutcome, IndexWork, Indexer, LogSide, RetentionPlan, Store};

/// Most requests written with one fsync.
const GROUP_MAX: usize = 256;

/// The collector's own envelope: its records carry this agent id.
pub const COLLECTOR_AGENT_ID: &str = "collector";

/// A request to the writer thread.
enum Request {
    /// Store agent events (deduplicated).
    Append { events: Vec<Event>, reply: oneshot::Sender<Result<BatchOutcome, String>> },
    /// Store one record made by the collector; the writer gives it its seq.
    Own { event: Box<Event>, reply: Option<oneshot::Sender<Result<(), String>>> },
    /// Apply retention now.
    Retention { max_age: Option<Duration>, max_bytes: Option<u64>, reply: oneshot::Sender<Result<u64, String>> },
    /// Where the chain ends now.
    Anchor { reply: oneshot::Sender<Anchor> },
    /// Answer once everything stored before this request is indexed.
    Sync { reply: oneshot::Sender<()> },
    /// The highest seq stored for each (agent, boot).
    HighWater { agent: String, boots: Vec<String>, reply: oneshot::Sender<Vec<u64>> },
}

/// Work for the indexer thread, in log order.
enum IndexJob {
    /// Records to index, then publish.
    Records(Vec<IndexWork>),
    /// Remove the rows of dropped segments.
    Drop(RetentionPlan),
    /// Answer when everything before is indexed.
    Sync(oneshot::Sender<()>),
}

/// A handle on the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    /// The queue (bounded: a stalled disk pushes back on agents, which spool).
    tx: mpsc::Sender<Request>,
    /// The collector's envelope for its own records.
    envelope: Arc<Event>,
}

/// Why the writer could not do something.
fn gone() -> String {
    "the log writer has stopped (see the collector's log)".to_owned()
}

impl Writer {
    /// Starts the writer thread (and its indexer thread) over `store`. The thread
    /// ends when every handle is dropped, after making the index durable.
    ///
    /// # Errors
    /// When a thread cannot be started (out of threads or memory).
    pub fn start(
        store: Store,
        hub: EventHub,
        metrics: Arc<Metrics>,
        host: String,
    ) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Request>(1024);
        let boot_id = random_id();
        let envelope = Arc::new(Event {
            agent_id: COLLECTOR_AGENT_ID.to_owned(),
            boot_id: boot_id.clone(),
            host,
            ..Event::default()
        });
        let (mut log, indexer) = store.split();
        // The log side numbers the collector's own records (and gap records).
        log.set_own(Event::clone(&envelope));
        metrics.log_records.store(log.records(), Relaxed);
        metrics.log_bytes.store(log.bytes(), Relaxed);
        let own = Event::clone(&envelope);
        // Bounded: an indexer that falls behind pushes back on the writer.
        let (jobs, job_rx) = std::sync::mpsc::sync_channel::<IndexJob>(64);
        // If the writer thread cannot start, `jobs` is dropped and the indexer ends.
        let index_thread =
            std::thread::Builder::new().name("indexer".into()).spawn(move || run_indexer(indexer, &job_rx))?;
        let handle = std::thread::Builder::new().name("log-writer".into()).spawn(move || {
            run_writer(log, rx, &jobs, &own, &metrics, &hub);
            drop(jobs);
            let _ = index_thread.join();
        })?;
        Ok((Writer { tx, envelope }, handle))
    }

    /// Waits until everything acknowledged so far is in the index (and published),
    /// so a read right after sees it.
    ///
    /// # Errors
    /// When the writer has stopped.
    pub async fn sync(&self) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request::Sync { reply }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// The highest seq stored for each of `boots` of `agent` (0 when none).
    ///
    /// # Errors
    /// When the writer has stopped.
    pub async fn high_water(&self, agent: &str, boots: Vec<String>) -> Result<Vec<u64>, String> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request::HighWater { agent: agent.to_owned(), boots, reply }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// Stores an agent's batch; resolves once it is durable.
    ///
    /// # Errors
    /// When the log cannot be written (nothing of the batch may be acknowledged).
    pub async fn append(&self, events: Vec<Event>) -> Result<BatchOutcome, String> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request::Append { events, reply }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Queues an agent's batch and returns at once with the receiver of its outcome
    /// (so one stream can have several batches in flight, acknowledged in order).
    ///
    /// # Errors
    /// When the writer has stopped.
    pub async fn submit(&self, events: Vec<Event>) -> Result<oneshot::Receiver<Result<BatchOutcome, String>>, String> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request::Append { events, reply }).await.map_err(|_| gone())?;
        Ok(rx)
    }

    /// Records a control action in the log and waits until it is durable.
    ///
    /// # Errors
    /// When the log cannot be written.
    pub async fn record(&self, action: &str, by: &str, target: &str, outcome: &str, detail: &str) -> Result<(), String> {
        let event = self.control_event(action, by, target, outcome, detail);
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request::Own { event: Box::new(event), reply: Some(reply) }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    fn control_event(&self, action: &str, by: &str, target: &str, outcome: &str, detail: &str) -> Event {
        Event {
            time_unix_ns: now_ns(),
            event: Some(Kind::ControlAction(ControlAction {
                action: action.to_owned(),
                by: by.to_owned(),
                target: target.to_owned(),
                outcome: outcome.to_owned(),
                detail: detail.to_owned(),
            })),
            ..Event::clone(&self.envelope)
        }
    }

    /// Applies retention now; returns the records dropped.
    ///
    /// # Errors
    /// When a segment cannot be removed or the retention record cannot be written.
    pub async fn retention(&self, max_age: Option<Duration>, max_bytes: Option<u64>) -> Result<u64, String> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request::Retention { max_age, max_bytes, reply }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Where the chain ends now.
    ///
    /// # Errors
    /// When the writer has stopped.
    pub async fn anchor(&self) -> Result<Anchor, String> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request::Anchor { reply }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// The collector's boot id (its own records' envelope).
    #[must_use]
    pub fn boot_id(&self) -> &str {
        &self.envelope.boot_id
    }
}

/// The log writer's loop: group, dedup, append + fsync, answer, hand to the indexer.
fn run_writer(
    mut log: LogSide,
    mut rx: mpsc::Receiver<Request>,
    jobs: &std::sync::mpsc::SyncSender<IndexJob>,
    own: &Event,
    metrics: &Metrics,
    hub: &EventHub,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let mut batches = Vec::new();
        let mut replies = Vec::new();
        let mut syncs = Vec::new();
        for req in group {
            match req {
                Request::Append { events, reply } => {
                    batches.push(events);
                    replies.push(Reply::Batch(reply));
                }
                Request::Own { event, reply } => {
                    // seq 0: the log side numbers it.
                    batches.push(vec![*event]);
                    replies.push(Reply::Own(reply));
                }
                Request::Retention { max_age, max_bytes, reply } => {
                    let _ = reply.send(retention(&mut log, jobs, hub, own, max_age, max_bytes));
                }
                Request::Anchor { reply } => {
                    let _ = reply.send(log.anchor());
                }
                Request::Sync { reply } => syncs.push(reply),
                Request::HighWater { agent, boots, reply } => {
                    let _ = reply.send(boots.iter().map(|b| log.high_water(&agent, b)).collect());
                }
            }
        }
        if !batches.is_empty() {
            match log.append_batches(batches) {
                Ok((outcomes, work)) => {
                    metrics.log_records.store(log.records(), Relaxed);
                    metrics.log_bytes.store(log.bytes(), Relaxed);
                    for (out, reply) in outcomes.into_iter().zip(replies) {
                        match reply {
                            Reply::Batch(r) => {
                                metrics.events_in.fetch_add(out.accepted.len() as u64 - out.gaps, Relaxed);
                                metrics.gaps.fetch_add(out.gaps, Relaxed);
                                metrics.gap_filled.fetch_add(out.filled, Relaxed);
                                metrics.duplicates.fetch_add(out.duplicates, Relaxed);
                                let _ = r.send(Ok(out));
                            }
                            Reply::Own(Some(r)) => drop(r.send(Ok(()))),
                            Reply::Own(None) => {}
                        }
                    }
                    for w in &work {
                        for ev in w.events() {
                            hub.publish(ev.clone());
                        }
                    }
                    if jobs.send(IndexJob::Records(work)).is_err() {
                        tracing::error!("the indexer has stopped; stopping the log writer");
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot store events; nothing of this group is acknowledged");
                    let msg = format!("cannot store events: {e}");
                    for reply in replies {
                        match reply {
                            Reply::Batch(r) => drop(r.send(Err(msg.clone()))),
                            Reply::Own(Some(r)) => drop(r.send(Err(msg.clone()))),
                            Reply::Own(None) => {}
                        }
                    }
                }
            }
        }
        for reply in syncs {
            let _ = jobs.send(IndexJob::Sync(reply));
        }
    }
}

/// The indexer's loop: index what the writer stored, several groups per
/// transaction when it falls behind.
fn run_indexer(mut indexer: Indexer, jobs: &std::sync::mpsc::Receiver<IndexJob>) {
    let mut pending: Option<IndexJob> = None;
    loop {
        let job = match pending.take() {
            Some(j) => j,
            None => match jobs.recv() {
                Ok(j) => j,
                Err(_) => break,
            },
        };
        match job {
            IndexJob::Records(mut work) => {
                // Take whatever else is waiting into the same transaction.
                while work.len() < 1024 {
                    match jobs.try_recv() {
                        Ok(IndexJob::Records(more)) => work.extend(more),
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if let Err(e) = indexer.apply(&work, false) {
                    // The log has the records; the next start re-indexes them.
                    tracing::error!(error = %e, "cannot index stored records; queries miss them until a restart re-indexes the log");
                }
            }
            IndexJob::Drop(plan) => {
                if let Err(e) = indexer.drop_rows(&plan) {
                    tracing::error!(error = %e, "cannot remove index rows of dropped segments");
                }
            }
            IndexJob::Sync(reply) => {
                let _ = reply.send(());
            }
        }
    }
    if let Err(e) = indexer.commit_durable() {
        tracing::warn!(error = %e, "cannot make the index durable at shutdown; it is rebuilt from the log at the next start");
    }
}

/// How to answer one request of a group.
enum Reply {
    Batch(oneshot::Sender<Result<BatchOutcome, String>>),
    Own(Option<oneshot::Sender<Result<(), String>>>),
}

/// Records the retention first (durably), then drops the segments: a crash between
/// the two leaves more than promised, never less.
fn retention(
    log: &mut LogSide,
    jobs: &std::sync::mpsc::SyncSender<IndexJob>,
    hub: &EventHub,
    envelope: &Event,
    max_age: Option<Duration>,
    max_bytes: Option<u64>,
) -> Result<u64, String> {
    let plan = log.retention_plan(max_age, max_bytes, now_ns()).map_err(|e| e.to_string())?;
    let Some(plan) = plan else { return Ok(0) };
    let first_kept = plan.last_n + 1;
    let reason = match (max_age, max_bytes) {
        (Some(a), Some(b)) => format!("older than {}s or above {b} bytes", a.as_secs()),
        (Some(a), None) => format!("older than {}s", a.as_secs()),
        (None, Some(b)) => format!("above {b} bytes"),
        (None, None) => "asked".to_owned(),
    };
    let event = Event {
        seq: 0,
        time_unix_ns: now_ns(),
        event: Some(Kind::ControlAction(ControlAction {
            action: "retention".into(),
            by: COLLECTOR_AGENT_ID.into(),
            target: format!("log up to record {}", plan.last_n),
            outcome: "ok".into(),
            detail: format!(
                "hash {}; dropped {} segment(s), {} bytes ({reason}); the log now starts at record {first_kept}",
                plan.last_hash,
                plan.segments.len(),
                plan.bytes
            ),
        })),
        ..envelope.clone()
    };
    let (_, work) = log.append_batches(vec![vec![event]]).map_err(|e| e.to_string())?;
    for ev in work.iter().flat_map(IndexWork::events) {
        hub.publish(ev.clone());
    }
    let _ = jobs.send(IndexJob::Records(work));
    log.drop_segments(&plan).map_err(|e| e.to_string())?;
    let last = plan.last_n;
    tracing::info!(dropped_through = last, segments = plan.segments.len(), bytes = plan.bytes, "retention dropped old log segments");
    let _ = jobs.send(IndexJob::Drop(plan));
    Ok(last)
}

/// Now, in nanoseconds since the epoch.
#[must_use]
pub fn now_ns() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// 16 random hex digits.
#[must_use]
pub fn random_id() -> String {
    use rand::Rng;
    let mut b = [0u8; 8];
    rand::rng().fill(&mut b);
    hex::encode(b)
}
