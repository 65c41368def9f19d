//! Session reports: what a session did, summed up from its events.
//!
//! The event writer shows every event to [`Ledgers::observe`] in log order. Each live
//! session has a ledger; when the session's `session_end` goes by, the ledger becomes
//! a `session_report` event written right after it, and is kept (the most recent
//! [`KEEP_ENDED`]) for `warrant report`. Lists are bounded so that a session that runs
//! a million commands cannot make the agent grow without bound: the totals stay exact.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use warrant_audit::ledger::{GrantFacts, Ledger};
use warrant_proto::v1::{self as pb, event::Event as Kind};

use crate::events::Subjects;

/// Ended sessions whose reports stay in memory for `warrant report`.
const KEEP_ENDED: usize = 1024;

/// Shared between the writer (which feeds it) and the API (which reads reports).
pub type SharedLedgers = Arc<Mutex<Ledgers>>;

/// Every live session's [`Ledger`] (the rules a report follows are there, shared
/// with the console, which sums up a collector's log the same way), and the reports
/// of recently ended ones.
#[derive(Debug, Default)]
pub struct Ledgers {
    live: HashMap<String, Ledger>,
    ended: VecDeque<pb::Event>,
}

impl Ledgers {
    /// Takes `ev` into its session's ledger; returns the report event when `ev` ends
    /// the session.
    pub fn observe(&mut self, ev: &pb::Event, subjects: &Subjects) -> Option<pb::Event> {
        if ev.session.is_empty() || ev.event.is_none() {
            return None;
        }
        // Looked up by reference first: the owned key is made once per session, not
        // once per event.
        match self.live.get_mut(&ev.session) {
            Some(ledger) => ledger.observe(ev),
            None => self.live.entry(ev.session.clone()).or_default().observe(ev),
        }
        if !matches!(ev.event, Some(Kind::SessionEnd(_))) {
            return None;
        }
        let ledger = self.live.remove(&ev.session)?;
        let report = report_of(&ledger, &ev.session, ev.time_unix_ns, subjects);
        if self.ended.len() == KEEP_ENDED {
            self.ended.pop_front();
        }
        self.ended.push_back(report.clone());
        Some(report)
    }

    /// The report of `session`: ended (as recorded) or live (so far).
    pub fn report(&self, session: &str, subjects: &Subjects) -> Option<pb::Event> {
        if let Some(r) = self.ended.iter().rev().find(|r| r.session == session) {
            return Some(r.clone());
        }
        let ledger = self.live.get(session)?;
        Some(report_of(ledger, session, crate::clock::wall_ns(), subjects))
    }
}

/// The ledger's report with what the grant says (reason, issuer, policy, subject).
fn report_of(ledger: &Ledger, session: &str, now_unix_ns: i64, subjects: &Subjects) -> pb::Event {
    let info = subjects.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(ledger.grant()).cloned();
    let info = info.unwrap_or_default();
    let facts = GrantFacts { reason: info.reason, issued_by: info.issued_by, policy: info.policy };
    let mut report = ledger.report(session, now_unix_ns, &facts);
    if report.subject.is_empty() {
        report.subject = info.subject;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::GrantInfo;
    use std::sync::RwLock;

    fn ev(kind: Kind) -> pb::Event {
        pb::Event { event: Some(kind), session: "s-1".into(), grant: "g-1".into(), time_unix_ns: 5, ..Default::default() }
    }

    #[test]
    fn a_session_summed_up_at_its_end() {
        let subjects: Subjects = Arc::new(RwLock::new(HashMap::from([(
            "g-1".to_owned(),
            GrantInfo { subject: "alice".into(), reason: "INC-42".into(), ..Default::default() },
        )])));
        let mut l = Ledgers::default();
        let net = |addr: &str| pb::Net { remote_addr: addr.into(), remote_port: 443, ..Default::default() };
        let events = [
            ev(Kind::SessionStart(pb::SessionStart::default())),
            ev(Kind::Exec(pb::Exec { path: "/usr/bin/curl".into(), argv: vec!["curl".into(), "x".into()], ..Default::default() })),
            ev(Kind::FileOpen(pb::FileOpen { path: "/tmp/out".into(), access: "write".into(), ..Default::default() })),
            ev(Kind::FileOpen(pb::FileOpen { path: "/etc/passwd".into(), access: "read".into(), ..Default::default() })),
            ev(Kind::FileOpen(pb::FileOpen { path: "/root/x".into(), access: "write".into(), error: 13, ..Default::default() })),
            ev(Kind::FileChange(pb::FileChange { op: "unlink".into(), path: "/tmp/out".into(), ..Default::default() })),
            ev(Kind::FileChange(pb::FileChange { op: "rmdir".into(), path: "/root".into(), error: 1, ..Default::default() })),
            ev(Kind::Connect(net("10.0.0.1"))),
            ev(Kind::SocketClose(pb::SocketClose { remote_addr: "10.0.0.1".into(), remote_port: 443, bytes_sent: 10, bytes_received: 20, ..Default::default() })),
            ev(Kind::Connect(net("10.0.0.1"))),
            ev(Kind::SocketClose(pb::SocketClose { remote_addr: "10.0.0.1".into(), remote_port: 443, bytes_sent: 1, bytes_received: 2, ..Default::default() })),
        ];
        for e in &events {
            assert!(l.observe(e, &subjects).is_none());
        }
        let live = l.report("s-1", &subjects).expect("live report");
        let Some(Kind::SessionReport(r)) = &live.event else { panic!() };
        assert_eq!(r.end_reason, "");
        let end = l.observe(&ev(Kind::SessionEnd(pb::SessionEnd { reason: "exited".into() })), &subjects).expect("report");
        let Some(Kind::SessionReport(r)) = &end.event else { panic!() };
        assert_eq!(end.subject, "alice");
        assert_eq!(r.reason, "INC-42");
        assert_eq!(r.commands, ["curl x"]);
        assert_eq!(r.files_written, ["/tmp/out"]);
        assert_eq!((r.files_changed.as_slice(), r.files_changed_total), (&["unlink /tmp/out".to_owned()][..], 1));
        assert_eq!(r.remotes.len(), 1);
        assert_eq!((r.remotes[0].connections, r.remotes[0].bytes_sent, r.remotes[0].bytes_received), (2, 11, 22));
        assert_eq!(r.end_reason, "exited");
        assert_eq!(r.events, 12);
        assert!(l.report("s-1", &subjects).is_some(), "kept after the end");
    }
}
