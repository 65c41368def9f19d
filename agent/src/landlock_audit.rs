//! Landlock's own account of what it refused, read from the kernel's audit
//! subsystem: the path the kernel resolved (through symlinks, directory descriptors
//! and working directories the agent can no longer see), the domain that refused it
//! and the process that asked.
//!
//! Landlock (Linux 6.15+, ABI 7) writes an `AUDIT_LANDLOCK_ACCESS` record for each
//! refusal of a domain created with logging on (see `launch::sandbox`: sessions ask
//! for `LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON`, since the command is exec'd after the
//! domain is made), an `AUDIT_LANDLOCK_DOMAIN` record the first time a domain refuses
//! anything (naming the pid that created it: the session's first process), and, in a
//! task with an audit context, the `AUDIT_SYSCALL` record of the call. The three share
//! one event serial. This module reads them from the audit multicast group (it never
//! takes the audit daemon's place: auditd, if any, keeps receiving everything) and
//! turns each refusal into a [`Denial`].
//!
//! Audit must be enabled for Landlock to write anything; [`AuditReader::open`]
//! enables it when it is off (and raises a small backlog limit), and says so. See
//! docs/kernel.md §13 for what was measured.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Whether this agent reads Landlock's refusals, so sessions should ask Landlock to
/// log them (set once at start).
static LOGGING: AtomicBool = AtomicBool::new(false);

/// Records whether the reader runs (see [`logging`]).
pub fn set_logging(on: bool) {
    LOGGING.store(on, Ordering::Relaxed);
}

/// Whether sessions' Landlock domains should log their refusals.
pub fn logging() -> bool {
    LOGGING.load(Ordering::Relaxed)
}

/// `NETLINK_AUDIT`.
const NETLINK_AUDIT: libc::c_int = 9;
/// The read-only multicast group (`AUDIT_NLGRP_READLOG`), as a bind mask.
const GROUP_READLOG: u32 = 1;
const AUDIT_GET: u16 = 1000;
const AUDIT_SET: u16 = 1001;
const AUDIT_ADD_RULE: u16 = 1011;
/// `AUDIT_FILTER_TASK`: the list the kernel checks when a task is created.
const AUDIT_FILTER_TASK: u32 = 0x01;
/// `AUDIT_NEVER`: no audit context for a task the rule matches.
const AUDIT_NEVER: u32 = 0;
/// `AUDIT_BITMASK_SIZE` and `AUDIT_MAX_FIELDS` of `struct audit_rule_data`.
const AUDIT_BITMASK_SIZE: usize = 64;
const AUDIT_MAX_FIELDS: usize = 64;
const AUDIT_SYSCALL: u16 = 1300;
const AUDIT_EOE: u16 = 1320;
const AUDIT_LANDLOCK_ACCESS: u16 = 1423;
const AUDIT_LANDLOCK_DOMAIN: u16 = 1424;
const NLMSG_ERROR: u16 = 2;
const AUDIT_STATUS_ENABLED: u32 = 0x1;
const AUDIT_STATUS_BACKLOG_LIMIT: u32 = 0x10;
/// The backlog the agent asks for when it finds a smaller one: a burst of refusals
/// (a loop hitting a denied path) must not be cut at the kernel's default of 64.
const BACKLOG_LIMIT: u32 = 8192;
/// How long the records of one event are waited for when no end-of-event record
/// comes (a task without an audit context gets none).
const GATHER: Duration = Duration::from_millis(20);

/// What a refused call wanted, from the record's `blockers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Read,
    Write,
    Execute,
}

/// One refusal by Landlock of a filesystem access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The refusing domain's id.
    pub domain: u64,
    /// The path the kernel resolved.
    pub path: String,
    pub wanted: Wanted,
    /// The calling process (tgid), when the task had an audit context.
    pub pid: Option<u32>,
    /// The call's number, with the pid.
    pub syscall: Option<u64>,
    /// The record's `blockers` as written, for the violation's detail.
    pub blockers: String,
    /// The record's time (wall clock, milliseconds, from the kernel's coarse clock).
    pub at_unix_ns: i64,
}

/// Something [`AuditReader::next`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Denial(Denial),
    /// A domain refused something for the first time: `pid` created it.
    Domain { domain: u64, pid: u32 },
    /// The socket overflowed: records were lost (the kernel says not how many).
    Overrun,
}

/// What [`AuditReader::open`] found and did.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Audit was off and the agent turned it on.
    pub enabled_audit: bool,
    /// Before turning audit on, the agent added the task rule `never` (as
    /// `auditctl -a never,task`), so no task gets an audit context.
    pub no_task_contexts: bool,
    /// The backlog limit was raised to this.
    pub raised_backlog: Option<u32>,
}

/// A subscription to the kernel's audit records.
pub struct AuditReader {
    fd: OwnedFd,
    buf: Vec<u8>,
    /// Records of events not yet complete, by serial.
    pending: HashMap<u64, Partial>,
    ready: VecDeque<Record>,
}

struct Partial {
    /// When its first record came.
    since: Instant,
    denials: Vec<Denial>,
    pid: Option<u32>,
    syscall: Option<u64>,
}

impl AuditReader {
    /// Joins the audit multicast group, turning audit on if it is off.
    pub fn open() -> io::Result<(AuditReader, Setup)> {
        let setup = configure()?;
        let fd = netlink_socket()?;
        let addr = sockaddr(GROUP_READLOG);
        // SAFETY: `addr` is a valid sockaddr_nl for the call.
        let r = unsafe {
            libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), size_of::<libc::sockaddr_nl>() as libc::socklen_t)
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // A roomy buffer, and a receive timeout so incomplete events are flushed.
        let size: libc::c_int = 4 << 20;
        let tv = libc::timeval { tv_sec: 0, tv_usec: GATHER.as_micros() as libc::suseconds_t };
        // SAFETY: option values point at live locals of the stated sizes.
        unsafe {
            if libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, (&raw const size).cast(), 4) != 0 {
                libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, (&raw const size).cast(), 4);
            }
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        Ok((AuditReader { fd, buf: vec![0; 64 * 1024], pending: HashMap::new(), ready: VecDeque::new() }, setup))
    }

    /// The next record, blocking; errors other than an overrun end the reader.
    pub fn next(&mut self) -> io::Result<Record> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Ok(r);
            }
            self.flush_stale();
            if !self.ready.is_empty() {
                continue;
            }
            let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            // SAFETY: the buffer and address are valid for the stated lengths.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                    (&raw mut from).cast(),
                    &raw mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN | libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => return Ok(Record::Overrun),
                    _ => return Err(e),
                }
            }
            // Only the kernel speaks on this group; anything else is ignored.
            if from.nl_pid != 0 {
                continue;
            }
            let buf = std::mem::take(&mut self.buf);
            let mut data = &buf[..n as usize];
            while let Some((ty, text, rest)) = split_message(data) {
                data = rest;
                self.take(ty, text);
            }
            self.buf = buf;
        }
    }

    fn take(&mut self, ty: u16, text: &str) {
        let Some((serial, at_unix_ns, body)) = header(text) else { return };
        match ty {
            AUDIT_LANDLOCK_ACCESS => {
                if let Some(mut d) = parse_access(body) {
                    d.at_unix_ns = at_unix_ns;
                    let p = self.pending.entry(serial).or_insert_with(|| Partial {
                        since: Instant::now(),
                        denials: Vec::new(),
                        pid: None,
                        syscall: None,
                    });
                    p.denials.push(d);
                }
            }
            AUDIT_LANDLOCK_DOMAIN => {
                let f = fields(body);
                if f.get("status").map(String::as_str) == Some("allocated")
                    && let (Some(domain), Some(pid)) =
                        (f.get("domain").and_then(|d| u64::from_str_radix(d, 16).ok()), f.get("pid").and_then(|p| p.parse().ok()))
                {
                    // It arrives before the event ends, so ahead of its denial.
                    self.ready.push_back(Record::Domain { domain, pid });
                }
            }
            AUDIT_SYSCALL => {
                if let Some(p) = self.pending.get_mut(&serial) {
                    let f = fields(body);
                    p.pid = f.get("pid").and_then(|v| v.parse().ok());
                    p.syscall = f.get("syscall").and_then(|v| v.parse().ok());
                }
            }
            AUDIT_EOE => self.finish(serial),
            _ => {}
        }
    }

    fn finish(&mut self, serial: u64) {
        let Some(p) = self.pending.remove(&serial) else { return };
        for mut d in p.denials {
            d.pid = p.pid;
            d.syscall = p.syscall;
            self.ready.push_back(Record::Denial(d));
        }
    }

    fn flush_stale(&mut self) {
        let stale: Vec<u64> =
            self.pending.iter().filter(|(_, p)| p.since.elapsed() >= GATHER).map(|(s, _)| *s).collect();
        for s in stale {
            self.finish(s);
        }
    }
}

fn netlink_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket call; a non-negative return is a descriptor we own.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_AUDIT) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr(groups: u32) -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all-zero is valid.
    let mut a: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    a.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    a.nl_groups = groups;
    a
}

/// `struct audit_status` up to `backlog_wait_time_actual`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct AuditStatus {
    mask: u32,
    enabled: u32,
    failure: u32,
    pid: u32,
    rate_limit: u32,
    backlog_limit: u32,
    lost: u32,
    backlog: u32,
    feature_bitmap: u32,
    backlog_wait_time: u32,
    backlog_wait_time_actual: u32,
}

/// Reads the audit status and turns audit on (and the backlog up) where needed.
fn configure() -> io::Result<Setup> {
    let fd = netlink_socket()?;
    let status = request(&fd, AUDIT_GET, &[])?;
    let mut st = AuditStatus::default();
    let n = status.len().min(size_of::<AuditStatus>());
    // SAFETY: copying at most the struct's size of plain bytes into plain data.
    unsafe { std::ptr::copy_nonoverlapping(status.as_ptr(), (&raw mut st).cast::<u8>(), n) };
    let mut setup = Setup { enabled_audit: false, no_task_contexts: false, raised_backlog: None };
    let mut set = AuditStatus::default();
    if st.enabled == 0 {
        // Audit off and no audit daemon: nobody audits syscalls here, and turning
        // audit on would give every task created from then on an audit context,
        // which costs it ~80 ns on every syscall (docs/kernel.md §18). Landlock's
        // records need audit on, not contexts: a task rule `never`, added first,
        // keeps every task free of one. (Where a daemon runs, its rules stand.)
        if st.pid == 0 {
            match request(&fd, AUDIT_ADD_RULE, &never_task_rule()) {
                Ok(_) => setup.no_task_contexts = true,
                // Added by this agent before, and audit was turned off since.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => setup.no_task_contexts = true,
                Err(e) => tracing::warn!("cannot add the audit task rule `never` ({e}); every task created from now on gets an audit context"),
            }
        }
        set.mask |= AUDIT_STATUS_ENABLED;
        set.enabled = 1;
        setup.enabled_audit = true;
    }
    if st.backlog_limit < BACKLOG_LIMIT {
        set.mask |= AUDIT_STATUS_BACKLOG_LIMIT;
        set.backlog_limit = BACKLOG_LIMIT;
        setup.raised_backlog = Some(BACKLOG_LIMIT);
    }
    if set.mask != 0 {
        // SAFETY: AuditStatus is plain data; viewing it as bytes is sound.
        let bytes = unsafe { std::slice::from_raw_parts((&raw const set).cast::<u8>(), size_of::<AuditStatus>()) };
        request(&fd, AUDIT_SET, bytes)?;
    }
    Ok(setup)
}

/// `struct audit_rule_data` for `-a never,task`: on the task list, action never,
/// no fields, every syscall in the mask (as auditctl writes it), no strings.
fn never_task_rule() -> Vec<u8> {
    let mut rule = Vec::with_capacity(4 * (4 + AUDIT_BITMASK_SIZE + 3 * AUDIT_MAX_FIELDS));
    for word in [AUDIT_FILTER_TASK, AUDIT_NEVER, 0] {
        rule.extend_from_slice(&word.to_ne_bytes());
    }
    rule.extend(std::iter::repeat_n(0xffu8, 4 * AUDIT_BITMASK_SIZE));
    // fields, values, fieldflags, then buflen.
    rule.extend(std::iter::repeat_n(0u8, 4 * (3 * AUDIT_MAX_FIELDS + 1)));
    rule
}

/// Sends one request and returns the payload of its answer (empty for a bare ack).
fn request(fd: &OwnedFd, ty: u16, payload: &[u8]) -> io::Result<Vec<u8>> {
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    let len = 16 + payload.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(payload);
    let to = sockaddr(0);
    // SAFETY: message and address are valid for the stated lengths.
    let r = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&raw const to).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 8192];
    // The ack, and for AUDIT_GET the status; in either order.
    for _ in 0..2 {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let (ty_got, body) = match raw_message(&buf[..n as usize]) {
            Some(m) => m,
            None => return Err(io::Error::new(io::ErrorKind::InvalidData, "short netlink answer")),
        };
        if ty_got == NLMSG_ERROR {
            let code = body.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            if code != 0 {
                return Err(io::Error::from_raw_os_error(-code));
            }
            if ty != AUDIT_GET || !answer.is_empty() {
                break;
            }
        } else {
            answer = body.to_vec();
            if ty == AUDIT_GET {
                // The ack may come before or after; one more read at most.
                continue;
            }
        }
    }
    Ok(answer)
}

/// The first netlink message in `data`: its type and payload.
fn raw_message(data: &[u8]) -> Option<(u16, &[u8])> {
    let len = u32::from_ne_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let ty = u16::from_ne_bytes(data.get(4..6)?.try_into().ok()?);
    Some((ty, data.get(16..len.min(data.len()))?))
}

/// The first message in `data` as text, and the rest of `data`.
fn split_message(data: &[u8]) -> Option<(u16, &str, &[u8])> {
    let len = u32::from_ne_bytes(data.get(..4)?.try_into().ok()?) as usize;
    if len < 16 || len > data.len() {
        return None;
    }
    let ty = u16::from_ne_bytes(data.get(4..6)?.try_into().ok()?);
    let body = &data[16..len];
    let body = body.split(|&b| b == 0).next().unwrap_or(body);
    let rest = data.get(len.next_multiple_of(4)..).unwrap_or(&[]);
    Some((ty, std::str::from_utf8(body).unwrap_or(""), rest))
}

/// `audit(SECONDS.MILLIS:SERIAL): BODY` → (serial, time in ns, body); the time is 0
/// when it does not read as one (the serial is what ties records together).
fn header(text: &str) -> Option<(u64, i64, &str)> {
    let rest = text.strip_prefix("audit(")?;
    let (stamp, body) = rest.split_once("): ")?;
    let (time, serial) = stamp.rsplit_once(':')?;
    let serial = serial.parse().ok()?;
    let at_ns = time.split_once('.').and_then(|(sec, ms)| {
        let (sec, ms): (i64, i64) = (sec.parse().ok()?, ms.parse().ok()?);
        sec.checked_mul(1_000_000_000)?.checked_add(ms.checked_mul(1_000_000)?)
    });
    Some((serial, at_ns.unwrap_or(0), body))
}

/// `key=value` pairs; a value is `"quoted"` or a bare token, and a bare token that
/// audit hex-encoded (an untrusted string with spaces, quotes or control bytes) is
/// decoded when the key is one that carries such strings.
fn fields(body: &str) -> HashMap<&str, String> {
    let mut out = HashMap::new();
    let mut rest = body.trim_start();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.split_once('"') {
                Some((v, n)) => (v.to_owned(), n),
                None => (q.to_owned(), ""),
            }
        } else {
            let (v, n) = after.split_once(' ').unwrap_or((after, ""));
            let v = if matches!(key, "path" | "comm" | "exe" | "name") { unhex(v).unwrap_or_else(|| v.to_owned()) } else { v.to_owned() };
            (v, n)
        };
        out.insert(key, value);
        rest = next.trim_start();
    }
    out
}

fn unhex(v: &str) -> Option<String> {
    if v.is_empty() || !v.len().is_multiple_of(2) || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..v.len()).step_by(2).map(|i| u8::from_str_radix(&v[i..i + 2], 16).ok()).collect();
    Some(String::from_utf8_lossy(&bytes?).into_owned())
}

/// An `AUDIT_LANDLOCK_ACCESS` body for a filesystem refusal.
fn parse_access(body: &str) -> Option<Denial> {
    let f = fields(body);
    let blockers = f.get("blockers")?.clone();
    let path = f.get("path")?.clone();
    let domain = u64::from_str_radix(f.get("domain")?, 16).ok()?;
    let wanted = wanted(&blockers)?;
    Some(Denial { domain, path, wanted, pid: None, syscall: None, blockers, at_unix_ns: 0 })
}

/// The strongest access among `blockers` (`fs.read_file,fs.write_file`, …); `None`
/// when nothing of it is a filesystem access (network and scope refusals).
fn wanted(blockers: &str) -> Option<Wanted> {
    let mut w = None;
    for b in blockers.split(',') {
        let this = match b.strip_prefix("fs.")? {
            "execute" => Wanted::Execute,
            "read_file" | "read_dir" => Wanted::Read,
            _ => Wanted::Write,
        };
        w = Some(match (w, this) {
            (Some(Wanted::Execute), _) | (_, Wanted::Execute) => Wanted::Execute,
            (Some(Wanted::Write), _) | (_, Wanted::Write) => Wanted::Write,
            _ => Wanted::Read,
        });
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(ty: u16, text: &str) -> Vec<u8> {
        let len = 16 + text.len() + 1;
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(text.as_bytes());
        m.push(0);
        m.resize(len.next_multiple_of(4), 0);
        m
    }

    /// As measured on this kernel (docs/kernel.md §13): a refused read through a
    /// symlink names the file it led to.
    #[test]
    fn a_refusal_and_its_syscall_make_one_denial() {
        let mut r = AuditReader { fd: netlink_socket().expect("netlink"), buf: Vec::new(), pending: HashMap::new(), ready: VecDeque::new() };
        let mut data = message(AUDIT_LANDLOCK_ACCESS, r#"audit(1796605219.924:7): domain=12824edc1 blockers=fs.read_file path="/etc/hostname" dev="vda" ino=611"#);
        data.extend(message(AUDIT_LANDLOCK_DOMAIN, r#"audit(1796605219.924:7): domain=12824edc1 status=allocated mode=enforcing pid=31357 uid=0 exe="/usr/bin/python3" comm="python3""#));
        data.extend(message(AUDIT_SYSCALL, r#"audit(1796605219.924:7): arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c items=0 ppid=31316 pid=31357 auid=4294967295 comm="cat" key=(null)"#));
        data.extend(message(AUDIT_EOE, "audit(1796605219.924:7): "));
        let mut rest = &data[..];
        while let Some((ty, text, more)) = split_message(rest) {
            rest = more;
            r.take(ty, text);
        }
        assert_eq!(r.ready.pop_front(), Some(Record::Domain { domain: 0x12824edc1, pid: 31357 }));
        assert_eq!(
            r.ready.pop_front(),
            Some(Record::Denial(Denial {
                domain: 0x12824edc1,
                path: "/etc/hostname".into(),
                wanted: Wanted::Read,
                pid: Some(31357),
                syscall: Some(257),
                blockers: "fs.read_file".into(),
                at_unix_ns: 1_796_605_219_924_000_000,
            }))
        );
        assert!(r.ready.is_empty() && r.pending.is_empty());
    }

    /// Needs root (CAP_AUDIT_CONTROL), as the agent does.
    #[test]
    fn configure_leaves_audit_on_with_room_for_bursts() {
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        configure().expect("configure audit");
        let fd = netlink_socket().expect("netlink");
        let status = request(&fd, AUDIT_GET, &[]).expect("AUDIT_GET");
        let word = |i: usize| u32::from_ne_bytes(status[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        assert_ne!(word(1), 0, "enabled");
        assert!(word(5) >= BACKLOG_LIMIT, "backlog limit {}", word(5));
    }

    #[test]
    fn hex_encoded_paths_and_mixed_blockers() {
        // "/tmp/a b" has a space, so audit writes it in hex, unquoted.
        let d = parse_access("domain=1f blockers=fs.read_file,fs.write_file path=2F746D702F612062 dev=\"vda\" ino=9").expect("parsed");
        assert_eq!((d.path.as_str(), d.wanted, d.domain), ("/tmp/a b", Wanted::Write, 0x1f));
        assert_eq!(parse_access("domain=1f blockers=fs.execute path=\"/usr/bin/id\"").map(|d| d.wanted), Some(Wanted::Execute));
        assert_eq!(parse_access("domain=1f blockers=net.connect_tcp daddr=127.0.0.1 dest=80"), None, "not a file refusal");
        assert_eq!(parse_access("domain=1f blockers=scope.signal opid=1 ocomm=\"init\""), None);
    }

    #[test]
    fn malformed_records_are_ignored() {
        assert_eq!(header("audit(1.2:x): a=b"), None);
        assert_eq!(header("audit(12:3): a=b"), Some((3, 0, "a=b")), "no milliseconds: no time");
        assert_eq!(header("audit(1.002:3): a=b"), Some((3, 1_002_000_000, "a=b")));
        assert_eq!(header("no header"), None);
        assert_eq!(parse_access("domain=zz blockers=fs.read_file path=\"/x\""), None);
        assert!(split_message(&[1, 0, 0]).is_none());
        let mut short = message(AUDIT_EOE, "audit(1.2:3): ");
        short[0] = 200; // longer than the data
        assert!(split_message(&short).is_none());
    }
}
