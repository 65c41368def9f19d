//! Prometheus metrics of the collector, and the small HTTP/1 responder that serves
//! them (`GET /metrics`; anything else is 404). The counters and gauges are
//! `prometheus-client` metrics in one registry (prefix `warrant_collector`),
//! encoded in the Prometheus text format (0.0.4) when scraped. The hot paths bump
//! them as the atomics they hold (`fetch_add`, `store`; see [`Count`], [`Level`]).

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds (seconds) of the kill latency histogram's buckets.
const KILL_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A counter of the registry, used where it is bumped as the `AtomicU64` it holds
/// (only ever `fetch_add`).
#[derive(Debug, Default)]
pub struct Count(Counter);

impl Deref for Count {
    type Target = AtomicU64;
    fn deref(&self) -> &AtomicU64 {
        self.0.inner()
    }
}

/// A gauge of the registry, used as the `AtomicU64` it holds (`fetch_add`,
/// `fetch_sub`, `store`).
#[derive(Debug, Default)]
pub struct Level(Gauge<u64, AtomicU64>);

impl Deref for Level {
    type Target = AtomicU64;
    fn deref(&self) -> &AtomicU64 {
        self.0.inner()
    }
}

/// Every metric the collector exports.
#[derive(Debug)]
pub struct Metrics {
    /// Events stored (new).
    pub events_in: Count,
    /// Events dropped because their (agent, boot, seq) was already stored.
    pub duplicates: Count,
    /// Batches received from agents.
    pub batches: Count,
    /// Agent messages refused as malformed or over the size limit (the stream ended
    /// with INVALID_ARGUMENT).
    pub batches_refused: Count,
    /// Events stored verbatim because their kind is not one this build knows.
    pub unknown_kinds: Count,
    /// Sequence gaps recorded (an agent's seqs jumped past ones never stored).
    pub gaps: Count,
    /// Events stored late into a recorded gap.
    pub gap_filled: Count,
    /// Stored records a reader (Query, Watch) skipped because it cannot interpret them.
    pub skipped_reads: Count,
    /// Events sent to watchers (replayed and live).
    pub events_out: Count,
    /// Events watchers missed because they fell behind.
    pub watch_missed: Count,
    /// Open Watch streams.
    pub watchers: Level,
    /// Connected agents.
    pub agents_connected: Level,
    /// Kill/revoke commands sent to a connected agent.
    pub commands_delivered: Count,
    /// Kill/revoke commands queued for a disconnected agent.
    pub commands_queued: Count,
    /// Kill/revoke commands the agent reported as failed.
    pub commands_failed: Count,
    /// Calls refused for lack of a role.
    pub refused: Count,
    /// Connections refused in the TLS handshake (no certificate, one no trusted CA
    /// signed, a handshake that did not finish in time).
    pub tls_refused: Count,
    /// Records in the log.
    pub log_records: Level,
    /// Bytes in the log's segments.
    pub log_bytes: Level,
    /// From a Kill or Revoke call to the agent's report.
    kill_latency: Histogram,
    /// All of the above, for encoding.
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Self {
            events_in: Count::default(),
            duplicates: Count::default(),
            batches: Count::default(),
            batches_refused: Count::default(),
            unknown_kinds: Count::default(),
            gaps: Count::default(),
            gap_filled: Count::default(),
            skipped_reads: Count::default(),
            events_out: Count::default(),
            watch_missed: Count::default(),
            watchers: Level::default(),
            agents_connected: Level::default(),
            commands_delivered: Count::default(),
            commands_queued: Count::default(),
            commands_failed: Count::default(),
            refused: Count::default(),
            tls_refused: Count::default(),
            log_records: Level::default(),
            log_bytes: Level::default(),
            kill_latency: Histogram::new(KILL_BUCKETS),
            registry: Registry::default(),
        };
        // The registry adds the prefix, `_total` to a counter's name and a full
        // stop to the help: the names and texts come out as they always were, in
        // the order they always had.
        let mut registry = Registry::with_prefix("warrant_collector");
        let r = &mut registry;
        r.register("events_in", "Events stored in the audit log", m.events_in.0.clone());
        r.register("duplicates_dropped", "Events dropped because they were already stored (agent resends)", m.duplicates.0.clone());
        r.register("batches", "Event batches received from agents", m.batches.0.clone());
        r.register(
            "batches_refused",
            "Agent messages refused as malformed or too big (stream ended with INVALID_ARGUMENT)",
            m.batches_refused.0.clone(),
        );
        r.register("unknown_kind_events", "Events stored verbatim because their kind is not known to this collector", m.unknown_kinds.0.clone());
        r.register("seq_gaps", "Sequence gaps recorded (gap records written)", m.gaps.0.clone());
        r.register("gap_filled", "Events stored late, into a recorded gap", m.gap_filled.0.clone());
        r.register("skipped_reads", "Stored records readers skipped because this collector cannot interpret them", m.skipped_reads.0.clone());
        r.register("events_out", "Events sent to watchers", m.events_out.0.clone());
        r.register("watch_missed", "Events watchers missed because they fell behind", m.watch_missed.0.clone());
        r.register("watchers", "Open Watch streams", m.watchers.0.clone());
        r.register("agents_connected", "Agents with an open stream", m.agents_connected.0.clone());
        r.register("commands_delivered", "Kill and revoke commands sent to a connected agent", m.commands_delivered.0.clone());
        r.register("commands_queued", "Kill and revoke commands queued for a disconnected agent", m.commands_queued.0.clone());
        r.register("commands_failed", "Commands the agent reported as failed", m.commands_failed.0.clone());
        r.register("refused", "Calls refused for lack of a role", m.refused.0.clone());
        r.register("tls_refused", "Connections refused in the TLS handshake (no or untrusted client certificate, timeout)", m.tls_refused.0.clone());
        r.register("log_records", "Records in the audit log (number of the last one)", m.log_records.0.clone());
        r.register("log_bytes", "Bytes in the audit log's segments", m.log_bytes.0.clone());
        r.register(
            "kill_latency_seconds",
            "Time from a Kill or Revoke call to the agent's report",
            m.kill_latency.clone(),
        );
        m.registry = registry;
        m
    }
}

impl Metrics {
    /// Records one kill's latency (from the RPC arriving to the agent's report).
    pub fn observe_kill(&self, elapsed: std::time::Duration) {
        self.kill_latency.observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut s, &self.registry);
        s
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes. One short task
/// per connection; a client that sends nothing for 5 s is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (mut sock, _) = tokio::select! {
            () = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                true
            })
            .await;
            if !matches!(read, Ok(true)) {
                return;
            }
            let first = buf.split(|b| *b == b'\n').next().unwrap_or_default();
            let ok = first.starts_with(b"GET /metrics ") || first.starts_with(b"GET /metrics?");
            let (status, ctype, body) = if ok {
                ("200 OK", prometheus_text::CONTENT_TYPE, metrics.render())
            } else {
                ("404 Not Found", "text/plain; charset=utf-8", "not found: try GET /metrics\n".to_owned())
            };
            let head = format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.observe_kill(std::time::Duration::from_millis(3));
        m.observe_kill(std::time::Duration::from_millis(200));
        let t = m.render();
        assert!(t.contains("warrant_collector_kill_latency_seconds_bucket{le=\"0.005\"} 1"), "{t}");
        assert!(t.contains("warrant_collector_kill_latency_seconds_bucket{le=\"0.25\"} 2"), "{t}");
        assert!(t.contains("warrant_collector_kill_latency_seconds_count 2"), "{t}");
    }

    /// Names, help, types and values, byte for byte as the hand-written renderer
    /// wrote them (dashboards and alerts know these names).
    #[test]
    fn the_exposition_is_what_it_was() {
        use std::sync::atomic::Ordering::Relaxed;
        let m = Metrics::default();
        m.events_in.fetch_add(11, Relaxed);
        m.duplicates.fetch_add(22, Relaxed);
        m.batches.fetch_add(33, Relaxed);
        m.batches_refused.fetch_add(44, Relaxed);
        m.unknown_kinds.fetch_add(55, Relaxed);
        m.gaps.fetch_add(66, Relaxed);
        m.gap_filled.fetch_add(77, Relaxed);
        m.skipped_reads.fetch_add(88, Relaxed);
        m.events_out.fetch_add(99, Relaxed);
        m.watch_missed.fetch_add(110, Relaxed);
        m.watchers.fetch_add(121, Relaxed);
        m.agents_connected.fetch_add(132, Relaxed);
        m.commands_delivered.fetch_add(143, Relaxed);
        m.commands_queued.fetch_add(154, Relaxed);
        m.commands_failed.fetch_add(165, Relaxed);
        m.refused.fetch_add(176, Relaxed);
        m.tls_refused.fetch_add(187, Relaxed);
        m.log_records.store(198, Relaxed);
        m.log_bytes.store(209, Relaxed);
        for ms in [3, 200, 20_000] {
            m.observe_kill(std::time::Duration::from_millis(ms));
        }
        let want = "\
# HELP warrant_collector_events_in_total Events stored in the audit log.
# TYPE warrant_collector_events_in_total counter
warrant_collector_events_in_total 11
# HELP warrant_collector_duplicates_dropped_total Events dropped because they were already stored (agent resends).
# TYPE warrant_collector_duplicates_dropped_total counter
warrant_collector_duplicates_dropped_total 22
# HELP warrant_collector_batches_total Event batches received from agents.
# TYPE warrant_collector_batches_total counter
warrant_collector_batches_total 33
# HELP warrant_collector_batches_refused_total Agent messages refused as malformed or too big (stream ended with INVALID_ARGUMENT).
# TYPE warrant_collector_batches_refused_total counter
warrant_collector_batches_refused_total 44
# HELP warrant_collector_unknown_kind_events_total Events stored verbatim because their kind is not known to this collector.
# TYPE warrant_collector_unknown_kind_events_total counter
warrant_collector_unknown_kind_events_total 55
# HELP warrant_collector_seq_gaps_total Sequence gaps recorded (gap records written).
# TYPE warrant_collector_seq_gaps_total counter
warrant_collector_seq_gaps_total 66
# HELP warrant_collector_gap_filled_total Events stored late, into a recorded gap.
# TYPE warrant_collector_gap_filled_total counter
warrant_collector_gap_filled_total 77
# HELP warrant_collector_skipped_reads_total Stored records readers skipped because this collector cannot interpret them.
# TYPE warrant_collector_skipped_reads_total counter
warrant_collector_skipped_reads_total 88
# HELP warrant_collector_events_out_total Events sent to watchers.
# TYPE warrant_collector_events_out_total counter
warrant_collector_events_out_total 99
# HELP warrant_collector_watch_missed_total Events watchers missed because they fell behind.
# TYPE warrant_collector_watch_missed_total counter
warrant_collector_watch_missed_total 110
# HELP warrant_collector_watchers Open Watch streams.
# TYPE warrant_collector_watchers gauge
warrant_collector_watchers 121
# HELP warrant_collector_agents_connected Agents with an open stream.
# TYPE warrant_collector_agents_connected gauge
warrant_collector_agents_connected 132
# HELP warrant_collector_commands_delivered_total Kill and revoke commands sent to a connected agent.
# TYPE warrant_collector_commands_delivered_total counter
warrant_collector_commands_delivered_total 143
# HELP warrant_collector_commands_queued_total Kill and revoke commands queued for a disconnected agent.
# TYPE warrant_collector_commands_queued_total counter
warrant_collector_commands_queued_total 154
# HELP warrant_collector_commands_failed_total Commands the agent reported as failed.
# TYPE warrant_collector_commands_failed_total counter
warrant_collector_commands_failed_total 165
# HELP warrant_collector_refused_total Calls refused for lack of a role.
# TYPE warrant_collector_refused_total counter
warrant_collector_refused_total 176
# HELP warrant_collector_tls_refused_total Connections refused in the TLS handshake (no or untrusted client certificate, timeout).
# TYPE warrant_collector_tls_refused_total counter
warrant_collector_tls_refused_total 187
# HELP warrant_collector_log_records Records in the audit log (number of the last one).
# TYPE warrant_collector_log_records gauge
warrant_collector_log_records 198
# HELP warrant_collector_log_bytes Bytes in the audit log's segments.
# TYPE warrant_collector_log_bytes gauge
warrant_collector_log_bytes 209
# HELP warrant_collector_kill_latency_seconds Time from a Kill or Revoke call to the agent's report.
# TYPE warrant_collector_kill_latency_seconds histogram
warrant_collector_kill_latency_seconds_bucket{le=\"0.001\"} 0
warrant_collector_kill_latency_seconds_bucket{le=\"0.0025\"} 0
warrant_collector_kill_latency_seconds_bucket{le=\"0.005\"} 1
warrant_collector_kill_latency_seconds_bucket{le=\"0.01\"} 1
warrant_collector_kill_latency_seconds_bucket{le=\"0.025\"} 1
warrant_collector_kill_latency_seconds_bucket{le=\"0.05\"} 1
warrant_collector_kill_latency_seconds_bucket{le=\"0.1\"} 1
warrant_collector_kill_latency_seconds_bucket{le=\"0.25\"} 2
warrant_collector_kill_latency_seconds_bucket{le=\"0.5\"} 2
warrant_collector_kill_latency_seconds_bucket{le=\"1\"} 2
warrant_collector_kill_latency_seconds_bucket{le=\"2.5\"} 2
warrant_collector_kill_latency_seconds_bucket{le=\"10\"} 2
warrant_collector_kill_latency_seconds_bucket{le=\"+Inf\"} 3
warrant_collector_kill_latency_seconds_sum 20.203
warrant_collector_kill_latency_seconds_count 3
";
        assert_eq!(m.render(), want);
    }
}
