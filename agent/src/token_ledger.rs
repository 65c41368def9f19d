//! The replay guard: which grant tokens this host has already redeemed.
//!
//! A token's grant id is its id. Each is remembered until the token's not-after
//! (after which the token is refused as expired anyway), in its own file
//! (`<state-dir>/tokens.json`, written atomically) so the memory survives agent
//! restarts and stays apart from the grant table, whose history is pruned.

use std::{collections::BTreeMap, fs, io::Write, path::PathBuf};

use anyhow::{Context, Result};

/// Redeemed token ids and when each may be forgotten.
#[derive(Debug)]
pub struct Ledger {
    /// Where the ledger lives.
    path: PathBuf,
    /// Grant id (`g-…`) → the token's not-after (Unix ns).
    used: BTreeMap<String, i64>,
}

impl Ledger {
    /// Loads the ledger, or starts empty when the file does not exist.
    pub fn load(path: PathBuf) -> Result<Self> {
        let used = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("invalid token ledger {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("failed to read token ledger {}", path.display())),
        };
        Ok(Self { path, used })
    }

    /// Whether the token with this grant id was redeemed here.
    pub fn contains(&self, grant: &str) -> bool {
        self.used.contains_key(grant)
    }

    /// Records a redeemed token and forgets those past their not-after; on disk
    /// before this returns, so a crash right after cannot let the token in twice.
    pub fn record(&mut self, grant: &str, not_after_unix_ns: i64, now_unix_ns: i64) -> Result<()> {
        self.used.retain(|_, until| *until > now_unix_ns);
        self.used.insert(grant.to_owned(), not_after_unix_ns);
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.used)?;
        let mut f = fs::File::create(&tmp).with_context(|| format!("failed to write {}", tmp.display()))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &self.path).with_context(|| format!("failed to replace {}", self.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_across_loads_and_forgets_expired_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let mut l = Ledger::load(path.clone()).unwrap();
        assert!(!l.contains("g-1"));
        l.record("g-1", 100, 50).unwrap();
        l.record("g-2", 300, 60).unwrap();
        let mut back = Ledger::load(path.clone()).unwrap();
        assert!(back.contains("g-1") && back.contains("g-2"));
        back.record("g-3", 400, 200).unwrap();
        let back = Ledger::load(path.clone()).unwrap();
        assert!(!back.contains("g-1"), "past its not-after");
        assert!(back.contains("g-2") && back.contains("g-3"));
        fs::write(&path, "nope").unwrap();
        assert!(Ledger::load(path).unwrap_err().to_string().contains("invalid token ledger"));
    }
}
