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
use warrant_proto::{KillReport, RemoteKillResponse};

use crate::output::{self, Colors, Paint};
use crate::remote::CollectorArgs;
use crate::target;

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

/// Exit status when the agent holding the target is not connected: the kill is
/// queued on the collector, and the processes may still be running.
pub const QUEUED: u8 = 3;

/// `warrant kill`
pub async fn kill(
    socket: &Path,
    remote: &CollectorArgs,
    args: &KillArgs,
    out: &mut impl Write,
) -> Result<u8> {
    let to = target::Target::connect(socket, remote).await?;
    match (&args.session, &args.grant) {
        (Some(session), _) => {
            let resp = to.kill(session, &args.reason).await?;
            print_answer(&to, &Target::Session(session), &resp, args.json, out)
        }
        (None, Some(grant)) => {
            let resp = to.revoke(grant, &args.reason).await?;
            print_answer(&to, &Target::Grant(grant), &resp, args.json, out)
        }
        // clap's ArgGroup requires one of them.
        (None, None) => anyhow::bail!("missing --session or --grant"),
    }
}

/// `warrant revoke`
pub async fn revoke(
    socket: &Path,
    remote: &CollectorArgs,
    args: &RevokeArgs,
    out: &mut impl Write,
) -> Result<u8> {
    let to = target::Target::connect(socket, remote).await?;
    let resp = to.revoke(&args.grant, &args.reason).await?;
    print_answer(&to, &Target::Grant(&args.grant), &resp, args.json, out)
}

/// The answer as its side gave it: a collector's names the host (or says the kill
/// is queued); the local agent's is the report alone.
fn print_answer(
    to: &target::Target,
    what: &Target<'_>,
    resp: &RemoteKillResponse,
    as_json: bool,
    out: &mut impl Write,
) -> Result<u8> {
    if to.is_collector() {
        print_remote(what, resp, as_json, out)
    } else {
        print_report(what, &resp.report.clone().unwrap_or_default(), as_json, out)
    }
}

/// What was killed.
#[derive(Debug)]
pub enum Target<'a> {
    /// One session.
    Session(&'a str),
    /// A revoked grant.
    Grant(&'a str),
}

/// What a collector answered: the agent's report, or that the kill is queued.
/// Exit status as for [`print_report`], or [`QUEUED`].
pub fn print_remote(
    target: &Target<'_>,
    resp: &RemoteKillResponse,
    as_json: bool,
    out: &mut impl Write,
) -> Result<u8> {
    let host = if resp.host.is_empty() {
        "?"
    } else {
        resp.host.as_str()
    };
    if !resp.delivered {
        if as_json {
            let mut v = target_json(target);
            v["agent_id"] = json!(resp.agent_id);
            v["host"] = json!(resp.host);
            v["delivered"] = json!(false);
            v["queued"] = json!(true);
            writeln!(out, "{v}")?;
        } else {
            writeln!(
                out,
                "agent {} on {} is unreachable: the {} is queued and runs when it reconnects",
                output::sanitize(&resp.agent_id),
                output::sanitize(host),
                match target {
                    Target::Session(_) => "kill",
                    Target::Grant(_) => "revoke",
                }
            )?;
        }
        out.flush()?;
        return Ok(QUEUED);
    }
    let report = resp.report.clone().unwrap_or_default();
    if as_json {
        let mut v = report_json(target, &report);
        v["agent_id"] = json!(resp.agent_id);
        v["host"] = json!(resp.host);
        v["delivered"] = json!(true);
        writeln!(out, "{v}")?;
        out.flush()?;
        return Ok(finish_report(&report));
    }
    writeln!(
        out,
        "on {} (agent {}):",
        output::sanitize(host),
        output::sanitize(&resp.agent_id)
    )?;
    print_report(target, &report, false, out)
}

fn target_json(target: &Target<'_>) -> serde_json::Value {
    match target {
        Target::Session(s) => json!({ "session": s }),
        Target::Grant(g) => json!({ "grant": g }),
    }
}

/// The report as JSON: per session, and the totals (`warrant kill --json`, the console).
pub fn report_json(target: &Target<'_>, report: &KillReport) -> serde_json::Value {
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
    let survivors: u64 = report.sessions.iter().map(|s| u64::from(s.survivors)).sum();
    let mut v = target_json(target);
    v["sessions"] = json!(sessions);
    v["killed"] = json!(killed);
    v["survivors"] = json!(survivors);
    v
}

/// Prints the report to `out` (and survivors to stderr); returns the exit status:
/// 1 when any process survived, else 0.
pub fn print_report(
    target: &Target<'_>,
    report: &KillReport,
    as_json: bool,
    out: &mut impl Write,
) -> Result<u8> {
    if as_json {
        writeln!(out, "{}", report_json(target, report))?;
    } else {
        out.write_all(report_text(target, report).as_bytes())?;
    }
    out.flush()?;
    Ok(finish_report(report))
}

/// Warns about survivors on stderr; the exit status.
fn finish_report(report: &KillReport) -> u8 {
    let survivors: u64 = report.sessions.iter().map(|s| u64::from(s.survivors)).sum();
    if survivors == 0 {
        return 0;
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
    let _ = writeln!(
        err,
        "\nCheck `warrant sessions` and the agent's logs; the grant stays dead in the kernel."
    );
    1
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
            let _ = writeln!(
                text,
                "session {}: nothing was running",
                output::sanitize(id)
            );
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
        SessionKill {
            session: session.into(),
            killed,
            elapsed_us,
            survivors,
        }
    }

    #[test]
    fn session_report() {
        let r = KillReport {
            sessions: vec![sk("s-3", 53, 41_234, 0)],
        };
        assert_eq!(
            report_text(&Target::Session("s-3"), &r),
            "killed session s-3: 53 processes in 41.2 ms\n"
        );
        let r = KillReport {
            sessions: vec![sk("s-3", 1, 800, 0)],
        };
        assert_eq!(
            report_text(&Target::Session("s-3"), &r),
            "killed session s-3: 1 process in 0.8 ms\n"
        );
    }

    #[test]
    fn grant_report() {
        let r = KillReport {
            sessions: vec![sk("s-1", 2, 1000, 0), sk("s-2", 3, 2000, 0)],
        };
        assert_eq!(
            report_text(&Target::Grant("g-1"), &r),
            "revoked grant g-1\nkilled session s-1: 2 processes in 1.0 ms\nkilled session s-2: 3 processes in 2.0 ms\n"
        );
        let r = KillReport::default();
        assert_eq!(
            report_text(&Target::Grant("g-1"), &r),
            "revoked grant g-1: it had no live sessions\n"
        );
    }

    #[test]
    fn survivors_exit_non_zero_and_json_totals() {
        let r = KillReport {
            sessions: vec![sk("s-1", 5, 1000, 2)],
        };
        let mut out = Vec::new();
        assert_eq!(
            print_report(&Target::Session("s-1"), &r, true, &mut out).unwrap(),
            1
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (
                v["session"].as_str(),
                v["killed"].as_u64(),
                v["survivors"].as_u64()
            ),
            (Some("s-1"), Some(5), Some(2))
        );
        let r = KillReport {
            sessions: vec![sk("s-1", 5, 1000, 0)],
        };
        assert_eq!(
            print_report(&Target::Session("s-1"), &r, false, &mut Vec::new()).unwrap(),
            0
        );
    }

    #[test]
    fn remote_kills_name_the_host_or_say_queued() {
        let resp = RemoteKillResponse {
            agent_id: "agent-1".into(),
            host: "db-7".into(),
            delivered: true,
            report: Some(KillReport {
                sessions: vec![sk("s-3", 4, 2500, 0)],
            }),
        };
        let mut out = Vec::new();
        assert_eq!(
            print_remote(&Target::Session("s-3"), &resp, false, &mut out).unwrap(),
            0
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "on db-7 (agent agent-1):\nkilled session s-3: 4 processes in 2.5 ms\n"
        );
        let queued = RemoteKillResponse {
            delivered: false,
            report: None,
            ..resp
        };
        let mut out = Vec::new();
        assert_eq!(
            print_remote(&Target::Session("s-3"), &queued, false, &mut out).unwrap(),
            QUEUED
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "agent agent-1 on db-7 is unreachable: the kill is queued and runs when it reconnects\n"
        );
        let mut out = Vec::new();
        print_remote(&Target::Session("s-3"), &queued, true, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (v["queued"].as_bool(), v["host"].as_str()),
            (Some(true), Some("db-7"))
        );
    }
}
