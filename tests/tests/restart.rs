//! Fail closed across an agent crash: with the agent killed by SIGKILL, the pinned
//! programs keep enforcing expiry in the kernel; a restarted agent re-adopts the
//! pinned maps and its state, records the kill it missed, and carries on.

use std::time::Duration;

use warrant_tests::{Marker, TestAgent, audit, now_unix_ns, poll};


/// A busy session under a 3 s grant survives the agent's SIGKILL until its expiry,
/// then dies in the kernel with no agent running. The restarted agent says it
/// re-adopted the pinned maps, logs a `kill` (reason `expiry`, no survivors) and a
/// `session_end` for the session it missed, continues the same audit log, and
/// serves new grants whose sessions are traced.
#[test]
fn agent_crash_then_restart() {
    let mut agent = TestAgent::start_default();
    let mark = Marker::new();
    let grant = agent.issue_grant("3s");
    let expiry = agent.grant_expiry_unix_ns(&grant);
    let s = agent.exec(&grant, &mark, &["/bin/sh", "-c", "while :; do sleep 0.1; done"]);
    let root = s.pid();
    assert!(poll(Duration::from_secs(2), || mark.alive(root).then_some(())).is_some());

    agent.kill_hard();
    assert!(now_unix_ns() < expiry, "the agent took until the expiry to die; nothing to prove");
    assert!(mark.alive(root), "the session outlives the agent until its expiry");
    let left = Duration::from_nanos(u64::try_from(expiry - now_unix_ns()).unwrap_or(0));
    let gone = poll(left + Duration::from_secs(5), || mark.pids().is_empty().then_some(()));
    assert!(gone.is_some(), "the expired session survived with no agent running: {:?}", mark.pids());

    agent.restart();
    assert!(
        agent.log_text().contains("re-adopted the maps a previous agent left"),
        "the restarted agent should re-adopt its pins:\n{}",
        agent.log_tail(40)
    );
    let kill = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "kill" && audit::str_field(e, "session") == s.id(),
        Duration::from_secs(10),
    );
    assert_eq!(kill["reason"], "expiry", "{kill}");
    assert_eq!(audit::u64_field(&kill, "survivors"), 0, "{kill}");
    agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "session_end" && audit::str_field(e, "session") == s.id(),
        Duration::from_secs(10),
    );

    // The restarted agent works: a new grant's session is traced.
    let g2 = agent.issue_grant("1m");
    let mark2 = Marker::new();
    let mut s2 = agent.exec(&g2, &mark2, &["/bin/true"]);
    assert!(s2.wait_for(Duration::from_secs(10)).success());
    agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "exec" && audit::str_field(e, "session") == s2.id(),
        Duration::from_secs(10),
    );
    drop(s);
}
