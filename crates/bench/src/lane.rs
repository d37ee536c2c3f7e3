//! The synchronous lane's throughput against an instant server: a file of prompt lines through
//! the engine on the `sandbox-sync` route (provider `openai-sync`) against the sandbox's
//! `/v1/chat/completions` in this process, at the route's concurrency; and, as the baseline,
//! the same requests sent straight to the server by the same client at the same concurrency,
//! without batchdrop's bookkeeping (validation, staging, pieces saved as they come, collection,
//! output in input order). The engine's lane adapts its concurrency ([`batchdrop_core`]'s
//! `engine::pace`): it starts at 4 and, against a server that keeps up, reaches the route's
//! 16 within its first ~120 answers.
//!
//! Then what one poll invocation sustains ([`invocation`]): a job larger than it can finish,
//! made by a submit that stops at once, and one `poll` of an engine whose deadline is
//! `window` away (it plans the job, then sends until a quarter of the window is left, as a
//! Lambda's would): the answers it saved, per minute of the poll's wall time.

use crate::error::{BenchError, Context};
use batchdrop_core::clock::SystemClock;
use batchdrop_core::config::Config;
use batchdrop_core::engine::{Engine, JobEvent, Observer};
use batchdrop_core::provider::Provider;
use batchdrop_core::providers::OpenAiSyncProvider;
use batchdrop_core::store::{LocalStore, ObjectStore};
use batchdrop_sandbox::{Sandbox, SandboxConfig};
use futures::StreamExt;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

const KEY: &str = "inbox/sandbox-sync/bench/lane.jsonl";
const INVOCATION_KEY: &str = "inbox/sandbox-sync/bench/invocation.jsonl";

#[derive(Debug, Clone, Serialize)]
pub struct LaneRun {
    pub requests: u64,
    pub concurrency: usize,
    /// Upload to summary.json through the engine.
    pub lane_secs: f64,
    /// The same requests sent straight to the server.
    pub direct_secs: f64,
    /// One poll invocation over a larger job.
    pub invocation: Invocation,
}

/// One poll invocation of the lane.
#[derive(Debug, Clone, Serialize)]
pub struct Invocation {
    /// Requests in the job (more than the invocation can send, unless it went faster than the
    /// first run).
    pub requests: u64,
    /// Its deadline, from its start.
    pub window_secs: f64,
    /// Answers saved by the poll.
    pub answered: u64,
    /// The poll's wall time.
    pub secs: f64,
}

impl Invocation {
    pub fn per_minute(&self) -> f64 {
        self.answered as f64 * 60.0 / self.secs.max(1e-9)
    }
}

impl LaneRun {
    pub fn lane_per_s(&self) -> f64 {
        self.requests as f64 / self.lane_secs.max(1e-9)
    }

    pub fn direct_per_s(&self) -> f64 {
        self.requests as f64 / self.direct_secs.max(1e-9)
    }
}

struct Quiet;

impl Observer for Quiet {
    fn event(&self, _event: &JobEvent) {}
}

/// `requests` prompt lines, both ways, at `concurrency`, then one poll invocation of
/// `window`, under `work`.
pub async fn measure(
    requests: u64,
    concurrency: usize,
    window: Duration,
    work: &Path,
) -> Result<LaneRun, BenchError> {
    let scratch = work.join("lane");
    crate::plan::reset(&scratch)?;
    let sandbox = Sandbox::start(([127, 0, 0, 1], 0).into(), SandboxConfig::default())
        .await
        .context(|| "starting the sandbox".into())?;
    let result = run(requests, concurrency, window, &scratch, &sandbox).await;
    sandbox.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn line(i: u64) -> String {
    format!(r#"{{"custom_id":"q{i:07}","prompt":"question number {i}"}}"#)
}

/// An engine over a fresh local bucket under `root`, its `sandbox-sync` route at `sandbox`.
fn engine(root: &Path, concurrency: usize, sandbox: &Sandbox) -> Result<Engine, BenchError> {
    let store = LocalStore::new(root).context(|| format!("opening {}", root.display()))?;
    let mut config = Config::builtin(&|_| None);
    if let Some(route) = config.routes.get_mut("sandbox-sync") {
        route.base_url = sandbox.base_url();
        route.max_concurrency = Some(concurrency as u32);
    }
    let providers = batchdrop_core::providers::clients(&config.routes, &|_| None);
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    Ok(Engine::new(
        store,
        "bench",
        Arc::new(config),
        Arc::new(providers),
        Arc::new(SystemClock),
    )
    .with_observer(Arc::new(Quiet)))
}

/// Writes `requests` prompt lines to `key` under `root`.
fn write_input(root: &Path, key: &str, requests: u64) -> Result<(), BenchError> {
    let body: String = (0..requests).map(|i| line(i) + "\n").collect();
    let path = root.join(key);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, body).context(|| format!("writing {}", path.display()))
}

async fn run(
    requests: u64,
    concurrency: usize,
    window: Duration,
    scratch: &Path,
    sandbox: &Sandbox,
) -> Result<LaneRun, BenchError> {
    // The baseline: the same request lines the lane sends, straight to the server.
    let client = OpenAiSyncProvider::new(&sandbox.base_url(), None);
    let direct_lines: Vec<Vec<u8>> = (0..requests)
        .map(|i| {
            format!(
                r#"{{"custom_id":"q{i:07}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"question number {i}"}}]}}}}"#
            )
            .into_bytes()
        })
        .collect();
    let started = Instant::now();
    let answered = futures::stream::iter(direct_lines.iter())
        .map(|l| client.invoke("gpt-4o-mini", l))
        .buffer_unordered(concurrency)
        .filter(|r| std::future::ready(r.is_ok()))
        .count()
        .await;
    let direct_secs = started.elapsed().as_secs_f64();
    if answered as u64 != requests {
        return Err(BenchError::program(
            "the sandbox",
            format!("answered {answered} of {requests} direct requests"),
        ));
    }

    // The lane: the engine on the sandbox-sync route.
    let root = scratch.join("bucket");
    let engine = engine(&root, concurrency, sandbox)?;
    write_input(&root, KEY, requests)?;
    let started = Instant::now();
    engine
        .submit(KEY, None)
        .await
        .context(|| "submitting the lane's file".into())?;
    let summary = "results/sandbox-sync/bench/lane/summary.json";
    let mut polls = 0;
    while !root.join(summary).exists() {
        polls += 1;
        if polls > 10_000 {
            return Err(BenchError::program(
                "the engine",
                "the lane's job never finished",
            ));
        }
        engine
            .poll()
            .await
            .context(|| "polling the lane's job".into())?;
    }
    let lane_secs = started.elapsed().as_secs_f64();
    // Twice what the lane did in the window: more than one invocation sends.
    let per_s = requests as f64 / lane_secs.max(1e-9);
    let invocation_requests = ((per_s * window.as_secs_f64() * 2.0) as u64).max(1000);
    let invocation = invocation(
        invocation_requests,
        concurrency,
        window,
        &scratch.join("invocation"),
        sandbox,
    )
    .await?;
    Ok(LaneRun {
        requests,
        concurrency,
        lane_secs,
        direct_secs,
        invocation,
    })
}

/// One poll invocation of `window` over a job of `requests` prompt lines made by a submit
/// whose deadline has passed (it sends nothing); the poll's time includes the rest of the
/// planning.
async fn invocation(
    requests: u64,
    concurrency: usize,
    window: Duration,
    root: &Path,
    sandbox: &Sandbox,
) -> Result<Invocation, BenchError> {
    let engine = engine(root, concurrency, sandbox)?;
    write_input(root, INVOCATION_KEY, requests)?;
    let now = time::OffsetDateTime::now_utc();
    // A submit past its deadline makes the job and stops planning at its first checkpoint
    // (1,024 lines): the poll plans the rest, then sends, as one would after a long submit.
    engine
        .until(now)
        .submit(INVOCATION_KEY, None)
        .await
        .context(|| "submitting the invocation's file".into())?;
    let started = Instant::now();
    let deadline = time::OffsetDateTime::now_utc() + window;
    engine
        .until(deadline)
        .poll()
        .await
        .context(|| "the invocation's poll".into())?;
    let secs = started.elapsed().as_secs_f64();
    let answered = engine
        .store()
        .list("_batchdrop/jobs/")
        .await
        .map_err(batchdrop_core::engine::JobError::from)
        .context(|| "listing the saved answers".into())?
        .iter()
        .filter_map(|m| {
            let (_, part) = m.key.split_once("/on-demand/part-")?;
            part.strip_suffix(".jsonl")?
                .split_once('-')?
                .1
                .parse::<u64>()
                .ok()
        })
        .sum();
    Ok(Invocation {
        requests,
        window_secs: window.as_secs_f64(),
        answered,
        secs,
    })
}
