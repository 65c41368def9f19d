//! What the agent adds to a kernel event before anything records it.

use warrant_proto::v1::{self as pb, event::Event as Kind};

use super::Subjects;
use crate::file_rules;

/// The violation event a file open, file change or exec amounts to under its grant's policy.
pub fn file_violation(ev: &pb::Event, subjects: &Subjects) -> Option<pb::Event> {
    if !matches!(ev.event, Some(Kind::FileOpen(_) | Kind::FileChange(_) | Kind::ExecFailed(_) | Kind::Exec(_))) {
        return None;
    }
    let rules = {
        let subjects = subjects.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        subjects.get(&ev.grant).and_then(|g| g.rules.clone())
    };
    let v = file_rules::violation(ev, rules.as_deref())?;
    Some(pb::Event {
        event: Some(Kind::Violation(v)),
        time_unix_ns: ev.time_unix_ns,
        grant: ev.grant.clone(),
        session: ev.session.clone(),
        pid: ev.pid,
        tid: ev.tid,
        ppid: ev.ppid,
        uid: ev.uid,
        euid: ev.euid,
        gid: ev.gid,
        comm: ev.comm.clone(),
        cgroup_id: ev.cgroup_id,
        ..Default::default()
    })
}

/// A unix connect's peer command name: the kernel gives its pid only. Read at
/// once, while the peer is most likely still the process that listened.
pub fn name_unix_peer(ev: &mut pb::Event) {
    if let Some(Kind::Connect(n)) = &mut ev.event
        && n.family == "unix"
        && n.peer_pid != 0
        && let Ok(comm) = std::fs::read_to_string(format!("/proc/{}/comm", n.peer_pid))
    {
        n.peer_comm = comm.trim_end().to_owned();
    }
}

