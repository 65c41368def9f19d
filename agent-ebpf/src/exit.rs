//! `sched_process_exit`: the exit event, and the tag removed from the dying task.

use aya_ebpf::{bindings::task_struct, macros::btf_tracepoint, programs::BtfTracePointContext};
use warrant_common::{EventHeader, EventKind, event::ExitEvent};

use crate::{
    emit,
    kernel::{off, offsets_valid, read},
    maps::{SESSION_DEATHS, SESSIONS, TASK_TAGS},
    tag,
};

/// One more process of a dead session is gone. Per-CPU, so no atomics are needed
/// (exits run on every CPU at once during a kill); the agent sums the CPUs.
#[inline(always)]
fn count_death(tag: &warrant_common::TaskTag) {
    let current = SESSIONS.get(tag.session_slot).is_some_and(|s| s.session_id == tag.session_id);
    if current && let Some(n) = SESSION_DEATHS.get_ptr_mut(tag.session_slot) {
        unsafe { *n += 1 };
    }
}

#[btf_tracepoint(function = "sched_process_exit")]
#[inline(always)]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> u32 {
    let task: *mut task_struct = ctx.arg(0);
    let group_dead: u64 = ctx.arg(1);
    let Some(tag) = crate::tag::lookup(task) else {
        return 0;
    };
    let tag = unsafe { *tag };
    let group_dead = group_dead & 0xff != 0;
    crate::fork::count_exit(&tag);
    if group_dead && !tag::alive(&tag) {
        count_death(&tag);
    }
    // One event per process: only the last thread out reports.
    if group_dead && offsets_valid() {
        let mut ev = ExitEvent {
            header: EventHeader::default(),
            exit_code: read::<u32>(task.cast_const().cast(), off!(task_exit_code)).unwrap_or(0),
            _pad: 0,
        };
        unsafe { emit::header(&raw mut ev.header, EventKind::Exit, &tag, task) };
        emit::output(&ev, EventKind::Exit, Some(&tag));
    }
    // The storage would go with the task anyway; dropping it now keeps a zombie
    // from counting as a live member of its session.
    unsafe { TASK_TAGS.delete(task) };
    0
}
