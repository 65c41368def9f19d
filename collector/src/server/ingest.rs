//! `Ingest.Stream`: an agent says hello, is told where each of its boots resumes,
//! then streams batches; each batch is acknowledged once durable, in order, with
//! several in flight. Commands for the agent go out on the same stream.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use warrant_proto::agent_message::Msg as AgentMsg;
use warrant_proto::collector_message::Msg as CollectorMsg;
use warrant_proto::ingest_server::Ingest;
use warrant_proto::{Ack, AgentMessage, BootAck, CollectorMessage, KnownAgent, Welcome};

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
