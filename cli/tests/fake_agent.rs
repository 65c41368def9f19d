//! Black-box tests of the `warrant` binary against a fake agent: a tonic server
//! implementing `warrant.v1.Agent` on a unix socket in a temporary directory. They
//! prove the wire round trip, what goes to stdout versus stderr, and the exit
//! statuses, without a kernel or a real agent.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Output;
use std::sync::{Arc, Mutex};

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};
use warrant_proto::agent_server::{Agent, AgentServer};
use warrant_proto::event::Event as Kind;
use warrant_proto::{
    AgentStatus, AttachRequest, Event, Exec, GetPolicyRequest, Grant, GrantPolicy, GrantState, IssueGrantRequest, KillReport, KillRequest,
    ListGrantsRequest, ListGrantsResponse, ListSessionsRequest, ListSessionsResponse, Net, RevokeGrantRequest, Session,
    SessionKill, SessionState, StartSessionRequest, StatusRequest, WatchRequest,
};

/// Requests the fake received, in order, as debug strings (plus the caller's pid
/// for StartSession), so tests can assert what the CLI sent.
type Calls = Arc<Mutex<Vec<String>>>;

struct Fake {
    /// What was asked of the fake.
    calls: Calls,
}

fn now_ns() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()).unwrap()
}

#[tonic::async_trait]
impl Agent for Fake {
    async fn issue_grant(&self, r: Request<IssueGrantRequest>) -> Result<Response<Grant>, Status> {
        let r = r.into_inner();
        self.calls.lock().unwrap().push(format!("issue {} {} {}", r.subject, r.ttl_seconds, r.reason));
        if r.subject == "mallory" {
            return Err(Status::permission_denied("subject mallory is not allowed on this host"));
        }
        Ok(Response::new(Grant { id: "g-7".into(), subject: r.subject, ..Default::default() }))
    }

    async fn update_policy(
        &self,
        _: Request<warrant_proto::UpdatePolicyRequest>,
    ) -> Result<Response<Grant>, Status> {
        Err(Status::unimplemented("the fake agent has no policies"))
    }

    async fn list_grants(&self, _: Request<ListGrantsRequest>) -> Result<Response<ListGrantsResponse>, Status> {
        Ok(Response::new(ListGrantsResponse {
            grants: vec![Grant {
                id: "g-7".into(),
                subject: "alice".into(),
                reason: "INC-42".into(),
                expires_at_unix_ns: now_ns() + 600_000_000_000,
                state: GrantState::Active.into(),
                sessions: vec!["s-1".into()],
                ..Default::default()
            }],
        }))
    }

    async fn revoke_grant(&self, r: Request<RevokeGrantRequest>) -> Result<Response<KillReport>, Status> {
        let r = r.into_inner();
        self.calls.lock().unwrap().push(format!("revoke {} {}", r.grant, r.reason));
        if r.grant != "g-7" {
            return Err(Status::not_found(format!("unknown grant {}", r.grant)));
        }
        Ok(Response::new(KillReport {
            sessions: vec![SessionKill { session: "s-1".into(), killed: 53, elapsed_us: 41_200, survivors: 0 }],
        }))
    }

    async fn start_session(&self, r: Request<StartSessionRequest>) -> Result<Response<Session>, Status> {
        let pid = r.extensions().get::<UdsConnectInfo>().and_then(|i| i.peer_cred).and_then(|c| c.pid());
        let r = r.into_inner();
        self.calls.lock().unwrap().push(format!("start {} {:?} pid={}", r.grant, r.command, pid.unwrap_or(-1)));
        if r.grant == "g-old" {
            return Err(Status::failed_precondition("grant g-old expired 3m ago"));
        }
        Ok(Response::new(Session {
            id: "s-9".into(),
            grant: r.grant,
            expires_at_unix_ns: now_ns() + 119_500_000_000,
            state: SessionState::Live.into(),
            ..Default::default()
        }))
    }

    async fn report(&self, r: Request<warrant_proto::ReportRequest>) -> Result<Response<Event>, Status> {
        Err(Status::not_found(format!("no report for session {}", r.into_inner().session)))
    }

    async fn get_policy(&self, r: Request<GetPolicyRequest>) -> Result<Response<GrantPolicy>, Status> {
        let r = r.into_inner();
        if r.grant == "g-old" {
            return Err(Status::failed_precondition("grant g-old expired 3m ago"));
        }
        Ok(Response::new(GrantPolicy { grant: r.grant, ..Default::default() }))
    }

    async fn attach(&self, r: Request<AttachRequest>) -> Result<Response<Session>, Status> {
        let r = r.into_inner();
        Ok(Response::new(Session { id: format!("s-{}", r.pid), grant: r.grant, ..Default::default() }))
    }

    async fn list_sessions(&self, _: Request<ListSessionsRequest>) -> Result<Response<ListSessionsResponse>, Status> {
        Ok(Response::new(ListSessionsResponse::default()))
    }

    async fn kill(&self, r: Request<KillRequest>) -> Result<Response<KillReport>, Status> {
        let r = r.into_inner();
        let survivors = u32::from(r.session == "s-stuck");
        Ok(Response::new(KillReport {
            sessions: vec![SessionKill { session: r.session, killed: 3, elapsed_us: 1500, survivors }],
        }))
    }

    type WatchStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<Event, Status>> + Send>>;

    async fn watch(&self, r: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let r = r.into_inner();
        self.calls.lock().unwrap().push(format!("watch {:?} {:?} {:?}", r.session, r.grant, r.kinds));
        let base = Event { session: "s-1".into(), grant: "g-7".into(), pid: 4242, time_unix_ns: now_ns(), ..Default::default() };
        let events = vec![
            Ok(Event {
                event: Some(Kind::Exec(Exec {
                    path: "/usr/bin/id".into(),
                    argv: vec!["id".into(), "-u".into()],
                    ..Default::default()
                })),
                ..base.clone()
            }),
            Ok(Event {
                event: Some(Kind::Connect(Net {
                    family: "inet".into(),
                    protocol: "tcp".into(),
                    remote_addr: "10.0.0.1".into(),
                    remote_port: 5432,
                    ..Default::default()
                })),
                ..base
            }),
        ];
        Ok(Response::new(Box::pin(tokio_stream::iter(events))))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<AgentStatus>, Status> {
        Ok(Response::new(AgentStatus { version: "0.1.0".into(), host: "test-host".into(), ..Default::default() }))
    }

    async fn verify_audit_log(
        &self,
        _: Request<warrant_proto::AuditVerifyRequest>,
    ) -> Result<Response<warrant_proto::AuditVerifyResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }
}

/// A running fake agent; the server stops with the test's runtime.
struct Harness {
    /// Holds the socket's directory alive.
    _dir: tempfile::TempDir,
    /// The fake agent's socket.
    socket: PathBuf,
    /// What the fake received.
    calls: Calls,
}

fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let calls = Calls::default();
    let fake = Fake { calls: calls.clone() };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentServer::new(fake))
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    serve_launch(dir.path().join("agent.sock.launch"), calls.clone());
    Harness {
        _dir: dir,
        socket,
        calls,
    }
}

async fn warrant(socket: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_warrant"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("WARRANT_SOCKET")
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `grant issue` prints only the id on stdout, so `G=$(warrant grant issue …)`
/// works, and sends the TTL in seconds.
#[tokio::test(flavor = "multi_thread")]
async fn grant_issue_prints_only_the_id() {
    let h = start();
    let out = warrant(&h.socket, &["grant", "issue", "--subject", "alice", "--ttl", "2m", "--reason", "INC-42"]).await;
    assert_eq!(text(&out.stdout), "g-7\n", "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    assert!(out.status.success());
    assert_eq!(h.calls.lock().unwrap().as_slice(), ["issue alice 120 INC-42"]);
}

/// The agent's error message is printed as-is, exit 2.
#[tokio::test(flavor = "multi_thread")]
async fn agent_errors_are_printed_as_is() {
    let h = start();
    let out = warrant(&h.socket, &["grant", "issue", "--subject", "mallory", "--ttl", "1m"]).await;
    assert_eq!(text(&out.stderr), "warrant: subject mallory is not allowed on this host\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());

    let out = warrant(&h.socket, &["revoke", "--grant", "g-12"]).await;
    assert_eq!(text(&out.stderr), "warrant: unknown grant g-12\n");
    assert_eq!(out.status.code(), Some(2));
}

/// `watch --json` says when it is subscribed, prints one documented JSON object per
/// event, and exits 0 when the agent ends the stream.
#[tokio::test(flavor = "multi_thread")]
async fn watch_json_streams_events() {
    let h = start();
    let out = warrant(&h.socket, &["watch", "--session", "s-1", "--kind", "exec,net", "--json"]).await;
    assert_eq!(text(&out.stderr), "warrant: watching (ctrl-c to stop)\n");
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!((lines[0]["kind"].as_str(), lines[0]["path"].as_str()), (Some("exec"), Some("/usr/bin/id")));
    assert_eq!((lines[1]["addr"].as_str(), lines[1]["port"].as_u64()), (Some("10.0.0.1"), Some(5432)));
    assert_eq!(h.calls.lock().unwrap().as_slice(), [r#"watch "s-1" "" ["exec", "net"]"#]);
}

/// Human watch lines carry session, pid, kind and the summary.
#[tokio::test(flavor = "multi_thread")]
async fn watch_human_lines() {
    let h = start();
    let out = warrant(&h.socket, &["watch"]).await;
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].ends_with(" s-1       4242 exec /usr/bin/id id -u"), "{stdout}");
    assert!(lines[1].ends_with(" s-1       4242 connect 10.0.0.1:5432"), "{stdout}");
}

/// `exec` hands the agent its stdio and working directory over the launch socket
/// (the agent runs the command), prints the session line, and exits with the
/// command's status.
#[tokio::test(flavor = "multi_thread")]
async fn exec_hands_the_command_to_the_launch_socket() {
    let h = start();
    let out = warrant(
        &h.socket,
        &["exec", "--grant", "g-7", "--", "sh", "-c", "echo hi"],
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "the command's status: {stderr}");
    assert!(
        stderr.starts_with("warrant: session s-9 under grant g-7 (1m")
            && stderr.contains(
                " left), pid 4242, confined by the agent (3 Landlock path rules, seccomp)"
            ),
        "{stderr}"
    );
    // The fake wrote through the stdout descriptor it was handed.
    assert_eq!(text(&out.stdout), "ran sh -c echo hi\n");
    let calls = h.calls.lock().unwrap().clone();
    let sh = which_sh();
    assert_eq!(
        calls,
        [format!(
            r#"launch grant=g-7 program={sh} argv=["sh", "-c", "echo hi"] fds=4 terminal=[] cwd=dir"#
        ), "ready=true".to_owned()]
    );
}

/// A session whose command the agent could not execute exits 127, as a shell.
#[tokio::test(flavor = "multi_thread")]
async fn exec_of_a_command_that_cannot_be_executed_exits_127() {
    let h = start();
    let out = warrant(&h.socket, &["exec", "--grant", "g-gone", "--", "sh", "-c", "echo ran"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(stderr.starts_with("warrant: session s-9 under grant g-gone"), "{stderr}");
    assert!(stderr.ends_with("warrant: cannot execute sh: no such file or directory\n"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// A refused session is reported and nothing runs.
#[tokio::test(flavor = "multi_thread")]
async fn exec_refused_by_the_agent() {
    let h = start();
    let out = warrant(&h.socket, &["exec", "--grant", "g-old", "--", "sh", "-c", "echo ran"]).await;
    assert_eq!(text(&out.stderr), "warrant: grant g-old expired 3m ago\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

fn which_sh() -> String {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("sh"))
        .find(|p| p.exists())
        .unwrap()
        .display()
        .to_string()
}

/// The launch socket's fake: one connection at a time, on a thread. It reads the
/// start message and its descriptors, records them, writes "ran ARGV" through the
/// stdout it was given once the client said ready after `started` (as the agent
/// runs the command only then), and answers exited (status 7); `g-old` is
/// refused; under `g-gone` the command cannot be executed (ENOENT).
fn serve_launch(path: PathBuf, calls: Calls) {
    use std::io::{IoSliceMut, Read, Write};
    use std::mem::MaybeUninit;
    use std::os::unix::net::UnixListener;
    use warrant_proto::launch::{self, Frames};
    use warrant_proto::v1::{
        LaunchClient, LaunchExit, LaunchRefused, LaunchServer, LaunchStarted, launch_client,
        launch_request, launch_server,
    };
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut frames = Frames::default();
            let mut fds = Vec::new();
            let start = loop {
                if let Some(LaunchClient {
                    msg: Some(launch_client::Msg::Start(r)),
                }) = frames.pop::<LaunchClient>().unwrap()
                {
                    break r;
                }
                let mut buf = [0u8; 65536];
                let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(8))];
                let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
                let msg = rustix::net::recvmsg(
                    &conn,
                    &mut [IoSliceMut::new(&mut buf)],
                    &mut control,
                    rustix::net::RecvFlags::CMSG_CLOEXEC,
                )
                .unwrap();
                for m in control.drain() {
                    if let rustix::net::RecvAncillaryMessage::ScmRights(got) = m {
                        fds.extend(got);
                    }
                }
                assert!(msg.bytes > 0, "the client closed before its start message");
                frames.push(&buf[..msg.bytes]);
            };
            let Some(launch_request::Authority::Grant(grant)) = start.authority else {
                panic!("not a grant")
            };
            let argv: Vec<String> = start
                .argv
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let cwd_is_dir = fds.get(3).is_some_and(|fd| {
                rustix::fs::fstat(fd).is_ok_and(|st| {
                    rustix::fs::FileType::from_raw_mode(st.st_mode)
                        == rustix::fs::FileType::Directory
                })
            });
            calls.lock().unwrap().push(format!(
                "launch grant={grant} program={} argv={argv:?} fds={} terminal={:?} cwd={}",
                String::from_utf8_lossy(&start.program),
                fds.len(),
                start.terminal.map(|t| t.fds).unwrap_or_default(),
                if cwd_is_dir { "dir" } else { "not-a-dir" }
            ));
            let send = |conn: &mut std::os::unix::net::UnixStream, m: launch_server::Msg| {
                conn.write_all(&launch::encode(&LaunchServer { msg: Some(m) }).unwrap())
                    .unwrap();
            };
            if grant == "g-old" {
                send(
                    &mut conn,
                    launch_server::Msg::Refused(LaunchRefused {
                        code: 9,
                        message: "grant g-old expired 3m ago".into(),
                    }),
                );
                continue;
            }
            send(
                &mut conn,
                launch_server::Msg::Started(LaunchStarted {
                    session: Some(Session {
                        id: "s-9".into(),
                        grant: grant.clone(),
                        expires_at_unix_ns: now_ns() + 119_500_000_000,
                        state: SessionState::Live.into(),
                        ..Default::default()
                    }),
                    pid: 4242,
                    sandbox: "landlock+seccomp".into(),
                    landlock_rules: 3,
                    notes: Vec::new(),
                }),
            );
            // Nothing runs before the client said ready.
            let ready = loop {
                if let Some(m) = frames.pop::<LaunchClient>().unwrap() {
                    break matches!(m.msg, Some(launch_client::Msg::Ready(_)));
                }
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap();
                if n == 0 {
                    break false;
                }
                frames.push(&buf[..n]);
            };
            calls.lock().unwrap().push(format!("ready={ready}"));
            let exit = if grant == "g-gone" {
                LaunchExit {
                    code: 127,
                    exec_errno: libc::ENOENT,
                    ..Default::default()
                }
            } else {
                let mut out = std::fs::File::from(fds.swap_remove(1));
                writeln!(out, "ran {}", argv.join(" ")).unwrap();
                LaunchExit {
                    code: 7,
                    ..Default::default()
                }
            };
            drop(fds);
            send(&mut conn, launch_server::Msg::Exited(exit));
            let _ = conn.read(&mut [0u8; 1]);
        }
    });
}

/// Exit codes of a kill: 0 when everything died, 1 with a warning when not.
#[tokio::test(flavor = "multi_thread")]
async fn kill_reports_and_flags_survivors() {
    let h = start();
    let out = warrant(&h.socket, &["kill", "--session", "s-1"]).await;
    assert_eq!(text(&out.stdout), "killed session s-1: 3 processes in 1.5 ms\n");
    assert!(out.status.success());

    let out = warrant(&h.socket, &["kill", "--session", "s-stuck"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("warrant: session s-stuck: 1 process survived the kill"), "{}", text(&out.stderr));

    let out = warrant(&h.socket, &["kill", "--grant", "g-7", "--reason", "done"]).await;
    assert_eq!(text(&out.stdout), "revoked grant g-7\nkilled session s-1: 53 processes in 41.2 ms\n");
}

/// `grants` shows the table; `status --json` one object; `sessions` with none says so.
#[tokio::test(flavor = "multi_thread")]
async fn listings() {
    let h = start();
    let out = warrant(&h.socket, &["grants"]).await;
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("ID   SUBJECT  STATE   LEFT"), "{stdout}");
    assert!(stdout.contains("g-7  alice    active  9m59s left") || stdout.contains("g-7  alice    active  10m left"), "{stdout}");

    let out = warrant(&h.socket, &["status", "--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["host"], "test-host");

    let out = warrant(&h.socket, &["sessions"]).await;
    assert!(out.stdout.is_empty());
    assert_eq!(text(&out.stderr), "warrant: no live sessions (--all shows ended ones)\n");
    assert!(out.status.success());

    let out = warrant(&h.socket, &["attach", "--grant", "g-7", "--pid", "77"]).await;
    assert_eq!(text(&out.stdout), "s-77\n");
}

/// No agent: one clear line, a hint, exit 2.
#[tokio::test(flavor = "multi_thread")]
async fn no_agent() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let out = warrant(&socket, &["status"]).await;
    assert_eq!(
        text(&out.stderr),
        format!(
            "warrant: cannot reach the agent at {}: no such file or directory\n\n\
             Is warrant-agent running? Start it with `cargo xtask run`.\n",
            socket.display()
        )
    );
    assert_eq!(out.status.code(), Some(2));
}

/// `warrant watch | head -1`: a closed stdout is not an error.
#[tokio::test(flavor = "multi_thread")]
async fn closed_stdout_exits_zero() {
    let h = start();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warrant"))
        .arg("--socket")
        .arg(&h.socket)
        .args(["watch", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
}
