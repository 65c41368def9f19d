//! Per-session cgroup v2 directories: create, move a process in, kill all, remove.
//!
//! A session's cgroup gives the agent one atomic `cgroup.kill` for the whole tree
//! and a cheap "is anything left" (`cgroup.events`). It is not the identity: a process
//! can leave the cgroup (as root), so the kernel tag stays the source of truth and
//! the kill sweeps by tag afterwards.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow};

/// Finds the cgroup v2 mount point (`/sys/fs/cgroup` on unified hosts,
/// `/sys/fs/cgroup/unified` on hybrid ones like this machine).
pub fn find_cgroup2_mount() -> Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts").context("failed to read /proc/mounts")?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, mnt, ty) = (f.next()?, f.next()?, f.next()?);
            (ty == "cgroup2").then(|| PathBuf::from(mnt))
        })
        .next()
        .ok_or_else(|| {
            anyhow!("no cgroup v2 filesystem is mounted\n\nMount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`.")
        })
}

/// The cgroup v2 directory of `pid`, or `None` when it has none.
pub fn cgroup_of(pid: u32, mount: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(mount.join(rel.trim_start_matches('/')))
}

/// Whether `dir` is in a cgroup v2 hierarchy (statfs says cgroup2).
pub fn is_cgroup2(dir: &Path) -> bool {
    const CGROUP2_SUPER_MAGIC: libc::c_long = 0x6367_7270;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: statfs is plain data; the path is NUL-terminated and outlives the call.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(c.as_ptr(), &raw mut st) } == 0) && st.f_type == CGROUP2_SUPER_MAGIC
}

/// One session's cgroup.
#[derive(Debug, Clone)]
pub struct SessionCgroup {
    pub path: PathBuf,
}

impl SessionCgroup {
    /// Creates `<root>/<name>` (and `root` if needed).
    pub fn create(root: &Path, name: &str) -> Result<Self> {
        let path = root.join(name);
        fs::create_dir_all(&path).with_context(|| format!("failed to create cgroup {}", path.display()))?;
        Ok(Self { path })
    }

    /// Moves the whole process (all threads) into this cgroup.
    pub fn add(&self, pid: u32) -> Result<()> {
        write(&self.path.join("cgroup.procs"), &pid.to_string())
            .with_context(|| format!("failed to move pid {pid} into cgroup {}", self.path.display()))
    }

    /// Processes in the cgroup.
    pub fn procs(&self) -> Vec<u32> {
        fs::read_to_string(self.path.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// SIGKILLs every process in the cgroup, atomically with respect to forks.
    pub fn kill(&self) -> Result<()> {
        write(&self.path.join("cgroup.kill"), "1")
            .with_context(|| format!("failed to write cgroup.kill of {}", self.path.display()))
    }

    /// Whether any process is still in the cgroup (or its children).
    pub fn populated(&self) -> bool {
        fs::read_to_string(self.path.join("cgroup.events"))
            .map(|t| t.lines().any(|l| l.trim() == "populated 1"))
            .unwrap_or(false)
    }

    /// Removes the (empty) cgroup directory.
    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_dir(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    // cgroup files take one value per write(2); no buffering, no truncation.
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}
