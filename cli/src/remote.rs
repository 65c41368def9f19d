//! Talking to a collector (`--collector URL`): mTLS with the CA, certificate and key
//! given by `--ca/--cert/--key` (or `WARRANT_CA`, `WARRANT_CERT`, `WARRANT_KEY`), and
//! one wrapper per RPC (deadlines and error messages are [`crate::rpc`]'s, shared
//! with the agent client).
//!
//! The certificate's name (its Common Name) is who you are to the collector; what
//! you may do is the role its config gives that name.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Status, Streaming};
use warrant_proto::approvals_client::ApprovalsClient;
use warrant_proto::collector_client::CollectorClient;
use warrant_proto::policies_client::PoliciesClient;
use warrant_proto::{
    AgentStatusRequest, CollectorSessionsRequest, CollectorWatchRequest, Event, KnownAgent,
    QueryRequest, QueryResponse, RemoteKillRequest, RemoteKillResponse, RemoteRevokeRequest,
    RemoteSession, VerifyLogRequest, VerifyLogResponse,
};

use crate::rpc::{KILL, Peer, QUICK, VERIFY, chain_text};

/// The global flags that select a collector instead of the local agent.
#[derive(Debug, Args, Clone, Default)]
pub struct CollectorArgs {
    /// Talk to this collector (https://host:port) instead of the local agent.
    #[arg(long, global = true, value_name = "URL", env = "WARRANT_COLLECTOR")]
    pub collector: Option<String>,
    /// CA certificate (PEM) that signed the collector's certificate.
    #[arg(long, global = true, value_name = "PATH", env = "WARRANT_CA")]
    pub ca: Option<PathBuf>,
    /// Your client certificate (PEM) for the collector; its name is who you are.
    #[arg(long, global = true, value_name = "PATH", env = "WARRANT_CERT")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, global = true, value_name = "PATH", env = "WARRANT_KEY")]
    pub key: Option<PathBuf>,
}

impl CollectorArgs {
    /// True when a collector was named.
    pub fn is_set(&self) -> bool {
        self.collector
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty())
    }
}

/// A connected collector (a clone shares the connection).
#[derive(Clone)]
pub struct Collector {
    client: CollectorClient<Channel>,
    /// The connection, shared by the other services' clients (`Approvals`).
    channel: Channel,
    /// The URL, for messages.
    url: String,
    /// The same, as the other side of calls.
    peer: Peer,
}

impl Collector {
    /// Connects (TCP, TLS handshake) to the collector named by `args`.
    pub async fn connect(args: &CollectorArgs) -> Result<Collector> {
        let Some(url) = args
            .collector
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        else {
            bail!(
                "no collector given\n\nPass --collector https://HOST:PORT or set WARRANT_COLLECTOR."
            );
        };
        let url = url.trim_end_matches('/').to_owned();
        if !url.starts_with("https://") {
            bail!(
                "invalid --collector {url:?}: must be an https:// URL\n\nThe collector only speaks mTLS."
            );
        }
        let (Some(ca), Some(cert), Some(key)) = (&args.ca, &args.cert, &args.key) else {
            bail!(
                "--collector needs --ca, --cert and --key (or WARRANT_CA, WARRANT_CERT, WARRANT_KEY)\n\n\
                 Make development ones with `warrant certs init --dir DIR` and `warrant certs issue`."
            );
        };
        let read = |p: &PathBuf, flag: &str| {
            std::fs::read(p).with_context(|| format!("cannot read {flag} {}", p.display()))
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(ca, "--ca")?))
            .identity(Identity::from_pem(
                read(cert, "--cert")?,
                read(key, "--key")?,
            ));
        let channel = Endpoint::from_shared(url.clone())
            .with_context(|| format!("invalid --collector {url:?}"))?
            .tls_config(tls)
            .map_err(|e| anyhow::anyhow!("invalid --ca, --cert or --key: {}", chain_text(&e)))?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| Peer::Collector(url.clone()).unreachable(&chain_text(&e)))?;
        let client = CollectorClient::new(channel.clone()).max_decoding_message_size(64 << 20);
        Ok(Collector {
            client,
            channel,
            peer: Peer::Collector(url.clone()),
            url,
        })
    }

    /// `Watch`: returns once the collector has subscribed.
    pub async fn watch(&mut self, req: CollectorWatchRequest) -> Result<Streaming<Event>> {
        let call = self.client.watch(req);
        self.peer.call("Watch", QUICK, call).await
    }

    /// `Query`: one page.
    pub async fn query(&mut self, req: QueryRequest) -> Result<QueryResponse> {
        let call = self.client.query(req);
        self.peer.call("Query", QUICK, call).await
    }

    /// `Sessions`.
    pub async fn sessions(&mut self, req: CollectorSessionsRequest) -> Result<Vec<RemoteSession>> {
        let call = self.client.sessions(req);
        Ok(self.peer.call("Sessions", QUICK, call).await?.sessions)
    }

    /// `Kill`: returns when the agent reports the tree dead, or at once when it is
    /// not connected (`delivered` false).
    pub async fn kill(&mut self, req: RemoteKillRequest) -> Result<RemoteKillResponse> {
        let call = self.client.kill(req);
        self.peer.call("Kill", KILL, call).await
    }

    /// `Revoke`.
    pub async fn revoke(&mut self, req: RemoteRevokeRequest) -> Result<RemoteKillResponse> {
        let call = self.client.revoke(req);
        self.peer.call("Revoke", KILL, call).await
    }

    /// `AgentStatus`.
    pub async fn agents(&mut self) -> Result<Vec<KnownAgent>> {
        let call = self.client.agent_status(AgentStatusRequest {});
        Ok(self.peer.call("AgentStatus", QUICK, call).await?.agents)
    }

    /// `WhoAmI`: the certificate's name and the role the collector gives it.
    pub async fn who_am_i(&mut self) -> Result<warrant_proto::WhoAmIResponse> {
        let call = self.client.who_am_i(warrant_proto::WhoAmIRequest {});
        self.peer.call("WhoAmI", QUICK, call).await
    }

    /// `VerifyLog`.
    pub async fn verify_log(&mut self) -> Result<VerifyLogResponse> {
        let call = self.client.verify_log(VerifyLogRequest {});
        self.peer.call("VerifyLog", VERIFY, call).await
    }

    /// The error to report for a status received mid-stream.
    pub fn stream_error(&self, status: &Status) -> anyhow::Error {
        self.peer.status_error(status)
    }

    /// A client of the `Approvals` service on the same connection.
    pub fn approvals(&self) -> ApprovalsClient<Channel> {
        ApprovalsClient::new(self.channel.clone())
    }

    /// A client of the `Policies` service (the catalogue) on the same connection.
    pub fn policies(&self) -> PoliciesClient<Channel> {
        PoliciesClient::new(self.channel.clone())
    }

    /// Runs one call with the quick deadline and this collector's error messages.
    pub async fn call<T>(
        &self,
        rpc: &str,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T> {
        self.peer.call(rpc, QUICK, call).await
    }

    /// The collector's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Maps a status from the collector at `url` to one line and a hint.
pub fn status_error(url: &str, status: &Status) -> anyhow::Error {
    Peer::Collector(url.to_owned()).status_error(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_files_are_named() {
        let args = CollectorArgs {
            collector: Some("https://127.0.0.1:1".into()),
            ..CollectorArgs::default()
        };
        let Err(e) = Collector::connect(&args).await else {
            panic!("connected without certificates")
        };
        assert!(
            format!("{e:#}").starts_with("--collector needs --ca, --cert and --key"),
            "{e:#}"
        );
        let args = CollectorArgs {
            collector: Some("http://127.0.0.1:1".into()),
            ..CollectorArgs::default()
        };
        let Err(e) = Collector::connect(&args).await else {
            panic!()
        };
        assert!(format!("{e:#}").contains("https://"), "{e:#}");
    }
}
