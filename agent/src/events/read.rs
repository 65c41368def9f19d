//! The first stage: kernel records from the ring buffer, decoded and enriched, and
//! the kernel's lost-record counter, into the [`EventSink`].

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::{Context, Result};
use aya::maps::{Array, MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc};
use tracing::warn;
use warrant_proto::v1::{self as pb, event::Event as Kind};

use super::refusals::Refusals;
use super::{EventSink, READ_BATCH, Stats, Subjects, agent_event, decode, enrich, react};
use crate::clock;

/// How often the ring is read without a wake-up: bulk records (file opens and
/// changes) do not wake the reader until the ring holds a good batch (see
/// `emit::bulk_flags` in the eBPF crate), so a quiet session's last ones wait at
/// most this long.
const IDLE_READ: Duration = Duration::from_millis(5);

/// Reads kernel records as they arrive and queues them as events. File opens and
/// execs are decided against their grant's policy (`file_rules`), which adds
/// `violation` events after them. Violations that ask for more than refusing (kill,
/// kill-session, drop) are also passed to `reactions`.
pub async fn read_ring(
    ring: RingBuf<MapData>,
    ring_read: Array<MapData, u64>,
    sink: EventSink,
    stats: Arc<Stats>,
    subjects: Subjects,
    reactions: mpsc::UnboundedSender<pb::Event>,
    refusals: Arc<Refusals>,
) -> Result<()> {
    // SAFETY: the ring buffer owns its descriptor and is moved into the AsyncFd, so
    // the descriptor stays open (and is the same file) for as long as it is registered.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("failed to poll the ring buffer: {e}"))?;
    let mut batch = Vec::new();
    let mut shares = ReadShares::new(ring_read);
    let mut tick = tokio::time::interval(IDLE_READ);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard.context("failed to wait on the ring buffer")?;
                if !drain(guard.get_inner_mut(), &mut batch, &mut shares, &stats, &subjects, &refusals) {
                    guard.clear_ready();
                }
            }
            _ = tick.tick() => {
                drain(fd.get_mut(), &mut batch, &mut shares, &stats, &subjects, &refusals);
            }
        }
        if batch.is_empty() {
            continue;
        }
        // Reactions first: a kill must not wait behind the writer's backlog.
        for ev in &batch {
            if let Some(Kind::Violation(v)) = &ev.event
                && react::needs_reaction(v)
            {
                let _ = reactions.send(ev.clone());
            }
        }
        sink.send_batch(std::mem::replace(&mut batch, Vec::with_capacity(READ_BATCH))).await;
    }
}

/// Decodes what the ring holds into `batch`, up to [`READ_BATCH`]; true when it
/// stopped at the cap (more may be waiting).
fn drain(
    ring: &mut RingBuf<MapData>,
    batch: &mut Vec<pb::Event>,
    shares: &mut ReadShares,
    stats: &Stats,
    subjects: &Subjects,
    refusals: &Refusals,
) -> bool {
    let offset = clock::boot_to_wall_ns();
    let mut more = false;
    while let Some(record) = ring.next() {
        shares.read(&record);
        match decode::decode(&record, offset) {
            Ok(mut ev) => {
                enrich::name_unix_peer(&mut ev);
                refusals.note(&ev);
                let extra = enrich::file_violation(&ev, subjects);
                batch.push(ev);
                batch.extend(extra);
            }
            Err(e) => {
                stats.malformed_total.fetch_add(1, Ordering::Relaxed);
                stats.lost_total.fetch_add(1, Ordering::Relaxed);
                warn!("dropping an undecodable kernel record: {e}");
            }
        }
        if batch.len() >= READ_BATCH {
            more = true;
            break;
        }
    }
    shares.publish();
    more
}

/// What the reader has read of each session's records, told back to the kernel
/// (`RING_READ`), where it weighs a session's share of the ring against the rest
/// (`emit::admitted` in the eBPF crate): the agent is the only writer of these
/// counts, the kernel only adds to its own (`RING_CHARGED`).
struct ReadShares {
    map: Array<MapData, u64>,
    /// Slot → bytes read in all, as last known or written.
    read: HashMap<u32, u64>,
    /// Slots whose count grew since the last [`ReadShares::publish`].
    touched: Vec<u32>,
}

impl ReadShares {
    fn new(map: Array<MapData, u64>) -> Self {
        Self { map, read: HashMap::new(), touched: Vec::new() }
    }

    /// Counts one record read, by the slot its header names.
    fn read(&mut self, record: &[u8]) {
        let Some(flags) = record.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_ne_bytes) else {
            return;
        };
        let Some(slot) = warrant_common::event::charged_slot(flags) else { return };
        let map = &self.map;
        let n = self.read.entry(slot).or_insert_with(|| map.get(&slot, 0).unwrap_or(0));
        if !self.touched.contains(&slot) {
            self.touched.push(slot);
        }
        *n += record.len() as u64;
    }

    /// Writes the counts that grew into `RING_READ`.
    fn publish(&mut self) {
        for slot in self.touched.drain(..) {
            let n = self.read.get(&slot).copied().unwrap_or(0);
            if let Err(e) = self.map.set(slot, n, 0) {
                warn!("cannot tell the kernel what was read of session slot {slot}: {e}");
            }
        }
    }
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

