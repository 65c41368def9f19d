//! `warrant audit verify`: walk an audit log's hash chain and name every record
//! that was edited, removed, inserted or reordered. The collector's log with
//! `--collector`, else the local agent's.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::output::{Colors, Paint, sanitize};
use crate::remote::CollectorArgs;
use crate::target::{LogCheck, Target};

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

/// `warrant audit verify`: exit 0 when intact, 1 when damaged.
pub async fn verify(
    socket: &Path,
    remote: &CollectorArgs,
    args: &VerifyArgs,
    out: &mut impl Write,
) -> Result<u8> {
    let verdict = Target::connect(socket, remote).await?.verify_log().await?;
    if args.json {
        let v = json!({
            "log": verdict.log,
            "ok": verdict.ok,
            "records": verdict.records,
            "head": verdict.head,
            "problems": verdict.problems,
            "keyed": verdict.keyed,
            "unkeyed_records": verdict.unkeyed,
            "unversioned_records": verdict.unversioned,
        });
        writeln!(out, "{v}")?;
    } else {
        out.write_all(verdict_text(&verdict, Colors::stdout()).as_bytes())?;
    }
    out.flush()?;
    Ok(if verdict.ok { 0 } else { 1 })
}

fn verdict_text(v: &LogCheck, colors: Colors) -> String {
    if v.ok {
        let keyed = match (v.keyed, v.unkeyed) {
            (false, _) => String::new(),
            (true, 0) => ", every record marked with the log's key".to_owned(),
            (true, n) => format!(
                ", marked with the log's key after the first {n} (written before it had one)"
            ),
        };
        let formats = match v.unversioned {
            0 => String::new(),
            n => format!(", the first {n} in the format before format versions"),
        };
        return format!(
            "{}: {} records, chain intact{keyed}{formats} (head {})\n",
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
        let ok = LogCheck {
            log: "/var/lib/warrant/audit.log".into(),
            ok: true,
            records: 12,
            head: "ab".into(),
            ..LogCheck::default()
        };
        assert_eq!(
            verdict_text(&ok, Colors::default()),
            "/var/lib/warrant/audit.log: 12 records, chain intact (head ab)\n"
        );
        let keyed = LogCheck {
            keyed: true,
            ..ok.clone()
        };
        assert_eq!(
            verdict_text(&keyed, Colors::default()),
            "/var/lib/warrant/audit.log: 12 records, chain intact, every record marked with the log's key (head ab)\n"
        );
        let older = LogCheck {
            unversioned: 5,
            ..keyed.clone()
        };
        assert_eq!(
            verdict_text(&older, Colors::default()),
            "/var/lib/warrant/audit.log: 12 records, chain intact, every record marked with the log's key, the first 5 in the format before format versions (head ab)\n"
        );
        let bad = LogCheck {
            ok: false,
            problems: vec!["line 7: hash does not match".into()],
            ..ok
        };
        assert_eq!(
            verdict_text(&bad, Colors::default()),
            "/var/lib/warrant/audit.log: TAMPERED OR DAMAGED, 1 problem\n  line 7: hash does not match\n"
        );
    }
}
