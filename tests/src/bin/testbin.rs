//! `warrant-testbin`: the workloads the end-to-end tests and the benchmark run under
//! grants. Each subcommand does one well-defined thing with plain libc calls, so a
//! test knows exactly which processes, execs, opens and sockets to expect:
//!
//! ```text
//! tree N --pidfile F [--escape-cgroup DIR] [--lifetime S]   ≥ N sleeping processes: chains, background
//!                                         process groups, setsid double-forked daemons, exec'd sleeps,
//!                                         one that moves itself to DIR; each appends "PID ROLE" to F
//! fork-loop [--max N] [--lifetime S]      fork as fast as possible up to N live processes (every
//!                                         process forks too), then churn: each non-root process hands
//!                                         over to a fresh child and exits about every 640 ms
//! open-burst N PATH [--every-ms MS [--batch K]]
//!                                         open+close PATH N times (pausing MS after every K opens)
//! open PATH read|write|read-write         one open (write modes create the file)
//! deep-open DIR MIN_BYTES                 nest dirs under DIR until the path passes MIN_BYTES, chdir
//!                                         down, create and then open "leaf.txt" by its relative path
//! connect ADDR:PORT                       connect, print "local ADDR:PORT", send one byte, read to EOF
//! listen ADDR:PORT                        bind+listen, print "listening ADDR:PORT", accept one, exit
//! transfer ADDR:PORT BYTES                connect, send BYTES, shut down writing, read to EOF, print
//!                                         "sent N received M"
//! gate FILE -- CMD ARGS…                  wait until FILE exists, then exec CMD (no fork)
//! sleep SECONDS                           sleep
//! loop getppid|open|exec N [--path P]     timed loop; prints {"op","n","total_ns","ns_per_op"} as JSON
//! loop connect N --addr ADDR:PORT         the same for socket+connect+close (TCP, blocking, closed with
//!                                         RST: SO_LINGER 0); needs a listener that keeps accepting
//! loop unix N --unix PATH                 the same for a unix stream socket+connect+close
//! attempt WHAT [ARG]                      one call a confined session must not make; prints "WHAT ok"
//!                                         or "WHAT errno N", exits 0: bpf, ptrace PID, kill PID (SIGKILL),
//!                                         signal0 PID, finit_module, bind ADDR:PORT, cgroup-move PROCS_FILE,
//!                                         clone3-into CGROUP_DIR, create PATH, read PATH, unlink PATH, exec PATH, fexec PATH, tfo ADDR:PORT,
//!                                         read-bytes PATH (prints "read-bytes N bytes"), read-at DIR NAME and
//!                                         read-tree DIR NAME (openat on a dirfd from O_PATH / open_tree),
//!                                         opath PATH (an O_PATH open), audit-off (AUDIT_SET enabled=0), read-thread PATH (the read from a
//!                                         second thread after the leader exited alone);
//!                                         with --linger S it then sleeps S and prints "WHAT lingered"
//! stamp                                   print the wall clock (ns since the epoch) and exit: the
//!                                         first thing the program does, for start-up latency
//! claim SOCKET grant|token VALUE         a hand-written client of the agent's gRPC socket: StartSession
//!                                         (grant id) or StartSessionWithToken (token file) for itself,
//!                                         claiming `sandboxed: true` while it confines nothing; prints
//!                                         "started SESSION sandbox=S" or "refused CODE: MESSAGE", then
//!                                         its own "Seccomp: N" line, exits 0
//! unix connect|sendto NAME               one connect (stream) or datagram (sendto, dgram) to a unix
//!                                         socket NAME ("@x" is abstract), by raw libc calls; prints
//!                                         "NAME ok" or "NAME errno N", exits 0
//! conn-burst N ADDR:PORT                 N TCP connections to ADDR:PORT, then all of them reset
//!                                         (SO_LINGER 0) and closed as fast as it can: a burst of
//!                                         socket closes; prints "closed N"
//! changes DIR                             every call that changes files, by raw syscall numbers, on
//!                                         names in DIR (absolute, relative to a descriptor of DIR, and
//!                                         relative to the working directory, which it makes DIR); prints
//!                                         one "CALL ret" line each (`ret` is the return or -errno),
//!                                         exits 0
//! landlock RIGHTS CMD [ARG…]             run CMD under a Landlock domain of its own that
//!                                         handles the filesystem rights RIGHTS (a number, bits as
//!                                         Landlock numbers them) and grants all of them beneath `/`
//!                                         (one rule, at the root): what a domain costs by itself
//!                                         (bench phase k)
//! ```
//!
//! Every process a workload makes lives at most `--lifetime` seconds (an `alarm`), so
//! nothing outlives a test by long even if the agent under test fails to kill it.

use std::ffi::CString;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        return usage();
    };
    let r = match cmd.as_str() {
        "tree" => tree(rest),
        "fork-loop" => fork_loop(rest),
        "open-burst" => open_burst(rest),
        "open" => open_one(rest),
        "deep-open" => deep_open(rest),
        "connect" => connect(rest),
        "listen" => listen(rest),
        "transfer" => transfer(rest),
        "gate" => gate(rest),
        "sleep" => sleep(rest),
        "loop" => timed_loop(rest),
        "attempt" => attempt(rest),
        "bomb" => bomb(rest),
        "uring-connect" => uring_connect(rest),
        "unix" => unix(rest),
        "claim" => claim(rest),
        "stamp" => stamp(),
        "changes" => changes(rest),
        "conn-burst" => conn_burst(rest),
        "landlock" => landlock_exec(rest),
        _ => return usage(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warrant-testbin: {cmd}: {e}");
            ExitCode::from(2)
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: warrant-testbin tree|fork-loop|open-burst|open|deep-open|connect|listen|gate|sleep|loop|attempt …");
    ExitCode::from(2)
}

type Result<T = ()> = std::result::Result<T, String>;

/// The value after `--name` in `args`.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// The `i`-th argument that is neither a `--flag` nor a flag's value.
fn positional(args: &[String], i: usize) -> Option<&str> {
    let mut skip = false;
    args.iter()
        .filter(|a| {
            if skip {
                skip = false;
                return false;
            }
            if a.starts_with("--") {
                skip = true;
                return false;
            }
            true
        })
        .nth(i)
        .map(String::as_str)
}

fn parse<T: std::str::FromStr>(v: Option<&str>, what: &str) -> Result<T> {
    let v = v.ok_or_else(|| format!("missing {what}"))?;
    v.parse().map_err(|_| format!("invalid {what}: {v}"))
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| format!("NUL in {s:?}"))
}

/// `fork()`; in the child runs `f` and exits 0 (or never returns from `f`).
fn fork_child(f: impl FnOnce()) -> Result<libc::pid_t> {
    // SAFETY: this program is single-threaded, so the child may run arbitrary code.
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", errno())),
        0 => {
            f();
            // SAFETY: _exit has no preconditions.
            unsafe { libc::_exit(0) }
        }
        pid => Ok(pid),
    }
}

fn set_alarm(seconds: u32) {
    // SAFETY: alarm has no preconditions; SIGALRM's default action ends the process.
    unsafe {
        libc::alarm(seconds.max(1));
    }
}

fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

// ---------------------------------------------------------------------------------
// tree

/// State shared by every process of a `tree`.
struct Tree {
    /// The pid file, opened O_APPEND so each one-line write lands whole.
    fd: i32,
    /// Seconds any process lives at most.
    lifetime: u32,
}

impl Tree {
    /// Appends "PID ROLE\n" in one write.
    fn record(&self, role: &str) {
        let line = format!("{} {role}\n", getpid());
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::write(self.fd, line.as_ptr().cast(), line.len()) };
        if n != line.len().cast_signed() {
            eprintln!("warrant-testbin: tree: write pid file: {}", errno());
        }
    }

    /// Sleeps until killed. Half the processes block in pause() (no syscalls, so only
    /// cgroup.kill or a signal can end them); the others wake every 200 ms and so
    /// enter the kernel regularly.
    fn idle(&self, n: usize) -> ! {
        loop {
            if n.is_multiple_of(2) {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            } else {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// Forks a child that arms its lifetime alarm, then runs `f`.
    fn spawn(&self, f: impl FnOnce()) -> Result<libc::pid_t> {
        let lifetime = self.lifetime;
        fork_child(move || {
            set_alarm(lifetime);
            f();
        })
    }

    /// A chain: child → grandchild → … `depth` processes deep, all idle.
    fn chain(&self, depth: usize, n: usize) {
        self.record(if depth > 1 { "chain" } else { "chain-leaf" });
        if depth > 1 {
            let _ = self.spawn(|| self.chain(depth - 1, n + 1));
        }
        self.idle(n);
    }

    /// `setsid()`, fork, and exit: the grandchild is a daemon re-parented away from
    /// the tree, in a session and process group of its own.
    fn daemon(&self, n: usize) {
        // SAFETY: setsid has no preconditions.
        if unsafe { libc::setsid() } < 0 {
            eprintln!("warrant-testbin: tree: setsid: {}", errno());
        }
        let _ = self.spawn(|| {
            self.record("daemon");
            self.idle(n);
        });
    }

    /// A background job: its own process group (as a shell's `&` makes), with a child.
    fn background(&self, n: usize) {
        // SAFETY: setpgid(0, 0) has no preconditions.
        unsafe { libc::setpgid(0, 0) };
        self.record("bg");
        let _ = self.spawn(|| {
            self.record("bg-child");
            self.idle(n + 1);
        });
        self.idle(n);
    }

    /// Records itself, then becomes `/bin/sleep` (same pid, new image).
    fn exec_sleep(&self) {
        self.record("exec-sleep");
        let secs = self.lifetime.to_string();
        let argv = ["sleep", secs.as_str()].map(|a| CString::new(a).expect("no NUL"));
        let ptrs = [argv[0].as_ptr(), argv[1].as_ptr(), std::ptr::null()];
        // SAFETY: NUL-terminated strings and a NULL-terminated array.
        unsafe { libc::execv(c"/bin/sleep".as_ptr(), ptrs.as_ptr()) };
        eprintln!("warrant-testbin: tree: exec /bin/sleep: {}", errno());
    }

    /// Moves itself into the cgroup `dir`, as a process trying to leave its session
    /// cgroup would. The role says whether that worked ("escape") or not
    /// ("escape-failed"), so the test can move it from outside instead.
    fn escape(&self, dir: &str) {
        let procs = format!("{dir}/cgroup.procs");
        match std::fs::write(&procs, getpid().to_string()) {
            Ok(()) => self.record("escape"),
            Err(e) => {
                eprintln!("warrant-testbin: tree: write {procs}: {e}");
                self.record("escape-failed");
            }
        }
        self.idle(1);
    }
}

fn tree(args: &[String]) -> Result {
    let n: usize = parse(positional(args, 0), "process count N")?;
    let pidfile = flag(args, "--pidfile").ok_or("missing --pidfile F")?;
    let escape = flag(args, "--escape-cgroup");
    let lifetime: u32 = parse(Some(flag(args, "--lifetime").unwrap_or("600")), "--lifetime")?;
    let path = cstr(pidfile)?;
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return Err(format!("open {pidfile}: {}", errno()));
    }
    let t = Tree { fd, lifetime };
    set_alarm(lifetime);
    t.record("root");
    // Root, then one escaper, daemons, exec'd sleeps, background jobs, and chains of
    // three for whatever is left.
    let mut left = n.saturating_sub(1);
    let escapers = usize::from(escape.is_some()).min(left);
    left -= escapers;
    let daemons = (n / 10).max(2).min(left);
    left -= daemons;
    let sleeps = left.min(2);
    left -= sleeps;
    let jobs = left.min(4) / 2;
    left -= jobs * 2;
    if let Some(dir) = escape {
        for _ in 0..escapers {
            t.spawn(|| t.escape(dir))?;
        }
    }
    for i in 0..daemons {
        t.spawn(|| t.daemon(i))?;
    }
    for _ in 0..sleeps {
        t.spawn(|| t.exec_sleep())?;
    }
    for i in 0..jobs {
        t.spawn(|| t.background(i))?;
    }
    let mut rest = left;
    let mut i = 0;
    while rest > 0 {
        let d = rest.min(3);
        rest -= d;
        t.spawn(|| t.chain(d, i))?;
        i += 1;
    }
    // Reap what exits (the daemons' first children), then idle as the tree's root.
    loop {
        // SAFETY: waitpid with a NULL status pointer is allowed.
        if unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) } < 0
            && errno().raw_os_error() == Some(libc::ECHILD)
        {
            t.idle(0);
        }
    }
}

// ---------------------------------------------------------------------------------
// fork-loop

/// A tiny xorshift generator: enough to spread the churn, no dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        Self(0x9e37_79b9_7f4a_7c15 ^ u64::from(getpid().unsigned_abs()).wrapping_mul(0xff51_afd7_ed55_8ccd))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn monotonic_secs() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec.unsigned_abs()
}

fn fork_loop(args: &[String]) -> Result {
    let max: i64 = parse(Some(flag(args, "--max").unwrap_or("500")), "--max")?;
    let lifetime: u64 = parse(Some(flag(args, "--lifetime").unwrap_or("120")), "--lifetime")?;
    // The live-process count, shared by every process of the loop.
    // SAFETY: anonymous shared mapping of one page; checked for MAP_FAILED.
    let shared = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if shared == libc::MAP_FAILED {
        return Err(format!("mmap: {}", errno()));
    }
    // SAFETY: the mapping is page-aligned, zeroed and lives as long as the process.
    let live: &AtomicI64 = unsafe { &*shared.cast::<AtomicI64>() };
    live.store(1, Ordering::SeqCst);
    let deadline = monotonic_secs() + lifetime;
    // The alarm is a backstop for the deadline check below (a process stuck in a
    // syscall still dies).
    let backstop = || set_alarm(u32::try_from(deadline.saturating_sub(monotonic_secs()) + 2).unwrap_or(u32::MAX));
    backstop();
    let mut rng = Rng::seeded();
    let root = getpid();
    // Orphans of the churn come to the root, which reaps them: otherwise thousands of
    // zombies wait for init, and a /proc scan gets too slow to see the live ones.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    loop {
        if monotonic_secs() >= deadline {
            // SAFETY: _exit has no preconditions.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: waitpid with a NULL status pointer is allowed.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        if live.load(Ordering::Relaxed) < max {
            live.fetch_add(1, Ordering::SeqCst);
            // SAFETY: single-threaded; the child simply continues this loop.
            match unsafe { libc::fork() } {
                0 => {
                    backstop();
                    rng = Rng::seeded();
                }
                -1 => {
                    live.fetch_sub(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {}
            }
        } else {
            // At the cap: now and then hand over to a fresh child and exit, so pids
            // keep changing under whoever is trying to kill the loop. The root stays,
            // so the session keeps its root process.
            if getpid() != root && rng.next().is_multiple_of(32) {
                // SAFETY: as above.
                match unsafe { libc::fork() } {
                    0 => {
                        backstop();
                        rng = Rng::seeded();
                        continue;
                    }
                    // SAFETY: _exit has no preconditions.
                    pid if pid > 0 => unsafe { libc::_exit(0) },
                    _ => {}
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---------------------------------------------------------------------------------
// files

fn open_burst(args: &[String]) -> Result {
    let n: u64 = parse(positional(args, 0), "count N")?;
    let path_s = positional(args, 1).ok_or("missing PATH")?;
    let path = cstr(path_s)?;
    let every = Duration::from_millis(parse(Some(flag(args, "--every-ms").unwrap_or("0")), "--every-ms")?);
    let batch: u64 = parse(Some(flag(args, "--batch").unwrap_or("1")), "--batch")?;
    // Paced against a start time, so the rate holds however long each open takes.
    let start = Instant::now();
    let mut failed = 0u64;
    for i in 0..n {
        if i > 0 && !every.is_zero() && i % batch.max(1) == 0 {
            let due = start + every * u32::try_from(i / batch.max(1)).unwrap_or(u32::MAX);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        // SAFETY: valid NUL-terminated path.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            failed += 1;
        } else {
            // SAFETY: fd was just opened.
            unsafe { libc::close(fd) };
        }
    }
    println!(r#"{{"opened":{},"failed":{failed}}}"#, n - failed);
    if failed > 0 {
        return Err(format!("{failed} of {n} opens of {path_s} failed: {}", errno()));
    }
    Ok(())
}

fn open_one(args: &[String]) -> Result {
    let path_s = positional(args, 0).ok_or("missing PATH")?;
    let flags = match positional(args, 1).ok_or("missing read|write|read-write")? {
        "read" => libc::O_RDONLY,
        "write" => libc::O_WRONLY | libc::O_CREAT,
        "read-write" => libc::O_RDWR | libc::O_CREAT,
        m => return Err(format!("unknown access {m}")),
    };
    let path = cstr(path_s)?;
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    if fd < 0 {
        return Err(format!("open {path_s}: {}", errno()));
    }
    // SAFETY: fd was just opened.
    unsafe { libc::close(fd) };
    Ok(())
}

fn deep_open(args: &[String]) -> Result {
    let dir = positional(args, 0).ok_or("missing DIR")?;
    let min: usize = parse(positional(args, 1), "MIN_BYTES")?;
    std::env::set_current_dir(dir).map_err(|e| format!("chdir {dir}: {e}"))?;
    // Each component is 200 bytes; the path is built relative to the cwd, one chdir
    // at a time, because no single path string may exceed PATH_MAX (4096).
    let comp = "d".repeat(200);
    let leaf = "leaf.txt";
    let mut len = dir.trim_end_matches('/').len();
    let mut depth = 0;
    while len + 1 + leaf.len() <= min {
        match std::fs::create_dir(&comp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("mkdir at depth {depth}: {e}")),
        }
        std::env::set_current_dir(&comp).map_err(|e| format!("chdir at depth {depth}: {e}"))?;
        len += 1 + comp.len();
        depth += 1;
    }
    std::fs::write(leaf, b"deep\n").map_err(|e| format!("create {leaf}: {e}"))?;
    let mut s = String::new();
    std::fs::File::open(leaf)
        .and_then(|mut f| f.read_to_string(&mut s))
        .map_err(|e| format!("open {leaf}: {e}"))?;
    println!(r#"{{"depth":{depth},"path_len":{}}}"#, len + 1 + leaf.len());
    Ok(())
}

// ---------------------------------------------------------------------------------
// sockets

fn connect(args: &[String]) -> Result {
    let addr = positional(args, 0).ok_or("missing ADDR:PORT")?;
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let local = s.local_addr().map_err(|e| e.to_string())?;
    println!("local {local}");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    s.write_all(b"x").map_err(|e| format!("send: {e}"))?;
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    Ok(())
}

/// One connect or datagram to a unix socket name, the address built by hand so a
/// relative or odd name reaches the kernel exactly as given.
fn unix(args: &[String]) -> Result {
    let how = positional(args, 0).ok_or("missing connect|sendto")?;
    let name = positional(args, 1).ok_or("missing NAME")?;
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let (bytes, abstract_name) = match name.strip_prefix('@') {
        Some(a) => (a.as_bytes(), true),
        None => (name.as_bytes(), false),
    };
    let start = usize::from(abstract_name);
    if start + bytes.len() >= sa.sun_path.len() {
        return Err(format!("name {name} is too long"));
    }
    for (i, b) in bytes.iter().enumerate() {
        sa.sun_path[start + i] = *b as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + start + bytes.len() + usize::from(!abstract_name)) as u32;
    let ty = if how == "sendto" { libc::SOCK_DGRAM } else { libc::SOCK_STREAM };
    // SAFETY: plain syscalls on a descriptor this function owns; `sa` outlives them.
    let r = unsafe {
        let fd = libc::socket(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket: {}", errno()));
        }
        let sap = (&raw const sa).cast::<libc::sockaddr>();
        let r = if how == "sendto" {
            libc::sendto(fd, b"x".as_ptr().cast(), 1, 0, sap, len) as i32
        } else {
            libc::connect(fd, sap, len)
        };
        let e = errno();
        libc::close(fd);
        if r < 0 { Err(e) } else { Ok(()) }
    };
    match r {
        Ok(()) => println!("{name} ok"),
        Err(e) => println!("{name} errno {}", e.raw_os_error().unwrap_or(-1)),
    }
    Ok(())
}

fn transfer(args: &[String]) -> Result {
    let addr = positional(args, 0).ok_or("missing ADDR:PORT")?;
    let n: usize = parse(positional(args, 1), "BYTES")?;
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < n {
        let k = chunk.len().min(n - sent);
        s.write_all(&chunk[..k]).map_err(|e| format!("send: {e}"))?;
        sent += k;
    }
    s.shutdown(std::net::Shutdown::Write).map_err(|e| format!("shutdown: {e}"))?;
    let mut got = Vec::new();
    s.read_to_end(&mut got).map_err(|e| format!("receive: {e}"))?;
    println!("sent {sent} received {}", got.len());
    Ok(())
}

fn listen(args: &[String]) -> Result {
    let addr = positional(args, 0).ok_or("missing ADDR:PORT")?;
    let l = std::net::TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    println!("listening {}", l.local_addr().map_err(|e| e.to_string())?);
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let (mut s, peer) = l.accept().map_err(|e| format!("accept: {e}"))?;
    println!("accepted {peer}");
    let mut b = [0u8; 1];
    let _ = s.read(&mut b);
    Ok(())
}

// ---------------------------------------------------------------------------------
// control

fn gate(args: &[String]) -> Result {
    let file = args.first().ok_or("missing FILE")?;
    let sep = args.iter().position(|a| a == "--").ok_or("missing -- CMD")?;
    let cmd = args.get(sep + 1..).filter(|c| !c.is_empty()).ok_or("missing CMD")?;
    while !std::path::Path::new(file).exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = std::os::unix::process::CommandExt::exec(std::process::Command::new(&cmd[0]).args(&cmd[1..]));
    Err(format!("exec {}: {err}", cmd[0]))
}

fn sleep(args: &[String]) -> Result {
    let s: f64 = parse(positional(args, 0), "SECONDS")?;
    std::thread::sleep(Duration::from_secs_f64(s));
    Ok(())
}

// ---------------------------------------------------------------------------------
// benchmark loops

fn timed_loop(args: &[String]) -> Result {
    let op = positional(args, 0).ok_or("missing getppid|open|exec|connect|unix")?;
    let n: u64 = parse(positional(args, 1), "count N")?;
    let path = cstr(flag(args, "--path").unwrap_or("/etc/hostname"))?;
    let true_argv = [c"true".as_ptr(), std::ptr::null()];
    let target = match op {
        "connect" => Some(parse::<std::net::SocketAddr>(flag(args, "--addr"), "--addr ADDR:PORT")?),
        _ => None,
    };
    let start = Instant::now();
    match op {
        "getppid" => {
            for _ in 0..n {
                // SAFETY: getppid has no preconditions.
                std::hint::black_box(unsafe { libc::syscall(libc::SYS_getppid) });
            }
        }
        "open" => {
            for _ in 0..n {
                // SAFETY: valid NUL-terminated path; fd closed right away.
                unsafe {
                    let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(format!("open: {}", errno()));
                    }
                    libc::close(fd);
                }
            }
        }
        "exec" => {
            for _ in 0..n {
                // SAFETY: the child only calls async-signal-safe execv and _exit.
                match unsafe { libc::fork() } {
                    -1 => return Err(format!("fork: {}", errno())),
                    0 => unsafe {
                        libc::execv(c"/bin/true".as_ptr(), true_argv.as_ptr());
                        libc::_exit(127);
                    },
                    pid => {
                        let mut st = 0;
                        // SAFETY: st is a valid int.
                        unsafe { libc::waitpid(pid, &raw mut st, 0) };
                        if st != 0 {
                            return Err(format!("/bin/true exited with status {st}"));
                        }
                    }
                }
            }
        }
        "connect" => {
            let addr = target.ok_or("missing --addr ADDR:PORT")?;
            for _ in 0..n {
                connect_once(addr)?;
            }
        }
        "unix" => {
            let name = flag(args, "--unix").ok_or("missing --unix PATH")?;
            for _ in 0..n {
                std::os::unix::net::UnixStream::connect(name).map_err(|e| format!("connect {name}: {e}"))?;
            }
        }
        _ => return Err(format!("unknown loop {op}")),
    }
    let total = start.elapsed().as_nanos();
    #[expect(clippy::cast_precision_loss, reason = "a ratio for humans")]
    let per = total as f64 / n.max(1) as f64;
    println!(r#"{{"op":"{op}","n":{n},"total_ns":{total},"ns_per_op":{per:.1}}}"#);
    Ok(())
}

/// One `loop connect` iteration: socket, blocking connect, close. Plain libc so the
/// loop times the syscalls and nothing else.
fn connect_once(addr: std::net::SocketAddr) -> Result {
    // SAFETY: both sockaddr structs are plain old data; all-zero is a valid value.
    let (mut v4, mut v6): (libc::sockaddr_in, libc::sockaddr_in6) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    let (family, sa, len) = match addr {
        std::net::SocketAddr::V4(a) => {
            v4.sin_family = libc::AF_INET as libc::sa_family_t;
            v4.sin_port = a.port().to_be();
            v4.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            (libc::AF_INET, (&raw const v4).cast::<libc::sockaddr>(), size_of_val(&v4))
        }
        std::net::SocketAddr::V6(a) => {
            v6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            v6.sin6_port = a.port().to_be();
            v6.sin6_addr.s6_addr = a.ip().octets();
            (libc::AF_INET6, (&raw const v6).cast::<libc::sockaddr>(), size_of_val(&v6))
        }
    };
    // SAFETY: plain socket calls on a descriptor this function owns and closes; `sa`
    // points at a live sockaddr of `len` bytes.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket: {}", errno()));
        }
        // Close with a RST instead of a FIN: no TIME_WAIT, so thousands of iterations
        // do not use up the ephemeral ports.
        let lg = libc::linger { l_onoff: 1, l_linger: 0 };
        let lg_len = size_of_val(&lg) as libc::socklen_t;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, (&raw const lg).cast(), lg_len);
        if libc::connect(fd, sa, len as libc::socklen_t) < 0 {
            let e = errno();
            libc::close(fd);
            return Err(format!("connect {addr}: {e}"));
        }
        libc::close(fd);
    }
    Ok(())
}

/// `bomb --for SECS --cap N`: an exponential fork bomb whose children sleep, bounded
/// so a broken limit cannot take the host: at most N forks in all, for SECS seconds.
/// Prints `forks F refused R ran N` (refused: children killed by SIGKILL at birth or
/// forks that failed; ran: processes that ever ran, the root included) when it ends.
fn bomb(args: &[String]) -> Result {
    let secs: u64 = parse(Some(flag(args, "--for").unwrap_or("3")), "--for")?;
    let cap: i64 = parse(Some(flag(args, "--cap").unwrap_or("2000")), "--cap")?;
    // SAFETY: anonymous shared mapping for the counters; checked for MAP_FAILED.
    let shared = unsafe {
        libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)
    };
    if shared == libc::MAP_FAILED {
        return Err(format!("mmap: {}", errno()));
    }
    // SAFETY: page-aligned, zeroed, lives as long as the process tree.
    let forks: &AtomicI64 = unsafe { &*shared.cast::<AtomicI64>() };
    let refused: &AtomicI64 = unsafe { &*shared.cast::<AtomicI64>().add(1) };
    // Processes of the bomb that ran code of their own (the root included): a child
    // killed at birth never gets here.
    let ran: &AtomicI64 = unsafe { &*shared.cast::<AtomicI64>().add(2) };
    ran.store(1, Ordering::SeqCst);
    let deadline = monotonic_secs() + secs;
    let root = getpid();
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    set_alarm(u32::try_from(secs + 2).unwrap_or(u32::MAX));
    while monotonic_secs() < deadline {
        if forks.fetch_add(1, Ordering::SeqCst) >= cap {
            break;
        }
        // SAFETY: single-threaded; the child continues this loop (exponential).
        match unsafe { libc::fork() } {
            0 => {
                ran.fetch_add(1, Ordering::SeqCst);
            }
            -1 => {
                refused.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => {}
        }
        // Reap what died: a child killed at birth shows as SIGKILL.
        let mut status = 0;
        // SAFETY: status is a valid out pointer.
        while unsafe { libc::waitpid(-1, &raw mut status, libc::WNOHANG) } > 0 {
            if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL {
                refused.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    if getpid() != root {
        // Every process of the bomb but the root sleeps until the deadline, holding its pid.
        std::thread::sleep(Duration::from_secs(deadline.saturating_sub(monotonic_secs())));
        // SAFETY: _exit has no preconditions.
        unsafe { libc::_exit(0) };
    }
    // The root reaps until the tree is gone.
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(-1, &raw mut status, 0) };
        if r <= 0 {
            break;
        }
        if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL {
            refused.fetch_add(1, Ordering::SeqCst);
        }
    }
    println!(
        "forks {} refused {} ran {}",
        forks.load(Ordering::SeqCst).min(cap),
        refused.load(Ordering::SeqCst),
        ran.load(Ordering::SeqCst)
    );
    Ok(())
}

/// `uring-connect ADDR [--sqpoll]`: a connect submitted through io_uring, forced
/// onto an io-wq worker (`IOSQE_ASYNC`) or made by an SQPOLL thread: kernel threads
/// the process did not fork. ADDR is an IPv4 address and port, or a unix socket
/// path (starting with `/`) for a stream connect. Prints `uring-connect ok` or
/// `uring-connect errno N`.
fn uring_connect(args: &[String]) -> Result {
    use io_uring::{IoUring, opcode, squeue, types};
    let target = positional(args, 0).ok_or("missing address")?;
    let sqpoll = args.iter().any(|a| a == "--sqpoll");
    let mut ring: IoUring = if sqpoll {
        IoUring::builder().setup_sqpoll(2000).build(8)
    } else {
        IoUring::new(8)
    }
    .map_err(|e| format!("io_uring_setup: {e}"))?;
    // Both kinds of address live in one storage until the completion is reaped.
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let (family, len) = if target.starts_with('/') {
        // SAFETY: sockaddr_un fits in sockaddr_storage, which is aligned for it.
        let un = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_un>() };
        un.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = target.as_bytes();
        if bytes.len() >= un.sun_path.len() {
            return Err(format!("unix path too long: {target}"));
        }
        for (d, s) in un.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        (libc::AF_UNIX, (2 + bytes.len() + 1) as libc::socklen_t)
    } else {
        let addr: std::net::SocketAddrV4 = parse(Some(target), "IPv4 address or unix path")?;
        // SAFETY: sockaddr_in fits in sockaddr_storage, which is aligned for it.
        let sa = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in>() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = addr.port().to_be();
        sa.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(addr.ip().octets()) };
        (libc::AF_INET, size_of::<libc::sockaddr_in>() as libc::socklen_t)
    };
    // SAFETY: a plain socket(2); closed below.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", errno()));
    }
    let entry = opcode::Connect::new(types::Fd(fd), (&raw const storage).cast(), len)
        .build()
        .flags(squeue::Flags::ASYNC)
        .user_data(1);
    // SAFETY: `storage` outlives the submission: we wait for its completion below.
    unsafe { ring.submission().push(&entry) }.map_err(|_| "submission queue full".to_owned())?;
    ring.submit_and_wait(1).map_err(|e| format!("io_uring_enter: {e}"))?;
    let res = ring.completion().next().ok_or("no completion")?.result();
    // SAFETY: closing our own socket.
    unsafe { libc::close(fd) };
    if res < 0 {
        println!("uring-connect errno {}", -res);
    } else {
        println!("uring-connect ok");
    }
    Ok(())
}

/// `attempt WHAT [ARG]`: one forbidden call, its outcome printed.
/// A memfd named "payload" holding a copy of the program at `arg`.
fn memfd_copy(arg: Option<&str>) -> Result<std::fs::File> {
    let src = std::fs::read(arg.ok_or("missing program to copy")?).map_err(|e| e.to_string())?;
    // SAFETY: a plain syscall with a valid name; the descriptor is ours to own.
    let fd = unsafe { libc::memfd_create(c"payload".as_ptr(), 0) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", errno()));
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    let mut f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    f.write_all(&src).map_err(|e| e.to_string())?;
    Ok(f)
}

fn attempt(args: &[String]) -> Result {
    let what = positional(args, 0).ok_or("missing what to attempt")?;
    let arg = positional(args, 1);
    let pid = || -> Result<libc::pid_t> { parse(arg, "pid") };
    // SAFETY (every call below): plain syscalls with valid or null arguments; the
    // outcome is all that matters.
    let r: i64 = match what {
        "bpf" => unsafe { libc::syscall(libc::SYS_bpf, 5, std::ptr::null::<u8>(), 0) },
        "ptrace" => {
            let r = unsafe { libc::syscall(libc::SYS_ptrace, 0x4206, pid()?, 0, 0) };
            if r == 0 {
                unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_DETACH, pid()?, 0, 0) };
            }
            r
        }
        "kill" => i64::from(unsafe { libc::kill(pid()?, libc::SIGKILL) }),
        "signal0" => i64::from(unsafe { libc::kill(pid()?, 0) }),
        "finit_module" => unsafe { libc::syscall(libc::SYS_finit_module, -1, c"".as_ptr(), 0) },
        "bind" => {
            // std's TcpListener::bind maps EPERM to an io::Error like any other.
            let addr = arg.ok_or("missing ADDR:PORT")?;
            match std::net::TcpListener::bind(addr) {
                Ok(_) => 0,
                Err(e) => -i64::from(e.raw_os_error().unwrap_or(0)),
            }
        }
        "cgroup-move" => {
            let path = arg.ok_or("missing cgroup.procs path")?;
            match std::fs::OpenOptions::new().write(true).open(path) {
                Ok(mut f) => match f.write_all(format!("{}\n", std::process::id()).as_bytes()) {
                    Ok(()) => 0,
                    Err(e) => -i64::from(e.raw_os_error().unwrap_or(0)),
                },
                Err(e) => -i64::from(e.raw_os_error().unwrap_or(0)),
            }
        }
        "clone3-into" => {
            let dir = cstr(arg.ok_or("missing cgroup dir")?)?;
            let fd = unsafe { libc::open(dir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
            if fd < 0 {
                return Err(format!("open cgroup dir: {}", errno()));
            }
            // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal,
            // stack, stack_size, tls, set_tid, set_tid_size, cgroup.
            let mut ca = [0u64; 11];
            ca[0] = 0x2_0000_0000; // CLONE_INTO_CGROUP
            ca[4] = libc::SIGCHLD as u64;
            ca[10] = fd as u64;
            let r = unsafe { libc::syscall(libc::SYS_clone3, ca.as_mut_ptr(), size_of_val(&ca)) };
            if r == 0 {
                unsafe { libc::_exit(0) };
            }
            if r > 0 {
                unsafe { libc::waitpid(r as libc::pid_t, std::ptr::null_mut(), 0) };
            }
            r.min(0)
        }
        "exec" => {
            let path = cstr(arg.ok_or("missing path")?)?;
            let argv = [path.as_ptr(), std::ptr::null()];
            i64::from(unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) })
        }
        "read" => {
            let path = arg.ok_or("missing path")?;
            match std::fs::read(path) {
                Ok(_) => 0,
                Err(e) => -i64::from(e.raw_os_error().unwrap_or(0)),
            }
        }
        "create" => {
            let path = arg.ok_or("missing path")?;
            match std::fs::File::create(path) {
                Ok(_) => 0,
                Err(e) => -i64::from(e.raw_os_error().unwrap_or(0)),
            }
        }
        "unlink" => {
            let path = arg.ok_or("missing path")?;
            match std::fs::remove_file(path) {
                Ok(()) => 0,
                Err(e) => -i64::from(e.raw_os_error().unwrap_or(0)),
            }
        }
        "read-bytes" => {
            // Everything a read of PATH gives.
            let path = arg.ok_or("missing path")?;
            match std::fs::read(path) {
                Ok(bytes) => {
                    println!("{what} {} bytes", bytes.len());
                    return Ok(());
                }
                Err(e) => -i64::from(e.raw_os_error().unwrap_or(0)),
            }
        }
        "read-at" | "read-tree" => {
            // A read by a name relative to a directory descriptor: from open(O_PATH)
            // or from open_tree, so nothing in the call names the whole path.
            let dir = cstr(arg.ok_or("missing directory")?)?;
            let name = cstr(positional(args, 2).ok_or("missing name")?)?;
            let dfd = if what == "read-at" {
                unsafe { libc::open(dir.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) }
            } else {
                const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
                unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, dir.as_ptr(), OPEN_TREE_CLOEXEC) as i32 }
            };
            if dfd < 0 {
                return Err(format!("open {}: {}", dir.to_string_lossy(), errno()));
            }
            let fd = unsafe { libc::openat(dfd, name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd >= 0 {
                unsafe { libc::close(fd) };
            }
            if fd < 0 { -i64::from(errno().raw_os_error().unwrap_or(0)) } else { 0 }
        }
        "audit-off" => {
            // AUDIT_SET enabled=0 over NETLINK_AUDIT: what would silence Landlock's
            // reports of refusals. Returns the kernel's answer (0 or -errno).
            let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 9) };
            if fd < 0 {
                -i64::from(errno().raw_os_error().unwrap_or(0))
            } else {
                // nlmsghdr (len, type AUDIT_SET, flags REQUEST|ACK, seq, pid), then
                // struct audit_status with mask AUDIT_STATUS_ENABLED and enabled 0.
                let mut msg = Vec::new();
                msg.extend_from_slice(&(16u32 + 44).to_ne_bytes());
                msg.extend_from_slice(&1001u16.to_ne_bytes());
                msg.extend_from_slice(&5u16.to_ne_bytes());
                msg.extend_from_slice(&[0; 8]);
                msg.extend_from_slice(&1u32.to_ne_bytes());
                msg.extend_from_slice(&[0; 40]);
                let sent = unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) };
                let r = if sent < 0 {
                    -i64::from(errno().raw_os_error().unwrap_or(0))
                } else {
                    let mut buf = [0u8; 256];
                    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                    if n < 20 {
                        -i64::from(errno().raw_os_error().unwrap_or(libc::EIO))
                    } else {
                        // The ack's error is -errno; -1 here means "see errno".
                        let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
                        if code < 0 {
                            unsafe { *libc::__errno_location() = -code };
                            -1
                        } else {
                            0
                        }
                    }
                };
                let saved = errno();
                unsafe { libc::close(fd) };
                unsafe { *libc::__errno_location() = saved.raw_os_error().unwrap_or(0) };
                r
            }
        }
        "opath" => {
            // An O_PATH open: names the file, reads nothing.
            let path = cstr(arg.ok_or("missing path")?)?;
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
            if fd < 0 { -i64::from(errno().raw_os_error().unwrap_or(0)) } else { 0 }
        }
        "read-thread" => {
            // The read comes from a second thread after the group leader has exited
            // alone (exit, not exit_group): the process lives on as that thread.
            let path = arg.ok_or("missing path")?.to_owned();
            let linger = flag(args, "--linger").map(|s| s.parse::<u64>().unwrap_or(0)).unwrap_or(0);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                let r = match std::fs::read(&path) {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(0)),
                };
                println!("read-thread {r}");
                let _ = std::io::stdout().flush();
                std::thread::sleep(Duration::from_secs(linger));
                println!("read-thread lingered");
                let _ = std::io::stdout().flush();
                unsafe { libc::_exit(0) };
            });
            // SAFETY: ends only this thread; the spawned one keeps the process.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
            unreachable!("SYS_exit returned");
        }
        "open-rd" | "open-wr" => {
            // Open only (no read, no truncate): what a raw-disk or /proc reader does first.
            let path = arg.ok_or("missing path")?;
            let mut o = std::fs::OpenOptions::new();
            if what == "open-rd" { o.read(true) } else { o.write(true) };
            match o.open(path) {
                Ok(_) => 0,
                Err(e) => -i64::from(e.raw_os_error().unwrap_or(0)),
            }
        }
        "caps-dropped" => {
            // 0 when none of the listed capability numbers (comma-separated) is in this
            // process's effective or bounding set; -EEXIST when one still is.
            let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
            let set = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                    .unwrap_or(u64::MAX)
            };
            let held = set("CapEff:") | set("CapBnd:");
            let caps = arg.ok_or("missing capability numbers")?;
            let any = caps.split(',').filter_map(|c| c.parse::<u32>().ok()).any(|c| held & (1 << c) != 0);
            if any { -i64::from(libc::EEXIST) } else { 0 }
        }
        "udp-send" => {
            // One datagram to ADDR:PORT from an unconnected socket.
            let to: std::net::SocketAddr = parse(arg, "address")?;
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            match sock.send_to(b"exfil", to) {
                Ok(_) => 0,
                Err(e) => -i64::from(e.raw_os_error().unwrap_or(0)),
            }
        }
        "fexec" => {
            // execveat(fd, "", ..., AT_EMPTY_PATH): run an open descriptor (fexecve).
            let path = cstr(arg.ok_or("missing path")?)?;
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
            if fd < 0 {
                return Err(format!("open: {}", errno()));
            }
            let argv = [path.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null::<libc::c_char>()];
            let r = unsafe {
                libc::syscall(libc::SYS_execveat, fd, c"".as_ptr(), argv.as_ptr(), envp.as_ptr(), libc::AT_EMPTY_PATH)
            };
            if r < 0 { -i64::from(errno().raw_os_error().unwrap_or(0)) } else { r }
        }
        "tfo" => {
            // A TCP Fast Open: connect and send in one sendto(MSG_FASTOPEN).
            let to: std::net::SocketAddrV4 = parse(arg, "IPv4 address")?;
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: to.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*to.ip()).to_be() },
                sin_zero: [0; 8],
            };
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Err(format!("socket: {}", errno()));
            }
            let r = unsafe {
                libc::sendto(
                    fd,
                    b"tfo".as_ptr().cast(),
                    3,
                    libc::MSG_FASTOPEN,
                    (&raw const sa).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            let r = if r < 0 { -i64::from(errno().raw_os_error().unwrap_or(0)) } else { 0 };
            unsafe { libc::close(fd) };
            r
        }
        "raw-socket" | "packet-socket" => {
            let (family, ty, proto) = if what == "raw-socket" {
                (libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP)
            } else {
                (libc::AF_PACKET, libc::SOCK_RAW, 0)
            };
            let fd = unsafe { libc::socket(family, ty, proto) };
            if fd >= 0 {
                unsafe { libc::close(fd) };
            }
            i64::from(fd.min(0))
        }
        "io_uring" => {
            // struct io_uring_params is 120 bytes; zeroed asks for nothing special.
            let mut params = [0u8; 120];
            let r = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4, params.as_mut_ptr()) };
            if r >= 0 {
                unsafe { libc::close(r as i32) };
            }
            r.min(0)
        }
        // A Landlock domain of its own: the ABI query, then muting the audit of
        // refusals in domains nested below this one (`ruleset_fd` -1 with
        // LANDLOCK_RESTRICT_SELF_LOG_SUBDOMAINS_OFF).
        "landlock-nest" => unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0, 1u32) },
        "landlock-mute" => unsafe { libc::syscall(libc::SYS_landlock_restrict_self, -1i32, 1u32 << 2) },
        "tiocsti" => {
            // Push one byte into the input queue of the terminal on fd 0.
            let byte = b'#';
            i64::from(unsafe { libc::ioctl(0, libc::TIOCSTI, &raw const byte) })
        }
        "prlimit" => {
            // Lower another process's open-file limit.
            let lim = libc::rlimit64 { rlim_cur: 3, rlim_max: 3 };
            unsafe { libc::syscall(libc::SYS_prlimit64, pid()?, libc::RLIMIT_NOFILE, &raw const lim, 0) }
        }
        "renice" => i64::from(unsafe { libc::setpriority(libc::PRIO_PROCESS, pid()? as libc::id_t, 19) }),
        "renice-user" => i64::from(unsafe { libc::setpriority(libc::PRIO_USER, 0, 19) }),
        "affinity" => {
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            unsafe { libc::CPU_SET(0, &mut set) };
            i64::from(unsafe { libc::sched_setaffinity(pid()?, size_of_val(&set), &raw const set) })
        }
        "reboot" => {
            // A wrong magic number: EINVAL if the call got through, never a reboot.
            unsafe { libc::syscall(libc::SYS_reboot, 0, 0, 0, 0) }
        }
        "memfd-exec" => {
            // A copy of a program in a memfd, executed by descriptor.
            let f = memfd_copy(arg)?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
            let argv = [c"payload".as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null::<libc::c_char>()];
            let r = unsafe {
                libc::syscall(libc::SYS_execveat, fd, c"".as_ptr(), argv.as_ptr(), envp.as_ptr(), libc::AT_EMPTY_PATH)
            };
            drop(f);
            r
        }
        "memfd-proc-exec" => {
            // The same copy, executed by its /proc/self/fd name with a plain execve.
            let f = memfd_copy(arg)?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
            let path = cstr(&format!("/proc/self/fd/{fd}"))?;
            let argv = [c"payload".as_ptr(), std::ptr::null()];
            let r = i64::from(unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) });
            drop(f);
            r
        }
        other => return Err(format!("unknown attempt {other}")),
    };
    let outcome = if r == -1 {
        format!("errno {}", errno().raw_os_error().unwrap_or(0))
    } else if r < 0 {
        format!("errno {}", -r)
    } else {
        "ok".to_owned()
    };
    println!("{what} {outcome}");
    let _ = std::io::stdout().flush();
    if let Some(secs) = flag(args, "--linger") {
        let secs: f64 = parse(Some(secs), "--linger seconds")?;
        std::thread::sleep(Duration::from_secs_f64(secs));
        println!("{what} lingered");
    }
    Ok(())
}

/// StartSession or StartSessionWithToken for this process, claiming a sandbox it
/// never entered: what a client that skips `warrant exec`'s confinement would send.
fn claim(args: &[String]) -> Result {
    use warrant_proto::agent_client::AgentClient;
    use warrant_proto::token_door_client::TokenDoorClient;
    use warrant_proto::{StartSessionRequest, StartSessionWithTokenRequest};
    let socket = std::path::PathBuf::from(positional(args, 0).ok_or("missing SOCKET")?);
    let how = positional(args, 1).ok_or("missing grant|token")?;
    let value = positional(args, 2).ok_or("missing VALUE")?.to_owned();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let answer = rt.block_on(async move {
        let connector = tower::service_fn(move |_: tonic::transport::Uri| {
            let path = socket.clone();
            async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        });
        let channel = tonic::transport::Endpoint::try_from("http://[::]:50051")
            .map_err(|e| e.to_string())?
            .connect_with_connector(connector)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let command = vec!["claim".to_owned()];
        let answer = match how {
            "grant" => {
                let req = StartSessionRequest { grant: value, command, sandboxed: true, sandbox_policy_digest: String::new() };
                AgentClient::new(channel).start_session(req).await
            }
            "token" => {
                let text = std::fs::read_to_string(&value).map_err(|e| format!("{value}: {e}"))?;
                // A token file: `#` comment lines, then the token.
                let token = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or_default();
                let req = StartSessionWithTokenRequest {
                    token: token.to_owned(),
                    command,
                    sandboxed: true,
                    how: "exec".to_owned(),
                    ..Default::default()
                };
                TokenDoorClient::new(channel).start_session_with_token(req).await
            }
            other => return Err(format!("unknown authority {other}")),
        };
        Ok(answer)
    })?;
    match answer {
        Ok(s) => {
            let s = s.into_inner();
            println!("started {} sandbox={}", s.id, s.sandbox);
        }
        Err(status) => println!("refused {:?}: {}", status.code(), status.message()),
    }
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    println!("{}", status.lines().find(|l| l.starts_with("Seccomp:")).unwrap_or("Seccomp: ?").split_whitespace().collect::<Vec<_>>().join(" "));
    Ok(())
}

fn conn_burst(args: &[String]) -> Result {
    let n: usize = parse(positional(args, 0), "N")?;
    let to: std::net::SocketAddr = parse(positional(args, 1), "ADDR:PORT")?;
    let conns: Vec<std::net::TcpStream> =
        (0..n).map(|_| std::net::TcpStream::connect(to)).collect::<std::io::Result<_>>().map_err(|e| e.to_string())?;
    for c in &conns {
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: a valid socket and a linger struct of the size passed.
        unsafe {
            use std::os::fd::AsRawFd;
            libc::setsockopt(
                c.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
    drop(conns);
    println!("closed {n}");
    Ok(())
}

fn changes(args: &[String]) -> Result {
    let dir = positional(args, 0).ok_or("missing DIR")?;
    let d = |name: &str| cstr(&format!("{dir}/{name}"));
    let c = |s: &str| cstr(s);
    let dirc = cstr(dir)?;
    // SAFETY: a valid path; the descriptor stays open for the calls below.
    let dfd = unsafe { libc::open(dirc.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if dfd < 0 {
        return Err(format!("open {dir}: {}", errno()));
    }
    let show = |what: &str, r: i64| {
        let r = if r < 0 { -i64::from(errno().raw_os_error().unwrap_or(0)) } else { r };
        println!("{what} {r}");
    };
    let (dfd_, none) = (i64::from(dfd), std::ptr::null::<u8>());
    // SAFETY: raw syscalls with valid NUL-terminated strings (kept alive by the
    // bindings) and null pointers where the call takes "none".
    unsafe {
        use libc::syscall as sys;
        let (a, b, f, g, h, hl, hl2, sl, fifo, miss) =
            (d("a")?, c("b")?, d("f")?, d("g")?, c("h")?, d("hl")?, c("hl2")?, d("sl")?, d("fifo")?, d("missing")?);
        show("mkdir", sys(libc::SYS_mkdir, a.as_ptr(), 0o750));
        show("mkdirat", sys(libc::SYS_mkdirat, dfd_, b.as_ptr(), 0o700));
        let fd = libc::open(f.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
        show("rename", sys(libc::SYS_rename, f.as_ptr(), g.as_ptr()));
        show("renameat2", sys(libc::SYS_renameat2, dfd_, c("g")?.as_ptr(), dfd_, h.as_ptr(), 1));
        let habs = d("h")?;
        show("link", sys(libc::SYS_link, habs.as_ptr(), hl.as_ptr()));
        show("linkat", sys(libc::SYS_linkat, dfd_, h.as_ptr(), dfd_, hl2.as_ptr(), 0));
        show("symlink", sys(libc::SYS_symlink, c("../x")?.as_ptr(), sl.as_ptr()));
        show("symlinkat", sys(libc::SYS_symlinkat, c("target-text")?.as_ptr(), dfd_, c("sl2")?.as_ptr()));
        show("truncate", sys(libc::SYS_truncate, habs.as_ptr(), 7));
        show("ftruncate", sys(libc::SYS_ftruncate, i64::from(fd), 3));
        show("chmod", sys(libc::SYS_chmod, habs.as_ptr(), 0o640));
        show("fchmod", sys(libc::SYS_fchmod, i64::from(fd), 0o600));
        show("fchmodat", sys(libc::SYS_fchmodat, dfd_, h.as_ptr(), 0o644));
        show("chown", sys(libc::SYS_chown, habs.as_ptr(), 0, -1i64));
        show("fchown", sys(libc::SYS_fchown, i64::from(fd), -1i64, 0));
        show("fchownat", sys(libc::SYS_fchownat, dfd_, h.as_ptr(), 0, 0, 0));
        show("lchown", sys(libc::SYS_lchown, sl.as_ptr(), 0, 0));
        show("utimes", sys(libc::SYS_utimes, habs.as_ptr(), none));
        show("utimensat", sys(libc::SYS_utimensat, dfd_, h.as_ptr(), none, 0));
        show("futimens", sys(libc::SYS_utimensat, i64::from(fd), none, none, 0));
        let (name, value) = (c("user.warrant")?, b"v");
        show("setxattr", sys(libc::SYS_setxattr, habs.as_ptr(), name.as_ptr(), value.as_ptr(), 1, 0));
        show("fsetxattr", sys(libc::SYS_fsetxattr, i64::from(fd), name.as_ptr(), value.as_ptr(), 1, 0));
        show("removexattr", sys(libc::SYS_removexattr, habs.as_ptr(), name.as_ptr()));
        show("fremovexattr", sys(libc::SYS_fremovexattr, i64::from(fd), name.as_ptr()));
        show("mknod", sys(libc::SYS_mknod, fifo.as_ptr(), i64::from(libc::S_IFIFO | 0o600), 0));
        show("mknodat", sys(libc::SYS_mknodat, dfd_, c("fifo2")?.as_ptr(), i64::from(libc::S_IFIFO | 0o600), 0));
        show("unlink", sys(libc::SYS_unlink, hl.as_ptr()));
        show("unlinkat", sys(libc::SYS_unlinkat, dfd_, hl2.as_ptr(), 0));
        show("unlinkat-dir", sys(libc::SYS_unlinkat, dfd_, b.as_ptr(), libc::AT_REMOVEDIR));
        show("rmdir", sys(libc::SYS_rmdir, a.as_ptr()));
        show("unlink-missing", sys(libc::SYS_unlink, miss.as_ptr()));
        show("chdir", i64::from(libc::chdir(dirc.as_ptr())));
        show("unlink-cwd", sys(libc::SYS_unlink, c("sl2")?.as_ptr()));
        show("rename-cwd", sys(libc::SYS_rename, c("fifo")?.as_ptr(), c("./fifo3")?.as_ptr()));
        show("mount", sys(libc::SYS_mount, c("none")?.as_ptr(), d("b")?.as_ptr(), c("tmpfs")?.as_ptr(), 0, none));
        show("umount2", sys(libc::SYS_umount2, d("b")?.as_ptr(), 0));
        libc::close(fd);
        libc::close(dfd);
    }
    Ok(())
}

fn landlock_exec(args: &[String]) -> Result {
    use landlock::{Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus};
    use std::os::unix::process::CommandExt;
    let [rights, cmd, rest @ ..] = args else {
        return Err("usage: landlock RIGHTS CMD [ARG…]".into());
    };
    let bits: u64 = parse(Some(rights), "RIGHTS (a number)")?;
    let access = BitFlags::<AccessFs>::from_bits(bits).map_err(|e| format!("RIGHTS {rights}: {e}"))?;
    if access.is_empty() || !AccessFs::from_all(landlock::ABI::V5).contains(access) {
        return Err(format!("RIGHTS {rights}: not a set of filesystem rights this build knows"));
    }
    let root = PathFd::new("/").map_err(|e| format!("open /: {e}"))?;
    let status = Ruleset::default()
        .handle_access(access)
        .and_then(|r| r.create())
        .and_then(|r| r.add_rule(PathBeneath::new(root, access)))
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("Landlock: {e}"))?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(format!("Landlock enforced {:?} of RIGHTS {rights}, not all", status.ruleset));
    }
    Err(format!("exec {cmd}: {}", std::process::Command::new(cmd).args(rest).exec()))
}

fn stamp() -> Result {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?;
    println!("{}", now.as_nanos());
    Ok(())
}
