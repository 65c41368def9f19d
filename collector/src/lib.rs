//! warrant's collector: the durable, tamper-evident audit log and the live fan-out
//! of events to watchers.
//!
//! Today the agent uses this crate in-process (single-host mode): every event it
//! makes is appended to an [`AuditLog`] and published on an [`EventHub`], from which
//! each `Watch` RPC takes a [`Subscription`]. A networked collector that receives
//! agent streams will be built on the same two pieces.
//!
//! # Layout
//! - [`log`]: [`AuditLog`], an append-only file of JSON lines, each chained to the
//!   previous one by a SHA-256 hash, fsync'd per batch; [`verify`] walks the chain and
//!   names every line that was edited, removed, inserted or reordered.
//! - [`hub`]: [`EventHub`], a bounded broadcast of events to live watchers, each with
//!   a [`Filter`]; a watcher that falls behind is told how much it missed
//!   (`WatchMissed`) instead of slowing the publisher.
//! - [`requests`]: grant requests and approvals, the state machine and its file;
//!   [`approvals`]: the `Approvals` gRPC service over it, which signs grant tokens,
//!   and the `Policies` service over [`catalogue`], the policies requests name; both
//!   files are replaced whole and atomically by `json_file`.
//! - [`Error`]: the one error type of this crate.

use std::path::PathBuf;

pub mod approvals;
pub mod auth;
pub mod catalogue;
pub mod config;
pub mod decode;
pub mod hub;
mod json_file;
pub mod log;
pub mod log_key;
pub mod metrics;
pub mod requests;
pub mod server;
pub mod store;
pub mod writer;

pub use hub::{EventHub, Filter, Subscription};
pub use log::{Anchor, AuditLog, Problem, RecordPos, VerifyReport, verify, verify_after, verify_keyed, verify_with_anchor, verify_with_key_file};
pub use log_key::LogKey;
pub use store::{Reader, Store, StoreError, StoreOptions, verify_dir};

/// Everything that can go wrong in this crate.
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
