//! A small JSON state file (`requests.json`, `policies.json`) replaced whole and
//! atomically: a temp file beside it, fsync, rename, then the directory's fsync, so a
//! crash leaves the old file or the new one, never half of one.

use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

/// Writes `value` as pretty JSON to `path`, replacing it atomically.
///
/// # Errors
/// When the value cannot be serialised or the file cannot be written.
pub(crate) fn replace(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}
