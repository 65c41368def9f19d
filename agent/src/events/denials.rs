//! A second source beside the ring buffer: Landlock's audit records of what it
//! refused (see [`crate::landlock_audit`]), which carry the path as the kernel
//! resolved it. A refused open names only what the process passed (a symlink, a
//! name relative to a directory descriptor or to a working directory gone with a
//! process that exited at once), so `kill` and `kill-session` file and exec rules
//! are decided here again, on the resolved path, and carried out.
//!
//! The ring's own decision (`enrich::file_violation`) comes first whenever the name
//! passed is the path itself; a decision here waits [`SETTLE`] and acts only if the
//! session (for `kill-session`) or the process (for `kill`) is still alive, so one
//! refusal makes one violation.
//!
//! The caller's pid comes with the record only from a task with an audit context,
//! which the agent keeps tasks free of where it can; otherwise it is the one
//! process of the session the ring saw refused at that time ([`super::refusals`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};
use warrant_proto::v1::{self as pb, event::Event as Kind};

use super::refusals::{Caller, Refusals};
use super::{EventSink, Subjects, agent_event};
use crate::host::Host;
use crate::landlock_audit::{AuditReader, Denial, Record};
use crate::{file_rules, ids};

/// How long a decision here leaves the ring's decision of the same refusal to act.
const SETTLE: Duration = Duration::from_millis(50);
/// How long a refusal without a pid waits for the ring's record of the same call
/// (the ring is read every few ms, later when the agent is behind).
const FIND_CALLER: Duration = Duration::from_secs(1);

/// Starts reading Landlock's refusals; `false` (with a warning) when this kernel or
/// this process cannot (no audit support, no CAP_AUDIT_READ, Landlock before ABI 7).
/// Sessions ask Landlock to log only when this returned `true`.
pub fn start(
    host: Arc<Host>,
    subjects: Subjects,
    sink: EventSink,
    reactions: mpsc::UnboundedSender<pb::Event>,
    refusals: Arc<Refusals>,
) -> bool {
    let (mut reader, setup) = match AuditReader::open() {
        Ok(r) => r,
        Err(e) => {
            warn!("cannot read Landlock's audit records ({e}); kill rules on files are decided on the names processes pass");
            return false;
        }
    };
    if setup.enabled_audit {
        info!("turned the kernel's audit subsystem on, so Landlock reports what it refuses (auditd is not needed)");
    }
    if setup.no_task_contexts {
        info!("added the audit task rule `never` first: no task gets an audit context, which would cost it on every syscall");
    } else if !setup.enabled_audit {
        info!(
            "audit was on already, so its task rules stand: unless they say `never`, every task created since it was \
             turned on carries an audit context (~80 ns on each syscall; docs/kernel.md §18)"
        );
    }
    if let Some(n) = setup.raised_backlog {
        info!(backlog_limit = n, "raised the kernel's audit backlog limit");
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new().name("landlock-audit".into()).spawn(move || {
        loop {
            match reader.next() {
                Ok(r) => {
                    if tx.send(r).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    warn!("stopped reading Landlock's audit records: {e}");
                    return;
                }
            }
        }
    });
    if let Err(e) = spawned {
        warn!("cannot start the Landlock audit reader: {e}");
        return false;
    }
    tokio::spawn(async move {
        // Domain id → session, learnt from the record of each domain's first refusal.
        let mut domains: HashMap<u64, u64> = HashMap::new();
        let mut overruns = 0u64;
        while let Some(record) = rx.recv().await {
            match record {
                Record::Domain { domain, pid } => {
                    if let Some(sid) = host.session_rooted_at(pid) {
                        domains.insert(domain, sid);
                    }
                }
                Record::Denial(d) => {
                    let Some(sid) = domains.get(&d.domain).copied().or_else(|| session_of_caller(&host, &d)) else { continue };
                    if let Some(ev) = decide(&host, &subjects, sid, &d) {
                        let (host, sink, reactions, refusals) =
                            (Arc::clone(&host), sink.clone(), reactions.clone(), Arc::clone(&refusals));
                        let at = d.at_unix_ns;
                        tokio::spawn(async move { act(&host, &sink, &reactions, &refusals, sid, at, ev).await });
                    }
                }
                Record::Overrun => {
                    overruns += 1;
                    warn!("Landlock audit records were lost (socket overrun {overruns}); kill rules may have missed a refusal");
                    sink.send(agent_event(Kind::EventsLost(pb::EventsLost {
                        count: 1,
                        total: overruns,
                        reason: "landlock_audit".into(),
                        ..Default::default()
                    })))
                    .await;
                }
            }
        }
    });
    true
}

/// The session of a refusal whose domain is not known (its first refusal came
/// before this agent started): the caller's tag, while it lives.
fn session_of_caller(host: &Host, d: &Denial) -> Option<u64> {
    let pid = d.pid?;
    let fd = crate::procfs::pidfd(pid).ok()?;
    let tag = host.task_tags().get(std::os::fd::AsFd::as_fd(&fd)).ok()??;
    Some(tag.session_id)
}

/// The violation event a refusal in session `sid` amounts to, if its rule kills.
fn decide(host: &Host, subjects: &Subjects, sid: u64, d: &Denial) -> Option<pb::Event> {
    let grant = ids::grant(host.live_session_grant(sid)?);
    let policy = {
        let subjects = subjects.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        subjects.get(&grant).and_then(|g| g.rules.clone())?
    };
    let v = file_rules::kill_on_resolved(&d.path, d.wanted, &policy, &d.blockers)?;
    let mut ev = agent_event(Kind::Violation(v));
    ev.session = ids::session(sid);
    ev.grant = grant;
    ev.pid = d.pid.unwrap_or(0);
    Some(ev)
}

/// Records the violation and passes it to the react stage, unless the ring's
/// decision of the same refusal has acted already. A refusal the audit record
/// dates at `at_ns` without a pid gets the caller the ring saw refused then.
async fn act(
    host: &Host,
    sink: &EventSink,
    reactions: &mpsc::UnboundedSender<pb::Event>,
    refusals: &Refusals,
    sid: u64,
    at_ns: i64,
    mut ev: pb::Event,
) {
    tokio::time::sleep(SETTLE).await;
    if ev.pid == 0 {
        let give_up = tokio::time::Instant::now() + FIND_CALLER;
        loop {
            match refusals.caller(sid, at_ns) {
                Caller::One(pid, tid) => {
                    (ev.pid, ev.tid) = (pid, tid);
                    break;
                }
                Caller::Several => break,
                Caller::Unseen if tokio::time::Instant::now() >= give_up => break,
                Caller::Unseen => tokio::time::sleep(SETTLE).await,
            }
        }
    }
    let Some(Kind::Violation(v)) = &ev.event else { return };
    let pending = match v.action.as_str() {
        "kill-session" => host.live_session_grant(sid).is_some(),
        // Without the caller's pid only its session could be told; a `kill` rule
        // then ends the session rather than let the process run on.
        _ => ev.pid == 0 || host.member(sid, ev.pid).is_some(),
    };
    if !pending {
        return;
    }
    if ev.pid == 0
        && let Some(Kind::Violation(v)) = &mut ev.event
    {
        v.action = "kill-session".into();
        v.detail.push_str("; the calling process is not known, so the session is ended");
    }
    let _ = reactions.send(ev.clone());
    sink.send(ev).await;
}
