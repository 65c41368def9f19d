//! Types shared by warrant's eBPF programs and its agent.
//!
//! This crate is the only contract between the kernel side (`agent-ebpf`) and user
//! space (`agent`). Everything here is `#[repr(C)]`, `Copy`, with explicit padding,
//! so both sides see the same bytes; a unit test pins every size and offset.
//!
//! # Layout
//! - [`maps`]: map names, sizes and the values stored in them (tags, grant and
//!   session state).
//! - [`event`]: the records the programs write into the ring buffer.
//! - [`offsets`]: kernel struct offsets resolved by the agent from the running
//!   kernel's BTF and handed to the programs as a read-only global.
//! - [`kfunc`]: the kernel functions the programs call, bound by the agent at load.
//! - [`policy`]: actions and the network rules kept in an LPM trie.
//! - [`syscalls`]: the syscalls a session may not make (seccomp, kernel map, names).
#![no_std]

pub mod event;
pub mod kfunc;
pub mod maps;
pub mod offsets;
pub mod policy;
pub mod syscalls;

pub use event::{EventHeader, EventKind};
pub use maps::{GrantState, SessionState, TaskTag};
pub use offsets::KernelOffsets;
