//! Network policy: a grant's `network` rules are enforced in the kernel (cgroup
//! connect4/connect6 on the cgroup v2 root) before any packet leaves, every
//! non-allow match is a `violation` event naming the rule, and `kill` /
//! `kill-session` end the process or the whole tree.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use warrant_tests::workload::testbin;
use warrant_tests::{Marker, TestAgent, audit, poll};

/// Time allowed for an event to reach the audit log.
const T: Duration = Duration::from_secs(10);

/// Writes `body` (the `network:` list) into a policy file in the agent's temp dir.
fn policy_file(agent: &TestAgent, name: &str, max_ttl: &str, body: &str) -> PathBuf {
    let path = agent.temp_dir().join(format!("{name}.yaml"));
    let text = format!("name: {name}\nmax_ttl: {max_ttl}\ndefault: allow\nnetwork:\n{body}");
    std::fs::write(&path, text).expect("write policy file");
    path
}

/// Issues a grant held to `policy`.
fn grant_with(agent: &TestAgent, policy: &std::path::Path, ttl: &str) -> String {
    let policy = policy.to_str().expect("UTF-8 temp path");
    let out = agent.cli_ok(&["grant", "issue", "--subject", "net-tests", "--ttl", ttl, "--policy", policy]);
    out.trim().to_string()
}

/// Runs the test binary's `connect` under `grant` and returns (exit ok, stderr).
fn connect_under(agent: &TestAgent, grant: &str, addr: &str) -> (bool, String) {
    let mark = Marker::new();
    let mut c: Command = agent.exec_command(grant, &mark, &[&testbin(), "connect", addr]);
    let out = c.output().expect("run warrant exec");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Accepts and closes every connection on `l` in the background (the test
/// binary's `connect` reads until EOF), counting them.
fn serve_and_close(l: TcpListener) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&n);
    std::thread::spawn(move || {
        for c in l.incoming() {
            if c.is_ok() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    n
}

fn has_connection(l: &TcpListener) -> bool {
    l.set_nonblocking(true).expect("set_nonblocking");
    let got = poll(Duration::from_millis(300), || l.accept().ok()).is_some();
    l.set_nonblocking(false).expect("set_nonblocking");
    got
}

/// A `deny` rule refuses connect with EPERM before the SYN (the listener never
/// sees a connection), logs a `violation` naming the rule, address and port, and
/// leaves the same connect from an untagged process alone. IPv6 rules work the
/// same way.
#[test]
fn deny_refuses_before_the_syn() {
    let agent = TestAgent::start_default();
    let l4 = TcpListener::bind("127.0.0.1:0").expect("bind v4");
    let p4 = l4.local_addr().expect("addr").port();
    let l6 = TcpListener::bind("[::1]:0").expect("bind v6");
    let p6 = l6.local_addr().expect("addr").port();
    let policy = policy_file(
        &agent,
        "deny",
        "1h",
        &format!("  - {{cidr: 127.0.0.1/32, ports: [{p4}], action: deny}}\n  - {{cidr: '::1/128', ports: [{p6}], action: deny}}\n"),
    );
    let grant = grant_with(&agent, &policy, "2m");

    let (ok, err) = connect_under(&agent, &grant, &format!("127.0.0.1:{p4}"));
    assert!(!ok && err.contains("Operation not permitted"), "tagged connect should get EPERM, got ok={ok} {err}");
    assert!(!has_connection(&l4), "a denied connect must not reach the listener");
    let v = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "violation" && e["port"] == p4 && e["action"] == "deny",
        T,
    );
    assert_eq!(v["rule"], "network[1]", "{v}");
    assert_eq!(v["policy"], "deny", "the policy's name: {v}");
    assert_eq!(v["addr"], "127.0.0.1", "{v}");
    assert_eq!(v["grant"], grant.as_str(), "{v}");

    let (ok, err) = connect_under(&agent, &grant, &format!("[::1]:{p6}"));
    assert!(!ok && err.contains("Operation not permitted"), "IPv6 deny: ok={ok} {err}");
    assert!(!has_connection(&l6), "a denied IPv6 connect must not reach the listener");
    agent.wait_for_event(|e| audit::str_field(e, "kind") == "violation" && e["port"] == p6 && e["family"] == "inet6", T);

    // The same connect from an untagged process is none of warrant's business.
    let _c = std::net::TcpStream::connect(("127.0.0.1", p4)).expect("untagged connect works");
    assert!(has_connection(&l4));
}

/// A `log` rule lets the connection through and flags it as a violation; a
/// destination no rule names falls to the policy default (allow, silently).
#[test]
fn log_allows_and_flags() {
    let agent = TestAgent::start_default();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let other = TcpListener::bind("127.0.0.1:0").expect("bind");
    let other_port = other.local_addr().expect("addr").port();
    let policy = policy_file(&agent, "log", "1h", &format!("  - {{cidr: 127.0.0.0/8, ports: [{port}], action: log}}\n"));
    let grant = grant_with(&agent, &policy, "2m");
    let accepted = serve_and_close(l);
    let _other = serve_and_close(other);

    let (ok, err) = connect_under(&agent, &grant, &format!("127.0.0.1:{port}"));
    assert!(ok, "a log rule allows the connect: {err}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "the listener got the connection");
    let v = agent.wait_for_event(|e| audit::str_field(e, "kind") == "violation" && e["port"] == port, T);
    assert_eq!(v["action"], "log", "{v}");
    let (ok, err) = connect_under(&agent, &grant, &format!("127.0.0.1:{other_port}"));
    assert!(ok, "default allow: {err}");
    agent.wait_for_event(|e| audit::str_field(e, "kind") == "connect" && e["port"] == other_port, T);
    assert!(
        !agent.events().iter().any(|e| audit::str_field(e, "kind") == "violation" && e["port"] == other_port),
        "an allowed connect is not a violation"
    );
}

/// `kill` refuses the connect and kills the process that tried; `kill-session`
/// refuses it and kills the whole tree (a background sleeper included), and the
/// `kill` event says reason `policy` and names the rule.
#[test]
fn kill_and_kill_session_rules() {
    let agent = TestAgent::start_default();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let policy = policy_file(
        &agent,
        "kills",
        "1h",
        &format!(
            "  - {{cidr: 127.0.0.1/32, ports: [{port}], action: kill}}\n  - {{cidr: 127.0.0.2/32, action: kill-session}}\n"
        ),
    );
    let grant = grant_with(&agent, &policy, "2m");

    // kill: the connecting process dies by SIGKILL, having connected nowhere.
    let mark = Marker::new();
    let out = agent
        .exec_command(&grant, &mark, &[&testbin(), "connect", &format!("127.0.0.1:{port}")])
        .output()
        .expect("run warrant exec");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&out.status), Some(9), "{out:?}");
    assert!(!has_connection(&l), "a killed connect must not reach the listener");
    agent.wait_for_event(|e| audit::str_field(e, "kind") == "violation" && e["action"] == "kill", T);

    // kill-session: a shell with a background sleeper tries 127.0.0.2.
    let mark = Marker::new();
    let script = format!("{} sleep 300 & {} connect 127.0.0.2:9; sleep 300", testbin(), testbin());
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script]);
    let started = Instant::now();
    let status = s.wait_for(T);
    assert!(!status.success(), "the session root is killed");
    let gone = poll(T, || mark.pids().is_empty().then_some(()));
    assert!(gone.is_some(), "processes survived kill-session: {:?}", mark.pids());
    let k = agent.wait_for_event(|e| audit::str_field(e, "kind") == "kill" && e["session"] == s.id(), T);
    assert_eq!(k["reason"], "policy", "{k}");
    assert_eq!(k["survivors"], 0, "{k}");
    assert!(k["killed"].as_u64().unwrap_or(0) >= 2, "shell and sleeper at least: {k}");
    assert!(audit::str_field(&k, "by").contains("network[2]"), "{k}");
    assert!(started.elapsed() < T);
}

/// A grant longer than its policy's `max_ttl` is refused with the reason, and a
/// malformed policy is refused naming file, line and field.
#[test]
fn policy_limits_and_errors() {
    let agent = TestAgent::start_default();
    let policy = policy_file(&agent, "short", "1m", "  - {cidr: 10.0.0.0/8, action: deny}\n");
    let out = agent.cli(&[
        "grant", "issue", "--subject", "x", "--ttl", "2m", "--policy", policy.to_str().expect("UTF-8"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("allows at most 1m"), "{err}");

    let bad = policy_file(&agent, "bad", "1h", "  - {cidr: 10.0.0.0/33, action: deny}\n");
    let out = agent.cli(&["grant", "issue", "--subject", "x", "--ttl", "1m", "--policy", bad.to_str().expect("UTF-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("bad.yaml:5: network[0].cidr"), "{err}");
}

/// A live grant's policy can be replaced: a session already running, connecting
/// every 100 ms, is allowed under the first policy and refused (a `deny`
/// violation) under the second, without restarting; the change is a
/// `grant_change` event, and a new policy longer-lived than the grant allows is
/// refused.
#[test]
fn live_policy_swap_applies_to_running_sessions() {
    let agent = TestAgent::start_default();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let _accepted = serve_and_close(l);
    let open = policy_file(&agent, "open", "1h", "  - {cidr: 10.0.0.0/8, action: deny}\n");
    let closed = policy_file(&agent, "closed", "1h", &format!("  - {{cidr: 127.0.0.1/32, ports: [{port}], action: deny}}\n"));
    let grant = grant_with(&agent, &open, "2m");

    let mark = Marker::new();
    let script = format!("while :; do {} connect 127.0.0.1:{port}; sleep 0.1; done", testbin());
    let s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script]);
    agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "connect" && audit::str_field(e, "session") == s.id() && e["port"] == port,
        T,
    );
    assert!(
        !agent.events().iter().any(|e| audit::str_field(e, "kind") == "violation"),
        "nothing is refused under the first policy"
    );

    let out = agent.cli_ok(&["grant", "update", "--grant", &grant, "--policy", closed.to_str().expect("UTF-8")]);
    assert!(out.contains("policy closed now applies"), "{out}");
    let v = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "violation" && audit::str_field(e, "session") == s.id(),
        T,
    );
    assert_eq!(v["action"], "deny", "{v}");
    assert_eq!(v["policy"], "closed", "{v}");
    agent.wait_for_event(|e| audit::str_field(e, "kind") == "grant_change" && e["change"] == "policy replaced", T);

    let short = policy_file(&agent, "short", "1m", "  - {cidr: 10.0.0.0/8, action: deny}\n");
    let out = agent.cli(&["grant", "update", "--grant", &grant, "--policy", short.to_str().expect("UTF-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("allows at most 1m"), "{err}");
}

/// A `drop` rule refuses the connect and destroys the session's established TCP
/// connections: the peer of a connection made earlier sees a reset, a
/// `sockets_dropped` event is logged, and the session's processes live on.
#[test]
fn drop_destroys_open_connections() {
    use std::io::Read;

    let agent = TestAgent::start_default();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let policy = policy_file(&agent, "drop", "1h", "  - {cidr: 127.0.0.2/32, action: drop}\n");
    let grant = grant_with(&agent, &policy, "2m");

    let mark = Marker::new();
    let bin = testbin();
    let script = format!("{bin} connect 127.0.0.1:{port} & sleep 1; {bin} connect 127.0.0.2:9; sleep 60");
    let s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script]);
    let (mut peer, _) = warrant_tests::workload::accept_within(&l, T);
    let mut b = [0u8; 1];
    peer.read_exact(&mut b).expect("the session's first byte");
    peer.set_read_timeout(Some(T)).expect("read timeout");

    let v = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "violation" && audit::str_field(e, "session") == s.id(),
        T,
    );
    assert_eq!(v["action"], "drop", "{v}");
    let err = peer.read(&mut b).expect_err("the connection is destroyed under the peer");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    let d = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "sockets_dropped" && audit::str_field(e, "session") == s.id(),
        T,
    );
    assert!(audit::u64_field(&d, "count") >= 1, "{d}");
    assert!(mark.alive(s.pid()), "drop cuts the network, not the processes");
}

/// `on_expiry: drop`: when the grant expires, the session's TCP connections are
/// destroyed (the peer sees a reset) and new connects are refused, but the processes
/// live on; an operator's kill still ends them.
#[test]
fn on_expiry_drop_cuts_the_network_and_keeps_the_processes() {
    use std::io::Read;

    let agent = TestAgent::start_default();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let path = agent.temp_dir().join("cut.yaml");
    std::fs::write(&path, "name: cut\nmax_ttl: 1h\ndefault: allow\non_expiry: drop\n").expect("write policy");
    let grant = grant_with(&agent, &path, "3s");

    let mark = Marker::new();
    let bin = testbin();
    let script = format!(
        "{bin} connect 127.0.0.1:{port}; echo first-ended; sleep 1; {bin} connect 127.0.0.1:{port}; echo second=$?; sleep 60"
    );
    let s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script]);
    let (mut peer, _) = warrant_tests::workload::accept_within(&l, T);
    let mut b = [0u8; 1];
    peer.read_exact(&mut b).expect("the session's first byte");
    peer.set_read_timeout(Some(Duration::from_secs(15))).expect("read timeout");
    let err = peer.read(&mut b).expect_err("the connection is destroyed at expiry");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

    let second = s.wait_stdout("second=", T);
    assert_ne!(second, "0", "a connect after expiry is refused");
    assert!(!has_connection(&l), "no new connection reached the listener");
    let v = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "violation" && audit::str_field(e, "session") == s.id(),
        T,
    );
    assert_eq!(v["rule"], "on_expiry", "{v}");
    assert!(mark.alive(s.pid()), "the processes live on");
    let live = agent.session(s.id()).expect("session");
    assert_eq!(live["state"], "live", "{live}");

    agent.cli_ok(&["kill", "--session", s.id()]);
    assert!(poll(T, || mark.pids().is_empty().then_some(())).is_some(), "killed after all");
}

/// What a session sends without connect(2) is on the record too: a UDP datagram
/// to an address is a `datagram` event the first time the session sends to that
/// destination (the rest are not events, however many), and a TCP Fast Open
/// (`sendto` with `MSG_FASTOPEN`, which connects and sends in one call) is a
/// `connect` event; a Fast Open to a denied address is refused like a connect,
/// before the SYN, and named in a violation.
#[test]
fn datagrams_and_fast_open_connects_are_recorded_and_decided() {
    let agent = TestAgent::start_default();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let udp_port = udp.local_addr().expect("addr").port();
    udp.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let open = TcpListener::bind("127.0.0.1:0").expect("bind");
    let open_port = open.local_addr().expect("addr").port();
    let denied = TcpListener::bind("127.0.0.1:0").expect("bind");
    let denied_port = denied.local_addr().expect("addr").port();
    let policy = policy_file(&agent, "tfo", "1h", &format!("  - {{cidr: 127.0.0.1/32, ports: [{denied_port}], action: deny}}\n"));
    let grant = grant_with(&agent, &policy, "5m");
    let bin = testbin();
    let script = format!(
        "for i in 1 2 3; do {bin} attempt udp-send 127.0.0.1:{udp_port}; done; \
         {bin} attempt tfo 127.0.0.1:{open_port}; {bin} attempt tfo 127.0.0.1:{denied_port}"
    );
    let mark = Marker::new();
    let out = agent.exec_command(&grant, &mark, &["/bin/sh", "-c", &script]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["udp-send ok", "udp-send ok", "udp-send ok", "tfo ok", "tfo errno 1"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut buf = [0u8; 16];
    for _ in 0..3 {
        udp.recv_from(&mut buf).expect("every allowed datagram arrived");
    }
    assert!(has_connection(&open), "the allowed Fast Open connected");
    assert!(!has_connection(&denied), "the denied Fast Open never reached its peer");

    let v = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "violation" && e["op"] == "connect" && e["port"] == denied_port,
        T,
    );
    assert_eq!((v["rule"].as_str(), v["prevented"].as_bool()), (Some("network[1]"), Some(true)), "{v}");
    let session = audit::str_field(&v, "session").to_owned();
    let c = agent.wait_for_event(|e| audit::is("connect", &session)(e) && e["port"] == open_port, T);
    assert_eq!((c["protocol"].as_str(), c["addr"].as_str()), (Some("tcp"), Some("127.0.0.1")), "{c}");
    let d = agent.wait_for_event(|e| audit::is("datagram", &session)(e) && e["port"] == udp_port, T);
    assert_eq!((d["protocol"].as_str(), d["addr"].as_str(), d["family"].as_str()), (Some("udp"), Some("127.0.0.1"), Some("inet")), "{d}");
    // The session has ended: every event it made is in the log by now.
    agent.wait_for_event(audit::is("session_end", &session), T);
    let datagrams =
        agent.events().iter().filter(|e| audit::is("datagram", &session)(e) && e["port"] == udp_port).count();
    assert_eq!(datagrams, 1, "one event per destination, not per datagram");
}
