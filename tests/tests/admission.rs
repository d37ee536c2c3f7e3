//! Queue-aware admission end to end: the engine, the real OpenAI client and the sandbox over
//! HTTP, the sandbox applying OpenAI's enqueued-token limit per model
//! (`enqueued_token_limit`). The engine and the sandbox each read a manual clock that the test
//! moves on together, poll by poll: nothing sleeps.
//!
//! A file of many chunks whose input tokens, all together, are several times the limit: with
//! the route's `max_enqueued_tokens` equal to the sandbox's limit the engine holds chunks back
//! and the sandbox refuses none; without it the sandbox refuses batches with
//! `token_limit_exceeded`, the engine sends their requests again once its batches in flight
//! have drained, and the job still finishes.

use batchdrop_core::config::Config;
use batchdrop_core::engine::Engine;
use batchdrop_core::store::{MemoryStore, ObjectStore, PutMode};
use batchdrop_sandbox::{Faults, Sandbox, SandboxConfig, SandboxStats};
use batchdrop_tests::clocks::{Clocks, one_route, openai_provider};
use batchdrop_tests::jobs::{custom_ids, output, poll_until_idle, summary};
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

const ROUTE: &str = "sandbox";
const KEY: &str = "inbox/sandbox/big.jsonl";
const RESULTS: &str = "results/sandbox/big/";
const BUCKET: &str = "bucket";
/// 240 requests in chunks of 20: 12 chunks.
const N: usize = 240;
const PER_CHUNK: u64 = 20;
/// Each prompt is 10 words: 10 sandbox tokens a request, 200 a chunk, 2,400 the file; the
/// engine's tokenizer counts more (the words' tokens plus OpenAI's chat framing).
const WORDS: &str = "please summarise the following short note in plain words";
/// The queue per model: about three chunks by the sandbox's count.
const LIMIT: u64 = 700;
const STEP: Duration = Duration::from_secs(60);

/// The engine's clock and the sandbox's, moved on together.
/// What one run of the file left: its output lines, summary and the sandbox's counts.
struct Finished {
    output: Vec<Value>,
    summary: Value,
    stats: SandboxStats,
}

/// Runs the file through the engine against a sandbox with the enqueued-token limit, the route
/// admitting against `max_enqueued_tokens`; polls a step apart until the job is done.
async fn run(max_enqueued_tokens: Option<u64>) -> Result<Finished, Error> {
    let clocks = Clocks::at_unix(1_800_000_000)?;
    let sandbox = Sandbox::start_with_clock(
        "127.0.0.1:0".parse()?,
        SandboxConfig {
            step: STEP,
            faults: Faults::default().enqueued_token_limit(LIMIT),
            ..SandboxConfig::default()
        },
        clocks.sandbox.clone(),
    )
    .await?;
    let providers = one_route(
        ROUTE,
        openai_provider(&sandbox.base_url(), clocks.engine.clone()),
    );
    let mut config = Config::builtin(&|_| None);
    let route = config.routes.get_mut(ROUTE).ok_or("no sandbox route")?;
    route.limits.max_requests_per_batch = PER_CHUNK;
    route.spend.max_enqueued_tokens = max_enqueued_tokens;
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let engine = Engine::new(
        store.clone(),
        BUCKET,
        Arc::new(config),
        Arc::new(providers),
        clocks.engine.clone(),
    );

    let body: String = (0..N)
        .map(|i| format!(r#"{{"custom_id":"r{i:03}","prompt":"{WORDS}"}}"#) + "\n")
        .collect();
    let meta = store.put(KEY, Bytes::from(body), PutMode::Create).await?;
    engine.submit(KEY, Some(&meta.etag)).await?;
    let polled = poll_until_idle(&engine, store.as_ref(), 400, || clocks.advance(STEP)).await;
    let stats = sandbox.stats();
    sandbox.stop().await;
    polled?;
    Ok(Finished {
        output: output(store.as_ref(), RESULTS).await?,
        summary: summary(store.as_ref(), RESULTS).await?,
        stats,
    })
}

fn expected_ids() -> Vec<String> {
    (0..N).map(|i| format!("r{i:03}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_queue_limit_configured_a_big_file_meets_no_refusal() -> TestResult {
    // GIVEN 12 chunks whose tokens are several times the sandbox's queue, and the route's
    // max_enqueued_tokens set to that queue
    // WHEN the file runs to the end
    let run = run(Some(LIMIT)).await?;

    // THEN the sandbox refused no batch, every request was answered once, in input order
    assert_eq!(run.stats.faults.enqueued_token_limit, 0, "{:?}", run.stats);
    assert_eq!(custom_ids(&run.output), expected_ids());
    assert!(
        run.output
            .iter()
            .all(|l| l["response"]["status_code"] == 200),
        "{:?}",
        run.output
            .iter()
            .find(|l| l["response"]["status_code"] != 200)
    );
    assert_eq!(run.summary["status"], "completed");
    assert_eq!(run.summary["counts"]["succeeded"], N as u64);
    // AND the chunks went a few at a time: exactly one batch per chunk, none sent again
    assert_eq!(run.stats.batches_created, N as u64 / PER_CHUNK);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_queue_limit_refused_batches_are_sent_again_and_the_job_finishes() -> TestResult
{
    // GIVEN the same file and sandbox, the route without max_enqueued_tokens
    // WHEN the file runs to the end
    let run = run(None).await?;

    // THEN the sandbox refused batches for the queue
    assert!(
        run.stats.faults.enqueued_token_limit > 0,
        "expected refusals: {:?}",
        run.stats
    );
    assert!(run.stats.batches_created > N as u64 / PER_CHUNK);
    // AND the job finished with every request answered (the refusals were sent again once
    // the batches in flight had drained), a line each, in input order
    assert_eq!(custom_ids(&run.output), expected_ids());
    assert_eq!(run.summary["status"], "completed");
    assert_eq!(
        run.summary["counts"]["succeeded"], N as u64,
        "{}",
        run.summary
    );
    Ok(())
}
