//! `warrant query`: historical events from the collector's log, oldest first.
//!
//! Pages through `Query` until `--limit` events are printed or the log has no more.

use std::io::Write;

use anyhow::{Result, bail};
use clap::Args;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warrant_proto::{EventFilter, QueryRequest};

use crate::remote::{Collector, CollectorArgs};
use crate::render::{Render, Style};
use crate::watch::check_kinds;

/// `warrant query`
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Only events of this host.
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Only events of this grant (g-…).
    #[arg(long, value_name = "ID")]
    pub grant: Option<String>,
    /// Only events of this session (s-…).
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Only events of this grant subject.
    #[arg(long, value_name = "NAME")]
    pub subject: Option<String>,
    /// Only these kinds, comma-separated (as for `warrant watch`).
    #[arg(long, value_name = "KINDS", value_delimiter = ',')]
    pub kind: Vec<String>,
    /// From this long ago (10m, 2h, 7d) or this time (RFC 3339); the log's start when unset.
    #[arg(long, value_name = "WHEN")]
    pub from: Option<String>,
    /// Up to this long ago or this time; now when unset.
    #[arg(long, value_name = "WHEN")]
    pub to: Option<String>,
    /// Print at most this many events.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub limit: u32,
    /// One JSON object per event per line, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `warrant query`
pub async fn run(remote: &CollectorArgs, args: &QueryArgs, out: &mut impl Write) -> Result<u8> {
    check_kinds(&args.kind)?;
    if !remote.is_set() {
        bail!(
            "query needs --collector\n\nThe history of every host is kept by the collector; pass --collector URL or set WARRANT_COLLECTOR."
        );
    }
    let from_unix_ns = args
        .from
        .as_deref()
        .map(|s| parse_time(s, "--from"))
        .transpose()?
        .unwrap_or(0);
    let to_unix_ns = args
        .to
        .as_deref()
        .map(|s| parse_time(s, "--to"))
        .transpose()?
        .unwrap_or(0);
    if from_unix_ns != 0 && to_unix_ns != 0 && from_unix_ns > to_unix_ns {
        bail!("invalid time range: --from is after --to");
    }
    let filter = EventFilter {
        host: args.host.clone().unwrap_or_default(),
        agent_id: String::new(),
        grant: args.grant.clone().unwrap_or_default(),
        session: args.session.clone().unwrap_or_default(),
        subject: args.subject.clone().unwrap_or_default(),
        kinds: args
            .kind
            .iter()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect(),
    };
    let mut collector = Collector::connect(remote).await?;
    let render = Render::json_or(args.json, Style::Line { host: true });
    let (mut printed, mut page) = (0u32, String::new());
    while printed < args.limit {
        let resp = collector
            .query(QueryRequest {
                filter: Some(filter.clone()),
                from_unix_ns,
                to_unix_ns,
                limit: args.limit - printed,
                page: std::mem::take(&mut page),
            })
            .await?;
        // Records the collector holds but cannot interpret (a newer agent's kind).
        for s in &resp.skipped {
            let _ = writeln!(std::io::stderr(), "warrant: skipped {s}");
        }
        for ev in resp.events.iter().take((args.limit - printed) as usize) {
            render.write(ev, out)?;
            printed += 1;
        }
        if resp.next_page.is_empty() {
            break;
        }
        page = resp.next_page;
    }
    out.flush()?;
    if printed == 0 && !args.json {
        let _ = writeln!(std::io::stderr(), "warrant: no matching events");
    }
    Ok(0)
}

/// A point in time: a duration ago (`10m`, `2h`, `7d`) or an RFC 3339 time, as
/// Unix nanoseconds.
pub fn parse_time(s: &str, flag: &str) -> Result<i64> {
    let s = s.trim();
    if let Ok(ago) = humantime::parse_duration(s) {
        return Ok(crate::output::now_unix_ns()
            .saturating_sub(i64::try_from(ago.as_nanos()).unwrap_or(i64::MAX)));
    }
    match OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => Ok(i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)),
        Err(_) => bail!(
            "invalid {flag} {}: not a duration or a time\n\nUse a duration ago like 10m, 2h or 7d, or a time like 2026-11-23T14:00:00Z.",
            crate::output::sanitize(s)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_durations_ago_or_rfc3339() {
        let t = parse_time("10m", "--since").unwrap();
        let want = crate::output::now_unix_ns() - 600_000_000_000;
        assert!((want - t).abs() < 5_000_000_000, "{t}");
        assert_eq!(
            parse_time("2026-11-23T14:00:00Z", "--from").unwrap(),
            1_795_442_400_000_000_000
        );
        let e = parse_time("yesterday", "--from").unwrap_err().to_string();
        assert!(
            e.starts_with("invalid --from yesterday: not a duration or a time"),
            "{e}"
        );
    }
}
