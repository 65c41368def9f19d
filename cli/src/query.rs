//! `warrant query`: historical events from the collector's log, oldest first
//! (which events is [`crate::filter`]'s, how each reads [`crate::render`]'s).
//!
//! Pages through `Query` until `--limit` events are printed or the log has no more.

use std::io::Write;

use anyhow::{Result, bail};
use clap::Args;
use warrant_proto::QueryRequest;

use crate::filter::{self, FilterArgs};
use crate::remote::{Collector, CollectorArgs};
use crate::render::{Render, Style};

/// `warrant query`
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Which events.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// From this long ago (10m, 2h, 7d) or this time (RFC 3339); the log's start when unset.
    #[arg(long, value_name = "WHEN")]
    pub from: Option<String>,
    /// Up to this long ago or this time; now when unset.
    #[arg(long, value_name = "WHEN")]
    pub to: Option<String>,
    /// Print at most this many events.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1000,
        help_heading = "Output"
    )]
    pub limit: u32,
    /// One JSON object per event per line, for scripts.
    #[arg(long, help_heading = "Output")]
    pub json: bool,
}

/// `warrant query`
pub async fn run(remote: &CollectorArgs, args: &QueryArgs, out: &mut impl Write) -> Result<u8> {
    let filter = args.filter.event_filter()?;
    if !remote.is_set() {
        bail!(
            "query needs --collector\n\nThe history of every host is kept by the collector; pass --collector URL \
             or set WARRANT_COLLECTOR."
        );
    }
    let (from_unix_ns, to_unix_ns) = filter::range(args.from.as_deref(), args.to.as_deref())?;
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
