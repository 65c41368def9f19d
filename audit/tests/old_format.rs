//! A log written by the format before format versions (`tests/fixtures/v1-audit.log`,
//! see its README) still verifies, with its key, and is continued in the current
//! format; a tampered copy of it does not verify.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use warrant_audit::log::{FORMAT_VERSION, VerifyReport};
use warrant_audit::{AuditLog, LogKey, verify, verify_with_key_file};
use warrant_proto::event::Event as Kind;
use warrant_proto::{Event, Exit};

const RECORDS: u64 = 10;

/// The fixture's log and key, copied into `dir` (git does not keep the key's mode
/// 0600, which `LogKey` insists on).
fn fixture(dir: &Path) -> (PathBuf, PathBuf) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (log, key) = (dir.join("audit.log"), dir.join("audit.key"));
    for (src, dst) in [("v1-audit.log", &log), ("v1-audit.key", &key), ("v1-audit.key.from", &dir.join("audit.key.from"))] {
        std::fs::copy(from.join(src), dst).unwrap();
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (log, key)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

fn problem_lines(r: &VerifyReport) -> Vec<u64> {
    r.problems.iter().map(|p| p.line).collect()
}

#[test]
fn the_fixture_is_of_the_format_before_versions() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-audit.log")).unwrap();
    assert_eq!(text.lines().count() as u64, RECORDS);
    assert!(text.lines().all(|l| l.starts_with("{\"n\":")), "no line has a \"v\"");
}

#[test]
fn a_log_of_the_format_before_versions_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (log, key) = fixture(dir.path());
    let plain = verify(&log).unwrap();
    assert!(plain.is_ok(), "{:?}", plain.problems);
    assert_eq!((plain.records, plain.unversioned), (RECORDS, RECORDS));
    let keyed = verify_with_key_file(&log, &key).unwrap();
    assert!(keyed.is_ok(), "{:?}", keyed.problems);
    assert_eq!((keyed.records, keyed.unkeyed, keyed.unversioned), (RECORDS, 2, RECORDS));
    assert_eq!(keyed.head, plain.head);
}

#[test]
fn a_log_of_the_format_before_versions_is_continued_in_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let (log, key) = fixture(dir.path());
    let mut audit = AuditLog::open(&log).unwrap().keyed(LogKey::load_or_create(&key).unwrap());
    assert_eq!(audit.records(), RECORDS);
    let ev = |seq| Event { seq, event: Some(Kind::Exit(Exit { code: 1, signal: 0 })), ..Event::default() };
    audit.append(&[ev(11), ev(12)]).unwrap();
    drop(audit);
    let l = lines(&log);
    assert!(l[10].starts_with(&format!("{{\"v\":{FORMAT_VERSION},\"n\":11,")), "{}", l[10]);
    let report = verify_with_key_file(&log, &key).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!((report.records, report.unkeyed, report.unversioned), (RECORDS + 2, 2, RECORDS));
}

#[test]
fn a_tampered_copy_of_it_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (log, key) = fixture(dir.path());
    let orig = lines(&log);
    let check = |l: &[String], line: u64, what: &str| {
        write_lines(&log, l);
        for r in [verify(&log).unwrap(), verify_with_key_file(&log, &key).unwrap()] {
            assert!(!r.is_ok(), "tampering unnoticed ({what})");
            assert_eq!(r.problems[0].line, line, "{what}: {:?}", r.problems);
            assert!(r.problems[0].what.contains(what), "{:?}", r.problems);
        }
    };

    // Record 4 read /etc/passwd; now it says /etc/hostname.
    let mut l = orig.clone();
    assert!(l[3].contains("\"/etc/passwd\""));
    l[3] = l[3].replace("\"/etc/passwd\"", "\"/etc/hostname\"");
    check(&l, 4, "edited");

    // Record 6 removed.
    let mut l = orig.clone();
    l.remove(5);
    check(&l, 6, "1 record removed");

    // Record 3 passed off as a record of the current format: the version is hashed.
    let mut l = orig.clone();
    l[2] = l[2].replacen("{\"n\":", &format!("{{\"v\":{FORMAT_VERSION},\"n\":"), 1);
    check(&l, 3, "hash does not match");

    // The mark of record 5 stripped: only the key sees it.
    let mut l = orig.clone();
    let at = l[4].find(",\"mac\":\"").unwrap();
    l[4] = format!("{}{}", &l[4][..at], &l[4][at + 8 + 64 + 1..]);
    write_lines(&log, &l);
    assert!(verify(&log).unwrap().is_ok(), "the chain alone cannot tell");
    let r = verify_with_key_file(&log, &key).unwrap();
    assert_eq!(problem_lines(&r), [5], "{:?}", r.problems);
    assert!(r.problems[0].what.contains("mark was stripped"), "{:?}", r.problems);
}
