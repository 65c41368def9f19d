//! Tagging: every process started under a grant is in its session, however it was
//! started (fork, nested shells, setsid + double fork, a cgroup move, attach), and no
//! process outside a grant ever shows up in the audit log.

use std::process::Command;
use std::time::Duration;

use warrant_tests::workload::{canonical, testbin, unique_path};
use warrant_tests::{Marker, TempCgroup, TestAgent, Tree, audit, poll};

/// Time allowed for an event to reach the audit log.
const T: Duration = Duration::from_secs(10);

/// A tagged shell's grandchild is traced: `sh -c 'sh -c "/bin/true; :"; :'` (the
/// trailing `:` keeps dash from exec'ing in place, so each level really forks) yields
/// exec events for the root shell, the nested shell and `/bin/true`, all with the
/// session and grant ids, and chained by ppid back to the session root.
#[test]
fn grandchildren_of_a_tagged_shell_are_traced() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", r#"/bin/sh -c "/bin/true; :"; :"#]);
    assert!(s.wait_for(T).success());
    assert_eq!(s.grant(), grant);

    let sid = s.id().to_string();
    let root = s.pid();
    let true_path = canonical("/bin/true");
    let leaf = agent.wait_for_event(|e| audit::is("exec", &sid)(e) && e["path"] == true_path.as_str(), T);
    let middle_pid = audit::u64_field(&leaf, "ppid");
    let middle = agent.wait_for_event(|e| audit::is("exec", &sid)(e) && audit::u64_field(e, "pid") == middle_pid, T);
    assert_eq!(middle["path"], canonical("/bin/sh"), "the grandchild's parent is the nested shell: {middle}");
    assert_eq!(middle["argv"][2], "/bin/true; :");
    assert_eq!(audit::u64_field(&middle, "ppid"), u64::from(root), "the nested shell's parent is the root: {middle}");
    assert_ne!(middle_pid, u64::from(root), "the nested shell must be a forked child, not the root itself");
    let top = agent.wait_for_event(|e| audit::is("exec", &sid)(e) && audit::u64_field(e, "pid") == u64::from(root), T);
    for e in [&leaf, &middle, &top] {
        assert_eq!(e["grant"], grant.as_str(), "{e}");
    }
}

/// A process the test starts directly, while a session is live on the host (so every
/// session-time hook is attached), never appears in the audit log: not its exec, not
/// its file opens, not its exit. A tagged "sentinel" open started afterwards proves the
/// log had caught up when we looked.
#[test]
fn untagged_processes_are_not_traced() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let bin = testbin();
    let _live = agent.exec(&grant, &mark, &[&bin, "sleep", "60"]);

    let secret = unique_path(agent.temp_dir(), "untagged");
    let mut untagged = mark
        .apply(&mut Command::new(&bin))
        .args(["open", &secret.to_string_lossy(), "write"])
        .spawn()
        .expect("spawn untagged testbin");
    let untagged_pid = u64::from(untagged.id());
    assert!(untagged.wait().expect("wait untagged").success());
    assert!(secret.exists());

    let sentinel = unique_path(agent.temp_dir(), "sentinel");
    let sentinel_s = sentinel.to_string_lossy().into_owned();
    let mut s = agent.exec(&grant, &mark, &[&bin, "open", &sentinel_s, "write"]);
    assert!(s.wait_for(T).success());
    let sentinel_canon = canonical(&sentinel);
    agent.wait_for_event(|e| e["kind"] == "file_open" && e["path"] == sentinel_canon.as_str(), T);

    let secret_canon = canonical(&secret);
    let leaks: Vec<_> = agent
        .events()
        .into_iter()
        .filter(|e| audit::u64_field(e, "pid") == untagged_pid || e["path"] == secret_canon.as_str())
        .collect();
    assert!(leaks.is_empty(), "untagged pid {untagged_pid} appears in the audit log: {leaks:#?}");
}

/// `warrant attach --grant G --pid P` makes a running, untagged process a session
/// root: a `session_start` event with how `attach` and root_pid P is logged, and what
/// P execs afterwards (and its children) carries the session id.
#[test]
fn attach_tags_a_running_process_and_its_children() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let gate = unique_path(agent.temp_dir(), "gate");
    let mut child = mark
        .apply(&mut Command::new(testbin()))
        .args(["gate", &gate.to_string_lossy(), "--", "/bin/sh", "-c", "/bin/true; :"])
        .spawn()
        .expect("spawn gated testbin");
    let pid = child.id();

    agent.cli_ok(&["attach", "--grant", &grant, "--pid", &pid.to_string()]);
    let start = agent.wait_for_event(
        |e| e["kind"] == "session_start" && audit::u64_field(e, "root_pid") == u64::from(pid),
        T,
    );
    assert_eq!(start["how"], "attach", "{start}");
    assert_eq!(start["grant"], grant.as_str());
    let sid = audit::str_field(&start, "session").to_string();
    assert!(sid.starts_with("s-"), "{start}");

    std::fs::write(&gate, b"go").expect("open the gate");
    assert!(poll(T, || child.try_wait().ok().flatten()).expect("gated process exits").success());
    let sh = agent.wait_for_event(|e| audit::is("exec", &sid)(e) && audit::u64_field(e, "pid") == u64::from(pid), T);
    assert_eq!(sh["path"], canonical("/bin/sh"));
    let true_path = canonical("/bin/true");
    let t = agent.wait_for_event(|e| audit::is("exec", &sid)(e) && e["path"] == true_path.as_str(), T);
    assert_eq!(audit::u64_field(&t, "ppid"), u64::from(pid), "{t}");
}

/// Every process of a 40-process tree stays in its session wherever it goes: after
/// setsid and double forks (re-parented away from the tree), exec'd into another
/// binary, or moved into a cgroup outside the session's. `warrant sessions --json`
/// lists all of them under the session, with `in_cgroup: false` only for the one that
/// left the session cgroup.
#[test]
fn a_tree_stays_tagged_wherever_it_goes() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let escape = TempCgroup::new("warrant-test-escape");
    let tree = Tree::start(&agent, &grant, &mark, 40, Some(escape.path()));
    let sid = tree.session.id().to_string();

    let listed = poll(T, || {
        let s = agent.session(&sid)?;
        let procs = s["processes"].as_array()?.clone();
        let pids: Vec<u64> = procs.iter().filter_map(|p| p["pid"].as_u64()).collect();
        tree.pids().iter().all(|p| pids.contains(&u64::from(*p))).then_some((s, procs))
    });
    let (session, procs) = listed.unwrap_or_else(|| {
        panic!(
            "`warrant sessions --json` does not list every pid of the tree {:?}:\n{:#?}",
            tree.procs,
            agent.session(&sid)
        )
    });
    assert_eq!(session["grant"], grant.as_str());
    assert_eq!(audit::u64_field(&session, "root_pid"), u64::from(tree.session.pid()));
    for (pid, role) in &tree.procs {
        let p = procs
            .iter()
            .find(|p| audit::u64_field(p, "pid") == u64::from(*pid))
            .expect("listed above");
        let expect_in = !role.starts_with("escape");
        assert_eq!(p["in_cgroup"], expect_in, "{role} pid {pid}: {p}");
    }
}
