//! Records the eBPF programs write into the `EVENTS` ring buffer.
//!
//! Every record starts with an [`EventHeader`] whose `kind` says which struct follows.
//! Kinds are fixed numbers: a retired number stays retired (as a comment) and a
//! changed layout gets a new number, as in tetragon's and falco's event tables.
//! `proto/warrant/v1/events.proto` uses the same numbers for its `oneof` fields.
//! Kinds 1..=99 come from the kernel; 100 and up are made by the agent.

/// Which record follows the header.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// [`ExecEvent`]: a tagged task completed an execve.
    Exec = 1,
    /// [`ExitEvent`]: the last thread of a tagged process exited.
    Exit = 2,
    /// [`FileOpenEvent`]: open/openat/openat2/creat returned (success or error).
    FileOpen = 3,
    /// [`NetEvent`]: connect returned.
    Connect = 4,
    /// [`NetEvent`]: bind returned.
    Bind = 5,
    /// [`NetEvent`]: listen returned.
    Listen = 6,
    /// [`NetEvent`]: accept/accept4 returned a connection.
    Accept = 7,
    /// [`ViolationEvent`]: a policy rule other than `allow` matched, or a call the
    /// session's self-protection refuses was attempted.
    Violation = 8,
    /// [`FileOpenEvent`] layout: an execve/execveat failed with an error other than
    /// ENOENT/ENOTDIR (a shell's PATH search), e.g. EACCES from the session's Landlock
    /// domain. `path` is the string the process passed.
    ExecFailed = 9,
    /// [`SocketCloseEvent`]: a TCP socket a tagged task connected or accepted reached
    /// `TCP_CLOSE`, with its byte counts. The header's session, grant, pid and comm
    /// are the owner's, recorded when the socket was made (the close may run in
    /// softirq, on no task of the session).
    SocketClose = 10,
    /// [`UnixEvent`]: a tagged task connected to a unix socket by name (the attempt,
    /// checked before the kernel looks the name up), or a `unix:` rule or
    /// self-protection refused a connect or a datagram to one.
    UnixConnect = 11,
    /// [`FileChangeEvent`]: a call that changes the file tree or a file's metadata
    /// returned (unlink, rename, mkdir, chmod, setxattr, mount, ...; `op` says which).
    FileChange = 12,
    /// [`NetEvent`]: the first datagram a session sent to a destination (`sendto` or
    /// `sendmsg` with an address, on a UDP socket), as the cgroup `sendmsg4/6` hook saw
    /// it after the network rules allowed it. Later datagrams to the same destination
    /// are counted in `DATAGRAM_PEERS`, not recorded.
    Datagram = 13,
    /// [`IoUringEvent`]: a tagged task (or a session's SQPOLL thread) submitted an
    /// io_uring request (`io_uring_submit_req`); only under a policy that allows
    /// io_uring, which sessions are refused by default.
    IoUring = 14,
}

impl EventKind {
    /// The kind for a raw header value, or `None` for a number this build does not know.
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Exec,
            2 => Self::Exit,
            3 => Self::FileOpen,
            4 => Self::Connect,
            5 => Self::Bind,
            6 => Self::Listen,
            7 => Self::Accept,
            8 => Self::Violation,
            9 => Self::ExecFailed,
            10 => Self::SocketClose,
            11 => Self::UnixConnect,
            12 => Self::FileChange,
            13 => Self::Datagram,
            14 => Self::IoUring,
            _ => return None,
        })
    }
}

/// Bytes of a path the programs fill before they stop and mark it truncated.
pub const PATH_DATA: usize = 4096;
/// Bytes read per path component (NAME_MAX + NUL, rounded up).
pub const NAME_READ: usize = 256;
/// Size of a path buffer: the verifier needs `offset & (PATH_DATA-1) + NAME_READ`
/// to fit, so the buffer carries one component's worth of slack.
pub const PATH_BUF: usize = PATH_DATA + NAME_READ;
/// Bytes of argv captured before it is truncated.
pub const ARGV_BUF: usize = 4096;
/// Most path components (plus mount crossings) walked before a path is truncated.
pub const PATH_MAX_DEPTH: u32 = 64;

/// The path could not be captured whole; what is there is the tail nearest the file.
pub const PATH_TRUNCATED: u32 = 1 << 0;
/// `data` holds a NUL-terminated string as the process passed it (not resolved).
/// Without this flag `data` holds the components leaf first, each NUL-terminated
/// (`"passwd\0etc\0"`), which user space reverses into `/etc/passwd`.
pub const PATH_RAW: u32 = 1 << 1;

/// A path captured in the kernel.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawPath {
    /// Bytes of `data` in use.
    pub len: u32,
    /// `PATH_*` flags.
    pub flags: u32,
    /// See [`PATH_RAW`] for the two encodings.
    pub data: [u8; PATH_BUF],
}

/// Common to every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader {
    /// An [`EventKind`] number.
    pub kind: u32,
    /// Per-record flags (`RECORD_PACKED`), and from bit `RECORD_SLOT_SHIFT` up the
    /// session slot the record is charged to, plus one.
    pub flags: u32,
    /// `bpf_ktime_get_boot_ns` when the record was made.
    pub ktime_ns: u64,
    /// From the task's tag.
    pub session_id: u64,
    /// From the task's tag.
    pub grant_id: u64,
    /// cgroup v2 id of the task, to spot a task that left its session cgroup.
    pub cgroup_id: u64,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent's tgid.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Effective uid.
    pub euid: u32,
    /// Real gid.
    pub gid: u32,
    /// Task command name.
    pub comm: [u8; 16],
}

/// Bytes of argv were cut at [`ARGV_BUF`].
pub const ARGV_TRUNCATED: u32 = 1 << 0;

/// A completed execve.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// Bytes of `argv` in use.
    pub argv_len: u32,
    /// `ARGV_*` flags.
    pub argv_flags: u32,
    /// The executed file, resolved from the open file (not the string passed).
    pub path: RawPath,
    /// Working directory at exec.
    pub cwd: RawPath,
    /// Arguments, each NUL-terminated, as on the new process's stack.
    pub argv: [u8; ARGV_BUF],
    /// Bytes of `script` in use (0: the file executed is the program itself).
    pub script_len: u32,
    /// [`SCRIPT_TRUNCATED`] when the name did not fit.
    pub script_flags: u32,
    /// For a `#!` script (or a binfmt_misc file), which the kernel has replaced by its
    /// interpreter in `path` by now: the name execve was given, as passed
    /// (relative to `cwd` unless absolute), NUL-terminated.
    pub script: [u8; SCRIPT_BUF],
}

/// The size of an [`ExecEvent`] before `script` was added: a record of this size
/// (left in a pinned ring by an older agent's programs) decodes with no script.
pub const EXEC_EVENT_V1_SIZE: usize = 88 + 2 * (8 + PATH_BUF) + ARGV_BUF;

/// Bytes of a script's name captured.
pub const SCRIPT_BUF: usize = 1024;
/// The script's name was longer than [`SCRIPT_BUF`].
pub const SCRIPT_TRUNCATED: u32 = 1 << 0;

/// A process ended (its last thread exited).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// `task->exit_code`: `(code << 8) | signal`, as wait(2) reports it.
    pub exit_code: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// An open/openat/openat2/creat that returned.
///
/// Sent cut short: a record ends after the `path.len` bytes of `path.data` in use
/// ([`FILE_OPEN_HEAD`] + `path.len` bytes), so a typical open takes ~150 bytes of
/// ring buffer, not 4.4 KB. Readers must take any length from `FILE_OPEN_HEAD` to
/// the full struct and treat the missing tail as absent.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FileOpenEvent {
    pub header: EventHeader,
    /// `O_*` flags of the open (from the file on success, from the arguments on failure).
    pub open_flags: u32,
    /// The syscall's return value: a descriptor, or `-errno`.
    pub ret: i32,
    /// Resolved path on success ([`PATH_RAW`] clear); the string passed on failure.
    pub path: RawPath,
}

/// Bytes of a [`FileOpenEvent`] (and of an `exec_failed` record, which has its
/// layout) before the path's data: the shortest such record.
pub const FILE_OPEN_HEAD: usize = core::mem::offset_of!(FileOpenEvent, path) + core::mem::offset_of!(RawPath, data);

/// `FileChangeEvent::op`: which call it was. The names user space gives them are
/// [`FileOp::name`]'s.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOp {
    /// unlink, unlinkat
    Unlink = 1,
    /// rmdir, unlinkat with `AT_REMOVEDIR`
    Rmdir = 2,
    /// rename, renameat, renameat2 (`flags`: `RENAME_*`)
    Rename = 3,
    /// truncate, ftruncate (`size`: the new length)
    Truncate = 4,
    /// chmod, fchmod, fchmodat, fchmodat2 (`mode`)
    Chmod = 5,
    /// chown, fchown, lchown, fchownat (`uid`, `gid`; `u32::MAX` leaves one as it is)
    Chown = 6,
    /// utime, utimes, futimesat, utimensat
    Utimes = 7,
    /// mkdir, mkdirat (`mode`)
    Mkdir = 8,
    /// link, linkat: `path` is the existing name, `path2` the new one
    Link = 9,
    /// symlink, symlinkat: `path` is the link made, `path2` the text it holds
    Symlink = 10,
    /// mknod, mknodat (`mode` with the file type, `size`: the device number)
    Mknod = 11,
    /// setxattr, lsetxattr, fsetxattr, setxattrat: `path2` is the attribute's name
    Setxattr = 12,
    /// removexattr, lremovexattr, fremovexattr, removexattrat: `path2` is the name
    Removexattr = 13,
    /// open_by_handle_at: `path` is the file opened (resolved), or on failure empty
    /// with `base` the mount it was asked of
    OpenByHandle = 14,
    /// mount, move_mount: `path` is the mount point, `path2` the source as passed
    Mount = 15,
    /// umount2 (`flags`: `MNT_*`)
    Umount = 16,
}

impl FileOp {
    /// The op for a raw value, or `None` for a number this build does not know.
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Unlink,
            2 => Self::Rmdir,
            3 => Self::Rename,
            4 => Self::Truncate,
            5 => Self::Chmod,
            6 => Self::Chown,
            7 => Self::Utimes,
            8 => Self::Mkdir,
            9 => Self::Link,
            10 => Self::Symlink,
            11 => Self::Mknod,
            12 => Self::Setxattr,
            13 => Self::Removexattr,
            14 => Self::OpenByHandle,
            15 => Self::Mount,
            16 => Self::Umount,
            _ => return None,
        })
    }

    /// Its name in events (`file_change.op`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unlink => "unlink",
            Self::Rmdir => "rmdir",
            Self::Rename => "rename",
            Self::Truncate => "truncate",
            Self::Chmod => "chmod",
            Self::Chown => "chown",
            Self::Utimes => "utimes",
            Self::Mkdir => "mkdir",
            Self::Link => "link",
            Self::Symlink => "symlink",
            Self::Mknod => "mknod",
            Self::Setxattr => "setxattr",
            Self::Removexattr => "removexattr",
            Self::OpenByHandle => "open_by_handle",
            Self::Mount => "mount",
            Self::Umount => "umount",
        }
    }

    /// Every op, in number order.
    pub const ALL: [FileOp; 16] = [
        Self::Unlink,
        Self::Rmdir,
        Self::Rename,
        Self::Truncate,
        Self::Chmod,
        Self::Chown,
        Self::Utimes,
        Self::Mkdir,
        Self::Link,
        Self::Symlink,
        Self::Mknod,
        Self::Setxattr,
        Self::Removexattr,
        Self::OpenByHandle,
        Self::Mount,
        Self::Umount,
    ];
}

/// `FileChangeEvent::how`: `path2` is a path (rename, link), not text (a symlink's
/// contents, an attribute name, a mount source).
pub const CHANGE_PATH2_IS_PATH: u32 = 1 << 0;
/// `FileChangeEvent::how`: `path` was relative (or empty: the directory descriptor
/// itself) and `base` is the directory it is relative to.
pub const CHANGE_BASE_OF_PATH: u32 = 1 << 1;
/// `FileChangeEvent::how`: `path2` is relative to `base` too.
pub const CHANGE_BASE_OF_PATH2: u32 = 1 << 2;
/// `FileChangeEvent::how`: `path2` is relative to a directory descriptor the record
/// has no room for (both names relative, to different directories).
pub const CHANGE_PATH2_OTHER_DIR: u32 = 1 << 3;

/// An io_uring submission of a tagged task: the request as the kernel read it
/// from the submission queue, before it runs (its outcome is the operation's own:
/// an open through the ring is not a `file_open`, a connect still meets the network
/// rules at the cgroup hooks).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoUringEvent {
    pub header: EventHeader,
    /// `IORING_OP_*` number.
    pub opcode: u32,
    /// The request's file descriptor (`sqe->fd`; an index into the registered files
    /// when `flags` has `REQ_F_FIXED_FILE`).
    pub fd: i32,
    /// The submitter's `user_data`, to match the request with its completion.
    pub user_data: u64,
    /// The kernel's `REQ_F_*` flags of the request (low 32 bits).
    pub req_flags: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// `IoUringEvent::req_flags`: `fd` is an index into the ring's registered files.
pub const REQ_F_FIXED_FILE: u32 = 1 << 0;

/// `EventHeader::flags`: the record is sent packed. For a `file_change` record:
/// its first [`FILE_CHANGE_FIXED`] bytes are [`FileChangeEvent`]'s, then the `len`
/// and `flags` of `path`, `path2` and `base` (8 bytes each), then the `len` bytes in
/// use of each path's `data`, back to back: a change takes ~250 bytes of ring
/// buffer, not 13.2 KB. A record without the flag is the whole struct.
pub const RECORD_PACKED: u32 = 1 << 0;
/// `EventHeader::flags` bits from this one up: the session slot the record is
/// charged to in `RING_CHARGED`, plus one (0: the record is no session's).
pub const RECORD_SLOT_SHIFT: u32 = 16;

/// The session slot a record with header flags `flags` is charged to.
pub const fn charged_slot(flags: u32) -> Option<u32> {
    match flags >> RECORD_SLOT_SHIFT {
        0 => None,
        n => Some(n - 1),
    }
}
/// For an `exec` record: its first [`EXEC_FIXED`] bytes are [`ExecEvent`]'s (header,
/// `argv_len`, `argv_flags`), then the `len` and `flags` of `path` and `cwd` and
/// `script_len`, `script_flags` (8 bytes each), then the bytes in use of `path`,
/// `cwd`, `argv` and `script`, back to back: ~300 bytes, not 13.9 KB.
pub const EXEC_FIXED: usize = core::mem::offset_of!(ExecEvent, path);
/// Bytes of a packed `exec` record before the data.
pub const EXEC_PACKED_HEAD: usize = EXEC_FIXED + 3 * 8;

/// Bytes of a [`FileChangeEvent`] before its first path.
pub const FILE_CHANGE_FIXED: usize = core::mem::offset_of!(FileChangeEvent, path);
/// Bytes of a packed `file_change` record before the paths' data.
pub const FILE_CHANGE_PACKED_HEAD: usize = FILE_CHANGE_FIXED + 3 * core::mem::offset_of!(RawPath, data);

/// A call that changes the file tree or a file's metadata returned, successful or not.
/// Paths are as the process passed them ([`PATH_RAW`]), made absolute by user space
/// against `base` (resolved in the kernel from the directory descriptor or the
/// working directory, at the call's return); a call on a descriptor (`fchmod`,
/// `ftruncate`, ...) has `path` resolved from the descriptor's file.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FileChangeEvent {
    pub header: EventHeader,
    /// A [`FileOp`] number.
    pub op: u32,
    /// The syscall's return value: 0 (a descriptor for open_by_handle_at) or `-errno`.
    pub ret: i32,
    /// `CHANGE_*` flags.
    pub how: u32,
    /// The call's flags argument (`RENAME_*`, `AT_*`, `MS_*`, `XATTR_*`, `O_*`, `MNT_*`).
    pub flags: u32,
    /// chmod, mkdir, mknod: the mode asked for.
    pub mode: u32,
    /// chown: the owner and group asked for (`u32::MAX`: unchanged).
    pub uid: u32,
    pub gid: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// truncate: the new length; mknod: the device number.
    pub size: u64,
    pub path: RawPath,
    pub path2: RawPath,
    pub base: RawPath,
}

/// A connect, bind, listen or accept that returned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NetEvent {
    pub header: EventHeader,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    /// Local port, host byte order.
    pub local_port: u16,
    /// Remote port, host byte order.
    pub remote_port: u16,
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2), ...
    pub sock_type: u16,
    /// The syscall's return value: 0 or a descriptor, or `-errno`.
    pub ret: i32,
    /// Explicit padding.
    pub _pad: u32,
    /// Local address: 4 bytes for IPv4, 16 for IPv6, network order.
    pub local_addr: [u8; 16],
    /// Remote address, same encoding.
    pub remote_addr: [u8; 16],
}

/// A tagged TCP socket closed: who had it, both ends, and what went through it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketCloseEvent {
    pub header: EventHeader,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// Local port, host order.
    pub local_port: u16,
    /// Remote port, host order.
    pub remote_port: u16,
    /// Explicit padding.
    pub _pad: u16,
    /// Explicit padding.
    pub _pad2: u32,
    /// Payload bytes sent and acknowledged by the peer (`tcp_sock.bytes_acked`).
    pub bytes_sent: u64,
    /// Payload bytes received (`tcp_sock.bytes_received`).
    pub bytes_received: u64,
    /// Local address: 4 bytes for IPv4, 16 for IPv6, network order.
    pub local_addr: [u8; 16],
    /// Remote address, same encoding.
    pub remote_addr: [u8; 16],
}

/// What a violated rule was about: a connect (`family`, `addr`, `port` say where).
pub const VIOLATION_CONNECT: u32 = 1;
/// A syscall refused by the session's self-protection (seccomp, Landlock scope):
/// `addr[0..8]` holds the syscall number and `addr[8..16]` its first argument (the
/// target pid of a signal), both native-endian u64; `rule` is 0.
pub const VIOLATION_SYSCALL: u32 = 2;
/// A new task refused for going over the session's task limit (`max_processes`):
/// `addr[0..4]` holds the limit (native-endian u32); `action` is `ACTION_DENY` (the
/// new task was killed before it ran) or `ACTION_KILL_SESSION`. Only a session's first
/// refusal is an event; the kernel counts the rest in `SESSION_TASKS`.
pub const VIOLATION_TASKS: u32 = 3;
/// A datagram sent to an address (`sendto`/`sendmsg` on an unconnected UDP socket):
/// `family`, `addr`, `port` say where, as for a connect.
pub const VIOLATION_SENDMSG: u32 = 4;
/// A raw (`SOCK_RAW`) or packet (`AF_PACKET`) socket refused by self-protection:
/// `family` is the socket's family, `port` its type, `addr[0..4]` its protocol.
pub const VIOLATION_SOCKET: u32 = 5;

/// Bytes of `sockaddr_un.sun_path`.
pub const UNIX_PATH_MAX: usize = 108;
/// `UnixEvent::op`: `connect(2)` to a unix socket name.
pub const UNIX_OP_CONNECT: u32 = 1;
/// `UnixEvent::op`: a datagram sent to a unix socket name (`sendto`/`sendmsg`).
pub const UNIX_OP_SENDMSG: u32 = 2;
/// `UnixEvent::flags`: the name is abstract (`sun_path[0]` is NUL).
pub const UNIX_ABSTRACT: u32 = 1 << 0;
/// `UnixEvent::flags`: the pathname is relative or not in canonical form (`//`,
/// `/./`, `/../`): the kernel would resolve it to a place the rules cannot see, so
/// a session's connect to it is refused.
pub const UNIX_NOT_CANONICAL: u32 = 1 << 1;
/// `UnixEvent::flags`: the rule that decided is self-protection's (the agent's own
/// sockets, or a known process spawner), not the policy's.
pub const UNIX_SELF_PROTECTION: u32 = 1 << 2;
/// `UnixEvent::flags`: made at the connect's return (`sys_exit`): `ret` is its
/// result, and for a connected socket `peer` is the name the peer is bound to and
/// `peer_pid` the pid in its credentials. Without it the record comes from the
/// cgroup hook, before the name was resolved.
pub const UNIX_AT_EXIT: u32 = 1 << 3;
/// `UnixEvent::flags` with [`UNIX_AT_EXIT`]: the peer's own name is one the rules
/// refuse, so the connect reached it under another name (a symlink, a bind mount, a
/// directory renamed in between); `action` is what was done about it then.
pub const UNIX_VIA_ALIAS: u32 = 1 << 4;
/// `UnixEvent::flags` with [`UNIX_VIA_ALIAS`]: made where the kernel handed the
/// peer its data (`sk_data_ready`), not at a connect's return: with `op`
/// [`UNIX_OP_SENDMSG`] a datagram was queued for the peer (it was delivered before
/// the process was killed), with [`UNIX_OP_CONNECT`] a connect that did not come
/// from `connect(2)` (io_uring) was queued on the peer's listener. `path` is
/// empty: the name passed is not at hand there.
pub const UNIX_DELIVERED: u32 = 1 << 5;

/// A connect (or datagram) of a tagged task to a unix socket name, and what the
/// rules decided. Made twice over: by the cgroup `connect_unix`/`sendmsg_unix` hooks
/// before the kernel resolves the name, for a rule other than `allow` (a refused
/// call never reached the peer), and at every connect's return ([`UNIX_AT_EXIT`]),
/// where the peer the kernel found is checked by its own name too.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UnixEvent {
    pub header: EventHeader,
    /// `UNIX_OP_*`.
    pub op: u32,
    /// `ACTION_*` of `policy.rs` taken.
    pub action: u32,
    /// 1-based index of the rule in the policy's `unix` list (or in
    /// self-protection's table with [`UNIX_SELF_PROTECTION`]); 0 for the default.
    pub rule: u32,
    /// Policy slot of the grant.
    pub policy_slot: u32,
    /// `UNIX_*` flags.
    pub flags: u32,
    /// Bytes of `path` the address covers (`addrlen` less `sun_family`); a
    /// pathname ends at its first NUL within them, an abstract name (its leading
    /// NUL included) takes them all.
    pub len: u32,
    /// `sun_path` as the process passed it.
    pub path: [u8; UNIX_PATH_MAX],
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2), `SOCK_SEQPACKET` (5).
    pub sock_type: u32,
    /// With [`UNIX_AT_EXIT`]: the connect's return value (0 or `-errno`).
    pub ret: i32,
    /// With [`UNIX_AT_EXIT`]: the peer's pid (0 when unknown).
    pub peer_pid: u32,
    /// Bytes of `peer` the peer's bound address covers (0: not connected, or the
    /// peer is unnamed).
    pub peer_len: u32,
    /// The peer's bound `sun_path`, same encoding as `path`.
    pub peer: [u8; UNIX_PATH_MAX],
}

/// A bind of a local address and port (`bind(2)`): `family`, `addr`, `port` say
/// which, and the rule is from the policy's `bind` list.
pub const VIOLATION_BIND: u32 = 6;

/// An exec of a file with no name on disk (link count 0: a memfd, or a deleted
/// file run through `/proc/PID/fd/N`), refused by self-protection: the process is
/// killed at `sched_process_exec`, before the new program's first instruction.
/// `addr` holds the first 16 bytes of the file's dentry name (`memfd:NAME`).
pub const VIOLATION_EXEC_NO_NAME: u32 = 7;

/// `ViolationEvent::rule` of a connect refused because the grant ended and the
/// policy's `on_expiry: drop` keeps the processes but cuts the network.
pub const RULE_GRANT_ENDED: u32 = u32::MAX;

/// A policy rule other than `allow` matched; for deny-like actions the call was
/// refused before it took effect.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ViolationEvent {
    pub header: EventHeader,
    /// `VIOLATION_*`: which kind of call.
    pub op: u32,
    /// `ACTION_*` of `policy.rs` taken.
    pub action: u32,
    /// 1-based index of the rule in its list; 0 for the policy default.
    pub rule: u32,
    /// Policy slot the rule came from.
    pub policy_slot: u32,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// Port asked for, host order.
    pub port: u16,
    /// Explicit padding.
    pub _pad: u32,
    /// Address asked for: 4 bytes for IPv4, 16 for IPv6, network order.
    pub addr: [u8; 16],
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    /// The kernel and user space must agree on every byte; a change here is a
    /// change of contract and needs a new event kind.
    #[test]
    fn layouts_are_pinned() {
        assert_eq!(size_of::<EventHeader>(), 80);
        assert_eq!(offset_of!(EventHeader, pid), 40);
        assert_eq!(offset_of!(EventHeader, comm), 64);
        assert_eq!(size_of::<RawPath>(), 8 + PATH_BUF);
        assert_eq!(offset_of!(ExecEvent, path), 88);
        assert_eq!(offset_of!(ExecEvent, cwd), 88 + 8 + PATH_BUF);
        assert_eq!(offset_of!(ExecEvent, argv), 88 + 2 * (8 + PATH_BUF));
        // `script` came later, at the end: a record without it is the older layout.
        assert_eq!(offset_of!(ExecEvent, script_len), EXEC_EVENT_V1_SIZE);
        assert_eq!(size_of::<ExecEvent>(), EXEC_EVENT_V1_SIZE + 8 + SCRIPT_BUF);
        assert_eq!(size_of::<ExitEvent>(), 88);
        assert_eq!(offset_of!(FileOpenEvent, path), 88);
        assert_eq!(FILE_OPEN_HEAD, 96);
        assert_eq!(size_of::<IoUringEvent>(), 104);
        assert_eq!((FILE_CHANGE_FIXED, FILE_CHANGE_PACKED_HEAD), (120, 144));
        assert_eq!((EXEC_FIXED, EXEC_PACKED_HEAD), (88, 112));
        assert_eq!(offset_of!(ExecEvent, script_flags), offset_of!(ExecEvent, script_len) + 4);
        assert_eq!(size_of::<NetEvent>(), 128);
        assert_eq!(offset_of!(NetEvent, local_addr), 96);
        assert_eq!(size_of::<ViolationEvent>(), 120);
        assert_eq!(offset_of!(ViolationEvent, addr), 104);
        assert_eq!(size_of::<SocketCloseEvent>(), 144);
        assert_eq!(offset_of!(SocketCloseEvent, bytes_sent), 96);
        assert_eq!(offset_of!(UnixEvent, path), 104);
        assert_eq!(offset_of!(UnixEvent, peer), 228);
        assert_eq!(size_of::<UnixEvent>(), 336);
        assert_eq!(offset_of!(FileChangeEvent, size), 112);
        assert_eq!(offset_of!(FileChangeEvent, path), 120);
        assert_eq!(size_of::<FileChangeEvent>(), 120 + 3 * (8 + PATH_BUF));
    }

    #[test]
    fn kinds_round_trip() {
        for k in 1..=13 {
            let kind = EventKind::from_u32(k).expect("known kind");
            assert_eq!(kind as u32, k);
        }
        assert!(EventKind::from_u32(0).is_none());
        assert!(EventKind::from_u32(100).is_none());
        for (i, op) in FileOp::ALL.iter().enumerate() {
            assert_eq!(FileOp::from_u32(i as u32 + 1), Some(*op));
        }
        assert!(FileOp::from_u32(17).is_none());
    }
}
