//! Collector configuration: flags, an optional TOML file with the same keys, and
//! defaults. A flag beats the file, the file beats the default. The file is strict:
//! an unknown key, a wrong type or an unknown role is an error naming the file, the
//! line and the field, because a typo in a security tool's config must not fall
//! back to a default silently.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde::Deserialize;

use crate::auth::{Role, Roles};

/// warrant-collector: receives agents' event streams over mTLS, keeps the
/// hash-chained audit log, serves live and replayed watches, and routes kills to
/// the agent that holds the session.
#[derive(Debug, Parser, Default)]
#[command(name = "warrant-collector", version)]
// The doc comments below are --help text: `[roles]` is a TOML table there, not a link.
#[allow(rustdoc::broken_intra_doc_links)]
pub struct Flags {
    /// TOML config file with the same keys as these flags, plus a [roles] table
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Address to serve gRPC (mTLS) on
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Directory for the audit log segments and the index
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// PEM file of the CA that signs client certificates (agents and people)
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// PEM file of the collector's own certificate
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// PEM file of the collector's private key
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Give a certificate name a role: NAME=ROLE (agent, watcher, responder, requester, approver, admin); NAME may end in * to match a prefix; repeatable, added to the file's [roles]
    #[arg(long = "role", value_name = "NAME=ROLE")]
    pub roles: Vec<String>,
    /// Register the one agent id a certificate may speak as: CERT_NAME=AGENT_ID; repeatable, added to the file's [agent_ids] (unregistered ids belong to the first certificate that connects as them)
    #[arg(long = "agent-id", value_name = "CERT_NAME=AGENT_ID")]
    pub agent_ids: Vec<String>,
    /// Address to serve Prometheus metrics on (HTTP, GET /metrics); off when unset
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Drop whole log segments whose newest event is older than this (e.g. 90d)
    #[arg(long, value_parser = humantime_duration)]
    pub retention_max_age: Option<Duration>,
    /// Drop the oldest log segments while the log is bigger than this many bytes
    #[arg(long)]
    pub retention_max_bytes: Option<u64>,
    /// How often retention runs (default 60s)
    #[arg(long, value_parser = humantime_duration)]
    pub retention_interval: Option<Duration>,
    /// Start a new log segment once the current one holds this many bytes
    #[arg(long)]
    pub segment_bytes: Option<u64>,
    /// Events buffered per watcher before a slow one is skipped ahead (and told)
    #[arg(long)]
    pub watch_buffer: Option<usize>,
    /// Largest message an agent may send (one hello or one batch), in bytes (default 4 MiB); a bigger one ends its stream with INVALID_ARGUMENT
    #[arg(long)]
    pub max_message_bytes: Option<usize>,
    /// Log filter (error, warn, info, debug, trace, or a tracing EnvFilter)
    #[arg(long)]
    pub log_level: Option<String>,
    /// The ed25519 key (a `wsk1.…` file from `warrant token keygen`) that signs approved grants; without it requests are refused
    #[arg(long, value_name = "FILE")]
    pub grant_signing_key: Option<PathBuf>,
    /// How long a request waits for approval before it expires (default 1h)
    #[arg(long, value_parser = humantime_duration)]
    pub request_timeout: Option<Duration>,
    /// An AI-agent identity grant requests may be made for (`warrant request --for-agent NAME`); repeatable, added to the file's ai_agents list
    #[arg(long = "ai-agent", value_name = "NAME")]
    pub ai_agents: Vec<String>,
    /// What to do; serve when absent
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Check the audit log's hash chain offline (the collector must be stopped, or use the VerifyLog rpc); exits 1 and names the first bad record when anything was edited, removed or reordered
    Verify,
}

/// `warrant-collector --completions SHELL` and `--man-pages DIR` (section 8), for packaging.
pub fn packaging() -> Option<std::process::ExitCode> {
    use clap::CommandFactory as _;
    warrant_packaging::run(Flags::command, "warrant-collector", warrant_packaging::Section::Daemons)
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

/// Parses durations like `90d`, `12h`, `30m`, `45s` (one number and one unit).
///
/// # Errors
/// A message saying what is accepted.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}: expected a number and a unit, like 90d, 12h, 30m or 45s"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("invalid duration {s:?}: the unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

/// The config file's keys (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    metrics_listen: Option<SocketAddr>,
    retention_max_age: Option<String>,
    retention_max_bytes: Option<u64>,
    retention_interval: Option<String>,
    segment_bytes: Option<u64>,
    watch_buffer: Option<usize>,
    max_message_bytes: Option<usize>,
    log_level: Option<String>,
    grant_signing_key: Option<PathBuf>,
    request_timeout: Option<String>,
    /// Names of the AI agents requests may be made for; each keeps its place in
    /// the file, so a bad one is reported with its line.
    #[serde(default)]
    ai_agents: Vec<toml::Spanned<String>>,
    #[serde(default)]
    roles: BTreeMap<String, String>,
    #[serde(default)]
    agent_ids: BTreeMap<String, String>,
}

/// The default largest agent message (one batch): 4 MiB, gRPC's usual limit.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// gRPC address.
    pub listen: SocketAddr,
    /// Log segments and index.
    pub data_dir: PathBuf,
    /// CA for client certificates.
    pub ca: PathBuf,
    /// The collector's certificate.
    pub cert: PathBuf,
    /// The collector's key.
    pub key: PathBuf,
    /// Names → roles.
    pub roles: Roles,
    /// Metrics address, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// The AI agents grant requests may be made for (`--for-agent NAME`).
    pub ai_agents: BTreeSet<String>,
    /// Retention by age.
    pub retention_max_age: Option<Duration>,
    /// Retention by size.
    pub retention_max_bytes: Option<u64>,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Segment size.
    pub segment_bytes: u64,
    /// Per-watcher buffer (events).
    pub watch_buffer: usize,
    /// Largest message an agent may send (bytes): the Ingest decoder's limit.
    pub max_message_bytes: usize,
    /// Certificate name → the one agent id it may speak as.
    pub agent_ids: BTreeMap<String, String>,
    /// Log filter.
    pub log_level: String,
    /// The grant signing key file, if approvals may issue tokens.
    pub grant_signing_key: Option<PathBuf>,
    /// How long a pending request lives.
    pub request_timeout: Duration,
}

/// Default path of the optional config file.
pub const DEFAULT_CONFIG: &str = "/etc/warrant/collector.toml";

impl Config {
    /// Merges flags, the config file and defaults, and validates the result.
    ///
    /// # Errors
    /// A bad file (with file, line and field), a bad role, or a missing TLS file
    /// setting.
    pub fn resolve(flags: &Flags) -> Result<Config> {
        let (file, file_name) = match &flags.config {
            Some(path) => (load_file(path)?, path.display().to_string()),
            None if Path::new(DEFAULT_CONFIG).exists() => (load_file(Path::new(DEFAULT_CONFIG))?, DEFAULT_CONFIG.to_owned()),
            None => (FileConfig::default(), "(no config file)".to_owned()),
        };
        let retention_max_age = match (&flags.retention_max_age, &file.retention_max_age) {
            (Some(d), _) => Some(*d),
            (None, Some(s)) => Some(parse_duration(s).map_err(anyhow::Error::msg).with_context(|| format!("{file_name}: retention_max_age"))?),
            (None, None) => None,
        };
        let retention_interval = match (&flags.retention_interval, &file.retention_interval) {
            (Some(d), _) => *d,
            (None, Some(s)) => parse_duration(s).map_err(anyhow::Error::msg).with_context(|| format!("{file_name}: retention_interval"))?,
            (None, None) => Duration::from_secs(60),
        };
        let request_timeout = match (&flags.request_timeout, &file.request_timeout) {
            (Some(d), _) => *d,
            (None, Some(s)) => parse_duration(s).map_err(anyhow::Error::msg).with_context(|| format!("{file_name}: request_timeout"))?,
            (None, None) => Duration::from_secs(3600),
        };
        let mut entries = Vec::new();
        for (name, role) in &file.roles {
            let role = Role::parse(role).map_err(anyhow::Error::msg).with_context(|| format!("{file_name}: roles.{name:?}"))?;
            entries.push((name.clone(), role));
        }
        for spec in &flags.roles {
            let (name, role) = spec.split_once('=').with_context(|| format!("invalid --role {spec:?}: expected NAME=ROLE"))?;
            let role = Role::parse(role).map_err(anyhow::Error::msg).with_context(|| format!("invalid --role {spec:?}"))?;
            entries.push((name.to_owned(), role));
        }
        let mut agent_ids = file.agent_ids.clone();
        for spec in &flags.agent_ids {
            let (cert, agent) = spec.split_once('=').with_context(|| format!("invalid --agent-id {spec:?}: expected CERT_NAME=AGENT_ID"))?;
            agent_ids.insert(cert.to_owned(), agent.to_owned());
        }
        let mut claimed = BTreeMap::new();
        for (cert, agent) in &agent_ids {
            if cert.is_empty() || agent.is_empty() {
                bail!("invalid agent_ids entry {cert:?} = {agent:?}: both the certificate name and the agent id are needed");
            }
            if let Some(other) = claimed.insert(agent.clone(), cert.clone()) {
                bail!("invalid agent_ids: agent id {agent:?} is given to both {other:?} and {cert:?}");
            }
        }
        let mut ai_agents: BTreeSet<String> = file.ai_agents.iter().map(|s| s.get_ref().clone()).collect();
        for name in &flags.ai_agents {
            check_ai_agent(name).map_err(anyhow::Error::msg).with_context(|| format!("invalid --ai-agent {name:?}"))?;
            ai_agents.insert(name.clone());
        }
        let need = |flag: &Option<PathBuf>, file: Option<PathBuf>, key: &str| -> Result<PathBuf> {
            flag.clone().or(file).with_context(|| format!("missing {key}: set --{key} or `{key} = \"…\"` in the config file"))
        };
        let config = Config {
            listen: flags.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 7443))),
            data_dir: flags.data_dir.clone().or(file.data_dir).unwrap_or_else(|| "/var/lib/warrant-collector".into()),
            ca: need(&flags.ca, file.ca, "ca")?,
            cert: need(&flags.cert, file.cert, "cert")?,
            key: need(&flags.key, file.key, "key")?,
            roles: Roles::new(entries),
            ai_agents,
            metrics_listen: flags.metrics_listen.or(file.metrics_listen),
            retention_max_age,
            retention_max_bytes: flags.retention_max_bytes.or(file.retention_max_bytes),
            retention_interval,
            segment_bytes: flags.segment_bytes.or(file.segment_bytes).unwrap_or(64 << 20),
            watch_buffer: flags.watch_buffer.or(file.watch_buffer).unwrap_or(16 * 1024),
            agent_ids: agent_ids.clone(),
            max_message_bytes: flags.max_message_bytes.or(file.max_message_bytes).unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
            log_level: flags.log_level.clone().or(file.log_level).unwrap_or_else(|| "info".into()),
            grant_signing_key: flags.grant_signing_key.clone().or(file.grant_signing_key),
            request_timeout,
        };
        if config.request_timeout.is_zero() {
            bail!("invalid request_timeout 0s: must be at least 1s");
        }
        if config.segment_bytes < 4096 {
            bail!("invalid segment_bytes {}: must be at least 4096", config.segment_bytes);
        }
        if config.retention_interval.is_zero() {
            bail!("invalid retention_interval 0s: must be at least 1s");
        }
        if config.max_message_bytes < 64 * 1024 {
            bail!("invalid max_message_bytes {}: must be at least 65536 (64 KiB)", config.max_message_bytes);
        }
        if config.watch_buffer == 0 {
            bail!("invalid watch_buffer 0: must be at least 1");
        }
        Ok(config)
    }

    /// Only the data dir (for `verify`, which needs no TLS files).
    ///
    /// # Errors
    /// A bad config file.
    pub fn data_dir_only(flags: &Flags) -> Result<PathBuf> {
        let file = match &flags.config {
            Some(path) => load_file(path)?,
            None if Path::new(DEFAULT_CONFIG).exists() => load_file(Path::new(DEFAULT_CONFIG))?,
            None => FileConfig::default(),
        };
        Ok(flags.data_dir.clone().or(file.data_dir).unwrap_or_else(|| "/var/lib/warrant-collector".into()))
    }
}

fn load_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("failed to read config file {}", path.display()))?;
    parse_file(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Parses the TOML text; errors carry line, column and field from the toml crate
/// (or, for a bad `ai_agents` entry, the line and the entry).
fn parse_file(text: &str) -> Result<FileConfig> {
    let file: FileConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    let mut seen = BTreeSet::new();
    for (i, name) in file.ai_agents.iter().enumerate() {
        let line = text.get(..name.span().start).map_or(0, |t| t.matches('\n').count()) + 1;
        check_ai_agent(name.get_ref()).map_err(|e| anyhow::anyhow!("line {line}: ai_agents[{i}]: {e}"))?;
        if !seen.insert(name.get_ref()) {
            bail!("line {line}: ai_agents[{i}]: {:?} is listed twice", name.get_ref());
        }
    }
    Ok(file)
}

/// An AI agent's name must make a valid grant subject (`agent:NAME`).
fn check_ai_agent(name: &str) -> Result<(), String> {
    if warrant_proto::token::subject_parts(&format!("agent:{name}")).is_some() {
        return Ok(());
    }
    Err(format!("invalid AI-agent name {name:?}: names are 1-64 of a-z, A-Z, 0-9, '.', '_', '-' and '@'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags_with(file: &Path) -> Flags {
        Flags { config: Some(file.to_path_buf()), ..Flags::default() }
    }

    #[test]
    fn file_roles_and_flags_merge() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:9000\"\nca = \"/ca.pem\"\ncert = \"/c.pem\"\nkey = \"/k.pem\"\nretention_max_age = \"30d\"\n[roles]\nalice = \"watcher\"\n\"agent-*\" = \"agent\"\n",
        )
        .unwrap();
        let mut flags = flags_with(&f);
        flags.roles = vec!["bob=responder".into()];
        flags.listen = Some("127.0.0.1:9001".parse().unwrap());
        let c = Config::resolve(&flags).unwrap();
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.retention_max_age, Some(Duration::from_secs(30 * 86400)));
        assert_eq!(c.roles.role_of("alice"), Some(Role::Watcher));
        assert_eq!(c.roles.role_of("bob"), Some(Role::Responder));
        assert_eq!(c.roles.role_of("agent-web-7"), Some(Role::Agent));
    }

    #[test]
    fn unknown_key_names_line_and_field() {
        let err = parse_file("listen = \"127.0.0.1:1\"\nretention_max_ages = \"1d\"\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("retention_max_ages"), "{err}");
    }

    #[test]
    fn ai_agents_from_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "ca = \"/a\"\ncert = \"/b\"\nkey = \"/c\"\nai_agents = [\"claude\", \"ci-bot\"]\n").unwrap();
        let mut flags = flags_with(&f);
        flags.ai_agents = vec!["codex".into()];
        let c = Config::resolve(&flags).unwrap();
        assert_eq!(c.ai_agents.iter().map(String::as_str).collect::<Vec<_>>(), ["ci-bot", "claude", "codex"]);
        flags.ai_agents = vec!["two words".into()];
        let err = format!("{:#}", Config::resolve(&flags).unwrap_err());
        assert!(err.contains("invalid --ai-agent \"two words\""), "{err}");
        let err = parse_file("listen = \"127.0.0.1:1\"\nai_agents = [\n  \"claude\",\n  \"bad name\",\n]\n").unwrap_err().to_string();
        assert!(err.starts_with("line 4: ai_agents[1]: invalid AI-agent name \"bad name\""), "{err}");
        let err = parse_file("ai_agents = [\"a\", \"a\"]\n").unwrap_err().to_string();
        assert!(err.starts_with("line 1: ai_agents[1]: \"a\" is listed twice"), "{err}");
        let err = parse_file("ai_agents = \"claude\"\n").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("ai_agents"), "{err}");
    }

    #[test]
    fn bad_role_names_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "ca = \"/a\"\ncert = \"/b\"\nkey = \"/c\"\n[roles]\nalice = \"root\"\n").unwrap();
        let err = format!("{:#}", Config::resolve(&flags_with(&f)).unwrap_err());
        assert!(err.contains("roles.\"alice\""), "{err}");
        assert!(err.contains("unknown role \"root\""), "{err}");
    }

    #[test]
    fn missing_tls_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "ca = \"/a\"\n").unwrap();
        let err = format!("{:#}", Config::resolve(&flags_with(&f)).unwrap_err());
        assert!(err.contains("missing cert"), "{err}");
    }

    #[test]
    fn flags_parse() {
        let f = Flags::try_parse_from([
            "warrant-collector",
            "--listen",
            "127.0.0.1:7443",
            "--data-dir",
            "/d",
            "--ca",
            "/ca",
            "--cert",
            "/c",
            "--key",
            "/k",
            "--role",
            "agent-*=agent",
            "--role",
            "bob=responder",
            "--metrics-listen",
            "127.0.0.1:9465",
            "--retention-max-age",
            "90d",
            "--retention-max-bytes",
            "1000000",
            "--retention-interval",
            "30s",
            "--segment-bytes",
            "65536",
            "--watch-buffer",
            "100",
        ])
        .unwrap();
        assert_eq!(f.roles, ["agent-*=agent", "bob=responder"]);
        assert_eq!(f.retention_max_age, Some(Duration::from_secs(90 * 86400)));
        assert_eq!(f.retention_interval, Some(Duration::from_secs(30)));
        let c = Config::resolve(&Flags { config: Some("/dev/null".into()), ..f }).unwrap();
        assert_eq!(c.roles.role_of("agent-x"), Some(Role::Agent));
        assert_eq!((c.segment_bytes, c.watch_buffer), (65536, 100));
        let v = Flags::try_parse_from(["warrant-collector", "verify", "--data-dir", "/d"]).unwrap();
        assert!(matches!(v.command, Some(Cmd::Verify)));
        assert_eq!(v.data_dir, Some(PathBuf::from("/d")));
        assert!(Flags::try_parse_from(["warrant-collector", "--role-x", "a"]).is_err());
        let err = Config::resolve(&Flags { config: Some("/dev/null".into()), roles: vec!["bob".into()], ca: Some("/a".into()), cert: Some("/b".into()), key: Some("/c".into()), ..Flags::default() })
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid --role \"bob\": expected NAME=ROLE"), "{err}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86400)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("d").is_err());
    }
}
