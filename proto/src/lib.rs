//! warrant's gRPC contract: generated types and services, the only contract
//! between its processes. The JSON form of events (what `--json` prints and the
//! audit log stores) is the audit record's, in `warrant-audit`.
//!
//! # Layout
//! - `warrant/v1/events.proto`: the audit event (`Event`, one `oneof` per kind).
//! - `warrant/v1/agent.proto`: the agent's local API.
//! - `warrant/v1/collector.proto`: agent ↔ collector stream and the collector's API.
//! - `warrant/v1/token.proto`: the signed grant token a host verifies offline.
//! - `warrant/v1/launch.proto`: the launch socket, where the agent creates a
//!   session's first process; [`launch`] frames its messages.
//! - [`token`]: signing, verifying, encoding and decoding grant tokens; keys.

pub mod launch;
pub mod token;

/// Generated code for package `warrant.v1`.
pub mod v1 {
    #![allow(clippy::pedantic, clippy::large_enum_variant, missing_docs)]
    tonic::include_proto!("warrant.v1");
}

pub use v1::*;

impl FileChange {
    /// One line for people: `rename /etc/a -> /etc/b`, `chmod 4755 /tmp/x`,
    /// `setxattr security.capability /tmp/x` (no errno: callers add it).
    #[must_use]
    pub fn summary(&self) -> String {
        let mut s = self.op.clone();
        match self.op.as_str() {
            "chmod" | "mkdir" | "mknod" if self.mode != 0 => s.push_str(&format!(" {:04o}", self.mode)),
            "chown" => {
                let id = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
                s.push_str(&format!(" {}:{}", id(self.uid), id(self.gid)));
            }
            "setxattr" | "removexattr" => s.push_str(&format!(" {}", self.name)),
            "truncate" => s.push_str(&format!(" to {}", self.size)),
            _ => {}
        }
        if self.op == "mount" && !self.target.is_empty() {
            s.push_str(&format!(" {} on", self.target));
        }
        s.push(' ');
        s.push_str(&self.path);
        if matches!(self.op.as_str(), "rename" | "link" | "symlink") {
            s.push_str(" -> ");
            s.push_str(&self.target);
        }
        s
    }
}
