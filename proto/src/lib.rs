//! warrant's gRPC contract: generated types and services, plus the JSON form of
//! events that every tool prints (`--json`) and documents in README.md.
//!
//! # Layout
//! - `warrant/v1/events.proto`: the audit event (`Event`, one `oneof` per kind).
//! - `warrant/v1/agent.proto`: the agent's local API.
//! - `warrant/v1/collector.proto`: agent ↔ collector stream and the collector's API.
//! - `warrant/v1/token.proto`: the signed grant token a host verifies offline.
//! - `warrant/v1/launch.proto`: the launch socket, where the agent creates a
//!   session's first process; [`launch`] frames its messages.
//! - [`json`]: `Event` to the one-object-per-line JSON schema.
//! - [`token`]: signing, verifying, encoding and decoding grant tokens; keys.

pub mod json;
pub mod launch;
pub mod token;

/// Generated code for package `warrant.v1`.
pub mod v1 {
    #![allow(clippy::pedantic, clippy::large_enum_variant, missing_docs)]
    tonic::include_proto!("warrant.v1");
}

pub use v1::*;
