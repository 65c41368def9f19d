//! `warrant-bench` (run by `cargo xtask bench`): what warrant costs the host and how
//! fast it kills, measured end to end in one run against a baseline taken in the
//! same run.
//!
//! Phases, each running the same `warrant-testbin loop` workloads (getppid,
//! open+close of a small file, fork+exec of /bin/true, connect+close to a listener
//! this process runs on 127.0.0.1, unix connect+close to a unix socket it listens on),
//! several repetitions, median:
//! - (a) no agent;
//! - (b) agent loaded, no session live (only the always-on hooks are attached);
//! - (c) agent loaded and a session live elsewhere (the syscall-exit hook used for
//!   file opens is attached), loops untagged;
//! - (d) loops tagged, inside `warrant exec`: overhead per operation, events per
//!   operation (from the audit log, plus records lost) and ns per event;
//! - (k) no agent, each loop under a Landlock domain of its own that handles the
//!   rights a session's domain handles without a policy (read and write, as
//!   `warrant_policy::sandbox::access` names them) and grants them all beneath `/`
//!   (`warrant-testbin landlock`): the share of (d) that is Landlock's (its one rule
//!   at the root, the kernel walks from the opened file up to `/`);
//! - (e) expiry to last death of a 100-process tree: the grant's expiry comes from
//!   `warrant grants --json`; every pid is watched through a pidfd, which polls
//!   readable the moment the process is dead;
//! - (f) policy size: open+close and connect+close, tagged, under a policy of one rule
//!   of each kind and one of 1,000 file and 1,000 network rules that do not match (the
//!   operation is allowed; what is measured is the lookup), and once more with the
//!   connect hitting the last-listed network rule (`allow`). Its own agent;
//! - (g) expiry to last death of a running fork loop (`fork-loop --max N`): the last
//!   death is when the session cgroup reports `populated 0` and no process carrying
//!   the run's marker is alive; plus how many processes the `kill` event says it killed;
//! - (h) events per second from one tagged `loop open`: the rate at which the agent
//!   writes them to its audit log, and the records the ring buffer lost meanwhile.
//!   Its own agent, default settings.
//! - (r) `grep -r` over /usr/share and /usr/lib (a real tree walk: every file and
//!   directory an open, each a `file_open` event when tagged): wall time untagged
//!   with no agent against tagged inside `warrant exec` on an agent of its own, the
//!   page cache warmed first, runs alternated;
//! - (l) launch latency: from spawning `warrant exec --grant G -- warrant-testbin stamp`
//!   to the wall-clock stamp the command prints as the first thing it does (the agent
//!   confines, tags and starts it), against spawning the same command directly (the
//!   cost of exec and the dynamic loader alone). Its own agent, a grant without policy
//!   (the default self-protection domain).
//!
//! It prints a table with ratios against (a) and writes
//! `bench/runs/<date>-<host>/{raw.csv,summary.md}` with the kernel, CPU and command.
//!
//! ```text
//! warrant-bench [--reps N] [--expiry-runs N] [--tree N] [--bomb-runs N] [--bomb N]
//!               [--rules N] [--rate-opens N] [--launches N] [--only LETTERS] [--quick] [--out DIR]
//! ```
//!
//! `--only bdg` runs (a) (always: it is the baseline) and the phases named.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, Seek as _};
use std::net::SocketAddr;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use warrant_tests::agent::{AgentOptions, TestAgent};
use warrant_tests::workload::testbin;
use warrant_tests::{Marker, Tree, audit, bins, cgroup, poll};

/// One workload of the loop phases.
#[derive(Clone, Copy)]
struct Op {
    /// `warrant-testbin loop <name>`.
    name: &'static str,
    /// Column title.
    title: &'static str,
    /// Iterations per repetition.
    n: u64,
}

/// Settings from the command line.
struct Opts {
    reps: usize,
    expiry_runs: usize,
    tree: usize,
    /// Fork-loop expiry runs (g) and the loop's process cap.
    bomb_runs: usize,
    bomb_max: usize,
    /// Rules of each kind in the large policy of (f).
    rules: usize,
    /// Opens of the events-per-second run (h).
    rate_opens: u64,
    /// Starts timed in the launch phase (l).
    launches: usize,
    /// Phase letters to run besides (a).
    only: String,
    out: Option<PathBuf>,
    ops: Vec<Op>,
}

impl Opts {
    fn runs(&self, phase: char) -> bool {
        self.only.contains(phase)
    }

    fn op(&self, name: &str) -> Op {
        *self.ops.iter().find(|o| o.name == name).unwrap_or_else(|| die(&format!("no {name} loop")))
    }
}

const USAGE: &str = "usage: warrant-bench [--reps N] [--expiry-runs N] [--tree N] [--bomb-runs N] [--bomb N] \
                     [--rules N] [--rate-opens N] [--launches N] [--only LETTERS] [--quick] [--out DIR]";

fn parse_opts() -> Opts {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args.get(i + 1).unwrap_or_else(|| die(&format!("missing value for {name}"))).clone())
    };
    let num = |name: &str, default: usize| {
        value(name).map_or(default, |v| v.parse().unwrap_or_else(|_| die(&format!("invalid {name}: {v}"))))
    };
    const FLAGS: [&str; 11] = [
        "--reps", "--expiry-runs", "--tree", "--bomb-runs", "--bomb", "--rules", "--rate-opens", "--launches", "--only",
        "--quick", "--out",
    ];
    for a in &args {
        if a.starts_with("--") && !FLAGS.contains(&a.as_str()) {
            die(&format!("unknown flag {a}\n\n{USAGE}"));
        }
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let only = value("--only").unwrap_or_else(|| "bcdefghklr".into());
    if let Some(c) = only.chars().find(|c| !"abcdefghklr".contains(*c)) {
        die(&format!("--only: unknown phase {c:?} (letters a to h, k, l, r)\n\n{USAGE}"));
    }
    let rules = num("--rules", 1000).max(2);
    // The three large policies share the kernel's trie of 16,384 network entries.
    if rules > 5000 {
        die(&format!("--rules {rules}: at most 5000 (three policies of that size fill the agent's network rule map)"));
    }
    Opts {
        reps: num("--reps", if quick { 3 } else { 5 }),
        expiry_runs: num("--expiry-runs", if quick { 5 } else { 20 }),
        tree: num("--tree", 100),
        bomb_runs: num("--bomb-runs", if quick { 3 } else { 10 }),
        bomb_max: num("--bomb", 500),
        rules,
        rate_opens: num("--rate-opens", if quick { 30_000 } else { 200_000 }) as u64,
        launches: num("--launches", if quick { 20 } else { 200 }),
        only,
        out: value("--out").map(PathBuf::from),
        ops: vec![
            Op { name: "getppid", title: "getppid", n: 1_000_000 / scale },
            Op { name: "open", title: "open+close", n: 50_000 / scale },
            Op { name: "exec", title: "fork+exec", n: 300 / scale },
            Op { name: "connect", title: "connect+close", n: 5_000 / scale },
            Op { name: "unix", title: "unix connect+close", n: 20_000 / scale },
        ],
    }
}

fn die(msg: &str) -> ! {
    eprintln!("warrant-bench: {msg}");
    std::process::exit(2);
}

/// The small file the open loop opens.
fn open_target() -> PathBuf {
    std::env::temp_dir().join("warrant-bench-open-target")
}

/// `ns_per_op` from a `warrant-testbin loop` JSON line on `stdout`.
fn ns_per_op(stdout: &str) -> f64 {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["ns_per_op"].as_f64())
        .unwrap_or_else(|| die(&format!("no ns_per_op in loop output: {stdout}")))
}

/// The unix socket the `unix` loop connects to (and a thread accepts on).
fn unix_target() -> PathBuf {
    std::env::temp_dir().join("warrant-bench-unix.sock")
}

/// Listens on [`unix_target`] and drops every connection, on a thread.
fn start_unix_listener() {
    let path = unix_target();
    let _ = std::fs::remove_file(&path);
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap_or_else(|e| die(&format!("bind {}: {e}", path.display())));
    // SAFETY: listen on a socket this function owns (a long queue, as for TCP).
    if unsafe { libc::listen(l.as_raw_fd(), 4096) } != 0 {
        die(&format!("listen: {}", std::io::Error::last_os_error()));
    }
    std::thread::spawn(move || {
        for c in l.incoming() {
            drop(c);
        }
    });
}

/// The listener the connect loop connects to (set once, in `main`).
static CONNECT_TARGET: OnceLock<SocketAddr> = OnceLock::new();

/// Listens on 127.0.0.1 and accepts (and drops) connections on a thread for the rest
/// of the run.
fn start_listener() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| die(&format!("bind 127.0.0.1:0: {e}")));
    // A long accept queue: a connect completes in the kernel before this thread
    // accepts it, and a full queue would drop SYNs and stall the loop for a
    // retransmit (1 s). listen(2) again only resizes the queue.
    // SAFETY: listen on a socket this function owns.
    if unsafe { libc::listen(l.as_raw_fd(), 4096) } != 0 {
        die(&format!("listen: {}", std::io::Error::last_os_error()));
    }
    let addr = l.local_addr().unwrap_or_else(|e| die(&format!("local_addr: {e}")));
    std::thread::spawn(move || {
        for c in l.incoming() {
            drop(c);
        }
    });
    addr
}

fn loop_argv(op: Op) -> Vec<String> {
    let target = CONNECT_TARGET.get().map_or_else(|| "127.0.0.1:9".into(), ToString::to_string);
    vec![
        testbin(),
        "loop".into(),
        op.name.into(),
        op.n.to_string(),
        "--path".into(),
        open_target().to_string_lossy().into_owned(),
        "--addr".into(),
        target,
        "--unix".into(),
        unix_target().to_string_lossy().into_owned(),
    ]
}

/// Runs one loop untagged; ns per operation.
fn run_untagged(op: Op) -> f64 {
    run_argv(&loop_argv(op))
}

/// Rights a session's Landlock domain handles when its grant has no policy: the
/// self-protection rules refuse reads (the agent's files) and writes.
const SESSION_RIGHTS: u64 = warrant_policy::sandbox::access::READ | warrant_policy::sandbox::access::WRITE;

/// Phase (k): the loop under a Landlock domain of its own handling [`SESSION_RIGHTS`].
fn run_landlocked(op: Op) -> f64 {
    let mut argv = vec![testbin(), "landlock".into(), SESSION_RIGHTS.to_string()];
    argv.extend(loop_argv(op));
    run_argv(&argv)
}

fn run_argv(argv: &[String]) -> f64 {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| die(&format!("run {}: {e}", argv[0])));
    if !out.status.success() {
        die(&format!("{argv:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    ns_per_op(&String::from_utf8_lossy(&out.stdout))
}

/// A tagged run: ns per operation, and events per operation (logged + lost).
struct Tagged {
    ns: f64,
    events_per_op: f64,
    lost: u64,
}

fn lost_total(agent: &TestAgent) -> u64 {
    let v: Value = serde_json::from_str(agent.cli_ok(&["status", "--json"]).trim())
        .unwrap_or_else(|e| die(&format!("status --json: {e}")));
    v["events_lost_total"].as_u64().unwrap_or(0)
}

/// Records in the agent's audit log so far.
fn log_len(agent: &TestAgent) -> usize {
    agent.with_audit(|a| a.records().len())
}

/// The first event from record `from` on that satisfies `pred`, polling at most
/// `timeout`. Unlike `TestAgent::wait_for_event`, no poll copies the whole log, which
/// after the tagged loops holds hundreds of thousands of events.
fn find_event_from(agent: &TestAgent, from: usize, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    poll(timeout, || {
        agent.with_audit(|a| a.records().get(from..).unwrap_or_default().iter().map(|r| &r["event"]).find(|e| pred(e)).cloned())
    })
}

/// Events of `session` in the audit log, counted from record `from` on.
fn count_session_events(agent: &TestAgent, from: usize, session: &str) -> usize {
    agent.with_audit(|a| {
        a.records().get(from..).unwrap_or_default().iter().filter(|r| r["event"]["session"] == session).count()
    })
}

/// Runs one loop inside `warrant exec` under `grant`.
fn run_tagged(agent: &TestAgent, grant: &str, mark: &Marker, op: Op) -> Tagged {
    let lost_before = lost_total(agent);
    let from = log_len(agent);
    let argv = loop_argv(op);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut s = agent.exec(grant, mark, &refs);
    let line = s.wait_stdout("{", Duration::from_secs(600));
    let status = s.wait_for(Duration::from_secs(30));
    if !status.success() {
        die(&format!("tagged {} failed: {status}\n{}", op.name, s.stderr().text()));
    }
    let ns = ns_per_op(&format!("{{{line}"));
    let root = u64::from(s.pid());
    let sid = s.id().to_string();
    let exit = audit::is("exit", &sid);
    find_event_from(agent, from, Duration::from_secs(120), |e| exit(e) && audit::u64_field(e, "pid") == root)
        .unwrap_or_else(|| die(&format!("no exit event for the tagged {} loop (session {sid})", op.name)));
    // The loop's events are in once the count stops growing.
    let mut last = usize::MAX;
    let logged = poll(Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_millis(300));
        let n = count_session_events(agent, from, &sid);
        let stable = n == last;
        last = n;
        stable.then_some(n)
    })
    .unwrap_or(last);
    let lost = lost_total(agent).saturating_sub(lost_before);
    #[expect(clippy::cast_precision_loss, reason = "event counts are far below 2^52")]
    let events_per_op = (logged as f64 + lost as f64) / op.n as f64;
    Tagged { ns, events_per_op, lost }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { f64::midpoint(v[m - 1], v[m]) }
}

/// The `q` quantile (0..=1) by nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[expect(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "small counts")]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn now_unix_ns() -> i128 {
    i128::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos()).expect("fits")
}

/// Opens a pidfd for `pid`; `None` when it is already gone.
fn pidfd(pid: u32) -> Option<i32> {
    // SAFETY: pidfd_open takes a pid and flags; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::pid_t::try_from(pid).ok()?, 0) };
    i32::try_from(fd).ok().filter(|&fd| fd >= 0)
}

/// Waits until every pidfd polls readable (its process is dead); returns the wall
/// clock when the last one did, or `None` after `timeout`.
fn wait_all_dead(mut fds: Vec<i32>, timeout: Duration) -> Option<i128> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last = now_unix_ns();
    while !fds.is_empty() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let mut pfds: Vec<libc::pollfd> = fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: pfds is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        last = now_unix_ns();
        if n > 0 {
            for p in pfds.iter().filter(|p| p.revents != 0) {
                // SAFETY: closing a pidfd this function owns.
                unsafe { libc::close(p.fd) };
            }
            let done: Vec<i32> = pfds.iter().filter(|p| p.revents != 0).map(|p| p.fd).collect();
            fds.retain(|fd| !done.contains(fd));
        }
    }
    let all_dead = fds.is_empty();
    for fd in fds {
        // SAFETY: closing the pidfds still open.
        unsafe { libc::close(fd) };
    }
    all_dead.then_some(last)
}

/// One expiry run: microseconds from the grant's expiry to the last death, and the
/// agent's own `elapsed_us` from the kill event.
fn expiry_run(agent: &TestAgent, mark: &Marker, tree_n: usize) -> Option<(f64, u64)> {
    let from = log_len(agent);
    let grant = agent.issue_grant("2s");
    let expiry = agent.grant_expiry_unix_ns(&grant);
    let tree = Tree::start(agent, &grant, mark, tree_n, None);
    let fds: Vec<i32> = tree.pids().into_iter().filter_map(pidfd).collect();
    if fds.len() < tree_n || now_unix_ns() >= expiry {
        eprintln!("warrant-bench: expiry run skipped: tree not complete before the expiry");
        return None;
    }
    let Some(last) = wait_all_dead(fds, Duration::from_secs(30)) else {
        eprintln!("warrant-bench: expiry run: processes alive 30 s after the expiry: {:?}", tree.alive(mark));
        return None;
    };
    let Some(kill) = find_event_from(agent, from, Duration::from_secs(10), |e| e["kind"] == "kill" && e["grant"] == grant.as_str())
    else {
        eprintln!("warrant-bench: expiry run: no kill event for grant {grant}");
        return None;
    };
    #[expect(clippy::cast_precision_loss, reason = "microseconds")]
    let us = (last - expiry) as f64 / 1000.0;
    Some((us, audit::u64_field(&kill, "elapsed_us")))
}

// ---------------------------------------------------------------------------------
// (f) policy size

/// Policy files of phase (f).
struct Policies {
    /// One file rule and one network rule, neither matching the loops.
    small: PathBuf,
    /// `rules` file rules and `rules` network rules, none matching the loops.
    large: PathBuf,
    /// As `large`, but the last-listed network rule allows the connect loop's address.
    hit: PathBuf,
    /// As `hit` with that last rule denying: proof that the lookup reaches it.
    hit_deny: PathBuf,
    /// Holds the files the file rules name and the policy files; removed on drop.
    _dir: tempfile::TempDir,
}

/// Network rule `i` of the large policy: distinct, non-overlapping prefixes (/24s in
/// 10/8, then /32s in 172.16/12), each with a port list, so none shadows another and
/// every prefix compiles to its own trie entry.
fn net_rule(i: usize, rules: usize) -> String {
    if i < rules / 2 {
        format!("  - {{cidr: 10.{}.{}.0/24, ports: [443, \"8000-8099\"], action: deny}}\n", i / 256, i % 256)
    } else {
        let j = i - rules / 2;
        format!("  - {{cidr: 172.{}.{}.{}/32, ports: [5432], action: deny}}\n", 16 + j / 65_536, j / 256 % 256, j % 256)
    }
}

fn policy_yaml(name: &str, files: &[String], nets: &[String]) -> String {
    let mut y = format!("name: {name}\nmax_ttl: 1h\ndefault: allow\nfiles:\n");
    for f in files {
        let _ = writeln!(y, "  - {{path: {f}, access: read, action: deny}}");
    }
    y.push_str("network:\n");
    for n in nets {
        y.push_str(n);
    }
    y
}

/// Writes the policies of (f) and checks them with `warrant policy check`.
fn write_policies(rules: usize, target: SocketAddr) -> Policies {
    let dir = tempfile::Builder::new()
        .prefix("warrant-bench-rules-")
        .tempdir()
        .unwrap_or_else(|e| die(&format!("create rules dir: {e}")));
    let files_dir = dir.path().join("files");
    std::fs::create_dir(&files_dir).unwrap_or_else(|e| die(&format!("mkdir {}: {e}", files_dir.display())));
    // Each denied file has an allowed sibling: Landlock only grants, so the session's
    // ruleset then really holds one grant per sibling (about `rules` in all) instead of
    // collapsing into one grant on a parent directory.
    let mut denied = Vec::with_capacity(rules);
    for i in 0..rules {
        for suffix in ["deny", "ok"] {
            let f = files_dir.join(format!("f{i:05}-{suffix}"));
            std::fs::write(&f, b"x").unwrap_or_else(|e| die(&format!("create {}: {e}", f.display())));
        }
        denied.push(files_dir.join(format!("f{i:05}-deny")).to_string_lossy().into_owned());
    }
    let nets: Vec<String> = (0..rules).map(|i| net_rule(i, rules)).collect();
    let last = |action: &str| format!("  - {{cidr: {}/32, ports: [{}], action: {action}}}\n", target.ip(), target.port());
    let mut hit_nets = nets[..rules - 1].to_vec();
    hit_nets.push(last("allow"));
    let mut deny_nets = nets[..rules - 1].to_vec();
    deny_nets.push(last("deny"));
    let write = |name: &str, yaml: String| {
        let p = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&p, yaml).unwrap_or_else(|e| die(&format!("write {}: {e}", p.display())));
        p
    };
    let pol = Policies {
        small: write("bench-small", policy_yaml("bench-small", &denied[..1], &nets[..1])),
        large: write("bench-large", policy_yaml("bench-large", &denied, &nets)),
        hit: write("bench-large-hit", policy_yaml("bench-large-hit", &denied, &hit_nets)),
        hit_deny: write("bench-large-deny", policy_yaml("bench-large-deny", &denied, &deny_nets)),
        _dir: dir,
    };
    let out = Command::new(bins::warrant())
        .args(["policy", "check"])
        .args([&pol.small, &pol.large, &pol.hit, &pol.hit_deny])
        .output()
        .unwrap_or_else(|e| die(&format!("run warrant policy check: {e}")));
    if !out.status.success() {
        die(&format!("`warrant policy check` refused the bench policies:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    pol
}

/// Issues a grant held to the policy in `file`.
fn grant_with_policy(agent: &TestAgent, file: &Path) -> String {
    let file = file.to_string_lossy();
    let out = agent.cli(&["grant", "issue", "--subject", "warrant-bench", "--ttl", "30m", "--reason", "bench", "--policy", &file]);
    if !out.status.success() {
        die(&format!("grant issue --policy {file} failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs one loop inside `warrant exec` under `grant`; ns per operation only.
fn run_tagged_ns(agent: &TestAgent, grant: &str, mark: &Marker, op: Op) -> f64 {
    let argv = loop_argv(op);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut s = agent.exec(grant, mark, &refs);
    let line = s.wait_stdout("{", Duration::from_secs(600));
    let status = s.wait_for(Duration::from_secs(30));
    if !status.success() {
        die(&format!("tagged {} failed: {status}\n{}", op.name, s.stderr().text()));
    }
    ns_per_op(&format!("{{{line}"))
}

/// Results of (f): per variant, per op name, ns/op of every repetition.
struct PolicyResult {
    small: [Vec<f64>; 2],
    large: [Vec<f64>; 2],
    hit: Vec<f64>,
    /// The violation the deny variant of the last rule produced (its `rule` field).
    last_rule_check: String,
}

fn policy_phase(opts: &Opts, csv: &mut String) -> PolicyResult {
    let target = *CONNECT_TARGET.get().unwrap_or_else(|| die("no connect target"));
    eprintln!("warrant-bench: phase f_policy (1 and {} rules of each kind)", opts.rules);
    let pol = write_policies(opts.rules, target);
    let agent = TestAgent::start(AgentOptions { log_level: Some("info".into()), ..AgentOptions::default() });
    let mark = Marker::new();
    let (g_small, g_large, g_hit, g_deny) = (
        grant_with_policy(&agent, &pol.small),
        grant_with_policy(&agent, &pol.large),
        grant_with_policy(&agent, &pol.hit),
        grant_with_policy(&agent, &pol.hit_deny),
    );
    let (open, connect) = (opts.op("open"), opts.op("connect"));

    // The deny twin of the hit policy must refuse the connect with a violation of its
    // last rule: then the allow run below really goes through that rule.
    let probe = Op { n: 1, ..connect };
    let argv = loop_argv(probe);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut s = agent.exec(&g_deny, &mark, &refs);
    if s.wait_for(Duration::from_secs(30)).success() {
        die("a connect to the address of the policy's last rule (deny) succeeded");
    }
    let sid = s.id().to_string();
    let v = find_event_from(&agent, 0, Duration::from_secs(10), audit::is("violation", &sid))
        .unwrap_or_else(|| die("no violation event for the connect the last rule denies"));
    let last_rule_check = v["rule"].as_str().map_or_else(|| v["rule"].to_string(), str::to_string);

    let mut r = PolicyResult { small: Default::default(), large: Default::default(), hit: Vec::new(), last_rule_check };
    for rep in 0..opts.reps {
        for (i, op) in [open, connect].into_iter().enumerate() {
            for (label, grant, out) in [("f_rules_1", &g_small, &mut r.small[i]), ("f_rules_large", &g_large, &mut r.large[i])] {
                let ns = run_tagged_ns(&agent, grant, &mark, op);
                let _ = writeln!(csv, "{label},{},{rep},{},{ns:.1}", op.name, op.n);
                out.push(ns);
            }
        }
        let ns = run_tagged_ns(&agent, &g_hit, &mark, connect);
        let _ = writeln!(csv, "f_rules_large_hit_last,{},{rep},{},{ns:.1}", connect.name, connect.n);
        r.hit.push(ns);
    }
    r
}

// ---------------------------------------------------------------------------------
// (g) fork-loop expiry

/// Whether the cgroup whose `cgroup.events` is open as `events` has live members; a
/// cgroup that is gone (the agent removed it) has none.
fn populated(events: &std::fs::File) -> bool {
    let mut buf = [0u8; 256];
    // Reading from offset 0 also re-arms poll(2) on the file.
    let n = events.read_at(&mut buf, 0).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "populated 1")
}

/// Waits until the cgroup of `events` is empty and no process carrying `mark` is
/// alive (pidfds in `fds` first, then a /proc scan for any that left the cgroup);
/// returns the wall clock of the last death seen, or `None` after `timeout`.
fn wait_bomb_dead(mut fds: Vec<i32>, events: &std::fs::File, mark: &Marker, timeout: Duration) -> Option<i128> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last_death = 0i128;
    let mut emptied: Option<i128> = None;
    let result = loop {
        if emptied.is_none() && !populated(events) {
            emptied = Some(now_unix_ns());
        }
        if emptied.is_some() && fds.is_empty() {
            let rest: Vec<i32> = mark.pids().into_iter().filter_map(pidfd).collect();
            if rest.is_empty() {
                break emptied.map(|e| e.max(last_death));
            }
            fds = rest;
        }
        if std::time::Instant::now() >= deadline {
            break None;
        }
        let mut pfds: Vec<libc::pollfd> = fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
        if emptied.is_none() {
            // cgroup.events signals a change with POLLPRI (its POLLIN is always set).
            pfds.push(libc::pollfd { fd: events.as_raw_fd(), events: libc::POLLPRI, revents: 0 });
        }
        // SAFETY: pfds is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 100) };
        let now = now_unix_ns();
        if n > 0 {
            let done: Vec<i32> = pfds[..fds.len()].iter().filter(|p| p.revents != 0).map(|p| p.fd).collect();
            for &fd in &done {
                last_death = now;
                // SAFETY: closing a pidfd this function owns.
                unsafe { libc::close(fd) };
            }
            fds.retain(|fd| !done.contains(fd));
        }
    };
    for fd in fds {
        // SAFETY: closing the pidfds still open.
        unsafe { libc::close(fd) };
    }
    result
}

/// One fork-loop expiry run.
struct BombRun {
    /// Expiry to the last death, µs.
    us: f64,
    /// Live processes of the loop found by a scan just before the expiry.
    live: usize,
    /// The `kill` event's `killed`, `survivors` and `elapsed_us`.
    killed: u64,
    survivors: u64,
    agent_us: u64,
}

fn bomb_run(agent: &TestAgent, max: usize) -> Option<BombRun> {
    let mark = Marker::new();
    let from = log_len(agent);
    // 4 s: time for `warrant exec` to start and the loop to grow on a loaded host.
    let grant = agent.issue_grant("4s");
    let expiry = agent.grant_expiry_unix_ns(&grant);
    let max_s = max.to_string();
    let s = agent.exec(&grant, &mark, &[&testbin(), "fork-loop", "--max", &max_s, "--lifetime", "30"]);
    let cg = agent.session(s.id()).map(|v| audit::str_field(&v, "cgroup").to_string()).filter(|c| !c.is_empty());
    let Some(cg) = cg.map(|c| cgroup::resolve(&c)) else {
        eprintln!("warrant-bench: fork-loop run skipped: session {} has no cgroup", s.id());
        return None;
    };
    let events = std::fs::File::open(cg.join("cgroup.events"))
        .unwrap_or_else(|e| die(&format!("open {}/cgroup.events: {e}", cg.display())));
    // Scan as late as possible before the expiry, so the loop has grown all it can; the
    // scan itself takes tens of ms with hundreds of processes.
    let scan_at = expiry - 300_000_000;
    if let Ok(wait) = u64::try_from(scan_at - now_unix_ns()) {
        std::thread::sleep(Duration::from_nanos(wait));
    }
    let pids = mark.pids();
    let live = pids.len();
    if live == 0 || !populated(&events) {
        let late = if now_unix_ns() >= expiry { " (the session started after the expiry)" } else { "" };
        eprintln!("warrant-bench: fork-loop run skipped: the loop was not running before the expiry{late}");
        return None;
    }
    let fds: Vec<i32> = pids.into_iter().filter_map(pidfd).collect();
    let Some(last) = wait_bomb_dead(fds, &events, &mark, Duration::from_secs(30)) else {
        eprintln!("warrant-bench: fork-loop run: processes alive 30 s after the expiry: {:?}", mark.pids());
        return None;
    };
    let kill = find_event_from(agent, from, Duration::from_secs(10), |e| e["kind"] == "kill" && e["grant"] == grant.as_str());
    let Some(kill) = kill else {
        eprintln!("warrant-bench: fork-loop run: no kill event for grant {grant}");
        return None;
    };
    #[expect(clippy::cast_precision_loss, reason = "microseconds")]
    let us = (last - expiry) as f64 / 1000.0;
    Some(BombRun {
        us,
        live,
        killed: audit::u64_field(&kill, "killed"),
        survivors: audit::u64_field(&kill, "survivors"),
        agent_us: audit::u64_field(&kill, "elapsed_us"),
    })
}

// ---------------------------------------------------------------------------------
// (h) events per second

/// One run of (h).
struct Rate {
    /// Share of each 10 ms period the loop may run (1: not throttled).
    duty: f64,
    /// `file_open` events of the session in the audit log.
    events: u64,
    /// Records the ring buffer lost during the run.
    lost: u64,
    /// Events per second the loop produced: events over the span of their kernel
    /// timestamps.
    offered: f64,
    /// Events per second written: events from the first one's kernel timestamp to the
    /// moment the log held the last one.
    written: f64,
    /// From the last event's timestamp to the log holding it, ms.
    lag_ms: f64,
    /// The loop's own ns per open+close.
    ns_per_op: f64,
    /// The agent's CPU time (user + system, all threads) over the run, per event.
    agent_us_per_event: f64,
    /// Time spent in BPF programs over the run (every program on the host, from
    /// `kernel.bpf_stats_enabled`), per event; `None` when the stats are unreadable.
    bpf_ns_per_event: Option<f64>,
    /// The same by program (name, ns per event, runs per event), largest first.
    bpf_by_program: Vec<(String, f64, f64)>,
}

/// A process's CPU time so far (utime + stime from `/proc/PID/stat`), in µs.
fn cpu_us(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`, which may contain spaces: state is field 3, utime 14.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    #[expect(clippy::cast_precision_loss, reason = "CPU time for humans")]
    let us = ticks as f64 * 1e6 / hz as f64;
    us
}

/// (run time ns, runs) of every BPF program loaded, by program id (with its name),
/// per the kernel's own statistics (`kernel.bpf_stats_enabled`, read through
/// `bpftool prog show -j`).
fn bpf_run_time() -> Option<BTreeMap<u64, (String, u64, u64)>> {
    let out = Command::new("bpftool").args(["prog", "show", "-j"]).output().ok().filter(|o| o.status.success())?;
    let progs: Value = serde_json::from_slice(&out.stdout).ok()?;
    let mut by_id = BTreeMap::new();
    for p in progs.as_array()? {
        let Some(id) = p["id"].as_u64() else { continue };
        let name = p["name"].as_str().unwrap_or("?").to_owned();
        by_id.insert(id, (name, p["run_time_ns"].as_u64().unwrap_or(0), p["run_cnt"].as_u64().unwrap_or(0)));
    }
    Some(by_id)
}

/// What the programs ran between two [`bpf_run_time`] readings, summed by name
/// (name, ns, runs), largest first.
fn bpf_ran(before: &BTreeMap<u64, (String, u64, u64)>, after: &BTreeMap<u64, (String, u64, u64)>) -> Vec<(String, u64, u64)> {
    let mut by_name: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (id, (name, ns, cnt)) in after {
        let (ns0, cnt0) = before.get(id).map_or((0, 0), |b| (b.1, b.2));
        let e = by_name.entry(name).or_default();
        e.0 += ns.saturating_sub(ns0);
        e.1 += cnt.saturating_sub(cnt0);
    }
    let mut v: Vec<(String, u64, u64)> = by_name.into_iter().filter(|(_, (_, c))| *c > 0).map(|(n, (ns, c))| (n.to_owned(), ns, c)).collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.1));
    v
}

/// Turns `kernel.bpf_stats_enabled` on for as long as the guard lives (it costs two
/// clock reads per program run, so it is off otherwise), restoring what it was.
struct BpfStats(Option<String>);

impl BpfStats {
    const PATH: &str = "/proc/sys/kernel/bpf_stats_enabled";

    fn on() -> BpfStats {
        let was = std::fs::read_to_string(Self::PATH).ok();
        if std::fs::write(Self::PATH, "1").is_err() {
            eprintln!("warrant-bench: cannot enable {}: BPF time per event not measured", Self::PATH);
            return BpfStats(None);
        }
        BpfStats(was)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(was) = &self.0 {
            let _ = std::fs::write(Self::PATH, was.trim());
        }
    }
}

fn rfc3339_ns(v: &Value) -> Option<i128> {
    time::OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp_nanos)
}

/// `pidfd_send_signal`; false when the process is gone.
fn pidfd_signal(fd: i32, sig: i32) -> bool {
    // SAFETY: a pidfd this process owns, no siginfo, no flags.
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd, sig, std::ptr::null::<libc::siginfo_t>(), 0) == 0 }
}

/// Lets the process behind `fd` run only `duty` of each 10 ms period (SIGCONT, then
/// SIGSTOP) until `stop` is set, then leaves it running and closes `fd`. This caps a
/// loop's rate from outside, without changing the loop.
fn throttle(fd: i32, duty: f64, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let period = Duration::from_millis(10);
        let on = period.mul_f64(duty.clamp(0.05, 1.0));
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if !pidfd_signal(fd, libc::SIGCONT) {
                break;
            }
            std::thread::sleep(on);
            pidfd_signal(fd, libc::SIGSTOP);
            std::thread::sleep(period - on);
        }
        pidfd_signal(fd, libc::SIGCONT);
        // SAFETY: closing the pidfd this thread was given.
        unsafe { libc::close(fd) };
    })
}

/// (h): a full-speed run, then, if it lost records, runs throttled to 80 %, 60 % and
/// 40 % of the rate the agent wrote at full speed until one loses none.
fn rate_phase(opts: &Opts) -> Vec<Rate> {
    eprintln!("warrant-bench: phase h_events_per_second ({} opens, one tagged process)", opts.rate_opens);
    let agent = TestAgent::start(AgentOptions { log_level: Some("info".into()), ..AgentOptions::default() });
    let mark = Marker::new();
    let grant = agent.issue_grant("30m");
    let full = rate_run(&agent, &mark, &grant, opts.rate_opens, 1.0);
    let (written, offered, lost) = (full.written, full.offered, full.lost);
    let mut runs = vec![full];
    if lost > 0 {
        for share in [0.8, 0.6, 0.4] {
            let duty = (share * written / offered).min(1.0);
            eprintln!("warrant-bench: phase h: throttled run, duty {duty:.2}");
            let r = rate_run(&agent, &mark, &grant, opts.rate_opens, duty);
            let lossless = r.lost == 0;
            runs.push(r);
            if lossless {
                break;
            }
        }
    }
    runs
}

/// One tagged `loop open n` under `grant`, let run `duty` of the time.
fn rate_run(agent: &TestAgent, mark: &Marker, grant: &str, n: u64, duty: f64) -> Rate {
    let log = agent.state_dir().join("audit.log");
    let size = || std::fs::metadata(&log).map_or(0, |m| m.len());
    let start_size = size();
    let lost_before = lost_total(agent);
    let stats = BpfStats::on();
    let bpf_before = stats.0.as_ref().and_then(|_| bpf_run_time());
    let cpu_before = cpu_us(agent.pid());
    let op = Op { name: "open", title: "open+close", n };
    let argv = loop_argv(op);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut s = agent.exec(grant, mark, &refs);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let throttler = (duty < 1.0).then(|| pidfd(s.pid()).map(|fd| throttle(fd, duty, std::sync::Arc::clone(&stop)))).flatten();
    // The log's size over time, sampled every 5 ms (not parsed now, to stay off the
    // agent's CPU), until the loop has exited and nothing was appended for 1 s.
    let mut samples: Vec<(i128, u64)> = vec![(now_unix_ns(), start_size)];
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        std::thread::sleep(Duration::from_millis(5));
        let (now, sz) = (now_unix_ns(), size());
        let &(last_t, last_sz) = samples.last().unwrap_or(&(now, sz));
        if sz != last_sz {
            samples.push((now, sz));
        } else if now - last_t > 1_000_000_000 && s.try_wait_for(Duration::ZERO).is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            die("events-per-second run: still running after 600 s");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = throttler {
        let _ = t.join();
    }
    let line = s.wait_stdout("{", Duration::from_secs(10));
    if !s.wait_for(Duration::from_secs(10)).success() {
        die(&format!("events-per-second loop failed\n{}", s.stderr().text()));
    }
    let ns = ns_per_op(&format!("{{{line}"));
    let lost = lost_total(agent).saturating_sub(lost_before);
    let agent_us = cpu_us(agent.pid()) - cpu_before;
    let bpf_ran = bpf_before.zip(bpf_run_time()).map(|(b, a)| bpf_ran(&b, &a));
    drop(stats);
    let bpf_ns = bpf_ran.as_ref().map(|r| r.iter().map(|p| p.1).sum::<u64>());

    // Count the session's file_open events and the byte offset where the last ends.
    let sid = s.id().to_string();
    let mut f = std::fs::File::open(&log).unwrap_or_else(|e| die(&format!("open {}: {e}", log.display())));
    f.seek(std::io::SeekFrom::Start(start_size)).unwrap_or_else(|e| die(&format!("seek audit log: {e}")));
    let (mut events, mut first, mut last, mut end_of_last) = (0u64, i128::MAX, i128::MIN, 0u64);
    let mut offset = start_size;
    for line in std::io::BufReader::new(f).split(b'\n') {
        let line = line.unwrap_or_else(|e| die(&format!("read audit log: {e}")));
        offset += line.len() as u64 + 1;
        let Ok(rec) = serde_json::from_slice::<Value>(&line) else { continue };
        let e = &rec["event"];
        if e["kind"] != "file_open" || e["session"] != sid.as_str() {
            continue;
        }
        let Some(t) = rfc3339_ns(&e["time"]) else { continue };
        events += 1;
        first = first.min(t);
        last = last.max(t);
        end_of_last = offset;
    }
    if events < 2 {
        die("events-per-second run: fewer than two file_open events in the audit log");
    }
    let written_at = samples.iter().find(|&&(_, sz)| sz >= end_of_last).map_or(last, |&(t, _)| t);
    #[expect(clippy::cast_precision_loss, reason = "rates for humans")]
    let per_s = |span_ns: i128| events as f64 * 1e9 / span_ns.max(1) as f64;
    #[expect(clippy::cast_precision_loss, reason = "milliseconds")]
    let lag_ms = (written_at - last) as f64 / 1e6;
    #[expect(clippy::cast_precision_loss, reason = "figures for humans")]
    let per_event = |v: f64| v / events as f64;
    #[expect(clippy::cast_precision_loss, reason = "figures for humans")]
    let bpf_ns_per_event = bpf_ns.map(|ns| per_event(ns as f64));
    #[expect(clippy::cast_precision_loss, reason = "figures for humans")]
    let bpf_by_program = bpf_ran.unwrap_or_default().into_iter().map(|(n, ns, c)| (n, per_event(ns as f64), per_event(c as f64))).collect();
    Rate {
        duty,
        events,
        lost,
        offered: per_s(last - first),
        written: per_s(written_at - first),
        lag_ms,
        ns_per_op: ns,
        agent_us_per_event: per_event(agent_us),
        bpf_ns_per_event,
        bpf_by_program,
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default().trim().to_string()
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_else(|| "unknown".into());
    let n = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!("{model} ({n} CPUs)")
}

fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(bins::workspace_dir())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// BPF pin dirs already present (other agents' programs stay attached and cost every
/// task, the baseline included), for the record.
fn foreign_pins() -> Vec<String> {
    std::fs::read_dir("/sys/fs/bpf")
        .map(|rd| rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Results of one loop phase: per op, the ns/op of every repetition.
type PhaseResult = Vec<Vec<f64>>;

fn loop_phase(name: &str, opts: &Opts, csv: &mut String, mut run: impl FnMut(Op) -> f64) -> PhaseResult {
    eprintln!("warrant-bench: phase {name}");
    let mut res = vec![Vec::new(); opts.ops.len()];
    for rep in 0..opts.reps {
        for (i, &op) in opts.ops.iter().enumerate() {
            let ns = run(op);
            let _ = writeln!(csv, "{name},{},{rep},{},{ns:.1}", op.name, op.n);
            res[i].push(ns);
        }
    }
    res
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 100_000.0 { format!("{:.1} µs", ns / 1000.0) } else { format!("{ns:.0} ns") }
}

/// How long each phase took (agent start-ups count to the phase after them), so the
/// run can be scaled with the flags.
struct Clock {
    start: std::time::Instant,
    last: std::time::Instant,
    laps: Vec<String>,
}

impl Clock {
    fn new() -> Self {
        let now = std::time::Instant::now();
        Self { start: now, last: now, laps: Vec::new() }
    }

    fn lap(&mut self, phase: char) {
        let now = std::time::Instant::now();
        let secs = (now - self.last).as_secs_f64();
        eprintln!("warrant-bench: phase ({phase}) took {secs:.0} s");
        self.laps.push(format!("({phase}) {secs:.0} s"));
        self.last = now;
    }

    fn summary(&self) -> String {
        format!("{}; total {:.0} s", self.laps.join(", "), self.start.elapsed().as_secs_f64())
    }
}

/// Median (min–max) of one op's repetitions.
fn med_range(runs: &[f64]) -> (f64, f64, f64) {
    let lo = runs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(&mut runs.to_vec()), lo, hi)
}

/// `p50 | p99 | max` cells of `v` (sorted here), each through `f`.
fn quantile_cells(v: &mut [f64], f: impl Fn(f64) -> String) -> String {
    v.sort_by(f64::total_cmp);
    format!("{} | {} | {}", f(quantile(v, 0.5)), f(quantile(v, 0.99)), f(v.last().copied().unwrap_or(f64::NAN)))
}

fn main() {
    // `cargo run` (how `cargo xtask bench` starts this) points LD_LIBRARY_PATH at its
    // target and toolchain dirs; every workload would inherit it, and each exec'd
    // /bin/true would then probe those dirs for libc (about 40 failed opens per exec,
    // each an event when tagged). Measure programs as they run on a host instead.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::remove_var("LD_LIBRARY_PATH") };
    let opts = parse_opts();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        die("needs root: it loads the agent's BPF programs and creates cgroups");
    }
    std::fs::write(open_target(), b"warrant-bench\n").unwrap_or_else(|e| die(&format!("create open target: {e}")));
    let _ = CONNECT_TARGET.set(start_listener());
    start_unix_listener();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let pins_at_start = foreign_pins();
    let load_at_start = read_trim("/proc/loadavg");
    // BPF statistics left on (by a bench run that was killed, or by hand) add two
    // clock reads to every program run and so to every tagged syscall: off for the
    // run, and said so. Phase (h) turns them on for itself.
    let stats_left_on = read_trim(BpfStats::PATH) == "1";
    if stats_left_on {
        eprintln!("warrant-bench: {} was 1; turned off for the run", BpfStats::PATH);
        let _ = std::fs::write(BpfStats::PATH, "0");
    }
    let mut csv = String::from("phase,op,rep,n,value\n");
    let mut clock = Clock::new();

    let a = loop_phase("a_no_agent", &opts, &mut csv, run_untagged);
    clock.lap('a');
    let k = opts.runs('k').then(|| {
        let k = loop_phase("k_landlock_alone", &opts, &mut csv, run_landlocked);
        clock.lap('k');
        k
    });
    let (mut b, mut c, mut d) = (None, None, None);
    let mut d_events = vec![Vec::new(); opts.ops.len()];
    let mut d_lost = vec![0u64; opts.ops.len()];
    let (mut e_us, mut e_agent_us) = (Vec::new(), Vec::new());
    let mut bombs: Vec<BombRun> = Vec::new();

    if "bcdeg".chars().any(|p| opts.runs(p)) {
        let agent = TestAgent::start(AgentOptions { log_level: Some("info".into()), ..AgentOptions::default() });
        if opts.runs('b') {
            b = Some(loop_phase("b_agent_idle", &opts, &mut csv, run_untagged));
            clock.lap('b');
        }
        let mark = Marker::new();
        if opts.runs('c') || opts.runs('d') {
            let grant = agent.issue_grant("2h");
            let elsewhere = agent.exec(&grant, &mark, &[&testbin(), "sleep", "7200"]);
            if opts.runs('c') {
                c = Some(loop_phase("c_session_elsewhere", &opts, &mut csv, run_untagged));
                clock.lap('c');
            }
            if opts.runs('d') {
                eprintln!("warrant-bench: phase d_tagged");
                let mut res: PhaseResult = vec![Vec::new(); opts.ops.len()];
                for rep in 0..opts.reps {
                    for (i, &op) in opts.ops.iter().enumerate() {
                        let t = run_tagged(&agent, &grant, &mark, op);
                        let _ = writeln!(csv, "d_tagged,{},{rep},{},{:.1}", op.name, op.n, t.ns);
                        let _ = writeln!(csv, "d_events_per_op,{},{rep},{},{:.3}", op.name, op.n, t.events_per_op);
                        let _ = writeln!(csv, "d_lost,{},{rep},{},{}", op.name, op.n, t.lost);
                        res[i].push(t.ns);
                        d_events[i].push(t.events_per_op);
                        d_lost[i] += t.lost;
                    }
                }
                d = Some(res);
                clock.lap('d');
            }
            drop(elsewhere);
        }

        if opts.runs('e') {
            eprintln!("warrant-bench: phase e_expiry ({} runs of a {}-process tree)", opts.expiry_runs, opts.tree);
            for run in 0..opts.expiry_runs {
                if let Some((us, agent_us)) = expiry_run(&agent, &mark, opts.tree) {
                    let _ = writeln!(csv, "e_expiry_to_last_death_us,tree{},{run},{},{us:.0}", opts.tree, opts.tree);
                    let _ = writeln!(csv, "e_agent_kill_elapsed_us,tree{},{run},{},{agent_us}", opts.tree, opts.tree);
                    e_us.push(us);
                    #[expect(clippy::cast_precision_loss, reason = "microseconds")]
                    e_agent_us.push(agent_us as f64);
                }
            }
            clock.lap('e');
        }
        drop(mark);

        if opts.runs('g') {
            eprintln!("warrant-bench: phase g_fork_loop_expiry ({} runs, --max {})", opts.bomb_runs, opts.bomb_max);
            for run in 0..opts.bomb_runs {
                if let Some(r) = bomb_run(&agent, opts.bomb_max) {
                    let op = format!("fork_loop{}", opts.bomb_max);
                    let _ = writeln!(csv, "g_expiry_to_last_death_us,{op},{run},{},{:.0}", opts.bomb_max, r.us);
                    let _ = writeln!(csv, "g_live_before_expiry,{op},{run},{},{}", opts.bomb_max, r.live);
                    let _ = writeln!(csv, "g_killed,{op},{run},{},{}", opts.bomb_max, r.killed);
                    let _ = writeln!(csv, "g_survivors,{op},{run},{},{}", opts.bomb_max, r.survivors);
                    let _ = writeln!(csv, "g_agent_kill_elapsed_us,{op},{run},{},{}", opts.bomb_max, r.agent_us);
                    bombs.push(r);
                }
            }
            clock.lap('g');
        }
        drop(agent);
    }
    let f = opts.runs('f').then(|| {
        let f = policy_phase(&opts, &mut csv);
        clock.lap('f');
        f
    });
    let h = opts.runs('h').then(|| {
        let h = rate_phase(&opts);
        clock.lap('h');
        h
    });
    let l = opts.runs('l').then(|| {
        let l = launch_phase(&opts);
        clock.lap('l');
        l
    });
    let r = opts.runs('r').then(|| {
        let r = grep_phase(&opts);
        clock.lap('r');
        r
    });
    for (kind, runs) in r.iter().flat_map(|r| [("untagged", &r.untagged_ms), ("tagged", &r.tagged_ms)]) {
        for (run, ms) in runs.iter().enumerate() {
            let _ = writeln!(csv, "r_grep_ms,{kind},{run},1,{ms:.1}");
        }
    }
    for (kind, runs) in l.iter().flat_map(|l| [("direct", &l.direct_us), ("warrant_exec", &l.warrant_us)]) {
        for (run, us) in runs.iter().enumerate() {
            let _ = writeln!(csv, "l_start_to_first_instruction_us,{kind},{run},1,{us:.0}");
        }
    }
    for (step, runs) in l.iter().flat_map(|l| l.steps_us.iter()) {
        for (run, us) in runs.iter().enumerate() {
            let _ = writeln!(csv, "l_agent_step_us,{step},{run},1,{us:.0}");
        }
    }
    for (run, r) in h.iter().flatten().enumerate() {
        let n = opts.rate_opens;
        let _ = writeln!(csv, "h_duty,open,{run},{n},{:.3}", r.duty);
        let _ = writeln!(csv, "h_events,open,{run},{n},{}", r.events);
        let _ = writeln!(csv, "h_lost,open,{run},{n},{}", r.lost);
        let _ = writeln!(csv, "h_written_per_s,open,{run},{n},{:.0}", r.written);
        let _ = writeln!(csv, "h_offered_per_s,open,{run},{n},{:.0}", r.offered);
        let _ = writeln!(csv, "h_lag_ms,open,{run},{n},{:.1}", r.lag_ms);
        let _ = writeln!(csv, "h_ns_per_op,open,{run},{n},{:.1}", r.ns_per_op);
        let _ = writeln!(csv, "h_agent_us_per_event,open,{run},{n},{:.2}", r.agent_us_per_event);
        if let Some(b) = r.bpf_ns_per_event {
            let _ = writeln!(csv, "h_bpf_ns_per_event,open,{run},{n},{b:.0}");
        }
        for (prog, ns, _) in &r.bpf_by_program {
            let _ = writeln!(csv, "h_bpf_ns_per_event_{prog},open,{run},{n},{ns:.0}");
        }
    }

    // Summary tables.
    let med = |r: &PhaseResult| -> Vec<f64> { r.iter().map(|v| median(&mut v.clone())).collect() };
    let ma = med(&a);
    let mut table = String::new();
    let _ = write!(table, "| phase |");
    for op in &opts.ops {
        let _ = write!(table, " {} | ratio |", op.title);
    }
    let _ = write!(table, "\n|---|");
    for _ in &opts.ops {
        let _ = write!(table, "---:|---:|");
    }
    table.push('\n');
    for (label, runs) in [
        ("(a) no agent (baseline)", Some(&a)),
        ("(b) agent loaded, no session", b.as_ref()),
        ("(c) agent loaded, session live elsewhere", c.as_ref()),
        ("(d) tagged, inside `warrant exec`", d.as_ref()),
        ("(k) no agent, a Landlock domain like a session's", k.as_ref()),
    ] {
        let Some(runs) = runs else { continue };
        let _ = write!(table, "| {label} |");
        for (i, r) in runs.iter().enumerate() {
            // The range shows how much the host's other load moved the repetitions.
            let (m, lo, hi) = med_range(r);
            let _ = write!(table, " {} ({}–{}) | {:.2}× |", fmt_ns(m), fmt_ns(lo), fmt_ns(hi), m / ma[i]);
        }
        table.push('\n');
    }
    let mut sections = format!("## Per-operation cost\n\n{table}");

    if let Some(d) = &d {
        let md = med(d);
        let mut tagged = String::from("| op | tagged overhead vs (a) | events per op (logged + lost) | ns per event | records lost |\n|---|---:|---:|---:|---:|\n");
        for (i, op) in opts.ops.iter().enumerate() {
            let over = md[i] - ma[i];
            let epo = median(&mut d_events[i].clone());
            let per_event = if epo >= 0.01 { fmt_ns(over / epo) } else { "— (no events)".into() };
            let _ = writeln!(tagged, "| {} | {} | {epo:.2} | {per_event} | {} |", op.title, fmt_ns(over), d_lost[i]);
        }
        let _ = write!(
            sections,
            "\n## Tagged processes\n\n{tagged}\n\
             Overhead is (d) − (a); ns per event divides it by the events each operation produced \
             (audit-log events of the session plus records the ring buffer lost).\n"
        );
        if let Some(k) = &k {
            let mk = med(k);
            // (c) − (a): what the syscall hook costs every task while a session is live.
            let mc = c.as_ref().map(med);
            let mut t = String::from(
                "| op | tagged overhead (d) − (a) | the hook every task pays (c) − (a) | a Landlock domain alone (k) − (a) | the rest |\n|---|---:|---:|---:|---:|\n",
            );
            for (i, op) in opts.ops.iter().enumerate() {
                let (over, ll) = (md[i] - ma[i], mk[i] - ma[i]);
                let hook = mc.as_ref().map(|mc| mc[i] - ma[i]);
                let _ = writeln!(
                    t,
                    "| {} | {} | {} | {} | {} |",
                    op.title,
                    fmt_ns(over),
                    hook.map_or_else(|| "— (no phase c)".into(), fmt_ns),
                    fmt_ns(ll),
                    fmt_ns(over - ll - hook.unwrap_or(0.0))
                );
            }
            let _ = write!(
                sections,
                "\n## Where a tagged operation's time goes\n\n{t}\n\
                 (k) runs the loops of (a) with no agent, each under a Landlock domain of its own \
                 that handles what a session's domain handles without a policy (read and write \
                 rights) and grants all of it beneath `/`: one rule, at the root, so the kernel \
                 walks from the opened file up to `/` (a session's domain has a rule for `/tmp` \
                 itself, which stops the walk one step earlier). The rest is the BPF programs' \
                 work for a tagged task (the events), seccomp, and the agent reading the events \
                 beside the loop. Each column is a difference of medians, so small ones are noise.\n"
            );
        }
    }

    if let Some(f) = &f {
        let idx = |name: &str| opts.ops.iter().position(|o| o.name == name).unwrap_or(0);
        let (io, ic) = (idx("open"), idx("connect"));
        let cell = |runs: &[f64], base: f64| {
            let (m, lo, hi) = med_range(runs);
            format!("{} ({}–{}) | {:.2}×", fmt_ns(m), fmt_ns(lo), fmt_ns(hi), m / base)
        };
        let mut t = format!(
            "| tagged process under | {} | vs (a) | {} | vs (a) |\n|---|---:|---:|---:|---:|\n| (a) no agent (baseline) | {} | {} |\n",
            opts.ops[io].title,
            opts.ops[ic].title,
            cell(&a[io], ma[io]),
            cell(&a[ic], ma[ic]),
        );
        if let Some(d) = &d {
            let _ = writeln!(t, "| (d) no policy | {} | {} |", cell(&d[io], ma[io]), cell(&d[ic], ma[ic]));
        }
        let n = opts.rules;
        let _ = writeln!(t, "| (f) 1 rule of each kind (1 file, 1 network), no match | {} | {} |", cell(&f.small[0], ma[io]), cell(&f.small[1], ma[ic]));
        let _ = writeln!(t, "| (f) {n} file + {n} network rules, no match | {} | {} |", cell(&f.large[0], ma[io]), cell(&f.large[1], ma[ic]));
        let _ = writeln!(t, "| (f) the same, connect hits the last-listed rule (`allow`) | — | — | {} |", cell(&f.hit, ma[ic]));
        let ratio = |large: &[f64], small: &[f64]| median(&mut large.to_vec()) / median(&mut small.to_vec());
        let _ = write!(
            sections,
            "\n## Policy size (tagged processes)\n\n{t}\n\
             {n} rules against 1 rule: open+close {:.2}×, connect+close {:.2}× (hitting the last rule: {:.2}×).\n\n\
             Each row runs the loops of (a) inside `warrant exec` under a grant with that policy \
             (`default: allow`, its own agent). File rules (`access: read, action: deny` on files \
             beside the opened one, each with an allowed sibling) become the session's Landlock \
             domain; network rules (deny, distinct /24 and /32 prefixes with ports) go into the \
             kernel's LPM trie and are checked by the cgroup connect hook. The looped file and \
             address match none of them, so the operation is allowed and the difference is the \
             cost of the lookup. In the last row the connect's address is the policy's last-listed \
             rule; the same policy with that rule set to `deny` refused the connect with a violation \
             of rule {}.\n",
            ratio(&f.large[0], &f.small[0]),
            ratio(&f.large[1], &f.small[1]),
            ratio(&f.hit, &f.small[1]),
            f.last_rule_check,
        );
    }

    let mut kills = String::new();
    if opts.runs('e') {
        e_us.sort_by(f64::total_cmp);
        e_agent_us.sort_by(f64::total_cmp);
        let _ = writeln!(
            kills,
            "expiry → last death, {}-process tree, {} of {} runs: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
             (agent's own kill elapsed: p50 {:.1} ms, p99 {:.1} ms)\n\n\
             The expiry comes from `warrant grants --json`; \
             each process is watched through a pidfd, which polls readable when it is dead.",
            opts.tree,
            e_us.len(),
            opts.expiry_runs,
            quantile(&e_us, 0.5) / 1000.0,
            quantile(&e_us, 0.99) / 1000.0,
            e_us.last().copied().unwrap_or(f64::NAN) / 1000.0,
            quantile(&e_agent_us, 0.5) / 1000.0,
            quantile(&e_agent_us, 0.99) / 1000.0,
        );
    }
    if opts.runs('g') {
        let ms = |v: f64| format!("{:.1} ms", v / 1000.0);
        let count = |v: f64| format!("{v:.0}");
        #[expect(clippy::cast_precision_loss, reason = "small counts")]
        let col = |f: fn(&BombRun) -> u64| bombs.iter().map(|r| f(r) as f64).collect::<Vec<f64>>();
        let _ = write!(
            kills,
            "\n| fork loop (`fork-loop --max {}`), {} of {} runs | p50 | p99 | max |\n|---|---:|---:|---:|\n\
             | expiry → last death | {} |\n| agent's own kill elapsed (`kill` event) | {} |\n\
             | processes alive 0.3 s before the expiry | {} |\n| processes killed (`kill` event `killed`) | {} |\n\
             | survivors (`kill` event) | {} |\n\n\
             The loop forks as fast as it can up to {} live processes, then keeps replacing them \
             (each exits after handing over to a fresh child), under a 4 s grant. The last death is \
             the later of the session cgroup's `cgroup.events` turning `populated 0` (polled, \
             so seen when it happens) and the death of the last process seen by a /proc scan for \
             the run's marker (pidfds); a scan after that finds none alive. `killed` counts what \
             the agent killed (cgroup members plus stragglers by tag); processes that the kernel's \
             own hooks killed first, at their next syscall after the expiry, are not in it.\n",
            opts.bomb_max,
            bombs.len(),
            opts.bomb_runs,
            quantile_cells(&mut bombs.iter().map(|r| r.us).collect::<Vec<_>>(), ms),
            quantile_cells(&mut col(|r| r.agent_us), ms),
            quantile_cells(&mut bombs.iter().map(|r| r.live as f64).collect::<Vec<_>>(), count),
            quantile_cells(&mut col(|r| r.killed), count),
            quantile_cells(&mut col(|r| r.survivors), count),
            opts.bomb_max,
        );
    }
    if !kills.is_empty() {
        let _ = write!(sections, "\n## Kill latency\n\n{kills}");
    }

    if let Some(runs) = &h {
        let mut t = String::from(
            "| run | events produced per second | events written per second | `file_open` events logged | records lost | last event → log | agent CPU per event | BPF time per event |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in runs {
            let run = if r.duty >= 1.0 {
                format!("full speed ({} per open+close)", fmt_ns(r.ns_per_op))
            } else {
                format!("throttled: runs {:.0} % of each 10 ms", r.duty * 100.0)
            };
            let _ = writeln!(
                t,
                "| {run} | {:.0}/s | {:.0}/s | {} | {} | {:.1} ms | {:.2} µs | {} |",
                r.offered,
                r.written,
                r.events,
                r.lost,
                r.lag_ms,
                r.agent_us_per_event,
                r.bpf_ns_per_event.map_or_else(|| "not measured".into(), |b| format!("{b:.0} ns")),
            );
        }
        let best = runs.iter().filter(|r| r.lost == 0).map(|r| r.written).fold(f64::NAN, f64::max);
        let verdict = match runs.first() {
            Some(full) if full.lost == 0 => format!(
                "**{best:.0} events/s without loss.** Nothing was lost at full speed, so this is what \
                 one tagged process produces, a lower bound on what the agent sustains."
            ),
            Some(full) if best.is_nan() => format!(
                "**Every run lost records** (full speed: {} lost); the agent wrote {:.0} events/s at \
                 full speed, and the rate it sustains without loss lies below the slowest run's.",
                full.lost, full.written
            ),
            Some(full) => format!(
                "**{best:.0} events/s without loss** (the fastest lossless run). At full speed one process \
                 produced {:.0} events/s, more than the agent drained, and the ring buffer lost {} \
                 records; the runs after it were throttled from outside (SIGSTOP/SIGCONT) to a share \
                 of the full-speed written rate until one lost nothing.",
                full.offered, full.lost
            ),
            None => String::new(),
        };
        let _ = write!(
            sections,
            "\n## Events per second (one tagged process)\n\n{t}\n{verdict}\n\n\
             Each run is one `loop open {}` inside `warrant exec` (one `file_open` event per open), on an \
             agent of its own with the default 8 MiB ring buffer. Produced: events over the span of \
             their kernel timestamps. Written: events from the first one's timestamp to the moment \
             the audit log held the last one (its size is sampled every 5 ms; events are counted \
             from the log afterwards). Lost: the agent's `events_lost` count over the run.\n",
            opts.rate_opens,
        );
        if let Some(full) = runs.first().filter(|r| !r.bpf_by_program.is_empty()) {
            let _ = write!(
                sections,
                "\nBPF time per event by program (full-speed run; every program on the host):\n\n\
                 | program | ns per event | runs per event |\n|---|---:|---:|\n"
            );
            for (prog, ns, runs) in full.bpf_by_program.iter().take(8) {
                let _ = writeln!(sections, "| `{prog}` | {ns:.0} | {runs:.2} |");
            }
        }
    }
    if let Some(l) = &l {
        let (mut direct, mut warrant) = (l.direct_us.clone(), l.warrant_us.clone());
        direct.sort_by(f64::total_cmp);
        warrant.sort_by(f64::total_cmp);
        let ms = |v: f64| format!("{:.1} ms", v / 1000.0);
        let _ = write!(
            sections,
            "\n## Launch latency\n\n| start → first instruction, {} runs | p50 | p99 | max |\n|---|---:|---:|---:|\n\
             | spawned directly (baseline) | {} |\n| `warrant exec --grant G --` | {} |\n\n\
             From spawning the command to the wall-clock stamp it prints as the first thing it does. \
             Through `warrant exec` the agent checks the caller and the grant, builds the session's \
             Landlock domain and seccomp filters, forks the first process straight into the \
             session cgroup (clone3), tags it, confines it, reads the confinement back from /proc and records \
             `session_start` before the exec.\n",
            warrant.len(),
            quantile_cells(&mut direct, ms),
            quantile_cells(&mut warrant, ms),
        );
        if l.steps_us.iter().any(|(_, v)| !v.is_empty()) {
            let _ = write!(
                sections,
                "\nWhere the agent's time goes (its own clock, from the start message to the end of each \
                 step, cumulative):\n\n| step | p50 | p99 | max |\n|---|---:|---:|---:|\n"
            );
            for ((key, mut v), (_, what)) in l.steps_us.clone().into_iter().zip(LAUNCH_STEPS) {
                let _ = writeln!(sections, "| {what} (`{key}`) | {} |", quantile_cells(&mut v, ms));
            }
        }
    }
    if let Some(r) = &r {
        let (mut u, mut t) = (r.untagged_ms.clone(), r.tagged_ms.clone());
        let (mu, mt) = (median(&mut u), median(&mut t));
        let range = |v: &[f64]| {
            let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            format!("{lo:.0}–{hi:.0} ms")
        };
        let _ = write!(
            sections,
            "\n## `grep -r` over {} ({} runs each, alternated)\n\n\
             | run | wall time, median (min–max) | ratio |\n|---|---:|---:|\n\
             | untagged, no agent | {mu:.0} ms ({}) | 1.00× |\n\
             | tagged, inside `warrant exec` | {mt:.0} ms ({}) | {:.2}× |\n\n\
             Tagged runs logged {} `file_open` events each (median) with {} records lost in all. \
             The page cache was warmed by one untagged run first; each tagged run is one `warrant exec` \
             (its ~10 ms start included) on an agent of its own with default settings.\n",
            GREP_TREES.join(" and "),
            r.untagged_ms.len(),
            range(&r.untagged_ms),
            range(&r.tagged_ms),
            mt / mu,
            r.events,
            r.lost,
        );
    }
    println!("\n{sections}");

    // Files.
    let host = read_trim("/proc/sys/kernel/hostname");
    let date = time::OffsetDateTime::now_utc().date();
    let dir = opts.out.clone().unwrap_or_else(|| bins::workspace_dir().join("bench/runs").join(format!("{date}-{host}")));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| die(&format!("mkdir {}: {e}", dir.display())));
    let loops: Vec<String> = opts.ops.iter().map(|o| format!("{} ×{}", o.title, o.n)).collect();
    let summary = format!(
        "# warrant-bench {date} on {host}\n\n\
         - kernel: {}\n- CPU: {}\n- commit: {}\n- command: `{command}`\n\
         - loops: {} per repetition, {} repetitions, median (min–max) reported; ratios of medians against (a)\n\
         - BPF pin dirs present before the run (other agents' programs stay attached during the baseline too): {}\n\
         - /proc/loadavg at start: {load_at_start}; at end: {}\n- phase durations: {}\n{}\n{sections}",
        read_trim("/proc/sys/kernel/osrelease"),
        cpu_model(),
        git_commit(),
        loops.join(", "),
        opts.reps,
        if pins_at_start.is_empty() { "none".into() } else { pins_at_start.join(", ") },
        read_trim("/proc/loadavg"),
        clock.summary(),
        if stats_left_on { "- `kernel.bpf_stats_enabled` was 1 at the start (left on); turned off for the run\n" } else { "" },
    );
    std::fs::write(dir.join("raw.csv"), &csv).unwrap_or_else(|e| die(&format!("write raw.csv: {e}")));
    std::fs::write(dir.join("summary.md"), summary).unwrap_or_else(|e| die(&format!("write summary.md: {e}")));
    println!("\nwrote {}/{{raw.csv,summary.md}}", dir.display());
}

/// Start-to-first-instruction times of phase (l), in µs.
struct LaunchResult {
    direct_us: Vec<f64>,
    warrant_us: Vec<f64>,
    /// The agent's own clock of each launch, from its `launched` log lines: µs from
    /// the start message to the end of each step, by step.
    steps_us: Vec<(&'static str, Vec<f64>)>,
}

/// The steps the agent's `launched` line times, in order, and what each covers.
const LAUNCH_STEPS: [(&str, &str); 6] = [
    ("prepared_us", "grant checked, Landlock ruleset and seccomp filters built"),
    ("forked_us", "first process forked"),
    ("opened_us", "session opened: tagged, in its cgroup"),
    ("confined_us", "confined, confinement read back from /proc"),
    ("announced_us", "state saved, `session_start` recorded"),
    ("ready_us", "the client said ready (its terminal set up)"),
];

/// Each step's µs from the agent's `launched` log lines (`key=value` fields).
fn launch_steps(log: &str) -> Vec<(&'static str, Vec<f64>)> {
    let mut steps: Vec<(&'static str, Vec<f64>)> = LAUNCH_STEPS.iter().map(|(k, _)| (*k, Vec::new())).collect();
    for line in log.lines().filter(|l| l.contains(" launched") || l.ends_with("launched")) {
        for word in line.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else { continue };
            if let (Some(step), Ok(us)) = (steps.iter_mut().find(|(k, _)| *k == key), value.parse::<f64>()) {
                step.1.push(us);
            }
        }
    }
    steps
}

/// Spawns `cmd` (whose stdout is one wall-clock stamp) and returns the µs from just
/// before the spawn to the stamp.
fn time_to_stamp(cmd: &mut Command) -> Option<f64> {
    let t0 = now_unix_ns();
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    let stamp: i128 = String::from_utf8_lossy(&out.stdout).lines().last()?.trim().parse().ok()?;
    #[expect(clippy::cast_precision_loss, reason = "microseconds")]
    Some((stamp - t0) as f64 / 1000.0)
}

/// The trees (r) greps through.
const GREP_TREES: [&str; 2] = ["/usr/share", "/usr/lib"];

/// (r): wall times of `grep -r` untagged (no agent) and tagged, and what the tagged
/// runs recorded.
struct GrepResult {
    untagged_ms: Vec<f64>,
    tagged_ms: Vec<f64>,
    /// `file_open` events of one tagged run (the median run's count).
    events: u64,
    lost: u64,
}

/// `grep -r` for a string no file holds, so every file is read to its end (or its
/// first block, for binaries: `-I`).
fn grep_argv() -> Vec<&'static str> {
    let mut v = vec!["/usr/bin/grep", "-r", "-s", "-I", "-F", "-q", "warrant-bench: no file holds this 7f3a"];
    v.extend(GREP_TREES);
    v
}

fn grep_phase(opts: &Opts) -> GrepResult {
    let runs = opts.reps.clamp(1, 5);
    eprintln!("warrant-bench: phase r_grep ({runs} runs untagged and tagged)");
    let argv = grep_argv();
    let untagged = || {
        let t = std::time::Instant::now();
        let st = Command::new(argv[0]).args(&argv[1..]).status().unwrap_or_else(|e| die(&format!("run grep: {e}")));
        if st.code() != Some(1) {
            die(&format!("grep -r found the string or failed: {st}"));
        }
        t.elapsed().as_secs_f64() * 1e3
    };
    untagged(); // warms the page cache
    let mut r = GrepResult { untagged_ms: Vec::new(), tagged_ms: Vec::new(), events: 0, lost: 0 };
    let mut counts = Vec::new();
    for _ in 0..runs {
        r.untagged_ms.push(untagged());
        // An agent of its own each time, started and stopped outside the timing, so
        // the untagged runs have no agent at all.
        let agent = TestAgent::start(AgentOptions::default());
        let mark = Marker::new();
        let grant = agent.issue_grant("30m");
        let lost_before = lost_total(&agent);
        let t = std::time::Instant::now();
        let mut s = agent.exec(&grant, &mark, &argv);
        let st = s.wait_for(Duration::from_secs(600));
        r.tagged_ms.push(t.elapsed().as_secs_f64() * 1e3);
        if st.code() != Some(1) {
            die(&format!("tagged grep -r found the string or failed: {st}\n{}", s.stderr().text()));
        }
        let sid = s.id().to_string();
        // Everything of the run on the record before the count.
        find_event_from(&agent, 0, Duration::from_secs(60), |e| e["kind"] == "session_end" && e["session"] == sid.as_str());
        counts.push(agent.with_audit(|a| {
            a.records().iter().filter(|r| r["event"]["kind"] == "file_open" && r["event"]["session"] == sid.as_str()).count() as u64
        }));
        r.lost += lost_total(&agent).saturating_sub(lost_before);
    }
    counts.sort_unstable();
    r.events = counts[counts.len() / 2];
    r
}

fn launch_phase(opts: &Opts) -> LaunchResult {
    eprintln!("warrant-bench: phase l_launch ({} starts each)", opts.launches);
    let agent = TestAgent::start(AgentOptions { log_level: Some("info".into()), ..AgentOptions::default() });
    let grant = agent.issue_grant("2h");
    let bin = testbin();
    let mark = Marker::new();
    let (mut direct_us, mut warrant_us) = (Vec::new(), Vec::new());
    for _ in 0..opts.launches {
        if let Some(us) = time_to_stamp(Command::new(&bin).arg("stamp")) {
            direct_us.push(us);
        }
        if let Some(us) = time_to_stamp(&mut agent.exec_command(&grant, &mark, &[&bin, "stamp"])) {
            warrant_us.push(us);
        }
    }
    if warrant_us.len() < opts.launches {
        eprintln!("warrant-bench: {} of {} launches printed no stamp", opts.launches - warrant_us.len(), opts.launches);
    }
    let steps_us = launch_steps(&agent.log_text());
    LaunchResult { direct_us, warrant_us, steps_us }
}
