//! `task_newtask`: every task a tagged task creates inherits its tag, in the kernel,
//! and counts against its session's task limit.
//!
//! `task_newtask` fires in `copy_process` for every new task: processes, threads,
//! and the kernel-made io_uring workers (io-wq) and SQPOLL threads, which
//! `sched_process_fork` never sees (they come from `create_io_thread`, not
//! `kernel_clone`). `current` is the creating task. No user space is involved, so
//! there is no window in which a child runs untagged.
//!
//! The count lives in `SESSION_TASKS` (one atomic add here, one at exit). A
//! task over `SessionState::max_tasks` is tagged doomed, so its first hook (its first
//! `sched_switch`) kills it before it runs a single instruction of its own; with
//! `SESSION_TASKS_KILL` the session is marked dead too. (A new task's first hook is
//! the `sys_exit` of its fork return, which the kernel runs before user mode.) Only the first refusal of a
//! session is an event (a fork bomb would flood the ring); the rest are counted.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::task_struct,
    helpers::generated::bpf_get_current_task_btf,
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use warrant_common::{
    EventHeader, EventKind, TaskTag,
    event::{VIOLATION_TASKS, ViolationEvent},
    maps::{SESSION_FLAGS, SESSION_TASKS_KILL, STATE_KILLED},
    policy::{ACTION_DENY, ACTION_KILL_SESSION, TAG_DOOMED},
};

use crate::{
    emit,
    maps::{SESSION_TASKS, SESSIONS, TASK_TAGS},
    tag,
};

#[btf_tracepoint(function = "task_newtask")]
#[inline(always)]
pub fn task_newtask(ctx: BtfTracePointContext) -> u32 {
    let child: *mut task_struct = ctx.arg(0);
    let parent = unsafe { bpf_get_current_task_btf() };
    let Some(tag) = tag::lookup(parent) else {
        return 0;
    };
    let tag = unsafe { *tag };
    let mut inherited = tag;
    if over_limit(&tag) {
        inherited.flags |= TAG_DOOMED;
    }
    // Tag the child even when the grant is dead, so its own first hook kills it too.
    let _ = unsafe { TASK_TAGS.get_or_insert(child, &inherited) };
    tag::enforce(&tag);
    0
}

/// Counts the new task; true when it goes over the session's limit.
#[inline(always)]
fn over_limit(tag: &TaskTag) -> bool {
    let Some(session) = SESSIONS.get(tag.session_slot) else {
        return false;
    };
    if session.session_id != tag.session_id {
        return false;
    }
    let Some(count) = SESSION_TASKS.get_ptr_mut(tag.session_slot) else {
        return false;
    };
    unsafe {
        if (*count).session_id != tag.session_id {
            return false;
        }
        add(&raw mut (*count).live, 1);
        let max = session.max_tasks & !SESSION_FLAGS;
        if max == 0 || core::ptr::read_volatile(&raw const (*count).live) <= i64::from(max) {
            return false;
        }
        add(&raw mut (*count).refused, 1);
        let kill_session = session.max_tasks & SESSION_TASKS_KILL != 0;
        if kill_session && let Some(s) = SESSIONS.get_ptr_mut(tag.session_slot) {
            (*s).state = STATE_KILLED;
        }
        if core::ptr::read_volatile(&raw const (*count).refused) == 1 {
            report(tag, max, kill_session);
        }
    }
    true
}

/// An atomic add whose result is not used: the BPF target has no compare-and-swap,
/// so `core`'s atomic types offer no `fetch_add`, but the instruction set has an
/// atomic add (`BPF_ATOMIC | BPF_ADD`), which this intrinsic lowers to. The value is
/// read separately: two CPUs racing past the limit by one task is harmless.
#[inline(always)]
pub(crate) unsafe fn add<T: Copy>(counter: *mut T, by: T) {
    unsafe { atomic_xadd::<T, T, { AtomicOrdering::Relaxed }>(counter, by) };
}

/// The first refused task of a session: which limit, and what followed.
#[inline(always)]
fn report(tag: &TaskTag, max: u32, kill_session: bool) {
    let mut ev = ViolationEvent {
        header: EventHeader::default(),
        op: VIOLATION_TASKS,
        action: if kill_session { ACTION_KILL_SESSION } else { ACTION_DENY },
        ..ViolationEvent::default()
    };
    ev.addr[..4].copy_from_slice(&max.to_ne_bytes());
    let task = unsafe { bpf_get_current_task_btf() };
    unsafe { emit::header(&raw mut ev.header, EventKind::Violation, tag, task) };
    emit::output(&ev, EventKind::Violation, Some(tag));
}

/// One task of the session is gone (called at every thread's exit).
#[inline(always)]
pub fn count_exit(tag: &TaskTag) {
    if let Some(count) = SESSION_TASKS.get_ptr_mut(tag.session_slot) {
        unsafe {
            if (*count).session_id == tag.session_id {
                add(&raw mut (*count).live, -1);
            }
        }
    }
}
