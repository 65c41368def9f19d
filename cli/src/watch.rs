//! `warrant watch`: the live event stream, one line per event.
//!
//! Human lines are `HH:MM:SS.mmm SESSION PID KIND SUMMARY`, colored on a terminal;
//! `--json` prints the documented JSON object per line (`warrant_proto::json`),
//! flushed after each, for `jq` and friends. Loss is never silent: `events_lost`
//! (the kernel ring buffer overflowed) and `watch_missed` (this watcher fell behind)
//! come through whatever the filter, in capitals.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use warrant_proto::event::Event as Kind;
use warrant_proto::json::{KIND_NAMES, expand_kind, kind_name, kinds_help, to_json};
use tonic::Streaming;
use warrant_proto::{CollectorWatchRequest, Event, EventFilter, Net, WatchRequest};

use crate::client::Agent;
use crate::remote::{Collector, CollectorArgs};
use crate::output::{self, Colors, Paint, command_line, errno_name, sanitize, signal_name};

/// `warrant watch`
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only this session's events (s-…).
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Only events of this grant's sessions (g-…).
    #[arg(long, value_name = "ID")]
    pub grant: Option<String>,
    /// Only these kinds, comma-separated (the list is `kinds_help`'s).
    #[arg(long, value_name = "KINDS", value_delimiter = ',', help = format!("Only these kinds, comma-separated: {}", kinds_help()))]
    pub kind: Vec<String>,
    /// Only events of this host (with --collector).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Only events of this grant subject (with --collector).
    #[arg(long, value_name = "NAME")]
    pub subject: Option<String>,
    /// Replay from the collector's log from this long ago (10m, 2h) or this time
    /// (RFC 3339), then continue live with no gap (with --collector).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// One JSON object per event per line, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Checks `--kind` names here, so a typo fails before connecting.
pub fn check_kinds(kinds: &[String]) -> Result<()> {
    for k in kinds.iter().map(|k| k.trim()).filter(|k| !k.is_empty()) {
        if !KIND_NAMES.contains(&k) && expand_kind(k).is_empty() {
            bail!(
                "invalid --kind {}: no such event kind\n\nValid kinds: {}.",
                sanitize(k),
                kinds_help()
            );
        }
    }
    Ok(())
}

/// `warrant watch`: prints events until the agent (or collector) ends the stream
/// or ctrl-c.
pub async fn run(socket: &Path, remote: &CollectorArgs, args: &WatchArgs, out: &mut impl Write) -> Result<u8> {
    check_kinds(&args.kind)?;
    let kinds: Vec<String> = args.kind.iter().map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).collect();
    if remote.is_set() {
        let since_unix_ns = match &args.since {
            Some(s) => crate::query::parse_time(s, "--since")?,
            None => 0,
        };
        let mut collector = Collector::connect(remote).await?;
        let filter = EventFilter {
            host: args.host.clone().unwrap_or_default(),
            agent_id: String::new(),
            grant: args.grant.clone().unwrap_or_default(),
            session: args.session.clone().unwrap_or_default(),
            subject: args.subject.clone().unwrap_or_default(),
            kinds,
        };
        let stream = collector.watch(CollectorWatchRequest { filter: Some(filter), since_unix_ns }).await?;
        return print_stream(stream, args.json, true, out, |s| collector.stream_error(s)).await;
    }
    if args.host.is_some() || args.subject.is_some() || args.since.is_some() {
        bail!(
            "--host, --subject and --since need --collector\n\nThe local agent streams this host's live \
             events only; the collector keeps every host's history."
        );
    }
    let mut agent = Agent::connect(socket).await?;
    let stream = agent
        .watch(WatchRequest {
            session: args.session.clone().unwrap_or_default(),
            grant: args.grant.clone().unwrap_or_default(),
            kinds,
        })
        .await?;
    print_stream(stream, args.json, false, out, |s| agent.stream_error(s)).await
}

/// Prints a stream of events, one line each, until it ends or ctrl-c.
async fn print_stream(
    mut stream: Streaming<Event>,
    json: bool,
    with_host: bool,
    out: &mut impl Write,
    error: impl Fn(&tonic::Status) -> anyhow::Error,
) -> Result<u8> {
    // Tests and scripts wait for exactly this line: the agent has subscribed.
    let _ = writeln!(std::io::stderr(), "warrant: watching (ctrl-c to stop)");
    let colors = Colors::stdout();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let msg = tokio::select! {
            msg = stream.message() => msg,
            _ = &mut ctrl_c => return Ok(0),
        };
        match msg {
            Ok(Some(ev)) => {
                print_event(&ev, json, with_host, colors, out)?;
                out.flush()?;
            }
            Ok(None) => return Ok(0),
            Err(status) => return Err(error(&status)),
        }
    }
}

/// One event as a JSON line, or a human line (with its host first when events
/// come from many hosts).
pub fn print_event(ev: &Event, json: bool, with_host: bool, colors: Colors, out: &mut impl Write) -> Result<()> {
    if json {
        let line = serde_json::to_string(&to_json(ev)).context("cannot encode an event as JSON")?;
        writeln!(out, "{line}")?;
    } else if with_host {
        let host = if ev.host.is_empty() { "-" } else { &ev.host };
        writeln!(out, "{:<12} {}", sanitize(host), event_line(ev, colors))?;
    } else {
        writeln!(out, "{}", event_line(ev, colors))?;
    }
    Ok(())
}

/// One human line for an event.
pub fn event_line(ev: &Event, colors: Colors) -> String {
    let who = if !ev.session.is_empty() {
        &ev.session
    } else if !ev.grant.is_empty() {
        &ev.grant
    } else {
        "-"
    };
    let pid = if ev.pid == 0 { "-".to_owned() } else { ev.pid.to_string() };
    let kind = kind_name(ev);
    let (summary, alarm) = summary(ev);
    let paint = if alarm { Paint::Red } else { kind_paint(kind) };
    format!(
        "{} {:<6} {:>7} {} {}",
        colors.paint(Paint::Dim, &output::clock(ev.time_unix_ns)),
        sanitize(who),
        pid,
        colors.paint(paint, kind),
        if alarm { colors.paint(Paint::Red, &summary) } else { summary.into() }
    )
}

fn kind_paint(kind: &str) -> Paint {
    match kind {
        "exec" => Paint::Green,
        "exit" => Paint::Dim,
        "file_open" | "file_change" => Paint::Cyan,
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
        return ("(unknown event kind: the agent is newer than this warrant)".into(), false);
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
        Kind::Exit(e) if e.signal != 0 => (format!("signal {} ({})", signal_name(e.signal), e.signal), false),
        Kind::Exit(e) => (format!("code {}", e.code), false),
        Kind::FileOpen(f) => {
            let access = if f.access.is_empty() { "open" } else { &f.access };
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
        Kind::Connect(n) | Kind::Accept(n) | Kind::Datagram(n) => net(n, &n.remote_addr, n.remote_port),
        Kind::Bind(n) | Kind::Listen(n) => net(n, &n.local_addr, n.local_port),
        Kind::SocketsDropped(d) => (format!("dropped {} sockets: {}", d.count, sanitize(&d.reason)), true),
        Kind::TokenRefused(t) => (format!("token refused ({}): {}", sanitize(&t.how), sanitize(&t.reason)), true),
        Kind::Violation(v) => {
            let target = if !v.path.is_empty() {
                sanitize(&v.path).into_owned()
            } else if !v.family.is_empty() {
                format!("{} {}:{}", sanitize(&v.family), sanitize(&v.addr), v.port)
            } else {
                String::new()
            };
            let mut s = format!("{} {target} -> {} ({}", sanitize(&v.op), sanitize(&v.action), sanitize(&v.rule));
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
            let by: Vec<String> = by.iter().map(|(k, n)| format!("{} {}", sanitize(k), n)).collect();
            (format!("LOST {} of this session's kernel records ({}; {} in all)", l.count, by.join(", "), l.total), true)
        }
        Kind::EventsLost(l) => {
            (format!("LOST {} kernel records ({} since the agent started)", l.count, l.total), true)
        }
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
        Kind::SessionEnd(s) => (sanitize(&s.reason).into_owned(), s.reason.starts_with("killed")),
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
        Kind::WatchMissed(w) if !w.reason.is_empty() => (format!("SKIPPED {} record(s): {}", w.count, sanitize(&w.reason)), true),
        Kind::WatchMissed(w) => (format!("MISSED {} events: this watcher fell behind", w.count), true),
        Kind::ControlAction(c) => {
            let mut s = format!("{} {} by {}", sanitize(&c.action), sanitize(&c.target), sanitize(&c.by));
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

#[cfg(test)]
mod tests {
    use super::*;
    use warrant_proto::{EventsLost, Exec, Exit, FileOpen, GrantChange, Kill, WatchMissed};

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

    /// The line without its clock (local time zone dependent).
    fn line(e: &Event) -> String {
        let l = event_line(e, Colors::default());
        assert_eq!(&l[12..13], " ", "{l}");
        l[13..].to_owned()
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
        assert_eq!(line(&e), "s-3       1234 exec /usr/bin/psql psql -c 'select 1'");
    }

    #[test]
    fn exit_shows_code_or_signal() {
        assert_eq!(line(&ev(Kind::Exit(Exit { code: 3, signal: 0 }))), "s-3       1234 exit code 3");
        assert_eq!(line(&ev(Kind::Exit(Exit { code: 0, signal: 9 }))), "s-3       1234 exit signal SIGKILL (9)");
    }

    #[test]
    fn file_open_shows_access_path_and_denial() {
        let f = |error| {
            ev(Kind::FileOpen(FileOpen { path: "/etc/shadow".into(), access: "read".into(), error, ..Default::default() }))
        };
        assert_eq!(line(&f(0)), "s-3       1234 file_open read /etc/shadow");
        assert_eq!(line(&f(libc::EACCES)), "s-3       1234 file_open read /etc/shadow -> EACCES");
    }

    #[test]
    fn net_shows_the_address_the_call_was_about() {
        let n = Net {
            family: "inet".into(),
            protocol: "tcp".into(),
            local_addr: "10.0.0.9".into(),
            local_port: 40000,
            remote_addr: "10.0.0.1".into(),
            remote_port: 5432,
            error: libc::EINPROGRESS,
            ..Net::default()
        };
        assert_eq!(line(&ev(Kind::Connect(n.clone()))), "s-3       1234 connect 10.0.0.1:5432");
        assert_eq!(line(&ev(Kind::Bind(n.clone()))), "s-3       1234 bind 10.0.0.9:40000");
        let v6 = Net { family: "inet6".into(), protocol: "udp".into(), remote_addr: "::1".into(), remote_port: 53, error: libc::EPERM, ..n };
        assert_eq!(line(&ev(Kind::Connect(v6))), "s-3       1234 connect [::1]:53 udp -> EPERM");
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
            line(&ev(Kind::Connect(unix))),
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
        assert_eq!(line(&k), "s-3       1234 kill operator by uid 0 (pid 77): killed 53 in 41.2 ms");
        let lost = Event { session: String::new(), grant: String::new(), pid: 0, ..ev(Kind::EventsLost(EventsLost { count: 12, total: 40, ..Default::default() })) };
        assert_eq!(line(&lost), "-            - events_lost LOST 12 kernel records (40 since the agent started)");
        let missed = Event { session: String::new(), grant: String::new(), pid: 0, ..ev(Kind::WatchMissed(WatchMissed { count: 5, ..WatchMissed::default() })) };
        assert_eq!(line(&missed), "-            - watch_missed MISSED 5 events: this watcher fell behind");
    }

    #[test]
    fn grant_events_show_the_grant() {
        let g = Event {
            session: String::new(),
            pid: 0,
            subject: "alice".into(),
            ..ev(Kind::GrantChange(GrantChange { change: "revoked".into(), reason: "done".into(), expires_at_unix_ns: 0, by: "uid 0".into() }))
        };
        assert_eq!(line(&g), "g-1          - grant_change revoked for alice by uid 0: done");
    }

    #[test]
    fn hostile_strings_are_escaped() {
        let e = ev(Kind::Exec(Exec { path: "/tmp/\x1b[2Jx".into(), argv: vec![], cwd: String::new(), truncated: true , ..Default::default() }));
        assert_eq!(line(&e), "s-3       1234 exec /tmp/\\x1b[2Jx (truncated)");
    }

    #[test]
    fn colors_only_when_asked() {
        let e = ev(Kind::Exit(Exit { code: 0, signal: 0 }));
        assert!(!event_line(&e, Colors::default()).contains('\x1b'));
        assert!(event_line(&e, Colors { on: true }).contains("\x1b[2m"));
    }

    #[test]
    fn kinds_are_checked_locally() {
        assert!(check_kinds(&["exec".into(), "net".into(), "file".into(), "process".into()]).is_ok());
        let e = check_kinds(&["exce".into()]).unwrap_err().to_string();
        assert!(e.starts_with("invalid --kind exce: no such event kind\n\nValid kinds: exec, exit,"), "{e}");
    }
}
