//! The one lookup every hook pays, and the in-kernel kill check.
//!
//! An untagged task costs a single task-storage lookup and returns. A tagged task's
//! grant and session are checked on every hook: a dead state or a passed expiry
//! (boot clock) sends SIGKILL in the task's own context, so an expired grant's
//! processes die at their next exec, fork, syscall (while sessions are live) or
//! context switch, whether or not the agent is running. A policy with
//! `on_expiry: drop` instead leaves an expired grant's tasks running, cut off from
//! the network by the connect hooks.

use aya_ebpf::{
    bindings::task_struct,
    helpers::generated::{bpf_get_current_task_btf, bpf_jiffies64, bpf_ktime_get_boot_ns, bpf_send_signal},
};
use warrant_common::{
    TaskTag,
    maps::{STATE_ACTIVE, STATE_KILLED},
    policy::{ACTION_KILL, ACTION_KILL_SESSION, POLICY_ON_EXPIRY_DROP, TAG_DOOMED},
};

use crate::{
    kernel::{load, off, offsets_valid},
    maps::{CLOCK_CACHE, GRANTS, POLICIES, SESSIONS, TASK_TAGS},
};

const SIGKILL: u32 = 9;

/// The tag of `task` (a pointer the verifier knows by its BTF type), writable.
///
/// A task that no BPF program ever gave task storage has `bpf_storage` NULL: one
/// load tells, without the storage helper, which was a fifth of what the syscall
/// hook costs every untagged task on the host while a session is live. A tagged
/// task always has storage (its tag is in it), so this never hides one; a task
/// some other program gave storage just takes the lookup.
#[inline(always)]
pub fn lookup(task: *mut task_struct) -> Option<*mut TaskTag> {
    if load::<u64>(task.cast_const().cast(), off!(task_bpf_storage)) == 0 {
        return None;
    }
    unsafe { TASK_TAGS.get(task) }
}

/// The current task and its tag, or `None` for an untagged task.
#[inline(always)]
pub fn current() -> Option<(*mut task_struct, TaskTag)> {
    let task = unsafe { bpf_get_current_task_btf() };
    let tag = lookup(task)?;
    if !offsets_valid() {
        return None;
    }
    Some((task, unsafe { *tag }))
}

/// The current task's tag, writable (a policy rule may mark it).
#[inline(always)]
pub fn current_mut() -> Option<*mut TaskTag> {
    lookup(unsafe { bpf_get_current_task_btf() })
}

/// Where a tagged task stands.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Grant and session active, expiry ahead.
    Live,
    /// The grant expired and its policy says `on_expiry: drop`: the task runs on, but
    /// connects nowhere.
    CutOff,
    /// The task must die at this hook.
    Dead,
}

/// The standing of the task behind `tag`. Anything unexpected (an empty or reused
/// slot) is `Dead`: the kernel fails closed.
#[inline(always)]
pub fn standing(tag: &TaskTag) -> Standing {
    if tag.flags & TAG_DOOMED != 0 {
        return Standing::Dead;
    }
    let session_ok = match SESSIONS.get(tag.session_slot) {
        Some(s) => s.state == STATE_ACTIVE && s.session_id == tag.session_id,
        None => false,
    };
    let Some(g) = GRANTS.get(tag.grant_slot) else {
        return Standing::Dead;
    };
    if !session_ok || g.state != STATE_ACTIVE || g.grant_id != tag.grant_id {
        return Standing::Dead;
    }
    if clock() < g.expires_at_ns {
        return Standing::Live;
    }
    let drop_on_expiry = g.policy_slot != 0
        && POLICIES.get(g.policy_slot).is_some_and(|p| p.flags & POLICY_ON_EXPIRY_DROP != 0);
    if drop_on_expiry { Standing::CutOff } else { Standing::Dead }
}

/// The boot clock for expiry checks, read at most once per jiffy on each CPU: a
/// tagged task's every hook checks its grant's expiry, and reading the clock
/// (`bpf_ktime_get_boot_ns`, a paravirtual clock read here) was an eighth of a
/// file event's BPF time. The value may be up to one scheduler tick old (4 ms at
/// HZ=250), so an expired grant's task dies at most that much later; jiffies do
/// not count a suspend, but the first tick after resume is a new jiffy, which
/// reads the clock afresh.
#[inline(always)]
fn clock() -> u64 {
    let jiffy = unsafe { bpf_jiffies64() };
    let Some(cache) = CLOCK_CACHE.get_ptr_mut(0) else {
        return unsafe { bpf_ktime_get_boot_ns() };
    };
    unsafe {
        if (*cache)[0] == jiffy && (*cache)[1] != 0 {
            return (*cache)[1];
        }
        let now = bpf_ktime_get_boot_ns();
        *cache = [jiffy, now];
        now
    }
}

/// Whether the grant and session behind `tag` still allow the task to run.
#[inline(always)]
pub fn alive(tag: &TaskTag) -> bool {
    standing(tag) != Standing::Dead
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

/// What a refusing rule's `action` leaves in the kernel for the other hooks: `kill`
/// dooms the task behind `tag_ptr` (its next hook kills it), `kill-session` marks
/// `tag`'s session dead (every task of it dies at its next hook). Other actions
/// leave nothing.
#[inline(always)]
pub fn sentence(tag_ptr: *mut TaskTag, tag: &TaskTag, action: u32) {
    if action == ACTION_KILL {
        unsafe { (*tag_ptr).flags |= TAG_DOOMED };
    } else if action == ACTION_KILL_SESSION
        && let Some(s) = SESSIONS.get_ptr_mut(tag.session_slot)
    {
        unsafe {
            if (*s).session_id == tag.session_id {
                (*s).state = STATE_KILLED;
            }
        }
    }
}

