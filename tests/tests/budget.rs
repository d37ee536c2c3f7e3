//! Spending caps against the sandbox over HTTP: a job whose estimate is over its route's
//! `max_usd_per_job` sends nothing (the sandbox sees no request) and its summary says why; two
//! files dropped at once under a `max_usd_per_day` that fits one: exactly one runs.

use batchdrop_core::config::Config;
use batchdrop_core::engine::Engine;
use batchdrop_core::route::Spend;
use batchdrop_core::store::{MemoryStore, ObjectStore, PutMode};
use batchdrop_sandbox::{Sandbox, SandboxConfig};
use batchdrop_tests::clocks::{Clocks, one_route, openai_provider};
use batchdrop_tests::jobs::{self, poll_until_idle};
use batchdrop_tests::{BoxError, TestResult};
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const ROUTE: &str = "sandbox";
const BUCKET: &str = "budget-test";
/// How long a sandbox batch takes to move a step.
const STEP: Duration = Duration::from_secs(10);

/// `n` chat requests with `max_tokens`, ids `<prefix>-<i>`.
fn file(prefix: &str, n: usize) -> Bytes {
    let lines: String = (0..n)
        .map(|i| {
            json!({"custom_id": format!("{prefix}-{i}"), "method": "POST",
                   "url": "/v1/chat/completions",
                   "body": {"model": "gpt-4o-mini", "max_tokens": 50,
                            "messages": [{"role": "user", "content": format!("question {i}")}]}})
            .to_string()
                + "\n"
        })
        .collect();
    Bytes::from(lines)
}

struct Bed {
    sandbox: Sandbox,
    clocks: Clocks,
    store: Arc<MemoryStore>,
    config: Arc<Config>,
}

impl Bed {
    async fn start(spend: Spend) -> Result<Bed, BoxError> {
        let clocks = Clocks::at_unix(1_800_000_000)?;
        let sandbox = Sandbox::start_with_clock(
            "127.0.0.1:0".parse()?,
            SandboxConfig {
                step: STEP,
                ..SandboxConfig::default()
            },
            clocks.sandbox.clone(),
        )
        .await?;
        let mut config = Config::builtin(&|_| None);
        let route = config.routes.get_mut(ROUTE).ok_or("no sandbox route")?;
        route.limits.max_requests_per_batch = 4;
        route.spend = spend;
        Ok(Bed {
            sandbox,
            clocks,
            store: Arc::new(MemoryStore::new()),
            config: Arc::new(config),
        })
    }

    fn engine(&self, owner: &str) -> Engine {
        Engine::new(
            self.store.clone(),
            BUCKET,
            self.config.clone(),
            Arc::new(one_route(
                ROUTE,
                openai_provider(&self.sandbox.base_url(), self.clocks.engine.clone()),
            )),
            self.clocks.engine.clone(),
        )
        .with_owner(owner)
    }

    async fn drop_file(&self, key: &str, body: Bytes) -> Result<String, BoxError> {
        Ok(self.store.put(key, body, PutMode::Create).await?.etag)
    }

    /// Polls a step apart until no job is active (at most 40 polls).
    async fn poll_to_end(&self, engine: &Engine) -> TestResult {
        poll_until_idle(engine, self.store.as_ref(), 40, || {
            self.clocks.advance(STEP)
        })
        .await
    }

    /// The summary of the job of `inbox/<route>/<name>.jsonl`.
    async fn summary(&self, name: &str) -> Result<Value, BoxError> {
        jobs::summary(self.store.as_ref(), &format!("results/{ROUTE}/{name}/")).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_its_jobs_cap_sends_nothing_to_the_sandbox() -> TestResult {
    // GIVEN a route whose jobs may cost at most a millionth of a dollar
    let bed = Bed::start(Spend {
        max_usd_per_job: Some(0.000_001),
        ..Spend::default()
    })
    .await?;
    let engine = bed.engine("worker");
    // WHEN a file of 6 requests is dropped and run to the end
    let etag = bed
        .drop_file("inbox/sandbox/big.jsonl", file("r", 6))
        .await?;
    engine
        .submit("inbox/sandbox/big.jsonl", Some(&etag))
        .await?;
    bed.poll_to_end(&engine).await?;
    // THEN the sandbox got no request at all
    let stats = bed.sandbox.stats();
    assert_eq!(stats.requests_received, 0, "{stats:?}");
    // AND the summary says why, with the estimate above the cap
    let summary = bed.summary("big").await?;
    assert_eq!(summary["status"], "failed");
    let reason = summary["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("over_budget"), "{reason}");
    assert!(summary["budget"]["estimate"].as_f64().unwrap_or(0.0) > 0.000_001);
    assert_eq!(summary["counts"]["failed"], 6);
    bed.sandbox.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_files_at_once_under_a_day_cap_that_fits_one_run_exactly_one() -> TestResult {
    // GIVEN the estimate of one 8-request file, and a day cap of one and a half of it
    let probe = Bed::start(Spend {
        max_usd_per_job: Some(1000.0),
        ..Spend::default()
    })
    .await?;
    let engine = probe.engine("probe");
    let etag = probe
        .drop_file("inbox/sandbox/p.jsonl", file("p", 8))
        .await?;
    engine.submit("inbox/sandbox/p.jsonl", Some(&etag)).await?;
    probe.poll_to_end(&engine).await?;
    let estimate = probe.summary("p").await?["budget"]["estimate"]
        .as_f64()
        .ok_or("no estimate")?;
    probe.sandbox.stop().await;
    let bed = Bed::start(Spend {
        max_usd_per_day: Some(estimate * 1.5),
        ..Spend::default()
    })
    .await?;
    // WHEN two workers submit a file of the same size each at the same time
    let a = bed.drop_file("inbox/sandbox/a.jsonl", file("a", 8)).await?;
    let b = bed.drop_file("inbox/sandbox/b.jsonl", file("b", 8)).await?;
    let (one, two) = (bed.engine("worker-1"), bed.engine("worker-2"));
    let (ra, rb) = tokio::join!(
        one.submit("inbox/sandbox/a.jsonl", Some(&a)),
        two.submit("inbox/sandbox/b.jsonl", Some(&b)),
    );
    ra?;
    rb?;
    bed.poll_to_end(&one).await?;
    // THEN exactly one ran: one completed, one failed over the day's cap
    let mut statuses = vec![
        bed.summary("a").await?["status"].clone(),
        bed.summary("b").await?["status"].clone(),
    ];
    statuses.sort_by_key(|s| s.to_string());
    assert_eq!(statuses, [json!("completed"), json!("failed")]);
    // AND the sandbox saw the batches of one file only (8 requests, 4 per batch)
    assert_eq!(bed.sandbox.stats().batches_created, 2);
    bed.sandbox.stop().await;
    Ok(())
}
