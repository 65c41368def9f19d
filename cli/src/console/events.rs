/// `GET /api/events`: the live stream as Server-Sent Events, each message a JSON
/// array of events.
///
/// Each event is the documented JSON form (`warrant watch --json`) plus `line`,
/// the same one-line summary `warrant watch` prints, `alarm` (a denial, a kill,
/// a loss) and `t_ms` (its time in Unix milliseconds). A message carries the events that had arrived when it was sent (one
/// when the stream is quiet, up to [`BATCH`] when it is busy), so a session
/// streaming thousands of events a second costs the page a few messages per frame,
/// not one per event. A stream error ends the stream with an `error` event carrying
/// the message; the page says so and may reconnect.
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use serde::Deserialize;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use warrant_proto::{Event, EventFilter};
use warrant_audit::json::to_json;

use super::Console;
use super::error::ApiError;
use crate::filter::{FilterArgs, parse_time};
use crate::render::summary;

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

/// How many messages may wait for a slow page before the agent or collector's own
/// back-pressure (a `watch_missed` event) takes over.
const BUFFER: usize = 64;

/// Events one message carries at most.
const BATCH: usize = 512;

/// One event as the page gets it.
pub fn event_json(ev: &Event) -> serde_json::Value {
    let mut v = to_json(ev);
    let (line, alarm) = summary(ev);
    v["line"] = line.into();
    v["alarm"] = alarm.into();
    // For the page's lag figure (how long ago the newest event it drew happened).
    v["t_ms"] = (ev.time_unix_ns / 1_000_000).into();
    v
}

/// The page's filters as `watch`'s flags (kinds and shorthands checked, trimmed
/// and empties dropped as `--kind`'s are), the filter to send, and `since` as Unix
/// nanoseconds (0: live only). A bad kind or time is a 400 that names it.
fn parse(q: &EventsQuery) -> Result<(FilterArgs, EventFilter, i64), ApiError> {
    let nonempty = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let args = FilterArgs {
        host: nonempty(&q.host),
        subject: nonempty(&q.subject),
        grant: nonempty(&q.grant),
        session: nonempty(&q.session),
        kind: q.kinds.as_deref().unwrap_or("").split(',').map(str::to_owned).collect(),
    };
    let filter = args
        .event_filter()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string().replace("--kind", "kind")))?;
    let since = match nonempty(&q.since) {
        Some(s) => parse_time(&s, "since")
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string().split("\n\n").next().unwrap_or("").to_owned()))?,
        None => 0,
    };
    Ok((args, filter, since))
}

pub async fn stream(
    State(console): State<Arc<Console>>,
    Query(q): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let (FilterArgs { host, subject, .. }, filter, since) = parse(&q)?;
    if since != 0 && !console.target.is_collector() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "replay from a time needs a collector: the local agent streams live events only"));
    }
    let mut events = console.target.watch(filter, since).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(BUFFER);
    tokio::spawn(async move {
        // The local agent filters by session, grant and kinds only
        // (`FilterArgs::collector_only`); a collector applies these too.
        let wanted = |ev: &Event| {
            host.as_deref().is_none_or(|h| h == ev.host) && subject.as_deref().is_none_or(|s| s == ev.subject)
        };
        loop {
            // Wait for one, then take whatever else has already arrived.
            let mut next = Some(events.message().await);
            let mut batch = Vec::new();
            let mut last = None;
            while let Some(got) = next.take() {
                match got {
                    Ok(Some(ev)) => {
                        if wanted(&ev) {
                            batch.push(event_json(&ev));
                        }
                        if batch.len() < BATCH {
                            next = ready(&mut events);
                        }
                    }
                    Ok(None) => last = Some(SseEvent::default().event("end").data("{}")),
                    Err(status) => {
                        let msg = ApiError::from(crate::remote::status_error("the stream", &status)).message;
                        last = Some(SseEvent::default().event("error").data(serde_json::json!({ "error": msg }).to_string()));
                    }
                }
            }
            if !batch.is_empty() && tx.send(Ok(SseEvent::default().data(serde_json::Value::from(batch).to_string()))).await.is_err() {
                return; // the page went away
            }
            if let Some(end) = last {
                let _ = tx.send(Ok(end)).await;
                return;
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()))
}

/// The stream's next message if it has already arrived (without waiting).
fn ready(events: &mut tonic::Streaming<Event>) -> Option<Result<Option<Event>, tonic::Status>> {
    let waker = std::task::Waker::noop();
    match Pin::new(events).poll_next(&mut std::task::Context::from_waker(waker)) {
        Poll::Ready(Some(r)) => Some(r.map(Some)),
        Poll::Ready(None) => Some(Ok(None)),
        Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(kinds: &str, since: &str) -> EventsQuery {
        EventsQuery {
            host: Some(" db-1 ".into()),
            subject: Some("".into()),
            grant: None,
            session: Some("s-1".into()),
            kinds: Some(kinds.into()),
            since: Some(since.into()),
        }
    }

    #[test]
    fn filters_parse_as_watch_flags() {
        let (args, filter, since) = parse(&query(" exec, net,,file ", " ")).ok().unwrap();
        assert_eq!((args.host.as_deref(), args.subject.as_deref()), (Some("db-1"), None));
        assert_eq!(filter.kinds, ["exec", "net", "file"], "trimmed, empties dropped, shorthands kept");
        assert_eq!((filter.host.as_str(), filter.session.as_str(), filter.grant.as_str()), ("db-1", "s-1", ""));
        assert_eq!(since, 0);
        let (_, _, since) = parse(&query("", "10m")).ok().unwrap();
        assert!(since > 0);
        assert_eq!(parse(&EventsQuery::default()).ok().unwrap().1, EventFilter::default());
    }

    #[test]
    fn a_bad_kind_or_time_is_a_400_naming_it() {
        let Err(e) = parse(&query("exec,exce", "")) else { panic!("a bad kind parsed") };
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("invalid kind exce: no such event kind\n\nValid kinds: exec, exec_failed, exit,"), "{}", e.message);
        let Err(e) = parse(&query("exec", "yesterday")) else { panic!("a bad time parsed") };
        assert_eq!((e.status, e.message.as_str()), (StatusCode::BAD_REQUEST, "invalid since yesterday: not a duration or a time"));
    }
}
