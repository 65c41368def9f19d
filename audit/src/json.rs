//! The JSON form of an [`Event`]: one flat object per event, as documented in
//! README.md ("Event schema"). Common fields first, then the kind's own fields;
//! `kind` is the kind's name from [`crate::kinds`]. Its canonical bytes
//! ([`CanonicalWriter`], [`canonical_json`]) are what the audit log hashes;
//! [`crate::decode`] reads it back.
//! `addr`/`port` on network events name the address the call was about: the remote
//! end for connect and accept, the local end for bind and listen.

use serde::Serialize;
use serde_json::{Map, Value};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use warrant_proto::{Event, Net, event::Event as Kind};

use crate::kinds::kind_name;

/// RFC 3339 time with nanoseconds, UTC.
pub fn rfc3339(unix_ns: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ns))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix_ns.to_string())
}

/// The documented JSON object for `event`.
pub fn to_json(event: &Event) -> Value {
    let mut m = ValueFields(Map::new());
    fields(event, &mut m);
    Value::Object(m.0)
}

/// The canonical bytes of [`to_json`]`(event)` (the audit log's [`canonical_json`]:
/// no whitespace, keys sorted by their bytes), appended to `out`. See
/// [`CanonicalWriter`], which does the same without allocating per event.
pub fn to_canonical_json(event: &Event, out: &mut Vec<u8>) {
    CanonicalWriter::default().write(event, out);
}

/// Writes the canonical bytes of [`to_json`]`(event)` straight from the event: no
/// intermediate [`Value`], no map of owned keys, no sorting (keys are `Key`s,
/// numbered in byte order). This is what the audit log hashes, once per event, so
/// it is on the event path; a property test keeps it byte for byte equal to
/// `canonical_json(&to_json(event))`. Keep one and reuse it: its buffers stay.
#[derive(Default)]
pub struct CanonicalWriter {
    fields: CanonicalFields,
}

impl std::fmt::Debug for CanonicalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanonicalWriter").finish_non_exhaustive()
    }
}

impl CanonicalWriter {
    /// Appends the canonical bytes of `event` to `out`.
    pub fn write(&mut self, event: &Event, out: &mut Vec<u8>) {
        self.fields.present = 0;
        self.fields.scratch.clear();
        fields(event, &mut self.fields);
        self.fields.finish(out);
    }
}

macro_rules! keys {
    ($($key:ident),* $(,)?) => {
        /// Every key of the JSON form. The variants are in the keys' byte order (a
        /// test checks it), so writing fields by variant number is writing them sorted.
        #[allow(non_camel_case_types, reason = "each variant is its key, verbatim")]
        #[derive(Clone, Copy, Debug)]
        enum Key { $($key),* }

        /// The keys' names, indexed by [`Key`].
        const KEY_NAMES: &[&str] = &[$(stringify!($key)),*];
    };
}

keys! {
    access,
    action,
    addr,
    agent_id,
    argv,
    boot_id,
    by,
    by_kind,
    bytes_received,
    bytes_sent,
    caller_pid,
    caller_uid,
    cgroup,
    cgroup_id,
    change,
    code,
    comm,
    command,
    commands,
    commands_total,
    count,
    cwd,
    detail,
    dev,
    elapsed_us,
    end_reason,
    ended,
    error,
    euid,
    events,
    expires,
    family,
    fd,
    files_changed,
    files_changed_total,
    files_written,
    files_written_total,
    fixed_file,
    flags,
    gid,
    grant,
    group,
    host,
    host_pattern,
    how,
    issued_by,
    key_id,
    killed,
    kills,
    kind,
    kind_number,
    local_addr,
    local_port,
    mode,
    name,
    note,
    op,
    opcode,
    outcome,
    owner,
    path,
    payload,
    peer,
    peer_comm,
    peer_pid,
    pid,
    policy,
    port,
    ppid,
    prevented,
    protocol,
    reason,
    redacted,
    remote_addr,
    remote_port,
    remotes,
    root_pid,
    rule,
    sandbox,
    script,
    seq,
    session,
    signal,
    size,
    started,
    subject,
    survivors,
    target,
    tid,
    time,
    total,
    truncated,
    uid,
    unresolved,
    user_data,
    violations,
    violations_total,
    wire_type,
}

impl Key {
    fn name(self) -> &'static str {
        KEY_NAMES[self as usize]
    }
}

/// Where [`fields`] puts an event's fields: one `put` per key. Both forms of an
/// event come from the one list of fields in [`fields`], so they cannot disagree.
trait Fields {
    fn put<T: Serialize + ?Sized>(&mut self, key: Key, value: &T);
}

/// Builds the [`Value`] form.
struct ValueFields(Map<String, Value>);

impl Fields for ValueFields {
    fn put<T: Serialize + ?Sized>(&mut self, key: Key, value: &T) {
        // Serializing these field types (strings, integers, bools, lists of them,
        // maps with string keys) into a Value cannot fail.
        self.0.insert(key.name().to_owned(), serde_json::to_value(value).unwrap_or(Value::Null));
    }
}

/// The canonical form under construction: every value written once into `scratch`
/// as `serde_json` writes it, its place kept by key; the object is put together in
/// key order at the end. A key put twice keeps its last value, as a map insert
/// would. Values with nested objects must serialize their keys in sorted order
/// (struct fields declared sorted, `BTreeMap`s), which the property test checks.
struct CanonicalFields {
    scratch: Vec<u8>,
    /// Bit `k` set: key `k` was put, at `at[k]`.
    present: u128,
    at: [(u32, u32); KEY_NAMES.len()],
}

impl Default for CanonicalFields {
    fn default() -> Self {
        CanonicalFields { scratch: Vec::with_capacity(1024), present: 0, at: [(0, 0); KEY_NAMES.len()] }
    }
}

impl Fields for CanonicalFields {
    fn put<T: Serialize + ?Sized>(&mut self, key: Key, value: &T) {
        let start = self.scratch.len();
        if serde_json::to_writer(&mut self.scratch, value).is_err() {
            // As for `ValueFields`: cannot happen for these types; stay equal to it.
            self.scratch.truncate(start);
            self.scratch.extend_from_slice(b"null");
        }
        // Offsets fit: an event's JSON is far below 4 GiB (records are capped).
        let offset = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.at[key as usize] = (offset(start), offset(self.scratch.len()));
        self.present |= 1 << key as u32;
    }
}

impl CanonicalFields {
    fn finish(&self, out: &mut Vec<u8>) {
        out.reserve(self.scratch.len() + self.present.count_ones() as usize * 16 + 2);
        out.push(b'{');
        let (mut rest, mut first) = (self.present, true);
        while rest != 0 {
            let k = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            if !first {
                out.push(b',');
            }
            first = false;
            // Keys are this module's ASCII identifiers: no escaping needed.
            out.push(b'"');
            out.extend_from_slice(KEY_NAMES[k].as_bytes());
            out.extend_from_slice(b"\":");
            let (start, end) = self.at[k];
            out.extend_from_slice(&self.scratch[start as usize..end as usize]);
        }
        out.push(b'}');
    }
}

/// One entry of a session report's `remotes`; fields in key order (canonical).
#[derive(Serialize)]
struct Remote<'a> {
    addr: &'a str,
    bytes_received: u64,
    bytes_sent: u64,
    connections: u32,
    port: u32,
}

/// Every field of `event`'s JSON form, in the documented order.
fn fields<F: Fields>(event: &Event, f: &mut F) {
    f.put(Key::kind, &kind_name(event));
    f.put(Key::time, &rfc3339(event.time_unix_ns));
    f.put(Key::seq, &event.seq);
    // (agent_id, boot_id, seq) is the delivery and dedup key: the log keeps it.
    f.put(Key::agent_id, &event.agent_id);
    f.put(Key::boot_id, &event.boot_id);
    f.put(Key::host, &event.host);
    f.put(Key::grant, &event.grant);
    f.put(Key::session, &event.session);
    f.put(Key::subject, &event.subject);
    f.put(Key::pid, &event.pid);
    f.put(Key::tid, &event.tid);
    f.put(Key::ppid, &event.ppid);
    f.put(Key::uid, &event.uid);
    f.put(Key::euid, &event.euid);
    f.put(Key::gid, &event.gid);
    f.put(Key::comm, &event.comm);
    f.put(Key::cgroup_id, &event.cgroup_id);
    if !event.redacted.is_empty() {
        f.put(Key::redacted, &event.redacted);
    }
    match &event.event {
        Some(Kind::Exec(e)) => {
            f.put(Key::path, &e.path);
            f.put(Key::argv, &e.argv);
            f.put(Key::cwd, &e.cwd);
            f.put(Key::truncated, &e.truncated);
            if !e.script.is_empty() {
                f.put(Key::script, &e.script);
            }
        }
        Some(Kind::Exit(e)) => {
            if e.signal != 0 {
                f.put(Key::signal, &e.signal);
            } else {
                f.put(Key::code, &e.code);
            }
        }
        Some(Kind::FileOpen(e)) => {
            f.put(Key::path, &e.path);
            f.put(Key::access, &e.access);
            f.put(Key::flags, &e.flags);
            if e.error != 0 {
                f.put(Key::error, &e.error);
            }
            if e.unresolved {
                f.put(Key::unresolved, &true);
            }
            f.put(Key::truncated, &e.truncated);
        }
        Some(Kind::FileChange(e)) => {
            f.put(Key::op, &e.op);
            f.put(Key::path, &e.path);
            if !e.target.is_empty() {
                f.put(Key::target, &e.target);
            }
            if !e.name.is_empty() {
                f.put(Key::name, &e.name);
            }
            if e.mode != 0 {
                f.put(Key::mode, &format!("{:04o}", e.mode));
            }
            if let Some(uid) = e.uid {
                f.put(Key::owner, &uid);
            }
            if let Some(gid) = e.gid {
                f.put(Key::group, &gid);
            }
            if e.flags != 0 {
                f.put(Key::flags, &e.flags);
            }
            if e.size != 0 {
                f.put(Key::size, &e.size);
            }
            if e.dev != 0 {
                f.put(Key::dev, &e.dev);
            }
            if e.error != 0 {
                f.put(Key::error, &e.error);
            }
            if e.unresolved {
                f.put(Key::unresolved, &true);
            }
            f.put(Key::truncated, &e.truncated);
        }
        Some(Kind::Connect(n) | Kind::Accept(n) | Kind::Datagram(n)) => net(f, n, true),
        Some(Kind::Bind(n) | Kind::Listen(n)) => net(f, n, false),
        Some(Kind::Violation(v)) => {
            f.put(Key::op, &v.op);
            f.put(Key::action, &v.action);
            f.put(Key::rule, &v.rule);
            f.put(Key::policy, &v.policy);
            f.put(Key::prevented, &v.prevented);
            if !v.path.is_empty() {
                f.put(Key::path, &v.path);
            }
            if !v.family.is_empty() {
                f.put(Key::family, &v.family);
                f.put(Key::addr, &v.addr);
                f.put(Key::port, &v.port);
            }
            if !v.detail.is_empty() {
                f.put(Key::detail, &v.detail);
            }
        }
        Some(Kind::SocketClose(c)) => {
            f.put(Key::family, &c.family);
            f.put(Key::protocol, &"tcp");
            f.put(Key::addr, &c.remote_addr);
            f.put(Key::port, &c.remote_port);
            f.put(Key::local_addr, &c.local_addr);
            f.put(Key::local_port, &c.local_port);
            f.put(Key::remote_addr, &c.remote_addr);
            f.put(Key::remote_port, &c.remote_port);
            f.put(Key::bytes_sent, &c.bytes_sent);
            f.put(Key::bytes_received, &c.bytes_received);
        }
        Some(Kind::IoUring(u)) => {
            f.put(Key::op, &u.op);
            f.put(Key::opcode, &u.opcode);
            f.put(Key::fd, &u.fd);
            f.put(Key::fixed_file, &u.fixed_file);
            f.put(Key::user_data, &u.user_data);
        }
        Some(Kind::ExecFailed(e)) => {
            f.put(Key::path, &e.path);
            f.put(Key::error, &e.error);
            f.put(Key::truncated, &e.truncated);
        }
        Some(Kind::Kill(k)) => {
            f.put(Key::reason, &k.reason);
            f.put(Key::by, &k.by);
            f.put(Key::killed, &k.killed);
            f.put(Key::elapsed_us, &k.elapsed_us);
            f.put(Key::survivors, &k.survivors);
            if !k.note.is_empty() {
                f.put(Key::note, &k.note);
            }
        }
        Some(Kind::EventsLost(l)) => {
            f.put(Key::count, &l.count);
            f.put(Key::total, &l.total);
            if !l.reason.is_empty() {
                f.put(Key::reason, &l.reason);
            }
            if !l.by_kind.is_empty() {
                let by: std::collections::BTreeMap<&str, u64> = l.by_kind.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                f.put(Key::by_kind, &by);
            }
        }
        Some(Kind::SessionStart(s)) => {
            f.put(Key::command, &s.command);
            f.put(Key::root_pid, &s.root_pid);
            f.put(Key::cgroup, &s.cgroup);
            f.put(Key::how, &s.how);
            f.put(Key::caller_uid, &s.caller_uid);
            f.put(Key::caller_pid, &s.caller_pid);
            f.put(Key::sandbox, &s.sandbox);
        }
        Some(Kind::SessionEnd(s)) => {
            f.put(Key::reason, &s.reason);
        }
        Some(Kind::GrantChange(g)) => {
            f.put(Key::change, &g.change);
            f.put(Key::reason, &g.reason);
            f.put(Key::expires, &rfc3339(g.expires_at_unix_ns));
            f.put(Key::by, &g.by);
        }
        Some(Kind::SocketsDropped(d)) => {
            f.put(Key::count, &d.count);
            f.put(Key::reason, &d.reason);
        }
        Some(Kind::SessionReport(r)) => {
            f.put(Key::reason, &r.reason);
            f.put(Key::issued_by, &r.issued_by);
            f.put(Key::policy, &r.policy);
            f.put(Key::started, &rfc3339(r.started_at_unix_ns));
            if r.ended_at_unix_ns != 0 {
                f.put(Key::ended, &rfc3339(r.ended_at_unix_ns));
            }
            f.put(Key::end_reason, &r.end_reason);
            f.put(Key::commands, &r.commands);
            f.put(Key::commands_total, &r.commands_total);
            f.put(Key::files_written, &r.files_written);
            f.put(Key::files_written_total, &r.files_written_total);
            f.put(Key::files_changed, &r.files_changed);
            f.put(Key::files_changed_total, &r.files_changed_total);
            let remotes: Vec<Remote<'_>> = r
                .remotes
                .iter()
                .map(|t| Remote {
                    addr: &t.addr,
                    bytes_received: t.bytes_received,
                    bytes_sent: t.bytes_sent,
                    connections: t.connections,
                    port: t.port,
                })
                .collect();
            f.put(Key::remotes, &remotes);
            f.put(Key::violations, &r.violations);
            f.put(Key::violations_total, &r.violations_total);
            f.put(Key::kills, &r.kills);
            f.put(Key::events, &r.events);
        }
        Some(Kind::TokenRefused(t)) => {
            f.put(Key::reason, &t.reason);
            f.put(Key::key_id, &t.key_id);
            f.put(Key::host_pattern, &t.host_pattern);
            f.put(Key::caller_uid, &t.caller_uid);
            f.put(Key::caller_pid, &t.caller_pid);
            f.put(Key::how, &t.how);
            f.put(Key::command, &t.command);
        }
        Some(Kind::WatchMissed(w)) => {
            f.put(Key::count, &w.count);
            if !w.reason.is_empty() {
                f.put(Key::reason, &w.reason);
            }
        }
        Some(Kind::ControlAction(c)) => {
            f.put(Key::action, &c.action);
            f.put(Key::by, &c.by);
            f.put(Key::target, &c.target);
            f.put(Key::outcome, &c.outcome);
            f.put(Key::detail, &c.detail);
        }
        None => {
            // A kind this build does not know, kept verbatim so a newer reader
            // can interpret it (see `UnknownKind`).
            if let Some(u) = &event.unknown_kind {
                use base64::Engine as _;
                f.put(Key::kind_number, &u.number);
                f.put(Key::wire_type, &u.wire_type);
                f.put(Key::payload, &base64::engine::general_purpose::STANDARD.encode(&u.payload));
            }
        }
    }
}

fn net<F: Fields>(f: &mut F, n: &Net, remote: bool) {
    let (addr, port) = if remote {
        (&n.remote_addr, n.remote_port)
    } else {
        (&n.local_addr, n.local_port)
    };
    f.put(Key::family, &n.family);
    f.put(Key::protocol, &n.protocol);
    f.put(Key::addr, &addr);
    f.put(Key::port, &port);
    f.put(Key::local_addr, &n.local_addr);
    f.put(Key::local_port, &n.local_port);
    f.put(Key::remote_addr, &n.remote_addr);
    f.put(Key::remote_port, &n.remote_port);
    if n.error != 0 {
        f.put(Key::error, &n.error);
    }
    if !n.peer.is_empty() || n.peer_pid != 0 {
        f.put(Key::peer, &n.peer);
        f.put(Key::peer_pid, &n.peer_pid);
        f.put(Key::peer_comm, &n.peer_comm);
    }
}

/// The canonical bytes of a JSON value: no whitespace, object keys sorted by their
/// bytes, strings and numbers as `serde_json` writes them.
///
/// `serde_json`'s `Map` is a `BTreeMap` (sorted) unless its `preserve_order` feature
/// is on, and Cargo unifies features across the workspace, so any crate enabling it
/// would silently change what `to_vec` produces. Sorting here makes the hash
/// independent of that; keep it this way.
///
/// # Errors
/// Only if `serde_json` fails to write a scalar into memory (it does not).
pub fn canonical_json(value: &Value) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(512);
    write_canonical(&mut out, value)?;
    Ok(out)
}

fn write_canonical(out: &mut Vec<u8>, value: &Value) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k)?;
                out.push(b':');
                write_canonical(out, v)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, v)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use warrant_proto::{Exec, Exit};

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
mod canonical_tests {
    use proptest::prelude::*;

    use super::*;
    use crate::kinds::{KIND_NAMES, kind_name_of};
    use warrant_proto::{
        ControlAction, EventsLost, Exec, ExecFailed, Exit, FileChange, FileOpen, GrantChange, IoUring, Kill, RemoteTraffic,
        SessionEnd, SessionReport, SessionStart, SocketClose, SocketsDropped, TokenRefused, UnknownKind, Violation,
        WatchMissed,
    };

    /// Values to fill an event's fields from: any field of a type takes one of these.
    #[derive(Debug, Clone)]
    struct Fill {
        s: Vec<String>,
        n: Vec<u64>,
        b: Vec<bool>,
        list: Vec<String>,
    }

    fn arb_string() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-z/._-]{0,12}",
            any::<String>(),
            Just("quote\" back\\slash \n\t\u{1b}[31m é ✓ \u{2028}".to_owned()),
        ]
    }

    fn arb_fill() -> impl Strategy<Value = Fill> {
        (
            prop::collection::vec(arb_string(), 16),
            prop::collection::vec(prop_oneof![Just(0u64), any::<u64>(), 0..70_000u64], 16),
            prop::collection::vec(any::<bool>(), 4),
            prop::collection::vec(arb_string(), 0..4),
        )
            .prop_map(|(s, n, b, list)| Fill { s, n, b, list })
    }

    /// Every kind this build knows, and an unknown one, with its fields from `f`.
    #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
    fn kind(which: u8, f: &Fill) -> Option<Kind> {
        let s = |i: usize| f.s[i].clone();
        let u = |i: usize| f.n[i] as u32;
        let i32_ = |i: usize| f.n[i] as i32;
        let net = || Net {
            family: s(0),
            protocol: s(1),
            local_addr: s(2),
            local_port: u(0),
            remote_addr: s(3),
            remote_port: u(1),
            error: i32_(2),
            peer: s(4),
            peer_pid: u(3),
            peer_comm: s(5),
        };
        Some(match which {
            0 => Kind::Exec(Exec { path: s(0), argv: f.list.clone(), cwd: s(1), truncated: f.b[0], script: s(2) }),
            1 => Kind::Exit(Exit { code: i32_(0), signal: i32_(1) }),
            2 => Kind::FileOpen(FileOpen {
                path: s(0),
                access: s(1),
                flags: u(0),
                error: i32_(1),
                unresolved: f.b[0],
                truncated: f.b[1],
            }),
            3 => Kind::Connect(net()),
            4 => Kind::Bind(net()),
            5 => Kind::Listen(net()),
            6 => Kind::Accept(net()),
            7 => Kind::Datagram(net()),
            8 => Kind::Violation(Violation {
                op: s(0),
                action: s(1),
                rule: s(2),
                family: s(3),
                addr: s(4),
                port: u(0),
                policy: s(5),
                path: s(6),
                detail: s(7),
                prevented: f.b[0],
            }),
            9 => Kind::ExecFailed(ExecFailed { path: s(0), error: i32_(0), truncated: f.b[0] }),
            10 => Kind::SocketClose(SocketClose {
                family: s(0),
                local_addr: s(1),
                local_port: u(0),
                remote_addr: s(2),
                remote_port: u(1),
                bytes_sent: f.n[2],
                bytes_received: f.n[3],
            }),
            11 => Kind::FileChange(FileChange {
                op: s(0),
                path: s(1),
                target: s(2),
                name: s(3),
                error: i32_(0),
                mode: u(1),
                uid: f.b[0].then(|| u(2)),
                gid: f.b[1].then(|| u(3)),
                flags: u(4),
                size: f.n[5],
                dev: f.n[6],
                unresolved: f.b[2],
                truncated: f.b[3],
            }),
            12 => Kind::Kill(Kill {
                reason: s(0),
                by: s(1),
                killed: u(0),
                elapsed_us: f.n[1],
                survivors: u(2),
                note: s(2),
            }),
            13 => Kind::EventsLost(EventsLost {
                count: f.n[0],
                total: f.n[1],
                reason: s(0),
                by_kind: f.list.iter().enumerate().map(|(i, k)| (k.clone(), f.n[i + 2])).collect(),
            }),
            14 => Kind::SessionStart(SessionStart {
                command: f.list.clone(),
                root_pid: u(0),
                cgroup: s(0),
                how: s(1),
                caller_uid: u(1),
                caller_pid: u(2),
                sandbox: s(2),
            }),
            15 => Kind::SessionEnd(SessionEnd { reason: s(0) }),
            16 => Kind::GrantChange(GrantChange {
                change: s(0),
                reason: s(1),
                expires_at_unix_ns: f.n[0] as i64,
                by: s(2),
            }),
            17 => Kind::SocketsDropped(SocketsDropped { count: u(0), reason: s(0) }),
            18 => Kind::WatchMissed(WatchMissed { count: f.n[0], reason: s(0) }),
            19 => Kind::ControlAction(ControlAction {
                action: s(0),
                by: s(1),
                target: s(2),
                outcome: s(3),
                detail: s(4),
            }),
            20 => Kind::TokenRefused(TokenRefused {
                reason: s(0),
                key_id: s(1),
                host_pattern: s(2),
                caller_uid: u(0),
                caller_pid: u(1),
                how: s(3),
                command: f.list.clone(),
            }),
            21 => Kind::SessionReport(SessionReport {
                reason: s(0),
                issued_by: s(1),
                policy: s(2),
                started_at_unix_ns: f.n[0] as i64,
                ended_at_unix_ns: f.n[1] as i64,
                end_reason: s(3),
                commands: f.list.clone(),
                commands_total: f.n[2],
                files_written: f.list.clone(),
                files_written_total: f.n[3],
                remotes: f
                    .list
                    .iter()
                    .enumerate()
                    .map(|(i, a)| RemoteTraffic {
                        addr: a.clone(),
                        port: u(i),
                        connections: u(i + 1),
                        bytes_sent: f.n[i + 2],
                        bytes_received: f.n[i + 3],
                    })
                    .collect(),
                violations: f.list.clone(),
                violations_total: f.n[4],
                kills: f.list.clone(),
                events: f.n[5],
                files_changed: f.list.clone(),
                files_changed_total: f.n[6],
            }),
            22 => Kind::IoUring(IoUring { op: s(0), opcode: u(0), fd: i32_(1), fixed_file: f.b[0], user_data: f.n[2] }),
            _ => return None,
        })
    }

    /// The last `which` (no kind) gets an unknown kind kept verbatim half the time.
    const KINDS: u8 = 24;

    fn arb_event() -> impl Strategy<Value = Event> {
        (0..KINDS, arb_fill(), arb_fill(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(which, f, env, payload)| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
            let u = |i: usize| env.n[i] as u32;
            Event {
                event: kind(which, &f),
                seq: env.n[0],
                agent_id: env.s[0].clone(),
                boot_id: env.s[1].clone(),
                host: env.s[2].clone(),
                time_unix_ns: env.n[1] as i64,
                grant: env.s[3].clone(),
                session: env.s[4].clone(),
                subject: env.s[5].clone(),
                pid: u(2),
                tid: u(3),
                ppid: u(4),
                uid: u(5),
                euid: u(6),
                gid: u(7),
                comm: env.s[6].clone(),
                cgroup_id: env.n[8],
                redacted: env.list.clone(),
                unknown_kind: env.b[0].then(|| UnknownKind { number: u(9), wire_type: u(10) % 6, payload }),
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// The log hashes `to_canonical_json`; `verify` re-derives the bytes with
        /// `canonical_json` from the parsed record. They must agree byte for byte.
        #[test]
        fn canonical_writer_equals_canonical_of_the_value(ev in arb_event()) {
            let mut direct = Vec::new();
            to_canonical_json(&ev, &mut direct);
            let via_value = canonical_json(&to_json(&ev)).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&direct), String::from_utf8_lossy(&via_value));
            // And what it wrote is JSON that parses back to the same value.
            let parsed: Value = serde_json::from_slice(&direct).unwrap();
            prop_assert_eq!(parsed, to_json(&ev));
        }
    }

    /// Writing keys by number writes them sorted only if the numbering is the
    /// keys' byte order; and a key's bit must fit the `present` mask.
    #[test]
    fn keys_are_numbered_in_byte_order() {
        assert!(KEY_NAMES.len() <= 128, "{} keys do not fit the u128 mask", KEY_NAMES.len());
        for pair in KEY_NAMES.windows(2) {
            assert!(pair[0].as_bytes() < pair[1].as_bytes(), "{} must come after {}", pair[0], pair[1]);
        }
        assert_eq!(Key::wire_type.name(), "wire_type");
    }

    #[test]
    fn every_kind_is_generated() {
        let f = Fill { s: vec![String::new(); 16], n: vec![0; 16], b: vec![false; 4], list: Vec::new() };
        let named: std::collections::BTreeSet<&str> =
            (0..KINDS).filter_map(|w| kind(w, &f)).map(|k| kind_name_of(&k)).collect();
        for k in KIND_NAMES {
            assert!(named.contains(k) || *k == "unknown", "the property test never makes a {k} event");
        }
    }
}
