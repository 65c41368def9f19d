//! The durable, tamper-evident audit log: an append-only file of JSON lines, one
//! record per event, each chained to the one before it by a SHA-256 hash.
//!
//! # Record format
//!
//! ```text
//! {"v":2,"n":<record number, from 1>,"prev":"<hash of record n-1; 64 zeros for n = 1>","hash":"<hash>","mac":"<mac>","event":<event>}\n
//! ```
//!
//! - `v` is the record's storage format version, [`FORMAT_VERSION`] (2) for every
//!   record written now. Records of format 1, written before the format had a
//!   version, have no `v` field; they still verify, and a log that has them is
//!   continued in format 2 (so a log can hold format 1 records, then format 2 ones,
//!   never the other way round: a format 1 record after a format 2 one is a
//!   problem). A version this build does not know makes the line "not a record".
//! - `event` is [`crate::json::to_json`] of the event, written in canonical
//!   form (see [`canonical_json`]).
//! - `hash` is lowercase hex of `SHA-256(prev as 32 raw bytes || v as one byte ||
//!   canonical event bytes)`; in format 1, `SHA-256(prev || canonical event bytes)`
//!   (no version byte; the two inputs cannot be confused, since canonical event bytes
//!   begin with `{`). The hash covers the version, so a record cannot be passed off
//!   as one of another format (its `v` dropped or changed) without breaking the chain.
//! - `mac` is there when the log is written with a key ([`AuditLog::keyed`]):
//!   lowercase hex of `HMAC-SHA256(key, n as 8 big-endian bytes || hash)` (see
//!   [`crate::log_key`]), the same in both formats. Without the key a rewrite can be
//!   re-chained, but not re-marked: [`verify_keyed`] names every record whose mac
//!   does not match, and a record without one after records with one (a stripped
//!   mark).
//! - The line itself is canonical too: fields in this order (`v` first, absent in
//!   format 1), no whitespace. [`verify`] re-renders every line and compares bytes,
//!   so even an edit that keeps the JSON value the same (`"A"` for `"a"` in a hex
//!   digest, `"v":2.0` for `"v":2`, say) is caught.
//!
//! Editing, removing, inserting or reordering any record breaks the chain at that
//! line, and [`verify`] names it. Removing records *from the end* leaves a valid,
//! shorter chain: only an [`Anchor`] kept elsewhere (the last record number and hash,
//! as reported by [`AuditLog::anchor`]) detects that, through [`verify_with_anchor`].
//! A build from before format versions refuses to resume a log that has format 2
//! records (an unexpected field): going back to it is not supported.
//!
//! # Durability
//!
//! [`AuditLog::append`] writes a whole batch with one `write` and makes it durable with
//! one `fdatasync`. A crash can leave a torn final line; [`AuditLog::open`] cuts it
//! away (it was never acknowledged) with a warning and counts the bytes
//! ([`AuditLog::torn_bytes`]). A failed write is truncated back to the last good
//! record; a failed fsync poisons the handle, because after one the kernel may have
//! dropped the dirty pages and only a reopen (which re-reads the tail) knows what is
//! on disk.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use warrant_proto::Event;
pub use crate::json::canonical_json;

use crate::Error;
use crate::log_key::LogKey;

/// The `prev` of record 1.
const GENESIS: [u8; 32] = [0; 32];

/// The storage format every record is written in now: the `"v"` of its line and the
/// version byte of its hash (see the module docs).
pub const FORMAT_VERSION: u8 = 2;

/// The format of records written before there were versions: no `"v"`, no
/// version byte in the hash.
pub const FORMAT_UNVERSIONED: u8 = 1;

/// How much of the file's end is read at a time when looking for the last record.
const TAIL_CHUNK: usize = 16 * 1024;

/// An open audit log, positioned to append after its last record.
///
/// The file is locked (`flock`, exclusive) for as long as this value lives: two
/// writers would fork the chain.
#[derive(Debug)]
pub struct AuditLog {
    /// The log, opened for append (every write lands at the end) and locked.
    file: File,
    /// Where the log lives, for error messages.
    path: PathBuf,
    /// Number of the last record (records are numbered from 1), 0 when empty.
    records: u64,
    /// Hash of the last record: the `prev` of the next one.
    head: [u8; 32],
    /// Length of the file's good content; a failed write is truncated back to it.
    len: u64,
    /// Bytes of a torn final line cut away by `open` (0 when the log was clean), so
    /// the agent can report a crash-time loss rather than only log it.
    torn_bytes: u64,
    /// An fsync failed: what is on disk is unknown, so appends are refused until the
    /// log is reopened.
    poisoned: bool,
    /// Marks every record appended from now on with a mac.
    key: Option<LogKey>,
    /// Reused by every append: the canonical writer's buffers and the batch's lines.
    canonical: crate::json::CanonicalWriter,
    buf: Vec<u8>,
}

/// Where a log's chain ended at some point: enough to detect later removal of
/// records from the end, which the chain alone cannot show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// Number of the last record.
    pub records: u64,
    /// Lowercase hex hash of that record (64 zeros when there are no records).
    pub head: String,
}

impl Anchor {
    /// The start of a fresh chain: no records, and the 64 zeros record 1 chains to.
    #[must_use]
    pub fn genesis() -> Anchor {
        Anchor { records: 0, head: hex::encode(GENESIS) }
    }
}

/// Where one record sits in its file (as returned by [`AuditLog::append_positions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordPos {
    /// The record's number.
    pub n: u64,
    /// Byte offset of its line in the file.
    pub offset: u64,
    /// Length of its line, newline included.
    pub len: u32,
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Lines read, including bad ones.
    pub lines: u64,
    /// Record number of the last well-formed record (0 when none).
    pub records: u64,
    /// Stored hash of the last well-formed record (64 zeros when none).
    pub head: String,
    /// Everything wrong, in file order; empty when the chain is intact.
    pub problems: Vec<Problem>,
    /// Whether the macs were checked (a key was given).
    pub keyed: bool,
    /// With a key: records before the first marked one (written before the log
    /// had a key; the first mac vouches for them through the chain).
    pub unkeyed: u64,
    /// Records in format 1, from before the format had a version
    /// ([`FORMAT_UNVERSIONED`]); the rest are in [`FORMAT_VERSION`].
    pub unversioned: u64,
}

impl VerifyReport {
    /// True when every record is intact and chained.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One thing wrong with one line of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number in the file.
    pub line: u64,
    /// What is wrong, in words (lowercase, no trailing period).
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

impl AuditLog {
    /// Creates the log, or resumes it: reads the last record to continue the chain.
    ///
    /// A torn final line (a crash mid-append) is truncated away with a warning and
    /// counted in [`torn_bytes`](Self::torn_bytes). A last complete record whose hash
    /// does not match its contents is an error ([`Error::Damaged`]): appending after
    /// it would bury the damage. Only the tail is read; [`verify`] checks the rest.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened, locked, read or repaired,
    /// [`Error::Locked`] when another writer holds it, [`Error::Damaged`] as above.
    pub fn open(path: &Path) -> Result<AuditLog, Error> {
        Self::open_after(path, &Anchor::genesis())
    }

    /// [`open`](Self::open) for one segment of a longer chain: when the file holds
    /// no record yet, its first record is numbered `start.records + 1` and chained to
    /// `start.head` (the last record of the segment before it) instead of to zeros.
    ///
    /// # Errors
    /// As [`open`](Self::open); [`Error::Damaged`] also when `start.head` is not 64
    /// hex digits.
    pub fn open_after(path: &Path, start: &Anchor) -> Result<AuditLog, Error> {
        let io = |action| {
            let path = path.to_path_buf();
            move |source| Error::Io { action, path, source }
        };
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            // Events carry command lines and paths: not for every local user.
            .mode(0o600)
            .open(path)
            .map_err(io("open"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked { path: path.to_path_buf() });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock")(e)),
        }
        let mut len = file.metadata().map_err(io("read"))?.len();
        if len == 0 {
            // Possibly just created: make the directory entry durable too.
            sync_parent(path).map_err(io("create"))?;
        }

        let mut torn_bytes = 0;
        if len > 0 && last_byte(&file, len).map_err(io("read"))? != b'\n' {
            let keep = rfind_newline(&file, len).map_err(io("read"))?.map_or(0, |p| p + 1);
            torn_bytes = len - keep;
            file.set_len(keep).map_err(io("truncate torn record of"))?;
            file.sync_data().map_err(io("fsync"))?;
            tracing::warn!(
                path = %path.display(),
                bytes = torn_bytes,
                "cut away a torn final record (a crash during append; it was never acknowledged)"
            );
            len = keep;
        }

        let (records, head) = if len == 0 {
            let mut head = [0; 32];
            hex::decode_to_slice(&start.head, &mut head).map_err(|_| Error::Damaged {
                path: path.to_path_buf(),
                line: 0,
                problem: format!("the chain start {:?} is not 64 hex digits", start.head),
            })?;
            (start.records, head)
        } else {
            let start = rfind_newline(&file, len - 1).map_err(io("read"))?.map_or(0, |p| p + 1);
            let mut line = vec![0; usize::try_from(len - 1 - start).unwrap_or(usize::MAX)];
            file.read_exact_at(&mut line, start).map_err(io("read"))?;
            match check_line(&line) {
                Ok(rec) if rec.issues.is_empty() => (rec.n, rec.hash_bytes),
                Ok(rec) => return Err(damaged(&file, path, start, rec.issues.join("; "))),
                Err(what) => return Err(damaged(&file, path, start, what)),
            }
        };
        Ok(AuditLog {
            file,
            path: path.to_path_buf(),
            records,
            head,
            len,
            torn_bytes,
            poisoned: false,
            key: None,
            canonical: crate::json::CanonicalWriter::default(),
            buf: Vec::new(),
        })
    }

    /// Marks every record appended from now on with `key` (see [`crate::log_key`]).
    #[must_use]
    pub fn keyed(mut self, key: LogKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Closes and opens the log again (re-reading its tail from disk), with the
    /// same key: what to do after a failed fsync.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn reopen(self) -> Result<AuditLog, Error> {
        let (path, key) = (self.path.clone(), self.key.clone());
        drop(self);
        let log = Self::open(&path)?;
        Ok(match key {
            Some(k) => log.keyed(k),
            None => log,
        })
    }

    /// Appends a batch of events as consecutive records: one write and one
    /// fdatasync per call, so batching is the caller's job. An empty batch does
    /// nothing. When this returns `Ok`, the events are on disk.
    ///
    /// # Errors
    /// [`Error::Io`] when the write or the fsync fails (a partial write is cut back
    /// off), [`Error::Poisoned`] after an earlier failed fsync.
    pub fn append(&mut self, events: &[Event]) -> Result<(), Error> {
        self.append_positions(events).map(drop)
    }

    /// [`append`](Self::append), returning where each record landed, in order, so
    /// an index can point at it.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub fn append_positions(&mut self, events: &[Event]) -> Result<Vec<RecordPos>, Error> {
        let positions = self.append_positions_unsynced(events)?;
        if !positions.is_empty() {
            self.sync()?;
        }
        Ok(positions)
    }

    /// [`append_positions`](Self::append_positions) without the fdatasync: the
    /// records are written (readable, chained on) but not durable until
    /// [`sync`](Self::sync), or an fdatasync of [`sync_handle`](Self::sync_handle),
    /// succeeds. For a writer that overlaps one batch's fsync with the next
    /// batch's work; it must not acknowledge anything before then.
    ///
    /// # Errors
    /// As [`append`](Self::append) (but for the fsync).
    pub fn append_positions_unsynced(&mut self, events: &[Event]) -> Result<Vec<RecordPos>, Error> {
        if self.poisoned {
            return Err(Error::Poisoned { path: self.path.clone() });
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut positions = Vec::with_capacity(events.len());
        let (mut n, mut head) = (self.records, self.head);
        for ev in events {
            n += 1;
            // The line is written in place, the event's canonical bytes straight after
            // its head, then hashed where they lie; the hash and mac go into the room
            // left for them. The bytes are `write_record`'s, which `verify` renders.
            let at = buf.len();
            record_head(&mut buf, FORMAT_VERSION, n, &head);
            let hash_at = buf.len();
            buf.extend_from_slice(&[b'0'; 64]);
            let mac_at = self.key.is_some().then(|| {
                buf.extend_from_slice(MAC_KEY);
                let p = buf.len();
                buf.extend_from_slice(&[b'0'; 64]);
                p
            });
            buf.extend_from_slice(EVENT_KEY);
            let event_at = buf.len();
            self.canonical.write(ev, &mut buf);
            let hash = chain_hash(FORMAT_VERSION, &head, &buf[event_at..]);
            // encode_to_slice only fails on a wrong output length, which 64 is not.
            let _ = hex::encode_to_slice(hash, &mut buf[hash_at..hash_at + 64]);
            if let (Some(p), Some(key)) = (mac_at, &self.key) {
                let _ = hex::encode_to_slice(key.mac(n, &hash), &mut buf[p..p + 64]);
            }
            buf.extend_from_slice(RECORD_END);
            positions.push(RecordPos {
                n,
                offset: self.len + at as u64,
                len: u32::try_from(buf.len() - at).unwrap_or(u32::MAX),
            });
            head = hash;
        }
        let written = self.file.write_all(&buf);
        let wrote = buf.len() as u64;
        // Keep the buffer for the next batch, unless one huge batch made it huge.
        if buf.capacity() <= 8 << 20 {
            self.buf = buf;
        }
        if let Err(source) = written {
            // Cut a partial write back off so the next append continues a clean chain.
            if self.file.set_len(self.len).is_err() {
                self.poisoned = true;
            }
            return Err(Error::Io { action: "append to", path: self.path.clone(), source });
        }
        self.len += wrote;
        self.records = n;
        self.head = head;
        Ok(positions)
    }

    /// Makes everything written so far durable (one fdatasync). A failure poisons
    /// the handle (see the module docs).
    ///
    /// # Errors
    /// [`Error::Io`] when the fsync fails, [`Error::Poisoned`] after an earlier one.
    pub fn sync(&mut self) -> Result<(), Error> {
        if self.poisoned {
            return Err(Error::Poisoned { path: self.path.clone() });
        }
        if let Err(source) = self.file.sync_data() {
            self.poisoned = true;
            return Err(Error::Io { action: "fsync", path: self.path.clone(), source });
        }
        Ok(())
    }

    /// Another handle on the log's file, for a thread that makes appends durable
    /// (`sync_data`) while this one writes the next ones. After a failed fsync
    /// through it, call [`poison`](Self::poison).
    ///
    /// # Errors
    /// When the file descriptor cannot be duplicated.
    pub fn sync_handle(&self) -> std::io::Result<File> {
        self.file.try_clone()
    }

    /// Refuses appends from now on (an fsync failed elsewhere, see
    /// [`sync_handle`](Self::sync_handle)): only a reopen knows what is on disk.
    pub fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Bytes in the log file (its good content).
    #[must_use]
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// Number of records in the log (the number of the last one).
    #[must_use]
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Where the chain ends now. Keep it somewhere else (report it, ship it) to be
    /// able to detect later removal of records from the end ([`verify_with_anchor`]).
    #[must_use]
    pub fn anchor(&self) -> Anchor {
        Anchor { records: self.records, head: hex::encode(self.head) }
    }

    /// Bytes of a torn final line that [`open`](Self::open) cut away (0 when clean).
    #[must_use]
    pub fn torn_bytes(&self) -> u64 {
        self.torn_bytes
    }

    /// The log's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Walks the whole chain. Every edited, removed, inserted or reordered record is
/// reported with its line number and what is wrong. Records removed from the *end*
/// cannot be seen this way; see [`verify_with_anchor`].
///
/// # Errors
/// [`Error::Io`] when the file cannot be opened or read; damage is reported in the
/// [`VerifyReport`], never as an `Err`.
pub fn verify(path: &Path) -> Result<VerifyReport, Error> {
    walk(path, &Anchor::genesis(), None, None, None, &mut |_, _, _| {})
}

/// [`verify_keyed`] with the key file at `key_path` (which must exist), and what it
/// records about the key's first record ([`crate::log_key::keyed_from`]): a record
/// from there on without a mark is a problem (marks stripped and the chain re-made),
/// not an unmarked record of an older log.
///
/// # Errors
/// As [`verify`], and when the key or its record cannot be read.
pub fn verify_with_key_file(path: &Path, key_path: &Path) -> Result<VerifyReport, Error> {
    let key = LogKey::load_or_create(key_path)?;
    let mut report = verify_keyed(path, &key)?;
    if let Some(from) = crate::log_key::keyed_from(key_path)?
        && report.unkeyed >= from
    {
        report.problems.insert(
            0,
            Problem {
                line: from,
                what: format!(
                    "records {from}..={} carry no mac, but the log has been keyed since record {from}: their marks were stripped (a rewrite)",
                    report.unkeyed
                ),
            },
        );
        report.unkeyed = from - 1;
    }
    Ok(report)
}

/// [`verify`], and every record's mac checked against `key`: a record whose mac
/// does not match was written (or re-chained) without the key; one without a mac
/// after marked ones had its mark stripped; a log with records but no mark at all
/// was written without the key or rewritten whole.
///
/// # Errors
/// As [`verify`].
pub fn verify_keyed(path: &Path, key: &LogKey) -> Result<VerifyReport, Error> {
    walk(path, &Anchor::genesis(), None, None, Some(key), &mut |_, _, _| {})
}

/// [`verify`] for one segment of a longer chain: its first record must be numbered
/// `start.records + 1` and chained to `start.head`.
///
/// # Errors
/// As [`verify`].
pub fn verify_after(path: &Path, start: &Anchor) -> Result<VerifyReport, Error> {
    walk(path, start, None, None, None, &mut |_, _, _| {})
}

/// [`verify_after`] for a file that may still be growing: stops after record
/// `stop_after` (what was durable when the check began), and calls `visit` with
/// every well-formed record's number, stored hash and event object, so a caller
/// can look for records it cares about in the same pass. With `key`, each record's
/// mac is checked as [`verify_keyed`] does.
///
/// # Errors
/// As [`verify`].
pub fn verify_segment(
    path: &Path,
    start: &Anchor,
    stop_after: Option<u64>,
    key: Option<&LogKey>,
    visit: &mut dyn FnMut(u64, &str, &Value),
) -> Result<VerifyReport, Error> {
    walk(path, start, None, stop_after, key, visit)
}

/// [`verify`], plus a check that the log still reaches `anchor` (taken earlier from
/// [`AuditLog::anchor`]) with the same hash there: catches records removed from the
/// end, and a log rewritten from scratch.
///
/// # Errors
/// As [`verify`].
pub fn verify_with_anchor(path: &Path, anchor: &Anchor) -> Result<VerifyReport, Error> {
    walk(path, &Anchor::genesis(), Some(anchor), None, None, &mut |_, _, _| {})
}

fn walk(
    path: &Path,
    start: &Anchor,
    anchor: Option<&Anchor>,
    stop_after: Option<u64>,
    key: Option<&LogKey>,
    visit: &mut dyn FnMut(u64, &str, &Value),
) -> Result<VerifyReport, Error> {
    let io = |action| {
        let path = path.to_path_buf();
        move |source| Error::Io { action, path, source }
    };
    let file = File::open(path).map_err(io("open"))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut report = VerifyReport {
        head: start.head.clone(),
        records: start.records,
        keyed: key.is_some(),
        ..VerifyReport::default()
    };
    // The first marked record, once seen.
    let mut marked_from: Option<u64> = None;
    // The first record in the current format, once seen.
    let mut versioned_from: Option<u64> = None;
    // What the next record should carry; `None` after an unreadable line.
    let mut expect_n = start.records + 1;
    let mut expect_prev = Some(start.head.clone());
    // (line, stored hash) of the record numbered `anchor.records`.
    let mut at_anchor: Option<(u64, String)> = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io("read"))? == 0 {
            break;
        }
        report.lines += 1;
        let lineno = report.lines;
        if line.pop() != Some(b'\n') {
            report.problems.push(Problem {
                line: lineno,
                what: "incomplete final line: a torn write (or an append in progress)".into(),
            });
            break;
        }
        let rec = match check_line(&line) {
            Ok(rec) => rec,
            Err(what) => {
                report.problems.push(Problem { line: lineno, what });
                expect_n += 1;
                expect_prev = None;
                continue;
            }
        };
        let mut issues = Vec::new();
        if rec.n > expect_n {
            let missing = rec.n - expect_n;
            issues.push(format!(
                "record {} follows record {}: {missing} record{} removed before this line",
                rec.n,
                expect_n - 1,
                if missing == 1 { "" } else { "s" }
            ));
        } else if rec.n < expect_n {
            issues.push(format!(
                "record {} follows record {}: a record was inserted, duplicated or moved here",
                rec.n,
                expect_n - 1
            ));
        } else if expect_prev.as_ref().is_some_and(|p| p.as_str() != rec.prev) {
            issues.push(format!(
                "prev does not match the hash of line {}: the record before this one was replaced",
                lineno - 1
            ));
        }
        issues.extend(rec.issues);
        if rec.version == FORMAT_UNVERSIONED {
            report.unversioned += 1;
            if let Some(first) = versioned_from {
                issues.push(format!(
                    "a record of format {FORMAT_UNVERSIONED} after record {first} of format {FORMAT_VERSION}: writers never go back (a record from an older log spliced in)"
                ));
            }
        } else {
            versioned_from.get_or_insert(rec.n);
        }
        if let Some(key) = key {
            match rec.mac {
                Some(mac) => {
                    if key.mac(rec.n, &rec.hash_bytes) != mac {
                        issues.push(
                            "mac does not match: the record was written or re-chained without the log's key".to_owned(),
                        );
                    }
                    marked_from.get_or_insert(rec.n);
                }
                None => match marked_from {
                    Some(first) => issues.push(format!(
                        "no mac, but record {first} before it has one: its mark was stripped (a rewrite)"
                    )),
                    None => report.unkeyed += 1,
                },
            }
        }
        if !issues.is_empty() {
            report.problems.push(Problem { line: lineno, what: issues.join("; ") });
        }
        // Resynchronise on what this line says, so one removal is one problem.
        expect_n = rec.n + 1;
        expect_prev = Some(rec.hash.clone());
        if anchor.is_some_and(|a| a.records == rec.n) {
            at_anchor = Some((lineno, rec.hash.clone()));
        }
        visit(rec.n, &rec.hash, &rec.event);
        report.records = rec.n;
        report.head = rec.hash;
        if stop_after.is_some_and(|last| rec.n >= last) {
            break;
        }
    }
    if key.is_some() && marked_from.is_none() && report.records > start.records {
        report.problems.push(Problem {
            line: report.lines,
            what: "no record carries a mac of the log's key: it was written without the key, or rewritten whole"
                .to_owned(),
        });
    }
    if let Some(a) = anchor {
        match at_anchor {
            Some((line, hash)) if hash != a.head => report.problems.push(Problem {
                line,
                what: format!(
                    "record {} has hash {hash}, but the anchor says {}: the log was rewritten up to here",
                    a.records, a.head
                ),
            }),
            Some(_) => {}
            None if a.records == 0 => {}
            None => report.problems.push(Problem {
                line: report.lines + 1,
                what: format!(
                    "the log ends at record {}, but record {} was written: records were removed from the end",
                    report.records, a.records
                ),
            }),
        }
    }
    Ok(report)
}

/// A parsed line and what is wrong with it that does not depend on its neighbours.
struct Checked {
    /// The record's storage format: its `v`, [`FORMAT_UNVERSIONED`] when it has none.
    version: u8,
    /// The record's `n`.
    n: u64,
    /// The record's `prev`, as stored.
    prev: String,
    /// The record's `hash`, as stored.
    hash: String,
    /// The stored hash as bytes (all zeros if it is not valid hex).
    hash_bytes: [u8; 32],
    /// The stored mac, when the record has one.
    mac: Option<[u8; 32]>,
    /// Self-contained problems: hash mismatch, non-canonical bytes.
    issues: Vec<String>,
    /// The record's event object.
    event: Value,
}

/// Parses one line (without its newline) and checks it on its own. `Err` when it is
/// not a record at all.
fn check_line(line: &[u8]) -> Result<Checked, String> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| format!("not a valid JSON record: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("not a record: expected a JSON object".into());
    };
    if let Some(extra) = obj.keys().find(|k| !["v", "n", "prev", "hash", "mac", "event"].contains(&k.as_str())) {
        return Err(format!("not a record: unexpected field {extra:?}"));
    }
    let version = match obj.get("v") {
        None => FORMAT_UNVERSIONED,
        Some(v) => match v.as_u64() {
            Some(v) if v == u64::from(FORMAT_VERSION) => FORMAT_VERSION,
            Some(v) => {
                return Err(format!(
                    "not a record this build reads: format version {v} (it reads {FORMAT_UNVERSIONED}, without \"v\", and {FORMAT_VERSION})"
                ));
            }
            None => return Err("not a record: field \"v\" is not a format version number".into()),
        },
    };
    let n = obj
        .get("n")
        .and_then(Value::as_u64)
        .ok_or("not a record: field \"n\" is missing or not a number")?;
    let digest = |field: &str| -> Result<([u8; 32], String), String> {
        let s = obj
            .get(field)
            .and_then(Value::as_str)
            .ok_or(format!("not a record: field {field:?} is missing or not a string"))?;
        let mut bytes = [0; 32];
        match hex::decode_to_slice(s, &mut bytes) {
            Ok(()) if s.bytes().all(|b| !b.is_ascii_uppercase()) => Ok((bytes, s.to_owned())),
            _ => Err(format!("field {field:?} is not 64 lowercase hex digits")),
        }
    };
    let (prev_bytes, prev) = digest("prev")?;
    let (hash_bytes, hash) = digest("hash")?;
    let mac = if obj.contains_key("mac") { Some(digest("mac")?.0) } else { None };
    let event = obj.get("event").ok_or("not a record: field \"event\" is missing")?;
    if !event.is_object() {
        return Err("not a record: field \"event\" is not an object".into());
    }
    let canon = canonical_json(event).map_err(|e| format!("cannot re-encode the event: {e}"))?;
    let mut issues = Vec::new();
    if chain_hash(version, &prev_bytes, &canon) == hash_bytes {
        // Same value, maybe different bytes (an escape, a hex digit's case).
        let mut rendered = Vec::with_capacity(line.len() + 1);
        write_record(&mut rendered, version, n, &prev_bytes, &hash_bytes, mac.as_ref(), &canon);
        rendered.pop();
        if rendered != line {
            issues.push("the record is not in canonical form: it was edited".to_owned());
        }
    } else {
        issues.push("hash does not match the record's contents: the record was edited".to_owned());
    }
    let event = event.clone();
    Ok(Checked { version, n, prev, hash, hash_bytes, mac, issues, event })
}

/// A record's hash in format `version`: `SHA-256(prev || version byte || canonical
/// event bytes)`, or `SHA-256(prev || canonical event bytes)` in format 1.
fn chain_hash(version: u8, prev: &[u8; 32], canon: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    if version != FORMAT_UNVERSIONED {
        h.update([version]);
    }
    h.update(canon);
    h.finalize().into()
}

/// Between a record's hash and its mac.
const MAC_KEY: &[u8] = b"\",\"mac\":\"";
/// Between a record's last digest and its event.
const EVENT_KEY: &[u8] = b"\",\"event\":";
/// After a record's event.
const RECORD_END: &[u8] = b"}\n";

/// Appends one record line in format `version`, newline included.
fn write_record(
    out: &mut Vec<u8>,
    version: u8,
    n: u64,
    prev: &[u8; 32],
    hash: &[u8; 32],
    mac: Option<&[u8; 32]>,
    canon: &[u8],
) {
    let mut hexbuf = [0u8; 64];
    record_head(out, version, n, prev);
    // encode_to_slice only fails on a wrong output length, which 64 is not.
    let _ = hex::encode_to_slice(hash, &mut hexbuf);
    out.extend_from_slice(&hexbuf);
    if let Some(mac) = mac {
        out.extend_from_slice(MAC_KEY);
        let _ = hex::encode_to_slice(mac, &mut hexbuf);
        out.extend_from_slice(&hexbuf);
    }
    out.extend_from_slice(EVENT_KEY);
    out.extend_from_slice(canon);
    out.extend_from_slice(RECORD_END);
}

/// A record line up to its hash's digits: `{"v":2,"n":N,"prev":"<hex>","hash":"`
/// (no `"v"` in format 1).
fn record_head(out: &mut Vec<u8>, version: u8, n: u64, prev: &[u8; 32]) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    if version == FORMAT_UNVERSIONED {
        let _ = write!(out, "{{\"n\":{n},\"prev\":\"");
    } else {
        let _ = write!(out, "{{\"v\":{version},\"n\":{n},\"prev\":\"");
    }
    let mut hexbuf = [0u8; 64];
    let _ = hex::encode_to_slice(prev, &mut hexbuf);
    out.extend_from_slice(&hexbuf);
    out.extend_from_slice(b"\",\"hash\":\"");
}

/// The 1-based line number of the line starting at byte `start` (counts newlines
/// before it; only used on the error path, since it reads the whole prefix).
fn line_number(file: &File, start: u64) -> u64 {
    let mut buf = vec![0; 64 * 1024];
    let (mut pos, mut lines) = (0u64, 1u64);
    while pos < start {
        let want = usize::try_from(start - pos).unwrap_or(usize::MAX).min(buf.len());
        match file.read_at(&mut buf[..want], pos) {
            Ok(0) | Err(_) => break,
            Ok(got) => {
                lines += bytecount(&buf[..got]);
                pos += got as u64;
            }
        }
    }
    lines
}

#[expect(clippy::naive_bytecount, reason = "error path only; not worth a dependency")]
fn bytecount(buf: &[u8]) -> u64 {
    buf.iter().filter(|&&b| b == b'\n').count() as u64
}

fn damaged(file: &File, path: &Path, start: u64, problem: String) -> Error {
    Error::Damaged { path: path.to_path_buf(), line: line_number(file, start), problem }
}

fn last_byte(file: &File, len: u64) -> std::io::Result<u8> {
    let mut b = [0];
    file.read_exact_at(&mut b, len - 1)?;
    Ok(b[0])
}

/// Offset of the last `\n` strictly before `before`, reading backwards in chunks.
fn rfind_newline(file: &File, before: u64) -> std::io::Result<Option<u64>> {
    let mut buf = vec![0; TAIL_CHUNK];
    let mut end = before;
    while end > 0 {
        let n = usize::try_from(end).unwrap_or(usize::MAX).min(TAIL_CHUNK);
        let start = end - n as u64;
        file.read_exact_at(&mut buf[..n], start)?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(Some(start + i as u64));
        }
        end = start;
    }
    Ok(None)
}

/// fsyncs the directory holding `path`, so a newly created file survives a crash.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Helpers for tests, here and in other crates (feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub mod testing {
    use super::{FORMAT_VERSION, GENESIS, Path, Value, canonical_json, chain_hash, write_record};

    /// Rewrites the log in place as someone who can write it but lacks the key:
    /// `edit` each event, re-chain every hash (every record in the current format),
    /// and keep the old macs or drop them.
    ///
    /// # Panics
    /// When the file is not a log of well-formed records.
    pub fn rechain(path: &Path, keep_macs: bool, mut edit: impl FnMut(u64, &mut Value)) {
        let (mut head, mut out) = (GENESIS, Vec::new());
        for l in std::fs::read_to_string(path).unwrap().lines() {
            let mut rec: Value = serde_json::from_str(l).unwrap();
            let n = rec["n"].as_u64().unwrap();
            edit(n, &mut rec["event"]);
            let canon = canonical_json(&rec["event"]).unwrap();
            let hash = chain_hash(FORMAT_VERSION, &head, &canon);
            let mac = rec.get("mac").and_then(Value::as_str).filter(|_| keep_macs).map(|m| {
                let mut b = [0; 32];
                hex::decode_to_slice(m, &mut b).unwrap();
                b
            });
            write_record(&mut out, FORMAT_VERSION, n, &head, &hash, mac.as_ref(), &canon);
            head = hash;
        }
        std::fs::write(path, out).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use warrant_proto::event::Event as Kind;
    use warrant_proto::{EventsLost, Exec, Exit, FileChange, FileOpen, Kill, Net};

    fn exec(seq: u64, argv: &[&str]) -> Event {
        Event {
            seq,
            time_unix_ns: 1_700_000_000_000_000_000 + i64::try_from(seq).unwrap(),
            grant: "g-1".into(),
            session: "s-1".into(),
            pid: 100,
            event: Some(Kind::Exec(Exec {
                path: "/usr/bin/id".into(),
                argv: argv.iter().map(|s| (*s).to_owned()).collect(),
                cwd: "/".into(),
                truncated: false,
                script: String::new(),
            })),
            ..Default::default()
        }
    }

    fn batch(from: u64, n: u64) -> Vec<Event> {
        (from..from + n).map(|i| exec(i, &["id", "-u"])).collect()
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
    }

    fn write_lines(path: &Path, lines: &[String]) {
        let mut s = lines.join("\n");
        s.push('\n');
        std::fs::write(path, s).unwrap();
    }

    fn problem_lines(report: &VerifyReport) -> Vec<u64> {
        report.problems.iter().map(|p| p.line).collect()
    }

    #[test]
    fn first_record_chains_from_zeros_and_hashes_canonical_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut log = AuditLog::open(&path).unwrap();
        log.append(&batch(1, 2)).unwrap();
        assert_eq!(log.records(), 2);

        let l = lines(&path);
        let rec: Value = serde_json::from_str(&l[0]).unwrap();
        assert_eq!(rec["n"], 1);
        assert_eq!(rec["prev"], "0".repeat(64));
        assert_eq!(rec["v"], 2);
        let canon = canonical_json(&rec["event"]).unwrap();
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update([2u8]);
        h.update(&canon);
        assert_eq!(rec["hash"], hex::encode(h.finalize()));
        let rec2: Value = serde_json::from_str(&l[1]).unwrap();
        assert_eq!(rec2["prev"], rec["hash"]);
        assert!(l[0].starts_with("{\"v\":2,\"n\":1,\"prev\":\""), "{}", l[0]);
        assert!(verify(&path).unwrap().is_ok());
    }

    #[test]
    fn canonical_json_sorts_keys_and_has_no_whitespace() {
        let v = serde_json::json!({"b": 1, "a": {"z": [1, "x\n"], "y": null}, "A": true});
        let c = canonical_json(&v).unwrap();
        assert_eq!(String::from_utf8(c).unwrap(), r#"{"A":true,"a":{"y":null,"z":[1,"x\n"]},"b":1}"#);
    }

    /// A fixed event must always hash the same: catches any accidental change to the
    /// canonical form or to `to_json` that would make old logs unverifiable.
    #[test]
    fn known_answer() {
        let canon = canonical_json(&crate::json::to_json(&exec(1, &["id", "-u"]))).unwrap();
        assert_eq!(
            String::from_utf8(canon.clone()).unwrap(),
            r#"{"agent_id":"","argv":["id","-u"],"boot_id":"","cgroup_id":0,"comm":"","cwd":"/","euid":0,"gid":0,"grant":"g-1","host":"","kind":"exec","path":"/usr/bin/id","pid":100,"ppid":0,"seq":1,"session":"s-1","subject":"","tid":0,"time":"2023-11-14T22:13:20.000000001Z","truncated":false,"uid":0}"#
        );
        // Both formats' hashes of it, fixed: format 1's is what logs written before
        // format versions hold (tests/fixtures has a whole log of them).
        assert_eq!(
            hex::encode(chain_hash(FORMAT_UNVERSIONED, &GENESIS, &canon)),
            "009cbb410829b93d82c21d309a4b3fe4104a1a83cd416a772b76b4d3f8873e5b"
        );
        assert_eq!(
            hex::encode(chain_hash(FORMAT_VERSION, &GENESIS, &canon)),
            "e15e4e9bc961f1617f9f27e1e7e514aab9ded7f97cf37ee2c3d0c1282094e169"
        );
    }


    /// The key file records the first record it marked: a log keyed late accepts its
    /// unmarked prefix, and a rewrite that strips the marks is named by that range.
    #[test]
    fn stripping_every_mark_is_caught_by_the_key_files_record() {
        let dir = tempfile::tempdir().unwrap();
        let (path, key_path) = (dir.path().join("audit.log"), dir.path().join("audit.key"));
        // An older log: two records before there was a key.
        AuditLog::open(&path).unwrap().append(&batch(1, 2)).unwrap();
        let log = AuditLog::open(&path).unwrap();
        let key = LogKey::load_or_create_for(&key_path, || log.records() + 1).unwrap();
        log.keyed(key).append(&batch(3, 3)).unwrap();
        assert_eq!(crate::log_key::keyed_from(&key_path).unwrap(), Some(3));
        let report = verify_with_key_file(&path, &key_path).unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.unkeyed, 2);
        // Loading the key again does not move the record.
        LogKey::load_or_create_for(&key_path, || 99).unwrap();
        assert_eq!(crate::log_key::keyed_from(&key_path).unwrap(), Some(3));

        testing::rechain(&path, false, |n, ev| {
            if n == 4 {
                ev["argv"] = serde_json::json!(["true"]);
            }
        });
        // The key alone sees that nothing is marked; the record says since when.
        let plain = verify_keyed(&path, &LogKey::load_or_create(&key_path).unwrap()).unwrap();
        assert!(!plain.is_ok(), "{:?}", plain.problems);
        let report = verify_with_key_file(&path, &key_path).unwrap();
        assert!(!report.is_ok());
        assert!(report.problems[0].what.contains("records 3..=5 carry no mac"), "{:?}", report.problems);
    }

    #[test]
    fn a_keyed_log_catches_a_rewrite_that_re_chains_the_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let key = LogKey::from_bytes([7; 32]);
        // Two records from before the log had a key, then three with it.
        AuditLog::open(&path).unwrap().append(&batch(1, 2)).unwrap();
        AuditLog::open(&path).unwrap().keyed(key.clone()).append(&batch(3, 3)).unwrap();
        let l = lines(&path);
        assert!(!l[1].contains("\"mac\":") && l[2].contains("\",\"mac\":\""), "{}", l[2]);
        let report = verify_keyed(&path, &key).unwrap();
        assert!(report.is_ok() && report.keyed, "{:?}", report.problems);
        assert_eq!((report.records, report.unkeyed), (5, 2));
        assert!(verify(&path).unwrap().is_ok(), "the chain alone still verifies without the key");
        let wrong = verify_keyed(&path, &LogKey::from_bytes([8; 32])).unwrap();
        assert_eq!(problem_lines(&wrong), [3, 4, 5], "another key's macs do not match");

        // Record 4's command changed and the chain recomputed: the hashes agree again,
        // the macs cannot.
        let original = std::fs::read(&path).unwrap();
        testing::rechain(&path, true, |n, ev| {
            if n == 4 {
                ev["argv"] = serde_json::json!(["true"]);
            }
        });
        assert!(verify(&path).unwrap().is_ok(), "a re-chained rewrite fools the chain alone");
        let report = verify_keyed(&path, &key).unwrap();
        assert_eq!(problem_lines(&report), [4, 5]);
        assert!(report.problems[0].what.contains("mac does not match"), "{:?}", report.problems);

        // The marks stripped from the end, or from everything.
        std::fs::write(&path, &original).unwrap();
        let strip_after = |keep: u64| {
            let text = std::fs::read_to_string(&path).unwrap();
            let out: String = text
                .lines()
                .map(|l| {
                    let n: u64 = serde_json::from_str::<Value>(l).unwrap()["n"].as_u64().unwrap();
                    let l = if n > keep { without_mac(l) } else { l.to_owned() };
                    l + "\n"
                })
                .collect();
            std::fs::write(&path, out).unwrap();
        };
        strip_after(4);
        let report = verify_keyed(&path, &key).unwrap();
        assert_eq!(problem_lines(&report), [5]);
        assert!(report.problems[0].what.contains("mark was stripped"), "{:?}", report.problems);
        strip_after(0);
        let report = verify_keyed(&path, &key).unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(report.problems[0].what.contains("no record carries a mac"), "{:?}", report.problems);
    }

    /// A record line without its `"mac":"…",` field.
    fn without_mac(line: &str) -> String {
        match line.find(",\"mac\":\"") {
            Some(at) => format!("{}{}", &line[..at], &line[at + 8 + 64 + 1..]),
            None => line.to_owned(),
        }
    }

    /// A line with its records' formats as given (a log an older build wrote
    /// first, then this one), chained from zeros.
    fn write_formats(path: &Path, formats: &[u8]) {
        let (mut head, mut out) = (GENESIS, Vec::new());
        for (i, &v) in formats.iter().enumerate() {
            let n = i as u64 + 1;
            let mut canon = Vec::new();
            crate::json::to_canonical_json(&exec(n, &["id"]), &mut canon);
            let hash = chain_hash(v, &head, &canon);
            write_record(&mut out, v, n, &head, &hash, None, &canon);
            head = hash;
        }
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn a_log_of_the_format_before_versions_verifies_and_is_continued_in_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_formats(&path, &[1, 1]);
        assert!(!std::fs::read_to_string(&path).unwrap().contains("\"v\""));
        let report = verify(&path).unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!((report.records, report.unversioned), (2, 2));
        AuditLog::open(&path).unwrap().append(&batch(3, 2)).unwrap();
        let l = lines(&path);
        assert!(l[1].starts_with("{\"n\":2,") && l[2].starts_with("{\"v\":2,\"n\":3,"), "{l:?}");
        let report = verify(&path).unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!((report.records, report.unversioned), (4, 2));
    }

    #[test]
    fn the_format_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_formats(&path, &[1, 2, 1, 2]);
        let report = verify(&path).unwrap();
        assert_eq!(problem_lines(&report), [3], "{:?}", report.problems);
        assert!(report.problems[0].what.contains("writers never go back"), "{}", report.problems[0]);
    }

    /// The version is covered by the hash and by the canonical line: dropped,
    /// changed, or written another way, the record is named.
    #[test]
    fn the_version_cannot_be_changed_dropped_or_respelled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        AuditLog::open(&path).unwrap().append(&batch(1, 3)).unwrap();
        let orig = lines(&path);
        for (edit, what) in [
            ("{\"n\":", "hash does not match"),
            ("{\"v\":3,\"n\":", "format version 3"),
            ("{\"v\":2.0,\"n\":", "not a format version number"),
            ("{\"v\":\"2\",\"n\":", "not a format version number"),
            ("{\"v\":02,\"n\":", "not a valid JSON record"),
            ("{\"v\":2 ,\"n\":", "not in canonical form"),
        ] {
            let mut l = orig.clone();
            l[1] = l[1].replacen("{\"v\":2,\"n\":", edit, 1);
            write_lines(&path, &l);
            let report = verify(&path).unwrap();
            assert_eq!(problem_lines(&report), [2], "{edit}: {:?}", report.problems);
            assert!(report.problems[0].what.contains(what), "{edit}: {}", report.problems[0]);
        }
    }

    #[test]
    fn reopen_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let anchor = {
            let mut log = AuditLog::open(&path).unwrap();
            log.append(&batch(1, 3)).unwrap();
            log.anchor()
        };
        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!(log.records(), 3);
        assert_eq!(log.anchor(), anchor);
        log.append(&batch(4, 2)).unwrap();
        log.append(&[]).unwrap();
        let report = verify(&path).unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!((report.lines, report.records), (5, 5));
        assert_eq!(report.head, log.anchor().head);
    }

    #[test]
    fn second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let _log = AuditLog::open(&path).unwrap();
        let err = AuditLog::open(&path).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
        assert!(err.to_string().contains("in use by another process"), "{err}");
    }

    #[test]
    fn torn_final_line_is_cut_away_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        AuditLog::open(&path).unwrap().append(&batch(1, 2)).unwrap();
        let good = std::fs::read(&path).unwrap();
        let mut torn = good.clone();
        let tail = b"{\"n\":3,\"prev\":\"ab";
        torn.extend_from_slice(tail);
        std::fs::write(&path, &torn).unwrap();
        let report = verify(&path).unwrap();
        assert_eq!(problem_lines(&report), [3]);

        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!(log.torn_bytes(), tail.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), good);
        assert_eq!(log.records(), 2);
        log.append(&batch(3, 1)).unwrap();
        assert!(verify(&path).unwrap().is_ok());
    }

    #[test]
    fn torn_only_record_leaves_an_empty_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, b"{\"n\":1,").unwrap();
        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!((log.torn_bytes(), log.records()), (7, 0));
        log.append(&batch(1, 1)).unwrap();
        assert!(verify(&path).unwrap().is_ok());
    }

    #[test]
    fn edited_last_record_refuses_to_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        AuditLog::open(&path).unwrap().append(&batch(1, 3)).unwrap();
        let mut l = lines(&path);
        l[2] = l[2].replace("\"-u\"", "\"-g\"");
        write_lines(&path, &l);
        let err = AuditLog::open(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Damaged { line: 3, .. }), "{msg}");
        assert!(msg.contains("line 3") && msg.contains("edited"), "{msg}");
    }

    #[test]
    fn edit_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        AuditLog::open(&path).unwrap().append(&batch(1, 4)).unwrap();
        let mut l = lines(&path);
        l[1] = l[1].replace("/usr/bin/id", "/usr/bin/ls");
        write_lines(&path, &l);
        let report = verify(&path).unwrap();
        assert_eq!(problem_lines(&report), [2]);
        assert!(report.problems[0].what.contains("edited"), "{}", report.problems[0]);
    }

    #[test]
    fn uppercased_hash_is_not_canonical() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        AuditLog::open(&path).unwrap().append(&batch(1, 2)).unwrap();
        let mut l = lines(&path);
        let rec: Value = serde_json::from_str(&l[0]).unwrap();
        let hash = rec["hash"].as_str().unwrap();
        l[0] = l[0].replace(hash, &hash.to_uppercase());
        write_lines(&path, &l);
        let report = verify(&path).unwrap();
        assert!(problem_lines(&report).contains(&1), "{:?}", report.problems);
    }

    #[test]
    fn removal_insertion_and_swap_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        AuditLog::open(&path).unwrap().append(&batch(1, 6)).unwrap();
        let orig = lines(&path);

        let mut l = orig.clone();
        l.remove(2);
        write_lines(&path, &l);
        let r = verify(&path).unwrap();
        assert_eq!(problem_lines(&r), [3], "{:?}", r.problems);
        assert!(r.problems[0].what.contains("1 record removed"), "{}", r.problems[0]);

        let mut l = orig.clone();
        l.insert(4, orig[1].clone());
        write_lines(&path, &l);
        let r = verify(&path).unwrap();
        assert_eq!(problem_lines(&r)[0], 5, "{:?}", r.problems);
        assert!(r.problems[0].what.contains("inserted"), "{}", r.problems[0]);

        let mut l = orig.clone();
        l.swap(1, 4);
        write_lines(&path, &l);
        let r = verify(&path).unwrap();
        assert_eq!(problem_lines(&r), [2, 3, 5, 6], "{:?}", r.problems);
    }

    #[test]
    fn removal_from_the_end_needs_the_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let anchor = {
            let mut log = AuditLog::open(&path).unwrap();
            log.append(&batch(1, 4)).unwrap();
            log.anchor()
        };
        assert!(verify_with_anchor(&path, &anchor).unwrap().is_ok());
        let mut l = lines(&path);
        l.pop();
        write_lines(&path, &l);
        assert!(verify(&path).unwrap().is_ok(), "the chain alone cannot tell");
        let r = verify_with_anchor(&path, &anchor).unwrap();
        assert_eq!(problem_lines(&r), [4], "{:?}", r.problems);
        assert!(r.problems[0].what.contains("removed from the end"), "{}", r.problems[0]);
    }

    #[test]
    fn rewritten_log_does_not_match_the_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let anchor = {
            let mut log = AuditLog::open(&path).unwrap();
            log.append(&batch(1, 3)).unwrap();
            log.anchor()
        };
        std::fs::remove_file(&path).unwrap();
        let mut log = AuditLog::open(&path).unwrap();
        log.append(&[exec(1, &["id"]), exec(2, &["id"]), exec(3, &["id"])]).unwrap();
        let r = verify_with_anchor(&path, &anchor).unwrap();
        assert_eq!(problem_lines(&r), [3], "{:?}", r.problems);
    }

    #[test]
    fn garbage_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        AuditLog::open(&path).unwrap().append(&batch(1, 3)).unwrap();
        let mut l = lines(&path);
        l[1] = "hello".into();
        write_lines(&path, &l);
        let r = verify(&path).unwrap();
        assert_eq!(problem_lines(&r), [2], "{:?}", r.problems);
        assert!(r.problems[0].what.starts_with("not a valid JSON record"), "{}", r.problems[0]);
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = verify(&dir.path().join("nope.log")).unwrap_err();
        assert!(err.to_string().starts_with("cannot open audit log "), "{err}");
    }

    fn arb_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z/._-]{0,12}",
            any::<String>(),
            Just("quote\" back\\slash \n\t\u{1b}[31m é ✓".to_owned()),
        ]
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        let kind = prop_oneof![
            (arb_string(), prop::collection::vec(arb_string(), 0..4), arb_string(), any::<bool>())
                .prop_map(|(path, argv, cwd, truncated)| Kind::Exec(Exec { path, argv, cwd, truncated, script: String::new() })),
            (any::<i32>(), any::<i32>()).prop_map(|(code, signal)| Kind::Exit(Exit { code, signal })),
            (arb_string(), any::<u32>(), any::<i32>())
                .prop_map(|(path, flags, error)| Kind::FileOpen(FileOpen {
                    path,
                    access: "write".into(),
                    flags,
                    error,
                    unresolved: false,
                    truncated: false,
                })),
            (arb_string(), arb_string(), any::<u32>(), any::<Option<u32>>(), any::<u64>(), any::<i32>()).prop_map(
                |(path, target, mode, uid, size, error)| Kind::FileChange(FileChange {
                    op: "rename".into(),
                    path,
                    target,
                    mode,
                    uid,
                    size,
                    error,
                    ..Default::default()
                })
            ),
            (arb_string(), any::<u32>()).prop_map(|(remote_addr, remote_port)| Kind::Connect(Net {
                family: "inet".into(),
                protocol: "tcp".into(),
                remote_addr,
                remote_port,
                ..Default::default()
            })),
            (any::<u32>(), any::<u64>(), arb_string()).prop_map(|(killed, elapsed_us, note)| Kind::Kill(
                Kill { reason: "operator".into(), by: "uid 0".into(), killed, elapsed_us, survivors: 0, note }
            )),
            (any::<u64>(), any::<u64>()).prop_map(|(count, total)| Kind::EventsLost(EventsLost { count, total, reason: String::new(), ..Default::default() })),
        ];
        (kind, any::<u64>(), 0..4_000_000_000_000_000_000i64, arb_string(), any::<u32>()).prop_map(
            |(kind, seq, time_unix_ns, comm, pid)| Event {
                event: Some(kind),
                seq,
                time_unix_ns,
                comm,
                pid,
                session: "s-1".into(),
                grant: "g-1".into(),
                ..Default::default()
            },
        )
    }

    /// Several appends (some after a reopen), then one tampering.
    #[derive(Clone, Debug)]
    enum Tamper {
        /// XOR the byte at (offset mod file length) with a non-zero mask.
        Flip(usize, u8),
        /// Delete line (index mod lines).
        Delete(usize),
        /// Swap lines (a mod lines) and (b mod lines) when they differ.
        Swap(usize, usize),
    }

    fn arb_tamper() -> impl Strategy<Value = Tamper> {
        prop_oneof![
            (any::<usize>(), 1..=255u8).prop_map(|(o, m)| Tamper::Flip(o, m)),
            any::<usize>().prop_map(Tamper::Delete),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Tamper::Swap(a, b)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn random_batches_verify_and_tampering_is_named(
            batches in prop::collection::vec((prop::collection::vec(arb_event(), 1..6), any::<bool>()), 1..5),
            tamper in arb_tamper(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.log");
            let mut total = 0;
            let mut log = AuditLog::open(&path).unwrap();
            for (events, reopen) in &batches {
                if *reopen {
                    drop(log);
                    log = AuditLog::open(&path).unwrap();
                }
                log.append(events).unwrap();
                total += events.len() as u64;
            }
            let anchor = log.anchor();
            drop(log);
            let report = verify_with_anchor(&path, &anchor).unwrap();
            prop_assert!(report.is_ok(), "{:?}", report.problems);
            prop_assert_eq!(report.records, total);

            let bytes = std::fs::read(&path).unwrap();
            let mut ls: Vec<Vec<u8>> = bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            let nlines = ls.len();
            let expect_line = match tamper {
                Tamper::Flip(off, mask) => {
                    let off = off % bytes.len();
                    let mut b = bytes.clone();
                    b[off] ^= mask;
                    std::fs::write(&path, &b).unwrap();
                    bytecount(&bytes[..off]) + 1
                }
                Tamper::Delete(i) => {
                    let i = i % nlines;
                    ls.remove(i);
                    std::fs::write(&path, ls.concat()).unwrap();
                    i as u64 + 1
                }
                Tamper::Swap(a, b) => {
                    let (a, b) = (a % nlines, b % nlines);
                    prop_assume!(a != b);
                    ls.swap(a, b);
                    std::fs::write(&path, ls.concat()).unwrap();
                    a.min(b) as u64 + 1
                }
            };
            let report = verify_with_anchor(&path, &anchor).unwrap();
            prop_assert!(!report.is_ok(), "tampering went unnoticed: {:?}", tamper);
            prop_assert!(
                report.problems.iter().any(|p| p.line == expect_line),
                "expected a problem at line {}, got {:?}", expect_line, report.problems
            );
        }
    }
}
