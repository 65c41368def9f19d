//! The audit log's key: what makes its chain one that only the key's holder can
//! write.
//!
//! The SHA-256 chain alone shows an edit to anyone, but whoever can write the file
//! can also re-chain it: edit a record, recompute every hash after it, and the
//! chain is intact again. With a key, each record also carries
//! `mac = HMAC-SHA256(key, n as 8 big-endian bytes || hash)`; since `hash` covers
//! `prev`, one record's mac vouches for the whole chain up to it. A rewrite by
//! someone who can write the log but not read the key (a session, whose Landlock
//! domain denies the agent's state directory; a backup restored by hand) leaves
//! records whose macs do not match, and `verify` with the key names them.
//!
//! The key is 32 random bytes, kept as 64 hex digits in a file of mode 0600 that
//! is created on first use and never rewritten.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Error;

/// The key an audit log's records are marked with.
///
/// Holds the HMAC state with the key already absorbed (its inner and outer pad
/// blocks), so marking a record hashes only the record's 40 bytes: two SHA-256
/// blocks rather than four.
#[derive(Clone)]
pub struct LogKey {
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogKey(…)")
    }
}

impl LogKey {
    /// A key from its 32 bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        // new_from_slice takes a key of any length; 32 bytes always fits.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(&bytes).unwrap_or_else(|_| unreachable!());
        Self { keyed }
    }

    /// Reads the key at `path`, or creates it there (mode 0600, fsync'd, parent
    /// directory included) when there is none.
    ///
    /// # Errors
    /// [`Error::Key`] when the file cannot be read or created, is readable by
    /// anyone but its owner, or does not hold 64 hex digits.
    pub fn load_or_create(path: &Path) -> Result<Self, Error> {
        let bad = |what: String| Error::Key { path: path.to_path_buf(), what };
        match OpenOptions::new().read(true).open(path) {
            Ok(mut f) => {
                let mode = f.metadata().map_err(|e| bad(format!("cannot read it: {e}")))?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(bad(format!(
                        "its mode is {:o}: a key others can read proves nothing (chmod 600 it)",
                        mode & 0o777
                    )));
                }
                let mut text = String::new();
                f.read_to_string(&mut text).map_err(|e| bad(format!("cannot read it: {e}")))?;
                let mut key = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut key)
                    .map_err(|_| bad("it does not hold 64 hex digits".to_owned()))?;
                Ok(Self::from_bytes(key))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| bad(format!("cannot create it: {e}")))?;
                f.write_all(format!("{}\n", hex::encode(key)).as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| bad(format!("cannot write it: {e}")))?;
                if let Some(dir) = path.parent() {
                    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
                }
                Ok(Self::from_bytes(key))
            }
            Err(e) => Err(bad(format!("cannot open it: {e}"))),
        }
    }

    /// Reads the key at `path`, or creates it there and records, beside it (see
    /// [`keyed_from`]), that records from `next_record` on are marked with it. Use
    /// this where a log is written: `verify` then refuses a record of that range
    /// without a mark, so stripping every mark and re-chaining is caught too.
    ///
    /// # Errors
    /// As [`LogKey::load_or_create`], and when the record cannot be written.
    pub fn load_or_create_for(path: &Path, next_record: impl FnOnce() -> u64) -> Result<Self, Error> {
        let new = !path.exists();
        let key = Self::load_or_create(path)?;
        if new {
            mark_keyed_from(path, next_record())?;
        }
        Ok(key)
    }

    /// The mac of record `n` whose hash is `hash`.
    #[must_use]
    pub fn mac(&self, n: u64, hash: &[u8; 32]) -> [u8; 32] {
        let mut m = self.keyed.clone();
        m.update(&n.to_be_bytes());
        m.update(hash);
        m.finalize().into_bytes().into()
    }
}

/// Beside the key at `key`: the first record number written with it.
#[must_use]
pub fn from_path(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".from");
    PathBuf::from(p)
}

fn mark_keyed_from(key: &Path, first: u64) -> Result<(), Error> {
    let path = from_path(key);
    let bad = |what: String| Error::Key { path: path.clone(), what };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| bad(format!("cannot create it: {e}")))?;
    f.write_all(format!("{first}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| bad(format!("cannot write it: {e}")))?;
    Ok(())
}

/// The first record marked with the key at `key`, when that was recorded (`None`
/// for a key made before this was kept: its log may open with unmarked records).
///
/// # Errors
/// [`Error::Key`] when the file is there but unreadable or not a record number.
pub fn keyed_from(key: &Path) -> Result<Option<u64>, Error> {
    let path = from_path(key);
    let bad = |what: String| Error::Key { path: path.clone(), what };
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| bad(format!("{:?} is not a record number", text.trim()))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(bad(format!("cannot read it: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_private_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let k1 = LogKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let k2 = LogKey::load_or_create(&path).unwrap();
        assert_eq!(k1.mac(7, &[1; 32]), k2.mac(7, &[1; 32]));
        assert_ne!(k1.mac(7, &[1; 32]), k1.mac(8, &[1; 32]), "the record number is marked too");
        assert_eq!(format!("{k1:?}"), "LogKey(…)", "the key never reaches a log line");
    }

    /// The mac is HMAC-SHA256 as anyone else computes it (the value is Python's
    /// `hmac.new(bytes(range(32)), (7).to_bytes(8, "big") + b"\xab" * 32, "sha256")`),
    /// and marking one record does not change the next one's mark.
    #[test]
    fn the_mac_is_standard_hmac_sha256_of_the_number_and_hash() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let k = LogKey::from_bytes(key);
        let want = "3f801f1111c40dcc7576fcf49649a8885afe76d099b28f89817dcb339d8482eb";
        assert_eq!(hex::encode(k.mac(7, &[0xab; 32])), want);
        let _ = k.mac(8, &[1; 32]);
        assert_eq!(hex::encode(k.mac(7, &[0xab; 32])), want, "the keyed state is reused, never advanced");
    }

    #[test]
    fn a_readable_or_malformed_key_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        LogKey::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = LogKey::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("mode is 644"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not hex\n").unwrap();
        let e = LogKey::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("64 hex digits"), "{e}");
    }
}
