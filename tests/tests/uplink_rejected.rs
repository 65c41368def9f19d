//! A real agent against a collector that takes at most 64 KiB per message: the
//! agent caps its batches below the limit the welcome names (thousands of small
//! events still flow), and an event bigger than the limit (a session_start whose
//! command line is 100 KB) is set aside: the collector gets an `events_lost` with
//! reason `rejected` at its seq, and the stream moves on instead of resending it
//! forever.

use std::time::Duration;

use warrant_tests::fleet::{agent_id, collector_events, start_agent, wait_connected, wait_delivered};
use warrant_tests::workload::testbin;
use warrant_tests::{AgentOptions, CollectorOptions, Marker, TestCollector, audit};

const T: Duration = Duration::from_secs(30);

#[test]
fn an_event_the_collector_refuses_is_set_aside_and_the_stream_moves_on() {
    let c = TestCollector::start(CollectorOptions { extra_args: vec!["--max-message-bytes".into(), "65536".into()], ..CollectorOptions::default() });
    let agent = start_agent(&c, "agent-1", AgentOptions::default());
    let id = agent_id(&agent);
    wait_connected(&agent, T);
    let mark = Marker::new();
    let grant = agent.issue_grant("2m");
    // Thousands of small events: one 512-event batch would be ~150 KB.
    let bin = testbin();
    let script = format!("{bin} open-burst 3000 /etc/hostname >/dev/null; exit 0");
    let long = "z".repeat(100_000);
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script, "sh", &long]);
    assert!(s.wait_for(T).success(), "the workload failed");
    agent.wait_for_event(|e| audit::is("session_end", s.id())(e), T);
    // Every local (boot, seq) reaches the collector once: the big one as its stand-in.
    let d = wait_delivered(&c, &agent, &id, 3000, Duration::from_secs(60));
    assert!(d.exact(), "{d:?}");
    let events = collector_events(&c);
    let start = events.iter().find(|e| audit::is("session_start", s.id())(e));
    assert!(start.is_none(), "the 100 KB session_start cannot have passed a 64 KiB limit");
    let rejected: Vec<_> = events
        .iter()
        .filter(|e| audit::str_field(e, "kind") == "events_lost" && audit::str_field(e, "reason") == "rejected" && audit::str_field(e, "agent_id") == id)
        .collect();
    assert!(!rejected.is_empty(), "no events_lost (rejected) in the collector's log");
    let local_start = agent.events().into_iter().find(|e| audit::is("session_start", s.id())(e)).expect("the local log keeps it");
    assert!(
        rejected.iter().any(|r| audit::u64_field(r, "seq") == audit::u64_field(&local_start, "seq")),
        "the stand-in has the session_start's seq: {rejected:?}"
    );
    assert!(events.iter().any(|e| audit::is("session_end", s.id())(e)), "the stream moved on past the refused event");
    let gaps = events.iter().filter(|e| audit::str_field(e, "kind") == "control_action" && audit::str_field(e, "action") == "gap").count();
    assert_eq!(gaps, 0, "no seq gap: the refused event's seq was filled by its stand-in");
    assert!(c.metric("warrant_collector_batches_refused_total") >= 1.0);
}
