//! `warrant report SESSION`: what a session did, for the person reviewing it; the
//! same report, fetched the same way ([`fetch`]), is the console's session page.
//! How it reads is [`crate::render`]'s.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use clap::Args;
use warrant_proto::Event;

use crate::remote::CollectorArgs;
use crate::render::{Render, Style};
use crate::target::Target;

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
pub async fn run(
    socket: &Path,
    remote: &CollectorArgs,
    args: &ReportArgs,
    out: &mut impl Write,
) -> Result<u8> {
    let target = Target::connect(socket, remote).await?;
    let ev = fetch(&target, &args.session).await?;
    Render::json_or(args.json, Style::Report).write(&ev, out)?;
    out.flush()?;
    Ok(0)
}

/// A session's report from the agent (live or recent sessions) or the collector's log
/// (sessions that ended): a `session_report` event.
pub async fn fetch(target: &Target, session: &str) -> Result<Event> {
    target.report(session).await
}
