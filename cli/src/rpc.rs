//! The call plumbing both clients share: each RPC runs within a deadline, and
//! every failure becomes one line that says which side failed and what to do.
//!
//! [`Peer`] is the other side of a call, the local agent (its socket) or a
//! collector (its URL). The agent's and the collector's own gRPC messages are
//! printed as they are: they are written for people ("unknown grant g-12", "grant
//! g-12 expired 3m ago"); a collector's refusals of a certificate get a hint about
//! roles.

use std::error::Error as _;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use tonic::{Code, Status};

/// How long a quick RPC (list, status, issue, query) may take.
pub const QUICK: Duration = Duration::from_secs(30);

/// How long a kill or revoke may take: the answer comes when the tree is dead
/// (or, through a collector, at once when the agent is not connected).
pub const KILL: Duration = Duration::from_mins(2);

/// How long an audit log check may take (it reads the whole log).
pub const VERIFY: Duration = Duration::from_mins(30);

/// The other side of a call, for error messages.
#[derive(Clone, Debug)]
pub enum Peer {
    /// The local agent, at its unix socket.
    Agent(PathBuf),
    /// A collector, at its URL.
    Collector(String),
}

impl Peer {
    /// `agent` or `collector`.
    fn name(&self) -> &'static str {
        match self {
            Peer::Agent(_) => "agent",
            Peer::Collector(_) => "collector",
        }
    }

    /// Where it was reached: the socket's path or the URL.
    fn at(&self) -> String {
        match self {
            Peer::Agent(socket) => socket.display().to_string(),
            Peer::Collector(url) => url.clone(),
        }
    }

    /// Awaits `call` (the RPC named `rpc`) within `limit` and maps its failure.
    pub async fn call<T>(
        &self,
        rpc: &str,
        limit: Duration,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T> {
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(self.status_error(&status)),
            Err(_) => Err(anyhow::anyhow!(
                "the {} at {} did not answer {rpc} within {}s\n\nIt may be stuck or overloaded; check its logs.",
                self.name(),
                self.at(),
                limit.as_secs()
            )),
        }
    }

    /// Maps a gRPC status (an RPC's answer, or one received mid-stream) to the
    /// message an operator sees.
    pub fn status_error(&self, status: &Status) -> anyhow::Error {
        // A status with a source was made on this side, from a transport failure;
        // one without came from the other side itself.
        let local = status.source().map(|_| chain_text(status));
        let collector = matches!(self, Peer::Collector(_));
        match (status.code(), local) {
            (Code::Unavailable, local) => {
                self.unreachable(&local.unwrap_or_else(|| status.message().to_owned()))
            }
            (Code::PermissionDenied, _) if collector => RpcError::error(
                Code::PermissionDenied,
                nonempty(
                    status.message(),
                    "the collector refused this for your certificate",
                )
                .to_owned(),
                Some(
                    "The collector gives roles to certificate names in its config ([roles], or --role NAME=ROLE); \
                     ask its admin, or use a certificate whose name has the role.",
                ),
            ),
            (Code::Unauthenticated, _) if collector => RpcError::error(
                Code::Unauthenticated,
                nonempty(
                    status.message(),
                    "the collector did not accept your certificate",
                )
                .to_owned(),
                Some(
                    "The collector did not accept your certificate: --cert must be signed by the collector's CA.",
                ),
            ),
            (_, Some(cause)) => {
                let hint = match self {
                    Peer::Agent(_) => {
                        "\n\nDid warrant-agent stop or restart? `warrant status` tells."
                    }
                    Peer::Collector(_) => "",
                };
                anyhow::anyhow!(
                    "lost the connection to the {} at {}: {cause}{hint}",
                    self.name(),
                    self.at()
                )
            }
            (code, None) if status.message().is_empty() => RpcError::error(
                code,
                format!(
                    "the {} failed without a message ({})",
                    self.name(),
                    code.description()
                ),
                None,
            ),
            (code, None) => RpcError::error(code, status.message().to_owned(), None),
        }
    }

    /// The error for a side that cannot be reached, with what to check.
    pub fn unreachable(&self, cause: &str) -> anyhow::Error {
        let hint = match self {
            Peer::Agent(_) => "Is warrant-agent running? Start it with `cargo xtask run`.",
            Peer::Collector(_)
                if cause.contains("UnknownIssuer") || cause.contains("certificate") =>
            {
                "Check that --ca is the CA that signed the collector's certificate, and that the \
                 collector's certificate names the host in the URL."
            }
            Peer::Collector(_) => "Is warrant-collector running there, and is the URL right?",
        };
        anyhow::anyhow!(
            "cannot reach the {} at {}: {cause}\n\n{hint}",
            self.name(),
            self.at()
        )
    }
}

fn nonempty<'a>(s: &'a str, default: &'a str) -> &'a str {
    if s.is_empty() { default } else { s }
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
        anyhow::Error::new(RpcError {
            code,
            message,
            text,
        })
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for RpcError {}

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

    fn agent() -> Peer {
        Peer::Agent(PathBuf::from("/run/warrant/agent.sock"))
    }

    fn collector() -> Peer {
        Peer::Collector("https://c:7443".into())
    }

    #[test]
    fn io_causes_read_like_sentences() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(io_cause(&e), "no such file or directory");
        let e = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(io_cause(&e), "permission denied");
        assert_eq!(lowercase_first("EOF reached"), "EOF reached");
    }

    #[test]
    fn messages_pass_through() {
        let e = agent().status_error(&Status::not_found("unknown grant g-12"));
        assert_eq!(format!("{e:#}"), "unknown grant g-12");
        let e = agent().status_error(&Status::failed_precondition("grant g-12 expired 3m ago"));
        assert_eq!(format!("{e:#}"), "grant g-12 expired 3m ago");
        let e = agent().status_error(&Status::internal(""));
        assert_eq!(
            format!("{e:#}"),
            "the agent failed without a message (Internal error)"
        );
        let e = collector().status_error(&Status::internal(""));
        assert_eq!(
            format!("{e:#}"),
            "the collector failed without a message (Internal error)"
        );
        // The agent's refusals are its own words; only a collector's name roles.
        let e = agent().status_error(&Status::permission_denied("sessions may not use the agent"));
        assert_eq!(format!("{e:#}"), "sessions may not use the agent");
    }

    #[test]
    fn unavailable_is_cannot_reach() {
        let e = agent().status_error(&Status::unavailable("agent shutting down"));
        assert_eq!(
            format!("{e:#}"),
            "cannot reach the agent at /run/warrant/agent.sock: agent shutting down\n\n\
             Is warrant-agent running? Start it with `cargo xtask run`."
        );
        let e = collector().status_error(&Status::unavailable("connection refused"));
        assert_eq!(
            format!("{e:#}"),
            "cannot reach the collector at https://c:7443: connection refused\n\n\
             Is warrant-collector running there, and is the URL right?"
        );
        let e = collector().unreachable("invalid peer certificate: UnknownIssuer");
        assert!(
            format!("{e:#}").ends_with("names the host in the URL."),
            "{e:#}"
        );
    }

    #[test]
    fn collector_refusals_name_the_role_table() {
        let e = collector().status_error(&Status::permission_denied(
            "kill needs role responder; bob is a watcher",
        ));
        let text = format!("{e:#}");
        assert!(
            text.starts_with("kill needs role responder; bob is a watcher\n\n"),
            "{text}"
        );
        assert!(text.contains("--role NAME=ROLE"), "{text}");
        let e = collector().status_error(&Status::unauthenticated(""));
        assert!(
            format!("{e:#}").starts_with("the collector did not accept your certificate\n\n"),
            "{e:#}"
        );
    }

    #[tokio::test]
    async fn a_late_answer_names_the_rpc_and_the_peer() {
        let never = std::future::pending::<Result<tonic::Response<()>, Status>>();
        let Err(e) = agent()
            .call("Status", Duration::from_millis(10), never)
            .await
        else {
            panic!("answered")
        };
        assert!(
            format!("{e:#}").starts_with(
                "the agent at /run/warrant/agent.sock did not answer Status within 0s"
            ),
            "{e:#}"
        );
    }
}
