//! Log lines for refused TLS handshakes, at a bounded rate.
//!
//! Anyone who can reach the port can fail a handshake, as often as they like; one
//! warning per refusal would let them fill the collector's log (and the disk under
//! it). Every refusal is still counted (`warrant_collector_tls_refused_total`); the
//! log gets the first [`PER_WINDOW`] of each [`WINDOW`] with the peer and reason,
//! then one line per window saying how many more there were and from how many
//! addresses.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refusals logged one by one per window.
pub const PER_WINDOW: u32 = 20;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Distinct addresses remembered for a window's summary (beyond it, "at least").
const ADDRESSES: usize = 1024;

/// What to log for one refusal.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// Log this refusal.
    This,
    /// Log nothing for this one.
    Quiet,
    /// A new window began: first say what the last one held back (count,
    /// distinct addresses, whether that count is a floor), then log this refusal.
    Summary { held_back: u64, addresses: usize, more: bool },
}

#[derive(Default)]
struct Window {
    started: Option<Instant>,
    logged: u32,
    held_back: u64,
    addresses: HashSet<IpAddr>,
    more: bool,
}

/// The limiter, shared by every handshake task.
#[derive(Default)]
pub struct RefusalLog(Mutex<Window>);

impl RefusalLog {
    /// Decides the log line for a refusal from `peer` at `now`.
    pub fn refused(&self, peer: IpAddr, now: Instant) -> Line {
        let mut w = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let expired = w.started.is_none_or(|s| now.duration_since(s) >= WINDOW);
        if expired {
            let summary = (w.held_back > 0)
                .then(|| Line::Summary { held_back: w.held_back, addresses: w.addresses.len(), more: w.more });
            *w = Window { started: Some(now), logged: 1, ..Window::default() };
            return summary.unwrap_or(Line::This);
        }
        if w.logged < PER_WINDOW {
            w.logged += 1;
            return Line::This;
        }
        w.held_back += 1;
        if w.addresses.len() < ADDRESSES {
            w.addresses.insert(peer);
        } else if !w.addresses.contains(&peer) {
            w.more = true;
        }
        Line::Quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_logged_at_a_bounded_rate_and_summed_up() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let lines: Vec<Line> = (0..1000).map(|i| log.refused(if i % 2 == 0 { a } else { b }, t0)).collect();
        assert_eq!(lines.iter().filter(|l| **l == Line::This).count(), PER_WINDOW as usize);
        assert_eq!(lines.iter().filter(|l| **l == Line::Quiet).count(), 1000 - PER_WINDOW as usize);
        // Still inside the window: quiet.
        assert_eq!(log.refused(a, t0 + WINDOW - Duration::from_millis(1)), Line::Quiet);
        // The next window opens with what the last one held back.
        assert_eq!(
            log.refused(a, t0 + WINDOW),
            Line::Summary { held_back: 1000 - u64::from(PER_WINDOW) + 1, addresses: 2, more: false }
        );
        // A quiet window after that has nothing to sum up.
        assert_eq!(log.refused(a, t0 + 3 * WINDOW), Line::This);
    }

    #[test]
    fn the_address_count_is_bounded() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        for i in 0..(PER_WINDOW as usize + ADDRESSES + 10) {
            let ip: IpAddr = std::net::Ipv6Addr::from(i as u128).into();
            log.refused(ip, t0);
        }
        let Line::Summary { addresses, more, .. } = log.refused([127, 0, 0, 1].into(), t0 + WINDOW) else {
            panic!("no summary")
        };
        assert_eq!((addresses, more), (ADDRESSES, true));
    }
}
