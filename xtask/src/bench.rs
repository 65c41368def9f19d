//! `cargo xtask bench`: the end-to-end overhead benchmarks.
//!
//! The measuring itself lives in the `warrant-bench` binary of the tests crate (it
//! drives hyperfine and stress-ng with and without the agent, and records results under
//! bench/runs/); this only makes sure the tools and the release binaries exist first.

use std::ffi::OsString;

use anyhow::Result;

use crate::{build, cmd, ctx::Ctx, setup};

/// Setup, build, then `warrant-bench` with `args`.
pub fn bench(ctx: &Ctx, args: &[OsString]) -> Result<()> {
    setup::setup(ctx)?;
    build::build(ctx)?;
    cmd::run(
        ctx.cargo()
            .env("WARRANT_BIN_DIR", &ctx.release_dir)
            .args([
                "run",
                "--release",
                "-p",
                "warrant-tests",
                "--bin",
                "warrant-bench",
                "--",
            ])
            .args(args),
    )
}
