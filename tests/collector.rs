//! [`TestCollector`]: one `warrant-collector` process per test, with its own data
//! dir, port, and a development PKI made with `rcgen` ([`Pki`]): a CA, the
//! collector's server certificate (SAN 127.0.0.1 and localhost), and client
//! certificates for agents and for people of every role.
//!
//! # Using it
//!
//! ```no_run
//! use warrant_tests::collector::{CollectorOptions, TestCollector};
//! let c = TestCollector::start(CollectorOptions::default());
//! let url = c.url();                       // "https://127.0.0.1:PORT"
//! let agent = c.identity("agent-1");       // role agent (any name "agent-*")
//! let (ca, cert, key) = (&agent.ca, &agent.cert, &agent.key); // PEM file paths
//! let person = c.identity("responder");    // roles: watcher, responder, admin; "nobody" has none
//! let more = c.pki().issue("agent-web-7"); // any other name (role from its prefix)
//! ```
//!
//! The roles table the collector starts with: `agent-*` → agent, `watcher` →
//! watcher, `responder` → responder, `admin` → admin; `nobody` has a valid
//! certificate and no role. [`TestCollector::restart`] stops it (SIGTERM) and
//! starts it again on the same port and data dir; [`TestCollector::kill_hard`]
//! SIGKILLs it (then [`TestCollector::start_again`]). [`client::connect`] gives a
//! tonic channel with mTLS as any identity, so a test can act as an agent or as a
//! person.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::{bins, free_port};

/// The collector binary under test.
pub fn binary() -> PathBuf {
    let p = bins::bin_dir().join("warrant-collector");
    assert!(p.is_file(), "{} is missing\n\nBuild it with `cargo xtask build` or set WARRANT_BIN_DIR.", p.display());
    p
}

/// PEM files of one identity, plus the CA every party trusts.
#[derive(Clone, Debug)]
pub struct ClientIdentity {
    /// The certificate's Common Name: the identity the collector sees.
    pub name: String,
    /// The CA certificate (PEM) that signed every certificate here.
    pub ca: PathBuf,
    /// This identity's certificate (PEM).
    pub cert: PathBuf,
    /// This identity's private key (PEM).
    pub key: PathBuf,
}

/// A development CA that issues certificates on demand, written under one directory.
pub struct Pki {
    /// Where the PEM files go.
    dir: PathBuf,
    /// The CA's certificate file.
    ca_path: PathBuf,
    /// Signs new certificates.
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA in `dir` (created).
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("create pki dir");
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, "warrant test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("self-sign CA");
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, cert.pem()).expect("write ca.pem");
        Pki { dir: dir.to_path_buf(), ca_path, issuer: Issuer::new(params, key) }
    }

    /// The CA certificate's path.
    pub fn ca(&self) -> &Path {
        &self.ca_path
    }

    /// A certificate and key for `name` (client and server use; SAN 127.0.0.1 and
    /// localhost so the same issue works for a server), written as
    /// `<name>.pem` / `<name>.key`. Issuing a name again overwrites its files.
    pub fn issue(&self, name: &str) -> ClientIdentity {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let cert_path = self.dir.join(format!("{name}.pem"));
        let key_path = self.dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        ClientIdentity { name: name.to_owned(), ca: self.ca_path.clone(), cert: cert_path, key: key_path }
    }
}

/// How a collector is started.
#[derive(Clone, Debug, Default)]
pub struct CollectorOptions {
    /// `--segment-bytes` (small values exercise rotation and retention).
    pub segment_bytes: Option<u64>,
    /// `--retention-max-bytes`.
    pub retention_max_bytes: Option<u64>,
    /// `--retention-max-age` (e.g. "1s").
    pub retention_max_age: Option<String>,
    /// `--retention-interval` (e.g. "1s").
    pub retention_interval: Option<String>,
    /// `--watch-buffer`.
    pub watch_buffer: Option<usize>,
    /// More `--role NAME=ROLE`.
    pub roles: Vec<String>,
    /// `--log-level`; info when `None`.
    pub log_level: Option<String>,
    /// More flags, appended as given (e.g. `--grant-signing-key K`).
    pub extra_args: Vec<String>,
}

/// The identities [`TestCollector::start`] issues up front.
pub const STANDARD_IDENTITIES: &[&str] = &["agent-1", "agent-2", "watcher", "responder", "admin", "nobody"];

/// A running collector owned by one test.
pub struct TestCollector {
    /// The process; `None` while stopped.
    child: Option<Child>,
    /// Holds the PKI, data dir and log; removed on drop.
    dir: tempfile::TempDir,
    /// The CA and the issued identities.
    pki: Arc<Pki>,
    /// gRPC port on 127.0.0.1.
    port: u16,
    /// Metrics port on 127.0.0.1.
    metrics_port: u16,
    /// How it was started.
    opts: CollectorOptions,
    /// The collector's stderr (appended across restarts).
    log_path: PathBuf,
}

impl TestCollector {
    /// Makes a PKI, starts the collector and waits until it accepts TCP connections.
    pub fn start(opts: CollectorOptions) -> TestCollector {
        let dir = tempfile::Builder::new().prefix("warrant-collector-").tempdir().expect("tempdir");
        let pki = Pki::new(&dir.path().join("pki"));
        pki.issue("collector");
        for name in STANDARD_IDENTITIES {
            pki.issue(name);
        }
        let log_path = dir.path().join("collector.log");
        let mut c = TestCollector {
            child: None,
            pki: Arc::new(pki),
            port: free_port(),
            metrics_port: free_port(),
            opts,
            log_path,
            dir,
        };
        c.start_again();
        c
    }

    /// A collector that signs grant tokens with `signer`'s key (so requests can be
    /// approved) and knows one AI agent, claude, with `roles` (`NAME=ROLE`) and a
    /// certificate issued to each of those people; `extra` flags appended.
    pub fn start_signing(signer: &crate::Signer, roles: &[&str], extra: &[&str]) -> TestCollector {
        let mut extra_args = vec!["--grant-signing-key".to_owned(), signer.secret_key().display().to_string()];
        extra_args.extend(["--ai-agent".to_owned(), "claude".to_owned()]);
        extra_args.extend(extra.iter().map(|s| (*s).to_owned()));
        let c = TestCollector::start(CollectorOptions {
            roles: roles.iter().map(|&r| r.to_owned()).collect(),
            extra_args,
            ..CollectorOptions::default()
        });
        for name in roles.iter().filter_map(|r| r.split_once('=')).map(|(name, _)| name) {
            c.pki().issue(name);
        }
        c
    }

    /// Starts the process again (same port, data dir and certificates) after
    /// [`kill_hard`](Self::kill_hard) or [`stop`](Self::stop).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the collector is already running");
        let pki = self.dir.path().join("pki");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("open log");
        let mut cmd = Command::new(binary());
        cmd.arg("--config")
            .arg("/dev/null")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--ca")
            .arg(pki.join("ca.pem"))
            .arg("--cert")
            .arg(pki.join("collector.pem"))
            .arg("--key")
            .arg(pki.join("collector.key"))
            .args(["--role", "agent-*=agent", "--role", "watcher=watcher", "--role", "responder=responder", "--role", "admin=admin"])
            .arg("--log-level")
            .arg(self.opts.log_level.as_deref().unwrap_or("info,h2=info,hyper=info,tonic=info"));
        for r in &self.opts.roles {
            cmd.arg("--role").arg(r);
        }
        if let Some(b) = self.opts.segment_bytes {
            cmd.arg("--segment-bytes").arg(b.to_string());
        }
        if let Some(b) = self.opts.retention_max_bytes {
            cmd.arg("--retention-max-bytes").arg(b.to_string());
        }
        if let Some(a) = &self.opts.retention_max_age {
            cmd.arg("--retention-max-age").arg(a);
        }
        if let Some(i) = &self.opts.retention_interval {
            cmd.arg("--retention-interval").arg(i);
        }
        if let Some(w) = self.opts.watch_buffer {
            cmd.arg("--watch-buffer").arg(w.to_string());
        }
        cmd.args(&self.opts.extra_args);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn warrant-collector");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("warrant-collector exited at start ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "warrant-collector did not listen within 30s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it with SIGTERM and waits (a clean shutdown).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on a pid we spawned and have not reaped.
            unsafe { libc::kill(i32::try_from(child.id()).expect("pid"), libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to `within` for it to exit by itself: its exit
    /// status, or `None` when it did not (it is then SIGKILLed).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on a pid we spawned and have not reaped.
        unsafe { libc::kill(i32::try_from(child.id()).expect("pid"), libc::SIGTERM) };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().ok().flatten() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs it: no shutdown, no flush, like a power cut for the process.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// [`stop`](Self::stop) then [`start_again`](Self::start_again).
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// The gRPC URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The gRPC port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The metrics URL (`http://127.0.0.1:PORT/metrics`).
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
    }

    /// The Prometheus text from the metrics endpoint.
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).expect("connect metrics");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read metrics");
        out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or(out)
    }

    /// One metric's value (the first sample named exactly `name`).
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
    }

    /// The data dir (`<dir>/data`): `log/*.log` segments and `index.redb`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The log segments, oldest first.
    pub fn segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.data_dir().join("log"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "log")).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The PKI, to issue more identities.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The PEM paths of a standard identity ([`STANDARD_IDENTITIES`] or
    /// "collector"), or of one issued with `pki().issue`.
    pub fn identity(&self, name: &str) -> ClientIdentity {
        let pki = self.dir.path().join("pki");
        let id = ClientIdentity { name: name.to_owned(), ca: pki.join("ca.pem"), cert: pki.join(format!("{name}.pem")), key: pki.join(format!("{name}.key")) };
        assert!(id.cert.is_file(), "no certificate for {name:?}: issue it with pki().issue");
        id
    }

    /// Runs `warrant-collector verify --data-dir D` (the collector may be stopped
    /// first, so the log does not move under it).
    pub fn verify_offline(&self) -> Output {
        Command::new(binary())
            .arg("--config")
            .arg("/dev/null")
            .arg("verify")
            .arg("--data-dir")
            .arg(self.data_dir())
            .output()
            .expect("run warrant-collector verify")
    }

    /// The collector's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The collector's own `control_action` records of refusals (`action:
    /// "refused"`, queried as the watcher) that `matching` accepts. Asks again every
    /// 100 ms until there is one or `within` has passed (the record is written as
    /// the refused stream ends); `Duration::ZERO` asks once.
    pub async fn refusals(
        &self,
        within: Duration,
        matching: impl Fn(&warrant_proto::ControlAction) -> bool,
    ) -> Vec<warrant_proto::ControlAction> {
        use warrant_proto::{EventFilter, QueryRequest, event::Event as Kind};
        let mut q = client::collector(&self.url(), &self.identity("watcher")).await;
        let deadline = Instant::now() + within;
        loop {
            let found: Vec<_> = q
                .query(QueryRequest {
                    filter: Some(EventFilter { agent_id: "collector".into(), kinds: vec!["control_action".into()], ..EventFilter::default() }),
                    limit: 1000,
                    ..QueryRequest::default()
                })
                .await
                .expect("query")
                .into_inner()
                .events
                .into_iter()
                .filter_map(|e| match e.event {
                    Some(Kind::ControlAction(a)) if a.action == "refused" && matching(&a) => Some(a),
                    _ => None,
                })
                .collect();
            if !found.is_empty() || Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestCollector {
    fn drop(&mut self) {
        self.kill_hard();
        if std::thread::panicking() {
            eprintln!("---- warrant-collector log ----\n{}", self.log());
        }
    }
}

/// A small gRPC client side for tests: tonic channels with mTLS as any identity.
pub mod client {
    use super::ClientIdentity;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
    use warrant_proto::collector_client::CollectorClient;
    use warrant_proto::ingest_client::IngestClient;

    /// A channel to `url` presenting `id`'s certificate.
    ///
    /// # Panics
    /// When the PEM files cannot be read.
    pub async fn connect(url: &str, id: &ClientIdentity) -> Result<Channel, tonic::transport::Error> {
        let read = |p: &std::path::Path| std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&id.ca)))
            .identity(Identity::from_pem(read(&id.cert), read(&id.key)))
            .domain_name("localhost");
        Endpoint::from_shared(url.to_owned())?
            .tls_config(tls)?
            .connect_timeout(std::time::Duration::from_secs(5))
            // As the agent's uplink does.
            .tcp_nodelay(true)
            .connect()
            .await
    }

    /// A `Collector` client (people's API) as `id`.
    pub async fn collector(url: &str, id: &ClientIdentity) -> CollectorClient<Channel> {
        CollectorClient::new(connect(url, id).await.expect("connect to the collector"))
    }

    /// An `Ingest` client (the agent's stream) as `id`.
    pub async fn ingest(url: &str, id: &ClientIdentity) -> IngestClient<Channel> {
        IngestClient::new(connect(url, id).await.expect("connect to the collector"))
    }

    /// An agent's side of `Ingest.Stream`, opened with a hello.
    pub struct AgentStream {
        /// What the agent sends.
        pub tx: tokio::sync::mpsc::Sender<AgentMessage>,
        /// What the collector sends.
        pub rx: tonic::Streaming<CollectorMessage>,
        /// The collector's answer to the hello.
        pub welcome: Welcome,
        /// Commands received while waiting for acks, in order.
        pub commands: Vec<Command>,
        /// Highest ack seen per boot.
        pub acked: std::collections::HashMap<String, u64>,
    }

    use warrant_proto::agent_message::Msg as AgentMsg;
    use warrant_proto::collector_message::Msg as CollectorMsg;
    use warrant_proto::{AgentHello, AgentMessage, CollectorMessage, Command, CommandResult, Event, EventBatch, Welcome};

    /// Opens the stream as `id`, sends `hello`, and waits for the welcome.
    ///
    /// # Errors
    /// The collector's refusal (or transport error) as a `Status`.
    pub async fn open_stream(url: &str, id: &ClientIdentity, hello: AgentHello) -> Result<AgentStream, tonic::Status> {
        let mut client = IngestClient::new(connect(url, id).await.map_err(|e| tonic::Status::unavailable(e.to_string()))?);
        let (tx, rx) = tokio::sync::mpsc::channel::<AgentMessage>(64);
        tx.send(AgentMessage { msg: Some(AgentMsg::Hello(hello)) }).await.expect("queue hello");
        let mut inbound = client.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), inbound.message())
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("no welcome within 10s"))??;
        match first {
            Some(CollectorMessage { msg: Some(CollectorMsg::Welcome(welcome)) }) => {
                Ok(AgentStream { tx, rx: inbound, welcome, commands: Vec::new(), acked: std::collections::HashMap::new() })
            }
            other => Err(tonic::Status::internal(format!("expected a welcome, got {other:?}"))),
        }
    }

    impl AgentStream {
        /// The welcome's high-water mark for `boot` (0 when absent).
        pub fn welcome_seq(&self, boot: &str) -> u64 {
            self.welcome.acked.iter().find(|b| b.boot_id == boot).map_or(0, |b| b.seq)
        }

        /// Sends one batch (does not wait for its ack).
        pub async fn send(&self, events: Vec<Event>) -> bool {
            self.tx.send(AgentMessage { msg: Some(AgentMsg::Batch(EventBatch { events })) }).await.is_ok()
        }

        /// Sends a command result.
        pub async fn send_result(&self, result: CommandResult) -> bool {
            self.tx.send(AgentMessage { msg: Some(AgentMsg::Result(result)) }).await.is_ok()
        }

        /// Reads until `boot` is acked up to at least `seq`; commands seen meanwhile
        /// are kept in `commands`. `Err` when the stream ends or 10 s pass.
        pub async fn wait_ack(&mut self, boot: &str, seq: u64) -> Result<(), String> {
            while self.acked.get(boot).copied().unwrap_or(0) < seq {
                self.next().await?;
            }
            Ok(())
        }

        /// Reads the next message (acks and commands are recorded).
        pub async fn next(&mut self) -> Result<CollectorMessage, String> {
            let m = tokio::time::timeout(std::time::Duration::from_secs(10), self.rx.message())
                .await
                .map_err(|_| "nothing from the collector within 10s".to_owned())?
                .map_err(|s| format!("stream failed: {s}"))?
                .ok_or_else(|| "stream ended".to_owned())?;
            match &m.msg {
                Some(CollectorMsg::Ack(a)) => {
                    let e = self.acked.entry(a.boot_id.clone()).or_insert(0);
                    *e = (*e).max(a.seq);
                }
                Some(CollectorMsg::Command(c)) => self.commands.push(c.clone()),
                _ => {}
            }
            Ok(m)
        }

        /// Reads until a command arrives (or 10 s pass) and returns it.
        pub async fn next_command(&mut self) -> Result<Command, String> {
            loop {
                if !self.commands.is_empty() {
                    return Ok(self.commands.remove(0));
                }
                self.next().await?;
            }
        }
    }

    /// A hello for `agent` on `host` with `boot` (no older pending boots).
    pub fn hello(agent: &str, host: &str, boot: &str) -> AgentHello {
        AgentHello {
            agent_id: agent.to_owned(),
            host: host.to_owned(),
            boot_id: boot.to_owned(),
            version: "test".to_owned(),
            pending_boots: vec![boot.to_owned()],
        }
    }

    /// An exec event with the envelope a real agent would set.
    pub fn exec_event(agent: &str, host: &str, boot: &str, seq: u64, session: &str, time_unix_ns: i64) -> Event {
        Event {
            seq,
            agent_id: agent.to_owned(),
            boot_id: boot.to_owned(),
            host: host.to_owned(),
            time_unix_ns,
            grant: format!("g-{session}"),
            session: session.to_owned(),
            subject: "alice".to_owned(),
            pid: 1000 + u32::try_from(seq % 1000).unwrap_or(0),
            comm: "bash".to_owned(),
            event: Some(warrant_proto::event::Event::Exec(warrant_proto::Exec {
                path: "/usr/bin/id".to_owned(),
                argv: vec!["id".to_owned(), format!("{seq}")],
                cwd: "/".to_owned(),
                truncated: false,
                script: String::new(),
            })),
            ..Event::default()
        }
    }

    /// A session_start event (teaches the collector which agent holds `session`).
    pub fn session_start(agent: &str, host: &str, boot: &str, seq: u64, session: &str, grant: &str) -> Event {
        Event {
            seq,
            agent_id: agent.to_owned(),
            boot_id: boot.to_owned(),
            host: host.to_owned(),
            time_unix_ns: crate::now_unix_ns().try_into().unwrap_or(0),
            grant: grant.to_owned(),
            session: session.to_owned(),
            subject: "alice".to_owned(),
            event: Some(warrant_proto::event::Event::SessionStart(warrant_proto::SessionStart {
                command: vec!["bash".to_owned()],
                root_pid: 4242,
                cgroup: format!("/sys/fs/cgroup/warrant/{session}"),
                how: "exec".to_owned(),
                caller_uid: 0,
                caller_pid: 1,
                sandbox: "none".to_owned(),
            })),
            ..Event::default()
        }
    }

    /// Field number of `Event.seq` etc. are the proto's; these build events by hand
    /// for a misbehaving agent (a kind from the future, no kind, bad UTF-8).
    pub mod raw {
        use prost::Message;
        use prost::encoding::{WireType, encode_key, encode_varint};
        use tonic::codegen::http::uri::PathAndQuery;
        use warrant_proto::{AgentHello, CollectorMessage, Event};

        use super::super::ClientIdentity;
        use super::connect;

        /// `warrant.v1.AgentMessage` as the wire has it, with the batch's events as
        /// bytes, so a test can send any bytes as an event.
        #[derive(Clone, PartialEq, Message)]
        pub struct RawAgentMessage {
            /// As `AgentMessage.msg`.
            #[prost(oneof = "RawMsg", tags = "1, 2")]
            pub msg: Option<RawMsg>,
        }

        /// As `AgentMessage.msg`.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum RawMsg {
            /// The hello.
            #[prost(message, tag = "1")]
            Hello(AgentHello),
            /// A batch of encoded events.
            #[prost(message, tag = "2")]
            Batch(RawBatch),
        }

        /// `warrant.v1.EventBatch` with encoded events.
        #[derive(Clone, PartialEq, Message)]
        pub struct RawBatch {
            /// Each an encoded `Event` (or anything else).
            #[prost(bytes = "vec", repeated, tag = "1")]
            pub events: Vec<Vec<u8>>,
        }

        /// An open raw stream: what to send, and what the collector answers.
        pub struct RawStream {
            /// Raw messages to the collector.
            pub tx: tokio::sync::mpsc::Sender<RawAgentMessage>,
            /// The collector's messages (welcome first).
            pub rx: tonic::Streaming<CollectorMessage>,
        }

        impl RawStream {
            /// Sends a batch of encoded events.
            pub async fn send(&self, events: Vec<Vec<u8>>) -> bool {
                self.tx.send(RawAgentMessage { msg: Some(RawMsg::Batch(RawBatch { events })) }).await.is_ok()
            }

            /// Reads until `boot` is acked to `seq` (`Ok`), or the stream ends
            /// (`Err` with its status; `Ok(None)` of the stream is an error too).
            pub async fn wait_ack(&mut self, boot: &str, seq: u64) -> Result<(), tonic::Status> {
                loop {
                    let m = tokio::time::timeout(std::time::Duration::from_secs(10), self.rx.message())
                        .await
                        .map_err(|_| tonic::Status::deadline_exceeded("nothing from the collector within 10s"))??;
                    match m.and_then(|m| m.msg) {
                        Some(warrant_proto::collector_message::Msg::Ack(a)) if a.boot_id == boot && a.seq >= seq => return Ok(()),
                        Some(_) => {}
                        None => return Err(tonic::Status::unknown("the stream ended with status OK")),
                    }
                }
            }

            /// Reads until the stream ends; its status (`Ok` when it ended OK).
            pub async fn end_status(&mut self) -> tonic::Status {
                loop {
                    match tokio::time::timeout(std::time::Duration::from_secs(10), self.rx.message()).await {
                        Err(_) => return tonic::Status::deadline_exceeded("the stream did not end within 10s"),
                        Ok(Err(s)) => return s,
                        Ok(Ok(None)) => return tonic::Status::ok("the stream ended with status OK"),
                        Ok(Ok(Some(_))) => {}
                    }
                }
            }
        }

        /// Opens `Ingest.Stream` as `id` with raw framing and sends `hello`.
        ///
        /// # Errors
        /// The collector's refusal as a `Status`.
        pub async fn open(url: &str, id: &ClientIdentity, hello: AgentHello) -> Result<RawStream, tonic::Status> {
            let channel = connect(url, id).await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            let (tx, rx) = tokio::sync::mpsc::channel::<RawAgentMessage>(64);
            tx.send(RawAgentMessage { msg: Some(RawMsg::Hello(hello)) }).await.expect("queue hello");
            let codec = tonic_prost::ProstCodec::<RawAgentMessage, CollectorMessage>::default();
            let rx = grpc
                .streaming(tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)), PathAndQuery::from_static("/warrant.v1.Ingest/Stream"), codec)
                .await?
                .into_inner();
            Ok(RawStream { tx, rx })
        }

        /// `ev` encoded, plus a field `number` (length-delimited, `payload`): an
        /// event of a kind from a newer warrant when `ev` has no kind.
        pub fn with_field(ev: &Event, number: u32, payload: &[u8]) -> Vec<u8> {
            let mut b = ev.encode_to_vec();
            encode_key(number, WireType::LengthDelimited, &mut b);
            encode_varint(payload.len() as u64, &mut b);
            b.extend_from_slice(payload);
            b
        }
    }
}
