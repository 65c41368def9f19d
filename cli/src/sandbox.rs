//! The kernel-side confinement `warrant exec` puts on itself before it becomes the
//! session's command: a Landlock domain (the policy's exec and file rules, no writes
//! under `/sys/fs/cgroup` and `/sys/fs/bpf`, no signals to processes outside the
//! session) and a seccomp filter (no `bpf`, module loading, `ptrace`, kexec, writing
//! another process's memory; `clone3` answers ENOSYS so `CLONE_INTO_CGROUP` cannot
//! start a child outside the session's cgroup, and glibc falls back to `clone`).
//!
//! Both are inherited by every child and cannot be lifted, so they hold with the agent
//! down. The ruleset is built in two steps: [`Sandbox::prepare`] opens every rule's
//! path and fills the ruleset *before* the process is tagged (so those opens are not
//! session activity), and [`Sandbox::enter`] restricts the process just before exec.
//!
//! Raw syscalls rather than a wrapper crate: the three Landlock calls and one seccomp
//! program are small, and this way the exact ABI in use is visible here.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use warrant_policy::sandbox::{self, FsPlan, RealFs, access};
use warrant_policy::{Access, Action, FileRule, PathPattern, Policy};

/// Landlock ABI this needs: 6 brings `LANDLOCK_SCOPE_SIGNAL`.
const LANDLOCK_MIN_ABI: i64 = 6;
const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1 << 0;
const LANDLOCK_RULE_PATH_BENEATH: u32 = 1;
const LANDLOCK_SCOPE_SIGNAL: u64 = 1 << 1;
/// Rights Landlock accepts on a rule for a file that is not a directory.
const FILE_RIGHTS: u64 = access::EXECUTE | access::WRITE_FILE | access::READ_FILE | access::TRUNCATE;

/// Where the kernel's control files live: a session may not write under them.
pub const PROTECTED_DIRS: [&str; 2] = ["/sys/fs/cgroup/", "/sys/fs/bpf/"];

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// A Landlock ruleset ready to be applied, and what it holds.
#[derive(Debug)]
pub struct Sandbox {
    ruleset: OwnedFd,
    /// Path rules added.
    pub rules: usize,
    /// Directories that could not be listed while planning (their entries are denied
    /// for the classes that needed them).
    pub unlisted: Vec<(PathBuf, String)>,
}

impl Sandbox {
    /// Plans `policy` (or nothing but self-protection when `None`) and fills a ruleset
    /// with it. Nothing is restricted yet.
    pub fn prepare(policy: Option<&Policy>) -> Result<Sandbox> {
        let policy = with_self_protection(policy);
        let plan = sandbox::plan(&policy, &RealFs);
        let abi = landlock_abi()?;
        if abi < LANDLOCK_MIN_ABI {
            bail!(
                "this kernel's Landlock is ABI {abi}; warrant needs ABI {LANDLOCK_MIN_ABI} (Linux 6.12) to confine a session"
            );
        }
        let ruleset = create_ruleset(&plan)?;
        let mut rules = 0;
        for (path, rights) in &plan.grants {
            if add_rule(&ruleset, path, *rights)? {
                rules += 1;
            }
        }
        Ok(Sandbox { ruleset, rules, unlisted: plan.unlisted })
    }

    /// Confines this process (and everything it will exec and fork) for good.
    pub fn enter(self) -> Result<()> {
        // Landlock and seccomp need no_new_privs unless the caller has CAP_SYS_ADMIN.
        // Root keeps setuid programs working (sudo inside a root session is no gain);
        // anyone else gets no_new_privs.
        if !has_cap_sys_admin() {
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return Err(io::Error::last_os_error()).context("cannot set no_new_privs");
            }
        }
        // SAFETY: the ruleset descriptor is valid for the call; flags 0.
        let r = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, self.ruleset.as_raw_fd(), 0u32) };
        if r != 0 {
            return Err(io::Error::last_os_error()).context("cannot enter the session's Landlock domain");
        }
        install_seccomp()
    }
}

/// The policy plus the self-protection rules: no writes under the kernel's control
/// directories, whatever the policy says.
fn with_self_protection(policy: Option<&Policy>) -> Policy {
    let mut p = policy.cloned().unwrap_or_else(|| Policy {
        name: String::new(),
        max_ttl: std::time::Duration::ZERO,
        default: Action::Allow,
        exec: Vec::new(),
        files: Vec::new(),
        network: Vec::new(),
        on_expiry: warrant_policy::ExpiryAction::KillSession,
        approval: warrant_policy::Approval::default(),
    });
    for dir in PROTECTED_DIRS {
        let Ok(path) = PathPattern::new(dir) else { continue };
        // Most specific wins in the matcher; drop any rule of the policy's own for the
        // same directory so this one decides.
        p.files.retain(|r| r.path.base() != path.base());
        p.files.push(FileRule { path, access: Access::Write, action: Action::Deny });
    }
    p
}

fn landlock_abi() -> Result<i64> {
    // SAFETY: a NULL attribute with size 0 and the VERSION flag only queries.
    let v = unsafe {
        libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<RulesetAttr>(), 0usize, LANDLOCK_CREATE_RULESET_VERSION)
    };
    if v < 0 {
        let e = io::Error::last_os_error();
        bail!("Landlock is not available ({e}); warrant cannot confine a session on this kernel");
    }
    Ok(v)
}

fn create_ruleset(plan: &FsPlan) -> Result<OwnedFd> {
    let attr = RulesetAttr { handled_access_fs: plan.handled, handled_access_net: 0, scoped: LANDLOCK_SCOPE_SIGNAL };
    // SAFETY: `attr` is a valid landlock_ruleset_attr of the size passed.
    let fd = unsafe {
        libc::syscall(libc::SYS_landlock_create_ruleset, &raw const attr, size_of::<RulesetAttr>(), 0u32)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("cannot create a Landlock ruleset");
    }
    let fd = i32::try_from(fd).context("Landlock returned an invalid descriptor")?;
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds a path-beneath rule; false when the path is skipped (gone since planning, or
/// a symbolic link, which Landlock never consults: it checks the resolved file).
fn add_rule(ruleset: &OwnedFd, path: &Path, rights: u64) -> Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes()).context("path with a NUL byte")?;
    // SAFETY: `c` is NUL-terminated; O_PATH opens nothing for I/O.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW) };
    if fd < 0 {
        return Ok(false);
    }
    // SAFETY: just opened, owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid stat buffer; the descriptor is open.
    if unsafe { libc::fstat(fd.as_raw_fd(), &raw mut st) } != 0 {
        return Ok(false);
    }
    let kind = st.st_mode & libc::S_IFMT;
    if kind == libc::S_IFLNK {
        return Ok(false);
    }
    let allowed = if kind == libc::S_IFDIR { rights } else { rights & FILE_RIGHTS };
    if allowed == 0 {
        return Ok(false);
    }
    let attr = PathBeneathAttr { allowed_access: allowed, parent_fd: fd.as_raw_fd() };
    // SAFETY: `attr` is a valid landlock_path_beneath_attr for the rule type passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            LANDLOCK_RULE_PATH_BENEATH,
            &raw const attr,
            0u32,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        bail!("cannot add the Landlock rule for {}: {e}", path.display());
    }
    Ok(true)
}

fn has_cap_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Syscalls a session never makes (x86_64 numbers) and the errno it gets instead.
const DENIED_SYSCALLS: [(u32, u32); 11] = [
    (321, libc::EPERM as u32),  // bpf
    (101, libc::EPERM as u32),  // ptrace
    (175, libc::EPERM as u32),  // init_module
    (313, libc::EPERM as u32),  // finit_module
    (176, libc::EPERM as u32),  // delete_module
    (246, libc::EPERM as u32),  // kexec_load
    (320, libc::EPERM as u32),  // kexec_file_load
    (311, libc::EPERM as u32),  // process_vm_writev
    (310, libc::EPERM as u32),  // process_vm_readv
    (438, libc::EPERM as u32),  // pidfd_getfd
    (435, libc::ENOSYS as u32), // clone3: CLONE_INTO_CGROUP; glibc falls back to clone
];

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// x32 syscall numbers carry this bit; the filter refuses them outright.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;

/// The classic-BPF seccomp program: native x86_64 calls only, the denied ones refused.
fn seccomp_program() -> Vec<libc::sock_filter> {
    let stmt = |code, k| libc::sock_filter { code, jt: 0, jf: 0, k };
    let jump = |code, k, jt, jf| libc::sock_filter { code, jt, jf, k };
    let mut p = vec![
        stmt(BPF_LD_W_ABS, 4), // seccomp_data.arch
        jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(BPF_LD_W_ABS, 0), // seccomp_data.nr
        jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
    ];
    for (nr, errno) in DENIED_SYSCALLS {
        p.push(jump(BPF_JEQ_K, nr, 0, 1));
        p.push(stmt(BPF_RET_K, SECCOMP_RET_ERRNO | errno));
    }
    p.push(stmt(BPF_RET_K, SECCOMP_RET_ALLOW));
    p
}

fn install_seccomp() -> Result<()> {
    let mut filter = seccomp_program();
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).context("seccomp program too long")?,
        filter: filter.as_mut_ptr(),
    };
    const SECCOMP_SET_MODE_FILTER: u32 = 1;
    // SAFETY: `prog` points at `filter`, which outlives the call; the kernel copies it.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0u32, &raw const prog) };
    if r != 0 {
        return Err(io::Error::last_os_error()).context("cannot install the session's seccomp filter");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_protection_overrides_the_policy_for_kernel_dirs() {
        let p = Policy::from_yaml(
            "name: p\nmax_ttl: 1h\ndefault: allow\nfiles: [{path: /sys/fs/cgroup/, access: write, action: allow}]\n",
            "p.yaml",
        )
        .unwrap();
        let p = with_self_protection(Some(&p));
        for dir in ["/sys/fs/cgroup/unified/cgroup.procs", "/sys/fs/bpf/x"] {
            assert_eq!(p.decide_file(dir, Access::Write).action, Action::Deny, "{dir}");
            assert_eq!(p.decide_file(dir, Access::Read).action, Action::Allow, "{dir}");
        }
        assert_eq!(p.decide_file("/tmp/x", Access::Write).action, Action::Allow);
    }

    #[test]
    fn seccomp_program_refuses_each_denied_call_once() {
        let p = seccomp_program();
        for (nr, _) in DENIED_SYSCALLS {
            assert_eq!(p.iter().filter(|i| i.code == BPF_JEQ_K && i.k == nr).count(), 1, "{nr}");
        }
        assert_eq!(p.last().map(|i| i.k), Some(SECCOMP_RET_ALLOW));
    }

    /// Runs the real thing in a child process: Landlock and seccomp in force, denied
    /// calls refused, everything else working.
    #[test]
    fn confinement_holds_in_a_child() {
        // SAFETY: the child only makes syscalls and exits (no allocation after fork
        // beyond what the tests below need; the test binary is single-purpose here).
        let policy = Policy::from_yaml(
            "name: p\nmax_ttl: 1h\ndefault: allow\nfiles: [{path: /etc/shadow, access: read, action: deny}]\n",
            "p.yaml",
        )
        .unwrap();
        let sandbox = Sandbox::prepare(Some(&policy)).unwrap();
        assert!(sandbox.rules > 0);
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = (|| -> i32 {
                if sandbox.enter().is_err() {
                    return 10;
                }
                if std::fs::read("/etc/shadow").map_err(|e| e.raw_os_error()) != Err(Some(libc::EACCES)) {
                    return 11;
                }
                if std::fs::read("/etc/hostname").is_err() {
                    return 12;
                }
                if std::fs::OpenOptions::new().write(true).open("/sys/fs/cgroup/unified/cgroup.procs").is_ok() {
                    return 13;
                }
                // SAFETY: bpf(0, NULL, 0): refused before it looks at its arguments.
                let r = unsafe { libc::syscall(libc::SYS_bpf, 0, 0, 0) };
                if r != -1 || io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
                    return 14;
                }
                // SAFETY: signal 0 to init only checks permission.
                if unsafe { libc::kill(1, 0) } != -1 {
                    return 15;
                }
                0
            })();
            // SAFETY: leave the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &raw mut status, 0) };
        assert!(libc::WIFEXITED(status), "child status {status}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "child failed check {}", libc::WEXITSTATUS(status));
    }
}
