//! The read side for people: `Watch` (live, optionally replaying from the log
//! first), `Query` (pages of history) and `Sessions`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use warrant_proto::event::Event as Kind;
use warrant_proto::{CollectorSessionsRequest, CollectorSessionsResponse, CollectorWatchRequest, Event, QueryRequest, QueryResponse, WatchMissed};

use super::{BoxStream, State, filter_of};
use crate::auth::Role;
use crate::metrics::Metrics;
use crate::store::{Cursor, QuerySpec};

/// Most events one Query page returns.
const QUERY_MAX: usize = 10_000;
/// Most bytes of events one Query page returns: well under gRPC's usual 4 MiB
/// message limit, so a client on defaults can read any page.
pub const QUERY_MAX_BYTES: usize = 2 << 20;
/// How long one Query call keeps scanning past records that do not match before
/// it returns an empty page with a `next_page`.
const QUERY_SCAN_TIME: std::time::Duration = std::time::Duration::from_secs(2);
/// Events per replay page read from the log.
const REPLAY_PAGE: usize = 2048;

pub(super) async fn watch(state: &Arc<State>, req: Request<CollectorWatchRequest>) -> Result<Response<BoxStream<Event>>, Status> {
    let state = state.clone();
    state.authorize(&req, Role::Watcher, "Watch").await?;
    let r = req.into_inner();
    let filter = filter_of(r.filter)?;
    // Subscribe before replaying, so nothing falls between the two.
    let mut live = state.hub.subscribe(filter.clone());
    let (tx, rx) = mpsc::channel::<Result<Event, Status>>(256);
    state.metrics.watchers.fetch_add(1, Relaxed);
    tokio::spawn(async move {
        let metrics = state.metrics.clone();
        let _gauge = Gauge(metrics.clone());
        let mut replayed: HashMap<(String, String), u64> = HashMap::new();
        if r.since_unix_ns > 0 {
            // Everything published before the subscription must be in the
            // index the replay reads.
            if let Err(e) = state.writer.sync().await {
                let _ = tx.send(Err(Status::unavailable(e))).await;
                return;
            }
            let spec = QuerySpec { filter, from: r.since_unix_ns, to: 0, limit: REPLAY_PAGE, max_bytes: 0 };
            let mut cursor = Cursor::Start;
            loop {
                let (reader, s) = (state.reader.clone(), spec.clone());
                let page = match tokio::task::spawn_blocking(move || reader.query(&s, cursor)).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(Status::internal(format!("cannot replay from the log: {e}")))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        return;
                    }
                };
                // What cannot be interpreted is skipped, and the watcher told.
                for why in page.skipped {
                    metrics.skipped_reads.fetch_add(1, Relaxed);
                    if tx.send(Ok(skipped_notice(why))).await.is_err() {
                        return;
                    }
                }
                for ev in page.events {
                    let mark = replayed.entry((ev.agent_id.clone(), ev.boot_id.clone())).or_insert(0);
                    *mark = (*mark).max(ev.seq);
                    if tx.send(Ok(ev)).await.is_err() {
                        return;
                    }
                    metrics.events_out.fetch_add(1, Relaxed);
                }
                match page.next {
                    Some(c) => cursor = c,
                    None => break,
                }
            }
        }
        let mut stopping = state.stopping.clone();
        loop {
            // Ends when the watcher goes away (not only when the next event finds
            // it gone), and at shutdown.
            let ev = tokio::select! {
                ev = live.next() => ev,
                () = tx.closed() => return,
                r = stopping.wait_for(|s| *s) => {
                    drop(r);
                    None
                }
            };
            let Some(ev) = ev else {
                if *stopping.borrow() {
                    let _ = tx.send(Err(super::ingest::shutting_down())).await;
                }
                return;
            };
            let ev = match &ev.event {
                None => {
                    metrics.skipped_reads.fetch_add(1, Relaxed);
                    let kind = ev.unknown_kind.as_ref().map_or_else(|| "none".to_owned(), |u| u.number.to_string());
                    skipped_notice(format!(
                        "agent {} boot {} seq {}: event kind {kind} is not known to this collector; it is kept verbatim in the log",
                        ev.agent_id, ev.boot_id, ev.seq
                    ))
                }
                Some(_) => ev,
            };
            match &ev.event {
                Some(Kind::WatchMissed(m)) => {
                    if m.reason.is_empty() {
                        metrics.watch_missed.fetch_add(m.count, Relaxed);
                    }
                }
                Some(Kind::EventsLost(_)) => {}
                _ => {
                    // Already sent by the replay (stored before it read the log).
                    if replayed.get(&(ev.agent_id.clone(), ev.boot_id.clone())).is_some_and(|m| ev.seq <= *m) {
                        continue;
                    }
                    // Stored before the watch began but indexed after the replay
                    // read the index, or resent late by an agent: still only
                    // what `since` asked for.
                    if r.since_unix_ns > 0 && ev.time_unix_ns < r.since_unix_ns {
                        continue;
                    }
                }
            }
            if tx.send(Ok(ev)).await.is_err() {
                return;
            }
            metrics.events_out.fetch_add(1, Relaxed);
        }
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

pub(super) async fn query(state: &Arc<State>, req: Request<QueryRequest>) -> Result<Response<QueryResponse>, Status> {
    state.authorize(&req, Role::Watcher, "Query").await?;
    let r = req.into_inner();
    let cursor = Cursor::parse(&r.page).map_err(Status::invalid_argument)?;
    let limit = match r.limit {
        0 => 1000,
        n => (n as usize).min(QUERY_MAX),
    };
    let spec = QuerySpec { filter: filter_of(r.filter)?, from: r.from_unix_ns, to: r.to_unix_ns, limit, max_bytes: QUERY_MAX_BYTES };
    // Read what was acknowledged before this call.
    state.writer.sync().await.map_err(Status::unavailable)?;
    let reader = state.reader.clone();
    let page = tokio::task::spawn_blocking(move || {
        // A page that scanned its budget without a match goes on scanning (for a
        // while), so an empty page with a next_page is rare.
        let started = std::time::Instant::now();
        let mut page = reader.query(&spec, cursor)?;
        while page.events.is_empty()
            && page.skipped.is_empty()
            && started.elapsed() < QUERY_SCAN_TIME
            && let Some(next) = page.next
        {
            page = reader.query(&spec, next)?;
        }
        Ok::<_, crate::store::StoreError>(page)
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))?
    .map_err(|e| Status::internal(format!("cannot query the log: {e}")))?;
    state.metrics.skipped_reads.fetch_add(page.skipped.len() as u64, Relaxed);
    Ok(Response::new(QueryResponse {
        events: page.events,
        next_page: page.next.map(Cursor::token).unwrap_or_default(),
        skipped: page.skipped,
        resume_page: page.end.map(Cursor::token).unwrap_or_default(),
    }))
}

pub(super) async fn sessions(state: &Arc<State>, req: Request<CollectorSessionsRequest>) -> Result<Response<CollectorSessionsResponse>, Status> {
    state.authorize(&req, Role::Watcher, "Sessions").await?;
    let r = req.into_inner();
    state.writer.sync().await.map_err(Status::unavailable)?;
    let reader = state.reader.clone();
    let all = tokio::task::spawn_blocking(move || reader.sessions())
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("cannot read sessions: {e}")))?;
    let sessions = all
        .into_iter()
        .filter(|s| r.host.is_empty() || s.host == r.host)
        .filter(|s| r.all || s.session.as_ref().is_some_and(|x| x.end_reason.is_empty()))
        .collect();
    Ok(Response::new(CollectorSessionsResponse { sessions }))
}

/// The `watch_missed` a watcher gets in place of a record the collector cannot
/// interpret.
fn skipped_notice(reason: String) -> Event {
    Event {
        time_unix_ns: crate::writer::now_ns(),
        event: Some(Kind::WatchMissed(WatchMissed { count: 1, reason })),
        ..Event::default()
    }
}

/// Decrements the watcher gauge when a watch ends.
struct Gauge(Arc<Metrics>);

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Relaxed);
    }
}
