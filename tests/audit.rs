//! Reading the agent's audit log, `<state-dir>/audit.log`: one JSON record per line,
//! `{"n":…,"prev":"…","hash":"…","event":{…}}`, where `event` has the schema of
//! `audit/src/json.rs`. The agent appends in batches (within ~100 ms), so tests wait
//! for what they expect with [`AuditLog::wait_for_event`] instead of sleeping.
//!
//! The reader is incremental: each refresh reads only the bytes appended since the
//! last one and keeps a partial last line for the next.

use serde_json::Value;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An incremental reader of one audit log.
pub struct AuditLog {
    /// `<state-dir>/audit.log`; may not exist until the agent's first write.
    path: PathBuf,
    /// Bytes consumed so far (complete lines only).
    offset: u64,
    /// Every record read so far, in file order.
    records: Vec<Value>,
}

impl AuditLog {
    /// A reader of the log at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            offset: 0,
            records: Vec::new(),
        }
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads whatever complete lines were appended since the last call.
    ///
    /// Panics on a line that is not a JSON object with an `event` object: the log
    /// is a contract, and a malformed line is a bug worth a failing test.
    pub fn refresh(&mut self) {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return;
        }
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        for line in buf[..end].split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let rec: Value = serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!(
                    "{}: line {} is not JSON ({e}): {}",
                    self.path.display(),
                    self.records.len() + 1,
                    String::from_utf8_lossy(line)
                )
            });
            assert!(
                rec.get("event").is_some_and(Value::is_object),
                "{}: record without an event object: {rec}",
                self.path.display()
            );
            self.records.push(rec);
        }
        self.offset += end as u64 + 1;
    }

    /// Every record read so far (`n`, `prev`, `hash`, `event`), after a refresh.
    pub fn records(&mut self) -> &[Value] {
        self.refresh();
        &self.records
    }

    /// Every event read so far (the records' `event` objects), after a refresh.
    pub fn events(&mut self) -> Vec<Value> {
        self.records().iter().map(|r| r["event"].clone()).collect()
    }

    /// Events of one session, after a refresh.
    pub fn session_events(&mut self, session: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["session"] == session)
            .collect()
    }

    /// Polls the log until `f` returns `Some` for the events read so far, or `timeout`
    /// passes (then `None`).
    pub fn wait_until<T>(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&[Value]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            self.refresh();
            let events: Vec<Value> = self.records.iter().map(|r| r["event"].clone()).collect();
            if let Some(v) = f(&events) {
                return Some(v);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the first event satisfying `pred`; `None` after `timeout`.
    pub fn find_event(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        self.wait_until(timeout, |evs| evs.iter().find(|e| pred(e)).cloned())
    }

    /// Waits for the first event satisfying `pred` and returns it; panics after
    /// `timeout`, showing the last events the log did hold.
    pub fn wait_for_event(&mut self, pred: impl FnMut(&Value) -> bool, timeout: Duration) -> Value {
        match self.find_event(timeout, pred) {
            Some(v) => v,
            None => {
                let summary = self.summary(40);
                panic!(
                    "no matching event in {} within {timeout:?}\n{summary}",
                    self.path.display()
                )
            }
        }
    }

    /// The last `n` events, one compact line each, for failure messages.
    pub fn summary(&mut self, n: usize) -> String {
        let evs = self.events();
        let skip = evs.len().saturating_sub(n);
        let mut s = format!("audit log holds {} events; the last {}:\n", evs.len(), evs.len() - skip);
        for e in &evs[skip..] {
            let mut line = e.to_string();
            if line.len() > 400 {
                line.truncate(400);
                line.push('…');
            }
            s.push_str("  ");
            s.push_str(&line);
            s.push('\n');
        }
        s
    }
}

/// Predicate: the event has this `kind` and `session`.
pub fn is(kind: &str, session: &str) -> impl Fn(&Value) -> bool {
    let (kind, session) = (kind.to_string(), session.to_string());
    move |e| e["kind"] == kind.as_str() && e["session"] == session.as_str()
}

/// An event's string field, or "" when absent.
pub fn str_field<'a>(e: &'a Value, name: &str) -> &'a str {
    e[name].as_str().unwrap_or("")
}

/// An event's unsigned field, or `u64::MAX` when absent (so it never equals a real value).
pub fn u64_field(e: &Value, name: &str) -> u64 {
    e[name].as_u64().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The reader sees appended lines, waits for a partial last line to be completed,
    /// and finds events by kind and session.
    #[test]
    fn reads_appended_lines_incrementally_and_keeps_partial_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let mut log = AuditLog::new(&path);
        assert!(log.events().is_empty(), "a missing log reads as empty");
        let mut f = std::fs::File::create(&path).expect("create");
        writeln!(f, r#"{{"n":1,"prev":"","hash":"a","event":{{"kind":"exec","session":"s-1"}}}}"#).expect("write");
        write!(f, r#"{{"n":2,"prev":"a","hash":"b","event":{{"kind":"ex"#).expect("write");
        f.flush().expect("flush");
        assert_eq!(log.events().len(), 1, "a partial line is not read yet");
        writeln!(f, r#"it","session":"s-1","code":0}}}}"#).expect("write");
        f.flush().expect("flush");
        let evs = log.session_events("s-1");
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[1]["kind"], "exit");
        let e = log.wait_for_event(is("exit", "s-1"), Duration::from_millis(10));
        assert_eq!(e["code"], 0);
    }
}
