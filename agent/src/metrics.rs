//! Prometheus metrics over plain HTTP/1 (`--metrics-listen`, off by default).
//!
//! A hand-written responder is enough: Prometheus sends `GET /metrics` and reads
//! one response; anything else gets a 404. Each connection is answered and closed,
//! with a deadline, so a stuck scraper holds nothing but its own task.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::{Context, Result};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tracing::{debug, info};

use crate::{host::Host, events::Stats, spool::Spool};

/// Largest request head read; a scrape's is a few hundred bytes.
const MAX_REQUEST: usize = 8192;
/// How long one connection may take.
const DEADLINE: Duration = Duration::from_secs(5);

/// What the metrics are read from.
#[derive(Clone)]
pub struct Sources {
    pub host: Arc<Host>,
    pub spool: Option<Arc<Spool>>,
}

/// Binds `addr` (so a taken port fails the start-up) and returns the serving task.
pub async fn serve(addr: SocketAddr, sources: Sources) -> Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr} (--metrics-listen)"))?;
    info!(addr = %listener.local_addr().unwrap_or(addr), "serving Prometheus metrics on /metrics");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((conn, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let sources = sources.clone();
            tokio::spawn(async move {
                if let Err(e) = tokio::time::timeout(DEADLINE, answer(conn, &sources)).await.unwrap_or(Ok(())) {
                    debug!(%peer, "metrics request failed: {e}");
                }
            });
        }
    }))
}

async fn answer(mut conn: TcpStream, sources: &Sources) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut chunk).await?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = path.split(|b| *b == b'?').next().unwrap_or_default();
    let (status, body) = if method == b"GET" && (path == b"/metrics" || path == b"/") {
        ("200 OK", render(sources))
    } else {
        ("404 Not Found", "not found: metrics are at GET /metrics\n".to_owned())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.shutdown().await
}

/// The exposition text.
pub fn render(sources: &Sources) -> String {
    let s: &Stats = &sources.host.stats;
    let (sessions, grants) = sources.host.counts();
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    metric("warrant_agent_events_total", "counter", "Events recorded in the local audit log.", load(&s.events_total));
    metric(
        "warrant_agent_events_lost_total",
        "counter",
        "Kernel records lost (ring buffer full) or undecodable.",
        load(&s.lost_total),
    );
    metric("warrant_agent_log_errors_total", "counter", "Failed audit log appends.", load(&s.log_errors));
    metric("warrant_agent_sessions_live", "gauge", "Live sessions on this host.", sessions.to_string());
    metric("warrant_agent_grants_active", "gauge", "Active grants on this host.", grants.to_string());
    metric("warrant_agent_kills_total", "counter", "Session trees killed (any reason).", load(&s.kills_total));
    if let Some(spool) = &sources.spool {
        let depth = spool.depth();
        metric(
            "warrant_agent_spool_events",
            "gauge",
            "Events waiting in the spool for the collector's ack.",
            depth.events.to_string(),
        );
        metric("warrant_agent_spool_bytes", "gauge", "Bytes of spool segment files.", depth.bytes.to_string());
        metric("warrant_agent_spool_max_bytes", "gauge", "The spool's limit.", spool.max_bytes().to_string());
        metric(
            "warrant_agent_spool_full_total",
            "counter",
            "Events the spool had no room for: in the local log, never sent to the collector.",
            load(&s.spool_full_total),
        );
        metric(
            "warrant_agent_uplink_connected",
            "gauge",
            "1 while a stream to the collector is up.",
            u8::from(s.uplink_connected.load(Ordering::Relaxed)).to_string(),
        );
        metric(
            "warrant_agent_acked_seq",
            "gauge",
            "Highest seq of this boot the collector acknowledged.",
            load(&s.acked_seq),
        );
    }
    let (buckets, count, sum) = s.kill_latency.snapshot();
    let name = "warrant_agent_kill_latency_seconds";
    let _ = writeln!(out, "# HELP {name} From the kill decision to the tree dead.\n# TYPE {name} histogram");
    for (le, n) in buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}");
    out
}
