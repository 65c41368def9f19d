//! The durable stage: makes what the log writer wrote durable, then acts on it.
//!
//! The writer sends each write here once it is in the file. This thread takes
//! every step waiting, fdatasyncs the files written (one call, usually one file)
//! and only then answers the batches (acks), publishes their events to watchers
//! and hands them to the indexer, in the order they were written. So the fsync of
//! one write overlaps with the preparing of the next ones, and several writes
//! share one fsync. After a failed fsync nothing more is acknowledged: what is on
//! disk is unknown until a restart re-reads the log.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::mpsc::{Receiver, SyncSender};

use tokio::sync::oneshot;
use warrant_audit::hub::EventHub;

use super::IndexJob;
use crate::metrics::Metrics;
use crate::store::{BatchOutcome, IndexWork};

/// Most steps acted on after one fsync.
const STEPS_MAX: usize = 256;

/// What the writer hands over, in log order.
pub(super) enum Step {
    /// Written to `file`, not yet durable: answer, publish and index once it is.
    Written {
        /// The segment written (an earlier segment was made durable when the
        /// writer started the next one).
        file: Arc<File>,
        /// Each request's answer.
        replies: Vec<(Reply, BatchOutcome)>,
        /// For the indexer.
        work: Vec<IndexWork>,
        /// Records and bytes in the log after this write, for the metrics.
        records: u64,
        bytes: u64,
    },
    /// Run once everything written before is durable (`true`), or when it cannot
    /// be (`false`).
    After(Box<dyn FnOnce(bool) + Send>),
    /// For the indexer, in order with the records.
    Index(IndexJob),
}

/// How to answer one request of a write.
pub(super) enum Reply {
    /// An agent's batch.
    Batch(oneshot::Sender<Result<BatchOutcome, String>>),
    /// One of the collector's own records (maybe nobody waits).
    Own(Option<oneshot::Sender<Result<(), String>>>),
}

impl Reply {
    /// The request is durable.
    fn done(self, out: BatchOutcome, metrics: &Metrics) {
        match self {
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

    /// The request cannot be stored (or made durable).
    pub(super) fn fail(self, msg: &str) {
        match self {
            Reply::Batch(r) => drop(r.send(Err(msg.to_owned()))),
            Reply::Own(Some(r)) => drop(r.send(Err(msg.to_owned()))),
            Reply::Own(None) => {}
        }
    }
}

/// The durable stage's loop; ends when the writer is gone (or the indexer).
pub(super) fn run(steps: &Receiver<Step>, jobs: &SyncSender<IndexJob>, poisoned: &AtomicBool, metrics: &Metrics, hub: &EventHub) {
    let mut failed: Option<String> = None;
    while let Ok(first) = steps.recv() {
        let mut taken = vec![first];
        while taken.len() < STEPS_MAX {
            match steps.try_recv() {
                Ok(s) => taken.push(s),
                Err(_) => break,
            }
        }
        // Every step here was sent after its write returned: one fdatasync per
        // file covers them all.
        if failed.is_none() {
            let mut synced: Vec<&Arc<File>> = Vec::new();
            for step in &taken {
                if let Step::Written { file, .. } = step
                    && !synced.iter().any(|f| Arc::ptr_eq(f, file))
                {
                    if let Err(e) = file.sync_data() {
                        tracing::error!(error = %e, "fsync of the log failed; nothing more is acknowledged until a restart");
                        poisoned.store(true, Release);
                        failed = Some(format!("cannot store events: fsync of the log failed: {e}"));
                        break;
                    }
                    synced.push(file);
                }
            }
        }
        for step in taken {
            match step {
                Step::Written { replies, work, records, bytes, .. } => {
                    if let Some(msg) = &failed {
                        for (reply, _) in replies {
                            reply.fail(msg);
                        }
                        continue;
                    }
                    metrics.log_records.store(records, Relaxed);
                    metrics.log_bytes.store(bytes, Relaxed);
                    for (reply, out) in replies {
                        reply.done(out, metrics);
                    }
                    for ev in work.iter().flat_map(IndexWork::events) {
                        hub.publish(ev.clone());
                    }
                    if jobs.send(IndexJob::Records(work)).is_err() {
                        tracing::error!("the indexer has stopped; stopping the log writer");
                        return;
                    }
                }
                Step::After(f) => f(failed.is_none()),
                Step::Index(job) => {
                    if jobs.send(job).is_err() {
                        return;
                    }
                }
            }
        }
    }
}
