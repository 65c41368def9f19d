//! Processes as `/proc` and pidfds show them.
//!
//! pidfds pin a process identity: a signal sent through one can never reach a
//! process that reused the number, and a task-storage lookup keyed by one reads the
//! tag of exactly that task.

use std::{
    fs,
    io,
    os::fd::{FromRawFd, OwnedFd},
};

/// `PIDFD_THREAD` (= `O_EXCL`): the pidfd names one thread, not the thread group.
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

/// Opens a pidfd for process `pid` (its thread-group leader).
pub fn pidfd(pid: u32) -> io::Result<OwnedFd> {
    pidfd_open(pid, 0)
}

/// Opens a pidfd for thread `tid`.
pub fn thread_pidfd(tid: u32) -> io::Result<OwnedFd> {
    pidfd_open(tid, PIDFD_THREAD)
}

fn pidfd_open(pid: u32, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative return is a new descriptor we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends SIGKILL through a pidfd.
pub fn kill(pidfd: &OwnedFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a descriptor we own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Every process id currently in `/proc`.
pub fn all_pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// Thread ids of process `pid`.
pub fn threads(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// What `/proc/PID/stat` says about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub comm: String,
    /// `R`, `S`, `D`, `Z`, ...
    pub state: char,
    pub ppid: u32,
}

impl Stat {
    /// Dead but not yet reaped.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Reads `/proc/PID/stat`, or `None` when the process is gone.
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses a stat line. `comm` may hold spaces and parentheses, so it is taken
/// between the first `(` and the last `)`.
fn parse_stat(line: &str) -> Option<Stat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line[..open].trim().parse().ok()?;
    let comm = line[open + 1..close].to_owned();
    let mut rest = line[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(Stat { pid, comm, state, ppid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let s = parse_stat("1234 (a b) c)) S 1 1234 1234 0 -1").unwrap();
        assert_eq!(s, Stat { pid: 1234, comm: "a b) c)".into(), state: 'S', ppid: 1 });
    }

    #[test]
    fn own_process_is_visible() {
        let me = std::process::id();
        let s = stat(me).expect("own stat");
        assert_eq!(s.pid, me);
        assert!(!s.is_zombie());
        assert!(all_pids().contains(&me));
        assert!(!threads(me).is_empty());
        pidfd(me).expect("pidfd of self");
    }
}
