//! Planned sandboxes kept for the next session under the same policy.
//!
//! Planning a session's Landlock domain walks the directories on the way to every
//! rule (the self-protection table's included) and opens each granted path: a few
//! milliseconds, the largest step of a launch. `landlock_restrict_self` only reads
//! the ruleset it fills, so one ruleset can confine any number of sessions. A plan
//! is reused only while a fresh one would come out the same:
//!
//! - the same confining policy (the grant's policy plus self-protection, the block
//!   devices of this moment included), compared whole;
//! - every directory it listed and file it read still has the [`Stamp`] taken just
//!   before it was read: creating, removing or renaming an entry changes the
//!   directory's mtime and ctime, replacing the path changes its inode;
//! - no stamp is *racy*: a change less than [`RACY`] before planning may share its
//!   timestamp with a later change on a coarse clock, so such a plan serves only the
//!   session it was made for;
//! - the mount table has not changed since (a mount over a listed path moves what
//!   the paths mean without touching a stamp): `/proc/self/mountinfo` polls with
//!   `POLLPRI` after any change, and any change drops every kept plan;
//! - it is younger than [`MAX_AGE`].
//!
//! Why the stamps are enough: Landlock rules hold inodes. A granted inode changes
//! path only by a rename, which changes the directory it leaves, and every granted
//! path is an entry of a directory the plan listed (or `/`, or a program's
//! interpreter, whose grant is only the right to execute it). A hard link keeps the
//! grant on the new name with or without reuse: that limit is Landlock's (see
//! `warrant_policy::sandbox`).

use std::fs::File;
use std::io::Read as _;
use std::os::fd::AsRawFd as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use warrant_policy::Policy;

use super::sandbox::{Sandbox, Stamp, confining};

/// How long a plan is kept at most.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// A stamp this close to (or after) the moment planning began is not trusted to
/// show the next change.
pub const RACY: Duration = Duration::from_millis(100);

/// Plans kept at most (one per policy in use, in practice).
const KEPT: usize = 8;

/// Where a session's sandbox came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// Planned for this session.
    Fresh(Fresh),
    /// A kept plan, made this long ago.
    Reused(Duration),
}

/// Why a plan was made rather than reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fresh {
    /// No plan kept for this policy.
    First,
    /// The kept plan was older than [`MAX_AGE`].
    Expired,
    /// What the kept plan read has changed.
    Changed(std::path::PathBuf),
    /// The mount table changed.
    Mounts,
}

impl std::fmt::Display for Planned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Planned::Reused(age) => write!(f, "reused ({} ms old)", age.as_millis()),
            Planned::Fresh(Fresh::First) => f.write_str("fresh"),
            Planned::Fresh(Fresh::Expired) => f.write_str("fresh (the kept plan expired)"),
            Planned::Fresh(Fresh::Changed(p)) => write!(f, "fresh ({} changed)", p.display()),
            Planned::Fresh(Fresh::Mounts) => f.write_str("fresh (the mounts changed)"),
        }
    }
}

struct Kept {
    policy: Policy,
    sandbox: Arc<Sandbox>,
    made: Instant,
}

#[derive(Default)]
struct Inner {
    kept: Vec<Kept>,
    mounts: Option<MountWatch>,
}

/// The kept plans. Cheap to share: one per agent.
#[derive(Default)]
pub struct Plans {
    inner: Mutex<Inner>,
}

impl Plans {
    /// The sandbox for a session under `policy`: a kept plan when it still holds,
    /// else a fresh one (kept for the next session when it can be trusted to be).
    /// Blocking: run it off the async threads.
    pub fn sandbox(&self, policy: Option<&Policy>, agent_paths: &[String]) -> Result<(Arc<Sandbox>, Planned)> {
        let policy = confining(policy, agent_paths);
        let why = match self.kept(&policy) {
            Ok(found) => return Ok(found),
            Err(why) => why,
        };
        let began = SystemTime::now();
        let sandbox = Arc::new(Sandbox::prepare(&policy)?);
        if !racy(sandbox.read(), began) {
            self.keep(policy, Arc::clone(&sandbox));
        }
        Ok((sandbox, Planned::Fresh(why)))
    }

    /// The kept plan for `policy` if it still holds (dropping it if not).
    fn kept(&self, policy: &Policy) -> Result<(Arc<Sandbox>, Planned), Fresh> {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mounts_changed = inner.mounts.as_ref().is_none_or(MountWatch::changed);
        if mounts_changed {
            let had = !inner.kept.is_empty();
            inner.kept.clear();
            // A watch that cannot be made keeps nothing: every launch plans afresh.
            inner.mounts = MountWatch::new();
            if had {
                return Err(Fresh::Mounts);
            }
        }
        let Some(i) = inner.kept.iter().position(|k| k.policy == *policy) else {
            return Err(Fresh::First);
        };
        let age = inner.kept[i].made.elapsed();
        if age > MAX_AGE {
            inner.kept.swap_remove(i);
            return Err(Fresh::Expired);
        }
        if let Some(changed) = first_changed(inner.kept[i].sandbox.read()) {
            inner.kept.swap_remove(i);
            return Err(Fresh::Changed(changed));
        }
        Ok((Arc::clone(&inner.kept[i].sandbox), Planned::Reused(age)))
    }

    fn keep(&self, policy: Policy, sandbox: Arc<Sandbox>) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.mounts.is_none() {
            return;
        }
        inner.kept.retain(|k| k.policy != policy && k.made.elapsed() <= MAX_AGE);
        if inner.kept.len() >= KEPT
            && let Some(oldest) = inner.kept.iter().enumerate().min_by_key(|(_, k)| k.made).map(|(i, _)| i)
        {
            inner.kept.swap_remove(oldest);
        }
        inner.kept.push(Kept {
            policy,
            sandbox,
            made: Instant::now(),
        });
    }
}

/// The first of `read` whose stamp is not what it was.
fn first_changed(read: &[Stamp]) -> Option<std::path::PathBuf> {
    read.iter().find(|s| Stamp::take(&s.path) != **s).map(|s| s.path.clone())
}

/// Whether any stamp's times are too close to `began` to show the next change.
fn racy(read: &[Stamp], began: SystemTime) -> bool {
    let since = |t: (i64, i64)| -> Option<SystemTime> {
        let secs = u64::try_from(t.0).ok()?;
        let nanos = u32::try_from(t.1).ok()?;
        UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
    };
    let limit = began.checked_sub(RACY).unwrap_or(UNIX_EPOCH);
    read.iter().filter_map(|s| s.seen).any(|seen| {
        [seen.mtime, seen.ctime].into_iter().any(|t| since(t).is_none_or(|t| t >= limit))
    })
}

/// `/proc/self/mountinfo`, read to the end: it then polls with `POLLPRI` once the
/// mount table changes.
struct MountWatch {
    file: File,
}

impl MountWatch {
    fn new() -> Option<MountWatch> {
        let mut file = File::open("/proc/self/mountinfo").ok()?;
        let mut sink = Vec::new();
        file.read_to_end(&mut sink).ok()?;
        Some(MountWatch { file })
    }

    /// Whether the mount table changed since the watch was made (or cannot tell).
    fn changed(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLPRI,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        let n = unsafe { libc::poll(&raw mut pfd, 1, 0) };
        n != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::sandbox::Seen;
    use std::path::Path;

    fn dir_tree() -> tempfile::TempDir {
        // Not in /tmp: the plan lists the tree's ancestors, and a busy /tmp would
        // make the reuse below depend on what else runs.
        let t = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        for d in ["a/deny", "a/open", "b"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        t
    }

    #[test]
    fn a_stamp_changes_with_an_entry_created_removed_or_renamed() {
        let t = dir_tree();
        let a = t.path().join("a");
        let before = Stamp::take(&a);
        assert!(before.seen.is_some());
        assert_eq!(first_changed(std::slice::from_ref(&before)), None);
        std::fs::rename(a.join("open"), a.join("deny2")).unwrap();
        assert_eq!(first_changed(std::slice::from_ref(&before)), Some(a.clone()));
        let before = Stamp::take(&a);
        std::fs::write(a.join("new"), "").unwrap();
        assert_eq!(first_changed(std::slice::from_ref(&before)), Some(a.clone()));
        let before = Stamp::take(&a);
        std::fs::remove_file(a.join("new")).unwrap();
        assert_eq!(first_changed(std::slice::from_ref(&before)), Some(a.clone()));
        // Replaced by another directory with the same times: the inode differs.
        let mut faked = Stamp::take(&a);
        if let Some(seen) = faked.seen.as_mut() {
            seen.ino ^= 1;
        }
        assert_eq!(first_changed(&[faked]), Some(a.clone()));
        // Gone.
        let gone = t.path().join("b");
        let before = Stamp::take(&gone);
        std::fs::remove_dir(&gone).unwrap();
        assert_eq!(first_changed(&[before]), Some(gone));
    }

    #[test]
    fn a_recent_change_makes_a_plan_racy() {
        let at = |secs: i64| Stamp {
            path: Path::new("/x").to_path_buf(),
            seen: Some(Seen {
                dev: 1,
                ino: 2,
                mtime: (secs, 0),
                ctime: (secs, 0),
            }),
        };
        let began = UNIX_EPOCH + Duration::from_secs(1000);
        assert!(!racy(&[at(999)], began));
        assert!(racy(&[at(1000)], began), "the same second may hide the next change");
        assert!(racy(&[at(2000)], began), "a clock set back");
        assert!(racy(&[at(-5)], began), "a time before the epoch is not trusted");
        assert!(!racy(&[Stamp { path: "/gone".into(), seen: None }], began));
    }

    /// End to end over the real filesystem and the real Landlock: the second session
    /// under one policy reuses the plan; a rename in a listed directory, an expired
    /// plan, another policy each get a fresh one.
    #[test]
    fn plans_are_reused_until_what_they_read_changes() {
        let t = dir_tree();
        let root = t.path().to_str().unwrap();
        let yaml = format!(
            "name: p\nmax_ttl: 1h\ndefault: allow\nfiles: [{{path: {root}/a/deny/, access: write, action: deny}}]\n"
        );
        let policy = Policy::from_yaml(&yaml, "p.yaml").unwrap();
        // Older than RACY, so the first plan is kept.
        std::thread::sleep(RACY * 2);
        let plans = Plans::default();
        let (first, how) = plans.sandbox(Some(&policy), &[]).unwrap();
        assert_eq!(how, Planned::Fresh(Fresh::First));
        let (again, how) = plans.sandbox(Some(&policy), &[]).unwrap();
        assert!(matches!(how, Planned::Reused(_)), "{how}");
        assert!(Arc::ptr_eq(&first, &again));
        assert!(first.read().iter().any(|s| s.path == t.path().join("a")), "{:?}", first.read());

        std::fs::rename(t.path().join("a/open"), t.path().join("a/moved")).unwrap();
        let (_, how) = plans.sandbox(Some(&policy), &[]).unwrap();
        assert_eq!(how, Planned::Fresh(Fresh::Changed(t.path().join("a"))));

        let other = Policy::from_yaml(&yaml.replace("name: p", "name: q"), "q.yaml").unwrap();
        let (_, how) = plans.sandbox(Some(&other), &[]).unwrap();
        assert_eq!(how, Planned::Fresh(Fresh::First));
    }
}
