//! TLS refusals leave a trace: a client whose certificate another CA signed, and a
//! client with no certificate at all, are refused in the handshake, and the
//! collector logs each (with the peer's address and the reason) and counts it
//! (`warrant_collector_tls_refused_total`). A good client is served as before.

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use warrant_proto::WhoAmIRequest;
use warrant_tests::collector::client;
use warrant_tests::{ClientIdentity, CollectorOptions, Pki, TestCollector};

/// One TLS handshake with the collector at `url`, trusting `ca` and showing
/// `identity`'s certificate (none when `None`), then a read until the server ends
/// the connection or answers: what the server thought of the handshake. True when
/// the server served the connection (it sent its HTTP/2 settings); false when it
/// refused it (an alert or a close) or said nothing within 5 s.
async fn one_handshake(url: &str, ca: &std::path::Path, identity: Option<&ClientIdentity>) -> bool {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots.add(cert.expect("a CA certificate")).expect("add the CA");
    }
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => {
            let certs = CertificateDer::pem_file_iter(&id.cert).expect("read the certificate").collect::<Result<Vec<_>, _>>().expect("certificates");
            let key = PrivateKeyDer::from_pem_file(&id.key).expect("read the key");
            builder.with_client_auth_cert(certs, key).expect("client certificate")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(url.trim_start_matches("https://")).await.expect("connect");
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let Ok(mut tls) = connector.connect(ServerName::try_from("localhost").expect("name"), tcp).await else {
        return false;
    };
    // TLS 1.3: the client is done before the server has checked its certificate;
    // the server's answer (an alert, or its HTTP/2 settings) comes after.
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await, Ok(Ok(n)) if n > 0)
}

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

    // A certificate of another CA, with a name the roles table knows. One handshake
    // each (a tonic channel would retry its handshake in a loop).
    let other = tempfile::tempdir().expect("tempdir");
    let stranger = Pki::new(other.path()).issue("agent-1");
    let stranger = ClientIdentity { ca: ca.clone(), ..stranger };
    assert!(!one_handshake(&c.url(), &ca, Some(&stranger)).await, "a certificate of another CA was served");

    // No certificate at all.
    assert!(!one_handshake(&c.url(), &ca, None).await, "a client without a certificate was served");
    // The good client's own handshake is served (the same code path, so a refusal
    // above is about the certificate).
    assert!(one_handshake(&c.url(), &ca, Some(&c.identity("watcher"))).await, "a good client's handshake was refused");

    // The clients see the refusal before the collector has logged it: wait for both.
    let logged_both = |log: &str| log.contains("invalid peer certificate") && log.contains("peer sent no certificates");
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused(&c) < 2.0 || !logged_both(&c.log()) {
        assert!(Instant::now() < deadline, "TLS refusals not counted or logged: {}\n{}", refused(&c), c.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = c.log();
    assert!((refused(&c) - 2.0).abs() < f64::EPSILON, "two handshakes refused, counted {}", refused(&c));
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("TLS handshake refused")).collect();
    assert_eq!(lines.len(), 2, "one log line per refusal:\n{log}");
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
