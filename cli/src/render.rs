//! How an event looks, for `warrant watch`, `warrant query`, `warrant report` and
//! the console: one JSON object per line (the documented form,
//! `warrant_audit::json`), one human line per event (`HH:MM:SS.mmm SESSION PID KIND
//! SUMMARY`, colored on a terminal, the host first when events come from many
//! hosts), or a session report in full.
//!
//! Loss is never quiet: `events_lost` (the kernel ring buffer overflowed) and
//! `watch_missed` (a watcher fell behind) read in capitals, and denials, kills and
//! losses are marked for attention (red on a terminal, `alarm` in the console).

use std::fmt::Write as _;
use std::io::Write;

use anyhow::{Context as _, Result};
use warrant_proto::event::Event as Kind;
use warrant_audit::json::to_json;
use warrant_audit::kinds::kind_name;
use warrant_proto::{Event, Net, SessionReport};

use crate::output::{self, Colors, Paint, command_line, errno_name, sanitize, signal_name};

/// How events are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// One JSON object per event per line, for scripts.
    Json,
    /// One human line per event; with `host`, the event's host first.
    Line {
        /// Events come from many hosts (a collector).
        host: bool,
    },
    /// A session report in full, section by section (other events as lines).
    Report,
}

/// Writes events in one [`Style`], with colors or without.
#[derive(Clone, Copy, Debug)]
pub struct Render {
    pub style: Style,
    pub colors: Colors,
}

impl Render {
    /// `style`, colored when stdout is a terminal.
    pub fn stdout(style: Style) -> Render {
        Render {
            style,
            colors: Colors::stdout(),
        }
    }

    /// JSON when `json`, else `human`.
    pub fn json_or(json: bool, human: Style) -> Render {
        Render::stdout(if json { Style::Json } else { human })
    }

    /// Writes `ev` to `out`.
    pub fn write(&self, ev: &Event, out: &mut impl Write) -> Result<()> {
        match (self.style, &ev.event) {
            (Style::Json, _) => {
                let line = serde_json::to_string(&to_json(ev))
                    .context("cannot encode an event as JSON")?;
                writeln!(out, "{line}")?;
            }
            (Style::Report, Some(Kind::SessionReport(r))) => {
                out.write_all(report_text(ev, r).as_bytes())?
            }
            (Style::Line { host: true }, _) => {
                let host = if ev.host.is_empty() { "-" } else { &ev.host };
                writeln!(out, "{:<12} {}", sanitize(host), line(ev, self.colors))?;
            }
            (Style::Line { host: false } | Style::Report, _) => {
                writeln!(out, "{}", line(ev, self.colors))?
            }
        }
        Ok(())
    }
}

/// One human line for an event.
pub fn line(ev: &Event, colors: Colors) -> String {
    let who = if !ev.session.is_empty() {
        &ev.session
    } else if !ev.grant.is_empty() {
        &ev.grant
    } else {
        "-"
    };
    let pid = if ev.pid == 0 {
        "-".to_owned()
    } else {
        ev.pid.to_string()
    };
    let kind = kind_name(ev);
    let (summary, alarm) = summary(ev);
    let paint = if alarm { Paint::Red } else { kind_paint(kind) };
    format!(
        "{} {:<6} {:>7} {} {}",
        colors.paint(Paint::Dim, &output::clock(ev.time_unix_ns)),
        sanitize(who),
        pid,
        colors.paint(paint, kind),
        if alarm {
            colors.paint(Paint::Red, &summary)
        } else {
            summary.into()
        }
    )
}

fn kind_paint(kind: &str) -> Paint {
    match kind {
        "exec" => Paint::Green,
        "exit" => Paint::Dim,
        "file_open" | "file_change" | "io_uring" => Paint::Cyan,
        "connect" | "bind" | "listen" | "accept" | "datagram" => Paint::Yellow,
        "session_start" | "session_end" => Paint::Magenta,
        "grant_change" => Paint::Blue,
        _ => Paint::Bold,
    }
}

/// The kind-specific part, and whether it deserves attention (a denial, a kill,
/// a loss).
pub fn summary(ev: &Event) -> (String, bool) {
    let Some(kind) = &ev.event else {
        return (
            "(unknown event kind: the agent is newer than this warrant)".into(),
            false,
        );
    };
    match kind {
        Kind::Exec(e) => {
            let mut s = sanitize(&e.path).into_owned();
            if !e.script.is_empty() {
                s.push_str(" running ");
                s.push_str(&sanitize(&e.script));
            }
            if !e.argv.is_empty() {
                s.push(' ');
                s.push_str(&command_line(&e.argv));
            }
            if e.truncated {
                s.push_str(" (truncated)");
            }
            (s, false)
        }
        Kind::Exit(e) if e.signal != 0 => (
            format!("signal {} ({})", signal_name(e.signal), e.signal),
            false,
        ),
        Kind::Exit(e) => (format!("code {}", e.code), false),
        Kind::FileOpen(f) => {
            let access = if f.access.is_empty() {
                "open"
            } else {
                &f.access
            };
            let mut s = format!("{} {}", sanitize(access), sanitize(&f.path));
            if f.unresolved {
                s.push_str(" (as given)");
            }
            if f.truncated {
                s.push_str(" (truncated)");
            }
            if f.error != 0 {
                let _ = write!(s, " -> {}", errno_name(f.error));
            }
            (s, f.error == libc::EPERM || f.error == libc::EACCES)
        }
        Kind::FileChange(c) => {
            let mut s = sanitize(&c.summary()).into_owned();
            if c.unresolved {
                s.push_str(" (as given)");
            }
            if c.truncated {
                s.push_str(" (truncated)");
            }
            if c.error != 0 {
                let _ = write!(s, " -> {}", errno_name(c.error));
            }
            (s, c.error == libc::EPERM || c.error == libc::EACCES)
        }
        Kind::Connect(n) | Kind::Accept(n) | Kind::Datagram(n) => {
            net(n, &n.remote_addr, n.remote_port)
        }
        Kind::Bind(n) | Kind::Listen(n) => net(n, &n.local_addr, n.local_port),
        Kind::SocketsDropped(d) => (
            format!("dropped {} sockets: {}", d.count, sanitize(&d.reason)),
            true,
        ),
        Kind::TokenRefused(t) => (
            format!(
                "token refused ({}): {}",
                sanitize(&t.how),
                sanitize(&t.reason)
            ),
            true,
        ),
        Kind::Violation(v) => {
            let target = if !v.path.is_empty() {
                sanitize(&v.path).into_owned()
            } else if !v.family.is_empty() {
                format!("{} {}:{}", sanitize(&v.family), sanitize(&v.addr), v.port)
            } else {
                String::new()
            };
            let mut s = format!(
                "{} {target} -> {} ({}",
                sanitize(&v.op),
                sanitize(&v.action),
                sanitize(&v.rule)
            );
            if !v.policy.is_empty() {
                let _ = write!(s, ", {}", sanitize(&v.policy));
            }
            s.push(')');
            if !v.detail.is_empty() {
                let _ = write!(s, ": {}", sanitize(&v.detail));
            }
            if !v.prevented && v.action != "log" {
                s.push_str(" [not prevented]");
            }
            (s, true)
        }
        Kind::SessionReport(r) => (
            format!(
                "report: {} commands, {} files written, {} other file changes, {} hosts, {} violations (warrant report {})",
                r.commands_total,
                r.files_written_total,
                r.files_changed_total,
                r.remotes.len(),
                r.violations_total,
                sanitize(&ev.session)
            ),
            false,
        ),
        Kind::SocketClose(c) => (
            format!(
                "closed {}:{}: sent {} B, received {} B",
                sanitize(&c.remote_addr),
                c.remote_port,
                c.bytes_sent,
                c.bytes_received
            ),
            false,
        ),
        Kind::IoUring(u) => {
            let fd = if u.fixed_file { "fixed file" } else { "fd" };
            (format!("{} on {fd} {}", sanitize(&u.op), u.fd), false)
        }
        Kind::ExecFailed(e) => {
            let mut s = format!("{} -> {}", sanitize(&e.path), errno_name(e.error));
            if e.truncated {
                s.push_str(" (truncated)");
            }
            (s, e.error == libc::EPERM || e.error == libc::EACCES)
        }
        Kind::Kill(k) => {
            let mut s = format!(
                "{} by {}: killed {} in {}",
                sanitize(&k.reason),
                sanitize(&k.by),
                k.killed,
                output::elapsed_us(k.elapsed_us)
            );
            if k.survivors > 0 {
                let _ = write!(s, ", {} SURVIVED", k.survivors);
            }
            if !k.note.is_empty() {
                let _ = write!(s, " ({})", sanitize(&k.note));
            }
            (s, true)
        }
        Kind::EventsLost(l) if l.reason == "spool_full" => (
            format!(
                "LOST {} events to the collector: the agent's spool was full ({} since the agent started; they are in its local log)",
                l.count, l.total
            ),
            true,
        ),
        Kind::EventsLost(l) if !l.by_kind.is_empty() => {
            let mut by: Vec<(&String, &u64)> = l.by_kind.iter().collect();
            by.sort();
            let by: Vec<String> = by
                .iter()
                .map(|(k, n)| format!("{} {}", sanitize(k), n))
                .collect();
            (
                format!(
                    "LOST {} of this session's kernel records ({}; {} in all)",
                    l.count,
                    by.join(", "),
                    l.total
                ),
                true,
            )
        }
        Kind::EventsLost(l) => (
            format!(
                "LOST {} kernel records ({} since the agent started)",
                l.count, l.total
            ),
            true,
        ),
        Kind::SessionStart(s) => (
            format!(
                "{} {} (root pid {}, caller uid {})",
                sanitize(&s.how),
                command_line(&s.command),
                s.root_pid,
                s.caller_uid
            ),
            false,
        ),
        Kind::SessionEnd(s) => (
            sanitize(&s.reason).into_owned(),
            s.reason.starts_with("killed"),
        ),
        Kind::GrantChange(g) => {
            let mut s = sanitize(&g.change).into_owned();
            if !ev.subject.is_empty() {
                let _ = write!(s, " for {}", sanitize(&ev.subject));
            }
            if g.expires_at_unix_ns != 0 && g.change == "issued" {
                let _ = write!(s, ", expires {}", output::clock(g.expires_at_unix_ns));
            }
            if !g.by.is_empty() {
                let _ = write!(s, " by {}", sanitize(&g.by));
            }
            if !g.reason.is_empty() {
                let _ = write!(s, ": {}", sanitize(&g.reason));
            }
            (s, g.change == "revoked")
        }
        Kind::WatchMissed(w) if !w.reason.is_empty() => (
            format!("SKIPPED {} record(s): {}", w.count, sanitize(&w.reason)),
            true,
        ),
        Kind::WatchMissed(w) => (
            format!("MISSED {} events: this watcher fell behind", w.count),
            true,
        ),
        Kind::ControlAction(c) => {
            let mut s = format!(
                "{} {} by {}",
                sanitize(&c.action),
                sanitize(&c.target),
                sanitize(&c.by)
            );
            if !c.outcome.is_empty() {
                let _ = write!(s, ": {}", sanitize(&c.outcome));
            }
            if !c.detail.is_empty() {
                let _ = write!(s, " ({})", sanitize(&c.detail));
            }
            (s, c.outcome == "refused")
        }
    }
}

/// `10.0.0.1:5432`, `[::1]:80 udp`, with the errno when the call failed.
fn net(n: &Net, addr: &str, port: u32) -> (String, bool) {
    let addr = sanitize(addr);
    let mut s = if n.family == "unix" {
        // A unix socket: its name, and who answered when that is not the name asked.
        let mut s = format!("unix {addr}");
        if !n.peer.is_empty() && n.peer != n.remote_addr {
            let _ = write!(s, " (bound as {})", sanitize(&n.peer));
        }
        if n.peer_pid != 0 {
            let _ = write!(s, " peer {} {}", n.peer_pid, sanitize(&n.peer_comm));
        }
        s
    } else if n.family == "inet6" || addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    };
    if !n.protocol.is_empty() && n.protocol != "tcp" {
        s.push(' ');
        s.push_str(&sanitize(&n.protocol));
    }
    // A non-blocking connect reports EINPROGRESS: normal, not worth a mark.
    if n.error != 0 && n.error != libc::EINPROGRESS {
        let _ = write!(s, " -> {}", errno_name(n.error));
    }
    (s, n.error == libc::EPERM || n.error == libc::EACCES)
}

/// The report as one JSON object: the event's documented form, plus each remote's
/// byte counts for people (`sent`, `received`) as the text report writes them.
pub fn report_json(ev: &Event) -> serde_json::Value {
    let mut v = warrant_audit::json::to_json(ev);
    if let (Some(Kind::SessionReport(r)), Some(remotes)) = (
        &ev.event,
        v.get_mut("remotes").and_then(|r| r.as_array_mut()),
    ) {
        for (j, t) in remotes.iter_mut().zip(&r.remotes) {
            j["sent"] = bytes(t.bytes_sent).into();
            j["received"] = bytes(t.bytes_received).into();
        }
    }
    v
}

/// Bytes for people: `512 B`, `1.5 KiB`, `3.2 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// A session report for people, section by section.
pub fn report_text(ev: &Event, r: &SessionReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "session   {} under grant {}",
        sanitize(&ev.session),
        sanitize(&ev.grant)
    );
    let _ = writeln!(s, "who       {}", sanitize(&ev.subject));
    if !r.issued_by.is_empty() {
        let _ = writeln!(s, "issued by {}", sanitize(&r.issued_by));
    }
    if !r.reason.is_empty() {
        let _ = writeln!(s, "reason    {}", sanitize(&r.reason));
    }
    if !r.policy.is_empty() {
        let _ = writeln!(s, "policy    {}", sanitize(&r.policy));
    }
    let _ = writeln!(s, "started   {}", output::clock(r.started_at_unix_ns));
    if r.ended_at_unix_ns == 0 {
        let _ = writeln!(s, "ended     (still live)");
    } else {
        let _ = writeln!(
            s,
            "ended     {} ({})",
            output::clock(r.ended_at_unix_ns),
            sanitize(&r.end_reason)
        );
    }
    let _ = writeln!(s, "events    {}", r.events);
    let _ = writeln!(s, "\ncommands ({})", r.commands_total);
    for c in &r.commands {
        let _ = writeln!(s, "  {}", sanitize(c));
    }
    let _ = writeln!(s, "\nfiles written ({})", r.files_written_total);
    for f in &r.files_written {
        let _ = writeln!(s, "  {}", sanitize(f));
    }
    let _ = writeln!(s, "\nother file changes ({})", r.files_changed_total);
    for f in &r.files_changed {
        let _ = writeln!(s, "  {}", sanitize(f));
    }
    let _ = writeln!(s, "\nhosts contacted ({})", r.remotes.len());
    for t in &r.remotes {
        let _ = writeln!(
            s,
            "  {}:{}  {} connection{}, sent {}, received {}",
            sanitize(&t.addr),
            t.port,
            t.connections,
            if t.connections == 1 { "" } else { "s" },
            bytes(t.bytes_sent),
            bytes(t.bytes_received)
        );
    }
    let _ = writeln!(s, "\nviolations ({})", r.violations_total);
    for v in &r.violations {
        let _ = writeln!(s, "  {}", sanitize(v));
    }
    let _ = writeln!(s, "\nkills ({})", r.kills.len());
    for k in &r.kills {
        let _ = writeln!(s, "  {}", sanitize(k));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use warrant_proto::{
        ControlAction, EventsLost, Exec, ExecFailed, Exit, FileChange, FileOpen, GrantChange, IoUring, Kill,
        RemoteTraffic, SessionEnd, SessionStart, SocketClose, SocketsDropped, TokenRefused,
        Violation, WatchMissed,
    };

    fn ev(kind: Kind) -> Event {
        Event {
            event: Some(kind),
            session: "s-3".into(),
            grant: "g-1".into(),
            pid: 1234,
            time_unix_ns: 1_700_000_000_123_000_000,
            ..Default::default()
        }
    }

    /// The same event with no session, grant or pid (an agent-wide record).
    fn host_wide(kind: Kind) -> Event {
        Event {
            session: String::new(),
            grant: String::new(),
            pid: 0,
            ..ev(kind)
        }
    }

    /// The line without its clock (local time zone dependent).
    fn line_of(e: &Event) -> String {
        let l = line(e, Colors::default());
        assert_eq!(&l[12..13], " ", "{l}");
        l[13..].to_owned()
    }

    fn written(render: Render, e: &Event) -> String {
        let mut out = Vec::new();
        render.write(e, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn plain(style: Style) -> Render {
        Render {
            style,
            colors: Colors::default(),
        }
    }

    fn inet(remote: (&str, u32), local: (&str, u32)) -> Net {
        Net {
            family: "inet".into(),
            protocol: "tcp".into(),
            local_addr: local.0.into(),
            local_port: local.1,
            remote_addr: remote.0.into(),
            remote_port: remote.1,
            ..Net::default()
        }
    }

    /// One event of every kind, its line (without the clock) and whether it is an alarm.
    #[test]
    fn one_event_of_each_shape() {
        let cases: Vec<(Event, &str, bool)> = vec![
            (
                ev(Kind::Exec(Exec {
                    path: "/bin/sh".into(),
                    argv: vec!["sh".into(), "./deploy.sh".into()],
                    script: "/srv/deploy.sh".into(),
                    ..Exec::default()
                })),
                "s-3       1234 exec /bin/sh running /srv/deploy.sh sh ./deploy.sh",
                false,
            ),
            (
                ev(Kind::Exit(Exit { code: 3, signal: 0 })),
                "s-3       1234 exit code 3",
                false,
            ),
            (
                ev(Kind::FileOpen(FileOpen {
                    path: "etc/x".into(),
                    access: String::new(),
                    unresolved: true,
                    ..FileOpen::default()
                })),
                "s-3       1234 file_open open etc/x (as given)",
                false,
            ),
            (
                ev(Kind::FileChange(FileChange {
                    op: "rename".into(),
                    path: "/etc/a".into(),
                    target: "/etc/b".into(),
                    error: libc::EPERM,
                    ..FileChange::default()
                })),
                "s-3       1234 file_change rename /etc/a -> /etc/b -> EPERM",
                true,
            ),
            (
                ev(Kind::Connect(inet(("10.0.0.1", 5432), ("10.0.0.9", 40000)))),
                "s-3       1234 connect 10.0.0.1:5432",
                false,
            ),
            (
                ev(Kind::Bind(inet(("", 0), ("0.0.0.0", 8080)))),
                "s-3       1234 bind 0.0.0.0:8080",
                false,
            ),
            (
                ev(Kind::Listen(inet(("", 0), ("0.0.0.0", 8080)))),
                "s-3       1234 listen 0.0.0.0:8080",
                false,
            ),
            (
                ev(Kind::Accept(inet(("10.0.0.7", 51000), ("0.0.0.0", 8080)))),
                "s-3       1234 accept 10.0.0.7:51000",
                false,
            ),
            (
                ev(Kind::Datagram(Net {
                    protocol: "udp".into(),
                    ..inet(("10.0.0.53", 53), ("10.0.0.9", 40001))
                })),
                "s-3       1234 datagram 10.0.0.53:53 udp",
                false,
            ),
            (
                ev(Kind::Violation(Violation {
                    op: "connect".into(),
                    action: "deny".into(),
                    rule: "net.deny[0]".into(),
                    family: "inet".into(),
                    addr: "1.2.3.4".into(),
                    port: 443,
                    policy: "db-debug".into(),
                    prevented: true,
                    ..Violation::default()
                })),
                "s-3       1234 violation connect inet 1.2.3.4:443 -> deny (net.deny[0], db-debug)",
                true,
            ),
            (
                ev(Kind::Violation(Violation {
                    op: "open".into(),
                    action: "kill".into(),
                    rule: "file.deny[1]".into(),
                    path: "/etc/shadow".into(),
                    detail: "read".into(),
                    prevented: false,
                    ..Violation::default()
                })),
                "s-3       1234 violation open /etc/shadow -> kill (file.deny[1]): read [not prevented]",
                true,
            ),
            (
                ev(Kind::ExecFailed(ExecFailed {
                    path: "/usr/bin/nc".into(),
                    error: libc::EACCES,
                    truncated: false,
                })),
                "s-3       1234 exec_failed /usr/bin/nc -> EACCES",
                true,
            ),
            (
                ev(Kind::IoUring(IoUring {
                    op: "connect".into(),
                    opcode: 16,
                    fd: 4,
                    fixed_file: false,
                    user_data: 7,
                })),
                "s-3       1234 io_uring connect on fd 4",
                false,
            ),
            (
                ev(Kind::SocketClose(SocketClose {
                    remote_addr: "10.0.0.1".into(),
                    remote_port: 5432,
                    bytes_sent: 100,
                    bytes_received: 2048,
                    ..SocketClose::default()
                })),
                "s-3       1234 socket_close closed 10.0.0.1:5432: sent 100 B, received 2048 B",
                false,
            ),
            (
                ev(Kind::Kill(Kill {
                    reason: "expiry".into(),
                    by: "agent".into(),
                    killed: 2,
                    elapsed_us: 800,
                    survivors: 1,
                    note: "pid 9 left the cgroup".into(),
                })),
                "s-3       1234 kill expiry by agent: killed 2 in 0.8 ms, 1 SURVIVED (pid 9 left the cgroup)",
                true,
            ),
            (
                host_wide(Kind::EventsLost(EventsLost {
                    count: 7,
                    total: 9,
                    reason: "spool_full".into(),
                    ..EventsLost::default()
                })),
                "-            - events_lost LOST 7 events to the collector: the agent's spool was full \
                 (9 since the agent started; they are in its local log)",
                true,
            ),
            (
                ev(Kind::EventsLost(EventsLost {
                    count: 3,
                    total: 5,
                    by_kind: [("file_open".to_owned(), 2), ("exec".to_owned(), 1)].into(),
                    ..EventsLost::default()
                })),
                "s-3       1234 events_lost LOST 3 of this session's kernel records (exec 1, file_open 2; 5 in all)",
                true,
            ),
            (
                ev(Kind::SessionStart(SessionStart {
                    command: vec!["bash".into(), "-l".into()],
                    root_pid: 1234,
                    how: "exec".into(),
                    caller_uid: 1000,
                    ..SessionStart::default()
                })),
                "s-3       1234 session_start exec bash -l (root pid 1234, caller uid 1000)",
                false,
            ),
            (
                ev(Kind::SessionEnd(SessionEnd {
                    reason: "exited".into(),
                })),
                "s-3       1234 session_end exited",
                false,
            ),
            (
                ev(Kind::SessionEnd(SessionEnd {
                    reason: "killed: expiry".into(),
                })),
                "s-3       1234 session_end killed: expiry",
                true,
            ),
            (
                Event {
                    session: String::new(),
                    pid: 0,
                    ..ev(Kind::GrantChange(GrantChange {
                        change: "issued".into(),
                        by: "uid 0".into(),
                        ..GrantChange::default()
                    }))
                },
                "g-1          - grant_change issued by uid 0",
                false,
            ),
            (
                host_wide(Kind::WatchMissed(WatchMissed {
                    count: 2,
                    reason: "undecodable".into(),
                })),
                "-            - watch_missed SKIPPED 2 record(s): undecodable",
                true,
            ),
            (
                ev(Kind::SocketsDropped(SocketsDropped {
                    count: 4,
                    reason: "table full".into(),
                })),
                "s-3       1234 sockets_dropped dropped 4 sockets: table full",
                true,
            ),
            (
                host_wide(Kind::ControlAction(ControlAction {
                    action: "kill".into(),
                    by: "bob".into(),
                    target: "s-3".into(),
                    outcome: "refused".into(),
                    detail: "needs responder".into(),
                })),
                "-            - control_action kill s-3 by bob: refused (needs responder)",
                true,
            ),
            (
                host_wide(Kind::TokenRefused(TokenRefused {
                    how: "login".into(),
                    reason: "expired".into(),
                    ..TokenRefused::default()
                })),
                "-            - token_refused token refused (login): expired",
                true,
            ),
            (
                ev(Kind::SessionReport(SessionReport {
                    commands_total: 4,
                    files_written_total: 1,
                    files_changed_total: 2,
                    remotes: vec![RemoteTraffic::default()],
                    violations_total: 0,
                    ..SessionReport::default()
                })),
                "s-3       1234 session_report report: 4 commands, 1 files written, 2 other file changes, 1 hosts, \
                 0 violations (warrant report s-3)",
                false,
            ),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (e, want, alarm) in &cases {
            assert_eq!(line_of(e), *want);
            assert_eq!(summary(e).1, *alarm, "{want}");
            seen.insert(warrant_audit::kind_name_of(e.event.as_ref().unwrap()));
        }
        // KIND_NAMES lists every kind (the table a new kind goes into): each needs a case here.
        assert_eq!(seen.len(), warrant_audit::KIND_NAMES.len(), "every kind has a case: {seen:?}");
        let unknown = Event {
            event: None,
            ..ev(Kind::Exit(Exit::default()))
        };
        assert_eq!(
            summary(&unknown),
            (
                "(unknown event kind: the agent is newer than this warrant)".into(),
                false
            )
        );
    }

    #[test]
    fn exec_shows_path_and_quoted_argv() {
        let e = ev(Kind::Exec(Exec {
            path: "/usr/bin/psql".into(),
            argv: vec!["psql".into(), "-c".into(), "select 1".into()],
            cwd: "/".into(),
            truncated: false,
            script: String::new(),
        }));
        assert_eq!(
            line_of(&e),
            "s-3       1234 exec /usr/bin/psql psql -c 'select 1'"
        );
    }

    #[test]
    fn exit_shows_code_or_signal() {
        assert_eq!(
            line_of(&ev(Kind::Exit(Exit { code: 3, signal: 0 }))),
            "s-3       1234 exit code 3"
        );
        assert_eq!(
            line_of(&ev(Kind::Exit(Exit { code: 0, signal: 9 }))),
            "s-3       1234 exit signal SIGKILL (9)"
        );
    }

    #[test]
    fn file_open_shows_access_path_and_denial() {
        let f = |error| {
            ev(Kind::FileOpen(FileOpen {
                path: "/etc/shadow".into(),
                access: "read".into(),
                error,
                ..Default::default()
            }))
        };
        assert_eq!(line_of(&f(0)), "s-3       1234 file_open read /etc/shadow");
        assert_eq!(
            line_of(&f(libc::EACCES)),
            "s-3       1234 file_open read /etc/shadow -> EACCES"
        );
    }

    #[test]
    fn net_shows_the_address_the_call_was_about() {
        let n = Net {
            error: libc::EINPROGRESS,
            ..inet(("10.0.0.1", 5432), ("10.0.0.9", 40000))
        };
        assert_eq!(
            line_of(&ev(Kind::Connect(n.clone()))),
            "s-3       1234 connect 10.0.0.1:5432"
        );
        assert_eq!(
            line_of(&ev(Kind::Bind(n.clone()))),
            "s-3       1234 bind 10.0.0.9:40000"
        );
        let v6 = Net {
            family: "inet6".into(),
            protocol: "udp".into(),
            remote_addr: "::1".into(),
            remote_port: 53,
            error: libc::EPERM,
            ..n
        };
        assert_eq!(
            line_of(&ev(Kind::Connect(v6))),
            "s-3       1234 connect [::1]:53 udp -> EPERM"
        );
        let unix = Net {
            family: "unix".into(),
            protocol: "stream".into(),
            remote_addr: "/tmp/x".into(),
            peer: "/run/docker.sock".into(),
            peer_pid: 77,
            peer_comm: "dockerd".into(),
            ..Net::default()
        };
        assert_eq!(
            line_of(&ev(Kind::Connect(unix))),
            "s-3       1234 connect unix /tmp/x (bound as /run/docker.sock) peer 77 dockerd stream"
        );
    }

    #[test]
    fn kill_and_losses_are_loud() {
        let k = ev(Kind::Kill(Kill {
            reason: "operator".into(),
            by: "uid 0 (pid 77)".into(),
            killed: 53,
            elapsed_us: 41_200,
            survivors: 0,
            note: String::new(),
        }));
        assert_eq!(
            line_of(&k),
            "s-3       1234 kill operator by uid 0 (pid 77): killed 53 in 41.2 ms"
        );
        let lost = host_wide(Kind::EventsLost(EventsLost {
            count: 12,
            total: 40,
            ..Default::default()
        }));
        assert_eq!(
            line_of(&lost),
            "-            - events_lost LOST 12 kernel records (40 since the agent started)"
        );
        let missed = host_wide(Kind::WatchMissed(WatchMissed {
            count: 5,
            ..WatchMissed::default()
        }));
        assert_eq!(
            line_of(&missed),
            "-            - watch_missed MISSED 5 events: this watcher fell behind"
        );
    }

    #[test]
    fn grant_events_show_the_grant() {
        let g = Event {
            session: String::new(),
            pid: 0,
            subject: "alice".into(),
            ..ev(Kind::GrantChange(GrantChange {
                change: "revoked".into(),
                reason: "done".into(),
                expires_at_unix_ns: 0,
                by: "uid 0".into(),
            }))
        };
        assert_eq!(
            line_of(&g),
            "g-1          - grant_change revoked for alice by uid 0: done"
        );
    }

    #[test]
    fn hostile_strings_are_escaped() {
        let e = ev(Kind::Exec(Exec {
            path: "/tmp/\x1b[2Jx".into(),
            truncated: true,
            ..Default::default()
        }));
        assert_eq!(
            line_of(&e),
            "s-3       1234 exec /tmp/\\x1b[2Jx (truncated)"
        );
    }

    #[test]
    fn colors_only_when_asked() {
        let e = ev(Kind::Exit(Exit { code: 0, signal: 0 }));
        assert!(!line(&e, Colors::default()).contains('\x1b'));
        assert!(line(&e, Colors { on: true }).contains("\x1b[2m"));
        let denied = ev(Kind::ExecFailed(ExecFailed {
            path: "/x".into(),
            error: libc::EPERM,
            truncated: false,
        }));
        assert!(
            line(&denied, Colors { on: true }).contains("\x1b[1;31m/x -> EPERM"),
            "alarms are red"
        );
    }

    #[test]
    fn styles_json_lines_hosts_and_reports() {
        let e = Event {
            host: "db-1".into(),
            ..ev(Kind::Exit(Exit { code: 3, signal: 0 }))
        };
        let json: serde_json::Value =
            serde_json::from_str(&written(plain(Style::Json), &e)).unwrap();
        assert_eq!(
            (
                json["kind"].as_str(),
                json["code"].as_i64(),
                json["host"].as_str()
            ),
            (Some("exit"), Some(3), Some("db-1"))
        );
        let clock = output::clock(e.time_unix_ns);
        assert_eq!(
            written(plain(Style::Line { host: false }), &e),
            format!("{clock} s-3       1234 exit code 3\n")
        );
        assert_eq!(
            written(plain(Style::Line { host: true }), &e),
            format!("db-1         {clock} s-3       1234 exit code 3\n")
        );
        let nowhere = Event {
            host: String::new(),
            ..e.clone()
        };
        assert!(written(plain(Style::Line { host: true }), &nowhere).starts_with("-            "));
        // A report style prints a report in full, anything else as a line.
        assert_eq!(
            written(plain(Style::Report), &e),
            format!("{clock} s-3       1234 exit code 3\n")
        );
        let r = ev(Kind::SessionReport(SessionReport::default()));
        assert!(written(plain(Style::Report), &r).starts_with("session   s-3 under grant g-1\n"));
    }

    #[test]
    fn byte_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 + 200 * 1024), "3.2 MiB");
    }

    #[test]
    fn report_text_lists_every_section() {
        let r = SessionReport {
            commands: vec!["psql -c select".into()],
            commands_total: 1,
            remotes: vec![RemoteTraffic {
                addr: "10.0.0.5".into(),
                port: 5432,
                connections: 1,
                bytes_sent: 100,
                bytes_received: 2048,
            }],
            ..Default::default()
        };
        let ev = Event {
            session: "s-1".into(),
            grant: "g-2".into(),
            subject: "alice".into(),
            ..Default::default()
        };
        let t = report_text(&ev, &r);
        assert!(t.contains("session   s-1 under grant g-2"), "{t}");
        assert!(t.contains("  psql -c select"), "{t}");
        assert!(
            t.contains("  10.0.0.5:5432  1 connection, sent 100 B, received 2.0 KiB"),
            "{t}"
        );
        assert!(t.contains("(still live)"), "{t}");
        for section in [
            "commands (1)",
            "files written (0)",
            "other file changes (0)",
            "hosts contacted (1)",
            "violations (0)",
            "kills (0)",
        ] {
            assert!(t.contains(&format!("\n{section}\n")), "{section}: {t}");
        }
    }

    #[test]
    fn report_json_adds_byte_counts_for_people() {
        let r = SessionReport {
            remotes: vec![RemoteTraffic {
                addr: "10.0.0.5".into(),
                port: 5432,
                bytes_sent: 1536,
                ..RemoteTraffic::default()
            }],
            ..Default::default()
        };
        let v = report_json(&ev(Kind::SessionReport(r)));
        assert_eq!(
            (
                v["remotes"][0]["sent"].as_str(),
                v["remotes"][0]["received"].as_str()
            ),
            (Some("1.5 KiB"), Some("0 B"))
        );
    }
}
