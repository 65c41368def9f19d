//! The local gRPC API (`warrant.v1.Agent`) on a unix socket.
//!
//! The socket's mode is the first gate (0600 root, or 0660 for a configured group);
//! the second is [`Gate`], which refuses every call from inside a session. The
//! caller's uid and pid come from the socket's peer credentials, never from the
//! request: `StartSession` tags the process that called (root only, recorded as
//! unconfined: sessions the agent confines start on the launch socket, see
//! `launch`), and grant issue, attach, kill and revoke need root.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use futures::Stream;
use tokio::net::{UnixListener, UnixStream};
use tonic::{Request, Response, Status, service::interceptor::InterceptedService};
use warrant_audit::Filter;
use warrant_proto::v1::{
    self as pb,
    agent_server::{Agent, AgentServer},
};

use crate::peer::{Gate, PeerInfo};
use crate::report::SharedLedgers;
use crate::{
    host::{Host, HostError, KillReason, SessionKill},
    registry::GrantError,
    spool::Spool,
};

/// The service, wrapping the host.
pub struct Api {
    host: Arc<Host>,
    features: Vec<pb::Feature>,
    ledgers: SharedLedgers,
    /// The collector's URL and the spool, when streaming to one.
    uplink: Option<(String, Arc<Spool>)>,
}

impl Api {
    /// The service behind `gate`, which refuses callers from inside a session.
    pub fn server(
        host: Arc<Host>,
        features: Vec<pb::Feature>,
        ledgers: SharedLedgers,
        uplink: Option<(String, Arc<Spool>)>,
        gate: Gate,
    ) -> InterceptedService<AgentServer<Self>, Gate> {
        AgentServer::with_interceptor(Self { host, features, ledgers, uplink }, gate)
    }
}

/// Who is calling, from SO_PEERCRED.
#[derive(Debug, Clone, Copy)]
struct Caller {
    uid: u32,
    pid: u32,
}

impl Caller {
    fn of<T>(req: &Request<T>) -> Result<Self, Status> {
        let peer = PeerInfo::of_request(req)?;
        Ok(Self { uid: peer.uid, pid: peer.pid })
    }

    fn require_root(self, what: &str) -> Result<Self, Status> {
        if self.uid == 0 {
            Ok(self)
        } else {
            Err(Status::permission_denied(format!("{what} needs root on this host (caller uid {})", self.uid)))
        }
    }

    fn describe(self) -> String {
        format!("uid {} (pid {})", self.uid, self.pid)
    }
}

impl From<HostError> for Status {
    fn from(e: HostError) -> Self {
        match e {
            HostError::Grant(g @ GrantError::Unknown(_)) => Status::not_found(g.to_string()),
            HostError::Grant(g @ (GrantError::Expired { .. } | GrantError::Revoked { .. })) => {
                Status::failed_precondition(g.to_string())
            }
            HostError::Grant(g @ (GrantError::Ttl { .. } | GrantError::NoSubject | GrantError::Policy(_))) => {
                Status::invalid_argument(g.to_string())
            }
            HostError::Grant(g @ GrantError::Full(_)) => Status::resource_exhausted(g.to_string()),
            HostError::NotFound(m) => Status::not_found(m),
            HostError::Denied(m) => Status::permission_denied(m),
            HostError::Invalid(m) => Status::failed_precondition(m),
            HostError::Conflict(m) => Status::aborted(m),
            HostError::Internal(e) => Status::internal(format!("{e:#}")),
        }
    }
}

pub fn report(kills: &[SessionKill]) -> pb::KillReport {
    pb::KillReport {
        sessions: kills
            .iter()
            .map(|k| pb::SessionKill {
                session: k.session.clone(),
                killed: k.outcome.killed,
                elapsed_us: k.outcome.elapsed.as_micros() as u64,
                survivors: k.outcome.survivors,
            })
            .collect(),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for Api {
    async fn issue_grant(&self, req: Request<pb::IssueGrantRequest>) -> Result<Response<pb::Grant>, Status> {
        let caller = Caller::of(&req)?.require_root("issuing grants")?;
        let r = req.into_inner();
        let ttl = Duration::from_secs(r.ttl_seconds);
        let policy = (!r.policy.is_empty()).then(|| {
            let file = if r.policy_file.is_empty() { "policy" } else { r.policy_file.as_str() };
            (r.policy.as_str(), file)
        });
        let g = self.host.issue_grant(&r.subject, ttl, &r.reason, &caller.describe(), policy).await?;
        Ok(Response::new(crate::host::grant_pb(&g, crate::clock::boot_ns(), Vec::new())))
    }

    async fn list_grants(
        &self,
        req: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::ListGrantsResponse>, Status> {
        Ok(Response::new(pb::ListGrantsResponse { grants: self.host.grants(req.into_inner().all) }))
    }

    async fn revoke_grant(&self, req: Request<pb::RevokeGrantRequest>) -> Result<Response<pb::KillReport>, Status> {
        let caller = Caller::of(&req)?.require_root("revoking grants")?;
        let r = req.into_inner();
        let kills = self.host.revoke_grant(&r.grant, KillReason::Revoke, &caller.describe(), &r.reason).await?;
        Ok(Response::new(report(&kills)))
    }

    async fn update_policy(&self, req: Request<pb::UpdatePolicyRequest>) -> Result<Response<pb::Grant>, Status> {
        let caller = Caller::of(&req)?.require_root("changing a grant's policy")?;
        let r = req.into_inner();
        let file = if r.policy_file.is_empty() { "policy" } else { r.policy_file.as_str() };
        let (g, warnings) = self.host.update_policy(&r.grant, &r.policy, file, &caller.describe()).await?;
        let mut out = crate::host::grant_pb(&g, crate::clock::boot_ns(), Vec::new());
        out.warnings = warnings;
        Ok(Response::new(out))
    }

    /// Tags the caller itself: an attach of oneself, so root only and recorded as
    /// unconfined whatever the request claims (`sandboxed` is not believed). A
    /// confined session is started through the launch socket (`warrant exec`).
    async fn start_session(
        &self,
        req: Request<pb::StartSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let caller = Caller::of(&req)?.require_root(
            "tagging the calling process (a confined session is started through the launch socket, as `warrant exec` does)",
        )?;
        if caller.pid == 0 {
            return Err(Status::failed_precondition("cannot tell the calling process from the socket"));
        }
        let r = req.into_inner();
        let s = self
            .host
            .start_session(
                &r.grant,
                &[caller.pid],
                r.command,
                "exec",
                (caller.uid, caller.pid),
            )
            .await?;
        Ok(Response::new(s))
    }

    async fn report(&self, req: Request<pb::ReportRequest>) -> Result<Response<pb::Event>, Status> {
        let session = req.into_inner().session;
        let session = session.trim();
        let report = self.ledgers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).report(session, &self.host.subjects);
        report.map(Response::new).ok_or_else(|| {
            Status::not_found(format!(
                "no report for session {session}: not a live or recent session of this agent (older reports are session_report events in the audit log)"
            ))
        })
    }

    async fn get_policy(&self, req: Request<pb::GetPolicyRequest>) -> Result<Response<pb::GrantPolicy>, Status> {
        Ok(Response::new(self.host.get_policy(&req.into_inner().grant)?))
    }

    async fn attach(&self, req: Request<pb::AttachRequest>) -> Result<Response<pb::Session>, Status> {
        let caller = Caller::of(&req)?.require_root("attaching a process to a grant")?;
        let r = req.into_inner();
        if r.pid == 0 || crate::procfs::stat(r.pid).is_none() {
            return Err(Status::not_found(format!("no process {}", r.pid)));
        }
        let pids = Host::with_descendants(r.pid);
        let command = fs::read(format!("/proc/{}/cmdline", r.pid))
            .map(|b| b.split(|c| *c == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
            .unwrap_or_default();
        let s = self
            .host
            .start_session(&r.grant, &pids, command, "attach", (caller.uid, caller.pid))
            .await?;
        Ok(Response::new(s))
    }

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        Ok(Response::new(pb::ListSessionsResponse { sessions: self.host.sessions(req.into_inner().all).await }))
    }

    async fn kill(&self, req: Request<pb::KillRequest>) -> Result<Response<pb::KillReport>, Status> {
        let caller = Caller::of(&req)?.require_root("killing a session")?;
        let r = req.into_inner();
        let k = self.host.kill_session(&r.session, KillReason::Operator, &caller.describe(), &r.reason).await?;
        Ok(Response::new(report(&[k])))
    }

    type WatchStream = EventStream;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let r = req.into_inner();
        let some = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let filter = Filter::new(some(r.session), some(r.grant), &r.kinds)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Subscribed before we answer, so the caller sees everything after this returns.
        let sub = self.host.hub.subscribe(filter);
        let stream = futures::stream::unfold(sub, |mut sub| async move { sub.next().await.map(|ev| (Ok(ev), sub)) });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::AgentStatus>, Status> {
        let (sessions, grants) = self.host.counts();
        let s = &self.host.stats;
        let depth = self.uplink.as_ref().map(|u| u.1.depth()).unwrap_or_default();
        Ok(Response::new(pb::AgentStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            agent_id: self.host.envelope.agent_id.clone(),
            boot_id: self.host.envelope.boot_id.clone(),
            host: self.host.envelope.host.clone(),
            events_total: s.events_total.load(Ordering::Relaxed),
            events_lost_total: s.lost_total.load(Ordering::Relaxed),
            sessions_live: sessions,
            grants_active: grants,
            features: self.features.clone(),
            collector: self.uplink.as_ref().map(|u| u.0.clone()).unwrap_or_default(),
            collector_connected: s.uplink_connected.load(Ordering::Relaxed),
            acked_seq: s.acked_seq.load(Ordering::Relaxed),
            spool_events: depth.events,
            spool_bytes: depth.bytes,
            spool_full_total: s.spool_full_total.load(Ordering::Relaxed),
        }))
    }

    async fn verify_audit_log(
        &self,
        req: Request<pb::AuditVerifyRequest>,
    ) -> Result<Response<pb::AuditVerifyResponse>, Status> {
        Caller::of(&req)?.require_root("verifying the audit log")?;
        let path = self.host.audit_log_path();
        let (p, k) = (path.clone(), self.host.audit_key_path());
        let report = tokio::task::spawn_blocking(move || warrant_audit::verify_with_key_file(&p, &k))
        .await
        .map_err(|e| Status::internal(format!("audit log check failed: {e}")))?
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::AuditVerifyResponse {
            ok: report.is_ok(),
            records: report.records,
            problems: report.problems.iter().map(ToString::to_string).collect(),
            head: report.head,
            path: path.display().to_string(),
            keyed: report.keyed,
            unkeyed_records: report.unkeyed,
            unversioned_records: report.unversioned,
        }))
    }
}

/// Binds the API socket: creates its directory, refuses to steal a socket another
/// agent is serving, and sets the mode (0600, or 0660 with `group`).
pub async fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("failed to create socket directory {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            bail!("another warrant-agent is already serving {}\n\nStop it first, or pass a different --socket.", path.display());
        }
        fs::remove_file(path).with_context(|| format!("failed to remove stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("failed to bind the API socket {}", path.display()))?;
    let mode = if let Some(group) = group {
        let gid = group_id(group)?;
        std::os::unix::fs::chown(path, Some(0), Some(gid))
            .with_context(|| format!("failed to give {} to group {group}", path.display()))?;
        0o660
    } else {
        0o600
    };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set the mode of {}", path.display()))?;
    Ok(listener)
}

fn group_id(name: &str) -> Result<u32> {
    let text = fs::read_to_string("/etc/group").context("failed to read /etc/group")?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let (n, _, gid) = (f.next()?, f.next()?, f.next()?);
            (n == name).then(|| gid.parse().ok()).flatten()
        })
        .next()
        .ok_or_else(|| anyhow!("unknown group {name:?} in --socket-group"))
}
