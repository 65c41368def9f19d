//! Fleet state kept in the index: sessions and the agent holding each, the agents
//! that reported a grant, and every (agent, boot) high-water mark.

use prost::Message;
use redb::{ReadableDatabase, ReadableTable};
use warrant_proto::{RemoteSession, SessionState};

use super::index::{BOOTS, GRANT_AGENTS, OWNERS, SESSIONS};
use super::{Reader, StoreError, index_err};

impl Reader {
    /// Every known session (ended ones too).
    ///
    /// # Errors
    /// When the index cannot be read.
    pub fn sessions(&self) -> Result<Vec<RemoteSession>, StoreError> {
        let p = &self.path();
        let tx = ix!(p, self.db.begin_read())?;
        let t = match tx.open_table(SESSIONS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(index_err(p)(e.into())),
        };
        let mut out = Vec::new();
        for row in ix!(p, t.iter())? {
            let (_, v) = ix!(p, row)?;
            if let Ok(rs) = RemoteSession::decode(v.value()) {
                out.push(with_state(rs));
            }
        }
        Ok(out)
    }

    /// The agent that holds `session`, if known.
    ///
    /// # Errors
    /// When the index cannot be read.
    pub fn session_agent(&self, session: &str) -> Result<Option<RemoteSession>, StoreError> {
        let p = &self.path();
        let tx = ix!(p, self.db.begin_read())?;
        let t = match tx.open_table(SESSIONS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(index_err(p)(e.into())),
        };
        Ok(ix!(p, t.get(session))?.and_then(|v| RemoteSession::decode(v.value()).ok()).map(with_state))
    }

    /// The agents that reported `grant`.
    ///
    /// # Errors
    /// When the index cannot be read.
    pub fn grant_agents(&self, grant: &str) -> Result<Vec<String>, StoreError> {
        let p = &self.path();
        let tx = ix!(p, self.db.begin_read())?;
        let t = match tx.open_table(GRANT_AGENTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(index_err(p)(e.into())),
        };
        let mut out = Vec::new();
        for row in ix!(p, t.range((grant, "")..))? {
            let (k, _) = ix!(p, row)?;
            let (g, agent) = k.value();
            if g != grant {
                break;
            }
            out.push(agent.to_owned());
        }
        Ok(out)
    }

    /// High-water marks of every (agent, boot).
    ///
    /// # Errors
    /// When the index cannot be read.
    pub fn boots(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let p = &self.path();
        let tx = ix!(p, self.db.begin_read())?;
        let t = match tx.open_table(BOOTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(index_err(p)(e.into())),
        };
        let mut out = Vec::new();
        for row in ix!(p, t.iter())? {
            let (k, v) = ix!(p, row)?;
            let (a, b) = k.value();
            out.push((a.to_owned(), b.to_owned(), v.value()));
        }
        Ok(out)
    }


    /// Every agent id and the certificate name it is bound to.
    ///
    /// # Errors
    /// When the index cannot be read.
    pub fn agent_owners(&self) -> Result<Vec<(String, String)>, StoreError> {
        let p = &self.path();
        let tx = ix!(p, self.db.begin_read())?;
        let t = match tx.open_table(OWNERS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(index_err(p)(e.into())),
        };
        let mut out = Vec::new();
        for row in ix!(p, t.iter())? {
            let (k, v) = ix!(p, row)?;
            out.push((k.value().to_owned(), v.value().to_owned()));
        }
        Ok(out)
    }
}

/// A session's state from what the log says of it: live until its `session_end`,
/// then killed (an end reason "killed: …") or ended.
fn with_state(mut rs: RemoteSession) -> RemoteSession {
    if let Some(s) = rs.session.as_mut() {
        let state = if s.end_reason.is_empty() {
            SessionState::Live
        } else if s.end_reason.starts_with("killed") {
            SessionState::Killed
        } else {
            SessionState::Ended
        };
        s.state = state as i32;
    }
    rs
}
