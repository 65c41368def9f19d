//! Workloads started under a grant and what a test needs to know about them:
//! [`Tree`], a `warrant-testbin tree` whose every process is listed (pid and role) in a
//! pid file; plus small helpers shared by the tests (canonical paths, accepting on a
//! listener without hanging).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::agent::TestAgent;
use crate::procfs::Marker;
use crate::session::Session;
use crate::{bins, cgroup, poll, procfs};

/// The path the kernel reports for `path`: symlinks resolved (`/bin/true` is
/// `/usr/bin/true` on a merged-/usr system).
pub fn canonical(path: impl AsRef<Path>) -> String {
    let p = path.as_ref();
    std::fs::canonicalize(p)
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.display()))
        .to_string_lossy()
        .into_owned()
}

/// `warrant-testbin`'s path as a string, for argv.
pub fn testbin() -> String {
    bins::testbin().to_string_lossy().into_owned()
}

/// Lines `PID ROLE` of a tree's pid file (a missing file reads as empty).
pub fn read_pidfile(path: &Path) -> Vec<(u32, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (pid, role) = l.split_once(' ')?;
            Some((pid.parse().ok()?, role.to_string()))
        })
        .collect()
}

/// A process tree running under a grant.
pub struct Tree {
    /// The `warrant exec` session running `warrant-testbin tree`.
    pub session: Session,
    /// Every process of the tree: pid and role (root, chain, daemon, escape, …).
    pub procs: Vec<(u32, String)>,
}

impl Tree {
    /// Starts `warrant-testbin tree n` under `grant` and waits (at most 15 s) until all
    /// `n` processes have written their pid. With `escape`, one process moves itself
    /// into that cgroup; if the agent's confinement stops it, the test moves it from
    /// outside, as the `clone3(CLONE_INTO_CGROUP)` hole of docs/kernel.md §7 would.
    pub fn start(agent: &TestAgent, grant: &str, mark: &Marker, n: usize, escape: Option<&Path>) -> Self {
        let pidfile = agent.temp_dir().join(format!("tree-{}.pids", crate::random_hex()));
        let pidfile_s = pidfile.to_string_lossy().into_owned();
        let n_s = n.to_string();
        let bin = testbin();
        let mut argv = vec![bin.as_str(), "tree", n_s.as_str(), "--pidfile", pidfile_s.as_str(), "--lifetime", "300"];
        let escape_s = escape.map(|p| p.to_string_lossy().into_owned());
        if let Some(e) = &escape_s {
            argv.extend(["--escape-cgroup", e.as_str()]);
        }
        let session = agent.exec(grant, mark, &argv);
        let procs = poll(Duration::from_secs(15), || {
            let p = read_pidfile(&pidfile);
            (p.len() >= n).then_some(p)
        })
        .unwrap_or_else(|| {
            panic!(
                "tree {n}: only {} pids written within 15 s\nstderr:\n{}",
                read_pidfile(&pidfile).len(),
                session.stderr().text()
            )
        });
        if let Some(dir) = escape {
            for (pid, role) in &procs {
                if role.starts_with("escape") && !in_cgroup(*pid, dir) {
                    eprintln!("warrant-tests: pid {pid} could not leave its cgroup ({role}); moving it from outside");
                    cgroup::move_pid(dir, *pid)
                        .unwrap_or_else(|e| panic!("move {pid} to {}: {e}", dir.display()));
                }
            }
        }
        Self { session, procs }
    }

    /// Every pid of the tree.
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|(p, _)| *p).collect()
    }

    /// Pids of the tree that are still alive (and still the tree's: pid reuse aside).
    pub fn alive(&self, mark: &Marker) -> Vec<(u32, String)> {
        self.procs
            .iter()
            .filter(|(p, _)| mark.alive(*p))
            .cloned()
            .collect()
    }
}

/// True when `pid` is a member of the cgroup at `dir`.
pub fn in_cgroup(pid: u32, dir: &Path) -> bool {
    procfs::cgroup_of(pid).is_some_and(|c| cgroup::resolve(&c) == dir)
}

/// Accepts one connection on `listener` within `timeout`; panics otherwise.
pub fn accept_within(
    listener: &std::net::TcpListener,
    timeout: Duration,
) -> (std::net::TcpStream, std::net::SocketAddr) {
    listener.set_nonblocking(true).expect("set_nonblocking");
    let r = poll(timeout, || listener.accept().ok());
    listener.set_nonblocking(false).expect("set_nonblocking");
    let (s, a) = r.unwrap_or_else(|| panic!("no connection within {timeout:?}"));
    s.set_nonblocking(false).expect("set_nonblocking");
    (s, a)
}

/// A fresh path in `dir` (not created).
pub fn unique_path(dir: &Path, prefix: &str) -> PathBuf {
    dir.join(format!("{prefix}-{}", crate::random_hex()))
}
