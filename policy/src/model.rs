//! The validated policy types: what a parsed policy *is*, independent of YAML.
//!
//! Every value type here checks itself when built ([`PathPattern::new`], [`Cidr::new`],
//! [`PortSet::new`], the `FromStr` impls of the enums), so a [`Cidr`] or a [`PortSet`]
//! that exists is valid, whoever built it. Rules across a list (no two rules for the same
//! path, no two network rules sharing a port on the same CIDR) are checked by the parser,
//! because only it can name the lines; the matcher stays deterministic even for a
//! hand-built [`Policy`] that breaks them (ties go to the first rule).
//!
//! `Serialize` gives the normalised policy in the same shape as the YAML it came from,
//! so the JSON of a policy parses back to an equal policy.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// A parsed, validated policy: what a session under a grant may exec, open and
/// connect to, and what happens otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// The policy's name (`[a-z0-9._-]+`, at most [`Policy::MAX_NAME_LEN`] bytes), shown in
    /// grants and events.
    pub name: String,
    /// The longest grant this policy may be used for; a grant asking for more is refused.
    #[serde(serialize_with = "ser_duration")]
    pub max_ttl: Duration,
    /// What happens to an exec, open or connect that no rule matches. Only
    /// [`Action::can_be_default`] actions (allow, log, deny) pass the parser.
    pub default: Action,
    /// Rules on the executable of an exec, most specific path wins.
    pub exec: Vec<ExecRule>,
    /// Rules on files opened for reading or writing, most specific path (then access) wins.
    pub files: Vec<FileRule>,
    /// Rules on outgoing connections, longest prefix (then a rule with ports) wins.
    pub network: Vec<NetRule>,
    /// Rules on binding a local address and port (listeners and fixed-port
    /// clients), longest prefix then a rule with ports wins; a bind no rule matches
    /// is allowed, whatever `default` says (`drop` is for network rules).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bind: Vec<NetRule>,
    /// Rules on connects (and datagrams) to unix socket names, longest prefix wins;
    /// a name no rule matches is allowed (and recorded), whatever `default` says.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unix: Vec<UnixRule>,
    /// What happens to the session when its grant ends.
    pub on_expiry: ExpiryAction,
    /// Who must approve a request for a grant under this policy, and who may ask.
    #[serde(flatten)]
    pub approval: Approval,
    /// Limits of the session's box beyond files and network: its task count, and
    /// whether it may use io_uring.
    #[serde(flatten)]
    pub confinement: Confinement,
}

/// The session's task limit and io_uring switch. Every field has a default, so
/// policies written before these existed keep their meaning and their digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Confinement {
    /// Tasks (processes and threads) the session may have at once, enforced in the
    /// kernel: a new task over it is killed before it runs.
    #[serde(skip_serializing_if = "Confinement::is_default_max")]
    pub max_processes: u32,
    /// What going over `max_processes` does besides refusing the new task.
    #[serde(skip_serializing_if = "Confinement::is_default_on_max")]
    pub on_max_processes: MaxProcessesAction,
    /// Whether the session may use io_uring (refused by default: its kernel workers
    /// act outside the syscall hooks; when allowed, its workers are tagged too).
    #[serde(skip_serializing_if = "Confinement::is_false")]
    pub io_uring: bool,
    /// Whether the session may make raw (`SOCK_RAW`) and packet (`AF_PACKET`)
    /// sockets, which reach any peer around the network rules (refused by default).
    #[serde(skip_serializing_if = "Confinement::is_false")]
    pub raw_sockets: bool,
    /// What a gap in the session's audit trail means: a record the kernel had no
    /// room for is always counted against the session; with `kill-session` the
    /// kernel also marks the session dead at the failed record, so a session whose
    /// trail cannot be kept is stopped (fail-closed auditing).
    #[serde(skip_serializing_if = "Confinement::is_default_on_gap")]
    pub on_audit_gap: AuditGapAction,
    /// Whether the session may execute a file it may write (`exec: {writable:
    /// deny}` turns it off: W^X, planned into Landlock, so a copy of a denied
    /// program, or anything the session wrote, does not run).
    #[serde(skip_serializing_if = "Confinement::is_true")]
    pub writable_exec: bool,
}

impl Confinement {
    /// `max_processes` unless the policy says otherwise.
    pub const DEFAULT_MAX_PROCESSES: u32 = 4096;
    /// The largest `max_processes` accepted (the kernel's own pid limit is 4M).
    pub const MAX_MAX_PROCESSES: u32 = 1 << 20;

    /// Whether every field has its default (then the digest leaves it out).
    #[must_use]
    pub fn is_default(&self) -> bool {
        *self == Confinement::default()
    }

    fn is_default_max(n: &u32) -> bool {
        *n == Self::DEFAULT_MAX_PROCESSES
    }

    fn is_default_on_max(a: &MaxProcessesAction) -> bool {
        *a == MaxProcessesAction::Refuse
    }

    fn is_false(b: &bool) -> bool {
        !*b
    }

    fn is_true(b: &bool) -> bool {
        *b
    }

    fn is_default_on_gap(a: &AuditGapAction) -> bool {
        *a == AuditGapAction::Log
    }
}

impl Default for Confinement {
    fn default() -> Self {
        Self {
            max_processes: Self::DEFAULT_MAX_PROCESSES,
            on_max_processes: MaxProcessesAction::Refuse,
            io_uring: false,
            raw_sockets: false,
            on_audit_gap: AuditGapAction::Log,
            writable_exec: true,
        }
    }
}

/// What a session whose audit trail has a gap gets (`on_audit_gap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditGapAction {
    /// The loss is counted and reported as `events_lost` naming the session (the
    /// default).
    Log,
    /// The session is killed: the kernel marks it dead at the record it could not
    /// keep, so every task of it dies at its next hook.
    KillSession,
}

impl AuditGapAction {
    /// The name used in policy files and events.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AuditGapAction::Log => "log",
            AuditGapAction::KillSession => "kill-session",
        }
    }
}

impl FromStr for AuditGapAction {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [AuditGapAction::Log, AuditGapAction::KillSession]
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownName::new("action", s, "log or kill-session"))
    }
}

impl Serialize for AuditGapAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a session that goes over `max_processes` gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaxProcessesAction {
    /// The new task is killed before it runs; the session goes on (the default).
    Refuse,
    /// The whole session is killed.
    KillSession,
}

impl MaxProcessesAction {
    /// The name used in policy files and events.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            MaxProcessesAction::Refuse => "refuse",
            MaxProcessesAction::KillSession => "kill-session",
        }
    }
}

impl FromStr for MaxProcessesAction {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [MaxProcessesAction::Refuse, MaxProcessesAction::KillSession]
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownName::new("action", s, "refuse or kill-session"))
    }
}

impl Serialize for MaxProcessesAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The approval rules of a policy: how many approvals a request needs, from which
/// collector role, and which kinds of subject may ask at all. Every field has a
/// default, so policies written before approvals existed keep their meaning (and
/// their digest: see [`crate::digest`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// Distinct approvals needed before the collector signs the grant (at least 1).
    #[serde(skip_serializing_if = "Approval::is_default_count")]
    pub approvals: u32,
    /// The collector role an approver must hold (`admin` may always approve).
    #[serde(skip_serializing_if = "Approval::is_default_role")]
    pub approver_role: String,
    /// Which kinds of subject the policy admits; never empty.
    #[serde(skip_serializing_if = "Approval::is_default_subjects")]
    pub subjects: Vec<SubjectKind>,
}

impl Approval {
    /// The role approvers need unless the policy says otherwise.
    pub const DEFAULT_ROLE: &'static str = "approver";
    /// The longest approver role name accepted, in bytes.
    pub const MAX_ROLE_LEN: usize = 32;

    /// Whether `kind` may be the subject of a grant under this policy.
    #[must_use]
    pub fn admits(&self, kind: SubjectKind) -> bool {
        self.subjects.contains(&kind)
    }

    /// True when every field has its default (nothing to add to the digest).
    #[must_use]
    pub fn is_default(&self) -> bool {
        *self == Approval::default()
    }

    /// Whether `name` is a valid role name: 1 to [`Approval::MAX_ROLE_LEN`] bytes of
    /// `a-z`, `0-9`, `_` and `-`.
    #[must_use]
    pub fn is_valid_role(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= Self::MAX_ROLE_LEN
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
    }

    fn is_default_count(n: &u32) -> bool {
        *n == 1
    }

    fn is_default_role(r: &str) -> bool {
        r == Self::DEFAULT_ROLE
    }

    fn is_default_subjects(s: &[SubjectKind]) -> bool {
        s == SubjectKind::ALL
    }
}

impl Default for Approval {
    fn default() -> Self {
        Approval { approvals: 1, approver_role: Approval::DEFAULT_ROLE.to_owned(), subjects: SubjectKind::ALL.to_vec() }
    }
}

/// Who a grant is for: a person (`user:NAME`) or an AI agent acting for one
/// (`agent:NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    /// A person.
    User,
    /// An AI agent.
    Agent,
}

impl SubjectKind {
    /// Both kinds, in canonical order.
    pub const ALL: &'static [SubjectKind] = &[SubjectKind::User, SubjectKind::Agent];

    /// The name used in policies and subjects (`user`, `agent`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::User => "user",
            SubjectKind::Agent => "agent",
        }
    }
}

impl fmt::Display for SubjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubjectKind {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(SubjectKind::User),
            "agent" => Ok(SubjectKind::Agent),
            _ => Err(UnknownName { what: "subject kind", text: s.to_owned(), expected: "user or agent" }),
        }
    }
}

impl Policy {
    /// Whether a file rule of the policy names `path` or something beneath it: then the
    /// policy decides there, not a loosenable protection (see [`crate::protect`]).
    #[must_use]
    pub fn has_file_rule_at_or_under(&self, path: &str) -> bool {
        PathPattern::new(path).is_ok_and(|p| self.files.iter().any(|r| p.matches(Path::new(r.path.base()))))
    }

    /// The longest name accepted, in bytes: names end up in every event and table.
    pub const MAX_NAME_LEN: usize = 64;

    /// Whether `name` is a valid policy name: 1 to [`Policy::MAX_NAME_LEN`] bytes of
    /// `a-z`, `0-9`, `.`, `_` and `-`.
    #[must_use]
    pub fn is_valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= Self::MAX_NAME_LEN
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    }
}

/// What happens when a rule (or the default) applies to an action of the session.
///
/// Variants are ordered by how much they take away, so `max` of two actions is the
/// stricter one: allow < log < deny < drop < kill < kill-session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// The action happens.
    Allow,
    /// The action happens, and its event is flagged for review.
    Log,
    /// The syscall fails (EACCES / EPERM); the effect never happens.
    Deny,
    /// Refused as for deny, and every open socket of the session is destroyed.
    Drop,
    /// Refused as for deny, and the process that tried is killed.
    Kill,
    /// Refused as for deny, and the session's whole process tree is killed.
    KillSession,
}

impl Action {
    /// Every action, in the order the documentation lists them.
    pub const ALL: [Action; 6] =
        [Action::Allow, Action::Log, Action::Deny, Action::Kill, Action::KillSession, Action::Drop];

    /// The name used in policy files and events.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Log => "log",
            Action::Deny => "deny",
            Action::Drop => "drop",
            Action::Kill => "kill",
            Action::KillSession => "kill-session",
        }
    }

    /// Whether the syscall goes ahead (allow and log).
    #[must_use]
    pub fn permits(self) -> bool {
        matches!(self, Action::Allow | Action::Log)
    }

    /// Whether this action may be a policy's `default`. The default applies to every
    /// exec, open and connect no rule matches (every shared library load, every DNS
    /// lookup), so an action that kills or cuts the network there would end the session
    /// at its first step; such actions belong on explicit rules.
    #[must_use]
    pub fn can_be_default(self) -> bool {
        matches!(self, Action::Allow | Action::Log | Action::Deny)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownName::new("action", s, "allow, log, deny, kill, kill-session or drop"))
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Which opens a file rule applies to; also the kind of an open being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// Opened for reading only.
    Read,
    /// Opened for writing (including creating, truncating, appending).
    Write,
    /// On a rule: both reads and writes. On an open being decided: read *and* write
    /// (`O_RDWR`), decided as the stricter of the two.
    Any,
}

impl Access {
    /// The name used in policy files and events.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Any => "any",
        }
    }

    /// Whether a rule with this access applies to an open of kind `open`
    /// (which is [`Access::Read`] or [`Access::Write`]).
    #[must_use]
    pub fn covers(self, open: Access) -> bool {
        self == Access::Any || self == open
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Access {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Access::Read, Access::Write, Access::Any]
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownName::new("access", s, "read, write or any"))
    }
}

impl Serialize for Access {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What happens to a session when its grant ends (expires or is revoked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpiryAction {
    /// Kill the whole process tree (the default).
    KillSession,
    /// Destroy the session's sockets and refuse new connections; the processes live on.
    Drop,
}

impl ExpiryAction {
    /// The name used in policy files and events.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ExpiryAction::KillSession => "kill-session",
            ExpiryAction::Drop => "drop",
        }
    }
}

impl fmt::Display for ExpiryAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExpiryAction {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [ExpiryAction::KillSession, ExpiryAction::Drop]
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownName::new("expiry action", s, "kill-session or drop"))
    }
}

impl Serialize for ExpiryAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A keyword that is not one of the known ones: `unknown access "wirte" (expected read,
/// write or any)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {text:?} (expected {expected})")]
pub struct UnknownName {
    /// What kind of keyword it should have been ("action", "access", …).
    pub what: &'static str,
    /// What was written.
    pub text: String,
    /// The accepted keywords, as a phrase.
    pub expected: &'static str,
}

impl UnknownName {
    fn new(what: &'static str, text: &str, expected: &'static str) -> Self {
        UnknownName { what, text: text.to_owned(), expected }
    }
}

/// A rule on the executable of an exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecRule {
    /// The executable, or a directory of executables.
    pub path: PathPattern,
    /// What happens to an exec it matches.
    pub action: Action,
}

impl fmt::Display for ExecRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.path, self.action)
    }
}

/// A rule on opening files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRule {
    /// The file, or a directory and everything under it.
    pub path: PathPattern,
    /// Which opens it applies to.
    pub access: Access,
    /// What happens to an open it matches.
    pub action: Action,
}

impl fmt::Display for FileRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.path, self.access, self.action)
    }
}

/// A rule on outgoing connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetRule {
    /// The destination network.
    pub cidr: Cidr,
    /// The destination ports; `None` is every port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<PortSet>,
    /// What happens to a connection it matches.
    pub action: Action,
}

impl fmt::Display for NetRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ports {
            Some(ports) => write!(f, "{} ports {} -> {}", self.cidr, ports, self.action),
            None => write!(f, "{} -> {}", self.cidr, self.action),
        }
    }
}

/// A rule on connecting to a unix socket, by name prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnixRule {
    /// The socket name (or the start of it).
    pub name: UnixName,
    /// What happens to a connect or datagram it matches (`drop` is for network rules).
    pub action: Action,
}

impl fmt::Display for UnixRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.name, self.action)
    }
}

/// A unix socket name prefix, matched byte for byte against the name a process
/// passes to `connect(2)` or `sendto(2)`: `/run/docker.sock` also matches
/// `/run/docker.sock.2`, and `/run/user/` everything under `/run/user`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnixName {
    /// A pathname: absolute and in canonical form (no `//`, `.` or `..` components),
    /// as the kernel hook sees only the string.
    Path(String),
    /// An abstract name (the bytes after `sun_path`'s leading NUL), shown as `@name`.
    Abstract(String),
}

impl UnixName {
    /// Longest name the kernel takes (`sun_path` is 108 bytes; an abstract name
    /// spends one on its NUL, a pathname on its terminator).
    pub const MAX_LEN: usize = 107;

    /// A pathname prefix, checked.
    pub fn path(text: &str) -> Result<UnixName, UnixNameError> {
        if !text.starts_with('/') {
            return Err(UnixNameError::Relative);
        }
        if text.len() > Self::MAX_LEN {
            return Err(UnixNameError::TooLong(text.len()));
        }
        if text.contains('\0') {
            return Err(UnixNameError::Nul);
        }
        let inner = text.strip_suffix('/').unwrap_or(text);
        if inner.len() > 1 && inner[1..].split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return Err(UnixNameError::NotCanonical);
        }
        Ok(UnixName::Path(text.to_owned()))
    }

    /// An abstract name prefix, checked (empty matches every abstract name).
    pub fn abstract_name(text: &str) -> Result<UnixName, UnixNameError> {
        if text.len() > Self::MAX_LEN {
            return Err(UnixNameError::TooLong(text.len()));
        }
        Ok(UnixName::Abstract(text.to_owned()))
    }

    /// The bytes the kernel compares: a pathname as is, an abstract name after a NUL.
    #[must_use]
    pub fn key_bytes(&self) -> Vec<u8> {
        match self {
            UnixName::Path(p) => p.as_bytes().to_vec(),
            UnixName::Abstract(a) => std::iter::once(0).chain(a.bytes()).collect(),
        }
    }

    /// Whether the name a process passed (`sun_path` bytes as [`Self::key_bytes`]
    /// encodes them) starts with this prefix.
    #[must_use]
    pub fn matches(&self, name: &[u8]) -> bool {
        name.starts_with(&self.key_bytes())
    }
}

impl fmt::Display for UnixName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixName::Path(p) => f.write_str(p),
            UnixName::Abstract(a) => write!(f, "@{a}"),
        }
    }
}

/// Why a unix socket name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnixNameError {
    #[error("must be absolute (start with /)")]
    Relative,
    #[error("{0} bytes is longer than a socket name can be (107)")]
    TooLong(usize),
    #[error("contains a NUL byte")]
    Nul,
    #[error("must be in canonical form (no empty, . or .. components): the kernel hook compares the string")]
    NotCanonical,
}

/// A path in a rule: an absolute, normalised path; a trailing `/` marks a directory rule.
///
/// Matching is by whole path components, never by string prefix: both `/var/lib/pg/` and
/// `/var/lib/pg` match `/var/lib/pg` itself and everything under it (`/var/lib/pg/x`),
/// and neither matches `/var/lib/pg2`. A rule without a trailing `/` that names a file
/// thus matches only that file (nothing is under a file), and one that names a directory
/// covers the directory's tree, as a Landlock path-beneath rule does. The trailing `/`
/// says the author means a directory; matching does not depend on it, so `/etc` and
/// `/etc/` in one list are the same rule (the parser rejects the second).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathPattern {
    /// The path as written, checked: absolute, no empty, `.` or `..` components.
    text: String,
}

impl PathPattern {
    /// Checks `text` and makes a pattern of it.
    ///
    /// # Errors
    /// When `text` is empty, relative, or has a NUL, an empty (`//`), `.` or `..`
    /// component: rules are matched against the canonical paths the kernel reports, so a
    /// rule that is not canonical would silently never match.
    pub fn new(text: &str) -> Result<PathPattern, PathError> {
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        if !text.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        if text.contains('\0') {
            return Err(PathError::Nul);
        }
        let inner = text.strip_suffix('/').unwrap_or(text);
        for component in inner.split('/').skip(1) {
            match component {
                "" => return Err(PathError::EmptyComponent),
                "." | ".." => return Err(PathError::DotComponent),
                _ => {}
            }
        }
        Ok(PathPattern { text: text.to_owned() })
    }

    /// The path as written (a directory rule ends with `/`).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the rule was written as a directory (with a trailing `/`).
    #[must_use]
    pub fn is_dir(&self) -> bool {
        self.text.ends_with('/')
    }

    /// The path without its trailing `/`; empty for `/`. Two patterns with the same
    /// base match exactly the same paths.
    #[must_use]
    pub fn base(&self) -> &str {
        self.text.strip_suffix('/').unwrap_or(&self.text)
    }

    /// How specific the pattern is: among patterns matching one path, the longer base is
    /// deeper in the tree.
    #[must_use]
    pub fn specificity(&self) -> usize {
        self.base().len()
    }

    /// Whether `path` (absolute and canonical, as the kernel reports it) is this path or
    /// under it, at a component boundary.
    #[must_use]
    pub fn matches(&self, path: &Path) -> bool {
        let path = path.as_os_str().as_bytes();
        let base = self.base().as_bytes();
        !path.is_empty() && path.starts_with(base) && (path.len() == base.len() || path[base.len()] == b'/')
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for PathPattern {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PathPattern::new(s)
    }
}

impl Serialize for PathPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Why a rule path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `""`.
    #[error("must not be empty")]
    Empty,
    /// `etc/shadow`.
    #[error("must be absolute (start with /)")]
    NotAbsolute,
    /// A NUL byte, which no path can hold.
    #[error("must not contain a NUL byte")]
    Nul,
    /// `/etc//shadow`.
    #[error("must not contain an empty component (//)")]
    EmptyComponent,
    /// `/etc/../shadow`, `/./etc`.
    #[error("must not contain . or .. components (write the canonical path)")]
    DotComponent,
}

/// A network: an IPv4 or IPv6 address with a prefix length, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// The network address (host bits are zero).
    addr: IpAddr,
    /// The number of leading bits that must match, at most 32 (IPv4) or 128 (IPv6).
    prefix_len: u8,
}

impl Cidr {
    /// The network `addr/prefix_len`.
    ///
    /// # Errors
    /// When the prefix is too long for the family, when `addr` has bits set past the
    /// prefix (`10.0.0.1/8`: which was meant, the host or the network?), or when it is an
    /// IPv4-mapped IPv6 network (those addresses are matched as IPv4; see
    /// [`Cidr::contains`]).
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Cidr, CidrError> {
        let network = Cidr::containing(addr, prefix_len)?;
        if let IpAddr::V6(v6) = addr
            && prefix_len >= 96
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            let v4 = Cidr::containing(IpAddr::V4(v4), prefix_len - 96)?;
            return Err(CidrError::Ipv4Mapped { v4 });
        }
        if network.addr != addr {
            return Err(CidrError::HostBitsSet { network });
        }
        Ok(network)
    }

    /// The network of length `prefix_len` that contains `addr` (host bits cleared).
    ///
    /// # Errors
    /// When the prefix is too long for the family.
    pub fn containing(addr: IpAddr, prefix_len: u8) -> Result<Cidr, CidrError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(CidrError::PrefixTooLong { max });
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() & mask32(prefix_len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() & mask128(prefix_len))),
        };
        Ok(Cidr { addr, prefix_len })
    }

    /// The network address.
    #[must_use]
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    #[must_use]
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is in this network.
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, what a dual-stack socket uses to
    /// reach an IPv4 host) is the IPv4 address it maps: IPv4 rules apply to it and IPv6
    /// rules do not, so a deny on `10.0.0.0/8` cannot be dodged through an IPv6 socket.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => ip.to_bits() & mask32(self.prefix_len) == net.to_bits(),
            (IpAddr::V6(net), IpAddr::V6(ip)) => ip.to_bits() & mask128(self.prefix_len) == net.to_bits(),
            _ => false,
        }
    }
}

/// The netmask of an IPv4 prefix length (at most 32).
fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// The netmask of an IPv6 prefix length (at most 128).
fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// `10.0.0.0/8`, `2001:db8::/32`; a bare address is a single host (`/32`, `/128`).
impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::InvalidAddress(addr.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(len) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => {
                // Any digit string: a huge one is "too long", not "invalid".
                len.parse::<u8>().unwrap_or(u8::MAX)
            }
            Some(len) => return Err(CidrError::InvalidPrefix(len.to_owned())),
        };
        Cidr::new(addr, len)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a CIDR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The part before `/` is not an IP address.
    #[error("invalid address {0:?}")]
    InvalidAddress(String),
    /// The part after `/` is not a number.
    #[error("invalid prefix length {0:?}")]
    InvalidPrefix(String),
    /// `/33` on IPv4, `/129` on IPv6.
    #[error("prefix length must be at most {max}")]
    PrefixTooLong {
        /// 32 or 128.
        max: u8,
    },
    /// `10.0.0.1/8`.
    #[error("host bits are set (did you mean {network}?)")]
    HostBitsSet {
        /// The network the address is in.
        network: Cidr,
    },
    /// `::ffff:10.0.0.0/104`.
    #[error("IPv4-mapped addresses are matched as IPv4 (write {v4})")]
    Ipv4Mapped {
        /// The same network written as IPv4.
        v4: Cidr,
    },
}

/// A non-empty set of TCP/UDP ports (1-65535), kept as sorted, merged ranges.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSet {
    /// Sorted, disjoint and non-adjacent inclusive ranges; never empty; never port 0.
    ranges: Vec<(u16, u16)>,
}

impl PortSet {
    /// The set of the ports in `ranges`; overlapping and adjacent ranges merge.
    ///
    /// # Errors
    /// When there are no ranges, a range includes port 0, or starts after it ends.
    pub fn new(ranges: impl IntoIterator<Item = RangeInclusive<u16>>) -> Result<PortSet, PortError> {
        let mut sorted = Vec::new();
        for r in ranges {
            let (start, end) = r.into_inner();
            if start == 0 {
                return Err(PortError::Zero);
            }
            if start > end {
                return Err(PortError::Reversed { start, end });
            }
            sorted.push((start, end));
        }
        if sorted.is_empty() {
            return Err(PortError::Empty);
        }
        sorted.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(sorted.len());
        for (start, end) in sorted {
            match merged.last_mut() {
                Some(last) if u32::from(start) <= u32::from(last.1) + 1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Ok(PortSet { ranges: merged })
    }

    /// Parses one item of a port list: `5432` or `6000-6010`.
    ///
    /// # Errors
    /// When it is neither, a number is not 1-65535, or the range is reversed.
    pub fn parse_item(text: &str) -> Result<RangeInclusive<u16>, PortError> {
        let port = |t: &str| -> Result<u16, PortError> {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(PortError::Invalid(text.to_owned()));
            }
            match t.parse::<u16>() {
                Ok(0) | Err(_) => Err(PortError::OutOfRange(text.to_owned())),
                Ok(p) => Ok(p),
            }
        };
        let (start, end) = match text.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(text)?;
                (p, p)
            }
        };
        if start > end {
            return Err(PortError::Reversed { start, end });
        }
        Ok(start..=end)
    }

    /// Whether `port` is in the set.
    #[must_use]
    pub fn contains(&self, port: u16) -> bool {
        // The ranges are sorted and disjoint: find the last one starting at or before `port`.
        let i = self.ranges.partition_point(|&(start, _)| start <= port);
        i > 0 && port <= self.ranges[i - 1].1
    }

    /// The ranges, sorted, disjoint and non-adjacent.
    pub fn ranges(&self) -> impl Iterator<Item = RangeInclusive<u16>> + '_ {
        self.ranges.iter().map(|&(a, b)| a..=b)
    }

    /// The lowest port in both sets, if any.
    #[must_use]
    pub fn first_common(&self, other: &PortSet) -> Option<u16> {
        let (mut i, mut j) = (0, 0);
        while i < self.ranges.len() && j < other.ranges.len() {
            let (a, b) = (self.ranges[i], other.ranges[j]);
            let start = a.0.max(b.0);
            if start <= a.1.min(b.1) {
                return Some(start);
            }
            if a.1 < b.1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        None
    }
}

/// `5432,6000-6010`: the form used in rule descriptions.
impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(a, b)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

/// `5432,6000-6010`, the [`Display`](fmt::Display) form.
impl FromStr for PortSet {
    type Err = PortError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PortSet::new(s.split(',').map(PortSet::parse_item).collect::<Result<Vec<_>, _>>()?)
    }
}

/// As in a policy file: a list of numbers (single ports) and `"a-b"` strings (ranges).
impl Serialize for PortSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq as _;
        let mut seq = s.serialize_seq(Some(self.ranges.len()))?;
        for &(a, b) in &self.ranges {
            if a == b {
                seq.serialize_element(&a)?;
            } else {
                seq.serialize_element(&format!("{a}-{b}"))?;
            }
        }
        seq.end()
    }
}

/// Why a port or port list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// `ports: []`, which would match nothing.
    #[error("empty list (leave ports out to match every port)")]
    Empty,
    /// Port 0 in a range built in code.
    #[error("port 0 is not a port (ports are 1-65535)")]
    Zero,
    /// Neither a number nor `a-b`.
    #[error("invalid port {0:?} (expected a number or a range \"a-b\")")]
    Invalid(String),
    /// 0 or more than 65535.
    #[error("invalid port {0:?}: ports are 1-65535")]
    OutOfRange(String),
    /// `6000-5000`.
    #[error("invalid port range \"{start}-{end}\": it starts after it ends")]
    Reversed {
        /// The first port written.
        start: u16,
        /// The last port written.
        end: u16,
    },
}

/// Serialises a duration the way policy files write it (`1h`, `1h 30m`).
fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip_and_order_by_strictness() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
        }
        assert_eq!(
            "kil".parse::<Action>().unwrap_err().to_string(),
            r#"unknown action "kil" (expected allow, log, deny, kill, kill-session or drop)"#
        );
        let mut sorted = Action::ALL;
        sorted.sort();
        assert_eq!(sorted.map(Action::as_str), ["allow", "log", "deny", "drop", "kill", "kill-session"]);
        assert!(Action::Log.permits() && !Action::Deny.permits());
        assert!(Action::Deny.can_be_default() && !Action::Kill.can_be_default());
    }

    #[test]
    fn access_and_expiry_names() {
        assert_eq!(
            "wirte".parse::<Access>().unwrap_err().to_string(),
            r#"unknown access "wirte" (expected read, write or any)"#
        );
        assert!(Access::Any.covers(Access::Read) && Access::Read.covers(Access::Read));
        assert!(!Access::Read.covers(Access::Write));
        assert_eq!("drop".parse::<ExpiryAction>(), Ok(ExpiryAction::Drop));
        assert_eq!(
            "kill".parse::<ExpiryAction>().unwrap_err().to_string(),
            r#"unknown expiry action "kill" (expected kill-session or drop)"#
        );
    }

    #[test]
    fn path_patterns() {
        let dir = PathPattern::new("/var/lib/postgresql/").unwrap();
        assert!(dir.is_dir());
        assert_eq!(dir.base(), "/var/lib/postgresql");
        for yes in ["/var/lib/postgresql", "/var/lib/postgresql/", "/var/lib/postgresql/16/main/PG_VERSION"] {
            assert!(dir.matches(Path::new(yes)), "{yes}");
        }
        for no in ["/var/lib/postgresql2", "/var/lib/postgres", "/var/lib", "", "var/lib/postgresql"] {
            assert!(!dir.matches(Path::new(no)), "{no}");
        }
        let file = PathPattern::new("/etc/shadow").unwrap();
        assert!(!file.is_dir());
        assert!(file.matches(Path::new("/etc/shadow")) && file.matches(Path::new("/etc/shadow/x")));
        assert!(!file.matches(Path::new("/etc/shadow-")) && !file.matches(Path::new("/etc/shadow.bak")));
        let root = PathPattern::new("/").unwrap();
        assert_eq!(root.specificity(), 0);
        assert!(root.matches(Path::new("/")) && root.matches(Path::new("/etc")));
        assert!(!root.matches(Path::new("etc")) && !root.matches(Path::new("")));

        let err = |t: &str| PathPattern::new(t).unwrap_err().to_string();
        assert_eq!(err(""), "must not be empty");
        assert_eq!(err("etc/shadow"), "must be absolute (start with /)");
        assert_eq!(err("/etc//shadow"), "must not contain an empty component (//)");
        assert_eq!(err("/etc//"), "must not contain an empty component (//)");
        assert_eq!(err("/etc/../shadow"), "must not contain . or .. components (write the canonical path)");
        assert_eq!(err("/etc/."), "must not contain . or .. components (write the canonical path)");
        assert_eq!(err("/a\0b"), "must not contain a NUL byte");
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert_eq!((c.addr(), c.prefix_len()), (IpAddr::from([10, 0, 0, 0]), 8));
        assert!(c.contains("10.255.1.2".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()), "IPv4-mapped is IPv4");
        assert!(!c.contains("11.0.0.0".parse().unwrap()));
        assert_eq!("10.0.0.1".parse::<Cidr>().unwrap().to_string(), "10.0.0.1/32");
        assert_eq!("2001:db8::/32".parse::<Cidr>().unwrap().to_string(), "2001:db8::/32");
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains("2001:db8::1".parse().unwrap()));
        assert!(!all6.contains("::ffff:10.1.2.3".parse().unwrap()), "IPv4-mapped is not IPv6");
        assert!(!all6.contains("10.1.2.3".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains("1.2.3.4".parse().unwrap()));

        let err = |t: &str| t.parse::<Cidr>().unwrap_err().to_string();
        assert_eq!(err("10.0.0.0/33"), "prefix length must be at most 32");
        assert_eq!(err("::/129"), "prefix length must be at most 128");
        assert_eq!(err("10.0.0.0/999"), "prefix length must be at most 32");
        assert_eq!(err("10.0.0.1/8"), "host bits are set (did you mean 10.0.0.0/8?)");
        assert_eq!(err("10.0.0/8"), r#"invalid address "10.0.0""#);
        assert_eq!(err("10.0.0.0/x"), r#"invalid prefix length "x""#);
        assert_eq!(err("10.0.0.0/"), r#"invalid prefix length """#);
        assert_eq!(err("::ffff:10.0.0.0/104"), "IPv4-mapped addresses are matched as IPv4 (write 10.0.0.0/8)");
        assert_eq!(Cidr::containing("10.1.2.3".parse().unwrap(), 16).unwrap().to_string(), "10.1.0.0/16");
    }

    #[test]
    fn port_sets() {
        let p: PortSet = "443,80,81,8000-8100,8050-8200".parse().unwrap();
        assert_eq!(p.to_string(), "80-81,443,8000-8200");
        assert!(p.contains(80) && p.contains(81) && p.contains(8200) && !p.contains(82) && !p.contains(1));
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"["80-81",443,"8000-8200"]"#);
        let q: PortSet = "444-8000".parse().unwrap();
        assert_eq!(p.first_common(&q), Some(8000));
        assert_eq!(q.first_common(&"1-443".parse().unwrap()), None);

        let err = |t: &str| t.parse::<PortSet>().unwrap_err().to_string();
        assert_eq!(err("70000"), r#"invalid port "70000": ports are 1-65535"#);
        assert_eq!(err("0"), r#"invalid port "0": ports are 1-65535"#);
        assert_eq!(err("http"), r#"invalid port "http" (expected a number or a range "a-b")"#);
        assert_eq!(err("-5"), r#"invalid port "-5" (expected a number or a range "a-b")"#);
        assert_eq!(err("6000-5000"), r#"invalid port range "6000-5000": it starts after it ends"#);
        assert_eq!(PortSet::new([]).unwrap_err().to_string(), "empty list (leave ports out to match every port)");
        assert_eq!(PortSet::new([0..=5]), Err(PortError::Zero));
    }

    #[test]
    fn names() {
        assert!(Policy::is_valid_name("db-debug") && Policy::is_valid_name("a.b_c-9"));
        assert!(!Policy::is_valid_name("") && !Policy::is_valid_name("DB") && !Policy::is_valid_name("a b"));
        assert!(!Policy::is_valid_name(&"a".repeat(65)) && Policy::is_valid_name(&"a".repeat(64)));
    }
}
