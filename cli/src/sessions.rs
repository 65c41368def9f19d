//! `warrant sessions`: what is running under grants right now, process by process.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use clap::Args;
use serde_json::json;
use warrant_audit::json::rfc3339;
use warrant_proto::{Session, SessionState};

use crate::filter::need_collector;
use crate::output::{self, Colors, Table, sanitize};
use crate::remote::CollectorArgs;
use crate::target::Target;

/// How much of a command line the table shows.
const COMMAND_WIDTH: usize = 60;

/// `warrant sessions`
#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// Include sessions that ended or were killed.
    #[arg(long)]
    pub all: bool,
    /// Only sessions on this host (with --collector).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// One JSON object per session per line, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `warrant sessions`
pub async fn run(
    socket: &Path,
    remote: &CollectorArgs,
    args: &SessionsArgs,
    out: &mut impl Write,
) -> Result<u8> {
    if !remote.is_set() {
        let flags: Vec<&str> = args.host.as_ref().map(|_| "--host").into_iter().collect();
        need_collector(&flags, "The local agent knows this host's sessions only.")?;
    }
    let target = Target::connect(socket, remote).await?;
    let sessions = target.sessions_on(args.all, args.host.as_deref()).await?;
    if args.json {
        for h in &sessions {
            let mut v = session_json(&h.session);
            if target.is_collector() {
                v["host"] = json!(h.host);
                v["agent_id"] = json!(h.agent_id);
            }
            writeln!(out, "{v}")?;
        }
    } else if sessions.is_empty() {
        let what = if args.all {
            "no sessions"
        } else {
            "no live sessions (--all shows ended ones)"
        };
        let _ = writeln!(std::io::stderr(), "warrant: {what}");
    } else {
        let hosts: Vec<&str> = sessions.iter().map(|h| h.host.as_str()).collect();
        let list: Vec<Session> = sessions.iter().map(|h| h.session.clone()).collect();
        let hosts = target.is_collector().then_some(hosts.as_slice());
        session_table(&list, hosts, output::now_unix_ns()).write(out, Colors::stdout())?;
    }
    out.flush()?;
    Ok(0)
}

/// A session state's short name: `live`, `ended`, `killed`.
pub fn state_name(state: SessionState) -> &'static str {
    match state {
        SessionState::Live => "live",
        SessionState::Ended => "ended",
        SessionState::Killed => "killed",
        SessionState::Unspecified => "unknown",
    }
}

/// The table; with `hosts` (one per session), a HOST column first.
fn session_table(sessions: &[Session], hosts: Option<&[&str]>, now: i64) -> Table {
    const COLUMNS: [&str; 7] = ["SESSION", "GRANT", "SUBJECT", "ROOT PID", "PROCS", "LEFT/STATE", "COMMAND"];
    let mut t = if hosts.is_some() {
        Table::new(&[&["HOST"][..], &COLUMNS].concat())
    } else {
        Table::new(&COLUMNS)
    };
    for (i, s) in sessions.iter().enumerate() {
        let live = s.state() == SessionState::Live;
        let state = if live {
            output::left(s.expires_at_unix_ns, now)
        } else if s.state() == SessionState::Unspecified {
            // A collector may know a session from its log only.
            "-".to_owned()
        } else if s.end_reason.is_empty() {
            state_name(s.state()).to_owned()
        } else {
            sanitize(&s.end_reason).into_owned()
        };
        let mut row = Vec::with_capacity(8);
        if let Some(hosts) = hosts {
            row.push(sanitize(hosts.get(i).copied().unwrap_or("?")).into_owned());
        }
        row.extend([
            sanitize(&s.id).into_owned(),
            sanitize(&s.grant).into_owned(),
            sanitize(&s.subject).into_owned(),
            s.root_pid.to_string(),
            s.processes.len().to_string(),
            state,
            output::truncate(&output::command_line(&s.command), COMMAND_WIDTH).into_owned(),
        ]);
        t.row(row);
        if live {
            for p in &s.processes {
                let left = if p.in_cgroup { "" } else { "  (left cgroup)" };
                t.under(format!(
                    "    {:>7}  ppid {:<7}  {}{left}",
                    p.pid,
                    p.ppid,
                    sanitize(&p.comm)
                ));
            }
        }
    }
    t
}

fn session_json(s: &Session) -> serde_json::Value {
    let processes: Vec<_> = s
        .processes
        .iter()
        .map(|p| json!({ "pid": p.pid, "ppid": p.ppid, "comm": p.comm, "in_cgroup": p.in_cgroup }))
        .collect();
    json!({
        "id": s.id,
        "grant": s.grant,
        "subject": s.subject,
        "state": state_name(s.state()),
        "root_pid": s.root_pid,
        "started_at": rfc3339(s.started_at_unix_ns),
        "expires_at": rfc3339(s.expires_at_unix_ns),
        "cgroup": s.cgroup,
        "command": s.command,
        "end_reason": s.end_reason,
        "processes": processes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use warrant_proto::Process;

    #[test]
    fn live_sessions_show_their_processes() {
        let now = 1_700_000_000_000_000_000;
        let live = Session {
            id: "s-1".into(),
            grant: "g-1".into(),
            subject: "alice".into(),
            root_pid: 100,
            expires_at_unix_ns: now + 119_000_000_000,
            state: SessionState::Live.into(),
            command: vec!["bash".into(), "-c".into(), "sleep 100".into()],
            processes: vec![
                Process {
                    pid: 100,
                    ppid: 1,
                    comm: "bash".into(),
                    in_cgroup: true,
                },
                Process {
                    pid: 101,
                    ppid: 100,
                    comm: "sleep".into(),
                    in_cgroup: false,
                },
            ],
            ..Default::default()
        };
        let ended = Session {
            id: "s-2".into(),
            grant: "g-1".into(),
            subject: "alice".into(),
            root_pid: 200,
            state: SessionState::Killed.into(),
            end_reason: "killed: expiry".into(),
            command: vec!["psql".into()],
            processes: vec![Process {
                pid: 200,
                ppid: 1,
                comm: "psql".into(),
                in_cgroup: true,
            }],
            ..Default::default()
        };
        let mut out = Vec::new();
        session_table(&[live, ended], None, now)
            .write(&mut out, Colors::default())
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "SESSION  GRANT  SUBJECT  ROOT PID  PROCS  LEFT/STATE      COMMAND\n\
             s-1      g-1    alice    100       2      1m59s left      bash -c 'sleep 100'\n\
             \x20       100  ppid 1        bash\n\
             \x20       101  ppid 100      sleep  (left cgroup)\n\
             s-2      g-1    alice    200       1      killed: expiry  psql\n"
        );
    }

    #[test]
    fn json_is_one_object_with_processes() {
        let s = Session {
            id: "s-1".into(),
            state: SessionState::Live.into(),
            processes: vec![Process {
                pid: 1,
                ppid: 0,
                comm: "x".into(),
                in_cgroup: true,
            }],
            ..Default::default()
        };
        let v = session_json(&s);
        assert_eq!(v["state"], "live");
        assert_eq!(v["processes"][0]["in_cgroup"], true);
    }
}
