//! Where records sit: the index's `POS` rows, one per run of consecutive records
//! written to one segment (not one per record), and reading them back.
//!
//! A row is keyed by the run's first record number; its value is the segment
//! (its first record), the byte offset of the run's first line, and per record
//! its line's offset from there, its length and its event time:
//!
//! ```text
//! seg u64 | base u64 | (rel_offset u32, len u32, time i64) × records     (little-endian)
//! ```
//!
//! Record `n` is in the row with the largest key ≤ `n`, if that row is long
//! enough. One insert per run instead of one per record is what lets the index
//! keep up with ingest.

use redb::{ReadableTable, StorageError};

/// Records per row at most (a group commit can hold many more; rows stay small
/// enough that reading one for a single record is cheap).
pub(super) const RUN_MAX: usize = 1024;

const HEAD: usize = 16;
const ENTRY: usize = 16;

/// One record's place: (segment, offset, line length, event time).
pub(super) type Pos = (u64, u64, u32, i64);

/// Builds the rows for records appended to one segment.
#[derive(Default)]
pub(super) struct RunWriter {
    /// Finished rows: (first n, bytes).
    pub(super) rows: Vec<(u64, Vec<u8>)>,
    /// The row being filled: (first n, next n, next offset, bytes).
    open: Option<(u64, u64, u64, Vec<u8>)>,
}

impl RunWriter {
    /// Adds record `n` of segment `seg` at `offset` (line of `len` bytes).
    pub(super) fn push(&mut self, seg: u64, n: u64, offset: u64, len: u32, time: i64) {
        let fits = self.open.as_ref().is_some_and(|(first, next, next_off, bytes)| {
            *next == n && *next_off == offset && seg_of(bytes) == seg && usize::try_from(n - first).is_ok_and(|k| k < RUN_MAX)
        });
        if !fits {
            self.close();
            let mut bytes = Vec::with_capacity(HEAD + ENTRY * 64);
            bytes.extend_from_slice(&seg.to_le_bytes());
            bytes.extend_from_slice(&offset.to_le_bytes());
            self.open = Some((n, n, offset, bytes));
        }
        if let Some((_, next, next_off, bytes)) = self.open.as_mut() {
            let base = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default());
            let rel = u32::try_from(offset - base).unwrap_or(u32::MAX);
            bytes.extend_from_slice(&rel.to_le_bytes());
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(&time.to_le_bytes());
            *next = n + 1;
            *next_off = offset + u64::from(len);
        }
    }

    /// Finishes the open row.
    pub(super) fn close(&mut self) {
        if let Some((first, _, _, bytes)) = self.open.take() {
            self.rows.push((first, bytes));
        }
    }
}

fn seg_of(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default())
}

/// One row, read back.
#[derive(Clone, Debug, Default)]
pub(super) struct Run {
    /// Its first record.
    pub(super) first: u64,
    /// Its bytes (see the module docs).
    bytes: Vec<u8>,
}

impl Run {
    pub(super) fn new(first: u64, bytes: &[u8]) -> Run {
        Run { first, bytes: bytes.to_vec() }
    }

    /// Records in the row.
    pub(super) fn len(&self) -> u64 {
        (self.bytes.len().saturating_sub(HEAD) / ENTRY) as u64
    }

    /// Its last record.
    pub(super) fn last(&self) -> u64 {
        self.first + self.len().saturating_sub(1)
    }

    /// Where record `n` is, if it is in this row.
    pub(super) fn get(&self, n: u64) -> Option<Pos> {
        if n < self.first || n - self.first >= self.len() || self.bytes.len() < HEAD {
            return None;
        }
        let i = HEAD + usize::try_from(n - self.first).ok()? * ENTRY;
        let e = self.bytes.get(i..i + ENTRY)?;
        let rel = u32::from_le_bytes(e[0..4].try_into().ok()?);
        let len = u32::from_le_bytes(e[4..8].try_into().ok()?);
        let time = i64::from_le_bytes(e[8..16].try_into().ok()?);
        let base = u64::from_le_bytes(self.bytes[8..16].try_into().ok()?);
        Some((seg_of(&self.bytes), base + u64::from(rel), len, time))
    }
}

/// Looks records up in `POS`, keeping the last row read (lookups come in log order).
#[derive(Default)]
pub(super) struct PosCursor {
    run: Option<Run>,
}

impl PosCursor {
    /// Where record `n` is; `None` when the index has no such record.
    pub(super) fn get<T: ReadableTable<u64, &'static [u8]>>(&mut self, pos: &T, n: u64) -> Result<Option<Pos>, StorageError> {
        if let Some(p) = self.run.as_ref().and_then(|r| r.get(n)) {
            return Ok(Some(p));
        }
        self.run = match pos.range(..=n)?.next_back() {
            Some(row) => {
                let (k, v) = row?;
                Some(Run::new(k.value(), v.value()))
            }
            None => None,
        };
        Ok(self.run.as_ref().and_then(|r| r.get(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_where_records_are_not_consecutive_and_read_back() {
        let mut w = RunWriter::default();
        w.push(1, 1, 0, 10, 100);
        w.push(1, 2, 10, 20, 200);
        w.push(1, 3, 30, 5, 300);
        // A jump in n (another writer's record between) starts a new row.
        w.push(1, 5, 40, 7, 500);
        // So does a new segment.
        w.push(6, 6, 0, 9, 600);
        w.close();
        let runs: Vec<Run> = w.rows.iter().map(|(f, b)| Run::new(*f, b)).collect();
        assert_eq!(runs.iter().map(|r| (r.first, r.last())).collect::<Vec<_>>(), [(1, 3), (5, 5), (6, 6)]);
        assert_eq!(runs[0].get(2), Some((1, 10, 20, 200)));
        assert_eq!(runs[0].get(3), Some((1, 30, 5, 300)));
        assert_eq!(runs[0].get(4), None);
        assert_eq!(runs[1].get(5), Some((1, 40, 7, 500)));
        assert_eq!(runs[2].get(6), Some((6, 0, 9, 600)));
    }

    #[test]
    fn a_row_holds_at_most_run_max_records() {
        let mut w = RunWriter::default();
        for n in 1..=(RUN_MAX as u64 * 2 + 1) {
            w.push(1, n, (n - 1) * 10, 10, 0);
        }
        w.close();
        assert_eq!(w.rows.len(), 3);
        let last = Run::new(w.rows[2].0, &w.rows[2].1);
        assert_eq!(last.get(RUN_MAX as u64 * 2 + 1), Some((1, RUN_MAX as u64 * 20, 10, 0)));
    }
}
