//! What a batch leaves at the provider goes once its lines are in the bucket: the chunk's
//! input file and the batch's output and error files (OpenAI's Files API), or the ended
//! message batch itself (Anthropic); `keep_provider_files = true` leaves them. Against the
//! sandbox over HTTP, listing what it still holds.

use batchdrop_core::clock::ManualClock;
use batchdrop_core::config::Config;
use batchdrop_core::engine::Engine;
use batchdrop_core::provider::Provider;
use batchdrop_core::providers::{AnthropicProvider, OpenAiProvider};
use batchdrop_core::store::{MemoryStore, ObjectStore, PutMode};
use batchdrop_tests::clocks::one_route;
use batchdrop_tests::jobs::{output, poll_until_idle};
use batchdrop_tests::{BoxError, TestResult};
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

/// Requests of the file: two batches of 3 on the route.
const REQUESTS: usize = 6;

/// Runs a file of [`REQUESTS`] on `route` (the sandbox's, through `provider`) to its end;
/// its output lines.
async fn run(
    route: &str,
    provider: Arc<dyn Provider>,
    keep: bool,
    line: impl Fn(usize) -> String,
) -> Result<Vec<Value>, BoxError> {
    let mut config = Config::builtin(&|_| None);
    let settings = config.routes.get_mut(route).ok_or("no such route")?;
    settings.limits.max_requests_per_batch = 3;
    settings.keep_provider_files = keep;
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::from_unix_timestamp(
        1_767_225_600,
    )?));
    let engine = Engine::new(
        store.clone(),
        "bucket",
        Arc::new(config),
        Arc::new(one_route(route, provider)),
        clock,
    );
    let key = format!("inbox/{route}/files.jsonl");
    let body: String = (1..=REQUESTS).map(|i| line(i) + "\n").collect();
    let meta = store.put(&key, Bytes::from(body), PutMode::Create).await?;
    engine.submit(&key, Some(&meta.etag)).await?;
    poll_until_idle(&engine, store.as_ref(), 30, || {}).await?;
    output(store.as_ref(), &format!("results/{route}/files/")).await
}

fn chat(i: usize) -> String {
    format!(
        r#"{{"custom_id":"r{i}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"q{i}"}}]}}}}"#
    )
}

fn message(i: usize) -> String {
    format!(
        r#"{{"custom_id":"r{i}","params":{{"model":"claude-3-5-haiku-latest","max_tokens":16,"messages":[{{"role":"user","content":"q{i}"}}]}}}}"#
    )
}

/// `GET <base><path>` from the sandbox: its `data`.
async fn listed(base: &str, path: &str) -> Result<Vec<Value>, BoxError> {
    let list: Value = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header("x-api-key", "sk-test")
        .header("anthropic-version", "2023-06-01")
        .bearer_auth("sk-test")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(list["data"].as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collected_batchs_files_are_deleted_at_the_provider() -> TestResult {
    // GIVEN the sandbox, and a job of two OpenAI batches on it
    let sandbox = batchdrop_tests::sandbox::instant().await?;
    let base = sandbox.base_url();
    let provider = Arc::new(OpenAiProvider::new(&base, None));

    // WHEN the job runs to its end
    let out = run("sandbox", provider, false, chat).await?;

    // THEN every answer is in the bucket, and the sandbox keeps no file of it
    assert_eq!(out.len(), REQUESTS);
    assert_eq!(listed(&base, "/batches").await?.len(), 2);
    let files = listed(&base, "/files").await?;
    assert!(files.is_empty(), "{files:#?}");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_provider_files_leaves_them_there() -> TestResult {
    // GIVEN the same job on a route with keep_provider_files
    let sandbox = batchdrop_tests::sandbox::instant().await?;
    let base = sandbox.base_url();
    let provider = Arc::new(OpenAiProvider::new(&base, None));

    // WHEN it runs to its end
    let out = run("sandbox", provider, true, chat).await?;

    // THEN both input files and both output files are still there
    assert_eq!(out.len(), REQUESTS);
    let files = listed(&base, "/files").await?;
    let purposes: Vec<&str> = files.iter().filter_map(|f| f["purpose"].as_str()).collect();
    assert_eq!(
        purposes.iter().filter(|p| **p == "batch").count(),
        2,
        "{files:#?}"
    );
    assert_eq!(
        purposes.iter().filter(|p| **p == "batch_output").count(),
        2,
        "{files:#?}"
    );
    sandbox.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_message_batch_is_deleted_once_collected() -> TestResult {
    // GIVEN the sandbox's Anthropic side, and a job of two message batches on it
    let sandbox = batchdrop_tests::sandbox::instant().await?;
    let root = sandbox.base_url().trim_end_matches("/v1").to_string();
    let provider = Arc::new(AnthropicProvider::new(&root, None));

    // WHEN the job runs to its end
    let out = run("sandbox-anthropic", provider, false, message).await?;

    // THEN every answer is in the bucket, and the sandbox keeps no batch of it
    assert_eq!(out.len(), REQUESTS);
    let batches = listed(&root, "/v1/messages/batches").await?;
    assert!(batches.is_empty(), "{batches:#?}");
    sandbox.stop().await;
    Ok(())
}
