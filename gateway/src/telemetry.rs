//! Structured logs with `tracing`: human or JSON, filtered by `RUST_LOG`
//! (default `info`).

use tracing_subscriber::EnvFilter;

pub fn init_tracing(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: harmless when called twice (tests).
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
