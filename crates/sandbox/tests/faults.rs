//! Fault injection: each fault alone looks as the real API's, the same seed gives the same
//! outcomes, an empty spec injects nothing, and specs are parsed with clear errors.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use batchdrop_sandbox::{
    FaultStats, Faults, FaultsError, ManualClock, Rate, Sandbox, SandboxConfig, SandboxStats,
};
use common::{CHAT, Harness, Result, T0, chat_file, custom_ids, set_clock, start, text};
use serde_json::{Value, json};

const KEY: &str = "sk-ant-test";
const VERSION: &str = "2023-06-01";

// ---- Helpers ------------------------------------------------------------------------------

/// An instant sandbox (step 0, system clock) injecting `spec`.
async fn sandbox_with(spec: &str) -> Result<Harness> {
    let config = SandboxConfig {
        faults: Faults::parse(spec)?,
        ..SandboxConfig::default()
    };
    start(config, None).await
}

/// A sandbox injecting `spec` whose batches spend `step` per state, on a manual clock at T0.
async fn sandbox_with_clock(spec: &str, step: Duration) -> Result<(Harness, Arc<ManualClock>)> {
    let clock = Arc::new(ManualClock::at_unix(T0));
    let config = SandboxConfig {
        step,
        faults: Faults::parse(spec)?,
        ..SandboxConfig::default()
    };
    Ok((start(config, Some(clock.clone())).await?, clock))
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// `GET /v1/batches` with a key: the raw response.
async fn list_openai(sandbox: &Harness) -> Result<reqwest::Response> {
    Ok(sandbox
        .client
        .get(sandbox.url("/batches"))
        .bearer_auth("sk-test")
        .send()
        .await?)
}

fn anthropic_url(sandbox: &Harness, path: &str) -> String {
    format!(
        "{}/v1/messages/batches{path}",
        sandbox.sandbox.anthropic_base_url()
    )
}

/// Sends `request` with an Anthropic key and version: the raw response.
async fn anthropic(request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
    Ok(request
        .header("x-api-key", KEY)
        .header("anthropic-version", VERSION)
        .send()
        .await?)
}

/// `n` Anthropic requests `req-0` … `req-{n-1}`.
fn message_requests(n: usize) -> Value {
    let requests: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "custom_id": format!("req-{i}"),
                "params": {
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 100,
                    "messages": [{"role": "user", "content": format!("Question number {i}?")}],
                },
            })
        })
        .collect();
    json!({ "requests": requests })
}

/// Creates an Anthropic batch of `n` requests, which must answer 200.
async fn create_message_batch(sandbox: &Harness, n: usize) -> Result<Value> {
    let response = anthropic(
        sandbox
            .client
            .post(anthropic_url(sandbox, ""))
            .json(&message_requests(n)),
    )
    .await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await?;
    if status != 200 {
        return Err(format!("expected 200, got {status}: {body}").into());
    }
    Ok(body)
}

async fn retrieve_message_batch(sandbox: &Harness, batch: &Value) -> Result<Value> {
    let id = text(&batch["id"])?;
    Ok(anthropic(
        sandbox
            .client
            .get(anthropic_url(sandbox, &format!("/{id}"))),
    )
    .await?
    .error_for_status()?
    .json()
    .await?)
}

/// The results of an ended Anthropic batch, parsed.
async fn message_results(sandbox: &Harness, batch: &Value) -> Result<Vec<Value>> {
    let body = anthropic(sandbox.client.get(text(&batch["results_url"])?))
        .await?
        .error_for_status()?
        .text()
        .await?;
    body.lines()
        .map(|line| serde_json::from_str(line).map_err(Into::into))
        .collect()
}

/// The `custom_id`s of `lines`, sorted by their number (`req-N`).
fn sorted_ids(lines: &[Value]) -> Vec<String> {
    let mut ids = custom_ids(lines);
    ids.sort_by_key(|id| id[4..].parse::<u32>().unwrap_or(u32::MAX));
    ids
}

fn ids(numbers: &[usize]) -> Vec<String> {
    numbers.iter().map(|i| format!("req-{i}")).collect()
}

// ---- Spec parsing ---------------------------------------------------------------------------

#[test]
fn an_empty_spec_is_no_faults() -> Result {
    let faults = Faults::parse(" ")?;
    assert_eq!(faults, Faults::default());
    assert!(faults.is_empty());
    assert_eq!(faults.to_string(), "");
    Ok(())
}

#[test]
fn the_full_spec_sets_every_key() -> Result {
    // GIVEN the spec with every kind of key
    let spec = "seed=7,http429=0.1,http500=0.05,http529=0.01,timeout=0.02,drop=0.01,timeout_ms=250,\
                retry_after_ms=1500,latency_ms=50,validation=0.1,token_limit=every:5,enqueued_token_limit=2000000,expire=0.1,expire_keep=0.25,\
                no_output=0.1,finalizing=0.5,finalizing_extra=3,req429=0.05,req500=0.02,req400=0.01,\
                result_errored=0.03,result_expired=0.02";

    // WHEN it is parsed
    let faults = Faults::parse(spec)?;

    // THEN every field is set, and the canonical spec parses back to the same faults
    let expected = Faults {
        http529: Rate::Share(0.01),
        drop: Rate::Share(0.01),
        finalizing: Rate::Share(0.5),
        result_errored: Rate::Share(0.03),
        result_expired: Rate::Share(0.02),
        ..Faults::seeded(7)
            .http429(0.1)
            .http500(0.05)
            .timeout(0.02)
            .timeout_after(Duration::from_millis(250))
            .retry_after(Duration::from_millis(1500))
            .latency(Duration::from_millis(50))
            .validation(0.1)
            .token_limit(Rate::every(5))
            .enqueued_token_limit(2_000_000)
            .expire(0.1)
            .expire_keep(0.25)
            .no_output(0.1)
            .finalizing_extra(3)
            .request_error(429, 0.05)
            .request_error(500, 0.02)
            .request_error(400, 0.01)
    };
    assert_eq!(faults, expected);
    assert_eq!(Faults::parse(&faults.to_string())?, faults);
    assert!(!faults.is_empty());
    Ok(())
}

#[test]
fn an_unknown_key_is_named_in_the_error() {
    let error = Faults::parse("seed=1,htp429=0.1").err();
    assert_eq!(
        error,
        Some(FaultsError::UnknownKey {
            key: "htp429".to_owned()
        })
    );
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("`htp429`"), "{message}");
    assert!(message.contains("http429"), "{message}");
}

#[test]
fn a_bad_value_names_its_key_and_what_was_expected() {
    for (spec, key) in [
        ("http429=1.5", "http429"),
        ("token_limit=every:0", "token_limit"),
        ("expire_keep=half", "expire_keep"),
        ("seed=-1", "seed"),
        ("timeout_ms=soon", "timeout_ms"),
    ] {
        match Faults::parse(spec) {
            Err(error @ FaultsError::BadValue { .. }) => {
                let message = error.to_string();
                assert!(message.contains(&format!("`{key}`")), "{spec}: {message}");
                assert!(message.contains("expected"), "{spec}: {message}");
            }
            other => panic!("{spec}: expected a bad value error, got {other:?}"),
        }
    }
}

#[test]
fn a_request_status_key_needs_an_error_status() {
    assert_eq!(
        Faults::parse("req200=0.1").err(),
        Some(FaultsError::UnknownKey {
            key: "req200".to_owned()
        })
    );
}

#[test]
fn a_key_without_a_value_or_given_twice_is_refused() {
    assert_eq!(
        Faults::parse("http429").err(),
        Some(FaultsError::MissingValue {
            key: "http429".to_owned()
        })
    );
    assert_eq!(
        Faults::parse("http429=0.1,http429=0.2").err(),
        Some(FaultsError::Duplicate {
            key: "http429".to_owned()
        })
    );
}

#[test]
fn exclusive_probabilities_over_one_are_refused() {
    let error = Faults::parse("http429=0.6,http500=0.5,token_limit=0.9").err();
    match error {
        Some(FaultsError::OverOne { keys, .. }) => {
            assert_eq!(keys, vec!["http429".to_owned(), "http500".to_owned()]);
        }
        other => panic!("expected the sum to be refused, got {other:?}"),
    }
}

#[test]
fn faults_deserialize_from_a_toml_table_or_a_spec_string() -> Result {
    #[derive(serde::Deserialize)]
    struct Section {
        faults: Faults,
    }
    let table: Section = toml::from_str(
        "[faults]\nseed = 7\nhttp429 = 0.1\ntoken_limit = \"every:3\"\nreq500 = 0.02\ntimeout_ms = 500\n",
    )?;
    let string: Section = toml::from_str(
        "faults = \"seed=7,http429=0.1,token_limit=every:3,req500=0.02,timeout_ms=500\"",
    )?;
    let expected = Faults::seeded(7)
        .http429(0.1)
        .token_limit(Rate::every(3))
        .request_error(500, 0.02)
        .timeout_after(Duration::from_millis(500));
    assert_eq!(table.faults, expected);
    assert_eq!(string.faults, expected);
    Ok(())
}

#[test]
fn a_bad_toml_key_names_the_key() {
    let error = toml::from_str::<Faults>("htp429 = 0.1\n")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("`htp429`"), "{error}");
}

#[tokio::test]
async fn a_sandbox_does_not_start_with_invalid_faults() {
    let config = SandboxConfig {
        faults: Faults::default().http429(1.5),
        ..SandboxConfig::default()
    };
    let error = Sandbox::start(([127, 0, 0, 1], 0).into(), config)
        .await
        .err();
    assert_eq!(
        error.map(|e| e.kind()),
        Some(std::io::ErrorKind::InvalidInput)
    );
}

// ---- No faults ------------------------------------------------------------------------------

#[tokio::test]
async fn a_sandbox_with_an_empty_spec_injects_nothing() -> Result {
    // GIVEN a sandbox started with the empty spec
    let sandbox = sandbox_with("").await?;

    // WHEN a batch runs and the API is asked many times
    let created = sandbox.submit(&chat_file(50), CHAT).await?;
    for _ in 0..20 {
        assert_eq!(list_openai(&sandbox).await?.status().as_u16(), 200);
    }
    let batch = sandbox.batch(&created["id"]).await?;

    // THEN everything succeeds and no fault is counted
    assert_eq!(batch["status"], "completed");
    assert_eq!(
        batch["request_counts"],
        json!({"total": 50, "completed": 50, "failed": 0})
    );
    assert!(batch["error_file_id"].is_null());
    assert_eq!(sandbox.sandbox.stats().faults, FaultStats::default());
    sandbox.stop().await;
    Ok(())
}

// ---- API faults -----------------------------------------------------------------------------

#[tokio::test]
async fn an_api_429_says_when_to_retry_and_does_nothing() -> Result {
    // GIVEN a sandbox that rate-limits every request, retry after 1.5 s
    let sandbox = sandbox_with("http429=every:1,retry_after_ms=1500").await?;

    // WHEN a file is uploaded
    let form = reqwest::multipart::Form::new()
        .text("purpose", "batch")
        .part(
            "file",
            reqwest::multipart::Part::bytes(chat_file(1).into_bytes()).file_name("r.jsonl"),
        );
    let response = sandbox
        .client
        .post(sandbox.url("/files"))
        .bearer_auth("sk-test")
        .multipart(form)
        .send()
        .await?;

    // THEN it is a 429 in OpenAI's shape with both retry headers, and no file was stored
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(header(&response, "retry-after").as_deref(), Some("2"));
    assert_eq!(header(&response, "retry-after-ms").as_deref(), Some("1500"));
    assert!(header(&response, "x-request-id").is_some());
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "requests");
    assert_eq!(sandbox.sandbox.stats().files_uploaded, 0);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_api_500_is_an_openai_server_error() -> Result {
    let sandbox = sandbox_with("http500=every:1").await?;
    let response = list_openai(&sandbox).await?;
    assert_eq!(response.status().as_u16(), 500);
    assert!(header(&response, "retry-after").is_none());
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["type"], "server_error");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_overload_is_an_openai_503_with_retry_after() -> Result {
    let sandbox = sandbox_with("http529=every:1").await?;
    let response = list_openai(&sandbox).await?;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(header(&response, "retry-after").as_deref(), Some("1"));
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["type"], "server_error");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_anthropic_429_is_a_rate_limit_error_with_retry_after() -> Result {
    let sandbox = sandbox_with("http429=every:1,retry_after_ms=3000").await?;
    let response = anthropic(sandbox.client.get(anthropic_url(&sandbox, ""))).await?;
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(header(&response, "retry-after").as_deref(), Some("3"));
    assert_eq!(header(&response, "retry-after-ms").as_deref(), Some("3000"));
    assert!(header(&response, "request-id").is_some());
    let body: Value = response.json().await?;
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_anthropic_overload_is_a_529_overloaded_error() -> Result {
    let sandbox = sandbox_with("http529=every:1").await?;
    let response = anthropic(sandbox.client.get(anthropic_url(&sandbox, ""))).await?;
    assert_eq!(response.status().as_u16(), 529);
    assert!(header(&response, "retry-after").is_some());
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["type"], "overloaded_error");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_anthropic_500_is_an_api_error() -> Result {
    let sandbox = sandbox_with("http500=every:1").await?;
    let response = anthropic(sandbox.client.get(anthropic_url(&sandbox, ""))).await?;
    assert_eq!(response.status().as_u16(), 500);
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["type"], "api_error");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_timeout_holds_the_answer_of_a_request_carried_out() -> Result {
    // GIVEN a sandbox that holds the answer of every 2nd request for 10 s, and a client that
    // waits 200 ms
    let sandbox = sandbox_with("timeout=every:2,timeout_ms=10000").await?;
    let file = sandbox.upload("requests.jsonl", chat_file(2)).await?; // request 1

    // WHEN the batch is created (request 2)
    let started = Instant::now();
    let outcome = sandbox
        .client
        .post(sandbox.url("/batches"))
        .bearer_auth("sk-test")
        .timeout(Duration::from_millis(200))
        .json(&json!({"input_file_id": file["id"], "endpoint": CHAT, "completion_window": "24h"}))
        .send()
        .await;

    // THEN the client timed out, yet the batch exists; stopping lets the held answer go
    assert!(
        outcome.as_ref().is_err_and(reqwest::Error::is_timeout),
        "{outcome:?}"
    );
    let listed = list_openai(&sandbox).await?.json::<Value>().await?; // request 3
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(sandbox.sandbox.stats().faults.timeout, 1);
    sandbox.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[tokio::test]
async fn a_dropped_connection_answers_nothing_though_the_request_was_carried_out() -> Result {
    // GIVEN a sandbox that drops the connection of every 2nd request
    let sandbox = sandbox_with("drop=every:2").await?;
    let file = sandbox.upload("requests.jsonl", chat_file(2)).await?; // request 1

    // WHEN the batch is created (request 2)
    let outcome = sandbox
        .client
        .post(sandbox.url("/batches"))
        .bearer_auth("sk-test")
        .json(&json!({"input_file_id": file["id"], "endpoint": CHAT, "completion_window": "24h"}))
        .send()
        .await;

    // THEN no answer came at all, yet the batch exists
    let error = outcome
        .err()
        .ok_or("expected the connection to be dropped")?;
    assert!(error.is_request() && !error.is_timeout(), "{error:?}");
    assert_eq!(sandbox.sandbox.stats().batches_created, 1);
    let listed = list_openai(&sandbox).await?.json::<Value>().await?; // request 3
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
    sandbox.stop().await;
    Ok(())
}

/// The statuses of `n` `GET /v1/batches` in a row against a fresh sandbox injecting `spec`.
async fn api_statuses(spec: &str, n: usize) -> Result<Vec<u16>> {
    let sandbox = sandbox_with(spec).await?;
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(list_openai(&sandbox).await?.status().as_u16());
    }
    sandbox.stop().await;
    Ok(statuses)
}

#[tokio::test]
async fn the_same_seed_gives_the_same_api_faults() -> Result {
    let spec = "seed=7,http429=0.3,http500=0.2";
    let first = api_statuses(spec, 60).await?;
    let again = api_statuses(spec, 60).await?;
    let other = api_statuses("seed=8,http429=0.3,http500=0.2", 60).await?;
    assert_eq!(first, again);
    assert_ne!(first, other);
    let kinds: BTreeSet<u16> = first.iter().copied().collect();
    assert_eq!(kinds, BTreeSet::from([200, 429, 500]));
    Ok(())
}

#[tokio::test]
async fn injected_faults_are_counted_by_kind_in_the_stats() -> Result {
    // GIVEN a sandbox rate-limiting every 2nd request and failing every batch's 3rd request
    let sandbox = sandbox_with("http429=every:2,req500=every:3").await?;

    // WHEN a batch of 6 is submitted and retrieved, with a list call refused before each step
    let file = sandbox.upload("requests.jsonl", chat_file(6)).await?; // request 1
    assert_eq!(list_openai(&sandbox).await?.status().as_u16(), 429); // 2
    let created = sandbox.create_batch(&file["id"], CHAT).await?; // 3
    assert_eq!(list_openai(&sandbox).await?.status().as_u16(), 429); // 4
    sandbox.batch(&created["id"]).await?; // 5: its requests have been answered by now

    // THEN the stats count them, in Rust and over HTTP (which is never faulted)
    let expected = FaultStats {
        http429: 2,
        request_errors: 2,
        ..FaultStats::default()
    };
    assert_eq!(sandbox.sandbox.stats().faults, expected);
    let url = format!("{}/sandbox/stats", sandbox.sandbox.anthropic_base_url());
    for _ in 0..3 {
        let over_http: SandboxStats = sandbox.client.get(&url).send().await?.json().await?;
        assert_eq!(over_http.faults, expected);
    }
    sandbox.stop().await;
    Ok(())
}

// ---- OpenAI batch faults --------------------------------------------------------------------

#[tokio::test]
async fn an_injected_validation_failure_fails_the_batch_with_errors() -> Result {
    let sandbox = sandbox_with("validation=every:1").await?;
    let created = sandbox.submit(&chat_file(3), CHAT).await?;
    let batch = sandbox.batch(&created["id"]).await?;
    assert_eq!(created["status"], "validating");
    assert_eq!(batch["status"], "failed");
    assert_eq!(batch["errors"]["data"][0]["code"], "invalid_request");
    assert!(batch["output_file_id"].is_null() && batch["error_file_id"].is_null());
    assert_eq!(batch["request_counts"]["total"], 0);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn token_limit_exceeded_fails_a_batch_whose_create_succeeded() -> Result {
    // GIVEN a sandbox over the enqueued-token limit for every batch, one step per state
    let (sandbox, clock) =
        sandbox_with_clock("token_limit=every:1", Duration::from_secs(10)).await?;

    // WHEN a batch is created, then retrieved after validation
    let created = sandbox.submit(&chat_file(3), CHAT).await?;
    set_clock(&clock, 10);
    let batch = sandbox.batch(&created["id"]).await?;

    // THEN the create succeeded, and the batch failed with token_limit_exceeded and no line
    assert_eq!(created["status"], "validating");
    assert_eq!(batch["status"], "failed");
    assert_eq!(batch["failed_at"], T0 + 10);
    let errors = batch["errors"]["data"]
        .as_array()
        .ok_or("errors.data should be a list")?;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["code"], "token_limit_exceeded");
    assert!(errors[0]["line"].is_null());
    assert!(batch["output_file_id"].is_null() && batch["error_file_id"].is_null());
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_batch_past_the_enqueued_token_limit_of_its_model_fails_until_the_queue_drains() -> Result
{
    // GIVEN a sandbox whose models each queue at most 20 input tokens, 10 s per state, and
    // files of 4 requests of 3 words (12 tokens)
    let (sandbox, clock) =
        sandbox_with_clock("enqueued_token_limit=20", Duration::from_secs(10)).await?;
    let other_model: String = (0..4)
        .map(|i| {
            common::chat_line(
                &format!("req-{i}"),
                "gpt-4o",
                &format!("Question number {i}?"),
            ) + "\n"
        })
        .collect();

    // WHEN a batch is created, then a second of the same model, one of another model, and,
    // once the first has completed, a fourth of the first model
    let first = sandbox.submit(&chat_file(4), CHAT).await?;
    set_clock(&clock, 5);
    let second = sandbox.submit(&chat_file(4), CHAT).await?;
    let other = sandbox.submit(&other_model, CHAT).await?;
    set_clock(&clock, 30);
    let fourth = sandbox.submit(&chat_file(4), CHAT).await?;
    set_clock(&clock, 60);

    // THEN only the second failed, with OpenAI's token_limit_exceeded and no line, though its
    // create succeeded; the others completed; the stats count the one refusal
    assert_eq!(second["status"], "validating");
    let refused = sandbox.batch(&second["id"]).await?;
    assert_eq!(refused["status"], "failed");
    let errors = &refused["errors"]["data"];
    assert_eq!(errors[0]["code"], "token_limit_exceeded");
    assert!(errors[0]["line"].is_null());
    let message = text(&errors[0]["message"])?;
    assert!(message.contains("gpt-4o-mini") && message.contains("Limit: 20 enqueued tokens"));
    for batch in [&first, &other, &fourth] {
        assert_eq!(sandbox.batch(&batch["id"]).await?["status"], "completed");
    }
    assert_eq!(sandbox.sandbox.stats().faults.enqueued_token_limit, 1);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_expired_batch_keeps_its_first_share_and_expires_the_rest() -> Result {
    // GIVEN a sandbox expiring every batch with 40% answered, 10 s per state
    let (sandbox, clock) =
        sandbox_with_clock("expire=every:1,expire_keep=0.4", Duration::from_secs(10)).await?;
    let created = sandbox.submit(&chat_file(10), CHAT).await?;

    // WHEN it is retrieved while in progress, then when it would have started finalizing
    set_clock(&clock, 19);
    let running = sandbox.batch(&created["id"]).await?;
    set_clock(&clock, 20);
    let batch = sandbox.batch(&created["id"]).await?;

    // THEN it expired with 4 answers in the output file and 6 batch_expired lines
    assert_eq!(running["status"], "in_progress");
    assert_eq!(batch["status"], "expired");
    assert_eq!(batch["expired_at"], T0 + 20);
    assert_eq!(
        batch["request_counts"],
        json!({"total": 10, "completed": 4, "failed": 6})
    );
    let output = sandbox.lines(&batch["output_file_id"]).await?;
    let errors = sandbox.lines(&batch["error_file_id"]).await?;
    assert_eq!(output.len(), 4);
    assert_eq!(errors.len(), 6);
    for line in &errors {
        assert!(line["response"].is_null());
        assert_eq!(line["error"]["code"], "batch_expired");
    }
    let mut all = custom_ids(&output);
    all.extend(custom_ids(&errors));
    all.sort();
    let mut expected = ids(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expected.sort();
    assert_eq!(all, expected);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_long_finalizing_batch_stays_finalizing_for_its_extra_steps() -> Result {
    // GIVEN a sandbox with 3 extra finalizing steps of 10 s for every batch
    let (sandbox, clock) =
        sandbox_with_clock("finalizing_extra=3", Duration::from_secs(10)).await?;
    let created = sandbox.submit(&chat_file(3), CHAT).await?;

    // WHEN it is retrieved just before and at the end of its 4 finalizing steps
    set_clock(&clock, 59);
    let finalizing = sandbox.batch(&created["id"]).await?;
    set_clock(&clock, 60);
    let done = sandbox.batch(&created["id"]).await?;

    // THEN it was still finalizing, then completed
    assert_eq!(finalizing["status"], "finalizing");
    assert_eq!(finalizing["finalizing_at"], T0 + 20);
    assert!(finalizing["output_file_id"].is_null());
    assert_eq!(done["status"], "completed");
    assert_eq!(done["completed_at"], T0 + 60);
    assert_eq!(sandbox.sandbox.stats().faults.finalizing, 1);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_no_output_batch_completes_with_only_an_error_file() -> Result {
    let sandbox = sandbox_with("no_output=every:1").await?;
    let created = sandbox.submit(&chat_file(5), CHAT).await?;
    let batch = sandbox.batch(&created["id"]).await?;
    assert_eq!(batch["status"], "completed");
    assert!(batch["output_file_id"].is_null());
    assert_eq!(
        batch["request_counts"],
        json!({"total": 5, "completed": 0, "failed": 5})
    );
    let errors = sandbox.lines(&batch["error_file_id"]).await?;
    assert_eq!(sorted_ids(&errors), ids(&[0, 1, 2, 3, 4]));
    for line in &errors {
        assert_eq!(line["response"]["status_code"], 500);
        assert!(line["error"].is_null());
    }
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn request_faults_go_to_the_error_file_with_their_status_code() -> Result {
    // GIVEN a sandbox failing every 2nd request of a batch with 429
    let sandbox = sandbox_with("req429=every:2").await?;

    // WHEN a batch of 10 completes
    let created = sandbox.submit(&chat_file(10), CHAT).await?;
    let batch = sandbox.batch(&created["id"]).await?;

    // THEN the 2nd, 4th, … requests are in the error file as 429s with `error: null`
    assert_eq!(batch["status"], "completed");
    let errors = sandbox.lines(&batch["error_file_id"]).await?;
    assert_eq!(sorted_ids(&errors), ids(&[1, 3, 5, 7, 9]));
    for line in &errors {
        assert!(line["error"].is_null());
        assert_eq!(line["response"]["status_code"], 429);
        assert_eq!(
            line["response"]["body"]["error"]["code"],
            "rate_limit_exceeded"
        );
    }
    let output = sandbox.lines(&batch["output_file_id"]).await?;
    assert_eq!(sorted_ids(&output), ids(&[0, 2, 4, 6, 8]));
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn request_fault_rates_split_among_status_codes() -> Result {
    // GIVEN probabilities for three status codes
    let sandbox = sandbox_with("seed=3,req429=0.2,req500=0.2,req400=0.2").await?;

    // WHEN a batch of 200 completes
    let created = sandbox.submit(&chat_file(200), CHAT).await?;
    let batch = sandbox.batch(&created["id"]).await?;

    // THEN each code failed some requests, and every failure is counted
    let errors = sandbox.lines(&batch["error_file_id"]).await?;
    let codes: BTreeSet<u64> = errors
        .iter()
        .filter_map(|line| line["response"]["status_code"].as_u64())
        .collect();
    assert_eq!(codes, BTreeSet::from([400, 429, 500]));
    assert_eq!(batch["request_counts"]["failed"], errors.len());
    assert!(
        (60..=180).contains(&errors.len()),
        "{} failed",
        errors.len()
    );
    assert_eq!(
        sandbox.sandbox.stats().faults.request_errors,
        errors.len() as u64
    );
    sandbox.stop().await;
    Ok(())
}

/// What a client sees of `batches` batches of 20 against a fresh sandbox injecting `spec`: for
/// each, its status, its error codes, and its failed requests with their status.
async fn batch_outcomes(spec: &str, batches: usize) -> Result<Vec<Value>> {
    let sandbox = sandbox_with(spec).await?;
    let mut outcomes = Vec::new();
    for _ in 0..batches {
        let created = sandbox.submit(&chat_file(20), CHAT).await?;
        let batch = sandbox.batch(&created["id"]).await?;
        let mut failed: Vec<(String, Value)> = match batch["error_file_id"].as_str() {
            Some(_) => sandbox
                .lines(&batch["error_file_id"])
                .await?
                .iter()
                .map(|line| {
                    let id = line["custom_id"].as_str().unwrap_or_default().to_owned();
                    (id, line["response"]["status_code"].clone())
                })
                .collect(),
            None => Vec::new(),
        };
        failed.sort_by(|a, b| a.0.cmp(&b.0));
        outcomes.push(json!({
            "status": batch["status"],
            "errors": batch["errors"]["data"][0]["code"],
            "failed": failed,
        }));
    }
    sandbox.stop().await;
    Ok(outcomes)
}

#[tokio::test]
async fn the_same_seed_gives_the_same_batch_and_request_outcomes() -> Result {
    // GIVEN batch and request faults drawn from a seed
    let spec = "seed=42,token_limit=0.2,validation=0.1,no_output=0.1,req500=0.1,req429=0.1";

    // WHEN the same batches run against two sandboxes with that seed, and one with another
    let first = batch_outcomes(spec, 12).await?;
    let again = batch_outcomes(spec, 12).await?;
    let other = batch_outcomes(&spec.replace("seed=42", "seed=43"), 12).await?;

    // THEN the same seed gave the same outcomes, another seed others
    assert_eq!(first, again);
    assert_ne!(first, other);
    let statuses: BTreeSet<String> = first
        .iter()
        .map(|outcome| outcome["status"].to_string())
        .collect();
    assert!(statuses.len() > 1, "{statuses:?}");
    Ok(())
}

// ---- Anthropic faults -----------------------------------------------------------------------

#[tokio::test]
async fn an_anthropic_validation_fault_refuses_the_create() -> Result {
    let sandbox = sandbox_with("validation=every:1").await?;
    let response = anthropic(
        sandbox
            .client
            .post(anthropic_url(&sandbox, ""))
            .json(&message_requests(2)),
    )
    .await?;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(sandbox.sandbox.stats().message_batches_created, 0);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_anthropic_token_limit_is_a_429_at_create() -> Result {
    let sandbox = sandbox_with("token_limit=every:1").await?;
    let response = anthropic(
        sandbox
            .client
            .post(anthropic_url(&sandbox, ""))
            .json(&message_requests(2)),
    )
    .await?;
    assert_eq!(response.status().as_u16(), 429);
    assert!(header(&response, "retry-after").is_some());
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(sandbox.sandbox.stats().message_batches_created, 0);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_expired_anthropic_batch_answers_its_first_share_and_expires_the_rest() -> Result {
    // GIVEN a sandbox expiring every batch with 40% answered, 10 s steps
    let (sandbox, clock) =
        sandbox_with_clock("expire=every:1,expire_keep=0.4", Duration::from_secs(10)).await?;
    let created = create_message_batch(&sandbox, 10).await?;

    // WHEN it is retrieved once its processing time is over
    set_clock(&clock, 30);
    let batch = retrieve_message_batch(&sandbox, &created).await?;

    // THEN it ended with 4 succeeded and 6 expired results
    assert_eq!(batch["processing_status"], "ended");
    assert_eq!(batch["request_counts"]["succeeded"], 4);
    assert_eq!(batch["request_counts"]["expired"], 6);
    let results = message_results(&sandbox, &batch).await?;
    let expired = results
        .iter()
        .filter(|line| line["result"]["type"] == "expired")
        .count();
    assert_eq!((results.len(), expired), (10, 6));
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn anthropic_request_faults_are_errored_results_of_the_matching_type() -> Result {
    let sandbox = sandbox_with("req429=every:2").await?;
    let created = create_message_batch(&sandbox, 10).await?;
    let batch = retrieve_message_batch(&sandbox, &created).await?;
    assert_eq!(batch["request_counts"]["errored"], 5);
    let results = message_results(&sandbox, &batch).await?;
    let errored: Vec<Value> = results
        .into_iter()
        .filter(|line| line["result"]["type"] == "errored")
        .collect();
    assert_eq!(sorted_ids(&errored), ids(&[1, 3, 5, 7, 9]));
    for line in &errored {
        assert_eq!(line["result"]["error"]["type"], "error");
        assert_eq!(line["result"]["error"]["error"]["type"], "rate_limit_error");
    }
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn anthropic_errored_and_expired_result_rates_shape_the_results() -> Result {
    // GIVEN every 2nd request errored and every 3rd (not also 2nd) expired
    let sandbox = sandbox_with("result_errored=every:2,result_expired=every:3").await?;

    // WHEN a batch of 10 ends
    let created = create_message_batch(&sandbox, 10).await?;
    let batch = retrieve_message_batch(&sandbox, &created).await?;

    // THEN requests 2, 4, 6, 8, 10 errored with api_error, 3 and 9 expired, the rest succeeded
    assert_eq!(
        batch["request_counts"],
        json!({"processing": 0, "succeeded": 3, "errored": 5, "canceled": 0, "expired": 2})
    );
    let results = message_results(&sandbox, &batch).await?;
    let of_type = |kind: &str| -> Vec<Value> {
        results
            .iter()
            .filter(|line| line["result"]["type"] == kind)
            .cloned()
            .collect()
    };
    assert_eq!(sorted_ids(&of_type("errored")), ids(&[1, 3, 5, 7, 9]));
    assert_eq!(sorted_ids(&of_type("expired")), ids(&[2, 8]));
    for line in of_type("errored") {
        assert_eq!(line["result"]["error"]["error"]["type"], "api_error");
    }
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_anthropic_batch_with_extra_steps_stays_in_progress_longer() -> Result {
    let (sandbox, clock) =
        sandbox_with_clock("finalizing_extra=2", Duration::from_secs(10)).await?;
    let created = create_message_batch(&sandbox, 3).await?;
    set_clock(&clock, 49);
    let waiting = retrieve_message_batch(&sandbox, &created).await?;
    set_clock(&clock, 50);
    let ended = retrieve_message_batch(&sandbox, &created).await?;
    assert_eq!(waiting["processing_status"], "in_progress");
    assert_eq!(ended["processing_status"], "ended");
    assert_eq!(ended["ended_at"], "2023-11-14T22:14:10Z");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_anthropic_no_output_batch_errors_every_request() -> Result {
    let sandbox = sandbox_with("no_output=every:1").await?;
    let created = create_message_batch(&sandbox, 4).await?;
    let batch = retrieve_message_batch(&sandbox, &created).await?;
    assert_eq!(batch["request_counts"]["errored"], 4);
    assert_eq!(batch["request_counts"]["succeeded"], 0);
    let results = message_results(&sandbox, &batch).await?;
    assert!(
        results
            .iter()
            .all(|line| line["result"]["error"]["error"]["type"] == "api_error")
    );
    sandbox.stop().await;
    Ok(())
}

// ---- Synchronous answers --------------------------------------------------------------------

/// Params of one Anthropic Messages API request.
fn message_params() -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 100,
        "messages": [{"role": "user", "content": "Question?"}]})
}

#[tokio::test]
async fn a_429_on_the_messages_api_says_when_to_retry_and_answers_nothing() -> Result {
    // GIVEN a sandbox that rate-limits every request, retry after 2 s
    let sandbox = sandbox_with("http429=every:1,retry_after_ms=2000").await?;

    // WHEN a message is asked for
    let url = format!("{}/v1/messages", sandbox.sandbox.anthropic_base_url());
    let response = anthropic(sandbox.client.post(url).json(&message_params())).await?;

    // THEN it is Anthropic's 429 with both retry headers, and no message was made
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(header(&response, "retry-after").as_deref(), Some("2"));
    assert_eq!(header(&response, "retry-after-ms").as_deref(), Some("2000"));
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(sandbox.sandbox.stats().message_requests, 0);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn latency_holds_every_synchronous_answer() -> Result {
    // GIVEN a sandbox whose synchronous answers take 150 ms
    let sandbox = sandbox_with("latency_ms=150").await?;
    let hold = Duration::from_millis(150);

    // WHEN a message and a chat completion are asked for
    let started = Instant::now();
    let url = format!("{}/v1/messages", sandbox.sandbox.anthropic_base_url());
    let message = anthropic(sandbox.client.post(url).json(&message_params())).await?;
    let message_took = started.elapsed();
    let started = Instant::now();
    let chat = sandbox
        .client
        .post(sandbox.url("/chat/completions"))
        .bearer_auth("sk-test")
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await?;
    let chat_took = started.elapsed();

    // THEN both are answered, each after the latency
    assert_eq!(message.status().as_u16(), 200);
    assert_eq!(chat.status().as_u16(), 200);
    assert!(message_took >= hold, "{message_took:?}");
    assert!(chat_took >= hold, "{chat_took:?}");
    sandbox.stop().await;
    Ok(())
}
