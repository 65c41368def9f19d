//! Rebuilding a path from a `struct path` by walking dentries up to the root.
//!
//! `bpf_d_path` is only allowed from LSM/fentry programs, which this kernel refuses,
//! so the walk is done by hand. Each step runs as a `bpf_loop` callback: the
//! verifier checks one step once, where an open-coded loop made it explore every
//! branch of every iteration (past its 1M-instruction limit). Steps write into a
//! per-CPU scratch buffer; one copy of the bytes written then moves the result into
//! the ring-buffer record (the rest of the record's buffer is left as it was).
//!
//! Components are written leaf first, each NUL-terminated, because appending
//! forward keeps every write at a masked offset the verifier can bound; user space
//! reverses them (see `warrant_common::event::PATH_RAW`). Crossing a mount point
//! follows `mnt_mountpoint` into the parent mount.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::{
    bpf_loop, bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user_str,
};
use warrant_common::{
    event::{NAME_READ, PATH_BUF, PATH_DATA, PATH_MAX_DEPTH, PATH_RAW, PATH_TRUNCATED, RawPath},
    offsets::DENTRY_SHORT_NAME,
};

use crate::{
    kernel::{cast, load, load_ptr, off, read_ptr},
    maps::{OPEN_RECORD, PATH_SCRATCH, WALK},
};

/// State carried between steps, in the per-CPU `WALK` map. Its pointers are plain
/// numbers there, cast back to their BTF types ([`cast`], a register move) at each
/// step: a map value reads as an unknown number, so the verifier checks one step
/// and every later one matches it, where pointers and a growing length kept on the
/// stack made it explore step after step (past its 1M-instruction limit).
#[repr(C)]
pub struct Walk {
    dentry: u64,
    mount: u64,
    mount_root: u64,
    len: u64,
    /// Set once the walk reached a root: the path is complete.
    complete: u64,
}

/// What a walk found: the bytes written and whether it reached a root.
struct Walked {
    len: u64,
    complete: bool,
}

/// Fills `out` with the path of `path` (a `struct path *`).
///
/// # Safety
/// `out` must point to writable memory of a `RawPath` (a ring buffer reservation).
#[inline(always)]
pub unsafe fn resolve(path: *const u8, out: *mut RawPath) {
    let Some(walk) = walk(path, 0) else {
        unsafe { set(out, 0, PATH_TRUNCATED) };
        return;
    };
    let Some(scratch) = PATH_SCRATCH.get_ptr_mut(0) else {
        unsafe { set(out, 0, PATH_TRUNCATED) };
        return;
    };
    // Only the bytes the walk wrote: copying the whole 4.3 KB buffer was most of
    // the cost of a file event. The bound is for the verifier (the walk stops
    // before PATH_DATA, plus at most one component).
    let mut want = walk.len as u32;
    if want > PATH_BUF as u32 {
        want = PATH_BUF as u32;
    }
    let copied = unsafe {
        bpf_probe_read_kernel((&raw mut (*out).data).cast(), want, scratch.cast_const().cast())
    };
    let len = if copied == 0 { walk.len as usize } else { 0 };
    let flags = if walk.complete && copied == 0 { 0 } else { PATH_TRUNCATED };
    unsafe { set(out, len, flags) };
}

/// The path of the open file `file` (a `struct file *` as [`fd_file`] gives it,
/// typed for the verifier) into `OPEN_RECORD`'s path, written in place by the steps
/// (the copy out of the scratch buffer would be one helper call more per file
/// event); returns the file's `f_flags`.
///
/// [`fd_file`]: crate::kernel::fd_file
///
/// # Safety
/// `OPEN_RECORD` must not be in use by another part of this program run.
#[inline(always)]
pub unsafe fn resolve_open_file(file: *const u8) -> u32 {
    let flags: u32 = load(file, off!(file_flags));
    let path_at = off!(file_path);
    let mnt = load_ptr(file, path_at + off!(path_mnt)).unwrap_or(core::ptr::null());
    let dentry = load_ptr(file, path_at + off!(path_dentry)).unwrap_or(core::ptr::null());
    let Some(rec) = OPEN_RECORD.get_ptr_mut(0) else { return flags };
    let out = unsafe { &raw mut (*rec).path };
    match walk_from(dentry, mnt, 1) {
        Some(w) => unsafe { set(out, w.len as usize, if w.complete { 0 } else { PATH_TRUNCATED }) },
        None => unsafe { set(out, 0, PATH_TRUNCATED) },
    }
    flags
}

/// Walks from `path` (a `struct path *`) up to the root, the components landing in
/// the scratch buffer (`in_place` 0) or in `OPEN_RECORD`'s path (1).
#[inline(always)]
fn walk(path: *const u8, in_place: u64) -> Option<Walked> {
    let (Some(dentry), Some(vfsmount)) = (read_ptr(path, off!(path_dentry)), read_ptr(path, off!(path_mnt))) else {
        return None;
    };
    walk_from(dentry, vfsmount, in_place)
}

/// [`walk`] from a path's two pointers; every step loads the fields it needs
/// directly through them (a step that read them with `bpf_probe_read_kernel` paid
/// a helper call per component).
#[inline(always)]
fn walk_from(dentry: *const u8, vfsmount: *const u8, mut in_place: u64) -> Option<Walked> {
    if dentry.is_null() || vfsmount.is_null() {
        return None;
    }
    let w = WALK.get_ptr_mut(0)?;
    // `struct vfsmount` is embedded in `struct mount`: step back to the container.
    let mount = cast(vfsmount.wrapping_sub(off!(mount_mnt)), off!(btf_mount));
    unsafe {
        (*w).dentry = dentry as u64;
        (*w).mount = mount as u64;
        (*w).mount_root = mount_root(mount) as u64;
        (*w).len = 0;
        (*w).complete = 0;
        bpf_loop(PATH_MAX_DEPTH, step as *mut c_void, (&raw mut in_place).cast(), 0);
        Some(Walked { len: (*w).len, complete: (*w).complete != 0 })
    }
}

/// The root dentry of `mount` (a `struct mount *`), null if it has none.
#[inline(always)]
fn mount_root(mount: *const u8) -> *const u8 {
    load_ptr(mount.wrapping_add(off!(mount_mnt)), off!(vfsmount_root)).unwrap_or(core::ptr::null())
}

/// One step up the tree; `ctx` points to the walk's `in_place` flag (nonzero: the
/// steps write straight into `OPEN_RECORD`'s path rather than into
/// `PATH_SCRATCH`). Returns 1 to stop the loop, 0 to go on.
unsafe extern "C" fn step(_index: u64, ctx: *mut c_void) -> i64 {
    let Some(w) = WALK.get_ptr_mut(0) else { return 1 };
    let w = unsafe { &mut *w };
    let in_place = unsafe { *ctx.cast::<u64>() };
    if w.dentry == w.mount_root {
        let mount = cast(w.mount as *const u8, off!(btf_mount));
        let Some(parent) = load_ptr(mount, off!(mount_parent)) else { return 1 };
        if parent == mount {
            w.complete = 1; // the root of the mount tree
            return 1;
        }
        let Some(mountpoint) = load_ptr(mount, off!(mount_mountpoint)) else { return 1 };
        w.dentry = mountpoint as u64;
        w.mount = parent as u64;
        w.mount_root = mount_root(parent) as u64;
        return 0;
    }
    let len = w.len as usize;
    if len >= PATH_DATA {
        return 1; // out of room: the path stays marked truncated
    }
    let buf: *mut u8 = if in_place != 0 {
        let Some(rec) = OPEN_RECORD.get_ptr_mut(0) else { return 1 };
        unsafe { (&raw mut (*rec).path.data).cast() }
    } else {
        let Some(buf) = PATH_SCRATCH.get_ptr_mut(0) else { return 1 };
        buf.cast()
    };
    let dst = unsafe { buf.add(len & (PATH_DATA - 1)) };
    let dentry = cast(w.dentry as *const u8, off!(btf_dentry));
    let Some(parent) = load_ptr(dentry, off!(dentry_parent)) else { return 1 };
    if parent == dentry {
        w.complete = 1; // root of a filesystem that is not mounted (pipe, socket, ...)
        return 1;
    }
    let name: u64 = load(dentry, off!(dentry_name_ptr));
    let short = off!(dentry_short_name);
    // A name shorter than the inline store lives in it (`d_name.name` points there):
    // copied from the dentry a word at a time, no helper call.
    let n = if short != 0 && name == (dentry as u64).wrapping_add(short as u64) {
        let name_len = load::<u32>(dentry, off!(dentry_name_len)) as usize;
        if name_len >= DENTRY_SHORT_NAME {
            return 1;
        }
        for k in 0..DENTRY_SHORT_NAME / 8 {
            let v: u64 = load(dentry, short + k * 8);
            for b in 0..8 {
                unsafe { *dst.add(k * 8 + b) = (v >> (b * 8)) as u8 };
            }
        }
        unsafe { *dst.add(name_len) = 0 };
        (name_len + 1) as i64
    } else if name == 0 {
        return 1;
    } else {
        unsafe { bpf_probe_read_kernel_str(dst.cast(), NAME_READ as u32, name as *const c_void) }
    };
    if n <= 0 {
        return 1;
    }
    w.dentry = parent as u64;
    w.len += n as u64;
    0
}

/// Copies a NUL-terminated user string (a path argument) into `out`, marked raw.
///
/// # Safety
/// As for [`resolve`].
#[inline(always)]
pub unsafe fn from_user(ptr: *const u8, out: *mut RawPath) {
    let data = unsafe { (&raw mut (*out).data).cast::<u8>() };
    let n = unsafe { bpf_probe_read_user_str(data.cast(), PATH_DATA as u32, ptr.cast()) };
    let len = if n > 0 { n as usize } else { 0 };
    // A full buffer means the string may have gone on past it.
    let truncated = if len >= PATH_DATA { PATH_TRUNCATED } else { 0 };
    unsafe { set(out, len, PATH_RAW | truncated) };
}

#[inline(always)]
unsafe fn set(out: *mut RawPath, len: usize, flags: u32) {
    unsafe {
        (*out).len = len as u32;
        (*out).flags = flags;
    }
}
