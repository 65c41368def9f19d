//! Self-protection: a session's processes, even as root, cannot reach the agent or
//! the kernel machinery that holds them. `warrant exec` puts the session in a
//! Landlock domain (signals scoped to the session; no writes under /sys/fs/cgroup or
//! /sys/fs/bpf) and a seccomp filter (no bpf, ptrace, module loading, clone3), all
//! inherited and irrevocable; every refused attempt is a `violation`.

use std::process::{Command, Stdio};
use std::time::Duration;

use warrant_tests::workload::testbin;
use warrant_tests::{Marker, TestAgent, audit, procfs};

const T: Duration = Duration::from_secs(10);

#[test]
fn a_root_session_cannot_unhook_itself_or_touch_the_agent() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("5m");
    // A bystander outside the session: signals and ptrace must not reach it either.
    let mut bystander = Command::new("sleep").arg("60").stdin(Stdio::null()).spawn().expect("spawn sleep");
    let by = bystander.id();
    let cgroup2 = agent.cgroup_root().parent().expect("cgroup2 mount").to_path_buf();
    let procs = cgroup2.join("cgroup.procs");
    let bpffs = agent.pin_dir().join("planted");
    let bin = testbin();
    let attempts = [
        ("bpf", String::new(), "errno 1", "bpf"),
        ("ptrace", by.to_string(), "errno 1", "ptrace"),
        ("kill", by.to_string(), "errno 1", "kill"),
        ("signal0", agent.pid().to_string(), "errno 1", "kill"),
        ("finit_module", String::new(), "errno 1", "finit_module"),
        ("cgroup-move", procs.display().to_string(), "errno 13", "cgroup"),
        ("clone3-into", cgroup2.display().to_string(), "errno 38", "clone3"),
        ("create", bpffs.display().to_string(), "errno 13", "bpffs"),
    ];
    let script: Vec<String> = attempts.iter().map(|(what, arg, _, _)| format!("{bin} attempt {what} {arg}")).collect();
    let mark = Marker::new();
    let out = agent.exec_command(&grant, &mark, &["/bin/sh", "-c", &script.join("; ")]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<&str> = stdout.lines().collect();
    let want: Vec<String> = attempts.iter().map(|(what, _, outcome, _)| format!("{what} {outcome}")).collect();
    assert_eq!(got, want, "every attempt is refused");

    assert!(procfs::alive(by), "the bystander survived");
    assert!(procfs::alive(agent.pid()), "the agent survived");
    assert!(!bpffs.exists(), "nothing was planted in bpffs");
    let _ = bystander.kill();
    let _ = bystander.wait();

    // The session may have ended already: find it in the log, not in `sessions`.
    let start = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "session_start" && audit::str_field(e, "grant") == grant,
        T,
    );
    let session = audit::str_field(&start, "session").to_owned();
    let ops: Vec<&str> = attempts.iter().map(|a| a.3).collect();
    let violations = agent.wait_until("a violation for every attempt", T, |events| {
        let v: Vec<serde_json::Value> = events
            .iter()
            .filter(|e| audit::str_field(e, "kind") == "violation" && audit::str_field(e, "session") == session)
            .cloned()
            .collect();
        ops.iter().all(|op| v.iter().any(|e| audit::str_field(e, "op") == *op)).then_some(v)
    });
    for v in &violations {
        assert_eq!(v["rule"], "self-protection", "{v}");
        assert_eq!(v["action"], "deny", "{v}");
        assert_eq!(v["prevented"], true, "{v}");
    }
    let kill = violations.iter().find(|v| v["op"] == "kill" && v["detail"] == format!("signal to pid {by}"));
    assert!(kill.is_some(), "the signal's target is named: {violations:?}");
}
