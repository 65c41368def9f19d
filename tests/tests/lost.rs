//! Lost records: when the kernel ring buffer is too small for a burst, what did not
//! fit is counted and reported as `events_lost`, never dropped silently.

use std::time::{Duration, Instant};

use warrant_tests::workload::{canonical, testbin};
use warrant_tests::{AgentOptions, Marker, Session, TestAgent, audit};

/// Opens in the burst.
const BURST: u64 = 2000;

/// Runs `burst` (a command) in a session of `grant` while the agent is stopped
/// (SIGSTOP), so nothing drains the ring and what does not fit in it is lost in the
/// kernel whatever the records' size; the agent runs again once every process of
/// the session is gone. (Records are ~150 bytes now: a running agent keeps up with a
/// small ring, so a burst alone proves nothing.) The command waits at a gate that
/// makes no records, so the burst is the only thing the ring misses.
fn burst_while_agent_stopped(agent: &TestAgent, grant: &str, mark: &Marker, burst: &[&str]) -> Session {
    bursts_while_agent_stopped(agent, grant, &[(mark, burst)]).remove(0)
}

/// [`burst_while_agent_stopped`] for several sessions, one per `(marker, command)`:
/// all start and wait at their gates, then, with the agent stopped, each runs its
/// burst to the end in turn.
fn bursts_while_agent_stopped(agent: &TestAgent, grant: &str, bursts: &[(&Marker, &[&str])]) -> Vec<Session> {
    let tb = testbin();
    let started: Vec<(Session, std::path::PathBuf, &Marker)> = bursts
        .iter()
        .enumerate()
        .map(|(i, (mark, burst))| {
            let go = agent.temp_dir().join(format!("go-{i}"));
            let go_arg = go.to_str().expect("UTF-8 temp dir").to_owned();
            let argv: Vec<&str> = [tb.as_str(), "gate", go_arg.as_str(), "--"].into_iter().chain(burst.iter().copied()).collect();
            let s = agent.exec(grant, mark, &argv);
            (s, go, *mark)
        })
        .collect();
    // `session_start` is recorded before the agent lets the command run: wait for
    // each gate's own exec, so the agent is not stopped with a command held back.
    for (s, _, _) in &started {
        let sid = s.id().to_string();
        agent.wait_for_event(|e| audit::is("exec", &sid)(e), Duration::from_secs(20));
    }
    let signal = |sig| {
        // SAFETY: kill(2) on the agent this test started.
        let r = unsafe { libc::kill(i32::try_from(agent.pid()).expect("pid"), sig) };
        assert_eq!(r, 0, "kill({}, {sig}): {}", agent.pid(), std::io::Error::last_os_error());
    };
    signal(libc::SIGSTOP);
    let mut stuck = Vec::new();
    for (s, go, mark) in &started {
        std::fs::write(go, b"").expect("open the gate");
        // The `warrant exec` client carries the marker too, and waits on the agent.
        let session_pids = || mark.pids().into_iter().filter(|&p| p != s.client_pid()).collect::<Vec<_>>();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !session_pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        stuck.extend(session_pids().iter().map(|p| {
            let f = |n: &str| std::fs::read_to_string(format!("/proc/{p}/{n}")).unwrap_or_default();
            format!("{p}: {} wchan {} stack {}", f("stat"), f("wchan"), f("stack"))
        }));
    }
    signal(libc::SIGCONT);
    assert!(stuck.is_empty(), "a burst did not end in 30 s with the agent stopped: {stuck:#?}");
    started.into_iter().map(|(s, _, _)| s).collect()
}

/// One session's flood must not cost another session its records. With the agent
/// stopped and a 256 KiB ring, session A opens a file 20,000 times (3 MB of
/// records), then session B opens another 40 times: A holds most of a nearly full
/// ring, so the kernel refuses A's records past three quarters of it (counted lost
/// against A), and B's all fit. Without the fair share A filled the whole ring and
/// every one of B's records was lost.
#[test]
fn a_flooding_session_loses_its_own_records_not_another_sessions() {
    const QUIET: u64 = 40;
    let agent = TestAgent::start(AgentOptions {
        ring_buffer_bytes: Some(256 * 1024),
        ..AgentOptions::default()
    });
    let grant = agent.issue_grant("2m");
    let (flood_mark, quiet_mark) = (Marker::new(), Marker::new());
    let flood_target = burst_target(&agent);
    let quiet_target = agent.temp_dir().join("quiet-target");
    std::fs::write(&quiet_target, b"x").expect("create target");
    let quiet_target = canonical(&quiet_target);
    let (flood_n, quiet_n) = ("20000".to_owned(), QUIET.to_string());
    let tb = testbin();
    let flood: [&str; 4] = [&tb, "open-burst", &flood_n, &flood_target];
    let quiet: [&str; 4] = [&tb, "open-burst", &quiet_n, &quiet_target];
    let mut sessions = bursts_while_agent_stopped(&agent, &grant, &[(&flood_mark, &flood), (&quiet_mark, &quiet)]);
    for s in &mut sessions {
        assert!(s.wait_for(Duration::from_secs(30)).success());
    }
    let (flood_sid, quiet_sid) = (sessions[0].id().to_string(), sessions[1].id().to_string());
    let (flooded, flood_lost) = agent.wait_until("the quiet session's opens and the flood's losses", Duration::from_secs(20), |evs| {
        let seen = |sid: &str, target: &str| evs.iter().filter(|e| audit::is("file_open", sid)(e) && e["path"] == target).count() as u64;
        let lost: u64 = evs.iter().filter(|e| audit::is("events_lost", &flood_sid)(e)).filter_map(|e| e["count"].as_u64()).sum();
        let quiet_seen = seen(&quiet_sid, &quiet_target);
        let flood_seen = seen(&flood_sid, &flood_target);
        (quiet_seen == QUIET && lost > 0 && flood_seen + lost >= 20_000).then_some((flood_seen, lost))
    });
    let quiet_losses: Vec<_> = agent.events().into_iter().filter(|e| audit::is("events_lost", &quiet_sid)(e)).collect();
    let quiet_records = agent.events().into_iter().filter(|e| e["session"] == quiet_sid.as_str()).count();
    eprintln!("the quiet session has {quiet_records} records in the log");
    assert!(quiet_losses.is_empty(), "the quiet session lost records: {quiet_losses:?}");
    eprintln!("flood: {flooded} file_open events logged, {flood_lost} records lost against it; quiet session: all {QUIET} opens logged");
}

/// With a 16 KiB ring buffer and the agent stopped, a burst of 2000 opens under a
/// grant yields an `events_lost` event with `count` > 0, and every open is
/// accounted for: the file_open events the log holds for the burst plus the total
/// lost reach 2000.
#[test]
fn ring_buffer_overflow_is_counted() {
    let agent = TestAgent::start(AgentOptions {
        ring_buffer_bytes: Some(16384),
        ..AgentOptions::default()
    });
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let target = burst_target(&agent);
    let n = BURST.to_string();
    let mut s = burst_while_agent_stopped(&agent, &grant, &mark, &[&testbin(), "open-burst", &n, &target]);
    assert!(s.wait_for(Duration::from_secs(30)).success());
    let sid = s.id().to_string();

    let (seen, lost) = agent.wait_until(
        "events_lost and seen + lost ≥ 2000",
        Duration::from_secs(20),
        |evs| {
            let seen = evs
                .iter()
                .filter(|e| audit::is("file_open", &sid)(e) && e["path"] == target.as_str())
                .count() as u64;
            let reports: Vec<_> = evs.iter().filter(|e| e["kind"] == "events_lost").collect();
            let total = reports.iter().map(|e| e["total"].as_u64().unwrap_or(0)).max()?;
            let any_count = reports.iter().any(|e| e["count"].as_u64().unwrap_or(0) > 0);
            (any_count && seen + total >= BURST).then_some((seen, total))
        },
    );
    assert!(lost > 0 && seen < BURST, "{seen} seen, {lost} lost");
    eprintln!("burst of {BURST}: {seen} file_open events logged, {lost} records lost");
}

/// The kernel counts what it could not keep against the session whose task made the
/// record, and the agent reports it as an `events_lost` naming that session and
/// grant, by kind.
#[test]
fn lost_records_are_counted_against_their_session() {
    let agent = TestAgent::start(AgentOptions {
        ring_buffer_bytes: Some(16384),
        ..AgentOptions::default()
    });
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let target = burst_target(&agent);
    let n = BURST.to_string();
    let mut s = burst_while_agent_stopped(&agent, &grant, &mark, &[&testbin(), "open-burst", &n, &target]);
    assert!(s.wait_for(Duration::from_secs(30)).success(), "without on_audit_gap the session runs on");
    let sid = s.id().to_string();
    let (seen, lost) = agent.wait_until("the session's events_lost covers the burst", Duration::from_secs(20), |evs| {
        let seen = evs.iter().filter(|e| audit::is("file_open", &sid)(e) && e["path"] == target.as_str()).count() as u64;
        let mine: Vec<_> = evs.iter().filter(|e| audit::is("events_lost", &sid)(e)).collect();
        for e in &mine {
            assert_eq!(e["grant"], grant.as_str(), "{e}");
            assert_eq!(e["reason"], "ring_buffer", "{e}");
        }
        let lost: u64 = mine.iter().filter_map(|e| e["by_kind"]["file_open"].as_u64()).sum();
        (lost > 0 && seen + lost >= BURST).then_some((seen, lost))
    });
    eprintln!("session {sid}: {seen} file_open events logged, {lost} counted lost against it");
}

/// A file to open in bursts, by its canonical name (as the events give it).
fn burst_target(agent: &TestAgent) -> String {
    let target = agent.temp_dir().join("burst-target");
    std::fs::write(&target, b"x").expect("create target");
    canonical(&target)
}

/// A socket's close is often seen in softirq, on no task of the session, yet a
/// close the ring had no room for is still the session's loss: a burst of resets
/// from one session is counted in its own `events_lost`, by kind `socket_close`.
#[test]
fn lost_socket_closes_are_counted_against_the_session_that_made_the_sockets() {
    const CONNS: usize = 400;
    let agent = TestAgent::start(AgentOptions {
        ring_buffer_bytes: Some(16384),
        ..AgentOptions::default()
    });
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().flatten() {
            held.push(c);
        }
    });
    let grant = agent.issue_grant("2m");
    let mark = Marker::new();
    let n = CONNS.to_string();
    let mut s = burst_while_agent_stopped(&agent, &grant, &mark, &[&testbin(), "conn-burst", &n, &addr]);
    assert!(s.wait_for(Duration::from_secs(30)).success());
    let sid = s.id().to_string();
    let (seen, lost) = agent.wait_until("the session's events_lost covers the closes", Duration::from_secs(20), |evs| {
        let seen = evs.iter().filter(|e| audit::is("socket_close", &sid)(e)).count() as u64;
        let lost: u64 = evs
            .iter()
            .filter(|e| audit::is("events_lost", &sid)(e))
            .filter_map(|e| e["by_kind"]["socket_close"].as_u64())
            .sum();
        (seen + lost >= CONNS as u64 && lost > 0).then_some((seen, lost))
    });
    eprintln!("session {sid}: {seen} socket_close events logged, {lost} counted lost against it");
}

/// `on_audit_gap: kill-session`: a session whose trail cannot be kept is stopped.
/// The kernel marks it dead at the first record it had no room for and kills the
/// task before it returns to user mode, so the burst never finishes; the agent
/// reports the loss and the kill (reason `audit-gap`).
#[test]
fn on_audit_gap_kill_session_stops_a_session_whose_trail_has_a_gap() {
    let agent = TestAgent::start(AgentOptions {
        ring_buffer_bytes: Some(16384),
        ..AgentOptions::default()
    });
    let policy = agent.temp_dir().join("gap.yaml");
    std::fs::write(&policy, "name: gap\nmax_ttl: 1h\ndefault: allow\non_audit_gap: kill-session\n").expect("write policy");
    let grant = agent
        .cli_ok(&["grant", "issue", "--subject", "gap", "--ttl", "2m", "--policy", policy.to_str().expect("UTF-8")])
        .trim()
        .to_string();
    let mark = Marker::new();
    let target = burst_target(&agent);
    let script = format!("{} open-burst {BURST} {target}; echo finished", testbin());
    let mut s = burst_while_agent_stopped(&agent, &grant, &mark, &["/bin/sh", "-c", &script]);
    let status = s.wait_for(Duration::from_secs(60));
    assert!(!status.success(), "{status:?}");
    let sid = s.id().to_string();
    let kill = agent.wait_for_event(|e| audit::is("kill", &sid)(e), Duration::from_secs(20));
    assert_eq!(kill["reason"], "audit-gap", "{kill}");
    let lost = agent.wait_for_event(|e| audit::is("events_lost", &sid)(e), Duration::from_secs(20));
    // The first record with no room may be the shell's fork of the burst (an exec
    // record) as well as one of its opens.
    assert!(lost["count"].as_u64().unwrap_or(0) > 0, "{lost}");
    assert!(mark.pids().is_empty(), "survivors: {:?}", mark.pids());
    let out = s.stdout().text();
    assert!(!out.contains("finished"), "the shell must die with the session: {out}");
}
