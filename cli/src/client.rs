//! Talking to the agent: connecting over its unix socket, and one wrapper per RPC
//! (with a deadline, so a stuck agent never hangs an on-call shell; the plumbing
//! and the error messages are [`crate::rpc`]'s, shared with the collector client).
//!
//! The socket is connected directly first, so the exact reason it cannot be used
//! (missing, refused, no permission) is known, and that connection is then handed
//! to tonic.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};
use warrant_proto::agent_client::AgentClient;
use warrant_proto::{
    AgentStatus, AttachRequest, Event, Grant, IssueGrantRequest, KillReport, KillRequest,
    ListGrantsRequest, ListSessionsRequest, RevokeGrantRequest, Session, StatusRequest,
    WatchRequest,
};

// The console, `exec`, `launch` and `policy` take these from here.
use crate::rpc::{KILL, Peer, QUICK, VERIFY, chain_text};
pub use crate::rpc::{RpcError, io_cause};

/// The default agent socket.
pub const DEFAULT_SOCKET: &str = "/run/warrant/agent.sock";

/// A failure that carries its own exit status (anything else exits 2).
#[derive(Debug)]
pub struct Fail {
    /// The process exit status.
    pub code: u8,
    /// The full message, hint included.
    pub message: String,
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fail {}

/// A connected agent (a clone shares the connection).
#[derive(Clone)]
pub struct Agent {
    /// The generated gRPC client.
    client: AgentClient<Channel>,
    /// Where the agent was reached, for error messages.
    peer: Peer,
}

impl Agent {
    /// Connects to the agent's unix socket at `socket`.
    pub async fn connect(socket: &Path) -> Result<Agent> {
        let peer = Peer::Agent(socket.to_path_buf());
        let first = UnixStream::connect(socket)
            .await
            .map_err(|e| connect_error(socket, &e))?;
        // Hand tonic the stream we already have; should the channel ever need to
        // reconnect, it dials the socket again.
        let first = Arc::new(Mutex::new(Some(first)));
        let path = socket.to_path_buf();
        let connector = tower::service_fn(move |_: tonic::transport::Uri| {
            let (first, path) = (first.clone(), path.clone());
            async move {
                let ready = first.lock().ok().and_then(|mut f| f.take());
                let stream = match ready {
                    Some(s) => s,
                    None => UnixStream::connect(&path).await?,
                };
                Ok::<_, io::Error>(TokioIo::new(stream))
            }
        });
        // The URI is required by tonic but unused: the connector decides where to go.
        let channel = Endpoint::try_from("http://[::]:50051")
            .context("cannot build the agent endpoint")?
            .connect_with_connector(connector)
            .await
            .map_err(|e| peer.unreachable(&chain_text(&e)))?;
        Ok(Agent {
            client: AgentClient::new(channel),
            peer,
        })
    }

    /// `IssueGrant`.
    pub async fn issue_grant(&mut self, req: IssueGrantRequest) -> Result<Grant> {
        self.peer
            .call("IssueGrant", QUICK, self.client.issue_grant(req))
            .await
    }

    /// `UpdatePolicy`: the grant with its new policy.
    pub async fn update_policy(
        &mut self,
        req: warrant_proto::UpdatePolicyRequest,
    ) -> Result<Grant> {
        self.peer
            .call("UpdatePolicy", QUICK, self.client.update_policy(req))
            .await
    }

    /// `ListGrants`.
    pub async fn list_grants(&mut self, all: bool) -> Result<Vec<Grant>> {
        Ok(self
            .peer
            .call(
                "ListGrants",
                QUICK,
                self.client.list_grants(ListGrantsRequest { all }),
            )
            .await?
            .grants)
    }

    /// `RevokeGrant`: returns when every session of the grant is dead.
    pub async fn revoke_grant(&mut self, req: RevokeGrantRequest) -> Result<KillReport> {
        self.peer
            .call("RevokeGrant", KILL, self.client.revoke_grant(req))
            .await
    }

    /// `Report`: a session's report.
    pub async fn report(&mut self, session: &str) -> Result<Event> {
        let req = warrant_proto::ReportRequest {
            session: session.to_owned(),
        };
        self.peer
            .call("Report", QUICK, self.client.report(req))
            .await
    }

    /// `Attach`.
    pub async fn attach(&mut self, req: AttachRequest) -> Result<Session> {
        self.peer
            .call("Attach", QUICK, self.client.attach(req))
            .await
    }

    /// `ListSessions`.
    pub async fn list_sessions(&mut self, all: bool) -> Result<Vec<Session>> {
        let call = self.client.list_sessions(ListSessionsRequest { all });
        Ok(self.peer.call("ListSessions", QUICK, call).await?.sessions)
    }

    /// `Kill`: returns when the session's tree is dead.
    pub async fn kill(&mut self, req: KillRequest) -> Result<KillReport> {
        self.peer.call("Kill", KILL, self.client.kill(req)).await
    }

    /// `Watch`: returns once the agent has subscribed; events then arrive on the stream.
    pub async fn watch(&mut self, req: WatchRequest) -> Result<Streaming<Event>> {
        self.peer.call("Watch", QUICK, self.client.watch(req)).await
    }

    /// `Status`.
    pub async fn status(&mut self) -> Result<AgentStatus> {
        self.peer
            .call("Status", QUICK, self.client.status(StatusRequest {}))
            .await
    }

    /// `VerifyAuditLog`: the agent checks its own log's chain.
    pub async fn verify_audit_log(&mut self) -> Result<warrant_proto::AuditVerifyResponse> {
        let call = self
            .client
            .verify_audit_log(warrant_proto::AuditVerifyRequest {});
        self.peer.call("VerifyAuditLog", VERIFY, call).await
    }

    /// The error to report for a status received mid-stream.
    pub fn stream_error(&self, status: &Status) -> anyhow::Error {
        self.peer.status_error(status)
    }
}

/// The error for a socket that cannot be connected to.
pub fn connect_error(socket: &Path, err: &io::Error) -> anyhow::Error {
    // EPERM (not EACCES, which is the file's mode) is the kernel's own refusal:
    // self-protection keeps a session's processes off the agent's sockets.
    if err.raw_os_error() == Some(libc::EPERM) {
        return anyhow::anyhow!(
            "the kernel refused the connect to the agent socket {}: {}\n\n\
             This process runs inside a warrant session, and sessions may not use the agent \
             (the refusal is recorded as a violation). Run warrant from outside the session.",
            socket.display(),
            io_cause(err)
        );
    }
    if err.kind() == io::ErrorKind::PermissionDenied {
        anyhow::anyhow!(
            "no permission to use the agent socket {}: {}\n\n\
             The socket is for root only by default: run warrant as root, or start the agent \
             with --socket-group GROUP and join that group.",
            socket.display(),
            io_cause(err)
        )
    } else {
        Peer::Agent(socket.to_path_buf()).unreachable(&io_cause(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_socket_says_so_and_hints() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let Err(e) = Agent::connect(&sock).await else {
            panic!("connected to nothing")
        };
        assert_eq!(
            format!("{e:#}"),
            format!(
                "cannot reach the agent at {}: no such file or directory\n\n\
                 Is warrant-agent running? Start it with `cargo xtask run`.",
                sock.display()
            )
        );
    }

    #[tokio::test]
    async fn refused_socket_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        // A bound but never-listening socket file: connect is refused.
        drop(std::os::unix::net::UnixDatagram::bind(&sock).unwrap());
        let Err(e) = Agent::connect(&sock).await else {
            panic!("connected to nothing")
        };
        let msg = format!("{e:#}");
        assert!(
            msg.starts_with(&format!("cannot reach the agent at {}: ", sock.display())),
            "{msg}"
        );
        assert!(
            msg.contains("connection refused") || msg.contains("protocol wrong type"),
            "{msg}"
        );
    }
}
