//! `sched_switch`: the kill check for tagged tasks that make no syscalls.
//!
//! A tagged task being switched out is checked against its grant; if the grant is
//! dead it gets SIGKILL (delivered through irq_work, since interrupts are off here).
//! Measured on this kernel: no visible cost on untagged tasks (docs/kernel.md §8).

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::tag;

#[btf_tracepoint(function = "sched_switch")]
#[inline(always)]
pub fn sched_switch(_ctx: BtfTracePointContext) -> u32 {
    // current is still `prev` in this tracepoint.
    if let Some((_, tag)) = tag::current() {
        tag::enforce(&tag);
    }
    0
}
