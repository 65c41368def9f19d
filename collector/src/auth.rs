//! Who is calling and what they may do: the identity is the Common Name of the
//! peer's client certificate (mTLS, verified against the collector's CA by the TLS
//! layer before any RPC runs); the roles table in the config maps names to roles.

use std::fmt;

use tonic::{Request, Status};

/// What a certificate name may do. `Admin` may do everything a person may do;
/// `Responder` also watches; `Approver` also requests; `Agent` only streams events in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Streams its events in (`Ingest.Stream`), nothing else.
    Agent,
    /// Watch, Query, Sessions, AgentStatus.
    Watcher,
    /// A watcher that may also Kill and Revoke.
    Responder,
    /// Asks for grants (Approvals.Request, Extend) and lists requests.
    Requester,
    /// Approves and denies other people's requests (when a policy names this role),
    /// and may request too.
    Approver,
    /// Everything, including VerifyLog.
    Admin,
}

impl Role {
    /// Parses a role name as written in the config.
    ///
    /// # Errors
    /// A message listing the valid names.
    pub fn parse(s: &str) -> Result<Role, String> {
        match s {
            "agent" => Ok(Role::Agent),
            "watcher" => Ok(Role::Watcher),
            "responder" => Ok(Role::Responder),
            "requester" => Ok(Role::Requester),
            "approver" => Ok(Role::Approver),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?}: expected agent, watcher, responder, requester, approver or admin")),
        }
    }

    /// True when a holder of `self` may do what needs `needed`.
    #[must_use]
    pub fn allows(self, needed: Role) -> bool {
        // Two small hierarchies (watch < respond, request < approve) under admin;
        // agents stand apart from people in both directions.
        match (self, needed) {
            (Role::Agent, _) | (_, Role::Agent) => self == needed,
            (Role::Admin, _) => true,
            (Role::Responder, Role::Watcher | Role::Responder)
            | (Role::Watcher, Role::Watcher)
            | (Role::Approver, Role::Requester | Role::Approver)
            | (Role::Requester, Role::Requester) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Agent => "agent",
            Role::Watcher => "watcher",
            Role::Responder => "responder",
            Role::Requester => "requester",
            Role::Approver => "approver",
            Role::Admin => "admin",
        })
    }
}

/// Certificate names → roles. A name ending in `*` matches every name with that
/// prefix (`agent-*`); an exact name wins over a prefix, a longer prefix over a
/// shorter one.
#[derive(Clone, Debug, Default)]
pub struct Roles {
    /// Exact names.
    exact: Vec<(String, Role)>,
    /// Prefixes (without the `*`), longest first.
    prefixes: Vec<(String, Role)>,
}

impl Roles {
    /// Builds the table from (name or `prefix*`, role) pairs.
    #[must_use]
    pub fn new(entries: impl IntoIterator<Item = (String, Role)>) -> Roles {
        let mut roles = Roles::default();
        for (name, role) in entries {
            match name.strip_suffix('*') {
                Some(prefix) => roles.prefixes.push((prefix.to_owned(), role)),
                None => roles.exact.push((name, role)),
            }
        }
        roles.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        roles
    }

    /// The role of `name`, if it has one.
    #[must_use]
    pub fn role_of(&self, name: &str) -> Option<Role> {
        self.exact
            .iter()
            .find(|(n, _)| n == name)
            .or_else(|| self.prefixes.iter().find(|(p, _)| name.starts_with(p.as_str())))
            .map(|(_, r)| *r)
    }

    /// `Ok` when `name` may call `rpc`, which needs `needed`; else the refusal, in
    /// words that name the identity and the role needed.
    ///
    /// # Errors
    /// The refusal text (for `PERMISSION_DENIED` and the audit record).
    pub fn check(&self, name: &str, needed: Role, rpc: &str) -> Result<Role, String> {
        match self.role_of(name) {
            Some(r) if r.allows(needed) => Ok(r),
            Some(r) => Err(format!("permission denied for {name:?}: {rpc} needs role {needed}, and {name:?} has role {r}")),
            None => Err(format!(
                "permission denied for {name:?}: {rpc} needs role {needed}, and {name:?} has no role in the collector's roles table"
            )),
        }
    }
}

/// The Common Name of the peer's client certificate.
///
/// # Errors
/// `UNAUTHENTICATED` when there is no client certificate (a plain-TCP test server)
/// or it has no Common Name.
pub fn identity<T>(req: &Request<T>) -> Result<String, Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("no client certificate: the collector needs mTLS"))?;
    let der = certs.first().ok_or_else(|| Status::unauthenticated("no client certificate: the collector needs mTLS"))?;
    common_name(der.as_ref()).ok_or_else(|| Status::unauthenticated("the client certificate has no Common Name"))
}

/// The first Common Name of a DER certificate's subject.
#[must_use]
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_but_agents_are_apart() {
        assert!(Role::Admin.allows(Role::Responder));
        assert!(Role::Responder.allows(Role::Watcher));
        assert!(!Role::Watcher.allows(Role::Responder));
        assert!(!Role::Agent.allows(Role::Watcher));
        assert!(!Role::Admin.allows(Role::Agent));
        assert!(Role::Agent.allows(Role::Agent));
        assert!(Role::Approver.allows(Role::Requester));
        assert!(!Role::Requester.allows(Role::Approver));
        assert!(!Role::Approver.allows(Role::Watcher));
        assert!(!Role::Responder.allows(Role::Requester));
        assert!(Role::Admin.allows(Role::Approver));
    }

    #[test]
    fn exact_beats_prefix_and_longer_prefix_wins() {
        let r = Roles::new([
            ("agent-*".to_owned(), Role::Agent),
            ("agent-ops*".to_owned(), Role::Watcher),
            ("agent-ops-root".to_owned(), Role::Admin),
        ]);
        assert_eq!(r.role_of("agent-web-1"), Some(Role::Agent));
        assert_eq!(r.role_of("agent-ops-1"), Some(Role::Watcher));
        assert_eq!(r.role_of("agent-ops-root"), Some(Role::Admin));
        assert_eq!(r.role_of("alice"), None);
    }

    #[test]
    fn refusal_names_identity_and_role() {
        let r = Roles::new([("wally".to_owned(), Role::Watcher)]);
        let e = r.check("wally", Role::Responder, "Kill").unwrap_err();
        assert_eq!(e, "permission denied for \"wally\": Kill needs role responder, and \"wally\" has role watcher");
        let e = r.check("eve", Role::Watcher, "Watch").unwrap_err();
        assert!(e.contains("\"eve\" has no role"), "{e}");
    }

    #[test]
    fn role_names_parse() {
        assert_eq!(Role::parse("responder"), Ok(Role::Responder));
        assert_eq!(Role::parse("approver"), Ok(Role::Approver));
        assert_eq!(Role::parse("requester"), Ok(Role::Requester));
        assert!(Role::parse("root").unwrap_err().contains("expected agent, watcher"));
    }
}
