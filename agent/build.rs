//! Builds the eBPF object (`agent-ebpf`, binary `warrant`) with aya-build, which runs
//! the nightly toolchain with `-Z build-std=core` and BTF on. `AYA_BUILD_SKIP=1`
//! skips it (for clippy or docs); the agent then embeds an empty object and says so
//! at start.
use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest.parent().ok_or_else(|| anyhow::anyhow!("agent crate has no parent dir"))?;
    let ebpf_dir = workspace.join("agent-ebpf");
    let common_dir = workspace.join("agent-common");
    // The kernel contract is an input of the object too.
    println!("cargo:rerun-if-changed={}", common_dir.display());
    let out = PathBuf::from(env::var("OUT_DIR")?);
    if env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        fs::write(out.join("warrant"), [])?;
    }
    let root_dir = ebpf_dir.to_str().ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "warrant-ebpf", root_dir, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}
