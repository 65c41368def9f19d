//! The indexer thread: indexes what the durable stage hands it, in log order.

use super::IndexJob;
use crate::store::Indexer;

/// The indexer's loop: index what the writer stored, several groups per
/// transaction when it falls behind.
pub(super) fn run(mut indexer: Indexer, jobs: &std::sync::mpsc::Receiver<IndexJob>) {
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

