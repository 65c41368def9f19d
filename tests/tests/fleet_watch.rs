//! `warrant watch --collector`: every host's events in one stream, filtered by
//! host, grant and subject, with `--since` replaying the collector's log first and
//! then continuing live.

use std::time::Duration;

use warrant_tests::fleet::{agent_id, start_agent, wait_delivered, watch_as};
use warrant_tests::workload::canonical;
use warrant_tests::{AgentOptions, CollectorOptions, Marker, TestCollector, audit};

/// Time for events to travel agent → collector → watcher.
const T: Duration = Duration::from_secs(20);

/// A session on agent 1 runs `/bin/true` and ends; its events reach the collector.
/// A watcher started afterwards with `--since 10m --grant G` first gets that exec
/// (replayed from the log), then the exec of a second session of G started after
/// the watch (live); a session of agent 2 under another grant never shows up.
/// `--host` and `--subject` filter the same way (all agents here share one host
/// name, so a foreign host name matches nothing).
#[test]
fn watch_replays_since_then_goes_live_across_agents() {
    let c = TestCollector::start(CollectorOptions::default());
    let a1 = start_agent(&c, "agent-1", AgentOptions::default());
    let a2 = start_agent(&c, "agent-2", AgentOptions::default());
    let mark = Marker::new();
    let g1 = a1.issue_grant("5m");
    let g2 = a2.issue_grant("5m");
    let truth = canonical("/bin/true");
    let mut before = a1.exec(&g1, &mark, &["/bin/true"]);
    assert!(before.wait_for(T).success());
    a1.wait_for_event(|e| audit::is("session_end", before.id())(e), T);
    wait_delivered(&c, &a1, &agent_id(&a1), 3, T);

    let mut w = watch_as(&c, "watcher", &["--json", "--since", "10m", "--grant", &g1, "--kind", "exec"]);
    let replayed = w
        .next_event(T, |e| e["session"] == before.id() && e["path"] == truth.as_str())
        .unwrap_or_else(|| panic!("no replayed exec of {}: {:#?}\n{}", before.id(), w.events(), w.stderr()));
    assert_eq!(replayed["agent_id"], agent_id(&a1).as_str(), "{replayed}");

    let mut other = a2.exec(&g2, &mark, &["/bin/true"]);
    let mut after = a1.exec(&g1, &mark, &["/bin/true"]);
    assert!(after.wait_for(T).success());
    assert!(other.wait_for(T).success());
    w.next_event(T, |e| e["session"] == after.id() && e["path"] == truth.as_str())
        .unwrap_or_else(|| panic!("no live exec of {}: {:#?}", after.id(), w.events()));
    wait_delivered(&c, &a2, &agent_id(&a2), 3, T);
    std::thread::sleep(Duration::from_millis(500));
    let foreign: Vec<_> = w.events().into_iter().filter(|e| e["grant"] != g1.as_str()).collect();
    assert!(foreign.is_empty(), "watch --grant {g1} printed other grants' events: {foreign:#?}");

    // Subject and host filters: ours match, a stranger's do not.
    let host = audit::str_field(&replayed, "host").to_owned();
    let mut by_subject = watch_as(&c, "watcher", &["--json", "--since", "10m", "--subject", "warrant-tests", "--host", &host]);
    by_subject
        .next_event(T, |e| e["session"] == before.id())
        .unwrap_or_else(|| panic!("--subject/--host filtered out a matching event: {:#?}", by_subject.events()));
    let mut nobody = watch_as(&c, "watcher", &["--json", "--since", "10m", "--host", "no-such-host"]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(nobody.events().is_empty(), "{:#?}", nobody.events());
    assert!(nobody.stop().is_some());
}

/// A certificate with no role cannot watch: the CLI exits 2 with a hint about roles.
#[test]
fn unauthorised_watcher_is_refused() {
    let c = TestCollector::start(CollectorOptions::default());
    let out = warrant_tests::fleet::cli_as(&c, "nobody", &["watch", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("role"), "{stderr}");
}
