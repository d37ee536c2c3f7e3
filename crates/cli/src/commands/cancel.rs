//! `batchdrop cancel`: ask batchdrop to cancel the job of an upload, by writing
//! `cancel/<route>/<path>.jsonl`, and say what happens next. A job that has no upload in
//! `inbox/` (one started through the Batch API) is asked to cancel in its manifest instead.

use crate::bucket::{Bucket, Target};
use crate::error::Error;
use crate::jobs::{load_jobs, progress_words};
use crate::selector::{Selector, inbox_path, route_hint};
use batchdrop_core::clock::SystemClock;
use batchdrop_core::config::process_env;
use batchdrop_core::engine::Engine;
use batchdrop_core::layout::{self, InboxKey};
use batchdrop_core::manifest::Manifest;
use batchdrop_core::store::{ObjectStoreExt, PutMode};
use clap::Args;
use std::sync::Arc;

pub const AFTER_HELP: &str = concat!(
    "What happens next: batchdrop (the submit function on the S3 event, or `batchdrop local`\n",
    "within a tick) cancels the job's batches at the provider, keeps the results that are\n",
    "already in, marks every other request `batch_cancelled` in output.jsonl, and finishes\n",
    "the job as `cancelled`.\n\n",
    "Exit codes: 0 ok, 1 failure (a message says what to do), 2 usage."
);

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The upload's path (route/path) or a job id.
    #[arg(value_name = "PATH|JOB")]
    what: String,
    #[command(flatten)]
    target: Target,
}

pub async fn run(args: CancelArgs) -> Result<(), Error> {
    let selector = Selector::parse(&args.what)?;
    let bucket = args.target.open(false).await?;
    let jobs = load_jobs(&bucket, Some(&selector)).await?;
    let running: Vec<&Manifest> = jobs.iter().filter(|m| !m.status.is_finished()).collect();
    let inbox = match (&selector, jobs.first()) {
        (Selector::Path(k), _) => k.clone(),
        (Selector::Job(_), Some(m)) => match InboxKey::parse(&m.input.key) {
            Some(key) => key,
            // A job started otherwise (through the Batch API) is asked to cancel directly.
            None => return cancel_job(&args, &bucket, m).await,
        },
        (Selector::Job(id), None) => {
            return Err(Error::Job(format!(
                "no job {id} in {}",
                bucket.store.describe()
            )));
        }
    };
    if running.is_empty() {
        let latest = jobs
            .first()
            .map(|m| format!(" (latest job {}: {})", m.job_id, m.status.as_str()))
            .unwrap_or_default();
        if jobs.is_empty() && bucket.store.exists(&inbox.key()).await.unwrap_or(false) {
            return Err(Error::Job(format!(
                "{} has no job yet: cancel once `batchdrop status {}` shows it running",
                inbox.key(),
                inbox_path(&inbox)
            )));
        }
        return Err(Error::Job(format!(
            "nothing to cancel: no unfinished job for {}{latest}{}",
            inbox.key(),
            route_hint(&args.target.load_config()?, &selector)
        )));
    }
    let cancel_key = format!(
        "{}{}/{}{}",
        layout::CANCEL,
        inbox.route,
        inbox.path,
        layout::SUFFIX
    );
    let body = serde_json::json!({
        "requested_by": "batchdrop cancel",
        "jobs": running.iter().map(|m| m.job_id.as_str()).collect::<Vec<_>>(),
    });
    let mut body = serde_json::to_vec(&body).unwrap_or_default();
    body.push(b'\n');
    bucket
        .store
        .put(&cancel_key, body.into(), PutMode::Overwrite)
        .await
        .map_err(|e| bucket.store_error("write the cancel request", e))?;
    println!("wrote {cancel_key}");
    for m in &running {
        println!(
            "job {} ({}) will be cancelled:",
            m.job_id,
            progress_words(m)
        );
    }
    let when = if bucket.is_s3() {
        "the submit function acts on the S3 event for cancel/ at once"
    } else {
        "`batchdrop local` acts on it within a tick"
    };
    println!(
        "  {when}: batches at the provider are cancelled, results already in are kept, other requests get batch_cancelled lines, and the job finishes as cancelled"
    );
    println!(
        "  follow it with: batchdrop status {} --watch{}",
        inbox_path(&inbox),
        bucket.flag
    );
    Ok(())
}

/// Asks the job of `manifest` (one with no inbox upload) to cancel: `cancel_requested` in its
/// manifest, which the next advance of the process that polls it acts on.
async fn cancel_job(args: &CancelArgs, bucket: &Bucket, manifest: &Manifest) -> Result<(), Error> {
    if manifest.status.is_finished() {
        return Err(Error::Job(format!(
            "nothing to cancel: job {} is {}",
            manifest.job_id,
            manifest.status.as_str()
        )));
    }
    let config = Arc::new(args.target.load_config()?);
    let providers = batchdrop_core::providers::clients(&config.routes, &process_env);
    let engine = Engine::new(
        bucket.store.clone(),
        bucket.name.clone(),
        config,
        Arc::new(providers),
        Arc::new(SystemClock),
    );
    engine
        .ask_to_cancel_job(&manifest.job_id, "batchdrop cancel")
        .await
        .map_err(|e| Error::Job(format!("job {}: {e}", manifest.job_id)))?;
    println!(
        "job {} ({}) will be cancelled:",
        manifest.job_id,
        progress_words(manifest)
    );
    println!(
        "  the next poll (the poll function, `batchdrop local` or `batchdrop api`) cancels its batches at the provider, keeps the results already in, gives other requests batch_cancelled lines, and finishes the job as cancelled"
    );
    println!(
        "  follow it with: batchdrop status {} --watch{}",
        manifest.job_id, bucket.flag
    );
    Ok(())
}
