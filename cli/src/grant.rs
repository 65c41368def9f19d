//! `warrant grant issue` and `warrant grants`: creating grants and listing them.
//!
//! `grant issue` prints only the new grant's id on stdout, so that
//! `G=$(warrant grant issue …)` works; everything else goes to stderr.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use warrant_audit::json::rfc3339;
use warrant_proto::{Grant, GrantState, IssueGrantRequest};

use crate::client::Agent;
use crate::output::{self, Colors, Table};

/// The shortest grant allowed.
const MIN_TTL: Duration = Duration::from_secs(1);

/// The longest grant allowed: temporary access means hours, not days.
const MAX_TTL: Duration = Duration::from_hours(24);

/// `warrant grant …`
#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// Issue a grant (root on this host); prints only its id.
    Issue(IssueArgs),
    /// List grants (same as `warrant grants`).
    List(ListArgs),
    /// Replace a live grant's policy (its running sessions included).
    Update(UpdateArgs),
}

/// `warrant grant update`
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The grant whose policy is replaced.
    #[arg(long, value_name = "ID")]
    pub grant: String,
    /// The new policy file (YAML).
    #[arg(long, value_name = "FILE")]
    pub policy: std::path::PathBuf,
}

/// `warrant grant issue`
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Who the grant is for (a person or an AI agent); recorded on every event.
    #[arg(long, value_name = "NAME")]
    pub subject: String,
    /// How long the grant lasts, from now: 90s, 15m, 1h30m (1s to 24h).
    #[arg(long, value_name = "DURATION")]
    pub ttl: String,
    /// Why access is needed (an incident or ticket); recorded in the audit log.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    /// Policy file (YAML) the session is held to: what it may exec, open and connect to
    #[arg(long, value_name = "FILE")]
    pub policy: Option<std::path::PathBuf>,
}

/// `warrant grants`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Include expired and revoked grants.
    #[arg(long)]
    pub all: bool,
    /// One JSON object per grant per line, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Parses and checks a `--ttl`: a humantime duration, whole seconds, 1s to 24h.
pub fn parse_ttl(text: &str) -> Result<Duration> {
    let ttl = match humantime::parse_duration(text.trim()) {
        Ok(d) => d,
        Err(e) => bail!("invalid --ttl {text}: {e}\n\nUse a duration like 90s, 15m or 1h30m."),
    };
    if ttl.subsec_nanos() != 0 {
        bail!("invalid --ttl {text}: must be a whole number of seconds");
    }
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        bail!("invalid --ttl {text}: must be between 1s and 24h");
    }
    Ok(ttl)
}

/// `warrant grant issue`
pub async fn issue(socket: &Path, args: &IssueArgs, out: &mut impl Write) -> Result<u8> {
    let ttl = parse_ttl(&args.ttl)?;
    if args.subject.trim().is_empty() {
        bail!("invalid --subject: must not be empty");
    }
    let (policy, policy_file) = match &args.policy {
        Some(path) => read_policy(path)?,
        None => (String::new(), String::new()),
    };
    let mut agent = Agent::connect(socket).await?;
    let grant = agent
        .issue_grant(IssueGrantRequest {
            subject: args.subject.clone(),
            ttl_seconds: ttl.as_secs(),
            reason: args.reason.clone(),
            policy,
            policy_file,
        })
        .await?;
    writeln!(out, "{}", grant.id)?;
    out.flush()?;
    Ok(0)
}

/// Reads a policy file and checks it here, for a fast, local error (the agent
/// checks again); returns its text and file name.
fn read_policy(path: &Path) -> Result<(String, String)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read policy file {}: {e}", path.display()))?;
    let file = path.file_name().map_or_else(|| path.display().to_string(), |f| f.to_string_lossy().into_owned());
    warrant_policy::Policy::from_yaml(&text, &file).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((text, file))
}

/// `warrant grant update`
pub async fn update(socket: &Path, args: &UpdateArgs, out: &mut impl Write) -> Result<u8> {
    let (policy, policy_file) = read_policy(&args.policy)?;
    let mut agent = Agent::connect(socket).await?;
    let grant = agent
        .update_policy(warrant_proto::UpdatePolicyRequest { grant: args.grant.clone(), policy, policy_file })
        .await?;
    writeln!(out, "policy {} now applies to grant {}", grant.policy, grant.id)?;
    out.flush()?;
    for w in &grant.warnings {
        let _ = writeln!(std::io::stderr(), "warrant: note: {}", crate::output::sanitize(w));
    }
    Ok(0)
}

/// `warrant grants`
pub async fn list(socket: &Path, args: &ListArgs, out: &mut impl Write) -> Result<u8> {
    let mut agent = Agent::connect(socket).await?;
    let grants = agent.list_grants(args.all).await?;
    if args.json {
        for g in &grants {
            writeln!(out, "{}", grant_json(g))?;
        }
    } else if grants.is_empty() {
        let hint = if args.all { "" } else { " (--all shows expired and revoked ones)" };
        let _ = writeln!(std::io::stderr(), "warrant: no {}grants{hint}", if args.all { "" } else { "active " });
    } else {
        grant_table(&grants, output::now_unix_ns()).write(out, Colors::stdout())?;
    }
    out.flush()?;
    Ok(0)
}

/// A grant state's short name: `active`, `expired`, `revoked`.
pub fn state_name(state: GrantState) -> &'static str {
    match state {
        GrantState::Active => "active",
        GrantState::Expired => "expired",
        GrantState::Revoked => "revoked",
        GrantState::Unspecified => "unknown",
    }
}

fn grant_table(grants: &[Grant], now: i64) -> Table {
    let mut t = Table::new(&["ID", "SUBJECT", "STATE", "LEFT", "SESSIONS", "REASON"]);
    for g in grants {
        let left = match g.state() {
            GrantState::Revoked => "-".to_owned(),
            _ => output::left(g.expires_at_unix_ns, now),
        };
        t.row(vec![
            output::sanitize(&g.id).into_owned(),
            output::sanitize(&g.subject).into_owned(),
            state_name(g.state()).to_owned(),
            left,
            g.sessions.len().to_string(),
            output::sanitize(&g.reason).into_owned(),
        ]);
    }
    t
}

fn grant_json(g: &Grant) -> serde_json::Value {
    json!({
        "id": g.id,
        "subject": g.subject,
        "state": state_name(g.state()),
        "reason": g.reason,
        "issued_by": g.issued_by,
        "issued_at": rfc3339(g.issued_at_unix_ns),
        "expires_at": rfc3339(g.expires_at_unix_ns),
        "sessions": g.sessions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parses_human_durations() {
        assert_eq!(parse_ttl("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("2m").unwrap(), Duration::from_mins(2));
        assert_eq!(parse_ttl("1h30m").unwrap(), Duration::from_mins(90));
        assert_eq!(parse_ttl("1s").unwrap(), MIN_TTL);
        assert_eq!(parse_ttl("24h").unwrap(), MAX_TTL);
    }

    #[test]
    fn ttl_out_of_range_names_the_flag() {
        assert_eq!(parse_ttl("0s").unwrap_err().to_string(), "invalid --ttl 0s: must be between 1s and 24h");
        assert_eq!(parse_ttl("25h").unwrap_err().to_string(), "invalid --ttl 25h: must be between 1s and 24h");
        assert_eq!(
            parse_ttl("1500ms").unwrap_err().to_string(),
            "invalid --ttl 1500ms: must be a whole number of seconds"
        );
        let e = parse_ttl("2x").unwrap_err().to_string();
        assert!(e.starts_with("invalid --ttl 2x: "), "{e}");
        assert!(e.ends_with("\n\nUse a duration like 90s, 15m or 1h30m."), "{e}");
    }

    #[test]
    fn table_shows_time_left_and_expiry() {
        let now = 1_700_000_000_000_000_000;
        let g = |id: &str, state: GrantState, expires: i64| Grant {
            id: id.into(),
            subject: "alice".into(),
            reason: "INC-42".into(),
            expires_at_unix_ns: expires,
            state: state.into(),
            sessions: vec!["s-1".into()],
            ..Default::default()
        };
        let t = grant_table(
            &[
                g("g-1", GrantState::Active, now + 92_000_000_000),
                g("g-2", GrantState::Expired, now - 180_000_000_000),
                g("g-3", GrantState::Revoked, now + 1),
            ],
            now,
        );
        let mut out = Vec::new();
        t.write(&mut out, Colors::default()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID   SUBJECT  STATE    LEFT            SESSIONS  REASON\n\
             g-1  alice    active   1m32s left      1         INC-42\n\
             g-2  alice    expired  expired 3m ago  1         INC-42\n\
             g-3  alice    revoked  -               1         INC-42\n"
        );
    }

    #[test]
    fn json_has_readable_state_and_times() {
        let v = grant_json(&Grant {
            id: "g-1".into(),
            state: GrantState::Active.into(),
            expires_at_unix_ns: 1_700_000_000_000_000_000,
            ..Default::default()
        });
        assert_eq!(v["state"], "active");
        assert_eq!(v["expires_at"], "2023-11-14T22:13:20Z");
    }
}
