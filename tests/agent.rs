//! [`TestAgent`]: one `warrant-agent` per test, with its own socket, bpffs pin dir,
//! state dir (audit log) and cgroup root, so tests run in parallel without seeing each
//! other. Started and waited for (`warrant status` succeeds) by [`TestAgent::start`];
//! stopped with SIGTERM and cleaned up (cgroups killed and removed, pins removed) on
//! drop, which also prints the agent's log when the test is failing.

use serde_json::Value;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::audit::AuditLog;
use crate::run::output_within;
use crate::session::{Session, Watch};
use crate::{bins, cgroup, poll, procfs};

/// Where test agents keep their state dirs (see [`TestAgent::start`]).
const STATE_ROOT: &str = "/var/lib/warrant-tests";

/// How long a CLI call may take before the test fails instead of hanging.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// The agent's own debug messages, without the per-frame chatter of the HTTP/2, gRPC
/// and eBPF-loader libraries, so a failing test's log shows what the agent did.
pub const DEFAULT_LOG_LEVEL: &str = "debug,h2=info,hyper=info,hyper_util=info,tower=info,tonic=info,aya=info,aya_obj=info";

/// How an agent is started.
#[derive(Clone, Debug, Default)]
pub struct AgentOptions {
    /// `--ring-buffer-bytes`; the agent's default when `None`.
    pub ring_buffer_bytes: Option<u64>,
    /// `--log-level`; [`DEFAULT_LOG_LEVEL`] when `None`.
    pub log_level: Option<String>,
    /// `--grant-public-key`: the keys grant tokens must be signed with.
    pub grant_public_key: Option<PathBuf>,
    /// Serve the token door on `<temp dir>/door.sock` (`--door-socket`).
    pub door: bool,
    /// Stream to a collector (`--collector` and its mTLS files); single-host when `None`.
    pub collector: Option<Uplink>,
    /// `--spool-max-bytes`; the agent's default when `None`.
    pub spool_max_bytes: Option<u64>,
    /// Serve metrics (`--metrics-listen 127.0.0.1:<free port>`); see [`TestAgent::metrics`].
    pub metrics: bool,
}

/// Where an agent streams, and as whom.
#[derive(Clone, Debug)]
pub struct Uplink {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA (PEM) that signed the collector's certificate.
    pub ca: PathBuf,
    /// The agent's certificate (PEM); its name must have the `agent` role.
    pub cert: PathBuf,
    /// The agent's key (PEM).
    pub key: PathBuf,
}

/// A running agent owned by one test.
pub struct TestAgent {
    /// The agent process; `None` once stopped.
    child: Option<Child>,
    /// Holds the socket, state dir and log; removed on drop.
    dir: tempfile::TempDir,
    /// `--socket`.
    socket: PathBuf,
    /// `--pin-dir`, under /sys/fs/bpf.
    pin_dir: PathBuf,
    /// `--state-dir`, under [`STATE_ROOT`]; removed on drop.
    state_dir: PathBuf,
    /// `--cgroup-root`, under the cgroup2 mount.
    cgroup_root: PathBuf,
    /// The agent's stdout and stderr.
    log_path: PathBuf,
    /// Incremental reader of `<state-dir>/audit.log`, shared by `&self` methods.
    audit: Mutex<AuditLog>,
    /// How it was started, to start it again the same way.
    opts: AgentOptions,
    /// `--metrics-listen` port, when asked for.
    metrics_port: Option<u16>,
}

impl TestAgent {
    /// Starts an agent with `opts` and waits (at most 30 s) until `warrant status`
    /// answers.
    pub fn start(opts: AgentOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("warrant-test-")
            .tempdir()
            .expect("create temp dir");
        let id = crate::random_hex();
        let socket = dir.path().join("agent.sock");
        // Outside the temp dir: a session may not touch the agent's state, and
        // Landlock then also keeps it from creating entries directly in the state
        // dir's ancestors, where tests (in the temp dir) do create files.
        let state_dir = PathBuf::from(STATE_ROOT).join(format!("warrant-test-{id}")).join("state");
        std::fs::create_dir_all(&state_dir).expect("create state dir");
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/warrant-test-{id}"));
        let cgroup_root = cgroup::mount().join(format!("warrant-test-{id}"));
        let log_path = dir.path().join("agent.log");
        File::create(&log_path).expect("create agent log");
        let audit = Mutex::new(AuditLog::new(state_dir.join("audit.log")));
        let mut agent = Self {
            child: None,
            dir,
            socket,
            pin_dir,
            state_dir,
            cgroup_root,
            log_path,
            audit,
            metrics_port: opts.metrics.then(crate::free_port),
            opts,
        };
        agent.child = Some(agent.spawn());
        agent.wait_ready(Duration::from_secs(30));
        agent
    }

    /// Starts an agent with default options.
    pub fn start_default() -> Self {
        Self::start(AgentOptions::default())
    }

    /// Spawns the agent process with this agent's directories and options; its
    /// output is appended to the log file.
    fn spawn(&self) -> Child {
        let log = std::fs::OpenOptions::new().append(true).open(&self.log_path).expect("open agent log");
        let mut cmd = Command::new(bins::agent());
        cmd.arg("--socket")
            .arg(&self.socket)
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--cgroup-root")
            .arg(&self.cgroup_root)
            .arg("--log-level")
            .arg(self.opts.log_level.as_deref().unwrap_or(DEFAULT_LOG_LEVEL));
        if let Some(n) = self.opts.ring_buffer_bytes {
            cmd.arg("--ring-buffer-bytes").arg(n.to_string());
        }
        if let Some(up) = &self.opts.collector {
            cmd.arg("--collector")
                .arg(&up.url)
                .arg("--collector-ca")
                .arg(&up.ca)
                .arg("--collector-cert")
                .arg(&up.cert)
                .arg("--collector-key")
                .arg(&up.key);
        }
        if let Some(n) = self.opts.spool_max_bytes {
            cmd.arg("--spool-max-bytes").arg(n.to_string());
        }
        if let Some(port) = self.metrics_port {
            cmd.arg("--metrics-listen").arg(format!("127.0.0.1:{port}"));
        }
        if let Some(k) = &self.opts.grant_public_key {
            cmd.arg("--grant-public-key").arg(k);
        }
        if self.opts.door {
            cmd.arg("--door-socket").arg(self.door_socket());
        }
        // Started as under nohup, with SIGHUP ignored: a daemon inherits such
        // dispositions, and none may reach a session (each launch test sees them).
        // SAFETY: signal(2) is async-signal-safe; nothing else runs in the child.
        unsafe {
            use std::os::unix::process::CommandExt as _;
            cmd.pre_exec(|| {
                libc::signal(libc::SIGHUP, libc::SIG_IGN);
                Ok(())
            });
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bins::agent().display()))
    }

    /// Kills the agent with SIGKILL, as a crash would: nothing is flushed or
    /// cleaned up; pins, state and the socket file stay.
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the agent again with the same directories (pins, state, audit log,
    /// socket) and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart: the agent is still running");
        self.child = Some(self.spawn());
        self.wait_ready(Duration::from_secs(30));
    }

    /// The agent's whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                panic!("warrant-agent exited during start-up with {st}\n{}", self.log_tail(200));
            }
            if self.socket.exists() && self.cli(&["status"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "warrant-agent not ready within {timeout:?} (`warrant status` keeps failing)\n{}",
                self.log_tail(200)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The agent's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The token door socket (served with [`AgentOptions::door`]).
    pub fn door_socket(&self) -> PathBuf {
        self.dir.path().join("door.sock")
    }

    /// The agent's state dir.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The cgroup dir under which the agent makes per-session cgroups.
    pub fn cgroup_root(&self) -> &Path {
        &self.cgroup_root
    }

    /// The bpffs dir the agent pins into.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// A private temp dir for this test's files (removed on drop).
    pub fn temp_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The Prometheus text of `--metrics-listen` (the agent must be started with
    /// `metrics: true`).
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let port = self.metrics_port.expect("start the agent with AgentOptions { metrics: true, .. }");
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the agent's metrics");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read metrics");
        out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or(out)
    }

    /// One metric's value from [`metrics`](Self::metrics).
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
    }

    /// `warrant status --json`.
    pub fn status(&self) -> Value {
        let out = self.cli_ok(&["status", "--json"]);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("status is not JSON ({e}): {out}"))
    }

    /// The spool directory (`<state-dir>/spool`).
    pub fn spool_dir(&self) -> PathBuf {
        self.state_dir.join("spool")
    }

    /// The agent process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The last `n` lines of the agent's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let skip = lines.len().saturating_sub(n);
        format!(
            "--- warrant-agent log ({}; last {} of {} lines) ---\n{}\n--- end of agent log ---",
            self.log_path.display(),
            lines.len() - skip,
            lines.len(),
            lines[skip..].join("\n")
        )
    }

    /// `warrant --socket S <args>` as a command, for tests that customize it.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bins::warrant());
        c.arg("--socket").arg(&self.socket).args(args);
        c
    }

    /// Runs `warrant --socket S <args>` and returns its output (stdin closed).
    pub fn cli(&self, args: &[&str]) -> Output {
        output_within(&mut self.cli_command(args), CLI_TIMEOUT)
    }

    /// Runs the CLI, panics (with its stderr and the agent's log) unless it succeeds;
    /// returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "`warrant {}` failed with {}\nstdout:\n{}\nstderr:\n{}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(60)
        );
        String::from_utf8(out.stdout).expect("CLI stdout is UTF-8")
    }

    /// Issues a grant with `ttl` (e.g. `"2m"`, `"3s"`); returns its id.
    pub fn issue_grant(&self, ttl: &str) -> String {
        let out = self.cli_ok(&[
            "grant",
            "issue",
            "--subject",
            "warrant-tests",
            "--ttl",
            ttl,
            "--reason",
            "end-to-end test",
        ]);
        let id = out.trim().to_string();
        assert!(
            id.starts_with("g-") && !id.contains(char::is_whitespace),
            "`grant issue` should print only the grant id, printed {out:?}"
        );
        id
    }

    /// `warrant grants --json`, one object per grant.
    pub fn grants(&self) -> Vec<Value> {
        json_lines(&self.cli_ok(&["grants", "--json"]))
    }

    /// The grant's expiry as Unix nanoseconds, from `warrant grants --json`
    /// (`expires_at`, RFC 3339).
    pub fn grant_expiry_unix_ns(&self, grant: &str) -> i128 {
        let grants = self.grants();
        let g = grants
            .iter()
            .find(|g| g["id"] == grant)
            .unwrap_or_else(|| panic!("grant {grant} not in `warrant grants --json`: {grants:?}"));
        let at = g["expires_at"].as_str().unwrap_or_default();
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("grant {grant}: expires_at {at:?} is not RFC 3339 ({e}): {g}"))
            .unix_timestamp_nanos()
    }

    /// `warrant sessions --json`, one object per session.
    pub fn sessions(&self) -> Vec<Value> {
        json_lines(&self.cli_ok(&["sessions", "--json"]))
    }

    /// One session from `warrant sessions --json`, if listed.
    pub fn session(&self, id: &str) -> Option<Value> {
        self.sessions().into_iter().find(|s| s["id"] == id)
    }

    /// `warrant exec --grant G -- argv…` as a command (marked with `marker`), for
    /// tests that customize it before [`Session::spawn`].
    pub fn exec_command(&self, grant: &str, marker: &procfs::Marker, argv: &[&str]) -> Command {
        let mut c = self.cli_command(&["exec", "--grant", grant, "--"]);
        c.args(argv);
        marker.apply(&mut c);
        c
    }

    /// Starts `argv` under `grant` with `warrant exec`; returns once the CLI has
    /// printed its session line.
    pub fn exec(&self, grant: &str, marker: &procfs::Marker, argv: &[&str]) -> Session {
        Session::spawn(self.exec_command(grant, marker, argv))
    }

    /// Starts `warrant watch <args>` and returns once it says it is watching.
    pub fn watch(&self, args: &[&str]) -> Watch {
        let mut c = self.cli_command(&["watch"]);
        c.args(args);
        Watch::spawn(c)
    }

    /// Runs `f` on the audit log reader.
    pub fn with_audit<T>(&self, f: impl FnOnce(&mut AuditLog) -> T) -> T {
        f(&mut self.audit.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Every event in the audit log so far.
    pub fn events(&self) -> Vec<Value> {
        self.with_audit(AuditLog::events)
    }

    /// Every event of one session so far.
    pub fn session_events(&self, session: &str) -> Vec<Value> {
        self.with_audit(|a| a.session_events(session))
    }

    /// Waits for the first audit event satisfying `pred`; panics after `timeout`
    /// with the log's last events and the agent's log.
    pub fn wait_for_event(&self, pred: impl FnMut(&Value) -> bool, timeout: Duration) -> Value {
        let found = self.with_audit(|a| a.find_event(timeout, pred));
        found.unwrap_or_else(|| {
            panic!(
                "no matching audit event within {timeout:?}\n{}\n{}",
                self.with_audit(|a| a.summary(40)),
                self.log_tail(60)
            )
        })
    }

    /// Polls the audit log until `f` returns `Some` for all events so far; panics
    /// with `what` after `timeout`.
    pub fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        f: impl FnMut(&[Value]) -> Option<T>,
    ) -> T {
        let found = self.with_audit(|a| a.wait_until(timeout, f));
        found.unwrap_or_else(|| {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}\n{}",
                self.with_audit(|a| a.summary(40)),
                self.log_tail(60)
            )
        })
    }

    /// Stops the agent with SIGTERM (SIGKILL after 10 s); returns its exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        procfs::signal(child.id(), libc::SIGTERM);
        let status = poll(Duration::from_secs(10), || child.try_wait().ok().flatten());
        Some(status.unwrap_or_else(|| {
            let _ = child.kill();
            child.wait().expect("wait for killed agent")
        }))
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        let status = self.stop();
        if std::thread::panicking() {
            eprintln!("warrant-agent stopped with {status:?}\n{}", self.log_tail(300));
        }
        // Anything left in the session cgroups belongs to this test; kill and remove.
        cgroup::remove_tree(&self.cgroup_root);
        if let Some(dir) = self.state_dir.parent()
            && let Err(e) = std::fs::remove_dir_all(dir)
        {
            eprintln!("warrant-tests: cannot remove {}: {e}", dir.display());
        }
        if self.pin_dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.pin_dir)
        {
            eprintln!("warrant-tests: cannot remove {}: {e}", self.pin_dir.display());
        }
    }
}

/// Parses one JSON object per non-empty line; panics on anything else.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}
