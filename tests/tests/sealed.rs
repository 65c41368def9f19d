//! Sealed sessions: routes a hostile root shell inside a session tries to get out of
//! its box, each done exactly as an attacker would, each refused in the kernel with a
//! `violation` naming the rule (issue 10).
//!
//! - the syscall routes: io_uring (whose workers bypass the hooks), `TIOCSTI` into
//!   the terminal, limits and scheduling of the agent, reboot, exec of a memfd, a
//!   Landlock domain of the session's own (which could mute the audit of refusals);
//! - the fork bomb: `max_processes` holds in the kernel, with `refuse` and with
//!   `kill-session`;
//! - the agent's sockets and the daemons that run code for a session (a real tmux
//!   server): unix connects meet self-protection and `unix:` rules in the kernel;
//! - UDP, raw and packet sockets, and io_uring's worker threads, against the network
//!   rules.

use std::path::PathBuf;
use std::time::Duration;

use warrant_tests::workload::testbin;
use warrant_tests::{Marker, TestAgent, audit, procfs};

const T: Duration = Duration::from_secs(15);

fn policy_file(agent: &TestAgent, name: &str, extra: &str) -> PathBuf {
    let path = agent.temp_dir().join(format!("{name}.yaml"));
    std::fs::write(&path, format!("name: {name}\nmax_ttl: 1h\ndefault: allow\n{extra}")).expect("write policy");
    path
}

fn grant_with(agent: &TestAgent, policy: &std::path::Path) -> String {
    let policy = policy.to_str().expect("UTF-8 temp path");
    agent.cli_ok(&["grant", "issue", "--subject", "sealed-tests", "--ttl", "5m", "--policy", policy]).trim().to_string()
}

/// The session's id, from its `session_start` in the log.
fn session_of(agent: &TestAgent, grant: &str) -> String {
    let start = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "session_start" && audit::str_field(e, "grant") == grant,
        T,
    );
    audit::str_field(&start, "session").to_owned()
}

/// `NAME VALUE` of /proc/PID/limits' "Max open files" line, soft limit.
fn nofile_limit(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let line = text.lines().find(|l| l.starts_with("Max open files")).expect("open files line").to_owned();
    line.split_whitespace().nth(3).unwrap_or_default().to_owned()
}

/// The nice value (field 19 of /proc/PID/stat).
fn nice_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let after = &text[text.rfind(')').expect("comm end") + 2..];
    after.split_whitespace().nth(16).unwrap_or_default().to_owned()
}

#[test]
fn a_root_session_cannot_use_io_uring_tiocsti_or_starve_the_agent() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("5m");
    let a = agent.pid().to_string();
    let (limit_before, nice_before) = (nofile_limit(agent.pid()), nice_of(agent.pid()));
    let bin = testbin();
    let attempts: [(&str, &str, &str, &str); 12] = [
        ("io_uring", "", "errno 38", "io_uring_setup"),
        ("landlock-nest", "", "errno 38", "landlock_create_ruleset"),
        ("landlock-mute", "", "errno 38", "landlock_restrict_self"),
        ("tiocsti", "", "errno 1", "ioctl"),
        ("prlimit", &a, "errno 1", "prlimit64"),
        ("renice", &a, "errno 1", "setpriority"),
        ("renice-user", "", "errno 1", "setpriority"),
        ("affinity", &a, "errno 1", "sched_setaffinity"),
        ("reboot", "", "errno 1", "reboot"),
        ("memfd-exec", "/bin/true", "errno 1", "execveat"),
        ("memfd-proc-exec", "/bin/true", "killed", "exec"),
        ("renice", "0", "ok", ""),
    ];
    // An attempt the kernel answers by killing the process prints nothing itself.
    let script: Vec<String> = attempts
        .iter()
        .map(|(what, arg, _, _)| format!("{bin} attempt {what} {arg} || echo \"{what} killed\""))
        .collect();
    let out = agent.exec_command(&grant, &Marker::new(), &["/bin/sh", "-c", &script.join("; ")]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<&str> = stdout.lines().collect();
    let want: Vec<String> = attempts.iter().map(|(what, _, outcome, _)| format!("{what} {outcome}")).collect();
    assert_eq!(got, want, "every attempt on something outside the session is refused; renicing itself is not");

    assert!(procfs::alive(agent.pid()), "the agent survived");
    assert_eq!(nofile_limit(agent.pid()), limit_before, "the agent's open-file limit is untouched");
    assert_eq!(nice_of(agent.pid()), nice_before, "the agent's priority is untouched");

    let session = session_of(&agent, &grant);
    let ops: Vec<&str> = attempts.iter().map(|a| a.3).filter(|op| !op.is_empty()).collect();
    let violations = agent.wait_until("a violation for every refused attempt", T, |events| {
        let v: Vec<serde_json::Value> = events
            .iter()
            .filter(|e| audit::str_field(e, "kind") == "violation" && audit::str_field(e, "session") == session)
            .cloned()
            .collect();
        ops.iter().all(|op| v.iter().any(|e| audit::str_field(e, "op") == *op)).then_some(v)
    });
    for v in &violations {
        assert_eq!(v["rule"], "self-protection", "{v}");
        assert_eq!(v["prevented"], true, "{v}");
        assert!(!audit::str_field(v, "detail").is_empty(), "a refusal says what it protects: {v}");
    }
}

#[test]
fn a_fork_bomb_meets_max_processes_in_the_kernel() {
    let agent = TestAgent::start_default();
    let grant = grant_with(&agent, &policy_file(&agent, "bomb", "max_processes: 40\n"));
    let bin = testbin();
    // Held to the end: dropping a marker kills what carries it.
    let mark = Marker::new();
    let mut session = agent.exec(&grant, &mark, &[&bin, "bomb", "--for", "3", "--cap", "3000"]);
    let id = session.id().to_owned();
    let out = session.wait_stdout("forks", T);
    let status = session.wait_for(T);
    assert!(status.success(), "the bomb's root lives on under `refuse`: {status:?}");
    let field = |name: &str| -> u64 {
        out.split_whitespace()
            .skip_while(|w| *w != name)
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bomb output: {out}"))
    };
    assert!(field("refused") > 2000, "forks over the limit were refused: {out}");
    // 40 tasks: the root, 39 children; the `warrant exec` image is the root.
    assert!(field("ran") <= 40, "no more than 40 processes of the bomb ever ran: {out}");
    assert!(field("ran") >= 30, "the bomb did run up to the limit: {out}");

    let v = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "violation" && audit::str_field(e, "session") == id && e["op"] == "fork",
        T,
    );
    assert_eq!(v["rule"], "max_processes", "{v}");
    assert_eq!(v["action"], "deny", "{v}");
    assert!(audit::str_field(&v, "detail").contains("limit of 40 tasks"), "{v}");
    let n = agent.events().iter().filter(|e| audit::str_field(e, "session") == id && e["op"] == "fork").count();
    assert_eq!(n, 1, "only the first refusal is an event; the rest are counted");
}

#[test]
fn max_processes_with_kill_session_ends_the_tree() {
    let agent = TestAgent::start_default();
    let grant = grant_with(&agent, &policy_file(&agent, "bomb-kill", "max_processes: 30\non_max_processes: kill-session\n"));
    let bin = testbin();
    let mark = Marker::new();
    let mut session = agent.exec(&grant, &mark, &[&bin, "bomb", "--for", "5", "--cap", "3000"]);
    let id = session.id().to_owned();
    let status = session.wait_for(T);
    assert!(!status.success(), "the session was killed: {status:?}");
    let kill = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "kill" && audit::str_field(e, "session") == id,
        T,
    );
    assert_eq!(kill["reason"], "policy", "{kill}");
    assert_eq!(kill["survivors"], 0, "{kill}");
    let v = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "violation" && audit::str_field(e, "session") == id && e["op"] == "fork",
        T,
    );
    assert_eq!(v["action"], "kill-session", "{v}");
    let cgroup = agent.cgroup_root().join(&id);
    let left = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
    assert!(left.trim().is_empty(), "nothing of the session is left: {left}");
}

/// From inside a root session, the agent and the door refuse every call: a second
/// session under another grant (which would re-tag the caller out of its own
/// session, so it outlives the kill), issuing a grant, killing another session,
/// even watching. The other session lives on; each refusal is a violation.
#[test]
fn a_session_cannot_use_the_agent_or_the_door() {
    let signer = warrant_tests::Signer::new();
    let agent = TestAgent::start(warrant_tests::AgentOptions {
        door: true,
        grant_public_key: Some(signer.public_key()),
        ..Default::default()
    });
    // A valid token for root on this host: the door would honour it from outside.
    let host = warrant_tests::tokens::host_name();
    let (token, _) = signer.sign("escape", &["--subject", "user:root", "--host", &host, "--ttl", "10m", "--reason", "escape"]);
    let grant = agent.issue_grant("5m");
    let other_grant = agent.issue_grant("5m");
    let other_mark = Marker::new();
    let mut other = agent.exec(&other_grant, &other_mark, &["sleep", "60"]);
    let warrant = warrant_tests::bins::warrant().display().to_string();
    let sock = agent.socket().display().to_string();
    let door = agent.door_socket().display().to_string();
    let calls = [
        format!("{warrant} --socket {sock} exec --grant {other_grant} -- true"),
        format!("{warrant} --socket {sock} grant issue --subject mallory --ttl 1h --reason escape"),
        format!("{warrant} --socket {sock} kill --session {}", other.id()),
        format!("{warrant} --socket {sock} status"),
        format!("{warrant} --socket {door} exec --token {} -- true", token.display()),
    ];
    // Each call's exit status and first error line, one per line.
    let err = agent.temp_dir().join("err").display().to_string();
    let script: Vec<String> = calls.iter().map(|c| format!("{c} >/dev/null 2>{err}; echo \"$? $(head -1 {err})\"")).collect();
    let mark = Marker::new();
    let out = agent.exec_command(&grant, &mark, &["/bin/sh", "-c", &script.join("; ")]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), calls.len(), "{stdout}");
    for (call, line) in calls.iter().zip(&lines) {
        assert!(!line.starts_with("0 "), "{call} was let through: {line}");
        // The kernel refuses the connect itself (cgroup connect_unix); the agent's
        // own check of the caller's tag stays behind it.
        assert!(line.contains("the kernel refused the connect to the agent socket"), "{call}: {line}");
    }
    assert!(other.try_wait_for(Duration::from_millis(100)).is_none(), "the other session is alive");
    assert_eq!(agent.grants().len(), 2, "no grant was issued from inside the session");

    let session = session_of(&agent, &grant);
    agent.wait_until("a violation for every refused connect", T, |events| {
        let refused: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| audit::str_field(e, "session") == session && e["op"] == "connect" && e["family"] == "unix")
            .collect();
        let on = |path: &str| refused.iter().filter(|v| v["addr"] == path).count();
        // `exec` goes to the launch socket beside each (`.launch`): the agent's own too.
        let (sock_launch, door_launch) = (format!("{sock}.launch"), format!("{door}.launch"));
        (on(&sock) + on(&sock_launch) >= calls.len() - 1
            && on(&sock_launch) >= 1
            && on(&door_launch) >= 1)
            .then_some(())
    });
    let v = agent.wait_for_event(|e| audit::str_field(e, "session") == session && e["addr"] == sock.as_str(), T);
    assert_eq!(v["rule"], "self-protection", "{v}");
    assert_eq!(v["detail"], "the warrant agent's own socket", "{v}");
    assert_eq!(v["prevented"], true, "{v}");
    // The agent still serves the operator outside.
    agent.cli_ok(&["kill", "--session", other.id()]);
    let _ = other.wait_for(T);
}

/// A root session cannot rewrite the host's control files or the agent's own, nor
/// read the raw disk, and it holds no raw-I/O, ptrace or module capability: each is refused (Landlock, or the
/// capabilities the session dropped), and the Landlock refusals are violations.
#[test]
fn a_root_session_cannot_rewrite_the_host_or_the_agent() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("5m");
    let core_before = std::fs::read_to_string("/proc/sys/kernel/core_pattern").expect("read core_pattern");
    let state = agent.state_dir().join("state.json").display().to_string();
    let key = agent.state_dir().join("audit.key").display().to_string();
    let environ = format!("/proc/{}/environ", agent.pid());
    let disk = std::fs::read_dir("/sys/class/block")
        .expect("list block devices")
        .filter_map(Result::ok)
        .map(|e| format!("/dev/{}", e.file_name().to_string_lossy()))
        .find(|d| std::path::Path::new(d).exists())
        .expect("a block device");
    // A new key for root's next ssh login, or the .ssh directory itself.
    let ssh = if std::path::Path::new("/root/.ssh").is_dir() {
        format!("/root/.ssh/authorized_keys.warrant-test-{}", std::process::id())
    } else {
        "/root/.ssh".to_owned()
    };
    let attempts: Vec<(&str, &str, &str, &str)> = vec![
        ("open-wr", "/proc/sys/kernel/core_pattern", "errno 13", "sysctl"),
        ("open-wr", "/sys/kernel/reboot/mode", "errno 13", "sysfs"),
        ("open-wr", &state, "errno 13", "warrant"),
        ("open-rd", &state, "errno 13", "warrant"),
        ("open-rd", &key, "errno 13", "warrant"),
        // Raw I/O (/dev/mem, /dev/port, iopl: absent from this kernel), ptrace,
        // modules, reboot, audit control and reading, perf and BPF: gone from the
        // effective and bounding sets.
        ("caps-dropped", "16,17,19,22,30,37,38,39", "ok", ""),
        // Audit off would silence Landlock's reports, on which file kill rules rest.
        ("audit-off", "", "errno 1", ""),
        ("open-rd", &disk, "errno 13", "block-device"),
        ("open-rd", "/proc/sys/kernel/core_pattern", "ok", ""),
        // Code the host would run later, as root, outside the session.
        ("create", "/etc/ld.so.preload", "errno 13", "loader"),
        ("create", "/etc/cron.d/warrant-test-escape", "errno 13", "cron"),
        ("create", "/var/spool/cron", "errno 13", "cron"),
        ("create", "/etc/systemd/system/warrant-test-escape.service", "errno 13", "systemd"),
        ("create", "/usr/lib/systemd/system/warrant-test-escape.service", "errno 13", "systemd"),
        ("open-wr", "/etc/ld.so.cache", "errno 13", "loader"),
        ("create", "/etc/profile.d/warrant-test-escape.sh", "errno 13", "shell"),
        ("open-wr", "/etc/bash.bashrc", "errno 13", "shell"),
        // Root's own: what root's next login (shell or ssh) runs or trusts.
        ("open-wr", "/root/.bashrc", "errno 13", "shell"),
        ("create", "/root/.bash_profile", "errno 13", "shell"),
        ("create", &ssh, "errno 13", "ssh"),
        // The kernel lets a root session read a non-dumpable root process's
        // environ even without CAP_SYS_PTRACE; the agent shows an empty one.
        ("read-bytes", &environ, "0 bytes", ""),
    ];
    let bin = testbin();
    let script: Vec<String> = attempts.iter().map(|(what, arg, _, _)| format!("{bin} attempt {what} {arg}")).collect();
    let mark = Marker::new();
    let out = agent.exec_command(&grant, &mark, &["/bin/sh", "-c", &script.join("; ")]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<&str> = stdout.lines().collect();
    let want: Vec<String> = attempts.iter().map(|(what, _, outcome, _)| format!("{what} {outcome}")).collect();
    assert_eq!(got, want, "{attempts:?}");
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/core_pattern").expect("read"), core_before);
    for (what, path, _, _) in &attempts {
        if *what == "create" {
            assert!(!std::path::Path::new(path).exists(), "{path} was not created");
        }
    }

    let session = session_of(&agent, &grant);
    let ops: Vec<&str> = attempts.iter().map(|a| a.3).filter(|op| !op.is_empty()).collect();
    agent.wait_until("a violation for every Landlock refusal", T, |events| {
        let v: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| audit::str_field(e, "kind") == "violation" && audit::str_field(e, "session") == session)
            .collect();
        ops.iter()
            .all(|op| v.iter().any(|e| audit::str_field(e, "op") == *op && e["rule"] == "self-protection"))
            .then_some(())
    });
}

/// A policy may grant one of the host's run-later places on purpose (a DBA who must
/// edit cron); the others stay refused.
#[test]
fn a_policy_may_loosen_cron_on_purpose() {
    let agent = TestAgent::start_default();
    let policy = policy_file(&agent, "cron", "files:\n  - {path: /etc/cron.d, access: write, action: allow}\n");
    let grant = grant_with(&agent, &policy);
    let job = format!("/etc/cron.d/warrant-test-{}", std::process::id());
    let bin = testbin();
    let script = format!("{bin} attempt create {job}; {bin} attempt create /etc/ld.so.preload");
    let out = agent.exec_command(&grant, &Marker::new(), &["/bin/sh", "-c", &script]).output().expect("run");
    let created = std::path::Path::new(&job).exists();
    let _ = std::fs::remove_file(&job);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["create ok", "create errno 13"], "{stdout}");
    assert!(created, "the granted cron job was written");
    assert!(!std::path::Path::new("/etc/ld.so.preload").exists());
}

/// The network rules hold for datagrams too, and a root session cannot go around
/// them with raw or packet sockets; an untagged process on the host is untouched.
#[test]
fn udp_sends_and_raw_sockets_meet_the_network_rules() {
    let agent = TestAgent::start_default();
    let listener = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let port = listener.local_addr().expect("addr").port();
    listener.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
    let policy = policy_file(
        &agent,
        "udp",
        &format!("network: [{{cidr: 127.0.0.1/32, ports: [{port}], action: deny}}]\n"),
    );
    let grant = grant_with(&agent, &policy);
    let to = format!("127.0.0.1:{port}");
    let bin = testbin();
    let attempts = [("udp-send", to.as_str(), "errno 1"), ("raw-socket", "", "errno 1"), ("packet-socket", "", "errno 1")];
    let script: Vec<String> = attempts.iter().map(|(what, arg, _)| format!("{bin} attempt {what} {arg}")).collect();
    let mark = Marker::new();
    let out = agent.exec_command(&grant, &mark, &["/bin/sh", "-c", &script.join("; ")]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<&str> = stdout.lines().collect();
    let want: Vec<String> = attempts.iter().map(|(what, _, outcome)| format!("{what} {outcome}")).collect();
    assert_eq!(got, want);
    let mut buf = [0u8; 16];
    assert!(listener.recv_from(&mut buf).is_err(), "no datagram reached the denied peer");

    // Outside the session the same send goes through.
    let outside = std::process::Command::new(&bin).args(["attempt", "udp-send", &to]).output().expect("run");
    assert_eq!(String::from_utf8_lossy(&outside.stdout).trim(), "udp-send ok");
    let (n, _) = listener.recv_from(&mut buf).expect("the untagged datagram arrived");
    assert_eq!(&buf[..n], b"exfil");

    let session = session_of(&agent, &grant);
    agent.wait_until("violations for the datagram and both sockets", T, |events| {
        let v: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| audit::str_field(e, "kind") == "violation" && audit::str_field(e, "session") == session)
            .collect();
        let send = v.iter().any(|e| e["op"] == "sendmsg" && e["rule"] == "network[1]" && e["port"] == port);
        let sockets = v.iter().filter(|e| e["op"] == "socket" && e["rule"] == "self-protection").count();
        (send && sockets == 2).then_some(())
    });
}

/// io_uring, when a policy allows it, cannot walk around the network rules: the
/// io-wq worker an `IOSQE_ASYNC` connect runs on, and an SQPOLL thread, are created by
/// the kernel (no `fork`), yet they carry the session's tag, so the connect hook
/// refuses them as it refuses the process. Untagged, the same connects go through.
/// Every submission is an `io_uring` event (op, fd, user_data).
#[test]
fn io_uring_workers_carry_the_tag() {
    let agent = TestAgent::start_default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let policy = policy_file(
        &agent,
        "uring",
        &format!("io_uring: allow\nnetwork: [{{cidr: 127.0.0.1/32, ports: [{port}], action: deny}}]\n"),
    );
    let grant = grant_with(&agent, &policy);
    let to = format!("127.0.0.1:{port}");
    let bin = testbin();
    let script = format!("{bin} uring-connect {to}; {bin} uring-connect {to} --sqpoll");
    let mark = Marker::new();
    let out = agent.exec_command(&grant, &mark, &["/bin/sh", "-c", &script]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["uring-connect errno 1", "uring-connect errno 1"]);
    for extra in [&[][..], &["--sqpoll"][..]] {
        let outside = std::process::Command::new(&bin).arg("uring-connect").arg(&to).args(extra).output().expect("run");
        assert_eq!(String::from_utf8_lossy(&outside.stdout).trim(), "uring-connect ok", "untagged {extra:?}");
    }
    let session = session_of(&agent, &grant);
    agent.wait_until("two refused connects", T, |events| {
        let n = events
            .iter()
            .filter(|e| audit::str_field(e, "session") == session && e["op"] == "connect" && e["port"] == port)
            .count();
        (n >= 2).then_some(())
    });
    // And what the session submitted is on the record: both connects, one from the
    // process and one from its SQPOLL thread (which io_uring_enter never ran for).
    let submitted = agent.wait_until("two io_uring connect submissions", T, |events| {
        let subs: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| audit::is("io_uring", &session)(e) && e["op"] == "connect" && e["opcode"] == 16)
            .collect();
        (subs.len() >= 2).then(|| subs.into_iter().cloned().collect::<Vec<_>>())
    });
    for e in &submitted {
        assert_eq!((e["user_data"].as_u64(), e["fixed_file"].as_bool()), (Some(1), Some(false)), "{e}");
        assert!(e["fd"].as_i64().is_some_and(|fd| fd >= 0), "{e}");
    }
    let comms: Vec<&str> = submitted.iter().filter_map(|e| e["comm"].as_str()).collect();
    assert!(comms.iter().any(|c| c.starts_with("iou-sqp")), "no submission from the SQPOLL thread: {comms:?}");
    assert!(comms.iter().any(|c| !c.starts_with("iou-sqp")), "no submission from the process: {comms:?}");
}

/// A unix connect through io_uring has no `connect(2)` return to check the peer
/// at, so a symlink to a refused socket would pass the name check alone. The
/// connection being queued on the listener is seen (`sk_data_ready`, in the
/// worker's or the SQPOLL thread's context): the socket's own name meets the rules
/// and the process dies before the completion reaches it. The name itself is
/// refused at the cgroup hook as for any connect.
#[test]
fn io_uring_unix_connects_meet_the_peers_name() {
    use std::os::unix::net::UnixListener;
    let agent = TestAgent::start_default();
    let id = std::process::id();
    // Under self-protection's "/tmp/tmux-" prefix, as a tmux server's socket is.
    let spawner = format!("/tmp/tmux-warrant-uring-{id}.sock");
    let _ = std::fs::remove_file(&spawner);
    let listener = UnixListener::bind(&spawner).expect("bind spawner-like socket");
    let allowed = agent.temp_dir().join("plain.sock").display().to_string();
    let _plain = UnixListener::bind(&allowed).expect("bind");
    let alias = agent.temp_dir().join("innocent.sock").display().to_string();
    let policy = policy_file(&agent, "uring-unix", "io_uring: allow\n");
    let grant = grant_with(&agent, &policy);
    let bin = testbin();
    let script = format!(
        "{bin} uring-connect {allowed}; {bin} uring-connect {spawner}; ln -s {spawner} {alias}; \
         {bin} uring-connect {alias}; echo \"worker $?\"; {bin} uring-connect {alias} --sqpoll; echo \"sqpoll $?\""
    );
    let mark = Marker::new();
    let out = agent.exec_command(&grant, &mark, &["/bin/sh", "-c", &script]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["uring-connect ok", "uring-connect errno 1", "worker 137", "sqpoll 137"],
        "an allowed name connects, the refused name is refused, and each connect through the alias is killed"
    );
    let session = session_of(&agent, &grant);
    let killed = agent.wait_until("two io_uring connects through the alias", T, |events| {
        let v: Vec<serde_json::Value> = events
            .iter()
            .filter(|e| {
                audit::is("violation", &session)(e)
                    && e["addr"] == spawner.as_str()
                    && audit::str_field(e, "detail").contains("did not come from connect(2)")
            })
            .cloned()
            .collect();
        (v.len() >= 2).then_some(v)
    });
    for v in &killed {
        assert_eq!((v["op"].as_str(), v["rule"].as_str(), v["prevented"].as_bool()), (Some("connect"), Some("self-protection"), Some(true)), "{v}");
    }
    drop(listener);
    let _ = std::fs::remove_file(&spawner);
}

/// Unix sockets, in the kernel (cgroup `connect_unix`/`sendmsg_unix`): a session
/// cannot reach a process spawner started outside it (a real tmux server here),
/// nor any name its policy's `unix:` rules deny, by connect or by datagram, nor
/// get around the names with a relative or non-canonical spelling; a policy may
/// allow a spawner on purpose but never the agent's own socket; every connect is in
/// the log.
#[test]
fn unix_sockets_meet_self_protection_and_the_policy() {
    use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
    use std::os::linux::net::SocketAddrExt;

    let agent = TestAgent::start_default();
    let dir = agent.temp_dir().to_path_buf();
    let id = std::process::id();
    let path = |name: &str| dir.join(name).display().to_string();
    let (allowed, denied, killer, dgram) = (path("allowed.sock"), path("denied.sock"), path("kill.sock"), path("dgram.sock"));
    let _listeners: Vec<UnixListener> =
        [&allowed, &denied, &killer].iter().map(|p| UnixListener::bind(p).expect("bind")).collect();
    let _dgram = UnixDatagram::bind(&dgram).expect("bind dgram");
    let abstract_name = format!("warrant-test-{id}-denied");
    let _abstract = UnixListener::bind_addr(&SocketAddr::from_abstract_name(&abstract_name).expect("abstract"))
        .expect("bind abstract");
    // Under self-protection's "/tmp/tmux-" prefix, as a tmux server's socket is.
    let spawner = format!("/tmp/tmux-warrant-test-{id}.sock");
    let _ = std::fs::remove_file(&spawner);
    let _spawner = UnixListener::bind(&spawner).expect("bind spawner-like socket");

    // A real tmux server, outside any session.
    let tmux_sock = format!("/tmp/tmux-warrant-test-{id}/server");
    std::fs::create_dir_all(format!("/tmp/tmux-warrant-test-{id}")).expect("tmux dir");
    let started = std::process::Command::new("tmux")
        .args(["-S", &tmux_sock, "new-session", "-d", "sleep 120"])
        .status()
        .expect("run tmux");
    assert!(started.success(), "tmux server started");
    let marker = dir.join("tmux-ran-this");

    let sock = agent.socket().display().to_string();
    let policy = policy_file(
        &agent,
        "unix-rules",
        &format!(
            "unix:\n  - {{path: {denied}, action: deny}}\n  - {{abstract: {abstract_name}, action: deny}}\n  - {{path: {dgram}, action: deny}}\n  - {{path: {killer}, action: kill-session}}\n"
        ),
    );
    let grant = grant_with(&agent, &policy);
    let bin = testbin();
    let rel_dir = dir.display().to_string();
    let attempts: Vec<(String, &str)> = vec![
        (format!("{bin} unix connect {allowed}"), "ok"),
        (format!("{bin} unix connect {denied}"), "errno 1"),
        (format!("{bin} unix connect @{abstract_name}"), "errno 1"),
        (format!("{bin} unix sendto {dgram}"), "errno 1"),
        (format!("{bin} unix connect {sock}"), "errno 1"),
        (format!("{bin} unix connect {spawner}"), "errno 1"),
        (format!("{bin} unix connect {rel_dir}//denied.sock"), "errno 1"),
        (format!("{bin} unix connect {rel_dir}/./denied.sock"), "errno 1"),
        (format!("cd {rel_dir} && {bin} unix connect denied.sock"), "errno 1"),
    ];
    let tmux = format!("tmux -S {tmux_sock} new-window 'touch {}' 2>/dev/null; echo \"tmux $?\"", marker.display());
    // Around the name check: a symlink the session makes to the spawner's socket.
    // The connect reaches it, and the process dies before connect() returns.
    let alias = path("innocent.sock");
    let symlink = format!("ln -s {spawner} {alias}; {bin} unix connect {alias}; echo \"alias $?\"");
    // The same for a datagram: the name passed is allowed, the socket it resolves
    // to is denied. The datagram is delivered (no hook sits between the kernel's
    // lookup and the queue), and the sender dies before sendto() returns.
    let dalias = path("innocent-dgram.sock");
    let dsymlink = format!("ln -s {dgram} {dalias}; {bin} unix sendto {dalias}; echo \"dgram alias $?\"");
    let script: Vec<String> =
        attempts.iter().map(|(c, _)| format!("( {c} )")).chain([tmux, symlink, dsymlink]).collect();
    let mark = Marker::new();
    let out = agent.exec_command(&grant, &mark, &["/bin/sh", "-c", &script.join("; ")]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), attempts.len() + 3, "{stdout}");
    for ((call, want), line) in attempts.iter().zip(&lines) {
        assert!(line.ends_with(want), "{call}: got {line:?}, want {want}");
    }
    assert_ne!(lines[attempts.len()], "tmux 0", "tmux from the session must fail");
    assert_eq!(lines[attempts.len() + 1], "alias 137", "the process that connected through the symlink was SIGKILLed before it could print");
    assert_eq!(lines[attempts.len() + 2], "dgram alias 137", "the process that sent through the symlink was SIGKILLed before it could print");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!marker.exists(), "the tmux server outside ran a command for the session");

    let session = session_of(&agent, &grant);
    let of_session = |e: &serde_json::Value| audit::str_field(e, "session") == session;
    let c = agent.wait_for_event(|e| of_session(e) && audit::str_field(e, "kind") == "connect" && e["remote_addr"] == allowed.as_str(), T);
    assert_eq!(c["family"], "unix", "{c}");
    assert_eq!(c["protocol"], "stream", "{c}");
    assert_eq!(c["peer"], allowed.as_str(), "the name the peer is bound to: {c}");
    assert_eq!(c["peer_pid"], id, "the listening process: {c}");
    assert!(!audit::str_field(&c, "peer_comm").is_empty(), "{c}");
    let violation = |addr: &str| {
        agent.wait_for_event(|e| of_session(e) && audit::str_field(e, "kind") == "violation" && e["addr"] == addr, T)
    };
    let a = violation(&alias);
    assert_eq!(a["action"], "deny", "{a}");
    assert_eq!(a["rule"], "self-protection", "{a}");
    assert!(audit::str_field(&a, "detail").contains(&format!("reached {spawner}")), "{a}");
    assert_eq!(violation(&denied)["rule"], "unix[1]");
    assert_eq!(violation(&format!("@{abstract_name}"))["rule"], "unix[2]");
    let d = violation(&dgram);
    assert_eq!((d["rule"].as_str(), d["op"].as_str()), (Some("unix[3]"), Some("sendmsg")), "{d}");
    let da = agent.wait_for_event(
        |e| of_session(e) && audit::str_field(e, "kind") == "violation" && audit::str_field(e, "detail").contains("a datagram reached"),
        T,
    );
    assert_eq!((da["rule"].as_str(), da["op"].as_str(), da["addr"].as_str()), (Some("unix[3]"), Some("sendmsg"), Some(dgram.as_str())), "{da}");
    assert_eq!(da["prevented"], false, "the datagram was delivered: {da}");
    assert_eq!(violation(&sock)["rule"], "self-protection");
    let s = violation(&spawner);
    assert_eq!(s["rule"], "self-protection", "{s}");
    assert!(audit::str_field(&s, "detail").contains("tmux"), "{s}");
    let t = violation(&tmux_sock);
    assert_eq!(t["rule"], "self-protection", "{t}");
    let rel = violation("denied.sock");
    assert!(audit::str_field(&rel, "detail").contains("relative or non-canonical"), "{rel}");
    violation(&format!("{rel_dir}//denied.sock"));

    // A policy may allow a spawner on purpose, never the agent's socket; and a
    // kill-session rule ends the session at the connect.
    let loose = policy_file(
        &agent,
        "unix-loose",
        &format!("unix:\n  - {{path: {spawner}, action: allow}}\n  - {{path: {sock}, action: allow}}\n  - {{path: {killer}, action: kill-session}}\n"),
    );
    let grant2 = grant_with(&agent, &loose);
    let script = format!("{bin} unix connect {spawner}; {bin} unix connect {sock}; {bin} unix connect {killer}; sleep 5; echo survived");
    let mark2 = Marker::new();
    let out = agent.exec_command(&grant2, &mark2, &["/bin/sh", "-c", &script]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some(format!("{spawner} ok").as_str()), "{stdout}");
    assert_eq!(lines.get(1).copied(), Some(format!("{sock} errno 1").as_str()), "{stdout}");
    assert!(!stdout.contains("survived"), "the kill-session rule ended the session: {stdout}");
    let session2 = session_of(&agent, &grant2);
    agent.wait_for_event(
        |e| audit::str_field(e, "session") == session2 && audit::str_field(e, "kind") == "kill",
        T,
    );

    let _ = std::process::Command::new("tmux").args(["-S", &tmux_sock, "kill-server"]).status();
    let _ = std::fs::remove_dir_all(format!("/tmp/tmux-warrant-test-{id}"));
    let _ = std::fs::remove_file(&spawner);
}

/// `bind:` rules hold in the kernel (cgroup bind4/bind6), a bind no rule names is
/// allowed, and once a grant under `on_expiry: drop` has expired the session opens
/// no new listener at all.
#[test]
fn bind_rules_hold_and_an_expired_drop_session_gets_no_listener() {
    let free = || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let (ok, denied) = (free(), free());
    let agent = TestAgent::start_default();
    let policy = policy_file(
        &agent,
        "binds",
        &format!("bind:\n  - {{cidr: 127.0.0.1/32, ports: [{ok}], action: allow}}\n  - {{cidr: 0.0.0.0/0, ports: [\"1-65535\"], action: deny}}\n"),
    );
    let grant = grant_with(&agent, &policy);
    let bin = testbin();
    let script = format!(
        "{bin} attempt bind 127.0.0.1:{ok}; {bin} attempt bind 127.0.0.1:{denied}; {bin} attempt bind 127.0.0.1:0"
    );
    let mark = Marker::new();
    let out = agent.exec_command(&grant, &mark, &["/bin/sh", "-c", &script]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["bind ok", "bind errno 1", "bind ok"], "{stdout}");
    let session = session_of(&agent, &grant);
    let v = agent.wait_for_event(
        |e| audit::str_field(e, "session") == session && audit::str_field(e, "kind") == "violation" && e["op"] == "bind",
        T,
    );
    assert_eq!((v["rule"].as_str(), v["port"].as_u64()), (Some("bind[2]"), Some(u64::from(denied))), "{v}");
    assert_eq!(v["prevented"], true, "{v}");
    // Untagged, the same bind is fine.
    assert!(std::net::TcpListener::bind(("127.0.0.1", denied)).is_ok(), "an untagged process binds the port");

    let cut = policy_file(&agent, "cut-binds", "on_expiry: drop\n");
    let path = cut.to_str().expect("UTF-8");
    let short = agent.cli_ok(&["grant", "issue", "--subject", "sealed-tests", "--ttl", "2s", "--policy", path]).trim().to_string();
    let mark2 = Marker::new();
    let script = format!("{bin} attempt bind 127.0.0.1:0; sleep 3; {bin} attempt bind 127.0.0.1:0");
    let out = agent.exec_command(&short, &mark2, &["/bin/sh", "-c", &script]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["bind ok", "bind errno 1"], "{stdout}");
    let session = session_of(&agent, &short);
    let v = agent.wait_for_event(
        |e| audit::str_field(e, "session") == session && e["op"] == "bind" && e["rule"] == "on_expiry",
        T,
    );
    assert_eq!(v["action"], "deny", "{v}");
}

/// An exec-denied program run through the dynamic loader (`ld.so PROGRAM`, which
/// maps it with no exec of its own) is decided on the program its argv names: the
/// process is killed and the violation names the program and the loader.
#[test]
fn a_denied_program_run_through_the_loader_is_killed() {
    let agent = TestAgent::start_default();
    let policy = policy_file(&agent, "no-sleep", "exec:\n  - {path: /usr/bin/sleep, action: deny}\n");
    let grant = grant_with(&agent, &policy);
    let mark = Marker::new();
    let script = "/usr/bin/sleep 1; echo direct=$?; /lib64/ld-linux-x86-64.so.2 /usr/bin/sleep 30; echo loader=$?";
    let started = std::time::Instant::now();
    let out = agent.exec_command(&grant, &mark, &["/bin/sh", "-c", script]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("direct=126"), "a direct exec is refused (EACCES): {stdout}");
    assert!(stdout.contains("loader=137"), "the loader's run of it is killed: {stdout}");
    assert!(started.elapsed() < Duration::from_secs(20), "killed, not run out");
    let session = session_of(&agent, &grant);
    let v = agent.wait_for_event(
        |e| audit::str_field(e, "session") == session && e["op"] == "exec" && e["path"] == "/usr/bin/sleep" && e["action"] == "kill",
        T,
    );
    assert_eq!(v["rule"], "exec[1]", "{v}");
    assert!(audit::str_field(&v, "detail").contains("dynamic loader"), "{v}");
    agent.wait_for_event(|e| audit::str_field(e, "session") == session && audit::str_field(e, "kind") == "kill", T);
}

/// W^X (`exec: {writable: deny}`): a copy of a program in a place the session may
/// write does not run, directly (Landlock refuses the exec) or through the dynamic
/// loader (the process is killed); the same program where writes are denied runs.
#[test]
fn w_x_refuses_a_copy_of_a_program_in_a_writable_place() {
    let agent = TestAgent::start_default();
    let policy = policy_file(
        &agent,
        "w-x",
        "exec: {writable: deny}\nfiles:\n  - {path: /usr, access: write, action: deny}\n",
    );
    let grant = grant_with(&agent, &policy);
    let copy = agent.temp_dir().join("sleep").display().to_string();
    let script = format!(
        "cp /usr/bin/sleep {copy} && echo copied; {copy} 1; echo copy=$?; /usr/bin/sleep 0; echo direct=$?; \
         /lib64/ld-linux-x86-64.so.2 {copy} 30; echo loader=$?"
    );
    let started = std::time::Instant::now();
    let out = agent.exec_command(&grant, &Marker::new(), &["/bin/sh", "-c", &script]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["copied", "copy=126", "direct=0", "loader=137"], "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(20), "killed, not run out");
    let session = session_of(&agent, &grant);
    let of_copy = |action: &'static str| {
        let copy = copy.clone();
        let session = session.clone();
        move |e: &serde_json::Value| {
            audit::is("violation", &session)(e) && e["op"] == "exec" && e["path"] == copy.as_str() && e["action"] == action
        }
    };
    let refused = agent.wait_for_event(of_copy("deny"), T);
    assert_eq!((refused["rule"].as_str(), refused["prevented"].as_bool()), (Some("exec.writable"), Some(true)), "{refused}");
    let killed = agent.wait_for_event(of_copy("kill"), T);
    assert_eq!(killed["rule"], "exec.writable", "{killed}");
    assert!(audit::str_field(&killed, "detail").contains("dynamic loader"), "{killed}");
}

/// Whoever can write the agent's audit log but not read its key (the key sits in
/// the state directory, which no session can open) can edit a record and re-chain
/// every hash after it; the records' macs give the rewrite away to
/// `warrant audit verify`.
#[test]
fn a_rewrite_of_the_agents_log_that_re_chains_the_hashes_is_caught() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("5m");
    let mark = Marker::new();
    let out = agent.exec_command(&grant, &mark, &["/bin/echo", "the-secret-command"]).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let session = session_of(&agent, &grant);
    agent.wait_for_event(audit::is("exec", &session), T);
    let before = agent.cli_ok(&["audit", "verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(before.trim()).expect("json");
    assert_eq!((v["ok"].as_bool(), v["keyed"].as_bool(), v["unkeyed_records"].as_u64()), (Some(true), Some(true), Some(0)), "{v}");

    // Rewrite: the exec's argv replaced, every hash from there on recomputed, the
    // macs left as they were (they cannot be recomputed without the key).
    let log = agent.state_dir().join("audit.log");
    let mut edited = 0;
    warrant_audit::log::testing::rechain(&log, true, |n, ev| {
        if ev["kind"] == "exec" && ev["session"] == session.as_str() {
            ev["argv"] = serde_json::json!(["/bin/echo", "nothing-to-see"]);
            edited = n;
        }
    });
    assert!(edited > 0, "found the session's exec");
    assert!(warrant_audit::verify(&log).expect("verify").is_ok(), "the re-chained log fools the chain alone");

    let after = agent.cli(&["audit", "verify"]);
    let said = String::from_utf8_lossy(&after.stdout);
    assert_eq!(after.status.code(), Some(1), "{said}");
    assert!(said.contains("TAMPERED"), "{said}");
    assert!(said.contains("mac does not match"), "{said}");
    let first = said.lines().nth(1).unwrap_or_default();
    assert!(first.trim_start().starts_with(&format!("line {edited}:")), "the first problem is the edited record: {said}");
}
