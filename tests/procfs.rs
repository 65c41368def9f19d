//! What `/proc` says about processes: whether a pid is alive (a zombie is dead: it
//! runs nothing and holds nothing but its exit status), its parent, its cgroup, and
//! which processes carry a test's [`Marker`] in their environment.
//!
//! The marker is how a test finds every process it started, including ones that
//! double-forked, changed session, moved cgroup or exec'd something else: the
//! environment is inherited through fork and exec, and no workload clears it.

use std::time::Duration;

/// The environment variable carrying a test's marker.
pub const MARK_VAR: &str = "WARRANT_TEST_MARK";

/// Fields of `/proc/PID/stat` that tests use.
#[derive(Clone, Debug)]
pub struct Stat {
    /// One-letter state: R, S, D, Z, T, X, …
    pub state: char,
    /// Parent pid.
    pub ppid: u32,
    /// Session id (changes after `setsid`).
    pub sid: u32,
}

/// Parses `/proc/PID/stat`; `None` when the process is gone.
pub fn stat(pid: u32) -> Option<Stat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm is in parentheses and may contain anything, including ") ".
    let rest = &s[s.rfind(')')? + 2..];
    let mut f = rest.split_ascii_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let _pgrp = f.next()?;
    let sid = f.next()?.parse().ok()?;
    Some(Stat { state, ppid, sid })
}

/// True while `pid` exists and is not a zombie (or dead, `X`).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X'))
}

/// Every pid in `/proc` right now.
pub fn all_pids() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// True when `/proc/PID/environ` contains the entry `needle` (`NAME=value`).
pub fn environ_has(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == needle.as_bytes()))
}

/// The process's cgroup v2 path (the `0::` line of `/proc/PID/cgroup`), relative to
/// the cgroup2 mount, e.g. `/warrant-test-1/s-3`.
pub fn cgroup_of(pid: u32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Sends `sig` to `pid`; errors (the process is gone) are ignored.
pub fn signal(pid: u32, sig: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// A unique value of [`MARK_VAR`] for one test's processes. Dropping it SIGKILLs every
/// live process that still carries it, so a failed test leaves nothing running.
pub struct Marker {
    /// `WARRANT_TEST_MARK=<value>`, as it appears in `/proc/PID/environ`.
    entry: String,
    /// The value alone, for `Command::env`.
    value: String,
}

impl Default for Marker {
    fn default() -> Self {
        Self::new()
    }
}

impl Marker {
    /// A fresh random marker.
    pub fn new() -> Self {
        let value = crate::random_hex();
        Self {
            entry: format!("{MARK_VAR}={value}"),
            value,
        }
    }

    /// The value to set as [`MARK_VAR`].
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Adds the marker to `cmd`'s environment.
    pub fn apply<'c>(&self, cmd: &'c mut std::process::Command) -> &'c mut std::process::Command {
        cmd.env(MARK_VAR, &self.value)
    }

    /// Live (non-zombie) processes carrying the marker.
    pub fn pids(&self) -> Vec<u32> {
        all_pids()
            .into_iter()
            .filter(|&p| environ_has(p, &self.entry) && alive(p))
            .collect()
    }

    /// True when `pid` is alive and carries the marker: a pid that died and was reused
    /// by an unrelated process does not count.
    pub fn alive(&self, pid: u32) -> bool {
        alive(pid) && environ_has(pid, &self.entry)
    }

    /// SIGKILLs every marked process until none is left (at most 5 s); returns how many
    /// were found on the first pass.
    pub fn kill_all(&self) -> usize {
        let first = self.pids();
        let mut pids = first.clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !pids.is_empty() && std::time::Instant::now() < deadline {
            for &p in &pids {
                signal(p, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
            pids = self.pids();
        }
        first.len()
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        let n = self.kill_all();
        if n > 0 && !std::thread::panicking() {
            eprintln!("warrant-tests: killed {n} leftover marked processes");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `stat` parses this process's own entry: alive, with the right parent.
    #[test]
    fn stat_of_self_is_alive_with_the_right_parent() {
        let s = stat(std::process::id()).expect("own stat");
        assert!(matches!(s.state, 'R' | 'S'), "state {}", s.state);
        // SAFETY: getppid has no preconditions.
        assert_eq!(i64::from(s.ppid), i64::from(unsafe { libc::getppid() }));
        assert!(alive(std::process::id()));
    }

    /// A marked child is found by a /proc scan and killed by `kill_all`.
    #[test]
    fn marker_finds_and_kills_a_marked_child() {
        let m = Marker::new();
        let mut c = m
            .apply(&mut std::process::Command::new("sleep"))
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = c.id();
        assert!(crate::poll(Duration::from_secs(5), || m.pids().contains(&pid).then_some(())).is_some());
        assert!(m.alive(pid));
        assert_eq!(m.kill_all(), 1);
        let st = c.wait().expect("wait");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
        assert!(m.pids().is_empty());
    }
}
