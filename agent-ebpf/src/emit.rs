//! Event headers and the lost-record counters.
//!
//! Records are reserved in the ring buffer and filled in place (no copy, and no
//! large struct on the 512-byte BPF stack), or, for records that end in a path,
//! built in a per-CPU buffer and sent cut short after the bytes in use
//! ([`output_prefix`]) or packed piece by piece into a reservation of the exact
//! size ([`Packed`]): a file event takes ~150 bytes of ring, not 4.4 or 13.2 KB. A failed reservation is counted in the
//! per-CPU `LOST_EVENTS` (the host's total) and, when the record was a session's, in
//! its `SESSION_LOST` slot by kind; the agent turns both into `events_lost` events
//! naming the session. Under `on_audit_gap: kill-session` the failure also marks the
//! session dead, so every task of it dies at its next hook, and in a tracing program
//! the task that made the record gets SIGKILL before it returns to user mode (cgroup
//! programs have no signal helper: the syscall's own `sys_exit` hook kills it).

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_PROD_POS, BPF_RB_RING_SIZE, bpf_dynptr, task_struct},
    helpers::bpf_get_current_pid_tgid,
    helpers::generated::{
        bpf_dynptr_write, bpf_ktime_get_boot_ns, bpf_ringbuf_discard_dynptr,
        bpf_ringbuf_query, bpf_ringbuf_reserve_dynptr, bpf_ringbuf_submit_dynptr, bpf_send_signal,
    },
};
use warrant_common::{
    EventHeader, EventKind, TaskTag,
    event::RECORD_SLOT_SHIFT,
    maps::{LOST_KINDS, RING_FAIR_SHARE_AT, SESSION_GAP_KILL, STATE_KILLED},
};

use crate::{
    kernel::{load, load_ptr, off},
    maps::{EVENTS, LOST_EVENTS, RING_CHARGED, RING_READ, RING_WOKEN_AT, SESSION_LOST, SESSIONS},
};

const SIGKILL: u32 = 9;

/// Bytes waiting in the ring past which a bulk record wakes the agent, and the
/// bytes produced between two such wake-ups at least.
const WAKE_AT: u64 = 128 * 1024;

/// Ring flags for a bulk record (file opens and changes, which a busy session makes
/// by the hundred thousand a second): no wake-up of the agent until [`WAKE_AT`]
/// bytes wait, since each wake-up is an interrupt-work item (a self-IPI, an MSR
/// write that traps to the hypervisor in a VM) and a reader's trip through epoll
/// for a record or two. Past that, one record in each [`WAKE_AT`] bytes produced
/// forces the wake-up: a reader that is already draining a backlog is not
/// interrupted for every record it has yet to read (forcing on every record past
/// the mark took 44 % of a tagged open's BPF time when the agent lagged). The agent
/// also reads the ring on a short timer (`events::read`), so a quiet session's last
/// records are not held back. Every other record wakes a waiting reader at once
/// (flags 0: the kernel's adaptive wake-up), so kills and execs are seen without delay.
#[inline(always)]
fn bulk_flags(waiting: u64) -> u64 {
    let ring = ring();
    if waiting < WAKE_AT {
        return u64::from(BPF_RB_NO_WAKEUP);
    }
    let produced = unsafe { bpf_ringbuf_query(ring, u64::from(BPF_RB_PROD_POS)) };
    let Some(woken_at) = RING_WOKEN_AT.get_ptr_mut(0) else {
        return u64::from(BPF_RB_FORCE_WAKEUP);
    };
    unsafe {
        if produced.wrapping_sub(*woken_at) < WAKE_AT {
            return u64::from(BPF_RB_NO_WAKEUP);
        }
        *woken_at = produced;
    }
    u64::from(BPF_RB_FORCE_WAKEUP)
}

#[inline(always)]
fn ring() -> *mut core::ffi::c_void {
    core::ptr::from_ref(&EVENTS).cast_mut().cast()
}

/// Bytes waiting in the ring for the agent.
#[inline(always)]
fn waiting() -> u64 {
    unsafe { bpf_ringbuf_query(ring(), u64::from(BPF_RB_AVAIL_DATA)) }
}

/// `EventHeader::flags` naming the session slot a record is charged to.
#[inline(always)]
pub fn slot_flags(slot: u32) -> u32 {
    (slot + 1) << RECORD_SLOT_SHIFT
}

/// Whether a record of `tag`'s session may take ring space, `waiting` bytes being
/// unread: always while the ring is under [`RING_FAIR_SHARE_AT`] quarters full;
/// past that, only for a session that holds less than half of what waits (its
/// charged bytes less those the agent has read). So a session flooding the ring
/// loses its own records, counted against it, while every other session's records
/// still find room: the flood can never hold more than about three quarters of the
/// ring plus half of the rest.
#[inline(always)]
fn admitted(tag: Option<&TaskTag>, waiting: u64) -> bool {
    let Some(tag) = tag else { return true };
    let size = unsafe { bpf_ringbuf_query(ring(), u64::from(BPF_RB_RING_SIZE)) };
    if waiting < size / 4 * RING_FAIR_SHARE_AT {
        return true;
    }
    let (Some(charged), Some(read)) = (RING_CHARGED.get(tag.session_slot), RING_READ.get(tag.session_slot)) else {
        return true;
    };
    charged.saturating_sub(*read) * 2 < waiting
}

/// Adds a record of `bytes` to the ring bytes charged to `tag`'s session.
#[inline(always)]
fn charge(tag: Option<&TaskTag>, bytes: usize) {
    let Some(tag) = tag else { return };
    if let Some(c) = RING_CHARGED.get_ptr_mut(tag.session_slot) {
        unsafe { crate::fork::add(c, bytes as u64) };
    }
}

/// Reserves room for a `T` record of `kind` from a task tagged `tag` (`None` for a
/// record no session task makes), or counts the loss and returns `None`. In a
/// tracing program.
#[inline(always)]
pub fn reserve<T>(kind: EventKind, tag: Option<&TaskTag>) -> Option<*mut T> {
    reserve_as::<T, true>(kind, tag)
}

/// [`reserve`] where no task may be signalled: in a cgroup program (no signal
/// helper), or for a record made on no task of the session (a socket's close in softirq).
#[inline(always)]
pub fn reserve_no_signal<T>(kind: EventKind, tag: &TaskTag) -> Option<*mut T> {
    reserve_as::<T, false>(kind, Some(tag))
}

#[inline(always)]
fn reserve_as<T, const SIGNAL: bool>(kind: EventKind, tag: Option<&TaskTag>) -> Option<*mut T> {
    if !admitted(tag, waiting()) {
        count_lost::<SIGNAL>(kind, tag);
        return None;
    }
    match EVENTS.reserve_bytes(core::mem::size_of::<T>(), 0) {
        Some(entry) => {
            charge(tag, core::mem::size_of::<T>());
            // The reservation is submitted or discarded by `submit`/`discard` below
            // through the same pointer; forget the wrapper, which would otherwise
            // insist on being consumed here.
            let ptr = entry.as_ptr().cast_mut().cast::<T>();
            core::mem::forget(entry);
            Some(ptr)
        }
        None => {
            count_lost::<SIGNAL>(kind, tag);
            None
        }
    }
}

/// Makes a reserved record visible to the agent.
#[inline(always)]
pub fn submit<T>(ptr: *mut T) {
    unsafe { aya_ebpf::helpers::generated::bpf_ringbuf_submit(ptr.cast(), 0) };
}

/// Copies a small record into the ring buffer, counting a loss on failure. In a
/// tracing program.
#[inline(always)]
pub fn output<T>(record: &T, kind: EventKind, tag: Option<&TaskTag>) {
    output_as::<T, true>(record, kind, tag);
}

#[inline(always)]
fn output_as<T, const SIGNAL: bool>(record: &T, kind: EventKind, tag: Option<&TaskTag>) {
    if !admitted(tag, waiting()) || EVENTS.output_untyped::<T>(record, 0).is_err() {
        count_lost::<SIGNAL>(kind, tag);
        return;
    }
    charge(tag, core::mem::size_of::<T>());
}

/// Copies the first `len` bytes of `*record` (at most all of it) into the ring
/// buffer, counting a loss on failure. In a tracing program.
///
/// # Safety
/// `record` must point to a readable `T` (a per-CPU map value).
#[inline(always)]
pub unsafe fn output_prefix<T>(record: *const T, len: usize, kind: EventKind, tag: Option<&TaskTag>) {
    let mut len = len;
    if len > core::mem::size_of::<T>() {
        len = core::mem::size_of::<T>();
    }
    let bytes = unsafe { core::slice::from_raw_parts(record.cast::<u8>(), len) };
    let waiting = waiting();
    if !admitted(tag, waiting) {
        count_lost::<true>(kind, tag);
        return;
    }
    let flags = if matches!(kind, EventKind::FileOpen) { bulk_flags(waiting) } else { 0 };
    if EVENTS.output_untyped::<[u8]>(bytes, flags).is_err() {
        count_lost::<true>(kind, tag);
        return;
    }
    charge(tag, len);
}

/// A ring-buffer reservation of a size known only at run time (a dynptr), filled
/// piece by piece at increasing offsets and then submitted. In a tracing program.
///
/// Used in place: once reserved, the dynptr may not be copied (the verifier
/// refuses a read of its stack slots), so there is no constructor that returns a
/// reserved one.
pub struct Packed {
    ptr: bpf_dynptr,
    at: u32,
    /// Bytes waiting in the ring when the record was reserved.
    waiting: u64,
}

impl Packed {
    #[inline(always)]
    pub const fn new() -> Self {
        Self { ptr: bpf_dynptr { __opaque: [0; 2] }, at: 0, waiting: 0 }
    }

    /// Reserves `size` bytes for a record of `kind`; on failure counts the loss
    /// and returns false (nothing else may be done with `self` then).
    #[inline(always)]
    pub fn reserve(&mut self, size: u32, kind: EventKind, tag: Option<&TaskTag>) -> bool {
        self.waiting = waiting();
        if !admitted(tag, self.waiting) {
            count_lost::<true>(kind, tag);
            return false;
        }
        if unsafe { bpf_ringbuf_reserve_dynptr(ring(), size, 0, &raw mut self.ptr) } != 0 {
            // A failed reservation still has to be released (the verifier insists).
            unsafe { bpf_ringbuf_discard_dynptr(&raw mut self.ptr, 0) };
            count_lost::<true>(kind, tag);
            return false;
        }
        charge(tag, size as usize);
        true
    }

    /// Appends `len` bytes from `src`.
    ///
    /// # Safety
    /// `src` must be readable for `len` bytes (the verifier checks it is).
    #[inline(always)]
    pub unsafe fn put(&mut self, src: *const u8, len: u32) {
        unsafe { bpf_dynptr_write(&raw const self.ptr, self.at, src.cast_mut().cast(), len, 0) };
        self.at += len;
    }

    /// Makes the record visible to the agent, waking it at once unless `bulk`
    /// (see [`bulk_flags`]).
    #[inline(always)]
    pub fn submit(&mut self, bulk: bool) {
        let flags = if bulk { bulk_flags(self.waiting) } else { 0 };
        unsafe { bpf_ringbuf_submit_dynptr(&raw mut self.ptr, flags) };
    }
}

/// [`output`] where no task may be signalled (see [`reserve_no_signal`]).
#[inline(always)]
pub fn output_no_signal<T>(record: &T, kind: EventKind, tag: &TaskTag) {
    output_as::<T, false>(record, kind, Some(tag));
}

#[inline(always)]
fn count_lost<const SIGNAL: bool>(kind: EventKind, tag: Option<&TaskTag>) {
    if let Some(n) = LOST_EVENTS.get_ptr_mut(0) {
        unsafe { *n += 1 };
    }
    let Some(tag) = tag else { return };
    let Some(s) = SESSIONS.get_ptr_mut(tag.session_slot) else { return };
    // A record that outlived its session (a socket closing after the session's
    // slot went to another) is the host's loss only, never the new session's.
    if unsafe { (*s).session_id } != tag.session_id {
        return;
    }
    if let Some(lost) = SESSION_LOST.get_ptr_mut(tag.session_slot) {
        let k = (kind as u32 as usize) & (LOST_KINDS - 1);
        unsafe { (*lost).by_kind[k] += 1 };
    }
    unsafe {
        if (*s).max_tasks & SESSION_GAP_KILL != 0 {
            (*s).state = STATE_KILLED;
            if SIGNAL {
                bpf_send_signal(SIGKILL);
            }
        }
    }
}

/// The cgroup v2 id of `task` (the current task), what `bpf_get_current_cgroup_id`
/// returns, in four direct loads instead of a helper call; 0 if a link is missing.
#[inline(always)]
fn cgroup_id(task: *const u8) -> u64 {
    load_ptr(task, off!(task_cgroups))
        .and_then(|css_set| load_ptr(css_set, off!(css_set_dfl_cgrp)))
        .and_then(|cgroup| load_ptr(cgroup, off!(cgroup_kn)))
        .map_or(0, |kn| load::<u64>(kn, off!(kernfs_node_id)))
}

/// Fills the common header for the current task.
///
/// # Safety
/// `h` must point to writable memory of an `EventHeader`.
#[inline(always)]
pub unsafe fn header(h: *mut EventHeader, kind: EventKind, tag: &TaskTag, task: *mut task_struct) {
    let task = task.cast_const().cast::<u8>();
    let pid_tgid = bpf_get_current_pid_tgid();
    let ppid = load_ptr(task, off!(task_real_parent)).map_or(0, |parent| load::<u32>(parent, off!(task_tgid)));
    // The task's (subjective) credentials, as `bpf_get_current_uid_gid` reads them.
    let (uid, euid, gid) = load_ptr(task, off!(task_cred)).map_or((u32::MAX, u32::MAX, u32::MAX), |cred| {
        (load::<u32>(cred, off!(cred_uid)), load::<u32>(cred, off!(cred_euid)), load::<u32>(cred, off!(cred_gid)))
    });
    // `comm` is 16 bytes in the task, NUL-padded as `bpf_get_current_comm` copies it
    // (the kernel keeps it NUL-terminated), read as two words.
    let comm_at = off!(task_comm);
    let (c0, c1) = (load::<u64>(task, comm_at), load::<u64>(task, comm_at + 8));
    let mut comm = [0u8; 16];
    comm[..8].copy_from_slice(&c0.to_ne_bytes());
    comm[8..].copy_from_slice(&c1.to_ne_bytes());
    unsafe {
        (*h).kind = kind as u32;
        (*h).flags = slot_flags(tag.session_slot);
        (*h).ktime_ns = bpf_ktime_get_boot_ns();
        (*h).session_id = tag.session_id;
        (*h).grant_id = tag.grant_id;
        (*h).cgroup_id = cgroup_id(task);
        (*h).pid = (pid_tgid >> 32) as u32;
        (*h).tid = pid_tgid as u32;
        (*h).ppid = ppid;
        (*h).uid = uid;
        (*h).euid = euid;
        (*h).gid = gid;
        (*h).comm = comm;
    }
}
