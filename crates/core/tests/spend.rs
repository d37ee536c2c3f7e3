//! Spend control: a route's spending caps (`max_usd_per_job`, `max_usd_per_day`) stop a job
//! before anything is sent, the day's spend object counts reservations then actual costs, and
//! `max_enqueued_tokens` keeps the route's batches in flight under the provider's queue limit.
//! Over an in-memory bucket, a manual clock and a scripted provider.

mod common;

use async_trait::async_trait;
use batchdrop_core::config::Config;
use batchdrop_core::spend::{self, SPEND_PREFIX};
use batchdrop_core::store::{
    ByteStream, GetResult, MemoryStore, ObjectMeta, ObjectStore, PutMode, StoreError,
};
use batchdrop_core::testing::{Script, ScriptedProvider, TestBed, small_config};
use batchdrop_core::tokens::count_request;
use bytes::Bytes;
use common::{Error, TestResult, json, jsonl};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `n` OpenAI chat lines `<prefix>0001`… of model `gpt-4o-mini`, each with `max_tokens` 10.
fn file(prefix: &str, n: usize) -> String {
    (1..=n)
        .map(|i| {
            format!(
                r#"{{"custom_id":"{prefix}{i:04}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","max_tokens":10,"messages":[{{"role":"user","content":"question {i}"}}]}}}}"#
            ) + "\n"
        })
        .collect()
}

/// The `sandbox` route (4 requests per batch) with `change` applied to its spend settings.
fn config(change: impl FnOnce(&mut batchdrop_core::config::Spend)) -> Config {
    let mut config = small_config(4, 1 << 20);
    if let Some(route) = config.routes.get_mut("sandbox") {
        change(&mut route.spend);
    }
    config
}

/// Polls the bed's engine until no job is active, at most 40 times.
async fn poll_to_end(bed: &TestBed) -> TestResult {
    common::poll_to_end(bed, 40).await
}

#[tokio::test]
async fn a_job_over_its_cap_sends_nothing_and_says_why() -> TestResult {
    // GIVEN a route whose jobs may cost at most a millionth of a dollar, and 6 requests
    let bed = TestBed::with_config(
        ScriptedProvider::new(),
        config(|s| s.max_usd_per_job = Some(0.000_001)),
    );
    // WHEN the file is dropped and polled to the end
    bed.drop_file("inbox/sandbox/big.jsonl", file("r", 6))
        .await?;
    poll_to_end(&bed).await?;
    // THEN the provider was never called
    assert_eq!(bed.provider.calls().total(), 0);
    // AND the summary says why, with the estimate and the cap
    let summary = json(bed.store.as_ref(), "results/sandbox/big/summary.json").await?;
    assert_eq!(summary["status"], "failed");
    let reason = summary["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("over_budget: the estimate $") && reason.contains("max_usd_per_job"),
        "{reason}"
    );
    let budget = &summary["budget"];
    assert_eq!(budget["max_usd_per_job"], 0.000_001);
    assert!(
        budget["estimate"].as_f64().unwrap_or(0.0) > 0.000_001,
        "{budget}"
    );
    assert_eq!(budget["within"], false);
    assert_eq!(summary["counts"]["failed"], 6);
    // AND every request has its output line with the code over_budget, in order
    let output = jsonl(bed.store.as_ref(), "results/sandbox/big/output.jsonl").await?;
    assert_eq!(output.len(), 6);
    for (i, line) in output.iter().enumerate() {
        assert_eq!(line["custom_id"], format!("r{:04}", i + 1));
        assert_eq!(line["error"]["code"], "over_budget", "{line}");
    }
    Ok(())
}

#[tokio::test]
async fn a_job_under_its_cap_runs() -> TestResult {
    // GIVEN a route whose jobs may cost $10 each
    let bed = TestBed::with_config(
        ScriptedProvider::new(),
        config(|s| s.max_usd_per_job = Some(10.0)),
    );
    // WHEN a file of 6 requests is dropped and polled to the end
    bed.drop_file("inbox/sandbox/small.jsonl", file("r", 6))
        .await?;
    poll_to_end(&bed).await?;
    // THEN its two batches ran and the job completed within its budget
    assert_eq!(bed.provider.calls().submits, 2);
    let summary = json(bed.store.as_ref(), "results/sandbox/small/summary.json").await?;
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["counts"]["succeeded"], 6);
    assert_eq!(summary["budget"]["within"], true);
    // 6 requests of at most 10 output tokens each
    assert_eq!(summary["budget"]["output_tokens"], 60);
    Ok(())
}

#[tokio::test]
async fn a_model_without_a_price_is_refused_under_a_cap() -> TestResult {
    // GIVEN a capped route and requests for a model the price table does not know
    let bed = TestBed::with_config(
        ScriptedProvider::new(),
        config(|s| s.max_usd_per_job = Some(10.0)),
    );
    let lines = file("r", 2).replace("gpt-4o-mini", "my-finetune");
    // WHEN it is dropped
    bed.drop_file("inbox/sandbox/ft.jsonl", lines).await?;
    poll_to_end(&bed).await?;
    // THEN nothing was sent, and the reason names the model
    assert_eq!(bed.provider.calls().total(), 0);
    let summary = json(bed.store.as_ref(), "results/sandbox/ft/summary.json").await?;
    let reason = summary["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("over_budget: no price for my-finetune"),
        "{reason}"
    );
    Ok(())
}

/// A store whose first `gated` reads of the day's spend objects wait for each other: two jobs
/// both read the day's spend before either writes it.
#[derive(Debug)]
struct RacingStore {
    inner: Arc<MemoryStore>,
    gated: AtomicUsize,
    barrier: tokio::sync::Barrier,
}

#[async_trait]
impl ObjectStore for RacingStore {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        self.inner.head(key).await
    }
    async fn user_metadata(
        &self,
        key: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        self.inner.user_metadata(key).await
    }
    async fn get_from(&self, key: &str, offset: u64) -> Result<GetResult, StoreError> {
        if key.starts_with(SPEND_PREFIX)
            && self
                .gated
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            self.barrier.wait().await;
        }
        self.inner.get_from(key, offset).await
    }
    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<ObjectMeta, StoreError> {
        self.inner.put(key, body, mode).await
    }
    async fn put_stream(
        &self,
        key: &str,
        body: ByteStream,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        self.inner.put_stream(key, body, mode).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    fn describe(&self) -> String {
        format!("racing+{}", self.inner.describe())
    }
}

#[tokio::test]
async fn two_jobs_racing_for_a_daily_cap_that_fits_one_run_exactly_one() -> TestResult {
    // GIVEN a daily cap that fits one file's estimate but not two
    let probe = TestBed::with_config(
        ScriptedProvider::new(),
        config(|s| s.max_usd_per_job = Some(1000.0)),
    );
    probe
        .drop_file("inbox/sandbox/probe.jsonl", file("a", 6))
        .await?;
    let manifests = probe.store.list("_batchdrop/jobs/").await?;
    let manifest_key = manifests
        .iter()
        .map(|m| m.key.clone())
        .find(|k| k.ends_with("manifest.json"))
        .ok_or("no manifest")?;
    let estimate = json(probe.store.as_ref(), &manifest_key).await?["budget"]["estimate"]
        .as_f64()
        .ok_or("no estimate")?;
    let bed = TestBed::with_config(
        ScriptedProvider::new(),
        config(|s| s.max_usd_per_day = Some(estimate * 1.5)),
    );
    // AND two files of the same size uploaded
    let a = bed.upload("inbox/sandbox/a.jsonl", file("a", 6)).await?;
    let b = bed.upload("inbox/sandbox/b.jsonl", file("b", 6)).await?;
    // WHEN two engines submit them at once, both reading the day's spend before either writes
    let racing = Arc::new(RacingStore {
        inner: bed.store.clone(),
        gated: AtomicUsize::new(2),
        barrier: tokio::sync::Barrier::new(2),
    });
    let (one, two) = (
        bed.engine_over(racing.clone(), "worker-1"),
        bed.engine_over(racing.clone(), "worker-2"),
    );
    let (ra, rb) = tokio::join!(
        one.submit("inbox/sandbox/a.jsonl", Some(&a.etag)),
        two.submit("inbox/sandbox/b.jsonl", Some(&b.etag)),
    );
    ra?;
    rb?;
    assert_eq!(racing.gated.load(Ordering::SeqCst), 0, "both read first");
    poll_to_end(&bed).await?;
    // THEN exactly one completed, the other failed over budget without sending anything
    let sa = json(bed.store.as_ref(), "results/sandbox/a/summary.json").await?;
    let sb = json(bed.store.as_ref(), "results/sandbox/b/summary.json").await?;
    let statuses = [sa["status"].clone(), sb["status"].clone()];
    assert!(
        statuses.contains(&Value::from("completed")) && statuses.contains(&Value::from("failed")),
        "{statuses:?}"
    );
    let loser = if sa["status"] == "failed" { &sa } else { &sb };
    let reason = loser["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("max_usd_per_day"), "{reason}");
    let winner_id = if sa["status"] == "completed" {
        &sa["job_id"]
    } else {
        &sb["job_id"]
    };
    let jobs: Vec<String> = bed
        .provider
        .batches()
        .iter()
        .map(|b| b.job_id.clone())
        .collect();
    assert!(!jobs.is_empty() && jobs.iter().all(|j| winner_id == j.as_str()));
    // AND the day's spend names only the job that ran
    let day = spend::read_day(bed.store.as_ref(), "sandbox", "2026-01-01")
        .await?
        .ok_or("no spend object")?
        .0;
    assert_eq!(
        day.jobs.keys().collect::<Vec<_>>(),
        [winner_id.as_str().unwrap_or_default()]
    );
    Ok(())
}

#[tokio::test]
async fn the_actual_cost_replaces_the_reservation_when_the_job_ends() -> TestResult {
    // GIVEN a route with a daily cap, and batches that stay in progress for a poll
    let bed = TestBed::with_config(
        ScriptedProvider::new().with_script(Script::complete().after_polls(1)),
        config(|s| s.max_usd_per_day = Some(100.0)),
    );
    let (_, outcome) = bed
        .drop_file("inbox/sandbox/day.jsonl", file("r", 6))
        .await?;
    let job_id = match outcome {
        batchdrop_core::SubmitOutcome::Started { job_id } => job_id,
        other => return Err(format!("not started: {other:?}").into()),
    };
    // WHEN the job is running, THEN the day's spend holds its estimate as a reservation
    let day = spend::read_day(bed.store.as_ref(), "sandbox", "2026-01-01")
        .await?
        .ok_or("no spend object")?
        .0;
    let reserved = day.jobs[&job_id];
    assert!(!reserved.settled && reserved.usd > 0.0, "{reserved:?}");
    assert_eq!(day.reserved(), reserved.usd);
    // WHEN it finishes
    poll_to_end(&bed).await?;
    // THEN the reservation is replaced by the job's actual cost, the summary's batch cost
    let summary = json(bed.store.as_ref(), "results/sandbox/day/summary.json").await?;
    let day = spend::read_day(bed.store.as_ref(), "sandbox", "2026-01-01")
        .await?
        .ok_or("no spend object")?
        .0;
    let actual = day.jobs[&job_id];
    assert!(actual.settled);
    assert_eq!(Some(actual.usd), summary["cost"]["batch"].as_f64());
    assert_ne!(actual.usd, reserved.usd);
    assert_eq!((day.reserved(), day.spent()), (0.0, actual.usd));
    assert_eq!(summary["budget"]["estimate"].as_f64(), Some(reserved.usd));
    Ok(())
}

/// The most input tokens the provider's queue held at once, counted on the lines it received.
fn peak_enqueued(provider: &ScriptedProvider) -> Result<u64, Error> {
    let dialect = batchdrop_core::providers::dialect("openai")?;
    let tokens: HashMap<String, u64> = provider
        .batches()
        .iter()
        .map(|b| {
            let sum = b
                .lines
                .iter()
                .filter_map(|l| count_request(dialect, l.as_bytes()))
                .map(|c| c.input)
                .sum();
            (b.id.clone(), sum)
        })
        .collect();
    Ok(provider
        .open_at_submits()
        .iter()
        .map(|open| open.iter().map(|id| tokens[id]).sum::<u64>())
        .max()
        .unwrap_or(0))
}

/// Two jobs of 12 requests (3 chunks each) whose batches stay in progress for 2 polls.
async fn run_two_jobs(limit: Option<u64>) -> Result<(TestBed, u64), Error> {
    let bed = TestBed::with_config(
        ScriptedProvider::new().with_script(Script::complete().after_polls(2)),
        config(|s| s.max_enqueued_tokens = limit),
    );
    bed.drop_file("inbox/sandbox/q1.jsonl", file("a", 12))
        .await?;
    bed.drop_file("inbox/sandbox/q2.jsonl", file("b", 12))
        .await?;
    poll_to_end(&bed).await?;
    let peak = peak_enqueued(&bed.provider)?;
    Ok((bed, peak))
}

#[tokio::test]
async fn admission_keeps_the_enqueued_tokens_under_the_limit() -> TestResult {
    // GIVEN the same two jobs without a limit: every chunk goes at once
    let (free, free_peak) = run_two_jobs(None).await?;
    let chunk_tokens = free_peak / 6;
    assert_eq!(
        free.provider.open_at_submits().last().map(Vec::len),
        Some(6)
    );
    // WHEN the route's queue limit fits two chunks but not three
    let limit = chunk_tokens * 5 / 2;
    let (bed, peak) = run_two_jobs(Some(limit)).await?;
    // THEN the provider's queue never held more than the limit, yet two chunks went together
    assert!(peak <= limit, "peak {peak} > limit {limit}");
    assert!(peak > chunk_tokens, "peak {peak}: one chunk at a time");
    assert!(free_peak > limit);
    // AND every request still ran
    for name in ["q1", "q2"] {
        let summary = json(
            bed.store.as_ref(),
            &format!("results/sandbox/{name}/summary.json"),
        )
        .await?;
        assert_eq!(summary["counts"]["succeeded"], 12, "{summary}");
    }
    Ok(())
}
