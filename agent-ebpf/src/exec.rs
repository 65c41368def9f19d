//! `sched_process_exec`: the exec event (file, argv, cwd) of a tagged task.
//!
//! It fires after the new image is in place, so argv is read from the new stack
//! (`mm->arg_start..arg_end`) and the path from the opened file, not the string the
//! caller passed.

use aya_ebpf::{
    bindings::task_struct, helpers::generated::bpf_probe_read_user, macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use warrant_common::{
    EventKind,
    event::{ARGV_BUF, ARGV_TRUNCATED, ExecEvent},
};

use crate::{
    emit,
    kernel::{off, read, read_ptr},
    path, tag,
};

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> u32 {
    let Some((task, tag)) = tag::current() else {
        return 0;
    };
    tag::enforce(&tag);
    let bprm: *const u8 = ctx.arg(2);
    let Some(ev) = emit::reserve::<ExecEvent>() else {
        return 0;
    };
    unsafe { fill(ev, task, bprm, &tag) };
    emit::submit(ev);
    0
}

#[inline(always)]
unsafe fn fill(ev: *mut ExecEvent, task: *mut task_struct, bprm: *const u8, tag: &warrant_common::TaskTag) {
    unsafe { emit::header(&raw mut (*ev).header, EventKind::Exec, tag, task) };
    let t = task.cast_const().cast::<u8>();

    match read_ptr(bprm, off!(bprm_file)) {
        Some(file) => unsafe { path::resolve(file.wrapping_add(off!(file_path)), &raw mut (*ev).path) },
        None => unsafe { path::resolve(core::ptr::null(), &raw mut (*ev).path) },
    }
    match read_ptr(t, off!(task_fs)) {
        Some(fs) => unsafe { path::resolve(fs.wrapping_add(off!(fs_pwd)), &raw mut (*ev).cwd) },
        None => unsafe { path::resolve(core::ptr::null(), &raw mut (*ev).cwd) },
    }

    let mut len: u64 = 0;
    let mut flags: u32 = 0;
    if let Some(mm) = read_ptr(t, off!(task_mm)) {
        let start: u64 = read(mm, off!(mm_arg_start)).unwrap_or(0);
        let end: u64 = read(mm, off!(mm_arg_end)).unwrap_or(0);
        if end > start {
            len = end - start;
            if len > ARGV_BUF as u64 {
                len = ARGV_BUF as u64;
                flags = ARGV_TRUNCATED;
            }
            let dst = unsafe { (&raw mut (*ev).argv).cast::<u8>() };
            let r = unsafe { bpf_probe_read_user(dst.cast(), len as u32, start as *const _) };
            if r != 0 {
                len = 0;
            }
        }
    }
    unsafe {
        (*ev).argv_len = len as u32;
        (*ev).argv_flags = flags;
    }
}
