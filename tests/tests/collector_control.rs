//! Roles and remote kills, over real TCP with real mTLS: calls without the role
//! are refused naming the identity and the role needed (and recorded in the log);
//! a kill reaches the one agent that holds the session, and a kill for a
//! disconnected agent answers `delivered = false` at once and is delivered when the
//! agent reconnects.

use std::time::{Duration, Instant};

use tonic::Code;
use warrant_proto::command::Op;
use warrant_proto::{
    AgentStatusRequest, CollectorSessionsRequest, CollectorWatchRequest, CommandResult, EventFilter, KillReport,
    QueryRequest, RemoteKillRequest, RemoteRevokeRequest, SessionKill,
};
use warrant_tests::collector::client::{self, AgentStream, hello, open_stream, session_start};
use warrant_tests::{CollectorOptions, TestCollector};

/// The control actions in the log, as "action outcome by target" lines.
async fn control_actions(c: &TestCollector) -> Vec<String> {
    let mut q = client::collector(&c.url(), &c.identity("admin")).await;
    let r = q
        .query(QueryRequest {
            filter: Some(EventFilter { kinds: vec!["control_action".into()], ..EventFilter::default() }),
            limit: 1000,
            ..QueryRequest::default()
        })
        .await
        .expect("query")
        .into_inner();
    r.events
        .into_iter()
        .filter_map(|e| match e.event {
            Some(warrant_proto::event::Event::ControlAction(a)) => Some(format!("{} {} {} {} {}", a.action, a.outcome, a.by, a.target, a.detail)),
            _ => None,
        })
        .collect()
}

/// No role, the wrong role, or a person on the agent stream: PERMISSION_DENIED
/// naming who and what role was needed, each refusal recorded in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorised_watch_kill_and_stream_are_refused_and_recorded() {
    let c = TestCollector::start(CollectorOptions::default());

    let mut nobody = client::collector(&c.url(), &c.identity("nobody")).await;
    let err = nobody.watch(CollectorWatchRequest::default()).await.expect_err("refused");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("\"nobody\"") && err.message().contains("Watch needs role watcher"), "{}", err.message());

    let mut watcher = client::collector(&c.url(), &c.identity("watcher")).await;
    let err = watcher.kill(RemoteKillRequest { session: "s-1".into(), reason: "x".into() }).await.expect_err("refused");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("Kill needs role responder") && err.message().contains("has role watcher"), "{}", err.message());

    let mut agent = client::collector(&c.url(), &c.identity("agent-1")).await;
    let err = agent.sessions(CollectorSessionsRequest::default()).await.expect_err("refused");
    assert_eq!(err.code(), Code::PermissionDenied, "an agent certificate is not a person");

    let err = open_stream(&c.url(), &c.identity("watcher"), hello("x", "h", "b")).await.err().expect("refused");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("Ingest.Stream needs role agent"), "{}", err.message());

    // A certificate from another CA does not even get a TLS session.
    let other = warrant_tests::Pki::new(&tempfile::tempdir().unwrap().keep().join("pki"));
    let mut stranger = other.issue("admin");
    stranger.ca = c.identity("admin").ca; // trusts the collector, but is not trusted by it
    let refused = match client::connect(&c.url(), &stranger).await {
        Err(_) => true,
        Ok(ch) => warrant_proto::collector_client::CollectorClient::new(ch).agent_status(AgentStatusRequest {}).await.is_err(),
    };
    assert!(refused, "a certificate from an unknown CA is refused");

    let actions = control_actions(&c).await;
    let refused: Vec<_> = actions.iter().filter(|a| a.starts_with("refused refused")).collect();
    assert!(refused.iter().any(|a| a.contains("nobody rpc Watch")), "{actions:#?}");
    assert!(refused.iter().any(|a| a.contains("watcher rpc Kill")), "{actions:#?}");
    assert!(refused.iter().any(|a| a.contains("agent-1 rpc Sessions")), "{actions:#?}");
    assert!(refused.iter().any(|a| a.contains("watcher rpc Ingest.Stream")), "{actions:#?}");
    assert!(c.metric("warrant_collector_refused_total") >= 4.0);
}

/// Answers the next kill command like an agent would, with a report.
async fn answer_kill(s: &mut AgentStream, killed: u32) -> String {
    let cmd = s.next_command().await.expect("a command");
    let Some(Op::Kill(k)) = &cmd.op else { panic!("expected a kill, got {cmd:?}") };
    let report = KillReport { sessions: vec![SessionKill { session: k.session.clone(), killed, elapsed_us: 1234, survivors: 0 }] };
    assert!(s.send_result(CommandResult { command_id: cmd.id.clone(), error: String::new(), report: Some(report) }).await);
    k.session.clone()
}

/// Two agents hold one session each: a kill reaches the right one and returns its
/// report; with that agent gone, a kill answers `delivered = false` at once, is
/// listed as queued, and reaches the agent when it reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_is_routed_to_the_holder_and_queued_while_it_is_away() {
    let c = TestCollector::start(CollectorOptions::default());
    let mut a1 = open_stream(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-1", "b1")).await.expect("a1");
    let mut a2 = open_stream(&c.url(), &c.identity("agent-2"), hello("agent-2", "host-2", "b2")).await.expect("a2");
    a1.send(vec![session_start("agent-1", "host-1", "b1", 1, "s-one", "g-1")]).await;
    a2.send(vec![session_start("agent-2", "host-2", "b2", 1, "s-two", "g-2")]).await;
    a1.wait_ack("b1", 1).await.unwrap();
    a2.wait_ack("b2", 1).await.unwrap();

    let mut responder = client::collector(&c.url(), &c.identity("responder")).await;
    let sessions = responder.sessions(CollectorSessionsRequest { all: false, host: String::new() }).await.unwrap().into_inner().sessions;
    assert_eq!(sessions.len(), 2, "{sessions:?}");

    // Kill s-two: only agent-2 gets the command.
    let kill = tokio::spawn({
        let mut r = responder.clone();
        async move { r.kill(RemoteKillRequest { session: "s-two".into(), reason: "INC-7".into() }).await }
    });
    assert_eq!(answer_kill(&mut a2, 3).await, "s-two");
    let resp = kill.await.unwrap().expect("kill").into_inner();
    assert!(resp.delivered);
    assert_eq!((resp.agent_id.as_str(), resp.host.as_str()), ("agent-2", "host-2"));
    assert_eq!(resp.report.unwrap().sessions[0].killed, 3);
    assert!(tokio::time::timeout(Duration::from_millis(300), a1.next()).await.is_err(), "agent-1 got nothing");

    // Revoke g-2: it goes to agent-2, which reported the grant.
    let revoke = tokio::spawn({
        let mut r = responder.clone();
        async move { r.revoke(RemoteRevokeRequest { grant: "g-2".into(), reason: "INC-7".into() }).await }
    });
    let cmd = a2.next_command().await.expect("revoke command");
    let Some(Op::Revoke(rv)) = &cmd.op else { panic!("expected a revoke, got {cmd:?}") };
    assert_eq!((rv.grant.as_str(), cmd.by.as_str()), ("g-2", "responder"));
    let report = KillReport { sessions: vec![SessionKill { session: "s-two".into(), killed: 0, elapsed_us: 10, survivors: 0 }] };
    assert!(a2.send_result(CommandResult { command_id: cmd.id.clone(), error: String::new(), report: Some(report) }).await);
    let resp = revoke.await.unwrap().expect("revoke").into_inner();
    assert!(resp.delivered);
    assert_eq!(resp.agent_id, "agent-2");
    assert!(tokio::time::timeout(Duration::from_millis(300), a1.next()).await.is_err(), "agent-1 got nothing");

    // agent-1 goes away; killing its session is queued.
    drop(a1);
    let status = loop {
        let s = responder.agent_status(AgentStatusRequest {}).await.unwrap().into_inner();
        if s.agents.iter().any(|a| a.agent_id == "agent-1" && !a.connected) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.agents.iter().any(|a| a.agent_id == "agent-2" && a.connected));
    let t = Instant::now();
    let resp = responder.kill(RemoteKillRequest { session: "s-one".into(), reason: "INC-8".into() }).await.expect("kill").into_inner();
    assert!(!resp.delivered, "agent-1 is away");
    assert_eq!(resp.agent_id, "agent-1");
    assert!(t.elapsed() < Duration::from_secs(2), "answered at once, took {:?}", t.elapsed());
    let status = responder.agent_status(AgentStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.agents.iter().find(|a| a.agent_id == "agent-1").unwrap().queued_commands, 1);

    // It reconnects: the queued kill arrives after the welcome; its result is logged.
    let mut a1 = open_stream(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-1", "b1")).await.expect("a1 again");
    assert_eq!(a1.welcome_seq("b1"), 1);
    assert_eq!(answer_kill(&mut a1, 2).await, "s-one");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let actions = control_actions(&c).await;
        if actions.iter().any(|a| a.starts_with("command_result ok agent-1")) {
            assert!(actions.iter().any(|a| a.starts_with("kill ok responder session s-two")), "{actions:#?}");
            assert!(actions.iter().any(|a| a.starts_with("kill queued responder session s-one")), "{actions:#?}");
            assert!(actions.iter().any(|a| a.starts_with("agent_connect ok agent-1")), "{actions:#?}");
            assert!(actions.iter().any(|a| a.starts_with("agent_disconnect ok agent-1")), "{actions:#?}");
            break;
        }
        assert!(Instant::now() < deadline, "no command_result recorded: {actions:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = responder.agent_status(AgentStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.agents.iter().find(|a| a.agent_id == "agent-1").unwrap().queued_commands, 0, "delivered and answered");

    // Unknown session: not found, and recorded.
    let err = responder.kill(RemoteKillRequest { session: "s-nope".into(), reason: String::new() }).await.expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    assert!(c.metric("warrant_collector_kill_latency_seconds_count") >= 1.0);
    let _ = a2;
}
