//! Everything about how output looks: tables, durations ("1m32s left"), clock
//! times, colors (only on a terminal), and making untrusted strings safe to print.
//!
//! Event fields (paths, argv, comm) are chosen by whoever runs under a grant, so
//! they are escaped before they reach a terminal: a command line must not be able
//! to move the cursor or rewrite what the on-call engineer sees.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// ANSI styles used by the CLI. No dependency needed for a handful of codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paint {
    Bold,
    Dim,
    Red,
    Green,
    Yellow,
    Blue,
    Magenta,
    Cyan,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Bold => "1",
            Paint::Dim => "2",
            Paint::Red => "1;31",
            Paint::Green => "32",
            Paint::Yellow => "33",
            Paint::Blue => "34",
            Paint::Magenta => "35",
            Paint::Cyan => "36",
        }
    }
}

/// Whether to color output, decided once per stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Colors {
    /// True only when writing to a terminal and the user has not opted out.
    pub on: bool,
}

impl Colors {
    /// Colors for stdout: on when stdout is a terminal, `NO_COLOR` is unset and
    /// `TERM` is not `dumb`.
    pub fn stdout() -> Colors {
        Colors::decide(io::stdout().is_terminal())
    }

    /// Colors for stderr, by the same rules.
    pub fn stderr() -> Colors {
        Colors::decide(io::stderr().is_terminal())
    }

    fn decide(tty: bool) -> Colors {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        Colors { on: tty && !no_color && !dumb }
    }

    /// `text` wrapped in `paint` when colors are on.
    pub fn paint(self, paint: Paint, text: &str) -> Cow<'_, str> {
        if self.on && !text.is_empty() {
            Cow::Owned(format!("\x1b[{}m{text}\x1b[0m", paint.code()))
        } else {
            Cow::Borrowed(text)
        }
    }
}

/// Now, in nanoseconds since the Unix epoch.
pub fn now_unix_ns() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// A compact duration, two units at most: `59s`, `1m32s`, `3m`, `2h5m`, `1d3h`.
/// Sub-second remainders are dropped (`0s` for less than a second).
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let two = |a: u64, ua: &str, b: u64, ub: &str| {
        if b == 0 { format!("{a}{ua}") } else { format!("{a}{ua}{b}{ub}") }
    };
    if days > 0 {
        two(days, "d", hours, "h")
    } else if hours > 0 {
        two(hours, "h", mins, "m")
    } else if mins > 0 {
        two(mins, "m", secs, "s")
    } else {
        format!("{secs}s")
    }
}

/// Time left until `expires_unix_ns`, as seen at `now_unix_ns`: `1m32s left`, or
/// `expired 3m ago` once past. `-` when the expiry is unknown (0).
pub fn left(expires_unix_ns: i64, now_unix_ns: i64) -> String {
    if expires_unix_ns == 0 {
        return "-".into();
    }
    let diff = i128::from(expires_unix_ns) - i128::from(now_unix_ns);
    let dur = |ns: i128| Duration::from_nanos(u64::try_from(ns.unsigned_abs()).unwrap_or(u64::MAX));
    if diff > 0 {
        // Rounded down, like a countdown: a 2m grant seen a moment later has 1m59s left.
        format!("{} left", short_duration(dur(diff)))
    } else {
        format!("expired {} ago", short_duration(dur(diff)))
    }
}

/// How long a kill took: `41.2 ms`, `0.3 ms`, `12.5 s`.
pub fn elapsed_us(us: u64) -> String {
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let ms = us as f64 / 1000.0;
    if ms < 10_000.0 { format!("{ms:.1} ms") } else { format!("{:.1} s", ms / 1000.0) }
}

/// `HH:MM:SS.mmm` in the local time zone (UTC if it cannot be determined).
pub fn clock(unix_ns: i64) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let ms = unix_ns.rem_euclid(1_000_000_000) / 1_000_000;
    let (h, m, s) = local_hms(secs).unwrap_or_else(|| {
        let day = secs.rem_euclid(86_400);
        (day / 3600, day / 60 % 60, day % 60)
    });
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}

fn local_hms(secs: i64) -> Option<(i64, i64, i64)> {
    let t = libc::time_t::try_from(secs).ok()?;
    // SAFETY: `tm` is plain old data, fully written by localtime_r on success;
    // localtime_r is the reentrant variant and only reads `t`.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&raw const t, &raw mut tm).is_null() {
            return None;
        }
        tm
    };
    Some((i64::from(tm.tm_hour), i64::from(tm.tm_min), i64::from(tm.tm_sec)))
}

/// `s` with control characters (including ESC, so no terminal escape sequences)
/// shown as `\n`, `\t`, `\x1b`, `\u{9b}`.
pub fn sanitize(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() && u32::from(c) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// One argument as a shell would need it to be typed: bare when safe, else in
/// single quotes; control characters escaped either way.
pub fn shell_word(s: &str) -> Cow<'_, str> {
    let safe = !s.is_empty()
        && s.chars().all(|c| c.is_alphanumeric() || "-_./:=@%+,^".contains(c));
    if safe {
        return Cow::Borrowed(s);
    }
    let quoted = format!("'{}'", s.replace('\'', "'\\''"));
    Cow::Owned(sanitize(&quoted).into_owned())
}

/// An argv for display: words shell-quoted and joined by spaces.
pub fn command_line(argv: &[String]) -> String {
    argv.iter().map(|a| shell_word(a)).collect::<Vec<_>>().join(" ")
}

/// `s` cut to `max` characters, with `…` marking the cut.
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.chars().count() <= max {
        return Cow::Borrowed(s);
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    Cow::Owned(out)
}

/// The usual name of an errno value (`EACCES`), or `errno N`.
pub fn errno_name(errno: i32) -> Cow<'static, str> {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ELOOP => "ELOOP",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        _ => return Cow::Owned(format!("errno {errno}")),
    };
    Cow::Borrowed(name)
}

/// The usual name of a signal number (`SIGKILL`), or `signal N`.
pub fn signal_name(sig: i32) -> Cow<'static, str> {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS",
        _ => return Cow::Owned(format!("signal {sig}")),
    };
    Cow::Borrowed(name)
}

/// A plain-text table: left-aligned columns two spaces apart, the last column not
/// padded, and optional extra lines under a row (a session's processes).
#[derive(Debug, Default)]
pub struct Table {
    /// Column titles, printed bold on a terminal.
    headers: Vec<&'static str>,
    /// Rows, each with the lines printed under it as they are.
    rows: Vec<(Vec<String>, Vec<String>)>,
}

impl Table {
    /// An empty table with these column titles.
    pub fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    /// Adds a row; missing cells are empty.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push((cells, Vec::new()));
    }

    /// Adds a line under the last row (ignored if there is none).
    pub fn under(&mut self, line: String) {
        if let Some(last) = self.rows.last_mut() {
            last.1.push(line);
        }
    }

    /// Writes the table.
    pub fn write(&self, out: &mut impl Write, colors: Colors) -> io::Result<()> {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for (cells, _) in &self.rows {
            for (w, c) in widths.iter_mut().zip(cells) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[&str]| {
            let mut s = String::new();
            for (i, w) in widths.iter().enumerate().take(n) {
                let c = cells.get(i).copied().unwrap_or("");
                if i + 1 == n {
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    s.push_str(&" ".repeat(w - c.chars().count() + 2));
                }
            }
            s.truncate(s.trim_end().len());
            s
        };
        writeln!(out, "{}", colors.paint(Paint::Bold, &line(&self.headers)))?;
        for (cells, under) in &self.rows {
            let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
            writeln!(out, "{}", line(&cells))?;
            for u in under {
                writeln!(out, "{u}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn short_durations() {
        let d = Duration::from_secs;
        assert_eq!(short_duration(d(0)), "0s");
        assert_eq!(short_duration(Duration::from_millis(999)), "0s");
        assert_eq!(short_duration(d(59)), "59s");
        assert_eq!(short_duration(d(60)), "1m");
        assert_eq!(short_duration(d(92)), "1m32s");
        assert_eq!(short_duration(d(3600)), "1h");
        assert_eq!(short_duration(d(5400 + 59)), "1h30m");
        assert_eq!(short_duration(d(86_400 * 2 + 3600 * 3 + 5)), "2d3h");
    }

    #[test]
    fn time_left_and_since_expiry() {
        let now = 1_700_000_000 * S;
        assert_eq!(left(now + 92 * S, now), "1m32s left");
        assert_eq!(left(now + 119 * S + S / 2, now), "1m59s left", "rounded down");
        assert_eq!(left(now + 1, now), "0s left");
        assert_eq!(left(now, now), "expired 0s ago");
        assert_eq!(left(now - 180 * S, now), "expired 3m ago");
        assert_eq!(left(0, now), "-");
    }

    #[test]
    fn kill_times() {
        assert_eq!(elapsed_us(41_234), "41.2 ms");
        assert_eq!(elapsed_us(300), "0.3 ms");
        assert_eq!(elapsed_us(12_500_000), "12.5 s");
    }

    #[test]
    fn clock_has_millis() {
        let c = clock(1_700_000_000 * S + 123_456_789);
        assert_eq!(c.len(), 12, "{c}");
        assert!(c.ends_with(":20.123"), "{c}");
    }

    #[test]
    fn untrusted_strings_cannot_drive_the_terminal() {
        assert_eq!(sanitize("plain ✓"), "plain ✓");
        assert_eq!(sanitize("a\x1b[2Jb\nc\u{9b}"), "a\\x1b[2Jb\\nc\\u{9b}");
        assert_eq!(shell_word("-u"), "-u");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("x\x1by"), "'x\\x1by'");
        assert_eq!(command_line(&["psql".into(), "-c".into(), "select 1".into()]), "psql -c 'select 1'");
    }

    #[test]
    fn names() {
        assert_eq!(errno_name(libc::EACCES), "EACCES");
        assert_eq!(errno_name(4095), "errno 4095");
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }

    #[test]
    fn table_aligns_and_keeps_last_column_ragged() {
        let mut t = Table::new(&["ID", "NAME", "NOTE"]);
        t.row(vec!["g-1".into(), "alice".into(), "x".into()]);
        t.under("    pid 1".into());
        t.row(vec!["g-10".into(), "b".into(), String::new()]);
        let mut out = Vec::new();
        t.write(&mut out, Colors::default()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID    NAME   NOTE\ng-1   alice  x\n    pid 1\ng-10  b\n"
        );
    }

    #[test]
    fn paint_only_when_on() {
        assert_eq!(Colors { on: false }.paint(Paint::Red, "x"), "x");
        assert_eq!(Colors { on: true }.paint(Paint::Red, "x"), "\x1b[1;31mx\x1b[0m");
    }
}
