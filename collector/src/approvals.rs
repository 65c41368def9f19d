//! The `Approvals` gRPC service: grant requests, approvals, denials, extensions,
//! and the tokens the collector signs when a request has its approvals.
//!
//! Identities and roles come from the mTLS certificate, as for every collector call.
//! The rules live in [`crate::requests`]; this module checks who is calling, keeps
//! the requests file current, and records every step in the audit log as a
//! `control_action`: `request`, `approve`, `deny`, `issue`, `extend`, `timeout`, each
//! with outcome `ok`, `expired` or `refused` (with the reason).
//!
//! It also serves `Policies`, the catalogue requests name ([`crate::catalogue`]):
//! admins push (`policy_push`, outcome `ok`, `unchanged` or `refused`) and retire
//! (`policy_retire`, the same outcomes), every person role reads. A retired policy
//! is named by no new request or extension, and no pending request made against it
//! is approved. A request takes its approval rules from the catalogue version it
//! names, never from the requester; `for_agent` must be one of the collector's
//! `ai_agents`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::Mutex;
use tonic::{Request, Response, Status};
use warrant_policy::Policy;
use warrant_proto::approvals_server::{Approvals, ApprovalsServer};
use warrant_proto::policies_server::{Policies, PoliciesServer};
use warrant_proto::token::SecretKey;
use warrant_proto::{
    AccessRequest, ApproveRequest, DenyRequest, ExtendRequest, GetCataloguePolicyRequest, GetRequestRequest,
    ListPoliciesRequest, ListPoliciesResponse, ListRequestsRequest, ListRequestsResponse, PolicyInfo, PushPolicyRequest,
    PushPolicyResponse, RequestInfo, RetirePolicyRequest, RetirePolicyResponse,
};

use crate::auth::{Role, Roles, identity};
use crate::catalogue::{self, Catalogue, Pushed, Version};
use crate::metrics::Metrics;
use crate::requests::{Approved, NewRequest, Refusal, Req, Requests};
use crate::writer::{Writer, now_ns};

/// Longest reason accepted.
const MAX_REASON_BYTES: usize = 1024;

/// What the service shares.
pub struct ApprovalState {
    /// Names → roles (the collector's table).
    roles: Roles,
    /// Where every step is recorded.
    writer: Writer,
    /// Refusal counter.
    metrics: Arc<Metrics>,
    /// Signs approved grants; without it requests are refused at once, since none
    /// could ever be issued.
    key: Option<SecretKey>,
    /// Every request; one lock, because each change is small and also saved.
    requests: Mutex<Requests>,
    /// The policies requests name. Locked before `requests` when both are held.
    catalogue: Mutex<Catalogue>,
    /// The AI-agent names `for_agent` may give (the config's `ai_agents`).
    ai_agents: BTreeSet<String>,
}

/// What the approval service keeps besides the roles, the log and the counters.
pub struct ApprovalOptions {
    /// Signs approved grants; without it requests are refused.
    pub key: Option<SecretKey>,
    /// The requests (from `requests.json`).
    pub requests: Requests,
    /// The policy catalogue (from `policies.json`).
    pub catalogue: Catalogue,
    /// The AI agents the collector knows.
    pub ai_agents: BTreeSet<String>,
}

impl ApprovalState {
    /// Builds the state.
    #[must_use]
    pub fn new(roles: Roles, writer: Writer, metrics: Arc<Metrics>, opts: ApprovalOptions) -> Arc<ApprovalState> {
        let ApprovalOptions { key, requests, catalogue, ai_agents } = opts;
        Arc::new(ApprovalState {
            roles,
            writer,
            metrics,
            key,
            requests: Mutex::new(requests),
            catalogue: Mutex::new(catalogue),
            ai_agents,
        })
    }

    /// The gRPC service.
    #[must_use]
    pub fn service(self: &Arc<Self>) -> ApprovalsServer<ApprovalService> {
        ApprovalsServer::new(ApprovalService(self.clone()))
    }

    /// The catalogue's gRPC service.
    #[must_use]
    pub fn policies_service(self: &Arc<Self>) -> PoliciesServer<PolicyService> {
        PoliciesServer::new(PolicyService(self.clone()))
    }

    /// `Ok` when `name` is an AI agent the collector knows.
    fn known_agent(&self, name: &str) -> Result<(), Refusal> {
        if self.ai_agents.contains(name) {
            return Ok(());
        }
        let known = if self.ai_agents.is_empty() {
            "it knows none (set ai_agents in its config, or --ai-agent NAME)".to_owned()
        } else {
            format!("it knows {}", self.ai_agents.iter().cloned().collect::<Vec<_>>().join(", "))
        };
        Err(Refusal::UnknownAgent { name: name.to_owned(), known })
    }

    /// Expires unanswered requests every `every` until the process ends.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) {
        let state = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                state.sweep().await;
            }
        });
    }

    /// Expires what is due now, saves and records it.
    pub async fn sweep(&self) {
        let gone = {
            let mut requests = self.requests.lock().await;
            let gone = requests.expire(now_ns());
            if !gone.is_empty() {
                save(&requests);
            }
            gone
        };
        for r in gone {
            let detail = format!("nobody acted in time; {} of {} approvals ({})", r.approvers.len(), r.approvals_needed, summary(&r));
            self.record("timeout", "collector", &r.id, "expired", &detail).await;
        }
    }

    async fn record(&self, action: &str, by: &str, target: &str, outcome: &str, detail: &str) {
        self.record_raw(action, by, &format!("request {target}"), outcome, detail).await;
    }

    async fn record_raw(&self, action: &str, by: &str, target: &str, outcome: &str, detail: &str) {
        if let Err(e) = self.writer.record(action, by, target, outcome, detail).await {
            tracing::error!(error = %e, action, target, "cannot record a control action");
        }
    }

    /// The caller and their role, when it is a person allowed `needed`
    /// (`None`: any person role); refusals are recorded.
    async fn authorize<T>(&self, req: &Request<T>, needed: Option<Role>, rpc: &str) -> Result<(String, Role), Status> {
        self.authorize_in(req, needed, "Approvals", rpc).await
    }

    async fn authorize_in<T>(
        &self,
        req: &Request<T>,
        needed: Option<Role>,
        service: &str,
        rpc: &str,
    ) -> Result<(String, Role), Status> {
        let who = identity(req)?;
        let why = match (self.roles.role_of(&who), needed) {
            (Some(r), Some(n)) if r.allows(n) => return Ok((who, r)),
            (Some(r), None) if r != Role::Agent => return Ok((who, r)),
            (_, Some(n)) => self.roles.check(&who, n, rpc).err().unwrap_or_default(),
            (Some(r), None) => format!("permission denied for {who:?}: {rpc} is for people, and {who:?} has role {r}"),
            (None, None) => format!("permission denied for {who:?}: {rpc} needs a role, and {who:?} has no role in the collector's roles table"),
        };
        self.metrics.refused.fetch_add(1, Relaxed);
        tracing::warn!(identity = %who, rpc, "refused: {why}");
        if let Err(e) = self.writer.record("refused", &who, &format!("rpc {service}.{rpc}"), "refused", &why).await {
            tracing::error!(error = %e, "cannot record a refused call");
        }
        Err(Status::permission_denied(why))
    }

    /// Records a refused step (a reason in words) as `INVALID_ARGUMENT`.
    async fn refuse_text(&self, action: &str, who: &str, target: &str, why: String) -> Status {
        self.metrics.refused.fetch_add(1, Relaxed);
        self.record(action, who, target, "refused", &why).await;
        Status::invalid_argument(why)
    }

    /// Records a refused step and turns it into a status.
    async fn refuse(&self, action: &str, who: &str, target: &str, why: &Refusal) -> Status {
        self.metrics.refused.fetch_add(1, Relaxed);
        self.record(action, who, target, "refused", &why.to_string()).await;
        status_of(why)
    }
}

/// Saves, logging a failure: the change stands in memory and the next save retries.
fn save(requests: &Requests) {
    if let Err(e) = tokio::task::block_in_place(|| requests.save()) {
        tracing::error!(error = %e, "cannot save requests");
    }
}

fn status_of(r: &Refusal) -> Status {
    let text = r.to_string();
    match r {
        Refusal::NotFound(_) | Refusal::GrantNotFound(_) => Status::not_found(text),
        Refusal::Catalogue(c) => catalogue_status(c),
        Refusal::SelfApproval { .. } | Refusal::NotPending { .. } | Refusal::Twice { .. } | Refusal::Uncatalogued { .. } => {
            Status::failed_precondition(text)
        }
        Refusal::WrongRole { .. } | Refusal::NotYours { .. } => Status::permission_denied(text),
        _ => Status::invalid_argument(text),
    }
}

fn catalogue_status(r: &catalogue::Refusal) -> Status {
    let text = r.to_string();
    match r {
        catalogue::Refusal::UnknownPolicy { .. } | catalogue::Refusal::UnknownVersion { .. } => Status::not_found(text),
        catalogue::Refusal::Retired { .. } => Status::failed_precondition(text),
        _ => Status::invalid_argument(text),
    }
}

/// Saves the catalogue, logging a failure (the change stands in memory).
fn save_catalogue(c: &Catalogue) {
    if let Err(e) = tokio::task::block_in_place(|| c.save()) {
        tracing::error!(error = %e, "cannot save the policy catalogue");
    }
}

/// The wire form of a catalogue version of `c`; the text and what it grants with
/// `full`.
fn policy_info(c: &Catalogue, v: &Version, current: bool, full: bool) -> PolicyInfo {
    let parsed = v.policy().ok();
    let versions = c.versions(&v.name);
    let retired = c.retired(&v.name);
    PolicyInfo {
        name: v.name.clone(),
        digest: v.digest.clone(),
        text: if full { v.text.clone() } else { String::new() },
        grants: match (&parsed, full) {
            (Some(p), true) => p.grants(),
            _ => Vec::new(),
        },
        pushed_unix_ns: v.pushed_ns,
        pushed_by: v.pushed_by.clone(),
        current,
        versions: u32::try_from(versions).unwrap_or(u32::MAX),
        approvals: parsed.as_ref().map_or(0, |p| p.approval.approvals),
        approver_role: parsed.as_ref().map(|p| p.approval.approver_role.clone()).unwrap_or_default(),
        max_ttl_seconds: parsed.as_ref().map_or(0, |p| p.max_ttl.as_secs()),
        subjects: parsed
            .as_ref()
            .map(|p| p.approval.subjects.iter().map(|k| k.as_str().to_owned()).collect())
            .unwrap_or_default(),
        retired: retired.is_some(),
        retired_by: retired.map(|r| r.by.clone()).unwrap_or_default(),
        retired_unix_ns: retired.map_or(0, |r| r.ns),
        retired_reason: retired.map(|r| r.reason.clone()).unwrap_or_default(),
    }
}

/// One line about a request, for the log.
fn summary(r: &Req) -> String {
    let mut s = format!(
        "subject {} host {} policy {} ({}) ttl {} reason {:?}",
        r.subject,
        r.host,
        r.policy_name,
        r.policy_digest,
        humantime::format_duration(Duration::from_secs(r.ttl_secs)),
        r.reason
    );
    if !r.extends.is_empty() {
        s.push_str(&format!(" extends {}", r.extends));
    }
    s
}

/// The wire form; the token only when `reveal`, the policy text and what it grants
/// only when `full`.
fn info_full(r: &Req, reveal: bool, full: bool) -> RequestInfo {
    let mut i = info(r, reveal);
    if full {
        i.policy_text.clone_from(&r.policy_text);
        i.policy_grants = Policy::from_yaml(&r.policy_text, &r.policy_name).map(|p| p.grants()).unwrap_or_default();
    }
    i
}

/// The wire form; the token only when `reveal`; no policy text.
fn info(r: &Req, reveal: bool) -> RequestInfo {
    RequestInfo {
        id: r.id.clone(),
        state: r.status.as_str().to_owned(),
        subject: r.subject.clone(),
        requested_by: r.requested_by.clone(),
        host: r.host.clone(),
        policy_name: r.policy_name.clone(),
        policy_digest: r.policy_digest.clone(),
        ttl_seconds: r.ttl_secs,
        reason: r.reason.clone(),
        approvals_needed: r.approvals_needed,
        approver_role: r.approver_role.clone(),
        approvers: r.approvers.clone(),
        created_unix_ns: r.created_ns,
        expires_unix_ns: r.expires_ns,
        denied_by: r.denied_by.clone(),
        deny_reason: r.deny_reason.clone(),
        grant: r.grant.clone(),
        token: if reveal { r.token.clone() } else { String::new() },
        policy_text: String::new(),
        extends: r.extends.clone(),
        not_after_unix_ns: r.not_after_ns,
        policy_grants: Vec::new(),
    }
}

/// The service itself.
pub struct ApprovalService(Arc<ApprovalState>);

#[tonic::async_trait]
impl Approvals for ApprovalService {
    async fn request(&self, req: Request<AccessRequest>) -> Result<Response<RequestInfo>, Status> {
        let s = &self.0;
        let (who, _) = s.authorize(&req, Some(Role::Requester), "Request").await?;
        let r = req.into_inner();
        let named = match r.policy_digest.as_str() {
            "" => r.policy_name.clone(),
            digest => format!("{}@{digest}", r.policy_name),
        };
        let target = format!("(new, policy {})", named.chars().take(300).collect::<String>());
        if s.key.is_none() {
            let why = "the collector has no grant signing key, so it cannot issue grants: set grant_signing_key (make one with `warrant token keygen`)";
            return Err(s.refuse_text("request", &who, &target, why.to_owned()).await);
        }
        if r.policy_name.is_empty() {
            let why = "a request names a policy from the collector's catalogue (policy_name; \
                       `warrant request --policy NAME`): the collector takes no policy text from a requester. \
                       `warrant policy list` shows the catalogue.";
            return Err(s.refuse_text("request", &who, &target, why.to_owned()).await);
        }
        if r.reason.len() > MAX_REASON_BYTES || r.policy_name.len() > 256 || r.policy_digest.len() > 80 {
            let why = format!("reason or policy name too long (at most {MAX_REASON_BYTES} and 256 bytes)");
            return Err(s.refuse_text("request", &who, &target, why).await);
        }
        if !r.for_agent.is_empty()
            && let Err(why) = s.known_agent(&r.for_agent)
        {
            return Err(s.refuse("request", &who, &target, &why).await);
        }
        // The version's text and rules, copied out: the request keeps them whatever
        // is pushed later.
        let found = {
            let catalogue = s.catalogue.lock().await;
            catalogue.get_for_request(&r.policy_name, &r.policy_digest).map_err(Refusal::Catalogue).and_then(|v| {
                let policy = v.policy().map_err(|e| Refusal::Catalogue(catalogue::Refusal::Invalid(e.to_string())))?;
                Ok((policy, v.text.clone()))
            })
        };
        let made = match found {
            Ok((policy, policy_text)) => {
                let new = NewRequest {
                    policy,
                    policy_text,
                    requested_by: who.clone(),
                    for_agent: (!r.for_agent.is_empty()).then_some(r.for_agent),
                    host: if r.host.is_empty() { "*".to_owned() } else { r.host },
                    ttl: Duration::from_secs(r.ttl_seconds),
                    reason: r.reason,
                    extends: None,
                };
                let mut requests = s.requests.lock().await;
                let made = requests.create(new, now_ns());
                if made.is_ok() {
                    save(&requests);
                }
                made
            }
            Err(e) => Err(e),
        };
        match made {
            Ok(req) => {
                let detail = format!("{}; needs {} approval(s) from role {}", summary(&req), req.approvals_needed, req.approver_role);
                s.record("request", &who, &req.id, "ok", &detail).await;
                Ok(Response::new(info_full(&req, true, true)))
            }
            Err(why) => Err(s.refuse("request", &who, &target, &why).await),
        }
    }

    async fn list_requests(&self, req: Request<ListRequestsRequest>) -> Result<Response<ListRequestsResponse>, Status> {
        self.0.authorize(&req, None, "ListRequests").await?;
        self.0.sweep().await;
        let all = req.into_inner().all;
        let requests = self.0.requests.lock().await;
        let requests = requests.list(all).into_iter().map(|r| info(r, false)).collect();
        Ok(Response::new(ListRequestsResponse { requests }))
    }

    async fn get_request(&self, req: Request<GetRequestRequest>) -> Result<Response<RequestInfo>, Status> {
        let (who, _) = self.0.authorize(&req, None, "GetRequest").await?;
        self.0.sweep().await;
        let id = req.into_inner().id;
        let requests = self.0.requests.lock().await;
        let r = requests.get(&id).ok_or_else(|| status_of(&Refusal::NotFound(id.clone())))?;
        // The token is a bearer credential: only whoever asked for it gets it. The
        // policy and what it grants are for everyone, approvers first.
        Ok(Response::new(info_full(r, r.requested_by == who, true)))
    }

    async fn approve(&self, req: Request<ApproveRequest>) -> Result<Response<RequestInfo>, Status> {
        let s = &self.0;
        let (who, role) = s.authorize(&req, None, "Approve").await?;
        let id = req.into_inner().id;
        s.sweep().await;
        let result = {
            let catalogue = s.catalogue.lock().await;
            let mut requests = s.requests.lock().await;
            let key = s.key.as_ref();
            // Only a request against a catalogue version is approved: one kept from
            // before the catalogue carries rules its requester wrote. Nor is one
            // whose policy was retired since it was asked for.
            let blocked = match requests.get(&id) {
                Some(r) if r.status == crate::requests::Status::Pending => {
                    if catalogue.get(&r.policy_name, &r.policy_digest).is_err() {
                        Some(Refusal::Uncatalogued { id: id.clone(), policy: r.policy_name.clone(), digest: r.policy_digest.clone() })
                    } else {
                        catalogue.in_use(&r.policy_name).err().map(Refusal::Catalogue)
                    }
                }
                _ => None,
            };
            let result = match blocked {
                Some(why) => Err(why),
                None => requests.approve(&id, &who, role, now_ns(), |t| key.map(|k| k.sign(t)).unwrap_or_default()),
            };
            drop(catalogue);
            if result.is_ok() {
                save(&requests);
            }
            result
        };
        match result {
            Ok((r, Approved::Counted(have, need))) => {
                s.record("approve", &who, &id, "ok", &format!("{have} of {need} approvals; still pending")).await;
                Ok(Response::new(info(&r, false)))
            }
            Ok((r, Approved::Issued)) => {
                let need = r.approvals_needed;
                s.record("approve", &who, &id, "ok", &format!("{need} of {need} approvals")).await;
                let until = warrant_audit::json::rfc3339(r.not_after_ns);
                let detail = format!("grant {} until {until}, approved by {}; {}", r.grant, r.approvers.join(", "), summary(&r));
                s.record("issue", &who, &id, "ok", &detail).await;
                Ok(Response::new(info(&r, false)))
            }
            Err(why) => Err(s.refuse("approve", &who, &id, &why).await),
        }
    }

    async fn deny(&self, req: Request<DenyRequest>) -> Result<Response<RequestInfo>, Status> {
        let s = &self.0;
        let (who, role) = s.authorize(&req, None, "Deny").await?;
        let r = req.into_inner();
        if r.reason.trim().is_empty() || r.reason.len() > MAX_REASON_BYTES {
            s.record("deny", &who, &r.id, "refused", "a denial needs a reason").await;
            return Err(Status::invalid_argument("a denial needs a reason (--reason), so the requester knows why"));
        }
        s.sweep().await;
        let result = {
            let mut requests = s.requests.lock().await;
            let result = requests.deny(&r.id, &who, role, &r.reason, now_ns());
            if result.is_ok() {
                save(&requests);
            }
            result
        };
        match result {
            Ok(d) => {
                s.record("deny", &who, &r.id, "ok", &format!("reason {:?}; {}", r.reason, summary(&d))).await;
                Ok(Response::new(info(&d, false)))
            }
            Err(why) => Err(s.refuse("deny", &who, &r.id, &why).await),
        }
    }

    async fn extend(&self, req: Request<ExtendRequest>) -> Result<Response<RequestInfo>, Status> {
        let s = &self.0;
        let (who, role) = s.authorize(&req, Some(Role::Requester), "Extend").await?;
        let r = req.into_inner();
        let target = format!("(new, extends grant {})", r.grant);
        let made = {
            let catalogue = s.catalogue.lock().await;
            let mut requests = s.requests.lock().await;
            let made = (|| {
                let old = requests.by_grant(&r.grant).ok_or_else(|| Refusal::GrantNotFound(r.grant.clone()))?;
                if old.requested_by != who && role != Role::Admin {
                    return Err(Refusal::NotYours { grant: r.grant.clone(), owner: old.requested_by.clone() });
                }
                // The same catalogue version as the grant (every version is kept),
                // unless the policy was retired: an extension is a new request.
                catalogue.get_for_request(&old.policy_name, &old.policy_digest).map_err(Refusal::Catalogue)?;
                // The stored text parsed when the request was made; the same parser
                // accepts it now.
                let policy = Policy::from_yaml(&old.policy_text, &old.policy_name)
                    .map_err(|_| Refusal::GrantNotFound(r.grant.clone()))?;
                let for_agent = old.subject.strip_prefix("agent:").map(str::to_owned);
                if let Some(agent) = &for_agent {
                    s.known_agent(agent)?;
                }
                let new = NewRequest {
                    policy,
                    policy_text: old.policy_text.clone(),
                    requested_by: old.requested_by.clone(),
                    for_agent,
                    host: old.host.clone(),
                    ttl: Duration::from_secs(r.by_seconds),
                    reason: if r.reason.is_empty() { format!("extend {}: {}", r.grant, old.reason) } else { r.reason.clone() },
                    extends: Some((r.grant.clone(), old.not_after_ns)),
                };
                requests.create(new, now_ns())
            })();
            if made.is_ok() {
                save(&requests);
            }
            made
        };
        match made {
            Ok(req) => {
                let by = humantime::format_duration(Duration::from_secs(r.by_seconds));
                let detail = format!("grant {} by {by}: {}; needs {} approval(s) from role {}", r.grant, summary(&req), req.approvals_needed, req.approver_role);
                s.record("extend", &who, &req.id, "ok", &detail).await;
                Ok(Response::new(info_full(&req, req.requested_by == who, true)))
            }
            Err(why) => Err(s.refuse("extend", &who, &target, &why).await),
        }
    }
}

/// The catalogue service.
pub struct PolicyService(Arc<ApprovalState>);

#[tonic::async_trait]
impl Policies for PolicyService {
    async fn push_policy(&self, req: Request<PushPolicyRequest>) -> Result<Response<PushPolicyResponse>, Status> {
        let s = &self.0;
        let (who, _) = s.authorize_in(&req, Some(Role::Admin), "Policies", "PushPolicy").await?;
        let r = req.into_inner();
        let file = if r.file.is_empty() { "policy".to_owned() } else { r.file.chars().take(256).collect() };
        let pushed = {
            let mut c = s.catalogue.lock().await;
            let pushed = c.push(&r.text, &file, &who, now_ns());
            if matches!(pushed, Ok(Pushed::New(_) | Pushed::Current(_))) {
                save_catalogue(&c);
            }
            pushed.map(|p| {
                let info = policy_info(&c, p.version(), true, true);
                (p, info)
            })
        };
        match pushed {
            Ok((p, info)) => {
                let v = p.version();
                let (outcome, what) = match &p {
                    Pushed::New(_) => ("ok", "new version, now current"),
                    Pushed::Current(_) => ("ok", "earlier version, current again"),
                    Pushed::Unchanged(_) => ("unchanged", "already the current version"),
                    Pushed::Reinstated(_) => ("ok", "the policy was retired: this version is current and the policy in use again"),
                };
                let detail = format!("{} from {file}: {what}; {} version(s)", v.digest, info.versions);
                s.record_raw("policy_push", &who, &format!("policy {}", v.name), outcome, &detail).await;
                let changed = !matches!(p, Pushed::Unchanged(_));
                Ok(Response::new(PushPolicyResponse { policy: Some(info), changed }))
            }
            Err(why) => {
                s.metrics.refused.fetch_add(1, Relaxed);
                let first = why.to_string();
                s.record_raw("policy_push", &who, &format!("policy file {file}"), "refused", &first).await;
                Err(catalogue_status(&why))
            }
        }
    }

    async fn list_policies(&self, req: Request<ListPoliciesRequest>) -> Result<Response<ListPoliciesResponse>, Status> {
        self.0.authorize_in(&req, None, "Policies", "ListPolicies").await?;
        let all = req.into_inner().all_versions;
        let c = self.0.catalogue.lock().await;
        let policies = c.list(all).into_iter().map(|(v, current)| policy_info(&c, v, current, false)).collect();
        Ok(Response::new(ListPoliciesResponse { policies }))
    }

    async fn get_policy(&self, req: Request<GetCataloguePolicyRequest>) -> Result<Response<PolicyInfo>, Status> {
        self.0.authorize_in(&req, None, "Policies", "GetPolicy").await?;
        let r = req.into_inner();
        let c = self.0.catalogue.lock().await;
        let v = c.get(&r.name, &r.digest).map_err(|e| catalogue_status(&e))?;
        let current = c.get(&r.name, "").is_ok_and(|cur| cur.digest == v.digest);
        Ok(Response::new(policy_info(&c, v, current, true)))
    }

    async fn retire_policy(&self, req: Request<RetirePolicyRequest>) -> Result<Response<RetirePolicyResponse>, Status> {
        let s = &self.0;
        let (who, _) = s.authorize_in(&req, Some(Role::Admin), "Policies", "RetirePolicy").await?;
        let r = req.into_inner();
        let target = format!("policy {}", r.name.chars().take(256).collect::<String>());
        if r.reason.len() > MAX_REASON_BYTES {
            s.metrics.refused.fetch_add(1, Relaxed);
            let why = format!("the reason is {} bytes: at most {MAX_REASON_BYTES} are accepted", r.reason.len());
            s.record_raw("policy_retire", &who, &target, "refused", &why).await;
            return Err(Status::invalid_argument(why));
        }
        let done = {
            let mut c = s.catalogue.lock().await;
            let done = c.retire(&r.name, &who, &r.reason, now_ns());
            if done == Ok(true) {
                save_catalogue(&c);
            }
            done.and_then(|changed| {
                let v = c.get(&r.name, "")?;
                Ok((changed, policy_info(&c, v, true, false)))
            })
        };
        match done {
            Ok((changed, info)) => {
                let detail = if changed {
                    format!(
                        "current version {}, {} version(s) kept; reason {:?}; new requests and extensions naming it are refused, \
                         pending requests made against it are not approved, issued grants are unaffected",
                        info.digest, info.versions, r.reason
                    )
                } else {
                    format!("already retired by {} at {}", info.retired_by, warrant_audit::json::rfc3339(info.retired_unix_ns))
                };
                s.record_raw("policy_retire", &who, &target, if changed { "ok" } else { "unchanged" }, &detail).await;
                Ok(Response::new(RetirePolicyResponse { policy: Some(info), changed }))
            }
            Err(why) => {
                s.metrics.refused.fetch_add(1, Relaxed);
                s.record_raw("policy_retire", &who, &target, "refused", &why.to_string()).await;
                Err(catalogue_status(&why))
            }
        }
    }
}
