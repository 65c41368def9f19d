//! `sys_exit` of the calls that change the file tree or a file's metadata: unlink,
//! rename, truncate, chmod, chown, utimes, mkdir, link, symlink, mknod, the xattr
//! calls, open_by_handle_at, mount and umount. One [`FileChangeEvent`] per call of a
//! tagged task, successful or not (a refusal is what an auditor most wants to see).
//!
//! After an unlink or a rename the kernel no longer has the old name's dentry, so the
//! names are the strings the process passed, read back from its memory at the
//! return; what they are relative to (the directory descriptor, or the working
//! directory) is resolved here, in the kernel, so user space never guesses from
//! `/proc` after the fact. A call on a descriptor names the descriptor's file.
//!
//! Syscall numbers are x86_64's.

use core::mem::offset_of;

use aya_ebpf::bindings::task_struct;
use warrant_common::{
    EventKind, TaskTag,
    event::{
        CHANGE_BASE_OF_PATH, CHANGE_BASE_OF_PATH2, CHANGE_PATH2_IS_PATH, CHANGE_PATH2_OTHER_DIR, FILE_CHANGE_FIXED,
        FILE_CHANGE_PACKED_HEAD, FileChangeEvent, FileOp, PATH_BUF, PATH_RAW, PATH_TRUNCATED, RECORD_PACKED, RawPath,
    },
};

use crate::{
    emit::{self, Packed},
    kernel::{fd_file, off, read, read_ptr},
    maps::CHANGE_RECORD,
    path,
};

pub const NR_TRUNCATE: u64 = 76;
pub const NR_FTRUNCATE: u64 = 77;
pub const NR_RENAME: u64 = 82;
pub const NR_MKDIR: u64 = 83;
pub const NR_RMDIR: u64 = 84;
pub const NR_LINK: u64 = 86;
pub const NR_UNLINK: u64 = 87;
pub const NR_SYMLINK: u64 = 88;
pub const NR_CHMOD: u64 = 90;
pub const NR_FCHMOD: u64 = 91;
pub const NR_CHOWN: u64 = 92;
pub const NR_FCHOWN: u64 = 93;
pub const NR_LCHOWN: u64 = 94;
pub const NR_UTIME: u64 = 132;
pub const NR_MKNOD: u64 = 133;
pub const NR_MOUNT: u64 = 165;
pub const NR_UMOUNT2: u64 = 166;
pub const NR_SETXATTR: u64 = 188;
pub const NR_LSETXATTR: u64 = 189;
pub const NR_FSETXATTR: u64 = 190;
pub const NR_REMOVEXATTR: u64 = 197;
pub const NR_LREMOVEXATTR: u64 = 198;
pub const NR_FREMOVEXATTR: u64 = 199;
pub const NR_UTIMES: u64 = 235;
pub const NR_MKDIRAT: u64 = 258;
pub const NR_MKNODAT: u64 = 259;
pub const NR_FCHOWNAT: u64 = 260;
pub const NR_FUTIMESAT: u64 = 261;
pub const NR_UNLINKAT: u64 = 263;
pub const NR_RENAMEAT: u64 = 264;
pub const NR_LINKAT: u64 = 265;
pub const NR_SYMLINKAT: u64 = 266;
pub const NR_FCHMODAT: u64 = 268;
pub const NR_UTIMENSAT: u64 = 280;
pub const NR_OPEN_BY_HANDLE_AT: u64 = 304;
pub const NR_RENAMEAT2: u64 = 316;
pub const NR_MOVE_MOUNT: u64 = 429;
pub const NR_FCHMODAT2: u64 = 452;
pub const NR_SETXATTRAT: u64 = 463;
pub const NR_REMOVEXATTRAT: u64 = 466;

const AT_FDCWD: i32 = -100;
const AT_REMOVEDIR: u64 = 0x200;
const AT_SYMLINK_NOFOLLOW: u32 = 0x100;
/// No descriptor: the field is unused.
const NO_FD: i64 = i64::MIN;
const UNCHANGED: u32 = u32::MAX;

/// What a call's arguments say, gathered before the record is filled.
struct Call {
    op: FileOp,
    /// Directory `path` is relative to.
    dfd: i32,
    /// User pointer to the name, or 0.
    path: u64,
    /// A descriptor whose file is what the call is about (`path` unused).
    fd: i64,
    /// Directory `path2` is relative to, when `path2` is a path.
    dfd2: i32,
    /// User pointer to the second string, or 0.
    path2: u64,
    path2_is_path: bool,
    flags: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
}

/// Whether `nr` is one of the calls this file records.
#[inline(always)]
pub fn is_change(nr: u64) -> bool {
    matches!(
        nr,
        NR_TRUNCATE
            | NR_FTRUNCATE
            | NR_RENAME
            | NR_MKDIR
            | NR_RMDIR
            | NR_LINK
            | NR_UNLINK
            | NR_SYMLINK
            | NR_CHMOD
            | NR_FCHMOD
            | NR_CHOWN
            | NR_FCHOWN
            | NR_LCHOWN
            | NR_UTIME
            | NR_MKNOD
            | NR_MOUNT
            | NR_UMOUNT2
            | NR_SETXATTR
            | NR_LSETXATTR
            | NR_FSETXATTR
            | NR_REMOVEXATTR
            | NR_LREMOVEXATTR
            | NR_FREMOVEXATTR
            | NR_UTIMES
            | NR_MKDIRAT
            | NR_MKNODAT
            | NR_FCHOWNAT
            | NR_FUTIMESAT
            | NR_UNLINKAT
            | NR_RENAMEAT
            | NR_LINKAT
            | NR_SYMLINKAT
            | NR_FCHMODAT
            | NR_UTIMENSAT
            | NR_OPEN_BY_HANDLE_AT
            | NR_RENAMEAT2
            | NR_MOVE_MOUNT
            | NR_FCHMODAT2
            | NR_SETXATTRAT
            | NR_REMOVEXATTRAT
    )
}

/// The call's arguments, by its number (`a` is the six argument registers).
#[inline(always)]
fn decode(nr: u64, a: &[u64; 5], ret: i64) -> Option<Call> {
    let mut c = Call {
        op: FileOp::Unlink,
        dfd: AT_FDCWD,
        path: 0,
        fd: NO_FD,
        dfd2: AT_FDCWD,
        path2: 0,
        path2_is_path: false,
        flags: 0,
        mode: 0,
        uid: UNCHANGED,
        gid: UNCHANGED,
        size: 0,
    };
    let dfd = |v: u64| v as i32;
    match nr {
        NR_UNLINK => c.path = a[0],
        NR_RMDIR => {
            c.op = FileOp::Rmdir;
            c.path = a[0];
        }
        NR_UNLINKAT => {
            c.op = if a[2] & AT_REMOVEDIR != 0 { FileOp::Rmdir } else { FileOp::Unlink };
            (c.dfd, c.path, c.flags) = (dfd(a[0]), a[1], a[2] as u32);
        }
        NR_RENAME | NR_LINK => {
            c.op = if nr == NR_RENAME { FileOp::Rename } else { FileOp::Link };
            (c.path, c.path2, c.path2_is_path) = (a[0], a[1], true);
        }
        NR_RENAMEAT | NR_RENAMEAT2 | NR_LINKAT => {
            c.op = if nr == NR_LINKAT { FileOp::Link } else { FileOp::Rename };
            (c.dfd, c.path, c.dfd2, c.path2, c.path2_is_path) = (dfd(a[0]), a[1], dfd(a[2]), a[3], true);
            if nr != NR_RENAMEAT {
                c.flags = a[4] as u32;
            }
        }
        NR_TRUNCATE | NR_FTRUNCATE => {
            c.op = FileOp::Truncate;
            if nr == NR_TRUNCATE { c.path = a[0] } else { c.fd = a[0] as i64 }
            c.size = a[1];
        }
        NR_CHMOD | NR_FCHMOD => {
            c.op = FileOp::Chmod;
            if nr == NR_CHMOD { c.path = a[0] } else { c.fd = a[0] as i64 }
            c.mode = a[1] as u32;
        }
        NR_FCHMODAT | NR_FCHMODAT2 => {
            c.op = FileOp::Chmod;
            (c.dfd, c.path, c.mode) = (dfd(a[0]), a[1], a[2] as u32);
            if nr == NR_FCHMODAT2 {
                c.flags = a[3] as u32;
            }
        }
        NR_CHOWN | NR_LCHOWN | NR_FCHOWN => {
            c.op = FileOp::Chown;
            if nr == NR_FCHOWN { c.fd = a[0] as i64 } else { c.path = a[0] }
            (c.uid, c.gid) = (a[1] as u32, a[2] as u32);
            if nr == NR_LCHOWN {
                c.flags = AT_SYMLINK_NOFOLLOW;
            }
        }
        NR_FCHOWNAT => {
            c.op = FileOp::Chown;
            (c.dfd, c.path, c.uid, c.gid, c.flags) = (dfd(a[0]), a[1], a[2] as u32, a[3] as u32, a[4] as u32);
        }
        NR_UTIME | NR_UTIMES => {
            c.op = FileOp::Utimes;
            c.path = a[0];
        }
        NR_FUTIMESAT | NR_UTIMENSAT => {
            c.op = FileOp::Utimes;
            // A NULL name makes the descriptor itself the file (utimensat, futimens).
            (c.dfd, c.path) = (dfd(a[0]), a[1]);
            if nr == NR_UTIMENSAT {
                c.flags = a[3] as u32;
            }
        }
        NR_MKDIR => {
            c.op = FileOp::Mkdir;
            (c.path, c.mode) = (a[0], a[1] as u32);
        }
        NR_MKDIRAT => {
            c.op = FileOp::Mkdir;
            (c.dfd, c.path, c.mode) = (dfd(a[0]), a[1], a[2] as u32);
        }
        NR_SYMLINK => {
            c.op = FileOp::Symlink;
            (c.path, c.path2) = (a[1], a[0]);
        }
        NR_SYMLINKAT => {
            c.op = FileOp::Symlink;
            (c.dfd, c.path, c.path2) = (dfd(a[1]), a[2], a[0]);
        }
        NR_MKNOD => {
            c.op = FileOp::Mknod;
            (c.path, c.mode, c.size) = (a[0], a[1] as u32, a[2]);
        }
        NR_MKNODAT => {
            c.op = FileOp::Mknod;
            (c.dfd, c.path, c.mode, c.size) = (dfd(a[0]), a[1], a[2] as u32, a[3]);
        }
        NR_SETXATTR | NR_LSETXATTR | NR_FSETXATTR => {
            c.op = FileOp::Setxattr;
            if nr == NR_FSETXATTR { c.fd = a[0] as i64 } else { c.path = a[0] }
            (c.path2, c.size, c.flags) = (a[1], a[3], a[4] as u32);
        }
        NR_REMOVEXATTR | NR_LREMOVEXATTR | NR_FREMOVEXATTR => {
            c.op = FileOp::Removexattr;
            if nr == NR_FREMOVEXATTR { c.fd = a[0] as i64 } else { c.path = a[0] }
            c.path2 = a[1];
        }
        NR_SETXATTRAT | NR_REMOVEXATTRAT => {
            c.op = if nr == NR_SETXATTRAT { FileOp::Setxattr } else { FileOp::Removexattr };
            (c.dfd, c.path, c.flags, c.path2) = (dfd(a[0]), a[1], a[2] as u32, a[3]);
        }
        NR_OPEN_BY_HANDLE_AT => {
            c.op = FileOp::OpenByHandle;
            // The file opened, when it was; else the mount it was asked of.
            if ret >= 0 { c.fd = ret } else { c.dfd = dfd(a[0]) }
            c.flags = a[2] as u32;
        }
        NR_MOUNT => {
            c.op = FileOp::Mount;
            (c.path, c.path2, c.flags) = (a[1], a[0], a[3] as u32);
        }
        NR_MOVE_MOUNT => {
            c.op = FileOp::Mount;
            (c.dfd, c.path, c.path2, c.flags) = (dfd(a[2]), a[3], a[1], a[4] as u32);
        }
        NR_UMOUNT2 => {
            c.op = FileOp::Umount;
            (c.path, c.flags) = (a[0], a[1] as u32);
        }
        _ => return None,
    }
    Some(c)
}

/// Records the change call `nr` that returned `ret`.
#[inline(always)]
pub fn record(tag: &TaskTag, task: *mut task_struct, regs: *const u8, nr: u64, ret: i64) {
    let arg = |o: usize| read::<u64>(regs, o).unwrap_or(0);
    let a = [arg(off!(regs_di)), arg(off!(regs_si)), arg(off!(regs_dx)), arg(off!(regs_r10)), arg(off!(regs_r8))];
    let Some(c) = decode(nr, &a, ret) else {
        return;
    };
    let Some(ev) = CHANGE_RECORD.get_ptr_mut(0) else { return };
    let t = task.cast_const().cast::<u8>();
    let mut how: u32 = 0;
    unsafe {
        emit::header(&raw mut (*ev).header, EventKind::FileChange, tag, task);
        (*ev).header.flags |= RECORD_PACKED;
        (*ev).op = c.op as u32;
        (*ev).ret = ret as i32;
        (*ev).flags = c.flags;
        (*ev).mode = c.mode;
        (*ev).uid = c.uid;
        (*ev).gid = c.gid;
        (*ev)._pad = 0;
        (*ev).size = c.size;
        empty(&raw mut (*ev).path2);
        empty(&raw mut (*ev).base);
    }

    // The file itself: from the descriptor, or the name as passed.
    let mut relative = false;
    if c.fd != NO_FD {
        match fd_file(t, c.fd as u64) {
            Some(file) => unsafe { path::resolve(file.wrapping_add(off!(file_path)), &raw mut (*ev).path) },
            None => unsafe { set_truncated(&raw mut (*ev).path) },
        }
    } else {
        if c.path != 0 {
            unsafe { path::from_user(c.path as *const u8, &raw mut (*ev).path) };
        } else {
            unsafe { empty(&raw mut (*ev).path) };
        }
        relative = unsafe { !starts_with_slash(&raw const (*ev).path) };
    }

    let mut path2_relative = false;
    if c.path2 != 0 {
        unsafe { path::from_user(c.path2 as *const u8, &raw mut (*ev).path2) };
        if c.path2_is_path {
            how |= CHANGE_PATH2_IS_PATH;
            path2_relative = unsafe { !starts_with_slash(&raw const (*ev).path2) };
        }
    }

    // One base directory fits: the first name's, else the second's.
    let base_dfd = if relative {
        how |= CHANGE_BASE_OF_PATH;
        if path2_relative {
            if c.dfd2 == c.dfd { how |= CHANGE_BASE_OF_PATH2 } else { how |= CHANGE_PATH2_OTHER_DIR }
        }
        Some(c.dfd)
    } else if path2_relative {
        how |= CHANGE_BASE_OF_PATH2;
        Some(c.dfd2)
    } else {
        None
    };
    if let Some(dfd) = base_dfd {
        let dir = if dfd == AT_FDCWD {
            read_ptr(t, off!(task_fs)).map(|fs| fs.wrapping_add(off!(fs_pwd)))
        } else {
            fd_file(t, dfd as i64 as u64).map(|f| f.wrapping_add(off!(file_path)))
        };
        match dir {
            Some(p) => unsafe { path::resolve(p, &raw mut (*ev).base) },
            None => unsafe { set_truncated(&raw mut (*ev).base) },
        }
    }
    unsafe { (*ev).how = how };
    unsafe { send(ev, tag) };
}

/// Sends the record built in `CHANGE_RECORD` packed (see `RECORD_PACKED`): the
/// fixed fields, the three paths' lengths and flags, then their bytes in use.
///
/// # Safety
/// `ev` must be `CHANGE_RECORD`'s value, filled in.
#[inline(always)]
unsafe fn send(ev: *const FileChangeEvent, tag: &TaskTag) {
    let used = |p: *const RawPath| {
        let n = unsafe { (*p).len };
        if n > PATH_BUF as u32 { PATH_BUF as u32 } else { n }
    };
    let paths = unsafe { [&raw const (*ev).path, &raw const (*ev).path2, &raw const (*ev).base] };
    let (a, b, c) = (used(paths[0]), used(paths[1]), used(paths[2]));
    let size = FILE_CHANGE_PACKED_HEAD as u32 + a + b + c;
    let mut out = Packed::new();
    if !out.reserve(size, EventKind::FileChange, Some(tag)) {
        return;
    }
    let head = offset_of!(RawPath, data) as u32;
    unsafe {
        out.put(ev.cast(), FILE_CHANGE_FIXED as u32);
        out.put(paths[0].cast(), head);
        out.put(paths[1].cast(), head);
        out.put(paths[2].cast(), head);
        out.put((&raw const (*paths[0]).data).cast(), a);
        out.put((&raw const (*paths[1]).data).cast(), b);
        out.put((&raw const (*paths[2]).data).cast(), c);
    }
    out.submit(true);
}

/// Whether a raw name starts at the root (an empty one does not: it is the
/// directory descriptor itself).
#[inline(always)]
unsafe fn starts_with_slash(p: *const RawPath) -> bool {
    unsafe { (*p).len > 1 && (*p).data[0] == b'/' }
}

#[inline(always)]
unsafe fn empty(p: *mut RawPath) {
    unsafe {
        (*p).len = 0;
        (*p).flags = PATH_RAW;
    }
}

#[inline(always)]
unsafe fn set_truncated(p: *mut RawPath) {
    unsafe {
        (*p).len = 0;
        (*p).flags = PATH_TRUNCATED;
    }
}
