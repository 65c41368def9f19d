//! `warrant watch`: the live event stream, one line per event.
//!
//! Human lines are `HH:MM:SS.mmm SESSION PID KIND SUMMARY`, colored on a terminal;
//! `--json` prints the documented JSON object per line (`warrant_proto::json`),
//! flushed after each, for `jq` and friends. Loss is never silent: `events_lost`
//! (the kernel ring buffer overflowed) and `watch_missed` (this watcher fell behind)
//! come through whatever the filter, in capitals.

use std::io::Write;
use std::path::Path;

use anyhow::{Result, bail};
use clap::Args;
use tonic::Streaming;
use warrant_proto::json::{KIND_NAMES, expand_kind, kinds_help};
use warrant_proto::{CollectorWatchRequest, Event, EventFilter, WatchRequest};

use crate::client::Agent;
use crate::output::sanitize;
use crate::remote::{Collector, CollectorArgs};
use crate::render::{Render, Style};
// The console takes the one-line summary from here.
pub use crate::render::summary;

/// `warrant watch`
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only this session's events (s-…).
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Only events of this grant's sessions (g-…).
    #[arg(long, value_name = "ID")]
    pub grant: Option<String>,
    /// Only these kinds, comma-separated (the list is `kinds_help`'s).
    #[arg(long, value_name = "KINDS", value_delimiter = ',', help = format!("Only these kinds, comma-separated: {}", kinds_help()))]
    pub kind: Vec<String>,
    /// Only events of this host (with --collector).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Only events of this grant subject (with --collector).
    #[arg(long, value_name = "NAME")]
    pub subject: Option<String>,
    /// Replay from the collector's log from this long ago (10m, 2h) or this time
    /// (RFC 3339), then continue live with no gap (with --collector).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// One JSON object per event per line, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Checks `--kind` names here, so a typo fails before connecting.
pub fn check_kinds(kinds: &[String]) -> Result<()> {
    for k in kinds.iter().map(|k| k.trim()).filter(|k| !k.is_empty()) {
        if !KIND_NAMES.contains(&k) && expand_kind(k).is_empty() {
            bail!(
                "invalid --kind {}: no such event kind\n\nValid kinds: {}.",
                sanitize(k),
                kinds_help()
            );
        }
    }
    Ok(())
}

/// `warrant watch`: prints events until the agent (or collector) ends the stream
/// or ctrl-c.
pub async fn run(
    socket: &Path,
    remote: &CollectorArgs,
    args: &WatchArgs,
    out: &mut impl Write,
) -> Result<u8> {
    check_kinds(&args.kind)?;
    let kinds: Vec<String> = args
        .kind
        .iter()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    if remote.is_set() {
        let since_unix_ns = match &args.since {
            Some(s) => crate::query::parse_time(s, "--since")?,
            None => 0,
        };
        let mut collector = Collector::connect(remote).await?;
        let filter = EventFilter {
            host: args.host.clone().unwrap_or_default(),
            agent_id: String::new(),
            grant: args.grant.clone().unwrap_or_default(),
            session: args.session.clone().unwrap_or_default(),
            subject: args.subject.clone().unwrap_or_default(),
            kinds,
        };
        let stream = collector
            .watch(CollectorWatchRequest {
                filter: Some(filter),
                since_unix_ns,
            })
            .await?;
        return print_stream(stream, args.json, true, out, |s| collector.stream_error(s)).await;
    }
    if args.host.is_some() || args.subject.is_some() || args.since.is_some() {
        bail!(
            "--host, --subject and --since need --collector\n\nThe local agent streams this host's live \
             events only; the collector keeps every host's history."
        );
    }
    let mut agent = Agent::connect(socket).await?;
    let stream = agent
        .watch(WatchRequest {
            session: args.session.clone().unwrap_or_default(),
            grant: args.grant.clone().unwrap_or_default(),
            kinds,
        })
        .await?;
    print_stream(stream, args.json, false, out, |s| agent.stream_error(s)).await
}

/// Prints a stream of events, one line each, until it ends or ctrl-c.
async fn print_stream(
    mut stream: Streaming<Event>,
    json: bool,
    with_host: bool,
    out: &mut impl Write,
    error: impl Fn(&tonic::Status) -> anyhow::Error,
) -> Result<u8> {
    // Tests and scripts wait for exactly this line: the agent has subscribed.
    let _ = writeln!(std::io::stderr(), "warrant: watching (ctrl-c to stop)");
    let render = Render::json_or(json, Style::Line { host: with_host });
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let msg = tokio::select! {
            msg = stream.message() => msg,
            _ = &mut ctrl_c => return Ok(0),
        };
        match msg {
            Ok(Some(ev)) => {
                render.write(&ev, out)?;
                out.flush()?;
            }
            Ok(None) => return Ok(0),
            Err(status) => return Err(error(&status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_checked_locally() {
        assert!(
            check_kinds(&["exec".into(), "net".into(), "file".into(), "process".into()]).is_ok()
        );
        let e = check_kinds(&["exce".into()]).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid --kind exce: no such event kind\n\nValid kinds: exec, exit,"),
            "{e}"
        );
    }
}
