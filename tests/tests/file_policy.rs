//! File and exec rules: enforced in the kernel by the Landlock domain `warrant exec`
//! enters before it runs the command (EACCES, inherited, irrevocable), reported as
//! `violation` events naming the rule, with `kill` and `kill-session` carried out by
//! the agent once Landlock has refused the call.

use std::path::{Path, PathBuf};
use std::time::Duration;

use warrant_tests::workload::testbin;
use warrant_tests::{Marker, TestAgent, audit, poll};

/// Time allowed for an event to reach the audit log.
const T: Duration = Duration::from_secs(10);
const EACCES: &str = "errno 13";

/// A directory of files and programs the rules below name.
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(agent: &TestAgent) -> Fixture {
        let dir = agent.temp_dir().join("fs");
        for sub in ["bin", "ro/scratch", "data"] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        for f in ["secret", "ro/file", "kill.txt", "tripwire", "logged.txt", "data/a"] {
            std::fs::write(dir.join(f), "content\n").expect("write fixture file");
        }
        for prog in ["denied", "killer", "logged", "fine"] {
            std::fs::copy("/bin/true", dir.join("bin").join(prog)).expect("copy /bin/true");
        }
        Fixture { dir }
    }

    fn path(&self, rel: &str) -> String {
        self.dir.join(rel).to_str().expect("UTF-8 temp path").to_owned()
    }

    fn policy(&self, agent: &TestAgent) -> PathBuf {
        let d = self.dir.display();
        let text = format!(
            "name: files\nmax_ttl: 1h\ndefault: allow\n\
             exec:\n\
             \x20 - {{path: {d}/bin/denied, action: deny}}\n\
             \x20 - {{path: {d}/bin/killer, action: kill}}\n\
             \x20 - {{path: {d}/bin/logged, action: log}}\n\
             files:\n\
             \x20 - {{path: {d}/secret, access: read, action: deny}}\n\
             \x20 - {{path: {d}/ro/, access: write, action: deny}}\n\
             \x20 - {{path: {d}/ro/scratch/, access: write, action: allow}}\n\
             \x20 - {{path: {d}/kill.txt, access: any, action: kill}}\n\
             \x20 - {{path: {d}/tripwire, access: any, action: kill-session}}\n\
             \x20 - {{path: {d}/logged.txt, access: read, action: log}}\n"
        );
        let path = agent.temp_dir().join("files.yaml");
        std::fs::write(&path, text).expect("write policy");
        path
    }
}

fn grant_with(agent: &TestAgent, policy: &Path, ttl: &str) -> String {
    let policy = policy.to_str().expect("UTF-8 temp path");
    agent.cli_ok(&["grant", "issue", "--subject", "file-tests", "--ttl", ttl, "--policy", policy]).trim().to_string()
}

/// Runs `testbin attempt` lines under the grant and returns stdout.
fn attempts(agent: &TestAgent, grant: &str, script: &str) -> String {
    let mark = Marker::new();
    let out = agent.exec_command(grant, &mark, &["/bin/sh", "-c", script]).output().expect("run warrant exec");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn violation_for<'a>(events: &'a [serde_json::Value], session: &str, path: &str) -> Option<&'a serde_json::Value> {
    events.iter().find(|e| {
        audit::str_field(e, "kind") == "violation"
            && audit::str_field(e, "session") == session
            && audit::str_field(e, "path") == path
    })
}

/// deny, log and allow on reads, writes and execs, with the most specific rule
/// winning; every non-allow match is a violation naming the rule, and denied calls
/// never take effect.
#[test]
fn deny_log_and_precedence_for_files_and_execs() {
    let agent = TestAgent::start_default();
    let fx = Fixture::new(&agent);
    let grant = grant_with(&agent, &fx.policy(&agent), "5m");
    let bin = testbin();
    let p = |r| fx.path(r);
    let script = [
        format!("{bin} attempt read {}", p("secret")),
        format!("{bin} attempt create {}", p("ro/new")),
        format!("{bin} attempt create {}", p("ro/scratch/new")),
        format!("{bin} attempt read {}", p("ro/file")),
        format!("{bin} attempt read {}", p("logged.txt")),
        format!("{bin} attempt read {}", p("data/a")),
        format!("{bin} attempt create {}", p("data/b")),
        format!("{bin} attempt exec {}", p("bin/denied")),
        format!("{bin} attempt exec {}", p("bin/logged")),
        format!("{bin} attempt exec {}", p("bin/fine")),
        // Grandchildren inherit the domain.
        format!("/bin/sh -c '{bin} attempt read {}'", p("secret")),
    ]
    .join("; ");
    let out = attempts(&agent, &grant, &script);
    let lines: Vec<&str> = out.lines().collect();
    // `exec` of an allowed program replaces testbin, which then prints nothing.
    assert_eq!(
        lines,
        [
            format!("read {EACCES}").as_str(),
            &format!("create {EACCES}"),
            "create ok",
            "read ok",
            "read ok",
            "read ok",
            "create ok",
            &format!("exec {EACCES}"),
            &format!("read {EACCES}"),
        ],
        "{out}"
    );
    assert!(!Path::new(&p("ro/new")).exists(), "a denied create never happens");
    assert!(Path::new(&p("ro/scratch/new")).exists());

    // The session may have ended already: find it in the log, not in `sessions`.
    let start = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "session_start" && audit::str_field(e, "grant") == grant,
        T,
    );
    let session = audit::str_field(&start, "session").to_owned();
    let logged = p("bin/logged");
    let events = agent.wait_until("the logged exec's violation", T, |ev| {
        violation_for(ev, &session, &logged).is_some().then(|| ev.to_vec())
    });
    for (path, op, action, rule, prevented) in [
        (p("secret"), "open", "deny", "files[1]", true),
        (p("ro/new"), "open", "deny", "files[2]", true),
        (p("logged.txt"), "open", "log", "files[6]", false),
        (p("bin/denied"), "exec", "deny", "exec[1]", true),
        (p("bin/logged"), "exec", "log", "exec[3]", false),
    ] {
        let v = violation_for(&events, &session, &path).unwrap_or_else(|| panic!("no violation for {path}"));
        assert_eq!(v["op"], op, "{v}");
        assert_eq!(v["action"], action, "{v}");
        assert_eq!(v["rule"], rule, "{v}");
        assert_eq!(v["prevented"], prevented, "{v}");
        assert_eq!(v["policy"], "files", "{v}");
    }
    for allowed in [p("ro/scratch/new"), p("ro/file"), p("data/a"), p("bin/fine")] {
        assert!(violation_for(&events, &session, &allowed).is_none(), "{allowed} is allowed");
    }
    let start = events.iter().find(|e| audit::str_field(e, "kind") == "session_start").expect("session_start");
    assert_eq!(start["sandbox"], "landlock+seccomp", "{start}");
}

/// `kill`: the open or exec is refused and the process that tried dies; the rest of
/// the session lives on.
#[test]
fn kill_rule_refuses_and_kills_the_process() {
    let agent = TestAgent::start_default();
    let fx = Fixture::new(&agent);
    let grant = grant_with(&agent, &fx.policy(&agent), "5m");
    let bin = testbin();
    for (what, path) in [("read", fx.path("kill.txt")), ("exec", fx.path("bin/killer"))] {
        let script = format!("{bin} attempt {what} {path} --linger 20; echo shell-alive");
        let started = std::time::Instant::now();
        let out = attempts(&agent, &grant, &script);
        // The process may die before it prints the refusal; it never lingers.
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.last(), Some(&"shell-alive"), "{out}");
        assert!(!out.contains("lingered") && !out.contains(&format!("{what} ok")), "{out}");
        assert!(started.elapsed() < Duration::from_secs(15), "the process that tried was not killed");
        let v = agent.wait_for_event(
            |e| audit::str_field(e, "kind") == "violation" && audit::str_field(e, "path") == path,
            T,
        );
        assert_eq!(v["action"], "kill", "{v}");
        assert_eq!(v["prevented"], true, "{v}");
        let k = agent.wait_for_event(
            |e| audit::str_field(e, "kind") == "kill" && e["pid"] == v["pid"],
            T,
        );
        assert_eq!(k["killed"], 1, "{k}");
        assert_eq!(k["reason"], "policy", "{k}");
    }
}

/// File rules decide a change as a write of every name it touches: a rename out of
/// a write-denied directory is refused by Landlock and reported naming the rule; a
/// chmod there is not a call Landlock can refuse, so it happens and the violation
/// says it was not prevented; an unlink of a `kill` path is refused and the process
/// that tried dies. Each call is a `file_change` event as well.
#[test]
fn file_changes_are_decided_by_the_file_rules() {
    let agent = TestAgent::start_default();
    let fx = Fixture::new(&agent);
    let grant = grant_with(&agent, &fx.policy(&agent), "5m");
    let (ro, moved, kill) = (fx.path("ro/file"), fx.path("moved"), fx.path("kill.txt"));
    let bin = testbin();
    let script = format!("mv {ro} {moved}; chmod 0600 {ro}; {bin} attempt unlink {kill} --linger 20; echo shell-alive");
    let started = std::time::Instant::now();
    let out = attempts(&agent, &grant, &script);
    assert_eq!(out.lines().last(), Some("shell-alive"), "{out}");
    assert!(Path::new(&ro).exists() && !Path::new(&moved).exists(), "the rename was refused");
    assert!(Path::new(&kill).exists(), "the unlink was refused");
    assert!(!out.contains("lingered") && started.elapsed() < Duration::from_secs(15), "the process that tried lives: {out}");

    let v = agent.wait_for_event(|e| audit::str_field(e, "kind") == "violation" && e["op"] == "rename" && e["path"] == ro.as_str(), T);
    assert_eq!((v["action"].as_str(), v["rule"].as_str(), v["prevented"].as_bool()), (Some("deny"), Some("files[2]"), Some(true)), "{v}");
    let session = audit::str_field(&v, "session").to_owned();
    let c = agent.wait_for_event(|e| audit::is("file_change", &session)(e) && e["op"] == "rename" && e["path"] == ro.as_str(), T);
    assert_eq!((c["target"].as_str(), c["error"].as_i64()), (Some(moved.as_str()), Some(i64::from(libc::EACCES))), "{c}");

    let v = agent.wait_for_event(|e| audit::is("violation", &session)(e) && e["op"] == "chmod", T);
    assert_eq!((v["path"].as_str(), v["prevented"].as_bool()), (Some(ro.as_str()), Some(false)), "{v}");

    let v = agent.wait_for_event(|e| audit::is("violation", &session)(e) && e["op"] == "unlink" && e["path"] == kill.as_str(), T);
    assert_eq!((v["action"].as_str(), v["prevented"].as_bool()), (Some("kill"), Some(true)), "{v}");
    let k = agent.wait_for_event(|e| audit::str_field(e, "kind") == "kill" && e["pid"] == v["pid"], T);
    assert_eq!((k["reason"].as_str(), k["killed"].as_u64()), (Some("policy"), Some(1)), "{k}");
}

/// `kill-session`: the open is refused and the whole tree dies.
#[test]
fn kill_session_rule_ends_the_tree() {
    let agent = TestAgent::start_default();
    let fx = Fixture::new(&agent);
    let grant = grant_with(&agent, &fx.policy(&agent), "5m");
    let mark = Marker::new();
    let bin = testbin();
    let script = format!("sleep 60 & {bin} attempt read {} --linger 30; wait", fx.path("tripwire"));
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script]);
    let status = s.wait_for(T);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "{status:?}");
    let k = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "kill" && audit::str_field(e, "session") == s.id(),
        T,
    );
    assert_eq!(k["reason"], "policy", "{k}");
    assert!(audit::u64_field(&k, "killed") >= 3, "sh, sleep and testbin: {k}");
    assert!(poll(T, || mark.pids().is_empty().then_some(())).is_some(), "survivors: {:?}", mark.pids());
}

/// A live swap applies new network rules to running sessions at once, but file and
/// exec rules live in each session's Landlock domain: the swap says so, and only new
/// sessions get them.
#[test]
fn live_swap_of_file_rules_reaches_new_sessions_and_says_so() {
    let agent = TestAgent::start_default();
    let fx = Fixture::new(&agent);
    let open = agent.temp_dir().join("open.yaml");
    std::fs::write(&open, "name: open\nmax_ttl: 1h\ndefault: allow\n").expect("write policy");
    let grant = grant_with(&agent, &open, "5m");
    let mark = Marker::new();
    let live = agent.exec(&grant, &mark, &["/bin/sh", "-c", "sleep 60"]);

    let policy = fx.policy(&agent);
    let out = agent.cli(&["grant", "update", "--grant", &grant, "--policy", policy.to_str().expect("UTF-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("for new sessions") && stderr.contains(live.id()), "{stderr}");

    let bin = testbin();
    let out = attempts(&agent, &grant, &format!("{bin} attempt read {}", fx.path("secret")));
    assert_eq!(out.trim(), format!("read {EACCES}"), "a new session has the new rules");
}

/// A fork loop running flat out when a `kill-session` rule fires: the whole tree,
/// including everything forked after the decision, is gone, and the kill says how
/// many it took and how long.
#[test]
fn fork_loop_dies_whole_under_kill_session() {
    let agent = TestAgent::start_default();
    let fx = Fixture::new(&agent);
    let grant = grant_with(&agent, &fx.policy(&agent), "5m");
    let mark = Marker::new();
    let bin = testbin();
    let script = format!(
        "{bin} fork-loop --max 500 --lifetime 60 & sleep 1; {bin} attempt read {} --linger 30; wait",
        fx.path("tripwire")
    );
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script]);
    // The loop's own events queue ahead of the kill's record in the log (the kill
    // itself does not wait for them): allow for a busy machine.
    let k = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "kill" && audit::str_field(e, "session") == s.id(),
        Duration::from_secs(60),
    );
    assert_eq!(k["reason"], "policy", "{k}");
    assert_eq!(k["survivors"], 0, "{k}");
    assert!(audit::u64_field(&k, "killed") >= 50, "the loop had forked plenty: {k}");
    s.wait_for(T);
    assert!(poll(T, || mark.pids().is_empty().then_some(())).is_some(), "survivors: {:?}", mark.pids());
}

/// The agent keeps a session's planned Landlock domain for the next session under
/// the same policy. Landlock grants follow inodes, so a kept plan used after a
/// rename would carry a granted directory's rights onto a denied path: swapping the
/// two between sessions (as root, outside any session) must leave the denied path
/// denied, with a fresh plan that says why, and the moved directory writable.
#[test]
fn a_rename_between_sessions_cannot_carry_a_grant_onto_a_denied_path() {
    let agent = TestAgent::start_default();
    let root = agent.temp_dir().join("swap");
    for d in ["secret", "open"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    let r = root.to_str().expect("UTF-8 temp path");
    let policy = agent.temp_dir().join("swap.yaml");
    let text = format!(
        "name: swap\nmax_ttl: 1h\ndefault: allow\nfiles: [{{path: {r}/secret/, access: write, action: deny}}]\n"
    );
    std::fs::write(&policy, text).expect("write policy");
    let grant = grant_with(&agent, &policy, "5m");
    let bin = testbin();
    // Old enough that the plan can be kept; two sessions so the second may reuse it.
    std::thread::sleep(Duration::from_millis(300));
    for n in 0..2 {
        let out = attempts(&agent, &grant, &format!("{bin} attempt create {r}/open/{n}; {bin} attempt create {r}/secret/{n}"));
        assert_eq!(out.lines().collect::<Vec<_>>(), ["create ok", &format!("create {EACCES}")], "{out}");
    }
    std::fs::rename(root.join("secret"), root.join("was-secret")).expect("rename");
    std::fs::rename(root.join("open"), root.join("secret")).expect("rename");
    let out = attempts(&agent, &grant, &format!("{bin} attempt create {r}/secret/x; {bin} attempt create {r}/was-secret/x"));
    assert_eq!(out.lines().collect::<Vec<_>>(), [&format!("create {EACCES}"), "create ok"], "{out}");
    assert!(!root.join("secret/x").exists(), "the denied path stays denied");
    let log = agent.log_text();
    let launched: Vec<&str> = log.lines().filter(|l| l.contains("launched") && l.contains("plan=")).collect();
    assert_eq!(launched.len(), 3, "{log}");
    assert!(launched[2].contains("plan=fresh"), "the third session must not reuse the plan: {}", launched[2]);
}

/// Kill rules hold on what the kernel resolved, not on the string a process passed:
/// each of these reaches the `kill-session` file through a name the rule does not
/// spell (a symlink, a directory descriptor from `open(O_PATH)` or `open_tree`, a
/// relative name from a process that exits at once), and each ends the session.
#[test]
fn kill_session_rules_hold_on_the_resolved_path() {
    let agent = TestAgent::start_default();
    let fx = Fixture::new(&agent);
    let grant = grant_with(&agent, &fx.policy(&agent), "5m");
    let bin = testbin();
    let (dir, tripwire) = (fx.path(""), fx.path("tripwire"));
    let dir = dir.trim_end_matches('/');
    // The agent's own temporary directory is protected; the alias lives elsewhere.
    let scratch = tempfile_dir("kill-alias");
    let alias = scratch.join("alias");
    let alias = alias.display();
    let routes = [
        ("symlink", format!("ln -s {tripwire} {alias} && cat {alias}; rm -f {alias}")),
        ("relative name, quick exit", format!("cd {dir} && cat tripwire")),
        ("dirfd from O_PATH", format!("{bin} attempt read-at {dir} tripwire")),
        ("dirfd from open_tree", format!("{bin} attempt read-tree {dir} tripwire")),
    ];
    for (route, attack) in routes {
        let mark = Marker::new();
        let script = format!("sleep 60 & {attack}; wait");
        let started = std::time::Instant::now();
        let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script]);
        let status = s.wait_for(Duration::from_secs(30));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{route}: the session outlived its kill-session rule ({status:?})"
        );
        assert!(started.elapsed() < Duration::from_secs(20), "{route}: the kill took {:?}", started.elapsed());
        let v = agent.wait_for_event(
            |e| audit::is("violation", s.id())(e) && audit::str_field(e, "path") == tripwire && e["action"] == "kill-session",
            T,
        );
        assert_eq!(v["prevented"], true, "{route}: {v}");
        let k = agent.wait_for_event(|e| audit::str_field(e, "kind") == "kill" && audit::str_field(e, "session") == s.id(), T);
        assert_eq!(k["reason"], "policy", "{route}: {k}");
        assert!(poll(T, || mark.pids().is_empty().then_some(())).is_some(), "{route}: survivors {:?}", mark.pids());
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// A `kill` rule reached through a name it does not spell (a symlink) still kills
/// only the process that made the call: the kernel's record of the refusal names
/// the resolved path, and the caller is the one the agent pins it on (from the
/// audit `SYSCALL` record where the task has an audit context, else from the ring's
/// refused call at that time); the shell and a sibling live on.
#[test]
fn a_kill_rule_through_a_symlink_kills_only_the_caller() {
    let agent = TestAgent::start_default();
    let fx = Fixture::new(&agent);
    let grant = grant_with(&agent, &fx.policy(&agent), "5m");
    let bin = testbin();
    let kill = fx.path("kill.txt");
    let scratch = tempfile_dir("kill-caller");
    let alias = scratch.join("alias");
    let alias = alias.display();
    let mark = Marker::new();
    let script = format!("ln -s {kill} {alias}; sleep 60 & {bin} attempt read {alias} --linger 20; echo shell-alive; sleep 2; kill $!; wait; echo done");
    let started = std::time::Instant::now();
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script]);
    let v = agent.wait_for_event(|e| audit::is("violation", s.id())(e) && audit::str_field(e, "path") == kill, T);
    assert_eq!((v["action"].as_str(), v["prevented"].as_bool()), (Some("kill"), Some(true)), "{v}");
    let k = agent.wait_for_event(|e| audit::is("kill", s.id())(e), T);
    assert_eq!((k["reason"].as_str(), k["killed"].as_u64()), (Some("policy"), Some(1)), "one process killed: {k}");
    assert_eq!(k["pid"], v["pid"], "the kill is the violation's caller: {k} {v}");
    let attempt = agent.events().into_iter().find(|e| {
        audit::is("exec", s.id())(e) && e["argv"].as_array().is_some_and(|a| a.iter().any(|x| x == "attempt"))
    });
    let attempt = attempt.expect("the attempt's exec is on the record");
    assert_eq!(v["pid"], attempt["pid"], "the caller named is the process that read: {v} {attempt}");
    let status = s.wait_for(Duration::from_secs(30));
    assert!(status.success(), "the session's shell was killed too: {status:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "the caller lingered: {:?}", started.elapsed());
    let _ = std::fs::remove_dir_all(&scratch);
}

/// A fresh directory under the system's temporary directory, outside the agent's.
fn tempfile_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warrant-{what}-{}-{:x}", std::process::id(), rand_u64()));
    std::fs::create_dir_all(&dir).expect("mkdir scratch");
    dir
}

fn rand_u64() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A `kill` rule kills the process that made the call even when it is a thread whose
/// group leader has already exited; an `O_PATH` open of the same file reads nothing
/// and is neither refused nor a violation.
#[test]
fn kill_rules_reach_a_leaderless_thread_and_spare_o_path() {
    let agent = TestAgent::start_default();
    let fx = Fixture::new(&agent);
    let grant = grant_with(&agent, &fx.policy(&agent), "5m");
    let bin = testbin();
    let kill = fx.path("kill.txt");

    let started = std::time::Instant::now();
    let out = attempts(&agent, &grant, &format!("{bin} attempt read-thread {kill} --linger 20; echo shell-alive"));
    assert_eq!(out.lines().last(), Some("shell-alive"), "{out}");
    assert!(!out.contains("lingered") && !out.contains("read-thread ok"), "the thread was not killed: {out}");
    assert!(started.elapsed() < Duration::from_secs(15), "the thread lived on for {:?}", started.elapsed());
    let v = agent.wait_for_event(|e| audit::str_field(e, "kind") == "violation" && audit::str_field(e, "path") == kill, T);
    assert_eq!(v["action"], "kill", "{v}");
    let k = agent.wait_for_event(|e| audit::str_field(e, "kind") == "kill" && e["pid"] == v["pid"], T);
    assert_eq!((k["reason"].as_str(), k["killed"].as_u64()), (Some("policy"), Some(1)), "{k}");

    let out = attempts(&agent, &grant, &format!("{bin} attempt opath {kill} --linger 1; echo shell-alive"));
    assert!(out.contains("opath ok") && out.contains("opath lingered"), "an O_PATH open is not a read: {out}");
    let session_events = agent.events();
    let opath_violations = session_events
        .iter()
        .filter(|e| audit::str_field(e, "kind") == "violation" && audit::str_field(e, "path") == kill)
        .count();
    assert_eq!(opath_violations, 1, "only the thread's read is a violation");
}
