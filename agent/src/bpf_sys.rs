//! The `bpf(2)` commands aya 0.14 does not offer: element access on map types it
//! does not wrap (task storage), and loading, attaching and pinning programs of
//! attach types it does not know (the cgroup unix hooks, see `raw_prog.rs`).
//!
//! Each command's `union bpf_attr` prefix is a `repr(C)` struct here; the kernel
//! requires every byte past the fields a command uses to be zero, which
//! `Default` and the zeroed tails give.

use std::{
    ffi::CStr,
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_LINK_CREATE: libc::c_long = 28;

/// `bpf(cmd, attr, size)`, the result or the errno.
fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, fully initialised bpf_attr prefix for `cmd`; every
    // pointer in it is valid for the length the kernel reads.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_ref(attr), size_of::<T>() as u32) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// `union bpf_attr` as used by the map element commands.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn map_elem(cmd: libc::c_long, map: BorrowedFd<'_>, key: *const u8, value: *mut u8) -> io::Result<()> {
    let attr = MapElemAttr { map_fd: map.as_raw_fd() as u32, key: key as u64, value: value as u64, ..Default::default() };
    bpf(cmd, &attr).map(drop)
}

/// Writes one element; `key` and `value` must point to buffers of the map's sizes.
pub fn map_update(map: BorrowedFd<'_>, key: *const u8, value: *const u8) -> io::Result<()> {
    map_elem(BPF_MAP_UPDATE_ELEM, map, key, value.cast_mut())
}

/// Reads one element; `key` and `value` must point to buffers of the map's sizes.
pub fn map_lookup(map: BorrowedFd<'_>, key: *const u8, value: *mut u8) -> io::Result<()> {
    map_elem(BPF_MAP_LOOKUP_ELEM, map, key, value)
}

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// A program the kernel refused, with the verifier's log.
#[derive(Debug, thiserror::Error)]
#[error("{error}{}", if log.is_empty() { String::new() } else { format!("\n\nverifier log (tail):\n{log}") })]
pub struct LoadError {
    pub error: io::Error,
    pub log: String,
}

/// Loads `insns` (8-byte `struct bpf_insn`s) as a program of `prog_type` with
/// `expected_attach_type`. On a refusal the load is repeated with the verifier log
/// on, and the log's tail is returned with the error.
pub fn prog_load(
    prog_type: u32,
    expected_attach_type: u32,
    name: &str,
    insns: &[u64],
    license: &CStr,
) -> Result<OwnedFd, LoadError> {
    let mut prog_name = [0u8; 16];
    for (d, s) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name,
        expected_attach_type,
        ..Default::default()
    };
    match bpf(BPF_PROG_LOAD, &attr) {
        // SAFETY: a successful BPF_PROG_LOAD returns a new descriptor we own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(error) => {
            let mut log = vec![0u8; 1 << 20];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(BPF_PROG_LOAD, &attr);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            Err(LoadError { error, log: tail.into_iter().rev().collect::<Vec<_>>().join("\n") })
        }
    }
}

/// `union bpf_attr` for `BPF_LINK_CREATE` (no attach-type specific part).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u64; 4],
}

/// Attaches `prog` to `target` (a cgroup directory) as a link.
pub fn link_create(prog: BorrowedFd<'_>, target: BorrowedFd<'_>, attach_type: u32) -> io::Result<OwnedFd> {
    let attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: target.as_raw_fd() as u32,
        attach_type,
        ..Default::default()
    };
    let fd = bpf(BPF_LINK_CREATE, &attr)?;
    // SAFETY: a successful BPF_LINK_CREATE returns a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `union bpf_attr` for `BPF_OBJ_PIN`.
#[repr(C)]
#[derive(Default)]
struct ObjPinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

/// Pins a map, program or link at `path` on a bpf filesystem.
pub fn obj_pin(fd: BorrowedFd<'_>, path: &CStr) -> io::Result<()> {
    let attr = ObjPinAttr { pathname: path.as_ptr() as u64, bpf_fd: fd.as_raw_fd() as u32, ..Default::default() };
    bpf(BPF_OBJ_PIN, &attr).map(drop)
}
