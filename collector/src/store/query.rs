//! Queries: pages of events matching a filter and a time range, read back from
//! the log at the positions the index keeps.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable};
use warrant_audit::decode::from_json;
use warrant_audit::hub::Filter;
use warrant_proto::Event;

use super::index::{BY_AGENT, BY_GRANT, BY_HOST, BY_SESSION, BY_SUBJECT, KeyTable, POS, SEGMENTS};
use super::positions::{PosCursor, Run};
use super::segments::{parse_line, segment_name};
use super::{Reader, StoreError, index_err};

/// Entries a query may scan for one page before it returns what it has.
pub(super) const SCAN_BUDGET: usize = 200_000;

/// Where a paged query continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// From the start.
    Start,
    /// Log order, after this record.
    AfterN(u64),
}

impl Cursor {
    /// The page token form ("" for the start).
    #[must_use]
    pub fn token(self) -> String {
        match self {
            Cursor::Start => String::new(),
            Cursor::AfterN(n) => format!("n{n}"),
        }
    }

    /// Parses a page token made by [`token`](Self::token).
    ///
    /// # Errors
    /// A description when the token was not made here.
    pub fn parse(token: &str) -> Result<Cursor, String> {
        let bad = || format!("invalid page token {token:?}: pass back a next_page you were given");
        if token.is_empty() {
            return Ok(Cursor::Start);
        }
        if let Some(n) = token.strip_prefix('n') {
            return n.parse().map(Cursor::AfterN).map_err(|_| bad());
        }
        Err(bad())
    }
}

/// Why record `n` cannot be served as an event, when it cannot: its kind is one
/// this build does not know (kept verbatim), or it has none (stored so by a build
/// before unknown kinds were kept).
#[must_use]
pub fn unreadable(n: u64, ev: &Event) -> Option<String> {
    if ev.event.is_some() {
        return None;
    }
    let who = format!("record {n} (agent {} boot {} seq {})", ev.agent_id, ev.boot_id, ev.seq);
    Some(match &ev.unknown_kind {
        Some(u) => format!("{who}: event kind {} is not known to this collector; it is kept verbatim in the log", u.number),
        None => format!("{who}: stored with no kind by an older collector; nothing to interpret"),
    })
}

/// What adding one record did to a page.
enum Took {
    /// Room for more.
    More,
    /// The page is full (count or bytes).
    Full,
    /// The record would pass the byte cap: it starts the next page.
    Over,
}

/// One page of a query.
#[derive(Debug, Default)]
pub struct Page {
    /// Matching events.
    pub events: Vec<Event>,
    /// Matching records this build cannot interpret (see [`unreadable`]), skipped:
    /// one line each.
    pub skipped: Vec<String>,
    /// Where to continue; `None` when there is nothing more.
    pub next: Option<Cursor>,
    /// When there is nothing more (`next` is `None`): where the log ended as this
    /// query saw it, after its last record stored (matching or not). A later query
    /// with the same filter from here returns exactly what was stored since,
    /// whatever its times, so a follower needs no time window to find what is new.
    pub end: Option<Cursor>,
    /// Encoded size of `events`.
    pub bytes: usize,
}

/// What a query asks for.
#[derive(Clone, Debug, Default)]
pub struct QuerySpec {
    /// Envelope and kind filter.
    pub filter: Filter,
    /// Time range (ns, inclusive); 0 means unbounded.
    pub from: i64,
    /// See `from`.
    pub to: i64,
    /// Most events to return.
    pub limit: usize,
    /// Most bytes of events (encoded) to return, 0 for no cap: a page ends before
    /// the event that would pass it (a page always holds at least one event).
    pub max_bytes: usize,
}

impl Reader {
    pub(super) fn path(&self) -> PathBuf {
        self.log_dir.with_file_name("index.redb")
    }

    /// Reads one record by its position; `None` when its segment is gone.
    pub(super) fn read_at(&self, seg: u64, offset: u64, len: u32) -> Result<Option<Event>, StoreError> {
        let file = {
            let mut files = self.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(f) = files.get(&seg) {
                f.clone()
            } else {
                let path = self.log_dir.join(segment_name(seg));
                match File::open(&path) {
                    Ok(f) => {
                        let f = Arc::new(f);
                        files.insert(seg, f.clone());
                        f
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(source) => return Err(StoreError::Io { action: "open", path, source }),
                }
            }
        };
        let mut buf = vec![0; len as usize];
        let path = || self.log_dir.join(segment_name(seg));
        if let Err(source) = file.read_exact_at(&mut buf, offset) {
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                // Retention removed it meanwhile.
                self.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&seg);
                return Ok(None);
            }
            return Err(StoreError::Io { action: "read", path: path(), source });
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        let line = parse_line(&path(), &buf)?;
        from_json(&line.event)
            .map(Some)
            .map_err(|what| StoreError::BadRecord { path: path(), what: format!("record {}: {what}", line.n) })
    }

    /// One page of events matching `spec`, continuing at `cursor`.
    ///
    /// Results are in log order. Keyed queries (session, grant, agent, subject or
    /// host set) walk that key's index, filtering on the time kept with each
    /// entry; unkeyed ones walk the log, skipping segments outside the time range.
    ///
    /// # Errors
    /// When the index or a segment cannot be read.
    pub fn query(&self, spec: &QuerySpec, cursor: Cursor) -> Result<Page, StoreError> {
        let p = &self.path();
        let tx = ix!(p, self.db.begin_read())?;
        let limit = spec.limit.max(1);
        let f = &spec.filter;
        let in_time = |t: i64| (spec.from == 0 || t >= spec.from) && (spec.to == 0 || t <= spec.to);
        let pos = match tx.open_table(POS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Page { end: Some(Cursor::Start), ..Page::default() }),
            Err(e) => return Err(index_err(p)(e.into())),
        };
        // The last record this read's snapshot of the index holds: records are
        // indexed in log order, so everything after it is stored later.
        let end = match ix!(p, pos.last())? {
            Some((k, v)) => Cursor::AfterN(Run::new(k.value(), v.value()).last()),
            None => Cursor::Start,
        };
        let mut page = Page { end: Some(end), ..Page::default() };
        let mut scanned = 0usize;
        // Adds `ev` to the page unless it would pass the byte cap.
        let add = |n: u64, ev: Event, page: &mut Page| -> Took {
            if let Some(why) = unreadable(n, &ev) {
                page.skipped.push(why);
            } else {
                let len = prost::Message::encoded_len(&ev);
                if spec.max_bytes > 0 && !page.events.is_empty() && page.bytes + len > spec.max_bytes {
                    return Took::Over;
                }
                page.bytes += len;
                page.events.push(ev);
            }
            if page.events.len() >= limit || (spec.max_bytes > 0 && page.bytes >= spec.max_bytes) { Took::Full } else { Took::More }
        };
        let mut at = PosCursor::default();
        let mut take = |n: u64, page: &mut Page| -> Result<Took, StoreError> {
            if let Some((seg, off, len, time)) = ix!(p, at.get(&pos, n))?
                && in_time(time)
                && let Some(ev) = self.read_at(seg, off, len)?
                && f.matches(&ev)
                && in_time(ev.time_unix_ns)
            {
                return Ok(add(n, ev, page));
            }
            Ok(Took::More)
        };
        let key: Option<(KeyTable, &String)> = [
            (BY_SESSION, &f.session),
            (BY_GRANT, &f.grant),
            (BY_AGENT, &f.agent_id),
            (BY_SUBJECT, &f.subject),
            (BY_HOST, &f.host),
        ]
        .into_iter()
        .find_map(|(t, v)| v.as_ref().map(|v| (t, v)));

        if let Some((table, value)) = key {
            let after = match cursor {
                Cursor::AfterN(n) => n + 1,
                _ => 0,
            };
            let t = match tx.open_table(table) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(page),
                Err(e) => return Err(index_err(p)(e.into())),
            };
            // A run that starts before `after` may go on past it.
            let mut from = after;
            if after > 0
                && let Some(row) = ix!(p, t.range((value.as_str(), 0)..(value.as_str(), after)))?.next_back()
            {
                let (k, v) = ix!(p, row)?;
                if v.value().0 >= after {
                    from = k.value().1;
                }
            }
            let mut prev = 0;
            'runs: for row in ix!(p, t.range((value.as_str(), from)..=(value.as_str(), u64::MAX)))? {
                let (k, v) = ix!(p, row)?;
                let (first, (last, oldest, newest)) = (k.value().1, v.value());
                if !((spec.from == 0 || newest >= spec.from) && (spec.to == 0 || oldest <= spec.to)) {
                    // No record of the run is in the time range.
                    scanned += 1;
                    if scanned >= SCAN_BUDGET {
                        page.next = Some(Cursor::AfterN(last));
                        break;
                    }
                    prev = last;
                    continue;
                }
                for n in first.max(after)..=last {
                    scanned += 1;
                    let took = take(n, &mut page)?;
                    if matches!(took, Took::Over) {
                        // This one starts the next page.
                        page.next = Some(Cursor::AfterN(prev));
                        break 'runs;
                    }
                    if matches!(took, Took::Full) || scanned >= SCAN_BUDGET {
                        page.next = Some(Cursor::AfterN(n));
                        break 'runs;
                    }
                    prev = n;
                }
            }
        } else {
            // Unkeyed: walk the log in order, skipping whole segments whose time
            // range misses [from, to] (agents' clocks make times only roughly
            // ordered, so a segment's own range is what is safe to skip on).
            let after = match cursor {
                Cursor::AfterN(n) => n + 1,
                Cursor::Start => 0,
            };
            let segs = match tx.open_table(SEGMENTS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(page),
                Err(e) => return Err(index_err(p)(e.into())),
            };
            let mut next = None;
            let mut prev = 0;
            'segments: for row in ix!(p, segs.iter())? {
                let (k, v) = ix!(p, row)?;
                let first = k.value();
                let (last_n, min_time, max_time, _) = v.value();
                let overlaps = (spec.from == 0 || max_time >= spec.from) && (spec.to == 0 || min_time == 0 || min_time <= spec.to);
                if last_n < after || !overlaps {
                    continue;
                }
                let start = first.max(after);
                // The row holding `start` may begin before it.
                let from = match ix!(p, pos.range(..=start))?.next_back() {
                    Some(row) => ix!(p, row)?.0.value(),
                    None => start,
                };
                for row in ix!(p, pos.range(from..=last_n))? {
                    let (k, v) = ix!(p, row)?;
                    let run = Run::new(k.value(), v.value());
                    for n in run.first.max(start)..=run.last().min(last_n) {
                        let Some((seg, off, len, time)) = run.get(n) else { continue };
                        scanned += 1;
                        let mut took = Took::More;
                        if in_time(time)
                            && let Some(ev) = self.read_at(seg, off, len)?
                            && f.matches(&ev)
                        {
                            took = add(n, ev, &mut page);
                        }
                        if matches!(took, Took::Over) {
                            next = Some(Cursor::AfterN(prev));
                            break 'segments;
                        }
                        if matches!(took, Took::Full) || scanned >= SCAN_BUDGET {
                            next = Some(Cursor::AfterN(n));
                            break 'segments;
                        }
                        prev = n;
                    }
                }
            }
            page.next = next;
        }
        if page.next.is_some() {
            page.end = None;
        }
        Ok(page)
    }

}
