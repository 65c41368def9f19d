//! Session reports: when a session ends, a `session_report` event sums it up (who,
//! why, commands, files written, hosts contacted with byte counts from the kernel,
//! violations, kills), and `warrant report SESSION` shows the same.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use warrant_tests::workload::testbin;
use warrant_tests::{Marker, TestAgent, audit};

const T: Duration = Duration::from_secs(15);
const SEND: u64 = 1_000_000;
const REPLY: u64 = 600_000;

fn within_1pct(got: u64, want: u64) -> bool {
    got.abs_diff(want) * 100 <= want
}

#[test]
fn report_sums_up_the_session_with_kernel_byte_counts() {
    let agent = TestAgent::start_default();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut c, _) = l.accept().expect("accept");
        let mut got = Vec::new();
        c.read_to_end(&mut got).expect("read the upload");
        c.write_all(&vec![b'y'; REPLY as usize]).expect("reply");
        got.len() as u64
    });
    let grant = agent.issue_grant("5m");
    let written = agent.temp_dir().join("written.txt");
    let moved = agent.temp_dir().join("moved.txt");
    let script = format!(
        "{} transfer 127.0.0.1:{port} {SEND}; echo hello > {}; mv {} {}",
        testbin(),
        written.display(),
        written.display(),
        moved.display()
    );
    let mark = Marker::new();
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script]);
    assert!(s.wait_for(T).success());
    assert_eq!(server.join().expect("server"), SEND, "the server got the whole upload");

    let r = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "session_report" && audit::str_field(e, "session") == s.id(),
        T,
    );
    assert_eq!(r["end_reason"], "exited", "{r}");
    assert_eq!(r["subject"], "warrant-tests", "{r}");
    assert_eq!(r["reason"], "end-to-end test", "{r}");
    let commands: Vec<&str> = r["commands"].as_array().expect("commands").iter().filter_map(|c| c.as_str()).collect();
    assert!(commands.iter().any(|c| c.contains(&format!("transfer 127.0.0.1:{port} {SEND}"))), "{r}");
    let files: Vec<&str> = r["files_written"].as_array().expect("files").iter().filter_map(|f| f.as_str()).collect();
    assert!(files.contains(&written.to_str().expect("UTF-8")), "{r}");
    // Changes other than writes are in it too, in the words of `file_change.op`.
    let rename = format!("rename {} -> {}", written.display(), moved.display());
    assert!(r["files_changed"].as_array().expect("files_changed").iter().any(|c| c == rename.as_str()), "{r}");
    let remote = r["remotes"]
        .as_array()
        .expect("remotes")
        .iter()
        .find(|t| t["addr"] == "127.0.0.1" && t["port"] == port)
        .unwrap_or_else(|| panic!("no remote 127.0.0.1:{port} in {r}"));
    assert_eq!(remote["connections"], 1, "{r}");
    let (sent, received) = (audit::u64_field(remote, "bytes_sent"), audit::u64_field(remote, "bytes_received"));
    assert!(within_1pct(sent, SEND), "sent {sent}, want {SEND} ±1%");
    assert!(within_1pct(received, REPLY), "received {received}, want {REPLY} ±1%");

    // The socket_close event carries the same counts.
    let close = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "socket_close" && audit::str_field(e, "session") == s.id(),
        T,
    );
    assert_eq!(audit::u64_field(&close, "bytes_sent"), sent, "{close}");

    // And `warrant report` shows it, as JSON and as text.
    let json = agent.cli_ok(&["report", s.id(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("report JSON");
    assert_eq!(v["remotes"], r["remotes"], "{v}");
    let text = agent.cli_ok(&["report", s.id()]);
    assert!(text.contains(&format!("127.0.0.1:{port}  1 connection")), "{text}");
    assert!(text.contains("(exited)"), "{text}");
    assert!(text.contains(&rename), "{text}");
}
