//! `warrant-agent --check`: which kernel features warrant can use here, and what
//! protection would be missing without each.
//!
//! Probes are real: programs are loaded, not looked up in a feature list (bpftool's
//! helper lists are unreliable on this kernel, docs/kernel.md §1).

use std::{fs, path::Path};

use aya::programs::{LsmAttachType, ProgramType};
use warrant_proto::v1 as pb;

use crate::{btf, cgroup, loader};

/// Runs every probe. `full` also loads warrant's own programs into a scratch pin
/// directory (what `--check` does; a running agent has already proven that).
pub fn probe(full: bool) -> Vec<pb::Feature> {
    let mut out = Vec::new();
    let mut add = |name: &str, available: bool, detail: String| {
        out.push(pb::Feature { name: name.into(), available, detail });
    };

    let offsets = btf::kernel_offsets(Path::new(btf::VMLINUX_BTF));
    match &offsets {
        Ok(_) => add("kernel BTF", true, "every kernel field warrant reads was found".into()),
        Err(e) => add("kernel BTF", false, format!("{e}: no events and no in-kernel kill without it")),
    }

    let bpffs = fs::read_to_string("/proc/mounts").is_ok_and(|m| m.lines().any(|l| l.split_whitespace().nth(2) == Some("bpf")));
    add(
        "bpffs",
        bpffs,
        if bpffs {
            "mounted: programs and maps stay pinned when the agent stops".into()
        } else {
            "not mounted (the agent mounts it at /sys/fs/bpf at start)".into()
        },
    );

    if full {
        match &offsets {
            Ok(off) => {
                let dir = Path::new("/sys/fs/bpf").join(format!("warrant-check-{}", std::process::id()));
                let res = cgroup::find_cgroup2_mount()
                    .and_then(|mount| loader::Kernel::load(&dir, off, 1 << 16, &mount).map(drop));
                let _ = loader::uninstall(&dir);
                match res {
                    Ok(()) => add(
                        "tp_btf + task storage + ring buffer",
                        true,
                        "warrant's programs load: tags inherited at fork, events, in-kernel kill on expiry".into(),
                    ),
                    Err(e) => add(
                        "tp_btf + task storage + ring buffer",
                        false,
                        format!("{e:#}: warrant cannot tag, observe or kill in the kernel"),
                    ),
                }
            }
            Err(_) => add("tp_btf + task storage + ring buffer", false, "not tried: kernel BTF is missing".into()),
        }
    }

    let lsm = aya::sys::is_program_supported(ProgramType::Lsm(LsmAttachType::Mac)).unwrap_or(false);
    add(
        "BPF LSM",
        lsm,
        if lsm {
            "available: could deny file opens in the kernel hook itself".into()
        } else {
            "refused by this kernel: file and exec denial uses Landlock instead".into()
        },
    );
    let fentry = aya::sys::is_program_supported(ProgramType::Tracing).unwrap_or(false);
    add(
        "fentry/fexit",
        fentry,
        if fentry {
            "available: file opens could be observed without a syscall hook".into()
        } else {
            "refused by this kernel: file opens are observed with a sys_exit hook attached only while a session is live".into()
        },
    );
    let sock_addr = aya::sys::is_program_supported(ProgramType::CgroupSockAddr).unwrap_or(false);
    add(
        "cgroup sock_addr",
        sock_addr,
        if sock_addr {
            "available: network rules can refuse connect/bind before the SYN".into()
        } else {
            "missing: network rules could not be enforced in the kernel".into()
        },
    );

    match cgroup::find_cgroup2_mount() {
        Ok(mount) => {
            let probe = mount.join(format!("warrant-check-{}", std::process::id()));
            let kill = fs::create_dir(&probe).is_ok() && probe.join("cgroup.kill").exists();
            let _ = fs::remove_dir(&probe);
            add(
                "cgroup v2 + cgroup.kill",
                kill,
                if kill {
                    format!("at {}: a session's tree dies in one write", mount.display())
                } else {
                    format!("at {} but no cgroup.kill: kills fall back to the sweep by tag", mount.display())
                },
            );
        }
        Err(e) => add("cgroup v2 + cgroup.kill", false, format!("{e:#}")),
    }

    // landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) returns the ABI.
    // SAFETY: documented probe call with no pointers.
    let abi = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32) };
    add(
        "Landlock",
        abi > 0,
        if abi > 0 {
            format!("ABI {abi}: file, exec and TCP-port rules that only tighten")
        } else {
            "unavailable: file and exec rules could not be enforced".into()
        },
    );
    // SAFETY: PR_GET_SECCOMP takes no pointers.
    let seccomp = unsafe { libc::prctl(libc::PR_GET_SECCOMP) } >= 0;
    add(
        "seccomp",
        seccomp,
        if seccomp {
            "available: tagged shells can be kept from bpf(), ptrace and module loading".into()
        } else {
            "unavailable: no self-protection against tagged root shells".into()
        },
    );
    out
}

/// Prints the probes for people; returns whether the core (BTF and programs) works.
pub fn print(features: &[pb::Feature]) -> bool {
    for f in features {
        println!("{:<8} {:<38} {}", if f.available { "ok" } else { "MISSING" }, f.name, f.detail);
    }
    features
        .iter()
        .filter(|f| f.name == "kernel BTF" || f.name.starts_with("tp_btf"))
        .all(|f| f.available)
}
