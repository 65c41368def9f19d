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
    collections::VecDeque,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tracing::{debug, info, warn};
use warrant_proto::v1::{
    self as pb, agent_message::Msg as Out, collector_message::Msg as In, command::Op, event::Event as Kind,
};

use crate::{
    config::UplinkConfig,
    host::{Host, KillReason},
    events::{Envelope, Stats},
    outbox::{self, Outgoing, OutgoingCodec},
    spool::{Cursor, Spool, Spooled},
};

/// Most events per `EventBatch`.
const BATCH: usize = 512;
/// Most bytes of events per `EventBatch` (encoded), and at most half the limit the
/// collector's welcome names: 512 execs with long argv would pass its 4 MiB.
const BATCH_BYTES: usize = 1 << 20;
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
        let mut aside = SetAside::default();
        loop {
            let mut welcomed = false;
            match self.stream(&mut welcomed, &mut aside, &results_tx, &mut results_rx).await {
                Ok(()) => info!(collector = %self.url, "the collector ended the stream; reconnecting"),
                Err(e) => match e.downcast_ref::<Refused>() {
                    // One event the collector will never take: set it aside.
                    Some(r) if r.first == r.last => {
                        warn!(collector = %self.url, boot = %r.boot, seq = r.first, "the collector refuses this event for good: {}", r.why);
                        aside.reject = Some((r.boot.clone(), r.first, r.why.clone()));
                        aside.probe = None;
                    }
                    // A batch: resend it one event at a time to find which.
                    Some(r) => {
                        warn!(collector = %self.url, boot = %r.boot, first = r.first, last = r.last, "the collector refused a batch: {}; resending it one event at a time", r.why);
                        aside.probe = Some((r.boot.clone(), r.last));
                    }
                    None => warn!(collector = %self.url, "uplink to the collector: {e:#}; reconnecting"),
                },
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
        aside: &mut SetAside,
        results_tx: &mpsc::Sender<pb::CommandResult>,
        results_rx: &mut mpsc::Receiver<pb::CommandResult>,
    ) -> Result<()> {
        let channel: Channel = self.endpoint.connect().await.map_err(|e| anyhow!("cannot connect: {}", chain(&e)))?;
        // `Ingest.Stream` with the codec that sends spooled events as they are
        // (what the generated `IngestClient::stream` does, with `OutgoingCodec`).
        let mut client = tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20);
        client.ready().await.map_err(|e| anyhow!("the connection is not ready: {e}"))?;
        let (tx, rx) = mpsc::channel::<Outgoing>(OUTBOX);
        let pending = self.spool.pending_boots();
        let hello = pb::AgentHello {
            agent_id: self.envelope.agent_id.clone(),
            host: self.envelope.host.clone(),
            boot_id: self.envelope.boot_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            pending_boots: pending.clone(),
        };
        tx.send(pb::AgentMessage { msg: Some(Out::Hello(hello)) }.into()).await.context("stream closed")?;
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        request.extensions_mut().insert(tonic::GrpcMethod::new("warrant.v1.Ingest", "Stream"));
        let mut inbound = client
            .streaming(request, tonic::codegen::http::uri::PathAndQuery::from_static("/warrant.v1.Ingest/Stream"), OutgoingCodec)
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
        let cap = match usize::try_from(welcome.max_message_bytes) {
            Ok(n) if n > 0 => (n / 2).min(BATCH_BYTES),
            _ => BATCH_BYTES,
        };
        // Batches sent and not yet acknowledged: (boot, first seq, last seq).
        let mut in_flight: VecDeque<(String, u64, u64)> = VecDeque::new();
        if let Some((boot, seq, why)) = aside.reject.take()
            && self.spool.acked(&boot) < seq
        {
            // Out of the spool for good (it stays in the local log); the collector
            // gets an events_lost in its place, so its seqs have no gap. Should that
            // be refused too, the event is already set aside: the stream moves on.
            aside.rejected_total += 1;
            self.spool.ack(&boot, seq);
            let lost = pb::Event {
                seq,
                agent_id: self.envelope.agent_id.clone(),
                boot_id: boot.clone(),
                host: self.envelope.host.clone(),
                time_unix_ns: crate::clock::wall_ns(),
                event: Some(Kind::EventsLost(pb::EventsLost { count: 1, total: aside.rejected_total, reason: "rejected".into(), ..Default::default() })),
                ..pb::Event::default()
            };
            warn!(boot = %boot, seq, "event set aside (kept in the local log only): {why}");
            in_flight.push_back((boot, seq, seq));
            tx.send(pb::AgentMessage { msg: Some(Out::Batch(pb::EventBatch { events: vec![lost] })) }.into()).await.context("stream closed")?;
        }
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
                    let msg = match msg {
                        Ok(m) => m,
                        Err(s) => {
                            // Acks of the batches before a refused one come first: the
                            // oldest unacknowledged batch is the one refused.
                            if matches!(s.code(), tonic::Code::InvalidArgument | tonic::Code::PermissionDenied)
                                && let Some((boot, first, last)) = in_flight.pop_front()
                            {
                                return Err(anyhow::Error::new(Refused { boot, first, last, why: status_text(&s) }));
                            }
                            bail!("stream failed: {}", status_text(&s));
                        }
                    };
                    match msg {
                        None => return Ok(()),
                        Some(pb::CollectorMessage { msg: Some(In::Ack(a)) }) => {
                            while in_flight.front().is_some_and(|(b, _, last)| *b == a.boot_id && *last <= a.seq) {
                                in_flight.pop_front();
                            }
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
                    if let Err(unsent) = tx.send(pb::AgentMessage { msg: Some(Out::Result(result)) }.into()).await {
                        // Keep it for the next stream.
                        if let Outgoing::Message(pb::AgentMessage { msg: Some(Out::Result(r)) }) = unsent.0 {
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
                    // After a refused batch, its events go one per batch until past it.
                    let probing = aside.probe.as_ref().is_some_and(|(b, upto)| b == cursor.boot() && cursor.position() < *upto);
                    if !probing {
                        aside.probe = None;
                    }
                    let events = cursor.next_batch(&self.spool, if probing { 1 } else { BATCH }).context("cannot read the spool")?;
                    if events.is_empty() {
                        if others && cursor.position() >= self.spool.last_seq(cursor.boot()) {
                            debug!(boot = cursor.boot(), "resent everything of an earlier boot");
                            cursors.remove(0);
                        } else {
                            more = false;
                        }
                        continue;
                    }
                    let boot = cursor.boot().to_owned();
                    let mut chunks = split_by_bytes(events, cap).into_iter();
                    if let Some(first) = chunks.next() {
                        in_flight.push_back(span(&boot, &first));
                        permit.send(Outgoing::Spooled(first));
                    }
                    for chunk in chunks {
                        in_flight.push_back(span(&boot, &chunk));
                        tx.send(Outgoing::Spooled(chunk)).await.context("stream closed")?;
                    }
                }
                changed = appended.changed(), if !more => {
                    changed.context("the event writer stopped")?;
                    more = true;
                }
            }
        }
    }
}

/// What the uplink keeps across streams about batches the collector refused.
#[derive(Default)]
struct SetAside {
    /// (boot, last seq) of a refused batch: resend up to it one event per batch.
    probe: Option<(String, u64)>,
    /// (boot, seq, why) of the one event refused: set it aside at the next connect.
    reject: Option<(String, u64, String)>,
    /// Events set aside since the agent started.
    rejected_total: u64,
}

/// The collector ended the stream refusing the batch of `boot` seqs `first..=last`
/// (INVALID_ARGUMENT or PERMISSION_DENIED): resending it as it is would fail forever.
#[derive(Debug)]
struct Refused {
    boot: String,
    first: u64,
    last: u64,
    why: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the collector refused events {}..={} of boot {}: {}", self.first, self.last, self.boot, self.why)
    }
}

impl std::error::Error for Refused {}

/// (boot, first seq, last seq) of a batch.
fn span(boot: &str, events: &[Spooled]) -> (String, u64, u64) {
    (boot.to_owned(), events.first().map_or(0, |e| e.seq), events.last().map_or(0, |e| e.seq))
}

/// Cuts `events` into batches of at most `cap` encoded bytes (an event bigger
/// than that goes alone).
fn split_by_bytes(events: Vec<Spooled>, cap: usize) -> Vec<Vec<Spooled>> {
    let mut out: Vec<Vec<Spooled>> = Vec::new();
    let mut bytes = 0;
    for ev in events {
        let len = outbox::event_len(&ev);
        match out.last_mut() {
            Some(cur) if bytes + len <= cap => cur.push(ev),
            _ => {
                out.push(vec![ev]);
                bytes = 0;
            }
        }
        bytes += len;
    }
    out
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
