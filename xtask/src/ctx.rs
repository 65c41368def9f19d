//! Where things are: the workspace, cargo's target directory, the cargo binary, and the
//! bin directory that `cargo install` fills (bpf-linker lives there).
//!
//! Worked out once so that every child process sees the same answers. In particular
//! the bin directory is put first on the children's `PATH`: aya-build finds
//! `bpf-linker` and `rustup` through `PATH`, and a fresh shell on a CI machine may not
//! have `~/.cargo/bin` on it.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// Paths and environment shared by every subcommand.
#[derive(Debug)]
pub struct Ctx {
    /// The workspace root; children run there so relative paths mean the same thing.
    pub root: PathBuf,
    /// `target/release` (or under `CARGO_TARGET_DIR`): where the binaries land and
    /// what the integration tests get as `WARRANT_BIN_DIR`.
    pub release_dir: PathBuf,
    /// The cargo running us (`$CARGO`), so children use the same toolchain.
    pub cargo: OsString,
    /// Root of `cargo install` (`CARGO_INSTALL_ROOT`, else `CARGO_HOME`, else
    /// `~/.cargo`); also where setup installs bpf-linker.
    pub install_root: PathBuf,
    /// `PATH` for children: `install_root/bin` first, then the inherited `PATH`.
    pub path: OsString,
    /// Set when `CARGO_TARGET_DIR` was given relative: children get it made absolute,
    /// since they run from the workspace root rather than from where we were started.
    target_dir_override: Option<PathBuf>,
}

impl Ctx {
    pub fn new() -> Result<Self> {
        // xtask always lives directly under the workspace root.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("find the workspace root: xtask has no parent directory")?
            .to_path_buf();

        let target_dir_override = match env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => {
                let cwd = env::current_dir().context("read the current directory")?;
                Some(cwd.join(dir))
            }
            _ => None,
        };
        let target_dir = target_dir_override
            .clone()
            .unwrap_or_else(|| root.join("target"));
        let release_dir = target_dir.join("release");

        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

        let install_root = match (env::var_os("CARGO_INSTALL_ROOT"), env::var_os("CARGO_HOME")) {
            (Some(r), _) if !r.is_empty() => PathBuf::from(r),
            (_, Some(h)) if !h.is_empty() => PathBuf::from(h),
            _ => match env::var_os("HOME") {
                Some(home) if !home.is_empty() => PathBuf::from(home).join(".cargo"),
                _ => bail!(
                    "find cargo's install root: none of CARGO_INSTALL_ROOT, CARGO_HOME, HOME is set"
                ),
            },
        };

        let bin = install_root.join("bin");
        let inherited = env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![bin.clone()];
        dirs.extend(env::split_paths(&inherited).filter(|d| *d != bin));
        let path = env::join_paths(dirs).context("build PATH for child processes")?;

        Ok(Self {
            root,
            release_dir,
            cargo,
            install_root,
            path,
            target_dir_override,
        })
    }

    /// Where `cargo install` puts binaries.
    pub fn bin_dir(&self) -> PathBuf {
        self.install_root.join("bin")
    }

    /// A command that runs in the workspace root with the children's `PATH`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root).env("PATH", &self.path);
        if let Some(dir) = &self.target_dir_override {
            cmd.env("CARGO_TARGET_DIR", dir);
        }
        cmd
    }

    /// `cargo` (the one running us), ready for arguments.
    pub fn cargo(&self) -> Command {
        self.command(&self.cargo)
    }
}

/// True when we run with effective uid 0.
///
/// Read from `/proc/self/status` (the second `Uid:` field is the effective uid) so the
/// xtask needs no libc binding for one syscall.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}
