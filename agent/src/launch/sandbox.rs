//! The kernel-side confinement the agent puts on a session's first process before
//! it becomes the command: a Landlock domain (the policy's exec and file rules, no
//! writes under `/sys/fs/cgroup` and `/sys/fs/bpf`, no signals to processes outside
//! the session) and a seccomp filter (no `bpf`, module loading, `ptrace`, kexec,
//! writing another process's memory; `clone3` answers ENOSYS so `CLONE_INTO_CGROUP`
//! cannot start a child outside the session's cgroup, and glibc falls back to
//! `clone`).
//!
//! Both are inherited by every child and cannot be lifted, so they hold with the
//! agent down. The work is cut in two: [`Sandbox::prepare`] runs in the agent,
//! untagged: it plans the policy, opens every rule's path, fills the ruleset and
//! compiles the seccomp programs (so those opens are not session activity, and
//! nothing of it allocates later); [`Sandbox::enter`] runs in the forked child
//! (see `child`), where only async-signal-safe calls are allowed: a handful of
//! raw syscalls over what `prepare` made.
//!
//! Landlock through raw syscalls rather than the `landlock` crate: the three calls are
//! small, the complement planning (see `warrant_policy::sandbox`) needs the exact
//! access bits in use, which are visible here, and the crate's `restrict_self`
//! allocates, which a forked child of a threaded daemon must not.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use warrant_common::syscalls;
use warrant_policy::protect;
use warrant_policy::sandbox::{self, FsPlan, RealFs, access};
use warrant_policy::{Action, FileRule, PathPattern, Policy};

/// Landlock ABI this needs: 6 brings `LANDLOCK_SCOPE_SIGNAL`.
const LANDLOCK_MIN_ABI: i64 = 6;
const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1 << 0;
const LANDLOCK_RULE_PATH_BENEATH: u32 = 1;
const LANDLOCK_SCOPE_SIGNAL: u64 = 1 << 1;
/// ABI 7: log refusals after an exec too (the command is exec'd after the domain is
/// made, and same-exec logging alone would cover only the agent's own child code).
const LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON: u32 = 1 << 1;
const LANDLOCK_LOGGING_ABI: i64 = 7;
/// Rights Landlock accepts on a rule for a file that is not a directory.
const FILE_RIGHTS: u64 =
    access::EXECUTE | access::WRITE_FILE | access::READ_FILE | access::TRUNCATE;

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
    /// `landlock_restrict_self` flags: asks Landlock to log refusals when the agent
    /// reads them (`landlock_audit`).
    restrict_flags: u32,
    /// Path rules added.
    pub rules: usize,
    /// Directories that could not be listed while planning (their entries are denied
    /// for the classes that needed them).
    pub unlisted: Vec<(PathBuf, String)>,
    /// The seccomp programs, compiled, in the order they are installed.
    seccomp: Vec<Vec<libc::sock_filter>>,
    /// The directories listed and the files read while planning.
    read: Vec<Stamp>,
}

/// A directory or file the plan depends on, as it was just before it was read:
/// creating, removing or renaming an entry of a directory changes its mtime and
/// ctime, replacing the path itself changes the inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub path: PathBuf,
    /// `None` when the path could not be looked at.
    pub seen: Option<Seen>,
}

/// The parts of a `stat` that change when what a plan read of a path changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub dev: u64,
    pub ino: u64,
    /// (seconds, nanoseconds) since the epoch.
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Stamp {
    /// Looks at `path` now, not following a final symbolic link.
    pub fn take(path: &Path) -> Stamp {
        use std::os::unix::fs::MetadataExt as _;
        let seen = path.symlink_metadata().ok().map(|m| Seen {
            dev: m.dev(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        });
        Stamp {
            path: path.to_path_buf(),
            seen,
        }
    }
}

/// The real filesystem, recording a [`Stamp`] of each directory and file just
/// before the planner reads it (before, so a change made during the read shows in
/// a later stamp).
#[derive(Debug, Default)]
struct StampedFs {
    read: std::cell::RefCell<Vec<Stamp>>,
}

impl sandbox::FsView for StampedFs {
    fn list(&self, dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
        self.read.borrow_mut().push(Stamp::take(dir));
        RealFs.list(dir)
    }

    fn is_real_dir(&self, path: &Path) -> bool {
        RealFs.is_real_dir(path)
    }

    fn head(&self, path: &Path, max: usize) -> io::Result<Vec<u8>> {
        self.read.borrow_mut().push(Stamp::take(path));
        RealFs.head(path, max)
    }
}

/// The step of [`Sandbox::enter`] that failed, with its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnterError {
    NoNewPrivs(i32),
    Capabilities(i32),
    Landlock(i32),
    Seccomp(i32),
}

impl std::fmt::Display for EnterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, errno) = match *self {
            Self::NoNewPrivs(e) => ("cannot set no_new_privs", e),
            Self::Capabilities(e) => ("cannot drop the session's capabilities", e),
            Self::Landlock(e) => ("cannot enter the session's Landlock domain", e),
            Self::Seccomp(e) => ("cannot install the session's seccomp filter", e),
        };
        write!(f, "{what}: {}", io::Error::from_raw_os_error(errno))
    }
}

impl Sandbox {
    /// Plans `policy`, which holds the self-protection rules already (see
    /// [`confining`]), and fills a ruleset with it. Nothing is restricted yet.
    pub fn prepare(policy: &Policy) -> Result<Sandbox> {
        let fs = StampedFs::default();
        let plan = sandbox::plan(policy, &fs);
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
        let seccomp = seccomp_programs(&policy.confinement)?;
        let restrict_flags = if abi >= LANDLOCK_LOGGING_ABI && crate::landlock_audit::logging() {
            LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON
        } else {
            0
        };
        Ok(Sandbox {
            ruleset,
            restrict_flags,
            rules,
            unlisted: plan.unlisted,
            seccomp,
            read: fs.read.into_inner(),
        })
    }

    /// What the plan read of the filesystem, each stamped before it was read: the
    /// plan still holds while every stamp does (see `plans`).
    pub fn read(&self) -> &[Stamp] {
        &self.read
    }

    /// Confines this process (and everything it will exec and fork) for good.
    ///
    /// Async-signal-safe: raw syscalls over what [`Sandbox::prepare`] built, no
    /// allocation, so it may run in a child forked from the agent's threads.
    pub fn enter(&self) -> Result<(), EnterError> {
        // Landlock and seccomp need no_new_privs unless the process has
        // CAP_SYS_ADMIN. Root keeps setuid programs working (sudo inside a root
        // session is no gain); anyone else gets no_new_privs.
        if !has_cap_sys_admin().map_err(EnterError::Capabilities)? {
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return Err(EnterError::NoNewPrivs(errno()));
            }
        }
        drop_capabilities().map_err(EnterError::Capabilities)?;
        // SAFETY: the ruleset descriptor is valid for the call; flags are logging ones.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_restrict_self,
                self.ruleset.as_raw_fd(),
                self.restrict_flags,
            )
        };
        if r != 0 {
            return Err(EnterError::Landlock(errno()));
        }
        for filter in &self.seccomp {
            let prog = libc::sock_fprog {
                len: u16::try_from(filter.len()).map_err(|_| EnterError::Seccomp(libc::E2BIG))?,
                // The kernel only reads the program (it copies it in).
                filter: filter.as_ptr().cast_mut(),
            };
            const SECCOMP_SET_MODE_FILTER: u32 = 1;
            // SAFETY: `prog` points at `filter`, which outlives the call. Not
            // seccompiler's `apply_filter`: that also sets no_new_privs, which a
            // root session does without.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    SECCOMP_SET_MODE_FILTER,
                    0u32,
                    &raw const prog,
                )
            };
            if r != 0 {
                return Err(EnterError::Seccomp(errno()));
            }
        }
        Ok(())
    }
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The policy plus the self-protection rules: every entry of
/// `warrant_policy::protect` (the host's control files, the block devices, the
/// agent's own `agent_paths`) denied, whatever the policy says, unless the entry is
/// loosenable and the policy has a rule of its own there.
pub fn confining(policy: Option<&Policy>, agent_paths: &[String]) -> Policy {
    let mut p = policy.cloned().unwrap_or_else(|| Policy {
        name: String::new(),
        max_ttl: std::time::Duration::ZERO,
        default: Action::Allow,
        exec: Vec::new(),
        files: Vec::new(),
        network: Vec::new(),
        bind: Vec::new(),
        unix: Vec::new(),
        on_expiry: warrant_policy::ExpiryAction::KillSession,
        approval: warrant_policy::Approval::default(),
        confinement: warrant_policy::Confinement::default(),
    });
    for entry in protect::protected(agent_paths) {
        if entry.loosenable && p.has_file_rule_at_or_under(&entry.path) {
            continue;
        }
        let Ok(path) = PathPattern::new(&entry.path) else {
            continue;
        };
        // Most specific wins in the matcher; drop any rule of the policy's own for the
        // same path so this one decides.
        p.files.retain(|r| r.path.base() != path.base());
        p.files.push(FileRule {
            path,
            access: entry.access,
            action: Action::Deny,
        });
    }
    p
}

fn landlock_abi() -> Result<i64> {
    // SAFETY: a NULL attribute with size 0 and the VERSION flag only queries.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        let e = io::Error::last_os_error();
        bail!("Landlock is not available ({e}); warrant cannot confine a session on this kernel");
    }
    Ok(v)
}

fn create_ruleset(plan: &FsPlan) -> Result<OwnedFd> {
    let attr = RulesetAttr {
        handled_access_fs: plan.handled,
        handled_access_net: 0,
        scoped: LANDLOCK_SCOPE_SIGNAL,
    };
    // SAFETY: `attr` is a valid landlock_ruleset_attr of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &raw const attr,
            size_of::<RulesetAttr>(),
            0u32,
        )
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
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
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
    let allowed = if kind == libc::S_IFDIR {
        rights
    } else {
        rights & FILE_RIGHTS
    };
    if allowed == 0 {
        return Ok(false);
    }
    let attr = PathBeneathAttr {
        allowed_access: allowed,
        parent_fd: fd.as_raw_fd(),
    };
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

/// Capabilities a session never keeps, even as root: raw memory and I/O ports
/// (`/dev/mem`, `/dev/port`, `iopl`), tracing and reading other processes' memory
/// (which also keeps the agent's `/proc/PID/environ` and `mem` out of reach, since the
/// agent is not dumpable), modules, reboot, BPF and perf, the MAC policy, and audit
/// control and reading.
const DROPPED_CAPS: [u32; 10] = [
    16, // CAP_SYS_MODULE
    17, // CAP_SYS_RAWIO
    19, // CAP_SYS_PTRACE
    22, // CAP_SYS_BOOT
    30, // CAP_AUDIT_CONTROL: turning audit off would silence Landlock's refusals (see landlock_audit)
    32, // CAP_MAC_OVERRIDE
    33, // CAP_MAC_ADMIN
    37, // CAP_AUDIT_READ: the audit stream names other sessions' refusals
    38, // CAP_PERFMON
    39, // CAP_BPF
];

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Takes [`DROPPED_CAPS`] out of the bounding set (so no setuid program or file
/// capability brings them back) and out of this process's sets.
fn drop_capabilities() -> Result<(), i32> {
    for cap in DROPPED_CAPS {
        // SAFETY: prctl with integer arguments. Without CAP_SETPCAP (a non-root
        // caller) this fails, and such a caller has none of these capabilities and
        // runs with no_new_privs, so nothing can give them back.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
    }
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as version 3 wants.
    if unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) } != 0 {
        return Err(errno());
    }
    for cap in DROPPED_CAPS {
        let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        data[word].effective &= !bit;
        data[word].permitted &= !bit;
        data[word].inheritable &= !bit;
    }
    // SAFETY: as above; dropping capabilities needs no privilege.
    if unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) } != 0 {
        return Err(errno());
    }
    Ok(())
}

/// Whether this process has CAP_SYS_ADMIN in its effective set (capget: no
/// allocation, unlike reading /proc/self/status).
fn has_cap_sys_admin() -> Result<bool, i32> {
    const CAP_SYS_ADMIN: u32 = 21;
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as version 3 wants.
    if unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) } != 0 {
        return Err(errno());
    }
    Ok(data[0].effective & (1 << CAP_SYS_ADMIN) != 0)
}

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// x32 syscall numbers carry this bit; the guard refuses them outright (the
/// compiled filters compare plain numbers, which an x32 call would slip past).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;

/// The first filter: native x86_64 calls only.
fn abi_guard() -> Vec<libc::sock_filter> {
    let stmt = |code, k| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code, k, jt, jf| libc::sock_filter { code, jt, jf, k };
    vec![
        stmt(BPF_LD_W_ABS, 4), // seccomp_data.arch
        jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(BPF_LD_W_ABS, 0), // seccomp_data.nr
        jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
    ]
}

/// The seccomp rules of one table row: when its call is refused.
fn rules_of(row: &syscalls::Row) -> Result<Vec<SeccompRule>> {
    use syscalls::{WHEN_ALWAYS, WHEN_ARG_EQ, WHEN_ARG_HAS, WHEN_ARG_NONZERO};
    let r = &row.refusal;
    let arg = |i: u32| u8::try_from(i).context("syscall argument index");
    // Every argument the table looks at is an int, a pid or a flag word: compare the
    // 32 bits the kernel reads, so high garbage cannot slip a call past.
    let cond = |i: u32, op: SeccompCmpOp, v: u64| -> Result<SeccompCondition> {
        SeccompCondition::new(arg(i)?, SeccompCmpArgLen::Dword, op, v)
            .with_context(|| format!("seccomp condition for {}", row.name))
    };
    let rule = |conds: Vec<SeccompCondition>| {
        SeccompRule::new(conds).with_context(|| format!("seccomp rule for {}", row.name))
    };
    Ok(match r.when {
        WHEN_ALWAYS => Vec::new(),
        WHEN_ARG_NONZERO => {
            let mut rules = vec![rule(vec![cond(r.arg, SeccompCmpOp::Ne, 0)?])?];
            if r.values[0] != 0 {
                rules.push(rule(vec![cond(
                    u32::try_from(r.values[0] - 1)?,
                    SeccompCmpOp::Ne,
                    0,
                )?])?);
            }
            rules
        }
        WHEN_ARG_EQ => {
            let mut rules = vec![rule(vec![cond(r.arg, SeccompCmpOp::Eq, r.values[0])?])?];
            if r.values[1] != 0 {
                rules.push(rule(vec![cond(r.arg, SeccompCmpOp::Eq, r.values[1])?])?);
            }
            rules
        }
        WHEN_ARG_HAS => vec![rule(vec![cond(
            r.arg,
            SeccompCmpOp::MaskedEq(r.values[0]),
            r.values[0],
        )?])?],
        other => bail!(
            "syscall table row {} has unknown condition {other}",
            row.name
        ),
    })
}

/// The session's seccomp programs, in the order they are installed: the ABI guard,
/// then one compiled filter per errno of `warrant_common::syscalls::TABLE` (a filter
/// has one answer). io_uring's and packet sockets' rows are left out when the policy
/// allows them.
fn seccomp_programs(allowed: &warrant_policy::Confinement) -> Result<Vec<Vec<libc::sock_filter>>> {
    let mut by_errno: BTreeMap<u32, BTreeMap<i64, Vec<SeccompRule>>> = BTreeMap::new();
    let refused = |r: &&syscalls::Row| match r.reason {
        syscalls::Reason::IoUring => !allowed.io_uring,
        syscalls::Reason::PacketSocket => !allowed.raw_sockets,
        _ => true,
    };
    for row in syscalls::TABLE.iter().filter(refused) {
        by_errno
            .entry(row.refusal.errno)
            .or_default()
            .insert(i64::from(row.nr), rules_of(row)?);
    }
    let mut programs = vec![abi_guard()];
    for (errno, rules) in by_errno {
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno),
            TargetArch::x86_64,
        )
        .context("cannot compile the session's seccomp filter")?;
        let program: BpfProgram = filter
            .try_into()
            .context("cannot compile the session's seccomp filter")?;
        programs.push(
            program
                .iter()
                .map(|i| libc::sock_filter {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k: i.k,
                })
                .collect(),
        );
    }
    Ok(programs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warrant_policy::Access;

    #[test]
    fn self_protection_overrides_the_policy_for_kernel_dirs() {
        let p = Policy::from_yaml(
            "name: p\nmax_ttl: 1h\ndefault: allow\nfiles: [{path: /sys/fs/cgroup/, access: write, action: allow}]\n",
            "p.yaml",
        )
        .unwrap();
        let p = confining(Some(&p), &["/run/agent-state".to_owned()]);
        for dir in ["/sys/fs/cgroup/unified/cgroup.procs", "/sys/fs/bpf/x"] {
            assert_eq!(
                p.decide_file(dir, Access::Write).action,
                Action::Deny,
                "{dir}"
            );
            assert_eq!(
                p.decide_file(dir, Access::Read).action,
                Action::Allow,
                "{dir}"
            );
        }
        assert_eq!(p.decide_file("/tmp/x", Access::Write).action, Action::Allow);
        assert_eq!(
            p.decide_file("/proc/sys/kernel/core_pattern", Access::Write)
                .action,
            Action::Deny
        );
        assert_eq!(
            p.decide_file("/run/agent-state/state.json", Access::Read)
                .action,
            Action::Deny
        );
        // A policy may take over a loosenable entry, never an escape.
        let dba = Policy::from_yaml(
            "name: p\nmax_ttl: 1h\ndefault: allow\nfiles: [{path: /etc/cron.d/, access: write, action: allow}, {path: /proc/sys/, access: write, action: allow}]\n",
            "p.yaml",
        )
        .unwrap();
        let dba = confining(Some(&dba), &[]);
        assert_eq!(
            dba.decide_file("/etc/cron.d/backup", Access::Write).action,
            Action::Allow
        );
        assert_eq!(
            dba.decide_file("/proc/sys/kernel/core_pattern", Access::Write)
                .action,
            Action::Deny
        );
    }

    /// What a session without a policy handles, which `warrant-bench` phase (k)
    /// copies (`SESSION_RIGHTS` there) to measure a domain's cost alone.
    #[test]
    fn a_session_without_a_policy_handles_reads_and_writes() {
        let plan = sandbox::plan(&confining(None, &["/run/agent-state".to_owned()]), &RealFs);
        assert_eq!(plan.handled, access::READ | access::WRITE);
    }

    #[test]
    fn seccomp_programs_cover_the_table() {
        let deny = seccomp_programs(&warrant_policy::Confinement::default()).unwrap();
        assert_eq!(deny.len(), 3, "guard, EPERM, ENOSYS");
        let allow = warrant_policy::Confinement {
            io_uring: true,
            ..Default::default()
        };
        let with_uring = seccomp_programs(&allow).unwrap();
        let count = |ps: &[Vec<libc::sock_filter>], nr: u32| {
            ps.iter()
                .flatten()
                .filter(|i| i.code == BPF_JEQ_K && i.k == nr)
                .count()
        };
        for row in syscalls::TABLE {
            assert!(count(&deny, row.nr) >= 1, "{}", row.name);
        }
        assert_eq!(count(&deny, 425), 1);
        assert_eq!(count(&with_uring, 425), 0, "io_uring allowed by the policy");
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
        let sandbox = Sandbox::prepare(&confining(Some(&policy), &[])).unwrap();
        assert!(sandbox.rules > 0);
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = (|| -> i32 {
                if sandbox.enter().is_err() {
                    return 10;
                }
                if std::fs::read("/etc/shadow").map_err(|e| e.raw_os_error())
                    != Err(Some(libc::EACCES))
                {
                    return 11;
                }
                if std::fs::read("/etc/hostname").is_err() {
                    return 12;
                }
                if std::fs::OpenOptions::new()
                    .write(true)
                    .open("/sys/fs/cgroup/unified/cgroup.procs")
                    .is_ok()
                {
                    return 13;
                }
                // SAFETY: io_uring_setup with a null params pointer: refused first.
                let r = unsafe { libc::syscall(425, 1, 0, 0) };
                if r != -1 || io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
                    return 16;
                }
                // SAFETY: TIOCSTI on stdin with a valid byte: refused before the tty sees it.
                let byte = b'x';
                let r = unsafe { libc::ioctl(0, libc::TIOCSTI, &raw const byte) };
                if r != -1 || io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
                    return 17;
                }
                // SAFETY: prlimit64 on pid 1 with no new limit only reads; refused anyway.
                let r = unsafe { libc::syscall(libc::SYS_prlimit64, 1, 0, 0, 0) };
                if r != -1 || io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
                    return 18;
                }
                // SAFETY: reading this process's own limit is still allowed.
                let mut lim: libc::rlimit64 = unsafe { std::mem::zeroed() };
                if unsafe {
                    libc::syscall(libc::SYS_prlimit64, 0, libc::RLIMIT_NOFILE, 0, &raw mut lim)
                } != 0
                {
                    return 19;
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
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "child failed check {}",
            libc::WEXITSTATUS(status)
        );
    }
}
