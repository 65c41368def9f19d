//! `warrant policy check`: parse and validate policy files on this machine, with no
//! agent, so a policy can be checked in an editor, in review or in CI before any grant
//! uses it. `warrant policy push | list | show | retire`: the collector's policy
//! catalogue, the policies grant requests name (`warrant request --policy NAME`);
//! an admin pushes and retires, every person role reads, and each version is kept
//! by its digest.
//!
//! Each valid file gets one `ok` line on stdout; each invalid one gets its problems on
//! stderr, one `file:line: field: message` line each (the shape compilers use, so
//! editors can jump to them). The exit status is 0 when every file is valid, else 2.
//! `--json` prints one object per file on stdout instead of the `ok` lines: the
//! normalised policy (fields in policy-file order) and its digest, or the problems;
//! the problems still go to stderr for whoever is watching.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::json;
use warrant_policy::{Error, Policy};
use warrant_audit::json::rfc3339;
use warrant_proto::{GetCataloguePolicyRequest, ListPoliciesRequest, PolicyInfo, PushPolicyRequest, RetirePolicyRequest};

use crate::output::{self, Colors, Paint, Table, sanitize};
use crate::remote::{Collector, CollectorArgs};

/// `warrant policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and validate policy files locally; print a summary of each, or every
    /// problem with its file, line and field.
    Check(CheckArgs),
    /// Add policy files to the collector's catalogue, each as a new version (admin).
    Push(PushArgs),
    /// List the collector's catalogue: the current version of each policy.
    List(ListArgs),
    /// Show a catalogue policy: its text and what it grants (NAME, or NAME@sha256:… for one version).
    Show(ShowArgs),
    /// Retire a catalogue policy (admin): no new request may name it; issued grants are unaffected.
    Retire(RetireArgs),
}

/// `warrant policy retire`
#[derive(Debug, Args)]
pub struct RetireArgs {
    /// The policy's name (every version of it is retired).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Why, for the collector's audit log.
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `warrant policy push`
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The policy files (YAML); each policy's `name:` is its catalogue name.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// `warrant policy list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Every version of each policy, newest first, not only the current one.
    #[arg(long)]
    pub all: bool,
    /// One JSON object per version per line, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `warrant policy show`
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The policy's name, optionally with @DIGEST for one version (NAME@sha256:…).
    #[arg(value_name = "NAME[@DIGEST]")]
    pub policy: String,
    /// One JSON object: the version, its text and what it grants.
    #[arg(long)]
    pub json: bool,
}

/// `NAME` or `NAME@sha256:…` as (name, digest or "").
pub fn split_ref(s: &str) -> (String, String) {
    match s.split_once('@') {
        Some((name, digest)) => (name.to_owned(), digest.to_owned()),
        None => (s.to_owned(), String::new()),
    }
}

async fn connect(remote: &CollectorArgs, what: &str) -> Result<Collector> {
    if !remote.is_set() {
        bail!(
            "policy {what} needs --collector\n\nThe policy catalogue lives on the collector: pass --collector URL or set \
             WARRANT_COLLECTOR. `warrant policy check FILE` checks a file locally."
        );
    }
    Collector::connect(remote).await
}

/// `warrant policy push`: one line per file; 2 when any file was refused (the
/// collector's problems, `file:line: field: message`, on stderr).
pub async fn push(remote: &CollectorArgs, args: &PushArgs, out: &mut impl Write, err: &mut impl Write) -> Result<u8> {
    let mut texts = Vec::new();
    for path in &args.files {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read policy {}", path.display()))?;
        texts.push((path.display().to_string(), text));
    }
    let c = connect(remote, "push").await?;
    let mut failed = false;
    for (file, text) in texts {
        let mut client = c.policies();
        match c.call("PushPolicy", client.push_policy(PushPolicyRequest { text, file: file.clone() })).await {
            Ok(r) => {
                let p = r.policy.unwrap_or_default();
                let what = if r.changed { format!("pushed, now current ({} version(s))", p.versions) } else { "unchanged: already the current version".to_owned() };
                writeln!(out, "{}  {}: policy {} {} {what}", Colors::stdout().paint(Paint::Green, "ok"), sanitize(&file), sanitize(&p.name), p.digest)?;
            }
            Err(e) if e.chain().any(|c| c.downcast_ref::<crate::client::RpcError>().is_some_and(|r| r.code == tonic::Code::InvalidArgument)) => {
                failed = true;
                for (i, line) in format!("{e:#}").lines().enumerate() {
                    writeln!(err, "{}{}", if i == 0 { "warrant: " } else { "" }, sanitize(line))?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    out.flush()?;
    Ok(if failed { 2 } else { 0 })
}

/// `warrant policy retire`
pub async fn retire(remote: &CollectorArgs, args: &RetireArgs, out: &mut impl Write) -> Result<u8> {
    let c = connect(remote, "retire").await?;
    let req = RetirePolicyRequest { name: args.name.clone(), reason: args.reason.clone() };
    let r = c.call("RetirePolicy", c.policies().retire_policy(req)).await?;
    let p = r.policy.unwrap_or_default();
    let ok = Colors::stdout().paint(Paint::Green, "ok");
    if r.changed {
        writeln!(
            out,
            "{ok}  policy {} retired ({} version(s) kept): new requests naming it are refused, pending ones are not approved; issued grants are unaffected",
            sanitize(&p.name),
            p.versions
        )?;
    } else {
        writeln!(out, "{ok}  policy {} unchanged: {}", sanitize(&p.name), retired_line(&p))?;
    }
    out.flush()?;
    Ok(0)
}

/// "retired by admin at 2025-…Z (reason: …)"
fn retired_line(p: &PolicyInfo) -> String {
    let mut s = format!("retired by {} at {}", sanitize(&p.retired_by), rfc3339(p.retired_unix_ns));
    if !p.retired_reason.is_empty() {
        s.push_str(&format!(" (reason: {})", sanitize(&p.retired_reason)));
    }
    s
}

/// `warrant policy list`
pub async fn list(remote: &CollectorArgs, args: &ListArgs, out: &mut impl Write) -> Result<u8> {
    let c = connect(remote, "list").await?;
    let policies = c.call("ListPolicies", c.policies().list_policies(ListPoliciesRequest { all_versions: args.all })).await?.policies;
    if args.json {
        for p in &policies {
            writeln!(out, "{}", policy_json(p))?;
        }
    } else if policies.is_empty() {
        let _ = writeln!(std::io::stderr(), "warrant: the collector's policy catalogue is empty (an admin adds policies with `warrant policy push FILE`)");
    } else {
        let mut t = Table::new(&["POLICY", "DIGEST", "STATE", "CURRENT", "VERSIONS", "MAX_TTL", "APPROVALS", "SUBJECTS", "PUSHED", "BY"]);
        for p in &policies {
            t.row(vec![
                sanitize(&p.name).into_owned(),
                p.digest.clone(),
                if p.retired { "retired".to_owned() } else { "in-use".to_owned() },
                if p.current { "yes".to_owned() } else { "no".to_owned() },
                p.versions.to_string(),
                output::short_duration(std::time::Duration::from_secs(p.max_ttl_seconds)),
                format!("{} {}", p.approvals, sanitize(&p.approver_role)),
                p.subjects.join(","),
                if p.pushed_unix_ns == 0 { String::new() } else { rfc3339(p.pushed_unix_ns) },
                sanitize(&p.pushed_by).into_owned(),
            ]);
        }
        t.write(out, Colors::stdout())?;
    }
    out.flush()?;
    Ok(0)
}

/// `warrant policy show`
pub async fn show(remote: &CollectorArgs, args: &ShowArgs, out: &mut impl Write) -> Result<u8> {
    let (name, digest) = split_ref(&args.policy);
    let c = connect(remote, "show").await?;
    let p = c.call("GetPolicy", c.policies().get_policy(GetCataloguePolicyRequest { name, digest })).await?;
    if args.json {
        let mut v = policy_json(&p);
        v["text"] = json!(p.text);
        v["grants"] = json!(p.grants);
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "policy {} {}{}", sanitize(&p.name), p.digest, if p.current { " (current)" } else { " (not current)" })?;
        writeln!(out, "pushed {} by {}; {} version(s) in the catalogue", rfc3339(p.pushed_unix_ns), sanitize(&p.pushed_by), p.versions)?;
        if p.retired {
            writeln!(out, "{}: no new request may name it", retired_line(&p))?;
        }
        write_policy(out, &p.grants, &p.text)?;
    }
    out.flush()?;
    Ok(0)
}

/// What a policy grants, then its text, indented: for `policy show` and
/// `requests --id`.
pub fn write_policy(out: &mut impl Write, grants: &[String], text: &str) -> std::io::Result<()> {
    writeln!(out, "grants:")?;
    for g in grants {
        writeln!(out, "  {}", sanitize(g))?;
    }
    writeln!(out, "policy text:")?;
    for line in text.lines() {
        writeln!(out, "  | {}", sanitize(line))?;
    }
    Ok(())
}

fn policy_json(p: &PolicyInfo) -> serde_json::Value {
    json!({
        "name": p.name,
        "digest": p.digest,
        "current": p.current,
        "versions": p.versions,
        "max_ttl_seconds": p.max_ttl_seconds,
        "approvals": p.approvals,
        "approver_role": p.approver_role,
        "subjects": p.subjects,
        "pushed": if p.pushed_unix_ns == 0 { serde_json::Value::Null } else { json!(rfc3339(p.pushed_unix_ns)) },
        "pushed_by": p.pushed_by,
        "retired": p.retired,
        "retired_by": if p.retired { json!(p.retired_by) } else { serde_json::Value::Null },
        "retired_at": if p.retired { json!(rfc3339(p.retired_unix_ns)) } else { serde_json::Value::Null },
        "retired_reason": if p.retired { json!(p.retired_reason) } else { serde_json::Value::Null },
    })
}

/// `warrant policy check`
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy files (YAML) to check.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Print one JSON object per file: the normalised policy and its digest, or the
    /// problems.
    #[arg(long)]
    pub json: bool,
}

/// `warrant policy check`: returns 0 when every file is valid, else 2.
pub fn check(args: &CheckArgs, out: &mut impl Write, err: &mut impl Write) -> Result<u8> {
    let colors = Colors::stdout();
    let mut failed = false;
    for path in &args.files {
        let file = sanitize(&path.display().to_string()).into_owned();
        match Policy::load(path) {
            Ok(policy) if args.json => {
                let v = Checked { file: &file, ok: true, digest: policy.digest().to_string(), policy: &policy };
                writeln!(out, "{}", serde_json::to_string(&v)?)?;
            }
            Ok(policy) => writeln!(out, "{}  {file}: {}", colors.paint(Paint::Green, "ok"), summary(&policy))?,
            Err(e) => {
                failed = true;
                if args.json {
                    writeln!(out, "{}", error_json(&file, &e))?;
                }
                for line in e.to_string().lines() {
                    writeln!(err, "{}", sanitize(line))?;
                }
            }
        }
    }
    out.flush()?;
    Ok(if failed { 2 } else { 0 })
}

/// The `--json` line of a valid file. A struct rather than `json!` so the policy's
/// fields keep the order of a policy file.
#[derive(Serialize)]
struct Checked<'a> {
    /// The file, as given.
    file: &'a str,
    /// Always true: the line for a valid file.
    ok: bool,
    /// The policy's digest, `sha256:…`.
    digest: String,
    /// The normalised policy.
    policy: &'a Policy,
}

/// `policy db-debug (default allow, 2 exec, 2 file, 2 network rules, max_ttl 1h,
/// on_expiry kill-session)`
fn summary(p: &Policy) -> String {
    format!(
        "policy {} (default {}, {} exec, {} file, {} network rules, max_ttl {}, on_expiry {})",
        p.name,
        p.default,
        p.exec.len(),
        p.files.len(),
        p.network.len(),
        humantime::format_duration(p.max_ttl),
        p.on_expiry,
    )
}

/// `{"file": …, "ok": false, "errors": [{"line", "field", "message"}]}`; `line` and
/// `field` are null when the file could not be read.
fn error_json(file: &str, e: &Error) -> serde_json::Value {
    let errors: Vec<_> = match e {
        Error::Invalid { problems, .. } => {
            problems.iter().map(|p| json!({ "line": p.line, "field": p.field, "message": p.message })).collect()
        }
        Error::Read { .. } => vec![json!({ "line": null, "field": null, "message": e.to_string() })],
    };
    json!({ "file": file, "ok": false, "errors": errors })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB_DEBUG: &str = include_str!("../../policy/examples/db-debug.yaml");

    #[test]
    fn summary_line() {
        let p = Policy::from_yaml(DB_DEBUG, "db-debug.yaml").unwrap();
        assert_eq!(
            summary(&p),
            "policy db-debug (default allow, 2 exec, 2 file, 2 network rules, max_ttl 1h, on_expiry kill-session)"
        );
    }

    #[test]
    fn problems_as_json() {
        let e = Policy::from_yaml("name: x\nmax_ttl: 1h\ndefault: allow\nexce: []\n", "x.yaml").unwrap_err();
        let v = error_json("x.yaml", &e);
        assert_eq!(v["ok"], false);
        assert_eq!(v["errors"][0]["line"], 4);
        assert_eq!(v["errors"][0]["field"], "exce");
        assert!(v["errors"][0]["message"].as_str().unwrap().starts_with("unknown field"));
    }
}
