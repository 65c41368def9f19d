//! Reads of kernel structures at offsets the agent resolved from BTF.
//!
//! Rust's BPF target has no CO-RE relocations, so instead of compiled-in layouts
//! every field offset comes from the `OFFSETS` global (see
//! `warrant_common::offsets`). A pointer the verifier knows by its BTF type is read
//! with [`load`], one guarded instruction; a pointer it sees as a number is given its
//! type with [`cast`] (the kfunc `bpf_rdonly_cast`) and then loaded the same way, or
//! read with [`read`] (`bpf_probe_read_kernel`, a helper call). Both fail cleanly on
//! a bad pointer (reading zero or `None`) instead of faulting.

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

/// Loads a `T` at `base + offset` straight from memory, for a `base` the verifier
/// knows by its BTF type: a hook's typed argument, the current task
/// (`bpf_get_current_task_btf`), or a pointer field loaded with this function from
/// one of those. The offsets come from the frozen read-only `OFFSETS`, so the
/// verifier sees constants, checks the field against the kernel's BTF and turns
/// the load into one guarded instruction (a fault reads zero), with no helper call:
/// a `bpf_probe_read_kernel` costs ~35 ns here, and a file event made ~20 of them.
/// A pointer read from memory another way (a scalar to the verifier) must go
/// through [`read`].
#[inline(always)]
pub fn load<T>(base: *const u8, offset: usize) -> T {
    unsafe { core::ptr::read_volatile(base.wrapping_add(offset).cast::<T>()) }
}

/// The immediate of the kfunc call [`cast`] emits, until the agent replaces it with
/// `bpf_rdonly_cast`'s BTF id in the running kernel (`warrant_common::kfunc`).
const CAST_MARKER: u64 = warrant_common::kfunc::CALL_MARKER_INSN;

/// `ptr` as a `struct` of BTF type `type_id` (a constant from `OFFSETS`) to the
/// verifier: the kfunc `bpf_rdonly_cast`, which the verifier replaces with a plain
/// move. Fields of the result (and the pointers loaded from them, transitively)
/// are then read with [`load`], one guarded instruction each, where a pointer the
/// verifier sees as a number (read from an array of pointers, or by a helper) would
/// need a `bpf_probe_read_kernel` call per read.
///
/// Rust's BPF target has no way to name a kernel function, so the call is written
/// as its instruction with a marker for the function's id, which the agent patches
/// before load.
#[inline(always)]
pub fn cast(ptr: *const u8, type_id: usize) -> *const u8 {
    let out: *const u8;
    // SAFETY: the instruction is `r0 = bpf_rdonly_cast(r1, r2)` once patched; it
    // reads and writes no memory, and a call clobbers r1-r5.
    unsafe {
        core::arch::asm!(
            ".8byte {insn}",
            insn = const CAST_MARKER,
            inlateout("r1") ptr => _,
            inlateout("r2") type_id => _,
            lateout("r0") out,
            lateout("r3") _,
            lateout("r4") _,
            lateout("r5") _,
            options(pure, nomem, nostack),
        );
    }
    out
}

/// [`load`] of a pointer field, `None` when it is null.
#[inline(always)]
pub fn load_ptr(base: *const u8, offset: usize) -> Option<*const u8> {
    let p: *const u8 = load(base, offset);
    if p.is_null() { None } else { Some(p) }
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

/// The `struct file *` behind descriptor `fd` of `task` (the current task, as
/// `bpf_get_current_task_btf` gives it), typed for the verifier so its fields are
/// loaded directly. The descriptor array is a `struct file **`, whose slots the
/// verifier would only let a helper read (its element type is a pointer, not a
/// struct): the slot is instead cast ([`cast`]) to the `struct kiocb` whose
/// `ki_filp` (a `struct file *`) would lie there, and that field loaded. It is one
/// guarded load like any other (a bad address reads zero); the kiocb is only a
/// type that names a file pointer.
#[inline(always)]
pub fn fd_file(task: *const u8, fd: u64) -> Option<*const u8> {
    let files = load_ptr(task, off!(task_files))?;
    let fdt = load_ptr(files, off!(files_fdt))?;
    let max: u32 = load(fdt, off!(fdtable_max_fds));
    if fd >= u64::from(max) {
        return None;
    }
    let array: *const u8 = load(fdt, off!(fdtable_fd));
    let slot = array.wrapping_add((fd as usize) * 8).wrapping_sub(off!(kiocb_ki_filp));
    load_ptr(cast(slot, off!(btf_kiocb)), off!(kiocb_ki_filp))
}
