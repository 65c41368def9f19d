//! The uplink: one long-lived `Ingest.Stream` to the collector, over mTLS.
//!
//! ```text
//! writer thread ──append──► Spool (disk) ◄──ack── collector's Ack
//!                              │
//!                        Cursor per boot ──EventBatch──► collector
//! collector's Command ──► Host (kill / revoke / update policy) ──CommandResult──► collector
//! ```
//!
//! Events are read back from the spool rather than handed over in memory, so there
//! is one path for live streaming, resending after a reconnect and resending after
//! an agent restart. The stream: connect (with backoff), `AgentHello` naming every
//! boot that still has events waiting, `Welcome` saying how far the collector holds
//! each, then batches from there on, oldest boot first. Any error drops the stream
//! and starts over; the spool keeps everything until it is acknowledged, and the
//! collector drops what it already has. A slow or absent collector only makes the
//! spool deeper: the kernel ring reader and the local log never wait for it.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tracing::{debug, info, warn};
use warrant_proto::v1::{
    self as pb, agent_message::Msg as Out, collector_message::Msg as In, command::Op,
    ingest_client::IngestClient,
};

use crate::{
    config::UplinkConfig,
    host::{Host, KillReason},
    pipeline::{Envelope, Stats},
    spool::{Cursor, Spool},
};

/// Most events per `EventBatch`.
const BATCH: usize = 512;
/// Batches (and command results) queued for the transport; beyond this, reading
/// from the spool waits for the network.
const OUTBOX: usize = 8;
/// How long the collector may take to answer the hello.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(15);
/// Reconnect delays: from the first to the last, doubling.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Everything the stream task needs.
pub struct Uplink {
    url: String,
    endpoint: Endpoint,
    spool: Arc<Spool>,
    host: Arc<Host>,
    stats: Arc<Stats>,
    envelope: Envelope,
}

impl Uplink {
    /// Reads the certificates and builds the endpoint; fails at start-up, naming the
    /// file, rather than on every reconnect.
    pub fn new(config: &UplinkConfig, spool: Arc<Spool>, host: Arc<Host>) -> Result<Uplink> {
        let read = |p: &std::path::Path, key: &str| {
            std::fs::read(p).with_context(|| format!("cannot read {key} {}", p.display()))
        };
        let ca = read(&config.ca, "collector_ca")?;
        let cert = read(&config.cert, "collector_cert")?;
        let key = read(&config.key, "collector_key")?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key));
        let endpoint = Endpoint::from_shared(config.url.clone())
            .with_context(|| format!("invalid collector URL {:?}", config.url))?
            .tls_config(tls)
            .with_context(|| {
                format!(
                    "invalid TLS files for the collector (collector_ca {}, collector_cert {}, collector_key {})",
                    config.ca.display(),
                    config.cert.display(),
                    config.key.display()
                )
            })?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            // A collector that vanished without a FIN is noticed within ~20 s.
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let stats = Arc::clone(&host.stats);
        let envelope = host.envelope.clone();
        Ok(Uplink { url: config.url.clone(), endpoint, spool, host, stats, envelope })
    }

    /// Streams forever, reconnecting after every failure.
    pub async fn run(self) {
        let mut delay = BACKOFF_MIN;
        // Outlives each stream: a command that finishes while the stream is down
        // reports its result on the next one.
        let (results_tx, mut results_rx) = mpsc::channel::<pb::CommandResult>(64);
        loop {
            let mut welcomed = false;
            match self.stream(&mut welcomed, &results_tx, &mut results_rx).await {
                Ok(()) => info!(collector = %self.url, "the collector ended the stream; reconnecting"),
                Err(e) => warn!(collector = %self.url, "uplink to the collector: {e:#}; reconnecting"),
            }
            self.stats.uplink_connected.store(false, Ordering::Relaxed);
            if welcomed {
                delay = BACKOFF_MIN;
            }
            // Jitter, so a fleet does not reconnect in lockstep after a collector restart.
            let jitter = Duration::from_millis(rand::random::<u64>() % (delay.as_millis() as u64 / 2 + 1));
            tokio::time::sleep(delay + jitter).await;
            delay = (delay * 2).min(BACKOFF_MAX);
        }
    }

    /// One stream, from connect to the first error.
    async fn stream(
        &self,
        welcomed: &mut bool,
        results_tx: &mpsc::Sender<pb::CommandResult>,
        results_rx: &mut mpsc::Receiver<pb::CommandResult>,
    ) -> Result<()> {
        let channel: Channel = self.endpoint.connect().await.map_err(|e| anyhow!("cannot connect: {}", chain(&e)))?;
        let mut client = IngestClient::new(channel).max_decoding_message_size(64 << 20);
        let (tx, rx) = mpsc::channel::<pb::AgentMessage>(OUTBOX);
        let pending = self.spool.pending_boots();
        let hello = pb::AgentHello {
            agent_id: self.envelope.agent_id.clone(),
            host: self.envelope.host.clone(),
            boot_id: self.envelope.boot_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            pending_boots: pending.clone(),
        };
        tx.send(pb::AgentMessage { msg: Some(Out::Hello(hello)) }).await.context("stream closed")?;
        let mut inbound = client
            .stream(ReceiverStream::new(rx))
            .await
            .map_err(|s| anyhow!("the collector refused the stream: {}", status_text(&s)))?
            .into_inner();
        let first = tokio::time::timeout(WELCOME_TIMEOUT, inbound.message())
            .await
            .map_err(|_| anyhow!("no welcome within {}s", WELCOME_TIMEOUT.as_secs()))?
            .map_err(|s| anyhow!("the collector refused the stream: {}", status_text(&s)))?;
        let Some(pb::CollectorMessage { msg: Some(In::Welcome(welcome)) }) = first else {
            bail!("the collector did not answer the hello with a welcome");
        };
        for a in &welcome.acked {
            self.spool.ack(&a.boot_id, a.seq);
        }
        *welcomed = true;
        self.stats.uplink_connected.store(true, Ordering::Relaxed);
        self.stats.acked_seq.store(self.spool.acked(&self.envelope.boot_id), Ordering::Relaxed);
        // Oldest boot first; the running one last (it never runs out).
        let mut cursors: Vec<Cursor> = pending.iter().map(|b| Cursor::new(b, self.spool.acked(b))).collect();
        info!(
            collector = %self.url,
            boots = pending.len(),
            resume = ?cursors.iter().map(|c| (c.boot().to_owned(), c.position())).collect::<Vec<_>>(),
            "connected to the collector"
        );
        let mut appended = self.spool.subscribe();
        let mut more = true;
        loop {
            tokio::select! {
                msg = inbound.message() => {
                    match msg.map_err(|s| anyhow!("stream failed: {}", status_text(&s)))? {
                        None => return Ok(()),
                        Some(pb::CollectorMessage { msg: Some(In::Ack(a)) }) => {
                            self.spool.ack(&a.boot_id, a.seq);
                            if a.boot_id == self.envelope.boot_id {
                                self.stats.acked_seq.fetch_max(a.seq, Ordering::Relaxed);
                            }
                        }
                        Some(pb::CollectorMessage { msg: Some(In::Command(cmd)) }) => {
                            let (host, results) = (Arc::clone(&self.host), results_tx.clone());
                            tokio::spawn(async move {
                                let result = execute(&host, cmd).await;
                                let _ = results.send(result).await;
                            });
                        }
                        Some(other) => debug!("ignoring an unexpected collector message: {other:?}"),
                    }
                }
                Some(result) = results_rx.recv() => {
                    if let Err(unsent) = tx.send(pb::AgentMessage { msg: Some(Out::Result(result)) }).await {
                        // Keep it for the next stream.
                        if let Some(Out::Result(r)) = unsent.0.msg {
                            let _ = results_tx.try_send(r);
                        }
                        bail!("stream closed");
                    }
                }
                permit = tx.reserve(), if more => {
                    let permit = permit.context("stream closed")?;
                    appended.borrow_and_update();
                    let others = cursors.len() > 1;
                    let Some(cursor) = cursors.first_mut() else { more = false; continue };
                    let events = cursor.next_batch(&self.spool, BATCH).context("cannot read the spool")?;
                    if events.is_empty() {
                        if others && cursor.position() >= self.spool.last_seq(cursor.boot()) {
                            debug!(boot = cursor.boot(), "resent everything of an earlier boot");
                            cursors.remove(0);
                        } else {
                            more = false;
                        }
                        continue;
                    }
                    permit.send(pb::AgentMessage { msg: Some(Out::Batch(pb::EventBatch { events })) });
                }
                changed = appended.changed(), if !more => {
                    changed.context("the event writer stopped")?;
                    more = true;
                }
            }
        }
    }
}

/// Runs one command from the collector with the same host methods the local API
/// uses; the audit trail names who asked (the certificate name the collector gives).
async fn execute(host: &Host, cmd: pb::Command) -> pb::CommandResult {
    let by = if cmd.by.is_empty() { "collector".to_owned() } else { format!("{} (via collector)", cmd.by) };
    info!(command = %cmd.id, by = %by, "command from the collector");
    let outcome = match cmd.op {
        Some(Op::Kill(k)) => host
            .kill_session(&k.session, KillReason::Operator, &by, &k.reason)
            .await
            .map(|k| crate::api::report(&[k])),
        Some(Op::Revoke(r)) => host
            .revoke_grant(&r.grant, KillReason::Revoke, &by, &r.reason)
            .await
            .map(|ks| crate::api::report(&ks)),
        Some(Op::UpdatePolicy(u)) => {
            let file = if u.policy_file.is_empty() { "policy" } else { u.policy_file.as_str() };
            host.update_policy(&u.grant, &u.policy, file, &by).await.map(|_| pb::KillReport::default())
        }
        None => {
            return pb::CommandResult {
                command_id: cmd.id,
                error: "unknown command: the collector is newer than this agent".into(),
                report: None,
            };
        }
    };
    match outcome {
        Ok(report) => pb::CommandResult { command_id: cmd.id, error: String::new(), report: Some(report) },
        Err(e) => {
            warn!(command = %cmd.id, "command from the collector failed: {e}");
            pb::CommandResult { command_id: cmd.id, error: e.to_string(), report: None }
        }
    }
}

fn status_text(s: &tonic::Status) -> String {
    use std::error::Error as _;
    match s.source() {
        Some(src) => format!("{}: {}", s.message(), chain(src)),
        None if s.message().is_empty() => format!("{:?}", s.code()),
        None => s.message().to_owned(),
    }
}

/// An error and its sources, joined with ": ".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}
