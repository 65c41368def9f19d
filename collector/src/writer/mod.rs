//! The three threads that write: the log writer, the durable stage and the indexer.
//!
//! Every stored event goes through the log writer: agent batches and the
//! collector's own records (control actions). It takes the requests waiting in its
//! queue (up to [`GROUP_EVENTS`] events), deduplicates, chains and writes them,
//! and hands them to the durable stage ([`durable`]), which fsyncs whatever has
//! been written meanwhile with one fdatasync (group commit), and only then answers
//! (acks), publishes the new events to live watchers and hands the records to the
//! indexer ([`indexer`]). So the next group is written while the last one is being
//! made durable, and the index is updated meanwhile too; nothing is acknowledged,
//! published or told as a high-water mark before it is durable.
//! [`Writer::sync`] waits until everything stored so far is indexed: reads that
//! must see what was acknowledged call it first, and a `since` watch calls it
//! after subscribing and before replaying, so an event is either published after
//! the subscription or already in the index the replay reads: no gap.

mod durable;
mod indexer;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use warrant_audit::hub::EventHub;
use warrant_audit::log::Anchor;
use warrant_proto::event::Event as Kind;
use warrant_proto::{ControlAction, Event};

use crate::metrics::Metrics;
use self::durable::{Reply, Step};
use crate::store::{BatchOutcome, IndexWork, LogSide, RetentionPlan, Store};

/// Most requests written with one write.
const GROUP_MAX: usize = 256;

/// The writer stops taking requests into a write at this many events, so the
/// durable stage can fsync one write while the next is being prepared (it still
/// makes all writes waiting durable with one fdatasync).
const GROUP_EVENTS: usize = 1024;

/// Writes handed to the durable stage and not yet durable, at most.
const STEPS_IN_FLIGHT: usize = 16;

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
        // Bounded: an indexer that falls behind pushes back on the durable stage,
        // and that one on the writer.
        let (jobs, job_rx) = std::sync::mpsc::sync_channel::<IndexJob>(64);
        let (steps, step_rx) = std::sync::mpsc::sync_channel::<Step>(STEPS_IN_FLIGHT);
        let poisoned = Arc::new(AtomicBool::new(false));
        // If a thread cannot start, the channels it would have read are dropped
        // and the threads after it end.
        let index_thread = std::thread::Builder::new().name("indexer".into()).spawn(move || indexer::run(indexer, &job_rx))?;
        let flag = poisoned.clone();
        let durable_thread = std::thread::Builder::new().name("log-durable".into()).spawn(move || {
            durable::run(&step_rx, &jobs, &flag, &metrics, &hub);
            drop(jobs);
            let _ = index_thread.join();
        })?;
        let handle = std::thread::Builder::new().name("log-writer".into()).spawn(move || {
            run_writer(log, rx, &steps, &own, &poisoned);
            drop(steps);
            let _ = durable_thread.join();
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

/// The log writer's loop: group, dedup, chain and write, hand to the durable
/// stage. Requests are handled in the order they came: a high-water mark or an
/// anchor asked for after a batch is told once that batch is durable.
fn run_writer(mut log: LogSide, mut rx: mpsc::Receiver<Request>, steps: &SyncSender<Step>, own: &Event, poisoned: &AtomicBool) {
    let mut group = Group::default();
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(req) = next.take() {
            let step = match req {
                Request::Append { events, reply } => {
                    group.events += events.len();
                    group.batches.push(events);
                    group.replies.push(Reply::Batch(reply));
                    None
                }
                Request::Own { event, reply } => {
                    // seq 0: the log side numbers it.
                    group.events += 1;
                    group.batches.push(vec![*event]);
                    group.replies.push(Reply::Own(reply));
                    None
                }
                Request::Retention { max_age, max_bytes, reply } => {
                    if !group.write(&mut log, steps, poisoned) {
                        return;
                    }
                    let _ = reply.send(retention(&mut log, steps, own, max_age, max_bytes));
                    None
                }
                Request::Anchor { reply } => {
                    let anchor = log.anchor();
                    Some(Step::After(Box::new(move |_| drop(reply.send(anchor)))))
                }
                Request::Sync { reply } => Some(Step::Index(IndexJob::Sync(reply))),
                Request::HighWater { agent, boots, reply } => {
                    let marks: Vec<u64> = boots.iter().map(|b| log.high_water(&agent, b)).collect();
                    // Told only once durable: an agent resumes after what it is told.
                    Some(Step::After(Box::new(move |durable| {
                        if durable {
                            let _ = reply.send(marks);
                        }
                    })))
                }
            };
            if let Some(step) = step
                && (!group.write(&mut log, steps, poisoned) || steps.send(step).is_err())
            {
                return;
            }
            if group.events < GROUP_EVENTS && group.batches.len() < GROUP_MAX {
                next = rx.try_recv().ok();
            }
        }
        if !group.write(&mut log, steps, poisoned) {
            return;
        }
    }
}

/// The batches taken from the queue and not yet written.
#[derive(Default)]
struct Group {
    batches: Vec<Vec<Event>>,
    replies: Vec<Reply>,
    events: usize,
}

impl Group {
    /// Writes the group (if any) and hands it to the durable stage; false when
    /// that stage has stopped.
    fn write(&mut self, log: &mut LogSide, steps: &SyncSender<Step>, poisoned: &AtomicBool) -> bool {
        if self.batches.is_empty() {
            return true;
        }
        self.events = 0;
        let batches = std::mem::take(&mut self.batches);
        let replies = std::mem::take(&mut self.replies);
        if poisoned.load(Acquire) {
            log.poison();
        }
        match log.write_batches(batches) {
            Ok((outcomes, work)) => {
                let step = Step::Written {
                    file: log.sync_file(),
                    replies: replies.into_iter().zip(outcomes).collect(),
                    work,
                    records: log.records(),
                    bytes: log.bytes(),
                };
                if steps.send(step).is_err() {
                    tracing::error!("the durable stage has stopped; stopping the log writer");
                    return false;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot store events; nothing of this group is acknowledged");
                let msg = format!("cannot store events: {e}");
                for reply in replies {
                    reply.fail(&msg);
                }
            }
        }
        true
    }
}

/// Records the retention first (durably), then drops the segments: a crash between
/// the two leaves more than promised, never less.
fn retention(
    log: &mut LogSide,
    steps: &SyncSender<Step>,
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
    // Durable before anything is deleted (an fsync here, not in the durable stage).
    let (_, work) = log.append_batches(vec![vec![event]]).map_err(|e| e.to_string())?;
    let _ = steps.send(Step::Written { file: log.sync_file(), replies: Vec::new(), work, records: log.records(), bytes: log.bytes() });
    log.drop_segments(&plan).map_err(|e| e.to_string())?;
    let last = plan.last_n;
    tracing::info!(dropped_through = last, segments = plan.segments.len(), bytes = plan.bytes, "retention dropped old log segments");
    let _ = steps.send(Step::Index(IndexJob::Drop(plan)));
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
