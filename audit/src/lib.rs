//! warrant's audit record: what an event becomes once it is on the record, and
//! the record's way back out.
//!
//! The agent (single host) and the collector (fleet) both keep their record with
//! this crate; `warrant-proto` stays the only contract between processes, and the
//! CLI takes the JSON form and the kinds from here.
//!
//! # Layout, in the order an event travels
//! - [`kinds`]: the one table of event kinds ([`EventKind`]): each kind's JSON name
//!   and its filter shorthand (`process`, `file`, `net`). The JSON form, the
//!   decoder, [`KIND_NAMES`], `--kind` and the watch filters all derive from it.
//! - [`json`]: an `Event` to its JSON form ([`json::to_json`], the one object per
//!   line that `--json` prints and README's "Event schema" documents) and to its
//!   canonical bytes ([`json::CanonicalWriter`], [`canonical_json`]): what the log
//!   hashes.
//! - [`log`]: [`AuditLog`], the append-only file of record lines, each chained to the
//!   one before by a SHA-256 hash and, with a key, marked with a mac; fsync'd per
//!   batch. Every line carries its storage format version ([`log::FORMAT_VERSION`],
//!   covered by the hash and by the canonical line check); lines written before
//!   there were versions have none, and still verify. [`verify`] and its variants walk the chain and name every line that was edited, removed,
//!   inserted or reordered.
//! - [`log_key`]: [`LogKey`], the key the records are marked with, and the record of
//!   the first record it marked.
//! - [`hub`]: the live tail of the record stream: [`EventHub`], a bounded broadcast
//!   to watchers, each [`Subscription`] with a [`Filter`]; a watcher that falls
//!   behind is told how much it missed (`WatchMissed`) instead of slowing the
//!   publisher.
//! - [`ledger`]: a session's report summed up from its events in log order (the
//!   agent's `session_report`, the console's live report from a collector's log).
//! - [`decode`]: back from the JSON form to an `Event` ([`decode::from_json`]), so a
//!   query or a replay serves the very records the chain covers.
//! - [`Error`]: the one error type of the log, the key and the filters.

use std::path::PathBuf;

pub mod decode;
pub mod hub;
pub mod json;
pub mod kinds;
pub mod ledger;
pub mod log;
pub mod log_key;

pub use decode::{DecodeError, from_json};
pub use hub::{EventHub, Filter, Subscription};
pub use json::{canonical_json, rfc3339, to_json};
pub use kinds::{EventKind, KIND_NAMES, Shorthand, kind_name, kind_name_of};
pub use log::{
    Anchor, AuditLog, Problem, RecordPos, VerifyReport, verify, verify_after, verify_keyed, verify_segment, verify_with_anchor,
    verify_with_key_file,
};
pub use log_key::LogKey;

/// Everything that can go wrong in the log, its key and the watch filters.
///
/// Messages follow warrant's style: lowercase, "`<what failed> <object>: <cause>`".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation on the audit log failed.
    #[error("cannot {action} audit log {}: {source}", path.display())]
    Io {
        /// What was being done ("open", "read", "append to", "fsync", …).
        action: &'static str,
        /// The audit log's path.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// Another process (or another `AuditLog` in this one) holds the log's lock.
    #[error("cannot open audit log {}: it is in use by another process", path.display())]
    Locked {
        /// The audit log's path.
        path: PathBuf,
    },

    /// The last complete record, from which appends would continue, is not valid.
    /// Appending after it would hide the damage, so the log is not opened.
    #[error("cannot resume audit log {} at line {line}: {problem}", path.display())]
    Damaged {
        /// The audit log's path.
        path: PathBuf,
        /// 1-based line number of the bad record.
        line: u64,
        /// What is wrong with it.
        problem: String,
    },

    /// An earlier fsync failed, so what is on disk is unknown; the log must be
    /// reopened (which re-reads and re-checks its tail) before appending again.
    #[error("cannot append to audit log {}: an earlier fsync failed; reopen the log", path.display())]
    Poisoned {
        /// The audit log's path.
        path: PathBuf,
    },

    /// An event could not be encoded as JSON (should not happen for proto events).
    #[error("cannot encode event as JSON: {0}")]
    Encode(#[from] serde_json::Error),

    /// The audit log's key cannot be used.
    #[error("cannot use the audit log key {}: {what}", path.display())]
    Key {
        /// The key file's path.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },

    /// A watch filter named an event kind that does not exist.
    #[error("unknown event kind {name:?}: expected one of {valid}")]
    UnknownKind {
        /// The name as given.
        name: String,
        /// The valid names and shorthands, comma-separated.
        valid: String,
    },
}
