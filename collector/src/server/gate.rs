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
}
