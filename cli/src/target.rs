//! One client for either target: the local agent (its unix socket) or a collector
//! (mTLS, as the certificate's holder). Commands that work the same against both
//! (the console's pages, `warrant report`) call this instead of choosing each time.

use std::path::Path;

use anyhow::{Result, bail};
use tonic::Streaming;
use warrant_proto::event::Event as Kind;
use warrant_proto::{
    CollectorSessionsRequest, CollectorWatchRequest, Event, EventFilter, KillRequest, QueryRequest, RemoteKillRequest,
    RemoteKillResponse, Session, WatchRequest,
};

use crate::client::Agent;
use crate::remote::{Collector, CollectorArgs};

/// The agent or the collector, connected.
#[derive(Clone)]
pub enum Target {
    /// Single-host mode: the agent's socket.
    Agent(Agent),
    /// A collector, with the person's certificate.
    Collector(Collector),
}

/// A session and where it runs (empty host and agent id for the local agent).
pub struct HostedSession {
    pub host: String,
    pub agent_id: String,
    pub session: Session,
}

impl Target {
    /// The collector when `remote` names one, else the agent at `socket`.
    pub async fn connect(socket: &Path, remote: &CollectorArgs) -> Result<Target> {
        if remote.is_set() {
            Ok(Target::Collector(Collector::connect(remote).await?))
        } else {
            Ok(Target::Agent(Agent::connect(socket).await?))
        }
    }

    /// True for a collector.
    pub fn is_collector(&self) -> bool {
        matches!(self, Target::Collector(_))
    }

    /// Live events matching `filter`; with a collector, replayed from `since_unix_ns`
    /// first (0: live only). The agent filters by session, grant and kinds only: the
    /// host and subject parts of `filter` are the caller's to apply.
    pub async fn watch(&self, filter: EventFilter, since_unix_ns: i64) -> Result<Streaming<Event>> {
        match self {
            Target::Collector(c) => {
                c.clone().watch(CollectorWatchRequest { filter: Some(filter), since_unix_ns }).await
            }
            Target::Agent(a) => {
                if since_unix_ns != 0 {
                    bail!("replay from a time needs --collector: the local agent streams live events only");
                }
                let req = WatchRequest { session: filter.session, grant: filter.grant, kinds: filter.kinds };
                a.clone().watch(req).await
            }
        }
    }

    /// Sessions (`all`: ended ones too).
    pub async fn sessions(&self, all: bool) -> Result<Vec<HostedSession>> {
        match self {
            Target::Collector(c) => Ok(c
                .clone()
                .sessions(CollectorSessionsRequest { all, host: String::new() })
                .await?
                .into_iter()
                .map(|r| HostedSession { host: r.host, agent_id: r.agent_id, session: r.session.unwrap_or_default() })
                .collect()),
            Target::Agent(a) => Ok(a
                .clone()
                .list_sessions(all)
                .await?
                .into_iter()
                .map(|session| HostedSession { host: String::new(), agent_id: String::new(), session })
                .collect()),
        }
    }

    /// A session's report (a `session_report` event): the agent builds it for a live
    /// or recent session; a collector has the one each session's end wrote to its log.
    pub async fn report(&self, session: &str) -> Result<Event> {
        match self {
            Target::Agent(a) => a.clone().report(session).await,
            Target::Collector(c) => {
                let filter = EventFilter {
                    session: session.to_owned(),
                    kinds: vec!["session_report".to_owned()],
                    ..EventFilter::default()
                };
                let req = QueryRequest { filter: Some(filter), from_unix_ns: 0, to_unix_ns: 0, limit: 100, page: String::new() };
                let resp = c.clone().query(req).await?;
                match resp.events.into_iter().rev().find(|e| matches!(e.event, Some(Kind::SessionReport(_)))) {
                    Some(ev) => Ok(ev),
                    None => bail!(
                        "no report for session {session} in the collector's log yet: an agent sends a session's report when it ends"
                    ),
                }
            }
        }
    }

    /// Kills one session's tree; the answer as a collector gives it (for the agent,
    /// always delivered, with no host).
    pub async fn kill(&self, session: &str, reason: &str) -> Result<RemoteKillResponse> {
        match self {
            Target::Collector(c) => {
                c.clone().kill(RemoteKillRequest { session: session.to_owned(), reason: reason.to_owned() }).await
            }
            Target::Agent(a) => {
                let report = a.clone().kill(KillRequest { session: session.to_owned(), reason: reason.to_owned() }).await?;
                Ok(RemoteKillResponse { delivered: true, report: Some(report), ..RemoteKillResponse::default() })
            }
        }
    }
}
