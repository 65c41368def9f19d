//! `warrant agents`: the agents a collector knows, connected or not.

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::json;
use warrant_proto::KnownAgent;
use warrant_audit::json::rfc3339;

use crate::output::{self, Colors, Paint, Table, sanitize};
use crate::remote::{Collector, CollectorArgs};

/// `warrant agents`
#[derive(Debug, Args)]
pub struct AgentsArgs {
    /// One JSON object per agent per line, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `warrant agents`
pub async fn run(remote: &CollectorArgs, args: &AgentsArgs, out: &mut impl Write) -> Result<u8> {
    if !remote.is_set() {
        bail!("agents needs --collector\n\nPass --collector URL or set WARRANT_COLLECTOR; `warrant status` shows the local agent.");
    }
    let mut collector = Collector::connect(remote).await?;
    let agents = collector.agents().await?;
    if args.json {
        for a in &agents {
            writeln!(out, "{}", agent_json(a))?;
        }
    } else if agents.is_empty() {
        let _ = writeln!(std::io::stderr(), "warrant: the collector knows no agents yet");
    } else {
        agent_table(&agents, output::now_unix_ns(), Colors::stdout()).write(out, Colors::stdout())?;
    }
    out.flush()?;
    Ok(0)
}

fn agent_json(a: &KnownAgent) -> serde_json::Value {
    json!({
        "agent_id": a.agent_id,
        "host": a.host,
        "boot_id": a.boot_id,
        "version": a.version,
        "connected": a.connected,
        "last_seen": rfc3339(a.last_seen_unix_ns),
        "acked_seq": a.acked_seq,
        "queued_commands": a.queued_commands,
    })
}

fn agent_table(agents: &[KnownAgent], now: i64, colors: Colors) -> Table {
    let mut t = Table::new(&["AGENT", "HOST", "VERSION", "STATE", "ACKED SEQ", "QUEUED"]);
    for a in agents {
        let state = if a.connected {
            colors.paint(Paint::Green, "connected").into_owned()
        } else {
            let ago = Duration::from_nanos(u64::try_from(now.saturating_sub(a.last_seen_unix_ns)).unwrap_or(0));
            colors.paint(Paint::Red, &format!("gone {} ago", output::short_duration(ago))).into_owned()
        };
        t.row(vec![
            sanitize(&a.agent_id).into_owned(),
            sanitize(&a.host).into_owned(),
            sanitize(&a.version).into_owned(),
            state,
            a.acked_seq.to_string(),
            a.queued_commands.to_string(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_says_who_is_gone_and_what_waits() {
        let now = 1_000_000_000_000;
        let agents = [
            KnownAgent { agent_id: "agent-a".into(), host: "db-1".into(), version: "0.1.0".into(), connected: true, acked_seq: 42, ..Default::default() },
            KnownAgent {
                agent_id: "agent-b".into(),
                host: "web-2".into(),
                version: "0.1.0".into(),
                connected: false,
                last_seen_unix_ns: now - 90_000_000_000,
                queued_commands: 1,
                ..Default::default()
            },
        ];
        let mut out = Vec::new();
        agent_table(&agents, now, Colors::default()).write(&mut out, Colors::default()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("agent-a  db-1   0.1.0    connected"), "{text}");
        assert!(text.contains("gone 1m30s ago"), "{text}");
        assert_eq!(agent_json(&agents[1])["queued_commands"], 1);
    }
}
