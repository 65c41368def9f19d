//! One client for either target: the local agent (its unix socket) or a collector
//! (mTLS, as the certificate's holder). Commands that work the same against both
//! (`watch`, `sessions`, `kill`, `revoke`, `report`, `audit verify`, the console's
//! pages) call this instead of choosing each time; each answer comes back in one
//! shape whichever side gave it.

use std::path::Path;

use anyhow::{Result, bail};
use tonic::{Status, Streaming};
use warrant_proto::event::Event as Kind;
use warrant_proto::{
    CollectorSessionsRequest, CollectorWatchRequest, Event, EventFilter, KillRequest,
    RemoteKillRequest, RemoteKillResponse, RemoteRevokeRequest, RevokeGrantRequest, Session,
    WatchRequest,
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

/// What an audit log check found, on either side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogCheck {
    /// Which log: `collector URL`, or the agent's log path.
    pub log: String,
    pub ok: bool,
    pub records: u64,
    pub head: String,
    pub problems: Vec<String>,
    /// The records' macs were checked with the log's key (the agent's log).
    pub keyed: bool,
    /// Records before the first marked one.
    pub unkeyed: u64,
    /// Records in the storage format from before format versions.
    pub unversioned: u64,
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
                c.clone()
                    .watch(CollectorWatchRequest {
                        filter: Some(filter),
                        since_unix_ns,
                    })
                    .await
            }
            Target::Agent(a) => {
                if since_unix_ns != 0 {
                    bail!(
                        "replay from a time needs --collector: the local agent streams live events only"
                    );
                }
                let req = WatchRequest {
                    session: filter.session,
                    grant: filter.grant,
                    kinds: filter.kinds,
                };
                a.clone().watch(req).await
            }
        }
    }

    /// The error to report for a status received mid-stream.
    pub fn stream_error(&self, status: &Status) -> anyhow::Error {
        match self {
            Target::Agent(a) => a.stream_error(status),
            Target::Collector(c) => c.stream_error(status),
        }
    }

    /// Sessions (`all`: ended ones too).
    pub async fn sessions(&self, all: bool) -> Result<Vec<HostedSession>> {
        self.sessions_on(all, None).await
    }

    /// Sessions on `host` (a collector's; the local agent knows its own only).
    pub async fn sessions_on(&self, all: bool, host: Option<&str>) -> Result<Vec<HostedSession>> {
        match self {
            Target::Collector(c) => Ok(c
                .clone()
                .sessions(CollectorSessionsRequest {
                    all,
                    host: host.unwrap_or_default().to_owned(),
                })
                .await?
                .into_iter()
                .map(|r| HostedSession {
                    host: r.host,
                    agent_id: r.agent_id,
                    session: r.session.unwrap_or_default(),
                })
                .collect()),
            Target::Agent(_) if host.is_some() => {
                bail!(
                    "--host needs --collector\n\nThe local agent knows this host's sessions only."
                )
            }
            Target::Agent(a) => Ok(a
                .clone()
                .list_sessions(all)
                .await?
                .into_iter()
                .map(|session| HostedSession {
                    host: String::new(),
                    agent_id: String::new(),
                    session,
                })
                .collect()),
        }
    }

    /// A session's report (a `session_report` event): the agent builds it for a live
    /// or recent session; from a collector it is the one the session's end wrote to
    /// the log, or, while the session runs, its events so far summed up by the same
    /// rules ([`crate::follow`]).
    pub async fn report(&self, session: &str) -> Result<Event> {
        match self {
            Target::Agent(a) => a.clone().report(session).await,
            Target::Collector(c) => {
                let seen = crate::follow::Books::default().update(c, session, usize::MAX).await?;
                if matches!(&seen.report.event, Some(Kind::SessionReport(r)) if r.events == 0) {
                    bail!("the collector's log has nothing of session {session}");
                }
                Ok(seen.report)
            }
        }
    }

    /// Kills one session's tree; the answer as a collector gives it (for the agent,
    /// always delivered, with no host).
    pub async fn kill(&self, session: &str, reason: &str) -> Result<RemoteKillResponse> {
        match self {
            Target::Collector(c) => {
                c.clone()
                    .kill(RemoteKillRequest {
                        session: session.to_owned(),
                        reason: reason.to_owned(),
                    })
                    .await
            }
            Target::Agent(a) => {
                let report = a
                    .clone()
                    .kill(KillRequest {
                        session: session.to_owned(),
                        reason: reason.to_owned(),
                    })
                    .await?;
                Ok(RemoteKillResponse {
                    delivered: true,
                    report: Some(report),
                    ..RemoteKillResponse::default()
                })
            }
        }
    }

    /// Revokes a grant and kills every session under it; the answer as for [`Target::kill`].
    pub async fn revoke(&self, grant: &str, reason: &str) -> Result<RemoteKillResponse> {
        match self {
            Target::Collector(c) => {
                c.clone()
                    .revoke(RemoteRevokeRequest {
                        grant: grant.to_owned(),
                        reason: reason.to_owned(),
                    })
                    .await
            }
            Target::Agent(a) => {
                let req = RevokeGrantRequest {
                    grant: grant.to_owned(),
                    reason: reason.to_owned(),
                };
                let report = a.clone().revoke_grant(req).await?;
                Ok(RemoteKillResponse {
                    delivered: true,
                    report: Some(report),
                    ..RemoteKillResponse::default()
                })
            }
        }
    }

    /// Checks the audit log's hash chain: the collector's, or the agent's.
    pub async fn verify_log(&self) -> Result<LogCheck> {
        match self {
            Target::Collector(c) => {
                let r = c.clone().verify_log().await?;
                Ok(LogCheck {
                    log: format!("collector {}", c.url()),
                    ok: r.ok,
                    records: r.records,
                    head: r.head,
                    problems: r.problems,
                    keyed: r.keyed,
                    unkeyed: r.unkeyed_records,
                    unversioned: r.unversioned_records,
                })
            }
            Target::Agent(a) => {
                let r = a.clone().verify_audit_log().await?;
                Ok(LogCheck {
                    log: r.path,
                    ok: r.ok,
                    records: r.records,
                    head: r.head,
                    problems: r.problems,
                    keyed: r.keyed,
                    unkeyed: r.unkeyed_records,
                    unversioned: r.unversioned_records,
                })
            }
        }
    }
}
