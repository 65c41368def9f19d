//! `cargo xtask build`: the agent, the CLI and the collector, in release mode.
//!
//! The agent's own build script compiles the eBPF crate through aya-build (nightly,
//! `-Z build-std`, bpf-linker), so this only has to run cargo with setup's `PATH`, on
//! which `rustup` and the freshly checked `bpf-linker` are found.

use std::time::Instant;

use anyhow::{Result, bail};

use crate::{cmd, ctx::Ctx};

/// The binaries `build` leaves in the release directory.
pub const BINARIES: &[&str] = &["warrant-agent", "warrant", "warrant-collector"];

/// Builds `warrant-agent`, `warrant` and `warrant-collector` (release).
pub fn build(ctx: &Ctx) -> Result<()> {
    let start = Instant::now();
    cmd::run(ctx.cargo().args([
        "build",
        "--release",
        "-p",
        "warrant-agent",
        "-p",
        "warrant-cli",
        "-p",
        "warrant-collector",
    ]))?;
    let built: Vec<_> = BINARIES.iter().map(|b| ctx.release_dir.join(b)).collect();
    if let Some(absent) = built.iter().find(|p| !p.is_file()) {
        bail!(
            "cargo build succeeded but {} does not exist",
            absent.display()
        );
    }
    println!(
        "build: {} ({})",
        built
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        cmd::fmt_duration(start.elapsed())
    );
    Ok(())
}
