//! The collector's durable store: the audit log cut into segments, plus an index.
//!
//! # On disk
//!
//! ```text
//! <data-dir>/log/00000000000000000001.log   segment: records 1 .. (`warrant_audit::log` format)
//! <data-dir>/log/00000000000001048577.log   the next one, named by its first record
//! <data-dir>/index.redb                     the index (redb), rebuilt from the log
//! ```
//!
//! Segments are one hash chain: the first record of a segment chains to the last
//! record of the one before it, and numbers continue. Only the newest segment is
//! written; it is closed and a new one started when it passes `segment_bytes`.
//! Every record line carries its storage format version (`"v"`, see
//! `warrant_audit::log`); segments an older collector wrote have lines without one,
//! which verify as they did, and the newest segment is continued in the current
//! format.
//!
//! # Retention
//!
//! Retention drops whole segments, oldest first, never the one being written. Before
//! deleting anything it appends (durably) a `control_action` record with action
//! `retention` whose target is `log up to record N` and whose detail starts with
//! `hash H`: the last dropped record and its hash. [`verify_dir`] then checks that
//! the oldest remaining record is `N + 1` and chains to `H`, so the chain stays
//! verifiable from the first retained record, and a segment removed by anyone else
//! (with no retention record saying so) is reported.
//!
//! # Index
//!
//! The log is the truth; the index only makes lookups fast and can always be
//! rebuilt from it. Tables: per run of consecutive records, each one's (segment,
//! offset, length, time); per run of records with the same grant | session | host
//! | subject | agent, its first and last record and time range; per (agent, boot) the
//! highest seq stored (the dedup high-water mark); sessions, grant → agents and
//! queued commands. Index commits are cheap (no fsync) except about once a second;
//! after a crash, [`Store::open`] re-indexes the log records past the last durable
//! index commit, so the high-water marks always match what the log holds.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable};
use warrant_audit::decode::from_json;
use warrant_audit::log::{Anchor, AuditLog};
use warrant_audit::log_key::LogKey;
use warrant_proto::{Command, Event};

use self::commands::queue_command;
use self::index::{BOOTS, GAPS, SEGMENTS, ensure_schema, indexed_through};
use self::segments::{last_line, list_segments, parse_line, segment_name, widen};

fn index_err(path: &Path) -> impl Fn(redb::Error) -> StoreError + '_ {
    move |e| StoreError::Index { what: e.to_string(), path: path.to_path_buf() }
}

/// Turns any redb error into [`StoreError::Index`].
macro_rules! ix {
    ($path:expr, $e:expr) => {
        $e.map_err(|e| index_err($path)(e.into()))
    };
}

mod commands;
mod fleet;
mod index;
mod key_runs;
mod positions;
mod query;
mod segments;
#[cfg(test)]
mod tests;
mod verify;

pub use index::Indexer;
pub use query::{Cursor, Page, QuerySpec, unreadable};
pub use segments::{IndexWork, LogSide, RetentionPlan, SegmentInfo};
pub use verify::{DirReport, verify_dir};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The audit log itself.
    #[error(transparent)]
    Log(#[from] warrant_audit::Error),
    /// A file or directory of the data dir.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The index database.
    #[error("index {}: {what}", path.display())]
    Index {
        /// What redb said.
        what: String,
        /// The index file.
        path: PathBuf,
    },
    /// A record of the log that should be readable is not.
    #[error("bad record in {}: {what}", path.display())]
    BadRecord {
        /// The segment.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// The log's key in the data directory (mode 0600): every record's mac is made with
/// it, and `verify` checks them when it can read it. Beside it, `log.key.from`
/// (`warrant_audit::log_key::from_path`) names the first record it marked.
pub const KEY_FILE: &str = "log.key";

/// Tunables of the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// A segment is closed once it holds at least this many bytes.
    pub segment_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { segment_bytes: 64 << 20 }
    }
}

/// What one batch came to.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Events stored now (new), in order.
    pub accepted: Vec<Arc<Event>>,
    /// Events dropped as already stored.
    pub duplicates: u64,
    /// Sequence gaps this batch opened (a gap record was stored for each).
    pub gaps: u64,
    /// Events stored late, into an open gap.
    pub filled: u64,
    /// For each (boot) of the batch, the highest seq now stored.
    pub acks: Vec<(String, u64)>,
}

/// The store: the log side ([`LogSide`]) and the index side ([`Indexer`]). Used
/// as one in tests and at open; the collector splits it so that the index is
/// written on its own thread while the next batches are appended.
pub struct Store {
    /// Appends, dedups, rotates, drops segments.
    log: LogSide,
    /// Writes the index.
    index: Indexer,
}

/// The read side: cheap to clone, used by queries and replays while the writer
/// appends.
#[derive(Clone)]
pub struct Reader {
    /// The index.
    db: Arc<Database>,
    /// `<data-dir>/log`.
    log_dir: PathBuf,
    /// Open segment files, by first record (a deleted segment's entry is dropped
    /// at the first miss).
    files: Arc<Mutex<HashMap<u64, Arc<File>>>>,
}

impl Store {
    /// Opens (or creates) the store in `data_dir`: resumes the newest segment,
    /// brings the index up to date with the log, and loads the high-water marks.
    ///
    /// # Errors
    /// When the directory, the newest segment or the index cannot be opened, or the
    /// newest segment's last record is damaged.
    pub fn open(data_dir: &Path, opts: StoreOptions) -> Result<(Store, Reader), StoreError> {
        let log_dir = data_dir.join("log");
        std::fs::create_dir_all(&log_dir)
            .map_err(|source| StoreError::Io { action: "create", path: log_dir.clone(), source })?;
        let index_path = data_dir.join("index.redb");
        let db = ix!(&index_path, Database::create(&index_path))?;

        let mut segs = list_segments(&log_dir)?;
        // A crash right after starting a new segment leaves it empty: continue the
        // one before instead.
        while segs.len() > 1 {
            let (_, path) = &segs[segs.len() - 1];
            let empty = std::fs::metadata(path).map(|m| m.len() == 0).unwrap_or(false);
            if !empty {
                break;
            }
            std::fs::remove_file(path)
                .map_err(|source| StoreError::Io { action: "remove empty segment", path: path.clone(), source })?;
            segs.pop();
        }
        let (active_first, active_path) = match segs.last() {
            Some((first, path)) => (*first, path.clone()),
            None => (1, log_dir.join(segment_name(1))),
        };
        let start = if active_first == 1 {
            Anchor::genesis()
        } else {
            match segs.len().checked_sub(2).map(|i| &segs[i].1) {
                Some(prev) => match last_line(prev)? {
                    Some(l) => Anchor { records: l.n, head: l.hash },
                    None => Anchor { records: active_first - 1, head: String::new() },
                },
                // The oldest retained segment: its own first record says where the
                // chain starts (the file is not empty, so `start` is unused).
                None => Anchor { records: active_first - 1, head: hex::encode([0u8; 32]) },
            }
        };
        // The chain is keyed (a mac per record, see `warrant_audit::log_key`): someone who can
        // write the segments but not read the key cannot re-chain a rewrite.
        let active = AuditLog::open_after(&active_path, &start)?;
        // Records from here on carry a mac; `verify` refuses one that does not, so
        // stripping every mark and re-chaining is caught too.
        let key = LogKey::load_or_create_for(&data_dir.join(KEY_FILE), || active.records() + 1)?;
        let active = active.keyed(key.clone());
        let sync_file = Arc::new(
            active.sync_handle().map_err(|source| StoreError::Io { action: "open", path: active_path.clone(), source })?,
        );
        let db = if indexed_through(&db, &index_path)? > active.records() {
            // The log lost records the index saw: rebuild the index from what the
            // log holds (`verify` names the damage).
            tracing::warn!(index = %index_path.display(), records = active.records(), "the index is ahead of the log; rebuilding it from the log");
            drop(db);
            std::fs::remove_file(&index_path)
                .map_err(|source| StoreError::Io { action: "remove", path: index_path.clone(), source })?;
            ix!(&index_path, Database::create(&index_path))?
        } else {
            db
        };
        if ensure_schema(&db, &index_path)? {
            tracing::info!(index = %index_path.display(), "the index has an older layout; rebuilding it from the log");
        }
        let db = Arc::new(db);
        let mut store = Store {
            log: LogSide {
                log_dir: log_dir.clone(),
                active,
                active_first,
                high_water: HashMap::new(),
                segments: BTreeMap::new(),
                opts,
                gaps: HashMap::new(),
                own: None,
                key,
                sync_file,
            },
            index: Indexer { db: db.clone(), index_path, last_durable: Instant::now() },
        };
        store.catch_up()?;
        store.load()?;
        let reader = Reader { db, log_dir, files: Arc::new(Mutex::new(HashMap::new())) };
        Ok((store, reader))
    }

    /// Re-indexes records the log has and the index does not (after a crash).
    fn catch_up(&mut self) -> Result<(), StoreError> {
        let indexed = indexed_through(&self.index.db, &self.index.index_path)?;
        if indexed >= self.log.active.records() {
            return Ok(());
        }
        let started = Instant::now();
        let segs = list_segments(&self.log.log_dir)?;
        let mut done = 0u64;
        for (i, (first, path)) in segs.iter().enumerate() {
            let next_first = segs.get(i + 1).map_or(u64::MAX, |s| s.0);
            if next_first <= indexed + 1 {
                continue;
            }
            let io = |action| move |source| StoreError::Io { action, path: path.clone(), source };
            let mut r = BufReader::with_capacity(256 * 1024, File::open(path).map_err(io("open"))?);
            let mut offset = 0u64;
            let mut buf = Vec::new();
            let mut work = IndexWork { seg: *first, records: Vec::new(), info: SegmentInfo::default() };
            loop {
                buf.clear();
                let got = r.read_until(b'\n', &mut buf).map_err(io("read"))?;
                if got == 0 || buf.last() != Some(&b'\n') {
                    break;
                }
                let line = parse_line(path, &buf[..buf.len() - 1])?;
                let ev = from_json(&line.event)
                    .map_err(|what| StoreError::BadRecord { path: path.clone(), what: format!("record {}: {what}", line.n) })?;
                offset += got as u64;
                work.info.last_n = line.n;
                work.info.bytes = offset;
                widen(&mut work.info, ev.time_unix_ns);
                if line.n > indexed {
                    work.records.push((line.n, offset - got as u64, u32::try_from(got).unwrap_or(u32::MAX), Arc::new(ev)));
                }
                if work.records.len() >= 4096 {
                    done += work.records.len() as u64;
                    self.index.apply(std::slice::from_ref(&work), false)?;
                    work.records.clear();
                }
            }
            done += work.records.len() as u64;
            self.index.apply(std::slice::from_ref(&work), false)?;
        }
        self.index.commit_durable()?;
        tracing::info!(records = done, elapsed_ms = started.elapsed().as_millis(), "re-indexed log records past the last durable index commit");
        Ok(())
    }

    /// Loads the high-water marks and the segment table.
    fn load(&mut self) -> Result<(), StoreError> {
        let path = self.index.index_path.clone();
        let tx = ix!(&path, self.index.db.begin_read())?;
        if let Ok(t) = tx.open_table(BOOTS) {
            for row in ix!(&path, t.iter())? {
                let (k, v) = ix!(&path, row)?;
                let (agent, boot) = k.value();
                self.log.high_water.insert((agent.to_owned(), boot.to_owned()), v.value());
            }
        }
        if let Ok(t) = tx.open_table(GAPS) {
            for row in ix!(&path, t.iter())? {
                let (k, v) = ix!(&path, row)?;
                let (agent, boot, first) = k.value();
                self.log.gaps.entry((agent.to_owned(), boot.to_owned())).or_default().insert(first, v.value());
            }
        }
        if let Ok(t) = tx.open_table(SEGMENTS) {
            for row in ix!(&path, t.iter())? {
                let (k, v) = ix!(&path, row)?;
                let (last_n, min_time, max_time, bytes) = v.value();
                self.log.segments.insert(k.value(), SegmentInfo { last_n, min_time, max_time, bytes });
            }
        }
        let (first, records, bytes) = (self.log.active_first, self.log.active.records(), self.log.active.len_bytes());
        self.log.segments.entry(first).or_insert(SegmentInfo { last_n: records, bytes, ..SegmentInfo::default() });
        Ok(())
    }

    /// Stores and indexes several batches (see [`LogSide::append_batches`]).
    ///
    /// # Errors
    /// When the log append or the index update fails.
    pub fn append_batches(&mut self, batches: Vec<Vec<Event>>) -> Result<Vec<BatchOutcome>, StoreError> {
        let (outcomes, work) = self.log.append_batches(batches)?;
        self.index.apply(&work, false)?;
        Ok(outcomes)
    }

    /// The highest seq stored for (agent, boot), 0 when none.
    #[must_use]
    pub fn high_water(&self, agent: &str, boot: &str) -> u64 {
        self.log.high_water(agent, boot)
    }

    /// Where the chain ends now.
    #[must_use]
    pub fn anchor(&self) -> Anchor {
        self.log.anchor()
    }

    /// See [`LogSide::retention_plan`].
    ///
    /// # Errors
    /// As there.
    pub fn retention_plan(&self, max_age: Option<Duration>, max_bytes: Option<u64>, now_ns: i64) -> Result<Option<RetentionPlan>, StoreError> {
        self.log.retention_plan(max_age, max_bytes, now_ns)
    }

    /// Deletes the plan's segments and their index rows.
    ///
    /// # Errors
    /// When a file cannot be removed or the index update fails.
    pub fn drop_segments(&mut self, plan: &RetentionPlan) -> Result<(), StoreError> {
        self.log.drop_segments(plan)?;
        self.index.drop_rows(plan)
    }

    /// Stores a command for an agent that is not connected; returns its order key.
    ///
    /// # Errors
    /// When the index update fails.
    pub fn queue_command(&self, agent: &str, cmd: &Command) -> Result<u64, StoreError> {
        queue_command(&self.index.db, &self.index.index_path, agent, cmd)
    }

    /// The two halves, to run on two threads.
    #[must_use]
    pub fn split(self) -> (LogSide, Indexer) {
        (self.log, self.index)
    }
}
