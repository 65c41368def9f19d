//! The kernel's pseudo file systems that the agent and the tests use.
//!
//! Minimal images (CI machines, containers) often boot without them. bpffs is where the
//! agent pins programs and maps so that enforcement outlives the agent; the others are
//! for feature probing and inspection, so failing to mount them only warns.

use std::fs;

use anyhow::{Context as _, Result};

use crate::{cmd, ctx::Ctx};

/// One file system that should be mounted.
#[derive(Debug, Clone, Copy)]
pub struct Mount {
    /// Name in the report, e.g. "bpffs".
    pub name: &'static str,
    /// `mount -t` type, as listed in /proc/mounts.
    fstype: &'static str,
    /// Where it is expected (and mounted if missing).
    pub target: &'static str,
    /// Whether warrant cannot work without it (then a failed mount is an error).
    required: bool,
    /// Whether a mount of `fstype` anywhere will do (cgroup2: hybrid hosts have it at
    /// /sys/fs/cgroup/unified, pure v2 hosts at /sys/fs/cgroup).
    anywhere: bool,
}

/// The mounts setup checks, in order.
pub const MOUNTS: &[Mount] = &[
    // The agent pins programs and maps under /sys/fs/bpf/warrant.
    Mount {
        name: "bpffs",
        fstype: "bpf",
        target: "/sys/fs/bpf",
        required: true,
        anywhere: false,
    },
    // Tracepoint ids and formats; bpftool and the tests read them.
    Mount {
        name: "tracefs",
        fstype: "tracefs",
        target: "/sys/kernel/tracing",
        required: false,
        anywhere: false,
    },
    // /sys/kernel/security/lsm lists the active LSMs for `warrant-agent --check`.
    Mount {
        name: "securityfs",
        fstype: "securityfs",
        target: "/sys/kernel/security",
        required: false,
        anywhere: false,
    },
    // Per-session cgroups, cgroup.kill and the cgroup BPF hooks need cgroup v2; this
    // machine's layout is hybrid, with v2 at /sys/fs/cgroup/unified.
    Mount {
        name: "cgroup2",
        fstype: "cgroup2",
        target: "/sys/fs/cgroup/unified",
        required: false,
        anywhere: true,
    },
];

/// Mounts `m` if missing; returns what was present or done.
pub fn ensure(ctx: &Ctx, m: &Mount, root: bool) -> Result<String> {
    let table = fs::read_to_string("/proc/mounts").context("read /proc/mounts")?;
    let mounted = mounted(&table);
    if let Some((at, _)) = mounted
        .iter()
        .find(|(at, ty)| *ty == m.fstype && (m.anywhere || *at == m.target))
    {
        return Ok(format!("present at {at}"));
    }
    if !root {
        return Ok("missing (not root, so not mounted)".into());
    }

    let result = fs::create_dir_all(m.target)
        .with_context(|| format!("create {}", m.target))
        .and_then(|()| {
            cmd::stdout(
                ctx.command("mount")
                    .args(["-t", m.fstype, m.fstype, m.target]),
            )
        });
    match result {
        Ok(_) => Ok(format!("mounted at {}", m.target)),
        Err(e) if m.required => Err(e).with_context(|| format!("mount {} at {}", m.name, m.target)),
        Err(e) => Ok(format!("warning: not mounted at {}: {e:#}", m.target)),
    }
}

/// `(mount point, fstype)` for each line of /proc/mounts. Mount points with spaces are
/// octal-escaped there (`\040`); ours have none, so they compare as they are.
fn mounted(table: &str) -> Vec<(&str, &str)> {
    table
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _source = f.next()?;
            Some((f.next()?, f.next()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_table_parses() {
        let table = "sysfs /sys sysfs rw,relatime 0 0\n\
                     cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n\
                     bpf /sys/fs/bpf bpf rw,relatime 0 0\n";
        assert_eq!(
            mounted(table),
            [
                ("/sys", "sysfs"),
                ("/sys/fs/cgroup/unified", "cgroup2"),
                ("/sys/fs/bpf", "bpf")
            ]
        );
    }
}
