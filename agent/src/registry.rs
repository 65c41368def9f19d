//! The grant and session tables, and their persistence in `state.json`.
//!
//! The kernel maps hold what enforcement needs (slots, states, expiry); this table
//! holds what people need (subject, reason, command, history) and survives agent
//! restarts, so a restarted agent can re-adopt the pinned kernel state.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use warrant_common::maps::{GRANT_SLOTS, SESSION_SLOTS};

use crate::{clock, ids};

/// Shortest grant; anything shorter is a typo.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Ended grants and sessions kept for `--all` listings.
const HISTORY: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Active,
    Expired,
    Revoked,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    pub id: u64,
    /// Index into the kernel's GRANTS map while active.
    pub slot: u32,
    pub subject: String,
    pub reason: String,
    pub issued_by: String,
    pub issued_at_unix_ns: i64,
    pub expires_at_unix_ns: i64,
    /// The same instant on the boot clock, as the kernel checks it.
    pub expires_at_boot_ns: u64,
    pub status: GrantStatus,
    /// When and why it stopped being active.
    pub ended_at_unix_ns: i64,
    pub end_reason: String,
    /// The policy file's text, kept so a restarted agent can compile it again.
    #[serde(default)]
    pub policy_yaml: Option<String>,
    /// The policy's name, for listings and events.
    #[serde(default)]
    pub policy_name: String,
    /// Slot of the compiled policy in the kernel maps (0: none).
    #[serde(default)]
    pub policy_slot: u32,
    /// Expired under `on_expiry: drop`: its sessions run on, cut off from the network,
    /// and it keeps its kernel slots until the last of them ends.
    #[serde(default)]
    pub cut_off: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Live,
    Ended,
    Killed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub id: u64,
    /// Index into the kernel's SESSIONS map while live.
    pub slot: u32,
    pub grant: u64,
    pub root_pid: u32,
    pub cgroup: PathBuf,
    pub command: Vec<String>,
    /// "exec" or "attach".
    pub how: String,
    pub caller_uid: u32,
    pub started_at_unix_ns: i64,
    pub status: SessionStatus,
    pub ended_at_unix_ns: i64,
    pub end_reason: String,
    /// How the session is confined: `host::SANDBOX_CONFINED` or `SANDBOX_NONE`.
    #[serde(default)]
    pub sandbox: String,
    /// `SessionState::max_tasks` it was started with (kept so a restarted agent
    /// writes the same limit back).
    #[serde(default)]
    pub max_tasks: u32,
}

/// Why a grant cannot be used or issued. Messages go to the CLI as they are.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("unknown grant {0}")]
    Unknown(String),
    #[error("grant {id} expired {ago} ago")]
    Expired { id: String, ago: String },
    #[error("grant {id} was revoked {ago} ago{reason}")]
    Revoked { id: String, ago: String, reason: String },
    #[error("invalid ttl {ttl}: must be between {min} and {max}")]
    Ttl { ttl: String, min: String, max: String },
    #[error("invalid subject: must not be empty")]
    NoSubject,
    #[error("no free {0} slot: too many live {0}s on this host")]
    Full(&'static str),
    #[error("{0}")]
    Policy(String),
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Registry {
    pub grants: BTreeMap<u64, Grant>,
    pub sessions: BTreeMap<u64, Session>,
    /// How much of the kernel's lost-record counter has been reported already.
    #[serde(default)]
    pub lost_reported: u64,
}

impl Registry {
    /// Loads `path`, or starts empty when it does not exist.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("invalid state file {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(anyhow::anyhow!("failed to read state file {}: {e}", path.display())),
        }
    }

    /// Writes the table atomically (temp file, fsync, rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self)?;
        let mut f = fs::File::create(&tmp)
            .map_err(|e| anyhow::anyhow!("failed to write state file {}: {e}", tmp.display()))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
            .map_err(|e| anyhow::anyhow!("failed to replace state file {}: {e}", path.display()))?;
        Ok(())
    }

    /// Creates an active grant.
    pub fn issue(
        &mut self,
        subject: &str,
        ttl: Duration,
        reason: &str,
        issued_by: &str,
        max_ttl: Duration,
    ) -> Result<Grant, GrantError> {
        if subject.trim().is_empty() {
            return Err(GrantError::NoSubject);
        }
        if ttl < MIN_TTL || ttl > max_ttl {
            return Err(GrantError::Ttl {
                ttl: humantime::format_duration(ttl).to_string(),
                min: humantime::format_duration(MIN_TTL).to_string(),
                max: humantime::format_duration(max_ttl).to_string(),
            });
        }
        let slot = free_slot(GRANT_SLOTS, self.grants.values().filter(|g| self.holds_kernel_slots(g)).map(|g| g.slot))
            .ok_or(GrantError::Full("grant"))?;
        let (wall, boot) = (clock::wall_ns(), clock::boot_ns());
        let ttl_ns = ttl.as_nanos() as u64;
        let grant = Grant {
            id: ids::fresh(),
            slot,
            subject: subject.trim().to_owned(),
            reason: reason.to_owned(),
            issued_by: issued_by.to_owned(),
            issued_at_unix_ns: wall,
            expires_at_unix_ns: wall + ttl_ns as i64,
            expires_at_boot_ns: boot + ttl_ns,
            status: GrantStatus::Active,
            ended_at_unix_ns: 0,
            end_reason: String::new(),
            policy_yaml: None,
            policy_name: String::new(),
            policy_slot: 0,
            cut_off: false,
        };
        self.grants.insert(grant.id, grant.clone());
        self.prune();
        Ok(grant)
    }

    /// The grant named `id`, if it can start sessions now.
    pub fn usable_grant(&self, id: &str) -> Result<&Grant, GrantError> {
        let g = ids::parse_grant(id)
            .and_then(|n| self.grants.get(&n))
            .ok_or_else(|| GrantError::Unknown(id.trim().to_owned()))?;
        let now = clock::boot_ns();
        match g.status {
            GrantStatus::Revoked => Err(GrantError::Revoked {
                id: ids::grant(g.id),
                ago: ago(g.ended_at_unix_ns),
                reason: if g.end_reason.is_empty() { String::new() } else { format!(": {}", g.end_reason) },
            }),
            GrantStatus::Expired => Err(GrantError::Expired { id: ids::grant(g.id), ago: ago(g.expires_at_unix_ns) }),
            GrantStatus::Active if now >= g.expires_at_boot_ns => Err(GrantError::Expired {
                id: ids::grant(g.id),
                ago: clock::human(now - g.expires_at_boot_ns),
            }),
            GrantStatus::Active => Ok(g),
        }
    }

    /// Any grant named `id`, whatever its state.
    pub fn grant(&self, id: &str) -> Result<&Grant, GrantError> {
        ids::parse_grant(id)
            .and_then(|n| self.grants.get(&n))
            .ok_or_else(|| GrantError::Unknown(id.trim().to_owned()))
    }

    /// A slot for a new policy (slot 0 means "none" and is never given out).
    pub fn free_policy_slot(&self) -> Result<u32, GrantError> {
        use warrant_common::policy::POLICY_SLOTS;
        let used: std::collections::HashSet<u32> = self
            .grants
            .values()
            .filter(|g| self.holds_kernel_slots(g))
            .map(|g| g.policy_slot)
            .collect();
        (1..POLICY_SLOTS).find(|s| !used.contains(s)).ok_or(GrantError::Full("policy"))
    }

    /// Whether `g` still owns its grant and policy slots in the kernel: while active,
    /// and after an `on_expiry: drop` expiry while any of its sessions lives.
    pub fn holds_kernel_slots(&self, g: &Grant) -> bool {
        g.status == GrantStatus::Active || (g.cut_off && self.live_sessions().any(|s| s.grant == g.id))
    }

    /// A slot for a new session.
    pub fn free_session_slot(&self) -> Result<u32, GrantError> {
        free_slot(SESSION_SLOTS, self.live_sessions().map(|s| s.slot)).ok_or(GrantError::Full("session"))
    }

    pub fn live_sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values().filter(|s| s.status == SessionStatus::Live)
    }

    /// Active grants whose expiry has passed.
    pub fn due_grants(&self, now_boot: u64) -> Vec<u64> {
        self.grants
            .values()
            .filter(|g| g.status == GrantStatus::Active && now_boot >= g.expires_at_boot_ns)
            .map(|g| g.id)
            .collect()
    }

    /// The next expiry of an active grant, on the boot clock.
    pub fn next_expiry(&self) -> Option<u64> {
        self.grants.values().filter(|g| g.status == GrantStatus::Active).map(|g| g.expires_at_boot_ns).min()
    }

    /// Drops the oldest ended grants and sessions beyond the history size.
    fn prune(&mut self) {
        let ended: Vec<u64> = self.sessions.values().filter(|s| s.status != SessionStatus::Live).map(|s| s.id).collect();
        if ended.len() > HISTORY {
            let mut by_age: Vec<(i64, u64)> =
                ended.iter().filter_map(|id| self.sessions.get(id).map(|s| (s.ended_at_unix_ns, s.id))).collect();
            by_age.sort_unstable();
            for (_, id) in by_age.iter().take(ended.len() - HISTORY) {
                self.sessions.remove(id);
            }
        }
        let live_grants: std::collections::HashSet<u64> = self.live_sessions().map(|s| s.grant).collect();
        let ended: Vec<(i64, u64)> = self
            .grants
            .values()
            .filter(|g| g.status != GrantStatus::Active && !live_grants.contains(&g.id))
            .map(|g| (g.ended_at_unix_ns, g.id))
            .collect();
        if ended.len() > HISTORY {
            let mut ended = ended;
            ended.sort_unstable();
            for (_, id) in ended.iter().take(ended.len() - HISTORY) {
                self.grants.remove(id);
            }
        }
    }
}

fn free_slot(total: u32, used: impl Iterator<Item = u32>) -> Option<u32> {
    let used: std::collections::HashSet<u32> = used.collect();
    (0..total).find(|s| !used.contains(s))
}

/// How long ago a wall-clock instant was, for messages.
fn ago(unix_ns: i64) -> String {
    clock::human(clock::wall_ns().saturating_sub(unix_ns).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86400);

    #[test]
    fn ttl_bounds_are_enforced() {
        let mut r = Registry::default();
        let err = r.issue("alice", Duration::ZERO, "x", "root", DAY).unwrap_err();
        assert_eq!(err.to_string(), "invalid ttl 0s: must be between 1s and 1day");
        assert!(matches!(r.issue("alice", DAY * 2, "x", "root", DAY), Err(GrantError::Ttl { .. })));
        assert!(r.issue("alice", Duration::from_secs(60), "x", "root", DAY).is_ok());
        assert_eq!(r.issue(" ", Duration::from_secs(60), "x", "root", DAY).unwrap_err(), GrantError::NoSubject);
    }

    #[test]
    fn grant_states_give_reasons() {
        let mut r = Registry::default();
        let g = r.issue("alice", Duration::from_secs(60), "INC-42", "root", DAY).unwrap();
        let id = ids::grant(g.id);
        assert!(r.usable_grant(&id).is_ok());
        assert_eq!(r.usable_grant("g-123").unwrap_err(), GrantError::Unknown("g-123".into()));
        let gm = r.grants.get_mut(&g.id).unwrap();
        gm.status = GrantStatus::Revoked;
        gm.ended_at_unix_ns = clock::wall_ns();
        gm.end_reason = "INC closed".into();
        let msg = r.usable_grant(&id).unwrap_err().to_string();
        assert!(msg.starts_with(&format!("grant {id} was revoked")) && msg.ends_with(": INC closed"), "{msg}");
        let gm = r.grants.get_mut(&g.id).unwrap();
        gm.status = GrantStatus::Active;
        gm.expires_at_boot_ns = clock::boot_ns() - 5_000_000_000;
        let msg = r.usable_grant(&id).unwrap_err().to_string();
        assert!(msg.contains("expired 5s ago") || msg.contains("expired 6s ago"), "{msg}");
        assert_eq!(r.due_grants(clock::boot_ns()), vec![g.id]);
    }

    #[test]
    fn slots_are_reused_only_when_free() {
        let mut r = Registry::default();
        let a = r.issue("a", Duration::from_secs(60), "", "root", DAY).unwrap();
        let b = r.issue("b", Duration::from_secs(60), "", "root", DAY).unwrap();
        assert_ne!(a.slot, b.slot);
        r.grants.get_mut(&a.id).unwrap().status = GrantStatus::Expired;
        let c = r.issue("c", Duration::from_secs(60), "", "root", DAY).unwrap();
        assert_eq!(c.slot, a.slot);
    }

    #[test]
    fn state_round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut r = Registry::default();
        let g = r.issue("alice", Duration::from_secs(60), "r", "root", DAY).unwrap();
        r.save(&path).unwrap();
        let back = Registry::load(&path).unwrap();
        assert_eq!(back.grants[&g.id].subject, "alice");
        assert!(Registry::load(&dir.path().join("missing.json")).unwrap().grants.is_empty());
        fs::write(&path, "{ not json").unwrap();
        assert!(Registry::load(&path).unwrap_err().to_string().contains("invalid state file"));
    }
}
