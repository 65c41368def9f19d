//! The policy catalogue on a real collector, over TCP with mTLS: requests name a
//! policy an admin pushed, so a requester no longer writes the rules of their own
//! approval. Driven through the `warrant` CLI as each person, and, for the
//! misbehaving client, through raw gRPC with the old request shape (the policy's
//! text in fields 1 and 2): a request that carries its own text with
//! `approver_role: requester` gets no peer-approvable request; a name not in the
//! catalogue and a digest that is no version of it are refused (NOT_FOUND); only an
//! admin pushes; a malformed push names the line and the field, and a policy whose
//! `approver_role` is `requester` is refused at push; every push is a
//! `control_action`; a request pins the version it was made against, and approvers
//! see its text and what it grants; `--for-agent` must name an AI agent the
//! collector knows.

use std::path::PathBuf;

use serde_json::Value;
use tonic::codegen::http::uri::PathAndQuery;
use warrant_proto::RequestInfo;
use warrant_tests::collector::client::connect;
use warrant_tests::fleet::{cli_ok_as, cli_refused_as, control_actions, request_json_as, stderr_text};
use warrant_tests::{Signer, TestCollector};

/// A collector that signs with `signer`'s key: alice and dave (requesters), bob
/// (approver), wally (watcher), the standard admin, and one AI agent, claude.
fn collector(signer: &Signer) -> TestCollector {
    TestCollector::start_signing(signer, &["alice=requester", "dave=requester", "bob=approver", "wally=watcher"], &[])
}

fn write(signer: &Signer, file: &str, text: &str) -> PathBuf {
    let p = signer.dir().join(file);
    std::fs::write(&p, text).expect("write policy");
    p
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}"))).collect()
}

fn count_actions(c: &TestCollector, action: &str, outcome: &str, by: &str, detail: &str) -> usize {
    control_actions(c).iter().filter(|a| a.0 == action && a.1 == outcome && a.2 == by && a.4.contains(detail)).count()
}

/// `warrant.v1.AccessRequest` as clients before the catalogue sent it: the
/// requester's own policy text (fields 1 and 2, now reserved), plus the new name.
#[derive(Clone, PartialEq, prost::Message)]
struct OldAccessRequest {
    #[prost(string, tag = "1")]
    policy: String,
    #[prost(string, tag = "2")]
    policy_file: String,
    #[prost(uint64, tag = "3")]
    ttl_seconds: u64,
    #[prost(string, tag = "4")]
    reason: String,
    #[prost(string, tag = "5")]
    host: String,
    #[prost(string, tag = "7")]
    policy_name: String,
}

/// `Approvals.Request` as `who`, with raw fields.
fn raw_request(c: &TestCollector, who: &str, req: OldAccessRequest) -> Result<RequestInfo, tonic::Status> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let channel = connect(&c.url(), &c.identity(who)).await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<OldAccessRequest, RequestInfo>::default();
        let path = PathAndQuery::from_static("/warrant.v1.Approvals/Request");
        Ok(grpc.unary(tonic::Request::new(req), path, codec).await?.into_inner())
    })
}

const OPS: &str = "# on-call access to the ops hosts\nname: ops\nmax_ttl: 1h\ndefault: allow\nexec: [{path: /usr/bin/psql, action: allow}]\n";

/// The hole this closes: a requester who sends their own policy text, with
/// `approver_role: requester` and a long max_ttl, gets no request at all without a
/// catalogue name, and with one gets the catalogue's rules, not theirs: a peer
/// requester cannot approve it, and the TTL is the catalogue policy's.
#[test]
fn a_requester_cannot_write_the_rules_of_their_own_approval() {
    let signer = Signer::new();
    let c = collector(&signer);
    cli_ok_as(&c, "admin", &["policy", "push", path(&write(&signer, "ops.yaml", OPS))]);
    let own = "name: mine\nmax_ttl: 24h\ndefault: allow\napprover_role: requester\n".to_owned();
    let old = OldAccessRequest {
        policy: own.clone(),
        policy_file: "mine.yaml".into(),
        ttl_seconds: 3600,
        reason: "INC-1".into(),
        host: "*".into(),
        policy_name: String::new(),
    };

    // Text only, the old shape: refused, and no request exists.
    let e = raw_request(&c, "alice", old.clone()).expect_err("a request with its own policy text must be refused");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("names a policy from the collector's catalogue"), "{e:?}");
    assert!(e.message().contains("takes no policy text from a requester"), "{e:?}");
    let listed = cli_ok_as(&c, "wally", &["requests", "--all", "--json"]);
    assert!(listed.trim().is_empty(), "no request was made: {listed}");
    assert_eq!(count_actions(&c, "request", "refused", "alice", "takes no policy text"), 1, "{:#?}", control_actions(&c));

    // The text alongside a catalogue name is ignored: the catalogue's max_ttl...
    let e = raw_request(&c, "alice", OldAccessRequest { policy_name: "ops".into(), ttl_seconds: 2 * 3600, ..old.clone() })
        .expect_err("the catalogue's max_ttl applies");
    assert!(e.message().contains("ttl 2h exceeds policy ops's max_ttl 1h"), "{e:?}");
    // ...and the catalogue's approver role.
    let r = raw_request(&c, "alice", OldAccessRequest { policy_name: "ops".into(), ttl_seconds: 600, ..old })
        .expect("a request naming a catalogue policy");
    assert_eq!((r.policy_name.as_str(), r.approver_role.as_str(), r.approvals_needed), ("ops", "approver", 1), "{r:?}");
    assert_eq!(r.policy_text, OPS, "the request carries the catalogue's text");
    cli_refused_as(&c, "dave", &["approve", &r.id], "needs role approver (or admin), and \"dave\" has role requester");
    assert_eq!(request_json_as(&c, "alice", &r.id)["state"], "pending", "a peer requester could not approve it");
    let seen = cli_ok_as(&c, "bob", &["requests", "--id", &r.id]);
    assert!(!seen.contains("approver_role: requester") && seen.contains("| name: ops"), "approvers see the catalogue's text:\n{seen}");
    let done = cli_ok_as(&c, "bob", &["approve", &r.id]);
    assert!(done.contains("issued for user:alice"), "{done}");
}

/// Only an admin pushes; a malformed policy is refused naming its line and field;
/// each push (refusals too) is a `control_action`; versions are kept by digest and
/// survive a restart.
#[test]
fn push_list_show_and_every_push_on_the_record() {
    let signer = Signer::new();
    let mut c = collector(&signer);
    let ops = write(&signer, "ops.yaml", OPS);

    // Not an admin: refused, and recorded.
    cli_refused_as(&c, "bob", &["policy", "push", path(&ops)], "PushPolicy needs role admin, and \"bob\" has role approver");
    cli_refused_as(&c, "alice", &["policy", "push", path(&ops)], "PushPolicy needs role admin");
    assert!(
        control_actions(&c).iter().any(|a| a.0 == "refused" && a.2 == "bob" && a.3 == "rpc Policies.PushPolicy"),
        "{:#?}",
        control_actions(&c)
    );

    // Malformed: the problem's file, line and field, exit status 2; nothing added.
    let bad = write(&signer, "bad.yaml", "name: ops\nmax_ttl: 1h\ndefault: allow\nexce: [{path: /bin/sh, action: allow}]\n");
    let out = cli_refused_as(&c, "admin", &["policy", "push", path(&bad)], &format!("{}:4: exce: unknown field", path(&bad)));
    assert_eq!(out.status.code(), Some(2), "{}", stderr_text(&out));
    let role = write(&signer, "role.yaml", "name: ops\nmax_ttl: 1h\ndefault: allow\napprover_role: agent\n");
    cli_refused_as(&c, "admin", &["policy", "push", path(&role)], "names approver_role \"agent\", which is not a collector person role");
    // A policy whose approvers would be its requesters' peers: refused, naming the
    // file, the field and why.
    let own = write(&signer, "own.yaml", "name: ops\nmax_ttl: 1h\ndefault: allow\napprover_role: requester\n");
    let out = cli_refused_as(&c, "admin", &["policy", "push", path(&own)], &format!("{}: approver_role: policy ops names approver_role \"requester\"", path(&own)));
    assert!(stderr_text(&out).contains("requesters could approve each other's requests"), "{}", stderr_text(&out));
    assert_eq!(count_actions(&c, "policy_push", "refused", "admin", "names approver_role \"requester\""), 1, "{:#?}", control_actions(&c));
    assert!(cli_ok_as(&c, "wally", &["policy", "list", "--json"]).trim().is_empty(), "nothing was added");
    assert_eq!(count_actions(&c, "policy_push", "refused", "admin", "exce: unknown field"), 1, "{:#?}", control_actions(&c));

    // Push, push the same again (nothing changes), push a new version.
    let one = cli_ok_as(&c, "admin", &["policy", "push", path(&ops)]);
    assert!(one.contains("policy ops sha256:") && one.contains("pushed, now current (1 version(s))"), "{one}");
    let again = cli_ok_as(&c, "admin", &["policy", "push", path(&ops)]);
    assert!(again.contains("unchanged: already the current version"), "{again}");
    let v2_text = OPS.replace("max_ttl: 1h", "max_ttl: 30m\napprovals: 2");
    let two = cli_ok_as(&c, "admin", &["policy", "push", path(&write(&signer, "ops2.yaml", &v2_text))]);
    assert!(two.contains("(2 version(s))"), "{two}");

    // Every person role reads: the current version, every version, one version.
    let current = json_lines(&cli_ok_as(&c, "wally", &["policy", "list", "--json"]));
    assert_eq!(current.len(), 1, "{current:?}");
    assert_eq!((current[0]["name"].as_str(), current[0]["approvals"].as_u64(), current[0]["max_ttl_seconds"].as_u64()), (Some("ops"), Some(2), Some(1800)));
    let all = json_lines(&cli_ok_as(&c, "alice", &["policy", "list", "--all", "--json"]));
    assert_eq!(all.iter().map(|p| p["current"].as_bool()).collect::<Vec<_>>(), [Some(true), Some(false)], "{all:?}");
    let v1 = all[1]["digest"].as_str().expect("digest").to_owned();
    let shown = cli_ok_as(&c, "alice", &["policy", "show", &format!("ops@{v1}")]);
    assert!(shown.contains(&format!("policy ops {v1} (not current)")), "{shown}");
    assert!(shown.contains("exec /usr/bin/psql -> allow") && shown.contains("  | max_ttl: 1h"), "{shown}");
    let table = cli_ok_as(&c, "wally", &["policy", "list"]);
    assert!(table.contains("POLICY") && table.contains("ops"), "{table}");
    cli_refused_as(&c, "alice", &["policy", "show", "web"], "policy \"web\" is not in the collector's catalogue: its policies are ops");
    cli_refused_as(&c, "nobody", &["policy", "list"], "has no role");

    // Each push is on the record.
    assert_eq!(count_actions(&c, "policy_push", "ok", "admin", "new version, now current"), 2, "{:#?}", control_actions(&c));
    assert_eq!(count_actions(&c, "policy_push", "unchanged", "admin", "already the current version"), 1, "{:#?}", control_actions(&c));
    assert!(control_actions(&c).iter().any(|a| a.0 == "policy_push" && a.3 == "policy ops" && a.4.starts_with(&v1)), "{:#?}", control_actions(&c));

    // A restart keeps every version.
    c.restart();
    let all = json_lines(&cli_ok_as(&c, "wally", &["policy", "list", "--all", "--json"]));
    assert_eq!(all.len(), 2, "{all:?}");
}

/// A request names a catalogue policy (or one version of it) and pins the digest
/// it was made against: a later push does not change what approvers approve, and
/// they see the text and what it grants. Names and versions the catalogue lacks
/// are refused.
#[test]
fn requests_pin_a_catalogue_version_and_approvers_see_it() {
    let signer = Signer::new();
    let c = collector(&signer);
    cli_ok_as(&c, "admin", &["policy", "push", path(&write(&signer, "ops.yaml", OPS))]);
    let v1 = json_lines(&cli_ok_as(&c, "alice", &["policy", "list", "--json"]))[0]["digest"].as_str().expect("digest").to_owned();
    let ask = |policy: &str| {
        let out = cli_ok_as(&c, "alice", &["request", "--policy", policy, "--ttl", "10m", "--reason", "INC-5"]);
        out.trim().to_owned()
    };
    let args = |policy: &'static str| ["request", "--policy", policy, "--ttl", "10m", "--reason", "INC-5"];

    cli_refused_as(&c, "alice", &args("nope"), "policy \"nope\" is not in the collector's catalogue: its policies are ops");
    let zero = format!("ops@sha256:{}", "0".repeat(64));
    cli_refused_as(&c, "alice", &["request", "--policy", &zero, "--ttl", "10m", "--reason", "x"], "policy \"ops\" has no version sha256:000");
    cli_refused_as(&c, "alice", &args("./ops.yaml"), "--policy takes the name of a policy in the collector's catalogue, not a file");
    assert_eq!(count_actions(&c, "request", "refused", "alice", "is not in the collector's catalogue"), 1, "{:#?}", control_actions(&c));

    let r1 = ask("ops");
    // A new version: needs two approvals and allows only 30 minutes.
    let v2_text = OPS.replace("max_ttl: 1h", "max_ttl: 30m\napprovals: 2");
    cli_ok_as(&c, "admin", &["policy", "push", path(&write(&signer, "ops2.yaml", &v2_text))]);

    // The earlier request still carries the version it was made against.
    let j = request_json_as(&c, "bob", &r1);
    assert_eq!((j["policy_digest"].as_str(), j["approvals_needed"].as_u64()), (Some(v1.as_str()), Some(1)), "{j}");
    assert_eq!(j["policy_text"].as_str(), Some(OPS), "approvers get the text: {j}");
    let grants: Vec<&str> = j["policy_grants"].as_array().expect("grants").iter().filter_map(Value::as_str).collect();
    assert!(grants.contains(&"exec /usr/bin/psql -> allow") && grants.contains(&"anything no rule matches -> allow"), "{grants:?}");
    // The human form: what it grants, then the text.
    let shown = cli_ok_as(&c, "bob", &["requests", "--id", &r1]);
    for needle in ["request   ", "state     pending", "subject   user:alice (asked by alice)", "grants:", "  exec /usr/bin/psql -> allow",
        "  lasts at most 1h (max_ttl)", "policy text:", "  | # on-call access to the ops hosts", "  | name: ops"] {
        assert!(shown.contains(needle), "expected {needle:?} in:\n{shown}");
    }
    assert!(shown.contains(&format!("policy    ops {v1}")), "{shown}");

    // Pinned to the old version, and the current one.
    let pinned = ask(&format!("ops@{v1}"));
    assert_eq!(request_json_as(&c, "alice", &pinned)["approvals_needed"], 1);
    let r2 = ask("ops");
    let j2 = request_json_as(&c, "alice", &r2);
    assert_eq!((j2["approvals_needed"].as_u64(), j2["policy_text"].as_str()), (Some(2), Some(v2_text.as_str())), "{j2}");
    assert_ne!(j2["policy_digest"].as_str(), Some(v1.as_str()));
    cli_refused_as(&c, "alice", &["request", "--policy", "ops", "--ttl", "45m", "--reason", "x"], "exceeds policy ops's max_ttl 30m");

    // Approving the first issues a token carrying the version it pinned.
    cli_ok_as(&c, "bob", &["approve", &r1]);
    let token = signer.dir().join("alice.token");
    cli_ok_as(&c, "alice", &["requests", "--id", &r1, "--token-out", path(&token)]);
    let text = std::fs::read_to_string(&token).expect("token file");
    assert!(text.contains("max_ttl: 1h") && !text.contains("approvals: 2"), "the token carries version 1:\n{text}");
}

/// `--for-agent` names an AI agent the collector knows (`--ai-agent`, or
/// `ai_agents` in its config); any other name is refused and recorded.
#[test]
fn for_agent_must_be_a_known_ai_agent() {
    let signer = Signer::new();
    let c = collector(&signer);
    cli_ok_as(&c, "admin", &["policy", "push", path(&write(&signer, "ops.yaml", OPS))]);
    let base = ["request", "--policy", "ops", "--ttl", "10m", "--reason", "INC-9", "--for-agent"];
    cli_refused_as(&c, "alice", &[&base[..], &["mallory"]].concat(), "unknown AI agent \"mallory\"");
    cli_refused_as(&c, "alice", &[&base[..], &["mallory"]].concat(), "it knows claude");
    assert_eq!(count_actions(&c, "request", "refused", "alice", "unknown AI agent \"mallory\""), 2, "{:#?}", control_actions(&c));
    let id = cli_ok_as(&c, "alice", &[&base[..], &["claude"]].concat()).trim().to_owned();
    assert_eq!(request_json_as(&c, "bob", &id)["subject"], "agent:claude");
}

/// A request kept from before the catalogue (its text written by its requester,
/// with `approver_role: requester`) is not approved after the upgrade, not even by
/// the peer its text names; an admin can still deny it.
#[test]
fn a_request_from_before_the_catalogue_is_not_approved() {
    let signer = Signer::new();
    let mut c = collector(&signer);
    cli_ok_as(&c, "admin", &["policy", "push", path(&write(&signer, "ops.yaml", OPS))]);
    let id = cli_ok_as(&c, "alice", &["request", "--policy", "ops", "--ttl", "10m", "--reason", "INC-3"]).trim().to_owned();
    // Rewrite it as an old collector kept it: the requester's own text and rules.
    c.stop();
    let file = c.data_dir().join("requests.json");
    let mut all: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("requests.json")).expect("JSON");
    let r = all.as_array_mut().and_then(|a| a.iter_mut().find(|r| r["id"] == id.as_str())).expect("the request");
    r["policy_name"] = "mine".into();
    r["policy_digest"] = format!("sha256:{}", "1".repeat(64)).into();
    r["policy_text"] = "name: mine\nmax_ttl: 24h\ndefault: allow\napprover_role: requester\n".into();
    r["approver_role"] = "requester".into();
    std::fs::write(&file, serde_json::to_vec(&all).expect("encode")).expect("write requests.json");
    c.start_again();

    cli_refused_as(&c, "dave", &["approve", &id], "is not in the collector's catalogue, so its rules were written by its requester");
    cli_refused_as(&c, "bob", &["approve", &id], "cannot be approved");
    assert_eq!(request_json_as(&c, "alice", &id)["state"], "pending");
    assert_eq!(count_actions(&c, "approve", "refused", "dave", "not in the collector's catalogue"), 1, "{:#?}", control_actions(&c));
    cli_ok_as(&c, "admin", &["deny", &id, "--reason", "made before the catalogue"]);
    assert_eq!(request_json_as(&c, "alice", &id)["state"], "denied");
}

/// `warrant policy retire` (admin): afterwards no new request names the policy,
/// neither its current version nor a pinned one, a pending request made against
/// it is not approved (it can be denied), an extension is refused, and the grant
/// issued before is untouched. The catalogue lists it as retired, the retirement
/// is a `control_action`, it survives a restart, and a push puts the policy back
/// in use.
#[test]
fn a_retired_policy_is_named_by_no_new_request() {
    let signer = Signer::new();
    let mut c = collector(&signer);
    cli_ok_as(&c, "admin", &["policy", "push", path(&write(&signer, "ops.yaml", OPS))]);
    let v1 = json_lines(&cli_ok_as(&c, "alice", &["policy", "list", "--json"]))[0]["digest"].as_str().expect("digest").to_owned();
    let ask = ["request", "--policy", "ops", "--ttl", "10m", "--reason", "INC-7"];
    let granted = cli_ok_as(&c, "alice", &ask).trim().to_owned();
    cli_ok_as(&c, "bob", &["approve", &granted]);
    let grant = request_json_as(&c, "alice", &granted)["grant"].as_str().expect("grant").to_owned();
    let pending = cli_ok_as(&c, "dave", &ask).trim().to_owned();
    let pending2 = cli_ok_as(&c, "dave", &ask).trim().to_owned();

    // Only an admin retires; a name not in the catalogue is refused.
    cli_refused_as(&c, "bob", &["policy", "retire", "ops"], "RetirePolicy needs role admin, and \"bob\" has role approver");
    assert!(
        control_actions(&c).iter().any(|a| a.0 == "refused" && a.2 == "bob" && a.3 == "rpc Policies.RetirePolicy"),
        "{:#?}",
        control_actions(&c)
    );
    cli_refused_as(&c, "admin", &["policy", "retire", "web"], "policy \"web\" is not in the collector's catalogue: its policies are ops");
    assert_eq!(count_actions(&c, "policy_retire", "refused", "admin", "\"web\" is not in the collector's catalogue"), 1, "{:#?}", control_actions(&c));

    let out = cli_ok_as(&c, "admin", &["policy", "retire", "ops", "--reason", "replaced by ops-ro"]);
    assert!(out.contains("policy ops retired (1 version(s) kept)") && out.contains("issued grants are unaffected"), "{out}");
    let again = cli_ok_as(&c, "admin", &["policy", "retire", "ops", "--reason", "twice"]);
    assert!(again.contains("unchanged: retired by admin at") && again.contains("(reason: replaced by ops-ro)"), "{again}");
    assert_eq!(count_actions(&c, "policy_retire", "ok", "admin", "reason \"replaced by ops-ro\""), 1, "{:#?}", control_actions(&c));
    assert_eq!(count_actions(&c, "policy_retire", "unchanged", "admin", "already retired by admin"), 1, "{:#?}", control_actions(&c));
    assert!(control_actions(&c).iter().any(|a| a.0 == "policy_retire" && a.1 == "ok" && a.3 == "policy ops"), "{:#?}", control_actions(&c));

    // Listed as retired, still readable.
    let listed = json_lines(&cli_ok_as(&c, "wally", &["policy", "list", "--json"]));
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0]["retired"].as_bool(), listed[0]["retired_by"].as_str()), (Some(true), Some("admin")), "{listed:?}");
    assert_eq!(listed[0]["retired_reason"].as_str(), Some("replaced by ops-ro"), "{listed:?}");
    let table = cli_ok_as(&c, "wally", &["policy", "list"]);
    assert!(table.contains("STATE") && table.lines().any(|l| l.starts_with("ops") && l.contains("retired")), "{table}");
    let shown = cli_ok_as(&c, "alice", &["policy", "show", "ops"]);
    assert!(shown.contains("retired by admin at") && shown.contains("no new request may name it") && shown.contains("  | name: ops"), "{shown}");

    // No new request, pinned or not; no extension.
    cli_refused_as(&c, "alice", &ask, "policy \"ops\" was retired by admin at");
    let pinned = format!("ops@{v1}");
    cli_refused_as(&c, "alice", &["request", "--policy", &pinned, "--ttl", "10m", "--reason", "x"], "(reason: \"replaced by ops-ro\")");
    cli_refused_as(&c, "alice", &["extend", &grant, "--by", "5m"], "policy \"ops\" was retired");
    assert_eq!(count_actions(&c, "request", "refused", "alice", "was retired by admin"), 2, "{:#?}", control_actions(&c));
    assert_eq!(count_actions(&c, "extend", "refused", "alice", "was retired by admin"), 1, "{:#?}", control_actions(&c));

    // A pending request is not approved, but can be denied.
    cli_refused_as(&c, "bob", &["approve", &pending], "policy \"ops\" was retired");
    assert_eq!(request_json_as(&c, "dave", &pending)["state"], "pending");
    cli_ok_as(&c, "bob", &["deny", &pending, "--reason", "the policy is retired"]);
    assert_eq!(request_json_as(&c, "dave", &pending)["state"], "denied");

    // The grant issued before: still approved, its token still handed out, nothing revoked.
    let j = request_json_as(&c, "alice", &granted);
    assert_eq!((j["state"].as_str(), j["grant"].as_str()), (Some("approved"), Some(grant.as_str())), "{j}");
    let token = signer.dir().join("alice.token");
    cli_ok_as(&c, "alice", &["requests", "--id", &granted, "--token-out", path(&token)]);
    assert!(std::fs::read_to_string(&token).expect("token file").contains("name: ops"), "the token carries the policy");
    assert!(!control_actions(&c).iter().any(|a| a.0 == "revoke"), "{:#?}", control_actions(&c));

    // A restart keeps it retired; a push puts it back in use.
    c.restart();
    cli_refused_as(&c, "alice", &ask, "was retired by admin");
    let back = cli_ok_as(&c, "admin", &["policy", "push", path(&write(&signer, "ops.yaml", OPS))]);
    assert!(back.contains("pushed, now current"), "{back}");
    assert_eq!(count_actions(&c, "policy_push", "ok", "admin", "the policy was retired"), 1, "{:#?}", control_actions(&c));
    assert_eq!(json_lines(&cli_ok_as(&c, "wally", &["policy", "list", "--json"]))[0]["retired"].as_bool(), Some(false));
    cli_ok_as(&c, "alice", &ask);
    cli_ok_as(&c, "bob", &["approve", &pending2]);
}
