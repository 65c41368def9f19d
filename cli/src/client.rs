//! Talking to the agent: connecting over its unix socket, one wrapper per RPC (with
//! a deadline, so a stuck agent never hangs an on-call shell), and turning every
//! failure into one line that says what to do.
//!
//! The socket is connected directly first, so the exact reason it cannot be used
//! (missing, refused, no permission) is known, and that connection is then handed
//! to tonic. The agent's own gRPC messages are printed as they are: they are written
//! for people ("unknown grant g-12", "grant g-12 expired 3m ago").

use std::error::Error as _;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};
use warrant_proto::agent_client::AgentClient;
use warrant_proto::{
    AgentStatus, AttachRequest, Event, Grant, IssueGrantRequest, KillReport, KillRequest,
    ListGrantsRequest, ListSessionsRequest, RevokeGrantRequest, Session, StatusRequest,
    WatchRequest,
};

/// The default agent socket.
pub const DEFAULT_SOCKET: &str = "/run/warrant/agent.sock";

/// How long a quick RPC (list, status, issue) may take.
const QUICK: Duration = Duration::from_secs(30);

/// How long a kill or revoke may take: the agent answers when the tree is dead.
const KILL: Duration = Duration::from_mins(2);

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
    socket: PathBuf,
}

impl Agent {
    /// Connects to the agent's unix socket at `socket`.
    pub async fn connect(socket: &Path) -> Result<Agent> {
        let first = UnixStream::connect(socket).await.map_err(|e| connect_error(socket, &e))?;
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
            .map_err(|e| unreachable(socket, &chain_text(&e)))?;
        Ok(Agent {
            client: AgentClient::new(channel.clone()),
            socket: socket.to_path_buf(),
        })
    }

    /// `IssueGrant`.
    pub async fn issue_grant(&mut self, req: IssueGrantRequest) -> Result<Grant> {
        let call = self.client.issue_grant(req);
        finish(&self.socket, "IssueGrant", QUICK, call).await
    }

    /// `UpdatePolicy`: the grant with its new policy.
    pub async fn update_policy(&mut self, req: warrant_proto::UpdatePolicyRequest) -> Result<Grant> {
        let call = self.client.update_policy(req);
        finish(&self.socket, "UpdatePolicy", QUICK, call).await
    }

    /// `ListGrants`.
    pub async fn list_grants(&mut self, all: bool) -> Result<Vec<Grant>> {
        let call = self.client.list_grants(ListGrantsRequest { all });
        Ok(finish(&self.socket, "ListGrants", QUICK, call).await?.grants)
    }

    /// `RevokeGrant`: returns when every session of the grant is dead.
    pub async fn revoke_grant(&mut self, req: RevokeGrantRequest) -> Result<KillReport> {
        let call = self.client.revoke_grant(req);
        finish(&self.socket, "RevokeGrant", KILL, call).await
    }

    /// `Report`: a session's report.
    pub async fn report(&mut self, session: &str) -> Result<warrant_proto::Event> {
        let call = self.client.report(warrant_proto::ReportRequest { session: session.to_owned() });
        finish(&self.socket, "Report", QUICK, call).await
    }

    /// `Attach`.
    pub async fn attach(&mut self, req: AttachRequest) -> Result<Session> {
        let call = self.client.attach(req);
        finish(&self.socket, "Attach", QUICK, call).await
    }

    /// `ListSessions`.
    pub async fn list_sessions(&mut self, all: bool) -> Result<Vec<Session>> {
        let call = self.client.list_sessions(ListSessionsRequest { all });
        Ok(finish(&self.socket, "ListSessions", QUICK, call).await?.sessions)
    }

    /// `Kill`: returns when the session's tree is dead.
    pub async fn kill(&mut self, req: KillRequest) -> Result<KillReport> {
        let call = self.client.kill(req);
        finish(&self.socket, "Kill", KILL, call).await
    }

    /// `Watch`: returns once the agent has subscribed; events then arrive on the stream.
    pub async fn watch(&mut self, req: WatchRequest) -> Result<Streaming<Event>> {
        let call = self.client.watch(req);
        finish(&self.socket, "Watch", QUICK, call).await
    }

    /// `Status`.
    pub async fn status(&mut self) -> Result<AgentStatus> {
        let call = self.client.status(StatusRequest {});
        finish(&self.socket, "Status", QUICK, call).await
    }

    /// `VerifyAuditLog`: the agent checks its own log's chain.
    pub async fn verify_audit_log(&mut self) -> Result<warrant_proto::AuditVerifyResponse> {
        let call = self.client.verify_audit_log(warrant_proto::AuditVerifyRequest {});
        finish(&self.socket, "VerifyAuditLog", Duration::from_mins(30), call).await
    }

    /// The error to report for a status received mid-stream.
    pub fn stream_error(&self, status: &Status) -> anyhow::Error {
        status_error(&self.socket, status)
    }
}

/// Awaits an RPC within `limit` and maps its failure.
async fn finish<T>(
    socket: &Path,
    rpc: &str,
    limit: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(status_error(socket, &status)),
        Err(_) => Err(anyhow::anyhow!(
            "the agent at {} did not answer {rpc} within {}s\n\nIt may be stuck or overloaded; check its logs.",
            socket.display(),
            limit.as_secs()
        )),
    }
}

/// Maps a gRPC status to the message an operator sees.
pub fn status_error(socket: &Path, status: &Status) -> anyhow::Error {
    // A status with a source was made on this side, from a transport failure; one
    // without came from the agent itself.
    let local = status.source().map(|_| chain_text(status));
    match (status.code(), local) {
        (Code::Unavailable, local) => {
            let cause = local.unwrap_or_else(|| status.message().to_owned());
            unreachable(socket, &cause)
        }
        (_, Some(cause)) => anyhow::anyhow!(
            "lost the connection to the agent at {}: {cause}\n\nDid warrant-agent stop or restart? `warrant status` tells.",
            socket.display()
        ),
        (code, None) if status.message().is_empty() => {
            RpcError::error(code, format!("the agent failed without a message ({})", code.description()), None)
        }
        (code, None) => RpcError::error(code, status.message().to_owned(), None),
    }
}

/// An error status the agent or collector itself answered with (not a transport
/// failure): its code and its own words are kept, so the console can answer with
/// the matching HTTP status and pass the refusal through as it was written.
#[derive(Debug)]
pub struct RpcError {
    /// The gRPC code (`PermissionDenied` becomes the console's 403).
    pub code: Code,
    /// The other side's own message.
    pub message: String,
    /// What people see: the message, then a hint when one helps.
    text: String,
}

impl RpcError {
    /// The error for `code` with `message`, shown with `hint` after a blank line.
    pub fn error(code: Code, message: String, hint: Option<&str>) -> anyhow::Error {
        let text = match hint {
            Some(h) => format!("{message}\n\n{h}"),
            None => message.clone(),
        };
        anyhow::Error::new(RpcError { code, message, text })
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for RpcError {}

/// The error for a socket that cannot be connected to.
pub fn connect_error(socket: &Path, err: &io::Error) -> anyhow::Error {
    // EPERM (not EACCES, which is the file's mode) is the kernel's own refusal:
    // self-protection keeps a session's processes off the agent's sockets.
    if err.raw_os_error() == Some(libc::EPERM) {
        return anyhow::anyhow!(
            "the kernel refused the connect to the agent socket {}: {}

             This process runs inside a warrant session, and sessions may not use the agent              (the refusal is recorded as a violation). Run warrant from outside the session.",
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
        unreachable(socket, &io_cause(err))
    }
}

fn unreachable(socket: &Path, cause: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot reach the agent at {}: {cause}\n\nIs warrant-agent running? Start it with `cargo xtask run`.",
        socket.display()
    )
}

/// An I/O error as a lowercase cause without the "(os error N)" suffix:
/// `no such file or directory`.
pub fn io_cause(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match (err.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(i)) => &text[..i],
        _ => &text,
    };
    lowercase_first(text)
}

/// An error and its sources joined with ": ", the innermost I/O error tidied.
pub fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = match e.downcast_ref::<io::Error>() {
            Some(io) => io_cause(io),
            None => lowercase_first(&e.to_string()),
        };
        // Wrappers often repeat their source's text; keep each piece once.
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        // Keep acronyms ("EOF", "h2") as they are.
        Some(c) if c.is_uppercase() && !chars.next().is_some_and(char::is_uppercase) => {
            c.to_lowercase().chain(s[c.len_utf8()..].chars()).collect()
        }
        _ => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_causes_read_like_sentences() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(io_cause(&e), "no such file or directory");
        let e = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(io_cause(&e), "permission denied");
        assert_eq!(lowercase_first("EOF reached"), "EOF reached");
    }

    #[test]
    fn agent_messages_pass_through() {
        let p = Path::new("/run/warrant/agent.sock");
        let e = status_error(p, &Status::not_found("unknown grant g-12"));
        assert_eq!(format!("{e:#}"), "unknown grant g-12");
        let e = status_error(p, &Status::failed_precondition("grant g-12 expired 3m ago"));
        assert_eq!(format!("{e:#}"), "grant g-12 expired 3m ago");
        let e = status_error(p, &Status::internal(""));
        assert_eq!(format!("{e:#}"), "the agent failed without a message (Internal error)");
    }

    #[test]
    fn unavailable_is_cannot_reach() {
        let p = Path::new("/run/warrant/agent.sock");
        let e = status_error(p, &Status::unavailable("agent shutting down"));
        assert_eq!(
            format!("{e:#}"),
            "cannot reach the agent at /run/warrant/agent.sock: agent shutting down\n\n\
             Is warrant-agent running? Start it with `cargo xtask run`."
        );
    }

    #[tokio::test]
    async fn missing_socket_says_so_and_hints() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let Err(e) = Agent::connect(&sock).await else { panic!("connected to nothing") };
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
        let Err(e) = Agent::connect(&sock).await else { panic!("connected to nothing") };
        let msg = format!("{e:#}");
        assert!(msg.starts_with(&format!("cannot reach the agent at {}: ", sock.display())), "{msg}");
        assert!(msg.contains("connection refused") || msg.contains("protocol wrong type"), "{msg}");
    }
}
