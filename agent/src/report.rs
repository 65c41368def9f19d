//! Session reports: what a session did, summed up from its events.
//!
//! The event writer shows every event to [`Ledgers::observe`] in log order. Each live
//! session has a ledger; when the session's `session_end` goes by, the ledger becomes
//! a `session_report` event written right after it, and is kept (the most recent
//! [`KEEP_ENDED`]) for `warrant report`. Lists are bounded so that a session that runs
//! a million commands cannot make the agent grow without bound: the totals stay exact.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use warrant_proto::v1::{self as pb, event::Event as Kind};

use crate::events::Subjects;

/// Entries kept per list of a report.
const LIST_MAX: usize = 1000;
/// Ended sessions whose reports stay in memory for `warrant report`.
const KEEP_ENDED: usize = 1024;

/// Shared between the writer (which feeds it) and the API (which reads reports).
pub type SharedLedgers = Arc<Mutex<Ledgers>>;

#[derive(Debug, Default)]
pub struct Ledgers {
    live: HashMap<String, Ledger>,
    ended: VecDeque<pb::Event>,
}

/// One session's running totals.
#[derive(Debug, Default)]
struct Ledger {
    grant: String,
    subject: String,
    started_at_unix_ns: i64,
    commands: Vec<String>,
    commands_total: u64,
    files_written: BTreeSet<String>,
    files_written_total: u64,
    files_changed: Vec<String>,
    files_changed_total: u64,
    remotes: BTreeMap<(String, u32), pb::RemoteTraffic>,
    violations: Vec<String>,
    violations_total: u64,
    kills: Vec<String>,
    events: u64,
}

impl Ledgers {
    /// Takes `ev` into its session's ledger; returns the report event when `ev` ends
    /// the session.
    pub fn observe(&mut self, ev: &pb::Event, subjects: &Subjects) -> Option<pb::Event> {
        if ev.session.is_empty() {
            return None;
        }
        let kind = ev.event.as_ref()?;
        let ledger = self.live.entry(ev.session.clone()).or_insert_with(|| Ledger {
            grant: ev.grant.clone(),
            subject: ev.subject.clone(),
            started_at_unix_ns: ev.time_unix_ns,
            ..Ledger::default()
        });
        ledger.events += 1;
        if ledger.subject.is_empty() {
            ledger.subject.clone_from(&ev.subject);
        }
        match kind {
            Kind::SessionStart(_) => ledger.started_at_unix_ns = ev.time_unix_ns,
            Kind::Exec(e) => {
                ledger.commands_total += 1;
                if ledger.commands.len() < LIST_MAX {
                    let line = if e.argv.is_empty() { e.path.clone() } else { e.argv.join(" ") };
                    ledger.commands.push(line);
                }
            }
            Kind::FileOpen(f) if f.error == 0 && f.access != "read" => {
                ledger.files_written_total += 1;
                if ledger.files_written.len() < LIST_MAX {
                    ledger.files_written.insert(f.path.clone());
                }
            }
            Kind::FileChange(c) if c.error == 0 => {
                ledger.files_changed_total += 1;
                if ledger.files_changed.len() < LIST_MAX {
                    ledger.files_changed.push(c.summary());
                }
            }
            Kind::Connect(n) if n.error == 0 || n.error == EINPROGRESS => {
                ledger.remote(&n.remote_addr, n.remote_port).connections += 1;
            }
            Kind::Accept(n) => ledger.remote(&n.remote_addr, n.remote_port).connections += 1,
            // A datagram destination is a host contacted, with no connection.
            Kind::Datagram(n) => {
                ledger.remote(&n.remote_addr, n.remote_port);
            }
            Kind::SocketClose(c) => {
                let r = ledger.remote(&c.remote_addr, c.remote_port);
                r.bytes_sent += c.bytes_sent;
                r.bytes_received += c.bytes_received;
            }
            Kind::Violation(v) => {
                ledger.violations_total += 1;
                if ledger.violations.len() < LIST_MAX {
                    let target = if v.path.is_empty() { format!("{}:{}", v.addr, v.port) } else { v.path.clone() };
                    ledger.violations.push(format!("{} {target} -> {} ({})", v.op, v.action, v.rule));
                }
            }
            Kind::Kill(k) if ledger.kills.len() < LIST_MAX => ledger.kills.push(format!(
                "{} by {}: {} killed in {:.1} ms",
                k.reason,
                k.by,
                k.killed,
                k.elapsed_us as f64 / 1000.0
            )),
            Kind::SessionEnd(end) => {
                let ledger = self.live.remove(&ev.session)?;
                let report = ledger.report(ev, &end.reason, subjects);
                if self.ended.len() == KEEP_ENDED {
                    self.ended.pop_front();
                }
                self.ended.push_back(report.clone());
                return Some(report);
            }
            _ => {}
        }
        None
    }

    /// The report of `session`: ended (as recorded) or live (so far).
    pub fn report(&self, session: &str, subjects: &Subjects) -> Option<pb::Event> {
        if let Some(r) = self.ended.iter().rev().find(|r| r.session == session) {
            return Some(r.clone());
        }
        let ledger = self.live.get(session)?;
        let now = pb::Event { session: session.to_owned(), time_unix_ns: crate::clock::wall_ns(), ..Default::default() };
        Some(ledger.report(&now, "", subjects))
    }
}

const EINPROGRESS: i32 = 115;

impl Ledger {
    fn remote(&mut self, addr: &str, port: u32) -> &mut pb::RemoteTraffic {
        self.remotes.entry((addr.to_owned(), port)).or_insert_with(|| pb::RemoteTraffic {
            addr: addr.to_owned(),
            port,
            ..Default::default()
        })
    }

    /// The report as of `at` (the `session_end`, or now for a live session).
    fn report(&self, at: &pb::Event, end_reason: &str, subjects: &Subjects) -> pb::Event {
        let info = subjects.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&self.grant).cloned();
        let info = info.unwrap_or_default();
        pb::Event {
            event: Some(Kind::SessionReport(pb::SessionReport {
                reason: info.reason,
                issued_by: info.issued_by,
                policy: info.policy,
                started_at_unix_ns: self.started_at_unix_ns,
                ended_at_unix_ns: if end_reason.is_empty() { 0 } else { at.time_unix_ns },
                end_reason: end_reason.to_owned(),
                commands: self.commands.clone(),
                commands_total: self.commands_total,
                files_written: self.files_written.iter().cloned().collect(),
                files_written_total: self.files_written_total,
                files_changed: self.files_changed.clone(),
                files_changed_total: self.files_changed_total,
                remotes: self.remotes.values().cloned().collect(),
                violations: self.violations.clone(),
                violations_total: self.violations_total,
                kills: self.kills.clone(),
                events: self.events,
            })),
            time_unix_ns: at.time_unix_ns,
            grant: self.grant.clone(),
            session: at.session.clone(),
            subject: if self.subject.is_empty() { info.subject } else { self.subject.clone() },
            ..Default::default()
        }
    }
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
