//! What the console's browser test needs: Debian's `chromium`, `node` and `npm`, and
//! `playwright-core` (only the driver: it downloads no browser of its own) from npm
//! into `target/console-node`, pinned to a version that runs on Debian 12's node 18.
//!
//! Each is checked first (a file, a `package.json`), so a prepared machine does no
//! network work here.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::{cmd, ctx::Ctx};

/// The pinned driver: 1.49 still supports node 18 and drives a current Chromium over CDP.
pub const PLAYWRIGHT_CORE: &str = "1.49.1";

/// Where the tests find the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Where `playwright-core` is installed (its `node_modules` is there).
pub fn node_dir(ctx: &Ctx) -> PathBuf {
    ctx.release_dir.parent().map_or_else(|| ctx.root.join("target"), Path::to_path_buf).join("console-node")
}

/// Installs what is missing; returns what was present or installed.
pub fn ensure(ctx: &Ctx, root: bool) -> Result<String> {
    let mut done = Vec::new();
    let mut apt = Vec::new();
    if !Path::new(CHROMIUM).is_file() {
        apt.push("chromium");
    }
    // node and npm may come from Debian or from another repackaging of node that
    // ships npm inside; what matters is the commands.
    if !on_path(ctx, "node") {
        apt.push("nodejs");
    }
    if !on_path(ctx, "npm") {
        apt.push("npm");
    }
    if !apt.is_empty() {
        if !root {
            return Ok(format!("missing {} (not root, so not installed; the console test needs them)", apt.join(" ")));
        }
        let install = |ctx: &Ctx| {
            cmd::status(
                ctx.command("apt-get")
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .args(["install", "-y", "-q", "--no-install-recommends"])
                    .args(&apt),
            )
        };
        if !install(ctx)?.success() {
            cmd::run(ctx.command("apt-get").args(["update", "-q"]))?;
            if !install(ctx)?.success() {
                bail!("apt-get install {} failed twice, the second time after apt-get update", apt.join(" "));
            }
        }
        done.push(format!("installed {}", apt.join(" ")));
    }
    let dir = node_dir(ctx);
    let manifest = dir.join("node_modules/playwright-core/package.json");
    // npm writes `"version": "X"` on a line of its own.
    let have = std::fs::read_to_string(&manifest).unwrap_or_default();
    if have.contains(&format!("\"version\": \"{PLAYWRIGHT_CORE}\"")) {
        done.push(format!("playwright-core {PLAYWRIGHT_CORE} present"));
    } else {
        std::fs::create_dir_all(&dir)?;
        cmd::run(ctx.command("npm").args(["install", "--prefix"]).arg(&dir).args([
            "--no-audit",
            "--no-fund",
            "--no-save",
            &format!("playwright-core@{PLAYWRIGHT_CORE}"),
        ]))?;
        done.push(format!("installed playwright-core {PLAYWRIGHT_CORE} in {}", dir.display()));
    }
    Ok(done.join(", "))
}

/// True when `name` is an executable file in one of the children's `PATH` directories.
fn on_path(ctx: &Ctx, name: &str) -> bool {
    std::env::split_paths(&ctx.path).any(|d| d.join(name).is_file())
}
