//! Whose records the kernel lost: each session's `SESSION_LOST` counts (by kind,
//! counted at the failed reservation) turned into an `events_lost` event naming the
//! session and its grant, and, under `on_audit_gap: kill-session`, the session's
//! kill, which the kernel began by marking it dead at the first record it could not
//! keep.
//!
//! The host-wide `events_lost` (`events::poll_lost`) still counts every lost
//! record, those of no session included; these reports say whose they were. A
//! socket's close, often seen in softirq on no task of the session, counts against
//! the session that made the socket while that session still holds its slot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;
use warrant_common::EventKind;
use warrant_common::maps::LOST_KINDS;
use warrant_proto::v1::{self as pb, event::Event as Kind};

use crate::host::{Host, HostError, KillReason, SessionLoss};
use crate::ids;
use crate::events::EventSink;

/// How often the counts are read: a map lookup per live session.
const TICK: Duration = Duration::from_millis(200);

/// Reads every session's counts each [`TICK`], reports growth, kills on a gap
/// where the policy says so. Runs until the task is aborted.
pub async fn poll(host: Arc<Host>, sink: EventSink) {
    let mut reported: HashMap<u64, [u64; LOST_KINDS]> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        let losses = host.session_losses();
        for loss in &losses {
            let before = reported.get(&loss.session).copied().unwrap_or([0; LOST_KINDS]);
            let Some(ev) = report(loss, &before) else { continue };
            reported.insert(loss.session, loss.by_kind);
            let count = match &ev.event {
                Some(Kind::EventsLost(l)) => l.count,
                _ => 0,
            };
            warn!(session = %ev.session, grant = %ev.grant, "the kernel could not record {count} of the session's events (ring buffer full)");
            sink.send(ev).await;
            if loss.kill_on_gap && loss.live {
                let by = format!("on_audit_gap: kill-session ({count} records lost)");
                match host.kill_session(&ids::session(loss.session), KillReason::AuditGap, "kernel", &by).await {
                    Ok(_) | Err(HostError::Invalid(_)) => {} // ended already
                    Err(e) => warn!("killing session {} for its audit gap failed: {e}", ids::session(loss.session)),
                }
            }
        }
        reported.retain(|id, _| losses.iter().any(|l| l.session == *id));
    }
}

/// The kind of event a kernel record of kind `k` becomes (unix and IP connects are
/// both `connect`): counts by kind go by the audit record's names.
const fn recorded_as(k: EventKind) -> warrant_audit::EventKind {
    use warrant_audit::EventKind as E;
    match k {
        EventKind::Exec => E::Exec,
        EventKind::Exit => E::Exit,
        EventKind::FileOpen => E::FileOpen,
        EventKind::Connect | EventKind::UnixConnect => E::Connect,
        EventKind::Bind => E::Bind,
        EventKind::Listen => E::Listen,
        EventKind::Accept => E::Accept,
        EventKind::Violation => E::Violation,
        EventKind::ExecFailed => E::ExecFailed,
        EventKind::SocketClose => E::SocketClose,
        EventKind::FileChange => E::FileChange,
        EventKind::Datagram => E::Datagram,
        EventKind::IoUring => E::IoUring,
    }
}

/// The `events_lost` event for the growth of `loss` since `before`, if any.
fn report(loss: &SessionLoss, before: &[u64; LOST_KINDS]) -> Option<pb::Event> {
    let mut by_kind: HashMap<String, u64> = HashMap::new();
    let mut count = 0;
    for (k, (now, was)) in loss.by_kind.iter().zip(before).enumerate() {
        let grew = now.saturating_sub(*was);
        if grew == 0 {
            continue;
        }
        count += grew;
        let name = u32::try_from(k).ok().and_then(EventKind::from_u32).map_or("unknown", |k| recorded_as(k).name());
        *by_kind.entry(name.to_owned()).or_default() += grew;
    }
    if count == 0 {
        return None;
    }
    let total = loss.by_kind.iter().sum();
    Some(pb::Event {
        session: ids::session(loss.session),
        grant: ids::grant(loss.grant),
        time_unix_ns: crate::clock::wall_ns(),
        event: Some(Kind::EventsLost(pb::EventsLost { count, total, reason: "ring_buffer".into(), by_kind })),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(by: &[(EventKind, u64)]) -> SessionLoss {
        let mut by_kind = [0; LOST_KINDS];
        for (k, n) in by {
            by_kind[*k as usize] = *n;
        }
        SessionLoss { session: 7, grant: 9, live: true, kill_on_gap: false, by_kind }
    }

    #[test]
    fn a_report_names_the_session_and_counts_growth_by_kind() {
        let now = loss(&[(EventKind::FileOpen, 10), (EventKind::Exec, 2), (EventKind::UnixConnect, 1), (EventKind::Connect, 1)]);
        let ev = report(&now, &[0; LOST_KINDS]).expect("a report");
        assert_eq!(ev.session, ids::session(7));
        assert_eq!(ev.grant, ids::grant(9));
        let Some(Kind::EventsLost(l)) = ev.event else { panic!("not events_lost") };
        assert_eq!((l.count, l.total), (14, 14));
        assert_eq!(l.by_kind["file_open"], 10);
        assert_eq!(l.by_kind["exec"], 2);
        assert_eq!(l.by_kind["connect"], 2, "unix and IP connects are both `connect` events");

        let later = loss(&[(EventKind::FileOpen, 15), (EventKind::Exec, 2), (EventKind::UnixConnect, 1), (EventKind::Connect, 1)]);
        let Some(Kind::EventsLost(l)) = report(&later, &now.by_kind).and_then(|e| e.event) else { panic!() };
        assert_eq!((l.count, l.total), (5, 19));
        assert_eq!(l.by_kind.len(), 1);
        assert!(report(&later, &later.by_kind).is_none(), "no growth, no report");
    }
}
