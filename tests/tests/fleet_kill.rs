//! The kill switch from anywhere: `warrant kill --collector URL` reaches the agent
//! holding the session (and only that one), returns with the figures when the tree
//! is dead, says so when the agent is unreachable (the kill then runs when it
//! reconnects), and is refused for a certificate without the responder role.

use std::time::Duration;

use warrant_tests::fleet::{agent_id, cli_as, cli_ok_as, start_agent, wait_connected, wait_delivered};
use warrant_tests::{AgentOptions, CollectorOptions, Marker, TestCollector, Tree, audit, poll};

/// Time for events and commands to travel.
const T: Duration = Duration::from_secs(20);

/// Waits until the collector's log knows the session (its session_start arrived),
/// so the collector can route a kill for it.
fn wait_known(c: &TestCollector, agent: &warrant_tests::TestAgent, session: &str) {
    let id = agent_id(agent);
    poll(T, || {
        warrant_tests::fleet::collector_events(c).iter().any(|e| audit::is("session_start", session)(e)).then_some(())
    })
    .unwrap_or_else(|| {
        let d = warrant_tests::fleet::delivery(c, agent, &id);
        panic!("session {session} never reached the collector: {d:?}\n{}", agent.log_tail(40))
    });
}

/// Two agents, a 5-process tree under each. A responder kills the second agent's
/// session through the collector: the CLI prints that agent's id and host with
/// 5 killed and no survivors, that tree is dead, the other tree lives on, and the
/// agent's own audit log records the kill as asked by the responder via the collector.
#[test]
fn kill_through_the_collector_reaches_the_right_agent() {
    let c = TestCollector::start(CollectorOptions::default());
    let a1 = start_agent(&c, "agent-1", AgentOptions::default());
    let a2 = start_agent(&c, "agent-2", AgentOptions::default());
    let mark = Marker::new();
    let t1 = Tree::start(&a1, &a1.issue_grant("5m"), &mark, 5, None);
    let t2 = Tree::start(&a2, &a2.issue_grant("5m"), &mark, 5, None);
    wait_known(&c, &a1, t1.session.id());
    wait_known(&c, &a2, t2.session.id());

    let out = cli_ok_as(&c, "responder", &["kill", "--session", t2.session.id(), "--reason", "INC-7", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!(v["agent_id"], agent_id(&a2).as_str(), "{v}");
    assert_eq!(v["delivered"], true, "{v}");
    assert!(v["killed"].as_u64().unwrap_or(0) >= 5, "{v}");
    assert_eq!(v["survivors"], 0, "{v}");
    assert!(t2.alive(&mark).is_empty(), "the killed tree still runs: {:?}", t2.alive(&mark));
    assert_eq!(t1.alive(&mark).len(), 5, "the other agent's tree must live on");

    let kill = a2.wait_for_event(|e| audit::is("kill", t2.session.id())(e), T);
    assert!(audit::str_field(&kill, "by").contains("responder"), "{kill}");
    assert_eq!(audit::str_field(&kill, "note"), "INC-7", "{kill}");

    // The human form names the host and the figures.
    let t3 = Tree::start(&a1, &a1.issue_grant("5m"), &mark, 3, None);
    wait_known(&c, &a1, t3.session.id());
    let text = cli_ok_as(&c, "responder", &["kill", "--session", t3.session.id()]);
    assert!(text.starts_with("on "), "{text}");
    assert!(text.contains(&format!("killed session {}: 3 processes in ", t3.session.id())), "{text}");
    assert_eq!(t1.alive(&mark).len(), 5);
}

/// The agent holding a session is stopped (its session lives on, tagged in the
/// kernel). A kill through the collector answers at once that the agent is
/// unreachable and the kill is queued (exit 3); when the agent comes back and
/// reconnects, the queued kill runs and the tree dies.
#[test]
fn kill_for_a_disconnected_agent_is_queued_then_delivered() {
    let c = TestCollector::start(CollectorOptions::default());
    let mut agent = start_agent(&c, "agent-1", AgentOptions::default());
    let mark = Marker::new();
    let tree = Tree::start(&agent, &agent.issue_grant("5m"), &mark, 4, None);
    wait_known(&c, &agent, tree.session.id());
    agent.stop();

    let out = cli_as(&c, "responder", &["kill", "--session", tree.session.id()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("is unreachable: the kill is queued"), "{stdout}");
    assert_eq!(tree.alive(&mark).len(), 4, "nothing can kill it while the agent is away");
    let agents = cli_ok_as(&c, "watcher", &["agents", "--json"]);
    assert!(agents.contains("\"queued_commands\":1"), "{agents}");

    agent.restart();
    let dead = poll(T, || tree.alive(&mark).is_empty().then_some(()));
    assert!(dead.is_some(), "the queued kill did not run after the reconnect: {:?}\n{}", tree.alive(&mark), agent.log_tail(60));
    let kill = agent.wait_for_event(|e| audit::is("kill", tree.session.id())(e), T);
    assert!(audit::str_field(&kill, "by").contains("responder"), "{kill}");
}

/// A watcher's certificate and a certificate with no role may not kill: the CLI
/// exits 2 with the collector's refusal and a hint about roles, and the tree lives.
#[test]
fn unauthorised_kill_is_refused() {
    let c = TestCollector::start(CollectorOptions::default());
    let agent = start_agent(&c, "agent-1", AgentOptions::default());
    let mark = Marker::new();
    let tree = Tree::start(&agent, &agent.issue_grant("5m"), &mark, 3, None);
    wait_known(&c, &agent, tree.session.id());
    for who in ["watcher", "nobody"] {
        let out = cli_as(&c, who, &["kill", "--session", tree.session.id()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{who}: {stderr}");
        assert!(stderr.starts_with("warrant: "), "{who}: {stderr}");
        assert!(stderr.contains("role"), "{who}: the refusal should talk about roles: {stderr}");
    }
    assert_eq!(tree.alive(&mark).len(), 3, "a refused kill must not kill");
}

/// `warrant sessions`, `query` and `audit verify` through the collector: the live
/// session is listed with its host; a query by session returns its events; the
/// collector's log and the agent's own log both verify intact.
#[test]
fn sessions_query_and_audit_verify_through_the_collector() {
    let c = TestCollector::start(CollectorOptions::default());
    let agent = start_agent(&c, "agent-1", AgentOptions::default());
    let id = agent_id(&agent);
    wait_connected(&agent, T);
    let mark = Marker::new();
    let tree = Tree::start(&agent, &agent.issue_grant("5m"), &mark, 2, None);
    wait_known(&c, &agent, tree.session.id());

    let sessions = cli_ok_as(&c, "watcher", &["sessions", "--json"]);
    let listed = warrant_tests::agent::json_lines(&sessions);
    let s = listed.iter().find(|s| s["id"] == tree.session.id()).unwrap_or_else(|| panic!("{sessions}"));
    assert_eq!(s["agent_id"], id.as_str(), "{s}");

    wait_delivered(&c, &agent, &id, 2, T);
    let q = cli_ok_as(&c, "watcher", &["query", "--session", tree.session.id(), "--from", "10m", "--json"]);
    let events = warrant_tests::agent::json_lines(&q);
    assert!(events.iter().any(|e| e["kind"] == "session_start"), "{q}");
    assert!(events.iter().all(|e| e["session"] == tree.session.id()), "{q}");

    // The live session's report so far, summed up from the collector's log (the
    // agent sends its own only at the end).
    let r = cli_ok_as(&c, "watcher", &["report", tree.session.id(), "--json"]);
    let r: serde_json::Value = serde_json::from_str(r.trim()).unwrap_or_else(|e| panic!("{e}: {r}"));
    assert_eq!((r["kind"].as_str(), r["session"].as_str()), (Some("session_report"), Some(tree.session.id())), "{r}");
    assert!(r["events"].as_u64().is_some_and(|n| n >= 2) && r.get("ended").is_none(), "a live report: {r}");
    let none = cli_as(&c, "watcher", &["report", "s-000000000000"]);
    assert_ne!(none.status.code(), Some(0), "a session the log has nothing of");
    assert!(String::from_utf8_lossy(&none.stderr).contains("nothing of session"), "{none:?}");

    let v = cli_ok_as(&c, "admin", &["audit", "verify", "--json"]);
    assert!(v.contains("\"ok\":true"), "{v}");
    let local = agent.cli_ok(&["audit", "verify", "--json"]);
    assert!(local.contains("\"ok\":true"), "{local}");
    let refused = cli_as(&c, "watcher", &["audit", "verify"]);
    assert_eq!(refused.status.code(), Some(2), "verify is for admins");
}
