//! The gate: every call's certificate name is mapped to a role before anything
//! else happens; a refusal is `PERMISSION_DENIED` and a `control_action` record.

use std::sync::atomic::Ordering::Relaxed;

use tonic::{Request, Status};

use super::State;
use crate::auth::{Role, identity};

impl State {
    /// The caller's identity, if it holds `needed`; a refusal is logged and
    /// recorded.
    pub(crate) async fn authorize<T>(&self, req: &Request<T>, needed: Role, rpc: &str) -> Result<String, Status> {
        let who = identity(req)?;
        match self.roles.check(&who, needed, rpc) {
            Ok(_) => Ok(who),
            Err(why) => {
                self.metrics.refused.fetch_add(1, Relaxed);
                tracing::warn!(identity = %who, rpc, "refused: {why}");
                if let Err(e) = self.writer.record("refused", &who, &format!("rpc {rpc}"), "refused", &why).await {
                    tracing::error!(error = %e, "cannot record a refused call");
                }
                Err(Status::permission_denied(why))
            }
        }
    }

    /// Refuses what `who` tried on `target`: logged, counted, recorded as a
    /// `control_action` refused; the status to answer with.
    pub(crate) async fn refuse(&self, who: &str, target: &str, why: &str) -> Status {
        self.metrics.refused.fetch_add(1, Relaxed);
        tracing::warn!(identity = %who, target, "refused: {why}");
        if let Err(e) = self.writer.record("refused", who, target, "refused", why).await {
            tracing::error!(error = %e, "cannot record a refusal");
        }
        Status::permission_denied(why.to_owned())
    }

    /// Binds agent id `agent` to certificate name `who`, or says why `who` may
    /// not speak as `agent`. An agent id belongs to the certificate named in the
    /// config's `agent_ids` for it, else to the first certificate that connected as
    /// it (recorded by its `agent_connect` record, so the binding outlives restarts
    /// and index rebuilds). A certificate named in `agent_ids` speaks only as its
    /// agent id.
    pub(crate) fn bind(&self, who: &str, agent: &str) -> Result<(), String> {
        if let Some(own) = self.agent_ids.get(who)
            && own != agent
        {
            return Err(format!("certificate {who:?} may only speak as agent {own:?} (agent_ids in the collector config), not as {agent:?}"));
        }
        if let Some((cert, _)) = self.agent_ids.iter().find(|(c, a)| *a == agent && *c != who) {
            return Err(format!("agent {agent:?} belongs to certificate {cert:?} (agent_ids in the collector config), not to {who:?}"));
        }
        let mut agents = self.agents();
        match agents.owners.get(agent) {
            Some(owner) if owner != who => Err(format!(
                "agent {agent:?} is bound to certificate {owner:?} (the first to connect as it); certificate {who:?} may not speak for it"
            )),
            Some(_) => Ok(()),
            None => {
                agents.owners.insert(agent.to_owned(), who.to_owned());
                Ok(())
            }
        }
    }
}
