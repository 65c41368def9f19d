//! A policy's `exec:` and `files:` rules as a Landlock ruleset.
//!
//! Landlock only grants: once an access right is *handled*, every path lacks it
//! except the hierarchies a rule grants it beneath. A policy mixes allows and denies
//! at any depth, so [`plan`] turns it into grants by walking the filesystem:
//!
//! - For each class of access (read, write, exec) that the policy denies somewhere
//!   (a rule or the default), the class is handled.
//! - Starting at `/`, a directory with no rule of that class strictly below it is
//!   decided as a whole: granted beneath if the matcher permits it, left out if not.
//!   A directory with rules below it is not granted itself; its entries are listed and
//!   decided one by one, recursively. Only the ancestors of rule paths are listed.
//!
//! The result decides every *existing* path exactly as [`Policy::decide_file`] and
//! [`Policy::decide_exec`] do (property-tested below), with these limits, which follow
//! from Landlock granting whole hierarchies:
//!
//! - A directory on the way to a rule is listable (`READ_DIR` is granted on it when the
//!   policy permits reading it), but entries cannot be created in or removed from it
//!   when a write rule lies below it, because that right would reach the rule's path.
//! - Entries created later directly in such a directory are covered by no grant, so
//!   they are denied for that class (fail closed).
//! - Landlock follows the path used: a bind mount or a hard link made before the
//!   session to a denied file from a granted place reaches it.
//!
//! For exec, the ELF interpreter (`PT_INTERP`) of an allowed program and the
//! interpreter of an allowed `#!` script are granted too: the kernel opens them for
//! execution, so the program could not start otherwise.
//!
//! With `exec: {writable: deny}` (W^X) a path may be executed only where the policy
//! also denies writing it ([`Policy::decide_exec`] says so), so exec is handled and
//! the walk splits at the write rules as well: a copy of a program, or anything the
//! session wrote, does not run.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::model::{Access, Policy};

/// Landlock filesystem access rights (`LANDLOCK_ACCESS_FS_*`, linux/landlock.h).
pub mod access {
    /// Execute a file.
    pub const EXECUTE: u64 = 1 << 0;
    /// Open a file for writing.
    pub const WRITE_FILE: u64 = 1 << 1;
    /// Open a file for reading.
    pub const READ_FILE: u64 = 1 << 2;
    /// Open a directory or list its content.
    pub const READ_DIR: u64 = 1 << 3;
    /// Remove an empty directory or rename one.
    pub const REMOVE_DIR: u64 = 1 << 4;
    /// Unlink (or rename) a file.
    pub const REMOVE_FILE: u64 = 1 << 5;
    /// Create (or rename or link) a character device.
    pub const MAKE_CHAR: u64 = 1 << 6;
    /// Create (or rename) a directory.
    pub const MAKE_DIR: u64 = 1 << 7;
    /// Create (or rename or link) a regular file.
    pub const MAKE_REG: u64 = 1 << 8;
    /// Create (or rename or link) a UNIX domain socket.
    pub const MAKE_SOCK: u64 = 1 << 9;
    /// Create (or rename or link) a named pipe.
    pub const MAKE_FIFO: u64 = 1 << 10;
    /// Create (or rename or link) a block device.
    pub const MAKE_BLOCK: u64 = 1 << 11;
    /// Create (or rename or link) a symbolic link.
    pub const MAKE_SYM: u64 = 1 << 12;
    /// Link or rename a file from or to a different directory (ABI 2).
    pub const REFER: u64 = 1 << 13;
    /// Truncate a file (ABI 3).
    pub const TRUNCATE: u64 = 1 << 14;

    /// What a `read` rule covers.
    pub const READ: u64 = READ_FILE | READ_DIR;
    /// What a `write` rule covers: changing a file's content and the entries of
    /// directories.
    pub const WRITE: u64 = WRITE_FILE
        | REMOVE_DIR
        | REMOVE_FILE
        | MAKE_CHAR
        | MAKE_DIR
        | MAKE_REG
        | MAKE_SOCK
        | MAKE_FIFO
        | MAKE_BLOCK
        | MAKE_SYM
        | REFER
        | TRUNCATE;
    /// What an `exec:` rule covers.
    pub const EXEC: u64 = EXECUTE;
}

/// One kind of access the policy decides separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Opening files and directories for reading.
    Read,
    /// Writing files and changing directories.
    Write,
    /// Executing files.
    Exec,
}

impl Class {
    const ALL: [Class; 3] = [Class::Read, Class::Write, Class::Exec];

    /// The Landlock rights of this class.
    #[must_use]
    pub fn rights(self) -> u64 {
        match self {
            Class::Read => access::READ,
            Class::Write => access::WRITE,
            Class::Exec => access::EXEC,
        }
    }

    fn permits(self, policy: &Policy, path: &Path) -> bool {
        match self {
            Class::Read => policy.decide_file(path, Access::Read).action.permits(),
            Class::Write => policy.decide_file(path, Access::Write).action.permits(),
            Class::Exec => policy.decide_exec(path).action.permits(),
        }
    }

    /// Rule paths of this class (their bases; `""` for `/`).
    fn rule_bases(self, policy: &Policy) -> Vec<&str> {
        match self {
            Class::Read => policy.files.iter().filter(|r| r.access.covers(Access::Read)).map(|r| r.path.base()).collect(),
            Class::Write => {
                policy.files.iter().filter(|r| r.access.covers(Access::Write)).map(|r| r.path.base()).collect()
            }
            // Under W^X what may run also turns on what may be written, so the walk
            // splits where the write rules do too.
            Class::Exec if !policy.confinement.writable_exec => policy
                .exec
                .iter()
                .map(|r| r.path.base())
                .chain(policy.files.iter().filter(|r| r.access.covers(Access::Write)).map(|r| r.path.base()))
                .collect(),
            Class::Exec => policy.exec.iter().map(|r| r.path.base()).collect(),
        }
    }

    /// Whether the policy denies this class anywhere: only then is it handled.
    fn handled(self, policy: &Policy) -> bool {
        let rules_deny = match self {
            Class::Read => policy.files.iter().any(|r| r.access.covers(Access::Read) && !r.action.permits()),
            Class::Write => policy.files.iter().any(|r| r.access.covers(Access::Write) && !r.action.permits()),
            Class::Exec => policy.exec.iter().any(|r| !r.action.permits()) || !policy.confinement.writable_exec,
        };
        rules_deny || !policy.default.permits()
    }
}

/// What the filesystem looks like, as far as planning needs: the real one in use, an
/// in-memory tree in tests.
pub trait FsView {
    /// The entries of directory `dir` (names only, no `.` and `..`).
    ///
    /// # Errors
    /// When the directory cannot be listed.
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>>;
    /// Whether `path` is a directory, not following a final symbolic link.
    fn is_real_dir(&self, path: &Path) -> bool;
    /// Up to `max` bytes from the start of the file at `path`.
    ///
    /// # Errors
    /// When the file cannot be read.
    fn head(&self, path: &Path, max: usize) -> io::Result<Vec<u8>>;
}

/// The filesystem of this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl FsView for RealFs {
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name())).collect()
    }

    fn is_real_dir(&self, path: &Path) -> bool {
        path.symlink_metadata().is_ok_and(|m| m.is_dir())
    }

    fn head(&self, path: &Path, max: usize) -> io::Result<Vec<u8>> {
        use std::io::Read as _;
        let mut buf = Vec::with_capacity(max);
        std::fs::File::open(path)?.take(max as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }
}

/// A Landlock ruleset for a policy: handle `handled`, then grant each path's rights
/// beneath it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsPlan {
    /// The rights the ruleset handles (denied wherever no grant reaches).
    pub handled: u64,
    /// Path → rights granted beneath it (and on it).
    pub grants: HashMap<PathBuf, u64>,
    /// Directories that could not be listed while planning, with the reason: their
    /// entries get no grant of their own (so they are denied for the classes that
    /// needed the listing).
    pub unlisted: Vec<(PathBuf, String)>,
}

impl FsPlan {
    /// Whether the plan handles nothing: no filesystem ruleset is needed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.handled == 0
    }

    /// Whether `rights` are all allowed on `path` by this plan: some grant on the path
    /// or an ancestor of it carries each right (Landlock's rule, for paths reached
    /// without symbolic links).
    #[must_use]
    pub fn allows(&self, path: &Path, rights: u64) -> bool {
        let rights = rights & self.handled;
        let mut have = 0;
        for ancestor in path.ancestors() {
            if let Some(r) = self.grants.get(ancestor) {
                have |= r;
            }
        }
        have & rights == rights
    }
}

/// Plans the Landlock ruleset enforcing `policy`'s exec and file rules on `fs`.
pub fn plan(policy: &Policy, fs: &dyn FsView) -> FsPlan {
    let mut plan = FsPlan::default();
    for class in Class::ALL {
        if !class.handled(policy) {
            continue;
        }
        plan.handled |= class.rights();
        let bases = class.rule_bases(policy);
        walk(policy, fs, class, &bases, Path::new("/"), &mut plan);
    }
    if plan.handled & access::EXECUTE != 0 {
        for interp in interpreters(policy, fs) {
            *plan.grants.entry(interp).or_default() |= access::EXECUTE;
        }
    }
    plan
}

/// Decides `path` for `class`: as a whole when no rule of the class lies strictly
/// below it, else entry by entry. `bases` holds the rule bases that may lie below
/// `path` (those below its parent); each level passes on the ones below it, so a
/// deep tree costs what its rules cost, not what the whole policy does.
fn walk(policy: &Policy, fs: &dyn FsView, class: Class, bases: &[&str], path: &Path, plan: &mut FsPlan) {
    let permitted = class.permits(policy, path);
    let here = path.as_os_str().as_bytes();
    let below: Vec<&str> = bases.iter().copied().filter(|b| strictly_below(b.as_bytes(), here)).collect();
    if below.is_empty() || !fs.is_real_dir(path) {
        if permitted {
            *plan.grants.entry(path.to_path_buf()).or_default() |= class.rights();
        }
        return;
    }
    if permitted && class == Class::Read {
        // Listing this directory is a read of it; READ_DIR beneath it does not let a
        // file below be read.
        *plan.grants.entry(path.to_path_buf()).or_default() |= access::READ_DIR;
    }
    match fs.list(path) {
        Ok(mut names) => {
            names.sort();
            for name in names {
                walk(policy, fs, class, &below, &path.join(name), plan);
            }
        }
        Err(e) => plan.unlisted.push((path.to_path_buf(), e.to_string())),
    }
}

/// Whether rule base `base` names a path strictly below directory `dir`, both
/// absolute and canonical: a byte comparison at a component boundary (the planner
/// asks this for every entry it decides, so no `Path` component walk).
fn strictly_below(base: &[u8], dir: &[u8]) -> bool {
    if dir == b"/" {
        return base.len() > 1;
    }
    base.len() > dir.len() && base.starts_with(dir) && base[dir.len()] == b'/'
}

/// The interpreters the kernel opens to run the files that exec rules allow: the ELF
/// `PT_INTERP` of a dynamically linked program, the `#!` line of a script.
fn interpreters(policy: &Policy, fs: &dyn FsView) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for rule in &policy.exec {
        if !rule.action.permits() || rule.path.is_dir() {
            continue;
        }
        let Ok(head) = fs.head(Path::new(rule.path.base()), 4096) else { continue };
        if let Some(p) = elf_interp(&head).or_else(|| shebang(&head)) {
            // W^X holds for interpreters too: one the session may write is not
            // granted, so a program that needs it does not start.
            if !policy.confinement.writable_exec && policy.decide_file(&p, Access::Write).action.permits() {
                continue;
            }
            out.push(p);
        }
    }
    out
}

/// The `PT_INTERP` path of a 64-bit little-endian ELF file, from its first bytes.
fn elf_interp(head: &[u8]) -> Option<PathBuf> {
    const PT_INTERP: u32 = 3;
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| head.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| head.get(o..o + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    let u64_at = |o: usize| head.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? != PT_INTERP {
            continue;
        }
        let off = usize::try_from(u64_at(ph + 8)?).ok()?;
        let len = usize::try_from(u64_at(ph + 32)?).ok()?;
        let raw = head.get(off..off.checked_add(len)?)?;
        let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
        let text = std::str::from_utf8(raw).ok()?;
        return text.starts_with('/').then(|| PathBuf::from(text));
    }
    None
}

/// The interpreter of a `#!` script.
fn shebang(head: &[u8]) -> Option<PathBuf> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_start();
    let interp = line.split_ascii_whitespace().next()?;
    interp.starts_with('/').then(|| PathBuf::from(interp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Action;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    /// An in-memory tree: directories and their entries.
    #[derive(Debug, Default)]
    struct Tree {
        dirs: HashMap<PathBuf, BTreeSet<OsString>>,
        files: HashMap<PathBuf, Vec<u8>>,
    }

    impl Tree {
        fn new(paths: &[&str]) -> Tree {
            let mut t = Tree::default();
            t.dirs.insert(PathBuf::from("/"), BTreeSet::new());
            for p in paths {
                t.add(p);
            }
            t
        }

        /// Adds a file (or a directory, with a trailing `/`) and its parents.
        fn add(&mut self, p: &str) {
            let is_dir = p.ends_with('/');
            let path = PathBuf::from(p.trim_end_matches('/'));
            for a in path.ancestors().skip(1) {
                self.dirs.entry(a.to_path_buf()).or_default();
            }
            for (child, parent) in path.ancestors().zip(path.ancestors().skip(1)) {
                if let Some(name) = child.file_name() {
                    self.dirs.entry(parent.to_path_buf()).or_default().insert(name.to_owned());
                }
            }
            if is_dir {
                self.dirs.entry(path).or_default();
            } else {
                self.files.insert(path, Vec::new());
            }
        }

        fn all_paths(&self) -> Vec<PathBuf> {
            self.dirs.keys().chain(self.files.keys()).cloned().collect()
        }
    }

    impl FsView for Tree {
        fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
            self.dirs.get(dir).map(|s| s.iter().cloned().collect()).ok_or_else(|| io::Error::from_raw_os_error(2))
        }
        fn is_real_dir(&self, path: &Path) -> bool {
            self.dirs.contains_key(path)
        }
        fn head(&self, path: &Path, max: usize) -> io::Result<Vec<u8>> {
            let f = self.files.get(path).ok_or_else(|| io::Error::from_raw_os_error(2))?;
            Ok(f[..f.len().min(max)].to_vec())
        }
    }

    fn policy(yaml: &str) -> Policy {
        Policy::from_yaml(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn w_x_grants_exec_only_where_writes_are_denied() {
        let p = policy(
            "name: p\nmax_ttl: 1h\ndefault: allow\nexec: {writable: deny}\nfiles:\n  - {path: /usr, access: write, action: deny}\n  - {path: /usr/local, access: write, action: allow}\n",
        );
        let t = Tree::new(&["/usr/bin/id", "/usr/local/bin/tool", "/tmp/id", "/home/a/run.sh"]);
        let plan = plan(&p, &t);
        assert_ne!(plan.handled & access::EXECUTE, 0);
        assert!(plan.allows(Path::new("/usr/bin/id"), access::EXECUTE));
        assert!(!plan.allows(Path::new("/tmp/id"), access::EXECUTE), "a copy in a writable place");
        assert!(!plan.allows(Path::new("/usr/local/bin/tool"), access::EXECUTE), "writable again below /usr");
        assert!(!plan.allows(Path::new("/home/a/run.sh"), access::EXECUTE));
        for path in t.files.keys() {
            assert_eq!(plan.allows(path, access::EXECUTE), p.decide_exec(path).action.permits(), "{}", path.display());
        }
        let d = p.decide_exec("/tmp/id");
        assert_eq!((d.action, d.rule.map(|r| r.label())), (Action::Deny, Some("exec.writable".to_owned())));
    }

    #[test]
    fn allow_everything_handles_nothing() {
        let p = policy("name: p\nmax_ttl: 1h\ndefault: allow\n");
        let plan = plan(&p, &Tree::new(&["/etc/passwd"]));
        assert!(plan.is_empty());
        assert!(plan.grants.is_empty());
    }

    #[test]
    fn deny_one_file_grants_its_siblings_and_ancestor_listing() {
        let p = policy("name: p\nmax_ttl: 1h\ndefault: allow\nfiles: [{path: /etc/shadow, access: read, action: deny}]\n");
        let tree = Tree::new(&["/etc/shadow", "/etc/passwd", "/etc/ssl/cert.pem", "/usr/bin/ls", "/tmp/"]);
        let plan = plan(&p, &tree);
        assert_eq!(plan.handled, access::READ);
        assert!(!plan.allows(Path::new("/etc/shadow"), access::READ_FILE));
        assert!(plan.allows(Path::new("/etc/passwd"), access::READ_FILE));
        assert!(plan.allows(Path::new("/etc/ssl/cert.pem"), access::READ_FILE));
        assert!(plan.allows(Path::new("/usr/bin/ls"), access::READ_FILE));
        assert!(plan.allows(Path::new("/etc"), access::READ_DIR));
        assert!(plan.allows(Path::new("/"), access::READ_DIR));
        // Writes are not handled at all.
        assert!(plan.allows(Path::new("/etc/shadow"), access::WRITE_FILE));
    }

    #[test]
    fn allow_inside_deny_inside_allow() {
        let p = policy(concat!(
            "name: p\nmax_ttl: 1h\ndefault: allow\n",
            "files: [{path: /var/lib/pg/, access: write, action: deny},\n",
            "        {path: /var/lib/pg/log/, access: write, action: allow}]\n",
        ));
        let tree = Tree::new(&["/var/lib/pg/base/1", "/var/lib/pg/log/x.log", "/var/lib/apt/lists", "/var/tmp/"]);
        let plan = plan(&p, &tree);
        assert_eq!(plan.handled, access::WRITE);
        assert!(!plan.allows(Path::new("/var/lib/pg/base/1"), access::WRITE_FILE));
        assert!(plan.allows(Path::new("/var/lib/pg/log/x.log"), access::WRITE_FILE | access::TRUNCATE));
        assert!(plan.allows(Path::new("/var/lib/apt/lists"), access::WRITE));
        assert!(plan.allows(Path::new("/var/tmp"), access::MAKE_REG));
        // Ancestors of a write rule: no entries created directly in them.
        assert!(!plan.allows(Path::new("/var/lib"), access::MAKE_REG));
    }

    #[test]
    fn default_deny_exec_grants_the_allowed_program_and_its_interpreter() {
        let p = policy(concat!(
            "name: p\nmax_ttl: 1h\ndefault: deny\n",
            "exec: [{path: /usr/bin/psql, action: allow}, {path: /usr/bin/tool.sh, action: allow}]\n",
        ));
        let mut tree = Tree::new(&["/usr/bin/psql", "/usr/bin/curl", "/usr/bin/tool.sh", "/lib64/ld.so"]);
        tree.files.insert(PathBuf::from("/usr/bin/psql"), fake_elf("/lib64/ld.so"));
        tree.files.insert(PathBuf::from("/usr/bin/tool.sh"), b"#!/bin/sh -e\necho hi\n".to_vec());
        let plan = plan(&p, &tree);
        assert_eq!(plan.handled, access::READ | access::WRITE | access::EXEC);
        assert!(plan.allows(Path::new("/usr/bin/psql"), access::EXECUTE));
        assert!(plan.allows(Path::new("/lib64/ld.so"), access::EXECUTE));
        assert!(plan.allows(Path::new("/bin/sh"), access::EXECUTE));
        assert!(!plan.allows(Path::new("/usr/bin/curl"), access::EXECUTE));
        assert!(!plan.allows(Path::new("/usr/bin/psql"), access::READ_FILE), "default deny covers files");
    }

    #[test]
    fn unlistable_directory_is_reported() {
        struct Broken;
        impl FsView for Broken {
            fn list(&self, _: &Path) -> io::Result<Vec<OsString>> {
                Err(io::Error::from_raw_os_error(13))
            }
            fn is_real_dir(&self, _: &Path) -> bool {
                true
            }
            fn head(&self, _: &Path, _: usize) -> io::Result<Vec<u8>> {
                Err(io::Error::from_raw_os_error(13))
            }
        }
        let p = policy("name: p\nmax_ttl: 1h\ndefault: allow\nfiles: [{path: /etc/shadow, access: read, action: deny}]\n");
        let plan = plan(&p, &Broken);
        assert_eq!(plan.unlisted.len(), 1);
        assert!(!plan.allows(Path::new("/etc/passwd"), access::READ_FILE), "fails closed");
    }

    #[test]
    fn elf_interpreter_of_this_test_binary() {
        // The running test is a real ELF file; if it is dynamically linked, its
        // interpreter exists.
        let exe = std::env::current_exe().unwrap();
        let head = RealFs.head(&exe, 4096).unwrap();
        if let Some(interp) = elf_interp(&head) {
            assert!(interp.is_file(), "{}", interp.display());
        }
    }

    /// A minimal ELF64 header plus one PT_INTERP program header.
    fn fake_elf(interp: &str) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let off = f.len() as u64;
        f[64..68].copy_from_slice(&3u32.to_le_bytes());
        f[64 + 8..64 + 16].copy_from_slice(&off.to_le_bytes());
        f[64 + 32..64 + 40].copy_from_slice(&(interp.len() as u64 + 1).to_le_bytes());
        f.extend_from_slice(interp.as_bytes());
        f.push(0);
        f
    }

    const NAMES: [&str; 3] = ["a", "b", "c"];

    fn arb_path() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(NAMES.to_vec()), 1..4).prop_map(|v| format!("/{}", v.join("/")))
    }

    fn arb_action() -> impl Strategy<Value = Action> {
        prop::sample::select(vec![Action::Allow, Action::Log, Action::Deny, Action::Kill, Action::KillSession])
    }

    fn arb_access() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["read", "write", "any"])
    }

    proptest! {
        /// For every existing file, the plan grants a class's rights exactly when the
        /// reference matcher permits that class.
        #[test]
        fn plan_agrees_with_the_matcher_on_files(
            default in prop::sample::select(vec!["allow", "deny", "log"]),
            file_rules in prop::collection::btree_map(arb_path(), (arb_access(), arb_action()), 0..5),
            exec_rules in prop::collection::btree_map(arb_path(), arb_action(), 0..4),
            tree_files in prop::collection::btree_set(arb_path(), 1..12),
        ) {
            let mut yaml = format!("name: p\nmax_ttl: 1h\ndefault: {default}\n");
            if !file_rules.is_empty() {
                yaml += "files:\n";
            }
            for (path, (acc, act)) in &file_rules {
                yaml += &format!("  - {{path: {path}, access: {acc}, action: {act}}}\n");
            }
            if !exec_rules.is_empty() {
                yaml += "exec:\n";
            }
            for (path, act) in &exec_rules {
                yaml += &format!("  - {{path: {path}, action: {act}}}\n");
            }
            let p = policy(&yaml);
            // Files are the leaves: a path that is a prefix of another is a directory.
            let leaves: Vec<&String> = tree_files.iter()
                .filter(|f| !tree_files.iter().any(|g| g.starts_with(&format!("{f}/"))))
                .collect();
            let tree = Tree::new(&leaves.iter().map(|s| s.as_str()).collect::<Vec<_>>());
            let plan = plan(&p, &tree);
            for path in tree.files.keys() {
                let read = p.decide_file(path, Access::Read).action.permits();
                let write = p.decide_file(path, Access::Write).action.permits();
                let exec = p.decide_exec(path).action.permits();
                prop_assert_eq!(plan.allows(path, access::READ_FILE), read, "read {}", path.display());
                prop_assert_eq!(plan.allows(path, access::WRITE_FILE | access::TRUNCATE), write, "write {}", path.display());
                prop_assert_eq!(plan.allows(path, access::EXECUTE), exec, "exec {}", path.display());
            }
            let _ = tree.all_paths();
        }
    }
}
