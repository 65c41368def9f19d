//! Grant requests and their approvals: the state machine, and its file on disk.
//!
//! A request is `pending` until one of: enough distinct approvals from the policy's
//! approver role (→ `approved`, with a grant token signed by the collector), a denial
//! (→ `denied`, with the reason), or nobody acting before its timeout (→ `expired`).
//! Those three states are final. The rules a request must pass (TTL within the
//! policy's `max_ttl`, a subject kind the policy admits) are checked when it is made,
//! so a request that exists is one an approver may grant as it stands.
//!
//! This module knows nothing of gRPC or the log: the service (`approvals`) checks
//! identities, calls in here, and records every outcome. Every change is written to
//! `requests.json` in the data dir (whole file, replaced atomically) before the
//! caller hears of it, so a restart keeps every request and issued token.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warrant_policy::{Policy, SubjectKind};
use warrant_proto::GrantToken;
use warrant_proto::token::fresh_grant_id;

use crate::auth::Role;

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for approvals.
    Pending,
    /// Approved: the token is issued.
    Approved,
    /// Denied by an approver.
    Denied,
    /// Nobody acted in time.
    Expired,
}

impl Status {
    /// The name used on the wire and in the log.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
        }
    }
}

/// One request, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Req {
    /// `r-` and 16 hex digits.
    pub id: String,
    /// Where it is in its life.
    pub status: Status,
    /// `user:NAME` or `agent:NAME`: who the grant is for.
    pub subject: String,
    /// The certificate name that asked (never an approver of it).
    pub requested_by: String,
    /// Host pattern the token is good for.
    pub host: String,
    /// The policy's name and digest, and its text (the token file carries the text).
    pub policy_name: String,
    /// `sha256:…`.
    pub policy_digest: String,
    /// The YAML of the catalogue version the request pinned.
    pub policy_text: String,
    /// How long the grant lasts once issued.
    pub ttl_secs: u64,
    /// Why the access is needed.
    pub reason: String,
    /// From the policy: approvals needed and the role that gives them.
    pub approvals_needed: u32,
    /// From the policy.
    pub approver_role: String,
    /// Who approved so far, in order.
    pub approvers: Vec<String>,
    /// When it was made (ns since the epoch).
    pub created_ns: i64,
    /// When it expires if still pending.
    pub expires_ns: i64,
    /// Who denied it, and why.
    pub denied_by: String,
    /// The denial's reason.
    pub deny_reason: String,
    /// The issued grant id and token (`wgt1.…`), once approved.
    pub grant: String,
    /// The token.
    pub token: String,
    /// The token's end of validity.
    pub not_after_ns: i64,
    /// For an extension: the grant it extends and that grant's end, from which the
    /// new token runs on.
    pub extends: String,
    /// The extended grant's `not_after` (0 for a plain request).
    pub extends_not_after_ns: i64,
}

/// What a new request asks for, after the caller checked identities.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// The parsed policy (a catalogue version) and its text.
    pub policy: Policy,
    /// The catalogue version's text.
    pub policy_text: String,
    /// The certificate name asking.
    pub requested_by: String,
    /// `Some(name)` for an AI agent acting for the requester.
    pub for_agent: Option<String>,
    /// Host pattern; `*` for any.
    pub host: String,
    /// The grant's length.
    pub ttl: Duration,
    /// Why.
    pub reason: String,
    /// For an extension: the grant and its `not_after`.
    pub extends: Option<(String, i64)>,
}

/// Why an operation on requests was refused (each is audited by the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The TTL is longer than the policy allows.
    #[error("ttl {asked} exceeds policy {policy}'s max_ttl {max}")]
    TtlTooLong {
        /// The policy's name.
        policy: String,
        /// Asked for, human form.
        asked: String,
        /// The policy's limit, human form.
        max: String,
    },
    /// The TTL is zero.
    #[error("ttl must be longer than 0")]
    ZeroTtl,
    /// The policy does not admit the subject's kind.
    #[error("policy {policy} does not admit {kind} subjects (its subjects: {admits})")]
    SubjectKind {
        /// The policy's name.
        policy: String,
        /// The kind asked for.
        kind: SubjectKind,
        /// What it admits.
        admits: String,
    },
    /// The subject name would not make a valid token subject.
    #[error("invalid subject {0:?}: names are 1-64 of a-z, A-Z, 0-9, '.', '_', '-' and '@'")]
    BadSubject(String),
    /// The host pattern is empty or too long.
    #[error("invalid host pattern {0:?}")]
    BadHost(String),
    /// The reason is empty.
    #[error("a reason is required: say why the access is needed (e.g. \"INC-42: slow queries\")")]
    NoReason,
    /// The policy names an approver role the collector does not have.
    #[error("policy {policy} names approver_role {role:?}, which is not a collector role (approver, requester, watcher, responder or admin)")]
    UnknownApproverRole {
        /// The policy's name.
        policy: String,
        /// The role it names.
        role: String,
    },
    /// The policy's approver role is `requester` (a catalogue version pushed before
    /// pushes refused it): requesters would approve each other's requests.
    #[error("policy {policy} names approver_role \"requester\": requesters would approve each other's requests; an admin pushes a version naming a role that approves (such as approver)")]
    RequesterApproves {
        /// The policy's name.
        policy: String,
    },
    /// The named policy or version is not in the catalogue.
    #[error(transparent)]
    Catalogue(crate::catalogue::Refusal),
    /// `for_agent` names no AI agent the collector knows.
    #[error("unknown AI agent {name:?}: --for-agent names an AI-agent identity the collector knows, and {known}")]
    UnknownAgent {
        /// The name given.
        name: String,
        /// "it knows a, b" or "it knows none (…)".
        known: String,
    },
    /// The request's policy version is not in the catalogue: it was made before
    /// requests named catalogue policies, with text its requester wrote.
    #[error("request {id} cannot be approved: its policy {policy} ({digest}) is not in the collector's catalogue, so its rules were written by its requester; they ask again with `warrant request --policy NAME`")]
    Uncatalogued {
        /// The request.
        id: String,
        /// Its policy's name.
        policy: String,
        /// Its digest.
        digest: String,
    },
    /// No such request.
    #[error("unknown request {0:?}")]
    NotFound(String),
    /// No issued grant with that id.
    #[error("unknown grant {0:?}: no approved request issued it")]
    GrantNotFound(String),
    /// Only whoever asked for the grant may ask to extend it.
    #[error("grant {grant} was requested by {owner:?}: only they may extend it")]
    NotYours {
        /// The grant.
        grant: String,
        /// Who requested it.
        owner: String,
    },
    /// The request is no longer pending.
    #[error("request {id} is {status}, not pending")]
    NotPending {
        /// The request.
        id: String,
        /// Where it is.
        status: &'static str,
    },
    /// Nobody approves their own request.
    #[error("{who:?} cannot approve request {id}: it is their own request")]
    SelfApproval {
        /// The request.
        id: String,
        /// Who tried.
        who: String,
    },
    /// The caller already approved it.
    #[error("{who:?} already approved request {id}: it needs approvals from {needed} different people")]
    Twice {
        /// The request.
        id: String,
        /// Who tried.
        who: String,
        /// How many are needed.
        needed: u32,
    },
    /// The caller's role is not the policy's approver role.
    #[error("{who:?} cannot approve request {id}: policy {policy} needs role {needed} (or admin), and {who:?} has role {has}")]
    WrongRole {
        /// The request.
        id: String,
        /// Who tried.
        who: String,
        /// The policy's name.
        policy: String,
        /// The role needed.
        needed: String,
        /// The role held.
        has: Role,
    },
}

/// Failure to load or save the requests file.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} requests file {}: {cause}", path.display())]
pub struct StoreError {
    /// "read", "parse", "write".
    action: &'static str,
    /// The file.
    path: PathBuf,
    /// Why.
    cause: String,
}

/// What an approval did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approved {
    /// Recorded; still pending (this many of that many).
    Counted(u32, u32),
    /// The last approval needed: the token is issued.
    Issued,
}

/// Every request the collector knows, and the file that keeps them.
#[derive(Debug)]
pub struct Requests {
    /// `requests.json` in the data dir; `None` keeps them in memory (tests).
    path: Option<PathBuf>,
    /// By id.
    items: BTreeMap<String, Req>,
    /// How long a request may stay pending.
    timeout: Duration,
}

/// The file's name in the data dir.
pub const FILE: &str = "requests.json";

impl Requests {
    /// In memory only.
    #[must_use]
    pub fn in_memory(timeout: Duration) -> Requests {
        Requests { path: None, items: BTreeMap::new(), timeout }
    }

    /// Loads `dir/requests.json` (empty when absent).
    ///
    /// # Errors
    /// An unreadable or damaged file: requests are never silently dropped.
    pub fn open(dir: &Path, timeout: Duration) -> Result<Requests, StoreError> {
        let path = dir.join(FILE);
        let items = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Vec<Req>>(&bytes)
                .map_err(|e| StoreError { action: "parse", path: path.clone(), cause: e.to_string() })?
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(StoreError { action: "read", path, cause: e.to_string() }),
        };
        Ok(Requests { path: Some(path), items, timeout })
    }

    /// Writes every request: a temp file, fsync, rename, so a crash leaves the old
    /// file or the new one, never half of one.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else { return Ok(()) };
        let all: Vec<&Req> = self.items.values().collect();
        crate::json_file::replace(path, &all).map_err(|e| StoreError { action: "write", path: path.clone(), cause: e.to_string() })
    }

    /// One request.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<&Req> {
        self.items.get(id)
    }

    /// Requests, newest first; only pending ones unless `all`.
    #[must_use]
    pub fn list(&self, all: bool) -> Vec<&Req> {
        let mut v: Vec<&Req> = self.items.values().filter(|r| all || r.status == Status::Pending).collect();
        v.sort_by(|a, b| b.created_ns.cmp(&a.created_ns).then_with(|| a.id.cmp(&b.id)));
        v
    }

    /// The approved request that issued `grant`.
    #[must_use]
    pub fn by_grant(&self, grant: &str) -> Option<&Req> {
        self.items.values().find(|r| r.status == Status::Approved && r.grant == grant)
    }

    /// Makes a pending request, or refuses it with the reason.
    ///
    /// # Errors
    /// A [`Refusal`] saying which rule it breaks.
    pub fn create(&mut self, new: NewRequest, now: i64) -> Result<Req, Refusal> {
        let policy = &new.policy;
        let (kind, name) = match &new.for_agent {
            Some(agent) => (SubjectKind::Agent, agent.as_str()),
            None => (SubjectKind::User, new.requested_by.as_str()),
        };
        let subject = format!("{kind}:{name}");
        if warrant_proto::token::subject_parts(&subject).is_none() {
            return Err(Refusal::BadSubject(subject));
        }
        if !policy.approval.admits(kind) {
            let admits = policy.approval.subjects.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
            return Err(Refusal::SubjectKind { policy: policy.name.clone(), kind, admits });
        }
        if new.ttl.is_zero() {
            return Err(Refusal::ZeroTtl);
        }
        // An extension's token runs on from the old grant's end, so its whole length
        // (what is left of the old one plus the extra time) must fit in max_ttl.
        let lasts = match &new.extends {
            Some((_, old_end)) => new.ttl + Duration::from_nanos(u64::try_from(old_end.saturating_sub(now)).unwrap_or(0)),
            None => new.ttl,
        };
        if lasts > policy.max_ttl {
            return Err(Refusal::TtlTooLong {
                policy: policy.name.clone(),
                asked: humantime::format_duration(lasts).to_string(),
                max: humantime::format_duration(policy.max_ttl).to_string(),
            });
        }
        if new.reason.trim().is_empty() {
            return Err(Refusal::NoReason);
        }
        if new.host.is_empty() || new.host.len() > 253 {
            return Err(Refusal::BadHost(new.host));
        }
        if Role::parse(&policy.approval.approver_role).is_err() || policy.approval.approver_role == "agent" {
            return Err(Refusal::UnknownApproverRole { policy: policy.name.clone(), role: policy.approval.approver_role.clone() });
        }
        if policy.approval.approver_role == "requester" {
            return Err(Refusal::RequesterApproves { policy: policy.name.clone() });
        }
        let id = loop {
            let id = format!("r-{}", crate::writer::random_id());
            if !self.items.contains_key(&id) {
                break id;
            }
        };
        let (extends, extends_not_after_ns) = new.extends.clone().unwrap_or_default();
        let req = Req {
            id: id.clone(),
            status: Status::Pending,
            subject,
            requested_by: new.requested_by,
            host: new.host,
            policy_name: policy.name.clone(),
            policy_digest: policy.digest().to_string(),
            policy_text: new.policy_text,
            ttl_secs: new.ttl.as_secs(),
            reason: new.reason,
            approvals_needed: policy.approval.approvals,
            approver_role: policy.approval.approver_role.clone(),
            approvers: Vec::new(),
            created_ns: now,
            expires_ns: now.saturating_add(i64::try_from(self.timeout.as_nanos()).unwrap_or(i64::MAX)),
            denied_by: String::new(),
            deny_reason: String::new(),
            grant: String::new(),
            token: String::new(),
            not_after_ns: 0,
            extends,
            extends_not_after_ns,
        };
        self.items.insert(id, req.clone());
        Ok(req)
    }

    /// A pending request `who` (holding `role`) may act on, or why not.
    fn actionable(&mut self, id: &str, who: &str, role: Role, now: i64) -> Result<&mut Req, Refusal> {
        self.expire(now);
        let req = self.items.get_mut(id).ok_or_else(|| Refusal::NotFound(id.to_owned()))?;
        if req.status != Status::Pending {
            return Err(Refusal::NotPending { id: id.to_owned(), status: req.status.as_str() });
        }
        if req.requested_by == who {
            return Err(Refusal::SelfApproval { id: id.to_owned(), who: who.to_owned() });
        }
        if role != Role::Admin && role.to_string() != req.approver_role {
            return Err(Refusal::WrongRole {
                id: id.to_owned(),
                who: who.to_owned(),
                policy: req.policy_name.clone(),
                needed: req.approver_role.clone(),
                has: role,
            });
        }
        Ok(req)
    }

    /// Records `who`'s approval; at the policy's count, `sign` makes the token
    /// (the caller's signing key) and the request becomes approved.
    ///
    /// # Errors
    /// A [`Refusal`]: unknown, not pending, own request, wrong role, approved twice.
    pub fn approve(&mut self, id: &str, who: &str, role: Role, now: i64, sign: impl FnOnce(&GrantToken) -> String) -> Result<(Req, Approved), Refusal> {
        let req = self.actionable(id, who, role, now)?;
        if req.approvers.iter().any(|a| a == who) {
            return Err(Refusal::Twice { id: id.to_owned(), who: who.to_owned(), needed: req.approvals_needed });
        }
        req.approvers.push(who.to_owned());
        let have = u32::try_from(req.approvers.len()).unwrap_or(u32::MAX);
        if have < req.approvals_needed {
            return Ok((req.clone(), Approved::Counted(have, req.approvals_needed)));
        }
        let ttl = i64::try_from(Duration::from_secs(req.ttl_secs).as_nanos()).unwrap_or(i64::MAX);
        let not_after = req.extends_not_after_ns.max(now).saturating_add(ttl);
        let token = GrantToken {
            version: 1,
            grant: fresh_grant_id(),
            subject: req.subject.clone(),
            host: req.host.clone(),
            policy_digest: req.policy_digest.clone(),
            not_before_unix_ns: now,
            not_after_unix_ns: not_after,
            approvers: req.approvers.clone(),
            reason: req.reason.clone(),
            key_id: String::new(),
            issued_at_unix_ns: now,
        };
        req.token = sign(&token);
        req.grant = token.grant;
        req.not_after_ns = not_after;
        req.status = Status::Approved;
        Ok((req.clone(), Approved::Issued))
    }

    /// Denies a pending request with a reason.
    ///
    /// # Errors
    /// A [`Refusal`]: unknown, not pending, own request, wrong role.
    pub fn deny(&mut self, id: &str, who: &str, role: Role, reason: &str, now: i64) -> Result<Req, Refusal> {
        let req = self.actionable(id, who, role, now)?;
        req.status = Status::Denied;
        who.clone_into(&mut req.denied_by);
        reason.clone_into(&mut req.deny_reason);
        Ok(req.clone())
    }

    /// Marks every pending request past its timeout expired; returns them.
    pub fn expire(&mut self, now: i64) -> Vec<Req> {
        let mut gone = Vec::new();
        for req in self.items.values_mut() {
            if req.status == Status::Pending && now >= req.expires_ns {
                req.status = Status::Expired;
                gone.push(req.clone());
            }
        }
        gone
    }

}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000_000;

    fn policy(extra: &str) -> (Policy, String) {
        let text = format!("name: db\nmax_ttl: 1h\ndefault: allow\n{extra}");
        (Policy::from_yaml(&text, "db.yaml").unwrap(), text)
    }

    fn new(by: &str, extra: &str, ttl_min: u64) -> NewRequest {
        let (policy, policy_text) = policy(extra);
        NewRequest {
            policy,
            policy_text,
            requested_by: by.into(),
            for_agent: None,
            host: "*".into(),
            ttl: Duration::from_secs(ttl_min * 60),
            reason: "INC-42".into(),
            extends: None,
        }
    }

    fn sign(t: &GrantToken) -> String {
        format!("signed:{}:{}", t.grant, t.approvers.join(","))
    }

    #[test]
    fn quorum_issues_at_the_count() {
        let mut r = Requests::in_memory(Duration::from_secs(3600));
        let req = r.create(new("alice", "approvals: 2\n", 30), 0).unwrap();
        assert_eq!((req.status, req.subject.as_str(), req.approvals_needed), (Status::Pending, "user:alice", 2));
        let (req1, what) = r.approve(&req.id, "bob", Role::Approver, MIN, sign).unwrap();
        assert_eq!((req1.status, what), (Status::Pending, Approved::Counted(1, 2)));
        assert!(matches!(r.approve(&req.id, "bob", Role::Approver, MIN, sign), Err(Refusal::Twice { .. })));
        let (done, what) = r.approve(&req.id, "carol", Role::Admin, 2 * MIN, sign).unwrap();
        assert_eq!((done.status, what), (Status::Approved, Approved::Issued));
        assert_eq!(done.token, format!("signed:{}:bob,carol", done.grant));
        assert_eq!(done.not_after_ns, 32 * MIN);
        assert_eq!(r.by_grant(&done.grant).map(|x| x.id.as_str()), Some(req.id.as_str()));
        assert!(matches!(r.approve(&req.id, "dave", Role::Approver, 3 * MIN, sign), Err(Refusal::NotPending { status: "approved", .. })));
    }

    #[test]
    fn refusals() {
        let mut r = Requests::in_memory(Duration::from_secs(3600));
        let e = r.create(new("alice", "", 90), 0).unwrap_err();
        assert_eq!(e.to_string(), "ttl 1h 30m exceeds policy db's max_ttl 1h");
        let mut a = new("alice", "subjects: [user]\n", 5);
        a.for_agent = Some("claude".into());
        assert_eq!(r.create(a, 0).unwrap_err().to_string(), "policy db does not admit agent subjects (its subjects: user)");
        let mut a = new("alice", "", 5);
        a.for_agent = Some("claude".into());
        assert_eq!(r.create(a, 0).unwrap().subject, "agent:claude");
        assert!(matches!(r.create(new("alice", "approver_role: dba\n", 5), 0), Err(Refusal::UnknownApproverRole { .. })));
        // A catalogue version kept from before pushes refused it gets no request.
        let before = r.list(true).len();
        assert!(matches!(r.create(new("alice", "approver_role: requester\n", 5), 0), Err(Refusal::RequesterApproves { .. })));
        assert_eq!(r.list(true).len(), before, "no request was made");

        let req = r.create(new("alice", "", 5), 0).unwrap();
        let e = r.approve(&req.id, "alice", Role::Approver, 0, sign).unwrap_err();
        assert_eq!(e.to_string(), format!("\"alice\" cannot approve request {}: it is their own request", req.id));
        let e = r.approve(&req.id, "alice", Role::Admin, 0, sign).unwrap_err();
        assert!(matches!(e, Refusal::SelfApproval { .. }), "not even an admin approves their own");
        let e = r.approve(&req.id, "wally", Role::Watcher, 0, sign).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("\"wally\" cannot approve request {}: policy db needs role approver (or admin), and \"wally\" has role watcher", req.id)
        );
        let d = r.deny(&req.id, "bob", Role::Approver, "not during the freeze", 0).unwrap();
        assert_eq!((d.status, d.denied_by.as_str(), d.deny_reason.as_str()), (Status::Denied, "bob", "not during the freeze"));
        let e = r.approve(&req.id, "carol", Role::Approver, 0, sign).unwrap_err();
        assert_eq!(e.to_string(), format!("request {} is denied, not pending", req.id));
        assert!(matches!(r.approve("r-nope", "carol", Role::Approver, 0, sign), Err(Refusal::NotFound(_))));
    }

    #[test]
    fn unanswered_requests_expire() {
        let mut r = Requests::in_memory(Duration::from_secs(60));
        let req = r.create(new("alice", "", 5), 0).unwrap();
        assert!(r.expire(MIN - 1).is_empty());
        assert_eq!(r.list(false).len(), 1);
        let gone = r.expire(MIN);
        assert_eq!((gone.len(), gone[0].status), (1, Status::Expired));
        assert!(r.expire(2 * MIN).is_empty(), "expired once");
        assert!(r.list(false).is_empty() && r.list(true).len() == 1);
        let req2 = r.create(new("alice", "", 5), MIN).unwrap();
        // Acting on a request past its timeout finds it expired.
        assert!(matches!(r.approve(&req2.id, "bob", Role::Approver, 3 * MIN, sign), Err(Refusal::NotPending { status: "expired", .. })));
        assert!(matches!(r.deny(&req.id, "bob", Role::Approver, "x", 3 * MIN), Err(Refusal::NotPending { .. })));
    }

    #[test]
    fn extension_runs_on_from_the_old_end_within_max_ttl() {
        let mut r = Requests::in_memory(Duration::from_secs(3600));
        let mut ext = new("alice", "", 15);
        ext.extends = Some(("g-1".into(), 50 * MIN));
        assert_eq!(r.create(ext.clone(), 0).unwrap_err().to_string(), "ttl 1h 5m exceeds policy db's max_ttl 1h");
        ext.extends = Some(("g-1".into(), 40 * MIN));
        let req = r.create(ext, 0).unwrap();
        assert_eq!(req.extends, "g-1");
        let (done, _) = r.approve(&req.id, "bob", Role::Approver, MIN, sign).unwrap();
        assert_eq!(done.not_after_ns, 55 * MIN, "the new token ends 15m after the old one");
    }

    #[test]
    fn restart_keeps_requests() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Requests::open(dir.path(), Duration::from_secs(60)).unwrap();
        let req = r.create(new("alice", "", 5), 0).unwrap();
        r.save().unwrap();
        let back = Requests::open(dir.path(), Duration::from_secs(60)).unwrap();
        assert_eq!(back.get(&req.id), Some(&req));
        std::fs::write(dir.path().join(FILE), "{").unwrap();
        let e = Requests::open(dir.path(), Duration::from_secs(60)).unwrap_err().to_string();
        assert!(e.starts_with("cannot parse requests file"), "{e}");
    }
}
