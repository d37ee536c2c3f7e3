//! The Anthropic Message Batches side of the Batch API, and `POST /v1/prompt-batches`, over an
//! in-memory bucket and a scripted OpenAI-format provider (`TestBed`): create from inline
//! requests, retrieve, list paging, cancel, results in Anthropic's shape (translated from the
//! provider's), keys (`x-api-key`), tenant isolation, crafted ids, errors in Anthropic's shape.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use batchdrop_core::store::ObjectStore;
use batchdrop_core::testing::{ScriptedProvider, TestBed};
use common::{ACME, Api, Error, GLOBEX, TestResult, str_of};
use serde_json::{Value, json};
use std::time::Duration;

/// Two tenants, both on the `sandbox` route (OpenAI's format, a scripted provider) taking at
/// most 10 requests per batch.
fn api() -> Result<Api, Error> {
    Api::new(
        TestBed::new(ScriptedProvider::new(), 10),
        &["sandbox"],
        None,
    )
}

impl Api {
    async fn get(&self, key: &str, uri: &str) -> Result<(StatusCode, Value), Error> {
        self.json(
            Request::get(uri)
                .header("host", "api.test")
                .header("x-api-key", key)
                .body(Body::empty())?,
        )
        .await
    }

    async fn post(&self, key: &str, uri: &str, body: String) -> Result<(StatusCode, Value), Error> {
        self.json(
            Request::post(uri)
                .header("host", "api.test")
                .header("x-api-key", key)
                .header("content-type", "application/json")
                .body(Body::from(body))?,
        )
        .await
    }

    /// Creates a message batch of `n` requests; its id.
    async fn create(&self, key: &str, n: usize) -> Result<String, Error> {
        let (status, batch) = self.post(key, "/v1/messages/batches", requests(n)).await?;
        assert_eq!(status, StatusCode::OK, "{batch}");
        str_of(&batch, "id")
    }

    /// The results of a batch, one JSON value per line.
    async fn results(&self, key: &str, id: &str) -> Result<(StatusCode, Vec<Value>), Error> {
        let (status, body) = self
            .send(
                Request::get(format!("/v1/messages/batches/{id}/results"))
                    .header("x-api-key", key)
                    .body(Body::empty())?,
            )
            .await?;
        let lines = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(serde_json::from_slice)
            .collect::<Result<Vec<Value>, _>>()?;
        Ok((status, lines))
    }
}

/// A `{"requests": […]}` body of `n` Anthropic batch lines, pretty-printed (line breaks
/// between and inside requests).
fn requests(n: usize) -> String {
    let requests: Vec<Value> = (0..n)
        .map(|i| {
            json!({"custom_id": format!("r{i}"), "params": {"model": "claude-sonnet-4-5",
                "max_tokens": 64, "messages": [{"role": "user", "content": format!("q{i}")}]}})
        })
        .collect();
    serde_json::to_string_pretty(&json!({"requests": requests})).unwrap_or_default()
}

fn assert_anthropic_error(status: StatusCode, body: &Value, expected: StatusCode, kind: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_message_batch_is_in_progress_with_its_requests_counted() -> TestResult {
    let api = api()?;
    let (status, batch) = api.post(ACME, "/v1/messages/batches", requests(3)).await?;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert!(str_of(&batch, "id")?.starts_with("msgbatch_"));
    assert_eq!(batch["type"], "message_batch");
    assert_eq!(batch["processing_status"], "in_progress");
    assert_eq!(batch["request_counts"]["processing"], 3);
    assert_eq!(batch["results_url"], Value::Null);
    assert!(str_of(&batch, "created_at")?.ends_with('Z'));
    assert!(batch["expires_at"].is_string());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_batch_has_a_results_url_and_anthropic_shaped_results() -> TestResult {
    let api = api()?;
    let id = api.create(ACME, 12).await?;
    api.poll_to_end().await?;
    let (status, batch) = api.get(ACME, &format!("/v1/messages/batches/{id}")).await?;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["processing_status"], "ended");
    assert_eq!(batch["request_counts"]["succeeded"], 12);
    assert_eq!(batch["request_counts"]["processing"], 0);
    assert_eq!(
        batch["results_url"],
        format!("http://api.test/v1/messages/batches/{id}/results")
    );
    assert!(batch["ended_at"].is_string());

    let (status, lines) = api.results(ACME, &id).await?;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["custom_id"].as_str())
        .collect();
    let expected: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    assert_eq!(ids, expected, "in input order");
    for line in &lines {
        assert_eq!(line["result"]["type"], "succeeded", "{line}");
        let message = &line["result"]["message"];
        assert_eq!(message["type"], "message");
        assert_eq!(message["role"], "assistant");
        assert_eq!(message["content"][0]["type"], "text");
        assert!(message["usage"]["input_tokens"].is_u64(), "{line}");
        assert!(line.get("response").is_none(), "no OpenAI field: {line}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_an_errored_result() -> TestResult {
    let api = api()?;
    let body = json!({"requests": [
        {"custom_id": "ok", "params": {"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}},
        {"custom_id": "bad", "params": {"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], "top_k": 3}},
    ]});
    let (status, batch) = api
        .post(ACME, "/v1/messages/batches", body.to_string())
        .await?;
    assert_eq!(status, StatusCode::OK, "{batch}");
    api.poll_to_end().await?;
    let (_, lines) = api.results(ACME, &str_of(&batch, "id")?).await?;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["custom_id"], "ok");
    assert_eq!(lines[1]["custom_id"], "bad");
    assert_eq!(lines[1]["result"]["type"], "errored");
    let message = lines[1]["result"]["error"]["error"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(
        message.contains("untranslatable") && message.contains("top_k"),
        "{message}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_before_the_end_are_refused_in_anthropic_shape() -> TestResult {
    let api = api()?;
    let id = api.create(ACME, 2).await?;
    let (status, body) = api
        .get(ACME, &format!("/v1/messages/batches/{id}/results"))
        .await?;
    assert_anthropic_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_newest_first_with_before_and_after_ids() -> TestResult {
    let api = api()?;
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(api.create(ACME, 1).await?);
        api.bed.clock.advance(Duration::from_millis(5));
    }
    made.reverse(); // newest first
    let (status, page) = api.get(ACME, "/v1/messages/batches?limit=2").await?;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["id"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(ids(&page), made[..2]);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["first_id"], made[0].as_str());
    assert_eq!(page["last_id"], made[1].as_str());
    let (_, next) = api
        .get(
            ACME,
            &format!("/v1/messages/batches?limit=2&after_id={}", made[1]),
        )
        .await?;
    assert_eq!(ids(&next), made[2..4]);
    assert_eq!(next["has_more"], true);
    let (_, last) = api
        .get(
            ACME,
            &format!("/v1/messages/batches?limit=2&after_id={}", made[3]),
        )
        .await?;
    assert_eq!(ids(&last), made[4..]);
    assert_eq!(last["has_more"], false);
    let (_, back) = api
        .get(
            ACME,
            &format!("/v1/messages/batches?limit=2&before_id={}", made[4]),
        )
        .await?;
    assert_eq!(ids(&back), made[2..4]);
    assert_eq!(back["has_more"], true);
    let (_, top) = api
        .get(
            ACME,
            &format!("/v1/messages/batches?limit=2&before_id={}", made[2]),
        )
        .await?;
    assert_eq!(ids(&top), made[..2]);
    assert_eq!(top["has_more"], false);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_batch_is_canceling_then_ended() -> TestResult {
    let api = api()?;
    let id = api.create(ACME, 25).await?;
    let (status, batch) = api
        .post(
            ACME,
            &format!("/v1/messages/batches/{id}/cancel"),
            String::new(),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert!(
        matches!(
            batch["processing_status"].as_str(),
            Some("canceling" | "ended")
        ),
        "{batch}"
    );
    assert!(batch["cancel_initiated_at"].is_string(), "{batch}");
    api.poll_to_end().await?;
    let (_, batch) = api.get(ACME, &format!("/v1/messages/batches/{id}")).await?;
    assert_eq!(batch["processing_status"], "ended", "{batch}");
    let (status, lines) = api.results(ACME, &id).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lines.len(), 25, "every request has a result line");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_message_batch_is_404_in_anthropic_shape() -> TestResult {
    let api = api()?;
    let id = api.create(ACME, 1).await?;
    for uri in [
        format!("/v1/messages/batches/{id}"),
        format!("/v1/messages/batches/{id}/results"),
    ] {
        let (status, body) = api.get(GLOBEX, &uri).await?;
        assert_anthropic_error(status, &body, StatusCode::NOT_FOUND, "not_found_error");
    }
    let (status, body) = api
        .post(
            GLOBEX,
            &format!("/v1/messages/batches/{id}/cancel"),
            String::new(),
        )
        .await?;
    assert_anthropic_error(status, &body, StatusCode::NOT_FOUND, "not_found_error");
    let (_, list) = api.get(GLOBEX, "/v1/messages/batches").await?;
    assert_eq!(list["data"], json!([]));
    let (status, _) = api.get(ACME, &format!("/v1/messages/batches/{id}")).await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_key_is_401_in_anthropic_shape() -> TestResult {
    let api = api()?;
    let (status, body) = api
        .json(Request::get("/v1/messages/batches").body(Body::empty())?)
        .await?;
    assert_anthropic_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "authentication_error",
    );
    let (status, body) = api.get("bdk_wrong", "/v1/messages/batches").await?;
    assert_anthropic_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "authentication_error",
    );
    let bearer = Request::get("/v1/messages/batches")
        .header("authorization", format!("Bearer {ACME}"))
        .body(Body::empty())?;
    let (status, _) = api.send(bearer).await?;
    assert_eq!(status, StatusCode::OK, "a bearer token is a key too");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_message_batch_ids_reach_nothing() -> TestResult {
    let api = api()?;
    let id = api.create(ACME, 1).await?;
    let token = id.trim_start_matches("msgbatch_");
    for uri in [
        "/v1/messages/batches/..%2F..%2Ffiles".to_string(),
        "/v1/messages/batches/msgbatch_%2E%2E".to_string(),
        format!("/v1/messages/batches/msgbatch_{}", token.to_uppercase()),
        format!("/v1/messages/batches/msgbatch_{token}%2F..%2F..%2Fbatches"),
        format!("/v1/messages/batches/batch_{token}"),
        format!("/v1/messages/batches/file-{token}/results"),
    ] {
        let (status, body) = api.get(ACME, &uri).await?;
        assert_anthropic_error(status, &body, StatusCode::NOT_FOUND, "not_found_error");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_a_requests_object_is_400_and_leaves_nothing() -> TestResult {
    let api = api()?;
    for body in [
        "[1]",
        "{\"requests\": {}}",
        "{\"requests\": []}",
        "{\"requests\": [{}",
    ] {
        let (status, answer) = api
            .post(ACME, "/v1/messages/batches", body.to_string())
            .await?;
        assert_anthropic_error(
            status,
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
        );
    }
    assert!(
        api.bed.store.list("_batchdrop/api/acme/").await?.is_empty(),
        "a refused body leaves no object"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_batch_is_an_openai_batch_too() -> TestResult {
    let api = api()?;
    let id = api.create(ACME, 2).await?;
    api.poll_to_end().await?;
    let batch_id = id.replace("msgbatch_", "batch_");
    let (status, batch) = api.get(ACME, &format!("/v1/batches/{batch_id}")).await?;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["status"], "completed");
    let output = str_of(&batch, "output_file_id")?;
    let (status, body) = api
        .send(
            Request::get(format!("/v1/files/{output}/content"))
                .header("x-api-key", ACME)
                .body(Body::empty())?,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let first: Value = serde_json::from_slice(body.split(|b| *b == b'\n').next().unwrap_or(b""))?;
    assert_eq!(first["custom_id"], "r0");
    assert_eq!(first["response"]["status_code"], 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_batch_runs_its_prompts_and_answers_both_ids() -> TestResult {
    let api = api()?;
    let body = json!({"prompts": ["Say hi.", {"prompt": "Say bye.", "custom_id": "bye", "max_tokens": 5}],
                      "metadata": {"run": "p1"}});
    let (status, batch) = api
        .post(ACME, "/v1/prompt-batches", body.to_string())
        .await?;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["prompts"], 2);
    assert_eq!(batch["route"], "sandbox");
    let message_batch_id = str_of(&batch, "message_batch_id")?;
    let batch_id = str_of(&batch, "id")?;
    api.poll_to_end().await?;
    let (_, lines) = api.results(ACME, &message_batch_id).await?;
    let ids: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["custom_id"].as_str())
        .collect();
    assert_eq!(ids, ["line-1", "bye"]);
    assert!(
        lines.iter().all(|l| l["result"]["type"] == "succeeded"),
        "{lines:?}"
    );
    let (_, openai) = api.get(ACME, &format!("/v1/batches/{batch_id}")).await?;
    assert_eq!(openai["status"], "completed");
    assert_eq!(openai["metadata"], json!({"run": "p1"}));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_batch_on_a_route_the_key_may_not_use_is_refused() -> TestResult {
    let api = api()?;
    let body = json!({"route": "openai", "prompts": ["x"]});
    let (status, answer) = api
        .post(ACME, "/v1/prompt-batches", body.to_string())
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        api.bed.store.list("_batchdrop/api/acme/").await?.is_empty(),
        "nothing is left behind"
    );
    Ok(())
}
