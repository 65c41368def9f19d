//! cgroup v2 for tests: where the cgroup2 hierarchy is mounted (on this machine
//! `/sys/fs/cgroup/unified`, a hybrid layout, so it is looked up in `/proc/mounts`),
//! reading a cgroup's members, and [`TempCgroup`], a cgroup a test creates (the agent's
//! cgroup root, or a place for a process to escape to) and removes on drop.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The cgroup2 mount point.
pub fn mount() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("read /proc/mounts");
    mounts
        .lines()
        .find_map(|l| {
            let mut f = l.split_ascii_whitespace();
            let (_dev, dir, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(dir))
        })
        .expect("no cgroup2 mount in /proc/mounts")
}

/// Resolves a cgroup path as the agent or `/proc/PID/cgroup` reports it: absolute
/// under the mount already, or relative to the mount (`/warrant/s-1`).
pub fn resolve(path: &str) -> PathBuf {
    let m = mount();
    let p = Path::new(path);
    if p.starts_with(&m) {
        p.to_path_buf()
    } else {
        m.join(path.trim_start_matches('/'))
    }
}

/// The pids in `dir/cgroup.procs`; empty when the cgroup does not exist (any more).
pub fn procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Moves `pid` into the cgroup `dir`.
pub fn move_pid(dir: &Path, pid: u32) -> std::io::Result<()> {
    std::fs::write(dir.join("cgroup.procs"), pid.to_string())
}

/// Kills everything in the cgroup tree at `dir` (`cgroup.kill`), then removes its
/// directories bottom-up. Best effort: used in drops, where panicking would hide the
/// real failure.
pub fn remove_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    // rmdir fails with EBUSY until the killed members have exited.
    let _ = crate::poll(Duration::from_secs(5), || std::fs::remove_dir(dir).ok());
}

/// A cgroup created for one test, removed (with anything still in it killed) on drop.
pub struct TempCgroup {
    /// Absolute path under the cgroup2 mount.
    path: PathBuf,
}

impl TempCgroup {
    /// Creates `<cgroup2 mount>/<prefix>-<random>`.
    pub fn new(prefix: &str) -> Self {
        let path = mount().join(format!("{prefix}-{}", crate::random_hex()));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self { path }
    }

    /// A name for a cgroup not created yet (for a tool that makes it itself).
    pub fn path_for(prefix: &str) -> PathBuf {
        mount().join(format!("{prefix}-{}", crate::random_hex()))
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its member pids.
    pub fn procs(&self) -> Vec<u32> {
        procs(&self.path)
    }
}

impl Drop for TempCgroup {
    fn drop(&mut self) {
        remove_tree(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cgroup2 mount is found, and `/proc/self/cgroup` resolves under it.
    #[test]
    fn cgroup2_is_mounted_and_own_cgroup_resolves() {
        let m = mount();
        assert!(m.join("cgroup.procs").is_file(), "{} is not a cgroup2 root", m.display());
        let own = crate::procfs::cgroup_of(std::process::id()).expect("own cgroup");
        assert!(resolve(&own).join("cgroup.procs").is_file());
    }

    /// A `TempCgroup` takes a moved process, and dropping it kills that process and
    /// removes the directory.
    #[test]
    fn temp_cgroup_holds_a_moved_process_and_is_removed() {
        let cg = TempCgroup::new("warrant-test-unit");
        let path = cg.path().to_path_buf();
        let mut c = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        move_pid(cg.path(), c.id()).expect("move sleep");
        assert_eq!(cg.procs(), vec![c.id()]);
        drop(cg);
        assert!(!path.exists(), "{} still exists", path.display());
        let st = c.wait().expect("wait");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    }
}
