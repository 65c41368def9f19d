//! `cargo xtask`: the one entry point that takes a fresh Debian machine to a running
//! agent (`run`) or to a full test run against the real kernel (`test`).
//!
//! Everything the eBPF build and the tests need but cargo cannot fetch by itself (nightly
//! rust-src, a bpf-linker built against the nightly's own LLVM, a few Debian tools, the
//! kernel's pseudo file systems) is brought in by `setup`, which every other subcommand
//! runs first, so no step of the README depends on a hand-prepared machine.
//!
//! # Layout
//! - [`ctx`]: where things are (workspace, target dir, cargo, bin dir on `PATH`).
//! - [`cmd`]: running child commands with errors that name the command.
//! - [`setup`]: the ordered bootstrap steps and their one-line reports; the steps
//!   themselves are [`toolchain`], [`linker`], [`packages`] and [`mounts`].
//! - [`build`], [`run`], [`mod@test`], [`mod@bench`], [`package`]: one file per remaining subcommand.

mod bench;
mod browser;
mod build;
mod cmd;
mod ctx;
mod linker;
mod mounts;
mod package;
mod packages;
mod run;
mod setup;
mod test;
mod toolchain;

use std::{ffi::OsString, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::ctx::Ctx;

/// Bootstrap, build, run, test and benchmark warrant.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what is missing: nightly rust-src, bpf-linker, Debian test tools, and
    /// mount bpffs, tracefs, securityfs and cgroup2. Idempotent, seconds when complete.
    Setup,
    /// Setup, then build target/release/warrant-agent and target/release/warrant.
    Build,
    /// Build, link both binaries into /usr/local/bin, then run the agent in the
    /// foreground (single-host mode).
    Run {
        /// Arguments for warrant-agent, after `--` (e.g. `-- --ring-buffer-bytes 65536`).
        #[arg(trailing_var_arg = true, value_name = "AGENT_ARGS")]
        args: Vec<OsString>,
    },
    /// Build, then run every test: unit and property tests, then the privileged
    /// integration tests against the real kernel (needs root).
    Test {
        /// Arguments for the integration test binaries, after `--` (e.g. a test name).
        #[arg(trailing_var_arg = true, value_name = "TEST_ARGS")]
        args: Vec<OsString>,
    },
    /// Build, then make the Debian packages warrant, warrant-agent and warrant-collector
    /// in target/packages/ (binaries, systemd units, default configs, man pages,
    /// completions).
    Package,
    /// Build, then run the end-to-end benchmarks (warrant-bench).
    Bench {
        /// Arguments for warrant-bench, after `--`.
        #[arg(trailing_var_arg = true, value_name = "BENCH_ARGS")]
        args: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs one subcommand. `Ok` carries the exit code for outcomes that are reports rather
/// than errors (failed tests print a summary first, then exit 1).
fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::new()?;
    match command {
        Command::Setup => setup::setup(&ctx).map(|()| ExitCode::SUCCESS),
        Command::Build => {
            setup::setup(&ctx)?;
            build::build(&ctx).map(|()| ExitCode::SUCCESS)
        }
        Command::Package => {
            setup::setup(&ctx)?;
            build::build(&ctx)?;
            package::package(&ctx).map(|_| ExitCode::SUCCESS)
        }
        Command::Run { args } => run::run(&ctx, &args).map(|()| ExitCode::SUCCESS),
        Command::Test { args } => test::test(&ctx, &args),
        Command::Bench { args } => bench::bench(&ctx, &args).map(|()| ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_passes_everything_after_double_dash() {
        let cli = Cli::try_parse_from(["xtask", "run", "--", "--ring-buffer-bytes", "65536"])
            .expect("parse run args");
        let Command::Run { args } = cli.command else {
            panic!("expected run, got {:?}", cli.command);
        };
        assert_eq!(args, ["--ring-buffer-bytes", "65536"]);
    }

    #[test]
    fn test_takes_a_filter_with_or_without_double_dash() {
        for argv in [
            &["xtask", "test", "exec_is_seen"][..],
            &["xtask", "test", "--", "exec_is_seen"][..],
        ] {
            let cli = Cli::try_parse_from(argv).expect("parse test args");
            let Command::Test { args } = cli.command else {
                panic!("expected test, got {:?}", cli.command);
            };
            assert_eq!(args, ["exec_is_seen"]);
        }
    }

    #[test]
    fn agent_flags_need_double_dash() {
        assert!(Cli::try_parse_from(["xtask", "run", "--ring-buffer-bytes", "1"]).is_err());
    }
}
