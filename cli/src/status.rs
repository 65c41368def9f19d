//! `warrant status`: is the agent up, what can this kernel do, is anything lost.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use clap::Args;
use serde_json::json;
use warrant_proto::AgentStatus;

use crate::client::Agent;
use crate::output::{Colors, Paint, sanitize};

/// `warrant status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `warrant status`
pub async fn run(socket: &Path, args: &StatusArgs, out: &mut impl Write) -> Result<u8> {
    let mut agent = Agent::connect(socket).await?;
    let status = agent.status().await?;
    if args.json {
        writeln!(out, "{}", status_json(&status))?;
    } else {
        out.write_all(status_text(&status, Colors::stdout()).as_bytes())?;
    }
    out.flush()?;
    Ok(0)
}

fn status_json(s: &AgentStatus) -> serde_json::Value {
    let features: Vec<_> = s
        .features
        .iter()
        .map(|f| json!({ "name": f.name, "available": f.available, "detail": f.detail }))
        .collect();
    json!({
        "version": s.version,
        "agent_id": s.agent_id,
        "boot_id": s.boot_id,
        "host": s.host,
        "events_total": s.events_total,
        "events_lost_total": s.events_lost_total,
        "sessions_live": s.sessions_live,
        "grants_active": s.grants_active,
        "features": features,
        "collector": s.collector,
        "collector_connected": s.collector_connected,
        "acked_seq": s.acked_seq,
        "spool_events": s.spool_events,
        "spool_bytes": s.spool_bytes,
        "spool_full_total": s.spool_full_total,
    })
}

fn status_text(s: &AgentStatus, colors: Colors) -> String {
    let lost = if s.events_lost_total == 0 {
        "0 lost".to_owned()
    } else {
        colors.paint(Paint::Red, &format!("{} LOST", s.events_lost_total)).into_owned()
    };
    let mut text = format!(
        "agent     warrant-agent {} (id {}, boot {})\n\
         host      {}\n\
         events    {} total, {lost}\n\
         sessions  {} live\n\
         grants    {} active\n",
        sanitize(&s.version),
        sanitize(&s.agent_id),
        sanitize(&s.boot_id),
        sanitize(&s.host),
        s.events_total,
        s.sessions_live,
        s.grants_active,
    );
    if !s.collector.is_empty() {
        let link = if s.collector_connected {
            colors.paint(Paint::Green, "connected").into_owned()
        } else {
            colors.paint(Paint::Red, "NOT CONNECTED").into_owned()
        };
        let full = if s.spool_full_total == 0 {
            String::new()
        } else {
            colors
                .paint(Paint::Red, &format!(", {} NOT SPOOLED (spool was full)", s.spool_full_total))
                .into_owned()
        };
        text.push_str(&format!(
            "collector {} {link}, acked up to seq {}\nspool     {} events waiting, {} bytes{full}\n",
            sanitize(&s.collector),
            s.acked_seq,
            s.spool_events,
            s.spool_bytes
        ));
    }
    if !s.features.is_empty() {
        text.push_str("features\n");
        let width = s.features.iter().map(|f| f.name.chars().count()).max().unwrap_or(0);
        for f in &s.features {
            let mark = if f.available {
                colors.paint(Paint::Green, "ok     ")
            } else {
                colors.paint(Paint::Red, "missing")
            };
            let name = sanitize(&f.name);
            let pad = " ".repeat(width.saturating_sub(name.chars().count()));
            let line = format!("  {mark}  {name}{pad}  {}", sanitize(&f.detail));
            text.push_str(line.trim_end());
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use warrant_proto::Feature;

    #[test]
    fn text_lists_features() {
        let s = AgentStatus {
            version: "0.1.0".into(),
            agent_id: "a-1".into(),
            boot_id: "b".into(),
            host: "web-1".into(),
            events_total: 10,
            events_lost_total: 0,
            sessions_live: 1,
            grants_active: 2,
            features: vec![
                Feature { name: "tp_btf".into(), available: true, detail: String::new() },
                Feature { name: "bpf_lsm".into(), available: false, detail: "not in lsm=".into() },
            ],
            ..AgentStatus::default()
        };
        assert_eq!(
            status_text(&s, Colors::default()),
            "agent     warrant-agent 0.1.0 (id a-1, boot b)\n\
             host      web-1\n\
             events    10 total, 0 lost\n\
             sessions  1 live\n\
             grants    2 active\n\
             features\n\
             \x20 ok       tp_btf\n\
             \x20 missing  bpf_lsm  not in lsm=\n"
        );
        assert_eq!(status_json(&s)["features"][1]["available"], false);
    }

    #[test]
    fn text_shows_the_uplink_and_spool() {
        let s = AgentStatus {
            collector: "https://c:7443".into(),
            collector_connected: false,
            acked_seq: 41,
            spool_events: 7,
            spool_bytes: 2048,
            spool_full_total: 3,
            ..AgentStatus::default()
        };
        let t = status_text(&s, Colors::default());
        assert!(
            t.contains(
                "collector https://c:7443 NOT CONNECTED, acked up to seq 41\n\
                 spool     7 events waiting, 2048 bytes, 3 NOT SPOOLED (spool was full)\n"
            ),
            "{t}"
        );
    }
}
