//! `cargo xtask run`: build, then become the agent, in the foreground.
//!
//! The binaries are linked into /usr/local/bin so that the walk-through in README.md
//! (`warrant grant issue …` in another terminal) works from any shell; the links point
//! into target/release, so rebuilding updates them. The xtask then replaces itself with
//! the agent (exec, not spawn), so Ctrl-C and the exit status are the agent's own.

use std::{
    ffi::OsString,
    fs, io,
    os::unix::{fs as unix_fs, process::CommandExt as _},
    path::Path,
};

use anyhow::{Context as _, Result};

use crate::{build, cmd, ctx, ctx::Ctx, setup};

/// Where `run` links the binaries.
const BIN_DIR: &str = "/usr/local/bin";

/// Setup, build, link, then exec `warrant-agent` with `args`.
pub fn run(ctx: &Ctx, args: &[OsString]) -> Result<()> {
    setup::setup(ctx)?;
    build::build(ctx)?;

    if ctx::is_root() {
        for name in build::BINARIES {
            let outcome = link(&ctx.release_dir.join(name), &Path::new(BIN_DIR).join(name))?;
            println!("run: {outcome}");
        }
    } else {
        println!(
            "run: not root, so not linked into {BIN_DIR}; use {} directly",
            ctx.release_dir.join("warrant").display()
        );
    }

    println!(
        "\n\
         warrant-agent is starting in single-host mode (Ctrl-C stops it). In another terminal:\n\
         \n\
         \x20 warrant grant issue --subject alice --ttl 2m --reason INC-42   # prints the grant id\n\
         \x20 warrant exec --grant <id> -- bash                              # a shell under the grant\n\
         \x20 warrant sessions                                               # sessions, processes, time left\n\
         \x20 warrant watch --json                                           # live events, one object per line\n\
         \x20 warrant kill --session <id>                                    # the whole tree dies at once\n"
    );

    let agent = ctx.release_dir.join("warrant-agent");
    let mut command = ctx.command(&agent);
    command.args(args);
    // exec only returns on failure.
    let err = command.exec();
    Err(err).with_context(|| format!("exec `{}`", cmd::describe(&command)))
}

/// Makes `link` a symlink to `target` unless it already is one; never replaces a real
/// file (someone installed warrant there by other means). Returns what it did.
fn link(target: &Path, link: &Path) -> Result<String> {
    match fs::symlink_metadata(link) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let current =
                fs::read_link(link).with_context(|| format!("read link {}", link.display()))?;
            if current == target {
                return Ok(format!(
                    "{} -> {} (already linked)",
                    link.display(),
                    target.display()
                ));
            }
            fs::remove_file(link).with_context(|| format!("remove old link {}", link.display()))?;
        }
        Ok(_) => {
            return Ok(format!(
                "{} is a regular file, left alone; it is not this build",
                link.display()
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("inspect {}", link.display())),
    }
    unix_fs::symlink(target, link)
        .with_context(|| format!("link {} to {}", link.display(), target.display()))?;
    Ok(format!("linked {} -> {}", link.display(), target.display()))
}
