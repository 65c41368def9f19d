//! The launch socket: sessions whose first process the agent creates, confined
//! before the command's first instruction (`warrant/v1/launch.proto`).
//!
//! Trust stays here: a client only hands over its stdio and working directory
//! (descriptors over SCM_RIGHTS), the command, its environment and umask, and
//! says which of the descriptors is a terminal it relays. The agent decides who
//! the caller is from the kernel (peer credentials and a pidfd taken at accept),
//! checks the grant or token, builds the Landlock ruleset and seccomp filter from
//! the grant's policy, forks the first process and walks it into the box (see
//! [`child`]), reads back what is in force from `/proc/PID/status`, and only then
//! records `session_start` and lets the command run. The client relays I/O and
//! the exit status; nothing it says changes what confines the session.
//!
//! Each front socket has its launch socket beside it (path + [`SUFFIX`]), with its
//! mode: the API's takes grants and tokens, the door's tokens only. A caller from
//! inside a session is refused (a `violation`), as on the API, and the kernel
//! refuses the connect itself (the launch sockets are among the agent's own).

pub mod child;
pub mod plans;
pub mod sandbox;
mod wire;

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::io::unix::AsyncFd;
use tokio::net::{UnixListener, UnixStream, unix::pipe};
use tokio::sync::Semaphore;
use tonic::Status;
use tracing::{info, warn};
use warrant_policy::Policy;
use warrant_proto::launch::{self, FrameError, START_FDS};
use warrant_proto::v1::{
    self as pb, LaunchExit, LaunchRefused, LaunchRequest, LaunchServer, LaunchStarted,
    launch_client, launch_request, launch_server,
};

use crate::door::{Door, TokenRequest};
use crate::host::{Host, SANDBOX_CONFINED};
use crate::peer::{self, PeerInfo};
use child::{Creds, Plan, Report, Spawned};
use plans::Plans;
use wire::{Incoming, WireError};

/// A front socket's launch socket is its path with this appended.
pub const SUFFIX: &str = ".launch";

/// How long a client has to send its start message once connected.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// How long a client has to say `ready` once told its session started.
const READY: Duration = Duration::from_secs(30);

/// How long the child may take over one step of its walk in.
const STEP: Duration = Duration::from_secs(10);

/// Connections that have not started a session yet, at most; more are refused
/// at once (a local user cannot pile up descriptors in the agent). Each holds at
/// most one start message, `launch::MAX_START` (4 MiB of argv+env and 256 KiB for
/// the rest: 4.25 MiB) in its frame buffer, so all of them at most 136 MiB
/// (measured: 33 connections each one byte short of a full start raised the
/// agent's RSS by 137 MiB). A start that has all arrived is decoded, and its C
/// strings made, while it is checked and forked (about twice its size again, for
/// those moments); the frame buffer is let go once it is decoded.
/// A started session's connection keeps a buffer of at most `launch::MAX_FRAME`.
const PENDING: usize = 32;

/// Signals a client may forward to its session's process group.
const FORWARDED: [i32; 9] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGTSTP,
    libc::SIGCONT,
    libc::SIGWINCH,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The launch socket of `front`.
pub fn path_for(front: &Path) -> PathBuf {
    let mut s = front.as_os_str().to_owned();
    s.push(SUFFIX);
    PathBuf::from(s)
}

/// Which socket a launch socket stands beside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// The API's: grants and tokens.
    Agent,
    /// The door's: tokens only.
    Door,
}

impl Front {
    fn name(self) -> &'static str {
        match self {
            Self::Agent => "agent launch",
            Self::Door => "door launch",
        }
    }
}

/// Serves one launch socket.
#[derive(Clone)]
pub struct Launcher {
    host: Arc<Host>,
    door: Door,
    front: Front,
    pending: Arc<Semaphore>,
    plans: Arc<Plans>,
}

/// A refusal, as the client gets it.
#[derive(Debug)]
struct Refused {
    status: Status,
}

impl From<Status> for Refused {
    fn from(status: Status) -> Self {
        Self { status }
    }
}

impl From<crate::host::HostError> for Refused {
    fn from(e: crate::host::HostError) -> Self {
        Status::from(e).into()
    }
}

/// A session on the record whose first process waits, confined, one step short
/// of executing the command, until the client has shown the start.
struct Held {
    /// Saying "g" here lets the child execute the command.
    go: File,
    /// The blocking spawn: done once the command runs or could not be executed.
    spawned: tokio::task::JoinHandle<io::Result<Spawned>>,
    pid: u32,
    started: LaunchStarted,
    /// The program, as the log names it.
    shown: String,
    /// For the `launched` line: when the launch began, and how long each step took.
    t0: Instant,
    steps: [Duration; 5],
    /// Whether the sandbox was planned for this session or a kept plan.
    planned: plans::Planned,
}

/// A session whose first process runs the command.
struct Running {
    child: Spawned,
    pid: u32,
}

impl Launcher {
    pub fn new(host: Arc<Host>, door: Door, front: Front) -> Self {
        Self {
            host,
            door,
            front,
            pending: Arc::new(Semaphore::new(PENDING)),
            plans: Arc::new(Plans::default()),
        }
    }

    /// Accepts connections until the task is aborted, one task each.
    pub fn serve(self, listener: UnixListener) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let me = self.clone();
                        tokio::spawn(async move { me.connection(stream).await });
                    }
                    Err(e) => {
                        warn!(socket = self.front.name(), "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
    }

    async fn connection(self, stream: UnixStream) {
        let peer = match PeerInfo::of(&stream) {
            Ok(p) => p,
            Err(e) => {
                warn!(
                    socket = self.front.name(),
                    "dropped a connection whose peer cannot be read: {e}"
                );
                return;
            }
        };
        let mut incoming = Incoming::new();
        let started = {
            let Ok(_slot) = self.pending.try_acquire() else {
                let status = Status::resource_exhausted(format!(
                    "{PENDING} launches are already in progress on this socket; try again"
                ));
                let _ = wire::send(&stream, &refused(&Refused::from(status))).await;
                return;
            };
            self.launch(&stream, &peer, &mut incoming).await
        };
        let held = match started {
            Ok(h) => h,
            Err(r) => {
                info!(
                    socket = self.front.name(),
                    uid = peer.uid,
                    pid = peer.pid,
                    "launch refused: {}",
                    r.status.message()
                );
                let _ = wire::send(&stream, &refused(&r)).await;
                return;
            }
        };
        if let Some(running) = self.release(&stream, &mut incoming, held).await {
            relay(&stream, &mut incoming, running).await;
        }
    }

    /// Sends `started`, waits for the client's `ready` and lets the command run.
    /// `None` when there is nothing to relay: the client went away or never said
    /// ready (the session's process is killed), or the command could not be
    /// executed (the client has its `exited`).
    async fn release(
        &self,
        stream: &UnixStream,
        incoming: &mut Incoming,
        held: Held,
    ) -> Option<Running> {
        let Held {
            mut go,
            spawned,
            pid,
            started,
            shown,
            t0,
            steps,
            planned,
        } = held;
        let session = started
            .session
            .as_ref()
            .map(|s| s.id.clone())
            .unwrap_or_default();
        let rules = started.landlock_rules;
        let abandon = |why: &str| {
            warn!(session = %session, pid, "launch abandoned: {why}; its process is killed");
            kill(pid);
        };
        let msg = LaunchServer {
            msg: Some(launch_server::Msg::Started(started)),
        };
        if let Err(e) = wire::send(stream, &msg).await {
            abandon(&format!("cannot tell the client it started: {e}"));
            drop(go);
            reap(spawned).await;
            return None;
        }
        let deadline = tokio::time::sleep(READY);
        tokio::pin!(deadline);
        let ready = loop {
            tokio::select! {
                () = &mut deadline => break Err(format!("the client did not say ready within {}s", READY.as_secs())),
                msg = incoming.next(stream) => match msg {
                    Ok(Some(pb::LaunchClient { msg: Some(launch_client::Msg::Ready(_)) })) => break Ok(()),
                    Ok(Some(pb::LaunchClient { msg: Some(launch_client::Msg::Signal(sig)) })) if FORWARDED.contains(&sig) => {
                        signal_group(pid, sig);
                    }
                    Ok(Some(other)) => break Err(format!("the client sent {other:?} where `ready` belongs")),
                    Ok(None) => break Err("the client went away before it said ready".to_owned()),
                    Err(e) => {
                        refuse_frame(stream, &e).await;
                        break Err(format!("reading the client: {e}"));
                    }
                },
            }
        };
        let ready_at = t0.elapsed();
        if let Err(why) = ready {
            abandon(&why);
            drop(go);
            reap(spawned).await;
            return None;
        }
        // 5: the command.
        let _ = go.write_all(b"g");
        drop(go);
        let child = match spawned.await {
            Ok(Ok(child)) => child,
            Ok(Err(e)) => {
                let errno = e.raw_os_error().unwrap_or(libc::ENOEXEC);
                info!(session = %session, pid, "cannot execute {shown}: {e}");
                let _ = wire::send(stream, &unexecuted(errno)).await;
                return None;
            }
            Err(e) => {
                warn!(session = %session, pid, "spawning: {e}");
                kill(pid);
                let _ = wire::send(stream, &unexecuted(libc::ECHILD)).await;
                return None;
            }
        };
        let us = |d: Duration| d.as_micros() as u64;
        let [prepared, forked, opened, confined, announced] = steps;
        info!(
            session = %session,
            pid,
            sandbox = SANDBOX_CONFINED,
            landlock_rules = rules,
            plan = %planned,
            elapsed_us = us(t0.elapsed()),
            prepared_us = us(prepared),
            forked_us = us(forked),
            opened_us = us(opened),
            confined_us = us(confined),
            announced_us = us(announced),
            ready_us = us(ready_at),
            "launched"
        );
        Some(Running { child, pid })
    }

    /// Everything up to the command running, or why it does not.
    async fn launch(
        &self,
        stream: &UnixStream,
        peer: &PeerInfo,
        incoming: &mut Incoming,
    ) -> Result<Held, Refused> {
        if let Some(tag) = peer.tag(self.host.task_tags()) {
            let (host, pid, socket) = (Arc::clone(&self.host), peer.pid, self.front.name());
            tokio::spawn(async move { host.refused_from_session(tag, pid, socket).await });
            return Err(Status::permission_denied(format!(
                "the warrant {} socket refuses processes of a session (pid {} is in session {}): a session may not start sessions",
                self.front.name(),
                peer.pid,
                crate::ids::session(tag.session_id)
            ))
            .into());
        }
        if peer.pid == 0 {
            return Err(Status::failed_precondition(
                "cannot tell the calling process from the socket",
            )
            .into());
        }
        let first = tokio::time::timeout(HANDSHAKE, incoming.next(stream))
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "no start message within {}s",
                    HANDSHAKE.as_secs()
                ))
            })?
            .map_err(|e| match e {
                WireError::Frame(FrameError::TooLarge { len, limit }) => Status::invalid_argument(format!(
                    "the start message is {len} bytes, over the {limit}-byte limit ({} bytes of argv+env and {} for the rest)",
                    launch::MAX_ARGS,
                    launch::START_HEADROOM
                )),
                e => Status::invalid_argument(e.to_string()),
            })?;
        let Some(pb::LaunchClient {
            msg: Some(launch_client::Msg::Start(req)),
        }) = first
        else {
            return Err(Status::invalid_argument("the first message must be `start`").into());
        };
        let fds = std::mem::take(&mut incoming.fds);
        let Ok(fds) = <[OwnedFd; START_FDS]>::try_from(fds) else {
            return Err(Status::invalid_argument(format!(
                "the start message must come with {START_FDS} descriptors (stdin, stdout, stderr, working directory)"
            ))
            .into());
        };
        let request = Checked::of(&req, fds)?;
        let caller = (peer.uid, peer.pid);
        let (grant, how) = match &req.authority {
            Some(launch_request::Authority::Grant(g)) if self.front == Front::Agent => {
                (g.clone(), "exec")
            }
            Some(launch_request::Authority::Grant(_)) => {
                return Err(Status::permission_denied(
                    "the door's launch socket takes tokens only; a grant id needs the agent's socket",
                )
                .into());
            }
            Some(launch_request::Authority::Token(t)) => {
                let how = if t.how == "login" { "login" } else { "exec" };
                let ask = TokenRequest {
                    token: &t.token,
                    policy: &t.policy,
                    how,
                    command: &request.recorded,
                };
                (self.door.let_in(&ask, caller).await?, how)
            }
            None => {
                return Err(Status::invalid_argument(
                    "the start message names neither a grant nor a token",
                )
                .into());
            }
        };
        let creds = creds_of(peer)?;
        self.start(request, &grant, how, caller, creds).await
    }

    /// Confines, tags and runs the first process.
    async fn start(
        &self,
        request: Checked,
        grant: &str,
        how: &str,
        caller: (u32, u32),
        creds: Creds,
    ) -> Result<Held, Refused> {
        let t0 = Instant::now();
        let gp = self.host.get_policy(grant)?;
        let policy = if gp.policy.is_empty() {
            None
        } else {
            let file = if gp.policy_file.is_empty() {
                "policy"
            } else {
                gp.policy_file.as_str()
            };
            Some(
                Policy::from_yaml(&gp.policy, file)
                    .map_err(|e| Status::internal(format!("the grant's policy: {e}")))?,
            )
        };
        let paths = gp.protected_paths.clone();
        let plans = Arc::clone(&self.plans);
        let (sandbox, planned) =
            tokio::task::spawn_blocking(move || plans.sandbox(policy.as_ref(), &paths))
                .await
                .map_err(|e| Status::internal(format!("planning the sandbox: {e}")))?
                .map_err(|e| {
                    Status::failed_precondition(format!("cannot confine the session: {e:#}"))
                })?;
        let prepared = t0.elapsed();
        let rules = sandbox.rules;
        let notes: Vec<String> = sandbox
            .unlisted
            .iter()
            .map(|(dir, why)| {
                format!(
                    "cannot list {} ({why}): what it holds is denied",
                    dir.display()
                )
            })
            .collect();
        let uid = creds.uid;
        let Checked {
            program,
            argv,
            env,
            stdio,
            cwd,
            umask,
            terminal,
            recorded,
        } = request;
        let shown = program.to_string_lossy().into_owned();
        let plan = Plan {
            program,
            argv,
            env,
            stdio,
            cwd,
            umask,
            terminal,
            creds,
            sandbox,
        };
        // The session's cgroup first: the child is born in it.
        let born = self.host.session_cgroup()?;
        let cgroup = born.cgroup.clone();
        let cgroup_dir = File::open(&cgroup.path)
            .map(OwnedFd::from)
            .map_err(|e| Status::internal(format!("cannot open the session's cgroup {}: {e}", cgroup.path.display())));
        let built = cgroup_dir.and_then(|dir| {
            child::command(plan, dir).map_err(|e| Status::internal(format!("cannot prepare the command: {e}")))
        });
        let (cmd, talk) = match built {
            Ok(p) => p,
            Err(e) => {
                let _ = cgroup.remove();
                return Err(e.into());
            }
        };
        let spawned = tokio::task::spawn_blocking(move || child::spawn(cmd));
        let mut reports = pipe::Receiver::from_owned_fd(talk.reports)
            .map_err(|e| Status::internal(format!("cannot read the child's reports: {e}")))?;
        let mut go = Some(File::from(talk.go));

        // 1–2: the pid, then tag and cgroup.
        let pid = match next_report(&mut reports).await {
            Some(Report::Pid(pid)) => pid,
            other => {
                drop(go);
                let refused = gone(other, spawned.await);
                let _ = cgroup.remove();
                return Err(refused);
            }
        };
        let forked = t0.elapsed();
        let id = match self
            .host
            .open_session(grant, &[pid], recorded, how, Some(&gp.digest), Some(born))
        {
            Ok(id) => id,
            Err(e) => {
                drop(go);
                reap(spawned).await;
                let _ = cgroup.remove();
                return Err(e.into());
            }
        };
        let opened = t0.elapsed();
        let say_go = |go: &mut Option<File>| go.as_mut().is_some_and(|f| f.write_all(b"g").is_ok());
        // 3–4: confined, read back, on the record.
        let confined = if say_go(&mut go) {
            next_report(&mut reports).await
        } else {
            None
        };
        let checked = match confined {
            Some(Report::Confined) => readback(pid, uid),
            Some(Report::Failed(step, _)) => Err(step.to_string()),
            Some(Report::Pid(_)) => Err("the child reported out of turn".to_owned()),
            None => Err("the child stopped before it was confined".to_owned()),
        };
        if let Err(why) = checked {
            // Tagged but not confined: on the record as such, and dead.
            drop(go);
            kill(pid);
            let _ = self
                .host
                .announce(id, &format!("failed: {why}"), caller)
                .await;
            reap(spawned).await;
            return Err(
                Status::failed_precondition(format!("cannot confine the session: {why}")).into(),
            );
        }
        let confined_at = t0.elapsed();
        let session = self.host.announce(id, SANDBOX_CONFINED, caller).await?;
        let announced = t0.elapsed();
        let Some(go) = go else {
            kill(pid);
            reap(spawned).await;
            return Err(Status::internal("the first process stopped listening").into());
        };
        let started = LaunchStarted {
            session: Some(session),
            pid,
            sandbox: SANDBOX_CONFINED.to_owned(),
            landlock_rules: u32::try_from(rules).unwrap_or(u32::MAX),
            notes,
        };
        Ok(Held {
            go,
            spawned,
            pid,
            started,
            shown,
            t0,
            steps: [prepared, forked, opened, confined_at, announced],
            planned,
        })
    }
}

/// The start message, checked, with its descriptors.
struct Checked {
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    stdio: [OwnedFd; 3],
    cwd: OwnedFd,
    umask: u32,
    terminal: Option<usize>,
    /// argv as text, for the record.
    recorded: Vec<String>,
}

impl Checked {
    fn of(req: &LaunchRequest, fds: [OwnedFd; START_FDS]) -> Result<Self, Refused> {
        let bad = |m: String| Refused::from(Status::invalid_argument(m));
        let c = |what: &str, b: &[u8]| {
            CString::new(b).map_err(|_| bad(format!("{what} contains a NUL byte")))
        };
        if !req.program.starts_with(b"/") {
            return Err(bad(
                "the program must be an absolute path (the client resolves PATH)".into(),
            ));
        }
        let program = c("the program", &req.program)?;
        if req.argv.is_empty() {
            return Err(bad("argv is empty (it holds at least argv[0])".into()));
        }
        let argv = req
            .argv
            .iter()
            .map(|a| c("an argument", a))
            .collect::<Result<Vec<_>, _>>()?;
        let env = req
            .env
            .iter()
            .map(|e| c("an environment entry", e))
            .collect::<Result<Vec<_>, _>>()?;
        let [stdin, stdout, stderr, cwd] = fds;
        if !is_dir(&cwd) {
            return Err(bad(
                "the fourth descriptor must be the working directory".into()
            ));
        }
        let stdio = [stdin, stdout, stderr];
        let terminal = match req.terminal.as_ref().map(|t| t.fds.as_slice()) {
            None | Some([]) => None,
            Some(fds) => {
                for &fd in fds {
                    let ok = usize::try_from(fd)
                        .ok()
                        .and_then(|i| stdio.get(i))
                        .is_some_and(rustix::termios::isatty);
                    if !ok {
                        return Err(bad(format!(
                            "descriptor {fd} is named the terminal but is not one"
                        )));
                    }
                }
                usize::try_from(fds[0]).ok()
            }
        };
        let recorded = req
            .argv
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Ok(Self {
            program,
            argv,
            env,
            stdio,
            cwd,
            umask: req.umask,
            terminal,
            recorded,
        })
    }
}

fn is_dir(fd: &OwnedFd) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
    })
}

/// The caller's uid, gid and groups: uid and gid from the socket, the groups from
/// /proc, read while the pidfd says the caller is still the process that connected.
fn creds_of(peer: &PeerInfo) -> Result<Creds, Refused> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", peer.pid)).map_err(|e| {
        Status::failed_precondition(format!("cannot read the caller's groups: {e}"))
    })?;
    if peer.pidfd.as_ref().is_some_and(|fd| !peer::alive(fd)) {
        return Err(
            Status::failed_precondition("the caller exited before its session started").into(),
        );
    }
    let groups = status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .unwrap_or("")
        .split_whitespace()
        .map(|g| g.parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Status::internal("cannot parse the caller's groups"))?;
    Ok(Creds {
        uid: peer.uid,
        gid: peer.gid,
        groups,
    })
}

/// Waits for a launch that was given up (its child killed or never forked) and
/// reaps the child, which died before it became the command.
async fn reap(spawned: tokio::task::JoinHandle<io::Result<Spawned>>) {
    if let Ok(Ok(mut child)) = spawned.await {
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    }
}

/// The child's next report, `None` when it went away or took too long.
async fn next_report(reports: &mut pipe::Receiver) -> Option<Report> {
    let mut b = [0u8; 5];
    match tokio::time::timeout(STEP, reports.read_exact(&mut b)).await {
        Ok(Ok(_)) => Report::decode(b),
        _ => None,
    }
}

/// Why the child never reported its pid.
fn gone(
    report: Option<Report>,
    spawned: Result<io::Result<Spawned>, tokio::task::JoinError>,
) -> Refused {
    let why = match (report, spawned) {
        (Some(Report::Failed(step, _)), _) => step.to_string(),
        (_, Ok(Err(e))) => format!("cannot start the first process: {e}"),
        _ => "the first process stopped before it started".to_owned(),
    };
    Status::internal(why).into()
}

/// What `/proc/PID/status` says confines the child: seccomp in filter mode, the
/// caller's uid throughout, and no_new_privs for anyone but root.
fn readback(pid: u32, uid: u32) -> Result<(), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read it back: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    if field("Seccomp:") != Some("2") {
        return Err(format!(
            "seccomp is not in filter mode (Seccomp: {})",
            field("Seccomp:").unwrap_or("?")
        ));
    }
    let uids: Vec<&str> = field("Uid:").unwrap_or("").split_whitespace().collect();
    if uids.len() != 4 || uids.iter().any(|u| u.parse::<u32>() != Ok(uid)) {
        return Err(format!("it runs as uids {uids:?}, not {uid}"));
    }
    if uid != 0 && field("NoNewPrivs:") != Some("1") {
        return Err("no_new_privs is not set".to_owned());
    }
    Ok(())
}

fn kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: our own unreaped child: the pid cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

fn refused(r: &Refused) -> LaunchServer {
    LaunchServer {
        msg: Some(launch_server::Msg::Refused(LaunchRefused {
            code: r.status.code() as i32,
            message: r.status.message().to_owned(),
        })),
    }
}

/// The `exited` of a session whose command could not be executed: 127 when it
/// is not there, 126 otherwise, as a shell exits.
fn unexecuted(errno: i32) -> LaunchServer {
    LaunchServer {
        msg: Some(launch_server::Msg::Exited(LaunchExit {
            code: if errno == libc::ENOENT { 127 } else { 126 },
            signal: 0,
            core_dumped: false,
            exec_errno: errno,
        })),
    }
}

/// Until the first process ends: forwards the client's signals to its process
/// group (a vanished client hangs it up), then reports how it ended.
async fn relay(stream: &UnixStream, incoming: &mut Incoming, running: Running) {
    let Running { mut child, pid } = running;
    let mut client = true;
    let exited = match pidfd(pid) {
        Ok(fd) => fd,
        Err(e) => {
            warn!(
                pid,
                "cannot watch the session's first process: {e}; waiting on a thread"
            );
            let status = tokio::task::spawn_blocking(move || child.wait()).await;
            if let Ok(Ok(status)) = status {
                let _ = wire::send(stream, &exit_message(status)).await;
            }
            return;
        }
    };
    loop {
        tokio::select! {
            ready = exited.readable() => {
                if let Ok(mut guard) = ready {
                    guard.clear_ready();
                }
                match child.try_wait() {
                    Ok(Some(status)) => {
                        if client {
                            let _ = wire::send(stream, &exit_message(status)).await;
                        }
                        return;
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        warn!(pid, "waiting for the session's first process: {e}");
                        return;
                    }
                }
            }
            msg = incoming.next(stream), if client => match msg {
                Ok(Some(pb::LaunchClient { msg: Some(launch_client::Msg::Signal(sig)) })) if FORWARDED.contains(&sig) => {
                    signal_group(pid, sig);
                }
                Ok(Some(other)) => warn!(pid, "launch client sent {other:?} after start; ignored"),
                Ok(None) | Err(_) => {
                    if let Err(e) = &msg {
                        warn!(pid, "reading the launch client: {e}; taken as a hang-up");
                        refuse_frame(stream, e).await;
                    }
                    // The client is gone: as a terminal hang-up.
                    client = false;
                    signal_group(pid, libc::SIGHUP);
                }
            },
        }
    }
}

/// Tells a client whose message broke the framing (over `launch::MAX_FRAME`, or
/// undecodable) why the agent stops reading it: `INVALID_ARGUMENT`, naming the
/// limit. Nothing is sent for a connection that failed.
async fn refuse_frame(stream: &UnixStream, e: &WireError) {
    if let WireError::Frame(f) = e {
        let _ = wire::send(stream, &refused(&Refused::from(Status::invalid_argument(f.to_string())))).await;
    }
}

fn signal_group(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: the child called setsid, so its pid is its process group's id, and
        // it is unreaped, so neither can have been reused.
        unsafe { libc::kill(-pid, sig) };
    }
}

/// A pidfd for `pid`, readable once it exits.
fn pidfd(pid: u32) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open with a pid and no flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the AsyncFd owns the descriptor for as long as it is registered, so
    // it cannot be closed or reused underneath the reactor.
    unsafe { AsyncFd::register(fd) }.map_err(|e| io::Error::other(e.to_string()))
}

fn exit_message(status: std::process::ExitStatus) -> LaunchServer {
    LaunchServer {
        msg: Some(launch_server::Msg::Exited(LaunchExit {
            code: status.code().unwrap_or(-1),
            signal: status.signal().unwrap_or(0),
            core_dumped: status.core_dumped(),
            exec_errno: 0,
        })),
    }
}
