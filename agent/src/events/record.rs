//! The writer thread: the one place that gives events their sequence numbers and
//! puts them on the record (spool, audit log), then in front of watchers.

use std::sync::{Arc, atomic::Ordering};

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tracing::{error, warn};
use warrant_audit::{AuditLog, EventHub};
use warrant_proto::v1::{self as pb, event::Event as Kind};

use super::{Envelope, MAX_BATCH, Msg, Stats, Subjects, agent_event};
use crate::{redact::Redactor, report::SharedLedgers, spool::Spool};

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
                    Some(Msg::Batch(events)) => batch = events,
                    Some(Msg::Stop) | None => stopping = true,
                }
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(Msg::Event(ev)) => batch.push(ev),
                        Ok(Msg::Batch(mut events)) => batch.append(&mut events),
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
                // Reports are rare: the batch is rebuilt only when one is due (moving
                // every event into a new batch was a good part of the writer's time).
                if batch.iter().any(|e| !e.session.is_empty()) {
                    let mut ledgers = ledgers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let reports: Vec<(usize, pb::Event)> =
                        batch.iter().enumerate().filter_map(|(i, ev)| Some((i, ledgers.observe(ev, &subjects)?))).collect();
                    // From the back, so earlier positions stay where they were.
                    for (i, report) in reports.into_iter().rev() {
                        batch.insert(i + 1, report);
                    }
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
                if hub.watchers() > 0 {
                    for ev in batch.drain(..) {
                        hub.publish(Arc::new(ev));
                    }
                } else {
                    // Nobody watches: no shared copy of each event to make and drop.
                    batch.clear();
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
    loop {
        let events = match rx.blocking_recv() {
            Some(Msg::Event(ev)) => vec![ev],
            Some(Msg::Batch(events)) => events,
            Some(Msg::Stop) | None => return,
        };
        for ev in events {
            stats.log_errors.fetch_add(1, Ordering::Relaxed);
            hub.publish(Arc::new(ev));
        }
    }
}

