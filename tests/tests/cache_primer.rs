//! The prompt-cache primer end to end: the engine, the real Anthropic client and the sandbox
//! over HTTP, whose Anthropic side keeps a prompt cache as the real API does (a cold batch's
//! requests miss each other's writes). Requests sharing a 1,200-word system prompt with a
//! `cache_control` breakpoint: without the primer the batch reads nothing from the cache; with
//! `cache_primer` one request goes first through `/v1/messages` and the batch reads the cache,
//! which the job's cost report prices at a tenth of the input price.

use batchdrop_core::clock::ManualClock;
use batchdrop_core::config::Config;
use batchdrop_core::engine::Engine;
use batchdrop_core::provider::Provider;
use batchdrop_core::providers::AnthropicProvider;
use batchdrop_core::store::{MemoryStore, ObjectStore, PutMode};
use batchdrop_sandbox::{Sandbox, SandboxConfig, SandboxStats};
use batchdrop_tests::jobs::{output, poll_until_idle, summary};
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

const ROUTE: &str = "sandbox-anthropic";
const KEY: &str = "inbox/sandbox-anthropic/cached.jsonl";
const RESULTS: &str = "results/sandbox-anthropic/cached/";
const N: usize = 6;
const PREFIX_WORDS: u64 = 1200;

fn file() -> String {
    (0..N)
        .map(|i| {
            json!({"custom_id": format!("c{i}"), "params": {
                "model": "claude-haiku-4-5", "max_tokens": 20,
                "system": [{"type": "text", "text": "rule ".repeat(PREFIX_WORDS as usize),
                            "cache_control": {"type": "ephemeral"}}],
                "messages": [{"role": "user", "content": format!("question {i}")}]}})
            .to_string()
                + "\n"
        })
        .collect()
}

struct Finished {
    output: Vec<Value>,
    summary: Value,
    stats: SandboxStats,
}

async fn run(primer: bool) -> Result<Finished, Error> {
    let sandbox = Sandbox::start("127.0.0.1:0".parse()?, SandboxConfig::default()).await?;
    let provider: Arc<dyn Provider> =
        Arc::new(AnthropicProvider::new(&sandbox.anthropic_base_url(), None));
    let mut providers: HashMap<String, Result<Arc<dyn Provider>, String>> = HashMap::new();
    providers.insert(ROUTE.to_string(), Ok(provider));
    let mut config = Config::builtin(&|_| None);
    let route = config
        .routes
        .get_mut(ROUTE)
        .ok_or("no sandbox-anthropic route")?;
    route.spend.cache_primer = primer;
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let engine = Engine::new(
        store.clone(),
        "bucket",
        Arc::new(config),
        Arc::new(providers),
        clock,
    );
    let meta = store.put(KEY, Bytes::from(file()), PutMode::Create).await?;
    engine.submit(KEY, Some(&meta.etag)).await?;
    let polled = poll_until_idle(&engine, store.as_ref(), 20, || {}).await;
    let stats = sandbox.stats();
    sandbox.stop().await;
    polled?;
    Ok(Finished {
        output: output(store.as_ref(), RESULTS).await?,
        summary: summary(store.as_ref(), RESULTS).await?,
        stats,
    })
}

fn cache_reads(output: &[Value]) -> Vec<u64> {
    output
        .iter()
        .map(|l| {
            l["result"]["message"]["usage"]["cache_read_input_tokens"]
                .as_u64()
                .unwrap_or(u64::MAX)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_primer_a_cold_batch_reads_nothing_from_the_cache() -> TestResult {
    // GIVEN 6 requests sharing a cached 1,200-word system prompt, the route without a primer
    // WHEN the file runs to the end
    let run = run(false).await?;

    // THEN every request wrote the prefix and none read it; nothing went synchronously
    assert_eq!(cache_reads(&run.output), vec![0; N]);
    assert_eq!(run.stats.message_requests, 0);
    let usage = &run.summary["usage"];
    assert_eq!(usage["cache_write_tokens"], N as u64 * PREFIX_WORDS);
    assert!(usage.get("cache_read_tokens").is_none(), "{usage}");
    // AND the cost report shows what the writes cost over plain input
    assert!(
        run.summary["cost"]["cache_saved"].as_f64().unwrap_or(0.0) < 0.0,
        "{}",
        run.summary["cost"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_primer_the_batch_reads_the_cached_prefix() -> TestResult {
    // GIVEN the same file, the route with cache_primer
    // WHEN the file runs to the end
    let run = run(true).await?;

    // THEN one request went first through /v1/messages, and every request of the batch read
    // the 1,200 cached tokens
    assert_eq!(run.stats.message_requests, 1);
    assert_eq!(cache_reads(&run.output), vec![PREFIX_WORDS; N]);
    // AND every request has exactly one line, succeeded
    assert_eq!(run.summary["counts"]["succeeded"], N as u64);
    // AND the usage counts the batch's reads and the primer's write, and caching saved money
    let usage = &run.summary["usage"];
    assert_eq!(usage["cache_read_tokens"], N as u64 * PREFIX_WORDS);
    assert_eq!(usage["cache_write_tokens"], PREFIX_WORDS);
    let cost = &run.summary["cost"];
    assert!(cost["cache_saved"].as_f64().unwrap_or(0.0) > 0.0, "{cost}");
    assert!(cost["on_demand"].as_f64().unwrap_or(0.0) > 0.0, "{cost}");
    Ok(())
}
