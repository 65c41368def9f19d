//! Killing a session's whole process tree, and proving it is gone.
//!
//! By the time this runs, the caller has already marked the grant or session dead in
//! the kernel maps, so every tagged task dies at its next hook regardless. Then:
//!
//! 1. `cgroup.kill` on the session cgroup: one atomic SIGKILL for every member,
//!    including children forked while it runs;
//! 2. a sweep by tag: every process on the host whose kernel tag names this
//!    session but which left the cgroup gets SIGKILL through a pidfd, so a reused
//!    PID can never be hit;
//! 3. wait for the cgroup to empty (cheap: one small file), sweep again, and stop
//!    when a full sweep finds nothing and the cgroup is empty.
//!
//! Sweeps read all of `/proc`, which is slow while thousands of processes are dying,
//! so they run only at the start, after the cgroup empties, and on a slow timer.
//! The report counts distinct processes and the time from decision to the last one
//! gone.

use std::{
    collections::{HashMap, HashSet},
    os::fd::{AsFd, OwnedFd},
    time::{Duration, Instant},
};

use tracing::warn;

use warrant_common::TaskTag;

use crate::{cgroup::SessionCgroup, loader::TaskTags, procfs};

/// What a kill did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KillOutcome {
    /// Distinct processes killed.
    pub killed: u32,
    /// From the start of the kill to the last process gone.
    pub elapsed: Duration,
    /// Processes still alive at the deadline (0 unless something is badly wrong).
    pub survivors: u32,
}

/// How long to keep at it before reporting survivors.
const DEADLINE: Duration = Duration::from_secs(30);
/// Longest wait between two sweeps while the cgroup is still emptying.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Kills every process of session `session_id`. `members` are the processes the
/// session had when the decision was made (the kernel may have killed some since);
/// `started` is when it was made, so the elapsed time covers the whole kill.
pub fn kill_tree(
    cgroup: Option<&SessionCgroup>,
    tags: &TaskTags,
    session_id: u64,
    members: HashSet<u32>,
    started: Instant,
) -> KillOutcome {
    let mut killed = members;
    if let Some(cg) = cgroup {
        killed.extend(cg.procs());
        if let Err(e) = cg.kill() {
            warn!("{e:#}; relying on the sweep by tag");
        }
    }
    let populated = || cgroup.is_some_and(SessionCgroup::populated);
    let mut last_sweep: Option<Instant> = None;
    let mut pause = Duration::from_micros(100);
    loop {
        let emptied = !populated();
        let sweep_due = last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY);
        if emptied || sweep_due {
            // Thorough once the cgroup is empty: that is the sweep that proves it.
            let alive = tagged_processes(tags, session_id, emptied);
            last_sweep = Some(Instant::now());
            for (pid, fd) in &alive {
                if procfs::kill(fd).is_ok() {
                    killed.insert(*pid);
                }
            }
            if alive.is_empty() && emptied && !populated() {
                return KillOutcome { killed: killed.len() as u32, elapsed: started.elapsed(), survivors: 0 };
            }
            if started.elapsed() > DEADLINE {
                let survivors = alive.len().max(usize::from(populated())) as u32;
                warn!("session {session_id:x}: {survivors} processes survived SIGKILL for {DEADLINE:?}");
                return KillOutcome { killed: killed.len() as u32, elapsed: started.elapsed(), survivors };
            }
            if !alive.is_empty() {
                pause = Duration::from_micros(100);
                continue;
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// Every process on the host, with a pidfd that pins its identity and the tag of
/// its thread-group leader (`None`: untagged). The exit hook deletes a tag, so a
/// tagged leader is alive or exiting, never a zombie.
fn scan(tags: &TaskTags) -> impl Iterator<Item = (u32, OwnedFd, Option<TaskTag>)> + '_ {
    procfs::all_pids().into_iter().filter_map(move |pid| {
        let fd = procfs::pidfd(pid).ok()?;
        let tag = tags.get(fd.as_fd()).ok()?;
        Some((pid, fd, tag))
    })
}

/// Processes tagged with `session_id`, each with its pidfd. `thorough` also looks
/// at the threads of zombie leaders (a process whose main thread exited while
/// others run on carries no leader tag).
pub fn tagged_processes(tags: &TaskTags, session_id: u64, thorough: bool) -> Vec<(u32, OwnedFd)> {
    scan(tags)
        .filter(|(pid, _, tag)| match tag {
            Some(tag) => tag.session_id == session_id,
            None => thorough && zombie_leader_with_tagged_threads(tags, *pid, session_id),
        })
        .map(|(pid, fd, _)| (pid, fd))
        .collect()
}

/// Every tagged process on the host, by session.
pub fn census(tags: &TaskTags) -> HashMap<u64, Vec<u32>> {
    let mut out: HashMap<u64, Vec<u32>> = HashMap::new();
    for (pid, _, tag) in scan(tags) {
        if let Some(tag) = tag {
            out.entry(tag.session_id).or_default().push(pid);
        }
    }
    out
}

fn zombie_leader_with_tagged_threads(tags: &TaskTags, pid: u32, session_id: u64) -> bool {
    if !procfs::stat(pid).is_some_and(|s| s.is_zombie()) {
        return false; // a live, untagged leader: the common case
    }
    procfs::threads(pid).into_iter().filter(|t| *t != pid).any(|tid| {
        procfs::thread_pidfd(tid)
            .ok()
            .and_then(|fd| tags.get(fd.as_fd()).ok().flatten())
            .is_some_and(|tag| tag.session_id == session_id)
    })
}
