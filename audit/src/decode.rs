//! Reading events back out of the audit log: the inverse of
//! [`crate::json::to_json`], so `Query` and `Watch` replay can serve the very
//! records the hash chain covers instead of a second copy of every event.
//!
//! The `kind` field is looked up in [`crate::kinds`]' table and the fields are
//! read by [`EventKind`], so a kind added to the table needs a case here to build.
//! Round trip is exact for every field `to_json` writes (a unit test checks each
//! kind). `addr`/`port` on network events are derived fields and are ignored here.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warrant_proto::event::Event as Kind;
use warrant_proto::{
    ControlAction, Event, EventsLost, Exec, ExecFailed, Exit, FileChange, FileOpen, GrantChange, IoUring, Kill, Net, RemoteTraffic,
    SessionEnd, SessionReport, SessionStart, SocketClose, SocketsDropped, TokenRefused, UnknownKind, Violation, WatchMissed,
};

use crate::kinds::EventKind;

/// Why an event object could not be decoded: a short description (lowercase,
/// naming the field).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Decodes one event object as written by `to_json`.
///
/// # Errors
/// [`DecodeError`] when `value` is not an event object, a field has the wrong type,
/// or the kind is none of the table's.
pub fn from_json(value: &Value) -> Result<Event, DecodeError> {
    decode(value).map_err(DecodeError)
}

fn decode(value: &Value) -> Result<Event, String> {
    let Value::Object(m) = value else {
        return Err("event is not a JSON object".into());
    };
    let f = Fields(m);
    let kind = f.str("kind")?;
    let mut unknown_kind = None;
    let event = if kind == "unknown" {
        if m.contains_key("kind_number") {
            use base64::Engine as _;
            let payload = base64::engine::general_purpose::STANDARD
                .decode(f.str("payload")?)
                .map_err(|e| format!("field \"payload\" is not base64: {e}"))?;
            unknown_kind = Some(UnknownKind { number: f.u32("kind_number")?, wire_type: f.u32("wire_type")?, payload });
        }
        None
    } else {
        let Some(which) = EventKind::from_name(&kind) else {
            return Err(format!("unknown event kind {kind:?}"));
        };
        Some(match which {
            EventKind::Exec => Kind::Exec(Exec {
                path: f.str("path")?,
                argv: f.strings("argv")?,
                cwd: f.str("cwd")?,
                truncated: f.bool("truncated")?,
                script: f.str("script")?,
            }),
            EventKind::Exit => Kind::Exit(Exit { code: f.i32("code")?, signal: f.i32("signal")? }),
            EventKind::FileOpen => Kind::FileOpen(FileOpen {
                path: f.str("path")?,
                access: f.str("access")?,
                flags: f.u32("flags")?,
                error: f.i32("error")?,
                unresolved: f.bool("unresolved")?,
                truncated: f.bool("truncated")?,
            }),
            EventKind::FileChange => Kind::FileChange(FileChange {
                op: f.str("op")?,
                path: f.str("path")?,
                target: f.str("target")?,
                name: f.str("name")?,
                error: f.i32("error")?,
                mode: f.octal("mode")?,
                uid: f.opt_u32("owner")?,
                gid: f.opt_u32("group")?,
                flags: f.u32("flags")?,
                size: f.u64("size")?,
                dev: f.u64("dev")?,
                unresolved: f.bool("unresolved")?,
                truncated: f.bool("truncated")?,
            }),
            EventKind::Connect => Kind::Connect(f.net()?),
            EventKind::Bind => Kind::Bind(f.net()?),
            EventKind::Listen => Kind::Listen(f.net()?),
            EventKind::Accept => Kind::Accept(f.net()?),
            EventKind::Datagram => Kind::Datagram(f.net()?),
            EventKind::Violation => Kind::Violation(Violation {
                op: f.str("op")?,
                action: f.str("action")?,
                rule: f.str("rule")?,
                family: f.str("family")?,
                addr: f.str("addr")?,
                port: f.u32("port")?,
                policy: f.str("policy")?,
                path: f.str("path")?,
                detail: f.str("detail")?,
                prevented: f.bool("prevented")?,
            }),
            EventKind::IoUring => Kind::IoUring(IoUring {
                op: f.str("op")?,
                opcode: f.u32("opcode")?,
                fd: f.i32("fd")?,
                fixed_file: f.bool("fixed_file")?,
                user_data: f.u64("user_data")?,
            }),
            EventKind::ExecFailed => Kind::ExecFailed(ExecFailed {
                path: f.str("path")?,
                error: f.i32("error")?,
                truncated: f.bool("truncated")?,
            }),
            EventKind::SocketClose => Kind::SocketClose(SocketClose {
                family: f.str("family")?,
                local_addr: f.str("local_addr")?,
                local_port: f.u32("local_port")?,
                remote_addr: f.str("remote_addr")?,
                remote_port: f.u32("remote_port")?,
                bytes_sent: f.u64("bytes_sent")?,
                bytes_received: f.u64("bytes_received")?,
            }),
            EventKind::SessionReport => Kind::SessionReport(SessionReport {
                reason: f.str("reason")?,
                issued_by: f.str("issued_by")?,
                policy: f.str("policy")?,
                started_at_unix_ns: f.time("started")?,
                ended_at_unix_ns: f.time("ended")?,
                end_reason: f.str("end_reason")?,
                commands: f.strings("commands")?,
                commands_total: f.u64("commands_total")?,
                files_written: f.strings("files_written")?,
                files_written_total: f.u64("files_written_total")?,
                files_changed: f.strings("files_changed")?,
                files_changed_total: f.u64("files_changed_total")?,
                remotes: f.remotes()?,
                violations: f.strings("violations")?,
                violations_total: f.u64("violations_total")?,
                kills: f.strings("kills")?,
                events: f.u64("events")?,
            }),
            EventKind::Kill => Kind::Kill(Kill {
                reason: f.str("reason")?,
                by: f.str("by")?,
                killed: f.u32("killed")?,
                elapsed_us: f.u64("elapsed_us")?,
                survivors: f.u32("survivors")?,
                note: f.str("note")?,
            }),
            EventKind::EventsLost => Kind::EventsLost(EventsLost {
                count: f.u64("count")?,
                total: f.u64("total")?,
                reason: f.str("reason")?,
                by_kind: f.u64_map("by_kind")?,
            }),
            EventKind::SessionStart => Kind::SessionStart(SessionStart {
                command: f.strings("command")?,
                root_pid: f.u32("root_pid")?,
                cgroup: f.str("cgroup")?,
                how: f.str("how")?,
                caller_uid: f.u32("caller_uid")?,
                caller_pid: f.u32("caller_pid")?,
                sandbox: f.str("sandbox")?,
            }),
            EventKind::SessionEnd => Kind::SessionEnd(SessionEnd { reason: f.str("reason")? }),
            EventKind::GrantChange => Kind::GrantChange(GrantChange {
                change: f.str("change")?,
                reason: f.str("reason")?,
                expires_at_unix_ns: f.time("expires")?,
                by: f.str("by")?,
            }),
            EventKind::WatchMissed => Kind::WatchMissed(WatchMissed { count: f.u64("count")?, reason: f.str("reason")? }),
            EventKind::SocketsDropped => Kind::SocketsDropped(SocketsDropped { count: f.u32("count")?, reason: f.str("reason")? }),
            EventKind::TokenRefused => Kind::TokenRefused(TokenRefused {
                reason: f.str("reason")?,
                key_id: f.str("key_id")?,
                host_pattern: f.str("host_pattern")?,
                caller_uid: f.u32("caller_uid")?,
                caller_pid: f.u32("caller_pid")?,
                how: f.str("how")?,
                command: f.strings("command")?,
            }),
            EventKind::ControlAction => Kind::ControlAction(ControlAction {
                action: f.str("action")?,
                by: f.str("by")?,
                target: f.str("target")?,
                outcome: f.str("outcome")?,
                detail: f.str("detail")?,
            }),
        })
    };
    Ok(Event {
        event,
        unknown_kind,
        seq: f.u64("seq")?,
        agent_id: f.str("agent_id")?,
        boot_id: f.str("boot_id")?,
        host: f.str("host")?,
        time_unix_ns: f.time("time")?,
        grant: f.str("grant")?,
        session: f.str("session")?,
        subject: f.str("subject")?,
        pid: f.u32("pid")?,
        tid: f.u32("tid")?,
        ppid: f.u32("ppid")?,
        uid: f.u32("uid")?,
        euid: f.u32("euid")?,
        gid: f.u32("gid")?,
        comm: f.str("comm")?,
        cgroup_id: f.u64("cgroup_id")?,
        redacted: f.strings("redacted")?,
    })
}

/// Typed access to an event object's fields; a missing field is its proto default
/// (`to_json` leaves some out when they are zero).
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn wrong(name: &str, want: &str) -> String {
        format!("field {name:?} is not {want}")
    }

    fn str(&self, name: &str) -> Result<String, String> {
        match self.get(name) {
            None => Ok(String::new()),
            Some(v) => v.as_str().map(str::to_owned).ok_or_else(|| Self::wrong(name, "a string")),
        }
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, String> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| Self::wrong(name, "an array of strings")))
                .collect(),
            Some(_) => Err(Self::wrong(name, "an array of strings")),
        }
    }

    fn bool(&self, name: &str) -> Result<bool, String> {
        match self.get(name) {
            None => Ok(false),
            Some(v) => v.as_bool().ok_or_else(|| Self::wrong(name, "a boolean")),
        }
    }

    fn u64(&self, name: &str) -> Result<u64, String> {
        match self.get(name) {
            None => Ok(0),
            Some(v) => v.as_u64().ok_or_else(|| Self::wrong(name, "an unsigned integer")),
        }
    }

    fn u64_map(&self, name: &str) -> Result<std::collections::HashMap<String, u64>, String> {
        match self.get(name) {
            None => Ok(std::collections::HashMap::new()),
            Some(Value::Object(items)) => items
                .iter()
                .map(|(k, v)| v.as_u64().map(|n| (k.clone(), n)).ok_or_else(|| Self::wrong(name, "an object of unsigned integers")))
                .collect(),
            Some(_) => Err(Self::wrong(name, "an object of unsigned integers")),
        }
    }

    fn opt_u32(&self, name: &str) -> Result<Option<u32>, String> {
        if self.get(name).is_none() { Ok(None) } else { self.u32(name).map(Some) }
    }

    /// A mode, written as octal digits in a string (`"0755"`).
    fn octal(&self, name: &str) -> Result<u32, String> {
        match self.get(name) {
            None => Ok(0),
            Some(v) => v
                .as_str()
                .and_then(|s| u32::from_str_radix(s, 8).ok())
                .ok_or_else(|| Self::wrong(name, "a string of octal digits")),
        }
    }

    fn u32(&self, name: &str) -> Result<u32, String> {
        u32::try_from(self.u64(name)?).map_err(|_| Self::wrong(name, "a 32-bit unsigned integer"))
    }

    fn i32(&self, name: &str) -> Result<i32, String> {
        match self.get(name) {
            None => Ok(0),
            Some(v) => v
                .as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(|| Self::wrong(name, "a 32-bit integer")),
        }
    }

    /// An RFC 3339 time (or, for times out of its range, the bare nanosecond count
    /// `rfc3339` falls back to) as nanoseconds since the epoch.
    fn time(&self, name: &str) -> Result<i64, String> {
        let s = self.str(name)?;
        if s.is_empty() {
            return Ok(0);
        }
        if let Ok(ns) = s.parse::<i64>() {
            return Ok(ns);
        }
        let t = OffsetDateTime::parse(&s, &Rfc3339).map_err(|e| format!("field {name:?} is not an RFC 3339 time: {e}"))?;
        i64::try_from(t.unix_timestamp_nanos()).map_err(|_| Self::wrong(name, "a time within i64 nanoseconds"))
    }

    /// `remotes` of a session report: an array of objects.
    fn remotes(&self) -> Result<Vec<RemoteTraffic>, String> {
        match self.get("remotes") {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    let Value::Object(m) = v else { return Err(Self::wrong("remotes", "an array of objects")) };
                    let t = Fields(m);
                    Ok(RemoteTraffic {
                        addr: t.str("addr")?,
                        port: t.u32("port")?,
                        connections: t.u32("connections")?,
                        bytes_sent: t.u64("bytes_sent")?,
                        bytes_received: t.u64("bytes_received")?,
                    })
                })
                .collect(),
            Some(_) => Err(Self::wrong("remotes", "an array of objects")),
        }
    }

    fn net(&self) -> Result<Net, String> {
        Ok(Net {
            family: self.str("family")?,
            protocol: self.str("protocol")?,
            local_addr: self.str("local_addr")?,
            local_port: self.u32("local_port")?,
            remote_addr: self.str("remote_addr")?,
            remote_port: self.u32("remote_port")?,
            error: self.i32("error")?,
            peer: self.str("peer")?,
            peer_pid: self.u32("peer_pid")?,
            peer_comm: self.str("peer_comm")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::to_json;

    fn base(kind: Kind) -> Event {
        Event {
            event: Some(kind),
            unknown_kind: None,
            seq: 42,
            agent_id: "a-1".into(),
            boot_id: "b-1".into(),
            host: "web-1".into(),
            time_unix_ns: 1_700_000_000_123_456_789,
            grant: "g-1".into(),
            session: "s-1".into(),
            subject: "alice".into(),
            pid: 10,
            tid: 11,
            ppid: 9,
            uid: 1000,
            euid: 0,
            gid: 1000,
            comm: "bash".into(),
            cgroup_id: 77,
            redacted: vec!["argv[2] (password-flag)".into()],
        }
    }

    /// Every kind survives to_json → from_json unchanged.
    #[test]
    fn round_trip_every_kind() {
        let net = Net {
            family: "inet".into(),
            protocol: "tcp".into(),
            local_addr: "127.0.0.1".into(),
            local_port: 4000,
            remote_addr: "10.0.0.1".into(),
            remote_port: 5432,
            error: 115,
            ..Net::default()
        };
        let unix = Net {
            family: "unix".into(),
            protocol: "stream".into(),
            remote_addr: "/tmp/s".into(),
            peer: "/run/s".into(),
            peer_pid: 42,
            peer_comm: "sshd".into(),
            ..Net::default()
        };
        let kinds = vec![
            Kind::Connect(unix),
            Kind::Exec(Exec { path: "/bin/id".into(), argv: vec!["id".into(), "-u".into()], cwd: "/".into(), truncated: true , ..Default::default() }),
            Kind::Exit(Exit { code: 3, signal: 0 }),
            Kind::Exit(Exit { code: 0, signal: 9 }),
            Kind::FileOpen(FileOpen {
                path: "/etc/passwd".into(),
                access: "read".into(),
                flags: 0o100,
                error: 2,
                unresolved: true,
                truncated: false,
            }),
            Kind::FileChange(FileChange {
                op: "rename".into(),
                path: "/etc/a".into(),
                target: "/etc/b".into(),
                flags: 1,
                error: 13,
                ..FileChange::default()
            }),
            Kind::FileChange(FileChange {
                op: "chown".into(),
                path: "/etc/a".into(),
                uid: Some(0),
                unresolved: true,
                ..FileChange::default()
            }),
            Kind::FileChange(FileChange {
                op: "mknod".into(),
                path: "/dev/x".into(),
                mode: 0o60644,
                dev: 0x801,
                truncated: true,
                ..FileChange::default()
            }),
            Kind::FileChange(FileChange {
                op: "setxattr".into(),
                path: "/tmp/f".into(),
                name: "security.capability".into(),
                size: 20,
                ..FileChange::default()
            }),
            Kind::Connect(net.clone()),
            Kind::Bind(net.clone()),
            Kind::Listen(net.clone()),
            Kind::Datagram(Net { protocol: "udp".into(), ..net.clone() }),
            Kind::Accept(net),
            Kind::Violation(Violation {
                op: "connect".into(),
                action: "deny".into(),
                rule: "network[2]".into(),
                family: "inet".into(),
                addr: "10.0.0.1".into(),
                port: 22,
                policy: "db".into(),
                prevented: true,
                ..Default::default()
            }),
            Kind::Violation(Violation {
                op: "open".into(),
                action: "kill".into(),
                rule: "files[1]".into(),
                path: "/etc/shadow".into(),
                detail: "read open".into(),
                policy: "db".into(),
                ..Default::default()
            }),
            Kind::ExecFailed(ExecFailed { path: "/usr/bin/curl".into(), error: 13, truncated: false }),
            Kind::IoUring(IoUring { op: "connect".into(), opcode: 16, fd: 3, fixed_file: false, user_data: u64::MAX }),
            Kind::TokenRefused(TokenRefused {
                reason: "expired 3m ago".into(),
                key_id: "k-1".into(),
                host_pattern: "db-*".into(),
                caller_uid: 1000,
                caller_pid: 7,
                how: "login".into(),
                command: vec!["bash".into()],
            }),
            Kind::SocketClose(SocketClose {
                family: "inet".into(),
                local_addr: "127.0.0.1".into(),
                local_port: 4000,
                remote_addr: "10.0.0.1".into(),
                remote_port: 443,
                bytes_sent: 100,
                bytes_received: 2000,
            }),
            Kind::SessionReport(SessionReport {
                reason: "INC-1".into(),
                issued_by: "uid 0".into(),
                policy: "db".into(),
                started_at_unix_ns: 1_700_000_000_000_000_001,
                ended_at_unix_ns: 1_700_000_100_000_000_002,
                end_reason: "exited".into(),
                commands: vec!["psql".into()],
                commands_total: 1,
                files_written: vec!["/tmp/x".into()],
                files_written_total: 1,
                files_changed: vec!["unlink /tmp/y".into()],
                files_changed_total: 1,
                remotes: vec![RemoteTraffic {
                    addr: "10.0.0.1".into(),
                    port: 443,
                    connections: 2,
                    bytes_sent: 5,
                    bytes_received: 6,
                }],
                violations: vec!["open /etc/shadow -> deny (files[1])".into()],
                violations_total: 1,
                kills: vec![],
                events: 9,
            }),
            Kind::Kill(Kill { reason: "operator".into(), by: "bob".into(), killed: 3, elapsed_us: 900, survivors: 0, note: "n".into() }),
            Kind::EventsLost(EventsLost { count: 1, total: 5, reason: String::new(), ..Default::default() }),
            Kind::EventsLost(EventsLost { count: 1, total: 5, reason: "spool_full".into(), ..Default::default() }),
            Kind::EventsLost(EventsLost {
                count: 3,
                total: 3,
                reason: "ring_buffer".into(),
                by_kind: [("file_open".to_owned(), 2), ("exec".to_owned(), 1)].into_iter().collect(),
            }),
            Kind::SessionStart(SessionStart {
                command: vec!["bash".into()],
                root_pid: 10,
                cgroup: "/sys/fs/cgroup/w/s-1".into(),
                how: "exec".into(),
                caller_uid: 0,
                caller_pid: 5,
                sandbox: "landlock+seccomp".into(),
            }),
            Kind::SessionEnd(SessionEnd { reason: "exited".into() }),
            Kind::GrantChange(GrantChange {
                change: "issued".into(),
                reason: "INC-1".into(),
                expires_at_unix_ns: 1_700_000_900_000_000_001,
                by: "uid 0".into(),
            }),
            Kind::GrantChange(GrantChange::default()),
            Kind::WatchMissed(WatchMissed { count: 7, reason: "record 3: event kind 142 is not known".into() }),
            Kind::SocketsDropped(SocketsDropped { count: 2, reason: "r".into() }),
            Kind::ControlAction(ControlAction {
                action: "kill".into(),
                by: "carol".into(),
                target: "session s-1".into(),
                outcome: "refused".into(),
                detail: "role responder needed".into(),
            }),
        ];
        for k in kinds {
            let ev = base(k);
            let back = from_json(&to_json(&ev)).unwrap();
            assert_eq!(back, ev);
        }
    }

    /// A kind from a newer agent is stored as "unknown" with its number and bytes,
    /// and reads back as it arrived; a record of an older build with no kind at all
    /// reads back too (no kind, nothing to interpret).
    #[test]
    fn unknown_kinds_round_trip_verbatim() {
        let mut ev = base(Kind::Exit(Exit::default()));
        ev.event = None;
        ev.unknown_kind = Some(UnknownKind { number: 142, wire_type: 2, payload: vec![0x0a, 0x01, 0xff] });
        let json = to_json(&ev);
        assert_eq!(json["kind"], "unknown");
        assert_eq!(json["kind_number"], 142);
        assert_eq!(from_json(&json).unwrap(), ev);
        let mut legacy = json.clone();
        for k in ["kind_number", "wire_type", "payload"] {
            legacy.as_object_mut().unwrap().remove(k);
        }
        let old = from_json(&legacy).unwrap();
        assert!(old.event.is_none() && old.unknown_kind.is_none());
    }

    #[test]
    fn bad_input_is_described() {
        assert!(from_json(&serde_json::json!([1])).unwrap_err().to_string().contains("not a JSON object"));
        assert!(from_json(&serde_json::json!({"kind": "nope"})).unwrap_err().to_string().contains("unknown event kind"));
        let e = from_json(&serde_json::json!({"kind": "exec", "pid": "x"})).unwrap_err().to_string();
        assert!(e.contains("\"pid\""), "{e}");
    }
}
