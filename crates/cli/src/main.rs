//! `batchdrop`: run the pipeline on a local directory (`batchdrop local`) or serve the sandbox
//! provider (`batchdrop sandbox`); and the operator's commands on a local root or an S3 bucket
//! (`submit`, `status`, `results`, `cancel`, `estimate`: see `ops`).

mod estimate;
mod local;
mod ops;
mod printer;
mod status;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "batchdrop",
    version,
    about = "LLM batch inference from object storage",
    after_help = ops::EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Watch a directory as the bucket: submit each new inbox/<route>/<path>.jsonl, poll the
    /// provider, write results/<route>/<path>/. Starts the sandbox provider unless --no-sandbox.
    Local(local::LocalArgs),
    /// Serve the sandbox provider (OpenAI Files + Batches wire format) until interrupted.
    Sandbox {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8089")]
        addr: SocketAddr,
        /// Milliseconds a batch spends in each of validating, in_progress and finalizing
        /// (0: batches complete on the first retrieve).
        #[arg(long, default_value_t = 0)]
        step_ms: u64,
        /// Faults to inject, e.g. "seed=7,http429=0.1,token_limit=0.2,req500=0.02" (keys: see
        /// the README or the batchdrop-sandbox docs). Default: none.
        #[arg(long, value_name = "SPEC")]
        faults: Option<batchdrop_sandbox::Faults>,
    },
    #[command(flatten)]
    Ops(ops::OpsCommand),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("batchdrop: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Local(args) => local::run(args).await,
            Command::Ops(command) => ops::run(command).await,
            Command::Sandbox {
                addr,
                step_ms,
                faults,
            } => serve_sandbox(addr, step_ms, faults.unwrap_or_default()).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("batchdrop: {message}");
            ExitCode::from(1)
        }
    }
}

async fn serve_sandbox(
    addr: SocketAddr,
    step_ms: u64,
    faults: batchdrop_sandbox::Faults,
) -> Result<(), String> {
    let spec = faults.to_string();
    let config = batchdrop_sandbox::SandboxConfig {
        step: std::time::Duration::from_millis(step_ms),
        faults,
        ..Default::default()
    };
    let sandbox = batchdrop_sandbox::Sandbox::start(addr, config)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!("sandbox provider listening on {}", sandbox.base_url());
    println!(
        "  OPENAI_BASE_URL={} works with the official SDKs",
        sandbox.base_url()
    );
    if !spec.is_empty() {
        println!("  injecting faults: {spec}");
    }
    local::shutdown_signal().await;
    sandbox.stop().await;
    Ok(())
}
