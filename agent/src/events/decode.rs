//! Kernel records (agent-common's `event.rs`) to proto `Event`s.
//!
//! The only place that knows both contracts. Pure functions: the record bytes and a
//! clock offset in, an event out, so every field mapping is unit-tested.

use std::borrow::Cow;
use std::mem::offset_of;
use std::net::{Ipv4Addr, Ipv6Addr};

use warrant_common::{
    EventHeader, EventKind,
    event::{
        ARGV_BUF, ARGV_TRUNCATED, EXEC_EVENT_V1_SIZE, EXEC_FIXED, EXEC_PACKED_HEAD, ExecEvent, SCRIPT_BUF, SCRIPT_TRUNCATED, ExitEvent, CHANGE_BASE_OF_PATH, CHANGE_BASE_OF_PATH2, CHANGE_PATH2_IS_PATH,
        CHANGE_PATH2_OTHER_DIR, FILE_CHANGE_FIXED, FILE_CHANGE_PACKED_HEAD, FILE_OPEN_HEAD, FileChangeEvent, FileOp, FileOpenEvent, IoUringEvent, REQ_F_FIXED_FILE, NetEvent, PATH_BUF, PATH_RAW, PATH_TRUNCATED, RECORD_PACKED, RULE_GRANT_ENDED,
        RawPath, SocketCloseEvent, UNIX_AT_EXIT, UNIX_DELIVERED, UNIX_NOT_CANONICAL, UNIX_OP_SENDMSG, UNIX_SELF_PROTECTION, UNIX_VIA_ALIAS, UnixEvent,
        VIOLATION_BIND, VIOLATION_CONNECT, VIOLATION_EXEC_NO_NAME, VIOLATION_SENDMSG, VIOLATION_SOCKET, VIOLATION_SYSCALL,
        VIOLATION_TASKS, ViolationEvent,
    },
    policy,
};
use warrant_proto::v1::{self as pb, event::Event as Kind};

use crate::ids;

/// Why a record could not be decoded (counted, never silently dropped).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("record of kind {kind} has {len} bytes, expected {want}")]
    Size { kind: u32, len: usize, want: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
}

/// Decodes one ring-buffer record. `boot_to_wall_ns` is `wall clock - boot clock`
/// now, to place the kernel's boot-clock timestamp on the wall clock.
pub fn decode(record: &[u8], boot_to_wall_ns: i64) -> Result<pb::Event, DecodeError> {
    let header: Cow<'_, EventHeader> = read(record, 0)?;
    let kind = EventKind::from_u32(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    let body = match kind {
        EventKind::Exec => {
            let whole: Cow<'_, ExecEvent>;
            let e = if header.flags & RECORD_PACKED != 0 {
                ExecRecord::packed(record, header.kind)?
            } else {
                whole = read_from(record, header.kind, EXEC_EVENT_V1_SIZE)?;
                ExecRecord::whole(&whole)
            };
            let path = path_of(&e.path);
            let cwd = path_of(&e.cwd);
            let script_len = (e.script.len as usize).min(e.script.data.len());
            let script = c_str(&e.script.data[..script_len]);
            let script = if script.is_empty() { script } else { absolute_in(&script, &cwd.0) };
            Kind::Exec(pb::Exec {
                path: path.0,
                argv: decode_argv(e.argv.data, e.argv.len),
                cwd: cwd.0,
                truncated: path.1 || cwd.1 || e.argv.flags & ARGV_TRUNCATED != 0 || e.script.flags & SCRIPT_TRUNCATED != 0,
                script,
            })
        }
        EventKind::Exit => {
            let e: Cow<'_, ExitEvent> = read(record, header.kind)?;
            let signal = (e.exit_code & 0x7f) as i32;
            let code = if signal == 0 { ((e.exit_code >> 8) & 0xff) as i32 } else { 0 };
            Kind::Exit(pb::Exit { code, signal })
        }
        EventKind::FileOpen => {
            let e = read_open(record, header.kind)?;
            let (path, truncated) = path_of(&e.path);
            Kind::FileOpen(pb::FileOpen {
                path,
                access: access(e.open_flags).into(),
                flags: e.open_flags,
                error: if e.ret < 0 { -e.ret } else { 0 },
                unresolved: e.path.flags & PATH_RAW != 0,
                truncated,
            })
        }
        EventKind::FileChange => {
            let whole: Cow<'_, FileChangeEvent>;
            let change = if header.flags & RECORD_PACKED != 0 {
                ChangeRecord::packed(record, header.kind)?
            } else {
                whole = read(record, header.kind)?;
                ChangeRecord::whole(&whole)
            };
            Kind::FileChange(decode_file_change(&change))
        }
        EventKind::Violation => {
            let e: Cow<'_, ViolationEvent> = read(record, header.kind)?;
            Kind::Violation(decode_violation(&e))
        }
        EventKind::SocketClose => {
            let e: Cow<'_, SocketCloseEvent> = read(record, header.kind)?;
            let addr = |a: &[u8; 16]| match e.family {
                AF_INET => Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(),
                AF_INET6 => Ipv6Addr::from(*a).to_string(),
                _ => String::new(),
            };
            Kind::SocketClose(pb::SocketClose {
                family: if e.family == AF_INET6 { "inet6" } else { "inet" }.into(),
                local_addr: addr(&e.local_addr),
                local_port: u32::from(e.local_port),
                remote_addr: addr(&e.remote_addr),
                remote_port: u32::from(e.remote_port),
                bytes_sent: e.bytes_sent,
                bytes_received: e.bytes_received,
            })
        }
        EventKind::ExecFailed => {
            let e = read_open(record, header.kind)?;
            let (path, truncated) = path_of(&e.path);
            Kind::ExecFailed(pb::ExecFailed { path, error: -e.ret, truncated })
        }
        EventKind::IoUring => {
            let e: Cow<'_, IoUringEvent> = read(record, header.kind)?;
            Kind::IoUring(pb::IoUring {
                op: io_uring_op_name(e.opcode),
                opcode: e.opcode,
                fd: e.fd,
                fixed_file: e.req_flags & REQ_F_FIXED_FILE != 0,
                user_data: e.user_data,
            })
        }
        EventKind::UnixConnect => {
            let e: Cow<'_, UnixEvent> = read(record, header.kind)?;
            decode_unix(&e)
        }
        EventKind::Connect | EventKind::Bind | EventKind::Listen | EventKind::Accept | EventKind::Datagram => {
            let e: Cow<'_, NetEvent> = read(record, header.kind)?;
            let net = decode_net(&e);
            match kind {
                EventKind::Connect => Kind::Connect(net),
                EventKind::Datagram => Kind::Datagram(net),
                EventKind::Bind => Kind::Bind(net),
                EventKind::Listen => Kind::Listen(net),
                _ => Kind::Accept(net),
            }
        }
    };
    Ok(pb::Event {
        event: Some(body),
        time_unix_ns: (header.ktime_ns as i64).saturating_add(boot_to_wall_ns),
        grant: ids::grant(header.grant_id),
        session: ids::session(header.session_id),
        pid: header.pid,
        tid: header.tid,
        ppid: header.ppid,
        uid: header.uid,
        euid: header.euid,
        gid: header.gid,
        comm: c_str(&header.comm),
        cgroup_id: header.cgroup_id,
        ..Default::default()
    })
}

fn decode_violation(e: &ViolationEvent) -> pb::Violation {
    if e.op == VIOLATION_SYSCALL {
        let nr = u64::from_ne_bytes(e.addr[..8].try_into().unwrap_or_default());
        let arg0 = u64::from_ne_bytes(e.addr[8..].try_into().unwrap_or_default());
        let (op, detail) = refused_syscall(nr, arg0);
        return pb::Violation {
            op: op.into(),
            action: "deny".into(),
            rule: "self-protection".into(),
            detail,
            prevented: true,
            ..Default::default()
        };
    }
    if e.op == VIOLATION_EXEC_NO_NAME {
        let name = c_str(&e.addr);
        return pb::Violation {
            op: "exec".into(),
            action: "kill".into(),
            rule: "self-protection".into(),
            path: name.clone(),
            detail: format!(
                "a program with no name on disk ({name}: a memfd, or a deleted file run through /proc/PID/fd) goes around the exec rules; the process was killed before its first instruction"
            ),
            prevented: true,
            ..Default::default()
        };
    }
    if e.op == VIOLATION_TASKS {
        let max = u32::from_ne_bytes(e.addr[..4].try_into().unwrap_or_default());
        let then = if e.action == policy::ACTION_KILL_SESSION {
            "the session is killed (on_max_processes: kill-session)"
        } else {
            "the new task was killed before it ran; further refusals are counted in the session's report"
        };
        return pb::Violation {
            op: "fork".into(),
            action: action_name(e.action).into(),
            rule: "max_processes".into(),
            detail: format!("over the session's limit of {max} tasks: {then}"),
            prevented: true,
            policy: format!("slot {}", e.policy_slot),
            ..Default::default()
        };
    }
    if e.op == VIOLATION_SOCKET {
        let protocol = u32::from_ne_bytes(e.addr[..4].try_into().unwrap_or_default());
        let kind = if e.family == AF_PACKET { "packet" } else { "raw" };
        return pb::Violation {
            op: "socket".into(),
            action: "deny".into(),
            rule: "self-protection".into(),
            detail: format!(
                "a {kind} socket (family {}, type {}, protocol {protocol}) reaches peers around the network rules; the policy may allow it with raw_sockets: allow",
                e.family, e.port
            ),
            prevented: true,
            policy: format!("slot {}", e.policy_slot),
            ..Default::default()
        };
    }
    let (family, addr) = match e.family {
        AF_INET => ("inet", Ipv4Addr::new(e.addr[0], e.addr[1], e.addr[2], e.addr[3]).to_string()),
        AF_INET6 => ("inet6", Ipv6Addr::from(e.addr).to_string()),
        _ => ("", String::new()),
    };
    let (rule, detail) = match e.rule {
        0 => ("default".to_owned(), String::new()),
        RULE_GRANT_ENDED => ("on_expiry".to_owned(), "the grant expired; on_expiry: drop cuts the network".to_owned()),
        n if e.op == VIOLATION_BIND => (format!("bind[{n}]"), String::new()),
        n => (format!("network[{n}]"), String::new()),
    };
    pb::Violation {
        op: match e.op {
            VIOLATION_CONNECT => "connect",
            VIOLATION_SENDMSG => "sendmsg",
            VIOLATION_BIND => "bind",
            _ => "unknown",
        }
        .into(),
        action: action_name(e.action).into(),
        rule,
        family: family.into(),
        addr,
        port: u32::from(e.port),
        // The name is filled in by the writer, which knows the grant.
        policy: format!("slot {}", e.policy_slot),
        detail,
        prevented: e.action != policy::ACTION_LOG,
        ..Default::default()
    }
}

/// A unix connect: an allowed one is a `connect` of family "unix" (its
/// `remote_addr` the name); anything else a violation naming the rule.
fn decode_unix(e: &UnixEvent) -> Kind {
    let name = unix_name(e);
    let protocol = match e.sock_type {
        1 => "stream",
        2 => "dgram",
        5 => "seqpacket",
        _ => "",
    };
    let peer = unix_bytes(&e.peer, e.peer_len);
    if e.flags & UNIX_AT_EXIT != 0 && e.flags & UNIX_VIA_ALIAS == 0 {
        return Kind::Connect(pb::Net {
            family: "unix".into(),
            protocol: protocol.into(),
            remote_addr: name,
            error: if e.ret < 0 { -e.ret } else { 0 },
            peer,
            peer_pid: e.peer_pid,
            // The pipeline reads the peer's comm (the kernel has only its pid).
            peer_comm: String::new(),
            ..Default::default()
        });
    }
    let op = if e.op == UNIX_OP_SENDMSG { "sendmsg" } else { "connect" };
    let (rule, mut detail) = if e.rule == RULE_GRANT_ENDED {
        ("on_expiry".to_owned(), "the grant expired; on_expiry: drop cuts the session off".to_owned())
    } else if e.flags & UNIX_NOT_CANONICAL != 0 {
        (
            "self-protection".to_owned(),
            "a relative or non-canonical socket name (the kernel would resolve it where the rules cannot see); use the absolute path".to_owned(),
        )
    } else if e.flags & UNIX_SELF_PROTECTION != 0 {
        let what = if e.rule == 0 {
            "the warrant agent's own socket".to_owned()
        } else {
            let spawners = warrant_policy::protect::unix_spawners();
            let what = spawners.get(e.rule as usize - 1).map_or("a process spawner", |(_, w)| *w);
            format!("{what}: it starts processes outside the session; a policy's unix: rule may allow it")
        };
        ("self-protection".to_owned(), what)
    } else {
        (format!("unix[{}]", e.rule), String::new())
    };
    let delivered = e.flags & UNIX_DELIVERED != 0;
    if e.flags & UNIX_VIA_ALIAS != 0 {
        let what = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
        detail = if !delivered {
            format!(
                "reached {peer}{what} under another name (a symlink or a bind mount); the connect had happened, so the process was killed before it returned"
            )
        } else if e.op == UNIX_OP_SENDMSG {
            format!(
                "a datagram reached {peer}{what} under another name (a symlink or a bind mount); it was delivered, and the process was killed before the send returned"
            )
        } else {
            format!(
                "a connect that did not come from connect(2) (io_uring) reached {peer}{what}; the connection was queued, and the process was killed before it could use it"
            )
        };
    }
    Kind::Violation(pb::Violation {
        op: op.into(),
        action: action_name(e.action).into(),
        rule,
        family: "unix".into(),
        // Where the name passed is not at hand, the socket it reached.
        addr: if delivered { peer } else { name },
        policy: format!("slot {}", e.policy_slot),
        detail,
        // A datagram that went around the rules was delivered before the kill.
        prevented: e.action != policy::ACTION_LOG && !(delivered && e.op == UNIX_OP_SENDMSG),
        ..Default::default()
    })
}

/// The name a unix event is about (see [`unix_bytes`]).
fn unix_name(e: &UnixEvent) -> String {
    unix_bytes(&e.path, e.len)
}

/// A unix socket name for people: a pathname as is (up to its NUL), an abstract
/// one (leading NUL) as `@name`, bytes that are not printable escaped.
fn unix_bytes(path: &[u8], len: u32) -> String {
    let len = (len as usize).min(path.len());
    let bytes = &path[..len];
    let show = |b: &[u8]| b.escape_ascii().to_string();
    if bytes.first() == Some(&0) {
        format!("@{}", show(bytes.get(1..).unwrap_or_default()))
    } else {
        let bytes = bytes.split(|b| *b == 0).next().unwrap_or_default();
        match std::str::from_utf8(bytes) {
            Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
            _ => show(bytes),
        }
    }
}

/// The name of a syscall self-protection refused, and what its first argument says.
/// Signals are refused by Landlock's scope; everything else by the seccomp filter
/// built from `warrant_common::syscalls::TABLE`, which names them.
fn refused_syscall(nr: u64, arg0: u64) -> (&'static str, String) {
    let signal_to = |what: &str| format!("{what} {}", arg0 as i64);
    match nr {
        62 => ("kill", signal_to("signal to pid")),
        200 => ("tkill", signal_to("signal to thread")),
        234 => ("tgkill", signal_to("signal to pid")),
        129 => ("rt_sigqueueinfo", signal_to("signal to pid")),
        297 => ("rt_tgsigqueueinfo", signal_to("signal to pid")),
        424 => ("pidfd_send_signal", signal_to("signal through pidfd")),
        435 => ("clone3", "a child in another cgroup (CLONE_INTO_CGROUP)".into()),
        _ => match warrant_common::syscalls::row_of(nr) {
            Some(row) => (row.name, row.reason.describe().to_owned()),
            None => ("syscall", format!("number {nr}")),
        },
    }
}

/// Reads a `T` from the start of `record`, checking the size. `kind` is 0 for the
/// header itself.
/// [`read`] for a record type that grew at its end: `min` bytes are enough, and the
/// fields past the record's end read as zero.
fn read_from<T: Copy>(record: &[u8], kind: u32, min: usize) -> Result<Cow<'_, T>, DecodeError> {
    let want = size_of::<T>();
    if record.len() >= want {
        return read(record, kind);
    }
    if record.len() < min {
        return Err(DecodeError::Size { kind, len: record.len(), want: min });
    }
    let mut buf = vec![0u8; want];
    buf[..record.len()].copy_from_slice(record);
    Ok(Cow::Owned(read::<T>(&buf, kind)?.into_owned()))
}

/// A file change: names made absolute against the directory the kernel resolved.
fn decode_file_change(e: &ChangeRecord<'_>) -> pb::FileChange {
    let op = FileOp::from_u32(e.op).map_or("unknown", FileOp::name);
    let (base, base_cut) = path_of(&e.base);
    // A base the kernel could not resolve (a closed descriptor) leaves names as passed.
    let base_ok = !base.is_empty() && !base_cut;
    let (mut path, mut truncated) = path_of(&e.path);
    let mut unresolved = false;
    if e.how & CHANGE_BASE_OF_PATH != 0 {
        if base_ok { path = absolute_in(&path, &base) } else { unresolved = true }
    }
    let (mut second, cut) = path_of(&e.path2);
    truncated |= cut || (base_cut && e.how & (CHANGE_BASE_OF_PATH | CHANGE_BASE_OF_PATH2) != 0);
    if e.how & CHANGE_PATH2_IS_PATH != 0 {
        if e.how & CHANGE_BASE_OF_PATH2 != 0 {
            if base_ok { second = absolute_in(&second, &base) } else { unresolved = true }
        } else if e.how & CHANGE_PATH2_OTHER_DIR != 0 {
            unresolved = true;
        }
    }
    let xattr = matches!(FileOp::from_u32(e.op), Some(FileOp::Setxattr | FileOp::Removexattr));
    let (target, name) = if xattr { (String::new(), second) } else { (second, String::new()) };
    let is = |o: FileOp| e.op == o as u32;
    pb::FileChange {
        op: op.into(),
        path,
        target,
        name,
        error: if e.ret < 0 { -e.ret } else { 0 },
        mode: if is(FileOp::Chmod) || is(FileOp::Mkdir) || is(FileOp::Mknod) { e.mode } else { 0 },
        uid: (is(FileOp::Chown) && e.uid != u32::MAX).then_some(e.uid),
        gid: (is(FileOp::Chown) && e.gid != u32::MAX).then_some(e.gid),
        flags: e.flags,
        size: if is(FileOp::Mknod) { 0 } else { e.size },
        dev: if is(FileOp::Mknod) { e.size } else { 0 },
        unresolved,
        truncated,
    }
}

/// A name as the process passed it, made absolute against the directory it was
/// relative to (lexically: `.` and `..` removed, links not followed). An absolute
/// name is only cleaned.
fn absolute_in(name: &str, cwd: &str) -> String {
    let joined = std::path::Path::new(cwd).join(name);
    let mut out = std::path::PathBuf::from("/");
    for c in joined.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(part) => out.push(part),
            _ => {}
        }
    }
    out.to_string_lossy().into_owned()
}

/// The record as a `T`: in place when it is aligned for `T` (ring buffer records
/// are 8-byte aligned, so always in practice: a file record is 4.4 KB, not worth
/// copying), a copy otherwise.
fn read<T: Copy>(record: &[u8], kind: u32) -> Result<Cow<'_, T>, DecodeError> {
    let want = size_of::<T>();
    if record.len() < want {
        return Err(if kind == 0 {
            DecodeError::Short(record.len())
        } else {
            DecodeError::Size { kind, len: record.len(), want }
        });
    }
    let ptr = record.as_ptr().cast::<T>();
    if ptr.is_aligned() {
        // SAFETY: the length and alignment are checked; T is a repr(C) Copy type of
        // integers and arrays of them, valid for any bytes; it borrows `record`.
        return Ok(Cow::Borrowed(unsafe { &*ptr }));
    }
    // SAFETY: the length is checked; T is a repr(C) Copy type valid for any bytes.
    Ok(Cow::Owned(unsafe { ptr.read_unaligned() }))
}

/// A path's parts: `len` bytes of `data` in use (at most all of it), `PATH_*` flags.
struct PathPart<'a> {
    len: u32,
    flags: u32,
    data: &'a [u8],
}

impl<'a> From<&'a RawPath> for PathPart<'a> {
    fn from(p: &'a RawPath) -> Self {
        Self { len: p.len, flags: p.flags, data: &p.data }
    }
}

fn u32_at(record: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([record[off], record[off + 1], record[off + 2], record[off + 3]])
}

/// A `file_open`/`exec_failed` record's fields, borrowed from the record. These
/// are sent cut after the path's bytes in use ([`FILE_OPEN_HEAD`]), so they are
/// read field by field at their `FileOpenEvent` offsets rather than as a struct.
struct OpenRecord<'a> {
    open_flags: u32,
    ret: i32,
    path: PathPart<'a>,
}

fn read_open(record: &[u8], kind: u32) -> Result<OpenRecord<'_>, DecodeError> {
    // The path is the record's last field, so a cut record and a whole one both
    // have its bytes right after FILE_OPEN_HEAD: one variable part. A record that
    // claims more path than it carries was cut wrong and is refused (counted as
    // undecodable) rather than read as a shorter path.
    let [path] = unpack(record, kind, FILE_OPEN_HEAD, [(offset_of!(FileOpenEvent, path), PATH_BUF)])?;
    Ok(OpenRecord {
        open_flags: u32_at(record, offset_of!(FileOpenEvent, open_flags)),
        ret: u32_at(record, offset_of!(FileOpenEvent, ret)) as i32,
        path,
    })
}

/// A `file_change` record, from the whole struct or a packed record
/// (`RECORD_PACKED`: the fixed fields, three (len, flags) pairs, the bytes).
struct ChangeRecord<'a> {
    op: u32,
    ret: i32,
    how: u32,
    flags: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    path: PathPart<'a>,
    path2: PathPart<'a>,
    base: PathPart<'a>,
}

impl<'a> ChangeRecord<'a> {
    fn whole(e: &'a FileChangeEvent) -> Self {
        Self {
            op: e.op,
            ret: e.ret,
            how: e.how,
            flags: e.flags,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            size: e.size,
            path: (&e.path).into(),
            path2: (&e.path2).into(),
            base: (&e.base).into(),
        }
    }

    fn packed(record: &'a [u8], kind: u32) -> Result<Self, DecodeError> {
        let head = |i: usize| FILE_CHANGE_FIXED + i * offset_of!(RawPath, data);
        let [p, p2, b] = unpack(record, kind, FILE_CHANGE_PACKED_HEAD, [0, 1, 2].map(|i| (head(i), PATH_BUF)))?;
        let f = |at: usize| u32_at(record, at);
        Ok(Self {
            op: f(offset_of!(FileChangeEvent, op)),
            ret: f(offset_of!(FileChangeEvent, ret)) as i32,
            how: f(offset_of!(FileChangeEvent, how)),
            flags: f(offset_of!(FileChangeEvent, flags)),
            mode: f(offset_of!(FileChangeEvent, mode)),
            uid: f(offset_of!(FileChangeEvent, uid)),
            gid: f(offset_of!(FileChangeEvent, gid)),
            size: u64::from(f(offset_of!(FileChangeEvent, size)))
                | u64::from(f(offset_of!(FileChangeEvent, size) + 4)) << 32,
            path: p,
            path2: p2,
            base: b,
        })
    }
}

/// The variable parts of a packed record (`RECORD_PACKED`): for each, in the order
/// their bytes follow `head` bytes of fixed fields, where its `len` and `flags` (two
/// u32s) sit and the most bytes it may hold. A length past that or past the record's
/// end refuses the record.
fn unpack<'a, const N: usize>(
    record: &'a [u8],
    kind: u32,
    head: usize,
    parts: [(usize, usize); N],
) -> Result<[PathPart<'a>; N], DecodeError> {
    let short = |want| DecodeError::Size { kind, len: record.len(), want };
    if record.len() < head {
        return Err(short(head));
    }
    let mut at = head;
    let mut out = [(); N].map(|()| PathPart { len: 0, flags: 0, data: &record[..0] });
    for (part, (off, max)) in out.iter_mut().zip(parts) {
        let (len, flags) = (u32_at(record, off), u32_at(record, off + 4));
        let end = at + len as usize;
        if len as usize > max || end > record.len() {
            return Err(short(end));
        }
        *part = PathPart { len, flags, data: &record[at..end] };
        at = end;
    }
    Ok(out)
}

/// An `exec` record, from the whole struct (or its older, shorter layout) or a
/// packed record. `argv` and `script` are held as parts too (`len` bytes in use,
/// their `*_flags`).
struct ExecRecord<'a> {
    path: PathPart<'a>,
    cwd: PathPart<'a>,
    argv: PathPart<'a>,
    script: PathPart<'a>,
}

impl<'a> ExecRecord<'a> {
    fn whole(e: &'a ExecEvent) -> Self {
        Self {
            path: (&e.path).into(),
            cwd: (&e.cwd).into(),
            argv: PathPart { len: e.argv_len, flags: e.argv_flags, data: &e.argv },
            script: PathPart { len: e.script_len, flags: e.script_flags, data: &e.script },
        }
    }

    fn packed(record: &'a [u8], kind: u32) -> Result<Self, DecodeError> {
        let [path, cwd, argv, script] = unpack(
            record,
            kind,
            EXEC_PACKED_HEAD,
            [
                (EXEC_FIXED, PATH_BUF),
                (EXEC_FIXED + 8, PATH_BUF),
                (offset_of!(ExecEvent, argv_len), ARGV_BUF),
                (EXEC_FIXED + 16, SCRIPT_BUF),
            ],
        )?;
        Ok(Self { path, cwd, argv, script })
    }
}

/// A kernel path to a string, plus whether it was cut short.
#[cfg(test)]
fn decode_path(p: &RawPath) -> (String, bool) {
    path_of(&p.into())
}

/// `decode_path` from a path's parts.
fn path_of(p: &PathPart<'_>) -> (String, bool) {
    let len = (p.len as usize).min(p.data.len());
    let data = &p.data[..len];
    let truncated = p.flags & PATH_TRUNCATED != 0;
    if p.flags & PATH_RAW != 0 {
        return (c_str(data), truncated);
    }
    // Components come leaf first, each NUL-terminated: read them from the end.
    let mut path = String::with_capacity(len + 4);
    if truncated {
        path.push_str("...");
    }
    let mut any = false;
    for part in data.rsplit(|b| *b == 0).filter(|c| !c.is_empty()) {
        path.push('/');
        path.push_str(&String::from_utf8_lossy(part));
        any = true;
    }
    if !any {
        path.push('/');
    }
    (path, truncated)
}

fn decode_argv(argv: &[u8], len: u32) -> Vec<String> {
    let len = (len as usize).min(argv.len());
    let data = &argv[..len];
    let data = data.strip_suffix(&[0]).unwrap_or(data);
    if data.is_empty() {
        return Vec::new();
    }
    data.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// `IORING_OP_*` names by number, lower case, as of Linux 6.18 (`enum io_uring_op`).
const IO_URING_OPS: [&str; 63] = [
    "nop", "readv", "writev", "fsync", "read_fixed", "write_fixed", "poll_add", "poll_remove",
    "sync_file_range", "sendmsg", "recvmsg", "timeout", "timeout_remove", "accept", "async_cancel",
    "link_timeout", "connect", "fallocate", "openat", "close", "files_update", "statx", "read", "write",
    "fadvise", "madvise", "send", "recv", "openat2", "epoll_ctl", "splice", "provide_buffers",
    "remove_buffers", "tee", "shutdown", "renameat", "unlinkat", "mkdirat", "symlinkat", "linkat",
    "msg_ring", "fsetxattr", "setxattr", "fgetxattr", "getxattr", "socket", "uring_cmd", "send_zc",
    "sendmsg_zc", "read_multishot", "waitid", "futex_wait", "futex_wake", "futex_waitv",
    "fixed_fd_install", "ftruncate", "bind", "listen", "recv_zc", "epoll_wait", "readv_fixed",
    "writev_fixed", "pipe",
];

/// The name of an io_uring opcode, or `op N` for one newer than this build.
fn io_uring_op_name(opcode: u32) -> String {
    match IO_URING_OPS.get(opcode as usize) {
        Some(name) => (*name).to_owned(),
        None => format!("op {opcode}"),
    }
}

/// The policy-file name of a kernel action number.
pub fn action_name(action: u32) -> &'static str {
    match action {
        policy::ACTION_ALLOW => "allow",
        policy::ACTION_LOG => "log",
        policy::ACTION_DENY => "deny",
        policy::ACTION_KILL => "kill",
        policy::ACTION_KILL_SESSION => "kill-session",
        policy::ACTION_DROP => "drop",
        _ => "unknown",
    }
}

fn access(flags: u32) -> &'static str {
    const O_PATH: u32 = 0o10_000_000;
    if flags & O_PATH != 0 {
        return "path";
    }
    match flags & 3 {
        0 => "read",
        1 => "write",
        _ => "read-write",
    }
}

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const AF_PACKET: u16 = 17;

fn decode_net(e: &NetEvent) -> pb::Net {
    let addr = |a: &[u8; 16]| match e.family {
        AF_INET => Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(),
        AF_INET6 => Ipv6Addr::from(*a).to_string(),
        _ => String::new(),
    };
    pb::Net {
        family: match e.family {
            AF_INET => "inet",
            AF_INET6 => "inet6",
            _ => "other",
        }
        .into(),
        protocol: match e.sock_type {
            1 => "tcp",
            2 => "udp",
            3 => "raw",
            0 => "",
            _ => "other",
        }
        .into(),
        local_addr: addr(&e.local_addr),
        local_port: u32::from(e.local_port),
        remote_addr: addr(&e.remote_addr),
        remote_port: u32::from(e.remote_port),
        error: if e.ret < 0 { -e.ret } else { 0 },
        ..Default::default()
    }
}

fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use warrant_common::event::PATH_BUF;

    use super::*;

    fn raw_path(bytes: &[u8], flags: u32) -> RawPath {
        let mut p = RawPath { len: bytes.len() as u32, flags, data: [0; PATH_BUF] };
        p.data[..bytes.len()].copy_from_slice(bytes);
        p
    }

    fn as_bytes<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a repr(C) Copy value.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn header(kind: EventKind) -> EventHeader {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"bash");
        EventHeader {
            kind: kind as u32,
            ktime_ns: 5_000,
            session_id: 0xabc,
            grant_id: 0xdef,
            pid: 42,
            tid: 43,
            ppid: 41,
            uid: 1000,
            euid: 0,
            gid: 1000,
            comm,
            ..Default::default()
        }
    }

    #[test]
    fn components_are_reversed_into_a_path() {
        assert_eq!(decode_path(&raw_path(b"passwd\0etc\0", 0)), ("/etc/passwd".into(), false));
        assert_eq!(decode_path(&raw_path(b"", 0)), ("/".into(), false));
        assert_eq!(decode_path(&raw_path(b"c\0b\0", PATH_TRUNCATED)), (".../b/c".into(), true));
        assert_eq!(decode_path(&raw_path(b"rel/x\0", PATH_RAW)), ("rel/x".into(), false));
    }

    /// The kernel sends `file_open` and `exec_failed` cut after the path's bytes:
    /// decoded the same as the whole struct, and a record that claims more path
    /// than it carries is refused, not read as a shorter path.
    #[test]
    fn open_records_cut_after_their_path_decode_as_whole_ones() {
        for kind in [EventKind::FileOpen, EventKind::ExecFailed] {
            let e = FileOpenEvent {
                header: header(kind),
                open_flags: 0o1,
                ret: -13,
                path: raw_path(b"shadow\0etc\0", 0),
            };
            let whole = as_bytes(&e);
            let cut = &whole[..FILE_OPEN_HEAD + 11];
            assert_eq!(decode(cut, 0).unwrap(), decode(&whole, 0).unwrap());
            match decode(cut, 0).unwrap().event {
                Some(Kind::FileOpen(f)) => {
                    assert_eq!((f.path.as_str(), f.access.as_str(), f.error), ("/etc/shadow", "write", 13));
                }
                Some(Kind::ExecFailed(f)) => assert_eq!((f.path.as_str(), f.error), ("/etc/shadow", 13)),
                other => panic!("{kind:?} decoded as {other:?}"),
            }
            assert_eq!(
                decode(&whole[..FILE_OPEN_HEAD + 10], 0),
                Err(DecodeError::Size { kind: kind as u32, len: FILE_OPEN_HEAD + 10, want: FILE_OPEN_HEAD + 11 })
            );
            assert!(matches!(decode(&whole[..FILE_OPEN_HEAD - 1], 0), Err(DecodeError::Size { .. })));
        }
    }

    #[test]
    fn io_uring_submissions_name_their_op() {
        let e = IoUringEvent {
            header: header(EventKind::IoUring),
            opcode: 16,
            fd: 5,
            user_data: 0xfeed,
            req_flags: REQ_F_FIXED_FILE,
            _pad: 0,
        };
        let Some(Kind::IoUring(u)) = decode(&as_bytes(&e), 0).unwrap().event else { panic!("not an io_uring event") };
        assert_eq!(u, pb::IoUring { op: "connect".into(), opcode: 16, fd: 5, fixed_file: true, user_data: 0xfeed });
        assert_eq!(io_uring_op_name(18), "openat");
        assert_eq!(io_uring_op_name(62), "pipe");
        assert_eq!(io_uring_op_name(63), "op 63");
    }

    #[test]
    fn exit_code_and_signal() {
        let mut e = ExitEvent { header: header(EventKind::Exit), exit_code: 3 << 8, _pad: 0 };
        let ev = decode(&as_bytes(&e), 1_000).unwrap();
        assert_eq!(ev.event, Some(Kind::Exit(pb::Exit { code: 3, signal: 0 })));
        assert_eq!(ev.time_unix_ns, 6_000);
        assert_eq!((ev.pid, ev.ppid, ev.comm.as_str()), (42, 41, "bash"));
        assert_eq!(ev.session, ids::session(0xabc));
        e.exit_code = 9;
        let ev = decode(&as_bytes(&e), 0).unwrap();
        assert_eq!(ev.event, Some(Kind::Exit(pb::Exit { code: 0, signal: 9 })));
    }

    #[test]
    fn net_addresses_and_errors() {
        let mut e = NetEvent {
            header: header(EventKind::Connect),
            family: AF_INET,
            local_port: 40000,
            remote_port: 5432,
            sock_type: 1,
            ret: -111,
            ..Default::default()
        };
        e.remote_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
        e.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let Some(Kind::Connect(n)) = decode(&as_bytes(&e), 0).unwrap().event else { panic!("not a connect") };
        assert_eq!(n.remote_addr, "10.0.0.1");
        assert_eq!(n.remote_port, 5432);
        assert_eq!(n.local_addr, "127.0.0.1");
        assert_eq!(n.protocol, "tcp");
        assert_eq!(n.error, 111);
        e.family = AF_INET6;
        e.remote_addr = Ipv6Addr::LOCALHOST.octets();
        let Some(Kind::Connect(n)) = decode(&as_bytes(&e), 0).unwrap().event else { panic!("not a connect") };
        assert_eq!((n.family.as_str(), n.remote_addr.as_str()), ("inet6", "::1"));
    }

    fn change(op: FileOp, how: u32, path: RawPath, path2: RawPath, base: RawPath) -> FileChangeEvent {
        FileChangeEvent {
            header: header(EventKind::FileChange),
            op: op as u32,
            ret: 0,
            how,
            flags: 0,
            mode: 0,
            uid: u32::MAX,
            gid: u32::MAX,
            _pad: 0,
            size: 0,
            path,
            path2,
            base,
        }
    }

    /// `e` as the kernel sends it: packed (see `RECORD_PACKED`).
    fn packed(e: &FileChangeEvent) -> Vec<u8> {
        let mut e = *e;
        e.header.flags |= RECORD_PACKED;
        let whole = as_bytes(&e);
        let mut out = whole[..FILE_CHANGE_FIXED].to_vec();
        let paths = [&e.path, &e.path2, &e.base];
        for p in paths {
            out.extend_from_slice(&p.len.to_ne_bytes());
            out.extend_from_slice(&p.flags.to_ne_bytes());
        }
        for p in paths {
            out.extend_from_slice(&p.data[..p.len as usize]);
        }
        out
    }

    /// Decodes `e` both as the whole struct and packed, which must agree.
    fn file_change(e: &FileChangeEvent) -> pb::FileChange {
        let Some(Kind::FileChange(c)) = decode(&as_bytes(e), 0).unwrap().event else { panic!("not a file_change") };
        let Some(Kind::FileChange(p)) = decode(&packed(e), 0).unwrap().event else { panic!("not a file_change") };
        assert_eq!(c, p, "whole and packed records decode differently");
        c
    }

    #[test]
    fn a_packed_change_that_claims_more_than_it_carries_is_refused() {
        let e = change(
            FileOp::Rename,
            CHANGE_PATH2_IS_PATH,
            raw_path(b"/a/b\0", PATH_RAW),
            raw_path(b"/c/d\0", PATH_RAW),
            raw_path(b"", PATH_RAW),
        );
        let bytes = packed(&e);
        assert_eq!(bytes.len(), FILE_CHANGE_PACKED_HEAD + 10);
        let kind = EventKind::FileChange as u32;
        assert_eq!(
            decode(&bytes[..bytes.len() - 1], 0),
            Err(DecodeError::Size { kind, len: bytes.len() - 1, want: bytes.len() })
        );
        assert!(matches!(decode(&bytes[..FILE_CHANGE_PACKED_HEAD - 1], 0), Err(DecodeError::Size { .. })));
        // A length past any path buffer is refused even when the bytes are there.
        let mut huge = bytes.clone();
        huge[FILE_CHANGE_FIXED..FILE_CHANGE_FIXED + 4].copy_from_slice(&(PATH_BUF as u32 + 1).to_ne_bytes());
        huge.resize(FILE_CHANGE_PACKED_HEAD + PATH_BUF + 16, 0);
        assert!(matches!(decode(&huge, 0), Err(DecodeError::Size { .. })));
    }

    #[test]
    fn file_changes_are_made_absolute_against_the_kernels_base() {
        let none = || raw_path(b"", PATH_RAW);
        // rm -r: unlinkat(dirfd of /tmp/w, "f")
        let e = change(FileOp::Unlink, CHANGE_BASE_OF_PATH, raw_path(b"f\0", PATH_RAW), none(), raw_path(b"w\0tmp\0", 0));
        let c = file_change(&e);
        assert_eq!((c.op.as_str(), c.path.as_str(), c.unresolved), ("unlink", "/tmp/w/f", false));
        // mv ../a /abs/b from /tmp/w: only the first name is relative.
        let e = change(
            FileOp::Rename,
            CHANGE_PATH2_IS_PATH | CHANGE_BASE_OF_PATH,
            raw_path(b"../a\0", PATH_RAW),
            raw_path(b"/abs/b\0", PATH_RAW),
            raw_path(b"w\0tmp\0", 0),
        );
        let c = file_change(&e);
        assert_eq!((c.path.as_str(), c.target.as_str()), ("/tmp/a", "/abs/b"));
        // Both relative to the same directory.
        let mut e = change(
            FileOp::Link,
            CHANGE_PATH2_IS_PATH | CHANGE_BASE_OF_PATH | CHANGE_BASE_OF_PATH2,
            raw_path(b"a\0", PATH_RAW),
            raw_path(b"./b\0", PATH_RAW),
            raw_path(b"etc\0", 0),
        );
        assert_eq!((file_change(&e).path.as_str(), file_change(&e).target.as_str()), ("/etc/a", "/etc/b"));
        // ... to different directories: the second is left as passed, and says so.
        e.how = CHANGE_PATH2_IS_PATH | CHANGE_BASE_OF_PATH | CHANGE_PATH2_OTHER_DIR;
        let c = file_change(&e);
        assert_eq!((c.path.as_str(), c.target.as_str(), c.unresolved), ("/etc/a", "./b", true));
        // A symlink's text is never resolved; an empty name is the descriptor itself.
        let e = change(
            FileOp::Symlink,
            CHANGE_BASE_OF_PATH,
            raw_path(b"l\0", PATH_RAW),
            raw_path(b"../../x\0", PATH_RAW),
            raw_path(b"tmp\0", 0),
        );
        assert_eq!((file_change(&e).path.as_str(), file_change(&e).target.as_str()), ("/tmp/l", "../../x"));
        let e = change(FileOp::Utimes, CHANGE_BASE_OF_PATH, none(), none(), raw_path(b"f\0tmp\0", 0));
        assert_eq!(file_change(&e).path, "/tmp/f");
        // A base the kernel could not read leaves the name as passed.
        let e = change(FileOp::Mkdir, CHANGE_BASE_OF_PATH, raw_path(b"d\0", PATH_RAW), none(), raw_path(b"", PATH_TRUNCATED));
        let c = file_change(&e);
        assert_eq!((c.path.as_str(), c.unresolved, c.truncated), ("d", true, true));
    }

    #[test]
    fn file_change_fields_by_op() {
        let none = || raw_path(b"", PATH_RAW);
        let mut e = change(FileOp::Chown, 0, raw_path(b"/etc/x\0", PATH_RAW), none(), none());
        e.uid = 0;
        let c = file_change(&e);
        assert_eq!((c.uid, c.gid), (Some(0), None), "u32::MAX is 'unchanged'");
        let mut e = change(FileOp::Setxattr, 0, raw_path(b"f\0tmp\0", 0), raw_path(b"security.capability\0", PATH_RAW), none());
        e.size = 20;
        e.ret = -1;
        let c = file_change(&e);
        assert_eq!((c.path.as_str(), c.name.as_str(), c.target.as_str()), ("/tmp/f", "security.capability", ""));
        assert_eq!((c.size, c.error), (20, 1));
        let mut e = change(FileOp::Mknod, 0, raw_path(b"/dev/x\0", PATH_RAW), none(), none());
        (e.mode, e.size) = (0o60644, 0x0801);
        let c = file_change(&e);
        assert_eq!((c.mode, c.dev, c.size), (0o60644, 0x0801, 0));
        e.op = 99;
        assert_eq!(file_change(&e).op, "unknown");
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert_eq!(decode(&[1, 2, 3], 0), Err(DecodeError::Short(3)));
        let mut h = header(EventKind::Exec);
        assert!(matches!(decode(&as_bytes(&h), 0), Err(DecodeError::Size { kind: 1, .. })));
        h.kind = 77;
        assert_eq!(decode(&as_bytes(&h), 0), Err(DecodeError::UnknownKind(77)));
    }

    /// A script's name is made absolute against the exec's cwd; a record of the
    /// layout before `script` (from an older agent's programs, still in a pinned
    /// ring) decodes with none.
    #[test]
    fn exec_records_carry_the_script_and_old_records_still_decode() {
        // SAFETY: ExecEvent is repr(C) plain data; all zeros is a valid value.
        let mut e: ExecEvent = unsafe { std::mem::zeroed() };
        e.header = header(EventKind::Exec);
        e.path = raw_path(b"/usr/bin/bash", PATH_RAW);
        e.cwd = raw_path(b"/srv/app", PATH_RAW);
        let name = b"./bin/../deploy.sh";
        e.script[..name.len()].copy_from_slice(name);
        e.script_len = name.len() as u32;
        let Ok(pb::Event { event: Some(Kind::Exec(x)), .. }) = decode(&as_bytes(&e), 0) else { panic!("not an exec") };
        assert_eq!((x.path.as_str(), x.script.as_str(), x.truncated), ("/usr/bin/bash", "/srv/app/deploy.sh", false));
        e.script_flags = SCRIPT_TRUNCATED;
        let Ok(pb::Event { event: Some(Kind::Exec(x)), .. }) = decode(&as_bytes(&e), 0) else { panic!("not an exec") };
        assert!(x.truncated);
        let old = &as_bytes(&e)[..EXEC_EVENT_V1_SIZE];
        let Ok(pb::Event { event: Some(Kind::Exec(x)), .. }) = decode(old, 0) else { panic!("an old record must decode") };
        assert_eq!((x.path.as_str(), x.script.as_str()), ("/usr/bin/bash", ""));
        assert!(matches!(decode(&old[..EXEC_EVENT_V1_SIZE - 1], 0), Err(DecodeError::Size { .. })));
        assert_eq!(absolute_in("/abs/x.sh", "/srv"), "/abs/x.sh");
        assert_eq!(absolute_in("../../../x", "/a"), "/x");
    }

    /// An exec as the kernel sends it, packed: decoded the same as the whole struct;
    /// lengths that run past the record, or past their buffer, refuse it.
    #[test]
    fn packed_exec_records_decode_as_whole_ones() {
        // SAFETY: ExecEvent is repr(C) plain data; all zeros is a valid value.
        let mut e: ExecEvent = unsafe { std::mem::zeroed() };
        e.header = header(EventKind::Exec);
        e.path = raw_path(b"bash\0bin\0usr\0", 0);
        e.cwd = raw_path(b"app\0srv\0", 0);
        let argv = b"bash\0-c\0echo hi\0";
        e.argv[..argv.len()].copy_from_slice(argv);
        e.argv_len = argv.len() as u32;
        let name = b"./deploy.sh";
        e.script[..name.len()].copy_from_slice(name);
        e.script_len = name.len() as u32;
        let whole = as_bytes(&e);
        let mut packed = whole[..EXEC_FIXED].to_vec();
        packed[offset_of!(EventHeader, flags)..][..4].copy_from_slice(&RECORD_PACKED.to_ne_bytes());
        for (len, flags) in [(e.path.len, e.path.flags), (e.cwd.len, e.cwd.flags), (e.script_len, e.script_flags)] {
            packed.extend_from_slice(&len.to_ne_bytes());
            packed.extend_from_slice(&flags.to_ne_bytes());
        }
        packed.extend_from_slice(&e.path.data[..e.path.len as usize]);
        packed.extend_from_slice(&e.cwd.data[..e.cwd.len as usize]);
        packed.extend_from_slice(argv);
        packed.extend_from_slice(name);
        assert_eq!(packed.len(), EXEC_PACKED_HEAD + 13 + 8 + argv.len() + name.len());
        let Some(Kind::Exec(x)) = decode(&packed, 0).unwrap().event else { panic!("not an exec") };
        let Some(Kind::Exec(y)) = decode(&whole, 0).unwrap().event else { panic!("not an exec") };
        assert_eq!(x, y);
        assert_eq!((x.path.as_str(), x.cwd.as_str(), x.script.as_str()), ("/usr/bin/bash", "/srv/app", "/srv/app/deploy.sh"));
        assert_eq!(x.argv, ["bash", "-c", "echo hi"]);
        assert!(matches!(decode(&packed[..packed.len() - 1], 0), Err(DecodeError::Size { .. })));
        let mut huge = packed.clone();
        huge[offset_of!(ExecEvent, argv_len)..][..4].copy_from_slice(&(ARGV_BUF as u32 + 1).to_ne_bytes());
        huge.resize(EXEC_PACKED_HEAD + 2 * ARGV_BUF, 0);
        assert!(matches!(decode(&huge, 0), Err(DecodeError::Size { .. })));
    }

    proptest! {
        /// Whatever the kernel writes into argv, decoding never panics and never
        /// invents arguments containing NUL.
        #[test]
        fn argv_decoding_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..600), len in 0u32..700) {
            let mut buf = [0u8; 512];
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            for a in decode_argv(&buf, len) {
                prop_assert!(!a.contains('\0'));
            }
        }

        /// Paths made of components round-trip through the leaf-first encoding.
        #[test]
        fn paths_round_trip(parts in proptest::collection::vec("[a-z0-9._-]{1,20}", 0..12)) {
            let mut enc = Vec::new();
            for p in parts.iter().rev() {
                enc.extend_from_slice(p.as_bytes());
                enc.push(0);
            }
            let (path, truncated) = decode_path(&raw_path(&enc, 0));
            prop_assert_eq!(path, format!("/{}", parts.join("/")));
            prop_assert!(!truncated);
        }
    }
}
