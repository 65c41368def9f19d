//! Every map of the object, and the `OFFSETS` global. Layouts and meaning are
//! documented in `warrant_common::maps`; user space opens them by the same names.

use aya_ebpf::{
    btf_maps::{Array, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
    macros::btf_map,
};
use warrant_common::{
    GrantState, KernelOffsets, SessionState, TaskTag,
    event::{ExecEvent, FileChangeEvent, FileOpenEvent, PATH_BUF},
    maps::{DATAGRAM_PEER_ENTRIES, DEFAULT_RING_BYTES, DatagramPeer, GRANT_SLOTS, SESSION_SLOTS, SessionLost, SessionTasks, SockOwner, TCP_SOCKET_ENTRIES},
    policy::{NET_RULE_ENTRIES, NetKey, NetVerdict, POLICY_SLOTS, PolicyState, UNIX_RULE_ENTRIES, UnixKey, UnixVerdict},
    syscalls::{Refusal, SYSCALL_SLOTS},
};

use crate::task_storage::TaskStorage;

#[btf_map]
pub static TASK_TAGS: TaskStorage<TaskTag> = TaskStorage::new();

#[btf_map]
pub static GRANTS: Array<GrantState, { GRANT_SLOTS as usize }> = Array::new();

#[btf_map]
pub static SESSIONS: Array<SessionState, { SESSION_SLOTS as usize }> = Array::new();

/// The agent resizes this at load (`--ring-buffer-bytes`).
#[btf_map]
pub static EVENTS: RingBuf<u8, { DEFAULT_RING_BYTES as usize }> = RingBuf::new();

#[btf_map]
pub static LOST_EVENTS: PerCpuArray<u64, 1> = PerCpuArray::new();

/// Per-CPU: the jiffy (`bpf_jiffies64`) and the boot clock read in it (see
/// `tag::clock`).
#[btf_map]
pub static CLOCK_CACHE: PerCpuArray<[u64; 2], 1> = PerCpuArray::new();

/// Bytes of ring records charged to each session slot (see `emit::admitted`).
#[btf_map]
pub static RING_CHARGED: Array<u64, { SESSION_SLOTS as usize }> = Array::new();

/// Bytes of each session slot's records the agent has read (written by the agent).
#[btf_map]
pub static RING_READ: Array<u64, { SESSION_SLOTS as usize }> = Array::new();

/// The ring's producer position at the last forced wake-up of the agent (see
/// `emit::bulk_flags`); shared by every CPU, a lost update only costs one more wake-up.
#[btf_map]
pub static RING_WOKEN_AT: Array<u64, 1> = Array::new();

#[btf_map]
pub static POLICIES: Array<PolicyState, { POLICY_SLOTS as usize }> = Array::new();

#[btf_map]
pub static NET_RULES: LpmTrie<NetKey, NetVerdict, { NET_RULE_ENTRIES as usize }> = LpmTrie::new();

/// Self-protection's and every policy's `unix:` rules (see `unix_policy.rs`).
#[btf_map]
pub static UNIX_RULES: LpmTrie<UnixKey, UnixVerdict, { UNIX_RULE_ENTRIES as usize }> = LpmTrie::new();

/// Per-CPU room for a `UNIX_RULES` key at a connect's return (the sys_exit stack
/// has none to spare; see `unix_peer.rs`).
#[btf_map]
pub static UNIX_SCRATCH: PerCpuArray<aya_ebpf::maps::lpm_trie::Key<UnixKey>, 1> = PerCpuArray::new();

/// Each session's lost records, by kind (see `emit.rs`).
#[btf_map]
pub static SESSION_LOST: PerCpuArray<SessionLost, { SESSION_SLOTS as usize }> = PerCpuArray::new();

#[btf_map]
pub static SESSION_DEATHS: PerCpuArray<u32, { SESSION_SLOTS as usize }> = PerCpuArray::new();

/// Each session's task count (see `fork.rs`).
#[btf_map]
pub static SESSION_TASKS: Array<SessionTasks, { SESSION_SLOTS as usize }> = Array::new();

/// The syscalls a session may not make, by number (see `syscalls.rs`).
#[btf_map]
pub static REFUSED_SYSCALLS: Array<Refusal, { SYSCALL_SLOTS as usize }> = Array::new();

/// Tagged TCP sockets by kernel address (see `tcp.rs`).
#[btf_map]
pub static TCP_SOCKETS: LruHashMap<u64, SockOwner, { TCP_SOCKET_ENTRIES as usize }> = LruHashMap::new();

/// Destinations sessions sent datagrams to (see `net_policy.rs`).
#[btf_map]
pub static DATAGRAM_PEERS: LruHashMap<DatagramPeer, u64, { DATAGRAM_PEER_ENTRIES as usize }> = LruHashMap::new();

/// Per-CPU state of a dentry walk between its steps (see `path.rs`).
#[btf_map]
pub static WALK: PerCpuArray<crate::path::Walk, 1> = PerCpuArray::new();

/// Per-CPU buffer the dentry walk writes into (see `path.rs`).
#[btf_map]
pub static PATH_SCRATCH: PerCpuArray<[u8; PATH_BUF], 1> = PerCpuArray::new();

/// Per-CPU room to build a `file_open`/`exec_failed` record in before it is sent
/// cut short (see `emit::output_prefix`). Filled and sent by the `sys_exit`
/// program only, which runs with preemption off and does not nest on a CPU.
#[btf_map]
pub static OPEN_RECORD: PerCpuArray<FileOpenEvent, 1> = PerCpuArray::new();

/// Per-CPU room to build a `file_change` record in before it is sent packed (see
/// `emit::Packed`). Filled and sent by the `sys_exit` program only.
#[btf_map]
pub static CHANGE_RECORD: PerCpuArray<FileChangeEvent, 1> = PerCpuArray::new();

/// Per-CPU room to build an `exec` record in before it is sent packed. Filled and
/// sent by `sched_process_exec` only (a tracepoint: preemption off, no nesting).
#[btf_map]
pub static EXEC_RECORD: PerCpuArray<ExecEvent, 1> = PerCpuArray::new();

/// Set by the agent before load (read-only data, so the verifier sees constants).
/// All zero means "not set": [`crate::kernel::offsets_valid`] keeps the hooks inert.
#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = unsafe { core::mem::zeroed() };
