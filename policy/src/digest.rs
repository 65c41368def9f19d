//! A stable SHA-256 digest of what a policy *means*, so a grant can name the exact
//! policy it was approved with and an agent can check it holds that policy.
//!
//! The digest is over a canonical form, not over the file: comments, key order,
//! quoting, flow or block style, rule order, and equivalent spellings (`60m` and `1h`,
//! `[80, 81]` and `["80-81"]`) do not change it; any change to what the policy allows
//! does. The canonical form is compact JSON, with fields in this fixed order:
//!
//! ```text
//! {"warrant_policy":1,                      format version; bump on any change below
//!  "name":"db-debug",
//!  "max_ttl":[3600,0],                      [seconds, nanoseconds]
//!  "default":"allow",
//!  "on_expiry":"kill-session",
//!  "exec":[[path,action],...],              each list sorted (byte order of its JSON)
//!  "files":[[path,access,action],...],
//!  "network":[[cidr,ports|null,action],...], ports as "80-81,443", cidr normalised
//!  "approval":[2,"approver",["agent","user"]]} only when not all defaults
//! ```
//!
//! `approval` is `[approvals, approver_role, subjects]` (subjects sorted). It is left
//! out when every approval field has its default (1, `approver`, both kinds), so every
//! policy written before those fields existed keeps its digest, and grants already
//! signed with it stay valid; any non-default value changes the digest.
//!
//! Paths keep their trailing `/` (it records that the author meant a directory). The
//! form must never change for a given version: the test `digest_is_pinned` pins one.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::model::{AuditGapAction, Confinement, Policy};

/// The SHA-256 of a policy's canonical form; displays as `sha256:<64 hex digits>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(
    /// The hash bytes.
    pub [u8; 32],
);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

/// Parses the [`Display`](fmt::Display) form.
impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| DigestError(s.to_owned()))?;
        let mut bytes = [0; 32];
        hex::decode_to_slice(hex, &mut bytes).map_err(|_| DigestError(s.to_owned()))?;
        Ok(Digest(bytes))
    }
}

/// A string that is not `sha256:` and 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy digest \"{0}\" (expected sha256: and 64 hex digits)")]
pub struct DigestError(
    /// What was given.
    pub String,
);

impl Policy {
    /// The canonical form (see the module documentation), as bytes.
    #[must_use]
    pub fn canonical(&self) -> Vec<u8> {
        fn sorted(mut rules: Vec<Value>) -> Value {
            rules.sort_by_cached_key(Value::to_string);
            Value::Array(rules)
        }
        let exec = self.exec.iter().map(|r| json!([r.path.as_str(), r.action.as_str()])).collect();
        let files = self.files.iter().map(|r| json!([r.path.as_str(), r.access.as_str(), r.action.as_str()])).collect();
        let network = self
            .network
            .iter()
            .map(|r| json!([r.cidr.to_string(), r.ports.as_ref().map(ToString::to_string), r.action.as_str()]))
            .collect();
        // Built as text so the field order is fixed by this code, not by a map type.
        let mut fields: Vec<(&str, Value)> = vec![
            ("warrant_policy", json!(1)),
            ("name", json!(self.name)),
            ("max_ttl", json!([self.max_ttl.as_secs(), self.max_ttl.subsec_nanos()])),
            ("default", json!(self.default.as_str())),
            ("on_expiry", json!(self.on_expiry.as_str())),
            ("exec", sorted(exec)),
            ("files", sorted(files)),
            ("network", sorted(network)),
        ];
        if !self.bind.is_empty() {
            let bind = self
                .bind
                .iter()
                .map(|r| json!([r.cidr.to_string(), r.ports.as_ref().map(ToString::to_string), r.action.as_str()]))
                .collect();
            fields.push(("bind", sorted(bind)));
        }
        if !self.unix.is_empty() {
            let unix = self.unix.iter().map(|r| json!([r.name.to_string(), r.action.as_str()])).collect();
            fields.push(("unix", sorted(unix)));
        }
        if !self.approval.is_default() {
            let a = &self.approval;
            let subjects: Vec<&str> = a.subjects.iter().map(|k| k.as_str()).collect();
            fields.push(("approval", json!([a.approvals, a.approver_role, subjects])));
        }
        // `on_audit_gap` came later: a field of its own, so the digests of policies
        // that set the others stay what they were.
        let c = &self.confinement;
        let others = Confinement { on_audit_gap: AuditGapAction::Log, ..*c };
        if !others.is_default() {
            fields.push(("confinement", json!([c.max_processes, c.on_max_processes.as_str(), c.io_uring, c.raw_sockets])));
        }
        if c.on_audit_gap != AuditGapAction::Log {
            fields.push(("on_audit_gap", json!(c.on_audit_gap.as_str())));
        }
        let mut out = String::from("{");
        for (i, (key, value)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}:{value}", Value::from(*key));
        }
        out.push('}');
        out.into_bytes()
    }

    /// The SHA-256 of [`Policy::canonical`].
    #[must_use]
    pub fn digest(&self) -> Digest {
        Digest(Sha256::digest(self.canonical()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB_DEBUG: &str = include_str!("../examples/db-debug.yaml");

    fn parse(text: &str) -> Policy {
        Policy::from_yaml(text, "t.yaml").unwrap()
    }

    #[test]
    fn canonical_form() {
        let p = parse(DB_DEBUG);
        assert_eq!(
            String::from_utf8(p.canonical()).unwrap(),
            concat!(
                r#"{"warrant_policy":1,"name":"db-debug","max_ttl":[3600,0],"default":"allow","on_expiry":"kill-session","#,
                r#""exec":[["/usr/bin/curl","kill"],["/usr/bin/psql","allow"]],"#,
                r#""files":[["/etc/shadow","any","kill-session"],["/var/lib/postgresql/","write","deny"]],"#,
                r#""network":[["0.0.0.0/0",null,"drop"],["10.0.0.0/8","5432","allow"]]}"#
            )
        );
    }

    /// The digest of the example is fixed forever (for format version 1): a change here
    /// means every digest ever issued stops matching.
    #[test]
    fn digest_is_pinned() {
        let d = parse(DB_DEBUG).digest();
        assert_eq!(d.to_string(), "sha256:d53040b39f0b358b592935984ccd002cc2eae42201493903e56b9501e20a4003");
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
    }

    #[test]
    fn formatting_does_not_change_the_digest() {
        let reference = parse(DB_DEBUG).digest();
        let same = "# the same policy, written differently\n\
            on_expiry: kill-session\n\
            network:\n\
            - {action: drop, cidr: 0.0.0.0/0}\n\
            - cidr: \"10.0.0.0/8\"\n  action: allow\n  ports: [\"5432-5432\"]\n\
            files:\n\
            - {path: /etc/shadow, access: any, action: kill-session}\n\
            - {path: '/var/lib/postgresql/', access: write, action: deny}\n\
            exec: [{path: /usr/bin/curl, action: kill}, {path: /usr/bin/psql, action: allow}]\n\
            default: allow\n\
            max_ttl: 60m\n\
            name: db-debug\n";
        assert_eq!(parse(same).digest(), reference);
    }

    #[test]
    fn every_change_in_meaning_changes_the_digest() {
        let reference = parse(DB_DEBUG).digest();
        let edits = [
            ("name: db-debug", "name: db-debug2"),
            ("max_ttl: 1h", "max_ttl: 2h"),
            ("default: allow", "default: deny"),
            ("/usr/bin/psql", "/usr/bin/psql2"),
            ("action: kill}", "action: deny}"),
            ("access: write", "access: read"),
            ("/var/lib/postgresql/", "/var/lib/postgresql"),
            ("10.0.0.0/8", "10.0.0.0/9"),
            ("[5432]", "[5433]"),
            ("ports: [5432], ", ""),
            ("on_expiry: kill-session", "on_expiry: drop"),
            ("on_expiry: kill-session", "on_expiry: kill-session\napprovals: 2"),
            ("on_expiry: kill-session", "on_expiry: kill-session\napprover_role: dba"),
            ("on_expiry: kill-session", "on_expiry: kill-session\nsubjects: [user]"),
        ];
        for (from, to) in edits {
            let edited = DB_DEBUG.replacen(from, to, 1);
            assert_ne!(edited, DB_DEBUG, "{from}");
            assert_ne!(parse(&edited).digest(), reference, "{from} -> {to}");
        }
    }

    /// Spelling out the approval defaults is formatting, not meaning.
    #[test]
    fn default_approval_fields_keep_the_digest() {
        let explicit = DB_DEBUG.replacen(
            "on_expiry: kill-session",
            "on_expiry: kill-session\napprovals: 1\napprover_role: approver\nsubjects: [agent, user]",
            1,
        );
        assert_ne!(explicit, DB_DEBUG);
        assert_eq!(parse(&explicit).digest(), parse(DB_DEBUG).digest());
    }

    /// `on_audit_gap: log` is the default (same digest); `kill-session` is meaning,
    /// alone or beside the other confinement fields, whose digest it leaves alone.
    #[test]
    fn on_audit_gap_changes_the_digest_only_when_it_is_not_the_default() {
        let with = |extra: &str| parse(&DB_DEBUG.replacen("on_expiry: kill-session", &format!("on_expiry: kill-session\n{extra}"), 1)).digest();
        let reference = parse(DB_DEBUG).digest();
        assert_eq!(with("on_audit_gap: log"), reference);
        assert_ne!(with("on_audit_gap: kill-session"), reference);
        assert_eq!(with("max_processes: 10\non_audit_gap: log"), with("max_processes: 10"));
        assert_ne!(with("max_processes: 10\non_audit_gap: kill-session"), with("max_processes: 10"));
        assert_eq!(parse(&DB_DEBUG.replacen("on_expiry: kill-session", "on_expiry: kill-session\non_audit_gap: kill-session", 1))
            .confinement
            .on_audit_gap, crate::AuditGapAction::KillSession);
    }

    #[test]
    fn digest_text() {
        assert_eq!(
            "sha1:00".parse::<Digest>().unwrap_err().to_string(),
            r#"invalid policy digest "sha1:00" (expected sha256: and 64 hex digits)"#
        );
        assert!("sha256:00".parse::<Digest>().is_err());
    }
}
