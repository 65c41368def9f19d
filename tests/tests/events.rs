//! Events: each kind a tagged process causes comes out in the audit log with the
//! fields of the JSON schema (audit/src/json.rs) filled in correctly, truncation is
//! flagged rather than silent, and the log itself is an unbroken hash chain.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::Value;
use warrant_tests::workload::{accept_within, canonical, testbin, unique_path};
use warrant_tests::{Marker, TestAgent, audit, free_port};

/// Time allowed for an event to reach the audit log.
const T: Duration = Duration::from_secs(10);

fn is_pid(kind: &'static str, session: &str, pid: u32) -> impl Fn(&Value) -> bool {
    let s = session.to_string();
    move |e| audit::is(kind, &s)(e) && audit::u64_field(e, "pid") == u64::from(pid)
}

/// The exec event of a session root carries the kernel-resolved path, the argv as
/// passed, the working directory, the pid, the ppid (the test, which spawned
/// `warrant exec`), the uid, a parseable time, and `truncated: false`; the session's
/// `session_start` names the same root pid and command.
#[test]
fn exec_event_has_path_argv_cwd_and_ids() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let cwd = agent.temp_dir().join("work dir");
    std::fs::create_dir(&cwd).expect("mkdir cwd");
    let argv = ["/bin/sh", "-c", "exit 0", "arg-one", "arg two"];
    let mut cmd = agent.exec_command(&grant, &mark, &argv);
    cmd.current_dir(&cwd);
    let mut s = warrant_tests::Session::spawn(cmd);
    assert!(s.wait_for(T).success());

    let e = agent.wait_for_event(is_pid("exec", s.id(), s.pid()), T);
    assert_eq!(e["path"], canonical("/bin/sh"), "{e}");
    assert_eq!(e["argv"], serde_json::json!(argv), "{e}");
    assert_eq!(e["cwd"], canonical(&cwd), "{e}");
    // The agent creates the session's first process; the client only relays.
    assert_eq!(audit::u64_field(&e, "ppid"), u64::from(agent.pid()), "{e}");
    // SAFETY: getuid has no preconditions.
    assert_eq!(audit::u64_field(&e, "uid"), u64::from(unsafe { libc::getuid() }), "{e}");
    assert_eq!(e["grant"], grant.as_str());
    assert_eq!(e["truncated"], false, "{e}");
    let time = audit::str_field(&e, "time");
    time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|err| panic!("time {time:?} is not RFC 3339: {err}"));

    let start = agent.wait_for_event(audit::is("session_start", s.id()), T);
    assert_eq!(audit::u64_field(&start, "root_pid"), u64::from(s.pid()), "{start}");
    assert_eq!(start["command"], serde_json::json!(argv), "{start}");
    assert_eq!(start["how"], "exec", "{start}");
}

/// A session's records carry the id of its cgroup (the cgroup directory's inode
/// number on cgroup v2), read from the task by the kernel side.
#[test]
fn records_carry_the_session_cgroup_id() {
    use std::os::unix::fs::MetadataExt as _;
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", "sleep 1; cat /etc/hostname > /dev/null"]);
    let dir = agent.cgroup_root().join(s.id());
    let ino = warrant_tests::poll(T, || std::fs::metadata(&dir).ok().map(|m| m.ino()))
        .unwrap_or_else(|| panic!("no session cgroup at {}", dir.display()));
    assert!(s.wait_for(T).success());
    for kind in ["exec", "file_open"] {
        let e = agent.wait_for_event(audit::is(kind, s.id()), T);
        assert_eq!(audit::u64_field(&e, "cgroup_id"), ino, "{kind} in {}: {e}", dir.display());
    }
}

/// An executed `#!` script: the kernel has swapped it for its interpreter by the
/// time the exec is recorded, so `path` is the interpreter and `script` names the
/// script itself, absolute even when run by a relative name; a plain program has no
/// `script`.
#[test]
fn exec_of_a_script_names_the_script_and_its_interpreter() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let dir = agent.temp_dir().join("scripts");
    std::fs::create_dir(&dir).expect("mkdir");
    let script = dir.join("deploy.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let mut cmd = agent.exec_command(&grant, &mark, &["/bin/sh", "-c", "./deploy.sh; /bin/true"]);
    cmd.current_dir(&dir);
    let mut s = warrant_tests::Session::spawn(cmd);
    assert!(s.wait_for(T).success());
    let sid = s.id().to_string();
    let want = canonical(&script);
    let ran = agent.wait_for_event(|e| audit::is("exec", &sid)(e) && e["script"] == want.as_str(), T);
    assert_eq!(ran["path"], canonical("/bin/sh"), "{ran}");
    let plain = agent.wait_for_event(|e| audit::is("exec", &sid)(e) && e["path"] == canonical("/bin/true").as_str(), T);
    assert!(plain.get("script").is_none(), "{plain}");
}

/// Every call that changes files is a `file_change` event naming what it changed,
/// absolute: a name passed absolute, one relative to a directory descriptor and one
/// relative to the working directory come out the same way; both ends of a rename
/// and a link; a symlink's text as written; the mode, owner, size and attribute
/// asked for; a call on a descriptor names the descriptor's file; a failed call has
/// its errno. The calls are raw syscalls, so each number is the one tested.
#[test]
fn file_changes_are_recorded_with_their_names_made_absolute() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let dir = agent.temp_dir().join("changes");
    std::fs::create_dir(&dir).expect("mkdir");
    let d = canonical(&dir);
    let bin = testbin();
    let mut s = agent.exec(&grant, &mark, &[bin.as_str(), "changes", &d]);
    assert!(s.wait_for(T).success(), "{}", s.stderr().text());
    std::thread::sleep(Duration::from_millis(200)); // the relay's last lines
    let printed = s.stdout().text();
    let ret = |call: &str| -> i64 {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(call).and_then(|r| r.strip_prefix(' ')))
            .and_then(|r| r.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {call} line in {printed}"))
    };
    for call in ["mkdir", "rename", "renameat2", "link", "linkat", "symlinkat", "truncate", "chmod", "fchownat", "unlinkat-dir", "rename-cwd"] {
        assert_eq!(ret(call), 0, "{call} should succeed on its own: {printed}");
    }
    let sid = s.id().to_string();
    let p = |name: &str| format!("{d}/{name}");
    let change = |op: &str, path: String, more: &dyn Fn(&Value) -> bool| {
        let op = op.to_owned();
        agent.wait_for_event(|e| audit::is("file_change", &sid)(e) && e["op"] == op.as_str() && e["path"] == path.as_str() && more(e), T)
    };
    let any = |_: &Value| true;

    let e = change("mkdir", p("a"), &any);
    assert_eq!((e["mode"].as_str(), e.get("error")), (Some("0750"), None), "{e}");
    assert_eq!(e["truncated"], false, "{e}");
    // mkdirat(dirfd, "b"): relative to the descriptor, resolved in the kernel.
    assert_eq!(change("mkdir", p("b"), &any)["mode"], "0700");
    change("rename", p("f"), &|e| e["target"] == p("g").as_str());
    let e = change("rename", p("g"), &|e| e["target"] == p("h").as_str());
    assert_eq!(e["flags"], 1, "renameat2's RENAME_NOREPLACE: {e}");
    change("link", p("h"), &|e| e["target"] == p("hl").as_str());
    change("link", p("h"), &|e| e["target"] == p("hl2").as_str());
    // A symlink's text is kept as written, never resolved.
    change("symlink", p("sl"), &|e| e["target"] == "../x");
    change("symlink", p("sl2"), &|e| e["target"] == "target-text");
    assert_eq!(change("truncate", p("h"), &|e| e["size"] == 7)["op"], "truncate");
    // ftruncate, fchmod, fchown, fsetxattr: the descriptor's file, as the kernel has it.
    change("truncate", p("h"), &|e| e["size"] == 3);
    for mode in ["0640", "0600", "0644"] {
        change("chmod", p("h"), &|e| e["mode"] == mode);
    }
    let e = change("chown", p("h"), &|e| e["owner"] == 0 && e.get("group").is_none());
    assert!(e.get("group").is_none(), "chown(-1) leaves the group: {e}");
    change("chown", p("h"), &|e| e["group"] == 0 && e.get("owner").is_none());
    change("chown", p("h"), &|e| e["owner"] == 0 && e["group"] == 0);
    change("chown", p("sl"), &|e| e["flags"] == libc::AT_SYMLINK_NOFOLLOW);
    for _ in 0..3 {
        change("utimes", p("h"), &any);
    }
    change("setxattr", p("h"), &|e| e["name"] == "user.warrant" && e["size"] == 1);
    change("removexattr", p("h"), &|e| e["name"] == "user.warrant");
    let e = change("mknod", p("fifo"), &any);
    assert_eq!(e["mode"], format!("{:04o}", libc::S_IFIFO | 0o600), "{e}");
    change("mknod", p("fifo2"), &any);
    change("unlink", p("hl"), &any);
    change("unlink", p("hl2"), &any);
    change("rmdir", p("b"), &|e| e["flags"] == libc::AT_REMOVEDIR);
    change("rmdir", p("a"), &any);
    let e = change("unlink", p("missing"), &any);
    assert_eq!(e["error"], libc::ENOENT, "a failed call has its errno: {e}");
    // Relative to the working directory (the process made it DIR with chdir).
    change("unlink", p("sl2"), &any);
    change("rename", p("fifo"), &|e| e["target"] == p("fifo3").as_str());
    // mount and umount: refused to a session (self-protection), yet on the record.
    let m = ret("mount");
    assert!(m < 0, "a session must not mount: {printed}");
    let seen = agent.wait_for_event(
        |e| {
            (audit::is("file_change", &sid)(e) && e["op"] == "mount" && e["path"] == p("b").as_str() && e["target"] == "none")
                || (audit::is("violation", &sid)(e) && e["op"] == "syscall" && audit::str_field(e, "detail").contains("mount"))
        },
        T,
    );
    assert!(seen.get("error").is_none_or(|v| v == -m), "{seen}");
}

/// An exec of an open descriptor (`execveat(fd, "", ..., AT_EMPTY_PATH)`, what
/// fexecve does) would run a file by no name the exec rules could decide: the
/// session's self-protection refuses it in the kernel, whatever the file, and each
/// attempt is a violation naming the call; nothing runs.
#[test]
fn exec_of_a_descriptor_is_refused_and_recorded() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let bin = testbin();
    let script = format!("'{bin}' attempt fexec /bin/true; '{bin}' attempt fexec /bin/true; :");
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script]);
    assert!(s.wait_for(T).success());
    std::thread::sleep(Duration::from_millis(200)); // the relay's last lines
    assert_eq!(s.stdout().text().lines().collect::<Vec<_>>(), ["fexec errno 1", "fexec errno 1"], "refused with EPERM");
    let sid = s.id().to_string();
    agent.wait_for_event(audit::is("session_end", &sid), T);
    let events = agent.events();
    let refused = events.iter().filter(|e| audit::is("violation", &sid)(e) && e["op"] == "execveat").collect::<Vec<_>>();
    assert_eq!(refused.len(), 2, "one violation per attempt: {refused:?}");
    assert_eq!((refused[0]["rule"].as_str(), refused[0]["prevented"].as_bool()), (Some("self-protection"), Some(true)));
    let ran = canonical("/bin/true");
    assert!(!events.iter().any(|e| audit::is("exec", &sid)(e) && e["path"] == ran.as_str()), "nothing ran");
}

/// File opens report their access mode from the open flags (`read` for O_RDONLY,
/// `write` for O_WRONLY, `read-write` for O_RDWR) with the absolute path; a failed
/// open reports its errno.
#[test]
fn file_open_reports_access_and_errors() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let bin = testbin();
    let w = unique_path(agent.temp_dir(), "w");
    let rw = unique_path(agent.temp_dir(), "rw");
    let missing = unique_path(agent.temp_dir(), "missing");
    let (w_s, rw_s, missing_s) = (w.to_string_lossy(), rw.to_string_lossy(), missing.to_string_lossy());
    let script = format!(
        "'{bin}' open '{w_s}' write && '{bin}' open '{w_s}' read && '{bin}' open '{rw_s}' read-write; '{bin}' open '{missing_s}' read; :"
    );
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script]);
    assert!(s.wait_for(T).success());
    let sid = s.id().to_string();

    let (w_c, rw_c) = (canonical(&w), canonical(&rw));
    for (path, access) in [(&w_c, "write"), (&w_c, "read"), (&rw_c, "read-write")] {
        let e = agent.wait_for_event(
            |e| audit::is("file_open", &sid)(e) && e["path"] == path.as_str() && e["access"] == access,
            T,
        );
        assert!(e.get("error").is_none(), "a successful open has no error: {e}");
        assert_eq!(e["truncated"], false, "{e}");
    }
    let e = agent.wait_for_event(
        |e| audit::is("file_open", &sid)(e) && audit::str_field(e, "path").ends_with(&*missing_s),
        T,
    );
    assert_eq!(e["error"], libc::ENOENT, "a failed open reports its errno: {e}");
    assert_eq!(e["access"], "read");
}

/// Names the kernel keeps inside the dentry (up to 39 bytes) and names it keeps
/// apart (40 bytes on) are read two ways by the path walk; both come out whole,
/// side by side in one path, at the limit and past it.
#[test]
fn file_open_paths_keep_names_either_side_of_the_inline_limit() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let bin = testbin();
    let mut files = Vec::new();
    for (dir_len, file_len) in [(39, 40), (40, 39), (41, 1), (1, 255), (200, 38)] {
        let dir = agent.temp_dir().join("d".repeat(dir_len));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("f".repeat(file_len));
        std::fs::write(&file, b"x").expect("write");
        files.push(canonical(&file));
    }
    let script: Vec<String> = files.iter().map(|f| format!("'{bin}' open '{f}' read")).collect();
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script.join(" && ")]);
    assert!(s.wait_for(T).success(), "the opens ran: {}", s.stderr().text());
    let sid = s.id().to_string();
    for path in &files {
        let e = agent.wait_for_event(|e| audit::is("file_open", &sid)(e) && e["path"] == path.as_str(), T);
        assert_eq!(e["truncated"], false, "{e}");
    }
}

/// The kernel's path walk crosses mount points: a file on a tmpfs mounted inside a
/// temp dir, a file on a tmpfs mounted on a directory of that tmpfs, and one on
/// procfs each come out as their whole path from `/`.
#[test]
fn file_open_paths_cross_mount_points() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let bin = testbin();
    let outer = unique_path(agent.temp_dir(), "mnt");
    let inner = outer.join("deeper");
    std::fs::create_dir(&outer).expect("mkdir");
    let mount = |dir: &std::path::Path| {
        let st = std::process::Command::new("mount").args(["-t", "tmpfs", "none"]).arg(dir).status().expect("run mount");
        assert!(st.success(), "mount a tmpfs on {}", dir.display());
    };
    mount(&outer);
    std::fs::create_dir(&inner).expect("mkdir on the tmpfs");
    mount(&inner);
    let (a, b) = (outer.join("a"), inner.join("b"));
    std::fs::write(&a, b"a").expect("write a");
    std::fs::write(&b, b"b").expect("write b");
    let (a_s, b_s) = (canonical(&a), canonical(&b));
    let script = format!("'{bin}' open '{a_s}' read && '{bin}' open '{b_s}' read && '{bin}' open /proc/version read");
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", &script]);
    let ok = s.wait_for(T).success();
    for dir in [&inner, &outer] {
        let _ = std::process::Command::new("umount").arg(dir).status();
    }
    assert!(ok, "the opens ran: {}", s.stderr().text());
    let sid = s.id().to_string();
    for path in [a_s.as_str(), b_s.as_str(), "/proc/version"] {
        let e = agent.wait_for_event(|e| audit::is("file_open", &sid)(e) && e["path"] == path, T);
        assert_eq!(e["truncated"], false, "{e}");
        assert!(e.get("unresolved").is_none_or(|u| u == false), "resolved by the kernel's walk, not the name asked for: {e}");
    }
}

/// A connect to a loopback listener the test owns is a `connect` event: family
/// `inet` (or `inet6` for `::1`), protocol `tcp`, the listener's address and port as
/// `addr`/`port` and `remote_*`, and the client's own (kernel-chosen) address and
/// port as `local_*`, read from the socket by the kernel side.
#[test]
fn connect_reports_both_ends() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    for (bind, family, host) in [("127.0.0.1:0", "inet", "127.0.0.1"), ("[::1]:0", "inet6", "::1")] {
        let listener = TcpListener::bind(bind).expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let port = addr.port();
        let mut s = agent.exec(&grant, &mark, &[&testbin(), "connect", &addr.to_string()]);
        let (mut conn, peer) = accept_within(&listener, T);
        let mut b = [0u8; 1];
        conn.read_exact(&mut b).expect("read the client's byte");
        drop(conn);
        let local: SocketAddr = s.wait_stdout("local ", T).parse().expect("client prints its address");
        assert_eq!(local, peer);
        assert!(s.wait_for(T).success());

        let e = agent.wait_for_event(is_pid("connect", s.id(), s.pid()), T);
        assert_eq!(e["family"], family, "{e}");
        assert_eq!(e["protocol"], "tcp", "{e}");
        assert_eq!(e["addr"], host, "{e}");
        assert_eq!(audit::u64_field(&e, "port"), u64::from(port), "{e}");
        assert_eq!(e["remote_addr"], host, "{e}");
        assert_eq!(audit::u64_field(&e, "remote_port"), u64::from(port), "{e}");
        assert_eq!(e["local_addr"], host, "{e}");
        assert_eq!(audit::u64_field(&e, "local_port"), u64::from(local.port()), "{e}");
    }
}

/// A server under a grant reports `bind` and `listen` with its own address and port
/// as `addr`/`port`, and `accept` with the connecting client's address and port as
/// `addr`/`port` and its own as `local_*`.
#[test]
fn bind_listen_accept_are_reported() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut s = agent.exec(&grant, &mark, &[&testbin(), "listen", &addr]);
    s.wait_stdout("listening ", T);
    let mut client = TcpStream::connect(&addr).expect("connect to the tagged server");
    let client_local = client.local_addr().expect("local_addr");
    client.write_all(b"x").expect("send");
    assert!(s.wait_for(T).success());
    let sid = s.id().to_string();
    let pid = s.pid();

    for kind in ["bind", "listen"] {
        let e = agent.wait_for_event(is_pid(kind, &sid, pid), T);
        assert_eq!(e["family"], "inet", "{e}");
        assert_eq!(e["addr"], "127.0.0.1", "{e}");
        assert_eq!(audit::u64_field(&e, "port"), u64::from(port), "{e}");
        assert_eq!(e["local_addr"], "127.0.0.1", "{e}");
        assert_eq!(audit::u64_field(&e, "local_port"), u64::from(port), "{e}");
    }
    let e = agent.wait_for_event(is_pid("accept", &sid, pid), T);
    assert_eq!(e["family"], "inet", "{e}");
    assert_eq!(e["addr"], "127.0.0.1", "{e}");
    assert_eq!(audit::u64_field(&e, "port"), u64::from(client_local.port()), "{e}");
    assert_eq!(audit::u64_field(&e, "remote_port"), u64::from(client_local.port()), "{e}");
    assert_eq!(audit::u64_field(&e, "local_port"), u64::from(port), "{e}");
}

/// A process that exits normally reports its exit `code` (and no `signal`); one killed
/// by a signal reports the `signal` (and no `code`).
#[test]
fn exit_reports_code_or_signal() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();

    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", "exit 3"]);
    assert_eq!(s.wait_for(T).code(), Some(3));
    let e = agent.wait_for_event(is_pid("exit", s.id(), s.pid()), T);
    assert_eq!(e["code"], 3, "{e}");
    assert!(e.get("signal").is_none(), "{e}");

    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", "kill -USR1 $$; sleep 5"]);
    let st = s.wait_for(T);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(libc::SIGUSR1));
    let e = agent.wait_for_event(is_pid("exit", s.id(), s.pid()), T);
    assert_eq!(e["signal"], libc::SIGUSR1, "{e}");
    assert!(e.get("code").is_none(), "{e}");
}

/// A path longer than the kernel's 4096-byte buffer (22 nested 200-byte dirs, opened
/// by a relative path after chdir, as no single path string may be that long) is
/// reported with `truncated: true`, keeping the end nearest the file.
#[test]
fn long_path_is_truncated() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let base = agent.temp_dir().join("deep");
    std::fs::create_dir(&base).expect("mkdir deep");
    let base_s = canonical(&base);
    let mut s = agent.exec(&grant, &mark, &[&testbin(), "deep-open", &base_s, "4500"]);
    assert!(s.wait_for(T).success(), "deep-open failed: {}", s.stderr().text());

    let e = agent.wait_for_event(
        |e| {
            audit::is("file_open", s.id())(e)
                && e["access"] == "read"
                && audit::str_field(e, "path").ends_with("/leaf.txt")
        },
        T,
    );
    assert_eq!(e["truncated"], true, "a path of more than 4500 bytes must be flagged: {e}");
}

/// An argv longer than the kernel's 4096-byte buffer (30 arguments of 200 bytes) is
/// reported with `truncated: true`, and what is kept is a prefix of the real argv.
#[test]
fn long_argv_is_truncated() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let mut argv: Vec<String> = vec!["/bin/true".into()];
    argv.extend((0..30).map(|i| format!("{i:02}-{}", "a".repeat(197))));
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut s = agent.exec(&grant, &mark, &refs);
    assert!(s.wait_for(T).success());

    let e = agent.wait_for_event(is_pid("exec", s.id(), s.pid()), T);
    assert_eq!(e["truncated"], true, "an argv of {} bytes must be flagged", argv.concat().len());
    let kept: Vec<&str> = e["argv"]
        .as_array()
        .expect("argv is an array")
        .iter()
        .map(|a| a.as_str().expect("argv strings"))
        .collect();
    assert!(!kept.is_empty() && kept.len() < argv.len(), "kept {} of {} args", kept.len(), argv.len());
    for (i, k) in kept.iter().enumerate() {
        if i + 1 < kept.len() {
            assert_eq!(*k, argv[i], "arg {i}");
        } else {
            assert!(argv[i].starts_with(k), "the last kept arg {k:?} is a prefix of {:?}", argv[i]);
        }
    }
}

/// The audit log is an unbroken chain: records are numbered consecutively, each
/// record's `prev` is the previous record's `hash`, hashes are distinct, and every
/// event has a known kind and an RFC 3339 time.
#[test]
fn audit_log_is_a_hash_chain_of_known_events() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let mut s = agent.exec(&grant, &mark, &["/bin/sh", "-c", "/bin/true; cat /etc/hostname >/dev/null; :"]);
    assert!(s.wait_for(T).success());
    agent.wait_for_event(is_pid("exit", s.id(), s.pid()), T);

    let records = agent.with_audit(|a| a.records().to_vec());
    assert!(records.len() >= 5, "expected a few records, got {}", records.len());
    let mut hashes = std::collections::HashSet::new();
    for pair in records.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!(audit::u64_field(b, "n"), audit::u64_field(a, "n") + 1, "gap between {a} and {b}");
        assert_eq!(b["prev"], a["hash"], "broken chain between n={} and n={}", a["n"], b["n"]);
    }
    for r in &records {
        let h = audit::str_field(r, "hash");
        assert!(!h.is_empty() && hashes.insert(h.to_string()), "empty or repeated hash in {r}");
        let e = &r["event"];
        let kind = audit::str_field(e, "kind");
        assert!(warrant_audit::KIND_NAMES.contains(&kind), "unknown kind in {e}");
        let t = audit::str_field(e, "time");
        assert!(
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok(),
            "bad time in {e}"
        );
    }
}
