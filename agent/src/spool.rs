//! The disk spool: every event the agent records waits here until the collector
//! says it is durable (an `Ack`), so a collector restart, a network cut or an agent
//! restart loses nothing.
//!
//! # Layout on disk
//!
//! One directory of append-only segment files, named
//! `<generation>-<boot_id>-<first seq>.seg` (`0000000003-1f2e…-00000000000000000001.seg`):
//! the generation counts agent starts (so boots sort oldest first without trusting
//! the wall clock), the boot id and first seq say what the segment holds. A segment
//! is a run of records:
//!
//! ```text
//! [payload length: u32 LE][crc32 of seq and payload: u32 LE][seq: u64 LE][payload: protobuf Event]
//! ```
//!
//! # Guarantees
//!
//! - [`Spool::write`] writes a batch with one `write` (readers see it at once, so the
//!   uplink sends while the local log is still syncing); [`Spool::sync`] makes it
//!   durable with one `fdatasync`. A crash mid-write leaves a torn tail, which
//!   [`Spool::open`] cuts off.
//! - The spool never grows past `max_bytes`. An event that does not fit is refused
//!   and counted ([`Appended::rejected`]); the caller reports that loss, because the
//!   collector will never see those events (they are still in the local log).
//! - [`Spool::ack`] deletes every segment whose events are all acknowledged (the open
//!   one included). Only whole segments are removed, so segments are kept small next
//!   to `max_bytes`.
//! - The writer (a thread) and the uplink (a task) share the spool: file reads and
//!   writes happen outside the lock, which only guards the segment index.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
};

use prost::Message;
use tokio::sync::watch;
use tracing::warn;
use warrant_proto::v1 as pb;

/// Bytes of a record header: length, crc, seq.
const HEADER: usize = 16;
/// Largest segment file before a new one is started (smaller for small spools).
const MAX_SEGMENT_BYTES: u64 = 4 << 20;
/// Largest payload a record may claim; anything bigger is damage, not an event.
const MAX_PAYLOAD: u32 = 16 << 20;

/// What happened to a batch handed to `Spool::append`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Events now on disk (a prefix of the batch).
    pub spooled: usize,
    /// Events refused: the spool was full, or the write failed.
    pub rejected: usize,
}

/// Sizes for `warrant status` and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Events not yet acknowledged (approximate across gaps left by refusals).
    pub events: u64,
    /// Bytes of segment files on disk.
    pub bytes: u64,
}

/// One segment file.
#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    /// Seq of the first record.
    first: u64,
    /// Seq of the last durable record (0 while empty).
    last: u64,
    /// Durable records.
    events: u64,
    /// Durable bytes: readers stop here, a failed write is cut back to here.
    len: u64,
}

/// The segments of one agent boot, in seq order.
#[derive(Debug)]
struct Boot {
    id: String,
    generation: u64,
    segments: VecDeque<Segment>,
    /// Highest seq the collector acknowledged.
    acked: u64,
}

/// The index: which segments exist and how far each is durable.
#[derive(Debug)]
struct State {
    /// Oldest boot first; the running boot is last.
    boots: Vec<Boot>,
    /// Bytes of all segment files, durable or reserved by an append in progress.
    bytes: u64,
}

impl State {
    fn current(&mut self) -> &mut Boot {
        self.boots.last_mut().expect("the running boot is always present")
    }

    fn boot(&self, id: &str) -> Option<&Boot> {
        self.boots.iter().find(|b| b.id == id)
    }
}

/// The running boot's open segment; only the writer touches it.
#[derive(Debug)]
struct Active {
    file: File,
    /// `first` of its segment, to find it in the index.
    first: u64,
    /// Durable length.
    len: u64,
}

/// The spool; share it as `Arc<Spool>`.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    boot_id: String,
    state: Mutex<State>,
    active: Mutex<Option<Active>>,
    /// The running boot's last spooled seq, so the uplink wakes on new events.
    appended: watch::Sender<u64>,
}

impl Spool {
    /// Opens (or creates) the spool in `dir` for the boot `boot_id`: earlier boots'
    /// segments are indexed (torn tails cut off, empty files removed), and the new
    /// boot gets the next generation.
    pub fn open(dir: &Path, max_bytes: u64, boot_id: &str) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut found: Vec<(u64, String, Segment)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some((generation, boot, first)) = name.to_str().and_then(parse_name) else { continue };
            let path = entry.path();
            match recover(&path, first)? {
                Some(seg) => found.push((generation, boot, seg)),
                None => {
                    fs::remove_file(&path)?;
                }
            }
        }
        found.sort_by_key(|f| (f.0, f.2.first));
        let mut boots: Vec<Boot> = Vec::new();
        let mut bytes = 0;
        for (generation, id, seg) in found {
            bytes += seg.len;
            match boots.last_mut() {
                Some(b) if b.generation == generation && b.id == id => b.segments.push_back(seg),
                _ => boots.push(Boot { id, generation, segments: VecDeque::from([seg]), acked: 0 }),
            }
        }
        let generation = boots.iter().map(|b| b.generation).max().unwrap_or(0) + 1;
        boots.push(Boot { id: boot_id.to_owned(), generation, segments: VecDeque::new(), acked: 0 });
        sync_dir(dir)?;
        Ok(Spool {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(4 << 10, MAX_SEGMENT_BYTES),
            boot_id: boot_id.to_owned(),
            state: Mutex::new(State { boots, bytes }),
            active: Mutex::new(None),
            appended: watch::channel(0).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The spool's limit in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes still free.
    pub fn free_bytes(&self) -> u64 {
        self.max_bytes.saturating_sub(self.lock().bytes)
    }

    /// Wakes on every append (the value is the last spooled seq of this boot).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Appends `events` (of the running boot, seq ascending) durably: [`write`](Self::write)
    /// then [`sync`](Self::sync).
    #[cfg(test)]
    pub fn append(&self, events: &[pb::Event]) -> io::Result<Appended> {
        let a = self.write(events)?;
        self.sync()?;
        Ok(a)
    }

    /// Appends `events` (of the running boot, seq ascending) with one `write`, and
    /// makes them readable by cursors at once; [`sync`](Self::sync) makes them
    /// durable. Readers may send events before they are durable here: a machine
    /// crash before the sync loses them from the spool, exactly as if the crash had
    /// come before the write, and the collector drops what it already has.
    ///
    /// Events that would take the spool past its limit are refused, as is everything
    /// after the first refusal in this batch, so the spooled ones are a prefix.
    pub fn write(&self, events: &[pb::Event]) -> io::Result<Appended> {
        if events.is_empty() {
            return Ok(Appended::default());
        }
        let mut buf = Vec::with_capacity(events.len() * 256);
        let mut last = 0;
        let mut spooled = 0;
        let mut active = self.active.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Reserve room under the lock; write outside it.
        {
            let mut st = self.lock();
            let free = self.max_bytes.saturating_sub(st.bytes);
            for ev in events {
                let before = buf.len();
                encode_record(&mut buf, ev);
                if buf.len() as u64 > free {
                    buf.truncate(before);
                    break;
                }
                spooled += 1;
                last = ev.seq;
            }
            if spooled == 0 {
                return Ok(Appended { spooled: 0, rejected: events.len() });
            }
            let roll = active.as_ref().is_none_or(|a| a.len >= self.segment_bytes);
            if roll {
                if let Some(old) = active.as_ref() {
                    old.file.sync_data()?;
                }
                let first = events[0].seq;
                let generation = st.current().generation;
                let path = self.dir.join(format!("{generation:010}-{}-{first:020}.seg", self.boot_id));
                let file = OpenOptions::new().create_new(true).append(true).open(&path)?;
                sync_dir(&self.dir)?;
                st.current().segments.push_back(Segment { path, first, last: 0, events: 0, len: 0 });
                *active = Some(Active { file, first, len: 0 });
            }
            st.bytes += buf.len() as u64;
        }
        let a = active.as_mut().expect("an active segment was just ensured");
        let written = a.file.write_all(&buf);
        let mut st = self.lock();
        if let Err(e) = written {
            st.bytes -= buf.len() as u64;
            // Cut a partial write off; if even that fails, start a fresh segment next time.
            if a.file.set_len(a.len).is_err() {
                *active = None;
            }
            return Err(e);
        }
        a.len += buf.len() as u64;
        let first = a.first;
        if let Some(seg) = st.current().segments.iter_mut().rev().find(|s| s.first == first) {
            seg.len = a.len;
            seg.last = last;
            seg.events += spooled as u64;
        }
        drop(st);
        self.appended.send_replace(last);
        Ok(Appended { spooled, rejected: events.len() - spooled })
    }

    /// Makes everything written so far durable (one `fdatasync`).
    pub fn sync(&self) -> io::Result<()> {
        let active = self.active.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        active.as_ref().map_or(Ok(()), |a| a.file.sync_data())
    }

    /// Boots that still have events waiting, oldest first, then the running boot
    /// (always last, even when it has none): `AgentHello.pending_boots`.
    pub fn pending_boots(&self) -> Vec<String> {
        let st = self.lock();
        st.boots
            .iter()
            .filter(|b| b.id == self.boot_id || b.segments.iter().any(|s| s.last > b.acked))
            .map(|b| b.id.clone())
            .collect()
    }

    /// The highest acknowledged seq of `boot` (0 when none or unknown).
    pub fn acked(&self, boot: &str) -> u64 {
        self.lock().boot(boot).map_or(0, |b| b.acked)
    }

    /// The last durable seq of `boot` (0 when it has nothing spooled).
    pub fn last_seq(&self, boot: &str) -> u64 {
        self.lock().boot(boot).and_then(|b| b.segments.back()).map_or(0, |s| s.last)
    }

    /// Records that the collector holds `boot` up to `seq`: deletes the segments that
    /// are now wholly acknowledged, and forgets an earlier boot once it has nothing
    /// left. The running boot's open segment is retired too when it is wholly
    /// acknowledged and the writer is not writing it this moment (the next write then
    /// starts a new one), so one big batch cannot pin the spool full.
    pub fn ack(&self, boot: &str, seq: u64) {
        let mut doomed = Vec::new();
        {
            // Same lock order as `write`: the open segment, then the index.
            let mut active = self.active.try_lock().ok();
            let mut st = self.lock();
            let State { boots, bytes } = &mut *st;
            let Some(b) = boots.iter_mut().find(|b| b.id == boot) else { return };
            b.acked = b.acked.max(seq);
            let running = b.id == self.boot_id;
            while let Some(s) = b.segments.front() {
                if s.last > b.acked || s.last == 0 {
                    break;
                }
                if running && b.segments.len() == 1 {
                    // The newest segment may be the one being written.
                    let Some(open) = active.as_deref_mut() else { break };
                    if open.as_ref().is_some_and(|a| a.first == s.first) {
                        *open = None;
                    }
                }
                let s = b.segments.pop_front().expect("front exists");
                *bytes -= s.len;
                doomed.push(s.path);
            }
            if !running {
                if b.segments.iter().all(|s| s.last <= b.acked) {
                    for s in b.segments.drain(..) {
                        *bytes -= s.len;
                        doomed.push(s.path);
                    }
                }
                boots.retain(|b| b.id == self.boot_id || !b.segments.is_empty());
            }
        }
        for p in doomed {
            if let Err(e) = fs::remove_file(&p)
                && e.kind() != io::ErrorKind::NotFound
            {
                warn!("cannot remove acknowledged spool segment {}: {e}", p.display());
            }
        }
    }

    /// What is waiting, for status and metrics.
    pub fn depth(&self) -> Depth {
        let st = self.lock();
        let events = st
            .boots
            .iter()
            .flat_map(|b| b.segments.iter().map(move |s| (b.acked, s)))
            .map(|(acked, s)| if s.first > acked { s.events } else { s.last.saturating_sub(acked).min(s.events) })
            .sum();
        Depth { events, bytes: st.bytes }
    }

    /// The durable segment that holds the first record of `boot` after `pos`, as
    /// (first, path, durable length).
    fn segment_after(&self, boot: &str, pos: u64) -> Option<(u64, PathBuf, u64)> {
        let st = self.lock();
        let b = st.boot(boot)?;
        b.segments.iter().find(|s| s.last > pos).map(|s| (s.first, s.path.clone(), s.len))
    }
}

/// A reader of one boot's spooled events, in seq order, from a position on.
/// Keeps its file open between calls, so streaming reads each record once.
#[derive(Debug)]
pub struct Cursor {
    boot: String,
    /// The last seq handed out (or skipped as acknowledged).
    pos: u64,
    open: Option<OpenSegment>,
}

#[derive(Debug)]
struct OpenSegment {
    first: u64,
    reader: BufReader<File>,
    offset: u64,
}

impl Cursor {
    /// A cursor over `boot` that starts after seq `after`.
    pub fn new(boot: &str, after: u64) -> Cursor {
        Cursor { boot: boot.to_owned(), pos: after, open: None }
    }

    /// The boot this cursor reads.
    pub fn boot(&self) -> &str {
        &self.boot
    }

    /// The last seq handed out.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Up to `max` events after the position, as far as they are durable, as the
    /// protobuf bytes the spool holds (checked by their CRC, not decoded: the
    /// uplink sends them as they are). Empty when there is nothing new yet.
    pub fn next_batch(&mut self, spool: &Spool, max: usize) -> io::Result<Vec<Spooled>> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some((first, path, len)) = spool.segment_after(&self.boot, self.pos) else { break };
            if self.open.as_ref().is_none_or(|o| o.first != first) {
                match File::open(&path) {
                    Ok(f) => self.open = Some(OpenSegment { first, reader: BufReader::new(f), offset: 0 }),
                    // Acknowledged and removed meanwhile: look again.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        if spool.segment_after(&self.boot, self.pos).is_some_and(|s| s.0 == first) {
                            return Err(e);
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let o = self.open.as_mut().expect("opened above");
            let (before, got) = (self.pos, out.len());
            let mut damaged = false;
            while out.len() < max && o.offset < len {
                let Some((seq, payload)) = read_record(&mut o.reader)? else {
                    damaged = true;
                    break;
                };
                o.offset += (HEADER + payload.len()) as u64;
                if seq <= self.pos {
                    continue;
                }
                out.push(Spooled { seq, payload });
                self.pos = seq;
            }
            if damaged {
                // Durable bytes we wrote ourselves no longer read back: skip the rest
                // of this segment rather than loop on it.
                warn!("spool segment {} is damaged at byte {}; skipping its rest", path.display(), o.offset);
                let last = spool.lock().boot(&self.boot).and_then(|b| b.segments.iter().find(|s| s.first == first).map(|s| s.last));
                self.pos = self.pos.max(last.unwrap_or(0));
                self.open = None;
            }
            if self.pos == before && out.len() == got {
                break;
            }
        }
        Ok(out)
    }
}

/// One spooled event: its seq and its protobuf encoding (a `warrant.v1.Event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// Appends one record (header, then the event's protobuf), encoding the event
/// straight into `buf` rather than into a buffer of its own first.
fn encode_record(buf: &mut Vec<u8>, ev: &pb::Event) {
    let at = buf.len();
    buf.resize(at + HEADER, 0);
    ev.encode_raw(buf);
    let payload = &buf[at + HEADER..];
    let mut crc = crc32fast::Hasher::new();
    crc.update(&ev.seq.to_le_bytes());
    crc.update(payload);
    let (len, crc) = ((payload.len() as u32).to_le_bytes(), crc.finalize().to_le_bytes());
    buf[at..at + 4].copy_from_slice(&len);
    buf[at + 4..at + 8].copy_from_slice(&crc);
    buf[at + 8..at + HEADER].copy_from_slice(&ev.seq.to_le_bytes());
}

/// One record, or `None` at a clean end, a torn tail or damage.
fn read_record(r: &mut impl Read) -> io::Result<Option<(u64, Vec<u8>)>> {
    let mut h = [0u8; HEADER];
    if !read_full(r, &mut h)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    if len > MAX_PAYLOAD {
        return Ok(None);
    }
    let mut payload = vec![0; len as usize];
    if !read_full(r, &mut payload)? {
        return Ok(None);
    }
    let mut c = crc32fast::Hasher::new();
    c.update(&seq.to_le_bytes());
    c.update(&payload);
    if c.finalize() != crc {
        return Ok(None);
    }
    Ok(Some((seq, payload)))
}

/// Fills `buf`; false when the input ends first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => return Ok(false),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Indexes one segment after a restart: reads every record, cuts the file at the
/// first torn or damaged one. `None` for a segment with no records (removed).
fn recover(path: &Path, first: u64) -> io::Result<Option<Segment>> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let size = file.metadata()?.len();
    let mut reader = BufReader::new(&mut file);
    let (mut len, mut last, mut events) = (0u64, 0u64, 0u64);
    while let Some((seq, payload)) = read_record(&mut reader)? {
        if seq <= last {
            break; // out of order: damage
        }
        len += (HEADER + payload.len()) as u64;
        last = seq;
        events += 1;
    }
    drop(reader);
    if len < size {
        warn!("spool segment {}: cut {} bytes of a torn or damaged tail", path.display(), size - len);
        file.set_len(len)?;
        file.seek(SeekFrom::End(0))?;
        file.sync_all()?;
    }
    Ok((events > 0).then(|| Segment { path: path.to_owned(), first, last, events, len }))
}

/// `<generation>-<boot>-<first>.seg` → its parts.
fn parse_name(name: &str) -> Option<(u64, String, u64)> {
    let stem = name.strip_suffix(".seg")?;
    let (generation, rest) = stem.split_once('-')?;
    let (boot, first) = rest.rsplit_once('-')?;
    if boot.is_empty() || !boot.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    Some((generation.parse().ok()?, boot.to_owned(), first.parse().ok()?))
}

/// Makes a created or removed file name durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(seq: u64) -> pb::Event {
        pb::Event { seq, comm: format!("event-{seq}"), pid: seq as u32, ..Default::default() }
    }

    fn batch(from: u64, n: u64) -> Vec<pb::Event> {
        (from..from + n).map(ev).collect()
    }

    fn read_all(spool: &Spool, boot: &str, after: u64) -> Vec<u64> {
        let mut c = Cursor::new(boot, after);
        let mut out = Vec::new();
        loop {
            let b = c.next_batch(spool, 7).unwrap();
            if b.is_empty() {
                return out;
            }
            out.extend(b.iter().map(|e| e.seq));
        }
    }

    #[test]
    fn events_come_back_in_order_from_any_position() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), 1 << 20, "b1").unwrap();
        assert_eq!(s.append(&batch(1, 10)).unwrap(), Appended { spooled: 10, rejected: 0 });
        assert_eq!(s.append(&batch(11, 5)).unwrap().spooled, 5);
        assert_eq!(read_all(&s, "b1", 0), (1..=15).collect::<Vec<_>>());
        assert_eq!(read_all(&s, "b1", 12), vec![13, 14, 15]);
        let mut c = Cursor::new("b1", 0);
        assert_eq!(c.next_batch(&s, 100).unwrap().len(), 15);
        assert!(c.next_batch(&s, 100).unwrap().is_empty());
        s.append(&batch(16, 2)).unwrap();
        let more: Vec<u64> = c.next_batch(&s, 100).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(more, vec![16, 17], "a cursor picks up what was appended after it caught up");
        assert_eq!(s.pending_boots(), vec!["b1".to_owned()]);
        assert_eq!(s.last_seq("b1"), 17);
    }

    #[test]
    fn full_spool_refuses_and_counts_then_recovers_after_acks() {
        let dir = tempfile::tempdir().unwrap();
        let max = 64 << 10;
        let s = Spool::open(dir.path(), max, "b1").unwrap();
        let mut seq = 1;
        let mut refused = 0;
        for _ in 0..200 {
            let a = s.append(&batch(seq, 50)).unwrap();
            refused += a.rejected;
            seq += 50;
            assert!(s.depth().bytes <= max, "{:?}", s.depth());
        }
        assert!(refused > 0, "a 64 KiB spool took 10000 events");
        assert!(s.free_bytes() < 1024);
        let last = s.last_seq("b1");
        // Acks free every segment, the open one included.
        s.ack("b1", last);
        assert_eq!(s.free_bytes(), max);
        assert_eq!(s.append(&batch(seq, 10)).unwrap().spooled, 10);
        assert_eq!(read_all(&s, "b1", last), (seq..seq + 10).collect::<Vec<_>>());
        // A new boot while the old one still waits: the old one comes first.
        drop(s);
        let s = Spool::open(dir.path(), max, "b2").unwrap();
        assert_eq!(s.pending_boots(), vec!["b1".to_owned(), "b2".to_owned()]);
        s.ack("b1", seq + 9);
        assert_eq!(s.pending_boots(), vec!["b2".to_owned()]);
        assert_eq!(s.depth().bytes, 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "b1's segments are gone");
    }

    #[test]
    fn acks_trim_whole_segments_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), 8 << 20, "b1").unwrap();
        // ~1 MiB segments: fill several with big events.
        let big = |seq: u64| pb::Event { seq, comm: "x".repeat(100_000), ..Default::default() };
        for seq in 1..=40 {
            s.append(&[big(seq)]).unwrap();
        }
        let files = || std::fs::read_dir(dir.path()).unwrap().count();
        let before = files();
        assert!(before >= 3, "{before} segments");
        s.ack("b1", 20);
        assert!(files() < before);
        assert_eq!(read_all(&s, "b1", 20), (21..=40).collect::<Vec<_>>());
        assert_eq!(s.depth().events, 20);
        s.ack("b1", 40);
        assert_eq!(files(), 0, "a wholly acknowledged open segment is retired too");
        assert_eq!(s.depth(), Depth::default());
        s.append(&[big(41)]).unwrap();
        assert_eq!(read_all(&s, "b1", 40), vec![41], "the next write starts a new segment");
    }

    #[test]
    fn reopen_cuts_a_torn_tail_and_keeps_earlier_boots() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), 1 << 20, "b1").unwrap();
        s.append(&batch(1, 5)).unwrap();
        drop(s);
        let seg = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
        // A crash in the middle of the next append: half a record at the end.
        let mut half = Vec::new();
        encode_record(&mut half, &ev(6));
        half.truncate(half.len() / 2);
        OpenOptions::new().append(true).open(&seg).unwrap().write_all(&half).unwrap();
        let s = Spool::open(dir.path(), 1 << 20, "b2").unwrap();
        assert_eq!(read_all(&s, "b1", 0), vec![1, 2, 3, 4, 5]);
        assert_eq!(s.pending_boots(), vec!["b1".to_owned(), "b2".to_owned()]);
        s.append(&batch(1, 3)).unwrap();
        assert_eq!(read_all(&s, "b2", 0), vec![1, 2, 3]);
        // The welcome said b1 is held up to 3: resend 4 and 5.
        s.ack("b1", 3);
        assert_eq!(read_all(&s, "b1", s.acked("b1")), vec![4, 5]);
        s.ack("b1", 5);
        assert_eq!(s.pending_boots(), vec!["b2".to_owned()]);
    }

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        assert_eq!(parse_name("0000000003-ab12-00000000000000000007.seg"), Some((3, "ab12".into(), 7)));
        assert_eq!(parse_name("notes.txt"), None);
        assert_eq!(parse_name("1-a/b-2.seg"), None);
    }

    /// One step of a random workload.
    #[derive(Debug, Clone)]
    enum Op {
        Append(u8),
        Ack(u8),
        /// Crash: drop the spool, cut `n` bytes off the newest segment, reopen.
        Crash(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u8..40).prop_map(Op::Append),
            2 => any::<u8>().prop_map(Op::Ack),
            1 => any::<u8>().prop_map(Op::Crash),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Whatever happens, every event that was spooled and not acknowledged (nor
        /// cut off as a torn tail by a crash) reads back, in order, exactly once; the
        /// spool stays within its limit.
        #[test]
        fn spool_keeps_what_it_accepted(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let max = 96 << 10;
            let mut boot = 0u32;
            let name = |b: u32| format!("b{b}");
            let mut s = Spool::open(dir.path(), max, &name(boot)).unwrap();
            // Per boot: accepted seqs not yet acked.
            let mut want: Vec<(String, Vec<u64>)> = vec![(name(boot), Vec::new())];
            // What the collector acknowledged, per boot: its welcome after a restart.
            let mut acked: std::collections::HashMap<String, u64> = Default::default();
            let mut next = 1u64;
            for op in ops {
                match op {
                    Op::Append(n) => {
                        let b: Vec<_> = (next..next + u64::from(n))
                            .map(|seq| pb::Event { seq, comm: "y".repeat((seq % 300) as usize), ..Default::default() })
                            .collect();
                        next += u64::from(n);
                        let a = s.append(&b).unwrap();
                        want.last_mut().unwrap().1.extend(b[..a.spooled].iter().map(|e| e.seq));
                    }
                    Op::Ack(k) => {
                        let n = want.len();
                        let (id, seqs) = &mut want[usize::from(k) % n];
                        if let Some(&upto) = seqs.get(usize::from(k) % (seqs.len() + 1)) {
                            s.ack(id, upto);
                            acked.insert(id.clone(), upto);
                            seqs.retain(|q| *q > upto);
                        }
                    }
                    Op::Crash(cut) => {
                        drop(s);
                        let newest = std::fs::read_dir(dir.path()).unwrap()
                            .map(|e| e.unwrap().path()).max();
                        if let Some(p) = newest {
                            let len = std::fs::metadata(&p).unwrap().len();
                            let cut = u64::from(cut).min(len);
                            if cut > 0 {
                                std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(len - cut).unwrap();
                                // What survives is what recovery keeps: compute it the same way.
                                let (_, bid, _) = parse_name(p.file_name().unwrap().to_str().unwrap()).unwrap();
                                let mut r = BufReader::new(File::open(&p).unwrap());
                                let mut kept = Vec::new();
                                while let Some((seq, _)) = read_record(&mut r).unwrap() { kept.push(seq); }
                                let w = &mut want.iter_mut().find(|(i, _)| *i == bid).unwrap().1;
                                let seg_first = parse_name(p.file_name().unwrap().to_str().unwrap()).unwrap().2;
                                w.retain(|q| *q < seg_first || kept.contains(q));
                            }
                        }
                        boot += 1;
                        next = 1;
                        s = Spool::open(dir.path(), max, &name(boot)).unwrap();
                        for (id, upto) in &acked {
                            s.ack(id, *upto);
                        }
                        want.push((name(boot), Vec::new()));
                    }
                }
                prop_assert!(s.depth().bytes <= max);
                for (id, seqs) in &want {
                    let got = read_all(&s, id, s.acked(id));
                    prop_assert_eq!(&got, seqs, "boot {}", id);
                }
            }
        }
    }
}
