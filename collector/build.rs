//! Generates the collector's server for `warrant.v1.Ingest`.
//!
//! The proto crate's generated `IngestServer` decodes each batch into `Event`s with
//! prost, which silently drops a field it does not know: an event of a kind from a
//! newer agent would arrive with no kind at all. This server is the same RPC
//! (`/warrant.v1.Ingest/Stream`, same wire format) with the batch's events left as
//! bytes (`server::wire::RawAgentMessage`), so the collector decodes each event
//! itself and keeps an unknown kind verbatim.
fn main() {
    let stream = tonic_build::manual::Method::builder()
        .name("stream")
        .route_name("Stream")
        .input_type("crate::server::wire::RawAgentMessage")
        .output_type("warrant_proto::CollectorMessage")
        .codec_path("tonic_prost::ProstCodec")
        .client_streaming()
        .server_streaming()
        .build();
    let ingest = tonic_build::manual::Service::builder().name("Ingest").package("warrant.v1").method(stream).build();
    tonic_build::manual::Builder::new().build_client(false).build_transport(false).compile(&[ingest]);
}
