//! `io_uring_submit_req`: every io_uring request a tagged task submits, as an event.
//!
//! Sessions are refused io_uring by default (seccomp); a policy with
//! `io_uring: allow` lets them use it, and then what they submit is on the record
//! here. The tracepoint fires in `io_submit_sqe` once the request is read from the
//! submission queue, in the context of the task that submits: the caller of
//! `io_uring_enter`, or the ring's SQPOLL thread, which `task_newtask` tagged when
//! the session's task created it. Work the ring hands to io-wq workers was
//! submitted here first, so nothing a session queues goes unrecorded.
//!
//! An untagged submitter pays one task-storage lookup; only io_uring users pay at
//! all (the tracepoint is on the submission path, not on every syscall).

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use warrant_common::{
    EventHeader, EventKind,
    event::{IoUringEvent, REQ_F_FIXED_FILE},
};

use crate::{
    emit,
    kernel::{off, read},
    tag,
};

#[btf_tracepoint(function = "io_uring_submit_req")]
#[inline(always)]
pub fn io_uring_submit_req(ctx: BtfTracePointContext) -> u32 {
    let Some((task, tag)) = tag::current() else {
        return 0;
    };
    if tag::enforce(&tag) {
        return 0;
    }
    // The agent leaves the io_kiocb offsets zero on a kernel without io_uring, and
    // then does not attach this program at all; the check keeps it inert anyway.
    if off!(io_kiocb_opcode) == 0 {
        return 0;
    }
    let req: *const u8 = ctx.arg(0);
    let flags = read::<u64>(req, off!(io_kiocb_flags)).unwrap_or(0);
    let mut ev = IoUringEvent {
        header: EventHeader::default(),
        opcode: u32::from(read::<u8>(req, off!(io_kiocb_opcode)).unwrap_or(u8::MAX)),
        fd: read::<i32>(req, off!(io_kiocb_cqe_fd)).unwrap_or(-1),
        user_data: read::<u64>(req, off!(io_kiocb_cqe_user_data)).unwrap_or(0),
        req_flags: (flags as u32) & REQ_F_FIXED_FILE,
        _pad: 0,
    };
    unsafe { emit::header(&raw mut ev.header, EventKind::IoUring, &tag, task) };
    emit::output(&ev, EventKind::IoUring, Some(&tag));
    0
}
