//! Killing a session's whole process tree, and proving it is gone.
//!
//! By the time this runs, the caller has already marked the grant or session dead in
//! the kernel maps, so every tagged task dies at its next hook regardless. Then:
//!
//! 1. `cgroup.kill` on the session cgroup: one atomic SIGKILL for every member,
//!    including children forked while it runs;
//! 2. a sweep by tag: every process on the host whose kernel tag names this
//!    session (it may have left the cgroup) gets SIGKILL through a pidfd, so a
//!    reused PID can never be hit;
//! 3. repeat until no tagged process is alive and the cgroup is empty.
//!
//! The report counts distinct processes and the time from decision to the last one
//! gone.

use std::{
    collections::HashSet,
    os::fd::AsFd,
    time::{Duration, Instant},
};

use tracing::warn;

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

/// How long to keep sweeping before reporting survivors.
const DEADLINE: Duration = Duration::from_secs(10);

/// Kills every process of session `session_id`. `started` is when the decision was
/// made (the map was already updated), so the elapsed time covers the whole kill.
pub fn kill_tree(cgroup: Option<&SessionCgroup>, tags: &TaskTags, session_id: u64, started: Instant) -> KillOutcome {
    let mut killed: HashSet<u32> = HashSet::new();
    if let Some(cg) = cgroup {
        killed.extend(cg.procs());
        if let Err(e) = cg.kill() {
            warn!("{e:#}; relying on the sweep by tag");
        }
    }
    let mut pause = Duration::from_micros(200);
    loop {
        let alive = tagged_processes(tags, session_id);
        for (pid, fd) in &alive {
            if procfs::kill(fd).is_ok() {
                killed.insert(*pid);
            }
        }
        let populated = cgroup.is_some_and(SessionCgroup::populated);
        if alive.is_empty() && !populated {
            return KillOutcome { killed: killed.len() as u32, elapsed: started.elapsed(), survivors: 0 };
        }
        if started.elapsed() > DEADLINE {
            let survivors = alive.len().max(usize::from(populated)) as u32;
            warn!("session {session_id:x}: {survivors} processes survived SIGKILL for {DEADLINE:?}");
            return KillOutcome { killed: killed.len() as u32, elapsed: started.elapsed(), survivors };
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Live (non-zombie) processes tagged with `session_id`, each with a pidfd that
/// pins its identity.
pub fn tagged_processes(tags: &TaskTags, session_id: u64) -> Vec<(u32, std::os::fd::OwnedFd)> {
    let mut out = Vec::new();
    for pid in procfs::all_pids() {
        let Ok(fd) = procfs::pidfd(pid) else { continue };
        let tagged = match tags.get(fd.as_fd()) {
            Ok(Some(tag)) => tag.session_id == session_id,
            // The leader may have exited while threads run on (its tag went with
            // it): look at the threads.
            Ok(None) => thread_tagged(tags, pid, session_id),
            Err(_) => false,
        };
        if tagged && procfs::stat(pid).is_some_and(|s| !s.is_zombie()) {
            out.push((pid, fd));
        }
    }
    out
}

fn thread_tagged(tags: &TaskTags, pid: u32, session_id: u64) -> bool {
    if !procfs::stat(pid).is_some_and(|s| s.is_zombie()) {
        return false; // an untagged live leader: the common, untagged case
    }
    procfs::threads(pid).into_iter().filter(|t| *t != pid).any(|tid| {
        procfs::thread_pidfd(tid)
            .ok()
            .and_then(|fd| tags.get(fd.as_fd()).ok().flatten())
            .is_some_and(|tag| tag.session_id == session_id)
    })
}
