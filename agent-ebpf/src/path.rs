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
    kernel::{off, read, read_ptr},
    maps::{DENTRY_WORDS, OPEN_RECORD, PATH_SCRATCH},
};

/// State carried between steps (on the caller's stack; scalars only).
#[repr(C)]
struct Walk {
    dentry: *const u8,
    mount: *const u8,
    mount_root: *const u8,
    len: u64,
    /// Set once the walk reached a root: the path is complete.
    complete: u64,
    /// Nonzero: the steps write straight into `OPEN_RECORD`'s path rather than into
    /// `PATH_SCRATCH` (see [`resolve_open_file`]).
    in_place: u64,
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
    let flags = if walk.complete != 0 && copied == 0 { 0 } else { PATH_TRUNCATED };
    unsafe { set(out, len, flags) };
}

/// The path of the open file `file` (a `struct file *`) into `OPEN_RECORD`'s path,
/// written in place by the steps (the copy out of the scratch buffer would be one
/// helper call more per file event); returns the file's `f_flags`. On the usual
/// layout (`f_flags` a few words before `f_path`) one read gives the flags and both
/// pointers of the path, two helper calls less than reading them one by one.
///
/// # Safety
/// `OPEN_RECORD` must not be in use by another part of this program run.
#[inline(always)]
pub unsafe fn resolve_open_file(file: *const u8) -> u32 {
    let flags_at = off!(file_flags);
    let path_at = off!(file_path);
    let (mnt_at, dentry_at) = (path_at + off!(path_mnt), path_at + off!(path_dentry));
    let start = flags_at & !7;
    // A pointer word that lies whole in the read, past the flags.
    let fits = |at: usize| at % 8 == 0 && at > start && at < start + HEAD_READ;
    let (flags, mnt, dentry) = match DENTRY_WORDS.get_ptr_mut(0) {
        Some(words) if fits(mnt_at) && fits(dentry_at) => {
            if unsafe { bpf_probe_read_kernel(words.cast(), HEAD_READ as u32, file.wrapping_add(start).cast()) } != 0 {
                (0, core::ptr::null(), core::ptr::null()) // no path: marked truncated below
            } else {
                let w = unsafe { &*words };
                let word = |at: usize| {
                    let i = (at - start) / 8;
                    if i < HEAD_READ / 8 { w[i] } else { 0 }
                };
                let flags = (word(flags_at & !7) >> ((flags_at % 8) * 8)) as u32;
                (flags, word(mnt_at) as *const u8, word(dentry_at) as *const u8)
            }
        }
        _ => {
            let path = file.wrapping_add(path_at);
            let flags = read::<u32>(file, flags_at).unwrap_or(0);
            let mnt = read_ptr(path, off!(path_mnt)).unwrap_or(core::ptr::null());
            let dentry = read_ptr(path, off!(path_dentry)).unwrap_or(core::ptr::null());
            (flags, mnt, dentry)
        }
    };
    let Some(rec) = OPEN_RECORD.get_ptr_mut(0) else { return flags };
    let out = unsafe { &raw mut (*rec).path };
    match walk_from(dentry, mnt, 1) {
        Some(w) => unsafe { set(out, w.len as usize, if w.complete != 0 { 0 } else { PATH_TRUNCATED }) },
        None => unsafe { set(out, 0, PATH_TRUNCATED) },
    }
    flags
}

/// Bytes [`resolve_open_file`] reads from `f_flags` (rounded down to a word) on:
/// through the end of `f_path` on the layouts seen (flags at 40, path at 64).
const HEAD_READ: usize = 48;

/// Walks from `path` (a `struct path *`) up to the root, the components landing in
/// the scratch buffer (`in_place` 0) or in `OPEN_RECORD`'s path (1).
#[inline(always)]
fn walk(path: *const u8, in_place: u64) -> Option<Walk> {
    let (Some(dentry), Some(vfsmount)) = (read_ptr(path, off!(path_dentry)), read_ptr(path, off!(path_mnt))) else {
        return None;
    };
    walk_from(dentry, vfsmount, in_place)
}

/// [`walk`] from a path's two pointers.
#[inline(always)]
fn walk_from(dentry: *const u8, vfsmount: *const u8, in_place: u64) -> Option<Walk> {
    if dentry.is_null() || vfsmount.is_null() {
        return None;
    }
    let mut walk = core::mem::MaybeUninit::<Walk>::uninit();
    let w = walk.as_mut_ptr();
    // Field by field, the zeros as volatile stores: LLVM turns zeroed words side by
    // side into a call of the object's `memset`, a byte loop (16 ns of a file event).
    unsafe {
        (&raw mut (*w).dentry).write(dentry);
        // `struct vfsmount` is embedded in `struct mount`: step back to the container.
        (&raw mut (*w).mount).write(vfsmount.wrapping_sub(off!(mount_mnt)));
        (&raw mut (*w).mount_root).write(read_ptr(vfsmount, off!(vfsmount_root)).unwrap_or(core::ptr::null()));
        (&raw mut (*w).len).write_volatile(0);
        (&raw mut (*w).complete).write_volatile(0);
        (&raw mut (*w).in_place).write(in_place);
        bpf_loop(PATH_MAX_DEPTH, step as *mut c_void, w.cast(), 0);
        Some(walk.assume_init())
    }
}

/// One step up the tree. Returns 1 to stop the loop, 0 to go on.
unsafe extern "C" fn step(_index: u64, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *ctx.cast::<Walk>() };
    if w.dentry == w.mount_root {
        let Some(parent) = read_ptr(w.mount, off!(mount_parent)) else { return 1 };
        if parent == w.mount {
            w.complete = 1; // the root of the mount tree
            return 1;
        }
        let Some(mountpoint) = read_ptr(w.mount, off!(mount_mountpoint)) else { return 1 };
        w.dentry = mountpoint;
        w.mount = parent;
        w.mount_root = read_ptr(parent.wrapping_add(off!(mount_mnt)), off!(vfsmount_root))
            .unwrap_or(core::ptr::null());
        return 0;
    }
    let len = w.len as usize;
    if len >= PATH_DATA {
        return 1; // out of room: the path stays marked truncated
    }
    let buf: *mut u8 = if w.in_place != 0 {
        let Some(rec) = OPEN_RECORD.get_ptr_mut(0) else { return 1 };
        unsafe { (&raw mut (*rec).path.data).cast() }
    } else {
        let Some(buf) = PATH_SCRATCH.get_ptr_mut(0) else { return 1 };
        buf.cast()
    };
    let dst = unsafe { buf.add(len & (PATH_DATA - 1)) };
    let dentry = w.dentry;
    // The parent, the name's pointer, and, when the name lives in the inline store,
    // its length, the words read and the store's first word among them.
    let mut inline: Option<(usize, &[u64; SHORT_READ_WORDS], usize)> = None;
    let (parent, name) = if let Some(g) = ShortName::layout() {
        // One read gives the parent, the name's length and pointer, and the inline
        // name: a name that lives there is copied from it, no second helper call.
        let Some(buf) = DENTRY_WORDS.get_ptr_mut(0) else { return 1 };
        let src = dentry.wrapping_add(off!(dentry_parent));
        if unsafe { bpf_probe_read_kernel(buf.cast(), (SHORT_READ_WORDS * 8) as u32, src.cast()) } != 0 {
            return 1;
        }
        let words = unsafe { &*buf };
        let word = |i: usize| if i < SHORT_READ_WORDS { words[i] } else { 0 };
        let name = word(g.name / 8) as *const u8;
        let name_len = (word(g.len / 8) >> ((g.len % 8) * 8)) as u32 as usize;
        if name as usize == dentry as usize + off!(dentry_short_name) && name_len < DENTRY_SHORT_NAME {
            inline = Some((name_len, words, g.short / 8));
        }
        (words[0] as *const u8, name)
    } else {
        let Some(pn) = parent_and_name(dentry) else { return 1 };
        pn
    };
    if parent.is_null() {
        return 1;
    }
    if parent == dentry {
        w.complete = 1; // root of a filesystem that is not mounted (pipe, socket, ...)
        return 1;
    }
    w.dentry = parent;
    let n = match inline {
        Some((name_len, words, short)) => {
            for k in 0..DENTRY_SHORT_NAME / 8 {
                let v = if short + k < SHORT_READ_WORDS { words[short + k] } else { 0 };
                for b in 0..8 {
                    unsafe { *dst.add(k * 8 + b) = (v >> (b * 8)) as u8 };
                }
            }
            unsafe { *dst.add(name_len) = 0 };
            (name_len + 1) as i64
        }
        _ if name.is_null() => return 1,
        _ => unsafe { bpf_probe_read_kernel_str(dst.cast(), NAME_READ as u32, name.cast()) },
    };
    if n <= 0 {
        return 1;
    }
    w.len += n as u64;
    0
}

/// Words read from `d_parent` on: through the end of the inline name store.
const SHORT_READ_WORDS: usize = 9;

/// Where, from `d_parent`, a dentry's name pointer, name length and inline name
/// store lie (in bytes).
struct ShortName {
    name: usize,
    len: usize,
    short: usize,
}

impl ShortName {
    /// The gaps, when they fit one read of [`SHORT_READ_WORDS`] words (on 6.18:
    /// `d_parent` at 24, `d_name.len` at 36, `d_name.name` at 40, `d_shortname` at
    /// 56..96). The offsets are constants to the verifier, so only one way of
    /// reading is in the program it checks.
    #[inline(always)]
    fn layout() -> Option<ShortName> {
        let base = off!(dentry_parent);
        let (name, len, short) = (off!(dentry_name_ptr), off!(dentry_name_len), off!(dentry_short_name));
        if short == 0 || name < base || len < base || short < base {
            return None;
        }
        let g = ShortName { name: name - base, len: len - base, short: short - base };
        let fits = g.name % 8 == 0
            && g.name + 8 <= SHORT_READ_WORDS * 8
            && g.len % 4 == 0
            && g.len + 4 <= SHORT_READ_WORDS * 8
            && g.short % 8 == 0
            && g.short + DENTRY_SHORT_NAME <= SHORT_READ_WORDS * 8;
        fits.then_some(g)
    }
}

/// A dentry's `d_parent` and `d_name.name`. They lie 16 bytes apart in every
/// kernel of the last years (`d_name` is a `struct qstr`, its `name` after the
/// hash and length), so one read of the 32 bytes from `d_parent` gives both, where
/// two reads cost twice the helper call on every step of every path; other
/// layouts take the two reads. (The gap is a constant to the verifier, from
/// `OFFSETS`, so only one of the two ways is in the program it checks.)
#[inline(always)]
fn parent_and_name(dentry: *const u8) -> Option<(*const u8, *const u8)> {
    let gap = off!(dentry_name_ptr).wrapping_sub(off!(dentry_parent));
    if gap % 8 == 0 && gap > 0 && gap < 32 {
        let words = read::<[u64; 4]>(dentry, off!(dentry_parent))?;
        let parent = words[0] as *const u8;
        if parent.is_null() {
            return None;
        }
        Some((parent, words[(gap / 8) & 3] as *const u8))
    } else {
        Some((read_ptr(dentry, off!(dentry_parent))?, read_ptr(dentry, off!(dentry_name_ptr))?))
    }
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
