//! The synchronous lane of the batch providers: an `openai` or `anthropic` route whose batch
//! minimum no file reaches sends every request on its own (`Provider::invoke`) to the
//! sandbox's synchronous API (`/v1/chat/completions`, `/v1/messages`), and output.jsonl holds
//! every answer once, in input order, with no batch made.

use batchdrop_core::clock::SystemClock;
use batchdrop_core::config::{BelowMinimum, Config};
use batchdrop_core::engine::Engine;
use batchdrop_core::layout::ACTIVE;
use batchdrop_core::provider::{Provider, Providers};
use batchdrop_core::providers::{AnthropicProvider, OpenAiProvider};
use batchdrop_core::store::{MemoryStore, ObjectStore, ObjectStoreExt, PutMode};
use batchdrop_sandbox::{Sandbox, SandboxConfig, SandboxStats};
use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

/// Requests in the file: more than one piece of answers (16).
const N: usize = 40;

/// Drops `body` into `route`'s inbox, whose batch minimum is over the file's size, with
/// `provider` serving it; polls the job to the end and returns output.jsonl's lines.
async fn run_below_minimum(
    route: &str,
    provider: Arc<dyn Provider>,
    body: String,
) -> Result<Vec<Value>, Error> {
    let mut config = Config::builtin(&|_| None);
    let built_in = config
        .routes
        .get_mut(route)
        .ok_or_else(|| format!("no built-in route {route}"))?;
    built_in.limits.min_requests_per_batch = N as u64 + 1;
    built_in.below_minimum = BelowMinimum::OnDemand;
    let mut providers: HashMap<String, Result<Arc<dyn Provider>, String>> = HashMap::new();
    providers.insert(route.to_string(), Ok(provider));
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let engine = Engine::new(
        store.clone(),
        "bucket",
        Arc::new(config),
        Arc::new(providers) as Arc<dyn Providers>,
        Arc::new(SystemClock),
    );
    let key = format!("inbox/{route}/lane.jsonl");
    let meta = store.put(&key, Bytes::from(body), PutMode::Create).await?;
    engine.submit(&key, Some(&meta.etag)).await?;
    for _ in 0..10 {
        if store.list(ACTIVE).await?.is_empty() {
            break;
        }
        let report = engine.poll().await?;
        if let Some((id, e)) = report.failures.into_iter().next() {
            return Err(format!("poll failed on {id}: {e}").into());
        }
    }
    let bytes = store
        .get_bytes(&format!("results/{route}/lane/output.jsonl"))
        .await?;
    let lines = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice)
        .collect::<Result<_, _>>()?;
    Ok(lines)
}

fn ids(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or("<none>"))
        .collect()
}

async fn sandbox() -> Result<Sandbox, Error> {
    Ok(Sandbox::start("127.0.0.1:0".parse()?, SandboxConfig::default()).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_route_below_its_minimum_answers_every_request_in_order() -> TestResult {
    // GIVEN the sandbox-anthropic route with a minimum over the file's 40 requests, and ids
    // of which one Anthropic would refuse (sent as bd_<line>)
    let sandbox = sandbox().await?;
    let provider = Arc::new(AnthropicProvider::new(&sandbox.anthropic_base_url(), None));
    let expected: Vec<String> = (0..N)
        .map(|i| {
            if i == 7 {
                "has.dots".into()
            } else {
                format!("r{i:03}")
            }
        })
        .collect();
    let body: String = expected
        .iter()
        .enumerate()
        .map(|(i, id)| {
            serde_json::json!({"custom_id": id, "params": {"model": "claude-sonnet-4-5",
                "max_tokens": 50, "messages": [{"role": "user", "content": format!("question {i}")}]}})
            .to_string()
                + "\n"
        })
        .collect();

    // WHEN the file is dropped and the job polled to the end
    let out = run_below_minimum("sandbox-anthropic", provider, body).await?;

    // THEN every request succeeded, under its own id, in input order
    assert_eq!(ids(&out), expected);
    assert!(
        out.iter().all(|l| l["result"]["type"] == "succeeded"),
        "{out:?}"
    );
    // AND each was one Messages API call; no batch was made
    let stats: SandboxStats = sandbox.stats();
    assert_eq!(stats.message_requests, N as u64);
    assert_eq!(stats.message_batches_created, 0);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_route_below_its_minimum_answers_every_request_in_order() -> TestResult {
    // GIVEN the sandbox route with a minimum over the file's 40 requests
    let sandbox = sandbox().await?;
    let provider = Arc::new(OpenAiProvider::new(&sandbox.base_url(), None));
    let expected: Vec<String> = (0..N).map(|i| format!("r{i:03}")).collect();
    let body: String = expected
        .iter()
        .enumerate()
        .map(|(i, id)| {
            serde_json::json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("question {i}")}]}})
            .to_string()
                + "\n"
        })
        .collect();

    // WHEN the file is dropped and the job polled to the end
    let out = run_below_minimum("sandbox", provider, body).await?;

    // THEN every request was answered, in input order
    assert_eq!(ids(&out), expected);
    assert!(
        out.iter().all(|l| l["response"]["status_code"] == 200),
        "{out:?}"
    );
    // AND each was one chat completion; no file was uploaded, no batch made
    let stats = sandbox.stats();
    assert_eq!(stats.sync_requests, N as u64);
    assert_eq!((stats.files_uploaded, stats.batches_created), (0, 0));
    sandbox.stop().await;
    Ok(())
}
