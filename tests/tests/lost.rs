//! Lost records: when the kernel ring buffer is too small for a burst, what did not
//! fit is counted and reported as `events_lost`, never dropped silently.

use std::time::Duration;

use warrant_tests::workload::{canonical, testbin};
use warrant_tests::{AgentOptions, Marker, TestAgent, audit};

/// Opens in the burst.
const BURST: u64 = 2000;

/// With a 16 KiB ring buffer (a file_open record is ~4.5 KB, so only a few fit at a
/// time), a burst of 2000 opens under a grant yields an `events_lost` event with
/// `count` > 0, and every open is accounted for: the file_open events the log holds
/// for the burst plus the total lost reach 2000.
#[test]
fn ring_buffer_overflow_is_counted() {
    let agent = TestAgent::start(AgentOptions {
        ring_buffer_bytes: Some(16384),
        ..AgentOptions::default()
    });
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let target = agent.temp_dir().join("burst-target");
    std::fs::write(&target, b"x").expect("create target");
    let target = canonical(&target);
    let mut s = agent.exec(&grant, &mark, &[&testbin(), "open-burst", &BURST.to_string(), &target]);
    assert!(s.wait_for(Duration::from_secs(30)).success());
    let sid = s.id().to_string();
    let pid = u64::from(s.pid());

    let (seen, lost) = agent.wait_until(
        "events_lost and seen + lost ≥ 2000",
        Duration::from_secs(20),
        |evs| {
            let seen = evs
                .iter()
                .filter(|e| {
                    audit::is("file_open", &sid)(e)
                        && audit::u64_field(e, "pid") == pid
                        && e["path"] == target.as_str()
                })
                .count() as u64;
            let reports: Vec<_> = evs.iter().filter(|e| e["kind"] == "events_lost").collect();
            let total = reports.iter().map(|e| e["total"].as_u64().unwrap_or(0)).max()?;
            let any_count = reports.iter().any(|e| e["count"].as_u64().unwrap_or(0) > 0);
            (any_count && seen + total >= BURST).then_some((seen, total))
        },
    );
    eprintln!("burst of {BURST}: {seen} file_open events logged, {lost} records lost");
}
