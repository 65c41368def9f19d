//! `Ingest.Stream`: an agent says hello, is told where each of its boots resumes,
//! then streams batches; each batch is acknowledged once durable, in order, with
//! several in flight. Commands for the agent go out on the same stream.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};
use warrant_proto::collector_message::Msg as CollectorMsg;
use warrant_proto::event::Event as Kind;
use warrant_proto::{Ack, BootAck, CollectorMessage, Event, KnownAgent, Welcome};

use super::wire::ingest_server::Ingest;
use super::wire::{RawAgentMessage, RawBatch, RawMsg, decode_event};
use super::{BoxStream, State};
use crate::auth::Role;
use crate::writer::now_ns;

/// How long an agent has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The Ingest service.
pub struct IngestService(pub Arc<State>);

#[tonic::async_trait]
impl Ingest for IngestService {
    type StreamStream = BoxStream<CollectorMessage>;

    async fn stream(&self, req: Request<Streaming<RawAgentMessage>>) -> Result<Response<Self::StreamStream>, Status> {
        let state = self.0.clone();
        let who = state.authorize(&req, Role::Agent, "Ingest.Stream").await?;
        let mut inbound = req.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Err(_) => return Err(Status::deadline_exceeded("no hello within 10s")),
            Ok(Err(e)) => return Err(state.inbound_error(&e).unwrap_or(e)),
            Ok(Ok(None)) => return Err(Status::invalid_argument("the stream ended before hello")),
            Ok(Ok(Some(RawAgentMessage { msg: Some(RawMsg::Hello(h)) }))) => h,
            Ok(Ok(Some(_))) => return Err(Status::invalid_argument("the first message must be hello")),
        };
        if hello.agent_id.is_empty() || hello.boot_id.is_empty() {
            return Err(Status::invalid_argument("hello needs agent_id and boot_id"));
        }
        if hello.agent_id == crate::writer::COLLECTOR_AGENT_ID {
            return Err(Status::invalid_argument("agent_id \"collector\" is reserved for the collector's own records"));
        }
        let agent = hello.agent_id.clone();
        // Who may speak as this agent id: checked before anything of the agent's
        // (its resume point, its commands, its connection) is touched.
        if let Err(why) = state.bind(&who, &agent) {
            return Err(state.refuse(&who, &format!("agent {agent}"), &format!("hello as agent {agent:?}: {why}")).await);
        }
        let mut boots = hello.pending_boots.clone();
        if !boots.contains(&hello.boot_id) {
            boots.push(hello.boot_id.clone());
        }
        if let Some(empty) = boots.iter().position(String::is_empty) {
            return Err(Status::invalid_argument(format!("hello: pending_boots[{empty}] is empty: a boot id is needed")));
        }
        let all_boots = boots.clone();
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
        let _ = out.send(Ok(CollectorMessage { msg: Some(CollectorMsg::Welcome(Welcome { acked: marks, max_message_bytes: state.max_message_bytes as u64 })) })).await;
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
                        // Stored verbatim: a kind this build does not know.
                        let unknown = outcome.accepted.iter().filter(|e| e.unknown_kind.is_some()).count();
                        acker_state.metrics.unknown_kinds.fetch_add(unknown as u64, Relaxed);
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
        let said = Hello { host: hello.host.clone(), boot_id: hello.boot_id.clone(), boots: all_boots };
        tokio::spawn(async move {
            // Why the stream ended, and the status that tells the agent (none when
            // it went away itself).
            let mut stopping = state.stopping.clone();
            let (end, status): (String, Option<Status>) = loop {
                let next = tokio::select! {
                    m = inbound.message() => m,
                    _ = stopping.wait_for(|s| *s) => {
                        break ("the collector is shutting down".to_owned(), Some(shutting_down()));
                    }
                };
                let msg = match next {
                    Ok(Some(m)) => m,
                    Ok(None) => break ("stream closed".to_owned(), None),
                    Err(e) => match state.inbound_error(&e) {
                        Some(s) => {
                            state.metrics.batches_refused.fetch_add(1, Relaxed);
                            tracing::warn!(agent = %agent, "refused: {}", s.message());
                            state.record_invalid(&who, &agent, s.message()).await;
                            break (s.message().to_owned(), Some(s));
                        }
                        None => break (format!("stream error: {}", e.message()), None),
                    },
                };
                match msg.msg {
                    Some(RawMsg::Batch(batch)) => {
                        state.metrics.batches.fetch_add(1, Relaxed);
                        let checked = match check_batch(&agent, &said, batch) {
                            Ok(events) => state.check_sessions(&agent, events).await,
                            Err(r) => Err(r),
                        };
                        let events = match checked {
                            Ok(events) => events,
                            Err(Refusal::Invalid(why)) => {
                                state.metrics.batches_refused.fetch_add(1, Relaxed);
                                tracing::warn!(agent = %agent, "refused a batch: {why}");
                                state.record_invalid(&who, &agent, &why).await;
                                break (why.clone(), Some(Status::invalid_argument(why)));
                            }
                            Err(Refusal::Denied(why)) => {
                                state.metrics.batches_refused.fetch_add(1, Relaxed);
                                let status = state.refuse(&who, &format!("agent {agent}"), &why).await;
                                break (why, Some(status));
                            }
                        };
                        match state.writer.submit(events).await {
                            Ok(rx) => {
                                if pending_tx.send(rx).await.is_err() {
                                    break ("acks stopped".to_owned(), None);
                                }
                            }
                            Err(e) => break (e.clone(), Some(Status::unavailable(e))),
                        }
                    }
                    Some(RawMsg::Result(r)) => state.command_result(&agent, r).await,
                    Some(RawMsg::Hello(_)) => {
                        break ("second hello".to_owned(), Some(Status::invalid_argument("hello may only be sent once")));
                    }
                    None => {}
                }
            };
            // Acks of the batches before the refused one go out first, so the agent
            // knows exactly which batch the status is about.
            drop(pending_tx);
            let _ = acker.await;
            if let Some(status) = status {
                let _ = out.send(Err(status)).await;
            }
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

/// The status streams end with at shutdown: UNAVAILABLE, which agents (and
/// watchers) take as "reconnect".
pub(crate) fn shutting_down() -> Status {
    Status::unavailable("the collector is shutting down; reconnect (what was acknowledged is durable)")
}

/// Bytes of a refusal's reason kept in its `control_action` record.
const DETAIL_MAX: usize = 512;

/// What the hello said that batches are checked against.
struct Hello {
    /// The host name.
    host: String,
    /// The current boot.
    boot_id: String,
    /// Every boot the agent may send events of (pending ones and the current one).
    boots: Vec<String>,
}

/// Why a batch is refused.
enum Refusal {
    /// Malformed: `INVALID_ARGUMENT`.
    Invalid(String),
    /// Speaks for someone else, or writes what only the collector writes:
    /// `PERMISSION_DENIED` and a `control_action` refused record.
    Denied(String),
}

/// Decodes and checks one batch from `agent`'s stream (hello said `host`), filling
/// in the envelope the agent may leave empty.
///
/// # Errors
/// Why the batch is refused, naming the event (its index in the batch and seq).
fn check_batch(agent: &str, hello: &Hello, batch: RawBatch) -> Result<Vec<Event>, Refusal> {
    let host = hello.host.as_str();
    let mut events: Vec<Event> = Vec::with_capacity(batch.events.len());
    for (i, bytes) in batch.events.iter().enumerate() {
        let mut ev = decode_event(bytes).map_err(|e| Refusal::Invalid(format!("event {i} of the batch: {e}")))?;
        let bad = |what: String| Err(Refusal::Invalid(format!("event {i} of the batch (seq {}) {what}", ev.seq)));
        if ev.seq == 0 {
            return Err(Refusal::Invalid(format!("event {i} of the batch has seq 0: seqs start at 1")));
        }
        if !ev.agent_id.is_empty() && ev.agent_id != agent {
            return Err(Refusal::Denied(format!(
                "event {i} of the batch (seq {}) names agent {:?} on agent {agent:?}'s stream: an agent may only send its own events",
                ev.seq, ev.agent_id
            )));
        }
        if let Some(k @ (Kind::ControlAction(_) | Kind::WatchMissed(_))) = &ev.event {
            return Err(Refusal::Denied(format!(
                "event {i} of the batch (seq {}) is a {}: only the collector writes those",
                ev.seq,
                warrant_audit::kind_name_of(k)
            )));
        }
        if ev.boot_id.is_empty() {
            return bad("has no boot_id".to_owned());
        }
        if let Some(first) = events.first()
            && first.boot_id != ev.boot_id
        {
            return bad(format!("is of boot {:?} and event 0 of boot {:?}: a batch holds events of one boot", ev.boot_id, first.boot_id));
        }
        if !hello.boots.contains(&ev.boot_id) {
            return bad(format!("is of boot {:?}, which the hello did not name (boot_id or pending_boots)", ev.boot_id));
        }
        // Events of earlier boots may carry an older host name; the current boot's
        // must be the hello's.
        if ev.boot_id == hello.boot_id && !ev.host.is_empty() && ev.host != host {
            return bad(format!("says host {:?}, but the hello said {host:?}", ev.host));
        }
        if ev.agent_id.is_empty() {
            ev.agent_id = agent.to_owned();
        }
        if ev.host.is_empty() {
            ev.host = host.to_owned();
        }
        events.push(ev);
    }
    Ok(events)
}

impl State {
    /// Refuses a `session_start` for a session another agent already reported
    /// (which would re-route its kills here).
    async fn check_sessions(&self, agent: &str, events: Vec<Event>) -> Result<Vec<Event>, Refusal> {
        for ev in &events {
            if !matches!(ev.event, Some(Kind::SessionStart(_))) || ev.session.is_empty() {
                continue;
            }
            let (reader, s) = (self.reader.clone(), ev.session.clone());
            let holder = tokio::task::spawn_blocking(move || reader.session_agent(&s))
                .await
                .map_err(|e| Refusal::Invalid(format!("cannot check session {}: {e}", ev.session)))?
                .map_err(|e| Refusal::Invalid(format!("cannot check session {}: {e}", ev.session)))?;
            if let Some(h) = holder
                && h.agent_id != agent
            {
                return Err(Refusal::Denied(format!(
                    "session_start (seq {}) for session {} which agent {:?} holds: an agent may only start its own sessions",
                    ev.seq, ev.session, h.agent_id
                )));
            }
        }
        Ok(events)
    }

    /// Records a refused (malformed) message of `agent`'s stream as a `control_action`
    /// refused record, the reason cut to [`DETAIL_MAX`] bytes: an agent whose uplink
    /// is refused is on the collector's own record, not only in its log.
    async fn record_invalid(&self, who: &str, agent: &str, why: &str) {
        let mut detail = why.to_owned();
        if detail.len() > DETAIL_MAX {
            let mut cut = DETAIL_MAX;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
            detail.push('…');
        }
        self.record("refused", who, &format!("agent {agent}"), "refused", &format!("INVALID_ARGUMENT: {detail}")).await;
    }

    /// The status for an error reading an agent's stream: `INVALID_ARGUMENT` with
    /// the reason for a message that cannot be decoded or is over the size limit;
    /// `None` when the agent went away (nobody would read a status).
    pub(crate) fn inbound_error(&self, e: &Status) -> Option<Status> {
        match e.code() {
            Code::OutOfRange | Code::ResourceExhausted => Some(Status::invalid_argument(format!(
                "message over the collector's limit of {} bytes (max_message_bytes in its config; split batches below it): {}",
                self.max_message_bytes,
                e.message()
            ))),
            Code::Internal if e.message().contains("decode") || e.message().contains("invalid") => {
                Some(Status::invalid_argument(format!("cannot decode the agent's message: {}", e.message())))
            }
            _ => None,
        }
    }
}
