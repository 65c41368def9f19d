//! `warrant-collector`: serve (the default), or `verify` the audit log offline.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use warrant_audit::EventHub;
use warrant_collector::config::{Cmd, Config, Flags};
use warrant_collector::metrics::Metrics;
use warrant_collector::approvals::{ApprovalOptions, ApprovalState};
use warrant_collector::catalogue::Catalogue;
use warrant_collector::requests::Requests;
use warrant_collector::server::{ServeOptions, State, Tls, run_with};
use warrant_collector::store::{Store, StoreOptions, verify_dir};
use warrant_collector::writer::Writer;

/// How long connections may take to close after SIGTERM before they are cut.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

fn main() -> ExitCode {
    if let Some(code) = warrant_collector::config::packaging() {
        return code;
    }
    let flags = Flags::parse();
    let result = match flags.command {
        Some(Cmd::Verify) => verify(&flags),
        None => serve(&flags).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("warrant-collector: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Offline check of the whole log: exit 0 when intact, 1 with the problems (first
/// bad record first) when not.
fn verify(flags: &Flags) -> Result<ExitCode> {
    let dir = Config::data_dir_only(flags)?;
    let report = verify_dir(&dir, None, None).with_context(|| format!("cannot verify the log in {}", dir.display()))?;
    for s in &report.skipped {
        println!("skipped: {s}");
    }
    if report.problems.is_empty() {
        let keyed = match (report.keyed, report.unkeyed) {
            (false, _) => format!("; not keyed: no {} in {}, so the chain is checked by its hashes only", warrant_collector::store::KEY_FILE, dir.display()),
            (true, 0) => "; every record marked with the log's key".to_owned(),
            (true, n) => format!("; marked with the log's key after the first {n} (written before it had one)"),
        };
        let formats = match report.unversioned {
            0 => String::new(),
            n => format!("; the first {n} in the format before format versions"),
        };
        println!(
            "ok: {} records in {} segment(s), records {}..={}, head {}{keyed}{formats}",
            report.records - report.first.saturating_sub(1).min(report.records),
            report.segments,
            report.first.max(u64::from(report.records > 0)),
            report.records,
            report.head
        );
        return Ok(ExitCode::SUCCESS);
    }
    for p in &report.problems {
        println!("{p}");
    }
    eprintln!("warrant-collector: the audit log in {} is damaged: {} problem(s), the first above", dir.display(), report.problems.len());
    Ok(ExitCode::from(1))
}

fn serve(flags: &Flags) -> Result<()> {
    let config = Config::resolve(flags)?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&config.log_level).context("invalid --log-level")?)
        .with_writer(std::io::stderr)
        .init();
    let read = |p: &std::path::Path, what: &str| std::fs::read(p).with_context(|| format!("cannot read the {what} {}", p.display()));
    let tls = Tls { ca: read(&config.ca, "CA certificate (--ca)")?, cert: read(&config.cert, "certificate (--cert)")?, key: read(&config.key, "key (--key)")? };
    let (store, reader) = Store::open(&config.data_dir, StoreOptions { segment_bytes: config.segment_bytes })
        .with_context(|| format!("cannot open the log in {}", config.data_dir.display()))?;
    let key = match &config.grant_signing_key {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the grant signing key (grant_signing_key) {}", path.display()))?;
            Some(warrant_proto::token::SecretKey::from_text(&text).with_context(|| format!("cannot use the grant signing key {}", path.display()))?)
        }
        None => None,
    };
    let requests = Requests::open(&config.data_dir, config.request_timeout)?;
    let catalogue = Catalogue::open(&config.data_dir)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let metrics = Arc::new(Metrics::default());
    let hub = EventHub::new(config.watch_buffer);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let (writer, writer_thread) = Writer::start(store, hub.clone(), metrics.clone(), host)
        .context("failed to start the log writer threads")?;
    let result: Result<()> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        if let Some(addr) = config.metrics_listen {
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} for metrics"))?;
            tracing::info!(addr = %l.local_addr()?, "serving metrics");
            tokio::spawn(warrant_collector::metrics::serve(l, metrics.clone(), stopped(stop_rx.clone())));
        }
        if config.retention_max_age.is_some() || config.retention_max_bytes.is_some() {
            let (w, age, bytes, every) = (writer.clone(), config.retention_max_age, config.retention_max_bytes, config.retention_interval);
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = w.retention(age, bytes).await {
                        tracing::error!(error = %e, "retention failed");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(every) => {}
                        _ = rx.changed() => return,
                    }
                }
            });
        }
        let opts = ApprovalOptions { key, requests, catalogue, ai_agents: config.ai_agents.clone() };
        let approvals = ApprovalState::new(config.roles.clone(), writer.clone(), metrics.clone(), opts);
        // Expiry is checked on every call too; the sweep records timeouts nobody looked at.
        approvals.spawn_sweeper(config.request_timeout.min(std::time::Duration::from_secs(1)));
        let state = State::new(config.roles.clone(), writer.clone(), reader, hub, metrics, config.data_dir.clone(), ServeOptions { max_message_bytes: config.max_message_bytes, agent_ids: config.agent_ids.clone(), stopping: stop_rx.clone() });
        tracing::info!(addr = %listener.local_addr()?, data_dir = %config.data_dir.display(), boot = writer.boot_id(), "collector serving (mTLS)");
        // Print the bound address on stdout, so a parent that passed port 0 learns it.
        println!("listening on {}", listener.local_addr()?);
        let shutdown = async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        };
        // Streams end at the signal (acks of what is durable first); a connection
        // that still does not close is cut after SHUTDOWN_GRACE.
        let server = run_with(state, Some(approvals), &tls, listener, shutdown);
        let mut stopped = stop_rx.clone();
        let grace = async move {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            r = server => r.context("the gRPC server failed")?,
            () = grace => tracing::warn!("connections still open {}s after the signal; closing them", SHUTDOWN_GRACE.as_secs()),
        }
        Ok(())
    });
    drop(writer);
    // The writer thread ends once every handle is gone (the runtime's tasks hold
    // some): drop the runtime first.
    drop(runtime);
    let _ = writer_thread.join();
    result
}
