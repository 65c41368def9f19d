//! Talking to a collector (`--collector URL`): mTLS with the CA, certificate and key
//! given by `--ca/--cert/--key` (or `WARRANT_CA`, `WARRANT_CERT`, `WARRANT_KEY`), one
//! wrapper per RPC with a deadline, and every failure as one line with a hint.
//!
//! The certificate's name (its Common Name) is who you are to the collector; what
//! you may do is the role its config gives that name.

use std::error::Error as _;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status, Streaming};
use warrant_proto::approvals_client::ApprovalsClient;
use warrant_proto::collector_client::CollectorClient;
use warrant_proto::policies_client::PoliciesClient;
use warrant_proto::{
    AgentStatusRequest, CollectorSessionsRequest, CollectorWatchRequest, Event, KnownAgent, QueryRequest,
    QueryResponse, RemoteKillRequest, RemoteKillResponse, RemoteRevokeRequest, RemoteSession, VerifyLogRequest,
    VerifyLogResponse,
};

use crate::client::{RpcError, chain_text};

/// How long a quick RPC may take.
const QUICK: Duration = Duration::from_secs(30);
/// How long a remote kill may take: the collector answers when the agent reports
/// the tree dead (or at once when the agent is not connected).
const KILL: Duration = Duration::from_mins(2);
/// How long a log check may take (it reads the whole log).
const VERIFY: Duration = Duration::from_mins(30);

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
        self.collector.as_deref().is_some_and(|c| !c.trim().is_empty())
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
}

impl Collector {
    /// Connects (TCP, TLS handshake) to the collector named by `args`.
    pub async fn connect(args: &CollectorArgs) -> Result<Collector> {
        let Some(url) = args.collector.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
            bail!("no collector given\n\nPass --collector https://HOST:PORT or set WARRANT_COLLECTOR.");
        };
        let url = url.trim_end_matches('/').to_owned();
        if !url.starts_with("https://") {
            bail!("invalid --collector {url:?}: must be an https:// URL\n\nThe collector only speaks mTLS.");
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
            .identity(Identity::from_pem(read(cert, "--cert")?, read(key, "--key")?));
        let channel = Endpoint::from_shared(url.clone())
            .with_context(|| format!("invalid --collector {url:?}"))?
            .tls_config(tls)
            .map_err(|e| anyhow::anyhow!("invalid --ca, --cert or --key: {}", chain_text(&e)))?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| unreachable(&url, &chain_text(&e)))?;
        Ok(Collector { client: CollectorClient::new(channel.clone()).max_decoding_message_size(64 << 20), channel, url })
    }

    /// `Watch`: returns once the collector has subscribed.
    pub async fn watch(&mut self, req: CollectorWatchRequest) -> Result<Streaming<Event>> {
        let call = self.client.watch(req);
        finish(&self.url, "Watch", QUICK, call).await
    }

    /// `Query`: one page.
    pub async fn query(&mut self, req: QueryRequest) -> Result<QueryResponse> {
        let call = self.client.query(req);
        finish(&self.url, "Query", QUICK, call).await
    }

    /// `Sessions`.
    pub async fn sessions(&mut self, req: CollectorSessionsRequest) -> Result<Vec<RemoteSession>> {
        let call = self.client.sessions(req);
        Ok(finish(&self.url, "Sessions", QUICK, call).await?.sessions)
    }

    /// `Kill`: returns when the agent reports the tree dead, or at once when it is
    /// not connected (`delivered` false).
    pub async fn kill(&mut self, req: RemoteKillRequest) -> Result<RemoteKillResponse> {
        let call = self.client.kill(req);
        finish(&self.url, "Kill", KILL, call).await
    }

    /// `Revoke`.
    pub async fn revoke(&mut self, req: RemoteRevokeRequest) -> Result<RemoteKillResponse> {
        let call = self.client.revoke(req);
        finish(&self.url, "Revoke", KILL, call).await
    }

    /// `AgentStatus`.
    pub async fn agents(&mut self) -> Result<Vec<KnownAgent>> {
        let call = self.client.agent_status(AgentStatusRequest {});
        Ok(finish(&self.url, "AgentStatus", QUICK, call).await?.agents)
    }

    /// `WhoAmI`: the certificate's name and the role the collector gives it.
    pub async fn who_am_i(&mut self) -> Result<warrant_proto::WhoAmIResponse> {
        let call = self.client.who_am_i(warrant_proto::WhoAmIRequest {});
        finish(&self.url, "WhoAmI", QUICK, call).await
    }

    /// `VerifyLog`.
    pub async fn verify_log(&mut self) -> Result<VerifyLogResponse> {
        let call = self.client.verify_log(VerifyLogRequest {});
        finish(&self.url, "VerifyLog", VERIFY, call).await
    }

    /// The error to report for a status received mid-stream.
    pub fn stream_error(&self, status: &Status) -> anyhow::Error {
        status_error(&self.url, status)
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
    pub async fn call<T>(&self, rpc: &str, call: impl Future<Output = Result<tonic::Response<T>, Status>>) -> Result<T> {
        finish(&self.url, rpc, QUICK, call).await
    }

    /// The collector's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

async fn finish<T>(
    url: &str,
    rpc: &str,
    limit: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(status_error(url, &status)),
        Err(_) => Err(anyhow::anyhow!(
            "the collector at {url} did not answer {rpc} within {}s\n\nIt may be overloaded; check its logs.",
            limit.as_secs()
        )),
    }
}

/// Maps a status to one line and a hint.
pub fn status_error(url: &str, status: &Status) -> anyhow::Error {
    let local = status.source().map(|_| chain_text(status));
    match (status.code(), local) {
        (Code::Unavailable, local) => unreachable(url, &local.unwrap_or_else(|| status.message().to_owned())),
        (Code::PermissionDenied, _) => RpcError::error(
            Code::PermissionDenied,
            nonempty(status.message(), "the collector refused this for your certificate").to_owned(),
            Some(
                "The collector gives roles to certificate names in its config ([roles], or --role NAME=ROLE); \
                 ask its admin, or use a certificate whose name has the role.",
            ),
        ),
        (Code::Unauthenticated, _) => RpcError::error(
            Code::Unauthenticated,
            nonempty(status.message(), "the collector did not accept your certificate").to_owned(),
            Some("The collector did not accept your certificate: --cert must be signed by the collector's CA."),
        ),
        (_, Some(cause)) => anyhow::anyhow!("lost the connection to the collector at {url}: {cause}"),
        (code, None) if status.message().is_empty() => {
            RpcError::error(code, format!("the collector failed without a message ({})", code.description()), None)
        }
        (code, None) => RpcError::error(code, status.message().to_owned(), None),
    }
}

fn nonempty<'a>(s: &'a str, default: &'a str) -> &'a str {
    if s.is_empty() { default } else { s }
}

fn unreachable(url: &str, cause: &str) -> anyhow::Error {
    let hint = if cause.contains("UnknownIssuer") || cause.contains("certificate") {
        "Check that --ca is the CA that signed the collector's certificate, and that the \
         collector's certificate names the host in the URL."
    } else {
        "Is warrant-collector running there, and is the URL right?"
    };
    anyhow::anyhow!("cannot reach the collector at {url}: {cause}\n\n{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_role_table() {
        let e = status_error("https://c:7443", &Status::permission_denied("kill needs role responder; bob is a watcher"));
        let text = format!("{e:#}");
        assert!(text.starts_with("kill needs role responder; bob is a watcher\n\n"), "{text}");
        assert!(text.contains("--role NAME=ROLE"), "{text}");
    }

    #[tokio::test]
    async fn missing_files_are_named() {
        let args = CollectorArgs { collector: Some("https://127.0.0.1:1".into()), ..CollectorArgs::default() };
        let Err(e) = Collector::connect(&args).await else { panic!("connected without certificates") };
        assert!(format!("{e:#}").starts_with("--collector needs --ca, --cert and --key"), "{e:#}");
        let args = CollectorArgs { collector: Some("http://127.0.0.1:1".into()), ..CollectorArgs::default() };
        let Err(e) = Collector::connect(&args).await else { panic!() };
        assert!(format!("{e:#}").contains("https://"), "{e:#}");
    }
}
