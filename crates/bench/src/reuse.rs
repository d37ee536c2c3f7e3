//! Paying once (`reuse_results`): the same generated corpus through the engine twice in this
//! process, on the `sandbox` route with reuse and on the same route without, each over a
//! fresh local bucket, against the sandbox (instant) over HTTP.
//!
//! The corpus is two files of `requests` chat lines each: the first all distinct; the second
//! 30% asked by the first file (other ids, same content), 10% repeats of a line just before it
//! in the same file, 60% new. With reuse, the second file should send only its 60% new
//! requests; without, all of it. Reported: requests sent and USD paid each way (`cost.batch +
//! cost.on_demand` of the summaries), the USD saved that the reuse run's summary reports, and
//! whether they add up (paid without − paid with = saved), with the time of each second file.

use crate::error::{BenchError, Context};
use batchdrop_core::clock::SystemClock;
use batchdrop_core::config::Config;
use batchdrop_core::engine::{Engine, JobEvent, Observer};
use batchdrop_core::store::{LocalStore, ObjectStore};
use batchdrop_sandbox::{Sandbox, SandboxConfig};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const FIRST: &str = "inbox/sandbox/bench/first.jsonl";
const SECOND: &str = "inbox/sandbox/bench/second.jsonl";

/// What one way of running the corpus (with or without reuse) sent and paid.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Way {
    /// Requests sent in batches, both files.
    pub sent: u64,
    /// Of which by the second file.
    pub sent_second: u64,
    /// USD paid, both files.
    pub paid_usd: f64,
    /// USD saved, as the summaries report it.
    pub saved_usd: f64,
    /// Requests answered without being sent (summaries' `reuse.requests`).
    pub reused: u64,
    /// Upload to summary.json of the second file.
    pub second_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReuseRun {
    pub requests_per_file: u64,
    pub with_reuse: Way,
    pub without_reuse: Way,
}

impl ReuseRun {
    /// Requests of the second file that are neither asked by the first nor repeated in it.
    pub fn new_in_second(&self) -> u64 {
        (0..self.requests_per_file)
            .filter(|i| matches!(i % 10, 3..=8))
            .count() as u64
    }

    /// Whether paid without − paid with = saved (to the nano-dollar the costs are kept in).
    pub fn adds_up(&self) -> bool {
        let difference = self.without_reuse.paid_usd - self.with_reuse.paid_usd;
        (difference - self.with_reuse.saved_usd).abs() < 1e-6
    }
}

struct Quiet;

impl Observer for Quiet {
    fn event(&self, _event: &JobEvent) {}
}

/// Runs the corpus of `requests` per file both ways, under `work`.
pub async fn measure(requests: u64, work: &Path) -> Result<ReuseRun, BenchError> {
    let scratch = work.join("reuse");
    crate::plan::reset(&scratch)?;
    let sandbox = Sandbox::start(([127, 0, 0, 1], 0).into(), SandboxConfig::default())
        .await
        .context(|| "starting the sandbox".into())?;
    let with_reuse = run_way(requests, true, &scratch.join("with"), &sandbox).await;
    let without_reuse = run_way(requests, false, &scratch.join("without"), &sandbox).await;
    sandbox.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(ReuseRun {
        requests_per_file: requests,
        with_reuse: with_reuse?,
        without_reuse: without_reuse?,
    })
}

fn line(id: &str, question: &str) -> String {
    format!(
        r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","max_tokens":64,"messages":[{{"role":"user","content":"{question}"}}]}}}}"#
    ) + "\n"
}

/// The two files of the corpus.
fn corpus(requests: u64) -> (String, String) {
    let first = (0..requests)
        .map(|i| line(&format!("a{i:07}"), &format!("question {i}")))
        .collect();
    let second = (0..requests)
        .map(|i| {
            let question = match i % 10 {
                // Asked by the first file.
                0..=2 => format!("question {i}"),
                // The line just before, again.
                9 => format!("new question {}", i - 1),
                _ => format!("new question {i}"),
            };
            line(&format!("b{i:07}"), &question)
        })
        .collect();
    (first, second)
}

async fn run_way(
    requests: u64,
    reuse: bool,
    root: &Path,
    sandbox: &Sandbox,
) -> Result<Way, BenchError> {
    std::fs::create_dir_all(root).context(|| format!("creating {}", root.display()))?;
    let store = LocalStore::new(root).context(|| format!("opening {}", root.display()))?;
    let mut config = Config::builtin(&|_| None);
    if let Some(route) = config.routes.get_mut("sandbox") {
        route.base_url = sandbox.base_url();
        route.reuse.enabled = reuse;
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
    let (first, second) = corpus(requests);
    let mut way = Way::default();
    for (key, body) in [(FIRST, first), (SECOND, second)] {
        let path = root.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, body).context(|| format!("writing {}", path.display()))?;
        let started = Instant::now();
        let summary = run_file(&engine, root, key).await?;
        let secs = started.elapsed().as_secs_f64();
        let sent: u64 = summary["batches"]
            .as_array()
            .map(|b| b.iter().filter_map(|b| b["requests"].as_u64()).sum())
            .unwrap_or(0);
        let cost = &summary["cost"];
        way.sent += sent;
        way.paid_usd +=
            cost["batch"].as_f64().unwrap_or(0.0) + cost["on_demand"].as_f64().unwrap_or(0.0);
        way.saved_usd += summary["reuse"]["saved_usd"].as_f64().unwrap_or(0.0);
        way.reused += summary["reuse"]["requests"].as_u64().unwrap_or(0);
        if key == SECOND {
            way.sent_second = sent;
            way.second_secs = secs;
        }
    }
    Ok(way)
}

/// Submits `key` and polls until its summary.json exists; returns it.
async fn run_file(engine: &Engine, root: &Path, key: &str) -> Result<Value, BenchError> {
    engine
        .submit(key, None)
        .await
        .context(|| format!("submitting {key}"))?;
    let name = key
        .strip_prefix("inbox/sandbox/")
        .and_then(|k| k.strip_suffix(".jsonl"))
        .unwrap_or(key);
    let summary = root.join(format!("results/sandbox/{name}/summary.json"));
    for _ in 0..100_000 {
        if summary.exists() {
            let text =
                std::fs::read(&summary).context(|| format!("reading {}", summary.display()))?;
            return serde_json::from_slice(&text)
                .context(|| format!("reading {}", summary.display()));
        }
        engine
            .poll()
            .await
            .context(|| format!("polling the job of {key}"))?;
    }
    Err(BenchError::program(
        "the engine",
        format!("the job of {key} never finished"),
    ))
}
