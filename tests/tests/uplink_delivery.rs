//! Agents stream every event to a real collector over TCP with mTLS, and nothing is
//! lost or doubled when the collector or the agent dies mid-stream: the collector's
//! log holds each `(agent, boot, seq)` of the agent's local log exactly once.

use std::time::Duration;

use warrant_tests::fleet::{agent_id, collector_events, delivery, start_agent, wait_connected, wait_delivered};
use warrant_tests::workload::{canonical, testbin};
use warrant_tests::{AgentOptions, CollectorOptions, Marker, TestCollector, audit};

/// Time for events to travel agent → collector.
const T: Duration = Duration::from_secs(20);

/// Two agents and one collector: a tagged process on each agent execs and exits,
/// and both sessions' events reach the collector's log with their agent's id; each
/// agent's whole local log is in the collector's log exactly once.
#[test]
fn two_agents_stream_to_one_collector() {
    let c = TestCollector::start(CollectorOptions::default());
    let a1 = start_agent(&c, "agent-1", AgentOptions::default());
    let a2 = start_agent(&c, "agent-2", AgentOptions::default());
    let (id1, id2) = (agent_id(&a1), agent_id(&a2));
    assert_ne!(id1, id2);
    let mark = Marker::new();
    let g1 = a1.issue_grant("2m");
    let g2 = a2.issue_grant("2m");
    let mut s1 = a1.exec(&g1, &mark, &["/bin/sh", "-c", "/bin/true; exit 3"]);
    let mut s2 = a2.exec(&g2, &mark, &["/bin/sh", "-c", "/bin/true; exit 4"]);
    assert_eq!(s1.wait_for(T).code(), Some(3));
    assert_eq!(s2.wait_for(T).code(), Some(4));
    let truth = canonical("/bin/true");
    for (agent, id, s) in [(&a1, &id1, &s1), (&a2, &id2, &s2)] {
        agent.wait_for_event(|e| audit::is("exit", s.id())(e) && audit::u64_field(e, "pid") == u64::from(s.pid()), T);
        let d = wait_delivered(&c, agent, id, 4, T);
        assert!(d.exact(), "{id}: {d:?}");
        let events = collector_events(&c);
        let exec = events
            .iter()
            .find(|e| audit::is("exec", s.id())(e) && audit::str_field(e, "path") == truth)
            .unwrap_or_else(|| panic!("no exec of {truth} from {} in the collector's log", s.id()));
        assert_eq!(audit::str_field(exec, "agent_id"), id.as_str(), "{exec}");
        assert!(!audit::str_field(exec, "host").is_empty(), "{exec}");
    }
    assert!(a1.status()["acked_seq"].as_u64().unwrap_or(0) > 0, "{}", a1.status());
}

/// The collector is SIGKILLed while a session streams thousands of file opens, and
/// started again a second later: the agent reconnects, resends what was not acked,
/// and the collector's log ends up with every event of the agent's log exactly once.
#[test]
fn collector_killed_mid_stream_loses_and_doubles_nothing() {
    let mut c = TestCollector::start(CollectorOptions::default());
    let agent = start_agent(&c, "agent-1", AgentOptions::default());
    let id = agent_id(&agent);
    wait_connected(&agent, T);
    let mark = Marker::new();
    let grant = agent.issue_grant("2m");
    let bin = testbin();
    // ~20 000 opens over a few seconds: the stream is busy when the collector dies.
    let script = format!("for i in 1 2 3 4 5 6 7 8 9 10; do {bin} open-burst 2000 /etc/hostname >/dev/null; sleep 0.2; done");
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script]);
    agent.wait_until("the stream to be busy", T, |evs| (evs.len() > 3000).then_some(()));
    c.kill_hard();
    std::thread::sleep(Duration::from_secs(1));
    c.start_again();
    assert!(s.wait_for(Duration::from_secs(60)).success(), "the workload failed");
    agent.wait_for_event(|e| audit::is("session_end", s.id())(e), T);
    let d = wait_delivered(&c, &agent, &id, 20_000, Duration::from_secs(60));
    assert!(d.exact(), "{d:?}");
    assert!(
        agent.log_text().contains("reconnecting"),
        "the agent should have lost and re-made the stream:\n{}",
        agent.log_tail(40)
    );
}

/// With the collector down, the agent records a session into its spool, then is
/// stopped. Collector and agent start again: the new agent's hello names the old
/// boot as pending, the welcome says where to resume, and the old boot's events
/// reach the collector (with the new boot's), each once; the spool is trimmed.
#[test]
fn restarted_agent_resends_an_earlier_boots_spool() {
    let mut c = TestCollector::start(CollectorOptions::default());
    let mut agent = start_agent(&c, "agent-1", AgentOptions::default());
    let id = agent_id(&agent);
    wait_connected(&agent, T);
    c.kill_hard();
    let mark = Marker::new();
    let grant = agent.issue_grant("2m");
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", "/bin/true; /bin/true; exit 0"]);
    assert!(s.wait_for(T).success());
    let old_boot = audit::str_field(&agent.wait_for_event(|e| audit::is("session_end", s.id())(e), T), "boot_id").to_owned();
    let spooled = agent.status()["spool_events"].as_u64().unwrap_or(0);
    assert!(spooled > 0, "with the collector down, events wait in the spool: {}", agent.status());
    agent.stop();

    c.start_again();
    agent.restart();
    let d = wait_delivered(&c, &agent, &id, 5, T);
    assert!(d.exact(), "{d:?}");
    let new_boot = agent.status()["boot_id"].as_str().unwrap_or_default().to_owned();
    assert_ne!(new_boot, old_boot);
    let events = collector_events(&c);
    assert!(
        events.iter().any(|e| audit::is("session_end", s.id())(e) && audit::str_field(e, "boot_id") == old_boot),
        "the old boot's session_end should have been resent"
    );
    let trimmed = warrant_tests::poll(T, || (agent.status()["spool_events"].as_u64() == Some(0)).then_some(()));
    assert!(trimmed.is_some(), "acknowledged events should leave the spool: {}", agent.status());
    assert_eq!(delivery(&c, &agent, &id).local, d.local, "no events appeared from nowhere");
}

/// A spool too small for what the agent records while the collector is down fills
/// up: the refusals are counted (status, metrics), the events stay in the local log,
/// and once the collector is back and the spool drains, an `events_lost` event with
/// reason `spool_full` and the exact count reaches the collector.
#[test]
fn full_spool_is_counted_and_reported() {
    let mut c = TestCollector::start(CollectorOptions::default());
    let agent = start_agent(&c, "agent-1", AgentOptions { spool_max_bytes: Some(64 << 10), metrics: true, ..AgentOptions::default() });
    wait_connected(&agent, T);
    c.kill_hard();
    let mark = Marker::new();
    let grant = agent.issue_grant("2m");
    let bin = testbin();
    let mut s = agent.exec(&grant, &mark, &[&bin, "open-burst", "3000", "/etc/hostname"]);
    assert!(s.wait_for(T).success());
    agent.wait_for_event(|e| audit::is("session_end", s.id())(e), T);
    let refused = agent.status()["spool_full_total"].as_u64().unwrap_or(0);
    assert!(refused > 1000, "a 64 KiB spool cannot hold 3000 opens: {}", agent.status());
    assert_eq!(agent.metric("warrant_agent_spool_full_total") as u64, refused);
    assert!(agent.metric("warrant_agent_spool_bytes") <= f64::from(64 << 10));
    assert_eq!(agent.metric("warrant_agent_uplink_connected") as u64, 0);

    c.start_again();
    let drained = warrant_tests::poll(T, || (agent.status()["spool_events"].as_u64() == Some(0)).then_some(()));
    assert!(drained.is_some(), "the spool should drain once the collector is back: {}", agent.status());
    // The notice rides on the next event the agent records.
    let mut s2 = agent.exec(&grant, &mark, &["/bin/true"]);
    assert!(s2.wait_for(T).success());
    let lost = warrant_tests::poll(T, || {
        collector_events(&c).into_iter().find(|e| audit::str_field(e, "kind") == "events_lost" && audit::str_field(e, "reason") == "spool_full")
    })
    .unwrap_or_else(|| panic!("no events_lost(spool_full) reached the collector\n{}", agent.log_tail(40)));
    assert_eq!(audit::u64_field(&lost, "count"), refused, "{lost}");
    assert!(agent.log_text().contains("the spool is full"), "{}", agent.log_tail(40));
}
