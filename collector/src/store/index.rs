//! The index side: the tables of `index.redb` and the one thread that writes
//! them from the records just appended.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use warrant_proto::event::Event as Kind;
use warrant_proto::{RemoteSession, Session};

use super::key_runs::KeyRuns;
use super::positions::RunWriter;
use super::{IndexWork, RetentionPlan, StoreError, index_err};

/// first record of a run of consecutive records in one segment → where each
/// record of the run is and its event time (see [`super::positions`]).
pub(super) const POS: TableDefinition<u64, &[u8]> = TableDefinition::new("pos_runs");
/// (value, first n) → (last n, oldest time, newest time) of a run of consecutive
/// records with that value, one table per indexed envelope field (see
/// [`super::key_runs`]).
pub(super) const BY_GRANT: KeyTable = TableDefinition::new("by_grant_runs");
pub(super) const BY_SESSION: KeyTable = TableDefinition::new("by_session_runs");
pub(super) const BY_HOST: KeyTable = TableDefinition::new("by_host_runs");
pub(super) const BY_SUBJECT: KeyTable = TableDefinition::new("by_subject_runs");
pub(super) const BY_AGENT: KeyTable = TableDefinition::new("by_agent_runs");
/// The shape of the per-field tables.
pub(super) type KeyTable = TableDefinition<'static, (&'static str, u64), (u64, i64, i64)>;
/// (agent, boot) → highest seq stored.
pub(super) const BOOTS: TableDefinition<(&str, &str), u64> = TableDefinition::new("boots");
/// (agent, boot, first seq) → last seq of a sequence gap still open.
pub(super) const GAPS: TableDefinition<(&str, &str, u64), u64> = TableDefinition::new("gaps");
/// agent id → the certificate name it is bound to (from `agent_connect` records).
pub(super) const OWNERS: TableDefinition<&str, &str> = TableDefinition::new("owners");
/// session id → prost `RemoteSession`.
pub(super) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// (grant, agent) for every agent that reported the grant.
pub(super) const GRANT_AGENTS: TableDefinition<(&str, &str), ()> = TableDefinition::new("grant_agents");
/// grant → expiry (ns), from `grant_change` records.
pub(super) const GRANTS: TableDefinition<&str, i64> = TableDefinition::new("grants");
/// first record of a segment → (last record, oldest and newest event time, bytes).
pub(super) const SEGMENTS: TableDefinition<u64, (u64, i64, i64, u64)> = TableDefinition::new("segments");
/// (agent, order) → prost `Command` waiting for the agent to reconnect.
pub(super) const QUEUED: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queued");
/// "indexed": the last record indexed; "schema": [`SCHEMA`].
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The index's layout: 2 since positions and keys are kept per run of records.
/// An index of another layout is rebuilt from the log at open.
pub(super) const SCHEMA: u64 = 2;

/// Tables of layout 1 (a row per record), removed when the index is rebuilt.
const OLD_TABLES: [&str; 6] = ["pos", "by_grant", "by_session", "by_host", "by_subject", "by_agent"];

/// How often an index commit is made durable; records after the last durable one
/// are re-indexed from the log at open.
pub(super) const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// The index side: the only writer of `index.redb` (besides queued commands).
pub struct Indexer {
    /// The index, shared with [`Reader`]s.
    pub(super) db: Arc<Database>,
    /// `<data-dir>/index.redb`, for messages.
    pub(super) index_path: PathBuf,
    /// When the index was last committed durably.
    pub(super) last_durable: Instant,
}

impl Indexer {
    /// Writes the index rows of `work` in one transaction; durable (fsync'd) when
    /// asked or when the last durable commit is older than a second.
    ///
    /// # Errors
    /// When the index update fails.
    pub fn apply(&mut self, work: &[IndexWork], force_durable: bool) -> Result<(), StoreError> {
        if work.iter().all(|w| w.records.is_empty()) {
            return Ok(());
        }
        let durable = force_durable || self.last_durable.elapsed() >= DURABLE_EVERY;
        let path = self.index_path.clone();
        let p = &path;
        let mut tx = ix!(p, self.db.begin_write())?;
        ix!(p, tx.set_durability(if durable { Durability::Immediate } else { Durability::None }))?;
        {
            let mut pos = ix!(p, tx.open_table(POS))?;
            let mut keys = KeyRuns::default();
            let mut key_tables = [
                ix!(p, tx.open_table(BY_GRANT))?,
                ix!(p, tx.open_table(BY_SESSION))?,
                ix!(p, tx.open_table(BY_HOST))?,
                ix!(p, tx.open_table(BY_SUBJECT))?,
                ix!(p, tx.open_table(BY_AGENT))?,
            ];
            let mut boots = ix!(p, tx.open_table(BOOTS))?;
            let mut sessions = ix!(p, tx.open_table(SESSIONS))?;
            let mut grant_agents = ix!(p, tx.open_table(GRANT_AGENTS))?;
            let mut grants = ix!(p, tx.open_table(GRANTS))?;
            let mut segments = ix!(p, tx.open_table(SEGMENTS))?;
            let mut gaps = ix!(p, tx.open_table(GAPS))?;
            let mut owners = ix!(p, tx.open_table(OWNERS))?;
            // The (agent, boot) of the current run of events, its high-water mark,
            // and whether the mark moved.
            let mut last_boot: Option<(&str, &str, u64, bool)> = None;
            let mut last_n = 0;
            for w in work {
                let mut runs = RunWriter::default();
                for (n, offset, len, ev) in &w.records {
                    let (n, t) = (*n, ev.time_unix_ns);
                    last_n = n;
                    runs.push(w.seg, n, *offset, *len, t);
                    let values = [ev.grant.as_str(), ev.session.as_str(), ev.host.as_str(), ev.subject.as_str(), ev.agent_id.as_str()];
                    ix!(p, keys.push(&mut key_tables, w.seg, n, t, values))?;
                    // One high-water write per run of events from the same boot.
                    // One high-water read and write per run of events from the same
                    // boot; gaps opened and filled as the log writer did.
                    if !last_boot.is_some_and(|(a, b, _, _)| a == ev.agent_id && b == ev.boot_id) {
                        if let Some((a, b, s, true)) = last_boot {
                            ix!(p, boots.insert((a, b), s))?;
                        }
                        let mark = ix!(p, boots.get((ev.agent_id.as_str(), ev.boot_id.as_str())))?.map_or(0, |v| v.value());
                        last_boot = Some((&ev.agent_id, &ev.boot_id, mark, false));
                    }
                    if let Some((a, b, mark, moved)) = last_boot.as_mut() {
                        let seq = ev.seq;
                        if seq > *mark {
                            if seq > *mark + 1 && *a != crate::writer::COLLECTOR_AGENT_ID {
                                ix!(p, gaps.insert((*a, *b, *mark + 1), seq - 1))?;
                            }
                            *mark = seq;
                            *moved = true;
                        } else if seq > 0 {
                            let found = match ix!(p, gaps.range((*a, *b, 0)..=(*a, *b, seq)))?.next_back() {
                                Some(row) => {
                                    let (k, v) = ix!(p, row)?;
                                    Some((k.value().2, v.value()))
                                }
                                None => None,
                            };
                            if let Some((first, last)) = found
                                && last >= seq
                            {
                                ix!(p, gaps.remove((*a, *b, first)))?;
                                if first < seq {
                                    ix!(p, gaps.insert((*a, *b, first), seq - 1))?;
                                }
                                if seq < last {
                                    ix!(p, gaps.insert((*a, *b, seq + 1), last))?;
                                }
                            }
                        }
                    }
                    match &ev.event {
                        Some(Kind::SessionStart(s)) if !ev.session.is_empty() => {
                            let expires = ix!(p, grants.get(ev.grant.as_str()))?.map_or(0, |v| v.value());
                            let rs = RemoteSession {
                                agent_id: ev.agent_id.clone(),
                                host: ev.host.clone(),
                                session: Some(Session {
                                    id: ev.session.clone(),
                                    grant: ev.grant.clone(),
                                    subject: ev.subject.clone(),
                                    root_pid: s.root_pid,
                                    started_at_unix_ns: t,
                                    expires_at_unix_ns: expires,
                                    cgroup: s.cgroup.clone(),
                                    command: s.command.clone(),
                                    ..Session::default()
                                }),
                            };
                            ix!(p, sessions.insert(ev.session.as_str(), rs.encode_to_vec().as_slice()))?;
                            if !ev.grant.is_empty() {
                                ix!(p, grant_agents.insert((ev.grant.as_str(), ev.agent_id.as_str()), ()))?;
                            }
                        }
                        Some(Kind::SessionEnd(e)) if !ev.session.is_empty() => {
                            let old = ix!(p, sessions.get(ev.session.as_str()))?.map(|v| v.value().to_vec());
                            if let Some(mut rs) = old.and_then(|b| RemoteSession::decode(b.as_slice()).ok()) {
                                if let Some(s) = rs.session.as_mut() {
                                    s.end_reason.clone_from(&e.reason);
                                }
                                ix!(p, sessions.insert(ev.session.as_str(), rs.encode_to_vec().as_slice()))?;
                            }
                        }
                        // The first certificate an agent id connected with owns it.
                        Some(Kind::ControlAction(c))
                            if c.action == "agent_connect" && c.outcome == "ok" && ev.agent_id == crate::writer::COLLECTOR_AGENT_ID =>
                        {
                            if let Some(agent) = c.target.strip_prefix("agent ")
                                && ix!(p, owners.get(agent))?.is_none()
                            {
                                ix!(p, owners.insert(agent, c.by.as_str()))?;
                            }
                        }
                        Some(Kind::GrantChange(g)) if !ev.grant.is_empty() => {
                            ix!(p, grant_agents.insert((ev.grant.as_str(), ev.agent_id.as_str()), ()))?;
                            if g.expires_at_unix_ns != 0 {
                                ix!(p, grants.insert(ev.grant.as_str(), g.expires_at_unix_ns))?;
                            }
                        }
                        _ => {}
                    }
                }
                runs.close();
                for (first, bytes) in &runs.rows {
                    ix!(p, pos.insert(*first, bytes.as_slice()))?;
                }
                let i = w.info;
                ix!(p, segments.insert(w.seg, (i.last_n, i.min_time, i.max_time, i.bytes)))?;
            }
            ix!(p, keys.finish(&mut key_tables))?;
            if let Some((a, b, s, true)) = last_boot {
                ix!(p, boots.insert((a, b), s))?;
            }
            let mut meta = ix!(p, tx.open_table(META))?;
            ix!(p, meta.insert("indexed", last_n))?;
        }
        ix!(p, tx.commit())?;
        if durable {
            self.last_durable = Instant::now();
        }
        Ok(())
    }

    /// Makes every index commit so far durable (at shutdown, and after catch-up).
    ///
    /// # Errors
    /// When the index commit fails.
    pub fn commit_durable(&mut self) -> Result<(), StoreError> {
        let p = &self.index_path.clone();
        let mut tx = ix!(p, self.db.begin_write())?;
        ix!(p, tx.set_durability(Durability::Immediate))?;
        {
            // Touch a table so the commit is not empty.
            let _ = ix!(p, tx.open_table(META))?;
        }
        ix!(p, tx.commit())?;
        self.last_durable = Instant::now();
        Ok(())
    }

    /// Removes the index rows of the records `plan` dropped.
    ///
    /// # Errors
    /// When the index update fails.
    pub fn drop_rows(&mut self, plan: &RetentionPlan) -> Result<(), StoreError> {
        let p = &self.index_path.clone();
        let keep = plan.last_n;
        let tx = ix!(p, self.db.begin_write())?;
        {
            let mut pos = ix!(p, tx.open_table(POS))?;
            ix!(p, pos.retain_in(..=keep, |_, _| false))?;
            for def in [BY_GRANT, BY_SESSION, BY_HOST, BY_SUBJECT, BY_AGENT] {
                let mut t = ix!(p, tx.open_table(def))?;
                ix!(p, t.retain(|k, _| k.1 > keep))?;
            }
            let mut segments = ix!(p, tx.open_table(SEGMENTS))?;
            for first in &plan.segments {
                ix!(p, segments.remove(*first))?;
            }
        }
        ix!(p, tx.commit())?;
        Ok(())
    }
}

/// The last record the index holds (0 when none).
pub(super) fn indexed_through(db: &Database, p: &Path) -> Result<u64, StoreError> {
    let tx = ix!(p, db.begin_read())?;
    match tx.open_table(META) {
        Ok(t) => Ok(ix!(p, t.get("indexed"))?.map_or(0, |v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(index_err(p)(e.into())),
    }
}

/// Brings an index of another layout ([`SCHEMA`]) to this one: removes every table
/// but the queued commands (which are not in the log) and the record of how far
/// it got, so the catch-up at open re-indexes the whole log. True when it did.
pub(super) fn ensure_schema(db: &Database, p: &Path) -> Result<bool, StoreError> {
    let schema = {
        let tx = ix!(p, db.begin_read())?;
        match tx.open_table(META) {
            Ok(t) => ix!(p, t.get("schema"))?.map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(index_err(p)(e.into())),
        }
    };
    if schema == Some(SCHEMA) {
        return Ok(false);
    }
    let rebuilt = schema.is_some() || indexed_through(db, p)? > 0 || {
        let tx = ix!(p, db.begin_read())?;
        ix!(p, tx.list_tables())?.any(|t| OLD_TABLES.contains(&t.name()))
    };
    let tx = ix!(p, db.begin_write())?;
    if rebuilt {
        let tables: Vec<_> = ix!(p, tx.list_tables())?.filter(|t| t.name() != QUEUED.name()).collect();
        for t in tables {
            ix!(p, tx.delete_table(t))?;
        }
    }
    {
        let mut meta = ix!(p, tx.open_table(META))?;
        ix!(p, meta.insert("schema", SCHEMA))?;
    }
    ix!(p, tx.commit())?;
    Ok(rebuilt)
}
