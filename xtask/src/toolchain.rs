//! The nightly toolchain and its `rust-src` component.
//!
//! The eBPF crate is built for `bpfel-unknown-none`, which has no prebuilt standard
//! library: aya-build passes `-Z build-std=core`, which needs nightly and the `core`
//! sources from `rust-src`. There is deliberately no rust-toolchain file (the host
//! crates build on stable), so setup makes sure the nightly exists on its own.

use std::path::PathBuf;

use anyhow::{Context as _, Result};

use crate::{cmd, ctx::Ctx};

/// The toolchain aya-build uses for the eBPF crate (`rustup run nightly cargo …`).
pub const NIGHTLY: &str = "nightly";

/// The nightly as found (or installed) by [`ensure`].
#[derive(Debug)]
pub struct Nightly {
    /// `rustc +nightly --print sysroot`; its `lib/` holds the `libLLVM.so.*` that
    /// bpf-linker must be built against.
    pub sysroot: PathBuf,
    /// `rustc +nightly --version`, for the report.
    pub version: String,
}

/// Makes sure the nightly and its rust-src are installed; returns it and what was done.
pub fn ensure(ctx: &Ctx) -> Result<(Nightly, String)> {
    let mut did = Vec::new();

    let sysroot = match sysroot(ctx) {
        Ok(s) => s,
        Err(e) => {
            // A minimal profile is enough: the eBPF build needs rustc, cargo and rust-src.
            println!(
                "setup: nightly rust-src: no usable nightly ({e:#}); \
                 installing it (minimal profile + rust-src)"
            );
            cmd::run(ctx.command("rustup").args([
                "toolchain",
                "install",
                NIGHTLY,
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]))?;
            did.push("installed nightly");
            sysroot(ctx).context("nightly still unusable after installing it")?
        }
    };

    // `lib/rustlib/src/rust/library` is what `-Z build-std` reads; the component may be
    // half there after an interrupted install, so check the directory, not the manifest.
    if !sysroot.join("lib/rustlib/src/rust/library").is_dir() {
        cmd::run(ctx.command("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            NIGHTLY,
        ]))?;
        did.push("installed rust-src");
    }

    let version = cmd::stdout(
        ctx.command("rustup")
            .args(["run", NIGHTLY, "rustc", "--version"]),
    )?
    .trim()
    .to_owned();
    let outcome = if did.is_empty() {
        format!("present ({version})")
    } else {
        format!("{} ({version})", did.join(", "))
    };
    Ok((Nightly { sysroot, version }, outcome))
}

/// The nightly's sysroot. `rustup run` rather than `rustc +nightly`: under `cargo run`
/// the first `rustc` on `PATH` may be the toolchain's own binary, which knows no `+`.
fn sysroot(ctx: &Ctx) -> Result<PathBuf> {
    let out = cmd::stdout(
        ctx.command("rustup")
            .args(["run", NIGHTLY, "rustc", "--print", "sysroot"]),
    )?;
    Ok(PathBuf::from(out.trim()))
}
