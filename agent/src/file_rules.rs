//! File and exec rules, seen from the event stream.
//!
//! The kernel enforces them through the Landlock domain `warrant exec` enters
//! (EACCES, no event of its own), so the agent decides each open and exec of a tagged
//! process again with the reference matcher and turns what a rule other than `allow`
//! applied to into a `violation` naming the rule: refused ones (`prevented`), logged
//! ones, and ones that happened although a rule denies them (a session attached
//! without a Landlock domain). Writes under the kernel's control directories refused
//! by self-protection are violations too.
//!
//! Landlock cannot kill: a `kill` or `kill-session` rule's refusal comes back here,
//! and the agent kills the process or the session (see `react_loop` in main.rs).

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};

use warrant_policy::protect::{self, Protected};
use warrant_policy::{Access, Action, Decision, Policy};
use warrant_proto::v1::{self as pb, event::Event as Kind};

const EPERM: i32 = 1;
const EACCES: i32 = 13;

/// What sessions are kept from (`warrant_policy::protect`), the agent's own paths
/// included; set once at start by [`protect()`].
static PROTECTED: std::sync::OnceLock<Vec<Protected>> = std::sync::OnceLock::new();

/// Sets the protected table, with the agent's own paths (first call wins).
pub fn protect(agent_paths: &[String]) {
    let _ = PROTECTED.set(protect::protected(agent_paths));
}

fn protected_table() -> &'static [Protected] {
    PROTECTED.get_or_init(|| protect::protected(&[]))
}

/// The violation `ev` amounts to under `policy` (or self-protection), if any.
pub fn violation(ev: &pb::Event, policy: Option<&Policy>) -> Option<pb::Violation> {
    match ev.event.as_ref()? {
        Kind::FileOpen(f) => {
            let access = match f.access.as_str() {
                "read" => Access::Read,
                "write" => Access::Write,
                // O_PATH: the file is named, not read or written (Landlock lets it be).
                "path" => return None,
                _ => Access::Any,
            };
            decide_path(&f.path, ev.pid, access, f.error, policy, "open", || format!("{} open", f.access))
        }
        Kind::FileChange(c) => {
            // A change writes the names it makes or removes; a symlink's text, an
            // attribute's name and the file open_by_handle reached are not places written.
            if c.op == "open_by_handle" {
                return None;
            }
            let second = matches!(c.op.as_str(), "rename" | "link").then_some(c.target.as_str());
            std::iter::once(c.path.as_str())
                .chain(second)
                .find_map(|p| decide_path(p, ev.pid, Access::Write, c.error, policy, &c.op, || c.summary()))
        }
        Kind::ExecFailed(e) => {
            let path = absolute(&e.path, ev.pid)?;
            let d = policy?.decide_exec(&path);
            // A failed exec a rule permits is not a violation (a missing +x bit).
            if d.action.permits() {
                return None;
            }
            from_decision(d, "exec", &path, Outcome::of(e.error), policy?, "")
        }
        Kind::Exec(e) => {
            let policy = policy?;
            let d = policy.decide_exec(&e.path);
            if let Some(v) = from_decision(d, "exec", Path::new(&e.path), Outcome::Succeeded, policy, "") {
                return Some(v);
            }
            if !e.script.is_empty() {
                // What was run is the script; its interpreter is only the means.
                let d = policy.decide_exec(&e.script);
                if let Some(mut v) = from_decision(d, "exec", Path::new(&e.script), Outcome::Succeeded, policy, "") {
                    v.detail = format!("a script, run by {}", e.path);
                    return Some(v);
                }
            }
            through_loader(e, policy)
        }
        _ => None,
    }
}

/// The kill a Landlock refusal of `path` (as the kernel resolved it) amounts to
/// under `policy`: a violation only when the rule that refused it is `kill` or
/// `kill-session`, which Landlock cannot carry out. Every other refusal is already
/// a violation from the event stream, named as the process asked for it.
pub fn kill_on_resolved(path: &str, wanted: crate::landlock_audit::Wanted, policy: &Policy, blockers: &str) -> Option<pb::Violation> {
    use crate::landlock_audit::Wanted;
    let path = Path::new(path);
    let (d, op) = match wanted {
        Wanted::Execute => (policy.decide_exec(path), "exec"),
        Wanted::Read => (policy.decide_file(path, Access::Read), "open"),
        Wanted::Write => (policy.decide_file(path, Access::Write), "open"),
    };
    if !matches!(d.action, Action::Kill | Action::KillSession) {
        return None;
    }
    from_decision(d, op, path, Outcome::Refused, policy, &format!("refused by Landlock ({blockers}) on the path the kernel resolved"))
}

/// The violation an access to `path` that ended with `error` amounts to: first
/// self-protection's (refused writes under the kernel's control directories), then
/// the policy's file rules. `detail` is made only for a violation (most accesses
/// are none, and this runs for every file event).
fn decide_path(
    path: &str,
    pid: u32,
    access: Access,
    error: i32,
    policy: Option<&Policy>,
    op: &str,
    detail: impl FnOnce() -> String,
) -> Option<pb::Violation> {
    let outcome = Outcome::of(error);
    // Without a policy only a refusal can be a violation (self-protection's).
    if policy.is_none() && outcome != Outcome::Refused {
        return None;
    }
    let path = absolute(path, pid)?;
    let loosened = |p: &Protected| p.loosenable && policy.is_some_and(|pol| pol.has_file_rule_at_or_under(&p.path));
    if outcome == Outcome::Refused
        && let Some(p) = protect::protecting(protected_table(), &path, access).filter(|p| !loosened(p))
    {
        return Some(pb::Violation {
            op: p.op.into(),
            action: "deny".into(),
            rule: "self-protection".into(),
            path: path.display().to_string(),
            detail: detail(),
            prevented: true,
            ..Default::default()
        });
    }
    let d = policy?.decide_file(&path, access);
    let mut v = from_decision(d, op, &path, outcome, policy?, "")?;
    v.detail = detail();
    Some(v)
}

/// An exec of the dynamic loader (`ld.so PROGRAM`) runs PROGRAM with no exec of
/// its own: the loader maps it. So the program its argv names is decided as if it
/// were executed; one the rules refuse is already running, so `deny` becomes a
/// kill of the process (`kill` and `kill-session` stay what they are).
fn through_loader(e: &pb::Exec, policy: &Policy) -> Option<pb::Violation> {
    let loader = Path::new(&e.path);
    let name = loader.file_name()?.to_str()?;
    if !(name.starts_with("ld-linux") || name.starts_with("ld.so") || name.starts_with("ld-musl")) {
        return None;
    }
    let program = loader_target(&e.argv)?;
    let path = normalize(&Path::new(&e.cwd).join(program));
    let d = policy.decide_exec(&path);
    if d.action.permits() {
        return None;
    }
    let mut v = from_decision(d, "exec", &path, Outcome::Succeeded, policy, "")?;
    if v.action == Action::Deny.as_str() {
        v.action = Action::Kill.as_str().into();
    }
    v.detail = format!("run through the dynamic loader {}: the program was already running, so the process is killed", e.path);
    Some(v)
}

/// The program an `ld.so` command line runs: its first argument that is not an
/// option (or an option's value).
fn loader_target(argv: &[String]) -> Option<&str> {
    const WITH_VALUE: [&str; 7] =
        ["--library-path", "--inhibit-rpath", "--preload", "--audit", "--argv0", "--glibc-hwcaps-prepend", "--glibc-hwcaps-mask"];
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        if a == "--" {
            return args.next().map(String::as_str);
        }
        if !a.starts_with("--") {
            return Some(a);
        }
        if WITH_VALUE.contains(&a.as_str()) {
            args.next();
        }
    }
    None
}

/// How the call the event reports ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    /// EACCES or EPERM: refused by Landlock (or plain permissions).
    Refused,
    /// Any other error.
    Failed,
}

impl Outcome {
    fn of(error: i32) -> Outcome {
        match error {
            0 => Outcome::Succeeded,
            EACCES | EPERM => Outcome::Refused,
            _ => Outcome::Failed,
        }
    }
}

fn from_decision(
    d: Decision,
    op: &str,
    path: &Path,
    outcome: Outcome,
    policy: &Policy,
    detail: &str,
) -> Option<pb::Violation> {
    if d.action == Action::Allow {
        return None;
    }
    // A denying rule: refused (EACCES/EPERM) is the kernel at work; success means it
    // happened anyway (no Landlock domain); another error means nothing happened.
    let prevented = !d.action.permits() && outcome == Outcome::Refused;
    if !d.action.permits() && outcome == Outcome::Failed {
        return None;
    }
    Some(pb::Violation {
        op: op.into(),
        action: d.action.as_str().into(),
        rule: match d.rule {
            Some(r) => r.label(),
            None => "default".into(),
        },
        policy: policy.name.clone(),
        path: path.display().to_string(),
        detail: detail.into(),
        prevented,
        ..Default::default()
    })
}

/// The path an event names, absolute and without `.`/`..`: resolved paths are
/// already; a failed call reports the string the process passed, which may be
/// relative to its working directory (read now, best effort: `None` if it is gone).
fn absolute(path: &str, pid: u32) -> Option<Cow<'_, Path>> {
    if path.is_empty() {
        return None;
    }
    if is_normal(path) {
        // What the kernel resolved: nothing to read or rebuild.
        return Some(Cow::Borrowed(Path::new(path)));
    }
    let p = Path::new(path);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?.join(p)
    };
    Some(Cow::Owned(normalize(&joined)))
}

/// Whether `path` is absolute and already what [`normalize`] would make of it: no
/// empty, `.` or `..` component and no trailing slash (the root aside).
fn is_normal(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else { return false };
    rest.is_empty() || rest.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Removes `.` and `..` lexically (symbolic links are not followed: the kernel
/// reports resolved paths for successful calls, and a refused one never resolved).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_taken_as_they_are_and_others_normalized() {
        for p in ["/", "/etc/passwd", "/a/b.c/..d", "/a/.b"] {
            assert!(is_normal(p), "{p}");
            assert_eq!(absolute(p, 1).as_deref(), Some(Path::new(p)), "{p}");
        }
        for p in ["", "etc", "//etc", "/etc/", "/a/./b", "/a/../b", "/a//b", "/.", "/.."] {
            assert!(!is_normal(p), "{p}");
        }
        assert_eq!(absolute("/a/./b/../c//d/", 1).as_deref(), Some(Path::new("/a/c/d")));
    }

    fn policy() -> Policy {
        Policy::from_yaml(
            concat!(
                "name: db-debug\nmax_ttl: 1h\ndefault: allow\n",
                "exec: [{path: /usr/bin/curl, action: kill}, {path: /usr/bin/wget, action: log}]\n",
                "files: [{path: /var/lib/pg/, access: write, action: deny},\n",
                "        {path: /etc/shadow, access: any, action: kill-session}]\n",
            ),
            "p.yaml",
        )
        .unwrap()
    }

    fn open(path: &str, access: &str, error: i32) -> pb::Event {
        pb::Event {
            event: Some(Kind::FileOpen(pb::FileOpen { path: path.into(), access: access.into(), error, ..Default::default() })),
            pid: std::process::id(),
            ..Default::default()
        }
    }

    #[test]
    fn refused_open_names_rule_and_action() {
        let v = violation(&open("/etc/shadow", "read", EACCES), Some(&policy())).unwrap();
        assert_eq!((v.op.as_str(), v.action.as_str(), v.rule.as_str()), ("open", "kill-session", "files[2]"));
        assert!(v.prevented);
        assert_eq!(v.policy, "db-debug");
        let v = violation(&open("/var/lib/pg/base/1", "write", EACCES), Some(&policy())).unwrap();
        assert_eq!((v.action.as_str(), v.rule.as_str()), ("deny", "files[1]"));
    }

    #[test]
    fn allowed_opens_are_not_violations() {
        assert!(violation(&open("/var/lib/pg/base/1", "read", 0), Some(&policy())).is_none());
        assert!(violation(&open("/tmp/x", "write", 0), Some(&policy())).is_none());
        assert!(violation(&open("/tmp/x", "write", 0), None).is_none());
    }

    #[test]
    fn a_denied_open_that_happened_is_reported_as_not_prevented() {
        let v = violation(&open("/var/lib/pg/x", "write", 0), Some(&policy())).unwrap();
        assert!(!v.prevented);
    }

    #[test]
    fn relative_and_dotted_paths_are_resolved() {
        let cwd = std::env::current_dir().unwrap();
        let v = violation(&open("../../../../../../../../etc/./shadow", "read", EACCES), Some(&policy())).unwrap();
        assert_eq!(v.path, "/etc/shadow", "from {}", cwd.display());
    }

    #[test]
    fn self_protection_writes_without_a_policy() {
        let v = violation(&open("/sys/fs/cgroup/unified/cgroup.procs", "write", EACCES), None).unwrap();
        assert_eq!((v.op.as_str(), v.rule.as_str()), ("cgroup", "self-protection"));
        assert!(violation(&open("/sys/fs/cgroup/unified/cgroup.procs", "read", 0), None).is_none());
    }

    fn change(op: &str, path: &str, target: &str, error: i32) -> pb::Event {
        pb::Event {
            event: Some(Kind::FileChange(pb::FileChange {
                op: op.into(),
                path: path.into(),
                target: target.into(),
                error,
                ..Default::default()
            })),
            pid: std::process::id(),
            ..Default::default()
        }
    }

    #[test]
    fn file_changes_are_decided_as_writes_of_every_name_they_touch() {
        let p = policy();
        let v = violation(&change("unlink", "/var/lib/pg/x", "", EACCES), Some(&p)).unwrap();
        assert_eq!((v.op.as_str(), v.action.as_str(), v.rule.as_str()), ("unlink", "deny", "files[1]"));
        assert!(v.prevented);
        // Renaming a file out of a denied directory is decided by its old name, and
        // renaming onto a kill-session path by its new one.
        let v = violation(&change("rename", "/var/lib/pg/x", "/tmp/x", EACCES), Some(&p)).unwrap();
        assert_eq!(v.path, "/var/lib/pg/x");
        let v = violation(&change("rename", "/tmp/x", "/etc/shadow", 0), Some(&p)).unwrap();
        assert_eq!((v.action.as_str(), v.path.as_str(), v.prevented), ("kill-session", "/etc/shadow", false));
        // chmod is not Landlock's to refuse: one that happened under a deny rule says so.
        let v = violation(&change("chmod", "/var/lib/pg/x", "", 0), Some(&p)).unwrap();
        assert!(!v.prevented);
        assert_eq!(v.detail, "chmod /var/lib/pg/x");
        // A symlink's text is not a place written; allowed places are not violations.
        assert!(violation(&change("symlink", "/tmp/l", "/etc/shadow", 0), Some(&p)).is_none());
        assert!(violation(&change("mkdir", "/tmp/d", "", 0), Some(&p)).is_none());
        let v = violation(&change("unlink", "/sys/fs/cgroup/x/cgroup.procs", "", EPERM), None).unwrap();
        assert_eq!((v.op.as_str(), v.rule.as_str()), ("cgroup", "self-protection"));
    }

    #[test]
    fn execs() {
        let p = policy();
        let failed = pb::Event {
            event: Some(Kind::ExecFailed(pb::ExecFailed { path: "/usr/bin/curl".into(), error: EACCES, truncated: false })),
            ..Default::default()
        };
        let v = violation(&failed, Some(&p)).unwrap();
        assert_eq!((v.op.as_str(), v.action.as_str(), v.rule.as_str()), ("exec", "kill", "exec[1]"));
        assert!(v.prevented);
        let ran = pb::Event { event: Some(Kind::Exec(pb::Exec { path: "/usr/bin/wget".into(), ..Default::default() })), ..Default::default() };
        let v = violation(&ran, Some(&p)).unwrap();
        assert_eq!(v.action, "log");
        assert!(!v.prevented);
        let ls = pb::Event { event: Some(Kind::Exec(pb::Exec { path: "/usr/bin/ls".into(), ..Default::default() })), ..Default::default() };
        assert!(violation(&ls, Some(&p)).is_none());
        // A script is decided by its own path, not only its interpreter's.
        let script = pb::Event {
            event: Some(Kind::Exec(pb::Exec { path: "/bin/sh".into(), script: "/usr/bin/curl".into(), ..Default::default() })),
            ..Default::default()
        };
        let v = violation(&script, Some(&p)).unwrap();
        assert_eq!((v.action.as_str(), v.path.as_str()), ("kill", "/usr/bin/curl"));
        assert!(v.detail.contains("run by /bin/sh"), "{}", v.detail);
    }

    #[test]
    fn a_denied_program_run_by_the_loader_is_a_kill() {
        let p = policy();
        let exec = |argv: &[&str]| pb::Event {
            event: Some(Kind::Exec(pb::Exec {
                path: "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".into(),
                argv: argv.iter().map(|a| (*a).to_owned()).collect(),
                cwd: "/usr/bin".into(),
                truncated: false,
                script: String::new(),
            })),
            ..Default::default()
        };
        let v = violation(&exec(&["/lib64/ld-linux-x86-64.so.2", "--library-path", "/x", "/usr/bin/curl", "-s"]), Some(&p)).unwrap();
        assert_eq!((v.path.as_str(), v.action.as_str(), v.rule.as_str()), ("/usr/bin/curl", "kill", "exec[1]"));
        assert!(v.detail.contains("dynamic loader"), "{}", v.detail);
        let rel = violation(&exec(&["ld.so", "--argv0", "x", "./curl"]), Some(&p)).unwrap();
        assert_eq!(rel.path, "/usr/bin/curl", "relative to the exec's cwd");
        assert!(violation(&exec(&["ld.so", "/usr/bin/ls"]), Some(&p)).is_none(), "an allowed program");
        assert!(violation(&exec(&["ld.so", "--list"]), Some(&p)).is_none(), "no program");
    }
}
