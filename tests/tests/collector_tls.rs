//! TLS refusals leave a trace: a client whose certificate another CA signed, and a
//! client with no certificate at all, are refused in the handshake, and the
//! collector logs each (with the peer's address and the reason) and counts it
//! (`warrant_collector_tls_refused_total`). A good client is served as before.

use std::time::{Duration, Instant};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use warrant_proto::WhoAmIRequest;
use warrant_proto::collector_client::CollectorClient;
use warrant_tests::collector::client;
use warrant_tests::{ClientIdentity, CollectorOptions, Pki, TestCollector};

/// The refusals counted so far (0 when the collector does not export the counter).
fn refused(c: &TestCollector) -> f64 {
    let text = c.metrics();
    text.lines()
        .find_map(|l| l.strip_prefix("warrant_collector_tls_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refusals_are_logged_and_counted() {
    let c = TestCollector::start(CollectorOptions::default());
    let ca = c.identity("agent-1").ca;
    assert!((refused(&c) - 0.0).abs() < f64::EPSILON, "nothing refused yet");

    // A certificate of another CA, with a name the roles table knows.
    let other = tempfile::tempdir().expect("tempdir");
    let stranger = Pki::new(other.path()).issue("agent-1");
    let stranger = ClientIdentity { ca: ca.clone(), ..stranger };
    let answer = match client::connect(&c.url(), &stranger).await {
        Ok(ch) => CollectorClient::new(ch).who_am_i(WhoAmIRequest::default()).await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(answer.is_err(), "a certificate of another CA was served");

    // No certificate at all.
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(&ca).expect("read ca"))).domain_name("localhost");
    let endpoint = Endpoint::from_shared(c.url()).expect("url").tls_config(tls).expect("tls").connect_timeout(Duration::from_secs(5));
    let answer = match endpoint.connect().await {
        Ok(ch) => CollectorClient::new(ch).who_am_i(WhoAmIRequest::default()).await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(answer.is_err(), "a client without a certificate was served");

    // The clients see the refusal before the collector has logged it, and a client
    // may retry a handshake (more lines of one reason): wait for both reasons.
    let logged_both = |log: &str| log.contains("invalid peer certificate") && log.contains("peer sent no certificates");
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused(&c) < 2.0 || !logged_both(&c.log()) {
        assert!(Instant::now() < deadline, "TLS refusals not counted or logged: {}\n{}", refused(&c), c.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = c.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("TLS handshake refused")).collect();
    assert!(lines.len() >= 2, "no log line per refusal:\n{log}");
    assert!(lines.iter().all(|l| l.contains("127.0.0.1:")), "the peer's address is not logged: {lines:?}");
    assert!(lines.iter().any(|l| l.contains("invalid peer certificate")), "the reason is not logged: {lines:?}");
    assert!(lines.iter().any(|l| l.contains("peer sent no certificates")), "the reason is not logged: {lines:?}");

    // A good client is still served.
    let mut w = client::collector(&c.url(), &c.identity("watcher")).await;
    let me = w.who_am_i(WhoAmIRequest::default()).await.expect("a good client is served").into_inner();
    assert_eq!(me.name, "watcher", "{me:?}");
}

/// A flood of bad handshakes is counted whole but logged at a bounded rate: at most
/// 20 lines of refusals per minute, however many come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refusals_does_not_flood_the_log() {
    use tokio::io::AsyncWriteExt;
    const FLOOD: usize = 200;
    let c = TestCollector::start(CollectorOptions::default());
    let addr = c.url().trim_start_matches("https://").to_owned();
    for _ in 0..FLOOD {
        // Not TLS at all: the handshake fails at once.
        let mut s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
        drop(s);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused(&c) < FLOOD as f64 {
        assert!(Instant::now() < deadline, "{} of {FLOOD} refusals counted\n{}", refused(&c), c.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = c.log();
    let lines = log.lines().filter(|l| l.contains("TLS handshake refused")).count();
    assert!((1..=20).contains(&lines), "{lines} refusal lines for {FLOOD} refusals:\n{log}");
}
