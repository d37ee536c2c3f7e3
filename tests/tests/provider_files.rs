//! What a batch leaves at the provider goes once its lines are in the bucket: the chunk's
//! input file and the batch's output and error files (OpenAI's Files API), or the ended
//! message batch itself (Anthropic); `keep_provider_files = true` leaves them, and OpenAI's
//! files are told to expire after `provider_file_days` anyway. Against the sandbox over HTTP,
//! listing what it still holds.

use batchdrop_core::clock::ManualClock;
use batchdrop_core::config::Config;
use batchdrop_core::engine::Engine;
use batchdrop_core::store::{MemoryStore, ObjectStore, PutMode};
use batchdrop_tests::jobs::{output, poll_until_idle};
use batchdrop_tests::{BoxError, TestResult};
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

/// Requests of the file: two batches of 3 on the route.
const REQUESTS: usize = 6;

/// How a test sets the route up.
#[derive(Clone, Copy)]
struct Setup {
    keep: bool,
    /// None: the built-in route's own (30 days for `sandbox`).
    file_days: Option<u32>,
}

const DEFAULT: Setup = Setup {
    keep: false,
    file_days: None,
};

/// Runs a file of [`REQUESTS`] on the built-in `route` against the sandbox at `sandbox_url`
/// (its client made from the config, as every command makes it) to its end; its output lines.
async fn run(
    sandbox_url: &str,
    route: &str,
    setup: Setup,
    line: impl Fn(usize) -> String,
) -> Result<Vec<Value>, BoxError> {
    let url = sandbox_url.to_string();
    let env = move |name: &str| (name == "BATCHDROP_SANDBOX_URL").then(|| url.clone());
    let mut config = Config::builtin(&env);
    let settings = config.routes.get_mut(route).ok_or("no such route")?;
    settings.limits.max_requests_per_batch = 3;
    settings.keep_provider_files = setup.keep;
    if setup.file_days.is_some() {
        settings.provider_file_days = setup.file_days;
    }
    let providers = batchdrop_core::providers::clients(&config.routes, &env);
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::from_unix_timestamp(
        1_767_225_600,
    )?));
    let engine = Engine::new(
        store.clone(),
        "bucket",
        Arc::new(config),
        Arc::new(providers),
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

    // WHEN the job runs to its end
    let out = run(&base, "sandbox", DEFAULT, chat).await?;

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

    // WHEN it runs to its end
    let keep = Setup {
        keep: true,
        ..DEFAULT
    };
    let out = run(&base, "sandbox", keep, chat).await?;

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
    let base = sandbox.base_url();
    let root = base.trim_end_matches("/v1").to_string();

    // WHEN the job runs to its end
    let out = run(&base, "sandbox-anthropic", DEFAULT, message).await?;

    // THEN every answer is in the bucket, and the sandbox keeps no batch of it
    assert_eq!(out.len(), REQUESTS);
    let batches = listed(&root, "/v1/messages/batches").await?;
    assert!(batches.is_empty(), "{batches:#?}");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batchs_files_expire_after_the_routes_provider_file_days() -> TestResult {
    // GIVEN a route that keeps its files, which should expire after 7 days
    let sandbox = batchdrop_tests::sandbox::instant().await?;
    let base = sandbox.base_url();
    let setup = Setup {
        keep: true,
        file_days: Some(7),
    };

    // WHEN a job runs on it to its end
    run(&base, "sandbox", setup, chat).await?;

    // THEN every input and output file the sandbox holds expires 7 days after it was made
    let files = listed(&base, "/files").await?;
    assert_eq!(files.len(), 4, "{files:#?}");
    for file in &files {
        let (made, expires) = (file["created_at"].as_i64(), file["expires_at"].as_i64());
        assert_eq!(
            expires.zip(made).map(|(e, m)| e - m),
            Some(7 * 86_400),
            "{file:#?}"
        );
    }
    sandbox.stop().await;
    Ok(())
}
