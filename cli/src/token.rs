//! `warrant token keygen | sign | compact`: a development signer for grant tokens.
//!
//! For development and tests only. In production the collector signs tokens once
//! a request has its approvals, and its secret key never leaves it; these
//! commands let a single machine (or a test) play that part.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warrant_policy::Policy;
use warrant_proto::GrantToken;
use warrant_proto::token::{SecretKey, TokenFile, fresh_grant_id, subject_parts};

/// `warrant token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a signing key pair: FILE (secret, mode 0600) and FILE.pub (for the
    /// agents' grant_public_key). Development and tests only.
    Keygen(KeygenArgs),
    /// Sign a grant token with a development key and write a token file.
    /// Development and tests only: in production the collector signs.
    Sign(Box<SignArgs>),
    /// Print a token file on one line, for `WARRANT_TOKEN` (sent with ssh SetEnv).
    Compact(CompactArgs),
}

/// `warrant token keygen`
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the secret key; the public key goes to FILE.pub.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `warrant token sign`
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The secret key (from `warrant token keygen`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Who the grant is for: user:NAME or agent:NAME.
    #[arg(long)]
    pub subject: String,
    /// Host name or glob (`db-*`) the token is good for.
    #[arg(long, value_name = "PATTERN")]
    pub host: String,
    /// How long from now the token is valid (ignored with --not-after).
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub ttl: std::time::Duration,
    /// Start of validity (RFC 3339); now when unset.
    #[arg(long, value_name = "TIME")]
    pub not_before: Option<String>,
    /// End of validity (RFC 3339); now + --ttl when unset.
    #[arg(long, value_name = "TIME")]
    pub not_after: Option<String>,
    /// Policy file the grant carries (bound into the token by its digest).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Who approved (repeat for each).
    #[arg(long = "approver", value_name = "NAME")]
    pub approvers: Vec<String>,
    /// Why the access is needed.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Grant id (g-…); random when unset.
    #[arg(long, value_name = "ID")]
    pub grant: Option<String>,
    /// Where to write the token file; stdout when unset.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `warrant token compact`
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The token file.
    pub file: PathBuf,
}

/// `warrant token keygen`: prints the key id.
pub fn keygen(args: &KeygenArgs, out: &mut impl Write) -> Result<u8> {
    let key = SecretKey::generate();
    let public = key.public();
    write_new(&args.out, &format!("# warrant grant signing key {} (development)\n{}\n", public.id(), key.to_text()), 0o600)?;
    let pub_path = PathBuf::from(format!("{}.pub", args.out.display()));
    write_new(&pub_path, &format!("{} {}\n", public.to_text(), public.id()), 0o644)?;
    writeln!(out, "{}", public.id())?;
    Ok(0)
}

/// `warrant token sign`: writes the token file, prints the grant id.
pub fn sign(args: &SignArgs, out: &mut impl Write) -> Result<u8> {
    let key_text = fs::read_to_string(&args.key).with_context(|| format!("cannot read key {}", args.key.display()))?;
    let key = SecretKey::from_text(&key_text).with_context(|| format!("cannot use key {}", args.key.display()))?;
    if subject_parts(&args.subject).is_none() {
        bail!("invalid --subject {:?}: expected user:NAME or agent:NAME", args.subject);
    }
    let policy = match &args.policy {
        Some(path) => {
            let text = fs::read_to_string(path).with_context(|| format!("cannot read policy {}", path.display()))?;
            let name = path.display().to_string();
            let p = Policy::from_yaml(&text, &name).map_err(|e| anyhow::anyhow!("{e}"))?;
            Some((text, p.digest().to_string()))
        }
        None => None,
    };
    let now = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let not_before = match &args.not_before {
        Some(t) => rfc3339(t, "--not-before")?,
        None => now,
    };
    let not_after = match &args.not_after {
        Some(t) => rfc3339(t, "--not-after")?,
        None => now + i128::try_from(args.ttl.as_nanos()).context("--ttl is too long")?,
    };
    let grant = args.grant.clone().unwrap_or_else(fresh_grant_id);
    let token = GrantToken {
        version: 1,
        grant: grant.clone(),
        subject: args.subject.clone(),
        host: args.host.clone(),
        policy_digest: policy.as_ref().map(|(_, d)| d.clone()).unwrap_or_default(),
        not_before_unix_ns: i64::try_from(not_before).context("--not-before is out of range")?,
        not_after_unix_ns: i64::try_from(not_after).context("--not-after is out of range")?,
        approvers: args.approvers.clone(),
        reason: args.reason.clone(),
        key_id: String::new(),
        issued_at_unix_ns: i64::try_from(now).unwrap_or_default(),
    };
    let encoded = key.sign(&token);
    // Decoding our own output checks the fields the same way a host will.
    warrant_proto::token::decode(&encoded).map_err(|e| anyhow::anyhow!("cannot sign this token: {e}"))?;
    let file = TokenFile { token: encoded, policy: policy.map(|(t, _)| t).unwrap_or_default() };
    let comment = format!(
        "warrant grant token {grant} for {} on {}, signed by {} (development signer)\napproved by: {}\nreason: {}",
        args.subject,
        args.host,
        key.public().id(),
        if args.approvers.is_empty() { "nobody".to_owned() } else { args.approvers.join(", ") },
        args.reason.replace('\n', " ")
    );
    let text = file.render(&comment);
    match &args.out {
        Some(path) => {
            write_new(path, &text, 0o600)?;
            writeln!(out, "{grant}")?;
        }
        None => out.write_all(text.as_bytes())?,
    }
    Ok(0)
}

/// `warrant token compact`
pub fn compact(args: &CompactArgs, out: &mut impl Write) -> Result<u8> {
    let file = crate::exec::read_token_file(&args.file)?;
    writeln!(out, "{}", file.compact())?;
    Ok(0)
}

fn rfc3339(text: &str, flag: &str) -> Result<i128> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp_nanos)
        .map_err(|e| anyhow::anyhow!("invalid {flag} {text:?}: {e} (expected RFC 3339, e.g. 2026-11-23T12:00:00Z)"))
}

/// Writes a file with `mode`, replacing an existing one.
pub(crate) fn write_new(path: &Path, text: &str, mode: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}
