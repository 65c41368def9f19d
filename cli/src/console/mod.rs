//! `warrant console`: a web UI on a local address that acts as the person running it.
//!
//! It calls the local agent (single-host mode) or a collector with that person's
//! certificate ([`crate::target::Target`]), so identity and roles stay the mTLS
//! ones: the page offers only what the role allows, and the collector refuses the
//! rest anyway (its refusal comes back as a 403 with its own words).
//!
//! - [`guard`]: the console's own server refuses foreign `Host` headers (DNS
//!   rebinding) and state-changing calls from other origins (cross-site kills).
//! - [`api`]: the JSON routes (sessions, report, kill, requests, agents, audit).
//! - [`events`]: the live event stream as Server-Sent Events.
//! - [`error`]: failures as `{ "error": "..." }` with the matching HTTP status.
//! - [`assets`]: the page, its script and style, embedded in the binary.

mod api;
mod assets;
mod error;
mod events;
mod guard;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::remote::CollectorArgs;
use crate::target::Target;

/// `warrant console`
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Where to serve the console (IP:PORT; port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7480")]
    pub listen: String,
    /// Allow a non-loopback --listen address: anyone who reaches it acts as you.
    #[arg(long)]
    pub listen_anywhere: bool,
}

/// What every handler shares.
pub struct Console {
    /// The agent or collector the console acts on.
    pub target: Target,
    /// Who the console acts as, and what that role may do.
    pub me: api::Me,
    /// Collector mode: the sessions read from the log so far, and grants' reasons.
    pub books: crate::follow::Books,
}

/// Checks that `listen` is an address the console may bind.
fn listen_addr(args: &ConsoleArgs) -> Result<SocketAddr> {
    let addr: SocketAddr = args
        .listen
        .trim()
        .parse()
        .with_context(|| format!("invalid --listen {:?}: expected IP:PORT such as 127.0.0.1:7480", args.listen))?;
    if addr.ip().is_unspecified() {
        bail!(
            "invalid --listen {addr}: bind one address, not all of them\n\nThe console accepts only requests whose Host \
             header is its own address, so it must have exactly one."
        );
    }
    if !addr.ip().is_loopback() && !args.listen_anywhere {
        bail!(
            "refusing to serve the console on {addr}: not a loopback address\n\nAnyone who reaches it can act as you \
             (kill, approve). Pass --listen-anywhere if that is really what you want, or use 127.0.0.1."
        );
    }
    Ok(addr)
}

/// `warrant console`: serves until ctrl-c.
pub async fn run(socket: &Path, remote: &CollectorArgs, args: &ConsoleArgs, out: &mut impl Write) -> Result<u8> {
    let addr = listen_addr(args)?;
    let target = Target::connect(socket, remote).await?;
    let me = api::Me::find(&target).await?;
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} for the console"))?;
    let bound = listener.local_addr().context("cannot read the console's address")?;
    let console = Arc::new(Console { target, me, books: crate::follow::Books::default() });
    let app = api::router(console).layer(axum::middleware::from_fn_with_state(
        Arc::new(guard::Guard::new(bound)),
        guard::check,
    ));
    writeln!(out, "warrant console: http://{bound}/")?;
    out.flush()?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the console's server failed")?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: &str, anywhere: bool) -> ConsoleArgs {
        ConsoleArgs { listen: listen.into(), listen_anywhere: anywhere }
    }

    #[test]
    fn only_loopback_unless_asked() {
        assert!(listen_addr(&args("127.0.0.1:7480", false)).is_ok());
        assert!(listen_addr(&args("[::1]:0", false)).is_ok());
        let e = listen_addr(&args("10.0.0.5:7480", false)).unwrap_err().to_string();
        assert!(e.starts_with("refusing to serve the console on 10.0.0.5:7480: not a loopback address"), "{e}");
        assert!(e.contains("--listen-anywhere"), "{e}");
        assert!(listen_addr(&args("10.0.0.5:7480", true)).is_ok());
        assert!(listen_addr(&args("0.0.0.0:7480", true)).is_err(), "one address, so Host can be checked");
        assert!(listen_addr(&args("localhost", false)).is_err());
    }
}
