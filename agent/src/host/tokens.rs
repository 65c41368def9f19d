//! Grants made from verified tokens, and the audit record of refused ones.
//!
//! A child of `host` so it uses the host's own grant machinery (registry, kernel
//! maps, events) without widening it; the checks that decide whether a token is
//! good live in `door.rs`, before anything here runs.

use std::time::Duration;

use anyhow::anyhow;
use tracing::info;
use warrant_common::maps::STATE_ACTIVE;
use warrant_proto::v1::{self as pb, GrantToken, event::Event as Kind};

use super::{Host, HostError, grant_event, grant_info, grant_state, install_policy};
use crate::{
    clock, ids,
    events::agent_event,
    registry::{Grant, GrantError},
};

impl Host {
    /// The host name tokens are matched against.
    pub fn host_name(&self) -> &str {
        &self.envelope.host
    }

    /// Whether a grant with this id exists here, in any state (a token whose
    /// grant exists was redeemed before).
    pub fn has_grant(&self, id: u64) -> bool {
        self.lock().registry.grants.contains_key(&id)
    }

    /// Creates the grant a verified token describes: its id, subject, reason, its
    /// approvers as the issuer, expiry at the token's not-after (moved onto the
    /// boot clock the kernel checks), and its policy compiled into the maps.
    pub async fn issue_token_grant(
        &self,
        token: &GrantToken,
        policy: Option<(&warrant_policy::Policy, &str)>,
    ) -> Result<Grant, HostError> {
        let id = ids::parse_grant(&token.grant)
            .ok_or_else(|| HostError::Invalid(format!("invalid grant id {:?} in the token", token.grant)))?;
        let (wall, boot) = (clock::wall_ns(), clock::boot_ns());
        let left = u64::try_from(token.not_after_unix_ns.saturating_sub(wall))
            .ok()
            .filter(|ns| *ns > 0)
            .ok_or_else(|| HostError::Invalid("the token expired while it was checked".into()))?;
        let lifetime = Duration::from_nanos(
            u64::try_from(token.not_after_unix_ns.saturating_sub(token.not_before_unix_ns)).unwrap_or(0),
        );
        if let Some((p, _)) = policy
            && lifetime > p.max_ttl
        {
            return Err(GrantError::Policy(format!(
                "the token lasts {}, policy {} allows at most {}",
                humantime::format_duration(Duration::from_secs(lifetime.as_secs())),
                p.name,
                humantime::format_duration(p.max_ttl)
            ))
            .into());
        }
        let by = approved_by(token);
        let grant = {
            let mut inner = self.lock();
            if inner.registry.grants.contains_key(&id) {
                return Err(HostError::Conflict(format!("grant {} exists already", ids::grant(id))));
            }
            // The registry checks subject and TTL and picks the kernel slot; the
            // id and the exact expiry are the token's.
            let mut grant =
                inner.registry.issue(&token.subject, Duration::from_nanos(left), &token.reason, &by, self.config.max_ttl)?;
            inner.registry.grants.remove(&grant.id);
            grant.id = id;
            grant.expires_at_unix_ns = token.not_after_unix_ns;
            grant.expires_at_boot_ns = boot + left;
            if let Some((p, text)) = policy {
                let slot = inner.registry.free_policy_slot()?;
                install_policy(&mut inner.kernel, p, slot)?;
                grant.policy_slot = slot;
                grant.policy_name = p.name.clone();
                grant.policy_yaml = Some(text.to_owned());
            }
            if let Err(e) = inner.kernel.grants.set(grant.slot, grant_state(&grant, STATE_ACTIVE), 0) {
                if grant.policy_slot != 0 {
                    super::remove_policy(&mut inner.kernel, &grant);
                }
                return Err(anyhow!("failed to write the grant into the kernel map: {e}").into());
            }
            inner.registry.grants.insert(grant.id, grant.clone());
            self.save(&inner);
            grant
        };
        self.subjects
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(ids::grant(grant.id), grant_info(&grant));
        self.expiry_changed.notify_one();
        info!(grant = %ids::grant(grant.id), subject = %grant.subject, key = %token.key_id, by = %by, "grant issued from a token");
        self.emit(grant_event(&grant, "issued", &token.reason, &format!("{by} (token signed by {})", token.key_id)))
            .await;
        Ok(grant)
    }

    /// Records a refused token. `claims` is what the token says when it could be
    /// decoded (unverified: it names who the token claims to be for, not who it is).
    pub async fn token_refused(&self, mut refused: pb::TokenRefused, claims: Option<&GrantToken>) {
        let (pid, uid) = (refused.caller_pid, refused.caller_uid);
        if let Some(t) = claims {
            refused.key_id.clone_from(&t.key_id);
            refused.host_pattern.clone_from(&t.host);
        }
        let mut ev = agent_event(Kind::TokenRefused(refused));
        if let Some(t) = claims {
            ev.grant.clone_from(&t.grant);
            ev.subject.clone_from(&t.subject);
        }
        ev.pid = pid;
        ev.uid = uid;
        self.emit(ev).await;
    }
}

/// The issuer as listings show it: the approvers, comma-separated.
fn approved_by(token: &GrantToken) -> String {
    if token.approvers.is_empty() { "token (no approvers)".to_owned() } else { token.approvers.join(", ") }
}
