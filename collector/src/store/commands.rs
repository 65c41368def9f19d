//! Commands queued for agents that are not connected, delivered (in order) when
//! they reconnect and removed once answered.

use std::path::Path;

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable};
use warrant_proto::Command;

use super::index::QUEUED;
use super::{Reader, StoreError, index_err};

pub(super) fn queue_command(db: &Database, p: &Path, agent: &str, cmd: &Command) -> Result<u64, StoreError> {
    let tx = ix!(p, db.begin_write())?;
    let order;
    {
        let mut q = ix!(p, tx.open_table(QUEUED))?;
        order = match ix!(p, q.range((agent, 0)..=(agent, u64::MAX)))?.next_back() {
            Some(row) => ix!(p, row)?.0.value().1 + 1,
            None => 1,
        };
        ix!(p, q.insert((agent, order), cmd.encode_to_vec().as_slice()))?;
    }
    ix!(p, tx.commit())?;
    Ok(order)
}

impl Reader {
    /// Stores a command for an agent that is not connected.
    ///
    /// # Errors
    /// When the index update fails.
    pub fn queue_command(&self, agent: &str, cmd: &Command) -> Result<u64, StoreError> {
        queue_command(&self.db, &self.path(), agent, cmd)
    }

    /// Commands waiting for `agent`, oldest first.
    ///
    /// # Errors
    /// When the index cannot be read.
    pub fn queued_commands(&self, agent: &str) -> Result<Vec<Command>, StoreError> {
        let p = &self.path();
        let tx = ix!(p, self.db.begin_read())?;
        let t = match tx.open_table(QUEUED) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(index_err(p)(e.into())),
        };
        let mut out = Vec::new();
        for row in ix!(p, t.range((agent, 0)..=(agent, u64::MAX)))? {
            let (_, v) = ix!(p, row)?;
            if let Ok(c) = Command::decode(v.value()) {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Removes a queued command once the agent answered it; true when it was queued.
    ///
    /// # Errors
    /// When the index update fails.
    pub fn unqueue_command(&self, agent: &str, command_id: &str) -> Result<bool, StoreError> {
        let p = &self.path();
        let tx = ix!(p, self.db.begin_write())?;
        let mut found = false;
        {
            let mut t = ix!(p, tx.open_table(QUEUED))?;
            let mut key = None;
            for row in ix!(p, t.range((agent, 0)..=(agent, u64::MAX)))? {
                let (k, v) = ix!(p, row)?;
                if Command::decode(v.value()).is_ok_and(|c| c.id == command_id) {
                    key = Some(k.value().1);
                    break;
                }
            }
            if let Some(order) = key {
                ix!(p, t.remove((agent, order)))?;
                found = true;
            }
        }
        ix!(p, tx.commit())?;
        Ok(found)
    }
}
