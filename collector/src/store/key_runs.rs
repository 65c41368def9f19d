//! The per-field index rows (grant, session, host, subject, agent): one row per
//! run of consecutive records that carry the same value, not one per record.
//!
//! A row is `(value, first n) → (last n, oldest time, newest time)`. Runs never
//! cross a segment (retention drops rows by their first record with their
//! segment). A stream of one agent is a run per host and agent id for as long as
//! nothing else is written in between; interleaved sessions make short runs, never
//! more rows than records.

use redb::{ReadableTable, StorageError, Table};

/// One field's table.
pub(super) type KeyRunTable<'t> = Table<'t, (&'static str, u64), (u64, i64, i64)>;

/// Fields indexed, in the order of [`KeyRuns::push`]'s values.
pub(super) const FIELDS: usize = 5;

/// An open run: (value, first, last, oldest, newest).
type Open<'a> = (&'a str, u64, u64, i64, i64);

/// The runs being built in one index transaction.
#[derive(Default)]
pub(super) struct KeyRuns<'a> {
    open: [Option<Open<'a>>; FIELDS],
    /// The segment and the last record pushed.
    last: Option<(u64, u64)>,
}

impl<'a> KeyRuns<'a> {
    /// Adds record `n` (segment `seg`, time `t`) with its field values (empty: none).
    ///
    /// # Errors
    /// When a table cannot be read or written.
    pub(super) fn push(&mut self, tables: &mut [KeyRunTable<'_>; FIELDS], seg: u64, n: u64, t: i64, values: [&'a str; FIELDS]) -> Result<(), StorageError> {
        // Record n - 1 was seen here (so a run that could go on is open, if any).
        let follows = self.last == Some((seg, n.wrapping_sub(1)));
        for (i, value) in values.into_iter().enumerate() {
            if let Some(run) = self.open[i].as_mut()
                && follows
                && run.0 == value
            {
                run.2 = n;
                run.3 = run.3.min(t);
                run.4 = run.4.max(t);
                continue;
            }
            if let Some(run) = self.open[i].take() {
                write(&mut tables[i], run)?;
            }
            if value.is_empty() {
                continue;
            }
            // The first record after something not seen in this transaction: a
            // run stored before may end right before it (in this segment).
            let mut run = (value, n, n, t, t);
            if !follows && n > seg {
                let before = tables[i].range((value, 0)..(value, n))?.next_back().transpose()?;
                if let Some((k, v)) = before {
                    let (first, (last, oldest, newest)) = (k.value().1, v.value());
                    if last + 1 == n && first >= seg {
                        run = (value, first, n, oldest.min(t), newest.max(t));
                    }
                }
            }
            self.open[i] = Some(run);
        }
        self.last = Some((seg, n));
        Ok(())
    }

    /// Writes the runs still open.
    ///
    /// # Errors
    /// When a table cannot be written.
    pub(super) fn finish(&mut self, tables: &mut [KeyRunTable<'_>; FIELDS]) -> Result<(), StorageError> {
        for (i, open) in self.open.iter_mut().enumerate() {
            if let Some(run) = open.take() {
                write(&mut tables[i], run)?;
            }
        }
        self.last = None;
        Ok(())
    }
}

fn write(table: &mut KeyRunTable<'_>, (value, first, last, oldest, newest): Open<'_>) -> Result<(), StorageError> {
    table.insert((value, first), (last, oldest, newest))?;
    Ok(())
}
