//! The Debian packages that the integration tests and benchmarks call out to.
//!
//! Checked with `dpkg-query` (milliseconds) and installed with apt-get only when one is
//! missing, so a prepared machine never touches the network here.

use anyhow::{Result, bail};

use crate::{cmd, ctx::Ctx};

/// The packages, each with what needs it.
const PACKAGES: &[&str] = &[
    // CPU and syscall load for the overhead benchmarks and the kill-under-load tests.
    "stress-ng",
    // Repeated timed runs with and without the agent for the benchmarks.
    "hyperfine",
    // Looking at loaded, attached and pinned programs from the tests.
    "bpftool",
    // `ss` (socket listing and `ss -K`) and `ip`.
    "iproute2",
    // `mount`, `unshare`, `nsenter`, `setsid`.
    "util-linux",
    // `ps`, `pgrep`, `pkill` for checking that a tree is gone.
    "procps",
    // Small helper programs in the tests (a process that opens, connects, forks).
    "python3",
    // A real `sshd` on loopback for the login tests (ForceCommand `warrant login`).
    "openssh-server",
];

/// Installs the missing packages; returns what was present or installed.
pub fn ensure(ctx: &Ctx, root: bool) -> Result<String> {
    let missing = missing(ctx, PACKAGES)?;
    if missing.is_empty() {
        return Ok(format!("present ({})", PACKAGES.join(" ")));
    }
    if !root {
        // Building needs none of these; `cargo xtask test` insists on root anyway.
        return Ok(format!(
            "missing {} (not root, so not installed; the tests need them)",
            missing.join(" ")
        ));
    }

    println!("setup: debian packages: installing {}", missing.join(" "));
    if !apt_install(ctx, &missing)? {
        // Stale package lists give 404s (mirrors drop superseded versions), and a fresh
        // image may have none at all; refresh once and retry.
        cmd::run(ctx.command("apt-get").args(["update", "-q"]))?;
        if !apt_install(ctx, &missing)? {
            bail!(
                "apt-get install {} failed twice, the second time after apt-get update",
                missing.join(" ")
            );
        }
    }
    let still = self::missing(ctx, &missing)?;
    if !still.is_empty() {
        bail!(
            "apt-get reported success but {} are still not installed",
            still.join(" ")
        );
    }
    Ok(format!("installed {}", missing.join(" ")))
}

/// Runs `apt-get install`; returns whether it succeeded.
fn apt_install(ctx: &Ctx, names: &[&str]) -> Result<bool> {
    let st = cmd::status(
        ctx.command("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(names),
    )?;
    Ok(st.success())
}

/// The packages among `names` that dpkg does not list as installed.
fn missing<'a>(ctx: &Ctx, names: &[&'a str]) -> Result<Vec<&'a str>> {
    // dpkg-query exits 1 when any name is unknown, yet still prints the known ones.
    let out = cmd::output(
        ctx.command("dpkg-query")
            .args(["-W", "-f", "${Package} ${Status}\\n"])
            .args(names),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let installed = installed_names(&text);
    Ok(names
        .iter()
        .copied()
        .filter(|n| !installed.contains(n))
        .collect())
}

/// Package names whose status line reads "install ok installed" (dpkg-query may add an
/// `:arch` suffix to the name).
fn installed_names(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(name, _)| name.split(':').next().unwrap_or(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fully_installed_packages_count() {
        let text = "stress-ng install ok installed\n\
                    hyperfine deinstall ok config-files\n\
                    python3:amd64 install ok installed\n";
        assert_eq!(installed_names(text), ["stress-ng", "python3"]);
    }
}
