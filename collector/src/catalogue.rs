//! The policy catalogue: the policies grant requests may name, every version kept
//! by digest, and its file on disk.
//!
//! Only an admin pushes (the service checks); a request names a policy and gets the
//! current version, or pins one by digest, and keeps that version's digest and text
//! for good, so a later push never changes what an approver approves. A push of the
//! current version again changes nothing; a push of an older version makes it
//! current again. The catalogue is `policies.json` in the data dir (whole file,
//! replaced atomically, like `requests.json`), written before the caller hears of
//! the change.
//!
//! An admin may retire a policy: new requests (and extensions, which are new
//! requests) may no longer name any of its versions, and pending requests made
//! against it can no longer be approved (they can still be denied, or expire);
//! grants already issued are unaffected, since they are signed tokens the agents
//! check by themselves. Every version is kept, so `show` and the requests that
//! pinned one still read it. Retirement belongs to the name and is kept on its
//! current version in the file; a later push of any version of the name puts it
//! back in use.
//!
//! A policy that exists here parsed, and names an approver role that is a collector
//! person role other than `requester` (whose holders would approve each other's
//! requests): the rules of a request's approval are checked when the policy is
//! pushed, by an admin, not written by whoever asks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use warrant_policy::Policy;

use crate::auth::Role;

/// Longest policy text accepted, in bytes.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// The file's name in the data dir.
pub const FILE: &str = "policies.json";

/// One version of a policy, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The policy's `name:`.
    pub name: String,
    /// `sha256:…` of its canonical form.
    pub digest: String,
    /// The YAML as first pushed with this digest.
    pub text: String,
    /// Who pushed it last (certificate name).
    pub pushed_by: String,
    /// When it was pushed last (ns since the epoch); the newest of a name is current.
    pub pushed_ns: i64,
    /// Set on the current version of a retired policy (absent from files written
    /// before retirement existed, and from every other version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<Retired>,
}

/// Who retired a policy, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    /// Certificate name of the admin who retired it.
    pub by: String,
    /// When (ns since the epoch).
    pub ns: i64,
    /// Their reason; may be empty.
    pub reason: String,
}

impl Version {
    /// The parsed policy. Stored text parsed when it was pushed; the same parser
    /// accepts it now.
    ///
    /// # Errors
    /// The parser's problems, should a newer parser refuse an old text.
    pub fn policy(&self) -> Result<Policy, warrant_policy::Error> {
        Policy::from_yaml(&self.text, &format!("catalogue policy {}", self.name))
    }
}

/// Why a catalogue operation was refused (each is audited by the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The text is not a valid policy: one `file:line: field: message` line each.
    #[error("invalid policy:\n{0}")]
    Invalid(String),
    /// The text is too long.
    #[error("policy {file} is {len} bytes: at most {MAX_POLICY_BYTES} are accepted")]
    TooLong {
        /// The file, as named by the pusher.
        file: String,
        /// Its length.
        len: usize,
    },
    /// The approver role is not one a collector person holds.
    #[error("{file}: approver_role: policy {policy} names approver_role {role:?}, which is not a collector person role (approver, requester, watcher, responder or admin)")]
    ApproverRole {
        /// The file.
        file: String,
        /// The policy.
        policy: String,
        /// The role it names.
        role: String,
    },
    /// The approver role is `requester`: whoever may ask for a grant could approve
    /// a peer's, so two requesters would grant each other anything the policy allows.
    #[error("{file}: approver_role: policy {policy} names approver_role \"requester\": the role that asks for grants would approve them, so requesters could approve each other's requests and no approver would ever see one; name a role that approves, such as approver (the default)")]
    RequesterApproves {
        /// The file.
        file: String,
        /// The policy.
        policy: String,
    },
    /// No policy of that name.
    #[error("policy {name:?} is not in the collector's catalogue{known}\n\nAn admin adds policies with `warrant policy push FILE`; `warrant policy list` shows them.")]
    UnknownPolicy {
        /// The name asked for.
        name: String,
        /// ": its policies are a, b" or " (it is empty)".
        known: String,
    },
    /// No version of that policy has the digest.
    #[error("policy {name:?} has no version {digest} in the collector's catalogue (`warrant policy list --all` shows its versions)")]
    UnknownVersion {
        /// The policy.
        name: String,
        /// The digest asked for.
        digest: String,
    },
    /// The digest is not `sha256:` and 64 hex digits.
    #[error("{0}")]
    BadDigest(String),
    /// The policy is retired: no new request may name it, and no pending one
    /// made against it is approved.
    #[error("policy {name:?} was retired by {by} at {at}{reason}: no new request may name it, and requests made against it are not approved (an admin puts it back in use with `warrant policy push`)")]
    Retired {
        /// The policy.
        name: String,
        /// Who retired it.
        by: String,
        /// When, RFC 3339.
        at: String,
        /// " (reason: …)" or "".
        reason: String,
    },
}

/// Failure to load or save the catalogue file.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} policy catalogue {}: {cause}", path.display())]
pub struct StoreError {
    /// "read", "parse", "write".
    action: &'static str,
    /// The file.
    path: PathBuf,
    /// Why.
    cause: String,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// A version never seen before; now current.
    New(Version),
    /// An older version made current again.
    Current(Version),
    /// It was the current version already: nothing changed.
    Unchanged(Version),
    /// A version of a retired policy (new, older or its current one): now
    /// current, and the policy is in use again.
    Reinstated(Version),
}

impl Pushed {
    /// The version pushed.
    #[must_use]
    pub fn version(&self) -> &Version {
        match self {
            Pushed::New(v) | Pushed::Current(v) | Pushed::Unchanged(v) | Pushed::Reinstated(v) => v,
        }
    }
}

/// Every policy version the collector holds, and the file that keeps them.
#[derive(Debug, Default)]
pub struct Catalogue {
    /// `policies.json` in the data dir; `None` keeps them in memory (tests).
    path: Option<PathBuf>,
    /// By name, then versions in push order (the last is current).
    items: BTreeMap<String, Vec<Version>>,
}

impl Catalogue {
    /// In memory only.
    #[must_use]
    pub fn in_memory() -> Catalogue {
        Catalogue::default()
    }

    /// Loads `dir/policies.json` (empty when absent).
    ///
    /// # Errors
    /// An unreadable or damaged file: policies are never silently dropped.
    pub fn open(dir: &Path) -> Result<Catalogue, StoreError> {
        let path = dir.join(FILE);
        let versions = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Vec<Version>>(&bytes)
                .map_err(|e| StoreError { action: "parse", path: path.clone(), cause: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StoreError { action: "read", path, cause: e.to_string() }),
        };
        let mut items: BTreeMap<String, Vec<Version>> = BTreeMap::new();
        for v in versions {
            items.entry(v.name.clone()).or_default().push(v);
        }
        for list in items.values_mut() {
            list.sort_by_key(|v| v.pushed_ns);
        }
        Ok(Catalogue { path: Some(path), items })
    }

    /// Writes every version: a temp file, fsync, rename.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else { return Ok(()) };
        let all: Vec<&Version> = self.items.values().flatten().collect();
        crate::json_file::replace(path, &all).map_err(|e| StoreError { action: "write", path: path.clone(), cause: e.to_string() })
    }

    /// Parses and adds `text` (from `file`, for messages), pushed by `by`.
    ///
    /// # Errors
    /// A [`Refusal`]: too long, not a valid policy, an approver role no person holds
    /// or `requester`.
    pub fn push(&mut self, text: &str, file: &str, by: &str, now: i64) -> Result<Pushed, Refusal> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(Refusal::TooLong { file: file.to_owned(), len: text.len() });
        }
        let policy = Policy::from_yaml(text, file).map_err(|e| Refusal::Invalid(e.to_string()))?;
        let role = &policy.approval.approver_role;
        if Role::parse(role).is_err() || role == "agent" {
            return Err(Refusal::ApproverRole { file: file.to_owned(), policy: policy.name.clone(), role: role.clone() });
        }
        if Role::parse(role) == Ok(Role::Requester) {
            return Err(Refusal::RequesterApproves { file: file.to_owned(), policy: policy.name.clone() });
        }
        let digest = policy.digest().to_string();
        let list = self.items.entry(policy.name.clone()).or_default();
        // Any push puts a retired policy back in use.
        let was_retired = list.last().is_some_and(|l| l.retired.is_some());
        for v in list.iter_mut() {
            v.retired = None;
        }
        if let Some(last) = list.last()
            && last.digest == digest
        {
            return Ok(if was_retired { Pushed::Reinstated(last.clone()) } else { Pushed::Unchanged(last.clone()) });
        }
        // Push times only grow, so the last in the list stays the current one even
        // when the clock steps back.
        let at = list.last().map_or(now, |l| now.max(l.pushed_ns.saturating_add(1)));
        if let Some(i) = list.iter().position(|v| v.digest == digest) {
            let mut v = list.remove(i);
            v.pushed_ns = at;
            by.clone_into(&mut v.pushed_by);
            list.push(v.clone());
            return Ok(if was_retired { Pushed::Reinstated(v) } else { Pushed::Current(v) });
        }
        let v = Version { name: policy.name, digest, text: text.to_owned(), pushed_by: by.to_owned(), pushed_ns: at, retired: None };
        list.push(v.clone());
        Ok(if was_retired { Pushed::Reinstated(v) } else { Pushed::New(v) })
    }

    /// Retires `name` (every version), by `by` for `reason`. `Ok(true)` when it was
    /// in use, `Ok(false)` when it was retired already (nothing changes: the first
    /// retirement's who, when and why stand).
    ///
    /// # Errors
    /// No such policy.
    pub fn retire(&mut self, name: &str, by: &str, reason: &str, now: i64) -> Result<bool, Refusal> {
        self.get(name, "")?;
        let Some(last) = self.items.get_mut(name).and_then(|l| l.last_mut()) else {
            return Err(Refusal::UnknownPolicy { name: name.to_owned(), known: String::new() });
        };
        if last.retired.is_some() {
            return Ok(false);
        }
        last.retired = Some(Retired { by: by.to_owned(), ns: now, reason: reason.to_owned() });
        Ok(true)
    }

    /// Who retired `name`, when and why; `None` while it is in use (or unknown).
    #[must_use]
    pub fn retired(&self, name: &str) -> Option<&Retired> {
        self.items.get(name).and_then(|l| l.last()).and_then(|v| v.retired.as_ref())
    }

    /// `Ok` unless `name` is retired.
    ///
    /// # Errors
    /// [`Refusal::Retired`], saying who retired it, when and why.
    pub fn in_use(&self, name: &str) -> Result<(), Refusal> {
        match self.retired(name) {
            None => Ok(()),
            Some(r) => Err(Refusal::Retired {
                name: name.to_owned(),
                by: r.by.clone(),
                at: warrant_audit::json::rfc3339(r.ns),
                reason: if r.reason.is_empty() { String::new() } else { format!(" (reason: {:?})", r.reason) },
            }),
        }
    }

    /// [`Catalogue::get`] for a new request: also refused when the policy is retired.
    ///
    /// # Errors
    /// As [`Catalogue::get`], and [`Refusal::Retired`].
    pub fn get_for_request(&self, name: &str, digest: &str) -> Result<&Version, Refusal> {
        let v = self.get(name, digest)?;
        self.in_use(name)?;
        Ok(v)
    }

    /// The current version of `name`, or the one with `digest` when not empty.
    ///
    /// # Errors
    /// No such policy, no such version, or a malformed digest.
    pub fn get(&self, name: &str, digest: &str) -> Result<&Version, Refusal> {
        let list = self.items.get(name).filter(|l| !l.is_empty()).ok_or_else(|| Refusal::UnknownPolicy {
            name: name.to_owned(),
            known: if self.items.is_empty() {
                " (it is empty)".to_owned()
            } else {
                format!(": its policies are {}", self.items.keys().cloned().collect::<Vec<_>>().join(", "))
            },
        })?;
        if digest.is_empty() {
            return list.last().ok_or_else(|| Refusal::UnknownPolicy { name: name.to_owned(), known: String::new() });
        }
        digest.parse::<warrant_policy::Digest>().map_err(|e| Refusal::BadDigest(e.to_string()))?;
        list.iter()
            .find(|v| v.digest == digest)
            .ok_or_else(|| Refusal::UnknownVersion { name: name.to_owned(), digest: digest.to_owned() })
    }

    /// How many versions `name` has.
    #[must_use]
    pub fn versions(&self, name: &str) -> usize {
        self.items.get(name).map_or(0, Vec::len)
    }

    /// The current version of every policy, by name; or every version (newest
    /// first within a name) with `all`. Each with whether it is current.
    #[must_use]
    pub fn list(&self, all: bool) -> Vec<(&Version, bool)> {
        let mut out = Vec::new();
        for list in self.items.values() {
            for (i, v) in list.iter().enumerate().rev() {
                let current = i + 1 == list.len();
                if current || all {
                    out.push((v, current));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "name: db\nmax_ttl: 1h\ndefault: allow\n";
    const V2: &str = "name: db\nmax_ttl: 30m\ndefault: allow\n";

    #[test]
    fn versions_by_digest_and_the_current_one() {
        let mut c = Catalogue::in_memory();
        let one = c.push(V1, "db.yaml", "admin", 10).unwrap();
        assert!(matches!(one, Pushed::New(_)));
        let d1 = one.version().digest.clone();
        // Same meaning, other formatting: the same version.
        assert!(matches!(c.push("# again\nname: db\ndefault: allow\nmax_ttl: 60m\n", "db.yaml", "admin", 20).unwrap(), Pushed::Unchanged(_)));
        let two = c.push(V2, "db.yaml", "root", 30).unwrap();
        let d2 = two.version().digest.clone();
        assert_ne!(d1, d2);
        assert_eq!(c.get("db", "").unwrap().digest, d2);
        assert_eq!(c.get("db", &d1).unwrap().text, V1, "old versions are kept");
        assert_eq!(c.versions("db"), 2);
        assert_eq!(c.list(false).len(), 1);
        assert_eq!(c.list(true).iter().map(|(v, cur)| (v.digest.as_str(), *cur)).collect::<Vec<_>>(), [(d2.as_str(), true), (d1.as_str(), false)]);
        // An older version pushed again is current again (a rollback).
        assert!(matches!(c.push(V1, "db.yaml", "admin", 5).unwrap(), Pushed::Current(_)));
        assert_eq!(c.get("db", "").unwrap().digest, d1, "current even with a clock that stepped back");
        assert_eq!(c.versions("db"), 2);
    }

    #[test]
    fn refusals() {
        let mut c = Catalogue::in_memory();
        let e = c.get("db", "").unwrap_err().to_string();
        assert!(e.starts_with("policy \"db\" is not in the collector's catalogue (it is empty)"), "{e}");
        let e = c.push("name: db\nmax_ttl: 1h\ndefault: allow\nexce: []\n", "db.yaml", "admin", 1).unwrap_err().to_string();
        assert!(e.contains("db.yaml:4: exce: unknown field"), "{e}");
        let e = c.push("name: db\nmax_ttl: 1h\ndefault: allow\napprover_role: agent\n", "db.yaml", "admin", 1).unwrap_err();
        assert!(matches!(e, Refusal::ApproverRole { .. }), "{e}");
        let e = c.push("name: db\nmax_ttl: 1h\ndefault: allow\napprover_role: dba\n", "db.yaml", "admin", 1).unwrap_err();
        assert!(matches!(e, Refusal::ApproverRole { .. }), "{e}");
        assert_eq!(c.versions("db"), 0, "nothing refused is kept");
        c.push(V1, "db.yaml", "admin", 1).unwrap();
        let e = c.get("web", "").unwrap_err().to_string();
        assert!(e.starts_with("policy \"web\" is not in the collector's catalogue: its policies are db"), "{e}");
        assert!(matches!(c.get("db", "sha256:00").unwrap_err(), Refusal::BadDigest(_)));
        let zero = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(c.get("db", &zero).unwrap_err(), Refusal::UnknownVersion { .. }));
        assert!(matches!(c.push(&"#".repeat(MAX_POLICY_BYTES + 1), "big.yaml", "admin", 1).unwrap_err(), Refusal::TooLong { .. }));
    }

    #[test]
    fn the_requester_role_does_not_approve() {
        let mut c = Catalogue::in_memory();
        let e = c.push("name: db\nmax_ttl: 1h\ndefault: allow\napprover_role: requester\n", "db.yaml", "admin", 1).unwrap_err();
        assert!(matches!(e, Refusal::RequesterApproves { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.starts_with("db.yaml: approver_role: policy db names approver_role \"requester\""), "names the file, the field and the policy: {text}");
        assert!(text.contains("requesters could approve each other's requests"), "says why: {text}");
        assert_eq!(c.versions("db"), 0, "the policy is not in the catalogue");
        // Every other person role is accepted, and the default (approver).
        for role in ["approver", "admin", "responder", "watcher"] {
            let text = format!("name: db-{role}\nmax_ttl: 1h\ndefault: allow\napprover_role: {role}\n");
            assert!(matches!(c.push(&text, "db.yaml", "admin", 1), Ok(Pushed::New(_))), "{role}");
        }
        assert!(matches!(c.push(V1, "db.yaml", "admin", 1), Ok(Pushed::New(_))));
    }

    #[test]
    fn retire_and_push_back_into_use() {
        let mut c = Catalogue::in_memory();
        assert!(matches!(c.retire("db", "admin", "", 1).unwrap_err(), Refusal::UnknownPolicy { .. }));
        let d1 = c.push(V1, "db.yaml", "admin", 10).unwrap().version().digest.clone();
        let d2 = c.push(V2, "db.yaml", "admin", 20).unwrap().version().digest.clone();
        assert!(c.get_for_request("db", "").is_ok());
        assert!(c.retire("db", "root", "replaced by db-ro", 30).unwrap(), "was in use");
        assert!(!c.retire("db", "other", "again", 40).unwrap(), "retired already");
        let r = c.retired("db").unwrap();
        assert_eq!((r.by.as_str(), r.ns, r.reason.as_str()), ("root", 30, "replaced by db-ro"), "the first retirement stands");
        // Neither the current version nor a pinned one is given to a request...
        for digest in ["", d1.as_str(), d2.as_str()] {
            let e = c.get_for_request("db", digest).unwrap_err();
            assert!(matches!(e, Refusal::Retired { .. }), "{e:?}");
            assert!(e.to_string().starts_with("policy \"db\" was retired by root at 1970-01-01T00:00:00.00000003"), "{e}");
            assert!(e.to_string().contains("(reason: \"replaced by db-ro\")"), "{e}");
        }
        // ...but every version is still there to read.
        assert_eq!(c.get("db", &d1).unwrap().text, V1);
        assert_eq!(c.versions("db"), 2);
        assert_eq!(c.list(true).len(), 2);
        // Any push puts it back in use, the current version's too.
        assert!(matches!(c.push(V2, "db.yaml", "admin", 50).unwrap(), Pushed::Reinstated(_)));
        assert!(c.retired("db").is_none() && c.get_for_request("db", &d1).is_ok());
        assert!(matches!(c.push(V2, "db.yaml", "admin", 60).unwrap(), Pushed::Unchanged(_)));
        c.retire("db", "root", "", 70).unwrap();
        assert!(matches!(c.push(V1, "db.yaml", "admin", 80).unwrap(), Pushed::Reinstated(_)), "an older version");
        assert_eq!(c.get_for_request("db", "").unwrap().digest, d1);
        assert!(c.list(true).iter().all(|(v, _)| v.retired.is_none()), "no stale retirement on any version");
    }

    #[test]
    fn restart_keeps_every_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalogue::open(dir.path()).unwrap();
        c.push(V1, "db.yaml", "admin", 1).unwrap();
        c.push(V2, "db.yaml", "admin", 2).unwrap();
        c.save().unwrap();
        let back = Catalogue::open(dir.path()).unwrap();
        assert_eq!(back.versions("db"), 2);
        assert_eq!(back.get("db", "").unwrap().text, V2);
        // Retirement too; and a file from before retirement existed still loads.
        let mut back = back;
        back.retire("db", "admin", "gone", 3).unwrap();
        back.save().unwrap();
        let again = Catalogue::open(dir.path()).unwrap();
        assert_eq!(again.retired("db").map(|r| r.reason.as_str()), Some("gone"));
        assert!(again.get_for_request("db", "").is_err());
        let old = r#"[{"name":"db","digest":"sha256:aa","text":"t","pushed_by":"admin","pushed_ns":1}]"#;
        std::fs::write(dir.path().join(FILE), old).unwrap();
        assert!(Catalogue::open(dir.path()).unwrap().retired("db").is_none());
        std::fs::write(dir.path().join(FILE), "[").unwrap();
        let e = Catalogue::open(dir.path()).unwrap_err().to_string();
        assert!(e.starts_with("cannot parse policy catalogue"), "{e}");
    }
}
