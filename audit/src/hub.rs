//! The live tail of the record stream: fan-out of events to watchers (`warrant
//! watch`), each with a [`Filter`] by session, grant, host, agent, subject and kind
//! (kinds and shorthands from [`crate::kinds`]).
//!
//! One bounded broadcast channel: publishing never waits for a watcher. A watcher
//! that falls more than the capacity behind loses the oldest events it had not read,
//! and is told so with one synthetic `WatchMissed { count }` event before it carries
//! on with what is still buffered. Slow watchers never slow the publisher (the
//! ring-buffer reader), which must keep up with the kernel.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;
use warrant_proto::event::Event as Kind;
use warrant_proto::{Event, WatchMissed};

use crate::Error;
use crate::kinds::{EventKind, KIND_NAMES, expand_kind, kind_name, kinds_help};

/// Publishes events to any number of [`Subscription`]s.
///
/// Cloning gives another handle on the same hub; subscriptions end (return `None`)
/// once every handle is dropped.
#[derive(Clone, Debug)]
pub struct EventHub {
    /// Bounded: a full buffer drops the oldest event for the slowest watchers, never
    /// blocks `publish`. Events are `Arc`ed so fan-out does not copy them.
    tx: broadcast::Sender<Arc<Event>>,
}

impl EventHub {
    /// A hub that buffers up to `capacity` events per watcher (at least 1).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        EventHub { tx }
    }

    /// Sends `ev` to every current watcher. Never blocks; with no watchers the
    /// event is simply dropped (the audit log, not the hub, is the record).
    pub fn publish(&self, ev: Arc<Event>) {
        // An error only means nobody is watching.
        let _ = self.tx.send(ev);
    }

    /// A new watcher that sees events published from now on that match `filter`.
    #[must_use]
    pub fn subscribe(&self, filter: Filter) -> Subscription {
        Subscription { rx: self.tx.subscribe(), filter }
    }

    /// Number of live subscriptions.
    #[must_use]
    pub fn watchers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// Which events a watcher wants. The default matches everything.
///
/// Loss notices (`events_lost`, `watch_missed`) match every filter: a watcher must
/// learn that it is not seeing everything, whatever it asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only events of this session ("s-…"); `None` for any.
    pub session: Option<String>,
    /// Only events of this grant ("g-…"); `None` for any.
    pub grant: Option<String>,
    /// Only these kinds, by JSON name, shorthands expanded; empty for all.
    pub kinds: Vec<String>,
    /// Only events from this host; `None` for any (collector watches).
    pub host: Option<String>,
    /// Only events from this agent; `None` for any (collector watches).
    pub agent_id: Option<String>,
    /// Only events of grants issued to this subject; `None` for any.
    pub subject: Option<String>,
}

impl Filter {
    /// Builds a filter from a watch request. Empty strings mean "any" (proto3's
    /// unset); `kinds` are checked against [`KIND_NAMES`], the shorthands `file`,
    /// `net` and `process` are expanded, and an unknown name is an error naming it
    /// and listing the valid ones.
    ///
    /// # Errors
    /// [`Error::UnknownKind`] for a kind that is neither a kind name nor a shorthand.
    pub fn new(session: Option<String>, grant: Option<String>, kinds: &[String]) -> Result<Filter, Error> {
        let mut expanded: Vec<String> = Vec::new();
        for name in kinds.iter().map(|k| k.trim()).filter(|k| !k.is_empty()) {
            let names: &[&str] = if KIND_NAMES.contains(&name) {
                &[name]
            } else {
                match expand_kind(name) {
                    [] => {
                        return Err(Error::UnknownKind {
                            name: name.to_owned(),
                            valid: kinds_help(),
                        });
                    }
                    names => names,
                }
            };
            for n in names {
                if !expanded.iter().any(|e| e == n) {
                    expanded.push((*n).to_owned());
                }
            }
        }
        let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
        Ok(Filter { session: nonempty(session), grant: nonempty(grant), kinds: expanded, ..Filter::default() })
    }

    /// True when `ev` should be sent to this watcher.
    #[must_use]
    pub fn matches(&self, ev: &Event) -> bool {
        if matches!(ev.event, Some(Kind::EventsLost(_) | Kind::WatchMissed(_))) {
            return true;
        }
        if self.session.as_ref().is_some_and(|s| *s != ev.session) {
            return false;
        }
        if self.grant.as_ref().is_some_and(|g| *g != ev.grant) {
            return false;
        }
        if self.host.as_ref().is_some_and(|h| *h != ev.host) {
            return false;
        }
        if self.agent_id.as_ref().is_some_and(|a| *a != ev.agent_id) {
            return false;
        }
        if self.subject.as_ref().is_some_and(|s| *s != ev.subject) {
            return false;
        }
        if self.kinds.is_empty() {
            return true;
        }
        let name = kind_name(ev);
        let shorthand = ev.event.as_ref().and_then(|k| EventKind::of(k).shorthand());
        // Also accept unexpanded shorthands, for filters built field by field.
        self.kinds.iter().any(|k| k == name || shorthand.is_some_and(|s| s.name() == k))
    }
}

/// One watcher's view of an [`EventHub`].
#[derive(Debug)]
pub struct Subscription {
    /// This watcher's cursor into the hub's buffer.
    rx: broadcast::Receiver<Arc<Event>>,
    /// What this watcher asked for.
    filter: Filter,
}

impl Subscription {
    /// The next matching event; `None` once the hub is gone.
    ///
    /// If this watcher fell behind and events were dropped for it, the next call
    /// returns one synthetic `WatchMissed { count }` (envelope time = now; `count`
    /// is every event dropped for this watcher, including ones its filter would
    /// have skipped) and later calls continue with what is still buffered.
    ///
    /// Cancel-safe: if the future is dropped before completing, no event is lost.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(ev) if self.filter.matches(&ev) => return Some(Event::clone(&ev)),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(count)) => return Some(watch_missed(count)),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The filter this subscription applies.
    #[must_use]
    pub fn filter(&self) -> &Filter {
        &self.filter
    }
}

fn watch_missed(count: u64) -> Event {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Event {
        event: Some(Kind::WatchMissed(WatchMissed { count, reason: String::new() })),
        time_unix_ns: i64::try_from(now.as_nanos()).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warrant_proto::{EventsLost, Exec, Exit, FileOpen, GrantChange, Net};

    fn ev(session: &str, grant: &str, kind: Kind) -> Event {
        Event { session: session.into(), grant: grant.into(), event: Some(kind), ..Default::default() }
    }
    fn exec(session: &str) -> Event {
        ev(session, "g-1", Kind::Exec(Exec::default()))
    }
    fn kinds(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn filter_expands_shorthands_and_dedups() {
        let f = Filter::new(None, None, &kinds(&["net", "connect", " exec ", "process", ""])).unwrap();
        assert_eq!(f.kinds, ["connect", "bind", "listen", "accept", "datagram", "socket_close", "exec", "exec_failed", "exit"]);
        let f = Filter::new(None, None, &kinds(&["file"])).unwrap();
        assert_eq!(f.kinds, ["file_open", "file_change"]);
    }

    #[test]
    fn filter_rejects_unknown_kind_listing_valid_ones() {
        let err = Filter::new(None, None, &kinds(&["exec", "opne"])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("unknown event kind \"opne\": expected one of exec, exec_failed, exit, file_open"), "{msg}");
        assert!(msg.contains("or the shorthands process (exec, exec_failed, exit), file (file_open, file_change)"), "{msg}");
    }

    #[test]
    fn empty_ids_mean_any() {
        let f = Filter::new(Some(String::new()), Some(String::new()), &[]).unwrap();
        assert_eq!(f, Filter::default());
        assert!(f.matches(&exec("s-1")));
    }

    #[test]
    fn session_grant_and_kind_need_exact_matches() {
        let f = Filter::new(Some("s-1".into()), None, &kinds(&["file"])).unwrap();
        assert!(f.matches(&ev("s-1", "g-1", Kind::FileOpen(FileOpen::default()))));
        assert!(!f.matches(&ev("s-2", "g-1", Kind::FileOpen(FileOpen::default()))));
        assert!(!f.matches(&ev("s-1", "g-1", Kind::Exec(Exec::default()))));
        assert!(!f.matches(&ev("s-10", "g-1", Kind::FileOpen(FileOpen::default()))), "no prefix match");

        let g = Filter::new(None, Some("g-1".into()), &[]).unwrap();
        assert!(g.matches(&ev("s-9", "g-1", Kind::Exit(Exit::default()))));
        assert!(!g.matches(&ev("", "", Kind::GrantChange(GrantChange::default()))));
        assert!(g.matches(&ev("", "g-1", Kind::GrantChange(GrantChange::default()))));
    }

    #[test]
    fn loss_notices_pass_every_filter() {
        let f = Filter::new(Some("s-1".into()), Some("g-1".into()), &kinds(&["exec"])).unwrap();
        assert!(f.matches(&ev("", "", Kind::EventsLost(EventsLost { count: 1, total: 1, reason: String::new(), ..Default::default() }))));
        assert!(f.matches(&ev("", "", Kind::WatchMissed(WatchMissed { count: 1, ..WatchMissed::default() }))));
    }

    #[test]
    fn field_built_filter_accepts_shorthands() {
        let f = Filter { kinds: kinds(&["net"]), ..Filter::default() };
        assert!(f.matches(&ev("s", "g", Kind::Connect(Net::default()))));
        assert!(!f.matches(&exec("s")));
    }

    #[tokio::test]
    async fn each_watcher_gets_what_it_asked_for() {
        let hub = EventHub::new(16);
        let mut all = hub.subscribe(Filter::default());
        let mut s2 = hub.subscribe(Filter::new(Some("s-2".into()), None, &[]).unwrap());
        assert_eq!(hub.watchers(), 2);
        for s in ["s-1", "s-2", "s-1"] {
            hub.publish(Arc::new(exec(s)));
        }
        for s in ["s-1", "s-2", "s-1"] {
            assert_eq!(all.next().await.unwrap().session, s);
        }
        assert_eq!(s2.next().await.unwrap().session, "s-2");
        drop(hub);
        assert!(all.next().await.is_none());
        assert!(s2.next().await.is_none());
    }

    #[tokio::test]
    async fn publish_without_watchers_is_fine() {
        let hub = EventHub::new(1);
        hub.publish(Arc::new(exec("s-1")));
        assert_eq!(hub.watchers(), 0);
        let mut w = hub.subscribe(Filter::default());
        drop(w.filter().clone());
        hub.publish(Arc::new(exec("s-2")));
        assert_eq!(w.next().await.unwrap().session, "s-2");
        drop(w);
        assert_eq!(hub.watchers(), 0);
    }

    /// A watcher that never reads does not hold up the publisher or other watchers;
    /// when it reads again it is told how many events it missed, then continues.
    #[tokio::test]
    async fn lagging_watcher_is_told_and_continues() {
        let hub = EventHub::new(4);
        let mut slow = hub.subscribe(Filter::default());
        let mut fast = hub.subscribe(Filter::default());
        for i in 0..10u64 {
            hub.publish(Arc::new(Event { seq: i, ..exec("s-1") }));
            assert_eq!(fast.next().await.unwrap().seq, i);
        }
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let missed = slow.next().await.unwrap();
        assert_eq!(missed.event, Some(Kind::WatchMissed(WatchMissed { count: 6, ..WatchMissed::default() })));
        assert!(i128::from(missed.time_unix_ns) >= i128::try_from(before).unwrap() - 1_000_000_000);
        for i in 6..10 {
            assert_eq!(slow.next().await.unwrap().seq, i);
        }
    }

    /// A filtered watcher still learns about the loss.
    #[tokio::test]
    async fn lag_notice_reaches_filtered_watcher() {
        let hub = EventHub::new(2);
        let mut w = hub.subscribe(Filter::new(Some("s-9".into()), None, &kinds(&["exit"])).unwrap());
        for _ in 0..5 {
            hub.publish(Arc::new(exec("s-1")));
        }
        hub.publish(Arc::new(ev("s-9", "g-1", Kind::Exit(Exit::default()))));
        let first = w.next().await.unwrap();
        assert!(matches!(first.event, Some(Kind::WatchMissed(WatchMissed { count: 4, .. }))), "{first:?}");
        assert_eq!(w.next().await.unwrap().session, "s-9");
    }
}
