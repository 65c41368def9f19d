//! `warrant-bench` (run by `cargo xtask bench`): what warrant costs the host and how
//! fast it kills, measured end to end in one run against a baseline taken in the
//! same run.
//!
//! Phases, each running the same `warrant-testbin loop` workloads (getppid,
//! open+close of a small file, fork+exec of /bin/true), several repetitions, median:
//! - (a) no agent;
//! - (b) agent loaded, no session live (only the always-on hooks are attached);
//! - (c) agent loaded and a session live elsewhere (the syscall-exit hook used for
//!   file opens is attached), loops untagged;
//! - (d) loops tagged, inside `warrant exec`: overhead per operation, events per
//!   operation (from the audit log, plus records lost) and ns per event;
//! - (e) expiry to last death of a 100-process tree: the grant's expiry comes from
//!   `warrant grants --json`; every pid is watched through a pidfd, which polls
//!   readable the moment the process is dead.
//!
//! It prints a table with ratios against (a) and writes
//! `bench/runs/<date>-<host>/{raw.csv,summary.md}` with the kernel, CPU and command.
//!
//! ```text
//! warrant-bench [--reps N] [--expiry-runs N] [--tree N] [--quick] [--out DIR]
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use warrant_tests::agent::{AgentOptions, TestAgent};
use warrant_tests::workload::testbin;
use warrant_tests::{Marker, Tree, audit, bins, poll};

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
    out: Option<PathBuf>,
    ops: Vec<Op>,
}

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
    for a in &args {
        if a.starts_with("--") && !["--reps", "--expiry-runs", "--tree", "--quick", "--out"].contains(&a.as_str()) {
            die(&format!("unknown flag {a}\n\nusage: warrant-bench [--reps N] [--expiry-runs N] [--tree N] [--quick] [--out DIR]"));
        }
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    Opts {
        reps: num("--reps", if quick { 3 } else { 5 }),
        expiry_runs: num("--expiry-runs", if quick { 5 } else { 20 }),
        tree: num("--tree", 100),
        out: value("--out").map(PathBuf::from),
        ops: vec![
            Op { name: "getppid", title: "getppid", n: 1_000_000 / scale },
            Op { name: "open", title: "open+close", n: 50_000 / scale },
            Op { name: "exec", title: "fork+exec", n: 300 / scale },
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

fn loop_argv(op: Op) -> Vec<String> {
    vec![
        testbin(),
        "loop".into(),
        op.name.into(),
        op.n.to_string(),
        "--path".into(),
        open_target().to_string_lossy().into_owned(),
    ]
}

/// Runs one loop untagged; ns per operation.
fn run_untagged(op: Op) -> f64 {
    let argv = loop_argv(op);
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

/// Runs one loop inside `warrant exec` under `grant`.
fn run_tagged(agent: &TestAgent, grant: &str, mark: &Marker, op: Op) -> Tagged {
    let lost_before = lost_total(agent);
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
    agent.wait_for_event(|e| audit::is("exit", &sid)(e) && audit::u64_field(e, "pid") == root, Duration::from_secs(120));
    // The loop's events are in once the count stops growing.
    let mut last = usize::MAX;
    let logged = poll(Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_millis(300));
        let n = agent.session_events(&sid).len();
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
    let kill = agent.wait_for_event(|e| e["kind"] == "kill" && e["grant"] == grant.as_str(), Duration::from_secs(10));
    #[expect(clippy::cast_precision_loss, reason = "microseconds")]
    let us = (last - expiry) as f64 / 1000.0;
    Some((us, audit::u64_field(&kill, "elapsed_us")))
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
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let pins_at_start = foreign_pins();
    let load_at_start = read_trim("/proc/loadavg");
    let mut csv = String::from("phase,op,rep,n,value\n");

    let a = loop_phase("a_no_agent", &opts, &mut csv, run_untagged);

    let agent = TestAgent::start(AgentOptions { log_level: Some("info".into()), ..AgentOptions::default() });
    let b = loop_phase("b_agent_idle", &opts, &mut csv, run_untagged);

    let mark = Marker::new();
    let grant = agent.issue_grant("2h");
    let elsewhere = agent.exec(&grant, &mark, &[&testbin(), "sleep", "7200"]);
    let c = loop_phase("c_session_elsewhere", &opts, &mut csv, run_untagged);

    eprintln!("warrant-bench: phase d_tagged");
    let mut d: PhaseResult = vec![Vec::new(); opts.ops.len()];
    let mut d_events = vec![Vec::new(); opts.ops.len()];
    let mut d_lost = vec![0u64; opts.ops.len()];
    for rep in 0..opts.reps {
        for (i, &op) in opts.ops.iter().enumerate() {
            let t = run_tagged(&agent, &grant, &mark, op);
            let _ = writeln!(csv, "d_tagged,{},{rep},{},{:.1}", op.name, op.n, t.ns);
            let _ = writeln!(csv, "d_events_per_op,{},{rep},{},{:.3}", op.name, op.n, t.events_per_op);
            let _ = writeln!(csv, "d_lost,{},{rep},{},{}", op.name, op.n, t.lost);
            d[i].push(t.ns);
            d_events[i].push(t.events_per_op);
            d_lost[i] += t.lost;
        }
    }
    drop(elsewhere);

    eprintln!("warrant-bench: phase e_expiry ({} runs of a {}-process tree)", opts.expiry_runs, opts.tree);
    let mut e_us = Vec::new();
    let mut e_agent_us = Vec::new();
    for run in 0..opts.expiry_runs {
        if let Some((us, agent_us)) = expiry_run(&agent, &mark, opts.tree) {
            let _ = writeln!(csv, "e_expiry_to_last_death_us,tree{},{run},{},{us:.0}", opts.tree, opts.tree);
            let _ = writeln!(csv, "e_agent_kill_elapsed_us,tree{},{run},{},{agent_us}", opts.tree, opts.tree);
            e_us.push(us);
            #[expect(clippy::cast_precision_loss, reason = "microseconds")]
            e_agent_us.push(agent_us as f64);
        }
    }
    drop(agent);
    drop(mark);

    // Summary table.
    let med = |r: &PhaseResult| -> Vec<f64> { r.iter().map(|v| median(&mut v.clone())).collect() };
    let (ma, mb, mc, md) = (med(&a), med(&b), med(&c), med(&d));
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
    for (label, m, runs) in [
        ("(a) no agent (baseline)", &ma, &a),
        ("(b) agent loaded, no session", &mb, &b),
        ("(c) agent loaded, session live elsewhere", &mc, &c),
        ("(d) tagged, inside `warrant exec`", &md, &d),
    ] {
        let _ = write!(table, "| {label} |");
        for (i, v) in m.iter().enumerate() {
            // The range shows how much the host's other load moved the repetitions.
            let lo = runs[i].iter().copied().fold(f64::INFINITY, f64::min);
            let hi = runs[i].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let _ = write!(table, " {} ({}–{}) | {:.2}× |", fmt_ns(*v), fmt_ns(lo), fmt_ns(hi), v / ma[i]);
        }
        table.push('\n');
    }
    let mut tagged = String::from("| op | tagged overhead vs (a) | events per op (logged + lost) | ns per event | records lost |\n|---|---:|---:|---:|---:|\n");
    for (i, op) in opts.ops.iter().enumerate() {
        let over = md[i] - ma[i];
        let epo = median(&mut d_events[i].clone());
        let per_event = if epo >= 0.01 { fmt_ns(over / epo) } else { "— (no events)".into() };
        let _ = writeln!(tagged, "| {} | {} | {epo:.2} | {per_event} | {} |", op.title, fmt_ns(over), d_lost[i]);
    }
    e_us.sort_by(f64::total_cmp);
    e_agent_us.sort_by(f64::total_cmp);
    let expiry = format!(
        "expiry → last death, {}-process tree, {} of {} runs: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
         (agent's own kill elapsed: p50 {:.1} ms, p99 {:.1} ms)",
        opts.tree,
        e_us.len(),
        opts.expiry_runs,
        quantile(&e_us, 0.5) / 1000.0,
        quantile(&e_us, 0.99) / 1000.0,
        e_us.last().copied().unwrap_or(f64::NAN) / 1000.0,
        quantile(&e_agent_us, 0.5) / 1000.0,
        quantile(&e_agent_us, 0.99) / 1000.0,
    );
    println!("\n{table}\n{tagged}\n{expiry}");

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
         - /proc/loadavg at start: {load_at_start}; at end: {}\n\n\
         ## Per-operation cost\n\n{table}\n## Tagged processes\n\n{tagged}\n\
         Overhead is (d) − (a); ns per event divides it by the events each operation produced \
         (audit-log events of the session plus records the ring buffer lost).\n\n\
         ## Kill latency\n\n{expiry}\n\nThe expiry comes from `warrant grants --json`; \
         each process is watched through a pidfd, which polls readable when it is dead.\n",
        read_trim("/proc/sys/kernel/osrelease"),
        cpu_model(),
        git_commit(),
        loops.join(", "),
        opts.reps,
        if pins_at_start.is_empty() { "none".into() } else { pins_at_start.join(", ") },
        read_trim("/proc/loadavg"),
    );
    std::fs::write(dir.join("raw.csv"), &csv).unwrap_or_else(|e| die(&format!("write raw.csv: {e}")));
    std::fs::write(dir.join("summary.md"), summary).unwrap_or_else(|e| die(&format!("write summary.md: {e}")));
    println!("\nwrote {}/{{raw.csv,summary.md}}", dir.display());
}
