//! Policy file (YAML) to [`Policy`], with every problem named by file, line and field.
//!
//! A typo in a security policy must never silently widen it, so the reader is strict:
//! unknown keys, duplicate keys, missing required fields, values of the wrong kind, and
//! rules that contradict each other (two rules for one path, two network rules sharing a
//! port on one CIDR) are all errors. It does not stop at the first problem: one run lists
//! them all, in line order, each as
//!
//! ```text
//! db-debug.yaml:8: files[1].access: unknown access "wirte" (expected read, write or any)
//! ```
//!
//! The schema (required unless marked):
//!
//! ```text
//! name:      [a-z0-9._-]{1,64}
//! max_ttl:   duration, whole seconds, > 0 (humantime: 15m, 1h, 1h 30m)
//! default:   allow | log | deny
//! exec:      optional list of {path, action}
//! files:     optional list of {path, access: read | write | any, action}
//! network:   optional list of {cidr, ports: optional list of N or "A-B", action}
//! bind:      optional list of {cidr, ports, action} (local address and port; not drop)
//! unix:      optional list of {path | abstract, action} (socket name prefixes; not drop)
//! on_expiry: optional, kill-session (default) | drop
//! approvals: optional, 1 (default) to 10: distinct approvals a request needs
//! approver_role: optional, approver (default): the collector role approvers hold
//! subjects:  optional list of user | agent (default both): who may be granted it
//! ```
//!
//! An empty (`exec:`) list is the same as no list.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::Error;
use crate::model::{
    Access, Action, Approval, AuditGapAction, Cidr, Confinement, ExecRule, ExpiryAction, FileRule, MaxProcessesAction, NetRule, PathPattern,
    Policy, PortSet, SubjectKind, UnixName, UnixRule,
};
use crate::yaml::{self, Entry, Node, Value};

/// One thing wrong in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The 1-based line it is on.
    pub line: usize,
    /// The field, as a path from the top (`files[1].access`); `None` for YAML syntax.
    pub field: Option<String>,
    /// What is wrong, lowercase.
    pub message: String,
}

/// `files[1].access: unknown access "wirte" (expected read, write or any)`, without the
/// file and line, which [`Error`] adds.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl Policy {
    /// Parses a policy from YAML text; `file` names it in errors (`db-debug.yaml:8: …`).
    ///
    /// # Errors
    /// [`Error::Invalid`] with every problem found, in line order.
    pub fn from_yaml(text: &str, file: &str) -> Result<Policy, Error> {
        let invalid = |problems| Error::Invalid { file: file.to_owned(), problems };
        let root = match yaml::load(text) {
            Ok(Some(root)) => root,
            Ok(None) => {
                let message = "empty policy (expected a mapping with name, max_ttl and default)".to_owned();
                return Err(invalid(vec![Problem { line: 1, field: None, message }]));
            }
            Err(e) => {
                let message = format!("invalid YAML at column {}: {}", e.column, e.message);
                return Err(invalid(vec![Problem { line: e.line, field: None, message }]));
            }
        };
        let mut checker = Checker::default();
        let policy = checker.policy(&root);
        let mut problems = checker.problems;
        match policy {
            Some(policy) if problems.is_empty() => Ok(policy),
            _ => {
                problems.sort_by_key(|p| p.line);
                Err(invalid(problems))
            }
        }
    }

    /// Reads and parses the policy file at `path`, named in errors as `path` is written.
    ///
    /// # Errors
    /// [`Error::Read`] when the file cannot be read (or is not UTF-8), else as
    /// [`Policy::from_yaml`].
    pub fn load(path: &Path) -> Result<Policy, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        Policy::from_yaml(&text, &path.display().to_string())
    }
}

/// The top-level keys, in the order the documentation lists them.
const TOP: &[&str] = &[
    "name",
    "max_ttl",
    "default",
    "exec",
    "files",
    "network",
    "bind",
    "unix",
    "on_expiry",
    "approvals",
    "approver_role",
    "subjects",
    "max_processes",
    "on_max_processes",
    "io_uring",
    "raw_sockets",
    "on_audit_gap",
];

/// Most approvals a policy may ask for: more is a typo, not a process.
const MAX_APPROVALS: u32 = 10;

/// Walks the YAML tree, collecting problems instead of stopping at the first.
#[derive(Default)]
struct Checker {
    /// Everything wrong so far.
    problems: Vec<Problem>,
}

/// A mapping whose keys were checked: only known ones, none twice.
struct Fields<'n> {
    /// Where the mapping starts (for "missing" problems).
    line: usize,
    /// The mapping's own field path (`files[1]`), empty at the top.
    path: String,
    /// Its entries.
    entries: &'n [Entry],
}

impl<'n> Fields<'n> {
    /// The value of `key`, if present (the first, when a duplicate was reported).
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.value)
    }

    /// The field path of `key` in this mapping.
    fn path(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }
}

/// Line numbers of a rule's fields, for problems found across rules.
#[derive(Clone, Copy)]
struct Lines {
    /// The `path:` or `cidr:` value.
    target: usize,
    /// The `ports:` value (or `target` when absent).
    ports: usize,
}

impl Checker {
    fn problem(&mut self, line: usize, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { line, field: Some(field.into()), message: message.into() });
    }

    fn policy(&mut self, root: &Node) -> Option<Policy> {
        let top = self.mapping(root, "", TOP)?;
        let name = self.required(&top, "name").and_then(|n| self.name(n));
        let max_ttl = self.required(&top, "max_ttl").and_then(|n| self.max_ttl(n));
        let default = self.required(&top, "default").and_then(|n| self.default_action(n));
        let (exec_top, writable_exec) = self.exec_section(&top);
        let exec = match &exec_top {
            Some(fields) => self.rules(fields, "rules", Checker::exec_rule),
            None => self.rules(&top, "exec", Checker::exec_rule),
        };
        let files = self.rules(&top, "files", Checker::file_rule);
        let network = self.rules(&top, "network", Checker::net_rule);
        let bind = self.rules(&top, "bind", Checker::net_rule);
        let unix = self.rules(&top, "unix", Checker::unix_rule);
        let on_expiry = match top.get("on_expiry") {
            Some(node) => self.keyword::<ExpiryAction>(node, "on_expiry"),
            None => Some(ExpiryAction::KillSession),
        };
        let approval = self.approval(&top);
        let confinement = self.confinement(&top).map(|mut c| {
            c.writable_exec = writable_exec;
            c
        });
        if !writable_exec && default.is_some_and(|d| d.permits()) && !files.iter().any(|(r, _)| r.access.covers(Access::Write) && !r.action.permits()) {
            let line = top.get("exec").map_or(top.line, |n| n.line);
            self.problem(
                line,
                "exec.writable",
                "deny leaves no program the session can run: every path is writable unless a files rule denies writes \
                 (add e.g. {path: /usr, access: write, action: deny})",
            );
        }
        self.exec_conflicts(&exec);
        self.file_conflicts(&files);
        self.net_conflicts("network", &network);
        self.net_conflicts("bind", &bind);
        self.no_drop("bind", &bind);
        self.unix_conflicts(&unix);
        Some(Policy {
            name: name?,
            max_ttl: max_ttl?,
            default: default?,
            exec: exec.into_iter().map(|(r, _)| r).collect(),
            files: files.into_iter().map(|(r, _)| r).collect(),
            network: network.into_iter().map(|(r, _)| r).collect(),
            bind: bind.into_iter().map(|(r, _)| r).collect(),
            unix: unix.into_iter().map(|(r, _)| r).collect(),
            on_expiry: on_expiry?,
            approval: approval?,
            confinement: confinement?,
        })
    }

    /// `exec:` as a mapping, `{writable: deny, rules: [...]}`: its fields (whose
    /// `rules` are then the exec rules) and whether a writable file may be executed
    /// (`writable`, allow by default). `exec:` as a plain list gives `(None, true)`.
    fn exec_section<'n>(&mut self, top: &Fields<'n>) -> (Option<Fields<'n>>, bool) {
        let Some(node) = top.get("exec") else { return (None, true) };
        if !matches!(node.value, Value::Map(_)) {
            return (None, true);
        }
        let Some(fields) = self.mapping(node, "exec", &["writable", "rules"]) else { return (None, true) };
        let writable = match fields.get("writable") {
            None => true,
            Some(n) => match self.text(n, "exec.writable") {
                Some("allow") => true,
                Some("deny") => false,
                Some(other) => {
                    let msg = format!("unknown value {} (expected allow or deny)", quote(other));
                    self.problem(n.line, "exec.writable", msg);
                    true
                }
                None => true,
            },
        };
        (Some(fields), writable)
    }

    /// `max_processes`, `on_max_processes`, `io_uring`, `raw_sockets` and `on_audit_gap`,
    /// each defaulted when absent.
    fn confinement(&mut self, top: &Fields<'_>) -> Option<Confinement> {
        let mut c = Confinement::default();
        let mut ok = true;
        if let Some(node) = top.get("max_processes") {
            let max = Confinement::MAX_MAX_PROCESSES;
            ok &= self.text(node, "max_processes").is_some_and(|text| match text.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => {
                    c.max_processes = n;
                    true
                }
                _ => {
                    self.problem(node.line, "max_processes", format!("invalid count {} (expected 1 to {max})", quote(text)));
                    false
                }
            });
        }
        if let Some(node) = top.get("on_max_processes") {
            match self.keyword::<MaxProcessesAction>(node, "on_max_processes") {
                Some(a) => c.on_max_processes = a,
                None => ok = false,
            }
        }
        if let Some(node) = top.get("on_audit_gap") {
            match self.keyword::<AuditGapAction>(node, "on_audit_gap") {
                Some(a) => c.on_audit_gap = a,
                None => ok = false,
            }
        }
        for (field, slot) in [("io_uring", &mut c.io_uring), ("raw_sockets", &mut c.raw_sockets)] {
            let Some(node) = top.get(field) else { continue };
            ok &= self.text(node, field).is_some_and(|text| match text {
                "allow" => {
                    *slot = true;
                    true
                }
                "deny" => true,
                _ => {
                    self.problem(node.line, field, format!("unknown value {} (expected allow or deny)", quote(text)));
                    false
                }
            });
        }
        ok.then_some(c)
    }

    /// `approvals`, `approver_role` and `subjects`, each defaulted when absent.
    fn approval(&mut self, top: &Fields<'_>) -> Option<Approval> {
        let mut a = Approval::default();
        let mut ok = true;
        if let Some(node) = top.get("approvals") {
            ok &= self.text(node, "approvals").is_some_and(|text| match text.parse::<u32>() {
                Ok(n) if (1..=MAX_APPROVALS).contains(&n) => {
                    a.approvals = n;
                    true
                }
                _ => {
                    self.problem(node.line, "approvals", format!("invalid count {} (expected 1 to {MAX_APPROVALS})", quote(text)));
                    false
                }
            });
        }
        if let Some(node) = top.get("approver_role") {
            ok &= self.text(node, "approver_role").is_some_and(|text| {
                if Approval::is_valid_role(text) {
                    a.approver_role = text.to_owned();
                    return true;
                }
                let max = Approval::MAX_ROLE_LEN;
                self.problem(node.line, "approver_role", format!("invalid role {} (use 1-{max} of a-z, 0-9, '_' and '-')", quote(text)));
                false
            });
        }
        if let Some(node) = top.get("subjects") {
            ok &= self.subjects(node).is_some_and(|kinds| {
                a.subjects = kinds;
                true
            });
        }
        ok.then_some(a)
    }

    /// A non-empty list of subject kinds, without repeats, in canonical order.
    fn subjects(&mut self, node: &Node) -> Option<Vec<SubjectKind>> {
        let Value::Seq(items) = &node.value else {
            self.problem(node.line, "subjects", format!("expected a list (e.g. [user, agent]), found {}", found(node)));
            return None;
        };
        if items.is_empty() {
            self.problem(node.line, "subjects", "empty list: nobody could be granted this policy (expected user, agent or both)");
            return None;
        }
        let mut kinds = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let field = format!("subjects[{i}]");
            match self.keyword::<SubjectKind>(item, &field) {
                Some(k) if kinds.contains(&k) => {
                    self.problem(item.line, field, format!("duplicate subject kind \"{k}\""));
                    ok = false;
                }
                Some(k) => kinds.push(k),
                None => ok = false,
            }
        }
        kinds.sort();
        ok.then_some(kinds)
    }

    /// Checks that `node` is a mapping with only `allowed` keys, each at most once.
    fn mapping<'n>(&mut self, node: &'n Node, path: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            let what = if path.is_empty() { "policy" } else { path };
            self.problem(node.line, what, format!("expected a mapping, found {}", found(node)));
            return None;
        };
        let fields = Fields { line: node.line, path: path.to_owned(), entries };
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for entry in entries {
            if !allowed.contains(&entry.key.as_str()) {
                let expected = one_of(allowed);
                let key = &entry.key;
                let shown = if key.chars().all(|c| c.is_ascii_graphic()) { key.clone() } else { quote(key) };
                self.problem(entry.key_line, fields.path(&shown), format!("unknown field (expected {expected})"));
            } else if let Some(first) = seen.insert(&entry.key, entry.key_line) {
                self.problem(
                    entry.key_line,
                    fields.path(&entry.key),
                    format!("duplicate field (first on line {first})"),
                );
                seen.insert(&entry.key, first);
            }
        }
        Some(fields)
    }

    /// The value of a required field, or a "missing" problem.
    fn required<'n>(&mut self, fields: &Fields<'n>, key: &str) -> Option<&'n Node> {
        let node = fields.get(key);
        if node.is_none() {
            self.problem(fields.line, fields.path(key), "missing required field");
        }
        node
    }

    /// The text of a scalar, or a problem naming what was found instead.
    fn text<'n>(&mut self, node: &'n Node, field: &str) -> Option<&'n str> {
        match &node.value {
            Value::Scalar(s) if s.is_null() => {
                self.problem(node.line, field, "missing value");
                None
            }
            Value::Scalar(s) => Some(&s.text),
            _ => {
                self.problem(node.line, field, format!("expected a single value, found {}", found(node)));
                None
            }
        }
    }

    /// A keyword (action, access, expiry action).
    fn keyword<T: std::str::FromStr<Err = crate::model::UnknownName>>(
        &mut self,
        node: &Node,
        field: &str,
    ) -> Option<T> {
        let text = self.text(node, field)?;
        text.parse().map_err(|e: crate::model::UnknownName| self.problem(node.line, field, e.to_string())).ok()
    }

    fn name(&mut self, node: &Node) -> Option<String> {
        let text = self.text(node, "name")?;
        if Policy::is_valid_name(text) {
            return Some(text.to_owned());
        }
        let max = Policy::MAX_NAME_LEN;
        let message = format!("invalid name {} (use 1-{max} of a-z, 0-9, '.', '_' and '-')", quote(text));
        self.problem(node.line, "name", message);
        None
    }

    fn max_ttl(&mut self, node: &Node) -> Option<Duration> {
        let text = self.text(node, "max_ttl")?;
        let message = match humantime::parse_duration(text) {
            Err(e) => format!("invalid duration {} ({e}; e.g. 15m, 1h, 1h 30m)", quote(text)),
            Ok(d) if d.is_zero() => "must be longer than 0".to_owned(),
            Ok(d) if d.subsec_nanos() != 0 => format!("{} is not a whole number of seconds", quote(text)),
            Ok(d) => return Some(d),
        };
        self.problem(node.line, "max_ttl", message);
        None
    }

    fn default_action(&mut self, node: &Node) -> Option<Action> {
        let text = self.text(node, "default")?;
        let message = match text.parse::<Action>() {
            Ok(a) if a.can_be_default() => return Some(a),
            Ok(a) => format!("\"{a}\" cannot be the default (expected allow, log or deny; use {a} on rules)"),
            Err(e) => format!("unknown action {} (expected allow, log or deny)", quote(&e.text)),
        };
        self.problem(node.line, "default", message);
        None
    }

    /// An optional list of rules under `key`, each parsed by `rule`; the rules that were
    /// valid, with their lines.
    fn rules<'n, R>(
        &mut self,
        top: &Fields<'n>,
        key: &str,
        rule: fn(&mut Self, &Fields<'n>) -> Option<(R, Lines)>,
    ) -> Vec<(R, Lines)> {
        let Some(node) = top.get(key) else { return Vec::new() };
        let name = top.path(key);
        let items = match &node.value {
            Value::Seq(items) => items.as_slice(),
            Value::Scalar(s) if s.is_null() => &[],
            _ => {
                self.problem(node.line, &name, format!("expected a list of rules, found {}", found(node)));
                return Vec::new();
            }
        };
        let allowed: &[&str] = match key {
            "exec" | "rules" => &["path", "action"],
            "files" => &["path", "access", "action"],
            "unix" => &["path", "abstract", "action"],
            _ => &["cidr", "ports", "action"], // network and bind
        };
        let mut rules = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(fields) = self.mapping(item, &format!("{name}[{i}]"), allowed)
                && let Some(r) = rule(self, &fields)
            {
                rules.push(r);
            }
        }
        // Indices of later rules must stay those of the file: keep going only if all parsed.
        if rules.len() == items.len() { rules } else { Vec::new() }
    }

    fn path(&mut self, fields: &Fields<'_>) -> Option<(PathPattern, usize)> {
        let node = self.required(fields, "path")?;
        let field = fields.path("path");
        let text = self.text(node, &field)?;
        match PathPattern::new(text) {
            Ok(p) => Some((p, node.line)),
            Err(e) => {
                self.problem(node.line, field, format!("invalid path {}: {e}", quote(text)));
                None
            }
        }
    }

    fn action(&mut self, fields: &Fields<'_>) -> Option<Action> {
        let node = self.required(fields, "action")?;
        self.keyword(node, &fields.path("action"))
    }

    fn exec_rule(&mut self, fields: &Fields<'_>) -> Option<(ExecRule, Lines)> {
        let path = self.path(fields);
        let action = self.action(fields);
        let (path, line) = path?;
        Some((ExecRule { path, action: action? }, Lines { target: line, ports: line }))
    }

    fn file_rule(&mut self, fields: &Fields<'_>) -> Option<(FileRule, Lines)> {
        let path = self.path(fields);
        let access = self.required(fields, "access").and_then(|n| self.keyword::<Access>(n, &fields.path("access")));
        let action = self.action(fields);
        let (path, line) = path?;
        Some((FileRule { path, access: access?, action: action? }, Lines { target: line, ports: line }))
    }

    fn net_rule(&mut self, fields: &Fields<'_>) -> Option<(NetRule, Lines)> {
        let cidr = self.required(fields, "cidr").and_then(|node| {
            let field = fields.path("cidr");
            let text = self.text(node, &field)?;
            text.parse::<Cidr>()
                .map_err(|e| self.problem(node.line, field, format!("invalid CIDR {}: {e}", quote(text))))
                .ok()
                .map(|c| (c, node.line))
        });
        let ports = match fields.get("ports") {
            None => Some((None, None)),
            Some(node) => self.ports(node, &fields.path("ports")).map(|p| (Some(p), Some(node.line))),
        };
        let action = self.action(fields);
        let ((cidr, line), (ports, ports_line)) = (cidr?, ports?);
        Some((NetRule { cidr, ports, action: action? }, Lines { target: line, ports: ports_line.unwrap_or(line) }))
    }

    /// `{path: /run/x.sock, action: …}` or `{abstract: name, action: …}`.
    fn unix_rule(&mut self, fields: &Fields<'_>) -> Option<(UnixRule, Lines)> {
        let name = match (fields.get("path"), fields.get("abstract")) {
            (Some(node), None) | (None, Some(node)) => {
                let key = if fields.get("path").is_some() { "path" } else { "abstract" };
                let field = fields.path(key);
                let text = self.text(node, &field)?;
                let parsed = if key == "path" { UnixName::path(text) } else { UnixName::abstract_name(text) };
                parsed
                    .map_err(|e| self.problem(node.line, field, format!("invalid socket name {}: {e}", quote(text))))
                    .ok()
                    .map(|n| (n, node.line))
            }
            (Some(_), Some(node)) => {
                self.problem(node.line, fields.path("abstract"), "a rule names a path or an abstract name, not both");
                None
            }
            (None, None) => {
                self.problem(fields.line, fields.path("path"), "missing (a unix rule needs path or abstract)");
                None
            }
        };
        let action = self.action(fields).and_then(|a| {
            if a == Action::Drop {
                let line = fields.get("action").map_or(fields.line, |n| n.line);
                self.problem(line, fields.path("action"), "\"drop\" applies to network rules (expected allow, log, deny, kill or kill-session)");
                return None;
            }
            Some(a)
        });
        let (name, line) = name?;
        Some((UnixRule { name, action: action? }, Lines { target: line, ports: line }))
    }

    fn unix_conflicts(&mut self, rules: &[(UnixRule, Lines)]) {
        let mut seen: HashMap<&UnixName, usize> = HashMap::new();
        for (i, (rule, lines)) in rules.iter().enumerate() {
            if let Some(&first) = seen.get(&rule.name) {
                let message = format!("duplicate of unix[{first}] ({}): a name may have one rule", rules[first].0);
                let key = if matches!(rule.name, UnixName::Path(_)) { "path" } else { "abstract" };
                self.problem(lines.target, format!("unix[{i}].{key}"), message);
            } else {
                seen.insert(&rule.name, i);
            }
        }
    }

    fn ports(&mut self, node: &Node, field: &str) -> Option<PortSet> {
        let Value::Seq(items) = &node.value else {
            let message = format!("expected a list of ports (e.g. [5432, \"8000-8100\"]), found {}", found(node));
            self.problem(node.line, field, message);
            return None;
        };
        let mut ranges = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let field = format!("{field}[{i}]");
            let text = self.text(item, &field)?;
            match PortSet::parse_item(text) {
                Ok(r) => ranges.push(r),
                Err(e) => self.problem(item.line, field, e.to_string()),
            }
        }
        if ranges.len() != items.len() {
            return None;
        }
        PortSet::new(ranges).map_err(|e| self.problem(node.line, field, e.to_string())).ok()
    }

    fn exec_conflicts(&mut self, rules: &[(ExecRule, Lines)]) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, (rule, lines)) in rules.iter().enumerate() {
            if let Some(&first) = seen.get(rule.path.base()) {
                let message = format!("duplicate of exec[{first}] ({}): a path may have one rule", rules[first].0);
                self.problem(lines.target, format!("exec[{i}].path"), message);
            } else {
                seen.insert(rule.path.base(), i);
            }
        }
    }

    fn file_conflicts(&mut self, rules: &[(FileRule, Lines)]) {
        let mut seen: HashMap<(&str, Access), usize> = HashMap::new();
        for (i, (rule, lines)) in rules.iter().enumerate() {
            if let Some(&first) = seen.get(&(rule.path.base(), rule.access)) {
                let message =
                    format!("duplicate of files[{first}] ({}): a path and access may have one rule", rules[first].0);
                self.problem(lines.target, format!("files[{i}].path"), message);
            } else {
                seen.insert((rule.path.base(), rule.access), i);
            }
        }
    }

    /// `drop` destroys a session's connections: a bind rule cannot mean it.
    fn no_drop(&mut self, key: &str, rules: &[(NetRule, Lines)]) {
        for (i, (rule, lines)) in rules.iter().enumerate() {
            if rule.action == Action::Drop {
                let message = "\"drop\" applies to network rules (expected allow, log, deny, kill or kill-session)";
                self.problem(lines.target, format!("{key}[{i}].action"), message);
            }
        }
    }

    fn net_conflicts(&mut self, key: &str, rules: &[(NetRule, Lines)]) {
        for (i, (rule, lines)) in rules.iter().enumerate() {
            let earlier = rules[..i].iter().enumerate().filter(|(_, (r, _))| r.cidr == rule.cidr);
            for (first, (other, _)) in earlier {
                match (&rule.ports, &other.ports) {
                    (None, None) => {
                        let message =
                            format!("duplicate of {key}[{first}] ({other}): a CIDR may have one rule without ports");
                        self.problem(lines.target, format!("{key}[{i}].cidr"), message);
                    }
                    (Some(mine), Some(theirs)) => {
                        if let Some(port) = mine.first_common(theirs) {
                            let message = format!(
                                "port {port} is also in {key}[{first}] ({other}): rules on one CIDR must not share ports"
                            );
                            self.problem(lines.ports, format!("{key}[{i}].ports"), message);
                        }
                    }
                    _ => continue,
                }
                break;
            }
        }
    }
}

/// What a node is, for "expected …, found …".
fn found(node: &Node) -> String {
    match &node.value {
        Value::Scalar(s) if s.is_null() => "nothing".to_owned(),
        Value::Scalar(s) => quote(&s.text),
        Value::Seq(_) => "a list".to_owned(),
        Value::Map(_) => "a mapping".to_owned(),
    }
}

/// `"text"` with control characters escaped and long text cut, for messages.
fn quote(text: &str) -> String {
    const MAX: usize = 60;
    let mut cut: String = text.chars().take(MAX).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// `a, b or c`.
fn one_of(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB_DEBUG: &str = include_str!("../examples/db-debug.yaml");

    /// The error text for `yaml`, parsed as `t.yaml`.
    fn err(yaml: &str) -> String {
        Policy::from_yaml(yaml, "t.yaml").unwrap_err().to_string()
    }

    /// A valid policy head, to which a test adds lines (lines 1-3).
    const HEAD: &str = "name: t\nmax_ttl: 1h\ndefault: deny\n";

    #[test]
    fn exec_as_a_mapping_carries_writable_and_rules() {
        let p = Policy::from_yaml(
            &format!("{HEAD}exec:\n  writable: deny\n  rules:\n    - {{path: /usr/bin/curl, action: kill}}\nfiles:\n  - {{path: /usr, access: write, action: deny}}\n"),
            "t.yaml",
        )
        .unwrap();
        assert!(!p.confinement.writable_exec);
        assert_eq!(p.exec[0].to_string(), "/usr/bin/curl -> kill");
        let plain = Policy::from_yaml(&format!("{HEAD}exec: [{{path: /usr/bin/curl, action: kill}}]\n"), "t.yaml").unwrap();
        assert!(plain.confinement.writable_exec, "a plain list keeps writable files executable");
        assert!(err(&format!("{HEAD}exec: {{writable: maybe}}\n")).contains("t.yaml:4: exec.writable: unknown value \"maybe\""));
        let allow_all = "name: t\nmax_ttl: 1h\ndefault: allow\n";
        assert!(err(&format!("{allow_all}exec: {{writable: deny}}\n")).contains("exec.writable: deny leaves no program"), "nothing is write-denied, so nothing could run");
        assert!(
            Policy::from_yaml(&format!("{HEAD}exec: {{writable: deny}}\n"), "t.yaml").is_ok(),
            "default: deny denies writes wherever no rule allows them"
        );
        assert!(err(&format!("{HEAD}exec: {{writable: deny, rulez: []}}\nfiles: [{{path: /usr, access: write, action: deny}}]\n")).contains("rulez"));
        assert!(
            err(&format!("{HEAD}exec:\n  rules:\n    - {{path: usr/bin/x, action: deny}}\n")).contains("exec.rules[0]"),
            "a rule's problem names where it is"
        );
    }

    #[test]
    fn example_parses() {
        let p = Policy::from_yaml(DB_DEBUG, "db-debug.yaml").unwrap();
        assert_eq!(p.name, "db-debug");
        assert_eq!(p.max_ttl, Duration::from_secs(3600));
        assert_eq!(p.default, Action::Allow);
        assert_eq!(p.exec.len(), 2);
        assert_eq!(p.exec[1].to_string(), "/usr/bin/curl -> kill");
        assert_eq!(p.files[0].to_string(), "/var/lib/postgresql/ write -> deny");
        assert_eq!(p.files[1].to_string(), "/etc/shadow any -> kill-session");
        assert_eq!(p.network[0].to_string(), "10.0.0.0/8 ports 5432 -> allow");
        assert_eq!(p.network[1].to_string(), "0.0.0.0/0 -> drop");
        assert_eq!(p.on_expiry, ExpiryAction::KillSession);
    }

    #[test]
    fn optional_fields() {
        let p = Policy::from_yaml(HEAD, "t.yaml").unwrap();
        assert!(p.exec.is_empty() && p.files.is_empty() && p.network.is_empty());
        assert_eq!(p.on_expiry, ExpiryAction::KillSession, "kill-session unless said otherwise");
        let p = Policy::from_yaml(&format!("{HEAD}exec:\nfiles: []\non_expiry: drop\n"), "t.yaml").unwrap();
        assert!(p.exec.is_empty() && p.files.is_empty());
        assert_eq!(p.on_expiry, ExpiryAction::Drop);
        // Quoted values are values like any other.
        let p = Policy::from_yaml("name: '7'\nmax_ttl: \"90m\"\ndefault: 'log'\n", "t.yaml").unwrap();
        assert_eq!((p.name.as_str(), p.max_ttl.as_secs(), p.default), ("7", 5400, Action::Log));
    }

    #[test]
    fn error_names_file_line_and_field() {
        let bad = DB_DEBUG.replace("access: any", "access: wirte");
        assert_eq!(
            Policy::from_yaml(&bad, "db-debug.yaml").unwrap_err().to_string(),
            r#"db-debug.yaml:8: files[1].access: unknown access "wirte" (expected read, write or any)"#
        );
        let bad = DB_DEBUG.replace("10.0.0.0/8", "10.0.0.0/33");
        assert_eq!(
            Policy::from_yaml(&bad, "db-debug.yaml").unwrap_err().to_string(),
            r#"db-debug.yaml:9: network[0].cidr: invalid CIDR "10.0.0.0/33": prefix length must be at most 32"#
        );
    }

    #[test]
    fn every_problem_is_listed_in_line_order() {
        let e = Policy::from_yaml("default: kill\nname: Bad Name\nmax_ttl: soon\n", "t.yaml").unwrap_err();
        let Error::Invalid { problems, .. } = &e else { panic!("{e:?}") };
        assert_eq!(problems.iter().map(|p| p.line).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(
            e.to_string(),
            "t.yaml:1: default: \"kill\" cannot be the default (expected allow, log or deny; use kill on rules)\n\
             t.yaml:2: name: invalid name \"Bad Name\" (use 1-64 of a-z, 0-9, '.', '_' and '-')\n\
             t.yaml:3: max_ttl: invalid duration \"soon\" (expected number at 0; e.g. 15m, 1h, 1h 30m)"
        );
    }

    #[test]
    fn yaml_syntax_and_shape() {
        assert_eq!(err(""), "t.yaml:1: empty policy (expected a mapping with name, max_ttl and default)");
        assert_eq!(err("- a\n"), "t.yaml:1: policy: expected a mapping, found a list");
        assert_eq!(err("just text\n"), r#"t.yaml:1: policy: expected a mapping, found "just text""#);
        assert_eq!(
            err("name: t\n  max_ttl: 1h\n"),
            "t.yaml:2: invalid YAML at column 10: mapping values are not allowed in this context"
        );
        assert_eq!(
            err("name: &a t\n"),
            "t.yaml:1: invalid YAML at column 7: anchors (&name) are not supported in a policy"
        );
    }

    #[test]
    fn unknown_duplicate_and_missing_fields() {
        assert_eq!(
            err(&format!("{HEAD}exce: []\n")),
            "t.yaml:4: exce: unknown field (expected name, max_ttl, default, exec, files, network, bind, unix, on_expiry, approvals, approver_role, subjects, max_processes, on_max_processes, io_uring, raw_sockets or on_audit_gap)"
        );
        assert_eq!(err(&format!("{HEAD}default: allow\n")), "t.yaml:4: default: duplicate field (first on line 3)");
        assert_eq!(
            err(&format!("{HEAD}\"a\\e[31mb\": 1\n")),
            r#"t.yaml:4: "a\u{1b}[31mb": unknown field (expected name, max_ttl, default, exec, files, network, bind, unix, on_expiry, approvals, approver_role, subjects, max_processes, on_max_processes, io_uring, raw_sockets or on_audit_gap)"#
        );
        assert_eq!(
            err(&format!("{HEAD}exec: [{{path: /x, action: \"\\e[2J\"}}]\n")),
            r#"t.yaml:4: exec[0].action: unknown action "\u{1b}[2J" (expected allow, log, deny, kill, kill-session or drop)"#
        );
        assert_eq!(err("max_ttl: 1h\ndefault: deny\n"), "t.yaml:1: name: missing required field");
        assert_eq!(
            err(&format!("{HEAD}files:\n  - path: /etc\n    acess: read\n    action: allow\n")),
            "t.yaml:5: files[0].access: missing required field\n\
             t.yaml:6: files[0].acess: unknown field (expected path, access or action)"
        );
        assert_eq!(
            err(&format!("{HEAD}exec: [{{path: /bin/sh}}]\n")),
            "t.yaml:4: exec[0].action: missing required field"
        );
        assert_eq!(
            err(&format!("{HEAD}network: [{{cidr: 10.0.0.0/8, action: allow, access: read}}]\n")),
            "t.yaml:4: network[0].access: unknown field (expected cidr, ports or action)"
        );
    }

    #[test]
    fn values_of_the_wrong_kind() {
        assert_eq!(err("name:\nmax_ttl: 1h\ndefault: deny\n"), "t.yaml:1: name: missing value");
        assert_eq!(
            err("name: [a]\nmax_ttl: 1h\ndefault: deny\n"),
            "t.yaml:1: name: expected a single value, found a list"
        );
        assert_eq!(
            err(&format!("{HEAD}exec: /bin/sh\n")),
            r#"t.yaml:4: exec: expected a list of rules, found "/bin/sh""#
        );
        assert_eq!(
            err(&format!("{HEAD}files: {{path: /etc}}\n")),
            "t.yaml:4: files: expected a list of rules, found a mapping"
        );
        assert_eq!(
            err(&format!("{HEAD}exec:\n  - /bin/sh\n")),
            r#"t.yaml:5: exec[0]: expected a mapping, found "/bin/sh""#
        );
        assert_eq!(
            err(&format!("{HEAD}exec: [{{path: {{a: b}}, action: allow}}]\n")),
            "t.yaml:4: exec[0].path: expected a single value, found a mapping"
        );
        assert_eq!(
            err(&format!("{HEAD}network: [{{cidr: ::/0, ports: 22, action: deny}}]\n")),
            r#"t.yaml:4: network[0].ports: expected a list of ports (e.g. [5432, "8000-8100"]), found "22""#
        );
    }

    #[test]
    fn approval_fields() {
        let p = Policy::from_yaml(HEAD, "t.yaml").unwrap();
        assert_eq!(p.approval, Approval::default());
        let p = Policy::from_yaml(&format!("{HEAD}approvals: 2\napprover_role: dba\nsubjects: [agent]\n"), "t.yaml").unwrap();
        assert_eq!((p.approval.approvals, p.approval.approver_role.as_str()), (2, "dba"));
        assert!(p.approval.admits(SubjectKind::Agent) && !p.approval.admits(SubjectKind::User));
        assert_eq!(err(&format!("{HEAD}approvals: 0\n")), r#"t.yaml:4: approvals: invalid count "0" (expected 1 to 10)"#);
        assert_eq!(err(&format!("{HEAD}approvals: two\n")), r#"t.yaml:4: approvals: invalid count "two" (expected 1 to 10)"#);
        assert_eq!(
            err(&format!("{HEAD}approver_role: DBA\n")),
            r#"t.yaml:4: approver_role: invalid role "DBA" (use 1-32 of a-z, 0-9, '_' and '-')"#
        );
        assert_eq!(
            err(&format!("{HEAD}subjects: [user, robot]\n")),
            r#"t.yaml:4: subjects[1]: unknown subject kind "robot" (expected user or agent)"#
        );
        assert_eq!(err(&format!("{HEAD}subjects: [user, user]\n")), r#"t.yaml:4: subjects[1]: duplicate subject kind "user""#);
        assert!(err(&format!("{HEAD}subjects: []\n")).starts_with("t.yaml:4: subjects: empty list"));
        assert!(err(&format!("{HEAD}subjects: user\n")).starts_with("t.yaml:4: subjects: expected a list"));
    }

    #[test]
    fn policy_level_values() {
        let head = |name: &str, ttl: &str, default: &str| format!("name: {name}\nmax_ttl: {ttl}\ndefault: {default}\n");
        assert_eq!(
            err(&head("t", "1h", "alow")),
            r#"t.yaml:3: default: unknown action "alow" (expected allow, log or deny)"#
        );
        assert_eq!(
            err(&head("t", "1h", "drop")),
            r#"t.yaml:3: default: "drop" cannot be the default (expected allow, log or deny; use drop on rules)"#
        );
        assert_eq!(err(&head("t", "0s", "deny")), "t.yaml:2: max_ttl: must be longer than 0");
        assert_eq!(
            err(&head("t", "1500ms", "deny")),
            r#"t.yaml:2: max_ttl: "1500ms" is not a whole number of seconds"#
        );
        assert_eq!(
            err(&head("t", "3600", "deny")),
            r#"t.yaml:2: max_ttl: invalid duration "3600" (time unit needed, for example 3600sec or 3600ms; e.g. 15m, 1h, 1h 30m)"#
        );
        assert_eq!(
            err(&head("DB", "1h", "deny")),
            r#"t.yaml:1: name: invalid name "DB" (use 1-64 of a-z, 0-9, '.', '_' and '-')"#
        );
        let long = "x".repeat(100);
        assert_eq!(
            err(&head(&long, "1h", "deny")),
            format!("t.yaml:1: name: invalid name \"{}…\" (use 1-64 of a-z, 0-9, '.', '_' and '-')", "x".repeat(60))
        );
        assert_eq!(
            err(&format!("{HEAD}on_expiry: kill\n")),
            r#"t.yaml:4: on_expiry: unknown expiry action "kill" (expected kill-session or drop)"#
        );
    }

    #[test]
    fn rule_values() {
        let rule = |list: &str, body: &str| err(&format!("{HEAD}{list}:\n  - {body}\n"));
        assert_eq!(
            rule("exec", "{path: /usr/bin/curl, action: kil}"),
            r#"t.yaml:5: exec[0].action: unknown action "kil" (expected allow, log, deny, kill, kill-session or drop)"#
        );
        assert_eq!(
            rule("exec", "{path: usr/bin/curl, action: kill}"),
            r#"t.yaml:5: exec[0].path: invalid path "usr/bin/curl": must be absolute (start with /)"#
        );
        assert_eq!(
            rule("files", "{path: /etc/../root, access: read, action: deny}"),
            r#"t.yaml:5: files[0].path: invalid path "/etc/../root": must not contain . or .. components (write the canonical path)"#
        );
        assert_eq!(
            rule("network", "{cidr: 10.0.0.1/8, action: allow}"),
            r#"t.yaml:5: network[0].cidr: invalid CIDR "10.0.0.1/8": host bits are set (did you mean 10.0.0.0/8?)"#
        );
        assert_eq!(
            rule("network", "{cidr: 2001:db8::/129, action: allow}"),
            r#"t.yaml:5: network[0].cidr: invalid CIDR "2001:db8::/129": prefix length must be at most 128"#
        );
        assert_eq!(
            rule("network", "{cidr: localhost, action: allow}"),
            r#"t.yaml:5: network[0].cidr: invalid CIDR "localhost": invalid address "localhost""#
        );
        assert_eq!(
            err(&format!(
                "{HEAD}network:\n  - cidr: 10.0.0.0/8\n    ports:\n      - 5432\n      - 70000\n      - 9-1\n    action: allow\n"
            )),
            "t.yaml:8: network[0].ports[1]: invalid port \"70000\": ports are 1-65535\n\
             t.yaml:9: network[0].ports[2]: invalid port range \"9-1\": it starts after it ends"
        );
        assert_eq!(
            rule("network", "{cidr: 10.0.0.0/8, ports: [], action: allow}"),
            "t.yaml:5: network[0].ports: empty list (leave ports out to match every port)"
        );
        assert_eq!(
            rule("network", "{cidr: 10.0.0.0/8, ports: [ssh], action: allow}"),
            r#"t.yaml:5: network[0].ports[0]: invalid port "ssh" (expected a number or a range "a-b")"#
        );
    }

    #[test]
    fn conflicting_rules() {
        assert_eq!(
            err(&format!(
                "{HEAD}exec:\n  - {{path: /usr/bin/, action: allow}}\n  - {{path: /usr/bin, action: deny}}\n"
            )),
            "t.yaml:6: exec[1].path: duplicate of exec[0] (/usr/bin/ -> allow): a path may have one rule"
        );
        let files = "files:\n  - {path: /etc/, access: read, action: allow}\n  - {path: /etc/, access: any, action: deny}\n  - {path: /etc, access: read, action: log}\n";
        assert_eq!(
            err(&format!("{HEAD}{files}")),
            "t.yaml:7: files[2].path: duplicate of files[0] (/etc/ read -> allow): a path and access may have one rule"
        );
        let net = "network:\n  - {cidr: 10.0.0.0/8, action: deny}\n  - {cidr: 10.0.0.0/8, ports: [22, 5000-6000], action: allow}\n  - {cidr: 10.0.0.0/8, ports: [5432], action: log}\n  - {cidr: 10.0.0.0/8, action: drop}\n  - {cidr: 10.0.0.0/16, action: drop}\n";
        assert_eq!(
            err(&format!("{HEAD}{net}")),
            "t.yaml:7: network[2].ports: port 5432 is also in network[1] (10.0.0.0/8 ports 22,5000-6000 -> allow): rules on one CIDR must not share ports\n\
             t.yaml:8: network[3].cidr: duplicate of network[0] (10.0.0.0/8 -> deny): a CIDR may have one rule without ports"
        );
    }

    #[test]
    fn unix_rules_parse_decide_and_name_their_problems() {
        let p = Policy::from_yaml(
            &format!("{HEAD}unix:\n  - {{path: /run/docker.sock, action: allow}}\n  - {{path: /run/, action: deny}}\n  - {{abstract: /tmp/dbus-, action: kill-session}}\n"),
            "t.yaml",
        )
        .unwrap();
        assert_eq!(p.unix[2].to_string(), "@/tmp/dbus- -> kill-session");
        assert_eq!(p.decide_unix(b"/run/docker.sock").action, Action::Allow);
        assert_eq!(p.decide_unix(b"/run/docker.sock").rule.map(|r| r.index), Some(0));
        assert_eq!(p.decide_unix(b"/run/x.sock").action, Action::Deny);
        assert_eq!(p.decide_unix(b"\0/tmp/dbus-abc").action, Action::KillSession);
        assert_eq!(p.decide_unix(b"/tmp/dbus-abc").rule, None, "a pathname is not the abstract name");
        assert_eq!(p.decide_unix(b"/tmp/x").action, Action::Allow, "the policy default is not about unix sockets");
        assert_eq!(
            err(&format!("{HEAD}unix:\n  - {{path: run/x, action: deny}}\n  - {{path: /run//x, action: deny}}\n  - {{path: /run/x, abstract: y, action: deny}}\n  - {{action: deny}}\n  - {{path: /a, action: drop}}\n")),
            "t.yaml:5: unix[0].path: invalid socket name \"run/x\": must be absolute (start with /)\n\
             t.yaml:6: unix[1].path: invalid socket name \"/run//x\": must be in canonical form (no empty, . or .. components): the kernel hook compares the string\n\
             t.yaml:7: unix[2].abstract: a rule names a path or an abstract name, not both\n\
             t.yaml:8: unix[3].path: missing (a unix rule needs path or abstract)\n\
             t.yaml:9: unix[4].action: \"drop\" applies to network rules (expected allow, log, deny, kill or kill-session)"
        );
        assert_eq!(
            err(&format!("{HEAD}unix:\n  - {{path: /run/x, action: deny}}\n  - {{path: /run/x, action: allow}}\n")),
            "t.yaml:6: unix[1].path: duplicate of unix[0] (/run/x -> deny): a name may have one rule"
        );
    }

    #[test]
    fn bind_rules_are_network_rules_without_drop() {
        let p = Policy::from_yaml(&format!("{HEAD}bind:\n  - {{cidr: 0.0.0.0/0, ports: [8080], action: allow}}\n  - {{cidr: 0.0.0.0/0, action: deny}}\n"), "t.yaml").unwrap();
        assert_eq!(p.bind[1].to_string(), "0.0.0.0/0 -> deny");
        assert_eq!(
            err(&format!("{HEAD}bind:\n  - {{cidr: 0.0.0.0/0, action: drop}}\n  - {{cidr: 0.0.0.0/0, action: deny}}\n")),
            "t.yaml:5: bind[0].action: \"drop\" applies to network rules (expected allow, log, deny, kill or kill-session)\n\
             t.yaml:6: bind[1].cidr: duplicate of bind[0] (0.0.0.0/0 -> drop): a CIDR may have one rule without ports"
        );
    }

    #[test]
    fn on_audit_gap_names_its_line_when_wrong() {
        let err = Policy::from_yaml("name: p\nmax_ttl: 1h\ndefault: allow\non_audit_gap: drop\n", "t.yaml").unwrap_err().to_string();
        assert!(err.contains("t.yaml:4") && err.contains("on_audit_gap") && err.contains("log or kill-session"), "{err}");
    }

    #[test]
    fn load_names_the_file_as_given() {
        let dir = std::env::temp_dir().join(format!("warrant-policy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.yaml");
        std::fs::write(&path, "name: p\nmax_ttl: 1x\ndefault: deny\n").unwrap();
        let e = Policy::load(&path).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:2: max_ttl: invalid duration \"1x\"", path.display())), "{e}");
        let missing = dir.join("nope.yaml");
        assert_eq!(
            Policy::load(&missing).unwrap_err().to_string(),
            format!("cannot read policy {}: no such file or directory", missing.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
