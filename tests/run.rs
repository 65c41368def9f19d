//! Running child commands without ever hanging a test: [`output_within`] is
//! `Command::output` with a deadline, and [`Lines`] collects a pipe line by line on a
//! thread so a test can wait for a particular line while the child keeps running.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Spawns `cmd` with stdin closed and its stdout and stderr collected line by line.
pub fn spawn_collected(cmd: &mut Command) -> (Child, Lines, Lines) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let out = Lines::new(child.stdout.take().expect("piped stdout"));
    let err = Lines::new(child.stderr.take().expect("piped stderr"));
    (child, out, err)
}

/// Runs `cmd` to completion with stdin closed and stdout/stderr captured; kills it
/// and panics if it takes longer than `timeout`.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let (mut child, out, err) = spawn_collected(cmd);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{shown} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                out.text(),
                err.text()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.finish().into_bytes(),
        stderr: err.finish().into_bytes(),
    }
}

#[derive(Default)]
struct LinesState {
    lines: Vec<String>,
    eof: bool,
}

/// Lines read from a pipe by a background thread.
pub struct Lines {
    /// The lines so far and whether the pipe is closed, with a condvar signalled on
    /// every change so waiters wake without polling.
    state: Arc<(Mutex<LinesState>, Condvar)>,
    /// The reader thread; joined by [`Lines::finish`].
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lines {
    /// Starts reading `pipe` until EOF.
    pub fn new(pipe: impl Read + Send + 'static) -> Self {
        let state = Arc::new((Mutex::new(LinesState::default()), Condvar::new()));
        let s = Arc::clone(&state);
        let thread = std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = r.read_until(b'\n', &mut buf).unwrap_or(0);
                let (lock, cv) = &*s;
                let mut st = lock.lock().expect("lines lock");
                if n == 0 {
                    st.eof = true;
                    cv.notify_all();
                    return;
                }
                let line = String::from_utf8_lossy(&buf);
                st.lines.push(line.trim_end_matches('\n').to_string());
                cv.notify_all();
            }
        });
        Self {
            state,
            thread: Some(thread),
        }
    }

    /// A copy of every line read so far.
    pub fn lines(&self) -> Vec<String> {
        self.state.0.lock().expect("lines lock").lines.clone()
    }

    /// Everything read so far, newline-joined.
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// Waits for the first line from index `from` on that satisfies `pred`; returns its
    /// index and text, or `None` at EOF or timeout.
    pub fn wait_line_from(
        &self,
        from: usize,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Option<(usize, String)> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.state;
        let mut st = lock.lock().expect("lines lock");
        let mut next = from;
        loop {
            while next < st.lines.len() {
                if pred(&st.lines[next]) {
                    return Some((next, st.lines[next].clone()));
                }
                next += 1;
            }
            let now = Instant::now();
            if st.eof || now >= deadline {
                return None;
            }
            st = cv.wait_timeout(st, deadline - now).expect("lines lock").0;
        }
    }

    /// Waits for a line satisfying `pred` (searching from the first line).
    pub fn wait_line(&self, timeout: Duration, pred: impl FnMut(&str) -> bool) -> Option<String> {
        self.wait_line_from(0, timeout, pred).map(|(_, l)| l)
    }

    /// Waits for EOF (at most 5 s: a daemonized grandchild may hold the pipe open
    /// forever), then returns everything read.
    pub fn finish(mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let (lock, cv) = &*self.state;
        let mut st = lock.lock().expect("lines lock");
        while !st.eof && Instant::now() < deadline {
            st = cv
                .wait_timeout(st, deadline.saturating_duration_since(Instant::now()))
                .expect("lines lock")
                .0;
        }
        let eof = st.eof;
        drop(st);
        if eof && let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.text()
    }
}
