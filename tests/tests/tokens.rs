//! Signed grant tokens, verified by the agent offline (no collector anywhere):
//! forged, altered, expired, not-yet-valid, wrong-host and replayed tokens are
//! refused with a one-line reason and an audited `token_refused` event; a valid
//! token's session is tagged and held to its policy in the kernel.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use prost::Message as _;
use warrant_proto::GrantToken;
use warrant_proto::token::TokenFile;
use warrant_tests::agent::CLI_TIMEOUT;
use warrant_tests::run::output_within;
use warrant_tests::tokens::{host_name, rfc3339_in};
use warrant_tests::workload::testbin;
use warrant_tests::{AgentOptions, Marker, Signer, TestAgent, audit};

/// Time allowed for an event to reach the audit log.
const T: Duration = Duration::from_secs(10);

fn agent_trusting(signer: &Signer) -> TestAgent {
    TestAgent::start(AgentOptions { grant_public_key: Some(signer.public_key()), ..AgentOptions::default() })
}

/// `warrant exec --token FILE -- argv…`, run to completion.
fn exec_token(agent: &TestAgent, file: &Path, argv: &[&str]) -> Output {
    let mark = Marker::new();
    let mut c = agent.cli_command(&["exec", "--token", file.to_str().expect("UTF-8 path"), "--"]);
    c.args(argv);
    mark.apply(&mut c);
    output_within(&mut c, CLI_TIMEOUT)
}

/// The token is refused: `warrant exec` fails with "token refused: <reason…>",
/// nothing runs, and the audit log has a `token_refused` event with that reason.
fn assert_refused(agent: &TestAgent, file: &Path, reason: &str) -> serde_json::Value {
    let canary = agent.temp_dir().join(format!("ran-{}", warrant_tests::random_hex()));
    let out = exec_token(agent, file, &["touch", canary.to_str().expect("UTF-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a token that should be refused ({reason}) was accepted: {stderr}");
    assert!(
        stderr.contains(&format!("token refused: {reason}")),
        "expected \"token refused: {reason}\" on stderr, got: {stderr}"
    );
    assert!(!canary.exists(), "the command ran although the token was refused");
    let ev = agent.wait_for_event(
        |e| audit::str_field(e, "kind") == "token_refused" && audit::str_field(e, "reason").contains(reason),
        T,
    );
    assert_eq!(ev["how"], "exec", "{ev}");
    assert_eq!(ev["caller_uid"], 0, "{ev}");
    ev
}

/// Rewrites a token file's token with `change` applied to its fields, keeping the
/// original signature: what someone editing a token they were given would make.
fn tamper(file: &Path, out: &Path, change: impl FnOnce(&mut GrantToken)) -> PathBuf {
    let tf = TokenFile::parse(&std::fs::read_to_string(file).expect("read token")).expect("parse token file");
    let parts: Vec<&str> = tf.token.split('.').collect();
    let mut t = GrantToken::decode(B64.decode(parts[1]).expect("base64").as_slice()).expect("decode token");
    change(&mut t);
    let token = format!("{}.{}.{}", parts[0], B64.encode(t.encode_to_vec()), parts[2]);
    std::fs::write(out, TokenFile { token, policy: tf.policy }.render("tampered")).expect("write token");
    out.to_path_buf()
}

/// Every way a token can be bad, against one agent that trusts one key: each is
/// refused with its own reason, offline, and each refusal is on the record.
#[test]
fn bad_tokens_are_refused_with_a_reason_and_audited() {
    let signer = Signer::new();
    let mut agent = agent_trusting(&signer);
    let host = host_name();
    let base = ["--subject", "user:alice", "--host", &host, "--ttl", "10m", "--approver", "bob", "--reason", "INC-42"];

    // Forged: signed by a key this host does not trust.
    let forger = Signer::new();
    let (forged, _) = forger.sign("forged", &base);
    let ev = assert_refused(&agent, &forged, &format!("signed by key {}, which this host does not trust", forger.id()));
    assert_eq!(ev["subject"], "user:alice", "the claimed subject is recorded: {ev}");
    assert_eq!(ev["key_id"], forger.id(), "{ev}");

    // Altered: a field changed, the signature kept (every bit of the token counts).
    let (good, _) = signer.sign("good", &base);
    let longer = tamper(&good, &signer.dir().join("longer.token"), |t| t.not_after_unix_ns += 3_600_000_000_000);
    assert_refused(&agent, &longer, "signature does not verify");
    let other_host = tamper(&good, &signer.dir().join("host.token"), |t| t.host = "*".into());
    assert_refused(&agent, &other_host, "signature does not verify");

    // Altered: the policy swapped for another (or dropped) behind the digest.
    let strict = signer.dir().join("strict.yaml");
    std::fs::write(&strict, "name: strict\nmax_ttl: 1h\ndefault: deny\n").expect("write policy");
    let (with_policy, _) = signer.sign("with-policy", &[&base[..], &["--policy", strict.to_str().expect("UTF-8")]].concat());
    let text = std::fs::read_to_string(&with_policy).expect("read token file");
    let swapped = signer.dir().join("swapped.token");
    std::fs::write(&swapped, text.replace("default: deny", "default: allow")).expect("write");
    assert_refused(&agent, &swapped, "altered: policy does not match its digest");
    let dropped = signer.dir().join("dropped.token");
    let tf = TokenFile::parse(&text).expect("parse");
    std::fs::write(&dropped, TokenFile { policy: String::new(), ..tf }.render("no policy")).expect("write");
    assert_refused(&agent, &dropped, "altered: policy does not match its digest");

    // Well signed, but longer than its own policy allows.
    let short = signer.dir().join("short.yaml");
    std::fs::write(&short, "name: short\nmax_ttl: 5m\ndefault: allow\n").expect("write policy");
    let (too_long, _) = signer.sign("too-long", &[&base[..], &["--policy", short.to_str().expect("UTF-8")]].concat());
    assert_refused(&agent, &too_long, "the token lasts 10m, policy short allows at most 5m");

    // Expired three minutes ago; not valid for another ten.
    let (expired, _) = signer.sign(
        "expired",
        &["--subject", "user:alice", "--host", &host, "--not-before", &rfc3339_in(-1200), "--not-after", &rfc3339_in(-180)],
    );
    assert_refused(&agent, &expired, "expired 3m");
    let (early, _) = signer.sign(
        "early",
        &["--subject", "user:alice", "--host", &host, "--not-before", &rfc3339_in(600), "--not-after", &rfc3339_in(1200)],
    );
    assert_refused(&agent, &early, "not valid yet: starts in ");

    // For other hosts.
    let (elsewhere, _) = signer.sign("elsewhere", &["--subject", "user:alice", "--host", "db-*", "--ttl", "10m"]);
    if !warrant_proto::token::host_matches("db-*", &host) {
        assert_refused(&agent, &elsewhere, &format!("for host db-*, this is {host}"));
    }

    // Replayed: the first use lets a session in, every later one is refused, and
    // the agent remembers across a restart.
    let out = exec_token(&agent, &good, &["true"]);
    assert!(out.status.success(), "a valid token was refused: {}", String::from_utf8_lossy(&out.stderr));
    assert_refused(&agent, &good, "already used (replay)");
    agent.stop();
    agent.restart();
    assert_refused(&agent, &good, "already used (replay)");

    // Garbage and nothing at all.
    let junk = signer.dir().join("junk.token");
    std::fs::write(&junk, "wgt1.!!!.???\n").expect("write");
    assert_refused(&agent, &junk, "malformed token: ");
}

/// A valid token lets a session in without any grant issued on the host: the
/// grant is the token's (id, subject, expiry, approvers as issuer), the session
/// is tagged (its exec is in the audit log under it) and its policy's network
/// deny is enforced in the kernel.
#[test]
fn a_valid_token_session_is_tagged_and_held_to_its_policy() {
    let signer = Signer::new();
    let agent = agent_trusting(&signer);
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let policy = signer.dir().join("no-db.yaml");
    std::fs::write(
        &policy,
        format!("name: no-db\nmax_ttl: 1h\ndefault: allow\nnetwork:\n  - {{cidr: 127.0.0.1/32, ports: [{port}], action: deny}}\n"),
    )
    .expect("write policy");
    let host = host_name();
    let (file, grant) = signer.sign(
        "ok",
        &[
            "--subject", "user:alice", "--host", &host, "--ttl", "10m", "--policy", policy.to_str().expect("UTF-8"),
            "--approver", "bob", "--approver", "carol", "--reason", "INC-42: slow queries",
        ],
    );
    assert!(grant.starts_with("g-"), "{grant}");

    let out = exec_token(&agent, &file, &[&testbin(), "connect", &format!("127.0.0.1:{port}")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("Operation not permitted"), "the policy's deny: {stderr}");
    assert!(stderr.contains(&format!("under grant {grant}")), "{stderr}");

    let issued = agent.wait_for_event(|e| audit::str_field(e, "kind") == "grant_change" && e["grant"] == grant.as_str(), T);
    assert_eq!(issued["change"], "issued", "{issued}");
    assert_eq!(issued["subject"], "user:alice", "{issued}");
    assert!(audit::str_field(&issued, "by").starts_with("bob, carol"), "approvers: {issued}");
    assert!(audit::str_field(&issued, "by").contains(signer.id()), "signing key: {issued}");
    assert_eq!(issued["reason"], "INC-42: slow queries", "{issued}");

    let start = agent.wait_for_event(|e| audit::str_field(e, "kind") == "session_start" && e["grant"] == grant.as_str(), T);
    assert_eq!(start["how"], "exec", "{start}");
    assert_eq!(start["sandbox"], "landlock+seccomp", "{start}");
    let session = audit::str_field(&start, "session").to_owned();
    let exec = agent.wait_for_event(
        |e| audit::is("exec", &session)(e) && audit::str_field(e, "path").ends_with("warrant-testbin"),
        T,
    );
    assert_eq!(exec["subject"], "user:alice", "{exec}");
    let v = agent.wait_for_event(|e| audit::str_field(e, "kind") == "violation" && e["port"] == port, T);
    assert_eq!((v["grant"].as_str(), v["action"].as_str(), v["policy"].as_str()), (Some(grant.as_str()), Some("deny"), Some("no-db")));

    // The grant listing shows who approved it and when it ends (the token's not-after).
    let g = agent.grants().into_iter().find(|g| g["id"] == grant.as_str()).expect("the token's grant is listed");
    assert_eq!(g["subject"], "user:alice", "{g}");
    assert!(g.to_string().contains("bob, carol"), "issued_by: {g}");
}

/// An agent with no `grant_public_key` refuses every token, and says why.
#[test]
fn without_a_trusted_key_tokens_are_refused() {
    let signer = Signer::new();
    let agent = TestAgent::start_default();
    let (file, _) = signer.sign("t", &["--subject", "user:alice", "--host", "*", "--ttl", "5m"]);
    assert_refused(&agent, &file, "no grant public key configured on this host (grant_public_key)");
}
