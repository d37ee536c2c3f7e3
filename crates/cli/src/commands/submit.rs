//! `batchdrop submit`: upload a JSONL file into the inbox (`inbox/<route>/<path>.jsonl`) and
//! print the id of the job batchdrop will start on it.

use crate::bucket::Target;
use crate::error::Error;
use crate::text::bytes_human;
use batchdrop_core::layout::{self, InboxKey};
use batchdrop_core::store::{ByteStream, PutMode};
use clap::Args;
use std::path::PathBuf;

pub const AFTER_HELP: &str = concat!(
    "Examples:\n",
    "  batchdrop submit requests.jsonl --route sandbox --as run1/requests\n",
    "  batchdrop submit big.jsonl --route openai --bucket my-batchdrop-bucket\n",
    "  batchdrop submit nightly.jsonl --route openai --deadline 2026-12-02T07:00:00Z\n\n",
    "With --deadline, a <upload>.deadline object holding the time is written beside the file\n",
    "first: batches still running near it are cancelled, what they answered is kept and the\n",
    "rest goes through the synchronous lane (README \"Deadlines\").\n\n",
    "Large files go up in 8 MiB parts (S3 multipart); the object appears whole or not at all.\n\n",
    "Exit codes: 0 ok, 1 failure (a message says what to do), 2 usage."
);

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The JSONL file to upload.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The route (a provider and its defaults): sandbox, openai, anthropic, … or one of --config.
    #[arg(long, value_name = "R")]
    route: String,
    /// The path under the route (default: the file's name without .jsonl); may contain `/`.
    #[arg(long = "as", value_name = "PATH")]
    as_path: Option<String>,
    /// When the job must be done by (RFC 3339, e.g. 2026-12-02T07:00:00Z or with an offset).
    #[arg(long, value_name = "TIME")]
    deadline: Option<String>,
    #[command(flatten)]
    target: Target,
}

pub async fn run(args: SubmitArgs) -> Result<(), Error> {
    let path = match &args.as_path {
        Some(p) => p.trim_matches('/').to_string(),
        None => args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
    };
    let path = path
        .strip_suffix(layout::SUFFIX)
        .unwrap_or(&path)
        .to_string();
    let key = format!("{}{}/{path}{}", layout::INBOX, args.route, layout::SUFFIX);
    let Some(inbox) = InboxKey::parse(&key) else {
        return Err(Error::usage(format!(
            "cannot upload as {key:?}: --route and --as must be non-empty, without a trailing `/`"
        )));
    };
    if let Err(e) = batchdrop_core::store::validate_key(&key) {
        return Err(Error::usage(format!("cannot upload as {key:?}: {e}")));
    }
    let deadline = match &args.deadline {
        Some(text) => Some(
            batchdrop_core::clock::parse_rfc3339(text)
                .map(batchdrop_core::clock::rfc3339)
                .map_err(|why| Error::usage(format!("--deadline: {why}")))?,
        ),
        None => None,
    };
    let config = args.target.load_config()?;
    if config.route(&inbox.route).is_none() {
        eprintln!(
            "note: route {:?} is not in this config (routes: {}); the batchdrop that runs on the bucket must know it, or the job fails as unknown_route",
            inbox.route,
            config.route_names().join(", ")
        );
    }
    let file = tokio::fs::File::open(&args.file)
        .await
        .map_err(|source| Error::File {
            action: "read",
            path: args.file.clone(),
            source,
        })?;
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let bucket = args.target.open(true).await?;
    if let Some(deadline) = &deadline {
        // Beside the upload, and before it: the job reads it when it starts.
        let sidecar = format!("{key}{}", batchdrop_core::engine::DEADLINE_SIDECAR);
        bucket
            .store
            .put(&sidecar, format!("{deadline}\n").into(), PutMode::Overwrite)
            .await
            .map_err(|e| bucket.store_error("write the deadline", e))?;
    }
    let body: ByteStream = Box::pin(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
    let meta = bucket
        .store
        .put_stream(&key, body, PutMode::Overwrite)
        .await
        .map_err(|e| bucket.store_error("upload the file", e))?;
    let job_id = layout::job_id(&bucket.name, &key, &meta.etag);
    println!(
        "uploaded {} ({}) to {key}",
        args.file.display(),
        bytes_human(size)
    );
    println!(
        "job {job_id} starts on it; results will be in {}",
        inbox.results_prefix()
    );
    if let Some(deadline) = &deadline {
        println!("it must be done by {deadline}");
    }
    println!(
        "follow it with: batchdrop status {job_id} --watch{}",
        bucket.flag
    );
    Ok(())
}
