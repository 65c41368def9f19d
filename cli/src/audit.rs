//! `warrant audit verify`: walk an audit log's hash chain and name every record
//! that was edited, removed, inserted or reordered. The collector's log with
//! `--collector`, else the local agent's.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::client::Agent;
use crate::output::{Colors, Paint, sanitize};
use crate::remote::{Collector, CollectorArgs};

/// `warrant audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain; exits 1 when anything was tampered with.
    Verify(VerifyArgs),
}

/// `warrant audit verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What either side reported.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Which log: the collector's URL or the agent's log path.
    pub log: String,
    pub ok: bool,
    pub records: u64,
    pub head: String,
    pub problems: Vec<String>,
}

/// `warrant audit verify`: exit 0 when intact, 1 when damaged.
pub async fn verify(socket: &Path, remote: &CollectorArgs, args: &VerifyArgs, out: &mut impl Write) -> Result<u8> {
    let verdict = if remote.is_set() {
        let mut c = Collector::connect(remote).await?;
        let r = c.verify_log().await?;
        Verdict { log: format!("collector {}", c.url()), ok: r.ok, records: r.records, head: r.head, problems: r.problems }
    } else {
        let mut agent = Agent::connect(socket).await?;
        let r = agent.verify_audit_log().await?;
        Verdict { log: r.path, ok: r.ok, records: r.records, head: r.head, problems: r.problems }
    };
    if args.json {
        let v = json!({
            "log": verdict.log,
            "ok": verdict.ok,
            "records": verdict.records,
            "head": verdict.head,
            "problems": verdict.problems,
        });
        writeln!(out, "{v}")?;
    } else {
        out.write_all(verdict_text(&verdict, Colors::stdout()).as_bytes())?;
    }
    out.flush()?;
    Ok(if verdict.ok { 0 } else { 1 })
}

fn verdict_text(v: &Verdict, colors: Colors) -> String {
    if v.ok {
        return format!(
            "{}: {} records, chain intact (head {})\n",
            sanitize(&v.log),
            v.records,
            sanitize(&v.head)
        );
    }
    let mut text = colors
        .paint(
            Paint::Red,
            &format!(
                "{}: TAMPERED OR DAMAGED, {} problem{}\n",
                sanitize(&v.log),
                v.problems.len(),
                if v.problems.len() == 1 { "" } else { "s" }
            ),
        )
        .into_owned();
    for p in &v.problems {
        text.push_str(&format!("  {}\n", sanitize(p)));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_read_plainly() {
        let ok = Verdict { log: "/var/lib/warrant/audit.log".into(), ok: true, records: 12, head: "ab".into(), problems: vec![] };
        assert_eq!(verdict_text(&ok, Colors::default()), "/var/lib/warrant/audit.log: 12 records, chain intact (head ab)\n");
        let bad = Verdict { ok: false, problems: vec!["line 7: hash does not match".into()], ..ok };
        assert_eq!(
            verdict_text(&bad, Colors::default()),
            "/var/lib/warrant/audit.log: TAMPERED OR DAMAGED, 1 problem\n  line 7: hash does not match\n"
        );
    }
}
