//! `cargo xtask test`: every test, in one command, against the real kernel.
//!
//! Phases: setup, build, the Debian packages (which tests/tests/packages.rs installs),
//! unit and property tests (host only: the eBPF crate is left out because it builds
//! only for the BPF target, through the agent's build script), then the integration
//! tests, which load the agent's programs into this kernel and so need root. The
//! package, unit and integration phases all run even if one fails, so a single run
//! reports everything; the summary gives each phase's outcome and time.

use std::{
    ffi::OsString,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use crate::{build, cmd, ctx, ctx::Ctx, package, setup};

/// How one phase ended.
enum Outcome {
    Passed,
    /// Carries the failure, as printed in the summary.
    Failed(String),
    /// Not run because an earlier phase it depends on failed.
    Skipped,
}

/// One row of the summary.
struct Phase {
    name: &'static str,
    outcome: Outcome,
    elapsed: Duration,
}

/// Runs all phases; `args` go to the integration test binaries.
pub fn test(ctx: &Ctx, args: &[OsString]) -> Result<ExitCode> {
    // Checked first: finding out after a ten-minute build helps no one.
    if !ctx::is_root() {
        bail!(
            "the integration tests need root: they load BPF programs, pin maps under \
             /sys/fs/bpf, create cgroups and kill process trees\n\n\
             Consider running as root, e.g. `sudo -E env PATH=\"$PATH\" cargo xtask test`"
        );
    }

    let start = Instant::now();
    let mut phases = Vec::new();

    let ready = timed(&mut phases, "setup", || setup::setup(ctx))
        && timed(&mut phases, "build (release)", || build::build(ctx));

    if ready {
        // The packages test (tests/tests/packages.rs) installs what this makes; the
        // other tests run even when packaging fails.
        timed(&mut phases, "package (.deb)", || package::package(ctx).map(|_| ()));
        timed(&mut phases, "unit + property tests", || {
            expect_success(ctx.cargo().args([
                "test",
                // The release profile reuses every dependency the build step just
                // compiled; a debug test build would compile them all again (~8 min).
                "--release",
                // One failing crate must not hide the others' results.
                "--no-fail-fast",
                "--workspace",
                // Built only for bpfel-unknown-none, by the agent's build script.
                "--exclude",
                "warrant-ebpf",
                "--exclude",
                "warrant-tests",
            ]))
        });
        timed(&mut phases, "integration tests (root)", || {
            expect_success(
                ctx.cargo()
                    .env("WARRANT_BIN_DIR", &ctx.release_dir)
                    .env("WARRANT_PACKAGE_DIR", package::out_dir(ctx)?)
                    .args([
                        "test",
                        "--release",
                        // Every test file runs even when an earlier one fails.
                        "--no-fail-fast",
                        "-p",
                        "warrant-tests",
                        "--",
                        "--test-threads=2",
                    ])
                    .args(args),
            )
        });
    } else {
        for name in ["package (.deb)", "unit + property tests", "integration tests (root)"] {
            phases.push(Phase {
                name,
                outcome: Outcome::Skipped,
                elapsed: Duration::ZERO,
            });
        }
    }

    print_summary(&phases, start.elapsed());
    let failed = phases.iter().any(|p| !matches!(p.outcome, Outcome::Passed));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs `f` as phase `name`, records it, and returns whether it passed.
fn timed(phases: &mut Vec<Phase>, name: &'static str, f: impl FnOnce() -> Result<()>) -> bool {
    let start = Instant::now();
    let outcome = match f() {
        Ok(()) => Outcome::Passed,
        Err(e) => {
            eprintln!("xtask: test: {name}: {e:#}");
            Outcome::Failed(format!("{e:#}"))
        }
    };
    let passed = matches!(outcome, Outcome::Passed);
    phases.push(Phase {
        name,
        outcome,
        elapsed: start.elapsed(),
    });
    passed
}

/// Runs a test command; its own output is the report, so failing is just its status.
fn expect_success(command: &mut std::process::Command) -> Result<()> {
    let st = cmd::status(command)?;
    if !st.success() {
        bail!("`{}` failed: {st}", cmd::describe(command));
    }
    Ok(())
}

fn print_summary(phases: &[Phase], total: Duration) {
    println!("\ntest summary:");
    for p in phases {
        let (word, detail) = match &p.outcome {
            Outcome::Passed => ("ok", String::new()),
            Outcome::Failed(why) => ("FAILED", format!("  {}", first_line(why))),
            Outcome::Skipped => ("skipped", String::new()),
        };
        println!(
            "  {:<26} {:<8} {:>7}{detail}",
            p.name,
            word,
            cmd::fmt_duration(p.elapsed)
        );
    }
    println!(
        "  {:<26} {:<8} {:>7}",
        "total",
        "",
        cmd::fmt_duration(total)
    );
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
