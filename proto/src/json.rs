//! The JSON form of an [`Event`]: one flat object per event, as documented in
//! README.md ("Event schema"). Common fields first, then the kind's own fields.
//! `addr`/`port` on network events name the address the call was about: the remote
//! end for connect and accept, the local end for bind and listen.

use serde_json::{Map, Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::v1::{Event, Net, event::Event as Kind};

/// The JSON name of an event's kind (`"exec"`, `"file_open"`, …).
pub fn kind_name(event: &Event) -> &'static str {
    match &event.event {
        Some(k) => kind_name_of(k),
        None => "unknown",
    }
}

/// The JSON name of a kind.
pub fn kind_name_of(kind: &Kind) -> &'static str {
    match kind {
        Kind::Exec(_) => "exec",
        Kind::Exit(_) => "exit",
        Kind::FileOpen(_) => "file_open",
        Kind::FileChange(_) => "file_change",
        Kind::Datagram(_) => "datagram",
        Kind::Connect(_) => "connect",
        Kind::Bind(_) => "bind",
        Kind::Listen(_) => "listen",
        Kind::Accept(_) => "accept",
        Kind::Violation(_) => "violation",
        Kind::ExecFailed(_) => "exec_failed",
        Kind::SocketClose(_) => "socket_close",
        Kind::Kill(_) => "kill",
        Kind::EventsLost(_) => "events_lost",
        Kind::SessionStart(_) => "session_start",
        Kind::SessionEnd(_) => "session_end",
        Kind::GrantChange(_) => "grant_change",
        Kind::WatchMissed(_) => "watch_missed",
        Kind::SocketsDropped(_) => "sockets_dropped",
        Kind::SessionReport(_) => "session_report",
        Kind::ControlAction(_) => "control_action",
        Kind::TokenRefused(_) => "token_refused",
    }
}

/// Every kind name, for validating `--kind` filters.
pub const KIND_NAMES: &[&str] = &[
    "exec",
    "exit",
    "file_open",
    "file_change",
    "connect",
    "bind",
    "listen",
    "accept",
    "datagram",
    "violation",
    "exec_failed",
    "socket_close",
    "kill",
    "events_lost",
    "session_start",
    "session_end",
    "grant_change",
    "watch_missed",
    "sockets_dropped",
    "session_report",
    "control_action",
    "token_refused",
];

/// The filter shorthands and the kinds each stands for: what `--kind`, the
/// collector's filters and README's "Event schema" all go by.
pub const SHORTHANDS: &[(&str, &[&str])] = &[
    ("process", &["exec", "exec_failed", "exit"]),
    ("file", &["file_open", "file_change"]),
    ("net", &["connect", "bind", "listen", "accept", "datagram", "socket_close"]),
];

/// Expands a filter shorthand (`file`, `net`, `process`); other names give none.
pub fn expand_kind(name: &str) -> &'static [&'static str] {
    SHORTHANDS.iter().find(|(s, _)| *s == name).map_or(&[], |(_, kinds)| kinds)
}

/// The kinds and shorthands, as `--kind`'s help and its error message list them.
pub fn kinds_help() -> String {
    let shorthands: Vec<String> =
        SHORTHANDS.iter().map(|(s, kinds)| format!("{s} ({})", kinds.join(", "))).collect();
    format!("{}; or the shorthands {}", KIND_NAMES.join(", "), shorthands.join(", "))
}

/// RFC 3339 time with nanoseconds, UTC.
pub fn rfc3339(unix_ns: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ns))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix_ns.to_string())
}

/// The documented JSON object for `event`.
pub fn to_json(event: &Event) -> Value {
    let mut m = Map::new();
    m.insert("kind".into(), json!(kind_name(event)));
    m.insert("time".into(), json!(rfc3339(event.time_unix_ns)));
    m.insert("seq".into(), json!(event.seq));
    // (agent_id, boot_id, seq) is the delivery and dedup key: the log keeps it.
    m.insert("agent_id".into(), json!(event.agent_id));
    m.insert("boot_id".into(), json!(event.boot_id));
    m.insert("host".into(), json!(event.host));
    m.insert("grant".into(), json!(event.grant));
    m.insert("session".into(), json!(event.session));
    m.insert("subject".into(), json!(event.subject));
    m.insert("pid".into(), json!(event.pid));
    m.insert("tid".into(), json!(event.tid));
    m.insert("ppid".into(), json!(event.ppid));
    m.insert("uid".into(), json!(event.uid));
    m.insert("euid".into(), json!(event.euid));
    m.insert("gid".into(), json!(event.gid));
    m.insert("comm".into(), json!(event.comm));
    m.insert("cgroup_id".into(), json!(event.cgroup_id));
    if !event.redacted.is_empty() {
        m.insert("redacted".into(), json!(event.redacted));
    }
    match &event.event {
        Some(Kind::Exec(e)) => {
            m.insert("path".into(), json!(e.path));
            m.insert("argv".into(), json!(e.argv));
            m.insert("cwd".into(), json!(e.cwd));
            m.insert("truncated".into(), json!(e.truncated));
            if !e.script.is_empty() {
                m.insert("script".into(), json!(e.script));
            }
        }
        Some(Kind::Exit(e)) => {
            if e.signal != 0 {
                m.insert("signal".into(), json!(e.signal));
            } else {
                m.insert("code".into(), json!(e.code));
            }
        }
        Some(Kind::FileOpen(e)) => {
            m.insert("path".into(), json!(e.path));
            m.insert("access".into(), json!(e.access));
            m.insert("flags".into(), json!(e.flags));
            if e.error != 0 {
                m.insert("error".into(), json!(e.error));
            }
            if e.unresolved {
                m.insert("unresolved".into(), json!(true));
            }
            m.insert("truncated".into(), json!(e.truncated));
        }
        Some(Kind::FileChange(e)) => {
            m.insert("op".into(), json!(e.op));
            m.insert("path".into(), json!(e.path));
            if !e.target.is_empty() {
                m.insert("target".into(), json!(e.target));
            }
            if !e.name.is_empty() {
                m.insert("name".into(), json!(e.name));
            }
            if e.mode != 0 {
                m.insert("mode".into(), json!(format!("{:04o}", e.mode)));
            }
            if let Some(uid) = e.uid {
                m.insert("owner".into(), json!(uid));
            }
            if let Some(gid) = e.gid {
                m.insert("group".into(), json!(gid));
            }
            if e.flags != 0 {
                m.insert("flags".into(), json!(e.flags));
            }
            if e.size != 0 {
                m.insert("size".into(), json!(e.size));
            }
            if e.dev != 0 {
                m.insert("dev".into(), json!(e.dev));
            }
            if e.error != 0 {
                m.insert("error".into(), json!(e.error));
            }
            if e.unresolved {
                m.insert("unresolved".into(), json!(true));
            }
            m.insert("truncated".into(), json!(e.truncated));
        }
        Some(Kind::Connect(n) | Kind::Accept(n) | Kind::Datagram(n)) => net(&mut m, n, true),
        Some(Kind::Bind(n) | Kind::Listen(n)) => net(&mut m, n, false),
        Some(Kind::Violation(v)) => {
            m.insert("op".into(), json!(v.op));
            m.insert("action".into(), json!(v.action));
            m.insert("rule".into(), json!(v.rule));
            m.insert("policy".into(), json!(v.policy));
            m.insert("prevented".into(), json!(v.prevented));
            if !v.path.is_empty() {
                m.insert("path".into(), json!(v.path));
            }
            if !v.family.is_empty() {
                m.insert("family".into(), json!(v.family));
                m.insert("addr".into(), json!(v.addr));
                m.insert("port".into(), json!(v.port));
            }
            if !v.detail.is_empty() {
                m.insert("detail".into(), json!(v.detail));
            }
        }
        Some(Kind::SocketClose(c)) => {
            m.insert("family".into(), json!(c.family));
            m.insert("protocol".into(), json!("tcp"));
            m.insert("addr".into(), json!(c.remote_addr));
            m.insert("port".into(), json!(c.remote_port));
            m.insert("local_addr".into(), json!(c.local_addr));
            m.insert("local_port".into(), json!(c.local_port));
            m.insert("remote_addr".into(), json!(c.remote_addr));
            m.insert("remote_port".into(), json!(c.remote_port));
            m.insert("bytes_sent".into(), json!(c.bytes_sent));
            m.insert("bytes_received".into(), json!(c.bytes_received));
        }
        Some(Kind::ExecFailed(e)) => {
            m.insert("path".into(), json!(e.path));
            m.insert("error".into(), json!(e.error));
            m.insert("truncated".into(), json!(e.truncated));
        }
        Some(Kind::Kill(k)) => {
            m.insert("reason".into(), json!(k.reason));
            m.insert("by".into(), json!(k.by));
            m.insert("killed".into(), json!(k.killed));
            m.insert("elapsed_us".into(), json!(k.elapsed_us));
            m.insert("survivors".into(), json!(k.survivors));
            if !k.note.is_empty() {
                m.insert("note".into(), json!(k.note));
            }
        }
        Some(Kind::EventsLost(l)) => {
            m.insert("count".into(), json!(l.count));
            m.insert("total".into(), json!(l.total));
            if !l.reason.is_empty() {
                m.insert("reason".into(), json!(l.reason));
            }
            if !l.by_kind.is_empty() {
                let by: std::collections::BTreeMap<&str, u64> = l.by_kind.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                m.insert("by_kind".into(), json!(by));
            }
        }
        Some(Kind::SessionStart(s)) => {
            m.insert("command".into(), json!(s.command));
            m.insert("root_pid".into(), json!(s.root_pid));
            m.insert("cgroup".into(), json!(s.cgroup));
            m.insert("how".into(), json!(s.how));
            m.insert("caller_uid".into(), json!(s.caller_uid));
            m.insert("caller_pid".into(), json!(s.caller_pid));
            m.insert("sandbox".into(), json!(s.sandbox));
        }
        Some(Kind::SessionEnd(s)) => {
            m.insert("reason".into(), json!(s.reason));
        }
        Some(Kind::GrantChange(g)) => {
            m.insert("change".into(), json!(g.change));
            m.insert("reason".into(), json!(g.reason));
            m.insert("expires".into(), json!(rfc3339(g.expires_at_unix_ns)));
            m.insert("by".into(), json!(g.by));
        }
        Some(Kind::SocketsDropped(d)) => {
            m.insert("count".into(), json!(d.count));
            m.insert("reason".into(), json!(d.reason));
        }
        Some(Kind::SessionReport(r)) => {
            m.insert("reason".into(), json!(r.reason));
            m.insert("issued_by".into(), json!(r.issued_by));
            m.insert("policy".into(), json!(r.policy));
            m.insert("started".into(), json!(rfc3339(r.started_at_unix_ns)));
            if r.ended_at_unix_ns != 0 {
                m.insert("ended".into(), json!(rfc3339(r.ended_at_unix_ns)));
            }
            m.insert("end_reason".into(), json!(r.end_reason));
            m.insert("commands".into(), json!(r.commands));
            m.insert("commands_total".into(), json!(r.commands_total));
            m.insert("files_written".into(), json!(r.files_written));
            m.insert("files_written_total".into(), json!(r.files_written_total));
            m.insert("files_changed".into(), json!(r.files_changed));
            m.insert("files_changed_total".into(), json!(r.files_changed_total));
            let remotes: Vec<Value> = r
                .remotes
                .iter()
                .map(|t| {
                    json!({"addr": t.addr, "port": t.port, "connections": t.connections,
                           "bytes_sent": t.bytes_sent, "bytes_received": t.bytes_received})
                })
                .collect();
            m.insert("remotes".into(), Value::Array(remotes));
            m.insert("violations".into(), json!(r.violations));
            m.insert("violations_total".into(), json!(r.violations_total));
            m.insert("kills".into(), json!(r.kills));
            m.insert("events".into(), json!(r.events));
        }
        Some(Kind::TokenRefused(t)) => {
            m.insert("reason".into(), json!(t.reason));
            m.insert("key_id".into(), json!(t.key_id));
            m.insert("host_pattern".into(), json!(t.host_pattern));
            m.insert("caller_uid".into(), json!(t.caller_uid));
            m.insert("caller_pid".into(), json!(t.caller_pid));
            m.insert("how".into(), json!(t.how));
            m.insert("command".into(), json!(t.command));
        }
        Some(Kind::WatchMissed(w)) => {
            m.insert("count".into(), json!(w.count));
            if !w.reason.is_empty() {
                m.insert("reason".into(), json!(w.reason));
            }
        }
        Some(Kind::ControlAction(c)) => {
            m.insert("action".into(), json!(c.action));
            m.insert("by".into(), json!(c.by));
            m.insert("target".into(), json!(c.target));
            m.insert("outcome".into(), json!(c.outcome));
            m.insert("detail".into(), json!(c.detail));
        }
        None => {
            // A kind this build does not know, kept verbatim so a newer reader
            // can interpret it (see `UnknownKind`).
            if let Some(u) = &event.unknown_kind {
                use base64::Engine as _;
                m.insert("kind_number".into(), json!(u.number));
                m.insert("wire_type".into(), json!(u.wire_type));
                m.insert("payload".into(), json!(base64::engine::general_purpose::STANDARD.encode(&u.payload)));
            }
        }
    }
    Value::Object(m)
}

fn net(m: &mut Map<String, Value>, n: &Net, remote: bool) {
    let (addr, port) = if remote {
        (&n.remote_addr, n.remote_port)
    } else {
        (&n.local_addr, n.local_port)
    };
    m.insert("family".into(), json!(n.family));
    m.insert("protocol".into(), json!(n.protocol));
    m.insert("addr".into(), json!(addr));
    m.insert("port".into(), json!(port));
    m.insert("local_addr".into(), json!(n.local_addr));
    m.insert("local_port".into(), json!(n.local_port));
    m.insert("remote_addr".into(), json!(n.remote_addr));
    m.insert("remote_port".into(), json!(n.remote_port));
    if n.error != 0 {
        m.insert("error".into(), json!(n.error));
    }
    if !n.peer.is_empty() || n.peer_pid != 0 {
        m.insert("peer".into(), json!(n.peer));
        m.insert("peer_pid".into(), json!(n.peer_pid));
        m.insert("peer_comm".into(), json!(n.peer_comm));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Exec, Exit};

    fn base(kind: Kind) -> Event {
        Event {
            event: Some(kind),
            seq: 7,
            time_unix_ns: 1_700_000_000_123_456_789,
            grant: "g-1".into(),
            session: "s-2".into(),
            pid: 10,
            ppid: 9,
            uid: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn exec_has_documented_fields() {
        let v = to_json(&base(Kind::Exec(Exec {
            path: "/usr/bin/id".into(),
            argv: vec!["id".into(), "-u".into()],
            cwd: "/".into(),
            truncated: false,
            script: String::new(),
        })));
        assert!(v.get("script").is_none(), "no script, no field: {v}");
        for f in ["kind", "time", "grant", "session", "pid", "ppid", "uid", "path", "argv"] {
            assert!(v.get(f).is_some(), "missing {f}: {v}");
        }
        assert_eq!(v["kind"], "exec");
        assert_eq!(v["time"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(v["argv"][1], "-u");
    }

    #[test]
    fn exit_reports_code_or_signal() {
        let v = to_json(&base(Kind::Exit(Exit { code: 3, signal: 0 })));
        assert_eq!(v["code"], 3);
        assert!(v.get("signal").is_none());
        let v = to_json(&base(Kind::Exit(Exit { code: 0, signal: 9 })));
        assert_eq!(v["signal"], 9);
        assert!(v.get("code").is_none());
    }

    #[test]
    fn connect_addr_is_remote_bind_addr_is_local() {
        let n = Net {
            family: "inet".into(),
            protocol: "tcp".into(),
            local_addr: "127.0.0.1".into(),
            local_port: 40000,
            remote_addr: "127.0.0.2".into(),
            remote_port: 80,
            error: 0,
            ..Net::default()
        };
        let c = to_json(&base(Kind::Connect(n.clone())));
        assert_eq!((c["addr"].as_str(), c["port"].as_u64()), (Some("127.0.0.2"), Some(80)));
        let b = to_json(&base(Kind::Bind(n)));
        assert_eq!((b["addr"].as_str(), b["port"].as_u64()), (Some("127.0.0.1"), Some(40000)));
    }
}

#[cfg(test)]
mod kind_table_tests {
    use super::*;

    /// README's `--kind` line lists the same shorthands as the code, each with the
    /// kinds it stands for, and every kind it names exists.
    #[test]
    fn readme_lists_the_shorthands_the_code_expands() {
        let readme = include_str!("../../README.md");
        for (short, kinds) in SHORTHANDS {
            let want = format!("`{short}` ({})", kinds.join(", "));
            assert!(readme.replace("\n  ", " ").contains(&want), "README.md must say {want}");
            for k in *kinds {
                assert!(KIND_NAMES.contains(k), "{short} names {k}, which is no kind");
                assert!(readme.contains(&format!("`{k}`")), "README's schema must have a row for {k}");
            }
        }
    }
}
