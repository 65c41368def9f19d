//! Rebuild the eBPF object when bpf-linker changes.
//!
//! Cargo does not track the linker as an input, so a bpf-linker rebuilt against a
//! new LLVM (after a nightly update) would otherwise leave a stale object behind.
fn main() {
    if let Ok(path) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
