//! warrant-agent: the host daemon.
//!
//! # Layout
//! - [`config`]: flags, TOML file, defaults.
//! - [`btf`], [`loader`]: kernel offsets from BTF; loading, pinning, attaching;
//!   [`raw_prog`], [`bpf_sys`]: the unix hooks aya cannot load, and the raw `bpf(2)` calls.
//! - [`registry`], [`ids`], [`clock`]: grants and sessions, their ids and clocks.
//! - [`host`]: every action on grants and sessions, in the order that keeps the
//!   kernel fail-closed; [`kill`], [`cgroup`], [`procfs`]: the tree kill.
//! - [`events`]: the event path in stages: kernel records read and decoded, enriched, recorded (audit log, spool, watchers), reacted to;
//!   [`file_rules`]: file and exec events decided against the policy; [`report`]:
//!   session reports.
//! - [`policy_maps`]: a grant's policy compiled into the kernel's rule maps.
//! - [`sockdiag`]: destroying a session's TCP sockets (`drop`).
//! - [`spool`], [`uplink`]: with a collector, every event also goes to a disk spool
//!   and from there to the collector; commands come back the same way.
//! - [`metrics`]: Prometheus text over HTTP (`--metrics-listen`).
//! - [`api`]: the local gRPC API; [`check`]: `--check`.
//! - [`door`], [`token_ledger`]: sessions let in by signed grant tokens, checked
//!   offline, each token once.
//!
//! On SIGTERM the agent stops serving and flushes its log, but leaves programs and
//! maps pinned: tagging and the expiry kill keep working in the kernel, and the
//! next agent re-adopts them.

mod api;
mod bpf_sys;
mod btf;
mod cgroup;
mod check;
mod clock;
mod config;
mod door;
mod events;
mod file_rules;
mod host;
mod ids;
mod kill;
mod landlock_audit;
mod launch;
mod loader;
mod losses;
mod metrics;
mod outbox;
mod policy_maps;
mod peer;
mod procfs;
mod raw_prog;
mod redact;
mod registry;
mod report;
mod sockdiag;
mod spool;
mod uplink;
mod token_ledger;

use std::{
    fs,
    os::unix::fs::DirBuilderExt,
    path::Path,
    process::ExitCode,
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};
use warrant_audit::{AuditLog, EventHub, LogKey};

use crate::{
    config::{Config, Flags},
    host::Host,
    loader::Kernel,
    events::{EventSink, Envelope, Stats},
    registry::Registry,
};

/// Events a watcher may fall behind by before it is told what it missed.
const WATCH_BUFFER: usize = 65_536;

fn main() -> ExitCode {
    if let Some(code) = config::packaging() {
        return code;
    }
    let flags = Flags::parse();
    match run(&flags) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("warrant-agent: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(flags: &Flags) -> Result<ExitCode> {
    let config = Config::resolve(flags)?;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("invalid --log-level {:?}", config.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

    if flags.check {
        let ok = check::print(&check::probe(true));
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    if !rustix::process::geteuid().is_root() {
        bail!("warrant-agent must run as root: it loads BPF programs and manages cgroups");
    }
    if flags.uninstall {
        loader::uninstall(&config.pin_dir)?;
        println!("removed every pin under {}: in-kernel enforcement is off", config.pin_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    // Not dumpable: no core file of the agent (and what it holds) is ever written.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        warn!("cannot make the agent non-dumpable: {}", std::io::Error::last_os_error());
    }
    // Measured on this kernel: a root process without CAP_SYS_PTRACE (a session)
    // still reads a non-dumpable root process's /proc/PID/environ. So the agent
    // shows nobody its environment: /proc reads the range the kernel keeps for it,
    // and that range is made empty (the memory itself, which the C library's
    // getenv reads, is untouched).
    if let Err(e) = procfs::blank_own_environ() {
        warn!("cannot hide the agent's environment from /proc/{}/environ: {e}", std::process::id());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let result = runtime.block_on(daemon(config));
    // Connection tasks of lingering watchers must not hold the exit up.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The agent's own socket names, as configured and as they resolve (a session
/// must not reach them by either spelling); refused to sessions in the kernel.
fn own_sockets(config: &Config) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let fronts = std::iter::once(&config.socket).chain(config.door_socket.as_ref());
    for path in fronts.flat_map(|p| [p.clone(), launch::path_for(p)]) {
        let path = &path;
        out.push(path.as_os_str().as_encoded_bytes().to_vec());
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name())
            && let Ok(real) = fs::canonicalize(dir)
        {
            out.push(real.join(name).as_os_str().as_encoded_bytes().to_vec());
        }
    }
    out.sort();
    out.dedup();
    out
}

async fn daemon(config: Config) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.state_dir)
        .with_context(|| format!("failed to create state directory {}", config.state_dir.display()))?;

    let offsets = btf::kernel_offsets(Path::new(btf::VMLINUX_BTF))?;
    let cgroup_mount = cgroup::find_cgroup2_mount()?;
    let (mut kernel, report) = Kernel::load(&config.pin_dir, &offsets, config.ring_buffer_bytes, &cgroup_mount)?;
    let ring = kernel.take_ring()?;
    let ring_read = kernel.take_ring_read()?;
    kernel.set_unix_self_protection(&policy_maps::unix_self_protection(&own_sockets(&config)))?;
    info!(
        pin_dir = %config.pin_dir.display(),
        adopted = report.adopted_maps,
        "eBPF programs loaded and pinned{}",
        if report.adopted_maps { "; re-adopted the maps a previous agent left" } else { "" }
    );

    let cgroup_root = config.cgroup_root.clone().unwrap_or_else(|| cgroup_mount.join("warrant"));
    fs::create_dir_all(&cgroup_root)
        .with_context(|| format!("failed to create the session cgroup root {}", cgroup_root.display()))?;
    // Sessions are forked into their cgroups (clone3 CLONE_INTO_CGROUP) and killed
    // through cgroup.kill: both only exist on cgroup v2.
    if !cgroup::is_cgroup2(&cgroup_root) {
        anyhow::bail!(
            "--cgroup-root {} is not in a cgroup v2 hierarchy (the cgroup2 mount here is {}); give a directory under it",
            cgroup_root.display(),
            cgroup_mount.display()
        );
    }

    let registry = Registry::load(&config.state_file())?;
    let log = AuditLog::open(&config.audit_log())
        .with_context(|| format!("failed to open the audit log {}", config.audit_log().display()))?;
    let key = LogKey::load_or_create_for(&config.audit_key(), || log.records() + 1)
        .context("failed to load the audit log's key")?;
    let log = log.keyed(key);
    let hub = EventHub::new(WATCH_BUFFER);
    let (sink, rx) = EventSink::new();
    let envelope = Envelope {
        agent_id: agent_id(&config.state_dir)?,
        boot_id: format!("{:016x}", rand::random::<u64>()),
        host: rustix::system::uname().nodename().to_string_lossy().into_owned(),
    };
    let stats = Arc::new(Stats::default());
    let subjects = Arc::new(RwLock::new(Default::default()));
    let ledgers = report::SharedLedgers::default();
    let spool = match &config.uplink {
        Some(_) => {
            let dir = config.spool_dir();
            let spool = spool::Spool::open(&dir, config.spool_max_bytes, &envelope.boot_id)
                .with_context(|| format!("failed to open the spool {}", dir.display()))?;
            let depth = spool.depth();
            info!(spool = %dir.display(), waiting = depth.events, bytes = depth.bytes, "spool opened");
            Some(Arc::new(spool))
        }
        None => None,
    };
    let writer = events::spawn_writer(
        rx,
        log,
        hub.clone(),
        envelope.clone(),
        Arc::clone(&subjects),
        Arc::clone(&stats),
        Arc::clone(&ledgers),
        config.redactor.clone(),
        spool.clone(),
    )?;
    let ring_subjects = Arc::clone(&subjects);
    let denial_subjects = Arc::clone(&subjects);
    let stopper = sink.clone();

    let host = Arc::new(Host::new(
        config.clone(),
        cgroup_mount,
        cgroup_root,
        registry,
        kernel,
        sink.clone(),
        hub,
        subjects,
        Arc::clone(&stats),
        envelope,
    )?);
    file_rules::protect(&host.own_paths());
    host.reconcile()?;
    let features = check::probe(false);

    let mut tasks = Vec::new();
    let (react_tx, react_rx) = tokio::sync::mpsc::unbounded_channel();
    let refusals = Arc::new(events::refusals::Refusals::default());
    tasks.push(tokio::spawn({
        let (sink, stats, subjects, react_tx, refusals) =
            (sink.clone(), Arc::clone(&stats), ring_subjects, react_tx.clone(), Arc::clone(&refusals));
        async move {
            if let Err(e) = events::read_ring(ring, ring_read, sink, stats, subjects, react_tx, refusals).await {
                warn!("ring buffer reader stopped: {e:#}");
            }
        }
    }));
    // Landlock's refusals, with the paths the kernel resolved, for kill rules on files.
    let logging = events::denials::start(Arc::clone(&host), denial_subjects, sink.clone(), react_tx.clone(), refusals);
    landlock_audit::set_logging(logging);
    tasks.push(tokio::spawn(events::react_loop(Arc::clone(&host), react_rx)));
    tasks.push(tokio::spawn({
        let (host, sink, stats) = (Arc::clone(&host), sink.clone(), Arc::clone(&stats));
        async move {
            let reported = host.lost_reported();
            let h2 = Arc::clone(&host);
            events::poll_lost(move || host.kernel_lost(), reported, move |n| h2.remember_lost(n), sink, stats).await;
        }
    }));
    tasks.push(tokio::spawn(losses::poll(Arc::clone(&host), sink.clone())));
    tasks.push(tokio::spawn(expire_loop(Arc::clone(&host))));
    tasks.push(tokio::spawn(reap_loop(Arc::clone(&host))));
    if let (Some(up), Some(spool)) = (&config.uplink, &spool) {
        let uplink = uplink::Uplink::new(up, Arc::clone(spool), Arc::clone(&host))?;
        info!(collector = %up.url, "streaming events to the collector");
        tasks.push(tokio::spawn(uplink.run()));
    }
    if let Some(addr) = config.metrics_listen {
        let sources = metrics::Sources { host: Arc::clone(&host), spool: spool.clone() };
        tasks.push(metrics::serve(addr, sources).await?);
    }
    drop(sink);

    let door = door::Door::new(Arc::clone(&host), config.grant_public_key.clone(), &config.state_dir)?;
    if let Some(path) = &config.door_socket {
        tasks.push(door::serve(
            door::bind(path).await?,
            &door,
            peer::Gate::new(Arc::clone(&host), "door"),
        ));
        let launcher = launch::Launcher::new(Arc::clone(&host), door.clone(), launch::Front::Door);
        tasks.push(launcher.serve(door::bind(&launch::path_for(path)).await?));
        info!(door = %path.display(), "token door open to local users");
    }
    let launcher = launch::Launcher::new(Arc::clone(&host), door.clone(), launch::Front::Agent);
    let launch_socket = launch::path_for(&config.socket);
    tasks.push(launcher.serve(api::bind(&launch_socket, config.socket_group.as_deref()).await?));
    let listener = api::bind(&config.socket, config.socket_group.as_deref()).await?;
    info!(socket = %config.socket.display(), audit_log = %config.audit_log().display(), "warrant-agent ready");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(api::Api::server(
                Arc::clone(&host),
                features,
                ledgers,
                config.uplink.as_ref().zip(spool).map(|(u, s)| (u.url.clone(), s)),
                peer::Gate::new(Arc::clone(&host), "agent"),
            ))
            .add_service(door.server(peer::Gate::new(Arc::clone(&host), "agent")))
            .serve_with_incoming_shutdown(peer::incoming(listener), async {
                let _ = stop_rx.await;
            }),
    );
    wait_for_signal().await?;
    info!("stopping: programs and maps stay pinned, so enforcement continues in the kernel");
    let _ = stop_tx.send(());
    // Live watch streams never finish on their own; give requests a moment, then cut.
    let mut server = server;
    if tokio::time::timeout(Duration::from_secs(2), &mut server).await.is_err() {
        server.abort();
        let _ = server.await;
    }
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    for path in std::iter::once(&config.socket).chain(config.door_socket.as_ref()) {
        let _ = fs::remove_file(path);
        let _ = fs::remove_file(launch::path_for(path));
    }
    drop(host);
    stopper.stop().await;
    tokio::task::spawn_blocking(move || writer.join()).await.ok();
    info!("stopped");
    Ok(())
}

/// Expires grants on time: sleeps until just before the next expiry (or a change),
/// notes who is in the sessions about to end, then acts at the expiry itself.
async fn expire_loop(host: Arc<Host>) {
    /// How long before an expiry the members are noted.
    const LEAD: Duration = Duration::from_millis(20);
    let mut snapshots = std::collections::HashMap::new();
    loop {
        host.expire_due(&snapshots).await;
        snapshots.clear();
        // tokio's clock does not count suspend; re-check at least every minute.
        let wait = host.next_expiry_in().unwrap_or(Duration::from_secs(60)).min(Duration::from_secs(60));
        if wait > LEAD {
            tokio::select! {
                () = tokio::time::sleep(wait - LEAD) => {}
                () = host.expiry_changed.notified() => {}
            }
            continue;
        }
        snapshots = host.snapshot_due(wait + LEAD);
        tokio::time::sleep(wait + Duration::from_millis(1)).await;
    }
}

/// Ends sessions whose processes have all exited.
async fn reap_loop(host: Arc<Host>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        host.reap().await;
    }
}

async fn wait_for_signal() -> Result<()> {
    let mut term = signal(SignalKind::terminate()).context("failed to handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("failed to handle SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// This host's agent id: random, created once, kept in the state directory.
fn agent_id(state_dir: &Path) -> Result<String> {
    let path = state_dir.join("agent_id");
    match fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = format!("agent-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
            fs::write(&path, &id).with_context(|| format!("failed to write {}", path.display()))?;
            Ok(id)
        }
    }
}
