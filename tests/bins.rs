//! Where the binaries are: the system under test (`warrant-agent`, `warrant`) comes
//! from `$WARRANT_BIN_DIR` (set by `cargo xtask test`), else `<workspace>/target/release`;
//! the workload binary `warrant-testbin` is built with this crate and sits next to the
//! running test or benchmark executable.

use std::path::{Path, PathBuf};

/// The workspace root (this crate lives in `<workspace>/tests`).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The directory holding `warrant-agent` and `warrant`.
pub fn bin_dir() -> PathBuf {
    match std::env::var_os("WARRANT_BIN_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace_dir().join("target/release"),
    }
}

fn existing(path: PathBuf, hint: &str) -> PathBuf {
    assert!(
        path.is_file(),
        "{} is missing\n\n{hint}",
        path.display()
    );
    path
}

/// The agent binary under test.
pub fn agent() -> PathBuf {
    existing(
        bin_dir().join("warrant-agent"),
        "Build it with `cargo xtask build` or set WARRANT_BIN_DIR.",
    )
}

/// The CLI binary under test.
pub fn warrant() -> PathBuf {
    existing(
        bin_dir().join("warrant"),
        "Build it with `cargo xtask build` or set WARRANT_BIN_DIR.",
    )
}

/// The workload binary (`tests/src/bin/testbin.rs`).
///
/// Cargo builds a package's binaries before its integration tests and puts them in
/// the profile directory; test executables live one level down, in `deps/`.
pub fn testbin() -> PathBuf {
    if let Some(p) = std::env::var_os("WARRANT_TESTBIN") {
        return existing(PathBuf::from(p), "WARRANT_TESTBIN names a missing file.");
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe has a directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    existing(
        dir.join("warrant-testbin"),
        "Build it with `cargo build --release -p warrant-tests`.",
    )
}
