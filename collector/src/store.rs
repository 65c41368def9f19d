//! The collector's durable store: the audit log cut into segments, plus an index.
//!
//! # On disk
//!
//! ```text
//! <data-dir>/log/00000000000000000001.log   segment: records 1 .. (AuditLog format)
//! <data-dir>/log/00000000000001048577.log   the next one, named by its first record
//! <data-dir>/index.redb                     the index (redb), rebuilt from the log
//! ```
//!
//! Segments are one hash chain: the first record of a segment chains to the last
//! record of the one before it, and numbers continue. Only the newest segment is
//! written; it is closed and a new one started when it passes `segment_bytes`.
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
//! rebuilt from it. Tables: record number → (segment, offset, length, time); (time,
//! n); (grant | session | host | subject | agent, n) → time; per (agent, boot) the
//! highest seq stored (the dedup high-water mark); sessions, grant → agents and
//! queued commands. Index commits are cheap (no fsync) except about once a second;
//! after a crash, [`Store::open`] re-indexes the log records past the last durable
//! index commit, so the high-water marks always match what the log holds.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;
use warrant_proto::event::Event as Kind;
use warrant_proto::{Command, Event, RemoteSession, Session};

use crate::decode::from_json;
use crate::hub::Filter;
use crate::log::{Anchor, AuditLog, verify_segment};

/// n → (first record of its segment, byte offset, line length, event time).
const POS: TableDefinition<u64, (u64, u64, u32, i64)> = TableDefinition::new("pos");
/// (value, n) → event time, one table per indexed envelope field.
const BY_GRANT: TableDefinition<(&str, u64), i64> = TableDefinition::new("by_grant");
const BY_SESSION: TableDefinition<(&str, u64), i64> = TableDefinition::new("by_session");
const BY_HOST: TableDefinition<(&str, u64), i64> = TableDefinition::new("by_host");
const BY_SUBJECT: TableDefinition<(&str, u64), i64> = TableDefinition::new("by_subject");
const BY_AGENT: TableDefinition<(&str, u64), i64> = TableDefinition::new("by_agent");
/// The shape of the per-field tables.
type KeyTable = TableDefinition<'static, (&'static str, u64), i64>;
/// (agent, boot) → highest seq stored.
const BOOTS: TableDefinition<(&str, &str), u64> = TableDefinition::new("boots");
/// session id → prost `RemoteSession`.
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// (grant, agent) for every agent that reported the grant.
const GRANT_AGENTS: TableDefinition<(&str, &str), ()> = TableDefinition::new("grant_agents");
/// grant → expiry (ns), from `grant_change` records.
const GRANTS: TableDefinition<&str, i64> = TableDefinition::new("grants");
/// first record of a segment → (last record, oldest and newest event time, bytes).
const SEGMENTS: TableDefinition<u64, (u64, i64, i64, u64)> = TableDefinition::new("segments");
/// (agent, order) → prost `Command` waiting for the agent to reconnect.
const QUEUED: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queued");
/// "indexed": the last record indexed.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// How often an index commit is made durable; records after the last durable one
/// are re-indexed from the log at open.
const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// Entries a query may scan for one page before it returns what it has.
const SCAN_BUDGET: usize = 200_000;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The audit log itself.
    #[error(transparent)]
    Log(#[from] crate::Error),
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
    /// For each (boot) of the batch, the highest seq now stored.
    pub acks: Vec<(String, u64)>,
}

/// One segment: one row of [`SEGMENTS`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SegmentInfo {
    /// Its last record.
    pub last_n: u64,
    /// Oldest event time in it (ns).
    pub min_time: i64,
    /// Newest event time in it (ns).
    pub max_time: i64,
    /// Its size.
    pub bytes: u64,
}

/// Records just appended to one segment, for the index.
#[derive(Debug)]
pub struct IndexWork {
    /// First record of the segment.
    seg: u64,
    /// (n, offset, length, event) per record.
    records: Vec<(u64, u64, u32, Arc<Event>)>,
    /// The segment after the append.
    info: SegmentInfo,
}

impl IndexWork {
    /// The events, in log order.
    pub fn events(&self) -> impl Iterator<Item = &Arc<Event>> {
        self.records.iter().map(|r| &r.3)
    }
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

/// The log side: owns the newest segment (locked while open) and the dedup marks.
pub struct LogSide {
    /// `<data-dir>/log`.
    log_dir: PathBuf,
    /// The segment being written.
    active: AuditLog,
    /// First record number of `active`.
    active_first: u64,
    /// (agent, boot) → highest seq stored: the dedup check, without a lookup.
    high_water: HashMap<(String, String), u64>,
    /// Every segment, by first record.
    segments: BTreeMap<u64, SegmentInfo>,
    /// Tunables.
    opts: StoreOptions,
}

/// The index side: the only writer of `index.redb` (besides queued commands).
pub struct Indexer {
    /// The index, shared with [`Reader`]s.
    db: Arc<Database>,
    /// `<data-dir>/index.redb`, for messages.
    index_path: PathBuf,
    /// When the index was last committed durably.
    last_durable: Instant,
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

/// Where a paged query continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// From the start.
    Start,
    /// Log order, after this record.
    AfterN(u64),
}

impl Cursor {
    /// The page token form ("" for the start).
    #[must_use]
    pub fn token(self) -> String {
        match self {
            Cursor::Start => String::new(),
            Cursor::AfterN(n) => format!("n{n}"),
        }
    }

    /// Parses a page token made by [`token`](Self::token).
    ///
    /// # Errors
    /// A description when the token was not made here.
    pub fn parse(token: &str) -> Result<Cursor, String> {
        let bad = || format!("invalid page token {token:?}: pass back a next_page you were given");
        if token.is_empty() {
            return Ok(Cursor::Start);
        }
        if let Some(n) = token.strip_prefix('n') {
            return n.parse().map(Cursor::AfterN).map_err(|_| bad());
        }
        Err(bad())
    }
}

/// One page of a query.
#[derive(Debug, Default)]
pub struct Page {
    /// Matching events.
    pub events: Vec<Event>,
    /// Where to continue; `None` when there is nothing more.
    pub next: Option<Cursor>,
}

/// What a query asks for.
#[derive(Clone, Debug, Default)]
pub struct QuerySpec {
    /// Envelope and kind filter.
    pub filter: Filter,
    /// Time range (ns, inclusive); 0 means unbounded.
    pub from: i64,
    /// See `from`.
    pub to: i64,
    /// Most events to return.
    pub limit: usize,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

fn index_err(path: &Path) -> impl Fn(redb::Error) -> StoreError + '_ {
    move |e| StoreError::Index { what: e.to_string(), path: path.to_path_buf() }
}

/// Turns any redb error into [`StoreError::Index`].
macro_rules! ix {
    ($path:expr, $e:expr) => {
        $e.map_err(|e| index_err($path)(e.into()))
    };
}

/// The segments in `log_dir`, by first record number.
fn list_segments(log_dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let io = |source| StoreError::Io { action: "list", path: log_dir.to_path_buf(), source };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(log_dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(first) = name.to_str().and_then(|n| n.strip_suffix(".log")).and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((first, entry.path()));
    }
    out.sort_unstable_by_key(|(first, _)| *first);
    Ok(out)
}

/// One parsed line of a segment.
struct Line {
    n: u64,
    prev: String,
    hash: String,
    event: Value,
}

fn parse_line(path: &Path, line: &[u8]) -> Result<Line, StoreError> {
    let bad = |what: String| StoreError::BadRecord { path: path.to_path_buf(), what };
    let mut v: Value = serde_json::from_slice(line).map_err(|e| bad(format!("not JSON: {e}")))?;
    let n = v.get("n").and_then(Value::as_u64).ok_or_else(|| bad("no record number".into()))?;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned).unwrap_or_default();
    let (prev, hash) = (s(&v, "prev"), s(&v, "hash"));
    let event = v.get_mut("event").map(Value::take).ok_or_else(|| bad(format!("record {n} has no event")))?;
    Ok(Line { n, prev, hash, event })
}

/// The first complete line of a segment, if any.
fn first_line(path: &Path) -> Result<Option<Line>, StoreError> {
    let file = File::open(path).map_err(|source| StoreError::Io { action: "open", path: path.to_path_buf(), source })?;
    let mut r = BufReader::new(file);
    let mut buf = Vec::new();
    r.read_until(b'\n', &mut buf)
        .map_err(|source| StoreError::Io { action: "read", path: path.to_path_buf(), source })?;
    if buf.pop() != Some(b'\n') {
        return Ok(None);
    }
    parse_line(path, &buf).map(Some)
}

/// The last complete line of a segment, if any.
fn last_line(path: &Path) -> Result<Option<Line>, StoreError> {
    let io = |action| move |source| StoreError::Io { action, path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io("open"))?;
    let len = file.metadata().map_err(io("read"))?.len();
    // Find the last "\n" and the one before it, reading backwards.
    let mut end = len;
    let mut tail: Vec<u8> = Vec::new();
    let mut newlines = Vec::new();
    while end > 0 && newlines.len() < 2 {
        let n = end.min(64 * 1024);
        let start = end - n;
        let mut chunk = vec![0; usize::try_from(n).unwrap_or(0)];
        file.read_exact_at(&mut chunk, start).map_err(io("read"))?;
        for (i, b) in chunk.iter().enumerate().rev() {
            if *b == b'\n' {
                newlines.push(start + i as u64);
                if newlines.len() == 2 {
                    break;
                }
            }
        }
        chunk.extend_from_slice(&tail);
        tail = chunk;
        end = start;
    }
    let Some(&last_nl) = newlines.first() else { return Ok(None) };
    let line_start = newlines.get(1).map_or(0, |p| p + 1);
    let from = usize::try_from(line_start - end).unwrap_or(0);
    let to = usize::try_from(last_nl - end).unwrap_or(0);
    parse_line(path, &tail[from..to]).map(Some)
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
        let active = AuditLog::open_after(&active_path, &start)?;
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
        let db = Arc::new(db);
        let mut store = Store {
            log: LogSide {
                log_dir: log_dir.clone(),
                active,
                active_first,
                high_water: HashMap::new(),
                segments: BTreeMap::new(),
                opts,
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

/// Widens a segment's time range to include `t`.
fn widen(info: &mut SegmentInfo, t: i64) {
    if info.min_time == 0 || t < info.min_time {
        info.min_time = t;
    }
    info.max_time = info.max_time.max(t);
}

impl LogSide {
    /// The highest seq stored for (agent, boot), 0 when none.
    #[must_use]
    pub fn high_water(&self, agent: &str, boot: &str) -> u64 {
        self.high_water.get(&(agent.to_owned(), boot.to_owned())).copied().unwrap_or(0)
    }

    /// Records in the log (the number of the last one).
    #[must_use]
    pub fn records(&self) -> u64 {
        self.active.records()
    }

    /// Where the chain ends now.
    #[must_use]
    pub fn anchor(&self) -> Anchor {
        self.active.anchor()
    }

    /// Bytes in all segments.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }

    /// Stores several batches with one write and one fsync (group commit; two when
    /// a segment fills up), dropping every event whose (agent, boot, seq) is
    /// already stored. When this returns, every accepted event is durable; the
    /// returned work is what the index still has to record.
    ///
    /// # Errors
    /// When the log append fails; nothing may be acknowledged then.
    pub fn append_batches(&mut self, batches: Vec<Vec<Event>>) -> Result<(Vec<BatchOutcome>, Vec<IndexWork>), StoreError> {
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut all: Vec<Event> = Vec::new();
        let mut hw = self.high_water.clone();
        for batch in batches {
            let mut out = BatchOutcome::default();
            let mut boots: Vec<(String, String)> = Vec::new();
            let start = all.len();
            for ev in batch {
                let key = (ev.agent_id.clone(), ev.boot_id.clone());
                let mark = hw.entry(key.clone()).or_insert(0);
                if ev.seq <= *mark && ev.seq != 0 {
                    out.duplicates += 1;
                } else {
                    *mark = (*mark).max(ev.seq);
                    all.push(ev);
                }
                if !boots.contains(&key) {
                    boots.push(key);
                }
            }
            out.acks = boots.iter().map(|k| (k.1.clone(), hw.get(k).copied().unwrap_or(0))).collect();
            outcomes.push((out, start..all.len()));
        }
        let mut events: Vec<Arc<Event>> = Vec::with_capacity(all.len());
        let mut works = Vec::new();
        let mut rest = all;
        // Usually one write; split where the segment fills up, so segments stay
        // near `segment_bytes` and retention can drop them at that granularity.
        while !rest.is_empty() {
            if self.active.len_bytes() >= self.opts.segment_bytes {
                self.rotate()?;
            }
            let in_segment = self.active.records() + 1 - self.active_first;
            let avg = self.active.len_bytes().checked_div(in_segment).map_or(600, |a| a.max(64));
            let room = self.opts.segment_bytes.saturating_sub(self.active.len_bytes());
            let fit = usize::try_from(room.div_ceil(avg)).unwrap_or(usize::MAX).max(1);
            let tail = if rest.len() > fit { rest.split_off(fit) } else { Vec::new() };
            let positions = self.active.append_positions(&rest)?;
            let info = self.segments.entry(self.active_first).or_default();
            let mut records = Vec::with_capacity(rest.len());
            for (p, ev) in positions.iter().zip(rest) {
                widen(info, ev.time_unix_ns);
                let ev = Arc::new(ev);
                events.push(ev.clone());
                records.push((p.n, p.offset, p.len, ev));
            }
            info.last_n = self.active.records();
            info.bytes = self.active.len_bytes();
            works.push(IndexWork { seg: self.active_first, records, info: *info });
            rest = tail;
        }
        self.high_water = hw;
        let outcomes = outcomes
            .into_iter()
            .map(|(mut out, range)| {
                out.accepted = events[range].to_vec();
                out
            })
            .collect();
        Ok((outcomes, works))
    }

    /// Closes the active segment and starts the next one.
    fn rotate(&mut self) -> Result<(), StoreError> {
        let anchor = self.active.anchor();
        let first = anchor.records + 1;
        let path = self.log_dir.join(segment_name(first));
        self.active = AuditLog::open_after(&path, &anchor)?;
        self.active_first = first;
        self.segments.insert(first, SegmentInfo { last_n: anchor.records, ..SegmentInfo::default() });
        tracing::info!(segment = %path.display(), "started a new log segment");
        Ok(())
    }

    /// Which old segments retention would drop now: the oldest ones, never the
    /// active one, while the oldest is older than `max_age` or the total is above
    /// `max_bytes`. Returns the last record it would drop and that record's hash.
    ///
    /// # Errors
    /// When the last segment to drop cannot be read.
    pub fn retention_plan(&self, max_age: Option<Duration>, max_bytes: Option<u64>, now_ns: i64) -> Result<Option<RetentionPlan>, StoreError> {
        let mut total = self.bytes();
        let mut drop: Vec<u64> = Vec::new();
        let cutoff = max_age.map(|a| now_ns.saturating_sub(i64::try_from(a.as_nanos()).unwrap_or(i64::MAX)));
        for (first, info) in &self.segments {
            if *first == self.active_first {
                break;
            }
            let too_old = cutoff.is_some_and(|c| info.max_time < c);
            let too_big = max_bytes.is_some_and(|m| total > m);
            if !(too_old || too_big) {
                break;
            }
            drop.push(*first);
            total = total.saturating_sub(info.bytes);
        }
        let Some(&last_first) = drop.last() else { return Ok(None) };
        let path = self.log_dir.join(segment_name(last_first));
        let Some(line) = last_line(&path)? else { return Ok(None) };
        let bytes = drop.iter().filter_map(|f| self.segments.get(f)).map(|s| s.bytes).sum();
        Ok(Some(RetentionPlan { segments: drop, last_n: line.n, last_hash: line.hash, bytes }))
    }

    /// Deletes the segment files of `plan` (after the caller appended its
    /// retention record). The index rows are the [`Indexer`]'s job.
    ///
    /// # Errors
    /// When a file cannot be removed.
    pub fn drop_segments(&mut self, plan: &RetentionPlan) -> Result<(), StoreError> {
        for first in &plan.segments {
            let path = self.log_dir.join(segment_name(*first));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Io { action: "remove", path, source }),
            }
            self.segments.remove(first);
        }
        if let Ok(d) = File::open(&self.log_dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
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
            let mut by_grant = ix!(p, tx.open_table(BY_GRANT))?;
            let mut by_session = ix!(p, tx.open_table(BY_SESSION))?;
            let mut by_host = ix!(p, tx.open_table(BY_HOST))?;
            let mut by_subject = ix!(p, tx.open_table(BY_SUBJECT))?;
            let mut by_agent = ix!(p, tx.open_table(BY_AGENT))?;
            let mut boots = ix!(p, tx.open_table(BOOTS))?;
            let mut sessions = ix!(p, tx.open_table(SESSIONS))?;
            let mut grant_agents = ix!(p, tx.open_table(GRANT_AGENTS))?;
            let mut grants = ix!(p, tx.open_table(GRANTS))?;
            let mut segments = ix!(p, tx.open_table(SEGMENTS))?;
            let mut last_boot: Option<(&str, &str, u64)> = None;
            let mut last_n = 0;
            for w in work {
                for (n, offset, len, ev) in &w.records {
                    let (n, t) = (*n, ev.time_unix_ns);
                    last_n = n;
                    ix!(p, pos.insert(n, (w.seg, *offset, *len, t)))?;
                    for (table, value) in [
                        (&mut by_grant, &ev.grant),
                        (&mut by_session, &ev.session),
                        (&mut by_host, &ev.host),
                        (&mut by_subject, &ev.subject),
                        (&mut by_agent, &ev.agent_id),
                    ] {
                        if !value.is_empty() {
                            ix!(p, table.insert((value.as_str(), n), t))?;
                        }
                    }
                    // One high-water write per run of events from the same boot.
                    match last_boot {
                        Some((a, b, _)) if a == ev.agent_id && b == ev.boot_id => last_boot = Some((a, b, ev.seq)),
                        _ => {
                            if let Some((a, b, s)) = last_boot {
                                ix!(p, boots.insert((a, b), s))?;
                            }
                            last_boot = Some((&ev.agent_id, &ev.boot_id, ev.seq));
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
                        Some(Kind::GrantChange(g)) if !ev.grant.is_empty() => {
                            ix!(p, grant_agents.insert((ev.grant.as_str(), ev.agent_id.as_str()), ()))?;
                            if g.expires_at_unix_ns != 0 {
                                ix!(p, grants.insert(ev.grant.as_str(), g.expires_at_unix_ns))?;
                            }
                        }
                        _ => {}
                    }
                }
                let i = w.info;
                ix!(p, segments.insert(w.seg, (i.last_n, i.min_time, i.max_time, i.bytes)))?;
            }
            if let Some((a, b, s)) = last_boot {
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

/// See [`Store::retention_plan`].
#[derive(Clone, Debug)]
pub struct RetentionPlan {
    /// First record numbers of the segments to drop, oldest first.
    pub segments: Vec<u64>,
    /// The last record dropped.
    pub last_n: u64,
    /// Its hash.
    pub last_hash: String,
    /// Bytes dropped.
    pub bytes: u64,
}

/// The last record the index holds (0 when none).
fn indexed_through(db: &Database, p: &Path) -> Result<u64, StoreError> {
    let tx = ix!(p, db.begin_read())?;
    match tx.open_table(META) {
        Ok(t) => Ok(ix!(p, t.get("indexed"))?.map_or(0, |v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(index_err(p)(e.into())),
    }
}

fn queue_command(db: &Database, p: &Path, agent: &str, cmd: &Command) -> Result<u64, StoreError> {
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
    fn path(&self) -> PathBuf {
        self.log_dir.with_file_name("index.redb")
    }

    /// Reads one record by its position; `None` when its segment is gone.
    fn read_at(&self, seg: u64, offset: u64, len: u32) -> Result<Option<Event>, StoreError> {
        let file = {
            let mut files = self.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(f) = files.get(&seg) {
                f.clone()
            } else {
                let path = self.log_dir.join(segment_name(seg));
                match File::open(&path) {
                    Ok(f) => {
                        let f = Arc::new(f);
                        files.insert(seg, f.clone());
                        f
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(source) => return Err(StoreError::Io { action: "open", path, source }),
                }
            }
        };
        let mut buf = vec![0; len as usize];
        let path = || self.log_dir.join(segment_name(seg));
        if let Err(source) = file.read_exact_at(&mut buf, offset) {
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                // Retention removed it meanwhile.
                self.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&seg);
                return Ok(None);
            }
            return Err(StoreError::Io { action: "read", path: path(), source });
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        let line = parse_line(&path(), &buf)?;
        from_json(&line.event)
            .map(Some)
            .map_err(|what| StoreError::BadRecord { path: path(), what: format!("record {}: {what}", line.n) })
    }

    /// One page of events matching `spec`, continuing at `cursor`.
    ///
    /// Results are in log order. Keyed queries (session, grant, agent, subject or
    /// host set) walk that key's index, filtering on the time kept with each
    /// entry; unkeyed ones walk the log, skipping segments outside the time range.
    ///
    /// # Errors
    /// When the index or a segment cannot be read.
    pub fn query(&self, spec: &QuerySpec, cursor: Cursor) -> Result<Page, StoreError> {
        let p = &self.path();
        let tx = ix!(p, self.db.begin_read())?;
        let limit = spec.limit.max(1);
        let f = &spec.filter;
        let in_time = |t: i64| (spec.from == 0 || t >= spec.from) && (spec.to == 0 || t <= spec.to);
        let pos = match tx.open_table(POS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Page::default()),
            Err(e) => return Err(index_err(p)(e.into())),
        };
        let mut page = Page::default();
        let mut scanned = 0usize;
        let take = |n: u64, page: &mut Page| -> Result<bool, StoreError> {
            if let Some(row) = ix!(p, pos.get(n))? {
                let (seg, off, len, _) = row.value();
                if let Some(ev) = self.read_at(seg, off, len)?
                    && f.matches(&ev)
                    && in_time(ev.time_unix_ns)
                {
                    page.events.push(ev);
                }
            }
            Ok(page.events.len() >= limit)
        };
        let key: Option<(KeyTable, &String)> = [
            (BY_SESSION, &f.session),
            (BY_GRANT, &f.grant),
            (BY_AGENT, &f.agent_id),
            (BY_SUBJECT, &f.subject),
            (BY_HOST, &f.host),
        ]
        .into_iter()
        .find_map(|(t, v)| v.as_ref().map(|v| (t, v)));

        if let Some((table, value)) = key {
            let after = match cursor {
                Cursor::AfterN(n) => n + 1,
                _ => 0,
            };
            let t = match tx.open_table(table) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(page),
                Err(e) => return Err(index_err(p)(e.into())),
            };
            for row in ix!(p, t.range((value.as_str(), after)..=(value.as_str(), u64::MAX)))? {
                let (k, time) = ix!(p, row)?;
                let n = k.value().1;
                scanned += 1;
                if in_time(time.value()) && take(n, &mut page)? || scanned >= SCAN_BUDGET {
                    page.next = Some(Cursor::AfterN(n));
                    break;
                }
            }
        } else {
            // Unkeyed: walk the log in order, skipping whole segments whose time
            // range misses [from, to] (agents' clocks make times only roughly
            // ordered, so a segment's own range is what is safe to skip on).
            let after = match cursor {
                Cursor::AfterN(n) => n + 1,
                Cursor::Start => 0,
            };
            let segs = match tx.open_table(SEGMENTS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(page),
                Err(e) => return Err(index_err(p)(e.into())),
            };
            let mut next = None;
            'segments: for row in ix!(p, segs.iter())? {
                let (k, v) = ix!(p, row)?;
                let first = k.value();
                let (last_n, min_time, max_time, _) = v.value();
                let overlaps = (spec.from == 0 || max_time >= spec.from) && (spec.to == 0 || min_time == 0 || min_time <= spec.to);
                if last_n < after || !overlaps {
                    continue;
                }
                for row in ix!(p, pos.range(first.max(after)..=last_n))? {
                    let (k, v) = ix!(p, row)?;
                    let n = k.value();
                    let (seg, off, len, time) = v.value();
                    scanned += 1;
                    if in_time(time)
                        && let Some(ev) = self.read_at(seg, off, len)?
                        && f.matches(&ev)
                    {
                        page.events.push(ev);
                    }
                    if page.events.len() >= limit || scanned >= SCAN_BUDGET {
                        next = Some(Cursor::AfterN(n));
                        break 'segments;
                    }
                }
            }
            page.next = next;
        }
        Ok(page)
    }

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
                out.push(rs);
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
        Ok(ix!(p, t.get(session))?.and_then(|v| RemoteSession::decode(v.value()).ok()))
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

/// What [`verify_dir`] found.
#[derive(Clone, Debug, Default)]
pub struct DirReport {
    /// Segments checked.
    pub segments: usize,
    /// Records checked.
    pub records: u64,
    /// First record present (after retention), 0 when empty.
    pub first: u64,
    /// Hash of the last record.
    pub head: String,
    /// Every problem, in log order ("segment 000…1.log line 3 (record 3): …").
    pub problems: Vec<String>,
}

/// Walks every segment of `data_dir`'s log as one chain: each record's hash, each
/// link, segment names against their first record, and the oldest retained record
/// against the newest retention record. `stop_after` limits the walk to what was
/// durable when it began (the log may be growing); `end` is the anchor the caller
/// knows the log reached, to catch records removed from the end.
///
/// # Errors
/// When the log directory or a segment cannot be read; damage goes in the report.
pub fn verify_dir(data_dir: &Path, stop_after: Option<u64>, end: Option<&Anchor>) -> Result<DirReport, StoreError> {
    let log_dir = data_dir.join("log");
    let segs = list_segments(&log_dir)?;
    let mut report = DirReport::default();
    let mut start: Option<Anchor> = None;
    // The newest retention record: (last dropped record, its hash).
    let mut retention: Option<(u64, String)> = None;
    for (first, path) in &segs {
        let name = segment_name(*first);
        report.segments += 1;
        let seg_start = match &start {
            Some(a) => a.clone(),
            None => match first_line(path) {
                Ok(Some(l)) => {
                    report.first = l.n;
                    if l.n == 1 { Anchor::genesis() } else { Anchor { records: l.n - 1, head: l.prev } }
                }
                Ok(None) => Anchor { records: first - 1, head: hex::encode([0u8; 32]) },
                Err(e) => {
                    report.problems.push(format!("segment {name} line 1: {e}"));
                    Anchor { records: first - 1, head: hex::encode([0u8; 32]) }
                }
            },
        };
        if seg_start.records + 1 != *first {
            report.problems.push(format!(
                "segment {name}: named for record {first} but its chain continues after record {}: segments were renamed or records removed",
                seg_start.records
            ));
        }
        let r = verify_segment(path, &seg_start, stop_after, &mut |_, _, ev| {
            if ev.get("kind").and_then(Value::as_str) == Some("control_action")
                && ev.get("action").and_then(Value::as_str) == Some("retention")
                && let Some(n) = ev
                    .get("target")
                    .and_then(Value::as_str)
                    .and_then(|t| t.strip_prefix("log up to record "))
                    .and_then(|n| n.parse::<u64>().ok())
                && let Some(h) = ev
                    .get("detail")
                    .and_then(Value::as_str)
                    .and_then(|d| d.strip_prefix("hash "))
                    .map(|d| d.chars().take(64).collect::<String>())
            {
                retention = Some((n, h));
            }
        })?;
        for p in &r.problems {
            report.problems.push(format!("segment {name} line {}: {}", p.line, p.what));
        }
        report.records = r.records;
        report.head.clone_from(&r.head);
        start = Some(Anchor { records: r.records, head: r.head });
        if stop_after.is_some_and(|s| r.records >= s) {
            break;
        }
    }
    if report.first > 1 {
        let gap_before = report.first - 1;
        let first_name = segs.first().map(|s| segment_name(s.0)).unwrap_or_default();
        match &retention {
            None => report.problems.insert(0, format!(
                "segment {first_name} line 1: the log starts at record {} and no retention record accounts for records 1..={gap_before}: they were removed",
                report.first
            )),
            Some((n, _)) if *n < gap_before => report.problems.insert(0, format!(
                "segment {first_name} line 1: the log starts at record {} but retention only dropped records up to {n}: records {}..={gap_before} were removed",
                report.first,
                n + 1
            )),
            Some((n, h)) if *n == gap_before => {
                if let Some(Ok(Some(l))) = segs.first().map(|s| first_line(&s.1))
                    && l.prev != *h
                {
                    report.problems.insert(0, format!(
                        "segment {first_name} line 1: record {} chains to {} but retention recorded record {n} with hash {h}",
                        l.n, l.prev
                    ));
                }
            }
            Some(_) => {}
        }
    }
    if let Some(a) = end
        && a.records > report.records
    {
        report.problems.push(format!(
            "the log ends at record {}, but record {} was written: records were removed from the end",
            report.records, a.records
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warrant_proto::{Exec, SessionEnd, SessionStart};

    fn ev(agent: &str, boot: &str, seq: u64, session: &str, t: i64) -> Event {
        Event {
            seq,
            agent_id: agent.into(),
            boot_id: boot.into(),
            host: format!("host-{agent}"),
            time_unix_ns: t,
            grant: format!("g-{session}"),
            session: session.into(),
            subject: "alice".into(),
            event: Some(Kind::Exec(Exec { path: "/bin/id".into(), argv: vec!["id".into(), seq.to_string()], cwd: "/".into(), truncated: false })),
            ..Event::default()
        }
    }

    fn batch(agent: &str, boot: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<Event> {
        seqs.map(|s| ev(agent, boot, s, if s % 2 == 0 { "s-even" } else { "s-odd" }, i64::try_from(s).unwrap() * 1000)).collect()
    }

    fn seqs(events: &[Event]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn dedup_survives_reopen_and_a_lost_index() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
            let out = s.append_batches(vec![batch("a", "b", 1..=10), batch("a", "b", 5..=12)]).unwrap();
            assert_eq!((out[0].accepted.len(), out[0].duplicates), (10, 0));
            assert_eq!((out[1].accepted.len(), out[1].duplicates), (2, 6));
            assert_eq!(out[1].acks, vec![("b".to_owned(), 12)]);
            // No durable index commit: the reopen re-indexes from the log.
        }
        let (mut s, r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(s.high_water("a", "b"), 12);
        assert_eq!(s.append_batches(vec![batch("a", "b", 1..=13)]).unwrap()[0].accepted.len(), 1);
        drop((s, r));
        std::fs::remove_file(dir.path().join("index.redb")).unwrap();
        let (s, r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(s.high_water("a", "b"), 13, "rebuilt from the log");
        let page = r.query(&QuerySpec { limit: 100, ..QuerySpec::default() }, Cursor::Start).unwrap();
        assert_eq!(seqs(&page.events), (1..=13).collect::<Vec<_>>());
    }

    #[test]
    fn queries_by_key_and_time_page_through() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, r) = Store::open(dir.path(), StoreOptions { segment_bytes: 4096 }).unwrap();
        for i in 0..10 {
            s.append_batches(vec![batch("a", "b", (i * 100 + 1)..=(i * 100 + 100))]).unwrap();
        }
        s.append_batches(vec![batch("z", "y", 1..=50)]).unwrap();
        assert!(list_segments(&dir.path().join("log")).unwrap().len() > 10, "rotated");
        let mut spec = QuerySpec { filter: Filter { session: Some("s-odd".into()), agent_id: Some("a".into()), ..Filter::default() }, limit: 37, ..QuerySpec::default() };
        let mut all = Vec::new();
        let mut cursor = Cursor::Start;
        loop {
            let p = r.query(&spec, cursor).unwrap();
            all.extend(seqs(&p.events));
            match p.next {
                Some(c) => cursor = Cursor::parse(&c.token()).unwrap(),
                None => break,
            }
        }
        assert_eq!(all, (1..=1000).filter(|s| s % 2 == 1).collect::<Vec<_>>());
        spec.filter = Filter::default();
        spec.from = 950 * 1000;
        spec.to = 1000 * 1000;
        spec.limit = 1000;
        let p = r.query(&spec, Cursor::Start).unwrap();
        // a's 950..=1000, none of z's (times 1000..=50000 are below `from`)
        assert_eq!(seqs(&p.events), (950..=1000).collect::<Vec<_>>());
        spec.filter.host = Some("host-z".into());
        spec.from = 0;
        spec.to = 0;
        assert_eq!(r.query(&spec, Cursor::Start).unwrap().events.len(), 50);
    }

    #[test]
    fn sessions_and_grants_map_to_their_agent() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let start = Event {
            event: Some(Kind::SessionStart(SessionStart { command: vec!["bash".into()], root_pid: 7, ..SessionStart::default() })),
            ..ev("a2", "b", 1, "s-9", 5)
        };
        let end = Event { event: Some(Kind::SessionEnd(SessionEnd { reason: "exited".into() })), ..ev("a2", "b", 2, "s-9", 6) };
        s.append_batches(vec![vec![start]]).unwrap();
        let rs = r.session_agent("s-9").unwrap().unwrap();
        assert_eq!((rs.agent_id.as_str(), rs.session.as_ref().unwrap().root_pid), ("a2", 7));
        assert_eq!(r.grant_agents("g-s-9").unwrap(), vec!["a2".to_owned()]);
        s.append_batches(vec![vec![end]]).unwrap();
        assert_eq!(r.sessions().unwrap()[0].session.as_ref().unwrap().end_reason, "exited");
    }

    #[test]
    fn queued_commands_survive_and_unqueue() {
        let dir = tempfile::tempdir().unwrap();
        let (s, r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let c1 = Command { id: "c-1".into(), ..Command::default() };
        let c2 = Command { id: "c-2".into(), ..Command::default() };
        s.queue_command("a", &c1).unwrap();
        r.queue_command("a", &c2).unwrap();
        r.queue_command("b", &c1).unwrap();
        drop((s, r));
        let (_s, r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(r.queued_commands("a").unwrap().iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["c-1", "c-2"]);
        assert!(r.unqueue_command("a", "c-1").unwrap());
        assert!(!r.unqueue_command("a", "c-1").unwrap());
        assert_eq!(r.queued_commands("a").unwrap().len(), 1);
        assert_eq!(r.queued_commands("b").unwrap().len(), 1);
    }

    /// Retention drops a prefix of whole segments, and verify_dir accepts the
    /// result only with the retention record that accounts for it.
    #[test]
    fn retention_keeps_the_chain_verifiable() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, r) = Store::open(dir.path(), StoreOptions { segment_bytes: 4096 }).unwrap();
        for i in 0..20 {
            s.append_batches(vec![batch("a", "b", (i * 20 + 1)..=(i * 20 + 20))]).unwrap();
        }
        assert!(verify_dir(dir.path(), None, Some(&s.anchor())).unwrap().problems.is_empty());
        let plan = s.retention_plan(None, Some(20_000), 0).unwrap().unwrap();
        assert!(plan.segments.len() > 3);
        // Drop without the record: verify names the gap.
        let mut bare = s.retention_plan(None, Some(20_000), 0).unwrap().unwrap();
        bare.segments.truncate(1);
        let copy = tempfile::tempdir().unwrap();
        std::fs::create_dir(copy.path().join("log")).unwrap();
        for (first, path) in list_segments(&dir.path().join("log")).unwrap().iter().skip(1) {
            std::fs::copy(path, copy.path().join("log").join(segment_name(*first))).unwrap();
        }
        let report = verify_dir(copy.path(), None, None).unwrap();
        assert!(report.problems[0].contains("no retention record accounts"), "{:?}", report.problems);

        let record = Event {
            seq: 1,
            agent_id: "collector".into(),
            boot_id: "x".into(),
            event: Some(Kind::ControlAction(warrant_proto::ControlAction {
                action: "retention".into(),
                target: format!("log up to record {}", plan.last_n),
                detail: format!("hash {}; test", plan.last_hash),
                ..warrant_proto::ControlAction::default()
            })),
            ..Event::default()
        };
        s.append_batches(vec![vec![record]]).unwrap();
        s.drop_segments(&plan).unwrap();
        let report = verify_dir(dir.path(), None, Some(&s.anchor())).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.first, plan.last_n + 1);
        let page = r.query(&QuerySpec { limit: 1000, ..QuerySpec::default() }, Cursor::Start).unwrap();
        assert_eq!(page.events.first().unwrap().seq, plan.last_n + 1);
    }

    /// The store's own ingest rate (no network): `cargo test --release -p
    /// warrant-collector store_rate -- --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark"]
    fn store_rate() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let batches: Vec<Vec<Event>> = (0..200u64).map(|i| batch("a", "b", (i * 512 + 1)..=(i * 512 + 512))).collect();
        let t = Instant::now();
        for b in batches {
            s.append_batches(vec![b]).unwrap();
        }
        let e = t.elapsed();
        println!("store: {} events in {e:?} = {:.0}/s", 200 * 512, (200.0 * 512.0) / e.as_secs_f64());
        let mut log = AuditLog::open(&dir.path().join("plain.log")).unwrap();
        let batches: Vec<Vec<Event>> = (0..200u64).map(|i| batch("a", "b", (i * 512 + 1)..=(i * 512 + 512))).collect();
        let t = Instant::now();
        for b in batches {
            log.append(&b).unwrap();
        }
        let e = t.elapsed();
        println!("log alone: {} events in {e:?} = {:.0}/s", 200 * 512, (200.0 * 512.0) / e.as_secs_f64());
    }
}
