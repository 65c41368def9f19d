/// The JSON routes. Each calls the agent or collector as the console's user, so
/// every refusal is the other side's; the console only leaves out of the page what
/// that user's role cannot do ([`Me`]).
use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use warrant_audit::json::rfc3339;
use warrant_proto::{ApproveRequest, DenyRequest, GetRequestRequest, ListRequestsRequest, SessionState};

use super::error::ApiError;
use super::{Console, assets, events};
use crate::follow;
use crate::kill::{Target as KillTarget, report_json};
use crate::sessions::state_name;
use crate::target::Target;

type ApiResult = Result<Json<Value>, ApiError>;

/// Who the console acts as and what the page may offer.
#[derive(Clone, Debug)]
pub struct Me {
    /// "agent" or "collector".
    pub mode: &'static str,
    /// The certificate's name, or "local user".
    pub name: String,
    /// The collector's role for that name ("" for none), or "operator" locally.
    pub role: String,
    /// Where the console points: the socket path or the collector's URL.
    pub target: String,
}

impl Me {
    /// Asks the collector who the certificate names; the local agent's socket is
    /// root's (or its group's), which may do everything.
    pub async fn find(target: &Target) -> anyhow::Result<Me> {
        match target {
            Target::Collector(c) => {
                let who = c.clone().who_am_i().await?;
                Ok(Me { mode: "collector", name: who.name, role: who.role, target: c.url().to_owned() })
            }
            Target::Agent(_) => Ok(Me {
                mode: "agent",
                name: "local user".into(),
                role: "operator".into(),
                target: "the local agent".into(),
            }),
        }
    }

    /// What the role may do, by the collector's hierarchies (watch < respond,
    /// request < approve, admin above both).
    fn can(&self) -> Value {
        let r = self.role.as_str();
        let local = self.mode == "agent";
        json!({
            "watch": local || matches!(r, "watcher" | "responder" | "admin"),
            "kill": local || matches!(r, "responder" | "admin"),
            "requests": !local && matches!(r, "requester" | "approver" | "admin"),
            "approve": !local && matches!(r, "approver" | "admin"),
            "agents": true,
            "audit": local || r == "admin",
        })
    }
}

pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/app.css", get(assets::style))
        .route("/api/me", get(me))
        .route("/api/events", get(events::stream))
        .route("/api/sessions", get(sessions))
        .route("/api/sessions/{id}/report", get(report))
        .route("/api/sessions/{id}/kill", post(kill))
        .route("/api/requests", get(requests))
        .route("/api/requests/{id}", get(request))
        .route("/api/requests/{id}/approve", post(approve))
        .route("/api/requests/{id}/deny", post(deny))
        .route("/api/agents", get(agents))
        .route("/api/audit", get(audit))
        .with_state(console)
}

async fn me(State(c): State<Arc<Console>>) -> ApiResult {
    let m = &c.me;
    Ok(Json(json!({ "mode": m.mode, "name": m.name, "role": m.role, "target": m.target, "can": m.can() })))
}

#[derive(Deserialize)]
struct AllQuery {
    #[serde(default)]
    all: bool,
}

/// Events the sessions page reads per live session and refresh (collector mode):
/// one page, so a page of busy sessions still answers in time; a session that
/// writes more than that between two refreshes shows its count as catching up.
const LIST_BUDGET: usize = 10_000;

/// Sessions with who, why (the grant's reason), time left and process count. In
/// collector mode the count is what the log shows ([`follow`]): processes seen on the
/// record that no `exit` ended.
async fn sessions(State(c): State<Arc<Console>>, Query(q): Query<AllQuery>) -> ApiResult {
    let list = c.target.sessions(q.all).await?;
    let mut why: HashMap<String, String> = HashMap::new();
    let mut seen: HashMap<String, (usize, bool)> = HashMap::new();
    let mut local_host = String::new();
    match &c.target {
        Target::Agent(a) => {
            why = a.clone().list_grants(true).await.unwrap_or_default().into_iter().map(|g| (g.id, g.reason)).collect();
            // The agent's sessions carry no host: every one is on the agent's.
            local_host = a.clone().status().await.map(|s| s.host).unwrap_or_default();
        }
        Target::Collector(col) => {
            let mut grants: Vec<&str> = list.iter().map(|h| h.session.grant.as_str()).collect();
            grants.sort_unstable();
            grants.dedup();
            let live = list.iter().filter(|h| h.session.state() == SessionState::Live).map(|h| h.session.id.as_str());
            let reads = grants.into_iter().map(Read::Grant).chain(live.map(Read::Session));
            for (read, got) in read_all(&c, col, reads).await? {
                match (read, got) {
                    (Read::Grant(g), Got::Why(w)) => {
                        why.insert(g, w);
                    }
                    (Read::Session(id), Got::Seen(n, caught_up)) => {
                        seen.insert(id, (n, caught_up));
                    }
                    _ => unreachable!("each read answers in its own kind"),
                }
            }
        }
    }
    let now = crate::output::now_unix_ns();
    let rows: Vec<Value> = list
        .iter()
        .map(|h| {
            let s = &h.session;
            let live = s.state() == SessionState::Live;
            let (processes, caught_up) = seen.get(&s.id).copied().unwrap_or((s.processes.len(), true));
            json!({
                "id": s.id,
                "grant": s.grant,
                "subject": s.subject,
                "why": why.get(&s.grant).cloned().unwrap_or_default(),
                "host": if h.host.is_empty() { &local_host } else { &h.host },
                "agent_id": h.agent_id,
                "state": state_name(s.state()),
                "root_pid": s.root_pid,
                "processes": processes,
                "processes_caught_up": caught_up,
                "started_at": rfc3339(s.started_at_unix_ns),
                "expires_at_unix_ms": s.expires_at_unix_ns / 1_000_000,
                "left": if live { crate::output::left(s.expires_at_unix_ns, now) } else { String::new() },
                "command": s.command,
                "end_reason": s.end_reason,
            })
        })
        .collect();
    Ok(Json(json!({ "sessions": rows })))
}

/// Reads of the collector's log the sessions page runs at once at most: enough to
/// hide each `Query`'s round trip, few enough not to swamp the collector.
const LIST_READS: usize = 8;

/// One read for the sessions page: a grant's reason, or a live session's books.
enum Read<T> {
    Grant(T),
    Session(T),
}

/// What a [`Read`] found: the reason, or the process count and whether it caught up.
enum Got {
    Why(String),
    Seen(usize, bool),
}

/// Runs `reads` against the collector, [`LIST_READS`] at a time (each read of a
/// session's books is independent of the others: each book has its own lock); the
/// answers in no particular order, the caller keys them. The first failure fails
/// the page, as a serial read would.
async fn read_all<'a>(
    c: &Arc<Console>,
    col: &crate::remote::Collector,
    reads: impl Iterator<Item = Read<&'a str>>,
) -> anyhow::Result<Vec<(Read<String>, Got)>> {
    let mut reads = reads.map(|r| match r {
        Read::Grant(g) => Read::Grant(g.to_owned()),
        Read::Session(s) => Read::Session(s.to_owned()),
    });
    let mut running = tokio::task::JoinSet::new();
    let mut done = Vec::new();
    loop {
        while running.len() < LIST_READS {
            let Some(read) = reads.next() else { break };
            let (c, col) = (c.clone(), col.clone());
            running.spawn(async move {
                let got = match &read {
                    Read::Grant(g) => Got::Why(c.books.grant(&col, g).await?.reason),
                    Read::Session(id) => {
                        let u = c.books.update(&col, id, LIST_BUDGET).await?;
                        Got::Seen(u.processes, u.caught_up)
                    }
                };
                anyhow::Ok((read, got))
            });
        }
        match running.join_next().await {
            Some(r) => done.push(r.map_err(|e| anyhow::anyhow!("a read for the sessions page failed: {e}"))??),
            None => return Ok(done),
        }
    }
}

/// A session's report: the agent's (live or recent), or in collector mode the one
/// the agent sent at the end, else the session's events summed up so far
/// ([`follow`]), with `processes` and whether the read `caught_up`.
async fn report(State(c): State<Arc<Console>>, Path(id): Path<String>) -> ApiResult {
    match &c.target {
        Target::Collector(col) => {
            let seen = c.books.update(col, &id, follow::BUDGET).await?;
            if seen.report.grant.is_empty() && seen.report.subject.is_empty() {
                return Err(ApiError::new(StatusCode::NOT_FOUND, format!("the collector's log has no events of session {id}")));
            }
            let mut v = crate::render::report_json(&seen.report);
            v["processes"] = seen.processes.into();
            v["caught_up"] = seen.caught_up.into();
            Ok(Json(v))
        }
        Target::Agent(_) => Ok(Json(crate::render::report_json(&crate::report::fetch(&c.target, &id).await?))),
    }
}

#[derive(Deserialize)]
struct ReasonBody {
    #[serde(default)]
    reason: String,
}

/// Kills a session's tree; the kill report with the time the call took.
async fn kill(State(c): State<Arc<Console>>, Path(id): Path<String>, Json(body): Json<ReasonBody>) -> ApiResult {
    if body.reason.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "a kill needs a reason (it goes into the audit log)"));
    }
    let start = std::time::Instant::now();
    let resp = c.target.kill(&id, body.reason.trim()).await?;
    let mut v = report_json(&KillTarget::Session(&id), &resp.report.clone().unwrap_or_default());
    v["delivered"] = resp.delivered.into();
    v["host"] = resp.host.into();
    v["agent_id"] = resp.agent_id.into();
    v["round_trip_ms"] = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX).into();
    Ok(Json(v))
}

fn collector(c: &Console, what: &str) -> Result<crate::remote::Collector, ApiError> {
    match &c.target {
        Target::Collector(col) => Ok(col.clone()),
        Target::Agent(_) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, format!("{what} live on a collector: start the console with --collector")))
        }
    }
}

async fn requests(State(c): State<Arc<Console>>, Query(q): Query<AllQuery>) -> ApiResult {
    let col = collector(&c, "requests")?;
    let list = col.call("ListRequests", col.approvals().list_requests(ListRequestsRequest { all: q.all })).await?;
    let rows: Vec<Value> = list.requests.iter().map(request_json).collect();
    Ok(Json(json!({ "requests": rows })))
}

/// One request with the policy text it pinned and what that policy grants
/// (`GetRequest`), so an approver reads what they approve before the buttons show.
async fn request(State(c): State<Arc<Console>>, Path(id): Path<String>) -> ApiResult {
    let col = collector(&c, "requests")?;
    let r = col.call("GetRequest", col.approvals().get_request(GetRequestRequest { id })).await?;
    Ok(Json(request_json(&r)))
}

fn request_json(r: &warrant_proto::RequestInfo) -> Value {
    json!({
        "id": r.id, "state": r.state, "subject": r.subject, "requested_by": r.requested_by, "host": r.host,
        "policy": r.policy_name, "policy_digest": r.policy_digest, "policy_text": r.policy_text,
        "policy_grants": r.policy_grants,
        "ttl_seconds": r.ttl_seconds, "reason": r.reason, "approvals_needed": r.approvals_needed,
        "approver_role": r.approver_role, "approvers": r.approvers, "grant": r.grant, "extends": r.extends,
        "denied_by": r.denied_by, "deny_reason": r.deny_reason,
    })
}

async fn approve(State(c): State<Arc<Console>>, Path(id): Path<String>, Json(_): Json<Value>) -> ApiResult {
    let col = collector(&c, "approvals")?;
    let r = col.call("Approve", col.approvals().approve(ApproveRequest { id })).await?;
    Ok(Json(request_json(&r)))
}

async fn deny(State(c): State<Arc<Console>>, Path(id): Path<String>, Json(body): Json<ReasonBody>) -> ApiResult {
    let col = collector(&c, "approvals")?;
    let r = col.call("Deny", col.approvals().deny(DenyRequest { id, reason: body.reason })).await?;
    Ok(Json(request_json(&r)))
}

/// The collector's agents (connection, acked seq, queued commands), or the local
/// agent's uplink and spool.
async fn agents(State(c): State<Arc<Console>>) -> ApiResult {
    match &c.target {
        Target::Collector(col) => {
            let list = col.clone().agents().await?;
            let rows: Vec<Value> = list
                .iter()
                .map(|a| {
                    json!({ "agent_id": a.agent_id, "host": a.host, "version": a.version, "connected": a.connected,
                            "last_seen": rfc3339(a.last_seen_unix_ns), "acked_seq": a.acked_seq,
                            "queued_commands": a.queued_commands })
                })
                .collect();
            Ok(Json(json!({ "agents": rows })))
        }
        Target::Agent(a) => {
            let s = a.clone().status().await?;
            Ok(Json(json!({ "agents": [{
                "agent_id": s.agent_id, "host": s.host, "version": s.version,
                "collector": s.collector, "connected": s.collector_connected, "acked_seq": s.acked_seq,
                "spool_events": s.spool_events, "spool_bytes": s.spool_bytes, "spool_full_total": s.spool_full_total,
                "events_total": s.events_total, "events_lost_total": s.events_lost_total,
            }] })))
        }
    }
}

async fn audit(State(c): State<Arc<Console>>) -> ApiResult {
    let (log, ok, records, head, problems) = match &c.target {
        Target::Collector(col) => {
            let r = col.clone().verify_log().await?;
            (format!("collector {}", col.url()), r.ok, r.records, r.head, r.problems)
        }
        Target::Agent(a) => {
            let r = a.clone().verify_audit_log().await?;
            (r.path, r.ok, r.records, r.head, r.problems)
        }
    };
    Ok(Json(json!({ "log": log, "ok": ok, "records": records, "head": head, "problems": problems })))
}
