//! warrant's eBPF programs.
//!
//! # Layout
//! - [`maps`]: every map and the `OFFSETS` global (names from `warrant_common::maps`).
//! - [`task_storage`]: a task-storage map type (aya-ebpf has none).
//! - [`kernel`]: reads of kernel structs at offsets resolved from BTF at load time.
//! - [`path`]: rebuilding a path from dentries (no `bpf_d_path` in these hooks).
//! - [`tag`]: the one lookup every hook pays, and the in-kernel kill check.
//! - [`emit`]: event headers and the lost-record counter.
//! - [`fork`], [`exec`], [`exit`], [`sched`], [`syscalls`]: one file per hook concern;
//!   [`file_change`]: the calls that change files, seen at `sys_exit`.
//! - [`net_policy`]: cgroup connect hooks enforcing a grant's network rules.
//! - [`tcp`]: byte counts of a session's TCP connections at close.
//! - [`io_uring`]: a session's io_uring submissions (when its policy allows io_uring).
//! - [`unix_policy`]: cgroup unix connect/sendmsg hooks: self-protection and `unix:` rules;
//!   [`unix_peer`]: the same rules on the peer a unix connect reached, at its return,
//!   and on the socket a datagram (or an io_uring connect) was delivered to.
//!
//! Every hook starts with one task-storage lookup; an untagged task returns there.
#![no_std]
#![no_main]
// `atomic_xadd` for the session task counter (see fork.rs): the BPF target has no
// compare-and-swap, so core's atomic types have no read-modify-write methods.
#![feature(core_intrinsics)]
#![allow(internal_features)]
// `asm!` on the BPF target: the kfunc call in `kernel::cast`.
#![feature(asm_experimental_arch)]

mod emit;
mod exec;
mod exit;
mod file_change;
mod fork;
mod io_uring;
mod kernel;
mod maps;
mod net_policy;
mod path;
mod sched;
mod syscalls;
mod tag;
mod task_storage;
mod tcp;
mod unix_peer;
mod unix_policy;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never linked in a
    // loadable object; it only satisfies no_std.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
