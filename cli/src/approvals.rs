//! `warrant request | requests | approve | deny | extend`: the approval flow on a
//! collector (`--collector`, `--ca/--cert/--key`; your certificate's name is who you
//! are, and its role on the collector is what you may do).
//!
//! A request names a policy from the collector's catalogue (`warrant policy list`;
//! an admin pushes them), so the rules of its approval are the admin's, not the
//! requester's. It is approved when the policy's `approvals` count of people
//! holding its `approver_role` approved it (never its requester); the collector
//! then signs a grant token. `warrant requests --id R` shows the policy's text and
//! what it grants, so an approver sees what they approve. The requester gets it with `warrant request --wait --token-out FILE`
//! or later with `warrant requests --id R --token-out FILE`, and runs under it with
//! `warrant exec --token FILE -- cmd` on any host the pattern matches.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::json;
use warrant_audit::json::rfc3339;
use warrant_proto::token::TokenFile;
use warrant_proto::{
    AccessRequest, ApproveRequest, DenyRequest, ExtendRequest, GetRequestRequest, ListRequestsRequest, RequestInfo,
};

use crate::output::{self, Colors, Table, sanitize};
use crate::remote::{Collector, CollectorArgs};

/// How often `--wait` asks again.
const POLL: Duration = Duration::from_secs(1);

/// `warrant request`
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The catalogue policy the grant would carry (`warrant policy list`), optionally
    /// pinned to one version: NAME@sha256:….
    #[arg(long, value_name = "NAME[@DIGEST]")]
    pub policy: String,
    /// How long the grant should last (at most the policy's max_ttl), e.g. 30m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Why the access is needed (shown to approvers, kept in the token and the log).
    #[arg(long)]
    pub reason: String,
    /// Host name or glob the grant is for; any host when unset.
    #[arg(long, value_name = "PATTERN", default_value = "*")]
    pub host: String,
    /// Ask for an AI agent acting for you: the grant's subject is agent:NAME (an AI
    /// agent the collector knows: its ai_agents config).
    #[arg(long, value_name = "NAME")]
    pub for_agent: Option<String>,
    /// Wait until the request is approved (then write the token), denied or expired.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: where to write the token file (mode 0600); stdout when unset.
    #[arg(long, value_name = "FILE", requires = "wait")]
    pub token_out: Option<PathBuf>,
}

/// `warrant requests`
#[derive(Debug, Args)]
pub struct RequestsArgs {
    /// Include approved, denied and expired requests.
    #[arg(long)]
    pub all: bool,
    /// Show one request, with its policy's text and what it grants.
    #[arg(long, value_name = "REQ")]
    pub id: Option<String>,
    /// With --id: write its token file here (yours, once approved).
    #[arg(long, value_name = "FILE", requires = "id")]
    pub token_out: Option<PathBuf>,
    /// One JSON object per request per line, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `warrant approve`
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The request id (r-…), from `warrant requests`.
    pub request: String,
}

/// `warrant deny`
#[derive(Debug, Args)]
pub struct DenyArgs {
    /// The request id (r-…).
    pub request: String,
    /// Why (the requester sees it; it is kept in the log).
    #[arg(long)]
    pub reason: String,
}

/// `warrant extend`
#[derive(Debug, Args)]
// The doc comments below are --help text: `<the original reason>` is not HTML.
#[allow(rustdoc::invalid_html_tags)]
pub struct ExtendArgs {
    /// The grant to extend (g-…), issued by an approved request of yours.
    pub grant: String,
    /// How much longer, e.g. 15m (the new token runs on from the old one's end).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub by: Duration,
    /// Why; "extend GRANT: <the original reason>" when unset.
    #[arg(long, default_value = "")]
    pub reason: String,
}

async fn connect(remote: &CollectorArgs, what: &str) -> Result<Collector> {
    if !remote.is_set() {
        bail!("{what} needs --collector\n\nRequests and approvals live on the collector: pass --collector URL or set WARRANT_COLLECTOR.");
    }
    Collector::connect(remote).await
}

/// `warrant request`: prints the request id (and with --wait, waits for the outcome).
pub async fn request(remote: &CollectorArgs, args: &RequestArgs, out: &mut impl Write) -> Result<u8> {
    let looks_like_file = args.policy.contains('/') || args.policy.ends_with(".yaml") || args.policy.ends_with(".yml");
    if looks_like_file && !args.policy.contains('@') {
        bail!(
            "--policy takes the name of a policy in the collector's catalogue, not a file: {:?}\n\n\
             An admin adds a file with `warrant policy push FILE`; `warrant policy list` shows the names.",
            args.policy
        );
    }
    let (policy_name, policy_digest) = crate::policy::split_ref(&args.policy);
    let c = connect(remote, "request").await?;
    let req = AccessRequest {
        policy_name,
        policy_digest,
        ttl_seconds: args.ttl.as_secs(),
        reason: args.reason.clone(),
        host: args.host.clone(),
        for_agent: args.for_agent.clone().unwrap_or_default(),
    };
    let r = c.call("Request", c.approvals().request(req)).await?;
    writeln!(out, "{}", r.id)?;
    out.flush()?;
    if args.wait {
        let _ = writeln!(
            std::io::stderr(),
            "warrant: waiting for {} approval(s) from role {} (expires in {})",
            r.approvals_needed,
            r.approver_role,
            output::left(r.expires_unix_ns, output::now_unix_ns())
        );
        return wait(&c, &r.id, args.token_out.as_deref(), out).await;
    }
    Ok(0)
}

/// Polls until the request leaves `pending`.
async fn wait(c: &Collector, id: &str, token_out: Option<&Path>, out: &mut impl Write) -> Result<u8> {
    loop {
        let r = c.call("GetRequest", c.approvals().get_request(GetRequestRequest { id: id.to_owned() })).await?;
        match r.state.as_str() {
            "pending" => tokio::time::sleep(POLL).await,
            "approved" => return write_token(&r, token_out, out),
            "denied" => bail!("request {id} was denied by {}: {}", r.denied_by, sanitize(&r.deny_reason)),
            "expired" => bail!("request {id} expired: nobody approved it in time\n\nAsk again with `warrant request`, and ask an approver directly."),
            other => bail!("request {id} is in an unknown state {other:?}"),
        }
    }
}

/// Writes the token file of an approved request.
fn write_token(r: &RequestInfo, path: Option<&Path>, out: &mut impl Write) -> Result<u8> {
    if r.token.is_empty() {
        bail!(
            "request {} has no token for you: it is {}{}",
            r.id,
            r.state,
            if r.state == "approved" { format!(", and only its requester {:?} may fetch the token", r.requested_by) } else { String::new() }
        );
    }
    let comment = format!(
        "warrant grant token {} for {} on {}, from request {}\napproved by: {}\nreason: {}",
        r.grant,
        r.subject,
        r.host,
        r.id,
        r.approvers.join(", "),
        r.reason.replace('\n', " ")
    );
    let text = TokenFile { token: r.token.clone(), policy: r.policy_text.clone() }.render(&comment);
    match path {
        Some(p) => {
            crate::token::write_new(p, &text, 0o600)?;
            let _ = writeln!(std::io::stderr(), "warrant: grant {} issued; token written to {}", r.grant, p.display());
        }
        None => out.write_all(text.as_bytes())?,
    }
    Ok(0)
}

/// `warrant requests`
pub async fn list(remote: &CollectorArgs, args: &RequestsArgs, out: &mut impl Write) -> Result<u8> {
    let c = connect(remote, "requests").await?;
    let requests = match &args.id {
        Some(id) => {
            let r = c.call("GetRequest", c.approvals().get_request(GetRequestRequest { id: id.clone() })).await?;
            if let Some(path) = &args.token_out {
                return write_token(&r, Some(path), out);
            }
            vec![r]
        }
        None => c.call("ListRequests", c.approvals().list_requests(ListRequestsRequest { all: args.all })).await?.requests,
    };
    if args.json {
        for r in &requests {
            writeln!(out, "{}", request_json(r))?;
        }
    } else if let (Some(r), true) = (requests.first(), args.id.is_some()) {
        detail(r, output::now_unix_ns(), out)?;
    } else if requests.is_empty() {
        let _ = writeln!(std::io::stderr(), "warrant: no {}requests", if args.all { "" } else { "pending " });
    } else {
        table(&requests, output::now_unix_ns()).write(out, Colors::stdout())?;
    }
    out.flush()?;
    Ok(0)
}

/// One request in full: who asks what for whom, where it stands, what its policy
/// grants, and the policy's text.
fn detail(r: &RequestInfo, now: i64, out: &mut impl Write) -> Result<()> {
    let state = match r.state.as_str() {
        "pending" => format!("pending ({} left)", output::left(r.expires_unix_ns, now)),
        "approved" => format!("approved: grant {} until {}", r.grant, rfc3339(r.not_after_unix_ns)),
        "denied" => format!("denied by {}: {}", sanitize(&r.denied_by), sanitize(&r.deny_reason)),
        other => other.to_owned(),
    };
    writeln!(out, "request   {}", r.id)?;
    writeln!(out, "state     {state}")?;
    writeln!(out, "subject   {} (asked by {})", sanitize(&r.subject), sanitize(&r.requested_by))?;
    writeln!(out, "host      {}", sanitize(&r.host))?;
    writeln!(out, "ttl       {}", output::short_duration(Duration::from_secs(r.ttl_seconds)))?;
    writeln!(out, "reason    {}", sanitize(&r.reason))?;
    writeln!(
        out,
        "approvals {}/{} from role {}{}",
        r.approvers.len(),
        r.approvals_needed,
        sanitize(&r.approver_role),
        if r.approvers.is_empty() { String::new() } else { format!(" ({})", sanitize(&r.approvers.join(", "))) }
    )?;
    if !r.extends.is_empty() {
        writeln!(out, "extends   {}", r.extends)?;
    }
    writeln!(out, "policy    {} {}", sanitize(&r.policy_name), r.policy_digest)?;
    crate::policy::write_policy(out, &r.policy_grants, &r.policy_text)?;
    Ok(())
}

fn request_json(r: &RequestInfo) -> serde_json::Value {
    let time = |ns: i64| if ns == 0 { serde_json::Value::Null } else { json!(rfc3339(ns)) };
    json!({
        "id": r.id,
        "state": r.state,
        "subject": r.subject,
        "requested_by": r.requested_by,
        "host": r.host,
        "policy": r.policy_name,
        "policy_digest": r.policy_digest,
        "ttl_seconds": r.ttl_seconds,
        "reason": r.reason,
        "approvals_needed": r.approvals_needed,
        "approver_role": r.approver_role,
        "approvers": r.approvers,
        "created": time(r.created_unix_ns),
        "expires": time(r.expires_unix_ns),
        "denied_by": r.denied_by,
        "deny_reason": r.deny_reason,
        "grant": r.grant,
        "not_after": time(r.not_after_unix_ns),
        "extends": r.extends,
        "policy_text": r.policy_text,
        "policy_grants": r.policy_grants,
    })
}

fn table(requests: &[RequestInfo], now: i64) -> Table {
    let mut t = Table::new(&["REQUEST", "STATE", "SUBJECT", "BY", "HOST", "POLICY", "TTL", "APPROVALS", "REASON"]);
    for r in requests {
        let state = match r.state.as_str() {
            "pending" => format!("pending ({} left)", output::left(r.expires_unix_ns, now)),
            "approved" => format!("approved: {}", r.grant),
            other => other.to_owned(),
        };
        t.row(vec![
            r.id.clone(),
            state,
            sanitize(&r.subject).into_owned(),
            sanitize(&r.requested_by).into_owned(),
            sanitize(&r.host).into_owned(),
            sanitize(&r.policy_name).into_owned(),
            output::short_duration(Duration::from_secs(r.ttl_seconds)),
            format!("{}/{} {}", r.approvers.len(), r.approvals_needed, r.approver_role),
            output::truncate(&sanitize(&r.reason), 40).into_owned(),
        ]);
    }
    t
}

/// `warrant approve`
pub async fn approve(remote: &CollectorArgs, args: &ApproveArgs, out: &mut impl Write) -> Result<u8> {
    let c = connect(remote, "approve").await?;
    let r = c.call("Approve", c.approvals().approve(ApproveRequest { id: args.request.clone() })).await?;
    if r.state == "approved" {
        writeln!(
            out,
            "approved {}: grant {} issued for {} on {} until {}",
            r.id,
            r.grant,
            r.subject,
            r.host,
            output::clock(r.not_after_unix_ns)
        )?;
    } else {
        writeln!(out, "approved {}: {} of {} approvals, still pending", r.id, r.approvers.len(), r.approvals_needed)?;
    }
    Ok(0)
}

/// `warrant deny`
pub async fn deny(remote: &CollectorArgs, args: &DenyArgs, out: &mut impl Write) -> Result<u8> {
    let c = connect(remote, "deny").await?;
    let r = c.call("Deny", c.approvals().deny(DenyRequest { id: args.request.clone(), reason: args.reason.clone() })).await?;
    writeln!(out, "denied {}", r.id)?;
    Ok(0)
}

/// `warrant extend`: prints the new request's id.
pub async fn extend(remote: &CollectorArgs, args: &ExtendArgs, out: &mut impl Write) -> Result<u8> {
    let c = connect(remote, "extend").await?;
    let req = ExtendRequest { grant: args.grant.clone(), by_seconds: args.by.as_secs(), reason: args.reason.clone() };
    let r = c.call("Extend", c.approvals().extend(req)).await?;
    writeln!(out, "{}", r.id)?;
    Ok(0)
}
