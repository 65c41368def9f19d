//! Reads of kernel structures at offsets the agent resolved from BTF.
//!
//! Rust's BPF target has no CO-RE relocations, so instead of compiled-in layouts
//! every field offset comes from the `OFFSETS` global (see
//! `warrant_common::offsets`). Reads go through `bpf_probe_read_kernel`, which fails
//! cleanly on a bad pointer instead of faulting.

use aya_ebpf::helpers::bpf_probe_read_kernel;

use crate::maps::OFFSETS;

/// The offset of `field` in `OFFSETS`, read volatile so the compiler cannot fold
/// the placeholder zero in at build time.
macro_rules! off {
    ($field:ident) => {{
        #[allow(unused_unsafe)]
        let v = unsafe { core::ptr::read_volatile(&raw const $crate::maps::OFFSETS.$field) };
        v as usize
    }};
}
pub(crate) use off;

/// Whether the agent filled in the offsets; without them the hooks do nothing.
#[inline(always)]
pub fn offsets_valid() -> bool {
    unsafe { core::ptr::read_volatile(&raw const OFFSETS.valid) != 0 }
}

/// Reads a `T` at `base + offset` from kernel memory.
#[inline(always)]
pub fn read<T>(base: *const u8, offset: usize) -> Option<T> {
    if base.is_null() {
        return None;
    }
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset).cast::<T>()) }.ok()
}

/// Reads a kernel pointer at `base + offset`.
#[inline(always)]
pub fn read_ptr(base: *const u8, offset: usize) -> Option<*const u8> {
    read::<*const u8>(base, offset).filter(|p| !p.is_null())
}

/// The `struct file *` behind descriptor `fd` of `task`.
#[inline(always)]
pub fn fd_file(task: *const u8, fd: u64) -> Option<*const u8> {
    let files = read_ptr(task, off!(task_files))?;
    let fdt = read_ptr(files, off!(files_fdt))?;
    let max: u32 = read(fdt, off!(fdtable_max_fds))?;
    if fd >= u64::from(max) {
        return None;
    }
    let array = read_ptr(fdt, off!(fdtable_fd))?;
    read_ptr(array, (fd as usize) * 8)
}
