//! Poll tick time: `Engine::poll` over many active jobs whose batches are still running.
//!
//! In this process: the sandbox with a one-hour step (every batch stays `validating`), the
//! OpenAI provider pointed at it, a local store in a scratch directory, and one small job per
//! file. The first tick after submitting records each batch's new status (one manifest write
//! per job); the ticks after it find nothing new — the idle tick the target is about.

use crate::error::{BenchError, Context};
use crate::generate::{self, Amount, Kind, Spec};
use batchdrop_core::clock::SystemClock;
use batchdrop_core::config::Config;
use batchdrop_core::engine::{Engine, JobEvent, Observer, SubmitOutcome};
use batchdrop_core::store::{LocalStore, ObjectStore};
use batchdrop_sandbox::{Sandbox, SandboxConfig};
use futures::StreamExt;
use serde::Serialize;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lines in each job's file.
const LINES_PER_JOB: u64 = 20;
/// Idle ticks timed; the median is reported.
const IDLE_TICKS: usize = 3;
/// Submits in flight while setting up.
const SETUP_CONCURRENCY: usize = 8;

#[derive(Debug, Clone, Serialize)]
pub struct PollRun {
    pub jobs: usize,
    /// Batches in flight (a job's lines use up to three models: one batch each).
    pub batches: u64,
    pub setup_secs: f64,
    /// The first tick: every job's batch has a new status to record.
    pub first_tick_secs: f64,
    pub idle_ticks_secs: Vec<f64>,
    pub idle_tick_median_secs: f64,
    /// HTTP requests the sandbox answered during the idle ticks.
    pub provider_requests_per_idle_tick: f64,
}

struct Quiet;

impl Observer for Quiet {
    fn event(&self, _event: &JobEvent) {}
}

/// Sets up `jobs` running jobs under `work` and times poll ticks over them.
pub async fn measure(jobs: usize, work: &Path) -> Result<PollRun, BenchError> {
    let scratch = work.join("poll");
    crate::plan::reset(&scratch)?;
    let result = measure_in(jobs, &scratch).await;
    let _ = fs::remove_dir_all(&scratch);
    result
}

async fn measure_in(jobs: usize, scratch: &Path) -> Result<PollRun, BenchError> {
    let sandbox = Sandbox::start(
        ([127, 0, 0, 1], 0).into(),
        SandboxConfig {
            step: Duration::from_secs(3600),
            ..Default::default()
        },
    )
    .await
    .context(|| "starting the sandbox".into())?;
    let result = run(jobs, scratch, &sandbox).await;
    sandbox.stop().await;
    result
}

async fn run(jobs: usize, scratch: &Path, sandbox: &Sandbox) -> Result<PollRun, BenchError> {
    let root = scratch.join("bucket");
    let store = LocalStore::new(&root).context(|| format!("opening {}", root.display()))?;
    let mut config = Config::builtin(&|_| None);
    if let Some(route) = config.routes.get_mut("sandbox") {
        route.base_url = sandbox.base_url();
    }
    let providers = batchdrop_core::providers::clients(&config.routes, &|_| None);
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let engine = Engine::new(
        store,
        "bench",
        Arc::new(config),
        Arc::new(providers),
        Arc::new(SystemClock),
    )
    .with_observer(Arc::new(Quiet));

    // One small, distinct file per job.
    let files = scratch.join("files");
    let mut keys = Vec::with_capacity(jobs);
    for j in 0..jobs {
        let input = generate::ensure(
            &files,
            &Spec {
                name: format!("job-{j:05}.jsonl"),
                kind: Kind::Chat,
                amount: Amount::Lines(LINES_PER_JOB),
                seed: 1_000_000 + j as u64,
            },
        )
        .context(|| format!("writing job file {j}"))?;
        let key = format!("inbox/sandbox/poll/job-{j:05}.jsonl");
        crate::plan::place(&input.path, &root.join(&key))?;
        keys.push(key);
    }

    let setup = Instant::now();
    let engine = &engine;
    let outcomes: Vec<_> = futures::stream::iter(keys)
        .map(|key| async move { (engine.submit(&key, None).await, key) })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    for (outcome, key) in outcomes {
        match outcome.context(|| format!("submitting {key}"))? {
            SubmitOutcome::Started { .. } => {}
            other => {
                return Err(BenchError::program(
                    "Engine::submit",
                    format!("{key}: {other:?}"),
                ));
            }
        }
    }
    let setup_secs = setup.elapsed().as_secs_f64();

    let tick = || async {
        let t = Instant::now();
        let report = engine.poll().await.context(|| "polling".into())?;
        let secs = t.elapsed().as_secs_f64();
        if report.active != jobs || !report.finished.is_empty() || !report.failures.is_empty() {
            let failures: Vec<String> = report
                .failures
                .iter()
                .map(|(j, e)| format!("{j}: {e}"))
                .collect();
            return Err(BenchError::program(
                "Engine::poll",
                format!(
                    "saw {} active jobs (expected {jobs}), {} finished, failures: {failures:?}",
                    report.active,
                    report.finished.len(),
                ),
            ));
        }
        Ok::<f64, BenchError>(secs)
    };
    let first_tick_secs = tick().await?;
    let before = sandbox.stats().requests_received;
    let mut idle = Vec::with_capacity(IDLE_TICKS);
    for _ in 0..IDLE_TICKS {
        idle.push(tick().await?);
    }
    let requests = sandbox.stats().requests_received - before;
    let mut sorted = idle.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(PollRun {
        jobs,
        batches: sandbox.stats().batches_created,
        setup_secs,
        first_tick_secs,
        idle_tick_median_secs: sorted[sorted.len() / 2],
        idle_ticks_secs: idle,
        provider_requests_per_idle_tick: requests as f64 / IDLE_TICKS as f64,
    })
}
