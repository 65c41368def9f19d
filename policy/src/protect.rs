//! What every session is kept from, whatever its policy says: the host's control
//! files and the agent's own. One table, read by the session's Landlock planning
//! (which turns each entry into a deny rule) and by the agent (which names the
//! violation of a refused open after the entry's `op`).
//!
//! Most entries are escapes from any box (a `kernel.core_pattern` pipe starts an
//! untagged root helper; `/sys/kernel/uevent_helper` the same), so a policy cannot
//! loosen them. An entry marked loosenable is ordinary administration a policy may
//! grant on purpose: an explicit rule of the policy on that path, or beneath it,
//! decides there instead.
//!
//! Each entry costs the session more than the path itself: Landlock can only grant,
//! so a deny is planned as grants on its complement, and no new entry can then be
//! made directly in the entry's ancestor directories (see `sandbox`). `/etc/warrant`
//! already costs that in `/etc` (no new file directly in `/etc`, so `sed -i` on a
//! file there fails; editing in place works), so the entries beside it in `/etc`
//! are free; `/usr/lib/systemd/system` costs creation directly in `/usr`, `/usr/lib`
//! and `/usr/lib/systemd`, and `/var/spool/cron` creation directly in `/var/spool`.
//! A path that does not exist yet is covered the same way: its parent takes no new
//! entry, so it cannot be created.
//!
//! The loosenable entries are the places where the host runs code later, as root,
//! outside any session (cron and at jobs, systemd units, the dynamic loader's
//! preload list and search path, PAM modules' configuration, udev rules, modprobe's
//! `install` commands, which the kernel runs when it loads a module on demand; the
//! system-wide shell start-up files every login shell runs, and root's own, with
//! root's `.ssh`): a
//! session that wrote one would leave work behind that no tag follows. A session
//! that must (a DBA editing a crontab) gets it from an explicit policy rule.
//!
//! Raw memory and port devices are not here: a session drops `CAP_SYS_RAWIO`, which
//! they need. Block devices are listed when a session starts (they come and go).

use std::path::Path;

use crate::Access;

/// One protected path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    /// The path (a directory covers everything beneath it).
    pub path: String,
    /// What is refused: `Write` (reading is fine) or `Any`.
    pub access: Access,
    /// The violation's `op` when an open here is refused.
    pub op: &'static str,
    /// Whether a policy rule on the path may decide instead.
    pub loosenable: bool,
}

/// The host's part: `(path, access, op, loosenable)`.
const HOST: &[(&str, Access, &str, bool)] = &[
    ("/sys/fs/cgroup", Access::Write, "cgroup", false),
    ("/sys/fs/bpf", Access::Write, "bpffs", false),
    ("/proc/sys", Access::Write, "sysctl", false),
    ("/proc/sysrq-trigger", Access::Write, "sysrq", false),
    ("/sys/kernel", Access::Write, "sysfs", false),
    ("/sys/module", Access::Write, "sysfs", false),
    ("/sys/power", Access::Write, "sysfs", false),
    ("/etc/warrant", Access::Write, "warrant", false),
    ("/var/lib/warrant", Access::Any, "warrant", false),
    // Code the host runs later, outside the session (see the module comment).
    ("/etc/crontab", Access::Write, "cron", true),
    ("/etc/cron.d", Access::Write, "cron", true),
    ("/etc/cron.hourly", Access::Write, "cron", true),
    ("/etc/cron.daily", Access::Write, "cron", true),
    ("/etc/cron.weekly", Access::Write, "cron", true),
    ("/etc/cron.monthly", Access::Write, "cron", true),
    ("/etc/cron.yearly", Access::Write, "cron", true),
    ("/etc/anacrontab", Access::Write, "cron", true),
    ("/var/spool/cron", Access::Write, "cron", true),
    ("/etc/systemd", Access::Write, "systemd", true),
    ("/usr/lib/systemd/system", Access::Write, "systemd", true),
    ("/etc/ld.so.preload", Access::Write, "loader", true),
    ("/etc/ld.so.conf", Access::Write, "loader", true),
    ("/etc/ld.so.conf.d", Access::Write, "loader", true),
    ("/etc/ld.so.cache", Access::Write, "loader", true),
    ("/etc/pam.d", Access::Write, "pam", true),
    ("/etc/udev", Access::Write, "udev", true),
    ("/etc/modprobe.d", Access::Write, "modprobe", true),
    // What every login shell runs first: the operator's next untagged shell.
    ("/etc/profile", Access::Write, "shell", true),
    ("/etc/profile.d", Access::Write, "shell", true),
    ("/etc/bash.bashrc", Access::Write, "shell", true),
    ("/etc/environment", Access::Write, "shell", true),
];

/// Root's own start-up files, under root's home directory (from `/etc/passwd`):
/// what root's next login shell, or next ssh login, runs or trusts, outside any
/// session. A name that does not exist yet is covered too (it cannot be created), so
/// a session cannot add a `.bash_profile` that would take over from `.profile`.
/// The price is root's home itself: no new entry directly in it (see the module
/// comment); its subdirectories and existing files stay as writable as before.
const ROOT_HOME: &[(&str, &str)] = &[
    (".bashrc", "shell"),
    (".bash_profile", "shell"),
    (".bash_login", "shell"),
    (".bash_logout", "shell"),
    (".profile", "shell"),
    (".zshenv", "shell"),
    (".zprofile", "shell"),
    (".zshrc", "shell"),
    (".zlogin", "shell"),
    (".zlogout", "shell"),
    // authorized_keys (a key for a later root login) and rc (run at every ssh login).
    (".ssh", "ssh"),
];

/// Root's home directory as `/etc/passwd` names it (`/root` when it cannot be read).
#[must_use]
pub fn root_home() -> String {
    root_home_in(&std::fs::read_to_string("/etc/passwd").unwrap_or_default())
}

fn root_home_in(passwd: &str) -> String {
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7 && f[2] == "0").then(|| f[5].trim_end_matches('/').to_owned())
        })
        .find(|home| home.starts_with('/') && home.len() > 1)
        .unwrap_or_else(|| "/root".to_owned())
}

/// The agent's own files, as it reports them (state dir, config, keys, socket dir):
/// refused to every session, read and write.
pub const AGENT_OP: &str = "warrant";

/// Every protected path for a session: the host's table, the agent's own paths,
/// and the block devices in `/sys/class/block` at this moment (read or write of a
/// raw disk goes around every file rule).
#[must_use]
pub fn protected(agent_paths: &[String]) -> Vec<Protected> {
    let mut out: Vec<Protected> = HOST
        .iter()
        .map(|(path, access, op, loosenable)| Protected { path: (*path).to_owned(), access: *access, op, loosenable: *loosenable })
        .collect();
    let home = root_home();
    for (name, op) in ROOT_HOME {
        out.push(Protected { path: format!("{home}/{name}"), access: Access::Write, op, loosenable: true });
    }
    for p in agent_paths.iter().filter(|p| p.starts_with('/')) {
        out.push(Protected { path: p.clone(), access: Access::Any, op: AGENT_OP, loosenable: false });
    }
    for dev in block_devices(Path::new("/sys/class/block")) {
        out.push(Protected { path: dev, access: Access::Any, op: "block-device", loosenable: false });
    }
    out
}

/// `/dev/NAME` for each entry of a `/sys/class/block`-like directory.
fn block_devices(class: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(class) else {
        return Vec::new();
    };
    let mut devs: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(|n| format!("/dev/{n}")))
        .filter(|d| Path::new(d).exists())
        .collect();
    devs.sort();
    devs
}

/// The entry protecting `path` against `access`, if any (the longest path wins).
#[must_use]
pub fn protecting<'p>(table: &'p [Protected], path: &Path, access: Access) -> Option<&'p Protected> {
    table
        .iter()
        .filter(|p| path.starts_with(&p.path))
        .filter(|p| p.access == Access::Any || access != Access::Read)
        .max_by_key(|p| p.path.len())
}

/// Unix sockets of daemons that start processes on request: a session that
/// reaches one gets work done by a process with no tag, no confinement, that
/// outlives the kill. Refused to every session by self-protection in the kernel
/// (the cgroup `connect_unix`/`sendmsg_unix` hooks); unlike the agent's own sockets,
/// a policy's `unix:` rule on the name (or a longer one) decides instead, so a
/// session that must drive docker can be granted it on purpose.
///
/// Names are byte prefixes of what a process passes to `connect(2)`; each `/run`
/// entry is also refused under `/var/run` (a symlink to it on Debian).
pub const UNIX_SPAWNERS: [(&str, &str); 14] = [
    ("/run/systemd/private", "systemd (manager's private bus: systemd-run, systemctl start)"),
    ("/run/user/", "per-user systemd and D-Bus session buses"),
    ("/run/dbus/system_bus_socket", "the D-Bus system bus"),
    ("\0/tmp/dbus-", "a D-Bus session bus (abstract)"),
    ("/tmp/dbus-", "a D-Bus session bus"),
    ("/run/docker.sock", "docker"),
    ("/run/docker/", "docker"),
    ("/run/containerd/", "containerd"),
    ("/run/podman/", "podman"),
    ("/run/crio/", "cri-o"),
    ("/run/snapd", "snapd"),
    ("/tmp/tmux-", "a tmux server started outside the session"),
    ("/run/screen/", "a screen session started outside the session"),
    ("/var/snap/lxd/", "lxd"),
];

/// Every self-protection spawner entry as `(name bytes, what)`: [`UNIX_SPAWNERS`]
/// with each `/run/…` name also under `/var/run/…`. The index of an entry (plus one)
/// is the rule number the kernel reports.
#[must_use]
pub fn unix_spawners() -> Vec<(Vec<u8>, &'static str)> {
    let mut out = Vec::new();
    for (name, what) in UNIX_SPAWNERS {
        out.push((name.as_bytes().to_vec(), what));
        if let Some(rest) = name.strip_prefix("/run/") {
            out.push((format!("/var/run/{rest}").into_bytes(), what));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_and_agent_paths_are_protected() {
        let t = protected(&["/run/warrant-x".to_owned(), "relative".to_owned()]);
        let at = |p: &str, a| protecting(&t, Path::new(p), a).map(|e| e.op);
        assert_eq!(at("/proc/sys/kernel/core_pattern", Access::Write), Some("sysctl"));
        assert_eq!(at("/proc/sys/kernel/core_pattern", Access::Read), None, "reading sysctls is fine");
        assert_eq!(at("/sys/kernel/uevent_helper", Access::Write), Some("sysfs"));
        assert_eq!(at("/run/warrant-x/state.json", Access::Read), Some("warrant"));
        assert_eq!(at("/etc/passwd", Access::Write), None);
        assert!(t.iter().all(|p| p.path.starts_with('/')), "relative agent paths are dropped");
    }

    #[test]
    fn roots_start_up_files_are_protected_under_roots_home() {
        let t = protected(&[]);
        let home = root_home();
        let at = |p: &str, a| protecting(&t, Path::new(p), a).map(|e| e.op);
        assert_eq!(at(&format!("{home}/.bashrc"), Access::Write), Some("shell"));
        assert_eq!(at(&format!("{home}/.bash_profile"), Access::Write), Some("shell"), "a name not there yet");
        assert_eq!(at(&format!("{home}/.ssh/authorized_keys"), Access::Write), Some("ssh"));
        assert_eq!(at(&format!("{home}/.bashrc"), Access::Read), None, "reading is fine");
        assert_eq!(at(&format!("{home}/notes.txt"), Access::Write), None);
    }

    #[test]
    fn roots_home_comes_from_passwd() {
        assert_eq!(root_home_in("daemon:x:1:1::/usr/sbin:/bin/false\nroot:x:0:0:root:/var/root/:/bin/sh\n"), "/var/root");
        assert_eq!(root_home_in("toor:x:0:0::/:/bin/sh\n"), "/root", "/ itself is no home to protect");
        assert_eq!(root_home_in("garbage"), "/root");
    }

    #[test]
    fn spawners_cover_var_run_and_fit_the_kernel_key() {
        let t = unix_spawners();
        let has = |n: &str| t.iter().any(|(b, _)| b.as_slice() == n.as_bytes());
        assert!(has("/run/docker.sock") && has("/var/run/docker.sock"));
        assert!(has("/var/run/dbus/system_bus_socket"));
        assert!(has("/tmp/tmux-") && !has("/var/run/tmux-"));
        assert!(t.iter().all(|(b, _)| b.len() <= crate::UnixName::MAX_LEN));
    }

    #[test]
    fn block_devices_come_from_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("null")).unwrap();
        std::fs::create_dir(dir.path().join("no-such-device-here")).unwrap();
        assert_eq!(block_devices(dir.path()), vec!["/dev/null".to_owned()]);
    }
}
