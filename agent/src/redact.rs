//! Secrets stay on the host: values in argv, paths and command lines that look like
//! secrets are masked before an event is written, shipped or shown, and the event says
//! which fields were masked (`redacted`: `["argv[3] (password-flag)"]`).
//!
//! Rules are regular expressions. A rule with a capture group named `secret` masks
//! only that group (so `--password=***` keeps its flag, `postgres://app:***@db` its
//! user and host); without one it masks the whole match. Besides the rules, an argv
//! element right after a flag that names a secret (`--password hunter2`) is masked
//! whole. The defaults cover passwords in flags and `key=value` pairs, bearer and
//! basic authorization values, AWS-style keys and connection-string passwords;
//! `[redaction]` in the agent's config adds rules or turns the defaults off.
//!
//! The kernel records no environment, so there is none to mask; if it ever does, it
//! goes through here too.

use regex::{Regex, RegexSet};
use serde::Deserialize;
use warrant_proto::v1::{self as pb, event::Event as Kind};

/// What a masked value becomes.
pub const MASK: &str = "***";

/// Flags whose next argv element is a secret (compared without leading dashes,
/// lowercase).
const SECRET_FLAGS: [&str; 12] = [
    "password",
    "passwd",
    "pass",
    "pwd",
    "secret",
    "token",
    "api-key",
    "api_key",
    "apikey",
    "access-key",
    "client-secret",
    "auth-token",
];

/// The built-in rules: (name, pattern).
const DEFAULT_RULES: [(&str, &str); 6] = [
    (
        "password-flag",
        r"(?i)(?:^|[\s'])--?(?:password|passwd|pass|pwd|secret|token|api[-_]?key|access[-_]?key|client[-_]?secret|auth[-_]?token)(?:=|\s+)(?P<secret>[^\s'\x22]+)",
    ),
    (
        "key-value",
        r"(?i)\b(?:password|passwd|pwd|secret|token|api_?key|access_?key|aws_secret_access_key|client_secret)\s*[=:]\s*(?P<secret>[^\s&;'\x22]+)",
    ),
    ("authorization", r"(?i)\b(?:bearer|basic|token)\s+(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)"),
    ("aws-access-key-id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("connection-string", r"[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]+:(?P<secret>[^@\s/]+)@"),
    ("private-key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
];

/// `[redaction]` in the agent's config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionSection {
    /// Use the built-in rules (default true).
    pub defaults: Option<bool>,
    /// Extra rules.
    #[serde(default)]
    pub rules: Vec<RuleSection>,
}

/// One `[[redaction.rules]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    pub name: String,
    pub pattern: toml::Spanned<String>,
}

/// A rule that failed to compile, with where it is in the config file.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: redaction.rules[{index}].pattern ({name}): invalid regular expression: {reason}")]
pub struct RuleError {
    pub line: usize,
    pub index: usize,
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    re: Regex,
}

/// Compiled rules, applied to every event by the writer.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<Rule>,
    /// All rules in one automaton: a value none of them matches (nearly every path)
    /// costs one scan instead of a capture search per rule. `None` only if the set
    /// could not be built, and then every rule is tried.
    any: Option<RegexSet>,
    flags: bool,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(None, "").unwrap_or(Self { rules: Vec::new(), any: None, flags: true })
    }
}

impl Redactor {
    /// The rules of `section` (defaults when absent); `text` is the config file, to
    /// name the line of a bad pattern.
    pub fn new(section: Option<&RedactionSection>, text: &str) -> Result<Redactor, RuleError> {
        let defaults = section.and_then(|s| s.defaults).unwrap_or(true);
        let mut rules = Vec::new();
        if defaults {
            for (name, pattern) in DEFAULT_RULES {
                // The defaults are fixed strings checked by the tests below.
                if let Ok(re) = Regex::new(pattern) {
                    rules.push(Rule { name: name.to_owned(), re });
                }
            }
        }
        for (index, r) in section.map(|s| s.rules.as_slice()).unwrap_or_default().iter().enumerate() {
            let re = Regex::new(r.pattern.get_ref()).map_err(|e| RuleError {
                line: text[..r.pattern.span().start.min(text.len())].matches('\n').count() + 1,
                index,
                name: r.name.clone(),
                reason: e.to_string().lines().last().unwrap_or_default().trim().to_owned(),
            })?;
            rules.push(Rule { name: r.name.clone(), re });
        }
        let any = RegexSet::new(rules.iter().map(|r| r.re.as_str())).ok();
        Ok(Redactor { rules, any, flags: defaults })
    }

    /// Masks secrets in `ev` and lists what was masked in `ev.redacted`.
    pub fn redact(&self, ev: &mut pb::Event) {
        let mut done = Vec::new();
        match ev.event.as_mut() {
            Some(Kind::Exec(e)) => {
                self.argv(&mut e.argv, "argv", &mut done);
                self.field(&mut e.path, || "path".into(), &mut done);
                self.field(&mut e.cwd, || "cwd".into(), &mut done);
            }
            Some(Kind::SessionStart(s)) => self.argv(&mut s.command, "command", &mut done),
            Some(Kind::FileOpen(f)) => self.field(&mut f.path, || "path".into(), &mut done),
            Some(Kind::FileChange(c)) => {
                self.field(&mut c.path, || "path".into(), &mut done);
                self.field(&mut c.target, || "target".into(), &mut done);
            }
            Some(Kind::ExecFailed(f)) => self.field(&mut f.path, || "path".into(), &mut done),
            Some(Kind::Violation(v)) => {
                self.field(&mut v.path, || "path".into(), &mut done);
                self.field(&mut v.detail, || "detail".into(), &mut done);
            }
            _ => {}
        }
        ev.redacted.extend(done);
    }

    fn argv(&self, argv: &mut [String], name: &str, done: &mut Vec<String>) {
        let mut after_flag = false;
        for (i, arg) in argv.iter_mut().enumerate() {
            if after_flag && !arg.starts_with('-') {
                *arg = MASK.to_owned();
                done.push(format!("{name}[{i}] (secret-flag)"));
                after_flag = false;
                continue;
            }
            after_flag = self.flags && is_secret_flag(arg);
            self.field(arg, || format!("{name}[{i}]"), done);
        }
    }

    /// Applies the rules in order to `value`; `name` (built only on a match) is the
    /// field's name in `redacted`.
    fn field(&self, value: &mut String, name: impl Fn() -> String, done: &mut Vec<String>) {
        // When no rule matches the value as it is, applying them in order changes
        // nothing, so the one-pass check is exact.
        if self.any.as_ref().is_some_and(|set| !set.is_match(value)) {
            return;
        }
        for rule in &self.rules {
            if let Some(masked) = mask(&rule.re, value) {
                *value = masked;
                done.push(format!("{} ({})", name(), rule.name));
            }
        }
    }
}

/// `--password`, `-token`, `--api-key` (no value attached).
fn is_secret_flag(arg: &str) -> bool {
    let Some(name) = arg.strip_prefix('-') else { return false };
    let name = name.strip_prefix('-').unwrap_or(name).to_ascii_lowercase();
    SECRET_FLAGS.contains(&name.as_str())
}

/// `value` with every match of `re` masked, or `None` if nothing matched.
fn mask(re: &Regex, value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut last = 0;
    let mut hit = false;
    for caps in re.captures_iter(value) {
        let Some(m) = caps.name("secret").or_else(|| caps.get(0)) else { continue };
        if m.as_str() == MASK || m.is_empty() {
            continue;
        }
        out.push_str(&value[last..m.start()]);
        out.push_str(MASK);
        last = m.end();
        hit = true;
    }
    if !hit {
        return None;
    }
    out.push_str(&value[last..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exec(argv: &[&str]) -> pb::Event {
        pb::Event {
            event: Some(Kind::Exec(pb::Exec { argv: argv.iter().map(|s| (*s).to_owned()).collect(), ..Default::default() })),
            ..Default::default()
        }
    }

    fn argv_of(ev: &pb::Event) -> Vec<String> {
        match &ev.event {
            Some(Kind::Exec(e)) => e.argv.clone(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn defaults_compile() {
        for (name, p) in DEFAULT_RULES {
            assert!(Regex::new(p).is_ok(), "{name}");
        }
        assert_eq!(Redactor::default().rules.len(), DEFAULT_RULES.len());
    }

    #[test]
    fn masks_the_usual_secrets() {
        let r = Redactor::default();
        let cases: [(&[&str], &[&str]); 8] = [
            (&["mysql", "--password=hunter2", "db"], &["mysql", "--password=***", "db"]),
            (&["tool", "--token", "abc123", "-v"], &["tool", "--token", "***", "-v"]),
            (&["curl", "-H", "Authorization: Bearer eyJhbGciOi.payload.sig"], &["curl", "-H", "Authorization: Bearer ***"]),
            (&["psql", "postgres://app:s3cr3t@db:5432/x"], &["psql", "postgres://app:***@db:5432/x"]),
            (&["env", "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG"], &["env", "AWS_SECRET_ACCESS_KEY=***"]),
            (&["aws", "AKIAIOSFODNN7EXAMPLE"], &["aws", "***"]),
            (&["sh", "-c", "mysql --password hunter2 -e 'select 1'"], &["sh", "-c", "mysql --password ***"]),
            (&["ls", "-la", "/tmp"], &["ls", "-la", "/tmp"]),
        ];
        for (argv, want) in cases {
            let mut ev = exec(argv);
            r.redact(&mut ev);
            let got = argv_of(&ev);
            let want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
            if argv[0] == "sh" {
                assert!(got[2].starts_with(&want[2]) && !got[2].contains("hunter2"), "{got:?}");
            } else {
                assert_eq!(got, want, "{argv:?}");
            }
            assert_eq!(ev.redacted.is_empty(), argv[0] == "ls", "{:?}", ev.redacted);
        }
    }

    #[test]
    fn says_which_fields_were_masked() {
        let mut ev = exec(&["mysql", "--password", "hunter2", "--token=x1y2z3"]);
        Redactor::default().redact(&mut ev);
        assert_eq!(ev.redacted, ["argv[2] (secret-flag)", "argv[3] (password-flag)"]);
    }

    #[test]
    fn custom_rules_and_bad_patterns_name_the_line() {
        let text = "[redaction]\ndefaults = false\n[[redaction.rules]]\nname = \"itk\"\npattern = \"itk_[a-z]+\"\n";
        let section: Wrapper = toml::from_str(text).unwrap();
        let r = Redactor::new(section.redaction.as_ref(), text).unwrap();
        let mut ev = exec(&["x", "itk_abcdef", "--password=kept"]);
        r.redact(&mut ev);
        assert_eq!(argv_of(&ev), ["x", "***", "--password=kept"], "defaults off");

        let text = "[redaction]\n[[redaction.rules]]\nname = \"broken\"\npattern = \"(unclosed\"\n";
        let section: Wrapper = toml::from_str(text).unwrap();
        let err = Redactor::new(section.redaction.as_ref(), text).unwrap_err().to_string();
        assert!(err.starts_with("line 4: redaction.rules[0].pattern (broken): invalid regular expression"), "{err}");
    }

    #[derive(Deserialize)]
    struct Wrapper {
        redaction: Option<RedactionSection>,
    }

    proptest! {
        /// Whatever surrounds it, a password given as `--password=SECRET` never
        /// survives, and text without secrets is left alone.
        #[test]
        fn a_flagged_password_never_survives(prefix in "[a-z /]{0,12}", secret in "[A-Za-z0-9!#%+]{6,24}") {
            let r = Redactor::default();
            let mut ev = exec(&["cmd", &format!("{prefix} --password={secret}")]);
            r.redact(&mut ev);
            prop_assert!(!argv_of(&ev)[1].contains(&secret), "{:?}", argv_of(&ev));
            let mut plain = exec(&["cmd", &prefix]);
            r.redact(&mut plain);
            prop_assert_eq!(argv_of(&plain)[1].clone(), prefix);
        }

        /// The one-pass check skips only values no rule would change: with it and
        /// without it, every event comes out the same, `redacted` included.
        #[test]
        fn the_one_pass_check_changes_nothing(argv in prop::collection::vec(prop_oneof![
            "[a-z /=:-]{0,16}",
            "(--?(password|token|api-key)[= ]?)?[A-Za-z0-9:/@.]{0,20}",
            "(Bearer |AKIA|postgres://u:)[A-Z0-9a-z@/]{0,20}",
        ], 0..6)) {
            let fast = Redactor::default();
            prop_assert!(fast.any.is_some());
            let slow = Redactor { any: None, ..fast.clone() };
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let (mut a, mut b) = (exec(&argv), exec(&argv));
            if let (Some(Kind::Exec(x)), Some(Kind::Exec(y))) = (a.event.as_mut(), b.event.as_mut()) {
                x.path = argv.concat();
                y.path = argv.concat();
            }
            fast.redact(&mut a);
            slow.redact(&mut b);
            prop_assert_eq!(a, b);
        }
    }
}
