//! `grpc-fuzz`: a hostile client for a running node's gRPC API, driven by its
//! server reflection. See `ruble_e2e::fuzz`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ruble_e2e::fuzz::{self, FuzzOptions, FuzzTarget};

#[derive(Parser, Debug)]
#[command(
    name = "grpc-fuzz",
    about = "Sends every gRPC method of a node malformed and edge inputs, as anonymous, bank 0 and the central bank",
    long_about = "Sends every gRPC method of a node malformed and edge inputs, as anonymous, bank 0 and the \
central bank.\n\nThe methods come from the node's server reflection (grpc.reflection.v1); the inputs are \
built from their descriptors (message edge values), by hand at the protobuf wire level, at the gRPC frame \
and header level, and for streaming methods as streams. Requests are raw HTTP/2. The central bank's state \
hash and supply are read before, during and after the run: no input carries a valid signature, so they \
must not change.",
    after_help = "EXIT STATUS:
  0  no finding
  1  a finding, any of:
     - an INTERNAL or UNKNOWN answer (or a grpc-status that is no code at all)
     - a message that looks like leaked internals (a panic, a source or file-system
       path, RocksDB, a backtrace)
     - a stream reset by the server (RST_STREAM with an error, again on a fresh
       connection): what a panicking handler looks like
     - input that every decoder must refuse (an invalid frame flag, a frame cut
       short, an invalid protobuf encoding, ...) answered OK or left waiting
     - a change of the ledger state (the central bank's GetSupply: state hash and
       supply figures), or a node that no longer answers GetChainInfo after the run
  2  the fuzzer itself failed (no connection, no reflection, bad arguments)

Other transport errors (e.g. a GOAWAY for oversized headers) and streams still
open at the timeout are reported but are not findings by themselves."
)]
struct Args {
    /// The dev directory (dev.json, pki/), as `ruble-node dev --data-dir` writes it.
    #[arg(long)]
    dev_dir: PathBuf,
    /// The node's URL (default: the manifest's `endpoint`).
    #[arg(long)]
    endpoint: Option<String>,
    /// Seed of every generated value and of the choice and order of cases.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Requests per method, all three roles together (each role gets about a third).
    #[arg(long, default_value_t = 60)]
    max_cases_per_method: usize,
    /// Per-case timeout; a stream still open then is recorded as OPEN.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Also read the ledger state after about every N cases (0: only before and after).
    #[arg(long, default_value_t = 500)]
    state_check_every: usize,
    /// Only the methods whose `package.Service/Method` contains this.
    #[arg(long)]
    method: Option<String>,
    /// Write the report as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Put every case's result in the JSON report, not only the findings.
    #[arg(long)]
    all_cases: bool,
    /// Print the JSON report instead of the table.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("grpc-fuzz: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let mut target = FuzzTarget::from_dev_dir(&args.dev_dir)?;
    if let Some(e) = args.endpoint {
        target = target.with_endpoint(e);
    }
    let opts = FuzzOptions {
        seed: args.seed,
        max_cases_per_method: args.max_cases_per_method,
        case_timeout: Duration::from_millis(args.timeout_ms),
        concurrency: args.concurrency.max(1),
        state_check_every: (args.state_check_every > 0).then_some(args.state_check_every),
        method_filter: args.method,
        keep_all_results: args.all_cases,
        progress: true,
    };
    let report = fuzz::run(&target, &opts).await?;
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(p) = &args.report {
        std::fs::write(p, &json).map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", report.render_table());
    }
    Ok(report.failures().is_empty())
}
