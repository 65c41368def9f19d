//! `sched_process_fork`: a tagged task's child inherits its tag, in the kernel.
//!
//! The hook fires for new processes and new threads alike, so every thread carries
//! the tag too. No user space is involved, so there is no window in which a child
//! runs untagged.

use aya_ebpf::{bindings::task_struct, macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::{maps::TASK_TAGS, tag};

#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> u32 {
    let parent: *mut task_struct = ctx.arg(0);
    let child: *mut task_struct = ctx.arg(1);
    let Some(tag) = (unsafe { TASK_TAGS.get(parent) }) else {
        return 0;
    };
    let tag = unsafe { *tag };
    // Tag the child even when the grant is dead, so its own first hook kills it too.
    let _ = unsafe { TASK_TAGS.get_or_insert(child, &tag) };
    tag::enforce(&tag);
    0
}
