//! The agent's model of this host: grants, sessions and the kernel maps that
//! enforce them, and every action on them (issue, start, attach, kill, revoke,
//! expire, reap).
//!
//! Order matters for safety. The kernel fails closed (an unknown slot kills), so
//! state is written before tags: grant slot, then session slot, then the tags, then
//! the cgroup move. Ending goes the other way: the map says "dead" first (the kernel
//! kills from then on, agent or not), then `cgroup.kill` and the sweep.

use std::{
    collections::{HashMap, HashSet},
    os::fd::{AsFd, OwnedFd},
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use tracing::{info, warn};
use warrant_audit::EventHub;
use warrant_common::{
    GrantState, SessionState, TaskTag,
    policy::{self, PolicyState},
    maps::{GRANT_SLOTS, LOST_KINDS, SESSION_FLAGS, SESSION_GAP_KILL, SESSION_SLOTS, SESSION_TASKS_KILL, STATE_ACTIVE, STATE_EXPIRED, STATE_KILLED, STATE_REVOKED, SessionTasks},
};
use warrant_proto::v1::{self as pb, event::Event as Kind};

use crate::{
    cgroup::SessionCgroup,
    clock,
    config::Config,
    ids,
    kill::{self, KillOutcome, census},
    loader::{Kernel, TaskTags},
    events::{EventSink, Envelope, GrantInfo, Stats, Subjects, agent_event},
    procfs,
    registry::{Grant, GrantError, GrantStatus, Registry, Session, SessionStatus},
};

mod tokens;

/// Why a request failed; `api.rs` turns these into gRPC statuses.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Invalid(String),
    /// Something changed underneath the request; running it again may work.
    #[error("{0}")]
    Conflict(String),
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

/// How long after its end a session's lost counts are still read.
pub const LOSS_GRACE: Duration = Duration::from_secs(10);

/// One session's lost records, as the kernel counted them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLoss {
    pub session: u64,
    pub grant: u64,
    pub live: bool,
    /// The policy says `on_audit_gap: kill-session`.
    pub kill_on_gap: bool,
    /// By `EventKind` number.
    pub by_kind: [u64; LOST_KINDS],
}

/// Why a session is being killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    Expiry,
    Revoke,
    Operator,
    /// A `kill-session` rule of the grant's policy.
    Policy,
    /// `on_audit_gap: kill-session`: the kernel could not record what the session did.
    AuditGap,
}

impl KillReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expiry => "expiry",
            Self::Revoke => "revoke",
            Self::Operator => "operator",
            Self::Policy => "policy",
            Self::AuditGap => "audit-gap",
        }
    }
}

/// A session about to be killed, with the members it had when that was decided.
type Doomed = (Session, HashSet<u32>);

/// A session's kill, for reports.
#[derive(Debug, Clone)]
pub struct SessionKill {
    pub session: String,
    pub outcome: KillOutcome,
}

struct Inner {
    registry: Registry,
    kernel: Kernel,
}

pub struct Host {
    config: Config,
    /// Directory holding one cgroup per session.
    cgroup_root: PathBuf,
    /// The cgroup v2 mount, to tell whether a process is still in its session cgroup.
    cgroup_mount: PathBuf,
    inner: Mutex<Inner>,
    /// Task tags, usable without the lock (sweeps take a while).
    tags: Arc<TaskTags>,
    sink: EventSink,
    pub hub: EventHub,
    pub subjects: Subjects,
    pub stats: Arc<Stats>,
    pub envelope: Envelope,
    /// Wakes the expiry task when the next expiry may have changed.
    pub expiry_changed: tokio::sync::Notify,
}

impl Host {
    #[expect(clippy::too_many_arguments, reason = "wired once, in main")]
    pub fn new(
        config: Config,
        cgroup_mount: PathBuf,
        cgroup_root: PathBuf,
        registry: Registry,
        kernel: Kernel,
        sink: EventSink,
        hub: EventHub,
        subjects: Subjects,
        stats: Arc<Stats>,
        envelope: Envelope,
    ) -> anyhow::Result<Self> {
        let tags = Arc::new(kernel.task_tags()?);
        {
            let mut s = subjects.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            for g in registry.grants.values() {
                s.insert(ids::grant(g.id), grant_info(g));
            }
        }
        Ok(Self {
            config,
            cgroup_root,
            cgroup_mount,
            inner: Mutex::new(Inner { registry, kernel }),
            tags,
            sink,
            hub,
            subjects,
            stats,
            envelope,
            expiry_changed: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn save(&self, inner: &Inner) {
        if let Err(e) = inner.registry.save(&self.config.state_file()) {
            warn!("{e:#}");
        }
    }

    /// Makes the kernel maps agree with the registry after a (re)start: known active
    /// grants and live sessions are (re)written, every other slot is cleared, so a
    /// task tagged by an unknown predecessor dies at its next hook (fail closed).
    pub fn reconcile(&self) -> anyhow::Result<()> {
        let mut inner = self.lock();
        let Inner { registry, kernel } = &mut *inner;
        let mut grant_slots = HashMap::new();
        for g in registry.grants.values().filter(|g| registry.holds_kernel_slots(g)) {
            grant_slots.insert(g.slot, grant_state(g, STATE_ACTIVE));
        }
        for slot in 0..GRANT_SLOTS {
            let want = grant_slots.remove(&slot).unwrap_or_default();
            if kernel.grants.get(&slot, 0).unwrap_or_default() != want {
                kernel.grants.set(slot, want, 0).with_context(|| format!("failed to write GRANTS[{slot}]"))?;
            }
        }
        let mut session_slots = HashMap::new();
        for s in registry.live_sessions() {
            session_slots.insert(s.slot, SessionState { state: STATE_ACTIVE, max_tasks: s.max_tasks, session_id: s.id });
        }
        for slot in 0..SESSION_SLOTS {
            let want = session_slots.remove(&slot).unwrap_or_default();
            if kernel.sessions.get(&slot, 0).unwrap_or_default() != want {
                kernel.sessions.set(slot, want, 0).with_context(|| format!("failed to write SESSIONS[{slot}]"))?;
            }
        }
        // Policies: compile active ones again (idempotent), drop entries of any other slot.
        let mut used = HashSet::new();
        for g in registry.grants.values().filter(|g| registry.holds_kernel_slots(g) && g.policy_slot != 0) {
            let Some(text) = &g.policy_yaml else { continue };
            match warrant_policy::Policy::from_yaml(text, &g.policy_name) {
                Ok(p) => {
                    install_policy(kernel, &p, g.policy_slot).map_err(|e| anyhow!("{e}"))?;
                    used.insert(g.policy_slot);
                }
                Err(e) => warn!("grant {}: its stored policy no longer parses: {e}", ids::grant(g.id)),
            }
        }
        let stale: Vec<_> = kernel
            .net_rules
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !used.contains(&u32::from_be_bytes(k.data().policy)))
            .collect();
        for k in stale {
            let _ = kernel.net_rules.remove(&k);
        }
        let live = registry.live_sessions().count();
        kernel.set_syscall_hook(live > 0)?;
        info!(
            grants = registry.grants.values().filter(|g| g.status == GrantStatus::Active).count(),
            sessions = live,
            "kernel maps reconciled with the state file"
        );
        Ok(())
    }

    /// Issues a grant (single-host mode: root on this host is the issuer), with an
    /// optional policy `(yaml, file name)` compiled into the kernel maps before the
    /// grant becomes usable.
    pub async fn issue_grant(
        &self,
        subject: &str,
        ttl: Duration,
        reason: &str,
        by: &str,
        policy: Option<(&str, &str)>,
    ) -> Result<Grant, HostError> {
        let parsed = match policy {
            Some((text, file)) => Some(
                warrant_policy::Policy::from_yaml(text, file).map_err(|e| GrantError::Policy(e.to_string()))?,
            ),
            None => None,
        };
        if let Some(p) = &parsed
            && ttl > p.max_ttl
        {
            return Err(GrantError::Policy(format!(
                "invalid ttl {}: policy {} allows at most {}",
                humantime::format_duration(ttl),
                p.name,
                humantime::format_duration(p.max_ttl)
            ))
            .into());
        }
        let grant = {
            let mut inner = self.lock();
            let mut grant = inner.registry.issue(subject, ttl, reason, by, self.config.max_ttl)?;
            if let (Some(p), Some((text, _))) = (&parsed, policy) {
                let slot = match inner.registry.free_policy_slot() {
                    Ok(s) => s,
                    Err(e) => {
                        inner.registry.grants.remove(&grant.id);
                        return Err(e.into());
                    }
                };
                if let Err(e) = install_policy(&mut inner.kernel, p, slot) {
                    inner.registry.grants.remove(&grant.id);
                    return Err(e);
                }
                grant.policy_slot = slot;
                grant.policy_name = p.name.clone();
                grant.policy_yaml = Some(text.to_owned());
                inner.registry.grants.insert(grant.id, grant.clone());
            }
            if let Err(e) = inner.kernel.grants.set(grant.slot, grant_state(&grant, STATE_ACTIVE), 0) {
                inner.registry.grants.remove(&grant.id);
                return Err(anyhow!("failed to write the grant into the kernel map: {e}").into());
            }
            self.save(&inner);
            grant
        };
        self.subjects
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(ids::grant(grant.id), grant_info(&grant));
        self.expiry_changed.notify_one();
        info!(grant = %ids::grant(grant.id), subject = %grant.subject, ttl = ?ttl, policy = %grant.policy_name, "grant issued");
        self.emit(grant_event(&grant, "issued", reason, by)).await;
        Ok(grant)
    }

    /// Replaces the policy of an active grant, for its live sessions too. The new
    /// rules are written under a fresh slot, then one map write points the grant at
    /// it, so a connect sees the whole old policy or the whole new one; then the
    /// old slot is freed.
    pub async fn update_policy(
        &self,
        grant_id: &str,
        text: &str,
        file: &str,
        by: &str,
    ) -> Result<(Grant, Vec<String>), HostError> {
        let p = warrant_policy::Policy::from_yaml(text, file).map_err(|e| GrantError::Policy(e.to_string()))?;
        let mut warnings = Vec::new();
        let grant = {
            let mut inner = self.lock();
            let old = inner.registry.usable_grant(grant_id)?.clone();
            let lifetime = Duration::from_nanos(old.expires_at_unix_ns.saturating_sub(old.issued_at_unix_ns).max(0) as u64);
            if lifetime > p.max_ttl {
                return Err(GrantError::Policy(format!(
                    "grant {} lasts {}, policy {} allows at most {}",
                    ids::grant(old.id),
                    humantime::format_duration(Duration::from_secs(lifetime.as_secs())),
                    p.name,
                    humantime::format_duration(p.max_ttl)
                ))
                .into());
            }
            let slot = inner.registry.free_policy_slot()?;
            install_policy(&mut inner.kernel, &p, slot)?;
            let old_policy = old.policy_yaml.as_deref().and_then(|t| warrant_policy::Policy::from_yaml(t, "old").ok());
            if landlock_part(old_policy.as_ref()) != landlock_part(Some(&p)) {
                let confined: Vec<String> = inner
                    .registry
                    .live_sessions()
                    .filter(|s| s.grant == old.id && s.sandbox != SANDBOX_NONE)
                    .map(|s| ids::session(s.id))
                    .collect();
                if !confined.is_empty() {
                    warnings.push(format!(
                        "the new exec and file rules are enforced in the kernel for new sessions; live session{} {} keep{} the Landlock domain {} started with (a domain can only be entered, never changed from outside), where the agent reports what the new rules deny (prevented: false) and carries out their kill rules; network rules changed for all sessions",
                        if confined.len() == 1 { "" } else { "s" },
                        confined.join(", "),
                        if confined.len() == 1 { "s" } else { "" },
                        if confined.len() == 1 { "it" } else { "they" },
                    ));
                }
            }
            let mut new = old.clone();
            new.policy_slot = slot;
            new.policy_name = p.name.clone();
            new.policy_yaml = Some(text.to_owned());
            if let Err(e) = inner.kernel.grants.set(new.slot, grant_state(&new, STATE_ACTIVE), 0) {
                remove_policy(&mut inner.kernel, &new);
                return Err(anyhow!("failed to point grant {} at its new policy: {e}", ids::grant(new.id)).into());
            }
            remove_policy(&mut inner.kernel, &old);
            inner.registry.grants.insert(new.id, new.clone());
            self.save(&inner);
            new
        };
        self.subjects
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(ids::grant(grant.id), grant_info(&grant));
        info!(grant = %ids::grant(grant.id), policy = %grant.policy_name, "grant policy replaced");
        let mut reason = format!("policy {}", grant.policy_name);
        for w in &warnings {
            reason.push_str("; ");
            reason.push_str(w);
        }
        self.emit(grant_event(&grant, "policy replaced", &reason, by)).await;
        Ok((grant, warnings))
    }

    /// Starts a session rooted at `pids[0]` that the agent did not confine
    /// (`attach`, or a caller that tagged itself): [`Host::open_session`], then
    /// [`Host::announce`] with sandbox `none`.
    pub async fn start_session(
        &self,
        grant_id: &str,
        pids: &[u32],
        command: Vec<String>,
        how: &str,
        caller: (u32, u32),
    ) -> Result<pb::Session, HostError> {
        let id = self.open_session(grant_id, pids, command, how, None, None)?;
        self.announce(id, SANDBOX_NONE, caller).await
    }

    /// Opens a session rooted at `pids[0]`: tags every thread of every pid, moves
    /// them into a fresh cgroup. `pids` is the process and, for attach, its
    /// descendants. Nothing is on the record until [`Host::announce`]: the agent
    /// announces a session it confines once it has read the confinement back.
    /// `planned` is the policy digest a sandbox was built from; a grant whose
    /// policy changed since is refused.
    pub fn open_session(
        &self,
        grant_id: &str,
        pids: &[u32],
        command: Vec<String>,
        how: &str,
        planned: Option<&str>,
        born_in: Option<BornIn>,
    ) -> Result<u64, HostError> {
        let root = *pids
            .first()
            .ok_or_else(|| HostError::Invalid("no process to attach".into()))?;
        {
            let mut inner = self.lock();
            let grant = inner.registry.usable_grant(grant_id)?.clone();
            if let Some(digest) = planned
                && digest != policy_digest(&grant)
            {
                return Err(HostError::Conflict(format!(
                    "the policy of grant {} changed while the session was starting; run the command again",
                    ids::grant(grant.id)
                )));
            }
            let slot = inner.registry.free_session_slot()?;
            let born = born_in.is_some();
            let BornIn { id, cgroup } = match born_in {
                Some(b) => b,
                None => self.session_cgroup()?,
            };
            inner.kernel.reset_session_deaths(slot)?;
            inner.kernel.reset_session_lost(slot)?;
            let max_tasks = task_limit(&grant);
            // The count starts at the threads about to be tagged; the kernel counts
            // every task they create from then on.
            let threads: usize = pids.iter().map(|p| procfs::threads(*p).len()).sum();
            let tasks = SessionTasks { session_id: id, live: i64::try_from(threads).unwrap_or(i64::MAX), refused: 0 };
            inner.kernel.session_tasks.set(slot, tasks, 0).context("failed to write the session's task count")?;
            inner
                .kernel
                .sessions
                .set(slot, SessionState { state: STATE_ACTIVE, max_tasks, session_id: id }, 0)
                .context("failed to write the session into the kernel map")?;
            let tag = TaskTag {
                session_id: id,
                grant_id: grant.id,
                session_slot: slot,
                grant_slot: grant.slot,
                ..TaskTag::default()
            };
            // The syscall hook goes on before the first tag, so nothing is missed.
            inner.kernel.set_syscall_hook(true)?;
            if let Err(e) = tag_processes(&self.tags, pids, &tag) {
                // Untagged or half-tagged: mark the slot dead so whatever was tagged dies.
                let _ = inner.kernel.sessions.set(slot, SessionState::default(), 0);
                let _ = cgroup.remove();
                let live = inner.registry.live_sessions().count();
                let _ = inner.kernel.set_syscall_hook(live > 0);
                return Err(e);
            }
            if !born {
                for pid in pids {
                    if let Err(e) = cgroup.add(*pid) {
                        // The tag is the identity; the cgroup is the fast path.
                        warn!("{e:#}");
                    }
                }
            }
            let session = Session {
                id,
                slot,
                grant: grant.id,
                root_pid: root,
                cgroup: cgroup.path.clone(),
                command,
                how: how.to_owned(),
                caller_uid: 0,
                started_at_unix_ns: clock::wall_ns(),
                status: SessionStatus::Live,
                ended_at_unix_ns: 0,
                end_reason: String::new(),
                sandbox: SANDBOX_NONE.to_owned(),
                max_tasks,
            };
            inner.registry.sessions.insert(id, session);
            // Not saved here: every caller announces the session next (success or
            // failure), and `announce` saves, so a launch pays one state fsync, not
            // two. A crash in between leaves the kernel slot unknown to the next
            // agent, which clears it (the session dies: fail closed).
            Ok(id)
        }
    }

    /// A fresh session id and its cgroup, for a first process forked straight into
    /// it (see `launch::child::spawn`); [`Host::open_session`] takes them over.
    pub fn session_cgroup(&self) -> Result<BornIn, HostError> {
        let id = ids::fresh();
        let cgroup = SessionCgroup::create(&self.cgroup_root, &ids::session(id))?;
        Ok(BornIn { id, cgroup })
    }

    /// Puts an opened session on the record (`session_start`) with what confines
    /// it, as the agent applied and read it back; `caller` is (uid, pid) of who
    /// asked for it. Saves the state: [`Host::open_session`] leaves that to here.
    pub async fn announce(
        &self,
        id: u64,
        sandbox: &str,
        caller: (u32, u32),
    ) -> Result<pb::Session, HostError> {
        let (session, grant) = {
            let mut inner = self.lock();
            let session =
                inner.registry.sessions.get_mut(&id).ok_or_else(|| {
                    HostError::NotFound(format!("no session {}", ids::session(id)))
                })?;
            session.sandbox = sandbox.to_owned();
            session.caller_uid = caller.0;
            let session = session.clone();
            let grant = inner.registry.grants.get(&session.grant).cloned();
            self.save(&inner);
            (session, grant)
        };
        info!(session = %ids::session(session.id), grant = %ids::grant(session.grant), root = session.root_pid, how = %session.how, sandbox, "session started");
        let mut ev = agent_event(Kind::SessionStart(pb::SessionStart {
            command: session.command.clone(),
            root_pid: session.root_pid,
            cgroup: session.cgroup.display().to_string(),
            how: session.how.clone(),
            caller_uid: caller.0,
            caller_pid: caller.1,
            sandbox: session.sandbox.clone(),
        }));
        self.envelope_for(&mut ev, &session);
        self.emit(ev).await;
        Ok(session_pb(&session, grant.as_ref(), Vec::new()))
    }

    /// A grant's policy text and digest, for `warrant exec` to confine itself with.
    pub fn get_policy(&self, grant_id: &str) -> Result<pb::GrantPolicy, HostError> {
        let inner = self.lock();
        let g = inner.registry.usable_grant(grant_id)?;
        Ok(pb::GrantPolicy {
            grant: ids::grant(g.id),
            policy: g.policy_yaml.clone().unwrap_or_default(),
            policy_file: g.policy_name.clone(),
            digest: policy_digest(g),
            protected_paths: self.own_paths(),
        })
    }

    /// The agent's own files: what no session may read or write (see
    /// `warrant_policy::protect`).
    pub fn own_paths(&self) -> Vec<String> {
        let c = &self.config;
        // Not the sockets: Landlock does not govern connecting to them (the gate
        // does), and protecting them would cost the session new files beside them.
        let mut paths = vec![c.state_dir.clone()];
        paths.extend(c.spool_dir.clone());
        paths.extend(c.grant_public_key.clone());
        if let Some(u) = &c.uplink {
            paths.extend([u.ca.clone(), u.cert.clone(), u.key.clone()]);
        }
        paths.iter().map(|p| p.display().to_string()).collect()
    }

    /// Kills one process of a session for a `kill` rule the kernel could only refuse
    /// (file and exec rules live in Landlock, which cannot kill). The pidfd and the
    /// tag check make sure it is still that session's process, not a reused pid.
    pub async fn kill_process(&self, session_id: &str, pid: u32, by: &str) {
        let started = Instant::now();
        let Some(sid) = ids::parse_session(session_id) else { return };
        let Some(fd) = self.member(sid, pid) else { return }; // already gone
        let killed = u32::from(procfs::kill(&fd).is_ok());
        let session = self.lock().registry.sessions.get(&sid).cloned();
        info!(session = session_id, pid, by, "process killed by policy");
        let mut ev = agent_event(Kind::Kill(pb::Kill {
            reason: KillReason::Policy.as_str().into(),
            by: by.into(),
            killed,
            elapsed_us: started.elapsed().as_micros() as u64,
            survivors: 0,
            note: format!("pid {pid}"),
        }));
        if let Some(s) = &session {
            self.envelope_for(&mut ev, s);
        }
        ev.pid = pid;
        self.emit(ev).await;
    }

    /// A pidfd for process `pid` while it is a member of session `sid`: by its
    /// leader's tag, or, when the leader has exited alone (its tag went with it), by
    /// the tag of any thread still running. SIGKILL to either ends the whole process.
    pub fn member(&self, sid: u64, pid: u32) -> Option<OwnedFd> {
        let tagged = |fd: &OwnedFd| matches!(self.tags.get(fd.as_fd()), Ok(Some(t)) if t.session_id == sid);
        if let Ok(fd) = procfs::pidfd(pid)
            && tagged(&fd)
        {
            return Some(fd);
        }
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        threads
            .filter_map(|t| t.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&tid| tid != pid)
            .filter_map(|tid| procfs::thread_pidfd(tid).ok())
            .find(tagged)
    }

    /// The live session whose first process is `pid`.
    pub fn session_rooted_at(&self, pid: u32) -> Option<u64> {
        let inner = self.lock();
        inner
            .registry
            .sessions
            .values()
            .find(|s| s.root_pid == pid && s.status == SessionStatus::Live)
            .map(|s| s.id)
    }

    /// The grant of live session `sid`.
    pub fn live_session_grant(&self, sid: u64) -> Option<u64> {
        let inner = self.lock();
        inner.registry.sessions.get(&sid).filter(|s| s.status == SessionStatus::Live).map(|s| s.grant)
    }

    /// Kills one session's tree (an operator's kill switch, or a policy rule).
    pub async fn kill_session(
        &self,
        session_id: &str,
        reason: KillReason,
        by: &str,
        note: &str,
    ) -> Result<SessionKill, HostError> {
        let started = Instant::now();
        let session = {
            let mut inner = self.lock();
            let id = ids::parse_session(session_id)
                .filter(|id| inner.registry.sessions.contains_key(id))
                .ok_or_else(|| HostError::NotFound(format!("unknown session {}", session_id.trim())))?;
            let s = inner.registry.sessions[&id].clone();
            if s.status != SessionStatus::Live {
                return Err(HostError::Invalid(format!(
                    "session {} already ended ({})",
                    ids::session(id),
                    s.end_reason
                )));
            }
            // Before the map says dead: the kernel's own hooks kill busy members
            // within microseconds, and the report must still count them.
            let members = members(&s);
            inner
                .kernel
                .sessions
                .set(s.slot, SessionState { state: STATE_KILLED, max_tasks: s.max_tasks, session_id: s.id }, 0)
                .context("failed to mark the session dead in the kernel map")?;
            (s, members)
        };
        Ok(self.finish_kill(session.0, session.1, reason, by, note, started).await)
    }

    /// Revokes a grant and kills all its sessions. `reason` is `Revoke` for
    /// `warrant revoke`, `Operator` for `warrant kill --grant`.
    pub async fn revoke_grant(
        &self,
        grant_id: &str,
        reason: KillReason,
        by: &str,
        note: &str,
    ) -> Result<Vec<SessionKill>, HostError> {
        let started = Instant::now();
        let (grant, sessions) = {
            let mut inner = self.lock();
            let g = inner.registry.grant(grant_id)?.clone();
            if g.status != GrantStatus::Active {
                return Err(HostError::Invalid(format!(
                    "grant {} is already {}",
                    ids::grant(g.id),
                    if g.status == GrantStatus::Expired { "expired" } else { "revoked" }
                )));
            }
            let sessions: Vec<Doomed> = inner
                .registry
                .live_sessions()
                .filter(|s| s.grant == g.id)
                .map(|s| (s.clone(), members(s)))
                .collect();
            inner
                .kernel
                .grants
                .set(g.slot, grant_state(&g, STATE_REVOKED), 0)
                .context("failed to mark the grant dead in the kernel map")?;
            remove_policy(&mut inner.kernel, &g);
            let gm = inner.registry.grants.get_mut(&g.id).ok_or_else(|| anyhow!("grant vanished"))?;
            gm.status = GrantStatus::Revoked;
            gm.ended_at_unix_ns = clock::wall_ns();
            gm.end_reason = note.to_owned();
            self.save(&inner);
            (g, sessions)
        };
        self.expiry_changed.notify_one();
        self.emit(grant_event(&grant, "revoked", note, by)).await;
        Ok(self.kill_all(sessions, reason, by, note, started).await)
    }

    /// The members of every session whose grant expires within `within`, taken
    /// just before expiry: the kernel kills busy members on its own clock, before
    /// the agent wakes, and the report must still count them.
    pub fn snapshot_due(&self, within: Duration) -> HashMap<u64, HashSet<u32>> {
        let inner = self.lock();
        let horizon = clock::boot_ns() + within.as_nanos() as u64;
        let due: HashSet<u64> = inner
            .registry
            .grants
            .values()
            .filter(|g| g.status == GrantStatus::Active && g.expires_at_boot_ns <= horizon)
            .map(|g| g.id)
            .collect();
        inner.registry.live_sessions().filter(|s| due.contains(&s.grant)).map(|s| (s.id, members(s))).collect()
    }

    /// Expires every grant whose time is up and kills its sessions. `snapshots`
    /// holds members taken just before expiry (see [`Self::snapshot_due`]).
    pub async fn expire_due(&self, snapshots: &HashMap<u64, HashSet<u32>>) {
        let started = Instant::now();
        let due: Vec<(Grant, Vec<Doomed>)> = {
            let mut inner = self.lock();
            let ids = inner.registry.due_grants(clock::boot_ns());
            let mut out = Vec::new();
            for id in ids {
                let Some(g) = inner.registry.grants.get_mut(&id) else { continue };
                g.status = GrantStatus::Expired;
                g.ended_at_unix_ns = clock::wall_ns();
                g.end_reason = "expired".into();
                g.cut_off = expiry_drops(g);
                let g = g.clone();
                let sessions: Vec<Doomed> = inner
                    .registry
                    .live_sessions()
                    .filter(|s| s.grant == g.id)
                    .map(|s| (s.clone(), snapshots.get(&s.id).cloned().unwrap_or_else(|| members(s))))
                    .collect();
                if g.cut_off && !sessions.is_empty() {
                    // The kernel sees the expiry on its own clock and cuts the network
                    // (the policy's flag); the slots stay until the sessions end.
                } else {
                    // The kernel already kills on its own clock; this makes it explicit.
                    if let Err(e) = inner.kernel.grants.set(g.slot, grant_state(&g, STATE_EXPIRED), 0) {
                        warn!("failed to mark grant {} expired in the kernel map: {e}", ids::grant(g.id));
                    }
                    remove_policy(&mut inner.kernel, &g);
                }
                out.push((g, sessions));
            }
            if !out.is_empty() {
                self.save(&inner);
            }
            out
        };
        for (grant, sessions) in due {
            info!(grant = %ids::grant(grant.id), sessions = sessions.len(), cut_off = grant.cut_off, "grant expired");
            if grant.cut_off {
                self.emit(grant_event(&grant, "expired", "on_expiry: drop: sessions keep running, cut off from the network", "expiry timer"))
                    .await;
                for (s, _) in sessions {
                    let sid = ids::session(s.id);
                    if let Err(e) = self.drop_sockets(&sid, "grant expired (on_expiry: drop)").await {
                        warn!("dropping the sockets of session {sid} at expiry failed: {e}");
                    }
                }
                continue;
            }
            self.emit(grant_event(&grant, "expired", "", "expiry timer")).await;
            self.kill_all(sessions, KillReason::Expiry, "expiry timer", "", started).await;
        }
    }

    /// How long until the next grant expires (`None`: no active grant).
    pub fn next_expiry_in(&self) -> Option<Duration> {
        let next = self.lock().registry.next_expiry()?;
        Some(Duration::from_nanos(next.saturating_sub(clock::boot_ns())))
    }

    async fn kill_all(
        &self,
        sessions: Vec<Doomed>,
        reason: KillReason,
        by: &str,
        note: &str,
        started: Instant,
    ) -> Vec<SessionKill> {
        let kills = sessions.into_iter().map(|(s, m)| self.finish_kill(s, m, reason, by, note, started));
        futures::future::join_all(kills).await
    }

    /// The part of a kill after the map says "dead": cgroup.kill, sweep, record.
    async fn finish_kill(
        &self,
        session: Session,
        members: HashSet<u32>,
        reason: KillReason,
        by: &str,
        note: &str,
        started: Instant,
    ) -> SessionKill {
        let tags = Arc::clone(&self.tags);
        let cgroup = SessionCgroup { path: session.cgroup.clone() };
        let id = session.id;
        let mut outcome = tokio::task::spawn_blocking(move || kill::kill_tree(Some(&cgroup), &tags, id, members, started))
            .await
            .unwrap_or_else(|e| {
                warn!("kill of session {} panicked: {e}", ids::session(id));
                KillOutcome { survivors: 1, ..KillOutcome::default() }
            });
        // The kernel counted every process of the session that died once it was
        // dead, including those its own hooks killed before we looked.
        let kernel_count = self.lock().kernel.session_deaths(session.slot);
        outcome.killed = outcome.killed.max(kernel_count);
        self.stats.kills_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.stats.kill_latency.observe(outcome.elapsed);
        info!(
            session = %ids::session(id),
            reason = reason.as_str(),
            killed = outcome.killed,
            elapsed_us = outcome.elapsed.as_micros() as u64,
            survivors = outcome.survivors,
            "session killed"
        );
        let mut ev = agent_event(Kind::Kill(pb::Kill {
            reason: reason.as_str().into(),
            by: by.into(),
            killed: outcome.killed,
            elapsed_us: outcome.elapsed.as_micros() as u64,
            survivors: outcome.survivors,
            note: note.into(),
        }));
        self.envelope_for(&mut ev, &session);
        self.emit(ev).await;
        self.end_session(&session, SessionStatus::Killed, &format!("killed: {}", reason.as_str())).await;
        SessionKill { session: ids::session(id), outcome }
    }

    /// Marks a session over, frees its slot and cgroup, and records why.
    async fn end_session(&self, session: &Session, status: SessionStatus, reason: &str) {
        {
            let mut inner = self.lock();
            let Some(s) = inner.registry.sessions.get_mut(&session.id) else { return };
            if s.status != SessionStatus::Live {
                return;
            }
            s.status = status;
            s.ended_at_unix_ns = clock::wall_ns();
            s.end_reason = reason.to_owned();
            // A dead slot: any straggler we did not see dies at its next hook.
            let _ = inner.kernel.sessions.set(session.slot, SessionState::default(), 0);
            // The last session of a cut-off grant frees the grant's kernel slots.
            if let Some(g) = inner.registry.grants.get(&session.grant).cloned()
                && g.cut_off
                && !inner.registry.holds_kernel_slots(&g)
            {
                let _ = inner.kernel.grants.set(g.slot, grant_state(&g, STATE_EXPIRED), 0);
                remove_policy(&mut inner.kernel, &g);
            }
            let live = inner.registry.live_sessions().count();
            if let Err(e) = inner.kernel.set_syscall_hook(live > 0) {
                warn!("{e:#}");
            }
            self.save(&inner);
        }
        if let Err(e) = (SessionCgroup { path: session.cgroup.clone() }).remove() {
            warn!("failed to remove cgroup {}: {e}", session.cgroup.display());
        }
        let mut ev = agent_event(Kind::SessionEnd(pb::SessionEnd { reason: reason.into() }));
        self.envelope_for(&mut ev, session);
        self.emit(ev).await;
    }

    /// Destroys the open TCP sockets of a session's processes (a `drop` rule); the
    /// processes live on, and new connects are refused in the kernel.
    pub async fn drop_sockets(&self, session_id: &str, reason: &str) -> Result<u32, HostError> {
        let session = {
            let inner = self.lock();
            ids::parse_session(session_id)
                .and_then(|id| inner.registry.sessions.get(&id))
                .filter(|s| s.status == SessionStatus::Live)
                .cloned()
                .ok_or_else(|| HostError::NotFound(format!("no live session {}", session_id.trim())))?
        };
        let tags = Arc::clone(&self.tags);
        let cgroup = SessionCgroup { path: session.cgroup.clone() };
        let id = session.id;
        let count = tokio::task::spawn_blocking(move || {
            let mut pids: Vec<u32> = census(&tags).remove(&id).unwrap_or_default();
            pids.extend(cgroup.procs());
            pids.sort_unstable();
            pids.dedup();
            crate::sockdiag::destroy(&crate::sockdiag::socket_inodes(&pids))
        })
        .await
        .map_err(|e| anyhow!("socket drop task failed: {e}"))?
        .map_err(|e| anyhow!("failed to destroy the sockets of session {}: {e}", ids::session(id)))?;
        info!(session = %ids::session(id), count, reason, "session sockets dropped");
        let mut ev = agent_event(Kind::SocketsDropped(pb::SocketsDropped { count, reason: reason.into() }));
        self.envelope_for(&mut ev, &session);
        self.emit(ev).await;
        Ok(count)
    }

    /// Ends sessions whose processes have all exited.
    pub async fn reap(&self) {
        let candidates: Vec<Session> = {
            let inner = self.lock();
            inner
                .registry
                .live_sessions()
                .filter(|s| !(SessionCgroup { path: s.cgroup.clone() }).populated())
                .cloned()
                .collect()
        };
        if candidates.is_empty() {
            return;
        }
        // The cgroup is empty; a process that left it would still be tagged.
        let tags = Arc::clone(&self.tags);
        let census = tokio::task::spawn_blocking(move || census(&tags)).await.unwrap_or_default();
        for s in candidates {
            if census.contains_key(&s.id) {
                continue;
            }
            // A kernel hook may have killed the session (a kill-session rule of the
            // network or task limit) faster than its violation reached the reactor:
            // then it is a kill, and its report counts what the kernel killed.
            let killed_in_kernel = {
                let inner = self.lock();
                inner.kernel.sessions.get(&s.slot, 0).is_ok_and(|k| k.session_id == s.id && k.state == STATE_KILLED)
            };
            if killed_in_kernel {
                let by = "the kernel (a kill-session rule)";
                if let Err(e) = self.kill_session(&ids::session(s.id), KillReason::Policy, by, "").await {
                    warn!("recording the kernel's kill of session {} failed: {e}", ids::session(s.id));
                }
                continue;
            }
            info!(session = %ids::session(s.id), "session ended: all processes exited");
            self.end_session(&s, SessionStatus::Ended, "exited").await;
        }
    }

    /// Grants for `warrant grants`.
    pub fn grants(&self, all: bool) -> Vec<pb::Grant> {
        let inner = self.lock();
        let mut sessions: HashMap<u64, Vec<String>> = HashMap::new();
        for s in inner.registry.sessions.values().filter(|s| all || s.status == SessionStatus::Live) {
            sessions.entry(s.grant).or_default().push(ids::session(s.id));
        }
        let now = clock::boot_ns();
        inner
            .registry
            .grants
            .values()
            .filter(|g| all || (g.status == GrantStatus::Active && now < g.expires_at_boot_ns))
            .map(|g| grant_pb(g, now, sessions.remove(&g.id).unwrap_or_default()))
            .collect()
    }

    /// Sessions for `warrant sessions`, with the processes of live ones.
    pub async fn sessions(&self, all: bool) -> Vec<pb::Session> {
        let tags = Arc::clone(&self.tags);
        let census = tokio::task::spawn_blocking(move || census(&tags)).await.unwrap_or_default();
        let inner = self.lock();
        inner
            .registry
            .sessions
            .values()
            .filter(|s| all || s.status == SessionStatus::Live)
            .map(|s| {
                let grant = inner.registry.grants.get(&s.grant);
                let processes = if s.status == SessionStatus::Live {
                    self.processes(s, census.get(&s.id).map(Vec::as_slice).unwrap_or_default())
                } else {
                    Vec::new()
                };
                session_pb(s, grant, processes)
            })
            .collect()
    }

    fn processes(&self, s: &Session, tagged: &[u32]) -> Vec<pb::Process> {
        let in_cgroup: HashSet<u32> = (SessionCgroup { path: s.cgroup.clone() }).procs().into_iter().collect();
        let mut pids: Vec<u32> = in_cgroup.iter().copied().chain(tagged.iter().copied()).collect();
        pids.sort_unstable();
        pids.dedup();
        pids.into_iter()
            .filter_map(|pid| {
                let st = procfs::stat(pid).filter(|st| !st.is_zombie())?;
                let in_cg = in_cgroup.contains(&pid)
                    || crate::cgroup::cgroup_of(pid, &self.cgroup_mount).is_some_and(|c| c == s.cgroup);
                Some(pb::Process { pid, ppid: st.ppid, comm: st.comm, in_cgroup: in_cg })
            })
            .collect()
    }

    /// Live session and active grant counts, for status.
    pub fn counts(&self) -> (u32, u32) {
        let inner = self.lock();
        let now = clock::boot_ns();
        (
            inner.registry.live_sessions().count() as u32,
            inner
                .registry
                .grants
                .values()
                .filter(|g| g.status == GrantStatus::Active && now < g.expires_at_boot_ns)
                .count() as u32,
        )
    }

    /// The agent's audit log.
    pub fn audit_log_path(&self) -> PathBuf {
        self.config.audit_log()
    }

    /// The key the audit log's records are marked with.
    pub fn audit_key_path(&self) -> PathBuf {
        self.config.audit_key()
    }

    /// The kernel's lost-record total, summed over CPUs.
    pub fn kernel_lost(&self) -> Option<u64> {
        let inner = self.lock();
        let values = inner.kernel.lost.get(&0, 0).ok()?;
        Some(values.iter().sum())
    }

    /// Every session whose lost counts may still be read: the live ones, and those
    /// that ended in the last [`LOSS_GRACE`] whose slot no live session holds yet
    /// (a loss just before the end is still theirs).
    pub fn session_losses(&self) -> Vec<SessionLoss> {
        let inner = self.lock();
        let now = crate::clock::wall_ns();
        let held: HashSet<u32> = inner.registry.live_sessions().map(|s| s.slot).collect();
        let grace = i64::try_from(LOSS_GRACE.as_nanos()).unwrap_or(i64::MAX);
        inner
            .registry
            .sessions
            .values()
            .filter(|s| {
                s.status == SessionStatus::Live
                    || (!held.contains(&s.slot) && now.saturating_sub(s.ended_at_unix_ns) < grace)
            })
            .map(|s| SessionLoss {
                session: s.id,
                grant: s.grant,
                live: s.status == SessionStatus::Live,
                kill_on_gap: s.max_tasks & SESSION_GAP_KILL != 0,
                by_kind: inner.kernel.session_lost(s.slot),
            })
            .collect()
    }

    /// What earlier agents already reported of the kernel's lost total.
    pub fn lost_reported(&self) -> u64 {
        self.lock().registry.lost_reported
    }

    /// Records that the kernel's lost total up to `n` has been reported.
    pub fn remember_lost(&self, n: u64) {
        let mut inner = self.lock();
        inner.registry.lost_reported = n;
        self.save(&inner);
    }

    fn envelope_for(&self, ev: &mut pb::Event, s: &Session) {
        ev.session = ids::session(s.id);
        ev.grant = ids::grant(s.grant);
        ev.pid = s.root_pid;
        ev.uid = s.caller_uid;
    }

    async fn emit(&self, ev: pb::Event) {
        self.sink.send(ev).await;
    }

    /// The kernel's task tags, to tell a caller from inside a session.
    pub fn task_tags(&self) -> &TaskTags {
        &self.tags
    }

    /// Records that process `pid` of the session behind `tag` called the agent's
    /// `socket` and was refused.
    pub async fn refused_from_session(&self, tag: TaskTag, pid: u32, socket: &str) {
        warn!(session = %ids::session(tag.session_id), pid, socket, "refused a call from inside a session");
        let mut ev = agent_event(Kind::Violation(pb::Violation {
            op: "agent-api".into(),
            action: "deny".into(),
            rule: "self-protection".into(),
            path: socket.into(),
            detail: format!("a call to the warrant {socket} socket from inside the session"),
            prevented: true,
            ..Default::default()
        }));
        ev.session = ids::session(tag.session_id);
        ev.grant = ids::grant(tag.grant_id);
        ev.pid = pid;
        self.emit(ev).await;
    }

    /// The pids to attach for `pid`: itself and every descendant.
    pub fn with_descendants(pid: u32) -> Vec<u32> {
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for p in procfs::all_pids() {
            if let Some(st) = procfs::stat(p) {
                children.entry(st.ppid).or_default().push(p);
            }
        }
        let mut out = vec![pid];
        let mut i = 0;
        while i < out.len() {
            if let Some(kids) = children.get(&out[i]) {
                out.extend(kids.iter().copied().filter(|k| *k != pid));
            }
            i += 1;
        }
        out
    }
}

/// A session's id and cgroup made before its first process, which was forked into
/// the cgroup (so [`Host::open_session`] does not move it there).
#[derive(Debug)]
pub struct BornIn {
    pub id: u64,
    pub cgroup: SessionCgroup,
}

/// A grant as the API shows it; `now` is the boot clock, to show an active grant
/// past its expiry as expired before the timer has run.
pub fn grant_pb(g: &Grant, now: u64, sessions: Vec<String>) -> pb::Grant {
    pb::Grant {
        id: ids::grant(g.id),
        subject: g.subject.clone(),
        reason: g.reason.clone(),
        issued_at_unix_ns: g.issued_at_unix_ns,
        expires_at_unix_ns: g.expires_at_unix_ns,
        state: match g.status {
            GrantStatus::Active if now >= g.expires_at_boot_ns => pb::GrantState::Expired,
            GrantStatus::Active => pb::GrantState::Active,
            GrantStatus::Expired => pb::GrantState::Expired,
            GrantStatus::Revoked => pb::GrantState::Revoked,
        } as i32,
        issued_by: g.issued_by.clone(),
        sessions,
        policy: g.policy_name.clone(),
        warnings: Vec::new(),
    }
}

/// A session as the API shows it.
pub fn session_pb(s: &Session, grant: Option<&Grant>, processes: Vec<pb::Process>) -> pb::Session {
    pb::Session {
        id: ids::session(s.id),
        grant: ids::grant(s.grant),
        subject: grant.map(|g| g.subject.clone()).unwrap_or_default(),
        root_pid: s.root_pid,
        started_at_unix_ns: s.started_at_unix_ns,
        expires_at_unix_ns: grant.map_or(0, |g| g.expires_at_unix_ns),
        state: match s.status {
            SessionStatus::Live => pb::SessionState::Live,
            SessionStatus::Ended => pb::SessionState::Ended,
            SessionStatus::Killed => pb::SessionState::Killed,
        } as i32,
        processes,
        cgroup: s.cgroup.display().to_string(),
        command: s.command.clone(),
        end_reason: s.end_reason.clone(),
        sandbox: s.sandbox.clone(),
    }
}

/// `Session::sandbox` of a session `warrant exec` confined (Landlock + seccomp).
pub const SANDBOX_CONFINED: &str = "landlock+seccomp";
/// `Session::sandbox` of an attached (or otherwise unconfined) session.
pub const SANDBOX_NONE: &str = "none";

/// The digest of a grant's policy as `warrant exec` reports it ("" for none).
fn policy_digest(g: &Grant) -> String {
    g.policy_yaml
        .as_deref()
        .and_then(|t| warrant_policy::Policy::from_yaml(t, "policy").ok())
        .map(|p| p.digest().to_string())
        .unwrap_or_default()
}

/// The processes in a session's cgroup now.
fn members(s: &Session) -> HashSet<u32> {
    (SessionCgroup { path: s.cgroup.clone() }).procs().into_iter().collect()
}

/// What events of a grant are enriched with, and its policy for deciding file opens
/// and execs.
fn grant_info(g: &Grant) -> GrantInfo {
    let rules = g.policy_yaml.as_deref().and_then(|text| match warrant_policy::Policy::from_yaml(text, &g.policy_name) {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            warn!("the stored policy of grant {} no longer parses: {e}", ids::grant(g.id));
            None
        }
    });
    GrantInfo {
        subject: g.subject.clone(),
        policy: g.policy_name.clone(),
        rules,
        reason: g.reason.clone(),
        issued_by: g.issued_by.clone(),
    }
}

/// `SessionState::max_tasks` for a session under `g`: the policy's `max_processes`
/// (the default when it has no policy), with the kill bit for `kill-session`.
fn task_limit(g: &Grant) -> u32 {
    let c = g
        .policy_yaml
        .as_deref()
        .and_then(|t| warrant_policy::Policy::from_yaml(t, "policy").ok())
        .map(|p| p.confinement)
        .unwrap_or_default();
    let kill = if c.on_max_processes == warrant_policy::MaxProcessesAction::KillSession { SESSION_TASKS_KILL } else { 0 };
    let gap = if c.on_audit_gap == warrant_policy::AuditGapAction::KillSession { SESSION_GAP_KILL } else { 0 };
    c.max_processes.min(!SESSION_FLAGS) | kill | gap
}

/// Whether a grant's policy says `on_expiry: drop`.
fn expiry_drops(g: &Grant) -> bool {
    g.policy_yaml
        .as_deref()
        .and_then(|t| warrant_policy::Policy::from_yaml(t, "policy").ok())
        .is_some_and(|p| p.on_expiry == warrant_policy::ExpiryAction::Drop)
}

/// The parts of a policy a session's Landlock domain holds: a change to them cannot
/// reach a live session.
fn landlock_part(p: Option<&warrant_policy::Policy>) -> Option<String> {
    p.map(|p| format!("{}|{:?}|{:?}", p.default, p.exec, p.files))
}

fn grant_state(g: &Grant, state: u32) -> GrantState {
    GrantState { expires_at_ns: g.expires_at_boot_ns, state, policy_slot: g.policy_slot, grant_id: g.id }
}

/// Writes a compiled policy under `slot`: rules first, then the slot's defaults,
/// and only then does a grant point at the slot.
fn install_policy(kernel: &mut Kernel, p: &warrant_policy::Policy, slot: u32) -> Result<(), HostError> {
    let entries = crate::policy_maps::compile(p, slot).map_err(|e| GrantError::Policy(e.to_string()))?;
    for e in &entries {
        kernel
            .net_rules
            .insert(&aya::maps::lpm_trie::Key::new(e.prefix_len, e.key), e.verdict, 0)
            .map_err(|err| anyhow!("failed to write policy {} into the kernel: {err}", p.name))?;
    }
    for e in crate::policy_maps::compile_unix(p, slot) {
        kernel
            .unix_rules
            .insert(&aya::maps::lpm_trie::Key::new(e.prefix_len, e.key), e.verdict, 0)
            .map_err(|err| anyhow!("failed to write policy {}'s unix rules into the kernel: {err}", p.name))?;
    }
    let state = PolicyState {
        net_default: crate::policy_maps::action_code(p.default),
        in_use: 1,
        policy_id: u64::from(slot),
        flags: match p.on_expiry {
            warrant_policy::ExpiryAction::Drop => policy::POLICY_ON_EXPIRY_DROP,
            warrant_policy::ExpiryAction::KillSession => 0,
        } | if p.confinement.raw_sockets { policy::POLICY_RAW_SOCKETS } else { 0 },
        _pad: 0,
    };
    kernel.policies.set(slot, state, 0).map_err(|err| anyhow!("failed to write POLICIES[{slot}]: {err}"))?;
    Ok(())
}

/// Frees a grant's policy slot (the grant is already dead in the kernel).
fn remove_policy(kernel: &mut Kernel, g: &Grant) {
    if g.policy_slot == 0 {
        return;
    }
    let keys: Vec<_> = kernel
        .net_rules
        .keys()
        .filter_map(Result::ok)
        .filter(|k| u32::from_be_bytes(k.data().policy) & !policy::BIND_SLOT_BIT == g.policy_slot)
        .collect();
    for k in keys {
        let _ = kernel.net_rules.remove(&k);
    }
    let unix: Vec<_> = kernel
        .unix_rules
        .keys()
        .filter_map(Result::ok)
        .filter(|k| u32::from_be_bytes(k.data().policy) == g.policy_slot)
        .collect();
    for k in unix {
        let _ = kernel.unix_rules.remove(&k);
    }
    let _ = kernel.policies.set(g.policy_slot, PolicyState::default(), 0);
}

fn grant_event(g: &Grant, change: &str, reason: &str, by: &str) -> pb::Event {
    let mut ev = agent_event(Kind::GrantChange(pb::GrantChange {
        change: change.into(),
        reason: reason.into(),
        expires_at_unix_ns: g.expires_at_unix_ns,
        by: by.into(),
    }));
    ev.grant = ids::grant(g.id);
    ev.subject.clone_from(&g.subject);
    ev
}

/// Tags every thread of every process. Two passes: a thread created by a thread we
/// had not tagged yet, between our listing and our tagging, is caught by the second.
fn tag_processes(tags: &TaskTags, pids: &[u32], tag: &TaskTag) -> Result<(), HostError> {
    for _pass in 0..2 {
        for pid in pids {
            let threads = procfs::threads(*pid);
            if threads.is_empty() {
                return Err(HostError::NotFound(format!("no process {pid}")));
            }
            for tid in threads {
                let fd = match procfs::thread_pidfd(tid) {
                    Ok(fd) => fd,
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => continue, // thread exited
                    Err(e) => return Err(anyhow!("failed to open a pidfd for thread {tid} of pid {pid}: {e}").into()),
                };
                tags.set(fd.as_fd(), tag)
                    .map_err(|e| anyhow!("failed to tag thread {tid} of pid {pid} in the kernel: {e}"))?;
            }
        }
    }
    Ok(())
}
