//! The synchronous lane's throughput against an instant server: a file of prompt lines through
//! the engine on the `sandbox-sync` route (provider `openai-sync`) against the sandbox's
//! `/v1/chat/completions` in this process, at the route's concurrency; and, as the baseline,
//! the same requests sent straight to the server by the same client at the same concurrency,
//! without batchdrop's bookkeeping (validation, staging, pieces saved as they come, collection,
//! output in input order). One poll invocation runs the lane until its deadline, so the
//! figure is also what one invocation sustains.

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
use std::time::Instant;

const KEY: &str = "inbox/sandbox-sync/bench/lane.jsonl";

#[derive(Debug, Clone, Serialize)]
pub struct LaneRun {
    pub requests: u64,
    pub concurrency: usize,
    /// Upload to summary.json through the engine.
    pub lane_secs: f64,
    /// The same requests sent straight to the server.
    pub direct_secs: f64,
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

/// `requests` prompt lines, both ways, at `concurrency`, under `work`.
pub async fn measure(
    requests: u64,
    concurrency: usize,
    work: &Path,
) -> Result<LaneRun, BenchError> {
    let scratch = work.join("lane");
    crate::plan::reset(&scratch)?;
    let sandbox = Sandbox::start(([127, 0, 0, 1], 0).into(), SandboxConfig::default())
        .await
        .context(|| "starting the sandbox".into())?;
    let result = run(requests, concurrency, &scratch, &sandbox).await;
    sandbox.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn line(i: u64) -> String {
    format!(r#"{{"custom_id":"q{i:07}","prompt":"question number {i}"}}"#)
}

async fn run(
    requests: u64,
    concurrency: usize,
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
    let store = LocalStore::new(&root).context(|| format!("opening {}", root.display()))?;
    let mut config = Config::builtin(&|_| None);
    if let Some(route) = config.routes.get_mut("sandbox-sync") {
        route.base_url = sandbox.base_url();
        route.max_concurrency = Some(concurrency as u32);
    }
    let providers = batchdrop_core::providers::clients(&config.routes, &|_| None);
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let engine = Engine::new(
        store.clone(),
        "bench",
        Arc::new(config),
        Arc::new(providers),
        Arc::new(SystemClock),
    )
    .with_observer(Arc::new(Quiet));
    let body: String = (0..requests).map(|i| line(i) + "\n").collect();
    let path = root.join(KEY);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, body).context(|| format!("writing {}", path.display()))?;
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
    Ok(LaneRun {
        requests,
        concurrency,
        lane_secs,
        direct_secs,
    })
}
