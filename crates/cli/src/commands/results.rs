//! `batchdrop results`: fetch a finished job's output.jsonl (or errors.jsonl, or summary.json)
//! to standard output or a file; when there are none yet, say why and what to do.

use crate::bucket::{Bucket, Target};
use crate::error::Error;
use crate::jobs::{load_jobs, progress_words};
use crate::selector::{Selector, parse_path, route_hint};
use crate::text::bytes_human;
use batchdrop_core::layout;
use batchdrop_core::store::ObjectStoreExt;
use clap::Args;
use futures::TryStreamExt;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

pub const AFTER_HELP: &str = concat!(
    "Examples:\n",
    "  batchdrop results sandbox/run1/requests -o output.jsonl\n",
    "  batchdrop results sandbox/run1/requests --summary\n\n",
    "Exit codes: 0 ok, 1 failure (a message says what to do), 2 usage."
);

#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// The upload's path (route/path) or a job id.
    #[arg(value_name = "PATH|JOB")]
    what: String,
    /// Write to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// errors.jsonl (the rejected input lines) instead of output.jsonl.
    #[arg(long, conflicts_with = "summary")]
    errors: bool,
    /// summary.json instead of output.jsonl.
    #[arg(long)]
    summary: bool,
    #[command(flatten)]
    target: Target,
}

pub async fn run(args: ResultsArgs) -> Result<(), Error> {
    let selector = Selector::parse(&args.what)?;
    let bucket = args.target.open(false).await?;
    let prefix = match &selector {
        Selector::Path(k) => k.results_prefix(),
        Selector::Job(_) => {
            let jobs = load_jobs(&bucket, Some(&selector)).await?;
            match jobs.as_slice() {
                [] => {
                    return Err(Error::Job(format!(
                        "no job {} in {}",
                        args.what,
                        bucket.store.describe()
                    )));
                }
                [m] => {
                    if m.status.is_finished()
                        && m.reason
                            .as_deref()
                            .is_some_and(|r| r.starts_with("superseded"))
                    {
                        return Err(Error::Job(format!(
                            "job {} was superseded: its file was uploaded again, and the results are the newer job's (batchdrop results {})",
                            m.job_id, m.results_prefix
                        )));
                    }
                    m.results_prefix.clone()
                }
                _ => {
                    return Err(Error::Job(format!(
                        "{} names {} jobs: give more of the id",
                        args.what,
                        jobs.len()
                    )));
                }
            }
        }
    };
    let name = if args.errors {
        "errors.jsonl"
    } else if args.summary {
        "summary.json"
    } else {
        "output.jsonl"
    };
    let summary_key = format!("{prefix}summary.json");
    // summary.json is written last: without it the results are not complete.
    match bucket.store.head(&summary_key).await {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {
            let hint = route_hint(&args.target.load_config()?, &selector);
            return Err(Error::Job(format!(
                "{}{hint}",
                not_finished(&bucket, &prefix).await
            )));
        }
        Err(e) => return Err(bucket.store_error("read the results", e)),
    }
    let key = format!("{prefix}{name}");
    let got = bucket
        .store
        .get(&key)
        .await
        .map_err(|e| bucket.store_error("read the results", e))?;
    let mut body = got.body;
    let read_error = |source| Error::Download {
        key: key.clone(),
        source,
    };
    let written = match &args.output {
        Some(path) => {
            let tmp = path.with_extension("batchdrop-partial");
            let write_error = |source| Error::File {
                action: "write",
                path: tmp.clone(),
                source,
            };
            let mut file = tokio::fs::File::create(&tmp).await.map_err(write_error)?;
            let mut n = 0u64;
            while let Some(chunk) = body.try_next().await.map_err(read_error)? {
                n += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(write_error)?;
            }
            file.flush().await.map_err(write_error)?;
            drop(file);
            tokio::fs::rename(&tmp, path)
                .await
                .map_err(|source| Error::File {
                    action: "write",
                    path: path.clone(),
                    source,
                })?;
            Some(n)
        }
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = body.try_next().await.map_err(read_error)? {
                if let Err(e) = out.write_all(&chunk) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(());
                    }
                    return Err(Error::Stdout(e));
                }
            }
            let _ = out.flush();
            None
        }
    };
    if let (Some(n), Some(path)) = (written, &args.output) {
        println!("{key} ({}) → {}", bytes_human(n), path.display());
    }
    Ok(())
}

/// Why a path has no results yet, and what to do.
async fn not_finished(bucket: &Bucket, prefix: &str) -> String {
    let inbox = prefix
        .strip_prefix(layout::RESULTS)
        .map(|p| {
            format!(
                "{}{}{}",
                layout::INBOX,
                p.trim_end_matches('/'),
                layout::SUFFIX
            )
        })
        .unwrap_or_default();
    let selector = parse_path(&inbox).ok().map(Selector::Path);
    let jobs = match selector {
        Some(sel) => load_jobs(bucket, Some(&sel)).await.unwrap_or_default(),
        None => Vec::new(),
    };
    match jobs.iter().find(|m| !m.status.is_finished()) {
        Some(m) => format!(
            "no results yet in {prefix}: job {} is running ({}); wait with: batchdrop status {} --watch{}",
            m.job_id,
            progress_words(m),
            m.job_id,
            bucket.flag
        ),
        None if bucket.store.exists(&inbox).await.unwrap_or(false) => format!(
            "no results in {prefix}: {inbox} has no job yet — is batchdrop running on this bucket (`batchdrop local`, or the Lambda functions)?"
        ),
        None => format!(
            "no results in {prefix}: nothing was uploaded to {inbox} (see `batchdrop status` for the jobs there are)"
        ),
    }
}
