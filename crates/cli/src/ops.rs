//! The operator's commands: `submit`, `status`, `results`, `cancel`, `estimate`.
//!
//! Each works the same on a local root (`--root DIR`, what `batchdrop local` watches) and on an
//! S3 bucket (`--bucket NAME`, credentials and endpoint from the usual AWS settings,
//! `AWS_ENDPOINT_URL` included). They only read and write bucket objects: `submit` uploads
//! into `inbox/`, `cancel` writes under `cancel/`, and batchdrop itself (the Lambda functions
//! or `batchdrop local`) does the rest.
//!
//! Errors are one line saying what to do; exit codes: 0 ok, 1 failure, 2 usage.

use crate::{estimate, status};
use batchdrop_core::config::{Config, process_env};
use batchdrop_core::layout::{self, InboxKey, JobKeys};
use batchdrop_core::manifest::Manifest;
use batchdrop_core::store::{ByteStream, LocalStore, ObjectStore, ObjectStoreExt, PutMode};
use clap::{Args, Subcommand};
use futures::{StreamExt, TryStreamExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

pub const EXIT_CODES: &str = "Exit codes: 0 ok, 1 failure (a message says what to do), 2 usage.";

#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Upload a JSONL file into the inbox (`inbox/<route>/<path>.jsonl`) and print the id of
    /// the job batchdrop will start on it.
    #[command(after_help = concat!(
        "Examples:\n",
        "  batchdrop submit requests.jsonl --route sandbox --as run1/requests\n",
        "  batchdrop submit big.jsonl --route openai --bucket my-batchdrop-bucket\n\n",
        "Large files go up in 8 MiB parts (S3 multipart); the object appears whole or not at all.\n\n",
        "Exit codes: 0 ok, 1 failure (a message says what to do), 2 usage."
    ))]
    Submit(SubmitArgs),
    /// List jobs, most recent first, with their progress, errors and cost so far.
    #[command(after_help = concat!(
        "Examples:\n",
        "  batchdrop status                       the 10 most recent jobs\n",
        "  batchdrop status sandbox/run1/requests --watch\n",
        "  batchdrop status j3f9c0a81 --json      one job, for scripts\n\n",
        "Progress counts requests whose batch has been collected; batches show the provider's\n",
        "status words (validating, in_progress, finalizing, completed, …). The cost so far is\n",
        "what the collected batches used, at the price table (see `batchdrop estimate --help`).\n",
        "With --watch and a PATH or JOB, it exits once every job shown has finished.\n\n",
        "Exit codes: 0 ok, 1 failure (a message says what to do), 2 usage."
    ))]
    Status(status::StatusArgs),
    /// Fetch a finished job's output.jsonl (or errors.jsonl, or summary.json).
    #[command(after_help = concat!(
        "Examples:\n",
        "  batchdrop results sandbox/run1/requests -o output.jsonl\n",
        "  batchdrop results sandbox/run1/requests --summary\n\n",
        "Exit codes: 0 ok, 1 failure (a message says what to do), 2 usage."
    ))]
    Results(ResultsArgs),
    /// Ask batchdrop to cancel the job of an upload (writes `cancel/<route>/<path>.jsonl`).
    #[command(after_help = concat!(
        "What happens next: batchdrop (the submit function on the S3 event, or `batchdrop local`\n",
        "within a tick) cancels the job's batches at the provider, keeps the results that are\n",
        "already in, marks every other request `batch_cancelled` in output.jsonl, and finishes\n",
        "the job as `cancelled`.\n\n",
        "Exit codes: 0 ok, 1 failure (a message says what to do), 2 usage."
    ))]
    Cancel(CancelArgs),
    /// Count a file's requests and input tokens and price them, before spending anything.
    #[command(after_help = estimate::AFTER_HELP)]
    Estimate(estimate::EstimateArgs),
}

/// Where the bucket is: a local directory or an S3 bucket.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The directory that plays the bucket (as for `batchdrop local`).
    #[arg(long, default_value = "bucket", value_name = "DIR")]
    pub root: PathBuf,
    /// An S3 bucket instead of --root (AWS credentials, region and AWS_ENDPOINT_URL as usual).
    #[arg(long, value_name = "NAME", conflicts_with = "root")]
    pub bucket: Option<String>,
    /// Config file (TOML) for routes and prices. Default: $BATCHDROP_CONFIG, else built-ins.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// An opened bucket.
pub struct Bucket {
    pub store: Arc<dyn ObjectStore>,
    /// The bucket name job ids are derived from: the S3 bucket, or the root's absolute path.
    pub name: String,
    /// `--bucket NAME` or `--root DIR`, to repeat in hints.
    pub flag: String,
}

impl Target {
    /// Opens the bucket; a local root must exist unless `create`.
    pub async fn open(&self, create: bool) -> Result<Bucket, String> {
        if let Some(bucket) = &self.bucket {
            if bucket.is_empty() {
                return Err("--bucket needs a bucket name".into());
            }
            let store = batchdrop_s3::S3Store::from_env(bucket.clone()).await;
            return Ok(Bucket {
                store: Arc::new(store),
                name: bucket.clone(),
                flag: format!(" --bucket {bucket}"),
            });
        }
        if !create && !self.root.is_dir() {
            return Err(format!(
                "no bucket directory at {}: pass --root DIR (what `batchdrop local` watches) or --bucket NAME",
                self.root.display()
            ));
        }
        let store = LocalStore::new(&self.root)
            .map_err(|e| format!("cannot open {} as the bucket: {e}", self.root.display()))?;
        let name = store.root().display().to_string();
        let flag = if self.root == Path::new("bucket") {
            String::new()
        } else {
            format!(" --root {}", shell_word(&self.root.display().to_string()))
        };
        Ok(Bucket {
            store: Arc::new(store),
            name,
            flag,
        })
    }

    pub fn load_config(&self) -> Result<Config, String> {
        load_config(self.config.as_deref())
    }
}

pub fn load_config(path: Option<&Path>) -> Result<Config, String> {
    match path {
        Some(p) => Config::from_path(&p.to_string_lossy(), &process_env),
        None => Config::from_env(&process_env),
    }
    .map_err(|e| format!("{e} (fix the file, or pass another with --config)"))
}

/// Quotes a word for a shell if it needs it.
pub fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A usage error: printed like clap's own, exit code 2.
pub fn usage_error(message: impl std::fmt::Display) -> ! {
    clap::Error::raw(
        clap::error::ErrorKind::ValueValidation,
        format!("{message}\n"),
    )
    .exit()
}

/// What a user names a job by: its upload's path or its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `route/path` (also accepted: `inbox/route/path.jsonl`, `results/route/path/`,
    /// `cancel/route/path.jsonl`).
    Path(InboxKey),
    /// A job id, or a prefix of one (at least 4 characters).
    Job(String),
}

impl Selector {
    pub fn parse(s: &str) -> Result<Selector, String> {
        let s = s.trim();
        if !s.contains('/') {
            if s.len() >= 4
                && s.len() <= 24
                && s.starts_with('j')
                && s[1..].bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Ok(Selector::Job(s.to_string()));
            }
            return Err(format!(
                "{s:?} is neither a path (route/path, e.g. sandbox/run1/requests) nor a job id (j…)"
            ));
        }
        parse_path(s).map(Selector::Path)
    }

    pub fn matches(&self, m: &Manifest) -> bool {
        match self {
            Selector::Path(k) => m.input.key == k.key(),
            Selector::Job(id) => m.job_id.starts_with(id.as_str()),
        }
    }
}

/// `route/path` in any of the forms the bucket shows it.
pub fn parse_path(s: &str) -> Result<InboxKey, String> {
    let mut rest = s.trim();
    for prefix in [layout::INBOX, layout::RESULTS, layout::CANCEL] {
        if let Some(r) = rest.strip_prefix(prefix) {
            rest = r;
            break;
        }
    }
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(layout::SUFFIX).unwrap_or(rest);
    let key = format!("{}{rest}{}", layout::INBOX, layout::SUFFIX);
    InboxKey::parse(&key).ok_or_else(|| {
        format!("{s:?} is not a path of the form route/path (e.g. sandbox/run1/requests)")
    })
}

/// A hint when a path's first segment is not a route of `config` (paths start with the route).
pub fn route_hint(config: &Config, selector: &Selector) -> String {
    match selector {
        Selector::Path(k) if config.route(&k.route).is_none() => format!(
            " — {:?} is not a route ({}): a path starts with its route, e.g. sandbox/{}/{}",
            k.route,
            config.route_names().join(", "),
            k.route,
            k.path
        ),
        _ => String::new(),
    }
}

/// Every job manifest of the bucket (`_batchdrop/jobs/*/manifest.json`) that `selector`
/// matches (all without one), most recent first.
pub async fn load_jobs(
    bucket: &Bucket,
    selector: Option<&Selector>,
) -> Result<Vec<Manifest>, String> {
    let store = bucket.store.clone();
    let keys: Vec<String> = match selector {
        Some(Selector::Job(id)) if id.len() == 24 => vec![JobKeys::new(id).manifest()],
        _ => {
            let prefix = format!("{}jobs/", layout::STATE);
            store
                .list(&prefix)
                .await
                .map_err(|e| store_error(bucket, "list the jobs", &e))?
                .into_iter()
                .map(|o| o.key)
                .filter(|k| k.ends_with("/manifest.json"))
                .collect()
        }
    };
    let mut jobs: Vec<Manifest> = futures::stream::iter(keys)
        .map(|key| {
            let store = store.clone();
            async move {
                match store.get_json::<Manifest>(&key).await {
                    Ok((m, _)) => Ok(Some(m)),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })
        .buffer_unordered(16)
        .try_filter_map(|m| async move { Ok(m) })
        .try_collect()
        .await
        .map_err(|e| store_error(bucket, "read a job manifest", &e))?;
    if let Some(sel) = selector {
        jobs.retain(|m| sel.matches(m));
    }
    jobs.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.job_id.cmp(&b.job_id))
    });
    Ok(jobs)
}

/// One line for a store failure, with what to check.
pub fn store_error(bucket: &Bucket, what: &str, e: &batchdrop_core::store::StoreError) -> String {
    let hint = if bucket.flag.starts_with(" --bucket") {
        "check the bucket name, AWS credentials and region (and AWS_ENDPOINT_URL for an S3-compatible server)"
    } else {
        "check --root"
    };
    format!("cannot {what} in {}: {e} — {hint}", bucket.store.describe())
}

pub async fn run(command: OpsCommand) -> Result<(), String> {
    match command {
        OpsCommand::Submit(a) => submit(a).await,
        OpsCommand::Status(a) => status::run(a).await,
        OpsCommand::Results(a) => results(a).await,
        OpsCommand::Cancel(a) => cancel(a).await,
        OpsCommand::Estimate(a) => estimate::run(a).await,
    }
}

/// Human-readable size.
pub fn bytes_human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// An amount of dollars: cents for large amounts, every significant digit down to 1e-9 for
/// small ones.
pub fn usd(amount: f64) -> String {
    if amount >= 1.0 || amount == 0.0 {
        return format!("${amount:.2}");
    }
    let s = format!("{amount:.9}");
    let s = s.trim_end_matches('0');
    let decimals = s.split_once('.').map_or(0, |(_, d)| d.len());
    if decimals < 2 {
        format!("${amount:.2}")
    } else {
        format!("${s}")
    }
}

// ---------------------------------------------------------------------------------------------
// submit

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
    #[command(flatten)]
    target: Target,
}

async fn submit(args: SubmitArgs) -> Result<(), String> {
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
        usage_error(format!(
            "cannot upload as {key:?}: --route and --as must be non-empty, without a trailing `/`"
        ));
    };
    if let Err(e) = batchdrop_core::store::validate_key(&key) {
        usage_error(format!("cannot upload as {key:?}: {e}"));
    }
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
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let bucket = args.target.open(true).await?;
    let body: ByteStream = Box::pin(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
    let meta = bucket
        .store
        .put_stream(&key, body, PutMode::Overwrite)
        .await
        .map_err(|e| store_error(&bucket, "upload the file", &e))?;
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
    println!(
        "follow it with: batchdrop status {job_id} --watch{}",
        bucket.flag
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// results

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

async fn results(args: ResultsArgs) -> Result<(), String> {
    let selector = Selector::parse(&args.what).unwrap_or_else(|e| usage_error(e));
    let bucket = args.target.open(false).await?;
    let prefix = match &selector {
        Selector::Path(k) => k.results_prefix(),
        Selector::Job(_) => {
            let jobs = load_jobs(&bucket, Some(&selector)).await?;
            match jobs.as_slice() {
                [] => {
                    return Err(format!(
                        "no job {} in {}",
                        args.what,
                        bucket.store.describe()
                    ));
                }
                [m] => {
                    if m.status.is_finished()
                        && m.reason
                            .as_deref()
                            .is_some_and(|r| r.starts_with("superseded"))
                    {
                        return Err(format!(
                            "job {} was superseded: its file was uploaded again, and the results are the newer job's (batchdrop results {})",
                            m.job_id, m.results_prefix
                        ));
                    }
                    m.results_prefix.clone()
                }
                _ => {
                    return Err(format!(
                        "{} names {} jobs: give more of the id",
                        args.what,
                        jobs.len()
                    ));
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
            return Err(format!("{}{hint}", not_finished(&bucket, &prefix).await));
        }
        Err(e) => return Err(store_error(&bucket, "read the results", &e)),
    }
    let key = format!("{prefix}{name}");
    let got = bucket
        .store
        .get(&key)
        .await
        .map_err(|e| store_error(&bucket, "read the results", &e))?;
    let mut body = got.body;
    let written = match &args.output {
        Some(path) => {
            let tmp = path.with_extension("batchdrop-partial");
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            let mut n = 0u64;
            while let Some(chunk) = body
                .try_next()
                .await
                .map_err(|e| format!("reading {key}: {e}"))?
            {
                n += chunk.len() as u64;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            }
            file.flush()
                .await
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            drop(file);
            tokio::fs::rename(&tmp, path)
                .await
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Some(n)
        }
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = body
                .try_next()
                .await
                .map_err(|e| format!("reading {key}: {e}"))?
            {
                if let Err(e) = out.write_all(&chunk) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(());
                    }
                    return Err(format!("cannot write to standard output: {e}"));
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
            status::progress_words(m),
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

// ---------------------------------------------------------------------------------------------
// cancel

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The upload's path (route/path) or a job id.
    #[arg(value_name = "PATH|JOB")]
    what: String,
    #[command(flatten)]
    target: Target,
}

async fn cancel(args: CancelArgs) -> Result<(), String> {
    let selector = Selector::parse(&args.what).unwrap_or_else(|e| usage_error(e));
    let bucket = args.target.open(false).await?;
    let jobs = load_jobs(&bucket, Some(&selector)).await?;
    let running: Vec<&Manifest> = jobs.iter().filter(|m| !m.status.is_finished()).collect();
    let inbox = match (&selector, jobs.first()) {
        (Selector::Path(k), _) => k.clone(),
        (Selector::Job(_), Some(m)) => InboxKey::parse(&m.input.key)
            .ok_or_else(|| format!("job {} has no inbox key", m.job_id))?,
        (Selector::Job(id), None) => {
            return Err(format!("no job {id} in {}", bucket.store.describe()));
        }
    };
    if running.is_empty() {
        let latest = jobs
            .first()
            .map(|m| format!(" (latest job {}: {})", m.job_id, m.status.as_str()))
            .unwrap_or_default();
        if jobs.is_empty() && bucket.store.exists(&inbox.key()).await.unwrap_or(false) {
            return Err(format!(
                "{} has no job yet: cancel once `batchdrop status {}` shows it running",
                inbox.key(),
                inbox_path(&inbox)
            ));
        }
        return Err(format!(
            "nothing to cancel: no unfinished job for {}{latest}{}",
            inbox.key(),
            route_hint(&args.target.load_config()?, &selector)
        ));
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
        .map_err(|e| store_error(&bucket, "write the cancel request", &e))?;
    println!("wrote {cancel_key}");
    for m in &running {
        println!(
            "job {} ({}) will be cancelled:",
            m.job_id,
            status::progress_words(m)
        );
    }
    let when = if bucket.flag.starts_with(" --bucket") {
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

/// `route/path`, shell-quoted.
pub fn inbox_path(k: &InboxKey) -> String {
    shell_word(&format!("{}/{}", k.route, k.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_accepted_in_every_form_the_bucket_shows() {
        for s in [
            "sandbox/run 1/requests",
            "sandbox/run 1/requests.jsonl",
            "inbox/sandbox/run 1/requests.jsonl",
            "results/sandbox/run 1/requests/",
            "cancel/sandbox/run 1/requests.jsonl",
        ] {
            let k = parse_path(s).unwrap();
            assert_eq!(
                (k.route.as_str(), k.path.as_str()),
                ("sandbox", "run 1/requests"),
                "{s}"
            );
        }
        assert!(parse_path("sandbox").is_err());
        assert!(parse_path("sandbox/").is_err());
    }

    #[test]
    fn job_ids_and_paths_are_told_apart() {
        assert_eq!(
            Selector::parse("j3f9c").unwrap(),
            Selector::Job("j3f9c".into())
        );
        assert!(matches!(
            Selector::parse("openai/x").unwrap(),
            Selector::Path(_)
        ));
        assert!(Selector::parse("requests").is_err());
    }

    #[test]
    fn dollars_keep_small_amounts_readable() {
        assert_eq!(usd(0.0), "$0.00");
        assert_eq!(usd(12.5), "$12.50");
        assert_eq!(usd(0.375), "$0.375");
        assert_eq!(usd(0.1), "$0.10");
        assert_eq!(usd(0.00002055), "$0.00002055");
        assert_eq!(usd(0.0000000001), "$0.00");
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(bytes_human(512), "512 B");
        assert_eq!(bytes_human(2048), "2.0 KiB");
        assert_eq!(bytes_human(10 << 20), "10.0 MiB");
    }
}
