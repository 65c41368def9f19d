//! `warrant policy check`: parse and validate policy files on this machine, with no
//! agent, so a policy can be checked in an editor, in review or in CI before any grant
//! uses it.
//!
//! Each valid file gets one `ok` line on stdout; each invalid one gets its problems on
//! stderr, one `file:line: field: message` line each (the shape compilers use, so
//! editors can jump to them). The exit status is 0 when every file is valid, else 2.
//! `--json` prints one object per file on stdout instead of the `ok` lines: the
//! normalised policy (fields in policy-file order) and its digest, or the problems;
//! the problems still go to stderr for whoever is watching.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::json;
use warrant_policy::{Error, Policy};

use crate::output::{Colors, Paint, sanitize};

/// `warrant policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and validate policy files locally; print a summary of each, or every
    /// problem with its file, line and field.
    Check(CheckArgs),
}

/// `warrant policy check`
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy files (YAML) to check.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Print one JSON object per file: the normalised policy and its digest, or the
    /// problems.
    #[arg(long)]
    pub json: bool,
}

/// `warrant policy check`: returns 0 when every file is valid, else 2.
pub fn check(args: &CheckArgs, out: &mut impl Write, err: &mut impl Write) -> Result<u8> {
    let colors = Colors::stdout();
    let mut failed = false;
    for path in &args.files {
        let file = sanitize(&path.display().to_string()).into_owned();
        match Policy::load(path) {
            Ok(policy) if args.json => {
                let v = Checked { file: &file, ok: true, digest: policy.digest().to_string(), policy: &policy };
                writeln!(out, "{}", serde_json::to_string(&v)?)?;
            }
            Ok(policy) => writeln!(out, "{}  {file}: {}", colors.paint(Paint::Green, "ok"), summary(&policy))?,
            Err(e) => {
                failed = true;
                if args.json {
                    writeln!(out, "{}", error_json(&file, &e))?;
                }
                for line in e.to_string().lines() {
                    writeln!(err, "{}", sanitize(line))?;
                }
            }
        }
    }
    out.flush()?;
    Ok(if failed { 2 } else { 0 })
}

/// The `--json` line of a valid file. A struct rather than `json!` so the policy's
/// fields keep the order of a policy file.
#[derive(Serialize)]
struct Checked<'a> {
    /// The file, as given.
    file: &'a str,
    /// Always true: the line for a valid file.
    ok: bool,
    /// The policy's digest, `sha256:…`.
    digest: String,
    /// The normalised policy.
    policy: &'a Policy,
}

/// `policy db-debug (default allow, 2 exec, 2 file, 2 network rules, max_ttl 1h,
/// on_expiry kill-session)`
fn summary(p: &Policy) -> String {
    format!(
        "policy {} (default {}, {} exec, {} file, {} network rules, max_ttl {}, on_expiry {})",
        p.name,
        p.default,
        p.exec.len(),
        p.files.len(),
        p.network.len(),
        humantime::format_duration(p.max_ttl),
        p.on_expiry,
    )
}

/// `{"file": …, "ok": false, "errors": [{"line", "field", "message"}]}`; `line` and
/// `field` are null when the file could not be read.
fn error_json(file: &str, e: &Error) -> serde_json::Value {
    let errors: Vec<_> = match e {
        Error::Invalid { problems, .. } => {
            problems.iter().map(|p| json!({ "line": p.line, "field": p.field, "message": p.message })).collect()
        }
        Error::Read { .. } => vec![json!({ "line": null, "field": null, "message": e.to_string() })],
    };
    json!({ "file": file, "ok": false, "errors": errors })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB_DEBUG: &str = include_str!("../../policy/examples/db-debug.yaml");

    #[test]
    fn summary_line() {
        let p = Policy::from_yaml(DB_DEBUG, "db-debug.yaml").unwrap();
        assert_eq!(
            summary(&p),
            "policy db-debug (default allow, 2 exec, 2 file, 2 network rules, max_ttl 1h, on_expiry kill-session)"
        );
    }

    #[test]
    fn problems_as_json() {
        let e = Policy::from_yaml("name: x\nmax_ttl: 1h\ndefault: allow\nexce: []\n", "x.yaml").unwrap_err();
        let v = error_json("x.yaml", &e);
        assert_eq!(v["ok"], false);
        assert_eq!(v["errors"][0]["line"], 4);
        assert_eq!(v["errors"][0]["field"], "exce");
        assert!(v["errors"][0]["message"].as_str().unwrap().starts_with("unknown field"));
    }
}
