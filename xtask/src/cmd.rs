//! Running child commands, and timing and printing the steps that run them.
//!
//! Every failure names the command line that failed, so a CI log says what to rerun by
//! hand; long steps stream their output (a bpf-linker build takes minutes and should
//! not look hung), quick probes capture it.

use std::{
    fmt::Write as _,
    process::{Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// The command line as a person would type it, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            let _ = write!(s, " '{arg}'");
        } else {
            let _ = write!(s, " {arg}");
        }
    }
    s
}

/// Runs `cmd` with the terminal as its stdio and returns its exit status; only failing
/// to start it is an error.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    cmd.status()
        .with_context(|| format!("start `{}`", describe(cmd)))
}

/// Runs `cmd` with the terminal as its stdio; a non-zero exit is an error.
pub fn run(cmd: &mut Command) -> Result<()> {
    let st = status(cmd)?;
    if !st.success() {
        bail!("`{}` failed: {st}", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its output whatever the exit status; only failing to
/// start it is an error (the caller decides what a failure means).
pub fn output(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("start `{}`", describe(cmd)))
}

/// Runs `cmd` quietly; returns its stdout, or an error carrying its stderr.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}: {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Short human durations: `0.4s`, `12.3s`, `3m05s`.
pub fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// Runs one named step and prints `<prefix>: <name>: <outcome> (<elapsed>)`, where the
/// step returns its outcome as a short phrase ("present", "installed …").
pub fn step(prefix: &str, name: &str, f: impl FnOnce() -> Result<String>) -> Result<()> {
    step_with(prefix, name, || f().map(|outcome| ((), outcome)))
}

/// [`step`] for a step that also yields a value for later steps.
pub fn step_with<T>(
    prefix: &str,
    name: &str,
    f: impl FnOnce() -> Result<(T, String)>,
) -> Result<T> {
    let start = Instant::now();
    let (value, outcome) = f().with_context(|| format!("{prefix}: {name}"))?;
    println!(
        "{prefix}: {name}: {outcome} ({})",
        fmt_duration(start.elapsed())
    );
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_duration(Duration::from_millis(420)), "0.4s");
        assert_eq!(fmt_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(fmt_duration(Duration::from_secs(185)), "3m05s");
    }

    #[test]
    fn describe_quotes_only_what_needs_it() {
        let mut cmd = Command::new("cargo");
        cmd.args(["test", "--", "a b", ""]);
        assert_eq!(describe(&cmd), "cargo test -- 'a b' ''");
    }
}
