//! The synchronous lane under faults: the engine, the `openai-sync` client and the sandbox's
//! synchronous endpoints with 429s injected. The client sends each request once; the lane
//! retries, waiting out `retry-after` on the engine's (manual) clock. Every request ends in
//! output.jsonl once, in input order, and the server answered each exactly once.

use batchdrop_core::clock::ManualClock;
use batchdrop_core::config::Config;
use batchdrop_core::engine::Engine;
use batchdrop_core::layout::ACTIVE;
use batchdrop_core::provider::{Provider, Providers};
use batchdrop_core::providers::OpenAiSyncProvider;
use batchdrop_core::store::{MemoryStore, ObjectStore, ObjectStoreExt, PutMode};
use batchdrop_sandbox::{Faults, Sandbox, SandboxConfig};
use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

const ROUTE: &str = "sandbox-sync";
const KEY: &str = "inbox/sandbox-sync/lane.jsonl";
const RESULTS: &str = "results/sandbox-sync/lane/";
const N: usize = 300;

/// The answer of the injected 429s: retry after 1.5 s.
const RETRY_AFTER: Duration = Duration::from_millis(1500);

async fn run(spec: &str) -> TestResult {
    let sandbox = Sandbox::start(
        "127.0.0.1:0".parse()?,
        SandboxConfig {
            faults: Faults::parse(spec).map_err(|e| format!("{spec}: {e}"))?,
            ..SandboxConfig::default()
        },
    )
    .await?;
    // The lane's retries wait on the engine's manual clock: instant, never sleeping for real.
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let provider: Arc<dyn Provider> = Arc::new(OpenAiSyncProvider::new(&sandbox.base_url(), None));
    let mut providers: HashMap<String, Result<Arc<dyn Provider>, String>> = HashMap::new();
    providers.insert(ROUTE.to_string(), Ok(provider));
    let mut config = Config::builtin(&|_| None);
    if let Some(route) = config.routes.get_mut(ROUTE) {
        route.limits.max_requests_per_batch = 100;
        route.max_concurrency = Some(8);
        route.retries.max_attempts = 4;
    }
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let engine = Engine::new(
        store.clone(),
        "bucket",
        Arc::new(config),
        Arc::new(providers) as Arc<dyn Providers>,
        clock.clone(),
    );
    let body: String = (0..N)
        .map(|i| format!(r#"{{"custom_id":"r{i:03}","prompt":"q {i}"}}"#) + "\n")
        .collect();
    let meta = store.put(KEY, Bytes::from(body), PutMode::Create).await?;
    let _ = engine.submit(KEY, Some(&meta.etag)).await;
    for _ in 0..50 {
        let _ = engine.poll().await;
        if store.list(ACTIVE).await?.is_empty() {
            break;
        }
    }
    let bytes = store.get_bytes(&format!("{RESULTS}output.jsonl")).await?;
    let out: Vec<Value> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice)
        .collect::<Result<_, _>>()?;
    let ids: Vec<&str> = out
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or("?"))
        .collect();
    let expected: Vec<String> = (0..N).map(|i| format!("r{i:03}")).collect();
    assert_eq!(ids, expected, "{spec}");
    assert!(
        out.iter().all(|l| l["response"]["status_code"] == 200),
        "{spec}: a request was not answered"
    );
    let stats = sandbox.stats();
    assert_eq!(
        stats.sync_requests as usize, N,
        "{spec}: answered once each"
    );
    assert!(
        stats.faults.http429 >= N as u64 / 10,
        "{spec}: the faults were injected ({:?})",
        stats.faults
    );
    // The lane retried the 429s on the engine's clock (the client, sending each request once,
    // has its own clock and never slept on this one), never before their retry-after.
    let sleeps = clock.sleeps();
    assert!(sleeps.contains(&RETRY_AFTER), "{spec}: {sleeps:?}");
    assert!(
        sleeps.iter().all(|s| *s >= RETRY_AFTER),
        "{spec}: a wait shorter than retry-after: {sleeps:?}"
    );
    sandbox.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_429s_lose_nothing_and_answer_nothing_twice() -> TestResult {
    run("seed=3,http429=0.2,retry_after_ms=1500").await
}
