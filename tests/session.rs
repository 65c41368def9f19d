//! Long-running CLI processes a test talks to while they run:
//! - [`Session`]: a spawned `warrant exec --grant G -- CMD…`. The agent starts CMD
//!   (its child, tagged and confined) and the CLI relays its stdio and exit status.
//!   The CLI's first stderr line, `warrant: session s-… under grant g-… (… left), pid
//!   N, …`, names the session and its first process.
//! - [`Watch`]: a spawned `warrant watch …`, ready once it prints
//!   `warrant: watching (ctrl-c to stop)` on stderr; then one JSON object per line.

use serde_json::Value;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use crate::procfs;
use crate::run::{Lines, spawn_collected};

/// How long `warrant exec` may take to print its session line.
const SESSION_START_TIMEOUT: Duration = Duration::from_secs(15);

/// A process tree started under a grant by `warrant exec`.
pub struct Session {
    /// The `warrant exec` client, which relays the session's stdio and exits with
    /// its first process's status.
    child: Child,
    /// The session's first process (from the session line).
    root: u32,
    /// Session id (`s-…`) from the CLI's first stderr line.
    id: String,
    /// Grant id from the same line.
    grant: String,
    /// The command's stdout, line by line.
    stdout: Lines,
    /// The CLI's and then the command's stderr, line by line.
    stderr: Lines,
    /// Exit status once reaped.
    status: Option<ExitStatus>,
}

impl Session {
    /// Spawns `cmd` (a `warrant exec` command line) with piped output and waits for its
    /// session line. Panics if the CLI exits or stays silent instead.
    pub fn spawn(mut cmd: Command) -> Self {
        let shown = format!("{cmd:?}");
        let (child, stdout, stderr) = spawn_collected(&mut cmd);
        Self::started(shown, child, stdout, stderr)
    }

    /// As [`Session::spawn`], but with the stdin and stdout `cmd` already has (a
    /// terminal, say); only stderr is collected, and [`Session::stdout`] stays empty.
    pub fn spawn_keeping_stdio(mut cmd: Command) -> Self {
        let shown = format!("{cmd:?}");
        let mut child = cmd
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {shown}: {e}"));
        let stderr = Lines::new(child.stderr.take().expect("piped stderr"));
        Self::started(shown, child, Lines::new(std::io::empty()), stderr)
    }

    fn started(shown: String, mut child: Child, stdout: Lines, stderr: Lines) -> Self {
        let line = stderr.wait_line(SESSION_START_TIMEOUT, |l| l.starts_with("warrant: session "));
        let Some(line) = line else {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "{shown} printed no session line within {SESSION_START_TIMEOUT:?} ({status:?})\nstderr:\n{}",
                stderr.text()
            );
        };
        let (id, grant) = parse_session_line(&line)
            .unwrap_or_else(|| panic!("cannot parse the session line {line:?}"));
        let root =
            root_pid(&line).unwrap_or_else(|| panic!("no root pid in the session line {line:?}"));
        Self {
            child,
            root,
            id,
            grant,
            stdout,
            stderr,
            status: None,
        }
    }

    /// The session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The grant id the CLI reported.
    pub fn grant(&self) -> &str {
        &self.grant
    }

    /// The session root pid: the first process, which the agent created (the
    /// spawned CLI only relays).
    pub fn pid(&self) -> u32 {
        self.root
    }

    /// The pid of the `warrant exec` client relaying the session.
    pub fn client_pid(&self) -> u32 {
        self.child.id()
    }

    /// The command's stdout so far.
    pub fn stdout(&self) -> &Lines {
        &self.stdout
    }

    /// The CLI's and command's stderr so far.
    pub fn stderr(&self) -> &Lines {
        &self.stderr
    }

    /// Waits for a stdout line starting with `prefix`; returns the rest of it.
    pub fn wait_stdout(&self, prefix: &str, timeout: Duration) -> String {
        self.stdout
            .wait_line(timeout, |l| l.starts_with(prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
            .unwrap_or_else(|| {
                panic!(
                    "session {}: no stdout line starting {prefix:?} within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                    self.id,
                    self.stdout.text(),
                    self.stderr.text()
                )
            })
    }

    /// Waits (at most `timeout`) for the root process to exit.
    pub fn try_wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            let child = &mut self.child;
            self.status = crate::poll(timeout, || child.try_wait().ok().flatten());
        }
        self.status
    }

    /// Waits for the root process to exit; panics after `timeout`.
    pub fn wait_for(&mut self, timeout: Duration) -> ExitStatus {
        self.try_wait_for(timeout).unwrap_or_else(|| {
            panic!(
                "session {} root pid {} still running after {timeout:?}\nstderr:\n{}",
                self.id,
                self.child.id(),
                self.stderr.text()
            )
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `…, pid 4242, …` in a session line → 4242.
pub fn root_pid(line: &str) -> Option<u32> {
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == "pid")
        .and_then(|w| w[1].trim_end_matches(',').parse().ok())
}

/// `warrant: session s-1 under grant g-2 (1m59s left)` → (`s-1`, `g-2`).
pub fn parse_session_line(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("warrant: session ")?;
    let mut words = rest.split_whitespace();
    let id = words.next()?.trim_end_matches(',');
    if words.next()? != "under" || words.next()? != "grant" {
        return None;
    }
    let grant = words.next()?.trim_end_matches(',');
    (id.starts_with("s-") && grant.starts_with("g-")).then(|| (id.to_string(), grant.to_string()))
}

/// A running `warrant watch`.
pub struct Watch {
    /// The CLI process.
    child: Child,
    /// Its stdout: one JSON event per line.
    stdout: Lines,
    /// Its stderr: the "watching" line, then errors if any.
    stderr: Lines,
    /// Index of the next stdout line [`Watch::next_event`] looks at.
    next: usize,
}

impl Watch {
    /// Spawns `cmd` (a `warrant watch` command line) and waits for it to say it is
    /// subscribed.
    pub fn spawn(mut cmd: Command) -> Self {
        let shown = format!("{cmd:?}");
        let (child, stdout, stderr) = spawn_collected(&mut cmd);
        Self::started(shown, child, stdout, stderr)
    }

    /// As [`Session::spawn`], but with the stdin and stdout `cmd` already has (a
    /// terminal, say); only stderr is collected, and [`Session::stdout`] stays empty.
    pub fn spawn_keeping_stdio(mut cmd: Command) -> Self {
        let shown = format!("{cmd:?}");
        let mut child = cmd
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {shown}: {e}"));
        let stderr = Lines::new(child.stderr.take().expect("piped stderr"));
        Self::started(shown, child, Lines::new(std::io::empty()), stderr)
    }

    fn started(shown: String, mut child: Child, stdout: Lines, stderr: Lines) -> Self {
        if stderr
            .wait_line(Duration::from_secs(15), |l| l.starts_with("warrant: watching"))
            .is_none()
        {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "{shown} did not print `warrant: watching` ({status:?})\nstderr:\n{}",
                stderr.text()
            );
        }
        Self {
            child,
            stdout,
            stderr,
            next: 0,
        }
    }

    /// The next event (after those already returned) satisfying `pred`; every line on
    /// the way must be a JSON object. `None` after `timeout` or at EOF.
    pub fn next_event(&mut self, timeout: Duration, mut pred: impl FnMut(&Value) -> bool) -> Option<Value> {
        let found = self.stdout.wait_line_from(self.next, timeout, |l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("`warrant watch --json` printed a non-JSON line ({e}): {l}"));
            assert!(v.is_object(), "`warrant watch --json` printed a non-object: {l}");
            pred(&v)
        });
        found.map(|(i, l)| {
            self.next = i + 1;
            serde_json::from_str(&l).expect("checked above")
        })
    }

    /// Every event printed so far.
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Stops the watch (SIGINT, as ctrl-c would) and returns its exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        procfs::signal(self.child.id(), libc::SIGINT);
        let child = &mut self.child;
        crate::poll(Duration::from_secs(5), || child.try_wait().ok().flatten())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI's session line yields the session and grant ids; other lines do not.
    #[test]
    fn session_line_parses() {
        assert_eq!(
            parse_session_line("warrant: session s-7 under grant g-3 (1m59s left)"),
            Some(("s-7".into(), "g-3".into()))
        );
        assert_eq!(parse_session_line("warrant: watching (ctrl-c to stop)"), None);
    }
}
