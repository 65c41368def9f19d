//! `warrant watch`: live streams of what sessions do, one JSON object per line,
//! filtered by session, grant and kind.

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use warrant_tests::workload::{accept_within, canonical, testbin, unique_path};
use warrant_tests::{Marker, TestAgent, audit};

/// Time allowed for an event to reach the log or the watcher.
const T: Duration = Duration::from_secs(10);

/// How long a watcher gets to print events the audit log already holds.
const SETTLE: Duration = Duration::from_millis(500);

/// `warrant watch --json --session S` streams S's events live: with the watch
/// subscribed before S does anything, S's exec of `cat`, cat's open of the file and
/// S's exit (code 4) arrive as JSON lines carrying S's id, and nothing from a second
/// session of the same grant doing the same thing at the same time does.
#[test]
fn watch_streams_one_session_live() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let bin = testbin();
    let gate = unique_path(agent.temp_dir(), "gate");
    let gate_s = gate.to_string_lossy().into_owned();
    let file = unique_path(agent.temp_dir(), "watched");
    std::fs::write(&file, b"watched\n").expect("create watched file");
    let file = canonical(&file);
    let script = format!("cat '{file}' >/dev/null; exit 4");
    let mut s1 = agent.exec(&grant, &mark, &[&bin, "gate", &gate_s, "--", "/bin/sh", "-c", &script]);
    let mut s2 = agent.exec(&grant, &mark, &[&bin, "gate", &gate_s, "--", "/bin/sh", "-c", &script]);
    let mut w = agent.watch(&["--json", "--session", s1.id()]);

    std::fs::write(&gate, b"go").expect("open the gate");
    assert_eq!(s1.wait_for(T).code(), Some(4));
    assert_eq!(s2.wait_for(T).code(), Some(4));

    let cat = canonical("/bin/cat");
    let exec = w
        .next_event(T, |e| e["kind"] == "exec" && e["path"] == cat.as_str())
        .unwrap_or_else(|| panic!("no exec of cat from watch; got {:#?}\n{}", w.events(), w.stderr()));
    assert_eq!(exec["session"], s1.id(), "{exec}");
    let open = w
        .next_event(T, |e| e["kind"] == "file_open" && e["path"] == file.as_str())
        .unwrap_or_else(|| panic!("no open of {file} from watch; got {:#?}", w.events()));
    assert_eq!(open["session"], s1.id(), "{open}");
    assert_eq!(open["pid"], exec["pid"], "cat opened the file: {open}");
    let exit = w
        .next_event(T, |e| e["kind"] == "exit" && audit::u64_field(e, "pid") == u64::from(s1.pid()))
        .unwrap_or_else(|| panic!("no exit of the root from watch; got {:#?}", w.events()));
    assert_eq!(exit["code"], 4, "{exit}");

    // Once s2's own exit is in the audit log, the watcher has had every chance to leak it.
    agent.wait_for_event(|e| audit::is("exit", s2.id())(e) && audit::u64_field(e, "pid") == u64::from(s2.pid()), T);
    std::thread::sleep(SETTLE);
    let foreign: Vec<_> = w.events().into_iter().filter(|e| e["session"] != s1.id()).collect();
    assert!(foreign.is_empty(), "watch --session {} printed other sessions' events: {foreign:#?}", s1.id());
    w.stop();
}

/// `warrant watch --json --grant G --kind net`, started before any session exists,
/// shows the `connect` of a session started later under G, with its address and
/// port, and no event of any other kind (not the session's execs or file opens).
#[test]
fn watch_filters_by_grant_and_kind() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let mut w = agent.watch(&["--json", "--grant", &grant, "--kind", "net"]);

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local_addr").port();
    let mut s = agent.exec(&grant, &mark, &[&testbin(), "connect", &format!("127.0.0.1:{port}")]);
    let (mut conn, _) = accept_within(&listener, T);
    let mut b = [0u8; 1];
    conn.read_exact(&mut b).expect("read");
    drop(conn);
    assert!(s.wait_for(T).success());

    let c = w
        .next_event(T, |e| e["kind"] == "connect")
        .unwrap_or_else(|| panic!("no connect from watch; got {:#?}\n{}", w.events(), w.stderr()));
    assert_eq!(c["session"], s.id(), "{c}");
    assert_eq!(c["grant"], grant.as_str(), "{c}");
    assert_eq!(audit::u64_field(&c, "port"), u64::from(port), "{c}");

    agent.wait_for_event(|e| audit::is("exit", s.id())(e) && audit::u64_field(e, "pid") == u64::from(s.pid()), T);
    std::thread::sleep(SETTLE);
    let other: Vec<_> = w
        .events()
        .into_iter()
        .filter(|e| !["connect", "bind", "listen", "accept", "socket_close"].contains(&audit::str_field(e, "kind")))
        .collect();
    assert!(other.is_empty(), "watch --kind net printed non-network events: {other:#?}");
    w.stop();
}
