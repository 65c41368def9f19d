//! Event headers and the lost-record counter.
//!
//! Records are reserved in the ring buffer and filled in place (no copy, and no
//! large struct on the 512-byte BPF stack). A failed reservation is counted in the
//! per-CPU `LOST_EVENTS`; the agent turns the count into an `events_lost` event.

use aya_ebpf::{
    bindings::task_struct,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid},
    helpers::generated::{bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns},
};
use warrant_common::{EventHeader, EventKind, TaskTag};

use crate::{
    kernel::{off, read, read_ptr},
    maps::{EVENTS, LOST_EVENTS},
};

/// Reserves room for a `T` record, or counts the loss and returns `None`.
#[inline(always)]
pub fn reserve<T>() -> Option<*mut T> {
    match EVENTS.reserve_bytes(core::mem::size_of::<T>(), 0) {
        Some(entry) => {
            // The reservation is submitted or discarded by `submit`/`discard` below
            // through the same pointer; forget the wrapper, which would otherwise
            // insist on being consumed here.
            let ptr = entry.as_ptr().cast_mut().cast::<T>();
            core::mem::forget(entry);
            Some(ptr)
        }
        None => {
            count_lost();
            None
        }
    }
}

/// Makes a reserved record visible to the agent.
#[inline(always)]
pub fn submit<T>(ptr: *mut T) {
    unsafe { aya_ebpf::helpers::generated::bpf_ringbuf_submit(ptr.cast(), 0) };
}

/// Copies a small record into the ring buffer, counting a loss on failure.
#[inline(always)]
pub fn output<T>(record: &T) {
    if EVENTS.output_untyped::<T>(record, 0).is_err() {
        count_lost();
    }
}

#[inline(always)]
fn count_lost() {
    if let Some(n) = LOST_EVENTS.get_ptr_mut(0) {
        unsafe { *n += 1 };
    }
}

/// Fills the common header for the current task.
///
/// # Safety
/// `h` must point to writable memory of an `EventHeader`.
#[inline(always)]
pub unsafe fn header(h: *mut EventHeader, kind: EventKind, tag: &TaskTag, task: *mut task_struct) {
    let task = task.cast_const().cast::<u8>();
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let ppid = read_ptr(task, off!(task_real_parent))
        .and_then(|parent| read::<u32>(parent, off!(task_tgid)))
        .unwrap_or(0);
    let euid = read_ptr(task, off!(task_cred))
        .and_then(|cred| read::<u32>(cred, off!(cred_euid)))
        .unwrap_or(u32::MAX);
    unsafe {
        (*h).kind = kind as u32;
        (*h).flags = 0;
        (*h).ktime_ns = bpf_ktime_get_boot_ns();
        (*h).session_id = tag.session_id;
        (*h).grant_id = tag.grant_id;
        (*h).cgroup_id = bpf_get_current_cgroup_id();
        (*h).pid = (pid_tgid >> 32) as u32;
        (*h).tid = pid_tgid as u32;
        (*h).ppid = ppid;
        (*h).uid = uid_gid as u32;
        (*h).euid = euid;
        (*h).gid = (uid_gid >> 32) as u32;
        (*h).comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
}
