/// `GET /api/events`: the live stream as Server-Sent Events, one JSON event each.
///
/// Each event is the documented JSON form (`warrant watch --json`) plus `line`,
/// the same one-line summary `warrant watch` prints, and `alarm` (a denial, a kill,
/// a loss). A stream error ends the stream with an `error` event carrying the
/// message; the page says so and may reconnect.
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use serde::Deserialize;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use warrant_proto::json::to_json;
use warrant_proto::{Event, EventFilter};

use super::Console;
use super::error::ApiError;
use crate::watch::{check_kinds, summary};

/// The filters, as the page sends them (all optional).
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    host: Option<String>,
    subject: Option<String>,
    grant: Option<String>,
    session: Option<String>,
    /// Comma-separated kinds or shorthands, as `--kind`.
    kinds: Option<String>,
    /// Replay from this long ago or this time (collector only), as `--since`.
    since: Option<String>,
}

/// How many events may wait for a slow page before the agent or collector's own
/// back-pressure (a `watch_missed` event) takes over.
const BUFFER: usize = 4096;

/// One event as the page gets it.
pub fn event_json(ev: &Event) -> serde_json::Value {
    let mut v = to_json(ev);
    let (line, alarm) = summary(ev);
    v["line"] = line.into();
    v["alarm"] = alarm.into();
    v
}

pub async fn stream(
    State(console): State<Arc<Console>>,
    Query(q): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let nonempty = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let kinds: Vec<String> =
        q.kinds.as_deref().unwrap_or("").split(',').map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).collect();
    check_kinds(&kinds).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string().replace("--kind", "kind")))?;
    let since = match nonempty(&q.since) {
        Some(s) => crate::query::parse_time(&s, "since")
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string().split("\n\n").next().unwrap_or("").to_owned()))?,
        None => 0,
    };
    if since != 0 && !console.target.is_collector() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "replay from a time needs a collector: the local agent streams live events only"));
    }
    let (host, subject) = (nonempty(&q.host), nonempty(&q.subject));
    let filter = EventFilter {
        host: host.clone().unwrap_or_default(),
        agent_id: String::new(),
        grant: nonempty(&q.grant).unwrap_or_default(),
        session: nonempty(&q.session).unwrap_or_default(),
        subject: subject.clone().unwrap_or_default(),
        kinds,
    };
    let mut events = console.target.watch(filter, since).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(BUFFER);
    tokio::spawn(async move {
        loop {
            let (sse, last) = match events.message().await {
                Ok(Some(ev)) => {
                    // The agent filters by session, grant and kinds only.
                    if host.as_deref().is_some_and(|h| h != ev.host) || subject.as_deref().is_some_and(|s| s != ev.subject) {
                        continue;
                    }
                    (SseEvent::default().data(event_json(&ev).to_string()), false)
                }
                Ok(None) => (SseEvent::default().event("end").data("{}"), true),
                Err(status) => {
                    let msg = ApiError::from(crate::remote::status_error("the stream", &status)).message;
                    (SseEvent::default().event("error").data(serde_json::json!({ "error": msg }).to_string()), true)
                }
            };
            if tx.send(Ok(sse)).await.is_err() || last {
                return; // the page went away, or the stream ended
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()))
}

