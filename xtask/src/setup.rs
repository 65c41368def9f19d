//! `cargo xtask setup`: the bootstrap every other subcommand runs first.
//!
//! Order matters: bpf-linker is built against the nightly found in the first step.
//! Each step checks before it acts and prints one line (present / installed / mounted,
//! and how long it took), so a second run is a few quick probes and says so.

use std::time::Instant;

use anyhow::Result;

use crate::{
    cmd::{self, step, step_with},
    ctx::{self, Ctx},
    browser, linker, mounts, packages, toolchain,
};

/// Runs every setup step; fails on the first one that cannot be completed.
pub fn setup(ctx: &Ctx) -> Result<()> {
    let start = Instant::now();
    let root = ctx::is_root();

    let nightly = step_with("setup", "nightly rust-src", || toolchain::ensure(ctx))?;
    step("setup", "bpf-linker", || linker::ensure(ctx, &nightly))?;
    step("setup", "debian packages", || packages::ensure(ctx, root))?;
    step("setup", "console browser", || browser::ensure(ctx, root))?;
    for m in mounts::MOUNTS {
        step("setup", m.name, || mounts::ensure(ctx, m, root))?;
    }

    println!("setup: done in {}", cmd::fmt_duration(start.elapsed()));
    Ok(())
}
