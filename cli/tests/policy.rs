//! Black-box tests of `warrant policy check`: the binary run on real files in a
//! temporary directory, with no agent anywhere. They prove what goes to stdout versus
//! stderr, the exact line shapes, and the exit statuses.

use std::path::Path;
use std::process::Output;

/// The example shipped with the policy crate.
const DB_DEBUG: &str = include_str!("../../policy/examples/db-debug.yaml");

/// Runs `warrant <args>` in `dir` (so file names print as given), pointing at a socket
/// that does not exist: nothing here may need the agent.
fn warrant(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_warrant"))
        .current_dir(dir)
        .args(["--socket", "/nonexistent/agent.sock"])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A valid policy: one `ok` line with the summary on stdout, nothing on stderr, exit 0.
#[test]
fn valid_policy_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db-debug.yaml"), DB_DEBUG).unwrap();
    let out = warrant(dir.path(), &["policy", "check", "db-debug.yaml"]);
    assert_eq!(
        text(&out.stdout),
        "ok  db-debug.yaml: policy db-debug (default allow, 2 exec, 2 file, 2 network rules, max_ttl 1h, on_expiry kill-session)\n"
    );
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
}

/// Several files, one invalid: the valid one is still reported, the invalid one's
/// problems go to stderr as `file:line: field: message`, and the exit status is 2.
#[test]
fn invalid_policy_lists_problems_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.yaml"), DB_DEBUG).unwrap();
    let bad = DB_DEBUG.replace("access: any", "access: wirte").replace("10.0.0.0/8", "10.0.0.0/33");
    std::fs::write(dir.path().join("bad.yaml"), bad).unwrap();
    let out = warrant(dir.path(), &["policy", "check", "bad.yaml", "good.yaml", "missing.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).starts_with("ok  good.yaml: policy db-debug ("), "{}", text(&out.stdout));
    assert_eq!(text(&out.stdout).lines().count(), 1);
    assert_eq!(
        text(&out.stderr),
        "bad.yaml:8: files[1].access: unknown access \"wirte\" (expected read, write or any)\n\
         bad.yaml:9: network[0].cidr: invalid CIDR \"10.0.0.0/33\": prefix length must be at most 32\n\
         cannot read policy missing.yaml: no such file or directory\n"
    );
}

/// `--json`: one object per file on stdout, the normalised policy with its digest, or
/// the problems with line and field.
#[test]
fn json_prints_the_normalised_policy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db-debug.yaml"), DB_DEBUG).unwrap();
    std::fs::write(dir.path().join("bad.yaml"), "name: x\nmax_ttl: 1h\ndefault: kill\n").unwrap();
    let out = warrant(dir.path(), &["policy", "check", "--json", "db-debug.yaml", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(r#"{"file":"db-debug.yaml","ok":true,"digest":"sha256:"#)
            && stdout.contains(r#""policy":{"name":"db-debug","max_ttl":"1h","default":"allow","exec":["#),
        "fields in policy-file order: {stdout}"
    );
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    let ok = &lines[0];
    assert_eq!((ok["file"].as_str(), ok["ok"].as_bool()), (Some("db-debug.yaml"), Some(true)));
    assert!(ok["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(ok["policy"]["max_ttl"], "1h");
    assert_eq!(ok["policy"]["files"][1]["path"], "/etc/shadow");
    assert_eq!(ok["policy"]["network"][0]["ports"], serde_json::json!([5432]));
    let bad = &lines[1];
    assert_eq!(bad["ok"], false);
    assert_eq!((bad["errors"][0]["line"].as_u64(), bad["errors"][0]["field"].as_str()), (Some(3), Some("default")));
    assert!(
        text(&out.stderr).starts_with("bad.yaml:3: default: \"kill\" cannot be the default"),
        "{}",
        text(&out.stderr)
    );
}

/// The printed JSON policy is itself a valid policy file (JSON is YAML) with the same
/// digest, so `--json` output can be stored and checked again.
#[test]
fn json_output_checks_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db-debug.yaml"), DB_DEBUG).unwrap();
    let out = warrant(dir.path(), &["policy", "check", "--json", "db-debug.yaml"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    std::fs::write(dir.path().join("again.json"), v["policy"].to_string()).unwrap();
    let again = warrant(dir.path(), &["policy", "check", "--json", "again.json"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let w: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(w["digest"], v["digest"]);
}
