//! Checking the whole log: every segment as one chain, across retention.

use std::path::Path;

use serde_json::Value;

use warrant_audit::log::{Anchor, verify_segment};
use warrant_audit::log_key::LogKey;

use super::StoreError;
use super::segments::{first_line, list_segments, segment_name};

/// What [`verify_dir`] found.
#[derive(Clone, Debug, Default)]
pub struct DirReport {
    /// Segments checked.
    pub segments: usize,
    /// Records checked.
    pub records: u64,
    /// First record present (after retention), 0 when empty.
    pub first: u64,
    /// Hash of the last record.
    pub head: String,
    /// Every problem, in log order ("segment 000…1.log line 3 (record 3): …").
    pub problems: Vec<String>,
    /// Records whose chain is intact but whose kind this build cannot interpret
    /// (kept verbatim), one line each: not problems, but readers skip them.
    pub skipped: Vec<String>,
    /// The log's key was read and every record's mac checked.
    pub keyed: bool,
    /// Records from before the log was keyed (an older collector's), which carry no
    /// mac: they are checked by their hashes only.
    pub unkeyed: u64,
    /// Records in the storage format from before format versions (format 1, see
    /// `warrant_audit::log`): they verify as before; newer ones follow them.
    pub unversioned: u64,
}

/// Walks every segment of `data_dir`'s log as one chain: each record's hash, each
/// link, segment names against their first record, and the oldest retained record
/// against the newest retention record. `stop_after` limits the walk to what was
/// durable when it began (the log may be growing); `end` is the anchor the caller
/// knows the log reached, to catch records removed from the end.
///
/// # Errors
/// When the log directory or a segment cannot be read; damage goes in the report.
pub fn verify_dir(data_dir: &Path, stop_after: Option<u64>, end: Option<&Anchor>) -> Result<DirReport, StoreError> {
    let log_dir = data_dir.join("log");
    let segs = list_segments(&log_dir)?;
    let mut report = DirReport::default();
    // The key, when this data directory has one (verify never creates it): without
    // it the chain is checked by its hashes alone, and the report says so.
    let key_path = data_dir.join(super::KEY_FILE);
    let key = if key_path.exists() { Some(LogKey::load_or_create(&key_path)?) } else { None };
    report.keyed = key.is_some();
    let keyed_from = if key.is_some() { warrant_audit::log_key::keyed_from(&key_path)? } else { None };
    // Marks are checked across segments: after the first marked record, one
    // without a mark is a stripped mark, in any segment.
    let mut marked = false;
    // Formats only go forward across segments too: after a record of the current
    // format, one of the format before versions is spliced in.
    let mut versioned = false;
    let mut start: Option<Anchor> = None;
    // The newest retention record: (last dropped record, its hash).
    let mut retention: Option<(u64, String)> = None;
    let mut skipped = Vec::new();
    for (i, (first, path)) in segs.iter().enumerate() {
        let name = segment_name(*first);
        // A segment that ends before the key's first record was written by a
        // collector that kept no key: checked by its hashes alone.
        let before_key = keyed_from.is_some_and(|from| segs.get(i + 1).is_some_and(|(next, _)| *next <= from));
        let seg_key = if before_key { None } else { key.as_ref() };
        report.segments += 1;
        let seg_start = match &start {
            Some(a) => a.clone(),
            None => match first_line(path) {
                Ok(Some(l)) => {
                    report.first = l.n;
                    if l.n == 1 { Anchor::genesis() } else { Anchor { records: l.n - 1, head: l.prev } }
                }
                Ok(None) => Anchor { records: first - 1, head: hex::encode([0u8; 32]) },
                Err(e) => {
                    report.problems.push(format!("segment {name} line 1: {e}"));
                    Anchor { records: first - 1, head: hex::encode([0u8; 32]) }
                }
            },
        };
        if seg_start.records + 1 != *first {
            report.problems.push(format!(
                "segment {name}: named for record {first} but its chain continues after record {}: segments were renamed or records removed",
                seg_start.records
            ));
        }
        let r = verify_segment(path, &seg_start, stop_after, seg_key, &mut |n, _, ev| {
            if ev.get("kind").and_then(Value::as_str) == Some("unknown") {
                let s = |k: &str| ev.get(k).map(|v| v.to_string().trim_matches('"').to_owned()).unwrap_or_default();
                let who = format!("record {n} (agent {} boot {} seq {})", s("agent_id"), s("boot_id"), s("seq"));
                skipped.push(match ev.get("kind_number") {
                    Some(k) => format!("{who}: event kind {k} is not known to this collector; it is kept verbatim"),
                    None => format!("{who}: stored with no kind by an older collector"),
                });
            }
            if ev.get("kind").and_then(Value::as_str) == Some("control_action")
                && ev.get("action").and_then(Value::as_str) == Some("retention")
                && let Some(n) = ev
                    .get("target")
                    .and_then(Value::as_str)
                    .and_then(|t| t.strip_prefix("log up to record "))
                    .and_then(|n| n.parse::<u64>().ok())
                && let Some(h) = ev
                    .get("detail")
                    .and_then(Value::as_str)
                    .and_then(|d| d.strip_prefix("hash "))
                    .map(|d| d.chars().take(64).collect::<String>())
            {
                retention = Some((n, h));
            }
        })?;
        for p in &r.problems {
            report.problems.push(format!("segment {name} line {}: {}", p.line, p.what));
        }
        // Records without a mark open the segment: numbers seg_start+1 ..= +unkeyed.
        let last_unmarked = seg_start.records + r.unkeyed;
        if before_key {
            report.unkeyed += r.records.saturating_sub(seg_start.records);
        } else if let Some(from) = keyed_from
            && r.unkeyed > 0
            && last_unmarked >= from
        {
            report.problems.push(format!(
                "segment {name}: records {}..={last_unmarked} carry no mac, but the log has been keyed since record {from}: their marks were stripped (a rewrite)",
                from.max(seg_start.records + 1)
            ));
        } else if key.is_some() {
            if marked && r.unkeyed > 0 {
                report.problems.push(format!(
                    "segment {name}: its first {} records carry no mac, but records before them in earlier segments do: their marks were stripped (a rewrite)",
                    r.unkeyed
                ));
            } else {
                report.unkeyed += r.unkeyed;
            }
            marked |= r.records.saturating_sub(seg_start.records) > r.unkeyed;
        }
        if versioned && r.unversioned > 0 {
            report.problems.push(format!(
                "segment {name}: {} records without a format version, but records before them in earlier segments have one: writers never go back (records from an older log spliced in)",
                r.unversioned
            ));
        }
        report.unversioned += r.unversioned;
        versioned |= r.records.saturating_sub(seg_start.records) > r.unversioned;
        report.records = r.records;
        report.head.clone_from(&r.head);
        start = Some(Anchor { records: r.records, head: r.head });
        if stop_after.is_some_and(|s| r.records >= s) {
            break;
        }
    }
    report.skipped = skipped;
    if report.first > 1 {
        let gap_before = report.first - 1;
        let first_name = segs.first().map(|s| segment_name(s.0)).unwrap_or_default();
        match &retention {
            None => report.problems.insert(0, format!(
                "segment {first_name} line 1: the log starts at record {} and no retention record accounts for records 1..={gap_before}: they were removed",
                report.first
            )),
            Some((n, _)) if *n < gap_before => report.problems.insert(0, format!(
                "segment {first_name} line 1: the log starts at record {} but retention only dropped records up to {n}: records {}..={gap_before} were removed",
                report.first,
                n + 1
            )),
            Some((n, h)) if *n == gap_before => {
                if let Some(Ok(Some(l))) = segs.first().map(|s| first_line(&s.1))
                    && l.prev != *h
                {
                    report.problems.insert(0, format!(
                        "segment {first_name} line 1: record {} chains to {} but retention recorded record {n} with hash {h}",
                        l.n, l.prev
                    ));
                }
            }
            Some(_) => {}
        }
    }
    if let Some(a) = end
        && a.records > report.records
    {
        report.problems.push(format!(
            "the log ends at record {}, but record {} was written: records were removed from the end",
            report.records, a.records
        ));
    }
    Ok(report)
}
