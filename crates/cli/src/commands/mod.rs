//! The commands, one module each, and the clap [`Command`] enum that dispatches to them.
//!
//! `local`, `sandbox` and `api` (batchdrop's own Batch API) run batchdrop itself on this
//! machine. The operator's commands
//! (`submit`, `status`, `results`, `cancel`, `estimate`) work the same on a local root
//! (`--root DIR`, what `batchdrop local` watches) and on an S3 bucket (`--bucket NAME`,
//! credentials and endpoint from the usual AWS settings, `AWS_ENDPOINT_URL` included). They only
//! read and write bucket objects: `submit` uploads into `inbox/`, `cancel` writes under
//! `cancel/`, and batchdrop itself (the Lambda functions or `batchdrop local`) does the rest.
//!
//! Errors are one line saying what to do; exit codes: 0 ok, 1 failure, 2 usage (see
//! [`crate::error`]).

pub mod api;
pub mod cancel;
pub mod estimate;
pub mod local;
pub mod results;
pub mod sandbox;
pub mod status;
pub mod submit;

use crate::error::Error;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch a directory as the bucket: submit each new inbox/<route>/<path>.jsonl, poll the
    /// provider, write results/<route>/<path>/. Starts the sandbox provider unless --no-sandbox.
    Local(local::LocalArgs),
    /// Serve the sandbox provider (OpenAI Files + Batches wire format) until interrupted.
    Sandbox(sandbox::SandboxArgs),
    /// Serve batchdrop's own Batch API (OpenAI Files + Batches) over the bucket, and poll its
    /// jobs; `batchdrop api keygen` makes a key.
    #[command(after_help = api::AFTER_HELP)]
    Api(api::ApiArgs),
    /// Upload a JSONL file into the inbox (`inbox/<route>/<path>.jsonl`) and print the id of
    /// the job batchdrop will start on it.
    #[command(after_help = submit::AFTER_HELP)]
    Submit(submit::SubmitArgs),
    /// List jobs, most recent first, with their progress, errors and cost so far.
    #[command(after_help = status::AFTER_HELP)]
    Status(status::StatusArgs),
    /// Fetch a finished job's output.jsonl (or errors.jsonl, or summary.json).
    #[command(after_help = results::AFTER_HELP)]
    Results(results::ResultsArgs),
    /// Ask batchdrop to cancel the job of an upload (writes `cancel/<route>/<path>.jsonl`).
    #[command(after_help = cancel::AFTER_HELP)]
    Cancel(cancel::CancelArgs),
    /// Count a file's requests and input tokens and price them, before spending anything.
    #[command(after_help = estimate::AFTER_HELP)]
    Estimate(estimate::EstimateArgs),
}

/// Runs one command to the end.
pub async fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Local(a) => local::run(a).await,
        Command::Sandbox(a) => sandbox::run(a).await,
        Command::Api(a) => api::run(a).await,
        Command::Submit(a) => submit::run(a).await,
        Command::Status(a) => status::run(a).await,
        Command::Results(a) => results::run(a).await,
        Command::Cancel(a) => cancel::run(a).await,
        Command::Estimate(a) => estimate::run(a).await,
    }
}
