//! `warrant watch`: the live event stream, one line per event (how each reads is
//! [`crate::render`]'s; which events, [`crate::filter`]'s).
//!
//! `--json` prints the documented JSON object per line, flushed after each, for
//! `jq` and friends. Loss is never silent: `events_lost` (the kernel ring buffer
//! overflowed) and `watch_missed` (this watcher fell behind) come through whatever
//! the filter, in capitals.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use clap::Args;
use tonic::Streaming;
use warrant_proto::Event;

use crate::filter::{FilterArgs, need_collector, parse_time};
use crate::remote::CollectorArgs;
use crate::render::{Render, Style};
use crate::target::Target;

/// `warrant watch`
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Which events.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Replay from the collector's log from this long ago (10m, 2h) or this time
    /// (RFC 3339), then continue live with no gap (with --collector).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// One JSON object per event per line, for scripts.
    #[arg(long, help_heading = "Output")]
    pub json: bool,
}

/// `warrant watch`: prints events until the agent (or collector) ends the stream
/// or ctrl-c.
pub async fn run(
    socket: &Path,
    remote: &CollectorArgs,
    args: &WatchArgs,
    out: &mut impl Write,
) -> Result<u8> {
    let filter = args.filter.event_filter()?;
    if !remote.is_set() {
        let mut flags = args.filter.collector_only();
        flags.extend(args.since.as_ref().map(|_| "--since"));
        need_collector(
            &flags,
            "The local agent streams this host's live events only; the collector keeps every host's history.",
        )?;
    }
    let since = args
        .since
        .as_deref()
        .map(|s| parse_time(s, "--since"))
        .transpose()?
        .unwrap_or(0);
    let target = Target::connect(socket, remote).await?;
    let stream = target.watch(filter, since).await?;
    let render = Render::json_or(
        args.json,
        Style::Line {
            host: target.is_collector(),
        },
    );
    print_stream(stream, render, out, |s| target.stream_error(s)).await
}

/// Prints a stream of events, one line each, until it ends or ctrl-c.
async fn print_stream(
    mut stream: Streaming<Event>,
    render: Render,
    out: &mut impl Write,
    error: impl Fn(&tonic::Status) -> anyhow::Error,
) -> Result<u8> {
    // Tests and scripts wait for exactly this line: the agent has subscribed.
    let _ = writeln!(std::io::stderr(), "warrant: watching (ctrl-c to stop)");
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

    async fn refused(args: WatchArgs) -> String {
        let sock = Path::new("/nonexistent/warrant/agent.sock");
        let Err(e) = run(sock, &CollectorArgs::default(), &args, &mut Vec::new()).await else {
            panic!("watched")
        };
        format!("{e:#}")
    }

    /// Filters the local agent cannot apply, and bad kinds, fail before any connect.
    #[tokio::test]
    async fn bad_filters_fail_before_connecting() {
        let host = FilterArgs {
            host: Some("db-1".into()),
            ..FilterArgs::default()
        };
        let e = refused(WatchArgs {
            filter: host.clone(),
            since: Some("10m".into()),
            json: false,
        })
        .await;
        assert_eq!(
            e,
            "--host and --since need --collector\n\nThe local agent streams this host's live events only; \
             the collector keeps every host's history."
        );
        let e = refused(WatchArgs {
            filter: host,
            since: None,
            json: true,
        })
        .await;
        assert!(e.starts_with("--host needs --collector\n\n"), "{e}");
        let typo = FilterArgs {
            kind: vec!["exec".into(), "fiel".into()],
            ..FilterArgs::default()
        };
        let e = refused(WatchArgs {
            filter: typo,
            since: None,
            json: false,
        })
        .await;
        assert!(
            e.starts_with("invalid --kind fiel: no such event kind"),
            "{e}"
        );
        let e = refused(WatchArgs {
            filter: FilterArgs::default(),
            since: None,
            json: false,
        })
        .await;
        assert!(
            e.starts_with("cannot reach the agent at /nonexistent/warrant/agent.sock"),
            "{e}"
        );
    }
}
