//! Containment: revoke and kill take down a session's whole process tree, even one
//! that forks as fast as it can and keeps replacing itself, and leave nothing behind
//! (no process, nothing in the session cgroup); other sessions are untouched.

use std::time::Duration;

use warrant_tests::agent::json_lines;
use warrant_tests::workload::testbin;
use warrant_tests::{Marker, TestAgent, Tree, audit, cgroup, poll, procfs};

/// Time allowed for an event to reach the audit log.
const T: Duration = Duration::from_secs(10);

/// The session's cgroup directory, from `warrant sessions --json`.
fn session_cgroup(agent: &TestAgent, session: &str) -> std::path::PathBuf {
    let s = agent
        .session(session)
        .unwrap_or_else(|| panic!("session {session} not listed by `warrant sessions --json`"));
    let cg = audit::str_field(&s, "cgroup");
    assert!(!cg.is_empty(), "session without a cgroup: {s}");
    cgroup::resolve(cg)
}

/// Describes survivors for a failure message: pid, state, parent, cgroup.
fn describe(pids: &[u32]) -> String {
    pids.iter()
        .map(|&p| {
            format!(
                "\n  pid {p}: {:?} cgroup {:?}",
                procfs::stat(p),
                procfs::cgroup_of(p)
            )
        })
        .collect()
}

/// Starts a fork loop (up to 400 processes, replacing themselves) under `grant` and
/// returns once at least 100 of its processes are alive, with the session cgroup.
fn running_fork_loop(agent: &TestAgent, grant: &str, mark: &Marker) -> (warrant_tests::Session, std::path::PathBuf) {
    let s = agent.exec(grant, mark, &[&testbin(), "fork-loop", "--max", "400", "--lifetime", "60"]);
    let cg = session_cgroup(agent, s.id());
    let running = poll(Duration::from_secs(15), || {
        let n = mark.pids().len();
        (n >= 100).then_some(n)
    });
    assert!(running.is_some(), "the fork loop never reached 100 processes: {}", mark.pids().len());
    assert!(!cgroup::procs(&cg).is_empty(), "the fork loop runs in the session cgroup {}", cg.display());
    (s, cg)
}

/// A fork loop under a revoked grant is contained: a loop that forks up to 400
/// processes and keeps replacing them is running (≥ 100 processes seen) when
/// `warrant revoke` is called; when it returns, five /proc scans over 2 s find no
/// process carrying the test's marker, the session cgroup is empty, and a `kill`
/// event says reason `revoke` with `survivors` 0.
#[test]
fn revoke_contains_a_fork_loop() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let (s, cg) = running_fork_loop(&agent, &grant, &mark);

    agent.cli_ok(&["revoke", "--grant", &grant, "--reason", "containment test"]);
    for scan in 0..5 {
        let survivors = mark.pids();
        assert!(
            survivors.is_empty(),
            "scan {scan} after `warrant revoke` returned: {} marked processes alive:{}",
            survivors.len(),
            describe(&survivors)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let left = cgroup::procs(&cg);
    assert!(left.is_empty(), "session cgroup {} not empty: {left:?}", cg.display());

    let kill = agent.wait_for_event(|e| e["kind"] == "kill" && e["session"] == s.id(), T);
    assert_eq!(kill["reason"], "revoke", "{kill}");
    assert_eq!(kill["note"], "containment test", "{kill}");
    assert_eq!(audit::u64_field(&kill, "survivors"), 0, "{kill}");
}

/// The kill report counts what it killed: revoking a grant whose fork loop has at
/// least 100 live processes reports `killed` ≥ 100, both in `warrant revoke --json`
/// and in the `kill` event ("processes killed: cgroup members plus stragglers found
/// by tag", events.proto), however many of them the kernel's own hooks got to first.
#[test]
fn revoke_report_counts_the_processes_killed() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let (s, _cg) = running_fork_loop(&agent, &grant, &mark);

    let out = agent.cli_ok(&["revoke", "--grant", &grant, "--json"]);
    let report = json_lines(&out).pop().expect("a JSON kill report");
    let kill = agent.wait_for_event(|e| e["kind"] == "kill" && e["session"] == s.id(), T);
    assert!(report["killed"].as_u64().unwrap_or(0) >= 100, "revoke --json: {report}");
    assert!(audit::u64_field(&kill, "killed") >= 100, "kill event: {kill}");
}

/// `warrant kill --session S` kills that session's whole 30-process tree (all dead
/// within 1 s of the command returning; its JSON report says ≥ 30 killed, 0
/// survivors), logs a `kill` event with reason `operator` and the operator's note,
/// and leaves another session of the same grant running.
#[test]
fn kill_session_kills_only_that_tree() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let victim = Tree::start(&agent, &grant, &mark, 30, None);
    let bystander = Tree::start(&agent, &grant, &mark, 10, None);
    let sid = victim.session.id().to_string();

    let out = agent.cli_ok(&["kill", "--session", &sid, "--reason", "INC-42 test", "--json"]);
    let report = json_lines(&out).pop().expect("a JSON kill report");
    assert!(report["killed"].as_u64().unwrap_or(0) >= 30, "{report}");
    assert_eq!(report["survivors"], 0, "{report}");
    let gone = poll(Duration::from_secs(1), || victim.alive(&mark).is_empty().then_some(()));
    assert!(gone.is_some(), "still alive 1 s after `warrant kill`: {:?}", victim.alive(&mark));
    assert_eq!(
        bystander.alive(&mark).len(),
        bystander.procs.len(),
        "the other session of the grant must live on"
    );

    let kill = agent.wait_for_event(|e| e["kind"] == "kill" && e["session"] == sid.as_str(), T);
    assert_eq!(kill["reason"], "operator", "{kill}");
    assert_eq!(kill["note"], "INC-42 test", "{kill}");
    assert!(audit::u64_field(&kill, "killed") >= 30, "{kill}");
    assert_eq!(audit::u64_field(&kill, "survivors"), 0, "{kill}");
    let end = agent.wait_for_event(audit::is("session_end", &sid), T);
    assert!(audit::str_field(&end, "reason").starts_with("killed"), "{end}");
}

/// `warrant kill --grant G` kills every session under the grant (two trees of 15),
/// with a `kill` event for each session.
#[test]
fn kill_grant_kills_every_session_of_the_grant() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let a = Tree::start(&agent, &grant, &mark, 15, None);
    let b = Tree::start(&agent, &grant, &mark, 15, None);

    agent.cli_ok(&["kill", "--grant", &grant]);
    for t in [&a, &b] {
        let gone = poll(Duration::from_secs(1), || t.alive(&mark).is_empty().then_some(()));
        assert!(gone.is_some(), "session {}: still alive: {:?}", t.session.id(), t.alive(&mark));
        let kill = agent.wait_for_event(|e| e["kind"] == "kill" && e["session"] == t.session.id(), T);
        assert_eq!(audit::u64_field(&kill, "survivors"), 0, "{kill}");
        assert!(audit::u64_field(&kill, "killed") >= 15, "{kill}");
    }
    assert!(mark.pids().is_empty(), "marked survivors: {:?}", mark.pids());
}
