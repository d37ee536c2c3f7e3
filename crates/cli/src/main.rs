//! `batchdrop`: run the pipeline on a local directory (`batchdrop local`), serve the sandbox
//! provider (`batchdrop sandbox`) or batchdrop's own Batch API (`batchdrop api`); and the
//! operator's commands on a local root or an S3 bucket (`submit`, `status`, `results`,
//! `cancel`, `estimate`).
//!
//! Each command has its module under `commands/`; the modules beside this file are what the
//! commands share and import none of them: `error` (the one error type and its exit codes),
//! `bucket` (opening `--root`/`--bucket`, loading `--config`), `selector` (naming a job by path
//! or id), `jobs` (the bucket's job manifests and what each shows), `printer` (local mode's
//! event lines), `embedded` (the sandbox run inside a command), `signal` (Ctrl-C), `text`
//! (formatting) and `memory` (the allocator's set-up).
//! `main` alone turns an error into its message and exit code.

mod bucket;
mod commands;
mod embedded;
mod error;
mod jobs;
mod memory;
mod printer;
mod selector;
mod signal;
mod text;

use clap::Parser;
use error::Error;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "batchdrop",
    version,
    about = "LLM batch inference from object storage",
    after_help = error::EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    memory::cap_malloc_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(commands::run(cli.command)),
        Err(e) => Err(Error::Runtime(e)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            ExitCode::from(error.exit_code())
        }
    }
}

/// Prints an error on standard error: a usage error the way clap prints its own
/// (`error: …`), any other as one line `batchdrop: …`.
fn report(error: &Error) {
    match error {
        Error::Usage(message) => {
            let _ = clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("{message}\n"),
            )
            .print();
        }
        other => eprintln!("batchdrop: {other}"),
    }
}
