//! The door holds against a local user who floods it (issue 12, item 7):
//!
//! - refused token requests with ~800 KB of argv, 60 of them in a burst on the
//!   door's launch socket, grow the audit log by kilobytes, not by 48 MB: each
//!   record's long fields are cut (and say so), at most a few refusals per caller
//!   uid are recorded per window, and the rest are counted in one record;
//! - the door's gRPC socket refuses a message over its limit, closes connections
//!   over its connection limit at once, and closes a connection that sends nothing
//!   within its handshake timeout.

use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use warrant_proto::{LaunchClient, LaunchRequest, launch_client, launch_request};
use warrant_tests::{AgentOptions, Signer, TestAgent, audit};

/// Sends one launch start message with `fds` attached (SCM_RIGHTS).
fn send_start(stream: &UnixStream, req: LaunchRequest, fds: &[RawFd]) {
    let bytes = warrant_proto::launch::encode(&LaunchClient { msg: Some(launch_client::Msg::Start(req)) }).expect("encode");
    let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(u32::try_from(std::mem::size_of_val(fds)).expect("small")) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; every pointer in it outlives the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: the control buffer has room for one header with `fds`.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&raw const msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(u32::try_from(std::mem::size_of_val(fds)).expect("small")) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast::<RawFd>(), fds.len());
    }
    // SAFETY: a valid socket and message.
    let n = unsafe { libc::sendmsg(stream.as_raw_fd(), &raw const msg, 0) };
    assert_eq!(usize::try_from(n).ok(), Some(bytes.len()), "sendmsg: {}", std::io::Error::last_os_error());
}

/// The agent's answer to a refused request, read to the end.
fn drain(stream: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

fn audit_bytes(agent: &TestAgent) -> u64 {
    agent.with_audit(|a| std::fs::metadata(a.path()).map(|m| m.len()).unwrap_or(0))
}

#[test]
fn a_flood_of_refused_tokens_is_recorded_in_bounded_size_and_number() {
    let signer = Signer::new();
    let agent = TestAgent::start(AgentOptions { door: true, grant_public_key: Some(signer.public_key()), ..Default::default() });
    let launch = std::path::PathBuf::from(format!("{}.launch", agent.door_socket().display()));
    let devnull = std::fs::File::open("/dev/null").expect("open /dev/null");
    let cwd = std::fs::File::open("/").expect("open /");
    let n = devnull.as_raw_fd();
    let four = [n, n, n, cwd.as_raw_fd()];
    // ~800 KB of argv, under the launch socket's 1 MiB frame.
    let argv: Vec<Vec<u8>> = std::iter::once(b"true".to_vec()).chain((0..100).map(|i| format!("{i:04}").repeat(2000).into_bytes())).collect();
    let before = audit_bytes(&agent);
    let started = Instant::now();
    const FLOOD: usize = 60;
    for _ in 0..FLOOD {
        let mut s = UnixStream::connect(&launch).expect("connect the door's launch socket");
        s.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
        let req = LaunchRequest {
            authority: Some(launch_request::Authority::Token(warrant_proto::TokenAuthority {
                token: "wgt1.not-a-token".to_owned(),
                policy: String::new(),
                how: "exec".to_owned(),
            })),
            program: b"/bin/true".to_vec(),
            argv: argv.clone(),
            env: vec![],
            umask: 0o022,
            terminal: None,
        };
        send_start(&s, req, &four);
        let answer = drain(&mut s);
        assert!(String::from_utf8_lossy(&answer).contains("token refused"), "refused: {}", String::from_utf8_lossy(&answer));
    }
    eprintln!("{FLOOD} refused requests in {:?}", started.elapsed());
    std::thread::sleep(Duration::from_secs(2));
    eprintln!("the audit log grew by {} bytes within 2s of the flood", audit_bytes(&agent) - before);
    // The refusals recorded, and the one record that counts the rest.
    let summary = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "token_refused" && audit::str_field(e, "reason").contains("not recorded"),
        Duration::from_secs(30),
    );
    let refused: Vec<_> = agent.events().into_iter().filter(|e| audit::str_field(e, "kind") == "token_refused").collect();
    let grown = audit_bytes(&agent) - before;
    eprintln!("{} token_refused records, audit log grew by {grown} bytes; summary: {summary}", refused.len());
    assert!(refused.len() < FLOOD / 2, "{} of {FLOOD} refusals recorded", refused.len());
    // Every refusal is either recorded or counted (the flood may span windows).
    let (summaries, single): (Vec<_>, Vec<_>) = refused.iter().partition(|e| audit::str_field(e, "reason").contains("not recorded"));
    let counted: usize = summaries
        .iter()
        .map(|e| audit::str_field(e, "reason").split_whitespace().next().and_then(|n| n.parse::<usize>().ok()).expect("a count first"))
        .sum();
    assert_eq!(single.len() + counted, FLOOD, "recorded or counted: {summary}");
    assert!(grown < 256 * 1024, "the audit log grew by {grown} bytes for {FLOOD} refusals");
    let first = single[0];
    let text = first.to_string();
    assert!(text.contains("truncated"), "a cut record says so: {}", &text[..text.len().min(2000)]);
}

#[test]
fn the_door_socket_limits_connections_messages_and_silence() {
    let signer = Signer::new();
    let agent = TestAgent::start(AgentOptions { door: true, grant_public_key: Some(signer.public_key()), ..Default::default() });
    let door = agent.door_socket();
    let bin = warrant_tests::bins::bin_dir().join("warrant-testbin");

    let claim = |token: &str| {
        let file = agent.temp_dir().join("token");
        std::fs::write(&file, token).expect("write token file");
        let out = std::process::Command::new(&bin)
            .args(["claim", &door.display().to_string(), "token", &file.display().to_string()])
            .output()
            .expect("run testbin claim");
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    // A 2 MB request: refused with the limit named, before any check or record.
    let text = claim(&"x".repeat(2_000_000));
    assert!(text.contains("too large") && text.contains("262144"), "a 2 MB door message: {text}");

    // Silent connections: past the limit, closed at once; all closed after the timeout.
    let silent: Vec<UnixStream> = (0..80).map(|_| connect(&door)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let closed_at_once = silent.iter().filter(|s| is_closed(s)).count();
    assert!(closed_at_once >= 80 - 64, "{closed_at_once} of 80 silent connections closed at once");
    let deadline = Instant::now() + Duration::from_secs(20);
    while silent.iter().any(|s| !is_closed(s)) {
        assert!(Instant::now() < deadline, "silent connections still open after 20s");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The door still serves: a root caller with a bad token is refused with the reason.
    let text = claim("wgt1.not-a-token");
    assert!(text.contains("token refused"), "after the flood: {text}");
}

fn connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    s.set_nonblocking(true).expect("nonblocking");
    s
}

/// True once the agent closed `s` (a read returns EOF or an error other than
/// "would block"); what the agent sent (its HTTP/2 settings) is read and dropped.
fn is_closed(mut s: &UnixStream) -> bool {
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}
