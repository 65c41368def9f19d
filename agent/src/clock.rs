//! The two clocks: wall time for people and records, boot time for the kernel.
//!
//! Expiry lives on `CLOCK_BOOTTIME` (what `bpf_ktime_get_boot_ns` reads): it keeps
//! counting through suspend and ignores wall-clock changes, so nobody extends a
//! grant by setting the date back.

fn read(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid clock id and out pointer; these clocks cannot fail on Linux.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Nanoseconds since the Unix epoch.
pub fn wall_ns() -> i64 {
    read(libc::CLOCK_REALTIME)
}

/// Nanoseconds since boot, suspend included.
pub fn boot_ns() -> u64 {
    read(libc::CLOCK_BOOTTIME) as u64
}

/// `wall - boot`, to move a kernel timestamp onto the wall clock.
pub fn boot_to_wall_ns() -> i64 {
    wall_ns() - boot_ns() as i64
}

/// A short human duration: `3m12s`, `45s`, `1h2m`.
pub fn human(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_move_forward() {
        let (w, b) = (wall_ns(), boot_ns());
        assert!(w > 1_600_000_000_000_000_000);
        assert!(boot_ns() >= b);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(45_000_000_000), "45s");
        assert_eq!(human(192_000_000_000), "3m12s");
        assert_eq!(human(3_720_000_000_000), "1h2m");
    }
}
