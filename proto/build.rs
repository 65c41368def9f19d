//! Generates the prost/tonic code. There is no `protoc` on the build machines, so
//! `protox` (a pure-Rust protobuf compiler) produces the descriptor set instead.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "warrant/v1/events.proto",
        "warrant/v1/agent.proto",
        "warrant/v1/collector.proto",
        "warrant/v1/token.proto",
        "warrant/v1/launch.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
