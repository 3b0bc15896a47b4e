//! Compiles proto/ruble/v1/*.proto with tonic-prost-build. protoc comes from
//! protoc-bin-vendored, never from the system.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe {
        std::env::set_var("PROTOC", protoc);
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let files = [
        "ruble/v1/common.proto",
        "ruble/v1/wallet.proto",
        "ruble/v1/bank.proto",
        "ruble/v1/central_bank.proto",
        "ruble/v1/cluster.proto",
    ];
    let include = protoc_bin_vendored::include_path()?;
    let include = include.to_str().ok_or("vendored include path is not UTF-8")?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .file_descriptor_set_path(out_dir.join("ruble_v1_descriptor.bin"))
        .compile_protos(&files, &[".", include])?;
    // Replication between nodes: its own package, kept out of the client
    // API's descriptor set (reflection lists client services only).
    let raft = ["ruble/raft/v1/raft.proto"];
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&raft, &[".", include])?;
    for f in files.iter().chain(&raft) {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
