//! Empty host-side library so the workspace can name this crate; the programs are
//! the `warrant` binary, built for `bpfel-unknown-none` by `agent/build.rs`.
#![no_std]
