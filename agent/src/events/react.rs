//! The last stage: acting on violations the kernel could only start.

use std::sync::Arc;

use tracing::warn;
use warrant_proto::v1 as pb;

use crate::host::{self, Host};

/// Whether the agent must act on a violation: the kernel refused the call, but
/// killing the process (for file and exec rules: Landlock cannot), the session's
/// tree kill, and socket teardown are the agent's to do.
pub fn needs_reaction(v: &pb::Violation) -> bool {
    match v.action.as_str() {
        "kill-session" | "drop" => true,
        // A network `kill` rule dooms the task in the kernel already, as does the
        // kernel's own kill of a nameless exec (a violation without a policy rule).
        "kill" => !matches!(v.op.as_str(), "connect" | "sendmsg" | "bind") && v.rule != "self-protection",
        _ => false,
    }
}

/// Acts on policy violations the kernel could only start: a `kill-session` rule
/// (the network hook already made the session dead in the kernel; a Landlock refusal
/// did not) runs the tree kill and records it; a file or exec `kill` rule kills the
/// process Landlock refused; a `drop` rule destroys the session's open sockets.
pub async fn react_loop(host: Arc<Host>, mut rx: tokio::sync::mpsc::UnboundedReceiver<pb::Event>) {
    while let Some(ev) = rx.recv().await {
        let Some(pb::event::Event::Violation(v)) = &ev.event else { continue };
        let target = match (v.path.is_empty(), v.addr.is_empty()) {
            (false, _) => v.path.clone(),
            (true, false) => format!("{}:{}", v.addr, v.port),
            (true, true) => v.detail.clone(),
        };
        let by = format!("policy rule {} ({} {target})", v.rule, v.op);
        match v.action.as_str() {
            "drop" => {
                if let Err(e) = host.drop_sockets(&ev.session, &by).await {
                    warn!("dropping the sockets of session {} failed: {e}", ev.session);
                }
            }
            "kill" => host.kill_process(&ev.session, ev.pid, &by).await,
            _ => match host.kill_session(&ev.session, host::KillReason::Policy, &by, "").await {
                Ok(_) | Err(host::HostError::Invalid(_)) => {} // already ended by an earlier violation
                Err(e) => warn!("policy kill of session {} failed: {e}", ev.session),
            },
        }
    }
}

