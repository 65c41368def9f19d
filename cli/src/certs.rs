//! `warrant certs`: a development CA and the certificates an mTLS set-up needs
//! (the collector's server certificate, one per agent, one per person), written
//! into one directory with a printout of which file is what and where it goes.
//!
//! For development and tests: production certificates come from your own PKI. The
//! certificate's Common Name is the identity the collector gives roles to.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::output::sanitize;

/// `warrant certs …`
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Make a development CA (ca.pem, ca.key) in a directory.
    Init(InitArgs),
    /// Issue a certificate signed by that CA (NAME.pem, NAME.key).
    Issue(IssueArgs),
}

/// `warrant certs init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write ca.pem and ca.key (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The CA's name.
    #[arg(long, value_name = "NAME", default_value = "warrant development CA")]
    pub name: String,
    /// How long the CA is valid, in days.
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    pub days: u32,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

/// `warrant certs issue`
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The directory holding ca.pem and ca.key; NAME.pem and NAME.key go there too.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The certificate's name (Common Name): the identity the collector gives a role.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// What the certificate is for; sets the printout's advice and, for `collector`,
    /// the server names (localhost, 127.0.0.1, ::1, NAME and every --san).
    #[arg(long, value_enum, value_name = "ROLE")]
    pub role_hint: RoleHint,
    /// Another DNS name or IP address the collector is reached by (repeatable).
    #[arg(long, value_name = "HOST")]
    pub san: Vec<String>,
    /// How long the certificate is valid, in days.
    #[arg(long, value_name = "DAYS", default_value_t = 90)]
    pub days: u32,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleHint {
    /// The collector's server certificate.
    Collector,
    /// An agent's client certificate (role `agent` on the collector).
    Agent,
    /// A person or tool that watches and queries.
    Watcher,
    /// A person who may also kill and revoke.
    Responder,
    /// A person who asks for grants.
    Requester,
    /// A person who approves other people's grant requests.
    Approver,
    /// Everything, including `audit verify`.
    Admin,
}

impl RoleHint {
    fn role(self) -> &'static str {
        match self {
            RoleHint::Collector => "collector",
            RoleHint::Agent => "agent",
            RoleHint::Watcher => "watcher",
            RoleHint::Responder => "responder",
            RoleHint::Requester => "requester",
            RoleHint::Approver => "approver",
            RoleHint::Admin => "admin",
        }
    }
}

/// `warrant certs init`
pub fn init(args: &InitArgs, out: &mut impl Write) -> Result<u8> {
    fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let (cert_path, key_path) = (args.dir.join("ca.pem"), args.dir.join("ca.key"));
    refuse_overwrite(&[&cert_path, &key_path], args.force)?;
    let key = KeyPair::generate().context("cannot generate the CA key")?;
    let mut params = CertificateParams::new(Vec::<String>::new()).context("cannot build the CA certificate")?;
    params.distinguished_name.push(DnType::CommonName, args.name.as_str());
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, args.days);
    let cert = params.self_signed(&key).context("cannot sign the CA certificate")?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    writeln!(
        out,
        "made a development CA {:?} (valid {} days)\n  {}  CA certificate: give it to the collector (--ca), agents (--collector-ca) and people (--ca / WARRANT_CA)\n  {}  CA private key: keep it here; `warrant certs issue --dir {}` signs with it\n",
        args.name,
        args.days,
        cert_path.display(),
        key_path.display(),
        args.dir.display()
    )?;
    writeln!(
        out,
        "next: warrant certs issue --dir {} --name collector --role-hint collector [--san HOST]",
        args.dir.display()
    )?;
    Ok(0)
}

/// `warrant certs issue`
pub fn issue(args: &IssueArgs, out: &mut impl Write) -> Result<u8> {
    let name = args.name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) {
        bail!("invalid --name {}: use letters, digits, '-', '_', '.' or '@' (it becomes a file name)", sanitize(name));
    }
    let (ca_pem_path, ca_key_path) = (args.dir.join("ca.pem"), args.dir.join("ca.key"));
    let ca_pem = fs::read_to_string(&ca_pem_path).with_context(|| {
        format!("cannot read the CA certificate {}\n\nMake one with `warrant certs init --dir {}`.", ca_pem_path.display(), args.dir.display())
    })?;
    let ca_key = fs::read_to_string(&ca_key_path)
        .with_context(|| format!("cannot read the CA key {}", ca_key_path.display()))?;
    let ca_key = KeyPair::from_pem(&ca_key).with_context(|| format!("invalid CA key {}", ca_key_path.display()))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .with_context(|| format!("invalid CA certificate {}", ca_pem_path.display()))?;

    let (cert_path, key_path) = (args.dir.join(format!("{name}.pem")), args.dir.join(format!("{name}.key")));
    refuse_overwrite(&[&cert_path, &key_path], args.force)?;
    let mut sans: Vec<String> = Vec::new();
    if args.role_hint == RoleHint::Collector {
        sans.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
        sans.push(name.to_owned());
    }
    sans.extend(args.san.iter().cloned());
    sans.dedup();
    let mut params = CertificateParams::new(sans.clone()).context("invalid --san")?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = if args.role_hint == RoleHint::Collector {
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    validity(&mut params, args.days);
    let key = KeyPair::generate().context("cannot generate a key")?;
    let cert = params.signed_by(&key, &issuer).context("cannot sign the certificate")?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    out.write_all(advice(args, name, &cert_path, &key_path, &ca_pem_path, &sans).as_bytes())?;
    Ok(0)
}

/// Which file is what, and the flags that use them.
fn advice(args: &IssueArgs, name: &str, cert: &Path, key: &Path, ca: &Path, sans: &[String]) -> String {
    let (cert, key, ca) = (cert.display(), key.display(), ca.display());
    let role = args.role_hint.role();
    let mut s = format!(
        "issued {role} certificate {name:?} (valid {} days)\n  {cert}  certificate (Common Name {name})\n  {key}  private key (mode 0600)\n  {ca}  the CA that signed it\n\n",
        args.days
    );
    match args.role_hint {
        RoleHint::Collector => {
            s.push_str(&format!("server names: {}\n\n", sans.join(", ")));
            s.push_str(&format!("use: warrant-collector --ca {ca} --cert {cert} --key {key} --role NAME=ROLE ...\n"));
        }
        RoleHint::Agent => {
            s.push_str(&format!(
                "use: warrant-agent --collector https://COLLECTOR:PORT --collector-ca {ca} --collector-cert {cert} --collector-key {key}\n\
                 and on the collector: --role {name}=agent (or [roles] {name} = \"agent\")\n"
            ));
        }
        RoleHint::Watcher | RoleHint::Responder | RoleHint::Requester | RoleHint::Approver | RoleHint::Admin => {
            s.push_str(&format!(
                "use: export WARRANT_COLLECTOR=https://COLLECTOR:PORT WARRANT_CA={ca} WARRANT_CERT={cert} WARRANT_KEY={key}\n\
                 and on the collector: --role {name}={role} (or [roles] {name} = \"{role}\")\n"
            ));
        }
    }
    s
}

fn validity(params: &mut CertificateParams, days: u32) {
    // A little slack backwards for clocks that lag.
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days.max(1)));
}

fn refuse_overwrite(paths: &[&Path], force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    if let Some(p) = paths.iter().find(|p| p.exists()) {
        bail!("{} already exists\n\nPass --force to replace it.", p.display());
    }
    Ok(())
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let _ = fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(data).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_then_issue_makes_a_chain_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("pki");
        let mut out = Vec::new();
        init(&InitArgs { dir: d.clone(), name: "test CA".into(), days: 30, force: false }, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("ca.pem  CA certificate"), "{text}");
        let args = IssueArgs {
            dir: d.clone(),
            name: "collector".into(),
            role_hint: RoleHint::Collector,
            san: vec!["collector.example".into()],
            days: 10,
            force: false,
        };
        let mut out = Vec::new();
        issue(&args, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("server names: localhost, 127.0.0.1, ::1, collector, collector.example"), "{text}");
        let pem = fs::read_to_string(d.join("collector.pem")).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(d.join("collector.key")).unwrap().permissions().mode() & 0o777, 0o600);
        let e = issue(&args, &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        let mut out = Vec::new();
        issue(&IssueArgs { name: "bob".into(), role_hint: RoleHint::Responder, san: vec![], ..args }, &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("--role bob=responder"));
    }

    #[test]
    fn issue_without_a_ca_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let args = IssueArgs {
            dir: dir.path().to_owned(),
            name: "a".into(),
            role_hint: RoleHint::Agent,
            san: vec![],
            days: 1,
            force: false,
        };
        let e = format!("{:#}", issue(&args, &mut Vec::new()).unwrap_err());
        assert!(e.contains("warrant certs init --dir"), "{e}");
        let bad = IssueArgs { name: "../x".into(), ..args };
        assert!(issue(&bad, &mut Vec::new()).unwrap_err().to_string().starts_with("invalid --name"));
    }
}
