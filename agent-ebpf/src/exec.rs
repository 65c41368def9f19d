//! `sched_process_exec`: the exec event (file, argv, cwd) of a tagged task.
//!
//! It fires after the new image is in place, so argv is read from the new stack
//! (`mm->arg_start..arg_end`) and the path from the opened file, not the string the
//! caller passed. For a `#!` script the opened file is the interpreter by now, and
//! the script itself is closed: what is left of it is the name execve was given
//! (`bprm->filename`), recorded as `script` when a handler named an interpreter
//! (`bprm->interp` no longer the same string).
//!
//! A file with no name on disk (a memfd, or a deleted file run through
//! `/proc/PID/fd/N`) is refused here: the path rules and Landlock cannot see it
//! (Landlock lets internal mounts through), and `execveat(AT_EMPTY_PATH)` is
//! already refused by seccomp. The exec has passed its point of no return, so the
//! process is killed instead: SIGKILL is pending before the new program runs a
//! single instruction.

use aya_ebpf::{
    bindings::task_struct,
    helpers::generated::{bpf_probe_read_kernel_str, bpf_probe_read_user, bpf_send_signal},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use warrant_common::{
    EventKind,
    event::{
        ARGV_BUF, ARGV_TRUNCATED, EXEC_FIXED, EXEC_PACKED_HEAD, ExecEvent, PATH_BUF, RECORD_PACKED, SCRIPT_BUF,
        SCRIPT_TRUNCATED, VIOLATION_EXEC_NO_NAME, ViolationEvent,
    },
    policy::{ACTION_DENY, TAG_DOOMED},
};

const SIGKILL: u32 = 9;

use crate::{
    emit::{self, Packed},
    kernel::{off, read, read_ptr},
    maps::EXEC_RECORD,
    path, tag,
};

#[btf_tracepoint(function = "sched_process_exec")]
#[inline(always)]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> u32 {
    let Some((task, tag)) = tag::current() else {
        return 0;
    };
    tag::enforce(&tag);
    let bprm: *const u8 = ctx.arg(2);
    if let Some(ev) = EXEC_RECORD.get_ptr_mut(0) {
        unsafe {
            fill(ev, task, bprm, &tag);
            (*ev).header.flags |= RECORD_PACKED;
            send(ev, &tag);
        }
    }
    if let Some(file) = read_ptr(bprm, off!(bprm_file)) {
        let nlink = read_ptr(file, off!(file_inode)).and_then(|i| read::<u32>(i, off!(inode_nlink)));
        if nlink == Some(0) {
            refuse_nameless(task, file, &tag);
        }
    }
    0
}

/// Kills the task that just executed a nameless file, and says so.
#[inline(always)]
fn refuse_nameless(task: *mut task_struct, file: *const u8, tag: &warrant_common::TaskTag) {
    unsafe { bpf_send_signal(SIGKILL) };
    if let Some(t) = tag::current_mut() {
        unsafe { (*t).flags |= TAG_DOOMED };
    }
    let mut ev = ViolationEvent { op: VIOLATION_EXEC_NO_NAME, action: ACTION_DENY, ..ViolationEvent::default() };
    let name = read_ptr(file, off!(file_path) + off!(path_dentry)).and_then(|d| read_ptr(d, off!(dentry_name_ptr)));
    if let Some(name) = name {
        ev.addr = read::<[u8; 16]>(name, 0).unwrap_or([0; 16]);
    }
    unsafe { emit::header(&raw mut ev.header, EventKind::Violation, tag, task) };
    emit::output(&ev, EventKind::Violation, Some(tag));
}

/// Sends the record built in `EXEC_RECORD` packed (see `EXEC_FIXED`).
///
/// # Safety
/// `ev` must be `EXEC_RECORD`'s value, filled in.
#[inline(always)]
unsafe fn send(ev: *const ExecEvent, tag: &warrant_common::TaskTag) {
    let clamp = |n: u32, max: usize| if n > max as u32 { max as u32 } else { n };
    let (path, cwd) = unsafe { (&raw const (*ev).path, &raw const (*ev).cwd) };
    let a = clamp(unsafe { (*path).len }, PATH_BUF);
    let b = clamp(unsafe { (*cwd).len }, PATH_BUF);
    let c = clamp(unsafe { (*ev).argv_len }, ARGV_BUF);
    let d = clamp(unsafe { (*ev).script_len }, SCRIPT_BUF);
    let size = EXEC_PACKED_HEAD as u32 + a + b + c + d;
    let mut out = Packed::new();
    if !out.reserve(size, EventKind::Exec, Some(tag)) {
        return;
    }
    unsafe {
        out.put(ev.cast(), EXEC_FIXED as u32);
        out.put(path.cast(), 8);
        out.put(cwd.cast(), 8);
        out.put((&raw const (*ev).script_len).cast(), 8);
        out.put((&raw const (*path).data).cast(), a);
        out.put((&raw const (*cwd).data).cast(), b);
        out.put((&raw const (*ev).argv).cast(), c);
        out.put((&raw const (*ev).script).cast(), d);
    }
    out.submit(false);
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
        (*ev).script_len = 0;
        (*ev).script_flags = 0;
    }
    let filename = read_ptr(bprm, off!(bprm_filename));
    let interp = read_ptr(bprm, off!(bprm_interp));
    if let (Some(filename), Some(interp)) = (filename, interp)
        && filename != interp
    {
        let dst = unsafe { (&raw mut (*ev).script).cast::<u8>() };
        let n = unsafe { bpf_probe_read_kernel_str(dst.cast(), SCRIPT_BUF as u32, filename.cast()) };
        if n > 0 {
            // The count includes the NUL; a full buffer may mean the name went on.
            unsafe {
                (*ev).script_len = (n - 1) as u32;
                if n as usize >= SCRIPT_BUF {
                    (*ev).script_flags = SCRIPT_TRUNCATED;
                }
            }
        }
    }
}
