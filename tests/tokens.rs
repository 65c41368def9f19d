//! [`Signer`]: a development signing key made and used through `warrant token
//! keygen | sign`, as the collector would sign, for tests of signed grant tokens.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::agent::CLI_TIMEOUT;
use crate::bins;
use crate::run::output_within;

/// A key pair in its own temp dir, and the token files it signed.
pub struct Signer {
    /// Holds the key pair and token files; removed on drop.
    dir: tempfile::TempDir,
    /// The secret key file.
    key: PathBuf,
    /// Its id (`k-…`), as `warrant token keygen` printed it.
    id: String,
}

impl Signer {
    /// Makes a key pair with `warrant token keygen`.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("warrant-signer-").tempdir().expect("create temp dir");
        let key = dir.path().join("signing.key");
        let out = output_within(Command::new(bins::warrant()).args(["token", "keygen", "--out"]).arg(&key), CLI_TIMEOUT);
        assert!(out.status.success(), "token keygen failed: {}", String::from_utf8_lossy(&out.stderr));
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(id.starts_with("k-"), "keygen should print the key id, printed {id:?}");
        Self { dir, key, id }
    }

    /// The public key file (for `--grant-public-key`).
    pub fn public_key(&self) -> PathBuf {
        PathBuf::from(format!("{}.pub", self.key.display()))
    }

    /// The secret key file (for a collector's `--grant-signing-key`).
    pub fn secret_key(&self) -> &Path {
        &self.key
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A directory for files of this test.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `warrant token sign --key K --out <dir>/<name>.token <args>`; returns the
    /// token file and the grant id it printed.
    pub fn sign(&self, name: &str, args: &[&str]) -> (PathBuf, String) {
        let out_path = self.dir.path().join(format!("{name}.token"));
        let mut cmd = Command::new(bins::warrant());
        cmd.args(["token", "sign", "--key"]).arg(&self.key).arg("--out").arg(&out_path).args(args);
        let out = output_within(&mut cmd, CLI_TIMEOUT);
        assert!(
            out.status.success(),
            "token sign {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (out_path, String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// `warrant token compact FILE`: the one-line form for `WARRANT_TOKEN`.
    pub fn compact(file: &Path) -> String {
        let out = output_within(Command::new(bins::warrant()).args(["token", "compact"]).arg(file), CLI_TIMEOUT);
        assert!(out.status.success(), "token compact failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Default for Signer {
    fn default() -> Self {
        Self::new()
    }
}

/// Now plus `secs` (negative for the past), as RFC 3339 for `--not-before/--not-after`.
pub fn rfc3339_in(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    t.format(&time::format_description::well_known::Rfc3339).expect("format RFC 3339")
}

/// This machine's host name, as the agent matches token host patterns against it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").expect("read hostname").trim().to_owned()
}
