//! bpf-linker, built against the nightly's own LLVM.
//!
//! rustc emits LLVM bitcode for the BPF target and bpf-linker links it with its LLVM.
//! Bitcode from a newer LLVM than the linker's does not load, so the linker must use the
//! very LLVM the nightly ships: it is linked dynamically against the nightly's
//! `libLLVM.so.*` through symlinks under [`PREFIX`] (`LLVM_PREFIX` at build time, and the
//! binary's RUNPATH afterwards). When rustup updates the nightly, that library changes
//! name, the old linker no longer starts (or would mix LLVMs), and setup rebuilds it.

use std::{
    fs, io,
    os::unix::fs as unix_fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use crate::{cmd, ctx::Ctx, toolchain::Nightly};

/// Where the symlinks to the nightly's libLLVM live; the installed bpf-linker finds
/// libLLVM through its RUNPATH into `<PREFIX>/lib`, so the path must stay stable.
pub const PREFIX: &str = "/opt/warrant-llvm";

/// Why an installed bpf-linker cannot be used as it is.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Usable; carries `bpf-linker --version`.
    Ready(String),
    Missing,
    /// Present but built for another LLVM, or not starting; carries why.
    Stale(String),
}

/// The parts of the binary's ELF dynamic section that say which libLLVM it loads.
#[derive(Debug, Default, PartialEq, Eq)]
struct Dynamic {
    needed: Vec<String>,
    runpath: Vec<String>,
}

/// Makes sure a bpf-linker built against `nightly`'s libLLVM is installed; returns
/// what was found or done.
pub fn ensure(ctx: &Ctx, nightly: &Nightly) -> Result<String> {
    let llvm = nightly_libllvm(&nightly.sysroot)?;
    let soname = file_name(&llvm)?;
    let prefix_lib = Path::new(PREFIX).join("lib");
    link_libllvm(&llvm, &prefix_lib)?;

    let linker = ctx.bin_dir().join("bpf-linker");
    let why = match inspect(ctx, &linker, &soname, &prefix_lib)? {
        Verdict::Ready(version) => return Ok(format!("present ({version}, {soname})")),
        Verdict::Missing => format!("not installed in {}", ctx.bin_dir().display()),
        Verdict::Stale(why) => why,
    };

    let feature = llvm_feature(&soname)?;
    println!(
        "setup: bpf-linker: {why}; building it against {soname} from {} \
         (feature {feature}; takes a few minutes)",
        nightly.version
    );
    // --force: cargo would otherwise see the same version installed and skip the
    // rebuild that the new libLLVM needs.
    cmd::run(
        ctx.cargo()
            .env("LLVM_PREFIX", PREFIX)
            .arg("install")
            .arg("--root")
            .arg(&ctx.install_root)
            .args([
                "--force",
                "bpf-linker",
                "--no-default-features",
                "--features",
            ])
            .arg(&feature),
    )?;

    match inspect(ctx, &linker, &soname, &prefix_lib)? {
        Verdict::Ready(version) => Ok(format!("installed ({version}, {soname})")),
        Verdict::Missing => bail!(
            "cargo install succeeded but {} does not exist",
            linker.display()
        ),
        Verdict::Stale(why) => bail!("freshly installed bpf-linker is unusable: {why}"),
    }
}

/// The nightly's `lib/libLLVM.so.*` (the versioned soname, not the
/// `libLLVM-<major>-rust-….so` alias beside it).
fn nightly_libllvm(sysroot: &Path) -> Result<PathBuf> {
    let lib = sysroot.join("lib");
    let mut found = Vec::new();
    for entry in fs::read_dir(&lib).with_context(|| format!("read {}", lib.display()))? {
        let entry = entry.with_context(|| format!("read {}", lib.display()))?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("libLLVM.so.")
        {
            found.push(entry.path());
        }
    }
    found.sort();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "find the nightly's libLLVM: no libLLVM.so.* in {}\n\n\
             Consider `rustup toolchain install nightly --force` if the toolchain is damaged",
            lib.display()
        ),
        many => bail!(
            "find the nightly's libLLVM: several candidates in {}: {many:?}",
            lib.display()
        ),
    }
}

/// `ln -sf` of the nightly's libLLVM as `libLLVM.so` (what the build links with) and
/// under its own soname (what the binary loads at run time). Rewrites a link only when
/// it points elsewhere, so a second run touches nothing.
fn link_libllvm(llvm: &Path, prefix_lib: &Path) -> Result<()> {
    fs::create_dir_all(prefix_lib).with_context(|| format!("create {}", prefix_lib.display()))?;
    for name in [PathBuf::from("libLLVM.so"), PathBuf::from(file_name(llvm)?)] {
        let link = prefix_lib.join(name);
        match fs::read_link(&link) {
            Ok(target) if target == llvm => continue,
            Ok(_) => fs::remove_file(&link)
                .with_context(|| format!("remove stale link {}", link.display()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("read {} (expected a symlink to libLLVM)", link.display())
                });
            }
        }
        unix_fs::symlink(llvm, &link)
            .with_context(|| format!("link {} to {}", link.display(), llvm.display()))?;
    }
    Ok(())
}

/// Decides whether the bpf-linker at `linker` is built for `soname` and starts.
fn inspect(ctx: &Ctx, linker: &Path, soname: &str, prefix_lib: &Path) -> Result<Verdict> {
    if !linker.exists() {
        return Ok(Verdict::Missing);
    }
    let dynamic = read_dynamic(linker)?;
    if let Some(why) = dynamic
        .as_ref()
        .and_then(|d| mismatch(d, soname, prefix_lib))
    {
        return Ok(Verdict::Stale(why));
    }
    // Starting it proves the dynamic loader finds libLLVM; a nightly update removes the
    // old library and leaves the link dangling.
    let out = cmd::output(ctx.command(linker).arg("--version"))?;
    if !out.status.success() {
        return Ok(Verdict::Stale(format!(
            "installed but does not start ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(Verdict::Ready(
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    ))
}

/// Why `dynamic` does not load libLLVM `soname` from `prefix_lib`, if it does not.
fn mismatch(dynamic: &Dynamic, soname: &str, prefix_lib: &Path) -> Option<String> {
    let llvm: Vec<_> = dynamic
        .needed
        .iter()
        .filter(|n| n.starts_with("libLLVM"))
        .collect();
    if llvm.is_empty() {
        return Some("installed but not linked against a shared libLLVM".into());
    }
    if !llvm.iter().any(|n| *n == soname) {
        return Some(format!(
            "built against {}, but the nightly now ships {soname}",
            llvm.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !dynamic.runpath.iter().any(|r| Path::new(r) == prefix_lib) {
        return Some(format!(
            "loads libLLVM from {:?}, not from {}",
            dynamic.runpath,
            prefix_lib.display()
        ));
    }
    None
}

/// `readelf -d` of `linker`, or `None` when readelf is not installed (the `--version`
/// check alone then decides).
fn read_dynamic(linker: &Path) -> Result<Option<Dynamic>> {
    let mut readelf = std::process::Command::new("readelf");
    readelf.env("LC_ALL", "C").arg("-d").arg(linker);
    let out = match readelf.output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("start readelf"),
    };
    if !out.status.success() {
        // Not an ELF file, or a broken one: treat as stale rather than fail setup.
        return Ok(Some(Dynamic::default()));
    }
    Ok(Some(parse_dynamic(&String::from_utf8_lossy(&out.stdout))))
}

/// Parses `readelf -d` lines such as
/// ` 0x…01 (NEEDED)  Shared library: [libLLVM.so.22.1-rust-1.97.0-nightly]` and
/// ` 0x…1d (RUNPATH) Library runpath: [/opt/warrant-llvm/lib]`.
fn parse_dynamic(text: &str) -> Dynamic {
    let mut d = Dynamic::default();
    for line in text.lines() {
        let Some(value) = line
            .split_once('[')
            .and_then(|(_, rest)| rest.rsplit_once(']'))
            .map(|(v, _)| v)
        else {
            continue;
        };
        if line.contains("(NEEDED)") {
            d.needed.push(value.to_owned());
        } else if line.contains("(RUNPATH)") || line.contains("(RPATH)") {
            d.runpath.extend(value.split(':').map(str::to_owned));
        }
    }
    d
}

/// bpf-linker's cargo feature for `soname`'s LLVM major version:
/// `libLLVM.so.22.1-rust-1.97.0-nightly` → `llvm-22`.
fn llvm_feature(soname: &str) -> Result<String> {
    let major: String = soname
        .strip_prefix("libLLVM.so.")
        .unwrap_or_default()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    if major.is_empty() {
        bail!("read the LLVM major version from {soname:?}: expected libLLVM.so.<major>.…");
    }
    Ok(format!("llvm-{major}"))
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no file name", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SONAME: &str = "libLLVM.so.22.1-rust-1.97.0-nightly";

    const READELF: &str = "
Dynamic section at offset 0x1c4e8 contains 31 entries:
  Tag        Type                         Name/Value
 0x000000000000001d (RUNPATH)            Library runpath: [/opt/warrant-llvm/lib]
 0x0000000000000001 (NEEDED)             Shared library: [libLLVM.so.22.1-rust-1.97.0-nightly]
 0x0000000000000001 (NEEDED)             Shared library: [libgcc_s.so.1]
 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]
 0x000000000000000c (INIT)               0x1c000
";

    fn prefix_lib() -> PathBuf {
        Path::new(PREFIX).join("lib")
    }

    #[test]
    fn feature_comes_from_the_soname_major() {
        assert_eq!(llvm_feature(SONAME).unwrap(), "llvm-22");
        assert_eq!(
            llvm_feature("libLLVM.so.21.1-rust-1.93.0-nightly").unwrap(),
            "llvm-21"
        );
        assert!(llvm_feature("libLLVM-22-rust-1.97.0-nightly.so").is_err());
    }

    #[test]
    fn readelf_output_parses() {
        let d = parse_dynamic(READELF);
        assert_eq!(d.needed, [SONAME, "libgcc_s.so.1", "libc.so.6"]);
        assert_eq!(d.runpath, ["/opt/warrant-llvm/lib"]);
    }

    #[test]
    fn matching_linker_is_kept() {
        assert_eq!(
            mismatch(&parse_dynamic(READELF), SONAME, &prefix_lib()),
            None
        );
    }

    #[test]
    fn nightly_update_makes_linker_stale() {
        let why = mismatch(
            &parse_dynamic(READELF),
            "libLLVM.so.23.0-rust-1.99.0-nightly",
            &prefix_lib(),
        )
        .expect("stale");
        assert!(why.contains("libLLVM.so.22.1"), "{why}");
    }

    #[test]
    fn statically_linked_or_foreign_binary_is_stale() {
        let d = Dynamic {
            needed: vec!["libc.so.6".into()],
            runpath: vec![],
        };
        assert!(mismatch(&d, SONAME, &prefix_lib()).is_some());
        assert!(mismatch(&Dynamic::default(), SONAME, &prefix_lib()).is_some());
    }

    #[test]
    fn other_runpath_is_stale() {
        let d = Dynamic {
            needed: vec![SONAME.into()],
            runpath: vec!["/usr/lib/llvm-22/lib".into()],
        };
        assert!(mismatch(&d, SONAME, &prefix_lib()).is_some());
    }
}
