//! `warrant report SESSION`: what a session did, for the person reviewing it; the
//! same report, fetched the same way ([`fetch`]), is the console's session page.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use anyhow::Result;
use clap::Args;
use warrant_proto::event::Event as Kind;
use warrant_proto::{Event, SessionReport};

use crate::remote::CollectorArgs;
use crate::target::Target;
use crate::output::{self, sanitize};

/// `warrant report`
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The session (s-…).
    #[arg(value_name = "SESSION")]
    pub session: String,
    /// Print the report as one JSON object (the `session_report` event's form).
    #[arg(long)]
    pub json: bool,
}

/// `warrant report`
pub async fn run(socket: &Path, remote: &CollectorArgs, args: &ReportArgs, out: &mut impl Write) -> Result<u8> {
    let target = Target::connect(socket, remote).await?;
    let ev = fetch(&target, &args.session).await?;
    if args.json {
        writeln!(out, "{}", warrant_proto::json::to_json(&ev))?;
    } else if let Some(Kind::SessionReport(r)) = &ev.event {
        out.write_all(text(&ev, r).as_bytes())?;
    }
    out.flush()?;
    Ok(0)
}

/// A session's report from the agent (live or recent sessions) or the collector's log
/// (sessions that ended): a `session_report` event.
pub async fn fetch(target: &Target, session: &str) -> Result<Event> {
    target.report(session).await
}

/// The report as one JSON object: the event's documented form, plus each remote's
/// byte counts for people (`sent`, `received`) as the text report writes them.
pub fn to_json(ev: &Event) -> serde_json::Value {
    let mut v = warrant_proto::json::to_json(ev);
    if let (Some(Kind::SessionReport(r)), Some(remotes)) = (&ev.event, v.get_mut("remotes").and_then(|r| r.as_array_mut())) {
        for (j, t) in remotes.iter_mut().zip(&r.remotes) {
            j["sent"] = bytes(t.bytes_sent).into();
            j["received"] = bytes(t.bytes_received).into();
        }
    }
    v
}

/// Bytes for people: `512 B`, `1.5 KiB`, `3.2 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

fn text(ev: &Event, r: &SessionReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "session   {} under grant {}", sanitize(&ev.session), sanitize(&ev.grant));
    let _ = writeln!(s, "who       {}", sanitize(&ev.subject));
    if !r.issued_by.is_empty() {
        let _ = writeln!(s, "issued by {}", sanitize(&r.issued_by));
    }
    if !r.reason.is_empty() {
        let _ = writeln!(s, "reason    {}", sanitize(&r.reason));
    }
    if !r.policy.is_empty() {
        let _ = writeln!(s, "policy    {}", sanitize(&r.policy));
    }
    let _ = writeln!(s, "started   {}", output::clock(r.started_at_unix_ns));
    if r.ended_at_unix_ns == 0 {
        let _ = writeln!(s, "ended     (still live)");
    } else {
        let _ = writeln!(s, "ended     {} ({})", output::clock(r.ended_at_unix_ns), sanitize(&r.end_reason));
    }
    let _ = writeln!(s, "events    {}", r.events);
    let _ = writeln!(s, "\ncommands ({})", r.commands_total);
    for c in &r.commands {
        let _ = writeln!(s, "  {}", sanitize(c));
    }
    let _ = writeln!(s, "\nfiles written ({})", r.files_written_total);
    for f in &r.files_written {
        let _ = writeln!(s, "  {}", sanitize(f));
    }
    let _ = writeln!(s, "\nother file changes ({})", r.files_changed_total);
    for f in &r.files_changed {
        let _ = writeln!(s, "  {}", sanitize(f));
    }
    let _ = writeln!(s, "\nhosts contacted ({})", r.remotes.len());
    for t in &r.remotes {
        let _ = writeln!(
            s,
            "  {}:{}  {} connection{}, sent {}, received {}",
            sanitize(&t.addr),
            t.port,
            t.connections,
            if t.connections == 1 { "" } else { "s" },
            bytes(t.bytes_sent),
            bytes(t.bytes_received)
        );
    }
    let _ = writeln!(s, "\nviolations ({})", r.violations_total);
    for v in &r.violations {
        let _ = writeln!(s, "  {}", sanitize(v));
    }
    let _ = writeln!(s, "\nkills ({})", r.kills.len());
    for k in &r.kills {
        let _ = writeln!(s, "  {}", sanitize(k));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 + 200 * 1024), "3.2 MiB");
    }

    #[test]
    fn text_lists_every_section() {
        let r = SessionReport {
            commands: vec!["psql -c select".into()],
            commands_total: 1,
            remotes: vec![warrant_proto::RemoteTraffic {
                addr: "10.0.0.5".into(),
                port: 5432,
                connections: 1,
                bytes_sent: 100,
                bytes_received: 2048,
            }],
            ..Default::default()
        };
        let ev = Event { session: "s-1".into(), grant: "g-2".into(), subject: "alice".into(), ..Default::default() };
        let t = text(&ev, &r);
        assert!(t.contains("session   s-1 under grant g-2"), "{t}");
        assert!(t.contains("  psql -c select"), "{t}");
        assert!(t.contains("  10.0.0.5:5432  1 connection, sent 100 B, received 2.0 KiB"), "{t}");
        assert!(t.contains("(still live)"), "{t}");
    }
}
