//! What a policy grants, in words: one line per rule and limit, for the people who
//! approve a request under it (`warrant requests --id R`, `warrant policy show`).
//!
//! The lines follow the policy's own order and use the names of the policy file
//! (`exec /usr/bin/psql -> allow`), so an approver can match each line to the text.
//! Limits left at their defaults are still stated (`io_uring: refused`), because
//! what a session may *not* do is part of what is granted.

use std::time::Duration;

use crate::model::{AuditGapAction, MaxProcessesAction, Policy};

impl Policy {
    /// What the policy grants, one line each: its length and approval rules, the
    /// default for anything no rule matches, every rule, and the session's limits.
    #[must_use]
    pub fn grants(&self) -> Vec<String> {
        let subjects = self.approval.subjects.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
        let mut lines = vec![
            format!("lasts at most {} (max_ttl); when it ends: {}", human(self.max_ttl), self.on_expiry),
            format!(
                "needs {} approval(s) from role {} (or admin), never the requester's own; subjects: {subjects}",
                self.approval.approvals, self.approval.approver_role
            ),
            format!("anything no rule matches -> {}", self.default),
        ];
        lines.extend(self.exec.iter().map(|r| format!("exec {r}")));
        if !self.confinement.writable_exec {
            lines.push("exec of a file the session may write -> deny (W^X)".to_owned());
        }
        lines.extend(self.files.iter().map(|r| format!("file {r}")));
        lines.extend(self.network.iter().map(|r| format!("connect {r}")));
        lines.extend(self.bind.iter().map(|r| format!("bind {r}")));
        lines.extend(self.unix.iter().map(|r| format!("unix socket {r}")));
        let c = &self.confinement;
        lines.push(format!(
            "at most {} tasks at once (over it: {})",
            c.max_processes,
            match c.on_max_processes {
                MaxProcessesAction::Refuse => "the new task is refused",
                MaxProcessesAction::KillSession => "the session is killed",
            }
        ));
        lines.push(format!("io_uring: {}; raw and packet sockets: {}", allowed(c.io_uring), allowed(c.raw_sockets)));
        lines.push(format!(
            "a gap in the audit trail: {}",
            match c.on_audit_gap {
                AuditGapAction::Log => "logged",
                AuditGapAction::KillSession => "kills the session",
            }
        ));
        lines
    }
}

fn allowed(yes: bool) -> &'static str {
    if yes { "allowed" } else { "refused" }
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use crate::Policy;

    #[test]
    fn every_rule_and_limit_is_a_line() {
        let p = Policy::from_yaml(include_str!("../examples/db-debug.yaml"), "db-debug.yaml").unwrap();
        let lines = p.grants();
        assert_eq!(lines[0], "lasts at most 1h (max_ttl); when it ends: kill-session");
        assert!(lines[1].starts_with("needs 1 approval(s) from role approver (or admin)"), "{lines:?}");
        assert_eq!(lines[2], "anything no rule matches -> allow");
        assert!(lines.contains(&"exec /usr/bin/psql -> allow".to_owned()), "{lines:?}");
        assert!(lines.contains(&"file /var/lib/postgresql/ write -> deny".to_owned()), "{lines:?}");
        assert!(lines.contains(&"connect 10.0.0.0/8 ports 5432 -> allow".to_owned()), "{lines:?}");
        assert!(lines.contains(&"io_uring: refused; raw and packet sockets: refused".to_owned()), "{lines:?}");
        let p = Policy::from_yaml("name: x\nmax_ttl: 90m\ndefault: deny\napprovals: 2\n", "x").unwrap();
        assert_eq!(p.grants()[0], "lasts at most 1h 30m (max_ttl); when it ends: kill-session");
        assert!(p.grants()[1].starts_with("needs 2 approval(s)"));
    }
}
