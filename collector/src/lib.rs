//! warrant's collector: the fleet's record. Agents stream their events to it; it
//! keeps them in one durable, hash-chained log cut into segments, indexes them,
//! serves queries and live watches, and routes kills and revokes back to agents.
//!
//! The record itself (the JSON form, the kinds, the chained log, `verify`, the live
//! tail) is `warrant-audit`'s, shared with the agent's single-host log.
//!
//! # Layout, in the order an event travels
//! - [`config`]: flags and the TOML file; [`auth`]: certificate names to roles.
//! - [`server`]: the gRPC server: `Ingest.Stream` from agents (dedup by
//!   (agent, boot, seq), gaps recorded) and the `Collector` service for people.
//! - [`writer`]: the log writer (dedup, chain, write), the durable stage (group
//!   commit: one fdatasync for every write waiting, then ack, publish to the
//!   `warrant_audit::EventHub`, hand to the indexer) and the indexer.
//! - [`store`]: [`Store`]: segments of one `warrant_audit::AuditLog` chain, their
//!   index, queries ([`Reader`]), retention, and [`verify_dir`] across segments.
//! - [`requests`]: grant requests and approvals, the state machine and its file;
//!   [`approvals`]: the `Approvals` gRPC service over it, which signs grant tokens,
//!   and the `Policies` service over [`catalogue`], the policies requests name; both
//!   files are replaced whole and atomically by `json_file`.
//! - [`metrics`]: the Prometheus counters and their HTTP responder.

pub mod approvals;
pub mod auth;
pub mod catalogue;
pub mod config;
mod json_file;
pub mod metrics;
pub mod requests;
pub mod server;
pub mod store;
pub mod writer;

pub use store::{Reader, Store, StoreError, StoreOptions, verify_dir};
