//! The log side: segments of one hash chain, appends with dedup, rotation and
//! retention; and reading a segment's first and last lines.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use warrant_audit::log::{Anchor, AuditLog};
use warrant_audit::log_key::LogKey;
use warrant_proto::event::Event as Kind;
use warrant_proto::{ControlAction, Event};

use super::{BatchOutcome, StoreError, StoreOptions};

/// One segment: one row of the index's `SEGMENTS` table.
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
    pub(super) seg: u64,
    /// (n, offset, length, event) per record.
    pub(super) records: Vec<(u64, u64, u32, Arc<Event>)>,
    /// The segment after the append.
    pub(super) info: SegmentInfo,
}

impl IndexWork {
    /// The events, in log order.
    pub fn events(&self) -> impl Iterator<Item = &Arc<Event>> {
        self.records.iter().map(|r| &r.3)
    }
}

/// The log side: owns the newest segment (locked while open) and the dedup marks.
pub struct LogSide {
    /// `<data-dir>/log`.
    pub(super) log_dir: PathBuf,
    /// The segment being written.
    pub(super) active: AuditLog,
    /// First record number of `active`.
    pub(super) active_first: u64,
    /// (agent, boot) → highest seq stored: the dedup check, without a lookup.
    pub(super) high_water: HashMap<(String, String), u64>,
    /// Every segment, by first record.
    pub(super) segments: BTreeMap<u64, SegmentInfo>,
    /// Tunables.
    pub(super) opts: StoreOptions,
    /// (agent, boot) → seq ranges (first → last) never received below its
    /// high-water mark: a later event in one is stored (it fills the gap), any
    /// other event at or below the mark is a duplicate.
    pub(super) gaps: Gaps,
    /// The collector's own envelope and its last seq: own records arrive with seq
    /// 0 and are numbered here, in log order; gap records are made from it.
    pub(super) own: Option<(Event, u64)>,
    /// The chain's key, for every segment this side starts.
    pub(super) key: LogKey,
    /// A handle on the active segment for [`LogSide::sync_file`].
    pub(super) sync_file: Arc<File>,
}

/// Open sequence gaps per (agent, boot): first seq → last seq, inclusive.
pub type Gaps = HashMap<(String, String), BTreeMap<u64, u64>>;

/// Removes `seq` from the gaps of `key`; true when it was in one.
fn fill(gaps: &mut Gaps, key: &(String, String), seq: u64) -> bool {
    let Some(g) = gaps.get_mut(key) else { return false };
    let Some((&first, &last)) = g.range(..=seq).next_back() else { return false };
    if last < seq {
        return false;
    }
    g.remove(&first);
    if first < seq {
        g.insert(first, seq - 1);
    }
    if seq < last {
        g.insert(seq + 1, last);
    }
    if g.is_empty() {
        gaps.remove(key);
    }
    true
}

/// The explicit record of a gap: `agent`'s `boot` jumped from `first - 1` to
/// `last + 1`.
fn gap_record(envelope: &Event, seq: u64, key: &(String, String), first: u64, last: u64) -> Event {
    Event {
        seq,
        time_unix_ns: crate::writer::now_ns(),
        event: Some(Kind::ControlAction(ControlAction {
            action: "gap".into(),
            by: crate::writer::COLLECTOR_AGENT_ID.into(),
            target: format!("agent {} boot {} seqs {first}..={last}", key.0, key.1),
            outcome: "gap".into(),
            detail: format!(
                "{} event(s) never received: the agent sent seq {} next{}; if they arrive later they are stored, anything else at or below the high-water mark is a duplicate",
                last - first + 1,
                last + 1,
                if first == 1 { " as its first".to_owned() } else { format!(" after seq {}", first - 1) }
            ),
        })),
        ..envelope.clone()
    }
}

/// See [`super::Store::retention_plan`].
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

pub(super) fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// The segments in `log_dir`, by first record number.
pub(super) fn list_segments(log_dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
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
pub(super) struct Line {
    pub(super) n: u64,
    pub(super) prev: String,
    pub(super) hash: String,
    pub(super) event: Value,
}

pub(super) fn parse_line(path: &Path, line: &[u8]) -> Result<Line, StoreError> {
    let bad = |what: String| StoreError::BadRecord { path: path.to_path_buf(), what };
    let mut v: Value = serde_json::from_slice(line).map_err(|e| bad(format!("not JSON: {e}")))?;
    let n = v.get("n").and_then(Value::as_u64).ok_or_else(|| bad("no record number".into()))?;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned).unwrap_or_default();
    let (prev, hash) = (s(&v, "prev"), s(&v, "hash"));
    let event = v.get_mut("event").map(Value::take).ok_or_else(|| bad(format!("record {n} has no event")))?;
    Ok(Line { n, prev, hash, event })
}

/// The first complete line of a segment, if any.
pub(super) fn first_line(path: &Path) -> Result<Option<Line>, StoreError> {
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
pub(super) fn last_line(path: &Path) -> Result<Option<Line>, StoreError> {
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

impl LogSide {
    /// Makes the collector's own records (agent id and boot id of `envelope`, sent
    /// with seq 0) numbered here in log order, and gap records possible.
    pub fn set_own(&mut self, envelope: Event) {
        let seq = self.high_water(&envelope.agent_id, &envelope.boot_id);
        self.own = Some((envelope, seq));
    }

    /// The open gaps of (agent, boot), as (first, last) seq ranges.
    #[must_use]
    pub fn gaps(&self, agent: &str, boot: &str) -> Vec<(u64, u64)> {
        self.gaps.get(&(agent.to_owned(), boot.to_owned())).map(|g| g.iter().map(|(a, b)| (*a, *b)).collect()).unwrap_or_default()
    }

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
        let done = self.write_batches(batches)?;
        self.sync()?;
        Ok(done)
    }

    /// Makes everything written so far durable.
    ///
    /// # Errors
    /// When the fsync fails (the log refuses appends from then on).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        Ok(self.active.sync()?)
    }

    /// The active segment's file, for a thread that fsyncs what
    /// [`write_batches`](Self::write_batches) wrote (an older segment was made
    /// durable when the next one was started).
    #[must_use]
    pub fn sync_file(&self) -> Arc<File> {
        self.sync_file.clone()
    }

    /// After an fsync of [`sync_file`](Self::sync_file) failed: refuse appends.
    pub fn poison(&mut self) {
        self.active.poison();
    }

    /// [`append_batches`](Self::append_batches) without the final fsync: written,
    /// deduplicated and chained, durable only once [`sync`](Self::sync) or an
    /// fdatasync of [`sync_file`](Self::sync_file) succeeds. Nothing of it may be
    /// acknowledged (nor its high-water marks told) before then.
    ///
    /// # Errors
    /// When the log write fails; nothing may be acknowledged then.
    pub fn write_batches(&mut self, batches: Vec<Vec<Event>>) -> Result<(Vec<BatchOutcome>, Vec<IndexWork>), StoreError> {
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut all: Vec<Event> = Vec::new();
        // Worked on copies, kept only once the append is durable.
        let mut hw = self.high_water.clone();
        let mut gaps = self.gaps.clone();
        let mut own = self.own.clone();
        for batch in batches {
            let mut out = BatchOutcome::default();
            let mut boots: Vec<(String, String)> = Vec::new();
            let start = all.len();
            // The (agent, boot) of the event before: a batch is one boot, so the
            // key is made once per run, not once per event.
            let mut key: (String, String) = (String::new(), String::new());
            for mut ev in batch {
                if let Some((envelope, seq)) = own.as_mut()
                    && ev.seq == 0
                    && ev.agent_id == envelope.agent_id
                    && ev.boot_id == envelope.boot_id
                {
                    *seq += 1;
                    ev.seq = *seq;
                }
                if key.0 != ev.agent_id || key.1 != ev.boot_id || boots.is_empty() {
                    key = (ev.agent_id.clone(), ev.boot_id.clone());
                    if !boots.contains(&key) {
                        boots.push(key.clone());
                    }
                }
                let key = &key;
                let mark = hw.get(key).copied().unwrap_or(0);
                if ev.seq == 0 {
                    all.push(ev);
                } else if ev.seq > mark {
                    if ev.seq > mark + 1 && key.0 != crate::writer::COLLECTOR_AGENT_ID {
                        gaps.entry(key.clone()).or_default().insert(mark + 1, ev.seq - 1);
                        out.gaps += 1;
                        if let Some((envelope, seq)) = own.as_mut() {
                            *seq += 1;
                            all.push(gap_record(envelope, *seq, key, mark + 1, ev.seq - 1));
                            hw.insert((envelope.agent_id.clone(), envelope.boot_id.clone()), *seq);
                        }
                    }
                    match hw.get_mut(key) {
                        Some(m) => *m = ev.seq,
                        None => drop(hw.insert(key.clone(), ev.seq)),
                    }
                    all.push(ev);
                } else if fill(&mut gaps, key, ev.seq) {
                    out.filled += 1;
                    all.push(ev);
                } else {
                    out.duplicates += 1;
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
            let positions = self.active.append_positions_unsynced(&rest)?;
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
        self.gaps = gaps;
        self.own = own;
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
    pub(super) fn rotate(&mut self) -> Result<(), StoreError> {
        // What was written to the old segment is made durable here: later
        // fsyncs only see the new one.
        self.active.sync()?;
        let anchor = self.active.anchor();
        let first = anchor.records + 1;
        let path = self.log_dir.join(segment_name(first));
        self.active = AuditLog::open_after(&path, &anchor)?.keyed(self.key.clone());
        self.sync_file = Arc::new(
            self.active.sync_handle().map_err(|source| StoreError::Io { action: "open", path: path.clone(), source })?,
        );
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
    /// retention record). The index rows are the [`super::index::Indexer`]'s job.
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

/// Widens a segment's time range to include `t`.
pub(super) fn widen(info: &mut SegmentInfo, t: i64) {
    if info.min_time == 0 || t < info.min_time {
        info.min_time = t;
    }
    info.max_time = info.max_time.max(t);
}
