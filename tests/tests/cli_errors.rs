//! CLI errors: every failure an operator can cause is one line on stderr that says
//! what is wrong (`warrant: …`, optionally followed by a blank line and a hint, as
//! STYLE.md §8 asks), with a non-zero exit status; a refused `warrant exec` never runs
//! the command.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::Duration;

use warrant_tests::run::output_within;
use warrant_tests::workload::{testbin, unique_path};
use warrant_tests::{Marker, TestAgent, bins};

/// Asserts that `out` failed with a one-line error containing one of `needles`: the
/// first stderr line, starting `warrant: `; anything after it must be a hint set off
/// by a blank line.
fn assert_one_line_error(what: &str, out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what} should fail; stderr: {err}");
    let lines: Vec<&str> = err.trim_end().lines().collect();
    let first = lines.first().copied().unwrap_or("");
    assert!(first.starts_with("warrant: "), "{what}: the error line starts `warrant: `: {err}");
    assert!(
        needles.iter().any(|n| first.contains(n)),
        "{what}: the error line should say one of {needles:?}, says: {err}"
    );
    assert!(
        lines.len() == 1 || lines[1].is_empty(),
        "{what}: one error line, then only a hint after a blank line: {err}"
    );
}

/// With no agent on the socket, a command fails with "cannot reach the agent":
/// both when the socket file does not exist and when it exists but nobody listens.
#[test]
fn no_agent_cannot_reach() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.sock");
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind stale socket"));
    for sock in [&missing, &stale] {
        let out = output_within(
            Command::new(bins::warrant()).arg("--socket").arg(sock).arg("status"),
            Duration::from_secs(30),
        );
        assert_one_line_error(&format!("status on {}", sock.display()), &out, &["cannot reach the agent"]);
    }
}

/// A caller who may not use the socket (uid 65534, through setpriv) gets "no
/// permission", not a generic connection error.
#[test]
fn unprivileged_caller_gets_no_permission() {
    let agent = TestAgent::start_default();
    // Let uid 65534 reach the socket file, so the socket's own mode is what refuses.
    std::fs::set_permissions(agent.temp_dir(), std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    let out = output_within(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bins::warrant())
            .arg("--socket")
            .arg(agent.socket())
            .arg("status"),
        Duration::from_secs(30),
    );
    assert_one_line_error("status as uid 65534", &out, &["no permission"]);
}

/// A grant id the agent never issued is refused with "unknown grant" by exec (which
/// then never runs the command), attach and revoke.
#[test]
fn unknown_grant_is_refused() {
    let agent = TestAgent::start_default();
    let mark = Marker::new();
    let proof = unique_path(agent.temp_dir(), "ran");
    let proof_s = proof.to_string_lossy().into_owned();
    let bogus = "g-000000000000";
    let out = output_within(
        &mut agent.exec_command(bogus, &mark, &[&testbin(), "open", &proof_s, "write"]),
        Duration::from_secs(30),
    );
    assert_one_line_error("exec under an unknown grant", &out, &["unknown grant"]);
    assert!(!proof.exists(), "the command ran under an unknown grant");

    let me = std::process::id().to_string();
    let out = agent.cli(&["attach", "--grant", bogus, "--pid", &me]);
    assert_one_line_error("attach to an unknown grant", &out, &["unknown grant"]);
    let out = agent.cli(&["revoke", "--grant", bogus]);
    assert_one_line_error("revoke of an unknown grant", &out, &["unknown grant"]);
}

/// An expired grant is refused with "expired" and the command does not run.
#[test]
fn expired_grant_is_refused() {
    let agent = TestAgent::start_default();
    let mark = Marker::new();
    let grant = agent.issue_grant("1s");
    std::thread::sleep(Duration::from_millis(1500));
    let proof = unique_path(agent.temp_dir(), "ran");
    let proof_s = proof.to_string_lossy().into_owned();
    let out = output_within(
        &mut agent.exec_command(&grant, &mark, &[&testbin(), "open", &proof_s, "write"]),
        Duration::from_secs(30),
    );
    assert_one_line_error("exec under an expired grant", &out, &["expired"]);
    assert!(!proof.exists(), "the command ran under an expired grant");
}

/// A TTL of zero or beyond the agent's maximum (48h against the 24h default) is
/// refused with "invalid ttl", and no grant is issued.
#[test]
fn invalid_ttl_is_refused() {
    let agent = TestAgent::start_default();
    for ttl in ["0s", "48h"] {
        let out = agent.cli(&["grant", "issue", "--subject", "s", "--ttl", ttl, "--reason", "r"]);
        // "invalid ttl" is the documented wording; the CLI names the flag ("invalid --ttl"), as STYLE.md asks.
        assert_one_line_error(&format!("grant issue --ttl {ttl}"), &out, &["invalid ttl", "invalid --ttl"]);
    }
    let grants = agent.cli_ok(&["grants", "--json", "--all"]);
    assert!(grants.trim().is_empty(), "no grant may have been issued: {grants}");
}

/// `warrant exec` of a command that does not exist exits 127 and says "command not
/// found" (after its session line).
#[test]
fn command_not_found_exits_127() {
    let agent = TestAgent::start_default();
    let mark = Marker::new();
    let grant = agent.issue_grant("2m");
    let out = output_within(
        &mut agent.exec_command(&grant, &mark, &["/nonexistent/warrant-test-command"]),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "stderr: {err}");
    let last = err.trim_end().lines().last().unwrap_or("");
    assert!(last.contains("command not found"), "stderr: {err}");
}

/// The event filter `watch` and `query` share fails before anything is connected,
/// as one line naming the flag and the value: a misspelt `--kind` (with the valid
/// kinds as the hint), filters only a collector can apply, and a time range
/// backwards. No agent or collector runs here.
#[test]
fn filter_errors_name_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("none.sock");
    let run = |args: &[&str]| {
        output_within(
            Command::new(bins::warrant())
                .arg("--socket")
                .arg(&sock)
                .args(args)
                .env_remove("WARRANT_COLLECTOR"),
            Duration::from_secs(30),
        )
    };
    for cmd in ["watch", "query"] {
        let out = run(&[cmd, "--kind", "exec,fiel"]);
        assert_one_line_error(&format!("{cmd} --kind exec,fiel"), &out, &["invalid --kind fiel: no such event kind"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("file (file_open, file_change)"), "{cmd}: the hint lists the shorthands: {err}");
    }
    let out = run(&["watch", "--subject", "alice", "--since", "10m"]);
    assert_one_line_error("watch --subject --since", &out, &["--subject and --since need --collector"]);
    let out = run(&["query", "--grant", "g-1"]);
    assert_one_line_error("query without a collector", &out, &["query needs --collector"]);
    let collector = ["--collector", "https://127.0.0.1:1"];
    let out = run(&[&collector[..], &["query", "--from", "10m", "--to", "2h"]].concat());
    assert_one_line_error("query --from after --to", &out, &["--from is after --to"]);
    let out = run(&[&collector[..], &["watch", "--since", "yesterday"]].concat());
    assert_one_line_error("watch --since yesterday", &out, &["invalid --since yesterday"]);
}
