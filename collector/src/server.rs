//! The collector's gRPC server: `Ingest.Stream` for agents and the `Collector`
//! service for people, over one mTLS listener. [`run`] takes the listener and a
//! shutdown future so tests can start it on `127.0.0.1:0`.
//!
//! Every call first maps the caller's certificate name to a role; a refusal is
//! `PERMISSION_DENIED` naming the identity and the role needed, and is itself
//! recorded in the log (`control_action`, action `refused`), as are kills, revokes,
//! command results, and agents connecting and disconnecting.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::Stream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};
use warrant_proto::agent_message::Msg as AgentMsg;
use warrant_proto::collector_message::Msg as CollectorMsg;
use warrant_proto::collector_server::{Collector, CollectorServer};
use warrant_proto::command::Op;
use warrant_proto::event::Event as Kind;
use warrant_proto::ingest_server::{Ingest, IngestServer};
use warrant_proto::{
    Ack, AgentMessage, AgentStatusRequest, AgentStatusResponse, BootAck, CollectorMessage, CollectorSessionsRequest,
    CollectorSessionsResponse, CollectorWatchRequest, Command, CommandResult, Event, EventFilter, KillReport, KillRequest,
    KnownAgent, QueryRequest, QueryResponse, RemoteKillRequest, RemoteKillResponse, RemoteRevokeRequest,
    RevokeGrantRequest, VerifyLogRequest, VerifyLogResponse, Welcome,
};

use crate::auth::{Role, Roles, identity};
use crate::hub::{EventHub, Filter};
use crate::metrics::Metrics;
use crate::store::{Cursor, QuerySpec, Reader, verify_dir};
use crate::writer::{Writer, now_ns, random_id};

/// How long an agent has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long Kill/Revoke wait for the agent's report before answering "queued".
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Most events one Query page returns.
const QUERY_MAX: usize = 10_000;
/// Events per replay page read from the log.
const REPLAY_PAGE: usize = 2048;

/// What the services share.
pub struct State {
    /// Names → roles.
    pub roles: Roles,
    /// The log writer.
    pub writer: Writer,
    /// Reads of the log and index.
    pub reader: Reader,
    /// Live fan-out to watchers.
    pub hub: EventHub,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The data dir, for VerifyLog.
    pub data_dir: PathBuf,
    /// Connected agents and commands waiting for a result.
    agents: Mutex<Agents>,
}

/// Connected agents, what is known of every agent, and waiting commands.
#[derive(Default)]
struct Agents {
    /// agent id → its stream's outbound queue and connection number.
    connected: HashMap<String, (mpsc::Sender<Result<CollectorMessage, Status>>, u64)>,
    /// agent id → status (updated on hello, batches and disconnect).
    known: HashMap<String, KnownAgent>,
    /// command id → (agent, who waits for the result).
    waiting: HashMap<String, (String, oneshot::Sender<CommandResult>)>,
    /// Connection numbers, so a replaced stream's end does not unregister its successor.
    next_conn: u64,
}

impl State {
    /// Builds the shared state; `known` agents come from the index.
    #[must_use]
    pub fn new(roles: Roles, writer: Writer, reader: Reader, hub: EventHub, metrics: Arc<Metrics>, data_dir: PathBuf) -> Arc<State> {
        let mut agents = Agents::default();
        if let Ok(boots) = reader.boots() {
            for (agent, boot, seq) in boots {
                if agent == crate::writer::COLLECTOR_AGENT_ID {
                    continue;
                }
                let k = agents.known.entry(agent.clone()).or_insert_with(|| KnownAgent { agent_id: agent, ..KnownAgent::default() });
                if k.boot_id.is_empty() {
                    k.boot_id = boot;
                    k.acked_seq = seq;
                }
            }
        }
        Arc::new(State { roles, writer, reader, hub, metrics, data_dir, agents: Mutex::new(agents) })
    }

    fn agents(&self) -> std::sync::MutexGuard<'_, Agents> {
        self.agents.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The caller's identity, if it holds `needed`; a refusal is logged and
    /// recorded.
    async fn authorize<T>(&self, req: &Request<T>, needed: Role, rpc: &str) -> Result<String, Status> {
        let who = identity(req)?;
        match self.roles.check(&who, needed, rpc) {
            Ok(_) => Ok(who),
            Err(why) => {
                self.metrics.refused.fetch_add(1, Relaxed);
                tracing::warn!(identity = %who, rpc, "refused: {why}");
                if let Err(e) = self.writer.record("refused", &who, &format!("rpc {rpc}"), "refused", &why).await {
                    tracing::error!(error = %e, "cannot record a refused call");
                }
                Err(Status::permission_denied(why))
            }
        }
    }

    /// Sends `cmd` to `agent` and waits for its result. `Ok(None)`: not connected,
    /// or it went away (or did not answer in time) before answering; the command
    /// stays queued and is delivered when the agent connects.
    async fn send_command(&self, agent: &str, cmd: Command) -> Result<Option<CommandResult>, Status> {
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
    async fn command_result(&self, agent: &str, result: CommandResult) {
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
    async fn remote(&self, who: &str, action: &str, target: &str, agents: Vec<String>, make: impl Fn() -> Op) -> Result<RemoteKillResponse, Status> {
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

    async fn record(&self, action: &str, by: &str, target: &str, outcome: &str, detail: &str) {
        if let Err(e) = self.writer.record(action, by, target, outcome, detail).await {
            tracing::error!(error = %e, action, target, "cannot record a control action");
        }
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

/// Builds a hub filter from a request's filter.
fn filter_of(f: Option<EventFilter>) -> Result<Filter, Status> {
    let f = f.unwrap_or_default();
    let some = |s: String| (!s.is_empty()).then_some(s);
    let mut filter = Filter::new(some(f.session), some(f.grant), &f.kinds).map_err(|e| Status::invalid_argument(e.to_string()))?;
    filter.host = some(f.host);
    filter.agent_id = some(f.agent_id);
    filter.subject = some(f.subject);
    Ok(filter)
}

/// The Ingest service.
pub struct IngestService(pub Arc<State>);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Ingest for IngestService {
    type StreamStream = BoxStream<CollectorMessage>;

    async fn stream(&self, req: Request<Streaming<AgentMessage>>) -> Result<Response<Self::StreamStream>, Status> {
        let state = self.0.clone();
        let who = state.authorize(&req, Role::Agent, "Ingest.Stream").await?;
        let mut inbound = req.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Err(_) => return Err(Status::deadline_exceeded("no hello within 10s")),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(None)) => return Err(Status::invalid_argument("the stream ended before hello")),
            Ok(Ok(Some(AgentMessage { msg: Some(AgentMsg::Hello(h)) }))) => h,
            Ok(Ok(Some(_))) => return Err(Status::invalid_argument("the first message must be hello")),
        };
        if hello.agent_id.is_empty() || hello.boot_id.is_empty() {
            return Err(Status::invalid_argument("hello needs agent_id and boot_id"));
        }
        if hello.agent_id == crate::writer::COLLECTOR_AGENT_ID {
            return Err(Status::invalid_argument("agent_id \"collector\" is reserved for the collector's own records"));
        }
        let agent = hello.agent_id.clone();
        let mut boots = hello.pending_boots.clone();
        if !boots.contains(&hello.boot_id) {
            boots.push(hello.boot_id.clone());
        }
        let marks: Vec<BootAck> = state
            .writer
            .high_water(&agent, boots.clone())
            .await
            .map_err(Status::unavailable)?
            .into_iter()
            .zip(boots)
            .map(|(seq, boot_id)| BootAck { boot_id, seq })
            .collect();
        let queued = {
            let reader = state.reader.clone();
            let a = agent.clone();
            tokio::task::spawn_blocking(move || reader.queued_commands(&a)).await.ok().and_then(Result::ok).unwrap_or_default()
        };

        let (out, rx) = mpsc::channel::<Result<CollectorMessage, Status>>(256);
        let current_ack = marks.iter().find(|b| b.boot_id == hello.boot_id).map_or(0, |b| b.seq);
        let _ = out.send(Ok(CollectorMessage { msg: Some(CollectorMsg::Welcome(Welcome { acked: marks })) })).await;
        let conn = {
            let mut agents = state.agents();
            agents.next_conn += 1;
            let conn = agents.next_conn;
            if agents.connected.insert(agent.clone(), (out.clone(), conn)).is_none() {
                state.metrics.agents_connected.fetch_add(1, Relaxed);
            }
            let k = agents.known.entry(agent.clone()).or_default();
            *k = KnownAgent {
                agent_id: agent.clone(),
                host: hello.host.clone(),
                boot_id: hello.boot_id.clone(),
                version: hello.version.clone(),
                connected: true,
                last_seen_unix_ns: now_ns(),
                acked_seq: current_ack,
                queued_commands: 0,
            };
            conn
        };
        state
            .record("agent_connect", &who, &format!("agent {agent}"), "ok", &format!("host {} boot {} version {}", hello.host, hello.boot_id, hello.version))
            .await;
        tracing::info!(agent = %agent, host = %hello.host, identity = %who, "agent connected");
        for cmd in queued {
            let _ = out.send(Ok(CollectorMessage { msg: Some(CollectorMsg::Command(cmd)) })).await;
        }

        // Batches are written in order with several in flight; acks go out in
        // the same order once each is durable.
        let (pending_tx, mut pending_rx) = mpsc::channel::<tokio::sync::oneshot::Receiver<Result<crate::store::BatchOutcome, String>>>(8);
        let acker_out = out.clone();
        let acker_state = state.clone();
        let acker_agent = agent.clone();
        let acker = tokio::spawn(async move {
            while let Some(rx) = pending_rx.recv().await {
                match rx.await {
                    Ok(Ok(outcome)) => {
                        for (boot, seq) in outcome.acks {
                            if let Some(k) = acker_state.agents().known.get_mut(&acker_agent)
                                && k.boot_id == boot
                            {
                                k.acked_seq = seq;
                                k.last_seen_unix_ns = now_ns();
                            }
                            if acker_out.send(Ok(CollectorMessage { msg: Some(CollectorMsg::Ack(Ack { boot_id: boot, seq })) })).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(Err(e)) => {
                        let _ = acker_out.send(Err(Status::unavailable(e))).await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        });
        let host = hello.host.clone();
        tokio::spawn(async move {
            let end = loop {
                let msg = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break "stream closed".to_owned(),
                    Err(e) => break format!("stream error: {}", e.message()),
                };
                match msg.msg {
                    Some(AgentMsg::Batch(batch)) => {
                        state.metrics.batches.fetch_add(1, Relaxed);
                        let mut events = batch.events;
                        if let Some(bad) = events.iter().find(|e| (!e.agent_id.is_empty() && e.agent_id != agent) || e.seq == 0) {
                            let why = if bad.seq == 0 {
                                "an event has seq 0: seqs start at 1".to_owned()
                            } else {
                                format!("an event of agent {:?} arrived on agent {agent:?}'s stream", bad.agent_id)
                            };
                            let _ = out.send(Err(Status::invalid_argument(why.clone()))).await;
                            break why;
                        }
                        for ev in &mut events {
                            if ev.agent_id.is_empty() {
                                ev.agent_id.clone_from(&agent);
                            }
                            if ev.host.is_empty() {
                                ev.host.clone_from(&host);
                            }
                        }
                        match state.writer.submit(events).await {
                            Ok(rx) => {
                                if pending_tx.send(rx).await.is_err() {
                                    break "acks stopped".to_owned();
                                }
                            }
                            Err(e) => {
                                let _ = out.send(Err(Status::unavailable(e.clone()))).await;
                                break e;
                            }
                        }
                    }
                    Some(AgentMsg::Result(r)) => state.command_result(&agent, r).await,
                    Some(AgentMsg::Hello(_)) => {
                        let _ = out.send(Err(Status::invalid_argument("hello may only be sent once"))).await;
                        break "second hello".to_owned();
                    }
                    None => {}
                }
            };
            drop(pending_tx);
            let _ = acker.await;
            let (was_current, dropped_waiters) = {
                let mut agents = state.agents();
                let current = agents.connected.get(&agent).is_some_and(|(_, c)| *c == conn);
                if current {
                    agents.connected.remove(&agent);
                    state.metrics.agents_connected.fetch_sub(1, Relaxed);
                    if let Some(k) = agents.known.get_mut(&agent) {
                        k.connected = false;
                        k.last_seen_unix_ns = now_ns();
                    }
                }
                let before = agents.waiting.len();
                agents.waiting.retain(|_, (a, _)| *a != agent || !current);
                (current, before - agents.waiting.len())
            };
            if was_current {
                state
                    .record("agent_disconnect", &agent, &format!("agent {agent}"), "ok", &format!("{end}; {dropped_waiters} command(s) in flight stay queued"))
                    .await;
            }
            tracing::info!(agent = %agent, reason = %end, "agent disconnected");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The Collector service.
pub struct CollectorService(pub Arc<State>);

#[tonic::async_trait]
impl Collector for CollectorService {
    type WatchStream = BoxStream<Event>;

    async fn watch(&self, req: Request<CollectorWatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let state = self.0.clone();
        state.authorize(&req, Role::Watcher, "Watch").await?;
        let r = req.into_inner();
        let filter = filter_of(r.filter)?;
        // Subscribe before replaying, so nothing falls between the two.
        let mut live = state.hub.subscribe(filter.clone());
        let (tx, rx) = mpsc::channel::<Result<Event, Status>>(256);
        state.metrics.watchers.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            let metrics = state.metrics.clone();
            let _gauge = Gauge(metrics.clone());
            let mut replayed: HashMap<(String, String), u64> = HashMap::new();
            if r.since_unix_ns > 0 {
                // Everything published before the subscription must be in the
                // index the replay reads.
                if let Err(e) = state.writer.sync().await {
                    let _ = tx.send(Err(Status::unavailable(e))).await;
                    return;
                }
                let spec = QuerySpec { filter, from: r.since_unix_ns, to: 0, limit: REPLAY_PAGE };
                let mut cursor = Cursor::Start;
                loop {
                    let (reader, s) = (state.reader.clone(), spec.clone());
                    let page = match tokio::task::spawn_blocking(move || reader.query(&s, cursor)).await {
                        Ok(Ok(p)) => p,
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(Status::internal(format!("cannot replay from the log: {e}")))).await;
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                            return;
                        }
                    };
                    for ev in page.events {
                        let mark = replayed.entry((ev.agent_id.clone(), ev.boot_id.clone())).or_insert(0);
                        *mark = (*mark).max(ev.seq);
                        if tx.send(Ok(ev)).await.is_err() {
                            return;
                        }
                        metrics.events_out.fetch_add(1, Relaxed);
                    }
                    match page.next {
                        Some(c) => cursor = c,
                        None => break,
                    }
                }
            }
            while let Some(ev) = live.next().await {
                match &ev.event {
                    Some(Kind::WatchMissed(m)) => {
                        metrics.watch_missed.fetch_add(m.count, Relaxed);
                    }
                    Some(Kind::EventsLost(_)) => {}
                    _ => {
                        // Already sent by the replay (stored before it read the log).
                        if replayed.get(&(ev.agent_id.clone(), ev.boot_id.clone())).is_some_and(|m| ev.seq <= *m) {
                            continue;
                        }
                        // Stored before the watch began but indexed after the replay
                        // read the index, or resent late by an agent: still only
                        // what `since` asked for.
                        if r.since_unix_ns > 0 && ev.time_unix_ns < r.since_unix_ns {
                            continue;
                        }
                    }
                }
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
                metrics.events_out.fetch_add(1, Relaxed);
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn query(&self, req: Request<QueryRequest>) -> Result<Response<QueryResponse>, Status> {
        self.0.authorize(&req, Role::Watcher, "Query").await?;
        let r = req.into_inner();
        let cursor = Cursor::parse(&r.page).map_err(Status::invalid_argument)?;
        let limit = match r.limit {
            0 => 1000,
            n => (n as usize).min(QUERY_MAX),
        };
        let spec = QuerySpec { filter: filter_of(r.filter)?, from: r.from_unix_ns, to: r.to_unix_ns, limit };
        // Read what was acknowledged before this call.
        self.0.writer.sync().await.map_err(Status::unavailable)?;
        let reader = self.0.reader.clone();
        let page = tokio::task::spawn_blocking(move || reader.query(&spec, cursor))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("cannot query the log: {e}")))?;
        Ok(Response::new(QueryResponse { events: page.events, next_page: page.next.map(Cursor::token).unwrap_or_default() }))
    }

    async fn sessions(&self, req: Request<CollectorSessionsRequest>) -> Result<Response<CollectorSessionsResponse>, Status> {
        self.0.authorize(&req, Role::Watcher, "Sessions").await?;
        let r = req.into_inner();
        self.0.writer.sync().await.map_err(Status::unavailable)?;
        let reader = self.0.reader.clone();
        let all = tokio::task::spawn_blocking(move || reader.sessions())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("cannot read sessions: {e}")))?;
        let sessions = all
            .into_iter()
            .filter(|s| r.host.is_empty() || s.host == r.host)
            .filter(|s| r.all || s.session.as_ref().is_some_and(|x| x.end_reason.is_empty()))
            .collect();
        Ok(Response::new(CollectorSessionsResponse { sessions }))
    }

    async fn kill(&self, req: Request<RemoteKillRequest>) -> Result<Response<RemoteKillResponse>, Status> {
        let who = self.0.authorize(&req, Role::Responder, "Kill").await?;
        let r = req.into_inner();
        if r.session.is_empty() {
            return Err(Status::invalid_argument("kill needs a session"));
        }
        self.0.writer.sync().await.map_err(Status::unavailable)?;
        let reader = self.0.reader.clone();
        let s = r.session.clone();
        let holder = tokio::task::spawn_blocking(move || reader.session_agent(&s))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        let target = format!("session {}", r.session);
        let Some(holder) = holder else {
            self.0.record("kill", &who, &target, "failed", "no agent reported this session").await;
            return Err(Status::not_found(format!("unknown session {:?}: no agent reported it", r.session)));
        };
        let (session, reason) = (r.session.clone(), r.reason.clone());
        let resp = self
            .0
            .remote(&who, "kill", &target, vec![holder.agent_id.clone()], || Op::Kill(KillRequest { session: session.clone(), reason: reason.clone() }))
            .await?;
        Ok(Response::new(RemoteKillResponse { host: holder.host, ..resp }))
    }

    async fn revoke(&self, req: Request<RemoteRevokeRequest>) -> Result<Response<RemoteKillResponse>, Status> {
        let who = self.0.authorize(&req, Role::Responder, "Revoke").await?;
        let r = req.into_inner();
        if r.grant.is_empty() {
            return Err(Status::invalid_argument("revoke needs a grant"));
        }
        self.0.writer.sync().await.map_err(Status::unavailable)?;
        let reader = self.0.reader.clone();
        let g = r.grant.clone();
        let agents = tokio::task::spawn_blocking(move || reader.grant_agents(&g))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        let target = format!("grant {}", r.grant);
        if agents.is_empty() {
            self.0.record("revoke", &who, &target, "failed", "no agent reported this grant").await;
            return Err(Status::not_found(format!("unknown grant {:?}: no agent reported it", r.grant)));
        }
        let (grant, reason) = (r.grant.clone(), r.reason.clone());
        let resp = self
            .0
            .remote(&who, "revoke", &target, agents, || Op::Revoke(RevokeGrantRequest { grant: grant.clone(), reason: reason.clone() }))
            .await?;
        Ok(Response::new(resp))
    }

    async fn agent_status(&self, req: Request<AgentStatusRequest>) -> Result<Response<AgentStatusResponse>, Status> {
        self.0.authorize(&req, Role::Watcher, "AgentStatus").await?;
        let mut agents: Vec<KnownAgent> = self.0.agents().known.values().cloned().collect();
        agents.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        for a in &mut agents {
            let reader = self.0.reader.clone();
            let id = a.agent_id.clone();
            let queued = tokio::task::spawn_blocking(move || reader.queued_commands(&id)).await.ok().and_then(Result::ok).unwrap_or_default();
            a.queued_commands = u32::try_from(queued.len()).unwrap_or(u32::MAX);
        }
        Ok(Response::new(AgentStatusResponse { agents }))
    }

    async fn verify_log(&self, req: Request<VerifyLogRequest>) -> Result<Response<VerifyLogResponse>, Status> {
        let who = self.0.authorize(&req, Role::Admin, "VerifyLog").await?;
        let anchor = self.0.writer.anchor().await.map_err(Status::unavailable)?;
        let dir = self.0.data_dir.clone();
        let a = anchor.clone();
        let report = tokio::task::spawn_blocking(move || verify_dir(&dir, Some(a.records), Some(&a)))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("cannot verify the log: {e}")))?;
        let ok = report.problems.is_empty();
        self.0
            .record("verify_log", &who, "log", if ok { "ok" } else { "failed" }, &format!("{} records, {} problems", report.records, report.problems.len()))
            .await;
        Ok(Response::new(VerifyLogResponse { ok, records: report.records, problems: report.problems, head: report.head }))
    }
}

/// Decrements the watcher gauge when a watch ends.
struct Gauge(Arc<Metrics>);

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Relaxed);
    }
}

/// TLS material, as PEM bytes.
pub struct Tls {
    /// The CA that signs client certificates.
    pub ca: Vec<u8>,
    /// The collector's certificate (chain).
    pub cert: Vec<u8>,
    /// The collector's private key.
    pub key: Vec<u8>,
}

/// Serves both services with mTLS on `listener` until `shutdown` completes.
///
/// # Errors
/// When the TLS material is unusable or the server fails.
pub async fn run(state: Arc<State>, tls: &Tls, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), tonic::transport::Error> {
    run_with(state, None, tls, listener, shutdown).await
}

/// [`run`], plus the `Approvals` service when given.
///
/// # Errors
/// When the TLS material is unusable or the server fails.
pub async fn run_with(
    state: Arc<State>,
    approvals: Option<Arc<crate::approvals::ApprovalState>>,
    tls: &Tls,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&tls.cert, &tls.key))
        .client_ca_root(Certificate::from_pem(&tls.ca));
    Server::builder()
        .tls_config(tls)?
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(IngestServer::new(IngestService(state.clone())))
        .add_service(CollectorServer::new(CollectorService(state)))
        .add_optional_service(approvals.map(|a| a.service()))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
