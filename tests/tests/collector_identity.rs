//! Two agents; agent-2's certificate tries every impersonation of agent-1: a hello
//! as agent-1, a batch naming agent-1, a huge seq for agent-1's boot, a collector-only
//! kind, a session_start for agent-1's session. Each is refused with
//! PERMISSION_DENIED and a `control_action` refused record; agent-1's connection,
//! events, resume point and kills are untouched, also after a restart. A certificate
//! registered in `agent_ids` speaks only as its id.

use std::time::Duration;

use tonic::Code;
use warrant_proto::command::Op;
use warrant_proto::event::Event as Kind;
use warrant_proto::{
    AgentStatusRequest, CommandResult, ControlAction, Event, EventFilter, KillReport, QueryRequest, RemoteKillRequest, SessionKill,
};
use warrant_tests::collector::client::{self, AgentStream, exec_event, hello, open_stream, session_start};
use warrant_tests::{CollectorOptions, TestCollector, now_unix_ns};

fn now_ns() -> i64 {
    i64::try_from(now_unix_ns()).expect("fits")
}

/// Sends `events` on a fresh agent-2 stream (hello as agent-2) and returns how the
/// stream ended.
async fn agent2_sends(c: &TestCollector, events: Vec<Event>) -> tonic::Status {
    let mut s = open_stream(&c.url(), &c.identity("agent-2"), hello("agent-2", "host-2", "b2")).await.expect("agent-2 as itself");
    assert!(s.send(events).await);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.rx.message()).await.expect("an answer within 10s") {
            Ok(Some(_)) => {}
            Ok(None) => return tonic::Status::ok("ended OK"),
            Err(e) => return e,
        }
    }
}

async fn agent1_seqs(c: &TestCollector) -> Vec<(String, u64)> {
    let mut q = client::collector(&c.url(), &c.identity("watcher")).await;
    q.query(QueryRequest { filter: Some(EventFilter { agent_id: "agent-1".into(), ..EventFilter::default() }), limit: 1000, ..QueryRequest::default() })
        .await
        .expect("query")
        .into_inner()
        .events
        .into_iter()
        .map(|e| (e.boot_id, e.seq))
        .collect()
}

fn expect_denied(s: &tonic::Status, what: &str, words: &[&str]) {
    assert_eq!(s.code(), Code::PermissionDenied, "{what}: {s:?}");
    for w in words {
        assert!(s.message().contains(w), "{what}: {w:?} not in {s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_certificate_cannot_speak_for_another() {
    let mut c = TestCollector::start(CollectorOptions::default());
    let mut a1: AgentStream = open_stream(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-1", "b1")).await.expect("agent-1");
    assert!(a1.send(vec![session_start("agent-1", "host-1", "b1", 1, "s-one", "g-one"), exec_event("agent-1", "host-1", "b1", 2, "s-one", now_ns())]).await);
    a1.wait_ack("b1", 2).await.expect("acked");

    // 1. Hello as agent-1 with agent-2's certificate.
    let err = open_stream(&c.url(), &c.identity("agent-2"), hello("agent-1", "host-1", "b1")).await.err().expect("refused");
    expect_denied(&err, "hello as agent-1", &["agent \"agent-1\"", "bound to certificate \"agent-1\"", "\"agent-2\""]);
    // Also with a new boot and a huge seq (would make agent-1's events duplicates).
    let err = open_stream(&c.url(), &c.identity("agent-2"), hello("agent-1", "host-1", "evil")).await.err().expect("refused");
    assert_eq!(err.code(), Code::PermissionDenied);
    // 2. A batch naming agent-1 on agent-2's own stream, with a huge seq in agent-1's boot.
    let forged = exec_event("agent-1", "host-1", "b1", u64::MAX - 1, "s-one", now_ns());
    expect_denied(&agent2_sends(&c, vec![forged]).await, "event of agent-1", &["names agent \"agent-1\""]);
    // 3. A collector-only kind.
    let ca = Event {
        event: Some(Kind::ControlAction(ControlAction { action: "kill".into(), by: "responder".into(), outcome: "ok".into(), ..ControlAction::default() })),
        ..exec_event("agent-2", "host-2", "b2", 1, "", now_ns())
    };
    expect_denied(&agent2_sends(&c, vec![ca]).await, "control_action", &["control_action", "only the collector"]);
    // 4. A session_start for agent-1's session (would re-route its kills).
    let steal = session_start("agent-2", "host-2", "b2", 1, "s-one", "g-one");
    expect_denied(&agent2_sends(&c, vec![steal]).await, "session_start", &["session s-one", "\"agent-1\" holds"]);

    // Each refusal is recorded.
    let refused = c.refusals(Duration::ZERO, |a| a.by == "agent-2").await;
    assert_eq!(refused.len(), 5, "{refused:#?}");
    assert!(refused.iter().all(|r| r.outcome == "refused" && (r.target == "agent agent-1" || r.target == "agent agent-2")), "{refused:#?}");

    // agent-1 is untouched: still connected, its events as sent, and it gets its kill.
    let mut responder = client::collector(&c.url(), &c.identity("responder")).await;
    let status = responder.agent_status(AgentStatusRequest {}).await.expect("status").into_inner();
    let k1 = status.agents.iter().find(|a| a.agent_id == "agent-1").expect("agent-1 known");
    assert!(k1.connected && k1.boot_id == "b1" && k1.host == "host-1", "{k1:?}");
    assert_eq!(agent1_seqs(&c).await, vec![("b1".to_owned(), 1), ("b1".to_owned(), 2)]);
    assert!(a1.send(vec![exec_event("agent-1", "host-1", "b1", 3, "s-one", now_ns())]).await);
    a1.wait_ack("b1", 3).await.expect("agent-1's next event is stored, not a duplicate");
    let kill = tokio::spawn({
        let mut r = responder.clone();
        async move { r.kill(RemoteKillRequest { session: "s-one".into(), reason: "INC-1".into() }).await }
    });
    let cmd = a1.next_command().await.expect("agent-1 gets the kill");
    let Some(Op::Kill(k)) = &cmd.op else { panic!("{cmd:?}") };
    assert_eq!(k.session, "s-one");
    let report = KillReport { sessions: vec![SessionKill { session: "s-one".into(), killed: 1, elapsed_us: 5, survivors: 0 }] };
    assert!(a1.send_result(CommandResult { command_id: cmd.id.clone(), error: String::new(), report: Some(report) }).await);
    let resp = kill.await.expect("join").expect("kill").into_inner();
    assert!(resp.delivered && resp.agent_id == "agent-1", "{resp:?}");
    drop(a1);

    // The binding outlives a restart (it is derived from the log).
    c.restart();
    let err = open_stream(&c.url(), &c.identity("agent-2"), hello("agent-1", "host-1", "b1")).await.err().expect("still refused");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let a1 = open_stream(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-1", "b1")).await.expect("agent-1 itself");
    assert_eq!(a1.welcome_seq("b1"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_certificate_speaks_only_as_its_agent_id() {
    let c = TestCollector::start(CollectorOptions { extra_args: vec!["--agent-id".into(), "agent-web-1=web-1".into()], ..CollectorOptions::default() });
    let web = c.pki().issue("agent-web-1");
    let err = open_stream(&c.url(), &web, hello("agent-web-1", "web", "b")).await.err().expect("not its registered id");
    expect_denied(&err, "unregistered id", &["may only speak as agent \"web-1\""]);
    let err = open_stream(&c.url(), &c.identity("agent-1"), hello("web-1", "web", "b")).await.err().expect("registered to another");
    expect_denied(&err, "someone else's id", &["belongs to certificate \"agent-web-1\""]);
    let mut s = open_stream(&c.url(), &web, hello("web-1", "web", "b")).await.expect("its own id");
    assert!(s.send(vec![exec_event("web-1", "web", "b", 1, "s-w", now_ns())]).await);
    s.wait_ack("b", 1).await.expect("acked");
}
