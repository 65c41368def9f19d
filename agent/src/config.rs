//! Agent configuration: flags, an optional TOML file with the same keys, defaults.
//!
//! A flag beats the file, the file beats the default. The file is strict: an unknown
//! key or a wrong type is an error naming the file, line and field, because a typo in
//! a security tool's config must not silently fall back to a default.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::Deserialize;
use warrant_common::maps::DEFAULT_RING_BYTES;

/// Default path of the optional config file.
pub const DEFAULT_CONFIG: &str = "/etc/warrant/agent.toml";

/// warrant-agent: tags grant sessions in the kernel, streams their activity, and
/// kills them when the grant ends.
#[derive(Debug, Parser, Default)]
#[command(name = "warrant-agent", version)]
// The doc comments below are --help text: `<state-dir>` is not HTML.
#[allow(rustdoc::invalid_html_tags)]
pub struct Flags {
    /// TOML config file with the same keys as these flags (default /etc/warrant/agent.toml, if present)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Unix socket of the local API
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Group allowed to use the socket (mode 0660); root only (0600) when unset
    #[arg(long)]
    pub socket_group: Option<String>,
    /// bpffs directory where programs and maps stay pinned
    #[arg(long)]
    pub pin_dir: Option<PathBuf>,
    /// Directory for the grant/session state and the audit log (audit.log)
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// cgroup v2 directory under which each session gets its own cgroup
    #[arg(long)]
    pub cgroup_root: Option<PathBuf>,
    /// Size of the kernel ring buffer in bytes (a power of two, at least 4096)
    #[arg(long)]
    pub ring_buffer_bytes: Option<u32>,
    /// Longest TTL a grant may have (e.g. 24h)
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_ttl: Option<Duration>,
    /// Log filter (error, warn, info, debug, trace, or a tracing EnvFilter)
    #[arg(long)]
    pub log_level: Option<String>,
    /// Collector to stream events to (https://host:port); single-host mode when unset
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,
    /// CA certificate (PEM) that signed the collector's certificate
    #[arg(long, value_name = "PATH")]
    pub collector_ca: Option<PathBuf>,
    /// This agent's client certificate (PEM) for the collector
    #[arg(long, value_name = "PATH")]
    pub collector_cert: Option<PathBuf>,
    /// The private key (PEM) of --collector-cert
    #[arg(long, value_name = "PATH")]
    pub collector_key: Option<PathBuf>,
    /// Directory of the disk spool of events not yet acknowledged by the collector (default <state-dir>/spool)
    #[arg(long, value_name = "PATH")]
    pub spool_dir: Option<PathBuf>,
    /// Most bytes the spool may hold; events beyond are recorded locally, counted and reported as lost to the collector
    #[arg(long, value_name = "BYTES")]
    pub spool_max_bytes: Option<u64>,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9464); off when unset
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// File of the collector's public keys (wpk1.…, one per line) that grant tokens must be signed with; token sessions are refused without it
    #[arg(long, value_name = "PATH")]
    pub grant_public_key: Option<PathBuf>,
    /// Second socket, open to every local user, that only takes signed grant tokens (for `warrant login`); off when unset
    #[arg(long, value_name = "PATH")]
    pub door_socket: Option<PathBuf>,
    /// Probe the kernel features warrant uses, print what works and what would be missing, and exit
    #[arg(long)]
    pub check: bool,
    /// Remove every pinned program and map (stops in-kernel enforcement) and exit
    #[arg(long)]
    pub uninstall: bool,
}

/// `warrant-agent --completions SHELL` and `--man-pages DIR` (section 8), for packaging.
pub fn packaging() -> Option<std::process::ExitCode> {
    use clap::CommandFactory as _;
    warrant_packaging::run(Flags::command, "warrant-agent", warrant_packaging::Section::Daemons)
}

/// The config file's keys (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct FileConfig {
    socket: Option<PathBuf>,
    socket_group: Option<String>,
    pin_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    cgroup_root: Option<PathBuf>,
    ring_buffer_bytes: Option<u32>,
    max_ttl: Option<String>,
    log_level: Option<String>,
    redaction: Option<crate::redact::RedactionSection>,
    collector: Option<String>,
    collector_ca: Option<PathBuf>,
    collector_cert: Option<PathBuf>,
    collector_key: Option<PathBuf>,
    spool_dir: Option<PathBuf>,
    spool_max_bytes: Option<u64>,
    metrics_listen: Option<SocketAddr>,
    grant_public_key: Option<PathBuf>,
    door_socket: Option<PathBuf>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub socket_group: Option<String>,
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
    /// `None`: `<cgroup2 mount>/warrant`, found at start.
    pub cgroup_root: Option<PathBuf>,
    pub ring_buffer_bytes: u32,
    pub max_ttl: Duration,
    pub log_level: String,
    /// Secret masking applied to every event (`[redaction]` in the file).
    pub redactor: crate::redact::Redactor,
    /// Where to stream events; `None` is single-host mode.
    pub uplink: Option<UplinkConfig>,
    /// `None`: `<state_dir>/spool`.
    pub spool_dir: Option<PathBuf>,
    pub spool_max_bytes: u64,
    pub metrics_listen: Option<SocketAddr>,
    /// The collector's public keys for grant tokens; `None` refuses every token.
    pub grant_public_key: Option<PathBuf>,
    /// The token-only socket (mode 0666), when set.
    pub door_socket: Option<PathBuf>,
}

/// The collector and the mTLS files to reach it.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    /// `https://host:port`.
    pub url: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Default spool limit: a day of a busy session's events fits many times over.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;

impl Config {
    /// Merges flags, the config file (explicit, or the default path if it exists)
    /// and defaults, and validates the result.
    pub fn resolve(flags: &Flags) -> Result<Self> {
        let (file, text, name) = match &flags.config {
            Some(path) => load_file(path)?,
            None if Path::new(DEFAULT_CONFIG).exists() => load_file(Path::new(DEFAULT_CONFIG))?,
            None => (FileConfig::default(), String::new(), String::new()),
        };
        let redactor = crate::redact::Redactor::new(file.redaction.as_ref(), &text)
            .with_context(|| format!("invalid config file {name}"))?;
        let max_ttl = match (&flags.max_ttl, &file.max_ttl) {
            (Some(d), _) => *d,
            (None, Some(s)) => humantime::parse_duration(s)
                .with_context(|| format!("invalid max_ttl {s:?} in the config file"))?,
            (None, None) => Duration::from_secs(24 * 3600),
        };
        let config = Self {
            socket: pick(&flags.socket, file.socket, "/run/warrant/agent.sock".into()),
            socket_group: flags.socket_group.clone().or(file.socket_group),
            pin_dir: pick(&flags.pin_dir, file.pin_dir, "/sys/fs/bpf/warrant".into()),
            state_dir: pick(&flags.state_dir, file.state_dir, "/var/lib/warrant".into()),
            cgroup_root: flags.cgroup_root.clone().or(file.cgroup_root),
            ring_buffer_bytes: pick(&flags.ring_buffer_bytes, file.ring_buffer_bytes, DEFAULT_RING_BYTES),
            max_ttl,
            log_level: pick(&flags.log_level, file.log_level, "info".into()),
            redactor,
            uplink: uplink(
                flags.collector.clone().or(file.collector),
                flags.collector_ca.clone().or(file.collector_ca),
                flags.collector_cert.clone().or(file.collector_cert),
                flags.collector_key.clone().or(file.collector_key),
            )?,
            spool_dir: flags.spool_dir.clone().or(file.spool_dir),
            spool_max_bytes: pick(&flags.spool_max_bytes, file.spool_max_bytes, DEFAULT_SPOOL_MAX_BYTES),
            metrics_listen: flags.metrics_listen.or(file.metrics_listen),
            grant_public_key: flags.grant_public_key.clone().or(file.grant_public_key),
            door_socket: flags.door_socket.clone().or(file.door_socket),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let r = self.ring_buffer_bytes;
        if r < 4096 || !r.is_power_of_two() {
            bail!("invalid ring_buffer_bytes {r}: must be a power of two, at least 4096");
        }
        if self.max_ttl < Duration::from_secs(1) {
            bail!("invalid max_ttl {}: must be at least 1s", humantime::format_duration(self.max_ttl));
        }
        if self.spool_max_bytes < 64 << 10 {
            bail!("invalid spool_max_bytes {}: must be at least 65536", self.spool_max_bytes);
        }
        Ok(())
    }

    /// The spool directory.
    pub fn spool_dir(&self) -> PathBuf {
        self.spool_dir.clone().unwrap_or_else(|| self.state_dir.join("spool"))
    }

    /// The audit log's path.
    pub fn audit_log(&self) -> PathBuf {
        self.state_dir.join("audit.log")
    }

    /// The audit log's key (see `warrant_audit::log_key`): beside the log, in
    /// the state directory no session can read.
    pub fn audit_key(&self) -> PathBuf {
        self.state_dir.join("audit.key")
    }

    /// The grant/session state file's path.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }
}

/// The uplink settings: all four together, or none (single-host mode).
fn uplink(
    url: Option<String>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<UplinkConfig>> {
    let Some(url) = url else {
        if ca.is_some() || cert.is_some() || key.is_some() {
            bail!("collector_ca, collector_cert and collector_key need collector (the collector's https:// URL)");
        }
        return Ok(None);
    };
    let rest = url.strip_prefix("https://").ok_or_else(|| {
        anyhow::anyhow!("invalid collector {url:?}: must be an https:// URL (the uplink always uses mTLS)")
    })?;
    if rest.trim_end_matches('/').is_empty() {
        bail!("invalid collector {url:?}: no host");
    }
    let need = |v: Option<PathBuf>, key: &str, what: &str| {
        v.ok_or_else(|| anyhow::anyhow!("collector is set but {key} is not: the uplink needs {what}"))
    };
    Ok(Some(UplinkConfig {
        url: url.trim_end_matches('/').to_owned(),
        ca: need(ca, "collector_ca", "the CA that signed the collector's certificate")?,
        cert: need(cert, "collector_cert", "this agent's client certificate")?,
        key: need(key, "collector_key", "this agent's private key")?,
    }))
}

fn pick<T: Clone>(flag: &Option<T>, file: Option<T>, default: T) -> T {
    flag.clone().or(file).unwrap_or(default)
}

/// The parsed file, its text (to name lines in later checks) and its name.
fn load_file(path: &Path) -> Result<(FileConfig, String, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read config file {}", path.display()))?;
    let file = parse_file(&text).with_context(|| format!("invalid config file {}", path.display()))?;
    Ok((file, text, path.display().to_string()))
}

/// Parses the TOML text; errors carry line, column and field from the toml crate.
fn parse_file(text: &str) -> Result<FileConfig> {
    toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_without_a_file() {
        let c = Config::resolve(&Flags { config: Some("/dev/null".into()), ..Flags::default() }).unwrap();
        assert_eq!(c.socket, PathBuf::from("/run/warrant/agent.sock"));
        assert_eq!(c.pin_dir, PathBuf::from("/sys/fs/bpf/warrant"));
        assert_eq!(c.ring_buffer_bytes, DEFAULT_RING_BYTES);
        assert_eq!(c.max_ttl, Duration::from_secs(86400));
    }

    #[test]
    fn flag_beats_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("agent.toml");
        std::fs::write(&f, "socket = \"/tmp/from-file.sock\"\nring_buffer_bytes = 65536\n").unwrap();
        let c = Config::resolve(&Flags {
            config: Some(f),
            socket: Some("/tmp/from-flag.sock".into()),
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/from-flag.sock"));
        assert_eq!(c.ring_buffer_bytes, 65536);
    }

    #[test]
    fn unknown_key_names_line_and_field() {
        let err = parse_file("socket = \"/x\"\nring_bufer_bytes = 4096\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("ring_bufer_bytes"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_line() {
        let err = parse_file("ring_buffer_bytes = \"big\"\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn uplink_needs_https_and_all_three_files() {
        let flags = |url: &str| Flags {
            config: Some("/dev/null".into()),
            collector: Some(url.into()),
            collector_ca: Some("/ca.pem".into()),
            collector_cert: Some("/a.pem".into()),
            collector_key: Some("/a.key".into()),
            ..Flags::default()
        };
        let c = Config::resolve(&flags("https://collector:7443/")).unwrap();
        let u = c.uplink.clone().unwrap();
        assert_eq!((u.url.as_str(), u.key.as_path()), ("https://collector:7443", Path::new("/a.key")));
        assert_eq!(c.spool_dir(), PathBuf::from("/var/lib/warrant/spool"));
        let err = Config::resolve(&flags("http://collector:7443")).unwrap_err().to_string();
        assert!(err.contains("https://"), "{err}");
        let err = Config::resolve(&Flags { collector_key: None, ..flags("https://c:1") }).unwrap_err().to_string();
        assert!(err.contains("collector_key"), "{err}");
        let err = Config::resolve(&Flags { collector: None, ..flags("https://c:1") }).unwrap_err().to_string();
        assert!(err.contains("need collector"), "{err}");
        assert!(Config::resolve(&Flags { config: Some("/dev/null".into()), ..Flags::default() }).unwrap().uplink.is_none());
    }

    #[test]
    fn spool_and_metrics_keys_from_the_file() {
        let c = parse_file("spool_max_bytes = 1048576\nmetrics_listen = \"127.0.0.1:9464\"\nspool_dir = \"/s\"\n").unwrap();
        assert_eq!(c.spool_max_bytes, Some(1 << 20));
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        let err = parse_file("metrics_listen = \"nowhere\"\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        let err = Config::resolve(&Flags {
            config: Some("/dev/null".into()),
            spool_max_bytes: Some(10),
            ..Flags::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("spool_max_bytes"), "{err}");
    }

    #[test]
    fn token_keys_from_the_file() {
        let c = parse_file("grant_public_key = \"/etc/warrant/collector.pub\"\ndoor_socket = \"/run/warrant/door.sock\"\n").unwrap();
        assert_eq!(c.grant_public_key, Some(PathBuf::from("/etc/warrant/collector.pub")));
        assert_eq!(c.door_socket, Some(PathBuf::from("/run/warrant/door.sock")));
        let d = Config::resolve(&Flags { config: Some("/dev/null".into()), ..Flags::default() }).unwrap();
        assert!(d.grant_public_key.is_none() && d.door_socket.is_none());
    }

    #[test]
    fn ring_size_must_be_a_power_of_two() {
        let err = Config::resolve(&Flags {
            config: Some("/dev/null".into()),
            ring_buffer_bytes: Some(5000),
            ..Flags::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("power of two"), "{err}");
    }
}
