//! Commands to agents (`Kill`, `Revoke`) and what is known of them
//! (`AgentStatus`), plus `VerifyLog` and `WhoAmI`. A command goes to the agent holding the
//! session or grant; when it is not connected the command is queued in the index
//! and delivered when it reconnects.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tonic::{Request, Response, Status};
use warrant_proto::collector_message::Msg as CollectorMsg;
use warrant_proto::command::Op;
use warrant_proto::{
    AgentStatusRequest, AgentStatusResponse, CollectorMessage, Command, CommandResult, KillReport, KillRequest, KnownAgent,
    RemoteKillRequest, RemoteKillResponse, RemoteRevokeRequest, RevokeGrantRequest, VerifyLogRequest, VerifyLogResponse,
    WhoAmIRequest, WhoAmIResponse,
};

use super::State;
use crate::auth::{Role, identity};
use crate::store::verify_dir;
use crate::writer::random_id;

/// How long Kill/Revoke wait for the agent's report before answering "queued".
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl State {
    /// Sends `cmd` to `agent` and waits for its result. `Ok(None)`: not connected,
    /// or it went away (or did not answer in time) before answering; the command
    /// stays queued and is delivered when the agent connects.
    pub(crate) async fn send_command(&self, agent: &str, cmd: Command) -> Result<Option<CommandResult>, Status> {
        let reader = self.reader.clone();
        let (a, c) = (agent.to_owned(), cmd.clone());
        tokio::task::spawn_blocking(move || reader.queue_command(&a, &c))
            .await
            .map_err(|e| Status::internal(format!("cannot queue command: {e}")))?
            .map_err(|e| Status::internal(format!("cannot queue command: {e}")))?;
        let (tx, rx) = oneshot::channel();
        let out = {
            let mut agents = self.agents();
            let Some((out, _)) = agents.connected.get(agent) else {
                self.metrics.commands_queued.fetch_add(1, Relaxed);
                return Ok(None);
            };
            let out = out.clone();
            agents.waiting.insert(cmd.id.clone(), (agent.to_owned(), tx));
            out
        };
        let id = cmd.id.clone();
        if out.send(Ok(CollectorMessage { msg: Some(CollectorMsg::Command(cmd)) })).await.is_err() {
            self.agents().waiting.remove(&id);
            self.metrics.commands_queued.fetch_add(1, Relaxed);
            return Ok(None);
        }
        self.metrics.commands_delivered.fetch_add(1, Relaxed);
        match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Ok(Ok(result)) => Ok(Some(result)),
            Ok(Err(_)) | Err(_) => {
                self.agents().waiting.remove(&id);
                Ok(None)
            }
        }
    }

    /// A command result from `agent`: wake whoever waits, else record it.
    pub(crate) async fn command_result(&self, agent: &str, result: CommandResult) {
        let reader = self.reader.clone();
        let (a, id) = (agent.to_owned(), result.command_id.clone());
        let was_queued = tokio::task::spawn_blocking(move || reader.unqueue_command(&a, &id)).await.ok().and_then(Result::ok).unwrap_or(false);
        let waiter = self.agents().waiting.remove(&result.command_id);
        match waiter {
            Some((_, tx)) => {
                let _ = tx.send(result);
            }
            None => {
                // A queued command delivered at reconnect: nobody waits, so the
                // log is where its outcome goes.
                let (outcome, detail) = if result.error.is_empty() {
                    ("ok", report_text(result.report.as_ref()))
                } else {
                    ("failed", result.error.clone())
                };
                let detail = format!("command {}{}: {detail}", result.command_id, if was_queued { " (was queued)" } else { "" });
                if let Err(e) = self.writer.record("command_result", agent, &format!("agent {agent}"), outcome, &detail).await {
                    tracing::error!(error = %e, "cannot record a command result");
                }
            }
        }
    }

    /// Kill/revoke one target on `agents`, merging their reports.
    pub(crate) async fn remote(&self, who: &str, action: &str, target: &str, agents: Vec<String>, make: impl Fn() -> Op) -> Result<RemoteKillResponse, Status> {
        let started = Instant::now();
        let mut resp = RemoteKillResponse { delivered: true, report: Some(KillReport::default()), ..RemoteKillResponse::default() };
        let mut hosts = Vec::new();
        let mut errors = Vec::new();
        for agent in &agents {
            let cmd = Command { id: format!("c-{}", random_id()), by: who.to_owned(), op: Some(make()) };
            let id = cmd.id.clone();
            match self.send_command(agent, cmd).await? {
                None => {
                    resp.delivered = false;
                    self.record(action, who, target, "queued", &format!("agent {agent} is not connected; command {id} is queued and is delivered when it reconnects")).await;
                }
                Some(r) if !r.error.is_empty() => {
                    self.metrics.commands_failed.fetch_add(1, Relaxed);
                    self.record(action, who, target, "failed", &format!("agent {agent}: {}", r.error)).await;
                    errors.push(format!("agent {agent}: {}", r.error));
                }
                Some(r) => {
                    let report = r.report.unwrap_or_default();
                    self.record(action, who, target, "ok", &format!("agent {agent}: {}", report_text(Some(&report)))).await;
                    if let Some(all) = resp.report.as_mut() {
                        all.sessions.extend(report.sessions);
                    }
                }
            }
            if let Some(k) = self.agents().known.get(agent) {
                hosts.push(k.host.clone());
            }
        }
        if !errors.is_empty() && resp.report.as_ref().is_none_or(|r| r.sessions.is_empty()) {
            return Err(Status::failed_precondition(format!("cannot {action} {target}: {}", errors.join("; "))));
        }
        if resp.delivered {
            self.metrics.observe_kill(started.elapsed());
        }
        resp.agent_id = agents.join(",");
        resp.host = hosts.join(",");
        Ok(resp)
    }
}

fn report_text(report: Option<&KillReport>) -> String {
    let Some(r) = report else { return "no report".into() };
    r.sessions
        .iter()
        .map(|s| format!("session {} killed {} in {} us, {} survivors", s.session, s.killed, s.elapsed_us, s.survivors))
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) async fn kill(state: &Arc<State>, req: Request<RemoteKillRequest>) -> Result<Response<RemoteKillResponse>, Status> {
    let who = state.authorize(&req, Role::Responder, "Kill").await?;
    let r = req.into_inner();
    if r.session.is_empty() {
        return Err(Status::invalid_argument("kill needs a session"));
    }
    state.writer.sync().await.map_err(Status::unavailable)?;
    let reader = state.reader.clone();
    let s = r.session.clone();
    let holder = tokio::task::spawn_blocking(move || reader.session_agent(&s))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(e.to_string()))?;
    let target = format!("session {}", r.session);
    let Some(holder) = holder else {
        state.record("kill", &who, &target, "failed", "no agent reported this session").await;
        return Err(Status::not_found(format!("unknown session {:?}: no agent reported it", r.session)));
    };
    let (session, reason) = (r.session.clone(), r.reason.clone());
    let resp = state
        .remote(&who, "kill", &target, vec![holder.agent_id.clone()], || Op::Kill(KillRequest { session: session.clone(), reason: reason.clone() }))
        .await?;
    Ok(Response::new(RemoteKillResponse { host: holder.host, ..resp }))
}

pub(super) async fn revoke(state: &Arc<State>, req: Request<RemoteRevokeRequest>) -> Result<Response<RemoteKillResponse>, Status> {
    let who = state.authorize(&req, Role::Responder, "Revoke").await?;
    let r = req.into_inner();
    if r.grant.is_empty() {
        return Err(Status::invalid_argument("revoke needs a grant"));
    }
    state.writer.sync().await.map_err(Status::unavailable)?;
    let reader = state.reader.clone();
    let g = r.grant.clone();
    let agents = tokio::task::spawn_blocking(move || reader.grant_agents(&g))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(e.to_string()))?;
    let target = format!("grant {}", r.grant);
    if agents.is_empty() {
        state.record("revoke", &who, &target, "failed", "no agent reported this grant").await;
        return Err(Status::not_found(format!("unknown grant {:?}: no agent reported it", r.grant)));
    }
    let (grant, reason) = (r.grant.clone(), r.reason.clone());
    let resp = state
        .remote(&who, "revoke", &target, agents, || Op::Revoke(RevokeGrantRequest { grant: grant.clone(), reason: reason.clone() }))
        .await?;
    Ok(Response::new(resp))
}

pub(super) async fn agent_status(state: &Arc<State>, req: Request<AgentStatusRequest>) -> Result<Response<AgentStatusResponse>, Status> {
    state.authorize(&req, Role::Watcher, "AgentStatus").await?;
    let mut agents: Vec<KnownAgent> = state.agents().known.values().cloned().collect();
    agents.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
    for a in &mut agents {
        let reader = state.reader.clone();
        let id = a.agent_id.clone();
        let queued = tokio::task::spawn_blocking(move || reader.queued_commands(&id)).await.ok().and_then(Result::ok).unwrap_or_default();
        a.queued_commands = u32::try_from(queued.len()).unwrap_or(u32::MAX);
    }
    Ok(Response::new(AgentStatusResponse { agents }))
}

/// Any authenticated identity may ask who it is; nothing is recorded (it changes
/// nothing and reveals only the caller's own role).
pub(super) fn who_am_i(state: &Arc<State>, req: &Request<WhoAmIRequest>) -> Result<Response<WhoAmIResponse>, Status> {
    let name = identity(req)?;
    let role = state.roles.role_of(&name).map(|r| r.to_string()).unwrap_or_default();
    Ok(Response::new(WhoAmIResponse { name, role }))
}

pub(super) async fn verify_log(state: &Arc<State>, req: Request<VerifyLogRequest>) -> Result<Response<VerifyLogResponse>, Status> {
    let who = state.authorize(&req, Role::Admin, "VerifyLog").await?;
    let anchor = state.writer.anchor().await.map_err(Status::unavailable)?;
    let dir = state.data_dir.clone();
    let a = anchor.clone();
    let report = tokio::task::spawn_blocking(move || verify_dir(&dir, Some(a.records), Some(&a)))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("cannot verify the log: {e}")))?;
    let ok = report.problems.is_empty();
    state
        .record("verify_log", &who, "log", if ok { "ok" } else { "failed" }, &format!("{} records, {} problems", report.records, report.problems.len()))
        .await;
    Ok(Response::new(VerifyLogResponse {
        ok,
        records: report.records,
        problems: report.problems,
        head: report.head,
        skipped: report.skipped,
        keyed: report.keyed,
        unkeyed_records: report.unkeyed,
        unversioned_records: report.unversioned,
    }))
}
