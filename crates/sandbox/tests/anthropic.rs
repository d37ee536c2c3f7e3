//! Anthropic Message Batches over HTTP: lifecycle, counts, results, validation, auth,
//! cancelling, deleting, listing.

mod common;

use std::time::Duration;

use batchdrop_sandbox::{SandboxConfig, SandboxStats};
use common::{Harness, Result, instant, set_clock, start, text, with_manual_clock};
use serde_json::{Value, json};

const KEY: &str = "sk-ant-test";
const VERSION: &str = "2023-06-01";
const MODEL: &str = "claude-sonnet-4-5";

/// The sandbox's root URL, as `ANTHROPIC_BASE_URL` (no `/v1`).
fn root(sandbox: &Harness) -> String {
    sandbox.sandbox.anthropic_base_url()
}

fn url(sandbox: &Harness, path: &str) -> String {
    format!("{}/v1/messages/batches{path}", root(sandbox))
}

/// Sends `request` with a key and a version, and returns its status and JSON body.
async fn send(request: reqwest::RequestBuilder) -> Result<(u16, Value)> {
    let response = request
        .header("x-api-key", KEY)
        .header("anthropic-version", VERSION)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

fn ok((status, body): (u16, Value)) -> Result<Value> {
    if status == 200 {
        Ok(body)
    } else {
        Err(format!("expected 200, got {status}: {body}").into())
    }
}

/// A request asking `content` of the default model.
fn request(custom_id: &str, content: &str) -> Value {
    json!({
        "custom_id": custom_id,
        "params": {
            "model": MODEL,
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": content}],
        },
    })
}

/// `n` requests `req-0` … `req-{n-1}`.
fn requests(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| request(&format!("req-{i}"), &format!("Question number {i}?")))
        .collect()
}

async fn create(sandbox: &Harness, requests: &[Value]) -> Result<Value> {
    let body = json!({ "requests": requests });
    ok(send(sandbox.client.post(url(sandbox, "")).json(&body)).await?)
}

async fn retrieve(sandbox: &Harness, batch: &Value) -> Result<Value> {
    let id = text(&batch["id"])?;
    ok(send(sandbox.client.get(url(sandbox, &format!("/{id}")))).await?)
}

async fn cancel(sandbox: &Harness, batch: &Value) -> Result<Value> {
    let id = text(&batch["id"])?;
    ok(send(sandbox.client.post(url(sandbox, &format!("/{id}/cancel")))).await?)
}

/// The results of an ended batch, fetched from its `results_url`, parsed.
async fn results(sandbox: &Harness, batch: &Value) -> Result<Vec<Value>> {
    let response = sandbox
        .client
        .get(text(&batch["results_url"])?)
        .header("x-api-key", KEY)
        .header("anthropic-version", VERSION)
        .send()
        .await?
        .error_for_status()?;
    response
        .text()
        .await?
        .lines()
        .map(|line| serde_json::from_str(line).map_err(Into::into))
        .collect()
}

fn custom_ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|line| line["custom_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

#[tokio::test]
async fn an_instant_batch_is_in_progress_when_created_and_ended_on_the_next_retrieve() -> Result {
    // GIVEN an instant sandbox
    let sandbox = instant().await?;

    // WHEN a batch of 3 requests is created and retrieved
    let created = create(&sandbox, &requests(3)).await?;
    let batch = retrieve(&sandbox, &created).await?;

    // THEN it was in progress with nothing to fetch, and now has ended with 3 successes
    let id = text(&created["id"])?;
    assert!(id.starts_with("msgbatch_"), "{id}");
    assert_eq!(created["type"], "message_batch");
    assert_eq!(created["processing_status"], "in_progress");
    assert!(created["results_url"].is_null());
    assert!(created["ended_at"].is_null());
    assert!(created["archived_at"].is_null());
    assert!(created["cancel_initiated_at"].is_null());
    assert_eq!(batch["id"], created["id"]);
    assert_eq!(batch["processing_status"], "ended");
    assert_eq!(
        batch["request_counts"],
        json!({"processing": 0, "succeeded": 3, "errored": 0, "canceled": 0, "expired": 0})
    );
    assert!(text(&batch["ended_at"])?.ends_with('Z'));
    assert_eq!(
        batch["results_url"],
        format!("{}/v1/messages/batches/{id}/results", root(&sandbox))
    );
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn counts_stay_zero_except_processing_until_the_batch_ends() -> Result {
    // GIVEN a sandbox with 10 s steps on a manual clock, and a batch of 4 requests
    let (sandbox, clock) = with_manual_clock(Duration::from_secs(10)).await?;
    let created = create(&sandbox, &requests(4)).await?;

    // WHEN it is retrieved half way through processing, and again after 3 steps
    set_clock(&clock, 15);
    let halfway = retrieve(&sandbox, &created).await?;
    set_clock(&clock, 30);
    let ended = retrieve(&sandbox, &created).await?;

    // THEN half way it shows only `processing`, and at the end every count and timestamp
    assert_eq!(halfway["processing_status"], "in_progress");
    assert_eq!(
        halfway["request_counts"],
        json!({"processing": 4, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0})
    );
    assert!(halfway["results_url"].is_null());
    assert!(halfway["ended_at"].is_null());
    assert_eq!(ended["processing_status"], "ended");
    assert_eq!(ended["request_counts"]["processing"], 0);
    assert_eq!(ended["request_counts"]["succeeded"], 4);
    assert_eq!(ended["created_at"], "2023-11-14T22:13:20Z");
    assert_eq!(ended["ended_at"], "2023-11-14T22:13:50Z");
    assert_eq!(ended["expires_at"], "2023-11-15T22:13:20Z");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn results_are_refused_until_the_batch_ends() -> Result {
    // GIVEN a batch still in progress
    let (sandbox, _clock) = with_manual_clock(Duration::from_secs(10)).await?;
    let created = create(&sandbox, &requests(2)).await?;

    // WHEN its results are asked for
    let id = text(&created["id"])?;
    let (status, body) = send(sandbox.client.get(url(&sandbox, &format!("/{id}/results")))).await?;

    // THEN the answer is a 400
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn results_have_one_succeeded_message_per_request_in_shuffled_order() -> Result {
    // GIVEN an ended batch of 40 requests
    let sandbox = instant().await?;
    let created = create(&sandbox, &requests(40)).await?;
    let batch = retrieve(&sandbox, &created).await?;

    // WHEN its results are read
    let lines = results(&sandbox, &batch).await?;

    // THEN every request has one line, not in input order, each a text message with usage
    let expected: Vec<String> = (0..40).map(|i| format!("req-{i}")).collect();
    let got = custom_ids(&lines);
    let mut sorted = got.clone();
    sorted.sort_by_key(|id| id[4..].parse::<u32>().unwrap_or(u32::MAX));
    assert_eq!(sorted, expected);
    assert_ne!(got, expected, "results should be shuffled");
    for line in &lines {
        let result = &line["result"];
        assert_eq!(result["type"], "succeeded", "{line}");
        let message = &result["message"];
        assert!(text(&message["id"])?.starts_with("msg_"));
        assert_eq!(message["type"], "message");
        assert_eq!(message["role"], "assistant");
        assert_eq!(message["model"], MODEL);
        assert_eq!(message["stop_reason"], "end_turn");
        assert!(message["stop_sequence"].is_null());
        assert_eq!(message["content"][0]["type"], "text");
        let reply = text(&message["content"][0]["text"])?;
        assert!(
            reply.starts_with("Sandbox reply to \"Question number"),
            "{reply}"
        );
        assert_eq!(message["usage"]["input_tokens"], 3);
        assert_eq!(message["usage"]["output_tokens"], words(reply));
    }
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_reply_longer_than_max_tokens_is_cut_and_stops_for_max_tokens() -> Result {
    // GIVEN a request with max_tokens 3
    let sandbox = instant().await?;
    let mut short = request("short", "Tell me everything.");
    short["params"]["max_tokens"] = json!(3);
    let created = create(&sandbox, &[short]).await?;

    // WHEN its result is read
    let batch = retrieve(&sandbox, &created).await?;
    let lines = results(&sandbox, &batch).await?;

    // THEN the reply has 3 words and stopped for max_tokens
    let message = &lines[0]["result"]["message"];
    assert_eq!(message["stop_reason"], "max_tokens");
    assert_eq!(message["usage"]["output_tokens"], 3);
    assert_eq!(words(text(&message["content"][0]["text"])?), 3);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn requests_the_model_would_refuse_are_errored_results() -> Result {
    // GIVEN a batch with a good request, one to a missing model, one opened by the assistant
    let sandbox = instant().await?;
    let mut missing = request("missing-model", "Hello?");
    missing["params"]["model"] = json!("does-not-exist");
    let mut assistant_first = request("assistant-first", "Hello?");
    assistant_first["params"]["messages"][0]["role"] = json!("assistant");
    let created = create(
        &sandbox,
        &[request("good", "Hello?"), missing, assistant_first],
    )
    .await?;

    // WHEN it has ended and its results are read
    let batch = retrieve(&sandbox, &created).await?;
    let lines = results(&sandbox, &batch).await?;

    // THEN the two bad requests errored with the Messages API's error types
    assert_eq!(batch["request_counts"]["succeeded"], 1);
    assert_eq!(batch["request_counts"]["errored"], 2);
    let result_of = |custom_id: &str| {
        lines
            .iter()
            .find(|line| line["custom_id"] == custom_id)
            .map(|line| line["result"].clone())
            .unwrap_or_default()
    };
    let missing = result_of("missing-model");
    assert_eq!(missing["type"], "errored");
    assert_eq!(missing["error"]["type"], "error");
    assert_eq!(missing["error"]["error"]["type"], "not_found_error");
    assert!(text(&missing["error"]["request_id"])?.starts_with("req_"));
    let assistant_first = result_of("assistant-first");
    assert_eq!(assistant_first["type"], "errored");
    assert_eq!(
        assistant_first["error"]["error"]["type"],
        "invalid_request_error"
    );
    assert_eq!(result_of("good")["type"], "succeeded");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_same_request_gets_the_same_reply_in_any_batch() -> Result {
    // GIVEN two batches holding the same request
    let sandbox = instant().await?;
    let first = create(&sandbox, &[request("a", "What is two plus two?")]).await?;
    let second = create(&sandbox, &[request("b", "What is two plus two?")]).await?;

    // WHEN both results are read
    let first = results(&sandbox, &retrieve(&sandbox, &first).await?).await?;
    let second = results(&sandbox, &retrieve(&sandbox, &second).await?).await?;

    // THEN the replies are the same text, under different message ids
    let message = |lines: &[Value]| lines[0]["result"]["message"].clone();
    assert_eq!(message(&first)["content"], message(&second)["content"]);
    assert_ne!(message(&first)["id"], message(&second)["id"]);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_invalid_custom_id_refuses_the_whole_batch() -> Result {
    // GIVEN an instant sandbox
    let sandbox = instant().await?;

    for bad in ["x".repeat(65), "has.dots".to_owned(), String::new()] {
        // WHEN a batch holds one good request and one with that custom_id
        let body = json!({"requests": [request("good", "Hi"), request(&bad, "Hi")]});
        let (status, answer) = send(sandbox.client.post(url(&sandbox, "")).json(&body)).await?;

        // THEN the batch is refused with a 400 naming the request and its custom_id
        assert_eq!(status, 400, "{bad}: {answer}");
        assert_eq!(answer["type"], "error");
        assert_eq!(answer["error"]["type"], "invalid_request_error");
        let message = text(&answer["error"]["message"])?;
        assert!(message.starts_with("requests.1.custom_id: "), "{message}");
        assert!(message.contains(&format!("'{bad}'")), "{message}");
    }
    assert_eq!(sandbox.sandbox.stats().message_batches_created, 0);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_duplicate_custom_id_refuses_the_whole_batch() -> Result {
    let sandbox = instant().await?;
    let body = json!({"requests": [request("a", "Hi"), request("b", "Hi"), request("a", "Again")]});
    let (status, answer) = send(sandbox.client.post(url(&sandbox, "")).json(&body)).await?;
    assert_eq!(status, 400, "{answer}");
    let message = text(&answer["error"]["message"])?;
    assert!(
        message.starts_with("requests.2.custom_id: Duplicate custom_id 'a'"),
        "{message}"
    );
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn params_without_max_tokens_refuse_the_whole_batch() -> Result {
    let sandbox = instant().await?;
    let mut bad = request("b", "Hi");
    if let Some(params) = bad["params"].as_object_mut() {
        params.remove("max_tokens");
    }
    let body = json!({"requests": [request("a", "Hi"), bad]});
    let (status, answer) = send(sandbox.client.post(url(&sandbox, "")).json(&body)).await?;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"]["message"],
        "requests.1.params.max_tokens: Field required"
    );
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn more_than_100000_requests_refuse_the_whole_batch() -> Result {
    let sandbox = instant().await?;
    let body = format!(r#"{{"requests":[{}{{}}]}}"#, "{},".repeat(100_000));
    let (status, answer) = send(
        sandbox
            .client
            .post(url(&sandbox, ""))
            .header("content-type", "application/json")
            .body(body),
    )
    .await?;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"]["message"],
        "requests: List should have at most 100000 items after validation, not 100001"
    );
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_body_over_256_mb_is_refused_with_a_413() -> Result {
    // GIVEN a create body of 256,000,001 bytes, streamed without a length
    let sandbox = instant().await?;
    let megabyte = bytes::Bytes::from(vec![b' '; 1_000_000]);
    let chunks = std::iter::repeat_n(megabyte, 256).chain([bytes::Bytes::from_static(b"{")]);
    let stream = futures::stream::iter(chunks.map(Ok::<_, std::io::Error>));

    // WHEN it is sent
    let (status, answer) = send(
        sandbox
            .client
            .post(url(&sandbox, ""))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream)),
    )
    .await?;

    // THEN it is refused as too large
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["type"], "request_too_large");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_request_without_an_api_key_is_a_401() -> Result {
    let sandbox = instant().await?;
    let response = sandbox
        .client
        .get(url(&sandbox, ""))
        .header("anthropic-version", VERSION)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().contains_key("request-id"));
    let body: Value = response.json().await?;
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");
    assert!(body["error"]["message"].is_string());
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_request_without_anthropic_version_is_a_400() -> Result {
    let sandbox = instant().await?;
    let response = sandbox
        .client
        .get(url(&sandbox, ""))
        .header("x-api-key", KEY)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["type"], "invalid_request_error");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn with_a_configured_key_only_that_key_is_accepted() -> Result {
    // GIVEN a sandbox started with a key
    let config = SandboxConfig {
        api_key: Some(KEY.to_owned()),
        ..SandboxConfig::default()
    };
    let sandbox = start(config, None).await?;

    // WHEN it is called with another key, and with its own
    let wrong = sandbox
        .client
        .get(url(&sandbox, ""))
        .header("x-api-key", "sk-ant-other")
        .header("anthropic-version", VERSION)
        .send()
        .await?;
    let (right, _) = send(sandbox.client.get(url(&sandbox, ""))).await?;

    // THEN only its own key gets through
    assert_eq!(wrong.status().as_u16(), 401);
    assert_eq!(right, 200);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_cancelled_batch_is_canceling_for_a_step_then_ended_with_canceled_results() -> Result {
    // GIVEN a batch of 10 requests with 10 s steps, half processed (at 15 s of 30 s)
    let (sandbox, clock) = with_manual_clock(Duration::from_secs(10)).await?;
    let created = create(&sandbox, &requests(10)).await?;
    set_clock(&clock, 15);

    // WHEN it is cancelled, and retrieved just before and after one more step
    let canceling = cancel(&sandbox, &created).await?;
    set_clock(&clock, 24);
    let still = retrieve(&sandbox, &created).await?;
    set_clock(&clock, 25);
    let ended = retrieve(&sandbox, &created).await?;

    // THEN it shows canceling, then ended with the unprocessed half canceled
    assert_eq!(canceling["processing_status"], "canceling");
    assert_eq!(canceling["cancel_initiated_at"], "2023-11-14T22:13:35Z");
    assert_eq!(canceling["request_counts"]["processing"], 10);
    assert_eq!(still["processing_status"], "canceling");
    assert_eq!(ended["processing_status"], "ended");
    assert_eq!(ended["ended_at"], "2023-11-14T22:13:45Z");
    assert_eq!(
        ended["request_counts"],
        json!({"processing": 0, "succeeded": 5, "errored": 0, "canceled": 5, "expired": 0})
    );
    let lines = results(&sandbox, &ended).await?;
    assert_eq!(lines.len(), 10);
    let canceled: Vec<&Value> = lines
        .iter()
        .filter(|line| line["result"] == json!({"type": "canceled"}))
        .collect();
    assert_eq!(canceled.len(), 5);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_ended_batch_cannot_be_cancelled() -> Result {
    let sandbox = instant().await?;
    let created = create(&sandbox, &requests(1)).await?;
    let id = text(&created["id"])?;
    let (status, body) = send(sandbox.client.post(url(&sandbox, &format!("/{id}/cancel")))).await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_batch_can_be_deleted_only_once_it_has_ended() -> Result {
    // GIVEN a batch in progress
    let (sandbox, clock) = with_manual_clock(Duration::from_secs(10)).await?;
    let created = create(&sandbox, &requests(2)).await?;
    let id = text(&created["id"])?;
    let delete = || send(sandbox.client.delete(url(&sandbox, &format!("/{id}"))));

    // WHEN it is deleted while in progress, then after it has ended
    let (early, refusal) = delete().await?;
    set_clock(&clock, 30);
    let deleted = ok(delete().await?)?;
    let (after, gone) = send(sandbox.client.get(url(&sandbox, &format!("/{id}")))).await?;

    // THEN the first is refused, the second deletes it, and it is not found any more
    assert_eq!(early, 400, "{refusal}");
    assert_eq!(refusal["error"]["type"], "invalid_request_error");
    assert_eq!(deleted, json!({"id": id, "type": "message_batch_deleted"}));
    assert_eq!(after, 404);
    assert_eq!(gone["error"]["type"], "not_found_error");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn listing_pages_through_batches_newest_first() -> Result {
    // GIVEN five batches, created one after the other
    let sandbox = instant().await?;
    let mut ids = Vec::new();
    for i in 0..5 {
        let batch = create(&sandbox, &[request(&format!("r{i}"), "Hi")]).await?;
        ids.push(text(&batch["id"])?.to_owned());
    }
    ids.reverse();

    // WHEN they are listed two at a time, forwards and back
    let first = list(&sandbox, "limit=2").await?;
    let after = format!("limit=2&after_id={}", text(&first["last_id"])?);
    let second = list(&sandbox, &after).await?;
    let after = format!("limit=2&after_id={}", text(&second["last_id"])?);
    let third = list(&sandbox, &after).await?;
    let before = format!("limit=2&before_id={}", text(&second["first_id"])?);
    let back = list(&sandbox, &before).await?;
    let all = list(&sandbox, "").await?;

    // THEN the pages cover every batch once, newest first, and say when there are more
    assert_eq!(page_ids(&first), ids[0..2]);
    assert_eq!(first["first_id"], ids[0]);
    assert_eq!(first["last_id"], ids[1]);
    assert_eq!(first["has_more"], true);
    assert_eq!(page_ids(&second), ids[2..4]);
    assert_eq!(page_ids(&third), ids[4..5]);
    assert_eq!(third["has_more"], false);
    assert_eq!(page_ids(&back), ids[0..2]);
    assert_eq!(back["has_more"], false);
    assert_eq!(page_ids(&all), ids);
    assert_eq!(all["data"][0]["type"], "message_batch");
    sandbox.stop().await;
    Ok(())
}

async fn list(sandbox: &Harness, query: &str) -> Result<Value> {
    ok(send(sandbox.client.get(url(sandbox, &format!("?{query}")))).await?)
}

/// The ids of the batches on a page of a listing.
fn page_ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|batch| batch["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn the_results_url_names_the_host_the_client_used() -> Result {
    // GIVEN an ended batch
    let sandbox = instant().await?;
    let created = create(&sandbox, &requests(1)).await?;
    let id = text(&created["id"])?;

    // WHEN it is retrieved through another host name
    let port = sandbox.sandbox.addr().port();
    let batch = ok(send(
        sandbox
            .client
            .get(url(&sandbox, &format!("/{id}")))
            .header("host", format!("localhost:{port}")),
    )
    .await?)?;

    // THEN its results_url is on that host
    assert_eq!(
        batch["results_url"],
        format!("http://localhost:{port}/v1/messages/batches/{id}/results")
    );
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_unknown_batch_or_path_is_a_404_in_anthropics_shape() -> Result {
    let sandbox = instant().await?;
    for path in [
        "/msgbatch_nope",
        "/msgbatch_nope/results",
        "/msgbatch_nope/cancel/x",
    ] {
        let (status, body) = send(sandbox.client.get(url(&sandbox, path))).await?;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["type"], "error", "{path}");
        assert_eq!(body["error"]["type"], "not_found_error", "{path}");
    }
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn stats_count_message_batches_and_their_http_requests() -> Result {
    // GIVEN one message batch created and retrieved, and one refused batch
    let sandbox = instant().await?;
    let created = create(&sandbox, &requests(2)).await?;
    retrieve(&sandbox, &created).await?;
    let refused = json!({"requests": []});
    send(sandbox.client.post(url(&sandbox, "")).json(&refused)).await?;

    // WHEN the stats are read
    let stats = sandbox.sandbox.stats();

    // THEN one message batch was created, in three HTTP requests
    let expected = SandboxStats {
        message_batches_created: 1,
        requests_received: 3,
        ..SandboxStats::default()
    };
    assert_eq!(stats, expected);
    sandbox.stop().await;
    Ok(())
}

// ---- The Messages API ---------------------------------------------------------------------

/// `POST /v1/messages` with a key and a version: its status and JSON body.
async fn message(sandbox: &Harness, params: &Value) -> Result<(u16, Value)> {
    let url = format!("{}/v1/messages", root(sandbox));
    send(sandbox.client.post(url).json(params)).await
}

#[tokio::test]
async fn the_messages_api_answers_what_a_batch_answers_for_the_same_params() -> Result {
    // GIVEN a batch holding a request, and its results
    let sandbox = instant().await?;
    let asked = request("a", "What is two plus two?");
    let batch = create(&sandbox, std::slice::from_ref(&asked)).await?;
    let lines = results(&sandbox, &retrieve(&sandbox, &batch).await?).await?;
    let in_batch = &lines[0]["result"]["message"];

    // WHEN the same params are sent to the Messages API
    let answered = ok(message(&sandbox, &asked["params"]).await?)?;

    // THEN it answers the same Message (text, stop reason, token counts), at the standard tier
    assert_eq!(answered["type"], "message");
    for field in ["content", "stop_reason", "model"] {
        assert_eq!(answered[field], in_batch[field], "{field}");
    }
    for field in ["input_tokens", "output_tokens"] {
        assert_eq!(
            answered["usage"][field], in_batch["usage"][field],
            "{field}"
        );
    }
    assert_eq!(answered["usage"]["service_tier"], "standard");
    // AND it is counted as a Messages API request, not a batch
    let stats = sandbox.sandbox.stats();
    assert_eq!(
        (stats.message_requests, stats.message_batches_created),
        (1, 1)
    );
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_messages_api_refuses_params_without_max_tokens_with_a_400() -> Result {
    let sandbox = instant().await?;
    let params = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]});
    let (status, body) = message(&sandbox, &params).await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["message"], "max_tokens: Field required");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_messages_api_refuses_a_conversation_opened_by_the_assistant_with_a_400() -> Result {
    let sandbox = instant().await?;
    let params = json!({"model": MODEL, "max_tokens": 10,
        "messages": [{"role": "assistant", "content": "hi"}]});
    let (status, body) = message(&sandbox, &params).await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_messages_api_answers_a_404_for_the_missing_model() -> Result {
    let sandbox = instant().await?;
    let params = json!({"model": batchdrop_sandbox::MODEL_NOT_FOUND, "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, body) = message(&sandbox, &params).await?;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["type"], "not_found_error");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_messages_api_needs_a_key() -> Result {
    let sandbox = instant().await?;
    let response = sandbox
        .client
        .post(format!("{}/v1/messages", root(&sandbox)))
        .header("anthropic-version", VERSION)
        .json(&request("a", "hi")["params"])
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(sandbox.sandbox.stats().message_requests, 0);
    sandbox.stop().await;
    Ok(())
}

// ---- Prompt caching -----------------------------------------------------------------------

/// A request whose long system prompt (1,200 words) ends in a `cache_control` breakpoint.
fn cached_request(custom_id: &str, question: &str) -> Value {
    json!({
        "custom_id": custom_id,
        "params": {
            "model": MODEL,
            "max_tokens": 50,
            "system": [{"type": "text", "text": "rule ".repeat(1200),
                        "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": question}],
        },
    })
}

/// The cache usage of each result: (read, written, input).
fn cache_usage(lines: &[Value]) -> Vec<(u64, u64, u64)> {
    lines
        .iter()
        .map(|line| {
            let usage = &line["result"]["message"]["usage"];
            (
                usage["cache_read_input_tokens"]
                    .as_u64()
                    .unwrap_or(u64::MAX),
                usage["cache_creation_input_tokens"]
                    .as_u64()
                    .unwrap_or(u64::MAX),
                usage["input_tokens"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_cold_batch_writes_the_cache_and_reads_none_of_it() -> Result {
    // GIVEN an instant sandbox and 3 requests sharing a cached system prompt of 1,200 words
    let sandbox = instant().await?;
    let batch_requests: Vec<Value> = (0..3)
        .map(|i| cached_request(&format!("c-{i}"), "two words"))
        .collect();

    // WHEN they go as one batch
    let created = create(&sandbox, &batch_requests).await?;
    let ended = retrieve(&sandbox, &created).await?;

    // THEN no request read the cache: each wrote the 1,200 tokens of its prefix
    let usage = cache_usage(&results(&sandbox, &ended).await?);
    assert_eq!(usage, vec![(0, 1200, 2); 3]);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn after_a_primer_message_a_batch_reads_the_cached_prefix() -> Result {
    // GIVEN an instant sandbox and a primer: the first request sent alone to /v1/messages
    let sandbox = instant().await?;
    let primer = cached_request("c-0", "two words");
    let (status, message) = send(
        sandbox
            .client
            .post(format!("{}/v1/messages", root(&sandbox)))
            .json(&primer["params"]),
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(message["usage"]["cache_creation_input_tokens"], 1200);

    // WHEN the batch of 3 goes after it
    let batch_requests: Vec<Value> = (0..3)
        .map(|i| cached_request(&format!("c-{i}"), "two words"))
        .collect();
    let created = create(&sandbox, &batch_requests).await?;
    let ended = retrieve(&sandbox, &created).await?;

    // THEN every request read the 1,200 cached tokens and wrote none
    let usage = cache_usage(&results(&sandbox, &ended).await?);
    assert_eq!(usage, vec![(1200, 0, 2); 3]);
    sandbox.stop().await;
    Ok(())
}
