//! The store's unit tests.

use std::time::Instant;

use warrant_audit::hub::Filter;
use warrant_audit::log::AuditLog;
use warrant_proto::Command;
use warrant_proto::Event;
use warrant_proto::event::Event as Kind;

use super::segments::{list_segments, segment_name};
use super::*;
use warrant_proto::{Exec, SessionEnd, SessionStart};

fn ev(agent: &str, boot: &str, seq: u64, session: &str, t: i64) -> Event {
    Event {
        seq,
        agent_id: agent.into(),
        boot_id: boot.into(),
        host: format!("host-{agent}"),
        time_unix_ns: t,
        grant: format!("g-{session}"),
        session: session.into(),
        subject: "alice".into(),
        event: Some(Kind::Exec(Exec { path: "/bin/id".into(), argv: vec!["id".into(), seq.to_string()], cwd: "/".into(), truncated: false , ..Default::default() })),
        ..Event::default()
    }
}

fn batch(agent: &str, boot: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<Event> {
    seqs.map(|s| ev(agent, boot, s, if s % 2 == 0 { "s-even" } else { "s-odd" }, i64::try_from(s).unwrap() * 1000)).collect()
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

#[test]
fn dedup_survives_reopen_and_a_lost_index() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let out = s.append_batches(vec![batch("a", "b", 1..=10), batch("a", "b", 5..=12)]).unwrap();
        assert_eq!((out[0].accepted.len(), out[0].duplicates), (10, 0));
        assert_eq!((out[1].accepted.len(), out[1].duplicates), (2, 6));
        assert_eq!(out[1].acks, vec![("b".to_owned(), 12)]);
        // No durable index commit: the reopen re-indexes from the log.
    }
    let (mut s, r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(s.high_water("a", "b"), 12);
    assert_eq!(s.append_batches(vec![batch("a", "b", 1..=13)]).unwrap()[0].accepted.len(), 1);
    drop((s, r));
    std::fs::remove_file(dir.path().join("index.redb")).unwrap();
    let (s, r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(s.high_water("a", "b"), 13, "rebuilt from the log");
    let page = r.query(&QuerySpec { limit: 100, ..QuerySpec::default() }, Cursor::Start).unwrap();
    assert_eq!(seqs(&page.events), (1..=13).collect::<Vec<_>>());
}

#[test]
fn queries_by_key_and_time_page_through() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, r) = Store::open(dir.path(), StoreOptions { segment_bytes: 4096 }).unwrap();
    for i in 0..10 {
        s.append_batches(vec![batch("a", "b", (i * 100 + 1)..=(i * 100 + 100))]).unwrap();
    }
    s.append_batches(vec![batch("z", "y", 1..=50)]).unwrap();
    assert!(list_segments(&dir.path().join("log")).unwrap().len() > 10, "rotated");
    let mut spec = QuerySpec { filter: Filter { session: Some("s-odd".into()), agent_id: Some("a".into()), ..Filter::default() }, limit: 37, ..QuerySpec::default() };
    let mut all = Vec::new();
    let mut cursor = Cursor::Start;
    loop {
        let p = r.query(&spec, cursor).unwrap();
        all.extend(seqs(&p.events));
        match p.next {
            Some(c) => cursor = Cursor::parse(&c.token()).unwrap(),
            None => break,
        }
    }
    assert_eq!(all, (1..=1000).filter(|s| s % 2 == 1).collect::<Vec<_>>());
    spec.filter = Filter::default();
    spec.from = 950 * 1000;
    spec.to = 1000 * 1000;
    spec.limit = 1000;
    let p = r.query(&spec, Cursor::Start).unwrap();
    // a's 950..=1000, none of z's (times 1000..=50000 are below `from`)
    assert_eq!(seqs(&p.events), (950..=1000).collect::<Vec<_>>());
    spec.filter.host = Some("host-z".into());
    spec.from = 0;
    spec.to = 0;
    assert_eq!(r.query(&spec, Cursor::Start).unwrap().events.len(), 50);
}

#[test]
fn sessions_and_grants_map_to_their_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let start = Event {
        event: Some(Kind::SessionStart(SessionStart { command: vec!["bash".into()], root_pid: 7, ..SessionStart::default() })),
        ..ev("a2", "b", 1, "s-9", 5)
    };
    let end = Event { event: Some(Kind::SessionEnd(SessionEnd { reason: "exited".into() })), ..ev("a2", "b", 2, "s-9", 6) };
    s.append_batches(vec![vec![start]]).unwrap();
    let rs = r.session_agent("s-9").unwrap().unwrap();
    assert_eq!((rs.agent_id.as_str(), rs.session.as_ref().unwrap().root_pid), ("a2", 7));
    assert_eq!(rs.session.as_ref().unwrap().state, warrant_proto::SessionState::Live as i32);
    assert_eq!(r.grant_agents("g-s-9").unwrap(), vec!["a2".to_owned()]);
    s.append_batches(vec![vec![end]]).unwrap();
    assert_eq!(r.sessions().unwrap()[0].session.as_ref().unwrap().end_reason, "exited");
    assert_eq!(r.sessions().unwrap()[0].session.as_ref().unwrap().state, warrant_proto::SessionState::Ended as i32);
}

#[test]
fn queued_commands_survive_and_unqueue() {
    let dir = tempfile::tempdir().unwrap();
    let (s, r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let c1 = Command { id: "c-1".into(), ..Command::default() };
    let c2 = Command { id: "c-2".into(), ..Command::default() };
    s.queue_command("a", &c1).unwrap();
    r.queue_command("a", &c2).unwrap();
    r.queue_command("b", &c1).unwrap();
    drop((s, r));
    let (_s, r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(r.queued_commands("a").unwrap().iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["c-1", "c-2"]);
    assert!(r.unqueue_command("a", "c-1").unwrap());
    assert!(!r.unqueue_command("a", "c-1").unwrap());
    assert_eq!(r.queued_commands("a").unwrap().len(), 1);
    assert_eq!(r.queued_commands("b").unwrap().len(), 1);
}

/// Retention drops a prefix of whole segments, and verify_dir accepts the
/// result only with the retention record that accounts for it.
#[test]
fn retention_keeps_the_chain_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, r) = Store::open(dir.path(), StoreOptions { segment_bytes: 4096 }).unwrap();
    for i in 0..20 {
        s.append_batches(vec![batch("a", "b", (i * 20 + 1)..=(i * 20 + 20))]).unwrap();
    }
    assert!(verify_dir(dir.path(), None, Some(&s.anchor())).unwrap().problems.is_empty());
    let plan = s.retention_plan(None, Some(20_000), 0).unwrap().unwrap();
    assert!(plan.segments.len() > 3);
    // Drop without the record: verify names the gap.
    let mut bare = s.retention_plan(None, Some(20_000), 0).unwrap().unwrap();
    bare.segments.truncate(1);
    let copy = tempfile::tempdir().unwrap();
    std::fs::create_dir(copy.path().join("log")).unwrap();
    for (first, path) in list_segments(&dir.path().join("log")).unwrap().iter().skip(1) {
        std::fs::copy(path, copy.path().join("log").join(segment_name(*first))).unwrap();
    }
    let report = verify_dir(copy.path(), None, None).unwrap();
    assert!(report.problems[0].contains("no retention record accounts"), "{:?}", report.problems);

    let record = Event {
        seq: 1,
        agent_id: "collector".into(),
        boot_id: "x".into(),
        event: Some(Kind::ControlAction(warrant_proto::ControlAction {
            action: "retention".into(),
            target: format!("log up to record {}", plan.last_n),
            detail: format!("hash {}; test", plan.last_hash),
            ..warrant_proto::ControlAction::default()
        })),
        ..Event::default()
    };
    s.append_batches(vec![vec![record]]).unwrap();
    s.drop_segments(&plan).unwrap();
    let report = verify_dir(dir.path(), None, Some(&s.anchor())).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.first, plan.last_n + 1);
    let page = r.query(&QuerySpec { limit: 1000, ..QuerySpec::default() }, Cursor::Start).unwrap();
    assert_eq!(page.events.first().unwrap().seq, plan.last_n + 1);
}

/// The store's own ingest rate (no network): `cargo test --release -p
/// warrant-collector store_rate -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn store_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let batches: Vec<Vec<Event>> = (0..200u64).map(|i| batch("a", "b", (i * 512 + 1)..=(i * 512 + 512))).collect();
    let t = Instant::now();
    for b in batches {
        s.append_batches(vec![b]).unwrap();
    }
    let e = t.elapsed();
    println!("store: {} events in {e:?} = {:.0}/s", 200 * 512, (200.0 * 512.0) / e.as_secs_f64());
    let mut log = AuditLog::open(&dir.path().join("plain.log")).unwrap();
    let batches: Vec<Vec<Event>> = (0..200u64).map(|i| batch("a", "b", (i * 512 + 1)..=(i * 512 + 512))).collect();
    let t = Instant::now();
    for b in batches {
        log.append(&b).unwrap();
    }
    let e = t.elapsed();
    println!("log alone: {} events in {e:?} = {:.0}/s", 200 * 512, (200.0 * 512.0) / e.as_secs_f64());
}

/// A jump in an agent's seqs is recorded as a gap (with a gap record when the log
/// side knows the collector's envelope); a late event in the gap is stored, one at
/// or below the mark outside it is a duplicate; the gaps survive a reopen and a
/// lost index (they are derived from the log).
#[test]
fn gaps_are_recorded_filled_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (mut log, mut index) = s.split();
        log.set_own(Event { agent_id: "collector".into(), boot_id: "c1".into(), ..Event::default() });
        let (out, work) = log.append_batches(vec![batch("a", "b", 1..=5), batch("a", "b", 10..=12)]).unwrap();
        index.apply(&work, false).unwrap();
        assert_eq!((out[1].gaps, out[1].accepted.len()), (1, 4), "three events and the gap record");
        let Some(Kind::ControlAction(g)) = &out[1].accepted[0].event else { panic!("{:?}", out[1].accepted[0]) };
        assert_eq!((g.action.as_str(), g.target.as_str()), ("gap", "agent a boot b seqs 6..=9"));
        assert_eq!(out[1].accepted[0].seq, 1, "the collector's own seq");
        let (out, work) = log.append_batches(vec![batch("a", "b", 7..=7), batch("a", "b", 3..=3)]).unwrap();
        index.apply(&work, false).unwrap();
        assert_eq!((out[0].filled, out[0].duplicates, out[1].filled, out[1].duplicates), (1, 0, 0, 1));
        assert_eq!(log.gaps("a", "b"), vec![(6, 6), (8, 9)]);
    }
    let (s, _r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(s.split().0.gaps("a", "b"), vec![(6, 6), (8, 9)], "re-derived at reopen");
    std::fs::remove_file(dir.path().join("index.redb")).unwrap();
    let (s, _r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let (log, _) = s.split();
    assert_eq!((log.gaps("a", "b"), log.high_water("a", "b")), (vec![(6, 6), (8, 9)], 12), "rebuilt from the log");
}

/// The store's chain is keyed: a rewrite by someone who can write the segments but
/// not read `log.key` is caught even with every hash re-chained, whether the old
/// marks are kept or stripped; a log from before the key was made verifies with its
/// unmarked prefix counted.
#[test]
fn a_rewritten_store_is_caught_by_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let seg = || list_segments(&dir.path().join("log")).unwrap()[0].1.clone();
    {
        let (mut s, _r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        s.append_batches(vec![batch("a", "b", 1..=5)]).unwrap();
    }
    let report = verify_dir(dir.path(), None, None).unwrap();
    assert!(report.problems.is_empty() && report.keyed, "{:?}", report.problems);
    assert_eq!((report.records, report.unkeyed), (5, 0));
    let original = std::fs::read(seg()).unwrap();

    // Record 3 rewritten, the chain recomputed, the old marks kept.
    warrant_audit::log::testing::rechain(&seg(), true, |n, ev| {
        if n == 3 {
            ev["argv"] = serde_json::json!(["true"]);
        }
    });
    let report = verify_dir(dir.path(), None, None).unwrap();
    assert!(report.problems.iter().any(|p| p.contains("mac does not match")), "{:?}", report.problems);

    // Every mark stripped: the key file says since when records must carry one.
    std::fs::write(seg(), &original).unwrap();
    warrant_audit::log::testing::rechain(&seg(), false, |_, _| {});
    let report = verify_dir(dir.path(), None, None).unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("records 1..=5 carry no mac") && p.contains("keyed since record 1")),
        "{:?}",
        report.problems
    );

    // A store written before it had a key: its records are counted as unmarked,
    // and what is appended now carries marks.
    std::fs::write(seg(), &original).unwrap();
    warrant_audit::log::testing::rechain(&seg(), false, |_, _| {});
    std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
    std::fs::remove_file(warrant_audit::log_key::from_path(&dir.path().join(KEY_FILE))).unwrap();
    {
        let (mut s, _r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        s.append_batches(vec![batch("a", "b", 6..=7)]).unwrap();
    }
    assert_eq!(std::fs::read_to_string(warrant_audit::log_key::from_path(&dir.path().join(KEY_FILE))).unwrap().trim(), "6");
    let report = verify_dir(dir.path(), None, None).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.records, report.unkeyed, report.keyed), (7, 5, true));
}

/// An upgraded collector: segments an older collector wrote (no marks) stay
/// verifiable by their hashes, and what this one appends is marked.
#[test]
fn segments_from_before_the_key_verify_by_their_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    std::fs::create_dir_all(&log_dir).unwrap();
    let mut old = AuditLog::open(&log_dir.join(segment_name(1))).unwrap();
    old.append(&batch("a", "b", 1..=10)).unwrap();
    let mut old = AuditLog::open_after(&log_dir.join(segment_name(11)), &old.anchor()).unwrap();
    old.append(&batch("a", "b", 11..=20)).unwrap();
    drop(old);
    {
        let (mut s, _r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        s.append_batches(vec![batch("a", "b", 21..=25)]).unwrap();
    }
    assert_eq!(std::fs::read_to_string(warrant_audit::log_key::from_path(&dir.path().join(KEY_FILE))).unwrap().trim(), "21");
    let report = verify_dir(dir.path(), None, None).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.records, report.unkeyed, report.segments), (25, 20, 2));
}

/// A segment written before format versions (the audit crate's fixture, as a
/// collector of then would have left it: segment 1, `log.key`, `log.key.from`)
/// verifies, is read and indexed, and is continued in the current format.
#[test]
fn a_segment_of_the_format_before_versions_verifies_and_is_continued() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../audit/tests/fixtures");
    std::fs::create_dir(dir.path().join("log")).unwrap();
    for (src, dst) in [
        ("v1-audit.log", dir.path().join("log").join(segment_name(1))),
        ("v1-audit.key", dir.path().join(KEY_FILE)),
        ("v1-audit.key.from", warrant_audit::log_key::from_path(&dir.path().join(KEY_FILE))),
    ] {
        std::fs::copy(fixtures.join(src), &dst).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let report = verify_dir(dir.path(), None, None).unwrap();
    assert!(report.problems.is_empty() && report.keyed, "{:?}", report.problems);
    assert_eq!((report.records, report.unkeyed, report.unversioned), (10, 2, 10));
    {
        let (mut s, r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        s.append_batches(vec![batch("a", "b", 1..=3)]).unwrap();
        let page = r.query(&QuerySpec { limit: 100, ..QuerySpec::default() }, Cursor::Start).unwrap();
        // All but record 9, of a kind that build did not know (readers skip those).
        assert_eq!(page.events.len(), 12, "the old records read back, and the new ones");
    }
    let text = std::fs::read_to_string(list_segments(&dir.path().join("log")).unwrap()[0].1.clone()).unwrap();
    assert!(text.lines().nth(10).unwrap().starts_with("{\"v\":2,\"n\":11,"), "{text}");
    let report = verify_dir(dir.path(), None, None).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.records, report.unkeyed, report.unversioned), (13, 2, 10));
}

#[test]
fn key_runs_continue_across_appends_and_pages_start_inside_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    // One session for 1..=30 over three appends (one run), then another agent's
    // records in between, then the session again (a second run).
    let one = |seqs: std::ops::RangeInclusive<u64>| -> Vec<Event> { seqs.map(|q| ev("a", "b", q, "s-1", i64::try_from(q).unwrap() * 1000)).collect() };
    for b in [one(1..=10), one(11..=20), one(21..=30)] {
        s.append_batches(vec![b]).unwrap();
    }
    s.append_batches(vec![batch("c", "d", 1..=5)]).unwrap();
    s.append_batches(vec![one(31..=40)]).unwrap();
    let spec = |limit| QuerySpec { filter: Filter { session: Some("s-1".into()), ..Filter::default() }, limit, ..QuerySpec::default() };
    let mut got = Vec::new();
    let mut cursor = Cursor::Start;
    loop {
        let page = r.query(&spec(7), cursor).unwrap();
        got.extend(seqs(&page.events));
        match page.next {
            Some(c) => cursor = c,
            None => break,
        }
    }
    assert_eq!(got, (1..=40).collect::<Vec<_>>());
    // Time range inside a run.
    let page = r.query(&QuerySpec { from: 12_000, to: 14_000, ..spec(100) }, Cursor::Start).unwrap();
    assert_eq!(seqs(&page.events), [12, 13, 14]);
    // By host: the other agent's run only.
    let page = r.query(&QuerySpec { filter: Filter { host: Some("host-c".into()), ..Filter::default() }, limit: 100, ..QuerySpec::default() }, Cursor::Start).unwrap();
    assert_eq!(seqs(&page.events), [1, 2, 3, 4, 5]);
    // Unkeyed, from the middle of a row of positions.
    let page = r.query(&QuerySpec { limit: 3, ..QuerySpec::default() }, Cursor::AfterN(15)).unwrap();
    assert_eq!(seqs(&page.events), [16, 17, 18]);
}

#[test]
fn an_index_of_the_layout_before_runs_is_rebuilt_and_keeps_queued_commands() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        s.append_batches(vec![batch("a", "b", 1..=6)]).unwrap();
        s.queue_command("a", &Command { id: "c-1".into(), ..Command::default() }).unwrap();
        s.index.commit_durable().unwrap();
    }
    {
        // Make it look like layout 1: an old table, no schema mark.
        let db = redb::Database::create(dir.path().join("index.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let old: redb::TableDefinition<u64, (u64, u64, u32, i64)> = redb::TableDefinition::new("pos");
            tx.open_table(old).unwrap().insert(1, (1, 0, 10, 0)).unwrap();
            tx.open_table(index::META).unwrap().remove("schema").unwrap();
        }
        tx.commit().unwrap();
    }
    let (s, r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(s.high_water("a", "b"), 6);
    let page = r.query(&QuerySpec { filter: Filter { session: Some("s-even".into()), ..Filter::default() }, limit: 100, ..QuerySpec::default() }, Cursor::Start).unwrap();
    assert_eq!(seqs(&page.events), [2, 4, 6]);
    assert_eq!(r.queued_commands("a").unwrap().len(), 1, "queued commands are not in the log: they stay");
    let tx = r.db.begin_read().unwrap();
    assert!(!tx.list_tables().unwrap().any(|t| redb::TableHandle::name(&t) == "pos"));
}

/// A query that reached the end hands back where the log ended ([`Page::end`]): a
/// later query from there, with the same filter, returns exactly the records stored
/// since, whatever their times (an agent's spool delivered late carries old ones),
/// keyed or not.
#[test]
fn a_finished_query_resumes_at_the_end_with_only_what_was_stored_since() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, r) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let session = QuerySpec { filter: Filter { session: Some("s-1".into()), ..Filter::default() }, limit: 100, ..QuerySpec::default() };
    let all = QuerySpec { limit: 100, ..QuerySpec::default() };
    let empty = r.query(&session, Cursor::Start).unwrap();
    assert_eq!((empty.next, empty.end), (None, Some(Cursor::Start)), "an empty log ends at its start");
    let one = |agent: &str, seqs: std::ops::RangeInclusive<u64>, t: i64| -> Vec<Event> { seqs.map(|q| ev(agent, "b", q, "s-1", t)).collect() };
    s.append_batches(vec![one("a", 1..=10, 50_000)]).unwrap();
    s.append_batches(vec![batch("c", "d", 1..=4)]).unwrap();
    let first = r.query(&session, Cursor::Start).unwrap();
    assert_eq!((seqs(&first.events), first.next), ((1..=10).collect(), None));
    let end = first.end.expect("a finished query says where the log ended");
    assert_eq!(end, Cursor::AfterN(14), "after the last record stored, not the last match");
    let unkeyed_end = r.query(&all, Cursor::Start).unwrap().end.unwrap();
    assert_eq!(unkeyed_end, end);
    // Nothing new: nothing read again.
    let again = r.query(&session, Cursor::parse(&end.token()).unwrap()).unwrap();
    assert!(again.events.is_empty() && again.next.is_none() && again.end == Some(end), "{again:?}");
    // New records of the session, one from a late spool with a time far older than
    // anything read so far, and another session's between them.
    s.append_batches(vec![one("z", 1..=1, 7)]).unwrap();
    s.append_batches(vec![batch("c", "d", 5..=6)]).unwrap();
    s.append_batches(vec![one("a", 11..=12, 60_000)]).unwrap();
    let new = r.query(&session, end).unwrap();
    let got: Vec<(String, u64)> = new.events.iter().map(|e| (e.agent_id.clone(), e.seq)).collect();
    assert_eq!(got, [("z".to_owned(), 1), ("a".to_owned(), 11), ("a".to_owned(), 12)]);
    assert_eq!(new.end, Some(Cursor::AfterN(19)));
    assert_eq!(seqs(&r.query(&all, unkeyed_end).unwrap().events), [1, 5, 6, 11, 12]);
    // A page that stops before the end has no end to resume at.
    let paged = r.query(&QuerySpec { limit: 2, ..session.clone() }, Cursor::Start).unwrap();
    assert!(paged.next.is_some() && paged.end.is_none(), "{paged:?}");
}
