//! `warrant kill` and `warrant revoke`: the kill switch.
//!
//! Both return once the agent reports the process trees dead, and print what it
//! did: how many processes, how long it took. A process that survived is a loud
//! warning and a non-zero exit (1), because the on-call engineer must not walk away
//! believing access is gone when it is not.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use anyhow::Result;
use clap::{ArgGroup, Args};
use serde_json::json;
use warrant_proto::{KillReport, KillRequest, RevokeGrantRequest};

use crate::client::Agent;
use crate::output::{self, Colors, Paint};

/// `warrant kill`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["session", "grant"])))]
pub struct KillArgs {
    /// Kill this session's whole process tree (s-…).
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Revoke this grant and kill every session under it (g-…).
    #[arg(long, value_name = "ID")]
    pub grant: Option<String>,
    /// Why, recorded in the audit log.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    /// Print the kill report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `warrant revoke`
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The grant to revoke; every session under it is killed (g-…).
    #[arg(long, value_name = "ID")]
    pub grant: String,
    /// Why, recorded in the audit log.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    /// Print the kill report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `warrant kill`
pub async fn kill(socket: &Path, args: &KillArgs, out: &mut impl Write) -> Result<u8> {
    let mut agent = Agent::connect(socket).await?;
    match (&args.session, &args.grant) {
        (Some(session), _) => {
            let req = KillRequest { session: session.clone(), reason: args.reason.clone() };
            let report = agent.kill(req).await?;
            print_report(&Target::Session(session), &report, args.json, out)
        }
        (None, Some(grant)) => {
            let req = RevokeGrantRequest { grant: grant.clone(), reason: args.reason.clone() };
            let report = agent.revoke_grant(req).await?;
            print_report(&Target::Grant(grant), &report, args.json, out)
        }
        // clap's ArgGroup requires one of them.
        (None, None) => anyhow::bail!("missing --session or --grant"),
    }
}

/// `warrant revoke`
pub async fn revoke(socket: &Path, args: &RevokeArgs, out: &mut impl Write) -> Result<u8> {
    let mut agent = Agent::connect(socket).await?;
    let req = RevokeGrantRequest { grant: args.grant.clone(), reason: args.reason.clone() };
    let report = agent.revoke_grant(req).await?;
    print_report(&Target::Grant(&args.grant), &report, args.json, out)
}

/// What was killed.
#[derive(Debug)]
pub enum Target<'a> {
    /// One session.
    Session(&'a str),
    /// A revoked grant.
    Grant(&'a str),
}

/// Prints the report to `out` (and survivors to stderr); returns the exit status:
/// 1 when any process survived, else 0.
pub fn print_report(target: &Target<'_>, report: &KillReport, as_json: bool, out: &mut impl Write) -> Result<u8> {
    let survivors: u64 = report.sessions.iter().map(|s| u64::from(s.survivors)).sum();
    if as_json {
        let (kind, id) = match target {
            Target::Session(s) => ("session", *s),
            Target::Grant(g) => ("grant", *g),
        };
        let sessions: Vec<_> = report
            .sessions
            .iter()
            .map(|s| {
                json!({
                    "session": s.session,
                    "killed": s.killed,
                    "elapsed_us": s.elapsed_us,
                    "survivors": s.survivors,
                })
            })
            .collect();
        let killed: u64 = report.sessions.iter().map(|s| u64::from(s.killed)).sum();
        let v = json!({ kind: id, "sessions": sessions, "killed": killed, "survivors": survivors });
        writeln!(out, "{v}")?;
    } else {
        out.write_all(report_text(target, report).as_bytes())?;
    }
    out.flush()?;
    if survivors == 0 {
        return Ok(0);
    }
    let colors = Colors::stderr();
    let mut err = std::io::stderr().lock();
    for s in report.sessions.iter().filter(|s| s.survivors > 0) {
        let line = format!(
            "warrant: session {}: {} process{} survived the kill and may still be running",
            output::sanitize(&s.session),
            s.survivors,
            if s.survivors == 1 { "" } else { "es" }
        );
        let _ = writeln!(err, "{}", colors.paint(Paint::Red, &line));
    }
    let _ = writeln!(err, "\nCheck `warrant sessions` and the agent's logs; the grant stays dead in the kernel.");
    Ok(1)
}

/// The human report, one line per session.
fn report_text(target: &Target<'_>, report: &KillReport) -> String {
    let mut text = String::new();
    let line = |s: &warrant_proto::SessionKill| {
        format!(
            "killed session {}: {} process{} in {}\n",
            output::sanitize(&s.session),
            s.killed,
            if s.killed == 1 { "" } else { "es" },
            output::elapsed_us(s.elapsed_us)
        )
    };
    match target {
        Target::Session(id) if report.sessions.is_empty() => {
            let _ = writeln!(text, "session {}: nothing was running", output::sanitize(id));
        }
        Target::Session(_) => report.sessions.iter().for_each(|s| text.push_str(&line(s))),
        Target::Grant(id) => {
            let id = output::sanitize(id);
            if report.sessions.is_empty() {
                let _ = writeln!(text, "revoked grant {id}: it had no live sessions");
            } else {
                let _ = writeln!(text, "revoked grant {id}");
                report.sessions.iter().for_each(|s| text.push_str(&line(s)));
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use warrant_proto::SessionKill;

    fn sk(session: &str, killed: u32, elapsed_us: u64, survivors: u32) -> SessionKill {
        SessionKill { session: session.into(), killed, elapsed_us, survivors }
    }

    #[test]
    fn session_report() {
        let r = KillReport { sessions: vec![sk("s-3", 53, 41_234, 0)] };
        assert_eq!(report_text(&Target::Session("s-3"), &r), "killed session s-3: 53 processes in 41.2 ms\n");
        let r = KillReport { sessions: vec![sk("s-3", 1, 800, 0)] };
        assert_eq!(report_text(&Target::Session("s-3"), &r), "killed session s-3: 1 process in 0.8 ms\n");
    }

    #[test]
    fn grant_report() {
        let r = KillReport { sessions: vec![sk("s-1", 2, 1000, 0), sk("s-2", 3, 2000, 0)] };
        assert_eq!(
            report_text(&Target::Grant("g-1"), &r),
            "revoked grant g-1\nkilled session s-1: 2 processes in 1.0 ms\nkilled session s-2: 3 processes in 2.0 ms\n"
        );
        let r = KillReport::default();
        assert_eq!(report_text(&Target::Grant("g-1"), &r), "revoked grant g-1: it had no live sessions\n");
    }

    #[test]
    fn survivors_exit_non_zero_and_json_totals() {
        let r = KillReport { sessions: vec![sk("s-1", 5, 1000, 2)] };
        let mut out = Vec::new();
        assert_eq!(print_report(&Target::Session("s-1"), &r, true, &mut out).unwrap(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!((v["session"].as_str(), v["killed"].as_u64(), v["survivors"].as_u64()), (Some("s-1"), Some(5), Some(2)));
        let r = KillReport { sessions: vec![sk("s-1", 5, 1000, 0)] };
        assert_eq!(print_report(&Target::Session("s-1"), &r, false, &mut Vec::new()).unwrap(), 0);
    }
}
