//! Grant requests and approvals on a real collector, over TCP with mTLS, driven
//! through the `warrant` CLI as each person (the policies are the collector's
//! catalogue, pushed by the admin; `policy_catalogue.rs` tests the catalogue): a quorum of two approvals issues a
//! token signed with the collector's key that a real agent accepts offline; self-
//! approval, approval without the policy's role, a TTL above `max_ttl`, a subject
//! kind the policy does not admit, and approving a denied request are refused with
//! their reasons; an unanswered request expires; every step is a `control_action`
//! in the collector's log, and requests survive a restart.

use std::path::{Path, PathBuf};

use serde_json::Value;
use warrant_tests::agent::CLI_TIMEOUT;
use warrant_tests::fleet::{cli_ok_as, cli_refused_as, control_actions, request_json_as, stderr_text};
use warrant_tests::run::output_within;
use warrant_tests::{AgentOptions, Marker, Signer, TestAgent, TestCollector};

/// A collector that signs with `signer`'s key, with alice (requester), bob and
/// carol (approvers) and wally (watcher), and one AI agent, claude.
fn collector(signer: &Signer, extra: &[&str]) -> TestCollector {
    TestCollector::start_signing(signer, &["alice=requester", "bob=approver", "carol=approver", "wally=watcher"], extra)
}

/// Writes the policy `name` and pushes it to the catalogue as the admin; its name.
fn policy(c: &TestCollector, dir: &Path, name: &str, extra: &str) -> String {
    let p: PathBuf = dir.join(format!("{name}.yaml"));
    std::fs::write(&p, format!("name: {name}\nmax_ttl: 1h\ndefault: allow\n{extra}")).expect("write policy");
    cli_ok_as(c, "admin", &["policy", "push", p.to_str().expect("UTF-8 path")]);
    name.to_owned()
}

/// `warrant request --policy NAME …` as `who`; the request id.
fn request(c: &TestCollector, who: &str, policy: &str, args: &[&str]) -> String {
    let out = cli_ok_as(c, who, &[&["request", "--policy", policy][..], args].concat());
    let id = out.trim().to_owned();
    assert!(id.starts_with("r-"), "request should print its id, printed {out:?}");
    id
}

fn has_action(c: &TestCollector, action: &str, outcome: &str, by: &str, detail: &str) -> bool {
    control_actions(c).iter().any(|a| a.0 == action && a.1 == outcome && a.2 == by && a.4.contains(detail))
}

/// A policy that needs two approvals: the first leaves the request pending (and no
/// token for anyone), the second issues a token naming both approvers, which the
/// requester fetches and a real agent trusting the collector's key accepts offline.
#[test]
fn quorum_of_two_issues_a_token_the_agent_accepts() {
    let signer = Signer::new();
    let c = collector(&signer, &[]);
    let p = policy(&c, signer.dir(), "ops", "approvals: 2\n");
    let id = request(&c, "alice", &p, &["--ttl", "10m", "--reason", "INC-42: slow queries"]);

    let pending = cli_ok_as(&c, "wally", &["requests", "--json"]);
    let listed: Vec<Value> = pending.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert!(listed.iter().any(|r| r["id"] == id.as_str() && r["state"] == "pending" && r["subject"] == "user:alice"), "{pending}");

    let one = cli_ok_as(&c, "bob", &["approve", &id]);
    assert!(one.contains("1 of 2 approvals, still pending"), "{one}");
    assert_eq!(request_json_as(&c, "alice", &id)["state"], "pending");
    let token = signer.dir().join("alice.token");
    let tok = token.to_str().expect("UTF-8");
    cli_refused_as(&c, "alice", &["requests", "--id", &id, "--token-out", tok], "it is pending");

    let two = cli_ok_as(&c, "carol", &["approve", &id]);
    assert!(two.contains("grant g-") && two.contains("issued for user:alice"), "{two}");
    let r = request_json_as(&c, "alice", &id);
    assert_eq!((r["state"].as_str(), r["approvers"].clone()), (Some("approved"), serde_json::json!(["bob", "carol"])), "{r}");
    let grant = r["grant"].as_str().expect("grant").to_owned();

    // The token is the requester's alone.
    cli_refused_as(&c, "bob", &["requests", "--id", &id, "--token-out", tok], "only its requester \"alice\" may fetch the token");
    cli_ok_as(&c, "alice", &["requests", "--id", &id, "--token-out", tok]);
    let text = std::fs::read_to_string(&token).expect("token file");
    assert!(text.contains("wgt1.") && text.contains("approvals: 2"), "the token file carries the token and the policy:\n{text}");

    // A real agent that trusts the collector's key lets the session in, offline.
    let agent = TestAgent::start(AgentOptions { grant_public_key: Some(signer.public_key()), ..AgentOptions::default() });
    let canary = agent.temp_dir().join("ran");
    let mark = Marker::new();
    let mut cmd = agent.cli_command(&["exec", "--token", tok, "--", "touch", canary.to_str().expect("UTF-8")]);
    mark.apply(&mut cmd);
    let out = output_within(&mut cmd, CLI_TIMEOUT);
    assert!(out.status.success(), "the agent refused the collector's token: {}\n{}", stderr_text(&out), agent.log_tail(40));
    assert!(canary.exists(), "the command did not run");
    let ev = agent.wait_for_event(|e| e["kind"] == "grant_change" && e["grant"] == grant.as_str(), std::time::Duration::from_secs(10));
    assert_eq!(ev["subject"], "user:alice", "{ev}");
    assert!(ev["by"].as_str().is_some_and(|b| b.starts_with("bob, carol")), "the approvers are the token's: {ev}");

    // Every step is on the record.
    assert!(has_action(&c, "request", "ok", "alice", "needs 2 approval(s) from role approver"), "{:#?}", control_actions(&c));
    assert!(has_action(&c, "approve", "ok", "bob", "1 of 2 approvals"), "{:#?}", control_actions(&c));
    assert!(has_action(&c, "approve", "ok", "carol", "2 of 2 approvals"), "{:#?}", control_actions(&c));
    assert!(has_action(&c, "issue", "ok", "carol", &format!("grant {grant}")), "{:#?}", control_actions(&c));

    // An extension is a new request that needs approval again.
    let ext = cli_ok_as(&c, "alice", &["extend", &grant, "--by", "15m"]);
    let ext_id = ext.trim();
    let r = request_json_as(&c, "wally", ext_id);
    assert_eq!((r["state"].as_str(), r["extends"].as_str()), (Some("pending"), Some(grant.as_str())), "{r}");
    assert!(has_action(&c, "extend", "ok", "alice", &format!("grant {grant} by 15m")), "{:#?}", control_actions(&c));
    cli_refused_as(&c, "bob", &["extend", &grant, "--by", "15m"], "only they may extend it");
}

/// Each rule refuses with its reason, and each refusal is a `refused` record.
#[test]
fn refusals_name_their_reason_and_are_audited() {
    let signer = Signer::new();
    let c = collector(&signer, &[]);
    let p = policy(&c, signer.dir(), "ops", "");
    let users_only = policy(&c, signer.dir(), "people", "subjects: [user]\n");
    let pp = p.as_str();

    // TTL above max_ttl: refused at request time.
    cli_refused_as(&c, "alice", &["request", "--policy", pp, "--ttl", "2h", "--reason", "x"], "ttl 2h exceeds policy ops's max_ttl 1h");
    assert!(has_action(&c, "request", "refused", "alice", "exceeds policy ops's max_ttl 1h"), "{:#?}", control_actions(&c));
    // A subject kind the policy does not admit.
    let up = users_only.as_str();
    cli_refused_as(&c, "alice", &["request", "--policy", up, "--ttl", "5m", "--reason", "x", "--for-agent", "claude"], "does not admit agent subjects");
    // An agent subject where admitted.
    let agent_req = request(&c, "alice", &p, &["--ttl", "5m", "--reason", "x", "--for-agent", "claude"]);
    assert_eq!(request_json_as(&c, "alice", &agent_req)["subject"], "agent:claude");

    // Nobody approves their own request (bob may request: approvers may).
    let own = request(&c, "bob", &p, &["--ttl", "5m", "--reason", "INC-7"]);
    cli_refused_as(&c, "bob", &["approve", &own], "it is their own request");
    assert!(has_action(&c, "approve", "refused", "bob", "it is their own request"), "{:#?}", control_actions(&c));
    // Not the policy's approver role: a watcher, and a requester.
    cli_refused_as(&c, "wally", &["approve", &own], "needs role approver (or admin), and \"wally\" has role watcher");
    cli_refused_as(&c, "alice", &["approve", &own], "has role requester");
    // A watcher may not request at all.
    cli_refused_as(&c, "wally", &["request", "--policy", pp, "--ttl", "5m", "--reason", "x"], "Request needs role requester");

    // Denied is final: it cannot be approved afterwards.
    cli_ok_as(&c, "carol", &["deny", &own, "--reason", "change freeze"]);
    let r = request_json_as(&c, "bob", &own);
    assert_eq!((r["state"].as_str(), r["denied_by"].as_str(), r["deny_reason"].as_str()), (Some("denied"), Some("carol"), Some("change freeze")));
    cli_refused_as(&c, "carol", &["approve", &own], &format!("request {own} is denied, not pending"));
    cli_refused_as(&c, "admin", &["approve", &own], "is denied, not pending");
    assert!(has_action(&c, "deny", "ok", "carol", "change freeze"), "{:#?}", control_actions(&c));
    assert!(!has_action(&c, "issue", "ok", "admin", ""), "nothing was issued");
}

/// A request nobody acts on expires (and says so in the log); a restart keeps it.
#[test]
fn unanswered_request_expires_and_survives_a_restart() {
    let signer = Signer::new();
    let mut c = collector(&signer, &["--request-timeout", "2s"]);
    let p = policy(&c, signer.dir(), "ops", "");
    let id = request(&c, "alice", &p, &["--ttl", "5m", "--reason", "x"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !has_action(&c, "timeout", "expired", "collector", "nobody acted in time") {
        assert!(std::time::Instant::now() < deadline, "no timeout record:\n{:#?}", control_actions(&c));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(request_json_as(&c, "wally", &id)["state"], "expired");
    cli_refused_as(&c, "bob", &["approve", &id], "is expired, not pending");
    c.restart();
    assert_eq!(request_json_as(&c, "wally", &id)["state"], "expired", "the restart kept the request");
    let all = cli_ok_as(&c, "wally", &["requests", "--all", "--json"]);
    assert!(all.contains(&id), "{all}");
}

/// `warrant request --wait` waits for the outcome: a denial ends it with who and
/// why; an approval writes the token file where `--token-out` says.
#[test]
fn request_wait_ends_with_the_outcome() {
    let signer = Signer::new();
    let c = collector(&signer, &[]);
    let p = policy(&c, signer.dir(), "ops", "");
    let spawn_wait = |token: &Path| {
        let id = c.identity("alice");
        std::process::Command::new(warrant_tests::bins::warrant())
            .env_remove("WARRANT_COLLECTOR")
            .args(["--collector", &c.url()])
            .arg("--ca").arg(&id.ca).arg("--cert").arg(&id.cert).arg("--key").arg(&id.key)
            .args(["request", "--policy", p.as_str(), "--ttl", "5m", "--reason", "x", "--wait", "--token-out"])
            .arg(token)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn warrant request --wait")
    };
    let pending_id = || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let out = cli_ok_as(&c, "wally", &["requests", "--json"]);
            if let Some(id) = out.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find_map(|r| r["id"].as_str().map(str::to_owned)) {
                return id;
            }
            assert!(std::time::Instant::now() < deadline, "the request never showed up");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };

    let token = signer.dir().join("waited.token");
    let child = spawn_wait(&token);
    let id = pending_id();
    cli_ok_as(&c, "carol", &["deny", &id, "--reason", "change freeze"]);
    let out = child.wait_with_output().expect("wait");
    assert!(!out.status.success(), "a denied wait must fail");
    assert!(stderr_text(&out).contains(&format!("request {id} was denied by carol: change freeze")), "{}", stderr_text(&out));
    assert!(!token.exists());

    let child = spawn_wait(&token);
    let id = pending_id();
    cli_ok_as(&c, "bob", &["approve", &id]);
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id, "the id is printed first");
    assert!(std::fs::read_to_string(&token).expect("token written").contains("wgt1."));
}
