//! Routes 1 and 2 of issue 10: the agent, not the client, confines a session, and an
//! interactive session gets a terminal of its own.
//!
//! - `warrant exec`'s first process is the agent's child, tagged, under Landlock +
//!   seccomp, and `session_start` says what the agent read back from /proc;
//! - a hand-written gRPC client that claims `sandboxed: true` while confining nothing
//!   is recorded `sandbox: none` (root) or refused (anyone else), on both sockets;
//! - a misbehaving client of the launch socket (wrong descriptors, a pipe named as
//!   terminal, a grant on the door, garbage, an oversized frame) gets a refusal that
//!   says what it did wrong, and nothing starts;
//! - the start message may carry as much argv+env as `execve` takes (1.7 MB here,
//!   past the old 1 MiB frame limit), the CLI refuses more than the agent's
//!   4 MiB like a shell (126, "argument list too long"), and any later client
//!   message over 64 KiB is refused, naming the limit, before or after `ready`;
//! - on a terminal, the session runs on its own pty in its own session: the window
//!   size and its changes, and Ctrl-C, pass through; TIOCSTI is refused; the
//!   operator's terminal comes back as it was.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use warrant_proto::launch::{MAX_ARGS, MAX_FRAME, MAX_START};
use warrant_proto::{LaunchClient, LaunchRequest, LaunchServer, Terminal, launch_client, launch_request, launch_server};
use warrant_tests::workload::testbin;
use warrant_tests::{AgentOptions, Marker, Signer, TestAgent, audit, bins, run::output_within};

const T: Duration = Duration::from_secs(15);

/// `Name:` of /proc/PID/status, its value with runs of blanks made one space.
fn status_field(pid: u32, name: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = text.lines().find(|l| l.starts_with(&format!("{name}:"))).unwrap_or_default();
    line.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
}

fn session_start(agent: &TestAgent, session: &str) -> serde_json::Value {
    agent.wait_for_event(audit::is("session_start", session), T)
}

#[test]
fn the_agent_confines_the_first_process_and_reads_it_back() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("5m");
    let mark = Marker::new();
    let mut s = agent.exec(&grant, &mark, &["sleep", "30"]);
    let pid = s.pid();
    assert_eq!(status_field(pid, "PPid"), agent.pid().to_string(), "the first process is the agent's child");
    assert_ne!(pid, s.client_pid(), "the client does not become the session");
    assert_eq!(status_field(pid, "Seccomp"), "2", "in seccomp filter mode before its first instruction");
    assert_eq!(status_field(s.client_pid(), "Seccomp"), "0", "the client itself stays unconfined");
    // The agent runs with SIGHUP ignored (the harness starts it as nohup would):
    // the session starts with no signal ignored or blocked all the same.
    let agent_ignores = u64::from_str_radix(&status_field(agent.pid(), "SigIgn"), 16).expect("SigIgn is hex");
    assert_eq!(agent_ignores & 1, 1, "the harness ignores SIGHUP (signal 1) in the agent");
    assert_eq!(status_field(pid, "SigIgn"), "0000000000000000", "no inherited ignored signal");
    assert_eq!(status_field(pid, "SigBlk"), "0000000000000000", "no inherited blocked signal");
    let start = session_start(&agent, s.id());
    assert_eq!(start["sandbox"], "landlock+seccomp", "{start}");
    assert_eq!(start["root_pid"], pid, "{start}");
    agent.cli_ok(&["kill", "--session", s.id()]);
    let status = s.wait_for(T);
    assert!(!status.success(), "the client reports the kill as the command's end: {status}");
}

/// The non-root route: a token on the door, as uid 65534. The agent applies
/// no_new_privs and reads it back with the uid.
#[test]
fn an_unprivileged_session_is_confined_by_the_agent_with_its_own_uid() {
    let signer = Signer::new();
    let agent = TestAgent::start(AgentOptions {
        door: true,
        grant_public_key: Some(signer.public_key()),
        ..Default::default()
    });
    let host = warrant_tests::tokens::host_name();
    let (token, _) = signer.sign("nobody", &["--subject", "user:nobody", "--host", &host, "--ttl", "10m"]);
    let shared = world_readable(&agent, &token);
    let mark = Marker::new();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bins::warrant())
        .arg("--socket")
        .arg(agent.door_socket())
        .args(["exec", "--token", shared.to_str().expect("UTF-8 path"), "--", "sleep", "30"])
        .current_dir("/");
    mark.apply(&mut cmd);
    let mut s = warrant_tests::Session::spawn(cmd);
    let pid = s.pid();
    assert_eq!(status_field(pid, "Uid"), "65534 65534 65534 65534", "the caller's uid, all four");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(status_field(pid, "Seccomp"), "2");
    assert_eq!(status_field(pid, "PPid"), agent.pid().to_string());
    let start = session_start(&agent, s.id());
    assert_eq!(start["sandbox"], "landlock+seccomp", "{start}");
    agent.cli_ok(&["kill", "--session", s.id()]);
    let _ = s.wait_for(T);
}

/// A copy of `file` that uid 65534 can read, in a directory it can enter.
fn world_readable(agent: &TestAgent, file: &Path) -> std::path::PathBuf {
    std::fs::set_permissions(agent.temp_dir(), std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    let to = agent.temp_dir().join("shared-token");
    std::fs::copy(file, &to).expect("copy token");
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).expect("chmod token");
    to
}

/// What `warrant exec` did before: StartSession for oneself with `sandboxed: true`,
/// then (in a client that cheats) no confinement at all.
#[test]
fn a_client_that_claims_a_sandbox_is_not_believed() {
    let signer = Signer::new();
    let agent = TestAgent::start(AgentOptions {
        door: true,
        grant_public_key: Some(signer.public_key()),
        ..Default::default()
    });
    let grant = agent.issue_grant("5m");
    let bin = testbin();
    let sock = agent.socket().display().to_string();
    let run = |cmd: &mut Command| {
        let out = output_within(cmd, T);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        text
    };

    // Root on the agent's socket: a self-attach, on the record as unconfined.
    let text = run(Command::new(&bin).args(["claim", &sock, "grant", &grant]));
    let mut lines = text.lines();
    let started = lines.next().unwrap_or_default();
    let session = started
        .strip_prefix("started ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("root may tag itself: {text}"));
    assert!(started.ends_with("sandbox=none"), "the claim is not believed: {started}");
    assert_eq!(lines.next(), Some("Seccomp: 0"), "and indeed nothing confined it");
    let start = session_start(&agent, session);
    assert_eq!(start["sandbox"], "none", "{start}");

    // Root on the door, with a valid token: the same.
    let host = warrant_tests::tokens::host_name();
    let (token, _) = signer.sign("root", &["--subject", "user:root", "--host", &host, "--ttl", "10m"]);
    let door = agent.door_socket().display().to_string();
    let text = run(Command::new(&bin).args(["claim", &door, "token", token.to_str().expect("UTF-8 path")]));
    let session = text
        .strip_prefix("started ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("root may tag itself through the door: {text}"));
    assert!(text.lines().next().unwrap_or_default().ends_with("sandbox=none"), "{text}");
    assert_eq!(session_start(&agent, session)["sandbox"], "none");

    // Anyone else on the door: refused, and told to use the launch socket.
    let (token, _) = signer.sign("nobody", &["--subject", "user:nobody", "--host", &host, "--ttl", "10m"]);
    let shared = world_readable(&agent, &token);
    let text = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["claim", &door, "token", shared.to_str().expect("UTF-8 path")])
        .current_dir("/"));
    let first = text.lines().next().unwrap_or_default();
    assert!(first.starts_with("refused PermissionDenied: "), "{text}");
    assert!(first.contains("needs root") && first.contains("launch"), "the refusal says why and what to use: {first}");
    assert_eq!(agent.sessions().len(), 2, "the refused caller has no session: {:?}", agent.sessions());
}

/// A raw client of a launch socket.
struct RawLaunch {
    stream: UnixStream,
}

impl RawLaunch {
    fn connect(path: &Path) -> Self {
        let stream = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        stream.set_read_timeout(Some(T)).expect("read timeout");
        Self { stream }
    }

    /// Sends `bytes` with `fds` attached (SCM_RIGHTS).
    fn send(&self, bytes: &[u8], fds: &[RawFd]) {
        let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as usize;
        let mut control = vec![0u8; space.max(1)];
        // SAFETY: msghdr is plain data; every pointer in it outlives the sendmsg call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space;
            // SAFETY: the control buffer has room for one header with `fds`.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&raw const msg);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as usize;
                std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast::<RawFd>(), fds.len());
            }
        }
        // SAFETY: a valid socket and message.
        let n = unsafe { libc::sendmsg(self.stream.as_raw_fd(), &raw const msg, 0) };
        assert_eq!(n, bytes.len() as isize, "sendmsg: {}", std::io::Error::last_os_error());
    }

    fn send_start(&self, req: LaunchRequest, fds: &[RawFd]) {
        let msg = LaunchClient { msg: Some(launch_client::Msg::Start(req)) };
        self.send(&warrant_proto::launch::encode(&msg).expect("encode"), fds);
    }

    /// The next message from the agent, or None at EOF.
    fn next(&mut self) -> Option<LaunchServer> {
        let mut head = [0u8; 4];
        self.stream.read_exact(&mut head).ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
        self.stream.read_exact(&mut body).expect("a whole message");
        Some(LaunchServer::decode(body.as_slice()).expect("decodes"))
    }

    /// The refusal the agent answers with: (gRPC code, message).
    fn refusal(&mut self) -> (i32, String) {
        match self.next().and_then(|m| m.msg) {
            Some(launch_server::Msg::Refused(r)) => (r.code, r.message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

fn request(authority: launch_request::Authority) -> LaunchRequest {
    LaunchRequest {
        authority: Some(authority),
        program: b"/bin/true".to_vec(),
        argv: vec![b"true".to_vec()],
        env: vec![],
        umask: 0o022,
        terminal: None,
    }
}

/// What a misbehaving client does, where, and the code and words of the refusal.
type Case<'a> = (&'a str, Box<dyn Fn(&RawLaunch) + 'a>, &'a Path, i32, &'a str);

#[test]
fn misbehaving_launch_clients_get_clear_refusals() {
    let signer = Signer::new();
    let agent = TestAgent::start(AgentOptions {
        door: true,
        grant_public_key: Some(signer.public_key()),
        ..Default::default()
    });
    let grant = agent.issue_grant("5m");
    let launch = std::path::PathBuf::from(format!("{}.launch", agent.socket().display()));
    let door_launch = std::path::PathBuf::from(format!("{}.launch", agent.door_socket().display()));
    let g = || launch_request::Authority::Grant(grant.clone());
    let devnull = std::fs::File::open("/dev/null").expect("open /dev/null");
    let cwd = std::fs::File::open("/").expect("open /");
    let (pipe_r, _pipe_w) = pipe();
    let n = devnull.as_raw_fd();
    let four = [n, n, n, cwd.as_raw_fd()];
    const INVALID_ARGUMENT: i32 = 3;
    const PERMISSION_DENIED: i32 = 7;
    const NOT_FOUND: i32 = 5;
    let over_start = format!("the start message is {} bytes, over the {MAX_START}-byte limit", 8u32 << 20);
    let just_over_start = format!("the start message is {} bytes, over the {MAX_START}-byte limit", MAX_START + 1);

    let cases: Vec<Case> = vec![
        ("no descriptors", Box::new(|c: &RawLaunch| c.send_start(request(g()), &[])), &launch, INVALID_ARGUMENT, "must come with 4 descriptors"),
        ("three descriptors", Box::new(|c: &RawLaunch| c.send_start(request(g()), &four[..3])), &launch, INVALID_ARGUMENT, "must come with 4 descriptors"),
        (
            "a file as the working directory",
            Box::new(|c: &RawLaunch| c.send_start(request(g()), &[n, n, n, n])),
            &launch,
            INVALID_ARGUMENT,
            "fourth descriptor must be the working directory",
        ),
        (
            "a pipe named as the terminal",
            Box::new(|c: &RawLaunch| {
                let mut r = request(g());
                r.terminal = Some(Terminal { fds: vec![0] });
                c.send_start(r, &[pipe_r.as_raw_fd(), n, n, cwd.as_raw_fd()]);
            }),
            &launch,
            INVALID_ARGUMENT,
            "descriptor 0 is named the terminal but is not one",
        ),
        (
            "a relative program",
            Box::new(|c: &RawLaunch| {
                let mut r = request(g());
                r.program = b"true".to_vec();
                c.send_start(r, &four);
            }),
            &launch,
            INVALID_ARGUMENT,
            "must be an absolute path",
        ),
        (
            "a NUL in an argument",
            Box::new(|c: &RawLaunch| {
                let mut r = request(g());
                r.argv.push(b"a\0b".to_vec());
                c.send_start(r, &four);
            }),
            &launch,
            INVALID_ARGUMENT,
            "an argument contains a NUL byte",
        ),
        (
            "a signal first",
            Box::new(|c: &RawLaunch| {
                let msg = LaunchClient { msg: Some(launch_client::Msg::Signal(9)) };
                c.send(&warrant_proto::launch::encode(&msg).expect("encode"), &four);
            }),
            &launch,
            INVALID_ARGUMENT,
            "the first message must be `start`",
        ),
        ("garbage", Box::new(|c: &RawLaunch| c.send(&[0, 0, 0, 3, 0xff, 0xff, 0xff], &four)), &launch, INVALID_ARGUMENT, "does not decode"),
        (
            "an oversized frame",
            Box::new(|c: &RawLaunch| c.send(&(8u32 << 20).to_be_bytes(), &four)),
            &launch,
            INVALID_ARGUMENT,
            &over_start,
        ),
        (
            "a start one byte over its limit",
            Box::new(|c: &RawLaunch| c.send(&u32::try_from(MAX_START + 1).expect("small").to_be_bytes(), &four)),
            &launch,
            INVALID_ARGUMENT,
            &just_over_start,
        ),
        (
            "a grant that does not exist",
            Box::new(|c: &RawLaunch| c.send_start(request(launch_request::Authority::Grant("g-nope".into())), &four)),
            &launch,
            NOT_FOUND,
            "g-nope",
        ),
        ("a grant on the door", Box::new(|c: &RawLaunch| c.send_start(request(g()), &four)), &door_launch, PERMISSION_DENIED, "takes tokens only"),
    ];
    for (what, send, socket, code, says) in &cases {
        let mut c = RawLaunch::connect(socket);
        send(&c);
        let (got, message) = c.refusal();
        assert_eq!((got, message.contains(says)), (*code, true), "{what}: code {got}, {message:?}");
        assert!(c.next().is_none(), "{what}: the agent hangs up after refusing");
    }
    assert!(agent.sessions().is_empty(), "nothing started: {:?}", agent.sessions());
    // The agent is still fine: a proper client (the CLI) starts a session.
    let out = output_within(&mut agent.exec_command(&grant, &Marker::new(), &["true"]), T);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The agent holds a started session's process one step short of the command
/// until the client says `ready` (so the client's session line comes before any
/// of the command's output); a client that leaves before that gets the process
/// killed, and the command never runs.
#[test]
fn nothing_runs_before_the_client_is_ready_and_a_client_that_leaves_gets_its_session_killed() {
    let agent = TestAgent::start(AgentOptions::default());
    let grant = agent.issue_grant("5m");
    let launch = std::path::PathBuf::from(format!("{}.launch", agent.socket().display()));
    let devnull = std::fs::File::open("/dev/null").expect("open /dev/null");
    let cwd = std::fs::File::open("/").expect("open /");
    let echo = LaunchRequest {
        program: b"/bin/echo".to_vec(),
        argv: vec![b"echo".to_vec(), b"ran".to_vec()],
        ..request(launch_request::Authority::Grant(grant.clone()))
    };
    let started = |c: &mut RawLaunch| match c.next().and_then(|m| m.msg) {
        Some(launch_server::Msg::Started(s)) => s,
        other => panic!("expected started, got {other:?}"),
    };
    for leaves in [false, true] {
        let (out_r, out_w) = pipe();
        let mut c = RawLaunch::connect(&launch);
        c.send_start(echo.clone(), &[devnull.as_raw_fd(), out_w.as_raw_fd(), devnull.as_raw_fd(), cwd.as_raw_fd()]);
        drop(out_w);
        let s = started(&mut c);
        let session = s.session.as_ref().expect("a session").id.clone();
        assert_eq!(s.sandbox, "landlock+seccomp");
        // Held: alive, tagged, on the record, and not yet the command.
        std::thread::sleep(Duration::from_millis(300));
        assert!(Path::new(&format!("/proc/{}", s.pid)).exists(), "the held process is alive");
        assert_ne!(std::fs::read_to_string(format!("/proc/{}/comm", s.pid)).unwrap_or_default().trim(), "echo");
        session_start(&agent, &session);
        let mut out = std::fs::File::from(out_r);
        if leaves {
            drop(c);
            let t0 = Instant::now();
            while Path::new(&format!("/proc/{}", s.pid)).exists() {
                assert!(t0.elapsed() < T, "the abandoned session's process {} is still there", s.pid);
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut got = String::new();
            out.read_to_string(&mut got).expect("read the session's stdout");
            assert_eq!(got, "", "the command of an abandoned session never ran");
        } else {
            let ready = LaunchClient { msg: Some(launch_client::Msg::Ready(Default::default())) };
            c.send(&warrant_proto::launch::encode(&ready).expect("encode"), &[]);
            let mut got = String::new();
            out.read_to_string(&mut got).expect("read the session's stdout");
            assert_eq!(got, "ran\n");
            match c.next().and_then(|m| m.msg) {
                Some(launch_server::Msg::Exited(e)) => assert_eq!((e.code, e.exec_errno), (0, 0), "{e:?}"),
                other => panic!("expected exited, got {other:?}"),
            }
        }
    }
}

/// `NAME=value` entries of 100,000 bytes each, `n` of them.
fn big_env(n: usize) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("WARRANT_BIG_{i}"), char::from(b'a' + (i % 26) as u8).to_string().repeat(100_000))).collect()
}

/// 600 kB of environment and 1.1 MB of argv (1.7 MB in all, over the old 1 MiB
/// frame limit, and argv alone over it too, which the agent's `started` repeats;
/// under the kernel's 2 MiB for an 8 MiB stack) reach the command whole, through
/// the CLI and the agent.
#[test]
fn a_command_gets_megabytes_of_environment_and_arguments() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("5m");
    let env = big_env(6);
    let args: Vec<String> = (0..11).map(|i| char::from(b'A' + i).to_string().repeat(100_000)).collect();
    let script = r#"env | grep '^WARRANT_BIG_' | wc -lc; printf %s "$@" | wc -c"#;
    let mut argv = vec!["sh", "-c", script, "sh"];
    argv.extend(args.iter().map(String::as_str));
    let mut cmd = agent.exec_command(&grant, &Marker::new(), &argv);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let out = output_within(&mut cmd, T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
    let env_bytes: usize = env.iter().map(|(k, v)| k.len() + 1 + v.len() + 1).sum();
    let arg_bytes: usize = args.iter().map(String::len).sum();
    assert!(arg_bytes > 1 << 20, "argv alone is more than the old frame limit");
    let got: Vec<usize> = stdout.split_whitespace().map(|w| w.parse().expect("numbers")).collect();
    assert_eq!(got, [env.len(), env_bytes, arg_bytes], "every entry and argument, whole: {stdout}");
}

/// More argv+env than the agent takes (4 MiB) is refused by the CLI itself, as a
/// shell refuses what execve would: status 126 and the sizes. The CLI runs with a
/// 64 MiB stack limit, so its own execve (up to 6 MiB) takes the arguments.
#[test]
fn an_argument_list_over_the_limit_is_refused_by_the_cli() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("5m");
    let args: Vec<String> = (0..45).map(|_| "y".repeat(100_000)).collect();
    let mut argv = vec!["true"];
    argv.extend(args.iter().map(String::as_str));
    let mut cmd = agent.exec_command(&grant, &Marker::new(), &argv);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            let stack = libc::rlimit { rlim_cur: 64 << 20, rlim_max: libc::RLIM_INFINITY };
            if libc::setrlimit(libc::RLIMIT_STACK, &raw const stack) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        });
    }
    let out = output_within(&mut cmd, T);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(126), "{stderr}");
    let line = stderr.lines().find(|l| l.contains("argument list too long")).unwrap_or_else(|| panic!("{stderr}"));
    let size: usize = line
        .split("argument list too long: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("names the size: {line}"));
    assert!(size > 4_500_000, "{line}");
    assert!(line.ends_with(&format!("bytes of argv+env, the limit is {MAX_ARGS}")), "{line}");
    assert!(agent.sessions().is_empty(), "nothing started: {:?}", agent.sessions());
}

/// After the start, a client message may be at most 64 KiB: a longer one is
/// refused with INVALID_ARGUMENT naming the limit, whether it comes before `ready`
/// (the held process is killed, the command never runs) or after (the session is
/// hung up, as when its client leaves).
#[test]
fn a_later_message_over_its_limit_is_refused() {
    let agent = TestAgent::start(AgentOptions::default());
    let grant = agent.issue_grant("5m");
    let launch = std::path::PathBuf::from(format!("{}.launch", agent.socket().display()));
    let devnull = std::fs::File::open("/dev/null").expect("open /dev/null");
    let cwd = std::fs::File::open("/").expect("open /");
    let n = devnull.as_raw_fd();
    let sleep = LaunchRequest {
        program: b"/bin/sleep".to_vec(),
        argv: vec![b"sleep".to_vec(), b"60".to_vec()],
        ..request(launch_request::Authority::Grant(grant.clone()))
    };
    let over = u32::try_from(MAX_FRAME + 1).expect("small").to_be_bytes();
    for after_ready in [false, true] {
        let mut c = RawLaunch::connect(&launch);
        c.send_start(sleep.clone(), &[n, n, n, cwd.as_raw_fd()]);
        let pid = match c.next().and_then(|m| m.msg) {
            Some(launch_server::Msg::Started(s)) => s.pid,
            other => panic!("expected started, got {other:?}"),
        };
        if after_ready {
            let ready = LaunchClient { msg: Some(launch_client::Msg::Ready(Default::default())) };
            c.send(&warrant_proto::launch::encode(&ready).expect("encode"), &[]);
            let t0 = Instant::now();
            while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim() != "sleep" {
                assert!(t0.elapsed() < T, "the command did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        c.send(&over, &[]);
        let (code, message) = c.refusal();
        assert_eq!(code, 3, "INVALID_ARGUMENT: {message}");
        assert!(message.contains(&format!("over the {MAX_FRAME}-byte limit")), "{message}");
        let t0 = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(t0.elapsed() < T, "after_ready={after_ready}: the session's process {pid} is still there");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(c.next().is_none(), "after_ready={after_ready}: the agent hangs up");
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: a two-int array for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2");
    // SAFETY: both descriptors are fresh and ours.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A pty pair made by the test: the operator's terminal.
struct Operator {
    master: std::fs::File,
    slave: OwnedFd,
    slave_name: String,
}

impl Operator {
    fn open(rows: u16, cols: u16) -> Self {
        let (mut m, mut s) = (0, 0);
        let mut name = [0 as libc::c_char; 64];
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: valid out-pointers; a 64-byte name buffer is what glibc needs.
        let rc = unsafe { libc::openpty(&raw mut m, &raw mut s, name.as_mut_ptr(), std::ptr::null(), &raw const ws) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty filled a NUL-terminated name and two fresh descriptors.
        let slave_name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned();
        let master = unsafe { std::fs::File::from_raw_fd(m) };
        let slave = unsafe { OwnedFd::from_raw_fd(s) };
        Self { master, slave, slave_name }
    }

    fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ with a valid winsize on our master.
        assert_eq!(unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &raw const ws) }, 0);
    }

    fn termios(&self) -> libc::termios {
        // SAFETY: termios is plain data for tcgetattr to fill.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &raw mut t) }, 0);
        t
    }
}

/// Output read from the master until `want` appears (all of it is returned).
fn read_until(master: &mut std::fs::File, seen: &mut String, want: &str, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while !seen.contains(want) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut pfd = libc::pollfd { fd: master.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&raw mut pfd, 1, left.as_millis().min(1000) as i32) };
        if ready <= 0 {
            continue;
        }
        match master.read(&mut buf) {
            Ok(0) | Err(_) => return seen.contains(want),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    true
}

#[test]
fn an_interactive_session_gets_its_own_pty() {
    let agent = TestAgent::start_default();
    let grant = agent.issue_grant("5m");
    let mut op = Operator::open(40, 120);
    let before = op.termios();
    let bin = testbin();
    let script = format!(
        "echo \"tty=$(tty) sid=$(ps -o sid= -p $$ | tr -d ' ') size=$(stty size)\"; \
         {bin} attempt tiocsti; \
         trap 'echo \"winch $(stty size)\"' WINCH; \
         trap 'echo interrupted; exit 7' INT; \
         echo ready; while :; do sleep 0.1; done"
    );
    let mark = Marker::new();
    let mut cmd = agent.exec_command(&grant, &mark, &["/bin/sh", "-c", &script]);
    let slave = op.slave.as_raw_fd();
    for fd in 0..2 {
        let dup = op.slave.try_clone().expect("dup slave");
        if fd == 0 {
            cmd.stdin(Stdio::from(dup));
        } else {
            cmd.stdout(Stdio::from(dup));
        }
    }
    // SAFETY: setsid and TIOCSCTTY are async-signal-safe; the operator's terminal
    // becomes the client's controlling terminal, as a login shell's would be.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut s = warrant_tests::Session::spawn_keeping_stdio(cmd);
    let client = s.client_pid();
    let mut seen = String::new();
    assert!(read_until(&mut op.master, &mut seen, "ready", T), "the session's output: {seen:?}; client: {}", s.stderr().text());
    let line = seen.lines().find(|l| l.starts_with("tty=")).unwrap_or_else(|| panic!("{seen:?}")).trim_end().to_owned();
    let field = |name: &str| {
        line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).unwrap_or_default().to_owned()
    };
    let tty = field("tty");
    assert!(tty.starts_with("/dev/pts/") && tty != op.slave_name, "its own pty, not {}: {line}", op.slave_name);
    assert_ne!(field("sid"), client.to_string(), "a session of its own, not the operator's: {line}");
    assert!(line.ends_with("size=40 120"), "the operator's window size: {line}");
    assert!(seen.contains("tiocsti errno 1"), "TIOCSTI is refused in the session: {seen:?}");
    // The operator's terminal is raw while the client relays.
    assert_eq!(op.termios().c_lflag & libc::ICANON, 0, "the operator's tty is raw during the session");

    op.resize(50, 132);
    assert!(read_until(&mut op.master, &mut seen, "winch 50 132", T), "SIGWINCH and the new size pass through: {seen:?}");
    op.master.write_all(b"\x03").expect("type ctrl-c");
    assert!(read_until(&mut op.master, &mut seen, "interrupted", T), "Ctrl-C reaches the session: {seen:?}");
    let status = s.wait_for(T);
    assert_eq!(status.code(), Some(7), "the client exits with the command's status");
    let after = op.termios();
    assert_eq!(
        (after.c_lflag, after.c_iflag, after.c_oflag),
        (before.c_lflag, before.c_iflag, before.c_oflag),
        "the operator's terminal is restored"
    );
    let start = agent.wait_for_event(audit::is("session_start", s.id()), T);
    assert_eq!(start["sandbox"], "landlock+seccomp", "{start}");
}
