//! The syscalls a session may not make: one table that feeds the session's seccomp
//! filter (built in user space), the kernel's `REFUSED_SYSCALLS` map (so `sys_exit`
//! reports each refusal as a `violation` with one array lookup), and the names the
//! agent gives those violations.
//!
//! ```text
//! REFUSED_SYSCALLS  array  syscall number (x86_64) -> Refusal   written by the agent at load
//! ```
//!
//! A row refuses the call outright or only when an argument says so (a signal or a
//! scheduling change aimed at another process, `TIOCSTI` on a terminal, an exec of a
//! file descriptor). Numbers are x86_64's; the filter refuses every other ABI.

/// Array of [`Refusal`], indexed by syscall number.
pub const REFUSED_SYSCALLS: &str = "REFUSED_SYSCALLS";
/// Entries of [`REFUSED_SYSCALLS`]: every x86_64 syscall number is below this.
pub const SYSCALL_SLOTS: u32 = 512;

/// `Refusal::when`: the slot is empty (the call is allowed).
pub const WHEN_NEVER: u32 = 0;
/// Refused whatever its arguments.
pub const WHEN_ALWAYS: u32 = 1;
/// Refused when argument `arg` is not 0 (0 means "this process" for the pid-taking
/// scheduling and limit calls, so a session may still change its own), or when
/// `values[0]` is nonzero and argument `values[0] - 1` is not 0 either (setpriority's
/// `which`: only `PRIO_PROCESS`, 0, names a process rather than a user or group).
pub const WHEN_ARG_NONZERO: u32 = 2;
/// Refused when argument `arg` equals one of `values` (an ioctl request).
pub const WHEN_ARG_EQ: u32 = 3;
/// Refused when argument `arg` has any bit of `values[0]` set (a flag).
pub const WHEN_ARG_HAS: u32 = 4;

/// One refused syscall as the kernel map holds it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusal {
    /// `WHEN_*`.
    pub when: u32,
    /// The errno the session gets (EPERM, or ENOSYS where programs fall back).
    pub errno: u32,
    /// Which argument `when` looks at (0-based).
    pub arg: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// The values (`WHEN_ARG_EQ`: either one; 0 in the second means only the first)
    /// or the mask (`WHEN_ARG_HAS`: the first) `when` compares with.
    pub values: [u64; 2],
}

/// Why a row is in the table: what a refusal protects, for the violation's detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Loading code into or tampering with the kernel (bpf, modules, kexec).
    Kernel,
    /// Reaching into another process (ptrace, process_vm_*, pidfd_getfd).
    OtherProcess,
    /// Leaving the session's cgroup (clone3 with `CLONE_INTO_CGROUP`).
    Cgroup,
    /// io_uring, whose workers and submissions bypass the syscall hooks.
    IoUring,
    /// Starving or renicing a process outside the session (the agent).
    Scheduling,
    /// Typing into a terminal's input queue (`TIOCSTI`, `TIOCLINUX`).
    Terminal,
    /// Executing a file descriptor (a memfd or a deleted copy) rather than a path.
    FdExec,
    /// Rebooting or halting the host, or swapping its root.
    Host,
    /// A packet socket (`AF_PACKET`), which reaches any peer around the network rules;
    /// `socket(2)` of this family passes no cgroup hook. The policy may allow it.
    PacketSocket,
    /// A Landlock domain of the session's own: Landlock reports a refusal for the
    /// youngest domain that refused it, and a domain made with its logging off (or
    /// refusing after an exec, which is not logged by default) would keep out of the
    /// audit records the refusals that `kill` and `kill-session` file rules are
    /// decided on, on the path the kernel resolved. ENOSYS: programs see a kernel
    /// without Landlock and go on without their own sandbox (the session's holds).
    NestedLandlock,
}

/// A row of [`TABLE`].
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// x86_64 syscall number.
    pub nr: u32,
    /// Its name.
    pub name: &'static str,
    /// The kernel map's value.
    pub refusal: Refusal,
    /// What it protects.
    pub reason: Reason,
}

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
/// `ioctl` requests that push bytes into a terminal's input.
pub const TIOCSTI: u64 = 0x5412;
/// `TIOCLINUX` (its subcodes include pasting the console selection as input).
pub const TIOCLINUX: u64 = 0x541c;
/// The packet socket family.
pub const AF_PACKET: u64 = 17;
/// `execveat` flag: execute the file descriptor itself.
pub const AT_EMPTY_PATH: u64 = 0x1000;

const fn row(nr: u32, name: &'static str, when: u32, errno: u32, arg: u32, values: [u64; 2], reason: Reason) -> Row {
    Row { nr, name, refusal: Refusal { when, errno, arg, _pad: 0, values }, reason }
}

const fn always(nr: u32, name: &'static str, errno: u32, reason: Reason) -> Row {
    row(nr, name, WHEN_ALWAYS, errno, 0, [0, 0], reason)
}

const fn other_pid(nr: u32, name: &'static str, arg: u32) -> Row {
    row(nr, name, WHEN_ARG_NONZERO, EPERM, arg, [0, 0], Reason::Scheduling)
}

/// Every refused syscall. `clone3` answers ENOSYS, so glibc falls back to `clone`
/// (which has no `CLONE_INTO_CGROUP`); io_uring answers ENOSYS, so programs fall
/// back to plain syscalls, which the hooks see.
pub const TABLE: [Row; 33] = [
    always(321, "bpf", EPERM, Reason::Kernel),
    always(175, "init_module", EPERM, Reason::Kernel),
    always(313, "finit_module", EPERM, Reason::Kernel),
    always(176, "delete_module", EPERM, Reason::Kernel),
    always(246, "kexec_load", EPERM, Reason::Kernel),
    always(320, "kexec_file_load", EPERM, Reason::Kernel),
    always(167, "swapon", EPERM, Reason::Host),
    always(168, "swapoff", EPERM, Reason::Host),
    always(169, "reboot", EPERM, Reason::Host),
    always(155, "pivot_root", EPERM, Reason::Host),
    always(101, "ptrace", EPERM, Reason::OtherProcess),
    always(311, "process_vm_writev", EPERM, Reason::OtherProcess),
    always(310, "process_vm_readv", EPERM, Reason::OtherProcess),
    always(438, "pidfd_getfd", EPERM, Reason::OtherProcess),
    always(304, "open_by_handle_at", EPERM, Reason::OtherProcess),
    always(435, "clone3", ENOSYS, Reason::Cgroup),
    always(425, "io_uring_setup", ENOSYS, Reason::IoUring),
    always(426, "io_uring_enter", ENOSYS, Reason::IoUring),
    always(427, "io_uring_register", ENOSYS, Reason::IoUring),
    other_pid(302, "prlimit64", 0),
    row(141, "setpriority", WHEN_ARG_NONZERO, EPERM, 1, [1, 0], Reason::Scheduling),
    other_pid(203, "sched_setaffinity", 0),
    other_pid(142, "sched_setparam", 0),
    other_pid(144, "sched_setscheduler", 0),
    other_pid(314, "sched_setattr", 0),
    other_pid(251, "ioprio_set", 1),
    other_pid(256, "migrate_pages", 0),
    other_pid(279, "move_pages", 0),
    row(16, "ioctl", WHEN_ARG_EQ, EPERM, 1, [TIOCSTI, TIOCLINUX], Reason::Terminal),
    row(322, "execveat", WHEN_ARG_HAS, EPERM, 4, [AT_EMPTY_PATH, 0], Reason::FdExec),
    row(41, "socket", WHEN_ARG_EQ, EPERM, 0, [AF_PACKET, 0], Reason::PacketSocket),
    always(444, "landlock_create_ruleset", ENOSYS, Reason::NestedLandlock),
    always(446, "landlock_restrict_self", ENOSYS, Reason::NestedLandlock),
];

/// The row for syscall `nr`, if it is refused.
pub fn row_of(nr: u64) -> Option<&'static Row> {
    TABLE.iter().find(|r| u64::from(r.nr) == nr)
}

impl Reason {
    /// What the refusal protects, for people reading the violation.
    pub const fn describe(self) -> &'static str {
        match self {
            Reason::Kernel => "loading code into the kernel",
            Reason::OtherProcess => "reaching into another process",
            Reason::Cgroup => "leaving the session's cgroup",
            Reason::IoUring => "io_uring (its workers bypass the syscall hooks; the policy may allow it)",
            Reason::Scheduling => "changing the limits or scheduling of another process",
            Reason::Terminal => "typing into a terminal's input",
            Reason::FdExec => "executing a file descriptor instead of a path",
            Reason::Host => "rebooting or re-rooting the host",
            Reason::PacketSocket => "a packet socket, which reaches peers around the network rules (the policy may allow it: raw_sockets: allow)",
            Reason::NestedLandlock => "a Landlock domain of the session's own, which could keep refusals out of the audit records kill rules are decided on",
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), Copy, no implicit padding (pinned below).
unsafe impl aya::Pod for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_pinned_and_rows_are_unique() {
        assert_eq!(core::mem::size_of::<Refusal>(), 32);
        assert_eq!(core::mem::offset_of!(Refusal, values), 16);
        for (i, a) in TABLE.iter().enumerate() {
            assert!(a.nr < SYSCALL_SLOTS, "{}", a.name);
            assert_ne!(a.refusal.when, WHEN_NEVER, "{}", a.name);
            for b in &TABLE[i + 1..] {
                assert_ne!(a.nr, b.nr, "{} twice: the kernel map holds one row per syscall", a.name);
            }
        }
        assert_eq!(row_of(16).map(|r| r.name), Some("ioctl"));
        assert!(row_of(39).is_none(), "getpid is allowed");
    }
}
