//! The one lookup every hook pays, and the in-kernel kill check.
//!
//! An untagged task costs a single task-storage lookup and returns. A tagged task's
//! grant and session are checked on every hook: a dead state or a passed expiry
//! (boot clock) sends SIGKILL in the task's own context, so an expired grant's
//! processes die at their next exec, fork, syscall (while sessions are live) or
//! context switch, whether or not the agent is running.

use aya_ebpf::{
    bindings::task_struct,
    helpers::generated::{bpf_get_current_task_btf, bpf_ktime_get_boot_ns, bpf_send_signal},
};
use warrant_common::{TaskTag, maps::STATE_ACTIVE, policy::TAG_DOOMED};

use crate::{
    kernel::offsets_valid,
    maps::{GRANTS, SESSIONS, TASK_TAGS},
};

const SIGKILL: u32 = 9;

/// The current task and its tag, or `None` for an untagged task.
#[inline(always)]
pub fn current() -> Option<(*mut task_struct, TaskTag)> {
    let task = unsafe { bpf_get_current_task_btf() };
    let tag = unsafe { TASK_TAGS.get(task) }?;
    if !offsets_valid() {
        return None;
    }
    Some((task, unsafe { *tag }))
}

/// The current task's tag, writable (a policy rule may mark it).
#[inline(always)]
pub fn current_mut() -> Option<*mut TaskTag> {
    let task = unsafe { bpf_get_current_task_btf() };
    unsafe { TASK_TAGS.get(task) }
}

/// Whether the grant and session behind `tag` still allow the task to run.
#[inline(always)]
pub fn alive(tag: &TaskTag) -> bool {
    if tag.flags & TAG_DOOMED != 0 {
        return false;
    }
    let grant_ok = match GRANTS.get(tag.grant_slot) {
        Some(g) => {
            g.state == STATE_ACTIVE
                && g.grant_id == tag.grant_id
                && unsafe { bpf_ktime_get_boot_ns() } < g.expires_at_ns
        }
        None => false,
    };
    let session_ok = match SESSIONS.get(tag.session_slot) {
        Some(s) => s.state == STATE_ACTIVE && s.session_id == tag.session_id,
        None => false,
    };
    grant_ok && session_ok
}

/// Kills the current task's whole thread group if its grant or session is dead.
/// Returns true when it did.
#[inline(always)]
pub fn enforce(tag: &TaskTag) -> bool {
    if alive(tag) {
        return false;
    }
    // bpf_send_signal targets the thread group of current and defers through
    // irq_work when interrupts are off (sched_switch), so it is safe in every hook.
    unsafe { bpf_send_signal(SIGKILL) };
    true
}
