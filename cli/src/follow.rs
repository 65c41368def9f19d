//! A session followed in a collector's log: its report and process count while it
//! runs, and each grant's reason (for `warrant report --collector` and the console).
//!
//! A collector stores a session's `session_report` only when the agent sends it, at
//! the session's end; before that the reader sums the session's events up itself
//! ([`warrant_audit::ledger::Ledger`], the agent's rules). Each session it is asked
//! about gets a [`Book`] that reads the session's events once and then only what is
//! new: a `Query` from where the last one ended in the log (the answer's
//! `resume_page`), so a late spool's events, old times and all, are found and
//! nothing is read twice. From a collector that sends no `resume_page` it reads
//! from a little before the newest event it has (clocks of one agent are close to
//! log order), skipping every (agent, boot, seq) it already took in.
//! One update reads at most a budget of events ([`BUDGET`] for a session's page),
//! so a session streaming thousands of events a second cannot hold a page up; the
//! answer says whether it caught up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Result;
use warrant_proto::event::Event as Kind;
use warrant_audit::ledger::{GrantFacts, Ledger};
use warrant_proto::{Event, EventFilter, QueryRequest};

use crate::remote::Collector;

/// Events an update for a session's page reads at most ([`Books::update`] takes
/// its budget: the sessions page, which updates every live session, reads less).
pub const BUDGET: usize = 50_000;
/// Events per `Query` page (the collector's most).
const PAGE: u32 = 10_000;
/// How far before the newest event taken in the next update starts reading, from
/// a collector that sends no `resume_page`.
const SLACK_NS: i64 = 10_000_000_000;
/// Books kept before those of ended sessions are dropped.
const KEEP: usize = 512;

/// One session as the console has read it so far.
#[derive(Default)]
struct Book {
    ledger: Ledger,
    /// The highest seq taken in per (agent, boot).
    marks: HashMap<(String, String), u64>,
    /// The newest event time taken in.
    newest_ns: i64,
    /// Where the last update stopped at its budget: its `from` and the next page.
    resume: Option<(i64, String)>,
    /// Where the log ended when the last update read to its end (the collector's
    /// `resume_page`): the next update reads from there.
    after: Option<String>,
    /// The report the agent sent at the session's end, once it is in the log.
    sent: Option<Event>,
    /// Read before (so the direct look-up for a stored report is done).
    opened: bool,
}

impl Book {
    fn take(&mut self, ev: Event) {
        if ev.seq != 0 {
            let mark = self.marks.entry((ev.agent_id.clone(), ev.boot_id.clone())).or_insert(0);
            if ev.seq <= *mark {
                return;
            }
            *mark = ev.seq;
        }
        self.newest_ns = self.newest_ns.max(ev.time_unix_ns);
        if matches!(ev.event, Some(Kind::SessionReport(_))) {
            self.sent = Some(ev);
        } else {
            self.ledger.observe(&ev);
        }
    }

    /// Done: the agent's own report is in (nothing more will come).
    fn done(&self) -> bool {
        self.sent.is_some()
    }
}

/// What an update of a session found.
pub struct Seen {
    /// The session's report: the agent's, once sent, else summed up so far.
    pub report: Event,
    /// Processes the log shows alive.
    pub processes: usize,
    /// False when the update stopped at its budget (more to read next time).
    pub caught_up: bool,
}

/// Every session's book and every grant's facts, shared by the handlers.
#[derive(Default)]
pub struct Books {
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Book>>>>,
    grants: tokio::sync::Mutex<HashMap<String, GrantFacts>>,
}

impl Books {
    fn book(&self, session: &str) -> Arc<tokio::sync::Mutex<Book>> {
        let mut all = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if all.len() >= KEEP && !all.contains_key(session) {
            // Ended sessions are read again cheaply (their stored report), live ones
            // are not: drop the former first.
            all.retain(|_, b| !b.try_lock().is_ok_and(|b| b.done()));
        }
        all.entry(session.to_owned()).or_default().clone()
    }

    /// Reads what is new of `session` and returns its report so far.
    pub async fn update(&self, col: &Collector, session: &str, budget: usize) -> Result<Seen> {
        let book = self.book(session);
        let mut book = book.lock().await;
        if !book.opened {
            book.opened = true;
            // An ended session's report is one look-up, not a read of all it did.
            if let Some(ev) = stored_report(col, session).await? {
                book.sent = Some(ev);
            }
        }
        let mut caught_up = true;
        if !book.done() {
            caught_up = read_new(col, session, &mut book, budget).await?;
        }
        let grant = book.ledger.grant().to_owned();
        let processes = book.ledger.processes();
        let report = match &book.sent {
            Some(ev) => ev.clone(),
            None => {
                let facts = self.grant(col, &grant).await?;
                book.ledger.report(session, crate::output::now_unix_ns(), &facts)
            }
        };
        Ok(Seen { report, processes, caught_up })
    }

    /// The grant's reason and issuer, from its `grant_change` "issued" record (read
    /// once per grant).
    pub async fn grant(&self, col: &Collector, grant: &str) -> Result<GrantFacts> {
        if grant.is_empty() {
            return Ok(GrantFacts::default());
        }
        let mut known = self.grants.lock().await;
        if let Some(f) = known.get(grant) {
            return Ok(f.clone());
        }
        let filter = EventFilter { grant: grant.to_owned(), kinds: vec!["grant_change".into()], ..EventFilter::default() };
        let mut page = String::new();
        let mut facts = GrantFacts::default();
        // Its first records are its issue; a few pages are plenty.
        for _ in 0..5 {
            let req = QueryRequest { filter: Some(filter.clone()), from_unix_ns: 0, to_unix_ns: 0, limit: 100, page };
            let resp = col.clone().query(req).await?;
            let issued = resp.events.iter().find_map(|e| match &e.event {
                Some(Kind::GrantChange(g)) if g.change == "issued" => Some(g),
                _ => None,
            });
            if let Some(g) = issued {
                facts = GrantFacts { reason: g.reason.clone(), issued_by: g.by.clone(), policy: String::new() };
                break;
            }
            if resp.next_page.is_empty() {
                break;
            }
            page = resp.next_page;
        }
        known.insert(grant.to_owned(), facts.clone());
        Ok(facts)
    }
}

/// The `session_report` the agent sent at the session's end, if the log has it.
async fn stored_report(col: &Collector, session: &str) -> Result<Option<Event>> {
    let filter = EventFilter { session: session.to_owned(), kinds: vec!["session_report".into()], ..EventFilter::default() };
    let mut page = String::new();
    let mut found = None;
    loop {
        let req = QueryRequest { filter: Some(filter.clone()), from_unix_ns: 0, to_unix_ns: 0, limit: 100, page };
        let resp = col.clone().query(req).await?;
        if let Some(ev) = resp.events.into_iter().rev().find(|e| matches!(e.event, Some(Kind::SessionReport(_)))) {
            found = Some(ev);
        }
        if resp.next_page.is_empty() {
            return Ok(found);
        }
        page = resp.next_page;
    }
}

/// Reads the session's events the book has not taken in, up to `budget` (rounded
/// up to a page); false when it stopped there.
async fn read_new(col: &Collector, session: &str, book: &mut Book, budget: usize) -> Result<bool> {
    let (from, mut page) = match (book.resume.take(), &book.after) {
        (Some(r), _) => r,
        (None, Some(after)) => (0, after.clone()),
        (None, None) if book.newest_ns == 0 => (0, String::new()),
        (None, None) => ((book.newest_ns - SLACK_NS).max(1), String::new()),
    };
    let filter = EventFilter { session: session.to_owned(), ..EventFilter::default() };
    let mut read = 0;
    loop {
        let req = QueryRequest { filter: Some(filter.clone()), from_unix_ns: from, to_unix_ns: 0, limit: PAGE, page };
        let resp = col.clone().query(req).await?;
        read += resp.events.len();
        for ev in resp.events {
            book.take(ev);
        }
        if resp.next_page.is_empty() {
            if !resp.resume_page.is_empty() {
                book.after = Some(resp.resume_page);
            }
            return Ok(true);
        }
        if read >= budget {
            book.resume = Some((from, resp.next_page));
            return Ok(false);
        }
        page = resp.next_page;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warrant_proto::{Exec, SessionEnd, SessionReport};

    fn ev(seq: u64, boot: &str, kind: Kind) -> Event {
        Event { event: Some(kind), seq, agent_id: "a-1".into(), boot_id: boot.into(), session: "s-1".into(), time_unix_ns: seq as i64, ..Event::default() }
    }

    #[test]
    fn a_book_takes_each_event_once_and_keeps_the_agents_report() {
        let exec = || Kind::Exec(Exec { path: "/bin/true".into(), ..Exec::default() });
        let mut b = Book::default();
        for e in [ev(1, "b-1", exec()), ev(2, "b-1", exec()), ev(1, "b-1", exec()), ev(2, "b-1", exec()), ev(1, "b-2", exec())] {
            b.take(e);
        }
        let r = b.ledger.report("s-1", 0, &GrantFacts::default());
        let Some(Kind::SessionReport(r)) = r.event else { panic!() };
        assert_eq!(r.commands_total, 3, "the overlap read again is skipped, another boot's seq 1 is not");
        assert_eq!(b.newest_ns, 2);
        assert!(!b.done());
        b.take(ev(3, "b-2", Kind::SessionEnd(SessionEnd { reason: "exited".into() })));
        b.take(ev(4, "b-2", Kind::SessionReport(SessionReport { commands_total: 3, ..SessionReport::default() })));
        assert!(b.done() && b.ledger.ended());
    }
}
