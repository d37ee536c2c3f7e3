//! Plan throughput and submit memory: `Engine::submit` alone, on the local store, with a
//! provider that accepts every batch at once — so what is timed is read + validate + chunk +
//! stage, not any network.
//!
//! Each file is submitted by a child process (`batchdrop-bench submit-only`), so that its peak
//! RSS is the submit's own; the child prints its timings as JSON. In the same run, on the same
//! (page-cache-warm) file, `cat > /dev/null` and `split -l 50000` give the references.

use crate::error::{BenchError, Context};
use crate::generate::Input;
use crate::process;
use async_trait::async_trait;
use batchdrop_core::clock::SystemClock;
use batchdrop_core::config::Config;
use batchdrop_core::engine::{Engine, JobEvent, Observer, SubmitOutcome};
use batchdrop_core::provider::{
    BatchInfo, BatchLookup, BatchState, ChunkUpload, Provider, ProviderError, RequestCounts,
    Submitted,
};
use batchdrop_core::store::{ByteStream, LocalStore, ObjectStore};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The route the inputs are dropped under.
const ROUTE: &str = "sandbox";

/// A provider that creates every batch instantly and never finishes one: submit's own work is
/// all there is to time.
#[derive(Debug, Default)]
pub struct InstantProvider;

#[async_trait]
impl Provider for InstantProvider {
    async fn submit(&self, chunk: ChunkUpload<'_>) -> Result<Submitted, ProviderError> {
        Ok(Submitted {
            batch_id: format!("batch_instant_{}_{}", chunk.job_id, chunk.chunk),
            input_file_id: None,
        })
    }
    async fn find_batch(
        &self,
        _lookup: BatchLookup<'_>,
    ) -> Result<Option<Submitted>, ProviderError> {
        Ok(None)
    }
    async fn batch(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        Ok(info(batch_id, "in_progress", BatchState::Pending))
    }
    async fn cancel(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        Ok(info(batch_id, "cancelled", BatchState::Cancelled))
    }
    async fn download(&self, _file: &str) -> Result<ByteStream, ProviderError> {
        Ok(Box::pin(futures::stream::empty()))
    }
}

fn info(id: &str, status: &str, state: BatchState) -> BatchInfo {
    BatchInfo {
        id: id.to_string(),
        status: status.to_string(),
        state,
        result_files: Vec::new(),
        errors: Vec::new(),
        counts: RequestCounts::default(),
    }
}

/// Notes when the job was started (planned, staged, manifest created) and what it counted.
#[derive(Debug, Default)]
struct StartedAt(Mutex<Option<(Instant, JobEvent)>>);

impl Observer for StartedAt {
    fn event(&self, event: &JobEvent) {
        if matches!(event, JobEvent::Started { .. })
            && let Ok(mut slot) = self.0.lock()
        {
            *slot = Some((Instant::now(), event.clone()));
        }
    }
}

/// What the `submit-only` child prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitTimings {
    pub bytes: u64,
    /// From the call to `submit` to the job's `Started` event: read, validate, chunk, stage,
    /// create the manifest.
    pub plan_secs: f64,
    /// The whole `submit`, including the first advance (every chunk handed to the provider).
    pub submit_secs: f64,
    pub lines: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub chunks: usize,
}

/// The child's side: submits `input` (hard-linked into a fresh local store under `work`) and
/// returns its timings.
pub async fn submit_only(input: &Path, work: &Path) -> Result<SubmitTimings, BenchError> {
    let bucket = work.join("bucket");
    let store =
        LocalStore::new(&bucket).context(|| format!("opening {} as a store", bucket.display()))?;
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "input.jsonl".into());
    let key = format!("inbox/{ROUTE}/bench/{name}");
    place(input, &store.path_of(&key))?;
    let bytes = fs::metadata(input)
        .context(|| format!("reading {}", input.display()))?
        .len();

    let config = Config::builtin(&|_| None);
    let mut providers: HashMap<String, Result<Arc<dyn Provider>, String>> = HashMap::new();
    providers.insert(ROUTE.to_string(), Ok(Arc::new(InstantProvider)));
    let started = Arc::new(StartedAt::default());
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let engine = Engine::new(
        store,
        "bench",
        Arc::new(config),
        Arc::new(providers),
        Arc::new(SystemClock),
    )
    .with_observer(started.clone());

    let t0 = Instant::now();
    let outcome = engine
        .submit(&key, None)
        .await
        .context(|| format!("submitting {key}"))?;
    let submit_secs = t0.elapsed().as_secs_f64();
    if !matches!(outcome, SubmitOutcome::Started { .. }) {
        return Err(BenchError::program(
            "Engine::submit",
            format!("did not start a job: {outcome:?}"),
        ));
    }
    let event = started.0.lock().ok().and_then(|mut slot| slot.take());
    let Some((at, JobEvent::Started { counts, chunks, .. })) = event else {
        return Err(BenchError::program(
            "Engine::submit",
            "reported no Started event",
        ));
    };
    Ok(SubmitTimings {
        bytes,
        plan_secs: at.duration_since(t0).as_secs_f64(),
        submit_secs,
        lines: counts.lines,
        accepted: counts.accepted,
        rejected: counts.rejected,
        chunks,
    })
}

/// Puts `input` at `dest` without copying it when the file system allows (a hard link).
pub fn place(input: &Path, dest: &Path) -> Result<(), BenchError> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
    }
    let _ = fs::remove_file(dest);
    if fs::hard_link(input, dest).is_ok() {
        return Ok(());
    }
    fs::copy(input, dest)
        .map(|_| ())
        .context(|| format!("copying {} to {}", input.display(), dest.display()))
}

/// Rounds of cat, split and submit per file; each figure is the best round (the machine is
/// shared: the fastest run is the one least disturbed).
pub const ROUNDS: usize = 3;

/// Everything measured on one file.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRun {
    pub input: String,
    pub bytes: u64,
    /// Best of the rounds.
    pub cat_secs: f64,
    pub split_secs: f64,
    /// The round with the shortest plan.
    pub submit: SubmitTimings,
    /// Peak RSS of the submit-only child, bytes: the highest of the rounds.
    pub max_rss: u64,
    /// Every round, in order.
    pub rounds: Vec<Round>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub cat_secs: f64,
    pub split_secs: f64,
    pub plan_secs: f64,
    pub submit_secs: f64,
    pub max_rss: u64,
    /// The child's whole life: runtime start, submit, exit.
    pub child_wall_secs: f64,
}

/// Measures `input`: warms the page cache, then [`ROUNDS`] times `cat`, `split -l 50000` and
/// the submit-only child, in turn. Scratch space goes under `work` and is removed after.
pub fn measure(exe: &Path, input: &Input, work: &Path) -> Result<PlanRun, BenchError> {
    let scratch = work.join(format!("plan-{}", input.name));
    reset(&scratch)?;
    let result = measure_in(exe, input, &scratch);
    let _ = fs::remove_dir_all(&scratch);
    flush_to_disk();
    result
}

fn measure_in(exe: &Path, input: &Input, scratch: &Path) -> Result<PlanRun, BenchError> {
    cat(&input.path)?; // warms the page cache: every tool below reads the same cached file
    let mut rounds = Vec::with_capacity(ROUNDS);
    let mut best: Option<SubmitTimings> = None;
    for round in 0..ROUNDS {
        let cat_time = cat(&input.path)?;
        let split_time = split(&input.path, &scratch.join("split"))?;
        let (submit, finished) =
            submit_child(exe, &input.path, &scratch.join(format!("submit-{round}")))?;
        rounds.push(Round {
            cat_secs: cat_time.as_secs_f64(),
            split_secs: split_time.as_secs_f64(),
            plan_secs: submit.plan_secs,
            submit_secs: submit.submit_secs,
            max_rss: finished.max_rss,
            child_wall_secs: finished.wall.as_secs_f64(),
        });
        if best.as_ref().is_none_or(|b| submit.plan_secs < b.plan_secs) {
            best = Some(submit);
        }
    }
    let min = |f: fn(&Round) -> f64| rounds.iter().map(f).fold(f64::INFINITY, f64::min);
    Ok(PlanRun {
        input: input.name.clone(),
        bytes: input.bytes,
        cat_secs: min(|r| r.cat_secs),
        split_secs: min(|r| r.split_secs),
        submit: best.ok_or_else(|| BenchError::program("batchdrop-bench", "no rounds ran"))?,
        max_rss: rounds.iter().map(|r| r.max_rss).max().unwrap_or(0),
        rounds,
    })
}

/// `cat FILE > /dev/null`.
fn cat(path: &Path) -> Result<Duration, BenchError> {
    let null = fs::File::create("/dev/null").context(|| "opening /dev/null".into())?;
    process::time_command(Command::new("cat").arg(path).stdout(null))
}

/// `split -l 50000` into `dir`, which is removed after.
fn split(path: &Path, dir: &Path) -> Result<Duration, BenchError> {
    reset(dir)?;
    let time = process::time_command(
        Command::new("split")
            .args(["-l", "50000", "-a", "4"])
            .arg(path)
            .arg(dir.join("x")),
    );
    let _ = fs::remove_dir_all(dir);
    flush_to_disk();
    time
}

/// One submit-only child on a fresh store under `work`, which is removed after.
fn submit_child(
    exe: &Path,
    input: &Path,
    work: &Path,
) -> Result<(SubmitTimings, process::Finished), BenchError> {
    reset(work)?;
    let stderr_path = work.join("submit.stderr");
    let stderr =
        fs::File::create(&stderr_path).context(|| format!("creating {}", stderr_path.display()))?;
    let finished = process::run_measured(
        Command::new(exe)
            .arg("submit-only")
            .arg("--input")
            .arg(input)
            .arg("--work")
            .arg(work)
            .stdin(Stdio::null())
            .stderr(stderr),
    );
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = fs::remove_dir_all(work);
    flush_to_disk();
    let finished = finished?;
    if finished.code != Some(0) {
        return Err(BenchError::program(
            "batchdrop-bench submit-only",
            format!("exited with {:?}: {}", finished.code, stderr.trim()),
        ));
    }
    let submit: SubmitTimings = serde_json::from_str(finished.stdout.trim()).context(|| {
        format!(
            "reading the submit-only child's timings {:?}",
            finished.stdout
        )
    })?;
    Ok((submit, finished))
}

/// An empty directory at `dir`.
pub fn reset(dir: &Path) -> Result<(), BenchError> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))
}

/// Writes dirty pages back so one measurement's writeback does not slow the next.
pub fn flush_to_disk() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}
