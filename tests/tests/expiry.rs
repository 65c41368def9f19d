//! Expiry: when a grant's time is up its whole process tree dies, without anyone
//! asking, including processes that tried to get away (setsid, double fork, another
//! cgroup), and the kill is recorded.

use std::time::Duration;

use warrant_tests::{Marker, TempCgroup, TestAgent, Tree, audit, now_unix_ns, poll};


/// A 3 s grant kills its whole tree at expiry: 60 processes (chains, background
/// process groups, setsid'd double-forked daemons, exec'd sleeps, and one that moved
/// itself into a cgroup outside the session's) are all alive before the expiry and
/// all dead within 5 s after it, and a `kill` event says reason `expiry`,
/// `killed` ≥ 50 and `survivors` 0.
#[test]
fn expiry_kills_the_whole_tree() {
    let agent = TestAgent::start_default();
    let mark = Marker::new();
    let escape = TempCgroup::new("warrant-test-escape");
    let grant = agent.issue_grant("3s");
    let expiry = agent.grant_expiry_unix_ns(&grant);
    let tree = Tree::start(&agent, &grant, &mark, 60, Some(escape.path()));
    let built = now_unix_ns();
    assert!(built < expiry, "the tree was not complete before the grant expired; nothing to prove");
    let alive = tree.alive(&mark);
    assert_eq!(alive.len(), tree.procs.len(), "every process is alive before the expiry");
    assert_eq!(tree.procs.len(), 60);

    let grace = 5_000_000_000;
    let dead_at = loop {
        let alive = tree.alive(&mark);
        let now = now_unix_ns();
        if alive.is_empty() {
            break now;
        }
        assert!(
            now < expiry + grace,
            "{} of {} processes still alive 5 s after the expiry: {alive:?}\nsession: {:#?}",
            alive.len(),
            tree.procs.len(),
            agent.session(tree.session.id())
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("expiry to last death: {} ms", (dead_at - expiry) / 1_000_000);

    let kill = agent.wait_for_event(
        |e| e["kind"] == "kill" && e["grant"] == grant.as_str() && e["reason"] == "expiry",
        Duration::from_secs(10),
    );
    assert_eq!(kill["session"], tree.session.id(), "{kill}");
    assert!(audit::u64_field(&kill, "killed") >= 50, "killed < 50: {kill}");
    assert_eq!(audit::u64_field(&kill, "survivors"), 0, "{kill}");
    assert!(escape.procs().is_empty(), "the escaped process is gone from the other cgroup");
}

/// The kernel enforces expiry with the agent stopped: a shell that keeps forking
/// `sleep` under a 3 s grant dies after the expiry although the agent was stopped
/// (SIGTERM; programs and maps stay pinned) before the grant ran out.
#[test]
fn expiry_kills_with_the_agent_stopped() {
    let mut agent = TestAgent::start_default();
    let mark = Marker::new();
    let grant = agent.issue_grant("3s");
    let expiry = agent.grant_expiry_unix_ns(&grant);
    let s = agent.exec(&grant, &mark, &["/bin/sh", "-c", "while :; do sleep 0.1; done"]);
    let root = s.pid();
    assert!(poll(Duration::from_secs(2), || mark.alive(root).then_some(())).is_some());
    let status = agent.stop().expect("agent was running");
    assert!(status.success(), "the agent stops cleanly on SIGTERM: {status}");
    assert!(now_unix_ns() < expiry, "the agent took until the expiry to stop; nothing to prove");
    assert!(mark.alive(root), "the session outlives the agent until the expiry");

    let left = Duration::from_nanos(u64::try_from(expiry - now_unix_ns()).unwrap_or(0));
    let gone = poll(left + Duration::from_secs(5), || mark.pids().is_empty().then_some(()));
    assert!(
        gone.is_some(),
        "processes of the expired session still alive 5 s after the expiry with the agent stopped: {:?}",
        mark.pids()
    );
    drop(s);
}
