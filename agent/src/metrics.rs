//! Prometheus metrics over plain HTTP/1 (`--metrics-listen`, off by default).
//!
//! The metrics are a `prometheus-client` registry with one collector that reads
//! the agent's counters and state at each scrape ([`registry`]), encoded in the
//! Prometheus text format (0.0.4) that the endpoint has always served.
//!
//! A hand-written responder is enough: Prometheus sends `GET /metrics` and reads
//! one response; anything else gets a 404. Each connection is answered and closed,
//! with a deadline, so a stuck scraper holds nothing but its own task.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::{Context, Result};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
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
    let registry = Arc::new(registry(sources));
    Ok(tokio::spawn(async move {
        loop {
            let Ok((conn, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                if let Err(e) = tokio::time::timeout(DEADLINE, answer(conn, &registry)).await.unwrap_or(Ok(())) {
                    debug!(%peer, "metrics request failed: {e}");
                }
            });
        }
    }))
}

async fn answer(mut conn: TcpStream, registry: &Registry) -> std::io::Result<()> {
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
        ("200 OK", render(registry))
    } else {
        ("404 Not Found", "not found: metrics are at GET /metrics\n".to_owned())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        prometheus_text::CONTENT_TYPE,
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.shutdown().await
}

/// The exposition text of `registry` (see [`registry`]).
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(2048);
    // Writing to a String cannot fail, and the collector's own writes are the
    // encoder's.
    let _ = prometheus_text::encode(&mut out, registry);
    out
}

/// The agent's metrics: one collector that reads `sources` at each scrape (the
/// counters are the event pipeline's own atomics, the gauges are computed from
/// the host's and the spool's state), under the prefix `warrant_agent`.
pub fn registry(sources: Sources) -> Registry {
    let mut registry = Registry::with_prefix("warrant_agent");
    registry.register_collector(Box::new(Scrape(sources)));
    registry
}

/// Reads [`Sources`] when scraped.
struct Scrape(Sources);

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

impl Collector for Scrape {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        Reading::of(&self.0).encode(encoder)
    }
}

/// One scrape's values, read together.
#[derive(Debug, Default)]
struct Reading {
    events: u64,
    lost: u64,
    log_errors: u64,
    sessions: u32,
    grants: u32,
    kills: u64,
    /// With a collector only.
    spool: Option<SpoolReading>,
    kill_latency: Latency,
}

#[derive(Debug, Default)]
struct SpoolReading {
    events: u64,
    bytes: u64,
    max_bytes: u64,
    full: u64,
    uplink_connected: bool,
    acked_seq: u64,
}

impl Reading {
    fn of(sources: &Sources) -> Self {
        let s: &Stats = &sources.host.stats;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let (sessions, grants) = sources.host.counts();
        let (cumulative, count, sum) = s.kill_latency.snapshot();
        Self {
            events: load(&s.events_total),
            lost: load(&s.lost_total),
            log_errors: load(&s.log_errors),
            sessions,
            grants,
            kills: load(&s.kills_total),
            spool: sources.spool.as_ref().map(|spool| {
                let depth = spool.depth();
                SpoolReading {
                    events: depth.events,
                    bytes: depth.bytes,
                    max_bytes: spool.max_bytes(),
                    full: load(&s.spool_full_total),
                    uplink_connected: s.uplink_connected.load(Ordering::Relaxed),
                    acked_seq: load(&s.acked_seq),
                }
            }),
            kill_latency: Latency::of_cumulative(&cumulative, count, sum),
        }
    }

    /// The names are the registry's prefix, the name given, and `_total` for a
    /// counter (which the encoder adds).
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        counter(&mut e, "events", "Events recorded in the local audit log.", self.events)?;
        counter(&mut e, "events_lost", "Kernel records lost (ring buffer full) or undecodable.", self.lost)?;
        counter(&mut e, "log_errors", "Failed audit log appends.", self.log_errors)?;
        gauge(&mut e, "sessions_live", "Live sessions on this host.", u64::from(self.sessions))?;
        gauge(&mut e, "grants_active", "Active grants on this host.", u64::from(self.grants))?;
        counter(&mut e, "kills", "Session trees killed (any reason).", self.kills)?;
        if let Some(sp) = &self.spool {
            gauge(&mut e, "spool_events", "Events waiting in the spool for the collector's ack.", sp.events)?;
            gauge(&mut e, "spool_bytes", "Bytes of spool segment files.", sp.bytes)?;
            gauge(&mut e, "spool_max_bytes", "The spool's limit.", sp.max_bytes)?;
            counter(
                &mut e,
                "spool_full",
                "Events the spool had no room for: in the local log, never sent to the collector.",
                sp.full,
            )?;
            gauge(&mut e, "uplink_connected", "1 while a stream to the collector is up.", u64::from(sp.uplink_connected))?;
            gauge(&mut e, "acked_seq", "Highest seq of this boot the collector acknowledged.", sp.acked_seq)?;
        }
        let latency = &self.kill_latency;
        latency.encode(e.encode_descriptor(
            "kill_latency_seconds",
            "From the kill decision to the tree dead.",
            None,
            latency.metric_type(),
        )?)
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// The kill latency histogram as read: observations per bucket (not cumulative,
/// as the encoder wants them; it adds `+Inf` from the count).
#[derive(Debug, Default)]
struct Latency {
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum: f64,
}

impl Latency {
    fn of_cumulative(cumulative: &[(f64, u64)], count: u64, sum: f64) -> Self {
        let mut below = 0;
        let buckets = cumulative
            .iter()
            .map(|&(le, n)| {
                let here = n.saturating_sub(below);
                below = n;
                (le, here)
            })
            .collect();
        Self { buckets, count, sum }
    }
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `reading` exposes, through a registry as [`registry`] builds it.
    fn text(reading: Reading) -> String {
        #[derive(Debug)]
        struct Fixed(Reading);
        impl Collector for Fixed {
            fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
                self.0.encode(encoder)
            }
        }
        let mut registry = Registry::with_prefix("warrant_agent");
        registry.register_collector(Box::new(Fixed(reading)));
        render(&registry)
    }

    /// The exposition byte for byte as the hand-written renderer wrote it for the
    /// same values (names, help, types, order); only a sum of exactly 0 now reads
    /// `0.0` where it read `0`.
    #[test]
    fn the_exposition_is_what_it_was() {
        let reading = Reading {
            events: 7,
            lost: 1,
            log_errors: 0,
            sessions: 2,
            grants: 3,
            kills: 4,
            spool: Some(SpoolReading {
                events: 5,
                bytes: 4096,
                max_bytes: 1 << 30,
                full: 6,
                uplink_connected: true,
                acked_seq: 99,
            }),
            kill_latency: Latency::of_cumulative(
                &[(0.001, 0), (0.0025, 1), (0.005, 1), (0.01, 2), (0.025, 2), (0.05, 2), (0.1, 2), (0.25, 3), (1.0, 3), (5.0, 3)],
                4,
                7.123,
            ),
        };
        let want = "\
# HELP warrant_agent_events_total Events recorded in the local audit log.
# TYPE warrant_agent_events_total counter
warrant_agent_events_total 7
# HELP warrant_agent_events_lost_total Kernel records lost (ring buffer full) or undecodable.
# TYPE warrant_agent_events_lost_total counter
warrant_agent_events_lost_total 1
# HELP warrant_agent_log_errors_total Failed audit log appends.
# TYPE warrant_agent_log_errors_total counter
warrant_agent_log_errors_total 0
# HELP warrant_agent_sessions_live Live sessions on this host.
# TYPE warrant_agent_sessions_live gauge
warrant_agent_sessions_live 2
# HELP warrant_agent_grants_active Active grants on this host.
# TYPE warrant_agent_grants_active gauge
warrant_agent_grants_active 3
# HELP warrant_agent_kills_total Session trees killed (any reason).
# TYPE warrant_agent_kills_total counter
warrant_agent_kills_total 4
# HELP warrant_agent_spool_events Events waiting in the spool for the collector's ack.
# TYPE warrant_agent_spool_events gauge
warrant_agent_spool_events 5
# HELP warrant_agent_spool_bytes Bytes of spool segment files.
# TYPE warrant_agent_spool_bytes gauge
warrant_agent_spool_bytes 4096
# HELP warrant_agent_spool_max_bytes The spool's limit.
# TYPE warrant_agent_spool_max_bytes gauge
warrant_agent_spool_max_bytes 1073741824
# HELP warrant_agent_spool_full_total Events the spool had no room for: in the local log, never sent to the collector.
# TYPE warrant_agent_spool_full_total counter
warrant_agent_spool_full_total 6
# HELP warrant_agent_uplink_connected 1 while a stream to the collector is up.
# TYPE warrant_agent_uplink_connected gauge
warrant_agent_uplink_connected 1
# HELP warrant_agent_acked_seq Highest seq of this boot the collector acknowledged.
# TYPE warrant_agent_acked_seq gauge
warrant_agent_acked_seq 99
# HELP warrant_agent_kill_latency_seconds From the kill decision to the tree dead.
# TYPE warrant_agent_kill_latency_seconds histogram
warrant_agent_kill_latency_seconds_bucket{le=\"0.001\"} 0
warrant_agent_kill_latency_seconds_bucket{le=\"0.0025\"} 1
warrant_agent_kill_latency_seconds_bucket{le=\"0.005\"} 1
warrant_agent_kill_latency_seconds_bucket{le=\"0.01\"} 2
warrant_agent_kill_latency_seconds_bucket{le=\"0.025\"} 2
warrant_agent_kill_latency_seconds_bucket{le=\"0.05\"} 2
warrant_agent_kill_latency_seconds_bucket{le=\"0.1\"} 2
warrant_agent_kill_latency_seconds_bucket{le=\"0.25\"} 3
warrant_agent_kill_latency_seconds_bucket{le=\"1\"} 3
warrant_agent_kill_latency_seconds_bucket{le=\"5\"} 3
warrant_agent_kill_latency_seconds_bucket{le=\"+Inf\"} 4
warrant_agent_kill_latency_seconds_sum 7.123
warrant_agent_kill_latency_seconds_count 4
";
        assert_eq!(text(reading), want);
    }

    #[test]
    fn without_a_collector_there_are_no_spool_metrics() {
        let t = text(Reading::default());
        assert!(!t.contains("spool") && !t.contains("uplink") && !t.contains("acked"), "{t}");
        assert!(t.contains("warrant_agent_kill_latency_seconds_bucket{le=\"+Inf\"} 0\n"), "{t}");
    }
}
