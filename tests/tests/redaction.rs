//! Secrets stay on the host: a password in argv (as a flag, in a connection string,
//! inside a shell's `-c` script) is masked before the event is written, so it appears
//! nowhere in the audit log, and the events say which fields were masked.

use std::time::Duration;

use warrant_tests::workload::testbin;
use warrant_tests::{Marker, TestAgent, audit};

const T: Duration = Duration::from_secs(10);

#[test]
fn passwords_in_argv_never_reach_the_audit_log() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("5m");
    let secrets = ["hunter2-S3CR3T-flag", "pgS3CR3T-conn", "tok-S3CR3T-inline"];
    let bin = testbin();
    let script = format!(
        "{bin} sleep 0 --password {}; {bin} sleep 0 postgres://app:{}@db.internal/x; {bin} sleep 0 --token={}",
        secrets[0], secrets[1], secrets[2]
    );
    let mark = Marker::new();
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script]);
    assert!(s.wait_for(T).success());
    let report = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "session_report" && audit::str_field(e, "session") == s.id(),
        T,
    );
    let log = std::fs::read_to_string(agent.state_dir().join("audit.log")).expect("read the audit log");
    for secret in secrets {
        assert!(!log.contains(secret), "{secret} leaked into the audit log");
    }
    let events = agent.session_events(s.id());
    let execs: Vec<&serde_json::Value> =
        events.iter().filter(|e| audit::str_field(e, "kind") == "exec" && e.get("redacted").is_some()).collect();
    assert!(execs.len() >= 4, "sh and the three testbins are marked redacted: {execs:?}");
    let flagged = execs
        .iter()
        .find(|e| e["argv"].as_array().is_some_and(|a| a.iter().any(|x| x == "--password")))
        .expect("the --password exec");
    assert_eq!(flagged["argv"][4], "***", "{flagged}");
    assert_eq!(flagged["redacted"][0], "argv[4] (secret-flag)", "{flagged}");
    let conn = execs.iter().find(|e| e["argv"][3].as_str().is_some_and(|a| a.starts_with("postgres://"))).expect("conn");
    assert_eq!(conn["argv"][3], "postgres://app:***@db.internal/x", "{conn}");
    let start = events.iter().find(|e| audit::str_field(e, "kind") == "session_start").expect("session_start");
    assert!(start.get("redacted").is_some(), "the session's command is masked too: {start}");
    assert!(report["commands"].to_string().contains("***"), "{report}");
}

/// The same secrets never reach the collector either: the agent masks before it
/// spools, so the collector's log segments hold only the masked form.
#[test]
fn passwords_in_argv_never_reach_the_collector() {
    use warrant_tests::fleet::{agent_id, start_agent, wait_delivered};
    use warrant_tests::{AgentOptions, CollectorOptions, TestCollector};

    let c = TestCollector::start(CollectorOptions::default());
    let agent = start_agent(&c, "agent-1", AgentOptions::default());
    let id = agent_id(&agent);
    let grant = agent.issue_grant("5m");
    let secret = "hunter2-S3CR3T-fleet";
    let script = format!("{} sleep 0 --password {secret}", testbin());
    let mark = Marker::new();
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script]);
    assert!(s.wait_for(T).success());
    agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "session_report" && audit::str_field(e, "session") == s.id(),
        T,
    );
    let d = wait_delivered(&c, &agent, &id, 4, Duration::from_secs(30));
    assert!(d.exact(), "{d:?}");
    let mut seen = 0;
    for seg in c.segments() {
        let text = std::fs::read_to_string(&seg).expect("read a collector log segment");
        assert!(!text.contains(secret), "{secret} leaked into {}", seg.display());
        seen += text.matches("\"redacted\"").count();
    }
    assert!(seen >= 2, "the collector's log holds the masked events ({seen} marked)");
}
