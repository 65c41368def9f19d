//! SSH logins tagged at the door: a real `sshd` on loopback runs `warrant login`
//! as the `ForceCommand` of a real local user. With a valid token for that user
//! and this host the login's command runs as a session (its exec is in the audit
//! log under a `login` session); without one, or with a forged, expired,
//! wrong-host or someone else's token, the login is refused with the reason and
//! nothing runs.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use warrant_tests::tokens::{host_name, rfc3339_in};
use warrant_tests::{AgentOptions, Signer, Sshd, TestAgent, TestUser, audit, bins};

/// Time allowed for an event to reach the audit log.
const T: Duration = Duration::from_secs(10);

/// Logins with and without a good token, against one sshd and one agent whose
/// token door is open to local users.
#[test]
fn ssh_logins_need_a_valid_token_and_run_tagged() {
    let signer = Signer::new();
    let agent = TestAgent::start(AgentOptions {
        grant_public_key: Some(signer.public_key()),
        door: true,
        ..AgentOptions::default()
    });
    // The door socket is 0666; its directory must let the user reach it.
    std::fs::set_permissions(agent.temp_dir(), std::fs::Permissions::from_mode(0o711)).expect("chmod agent dir");
    let user = TestUser::create();
    let uid = user.uid();
    let force = format!("{{warrant}} --socket {} login", agent.door_socket().display());
    let warrant = bins::warrant();
    let sshd = Sshd::start(user.name(), &force, &[("warrant", warrant.as_path())]);
    let host = host_name();
    let subject = format!("user:{}", user.name());

    // A valid token: the command runs, as the user, inside a login session.
    let (ok, grant) = signer.sign(
        "ok",
        &["--subject", &subject, "--host", &host, "--ttl", "10m", "--approver", "bob", "--reason", "INC-7"],
    );
    let out = sshd.ssh(user.name(), Some(&Signer::compact(&ok)), "echo logged-in; id -un");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("logged-in") && stdout.contains(user.name()),
        "a login with a valid token should run its command: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let start = agent.wait_for_event(|e| audit::str_field(e, "kind") == "session_start" && e["grant"] == grant.as_str(), T);
    assert_eq!(start["how"], "login", "{start}");
    assert_eq!(start["caller_uid"], uid, "{start}");
    assert_eq!(start["sandbox"], "landlock+seccomp", "{start}");
    let session = audit::str_field(&start, "session").to_owned();
    let id = agent.wait_for_event(|e| audit::is("exec", &session)(e) && audit::str_field(e, "path").ends_with("/id"), T);
    assert_eq!(id["subject"], subject.as_str(), "{id}");
    assert_eq!(id["uid"], uid, "{id}");

    // Refused logins: the reason reaches the client, nothing runs, and the agent
    // records each refusal.
    let refused = |token: Option<String>, reason: &str| {
        let out = sshd.ssh(user.name(), token.as_deref(), "echo SHOULD-NOT-RUN");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "login should be refused ({reason}): {stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("SHOULD-NOT-RUN"), "the command ran ({reason})");
        assert!(
            stderr.contains(&format!("login refused: token refused: {reason}")),
            "expected the reason {reason:?} on the client's stderr, got: {stderr}"
        );
        let ev = agent.wait_for_event(
            |e| audit::str_field(e, "kind") == "token_refused" && audit::str_field(e, "reason").contains(reason),
            T,
        );
        assert_eq!((ev["how"].as_str(), &ev["caller_uid"]), (Some("login"), &serde_json::json!(uid)), "{ev}");
    };
    refused(None, "no token presented");
    let forger = Signer::new();
    let (forged, _) = forger.sign("forged", &["--subject", &subject, "--host", &host, "--ttl", "10m"]);
    refused(Some(Signer::compact(&forged)), &format!("signed by key {}", forger.id()));
    let (expired, _) = signer.sign(
        "expired",
        &["--subject", &subject, "--host", &host, "--not-before", &rfc3339_in(-900), "--not-after", &rfc3339_in(-120)],
    );
    refused(Some(Signer::compact(&expired)), "expired 2m");
    let (elsewhere, _) = signer.sign("elsewhere", &["--subject", &subject, "--host", "nowhere-*", "--ttl", "10m"]);
    refused(Some(Signer::compact(&elsewhere)), &format!("for host nowhere-*, this is {host}"));
    let (theirs, _) = signer.sign("theirs", &["--subject", "user:root", "--host", &host, "--ttl", "10m"]);
    refused(Some(Signer::compact(&theirs)), &format!("for user:root, presented by user {}", user.name()));
    refused(Some(Signer::compact(&ok)), "already used (replay)");
}
