//! The fault matrix: the engine, the real provider clients and the sandbox with injected faults
//! — each fault alone, then all at once with a seed — on both wire formats. Whatever happens,
//! every accepted request ends in exactly one line of output.jsonl, in input order, and no
//! chunk is submitted as two batches.

use batchdrop_core::clock::{ManualClock, SystemClock};
use batchdrop_core::config::Config;
use batchdrop_core::engine::Engine;
use batchdrop_core::provider::{Provider, Providers};
use batchdrop_core::providers::{AnthropicProvider, OpenAiProvider, RetryPolicy};
use batchdrop_core::store::{MemoryStore, ObjectStore, ObjectStoreExt, PutMode};
use batchdrop_sandbox::{Faults, Sandbox, SandboxConfig};
use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const REQUESTS: usize = 24;

/// The two providers the sandbox speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Openai,
    Anthropic,
}

fn input(wire: Wire) -> String {
    (0..REQUESTS)
        .map(|i| {
            let line = match wire {
                Wire::Openai => serde_json::json!({"custom_id": format!("r{i:02}"), "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("q {i}")}]}}),
                Wire::Anthropic => serde_json::json!({"custom_id": format!("r{i:02}"),
                    "params": {"model": "claude-sonnet-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": format!("q {i}")}]}}),
            };
            line.to_string() + "\n"
        })
        .collect()
}

/// Runs one file through the engine against a sandbox with `spec`; returns the output lines
/// and the sandbox.
async fn run(
    wire: Wire,
    spec: &str,
) -> Result<(Vec<Value>, Value, Sandbox), Box<dyn std::error::Error + Send + Sync>> {
    let faults = Faults::parse(spec).map_err(|e| format!("{spec}: {e}"))?;
    let sandbox = Sandbox::start(
        "127.0.0.1:0".parse()?,
        SandboxConfig {
            faults,
            ..SandboxConfig::default()
        },
    )
    .await?;
    // Retries wait on a manual clock: instant, and never sleeping for real.
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let retry = RetryPolicy {
        max_attempts: 6,
        initial: Duration::from_millis(10),
        max: Duration::from_millis(100),
    };
    let route = match wire {
        Wire::Openai => "sandbox",
        Wire::Anthropic => "sandbox-anthropic",
    };
    let provider: Arc<dyn Provider> = match wire {
        Wire::Openai => Arc::new(
            OpenAiProvider::new(&sandbox.base_url(), None)
                .with_clock(clock.clone())
                .with_retry(retry),
        ),
        Wire::Anthropic => Arc::new(
            AnthropicProvider::new(&sandbox.anthropic_base_url(), None)
                .with_clock(clock.clone())
                .with_retry(retry),
        ),
    };
    let mut providers: HashMap<String, Result<Arc<dyn Provider>, String>> = HashMap::new();
    providers.insert(route.to_string(), Ok(provider));
    let mut config = Config::builtin(&|_| None);
    for r in config.routes.values_mut() {
        r.limits.max_requests_per_batch = 5;
        r.retries.max_attempts = 4;
    }
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let engine = Engine::new(
        store.clone(),
        "bucket",
        Arc::new(config),
        Arc::new(providers) as Arc<dyn Providers>,
        Arc::new(SystemClock),
    );
    let key = format!("inbox/{route}/matrix.jsonl");
    let meta = store
        .put(&key, Bytes::from(input(wire)), PutMode::Create)
        .await?;
    // S3 delivers the event again when submit fails: so does this loop.
    let mut started = false;
    for _ in 0..20 {
        if engine.submit(&key, Some(&meta.etag)).await.is_ok() {
            started = true;
            break;
        }
    }
    assert!(started, "{spec}: submit never succeeded");
    let results = format!("results/{route}/matrix/");
    for _ in 0..200 {
        let _ = engine.poll().await;
        if store.exists(&format!("{results}summary.json")).await? {
            break;
        }
    }
    let summary: Value = serde_json::from_slice(
        &store
            .get_bytes(&format!("{results}summary.json"))
            .await
            .map_err(|e| format!("{spec}: no summary: {e}"))?,
    )?;
    let output = String::from_utf8(
        store
            .get_bytes(&format!("{results}output.jsonl"))
            .await?
            .to_vec(),
    )?
    .lines()
    .map(serde_json::from_str)
    .collect::<Result<Vec<Value>, _>>()?;
    Ok((output, summary, sandbox))
}

/// Batches the sandbox made, read without faults getting in the way (retried until answered).
async fn openai_batches(
    sandbox: &Sandbox,
) -> Result<Vec<Value>, Box<dyn std::error::Error + Send + Sync>> {
    let client = reqwest::Client::new();
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{}/batches?limit=100", sandbox.base_url());
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page: Value = loop {
            if let Ok(resp) = client.get(&url).bearer_auth("sandbox").send().await
                && resp.status().is_success()
            {
                break resp.json().await?;
            }
        };
        let data = page["data"].as_array().cloned().unwrap_or_default();
        after = data
            .last()
            .and_then(|b| b["id"].as_str())
            .map(str::to_string);
        all.extend(data);
        if page["has_more"] != true {
            return Ok(all);
        }
    }
}

async fn check(wire: Wire, spec: &str) -> TestResult {
    let (output, summary, sandbox) = run(wire, spec).await?;
    // Every accepted request exactly once, in order.
    let ids: Vec<&str> = output
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or("?"))
        .collect();
    let expected: Vec<String> = (0..REQUESTS).map(|i| format!("r{i:02}")).collect();
    assert_eq!(ids, expected, "{wire:?} {spec}");
    let c = &summary["counts"];
    assert_eq!(
        c["succeeded"].as_u64().unwrap_or(0) + c["failed"].as_u64().unwrap_or(0),
        REQUESTS as u64,
        "{spec}: {summary}"
    );
    // No chunk submitted twice.
    let recorded: Vec<&str> = summary["batches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["id"].as_str())
        .collect();
    match wire {
        Wire::Openai => {
            let mut per_chunk: HashMap<String, usize> = HashMap::new();
            for b in openai_batches(&sandbox).await? {
                let chunk = b["metadata"]["batchdrop_chunk"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string();
                *per_chunk.entry(chunk).or_default() += 1;
            }
            assert!(per_chunk.values().all(|n| *n == 1), "{spec}: {per_chunk:?}");
            assert_eq!(
                per_chunk.len(),
                recorded.len(),
                "{spec}: every batch made is one the job knows"
            );
        }
        Wire::Anthropic => {
            let made = sandbox.stats().message_batches_created as usize;
            assert_eq!(
                made,
                recorded.len(),
                "{spec}: batches made vs batches the job knows"
            );
        }
    }
    sandbox.stop().await;
    Ok(())
}

const SPECS: &[&str] = &[
    "seed=1,http429=0.3,retry_after_ms=1",
    "seed=2,http500=0.3",
    "seed=3,drop=0.15",
    "seed=4,validation=0.3",
    "seed=5,token_limit=0.4",
    "seed=6,expire=0.5,expire_keep=0.5",
    "seed=7,no_output=0.4",
    "seed=8,req429=0.2,req500=0.1,req400=0.1",
];

const ALL_AT_ONCE: &str = "seed=42,http429=0.1,http500=0.05,drop=0.05,retry_after_ms=1,validation=0.1,token_limit=0.1,expire=0.1,no_output=0.1,req429=0.1,req500=0.05,req400=0.05";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_each_fault_alone_loses_no_request_and_duplicates_no_batch() -> TestResult {
    for spec in SPECS {
        check(Wire::Openai, spec).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_all_faults_at_once_lose_no_request_and_duplicate_no_batch() -> TestResult {
    check(Wire::Openai, ALL_AT_ONCE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_each_fault_alone_loses_no_request_and_duplicates_no_batch() -> TestResult {
    for spec in SPECS {
        check(Wire::Anthropic, spec).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_all_faults_at_once_lose_no_request_and_duplicate_no_batch() -> TestResult {
    check(
        Wire::Anthropic,
        &ALL_AT_ONCE.replace(
            "req429=0.1,req500=0.05,req400=0.05",
            "result_errored=0.1,result_expired=0.1",
        ),
    )
    .await
}
