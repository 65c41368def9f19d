//! Agents streaming to a [`TestCollector`]: starting an agent with an uplink,
//! reading what reached the collector's log, and running the CLI as a person with
//! a certificate.
//!
//! Delivery is checked by its key: every event carries `(agent_id, boot_id, seq)`,
//! the agent's local log is the reference, and the collector's log must hold each
//! of that agent's keys exactly once ([`delivery`]).

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::agent::{AgentOptions, CLI_TIMEOUT, TestAgent, Uplink};
use crate::audit::{AuditLog, str_field, u64_field};
use crate::collector::TestCollector;
use crate::run::output_within;
use crate::{bins, poll};

/// The uplink settings for an agent named `name` (a certificate is issued; names
/// `agent-*` have the agent role).
pub fn uplink(c: &TestCollector, name: &str) -> Uplink {
    let id = c.pki().issue(name);
    Uplink { url: c.url(), ca: id.ca, cert: id.cert, key: id.key }
}

/// Starts an agent streaming to `c` as `name`, with `opts` otherwise.
pub fn start_agent(c: &TestCollector, name: &str, opts: AgentOptions) -> TestAgent {
    TestAgent::start(AgentOptions { collector: Some(uplink(c, name)), ..opts })
}

/// The agent's id, from `warrant status --json`.
pub fn agent_id(agent: &TestAgent) -> String {
    str_field(&agent.status(), "agent_id").to_owned()
}

/// Every event in the collector's log so far (all segments, oldest first).
pub fn collector_events(c: &TestCollector) -> Vec<Value> {
    c.segments().into_iter().flat_map(|seg| AuditLog::new(seg).events()).collect()
}

/// An incremental reader of the collector's log: each [`CollectorLog::read_new`]
/// parses only what was appended since the last one (and segments opened since),
/// so a test that polls a log of 100k+ events does not parse it all again each time.
pub struct CollectorLog<'a> {
    collector: &'a TestCollector,
    /// A reader per segment, oldest first, with how many of its records were handed out.
    segments: Vec<(AuditLog, usize)>,
}

impl<'a> CollectorLog<'a> {
    /// A reader of `c`'s log from its first record.
    pub fn new(collector: &'a TestCollector) -> Self {
        Self { collector, segments: Vec::new() }
    }

    /// Calls `f` on every event appended since the last call, in log order.
    pub fn read_new(&mut self, mut f: impl FnMut(&Value)) {
        for path in self.collector.segments() {
            if !self.segments.iter().any(|(log, _)| log.path() == path) {
                self.segments.push((AuditLog::new(path), 0));
            }
        }
        for (log, seen) in &mut self.segments {
            let records = log.records();
            for r in &records[*seen..] {
                f(&r["event"]);
            }
            *seen = records.len();
        }
    }
}

/// How often each `(boot_id, seq)` of `agent_id` occurs in `events`.
pub fn keys(events: &[Value], agent_id: &str) -> BTreeMap<(String, u64), usize> {
    let mut m = BTreeMap::new();
    for e in events.iter().filter(|e| str_field(e, "agent_id") == agent_id) {
        *m.entry((str_field(e, "boot_id").to_owned(), u64_field(e, "seq"))).or_insert(0) += 1;
    }
    m
}

/// What the collector holds of one agent's local log.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Keys in the local log.
    pub local: usize,
    /// Local keys the collector lacks.
    pub missing: Vec<(String, u64)>,
    /// Keys the collector holds more than once.
    pub doubled: Vec<(String, u64)>,
    /// Keys the collector holds that the local log lacks.
    pub foreign: Vec<(String, u64)>,
}

impl Delivery {
    /// Every local event is in the collector's log once, and nothing else of this agent.
    pub fn exact(&self) -> bool {
        self.missing.is_empty() && self.doubled.is_empty() && self.foreign.is_empty()
    }
}

/// Compares the agent's local log with the collector's log.
pub fn delivery(c: &TestCollector, agent: &TestAgent, agent_id: &str) -> Delivery {
    let local = keys(&agent.events(), agent_id);
    let remote = keys(&collector_events(c), agent_id);
    Delivery {
        local: local.len(),
        missing: local.keys().filter(|k| !remote.contains_key(*k)).cloned().collect(),
        doubled: remote.iter().filter(|(_, n)| **n > 1).map(|(k, _)| k.clone()).collect(),
        foreign: remote.keys().filter(|k| !local.contains_key(*k)).cloned().collect(),
    }
}

/// Waits until the collector holds every event of the agent's local log (at least
/// `min` of them); panics with the difference and both logs after `timeout`.
pub fn wait_delivered(c: &TestCollector, agent: &TestAgent, agent_id: &str, min: usize, timeout: Duration) -> Delivery {
    let done = poll(timeout, || {
        let d = delivery(c, agent, agent_id);
        (d.local >= min && d.missing.is_empty()).then_some(d)
    });
    done.unwrap_or_else(|| {
        let d = delivery(c, agent, agent_id);
        panic!(
            "the collector did not get all of {agent_id}'s events within {timeout:?}: {} local, {} missing (first {:?}), {} doubled\n{}\n--- collector log ---\n{}",
            d.local,
            d.missing.len(),
            d.missing.iter().take(5).collect::<Vec<_>>(),
            d.doubled.len(),
            agent.log_tail(60),
            c.log()
        )
    })
}

/// `warrant --collector URL --ca --cert --key` as `identity` (a standard identity
/// or one issued earlier), for the caller to add the command to.
pub fn warrant_as(c: &TestCollector, identity: &str) -> Command {
    let id = c.identity(identity);
    let mut cmd = Command::new(bins::warrant());
    cmd.env_remove("WARRANT_COLLECTOR")
        .arg("--collector")
        .arg(c.url())
        .arg("--ca")
        .arg(&id.ca)
        .arg("--cert")
        .arg(&id.cert)
        .arg("--key")
        .arg(&id.key);
    cmd
}

/// `warrant --collector URL --ca --cert --key <args>` as `identity`.
pub fn cli_as(c: &TestCollector, identity: &str, args: &[&str]) -> Output {
    let mut cmd = warrant_as(c, identity);
    cmd.args(args);
    output_within(&mut cmd, CLI_TIMEOUT)
}

/// `warrant --collector … watch <args>` as `identity`, once it says it is watching.
pub fn watch_as(c: &TestCollector, identity: &str, args: &[&str]) -> crate::Watch {
    let id = c.identity(identity);
    let mut cmd = Command::new(bins::warrant());
    cmd.env_remove("WARRANT_COLLECTOR")
        .arg("--collector")
        .arg(c.url())
        .arg("--ca")
        .arg(&id.ca)
        .arg("--cert")
        .arg(&id.cert)
        .arg("--key")
        .arg(&id.key)
        .arg("watch")
        .args(args);
    crate::Watch::spawn(cmd)
}

/// [`cli_as`] that must succeed; its stdout.
pub fn cli_ok_as(c: &TestCollector, identity: &str, args: &[&str]) -> String {
    let out = cli_as(c, identity, args);
    assert!(
        out.status.success(),
        "`warrant --collector … {}` as {identity} failed with {}\nstdout:\n{}\nstderr:\n{}\n--- collector log ---\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
    String::from_utf8(out.stdout).expect("CLI stdout is UTF-8")
}

/// A command's stderr as text.
pub fn stderr_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// [`cli_as`] that must fail, saying `needle`, its first line `warrant: …`; its output.
pub fn cli_refused_as(c: &TestCollector, identity: &str, args: &[&str], needle: &str) -> Output {
    let out = cli_as(c, identity, args);
    let err = stderr_text(&out);
    assert!(!out.status.success(), "`{}` as {identity} should be refused ({needle})", args.join(" "));
    assert!(err.contains(needle), "`{}` as {identity}: expected {needle:?} in:\n{err}", args.join(" "));
    assert_eq!(err.lines().next().map(|l| l.starts_with("warrant: ")), Some(true), "{err}");
    out
}

/// `warrant requests --id ID --json` as `identity`: the request as JSON.
pub fn request_json_as(c: &TestCollector, identity: &str, id: &str) -> Value {
    let out = cli_ok_as(c, identity, &["requests", "--id", id, "--json"]);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("requests --json printed {out:?}: {e}"))
}

/// The control actions in the collector's log: (action, outcome, by, target, detail).
pub fn control_actions(c: &TestCollector) -> Vec<(String, String, String, String, String)> {
    let s = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_owned();
    collector_events(c)
        .into_iter()
        .filter(|e| e["kind"] == "control_action")
        .map(|e| (s(&e, "action"), s(&e, "outcome"), s(&e, "by"), s(&e, "target"), s(&e, "detail")))
        .collect()
}

/// Waits until the agent says its uplink is connected (`warrant status`).
pub fn wait_connected(agent: &TestAgent, timeout: Duration) {
    let up = poll(timeout, || agent.status()["collector_connected"].as_bool().unwrap_or(false).then_some(()));
    assert!(up.is_some(), "the agent did not connect to the collector within {timeout:?}\n{}", agent.log_tail(60));
}
