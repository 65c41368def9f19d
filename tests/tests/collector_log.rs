//! The collector's audit log on disk: `warrant-collector verify` (and the
//! VerifyLog rpc) pass on an intact log and name the first bad record after an
//! edit, a removal or a reorder; retention drops whole old segments and the chain
//! still verifies from the first record kept, while a segment removed by hand is
//! caught.

use std::time::Duration;

use warrant_proto::{EventFilter, QueryRequest, VerifyLogRequest};
use warrant_tests::collector::client::{self, exec_event, hello, open_stream};
use warrant_tests::{CollectorOptions, TestCollector, now_unix_ns};

fn now_ns() -> i64 {
    i64::try_from(now_unix_ns()).expect("fits")
}

async fn ingest(c: &TestCollector, boot: &str, n: u64) {
    let mut a = open_stream(&c.url(), &c.identity("agent-1"), hello("agent-1", "host-a", boot)).await.expect("stream");
    let t0 = now_ns();
    let mut next = a.welcome_seq(boot) + 1;
    while next <= n {
        let end = (next + 199).min(n);
        a.send((next..=end).map(|s| exec_event("agent-1", "host-a", boot, s, "s-1", t0 + i64::try_from(s).unwrap())).collect()).await;
        next = end + 1;
    }
    a.wait_ack(boot, n).await.expect("acked");
}

fn verify_text(c: &TestCollector) -> (bool, String) {
    let out = c.verify_offline();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

fn write_lines(path: &std::path::Path, l: &[String]) {
    std::fs::write(path, l.join("\n") + "\n").unwrap();
}

/// An intact log verifies (offline and by rpc, admin only); an edited byte, a
/// removed line and two swapped lines are each caught, naming the segment and line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_edit_removal_and_reorder() {
    let mut c = TestCollector::start(CollectorOptions::default());
    ingest(&c, "b1", 500).await;

    let mut admin = client::collector(&c.url(), &c.identity("admin")).await;
    let r = admin.verify_log(VerifyLogRequest {}).await.expect("verify rpc").into_inner();
    assert!(r.ok, "{:?}", r.problems);
    assert!(r.records >= 500, "{}", r.records);
    let mut watcher = client::collector(&c.url(), &c.identity("watcher")).await;
    assert_eq!(watcher.verify_log(VerifyLogRequest {}).await.expect_err("admin only").code(), tonic::Code::PermissionDenied);

    c.stop();
    let (ok, text) = verify_text(&c);
    assert!(ok, "{text}");
    let seg = c.segments().remove(0);
    let good = lines(&seg);
    let name = seg.file_name().unwrap().to_string_lossy().to_string();

    // Edit: the argv of record on line 100.
    let mut l = good.clone();
    l[99] = l[99].replacen("\"id\"", "\"ix\"", 1);
    assert_ne!(l[99], good[99]);
    write_lines(&seg, &l);
    let (ok, text) = verify_text(&c);
    assert!(!ok, "edit not caught: {text}");
    let first = text.lines().next().unwrap();
    assert!(first.contains(&format!("segment {name} line 100:")) && first.contains("edited"), "{text}");

    // Removal of line 200.
    let mut l = good.clone();
    l.remove(199);
    write_lines(&seg, &l);
    let (ok, text) = verify_text(&c);
    assert!(!ok, "removal not caught: {text}");
    assert!(text.lines().next().unwrap().contains("line 200:") && text.contains("removed"), "{text}");

    // Reorder of lines 300 and 301.
    let mut l = good.clone();
    l.swap(299, 300);
    write_lines(&seg, &l);
    let (ok, text) = verify_text(&c);
    assert!(!ok, "reorder not caught: {text}");
    assert!(text.lines().next().unwrap().contains("line 300:"), "{text}");

    // Restored, it verifies again and the collector resumes on it.
    write_lines(&seg, &good);
    assert!(verify_text(&c).0);
    c.start_again();
    ingest(&c, "b1", 600).await;
    let r = admin.verify_log(VerifyLogRequest {}).await;
    let r = match r {
        Ok(r) => r.into_inner(),
        Err(_) => client::collector(&c.url(), &c.identity("admin")).await.verify_log(VerifyLogRequest {}).await.unwrap().into_inner(),
    };
    assert!(r.ok, "{:?}", r.problems);
}

/// With small segments and a size limit, retention drops the oldest segments (and
/// records that it did); the log still verifies from the first record kept, the
/// kept records are still queryable, and removing one more segment by hand is
/// reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_old_segments_and_the_chain_still_verifies() {
    let mut c = TestCollector::start(CollectorOptions {
        segment_bytes: Some(64 * 1024),
        retention_max_bytes: Some(256 * 1024),
        retention_interval: Some("1s".into()),
        ..CollectorOptions::default()
    });
    ingest(&c, "b1", 3000).await;
    // Wait for a retention pass after the ingest (one runs every second).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let segs = c.segments();
        let first: u64 = segs[0].file_stem().unwrap().to_string_lossy().parse().unwrap();
        let total: u64 = segs.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
        // At most the limit, plus the segment being written, plus one batch past it.
        if first > 1 && total <= 256 * 1024 + 64 * 1024 + 200 * 1024 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "retention did not bring the log under its limit: {total} bytes in {segs:?}\n{}", c.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Kept records are still there; dropped ones are gone from queries too.
    let mut w = client::collector(&c.url(), &c.identity("watcher")).await;
    let r = w
        .query(QueryRequest { filter: Some(EventFilter { agent_id: "agent-1".into(), ..EventFilter::default() }), limit: 10_000, ..QueryRequest::default() })
        .await
        .unwrap()
        .into_inner();
    let seqs: Vec<u64> = r.events.iter().map(|e| e.seq).collect();
    assert!(!seqs.is_empty() && seqs[0] > 1 && *seqs.last().unwrap() == 3000, "{:?}..{:?}", seqs.first(), seqs.last());
    assert!(seqs.windows(2).all(|p| p[1] == p[0] + 1), "kept records are contiguous");
    let mut admin = client::collector(&c.url(), &c.identity("admin")).await;
    let v = admin.verify_log(VerifyLogRequest {}).await.unwrap().into_inner();
    assert!(v.ok, "{:?}", v.problems);

    c.stop();
    let (ok, text) = verify_text(&c);
    assert!(ok, "{text}");
    // The retention record is in the log.
    let last = c.segments().last().unwrap().clone();
    assert!(std::fs::read_to_string(&last).unwrap().contains("\"action\":\"retention\""));

    // Removing the oldest kept segment by hand is not retention.
    let oldest = c.segments()[0].clone();
    std::fs::remove_file(&oldest).unwrap();
    let (ok, text) = verify_text(&c);
    assert!(!ok, "a removed segment went unnoticed: {text}");
    assert!(text.contains("no retention record accounts") || text.contains("retention only dropped"), "{text}");
}
