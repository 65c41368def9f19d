//! A session's report summed up from its events, by whoever reads them in log order:
//! the agent's writer for its `session_report` events and `warrant report`
//! (`agent/src/report.rs`), and the console for a live session on a collector (which
//! stores a `session_report` only once the session ends). One set of rules: a command
//! is an exec's argv, a file written is a successful open that is not read-only, a
//! file changed is a successful `file_change`, a remote is a connect (or one in
//! progress), an accept or a first datagram, with the bytes of the sockets that
//! closed.
//!
//! The lists are bounded ([`LIST_MAX`]) so that a session that runs a million
//! commands cannot make the reader grow without bound; the totals stay exact.

use std::collections::{BTreeMap, BTreeSet};

use warrant_proto::v1::{self as pb, event::Event as Kind};

/// Entries kept per list of a report.
pub const LIST_MAX: usize = 1000;

const EINPROGRESS: i32 = 115;

/// What a report says of the grant that a session's own events do not carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantFacts {
    /// Why it was issued.
    pub reason: String,
    /// Who issued or approved it.
    pub issued_by: String,
    /// The policy's name.
    pub policy: String,
}

/// One session's running totals.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    grant: String,
    subject: String,
    started_at_unix_ns: i64,
    /// The `session_end`'s time and reason, once seen.
    end: Option<(i64, String)>,
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
    /// Processes the events show and no `exit` has ended yet.
    alive: BTreeSet<u32>,
}

impl Ledger {
    /// Takes `ev` (one of the session's events, in log order) into the totals.
    /// A `session_report` is not counted: it is about the events, not one of them.
    pub fn observe(&mut self, ev: &pb::Event) {
        let Some(kind) = ev.event.as_ref() else { return };
        if matches!(kind, Kind::SessionReport(_)) {
            return;
        }
        if self.events == 0 {
            self.grant.clone_from(&ev.grant);
            self.started_at_unix_ns = ev.time_unix_ns;
        }
        self.events += 1;
        if self.subject.is_empty() {
            self.subject.clone_from(&ev.subject);
        }
        if self.end.is_none() && ev.pid != 0 && kind_is_a_process(kind) {
            self.alive.insert(ev.pid);
        }
        match kind {
            Kind::SessionStart(s) => {
                self.started_at_unix_ns = ev.time_unix_ns;
                if s.root_pid != 0 {
                    self.alive.insert(s.root_pid);
                }
            }
            Kind::Exit(_) => {
                self.alive.remove(&ev.pid);
            }
            Kind::Exec(e) => {
                self.commands_total += 1;
                if self.commands.len() < LIST_MAX {
                    self.commands.push(if e.argv.is_empty() { e.path.clone() } else { e.argv.join(" ") });
                }
            }
            Kind::FileOpen(f) if f.error == 0 && matches!(f.access.as_str(), "write" | "read-write") => {
                self.files_written_total += 1;
                if self.files_written.len() < LIST_MAX {
                    self.files_written.insert(f.path.clone());
                }
            }
            Kind::FileChange(c) if c.error == 0 => {
                self.files_changed_total += 1;
                if self.files_changed.len() < LIST_MAX {
                    self.files_changed.push(c.summary());
                }
            }
            Kind::Connect(n) if n.error == 0 || n.error == EINPROGRESS => {
                self.remote(&n.remote_addr, n.remote_port).connections += 1;
            }
            Kind::Accept(n) => self.remote(&n.remote_addr, n.remote_port).connections += 1,
            // A datagram destination is a host contacted, with no connection.
            Kind::Datagram(n) => {
                self.remote(&n.remote_addr, n.remote_port);
            }
            Kind::SocketClose(c) => {
                let r = self.remote(&c.remote_addr, c.remote_port);
                r.bytes_sent += c.bytes_sent;
                r.bytes_received += c.bytes_received;
            }
            Kind::Violation(v) => {
                self.violations_total += 1;
                if self.violations.len() < LIST_MAX {
                    let target = if v.path.is_empty() { format!("{}:{}", v.addr, v.port) } else { v.path.clone() };
                    self.violations.push(format!("{} {target} -> {} ({})", v.op, v.action, v.rule));
                }
            }
            Kind::Kill(k) if self.kills.len() < LIST_MAX => self.kills.push(format!(
                "{} by {}{}: {} killed in {:.1} ms",
                k.reason,
                k.by,
                if k.note.is_empty() { String::new() } else { format!(" ({})", k.note) },
                k.killed,
                k.elapsed_us as f64 / 1000.0
            )),
            Kind::SessionEnd(end) => {
                self.end = Some((ev.time_unix_ns, end.reason.clone()));
                self.alive.clear();
            }
            _ => {}
        }
    }

    /// True once the session's `session_end` went by.
    #[must_use]
    pub fn ended(&self) -> bool {
        self.end.is_some()
    }

    /// How many processes the events showed and no `exit` ended (a process that has
    /// done nothing on the record since its fork is not among them).
    #[must_use]
    pub fn processes(&self) -> usize {
        self.alive.len()
    }

    /// The grant the session's events name.
    #[must_use]
    pub fn grant(&self) -> &str {
        &self.grant
    }

    fn remote(&mut self, addr: &str, port: u32) -> &mut pb::RemoteTraffic {
        self.remotes.entry((addr.to_owned(), port)).or_insert_with(|| pb::RemoteTraffic {
            addr: addr.to_owned(),
            port,
            ..Default::default()
        })
    }

    /// The `session_report` event of `session` so far: as of its end once that went
    /// by, else as of `now_unix_ns` (with no end time or reason).
    #[must_use]
    pub fn report(&self, session: &str, now_unix_ns: i64, grant: &GrantFacts) -> pb::Event {
        let (ended_at, end_reason) = self.end.clone().unwrap_or((0, String::new()));
        pb::Event {
            event: Some(Kind::SessionReport(pb::SessionReport {
                reason: grant.reason.clone(),
                issued_by: grant.issued_by.clone(),
                policy: grant.policy.clone(),
                started_at_unix_ns: self.started_at_unix_ns,
                ended_at_unix_ns: ended_at,
                end_reason,
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
            time_unix_ns: if ended_at != 0 { ended_at } else { now_unix_ns },
            grant: self.grant.clone(),
            session: session.to_owned(),
            subject: self.subject.clone(),
            ..Default::default()
        }
    }
}

/// Kinds the kernel reports about one of the session's processes.
fn kind_is_a_process(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::Exec(_)
            | Kind::FileOpen(_)
            | Kind::Connect(_)
            | Kind::Bind(_)
            | Kind::Listen(_)
            | Kind::Accept(_)
            | Kind::Violation(_)
            | Kind::ExecFailed(_)
            | Kind::SocketClose(_)
            | Kind::FileChange(_)
            | Kind::Datagram(_)
            | Kind::IoUring(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(pid: u32, kind: Kind) -> pb::Event {
        pb::Event { event: Some(kind), session: "s-1".into(), grant: "g-1".into(), subject: "alice".into(), pid, time_unix_ns: 5, ..Default::default() }
    }

    #[test]
    fn a_session_summed_up_live_and_at_its_end() {
        let net = |addr: &str| pb::Net { remote_addr: addr.into(), remote_port: 443, ..Default::default() };
        let close = |s, r| pb::SocketClose { remote_addr: "10.0.0.1".into(), remote_port: 443, bytes_sent: s, bytes_received: r, ..Default::default() };
        let mut l = Ledger::default();
        for e in [
            ev(10, Kind::SessionStart(pb::SessionStart { root_pid: 10, ..Default::default() })),
            ev(11, Kind::Exec(pb::Exec { path: "/usr/bin/curl".into(), argv: vec!["curl".into(), "x".into()], ..Default::default() })),
            ev(11, Kind::FileOpen(pb::FileOpen { path: "/tmp/out".into(), access: "write".into(), ..Default::default() })),
            ev(11, Kind::FileOpen(pb::FileOpen { path: "/etc/passwd".into(), access: "read".into(), ..Default::default() })),
            ev(11, Kind::FileOpen(pb::FileOpen { path: "/root/x".into(), access: "write".into(), error: 13, ..Default::default() })),
            ev(12, Kind::FileChange(pb::FileChange { op: "unlink".into(), path: "/tmp/out".into(), ..Default::default() })),
            ev(12, Kind::FileChange(pb::FileChange { op: "rmdir".into(), path: "/root".into(), error: 1, ..Default::default() })),
            ev(11, Kind::Connect(net("10.0.0.1"))),
            ev(11, Kind::SocketClose(close(10, 20))),
            ev(11, Kind::Connect(net("10.0.0.1"))),
            ev(11, Kind::SocketClose(close(1, 2))),
            ev(12, Kind::Exit(pb::Exit::default())),
        ] {
            l.observe(&e);
        }
        assert_eq!(l.processes(), 2, "the root and pid 11; 12 exited");
        let grant = GrantFacts { reason: "INC-42".into(), ..Default::default() };
        let live = l.report("s-1", 99, &grant);
        let Some(Kind::SessionReport(r)) = &live.event else { panic!() };
        assert_eq!((r.end_reason.as_str(), r.ended_at_unix_ns, live.time_unix_ns), ("", 0, 99));
        l.observe(&ev(0, Kind::SessionEnd(pb::SessionEnd { reason: "exited".into() })));
        l.observe(&ev(0, Kind::SessionReport(pb::SessionReport::default())));
        assert!(l.ended());
        assert_eq!(l.processes(), 0);
        let end = l.report("s-1", 99, &grant);
        let Some(Kind::SessionReport(r)) = &end.event else { panic!() };
        assert_eq!((end.subject.as_str(), end.grant.as_str(), r.reason.as_str()), ("alice", "g-1", "INC-42"));
        assert_eq!(r.commands, ["curl x"]);
        assert_eq!(r.files_written, ["/tmp/out"]);
        assert_eq!((r.files_changed.as_slice(), r.files_changed_total), (&["unlink /tmp/out".to_owned()][..], 1));
        assert_eq!(r.remotes.len(), 1);
        assert_eq!((r.remotes[0].connections, r.remotes[0].bytes_sent, r.remotes[0].bytes_received), (2, 11, 22));
        assert_eq!((r.end_reason.as_str(), r.ended_at_unix_ns), ("exited", 5));
        assert_eq!(r.events, 13, "every event but the report itself");
    }

    #[test]
    fn a_kill_in_the_report_says_who_why_and_the_operator_note() {
        let mut l = Ledger::default();
        l.observe(&ev(10, Kind::SessionStart(pb::SessionStart { root_pid: 10, ..Default::default() })));
        let kill = |note: &str| pb::Kill { reason: "operator".into(), by: "uid 0 (pid 7)".into(), killed: 4, elapsed_us: 2500, note: note.into(), ..Default::default() };
        l.observe(&ev(0, Kind::Kill(kill("INC-7: runaway job"))));
        l.observe(&ev(0, Kind::Kill(kill(""))));
        let r = l.report("s-1", 99, &GrantFacts::default());
        let Some(Kind::SessionReport(r)) = &r.event else { panic!() };
        assert_eq!(r.kills, ["operator by uid 0 (pid 7) (INC-7: runaway job): 4 killed in 2.5 ms", "operator by uid 0 (pid 7): 4 killed in 2.5 ms"]);
    }
}
