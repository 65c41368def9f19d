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

/// Fields 3 and later of a stat line, by their 1-based field number.
fn stat_fields(line: &str) -> Option<Vec<u64>> {
    let after = &line[line.rfind(')')? + 1..];
    // Field 3 (state) is a letter; numbers from field 4 on, some of them signed
    // (tpgid is -1 without a terminal): those are kept as their two's complement.
    let mut out = vec![0; 4];
    for f in after.split_whitespace().skip(1) {
        out.push(f.parse::<u64>().or_else(|_| f.parse::<i64>().map(|v| v as u64)).ok()?);
    }
    Some(out)
}

/// `struct prctl_mm_map` (linux/prctl.h).
#[repr(C)]
#[derive(Debug, Default, PartialEq, Eq)]
struct MmMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: u64,
    auxv_size: u32,
    exe_fd: u32,
}

/// This process's memory map as `PR_SET_MM_MAP` takes it, from its stat line
/// (fields 26–28 and 45–51), with an empty environment range and everything else
/// unchanged (no auxv, `exe_fd` -1: keep the executable).
fn map_without_environ(line: &str, brk: u64) -> Option<MmMap> {
    let f = stat_fields(line)?;
    let at = |i: usize| f.get(i).copied();
    Some(MmMap {
        start_code: at(26)?,
        end_code: at(27)?,
        start_stack: at(28)?,
        start_data: at(45)?,
        end_data: at(46)?,
        start_brk: at(47)?,
        brk,
        arg_start: at(48)?,
        arg_end: at(49)?,
        env_start: at(50)?,
        env_end: at(50)?,
        auxv: 0,
        auxv_size: 0,
        exe_fd: u32::MAX,
    })
}

/// Makes this process's `/proc/PID/environ` empty: the environment range the
/// kernel keeps for it ends where it starts. Only what /proc shows changes; the
/// memory stays, so `getenv` still works.
///
/// Through `PR_SET_MM_MAP` (`CAP_CHECKPOINT_RESTORE` or `CAP_SYS_ADMIN`), which sets
/// the whole map: the single-field `PR_SET_MM_ENV_END` needs `CAP_SYS_RESOURCE`,
/// which hosts and containers often withhold. The map's `brk` must be the current
/// one (the C library's heap grows from it), so it is read with `brk(0)` right
/// before the call, with no allocation in between. Call it before other threads
/// exist.
pub fn blank_own_environ() -> io::Result<()> {
    let line = fs::read_to_string("/proc/self/stat")?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "cannot read the memory map from /proc/self/stat");
    // SAFETY: brk(0) only reports the current break.
    let brk = unsafe { libc::syscall(libc::SYS_brk, 0) } as u64;
    let map = map_without_environ(&line, brk).ok_or_else(bad)?;
    // SAFETY: `map` is a valid prctl_mm_map of the size passed; the kernel checks
    // every address in it.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_MAP as libc::c_ulong,
            &raw const map,
            std::mem::size_of::<MmMap>() as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
    fn the_map_comes_from_fields_26_to_28_and_45_to_50() {
        let fields: Vec<String> = (4..=52).map(|i| i.to_string()).collect();
        let mut fields = fields;
        fields[8 - 4] = "-1".to_owned();
        let line = format!("7 (x) y) S {}", fields.join(" "));
        let m = map_without_environ(&line, 99).unwrap();
        assert_eq!((m.start_code, m.end_code, m.start_stack), (26, 27, 28));
        assert_eq!((m.start_data, m.end_data, m.start_brk, m.brk), (45, 46, 47, 99));
        assert_eq!((m.arg_start, m.arg_end, m.env_start, m.env_end), (48, 49, 50, 50));
        assert_eq!((m.auxv_size, m.exe_fd), (0, u32::MAX));
        assert_eq!(std::mem::size_of::<MmMap>(), 104, "the kernel's PR_SET_MM_MAP_SIZE");
        assert!(map_without_environ("7 (x) S 1 2", 0).is_none());
        // This process's own stat line parses (negative fields included).
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(map_without_environ(&own, 0).is_some(), "{own}");
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
