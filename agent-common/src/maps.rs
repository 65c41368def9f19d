//! Map names and the values kept in them.
//!
//! ```text
//! TASK_TAGS      task storage   task        -> TaskTag      set at fork (in kernel) or by the agent (pidfd key)
//! GRANTS         array          grant slot  -> GrantState   written by the agent; read by every hook of a tagged task
//! SESSIONS       array          session slot-> SessionState written by the agent; read by every hook of a tagged task
//! EVENTS         ring buffer    records of event.rs
//! LOST_EVENTS    per-cpu array  [0] -> records the kernel could not reserve
//! SESSION_LOST   per-cpu array  session slot -> SessionLost  the same, per session and kind
//! RING_CHARGED   array          session slot -> u64  bytes of ring records the session made (kernel)
//! RING_READ      array          session slot -> u64  bytes of them the agent has read (agent)
//! ```
//!
//! A task is alive under warrant only while both its grant and its session are
//! [`STATE_ACTIVE`] and the grant's `expires_at_ns` (boot clock) lies ahead. Any other
//! value, including an empty slot, makes the task's next hook SIGKILL it: the kernel
//! fails closed. So user space writes the grant and session state before the tag.

/// Task storage: the tag of every task started under a grant.
pub const TASK_TAGS: &str = "TASK_TAGS";
/// Array of [`GrantState`], indexed by grant slot.
pub const GRANTS: &str = "GRANTS";
/// Array of [`SessionState`], indexed by session slot.
pub const SESSIONS: &str = "SESSIONS";
/// The ring buffer all events go through.
pub const EVENTS: &str = "EVENTS";
/// Per-CPU count of records the ring buffer had no room for.
pub const LOST_EVENTS: &str = "LOST_EVENTS";
/// Per-CPU array of [`SessionLost`], per session slot: the session's records the
/// ring buffer had no room for, by kind, counted at the failed reservation (the
/// kernel knows the task's tag there; user space would not). Reset by the agent
/// when it hands the slot to a new session.
pub const SESSION_LOST: &str = "SESSION_LOST";
/// Array of `u64`, per session slot: bytes of ring buffer records charged to the
/// session (the size of each record reserved for one of its tasks), added by the
/// kernel. With [`RING_READ`] it gives what the session holds in the ring now,
/// which keeps one session's flood from costing another session its records: once
/// the ring is [`RING_FAIR_SHARE_AT`] full, a session holding half of what waits
/// loses its own records (counted against it), and every other session's still fit.
pub const RING_CHARGED: &str = "RING_CHARGED";
/// Array of `u64`, per session slot: bytes of the session's records the agent has
/// read from the ring (it adds each record's length; records carry their slot in
/// `EventHeader::flags`, see `event::RECORD_SLOT_SHIFT`). Written by the agent only.
pub const RING_READ: &str = "RING_READ";
/// Share of the ring buffer (in quarters) past which a session holding half of
/// what waits has its records refused: 3, three quarters full.
pub const RING_FAIR_SHARE_AT: u64 = 3;
/// Per-CPU array, per session slot: processes of the session that exited after
/// it (or its grant) was dead. Counted by the kernel's exit hook, so a kill's
/// report includes what the kernel's own hooks killed before the agent looked.
/// Reset by the agent when it hands the slot to a new session.
pub const SESSION_DEATHS: &str = "SESSION_DEATHS";
/// Array of [`SessionTasks`], per session slot: how many tasks (threads included)
/// the session has, counted by the kernel at `task_newtask` and `sched_process_exit`,
/// so a fork bomb meets `SessionState::max_tasks` in the kernel.
pub const SESSION_TASKS: &str = "SESSION_TASKS";
/// LRU hash: TCP socket (kernel address) → [`SockOwner`], for the sockets tagged
/// tasks connect or accept; read and removed when the socket closes.
pub const TCP_SOCKETS: &str = "TCP_SOCKETS";
/// Entries of [`TCP_SOCKETS`]; the least recently used goes first when full.
pub const TCP_SOCKET_ENTRIES: u32 = 65_536;
/// LRU hash: [`DatagramPeer`] → datagrams sent, for the destinations a session's
/// UDP sockets sent to by address; the first datagram to each is a `Datagram` record.
pub const DATAGRAM_PEERS: &str = "DATAGRAM_PEERS";
/// Entries of [`DATAGRAM_PEERS`]; an evicted destination is recorded again at its
/// next datagram (a record too many, never one too few).
pub const DATAGRAM_PEER_ENTRIES: u32 = 16_384;
/// The read-only global holding [`crate::KernelOffsets`].
pub const OFFSETS_GLOBAL: &str = "OFFSETS";

/// Number of grant slots; a host holds far fewer live grants.
pub const GRANT_SLOTS: u32 = 1024;
/// Number of session slots.
pub const SESSION_SLOTS: u32 = 4096;
/// Default ring buffer size in bytes (a power of two, a multiple of the page size).
pub const DEFAULT_RING_BYTES: u32 = 8 << 20;

/// Slot never written or released: treated as dead.
pub const STATE_EMPTY: u32 = 0;
/// The grant or session may run.
pub const STATE_ACTIVE: u32 = 1;
/// The grant passed its expiry.
pub const STATE_EXPIRED: u32 = 2;
/// The grant was revoked.
pub const STATE_REVOKED: u32 = 3;
/// The session was killed by an operator or a rule.
pub const STATE_KILLED: u32 = 4;

/// The identity of a tagged task. Copied to the child at every fork and clone, so
/// threads and descendants share it; it lives in task storage, so it dies with the
/// task and a reused PID never inherits it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskTag {
    /// Session id, unique per agent state; carried into every event.
    pub session_id: u64,
    /// Grant id; carried into every event.
    pub grant_id: u64,
    /// Index into `SESSIONS`.
    pub session_slot: u32,
    /// Index into `GRANTS`.
    pub grant_slot: u32,
    /// `TAG_*` flags of `policy.rs` (set in the kernel, e.g. when a `kill` rule fires).
    pub flags: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// A grant as the kernel sees it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantState {
    /// Absolute expiry on the boot clock (`bpf_ktime_get_boot_ns`, `CLOCK_BOOTTIME`),
    /// so suspend and wall-clock changes cannot stretch a grant.
    pub expires_at_ns: u64,
    /// One of the `STATE_*` constants.
    pub state: u32,
    /// The grant's policy in `POLICIES`/`NET_RULES`; 0 means no policy.
    pub policy_slot: u32,
    /// Grant id, so user space can tell a reused slot from the grant it expects.
    pub grant_id: u64,
}

/// A session as the kernel sees it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionState {
    /// One of the `STATE_*` constants.
    pub state: u32,
    /// Tasks the session may have at once (the policy's `max_processes`); a new task
    /// over it is killed before it runs, and with [`SESSION_TASKS_KILL`] the whole
    /// session dies. 0: no limit.
    pub max_tasks: u32,
    /// Session id, so user space can tell a reused slot from the session it expects.
    pub session_id: u64,
}

/// `SessionState::max_tasks` bit: going over the limit kills the session
/// (`on_max_processes: kill-session`) rather than only the new task.
pub const SESSION_TASKS_KILL: u32 = 1 << 31;
/// `SessionState::max_tasks` bit: a record of the session the ring buffer has no
/// room for marks the session dead (`on_audit_gap: kill-session`), and the task
/// that made it gets SIGKILL before it returns to user mode.
pub const SESSION_GAP_KILL: u32 = 1 << 30;
/// The bits of `SessionState::max_tasks` that are flags, not the limit.
pub const SESSION_FLAGS: u32 = SESSION_TASKS_KILL | SESSION_GAP_KILL;

/// Event kinds [`SessionLost`] counts by: every `EventKind` number is below it.
pub const LOST_KINDS: usize = 16;
const _: () = assert!((crate::EventKind::IoUring as usize) < LOST_KINDS);

/// A session's lost records by `EventKind` number (the value of [`SESSION_LOST`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionLost {
    pub by_kind: [u32; LOST_KINDS],
}

/// A session's task count (the value of [`SESSION_TASKS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionTasks {
    /// Which session the count belongs to (a slot is reused).
    pub session_id: u64,
    /// Live tasks; signed so a late exit of a task counted elsewhere cannot wrap it.
    /// 64 bits because the BPF target has atomics of that width only.
    pub live: i64,
    /// New tasks refused (killed at birth) for going over the limit.
    pub refused: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all three are repr(C), Copy, and have no implicit padding (see the
    // layout test below), so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::TaskTag {}
    unsafe impl aya::Pod for super::GrantState {}
    unsafe impl aya::Pod for super::SessionState {}
    unsafe impl aya::Pod for super::SessionTasks {}
    unsafe impl aya::Pod for super::SessionLost {}
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn layouts_are_pinned() {
        assert_eq!(size_of::<TaskTag>(), 32);
        assert_eq!(offset_of!(TaskTag, flags), 24);
        assert_eq!(offset_of!(TaskTag, session_slot), 16);
        assert_eq!(offset_of!(TaskTag, grant_slot), 20);
        assert_eq!(size_of::<GrantState>(), 24);
        assert_eq!(offset_of!(GrantState, state), 8);
        assert_eq!(offset_of!(GrantState, policy_slot), 12);
        assert_eq!(offset_of!(GrantState, grant_id), 16);
        assert_eq!(size_of::<SessionState>(), 16);
        assert_eq!(offset_of!(SessionState, session_id), 8);
        assert_eq!(size_of::<SessionTasks>(), 24);
        assert_eq!(offset_of!(SessionTasks, live), 8);
        assert_eq!(size_of::<SessionLost>(), 64);
    }
}

/// A session and a destination it sent datagrams to (key of `DATAGRAM_PEERS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatagramPeer {
    pub session_id: u64,
    /// IPv6, or IPv4 mapped into `::ffff:0:0/96`, network order.
    pub addr: [u8; 16],
    /// Host order.
    pub port: u16,
    /// Explicit padding.
    pub _pad: [u8; 6],
}

/// Who made a tagged TCP socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOwner {
    pub session_id: u64,
    pub grant_id: u64,
    /// The session's slot in `SESSIONS`, so a record lost at the close is counted
    /// against the session (`SESSION_LOST`) although no task of it is running.
    pub session_slot: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Process (tgid) and thread that connected or accepted.
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: [u8; 16],
}
