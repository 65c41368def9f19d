//! Which process a Landlock refusal came from, when the audit record does not say.
//!
//! Landlock's own record of a refusal names the domain (so the session) and the
//! path the kernel resolved, not the caller: the caller's pid is in the `SYSCALL`
//! record, which the kernel writes only for a task with an audit context. The agent
//! keeps the host's tasks free of audit contexts where it can (see
//! `landlock_audit`: each one costs its task ~80 ns on every syscall), so the caller
//! is found from the other side: the ring buffer's record of the same call, a file
//! open, exec or file change of that session that failed with `EACCES` (what
//! Landlock answers). [`Refusals`] keeps the last few per session; a refusal is
//! pinned on a process only when exactly one process of the session was refused
//! within [`WINDOW`] of the audit record's time, otherwise the caller stays unknown
//! (and a `kill` rule ends the session, as it did before without a pid). Both
//! times are the wall clock: the ring record's from the boot clock at the call's
//! return, the audit record's from the kernel's coarse clock (one tick, 1–4 ms,
//! behind), in milliseconds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use warrant_proto::v1::{self as pb, event::Event as Kind};

use crate::ids;

/// What Landlock answers a refused file access or exec.
const EACCES: i32 = 13;
/// Refusals kept per session (the newest): enough for the time around one audit
/// record even from a loop of refused calls, which is then ambiguous anyway.
const KEEP: usize = 64;
/// How far apart the times of a ring record and an audit record of the same call
/// may be: the audit clock's tick and millisecond cut, with room to spare.
const WINDOW_NS: i64 = 50_000_000;
/// How long a session with no new refusal keeps its list once there are many
/// sessions: far longer than an audit record waits for its caller (a second).
const FORGET_NS: i64 = 60_000_000_000;

/// One refused call seen on the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    /// The call's return, wall clock.
    at_ns: i64,
    pid: u32,
    tid: u32,
}

/// The caller of a refusal, as far as the ring tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Exactly one process of the session was refused in the window: (pid, tid of
    /// its latest refused call).
    One(u32, u32),
    /// No refused call of the session in the window (yet: the ring may be behind).
    Unseen,
    /// More than one process was refused in the window.
    Several,
}

/// Recent `EACCES` refusals of tagged calls, by session.
#[derive(Default)]
pub struct Refusals {
    by_session: Mutex<HashMap<u64, VecDeque<Seen>>>,
}

impl Refusals {
    /// Notes `ev` if it is a session's file open, exec or file change that failed
    /// with `EACCES`. Cheap for everything else: one match.
    pub fn note(&self, ev: &pb::Event) {
        let error = match &ev.event {
            Some(Kind::FileOpen(f)) => f.error,
            Some(Kind::ExecFailed(e)) => e.error,
            Some(Kind::FileChange(c)) => c.error,
            _ => return,
        };
        if error != EACCES {
            return;
        }
        let Some(sid) = ids::parse_session(&ev.session) else { return };
        self.note_at(sid, ev.pid, ev.tid, ev.time_unix_ns);
    }

    fn note_at(&self, sid: u64, pid: u32, tid: u32, at_ns: i64) {
        let mut all = self.by_session.lock().unwrap_or_else(PoisonError::into_inner);
        // Sessions that stopped being refused are forgotten, so the map stays small.
        if all.len() > 256 {
            all.retain(|_, q| q.back().is_some_and(|s| at_ns - s.at_ns < FORGET_NS));
        }
        let q = all.entry(sid).or_default();
        if q.len() >= KEEP {
            q.pop_front();
        }
        q.push_back(Seen { at_ns, pid, tid });
    }

    /// The caller of a refusal in session `sid` that the audit record dates at
    /// `at_ns`: the one process refused within [`WINDOW_NS`] of it.
    pub fn caller(&self, sid: u64, at_ns: i64) -> Caller {
        let all = self.by_session.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(q) = all.get(&sid) else { return Caller::Unseen };
        let near = |s: &&Seen| (s.at_ns - at_ns).abs() <= WINDOW_NS;
        let mut found: Option<Seen> = None;
        for s in q.iter().filter(near) {
            match found {
                Some(f) if f.pid != s.pid => return Caller::Several,
                _ => found = Some(*s),
            }
        }
        found.map_or(Caller::Unseen, |s| Caller::One(s.pid, s.tid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(session: &str, pid: u32, error: i32, at_ns: i64) -> pb::Event {
        pb::Event {
            session: session.into(),
            pid,
            tid: pid + 1,
            time_unix_ns: at_ns,
            event: Some(Kind::FileOpen(pb::FileOpen { path: "/etc/shadow".into(), error, ..Default::default() })),
            ..Default::default()
        }
    }

    const T: i64 = 1_800_000_000_000_000_000;

    #[test]
    fn one_refused_process_is_the_caller_two_are_not_told_apart() {
        let r = Refusals::default();
        let (s1, s2) = (ids::session(0x11), ids::session(0x22));
        assert_eq!(r.caller(0x11, T), Caller::Unseen);
        r.note(&open(&s1, 100, EACCES, T));
        r.note(&open(&s1, 100, EACCES, T + 1_000_000));
        // Not refusals by Landlock, or not a session's: ignored.
        r.note(&open(&s1, 300, 2, T));
        r.note(&open("", 400, EACCES, T));
        r.note(&pb::Event { session: s1.clone(), pid: 500, time_unix_ns: T, ..Default::default() });
        assert_eq!(r.caller(0x11, T), Caller::One(100, 101));
        // Another session's refusal does not blur this one's.
        r.note(&open(&s2, 200, EACCES, T));
        assert_eq!(r.caller(0x11, T), Caller::One(100, 101));
        r.note(&open(&s1, 200, EACCES, T + 2_000_000));
        assert_eq!(r.caller(0x11, T), Caller::Several);
        assert_eq!(r.caller(0x22, T), Caller::One(200, 201));
    }

    #[test]
    fn refusals_outside_the_window_do_not_count() {
        let r = Refusals::default();
        r.note_at(7, 100, 100, T);
        r.note_at(7, 200, 200, T + 2 * WINDOW_NS);
        assert_eq!(r.caller(7, T + 3_000_000), Caller::One(100, 100));
        assert_eq!(r.caller(7, T - 3_000_000), Caller::One(100, 100), "the audit clock may read earlier");
        assert_eq!(r.caller(7, T + 2 * WINDOW_NS), Caller::One(200, 200));
        assert_eq!(r.caller(7, T + WINDOW_NS), Caller::Several);
        assert_eq!(r.caller(7, T + 4 * WINDOW_NS), Caller::Unseen);
    }

    #[test]
    fn a_session_keeps_only_its_newest_refusals() {
        let r = Refusals::default();
        r.note_at(7, 100, 100, T);
        for _ in 0..KEEP {
            r.note_at(7, 200, 200, T);
        }
        assert_eq!(r.caller(7, T), Caller::One(200, 200), "the oldest fell out");
    }
}
