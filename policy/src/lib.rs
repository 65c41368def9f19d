//! warrant's policy format: what a session under a grant may exec, read, write and
//! connect to, and what happens otherwise.
//!
//! A policy is a YAML file (see `examples/`):
//!
//! ```yaml
//! name: db-debug
//! max_ttl: 1h
//! default: allow
//! exec:    [{path: /usr/bin/psql, action: allow}, {path: /usr/bin/curl, action: kill}]
//! files:   [{path: /var/lib/postgresql/, access: write, action: deny},
//!           {path: /etc/shadow, access: any, action: kill-session}]
//! network: [{cidr: 10.0.0.0/8, ports: [5432], action: allow},
//!           {cidr: 0.0.0.0/0, action: drop}]
//! unix:    [{path: /run/postgresql/, action: allow}, {abstract: /tmp/dbus-, action: deny}]
//! on_expiry: kill-session
//! approvals: 2               # optional: distinct approvals a request needs (default 1)
//! approver_role: approver    # optional: the collector role approvers hold (default approver)
//! subjects: [user, agent]    # optional: who may be granted it (default both)
//! ```
//!
//! This crate is pure user-space code shared by the CLI (`warrant policy check`) and the
//! agent (which compiles policies into kernel maps and labels events with the rule that
//! applied). It knows nothing of eBPF, gRPC or the agent.
//!
//! # Layout
//! - [`model`]: the validated types: [`Policy`], [`Approval`], [`SubjectKind`], [`ExecRule`], [`FileRule`],
//!   [`NetRule`], [`Action`], [`Access`], [`ExpiryAction`], [`PathPattern`], [`Cidr`],
//!   [`PortSet`].
//! - `yaml`: YAML text to a tree of nodes that know their line (saphyr-parser events),
//!   refusing anchors, aliases, tags and multiple documents.
//! - `parse`: that tree to a [`Policy`] ([`Policy::from_yaml`], [`Policy::load`]), strict
//!   (unknown or duplicate keys are errors) and listing every [`Problem`] as
//!   `file:line: field: message`.
//! - [`matcher`]: the reference decisions: [`Policy::decide_exec`],
//!   [`Policy::decide_file`], [`Policy::decide_connect`] give a [`Decision`] naming the
//!   [`RuleRef`] that applied; the module documents the matching semantics.
//! - [`digest`]: [`Policy::canonical`] and [`Policy::digest`], a SHA-256 that changes
//!   with the policy's meaning and not with its formatting.
//! - [`describe`]: [`Policy::grants`], what a policy grants in words, one line per rule
//!   and limit, for approvers.
//! - [`sandbox`]: the `exec:` and `files:` rules as a Landlock ruleset plan, which
//!   `warrant exec` applies to itself before running the command.
//! - [`Error`]: the one error type of this crate.

use std::path::PathBuf;

pub mod describe;
pub mod digest;
pub mod matcher;
pub mod protect;
pub mod model;
mod parse;
pub mod sandbox;
mod yaml;

pub use digest::{Digest, DigestError};
pub use matcher::{Decision, RuleList, RuleRef};
pub use model::{
    Access, Action, Approval, AuditGapAction, Cidr, CidrError, Confinement, ExecRule, ExpiryAction, MaxProcessesAction, FileRule, NetRule, PathError, PathPattern,
    Policy, PortError, PortSet, SubjectKind, UnixName, UnixNameError, UnixRule, UnknownName,
};
pub use parse::Problem;

/// Everything that can go wrong loading a policy.
///
/// Messages follow warrant's style: lowercase, `<what failed> <object>: <cause>`, and
/// for problems in the file, `file:line: field: message`, one per line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read policy {}: {}", path.display(), io_cause(source))]
    Read {
        /// The file, as given.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// The file was read but is not a valid policy.
    #[error("{}", problems.iter().map(|p| format!("{file}:{}: {p}", p.line)).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file's name as given to the parser.
        file: String,
        /// Everything wrong with it, in line order; never empty.
        problems: Vec<Problem>,
    },
}

/// An I/O error's reason without Rust's decorations: "no such file or directory"
/// rather than "No such file or directory (os error 2)".
fn io_cause(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every example policy shipped with the crate parses, and its JSON form (which is
    /// also YAML) parses back to the same policy.
    #[test]
    fn examples_parse_and_round_trip_through_json() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let policy = Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
                let json = serde_json::to_string_pretty(&policy).unwrap();
                let back = Policy::from_yaml(&json, "json").unwrap_or_else(|e| panic!("{e}\n{json}"));
                assert_eq!(back, policy);
                assert_eq!(back.digest(), policy.digest());
                names.push(policy.name);
            }
        }
        names.sort();
        assert_eq!(names, ["db-debug", "incident-readonly", "readonly", "web-restart"]);
    }

    #[test]
    fn json_form() {
        let p = Policy::from_yaml(include_str!("../examples/db-debug.yaml"), "db-debug.yaml").unwrap();
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            concat!(
                r#"{"name":"db-debug","max_ttl":"1h","default":"allow","#,
                r#""exec":[{"path":"/usr/bin/psql","action":"allow"},{"path":"/usr/bin/curl","action":"kill"}],"#,
                r#""files":[{"path":"/var/lib/postgresql/","access":"write","action":"deny"},"#,
                r#"{"path":"/etc/shadow","access":"any","action":"kill-session"}],"#,
                r#""network":[{"cidr":"10.0.0.0/8","ports":[5432],"action":"allow"},{"cidr":"0.0.0.0/0","action":"drop"}],"#,
                r#""on_expiry":"kill-session"}"#
            )
        );
    }

    #[test]
    fn io_causes_are_plain() {
        let enoent = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_cause(&enoent), "no such file or directory");
        assert_eq!(io_cause(&std::io::Error::other("Bad thing")), "bad thing");
    }
}
