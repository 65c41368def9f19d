//! The collector's gRPC server: `Ingest.Stream` for agents and the `Collector`
//! service for people, over one mTLS listener. [`run`] takes the listener and a
//! shutdown future so tests can start it on `127.0.0.1:0`.
//!
//! Every call first maps the caller's certificate name to a role; a refusal is
//! `PERMISSION_DENIED` naming the identity and the role needed, and is itself
//! recorded in the log (`control_action`, action `refused`), as are kills, revokes,
//! command results, and agents connecting and disconnecting.
//!
//! # Layout
//! - this file: the shared [`State`], the `Collector` service (which hands each call
//!   to its module) and [`run`];
//! - `gate`: who may call what (roles), and the record of every refusal;
//! - `ingest`: `Ingest.Stream`, the agents' side (hello, batches, acks);
//! - `watch`: the read side for people (`Watch`, `Query`, `Sessions`);
//! - `control`: commands to agents (`Kill`, `Revoke`), `AgentStatus`, `VerifyLog`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use warrant_audit::hub::{EventHub, Filter};
use warrant_proto::collector_server::{Collector, CollectorServer};
use self::wire::ingest_server::IngestServer;
use warrant_proto::{
    AgentStatusRequest, AgentStatusResponse, CollectorMessage, CollectorSessionsRequest, CollectorSessionsResponse,
    CollectorWatchRequest, CommandResult, Event, EventFilter, KnownAgent, QueryRequest, QueryResponse, RemoteKillRequest,
    RemoteKillResponse, RemoteRevokeRequest, VerifyLogRequest, VerifyLogResponse, WhoAmIRequest, WhoAmIResponse,
};

use crate::auth::Roles;
use crate::metrics::Metrics;
use crate::store::Reader;
use crate::writer::Writer;

mod control;
mod gate;
mod ingest;
mod refusal_log;
mod watch;
pub mod wire;

pub use ingest::IngestService;

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
    /// Largest message an agent may send (the Ingest decoder's limit).
    pub max_message_bytes: usize,
    /// Certificate name → the agent id registered for it.
    pub(crate) agent_ids: BTreeMap<String, String>,
    /// Becomes true at shutdown: agent streams and watches end (UNAVAILABLE), so
    /// the server's graceful shutdown does not wait on them.
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
    /// Connected agents and commands waiting for a result.
    pub(crate) agents: Mutex<Agents>,
}

/// How the server runs: its limits and its shutdown signal.
pub struct ServeOptions {
    /// Largest message an agent may send, in bytes.
    pub max_message_bytes: usize,
    /// Certificate name → the one agent id it may speak as (registered up front;
    /// other ids are bound to the first certificate that connects as them).
    pub agent_ids: BTreeMap<String, String>,
    /// Set to true at shutdown.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// Connected agents, what is known of every agent, and waiting commands.
#[derive(Default)]
pub(crate) struct Agents {
    /// agent id → its stream's outbound queue and connection number.
    pub(crate) connected: HashMap<String, (mpsc::Sender<Result<CollectorMessage, Status>>, u64)>,
    /// agent id → status (updated on hello, batches and disconnect).
    pub(crate) known: HashMap<String, KnownAgent>,
    /// command id → (agent, who waits for the result).
    pub(crate) waiting: HashMap<String, (String, oneshot::Sender<CommandResult>)>,
    /// agent id → the certificate name it is bound to.
    pub(crate) owners: HashMap<String, String>,
    /// Connection numbers, so a replaced stream's end does not unregister its successor.
    pub(crate) next_conn: u64,
}

impl State {
    /// Builds the shared state; `known` agents come from the index.
    #[must_use]
    pub fn new(roles: Roles, writer: Writer, reader: Reader, hub: EventHub, metrics: Arc<Metrics>, data_dir: PathBuf, opts: ServeOptions) -> Arc<State> {
        let ServeOptions { max_message_bytes, agent_ids, stopping } = opts;
        let mut agents = Agents::default();
        match reader.agent_owners() {
            Ok(owners) => agents.owners = owners.into_iter().collect(),
            Err(e) => tracing::error!(error = %e, "cannot read which certificate each agent id is bound to"),
        }
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
        Arc::new(State { roles, writer, reader, hub, metrics, data_dir, max_message_bytes, agent_ids, stopping, agents: Mutex::new(agents) })
    }

    pub(crate) fn agents(&self) -> std::sync::MutexGuard<'_, Agents> {
        self.agents.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) async fn record(&self, action: &str, by: &str, target: &str, outcome: &str, detail: &str) {
        if let Err(e) = self.writer.record(action, by, target, outcome, detail).await {
            tracing::error!(error = %e, action, target, "cannot record a control action");
        }
    }
}

/// Builds a hub filter from a request's filter.
pub(crate) fn filter_of(f: Option<EventFilter>) -> Result<Filter, Status> {
    let f = f.unwrap_or_default();
    let some = |s: String| (!s.is_empty()).then_some(s);
    let mut filter = Filter::new(some(f.session), some(f.grant), &f.kinds).map_err(|e| Status::invalid_argument(e.to_string()))?;
    filter.host = some(f.host);
    filter.agent_id = some(f.agent_id);
    filter.subject = some(f.subject);
    Ok(filter)
}

/// A boxed response stream.
pub(crate) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Collector service: each call is handled in its module.
pub struct CollectorService(pub Arc<State>);

#[tonic::async_trait]
impl Collector for CollectorService {
    type WatchStream = BoxStream<Event>;

    async fn watch(&self, req: Request<CollectorWatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        watch::watch(&self.0, req).await
    }

    async fn query(&self, req: Request<QueryRequest>) -> Result<Response<QueryResponse>, Status> {
        watch::query(&self.0, req).await
    }

    async fn sessions(&self, req: Request<CollectorSessionsRequest>) -> Result<Response<CollectorSessionsResponse>, Status> {
        watch::sessions(&self.0, req).await
    }

    async fn kill(&self, req: Request<RemoteKillRequest>) -> Result<Response<RemoteKillResponse>, Status> {
        control::kill(&self.0, req).await
    }

    async fn revoke(&self, req: Request<RemoteRevokeRequest>) -> Result<Response<RemoteKillResponse>, Status> {
        control::revoke(&self.0, req).await
    }

    async fn agent_status(&self, req: Request<AgentStatusRequest>) -> Result<Response<AgentStatusResponse>, Status> {
        control::agent_status(&self.0, req).await
    }

    async fn verify_log(&self, req: Request<VerifyLogRequest>) -> Result<Response<VerifyLogResponse>, Status> {
        control::verify_log(&self.0, req).await
    }

    async fn who_am_i(&self, req: Request<WhoAmIRequest>) -> Result<Response<WhoAmIResponse>, Status> {
        control::who_am_i(&self.0, &req)
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

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS material cannot be used.
    #[error("cannot use the TLS material: {0}")]
    Tls(String),
    /// The gRPC server failed.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

/// How long a client has to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves both services with mTLS on `listener` until `shutdown` completes.
///
/// # Errors
/// When the TLS material is unusable or the server fails.
pub async fn run(state: Arc<State>, tls: &Tls, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    run_with(state, None, tls, listener, shutdown).await
}

/// [`run`], plus the `Approvals` and `Policies` services when given.
///
/// The collector does the TLS handshakes itself (not tonic), so that a refused one
/// (a certificate no trusted CA signed, no certificate, a timeout) is logged with
/// the peer's address and reason and counted (`warrant_collector_tls_refused_total`).
/// A connection closed before it sent anything (a port probe) is not a refusal. The
/// log lines come at a bounded rate (see `refusal_log`); the count is of all.
///
/// # Errors
/// When the TLS material is unusable or the server fails.
pub async fn run_with(
    state: Arc<State>,
    approvals: Option<Arc<crate::approvals::ApprovalState>>,
    tls: &Tls,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls(tls)?));
    let (conns, incoming) = mpsc::channel::<std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>(64);
    let metrics = state.metrics.clone();
    let refusals = Arc::new(refusal_log::RefusalLog::default());
    let accept = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Acks are small writes that answer big reads: without this, Nagle holds
            // one back until the agent's delayed ACK (up to 40 ms) and stalls its window.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(peer = %peer, error = %e, "cannot set TCP_NODELAY");
            }
            let (acceptor, conns, metrics, refusals) = (acceptor.clone(), conns.clone(), metrics.clone(), refusals.clone());
            tokio::spawn(async move {
                let why = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(io)) => {
                        let _ = conns.send(Ok(io)).await;
                        return;
                    }
                    // Closed before a word of TLS: a port probe, not a refusal.
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        tracing::debug!(peer = %peer, "connection closed before the TLS handshake: {e}");
                        return;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no handshake within {}s", TLS_HANDSHAKE_TIMEOUT.as_secs()),
                };
                metrics.tls_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match refusals.refused(peer.ip(), std::time::Instant::now()) {
                    refusal_log::Line::This => tracing::warn!(peer = %peer, "TLS handshake refused: {why}"),
                    refusal_log::Line::Quiet => {}
                    refusal_log::Line::Summary { held_back, addresses, more } => {
                        let at_least = if more { "at least " } else { "" };
                        tracing::warn!(
                            "{held_back} more TLS handshakes refused in the last {}s, from {at_least}{addresses} addresses (counted in warrant_collector_tls_refused_total)",
                            refusal_log::WINDOW.as_secs()
                        );
                        tracing::warn!(peer = %peer, "TLS handshake refused: {why}");
                    }
                }
            });
        }
    });
    let served = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(IngestServer::new(IngestService(state.clone())).max_decoding_message_size(state.max_message_bytes))
        .add_service(CollectorServer::new(CollectorService(state)))
        .add_optional_service(approvals.as_ref().map(|a| a.service()))
        .add_optional_service(approvals.map(|a| a.policies_service()))
        .serve_with_incoming_shutdown(ReceiverStream::new(incoming), shutdown)
        .await;
    accept.abort();
    Ok(served?)
}

/// The server side of mTLS: the collector's certificate, client certificates
/// required and checked against the CA, HTTP/2 by ALPN.
fn server_tls(tls: &Tls) -> Result<tokio_rustls::rustls::ServerConfig, ServeError> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{RootCertStore, ServerConfig, server::WebPkiClientVerifier};
    let certs = |pem: &[u8], what: &str| {
        CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| ServeError::Tls(format!("{what}: {e}")))
    };
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs(&tls.ca, "the CA certificate")?);
    if added == 0 {
        return Err(ServeError::Tls("the CA file holds no usable certificate".to_owned()));
    }
    let verifier = WebPkiClientVerifier::builder(roots.into()).build().map_err(|e| ServeError::Tls(format!("the CA: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key).map_err(|e| ServeError::Tls(format!("the key: {e}")))?;
    let mut config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&tls.cert, "the certificate")?, key)
        .map_err(|e| ServeError::Tls(format!("the certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
