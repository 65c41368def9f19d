//! Prometheus metrics of the collector, and the small HTTP/1 responder that serves
//! them (`GET /metrics`; anything else is 404). Counters are atomics bumped on the
//! hot paths; the text is rendered only when scraped.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds (seconds) of the kill latency histogram's buckets.
const KILL_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Every metric the collector exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events stored (new).
    pub events_in: AtomicU64,
    /// Events dropped because their (agent, boot, seq) was already stored.
    pub duplicates: AtomicU64,
    /// Batches received from agents.
    pub batches: AtomicU64,
    /// Agent messages refused as malformed or over the size limit (the stream ended
    /// with INVALID_ARGUMENT).
    pub batches_refused: AtomicU64,
    /// Events stored verbatim because their kind is not one this build knows.
    pub unknown_kinds: AtomicU64,
    /// Sequence gaps recorded (an agent's seqs jumped past ones never stored).
    pub gaps: AtomicU64,
    /// Events stored late into a recorded gap.
    pub gap_filled: AtomicU64,
    /// Stored records a reader (Query, Watch) skipped because it cannot interpret them.
    pub skipped_reads: AtomicU64,
    /// Events sent to watchers (replayed and live).
    pub events_out: AtomicU64,
    /// Events watchers missed because they fell behind.
    pub watch_missed: AtomicU64,
    /// Open Watch streams.
    pub watchers: AtomicU64,
    /// Connected agents.
    pub agents_connected: AtomicU64,
    /// Kill/revoke commands sent to a connected agent.
    pub commands_delivered: AtomicU64,
    /// Kill/revoke commands queued for a disconnected agent.
    pub commands_queued: AtomicU64,
    /// Kill/revoke commands the agent reported as failed.
    pub commands_failed: AtomicU64,
    /// Calls refused for lack of a role.
    pub refused: AtomicU64,
    /// Connections refused in the TLS handshake (no certificate, one no trusted CA
    /// signed, a handshake that did not finish in time).
    pub tls_refused: AtomicU64,
    /// Records in the log.
    pub log_records: AtomicU64,
    /// Bytes in the log's segments.
    pub log_bytes: AtomicU64,
    /// Kill latency histogram: count per bucket (cumulative at render time).
    kill_buckets: [AtomicU64; KILL_BUCKETS.len()],
    /// Kills observed.
    kill_count: AtomicU64,
    /// Sum of kill latencies, microseconds.
    kill_sum_us: AtomicU64,
}

impl Metrics {
    /// Records one kill's latency (from the RPC arriving to the agent's report).
    pub fn observe_kill(&self, elapsed: std::time::Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = KILL_BUCKETS.iter().position(|b| secs <= *b) {
            self.kill_buckets[i].fetch_add(1, Relaxed);
        }
        self.kill_count.fetch_add(1, Relaxed);
        self.kill_sum_us.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// The Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(4096);
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP warrant_collector_{name} {help}\n# TYPE warrant_collector_{name} {kind}\nwarrant_collector_{name} {v}");
        };
        one("events_in_total", "counter", "Events stored in the audit log.", self.events_in.load(Relaxed));
        one("duplicates_dropped_total", "counter", "Events dropped because they were already stored (agent resends).", self.duplicates.load(Relaxed));
        one("batches_total", "counter", "Event batches received from agents.", self.batches.load(Relaxed));
        one("batches_refused_total", "counter", "Agent messages refused as malformed or too big (stream ended with INVALID_ARGUMENT).", self.batches_refused.load(Relaxed));
        one("unknown_kind_events_total", "counter", "Events stored verbatim because their kind is not known to this collector.", self.unknown_kinds.load(Relaxed));
        one("seq_gaps_total", "counter", "Sequence gaps recorded (gap records written).", self.gaps.load(Relaxed));
        one("gap_filled_total", "counter", "Events stored late, into a recorded gap.", self.gap_filled.load(Relaxed));
        one("skipped_reads_total", "counter", "Stored records readers skipped because this collector cannot interpret them.", self.skipped_reads.load(Relaxed));
        one("events_out_total", "counter", "Events sent to watchers.", self.events_out.load(Relaxed));
        one("watch_missed_total", "counter", "Events watchers missed because they fell behind.", self.watch_missed.load(Relaxed));
        one("watchers", "gauge", "Open Watch streams.", self.watchers.load(Relaxed));
        one("agents_connected", "gauge", "Agents with an open stream.", self.agents_connected.load(Relaxed));
        one("commands_delivered_total", "counter", "Kill and revoke commands sent to a connected agent.", self.commands_delivered.load(Relaxed));
        one("commands_queued_total", "counter", "Kill and revoke commands queued for a disconnected agent.", self.commands_queued.load(Relaxed));
        one("commands_failed_total", "counter", "Commands the agent reported as failed.", self.commands_failed.load(Relaxed));
        one("refused_total", "counter", "Calls refused for lack of a role.", self.refused.load(Relaxed));
        one("tls_refused_total", "counter", "Connections refused in the TLS handshake (no or untrusted client certificate, timeout).", self.tls_refused.load(Relaxed));
        one("log_records", "gauge", "Records in the audit log (number of the last one).", self.log_records.load(Relaxed));
        one("log_bytes", "gauge", "Bytes in the audit log's segments.", self.log_bytes.load(Relaxed));
        let _ = writeln!(s, "# HELP warrant_collector_kill_latency_seconds Time from a Kill or Revoke call to the agent's report.");
        let _ = writeln!(s, "# TYPE warrant_collector_kill_latency_seconds histogram");
        let mut cumulative = 0;
        for (i, bound) in KILL_BUCKETS.iter().enumerate() {
            cumulative += self.kill_buckets[i].load(Relaxed);
            let _ = writeln!(s, "warrant_collector_kill_latency_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.kill_count.load(Relaxed);
        let _ = writeln!(s, "warrant_collector_kill_latency_seconds_bucket{{le=\"+Inf\"}} {count}");
        #[expect(clippy::cast_precision_loss, reason = "a sum of microseconds; float precision is plenty")]
        let sum = self.kill_sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(s, "warrant_collector_kill_latency_seconds_sum {sum}");
        let _ = writeln!(s, "warrant_collector_kill_latency_seconds_count {count}");
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
                ("200 OK", "text/plain; version=0.0.4; charset=utf-8", metrics.render())
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
}
