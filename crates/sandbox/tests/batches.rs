//! Batches over HTTP: lifecycle, results files, validation, listing, cancelling, answers.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{
    CHAT, Result, T0, chat_file, chat_line, custom_ids, instant, set_clock, text, with_manual_clock,
};
use serde_json::{Value, json};

#[tokio::test]
async fn an_instant_batch_is_validating_when_created_and_completed_on_the_next_retrieve() -> Result
{
    // GIVEN an instant sandbox and a file of 3 requests
    let sandbox = instant().await?;
    let file = sandbox.upload("requests.jsonl", chat_file(3)).await?;

    // WHEN a batch is created and retrieved
    let created = sandbox.create_batch(&file["id"], CHAT).await?;
    let batch = sandbox.batch(&created["id"]).await?;

    // THEN it was validating, and now is completed with an output file and no error file
    assert_eq!(created["status"], "validating");
    assert_eq!(created["object"], "batch");
    assert!(text(&created["id"])?.starts_with("batch_"));
    assert_eq!(created["input_file_id"], file["id"]);
    assert_eq!(batch["status"], "completed");
    assert_eq!(
        batch["request_counts"],
        json!({"total": 3, "completed": 3, "failed": 0})
    );
    assert!(batch["output_file_id"].is_string());
    assert!(batch["error_file_id"].is_null());
    assert!(batch["errors"].is_null());
    assert_eq!(batch["model"], "gpt-4o-mini");
    let output = sandbox
        .get(&format!("/files/{}", text(&batch["output_file_id"])?))
        .await?;
    assert_eq!(output["purpose"], "batch_output");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn output_has_one_line_per_request_in_shuffled_order() -> Result {
    // GIVEN a completed batch of 50 requests
    let sandbox = instant().await?;
    let created = sandbox.submit(&chat_file(50), CHAT).await?;
    let batch = sandbox.batch(&created["id"]).await?;

    // WHEN its output file is read
    let lines = sandbox.lines(&batch["output_file_id"]).await?;

    // THEN every request has exactly one successful line, but not in input order
    let expected: Vec<String> = (0..50).map(|i| format!("req-{i}")).collect();
    let got = custom_ids(&lines);
    let mut sorted = got.clone();
    sorted.sort_by_key(|id| id[4..].parse::<u32>().unwrap_or(u32::MAX));
    assert_eq!(sorted, expected);
    assert_ne!(got, expected, "output lines should be shuffled");
    for line in &lines {
        assert!(text(&line["id"])?.starts_with("batch_req_"));
        assert_eq!(line["response"]["status_code"], 200);
        assert!(text(&line["response"]["request_id"])?.starts_with("req_"));
        assert_eq!(line["response"]["body"]["object"], "chat.completion");
        assert!(line["error"].is_null());
    }
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn invalid_lines_fail_the_batch_with_their_line_numbers() -> Result {
    // GIVEN a file with good lines and bad ones at lines 2, 4 (after a blank line 3) and 5
    let sandbox = instant().await?;
    let jsonl = [
        chat_line("a", "m", "hi"),
        "{not json".to_owned(),
        String::new(),
        json!({"custom_id": "b", "method": "POST", "url": CHAT}).to_string(),
        chat_line("a", "m", "again"),
        chat_line("c", "m", "fine"),
    ]
    .join("\n");

    // WHEN a batch of it is created and retrieved
    let created = sandbox.submit(&jsonl, CHAT).await?;
    let batch = sandbox.batch(&created["id"]).await?;

    // THEN it failed, with one error per bad line and no results
    assert_eq!(batch["status"], "failed");
    assert!(batch["failed_at"].is_i64());
    assert!(batch["in_progress_at"].is_null());
    assert!(batch["output_file_id"].is_null());
    assert!(batch["error_file_id"].is_null());
    assert_eq!(batch["errors"]["object"], "list");
    let errors: Vec<(Value, Value, Value)> = batch["errors"]["data"]
        .as_array()
        .ok_or("errors.data should be an array")?
        .iter()
        .map(|e| (e["line"].clone(), e["code"].clone(), e["param"].clone()))
        .collect();
    assert_eq!(
        errors,
        vec![
            (json!(2), json!("invalid_json_line"), Value::Null),
            (json!(4), json!("missing_required_parameter"), json!("body")),
            (json!(5), json!("duplicate_custom_id"), json!("custom_id")),
        ]
    );
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_empty_file_fails_the_batch() -> Result {
    let sandbox = instant().await?;
    let created = sandbox.submit("\n\n", CHAT).await?;
    let batch = sandbox.batch(&created["id"]).await?;
    assert_eq!(batch["status"], "failed");
    assert_eq!(batch["errors"]["data"][0]["code"], "empty_file");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_rejected_request_goes_to_the_error_file_not_the_output_file() -> Result {
    // GIVEN a batch where request "bad" has no messages
    let sandbox = instant().await?;
    let bad = json!({"custom_id": "bad", "method": "POST", "url": CHAT, "body": {"model": "m"}});
    let jsonl = [chat_line("good", "m", "hello"), bad.to_string()].join("\n");
    let created = sandbox.submit(&jsonl, CHAT).await?;

    // WHEN it completes
    let batch = sandbox.batch(&created["id"]).await?;

    // THEN the output file has "good", the error file has "bad" as a 400 with error null
    assert_eq!(batch["status"], "completed");
    assert_eq!(
        batch["request_counts"],
        json!({"total": 2, "completed": 1, "failed": 1})
    );
    let output = sandbox.lines(&batch["output_file_id"]).await?;
    let errors = sandbox.lines(&batch["error_file_id"]).await?;
    assert_eq!(custom_ids(&output), ["good"]);
    assert_eq!(custom_ids(&errors), ["bad"]);
    let rejected = &errors[0];
    assert_eq!(rejected["response"]["status_code"], 400);
    assert!(rejected["error"].is_null());
    assert_eq!(
        rejected["response"]["body"]["error"]["type"],
        "invalid_request_error"
    );
    assert_eq!(rejected["response"]["body"]["error"]["param"], "messages");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_batch_whose_requests_all_fail_has_no_output_file() -> Result {
    // GIVEN a batch whose every request names the model that does not exist
    let sandbox = instant().await?;
    let jsonl = [
        chat_line("a", batchdrop_sandbox::MODEL_NOT_FOUND, "hi"),
        chat_line("b", batchdrop_sandbox::MODEL_NOT_FOUND, "hi"),
    ]
    .join("\n");
    let created = sandbox.submit(&jsonl, CHAT).await?;

    // WHEN it completes
    let batch = sandbox.batch(&created["id"]).await?;

    // THEN it is completed, with only an error file of 404s
    assert_eq!(batch["status"], "completed");
    assert!(batch["output_file_id"].is_null());
    assert_eq!(
        batch["request_counts"],
        json!({"total": 2, "completed": 0, "failed": 2})
    );
    let errors = sandbox.lines(&batch["error_file_id"]).await?;
    assert_eq!(errors.len(), 2);
    for line in &errors {
        assert_eq!(line["response"]["status_code"], 404);
        assert_eq!(line["response"]["body"]["error"]["code"], "model_not_found");
    }
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn batches_list_newest_first_in_pages() -> Result {
    // GIVEN five batches
    let sandbox = instant().await?;
    let file = sandbox.upload("requests.jsonl", chat_file(1)).await?;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(sandbox.create_batch(&file["id"], CHAT).await?["id"].clone());
    }
    ids.reverse();

    // WHEN they are listed two at a time
    let first = sandbox.get("/batches?limit=2").await?;
    let second = sandbox
        .get(&format!(
            "/batches?limit=2&after={}",
            text(&first["last_id"])?
        ))
        .await?;
    let last = sandbox
        .get(&format!(
            "/batches?limit=2&after={}",
            text(&second["last_id"])?
        ))
        .await?;
    let everything = sandbox.get("/batches").await?;

    // THEN the pages hold them newest first, and only the last page has no more
    let page_ids = |page: &Value| -> Vec<Value> {
        page["data"]
            .as_array()
            .map(|data| data.iter().map(|b| b["id"].clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(first["object"], "list");
    assert_eq!(page_ids(&first), ids[0..2]);
    assert_eq!(first["first_id"], ids[0]);
    assert_eq!(first["has_more"], true);
    assert_eq!(page_ids(&second), ids[2..4]);
    assert_eq!(second["has_more"], true);
    assert_eq!(page_ids(&last), ids[4..5]);
    assert_eq!(last["has_more"], false);
    assert_eq!(page_ids(&everything), ids);
    let (status, _) = sandbox
        .send(sandbox.client.get(sandbox.url("/batches?limit=101")))
        .await?;
    assert_eq!(status, 400);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn state_timestamps_follow_a_manual_clock_through_every_state() -> Result {
    // GIVEN a sandbox with 10-second steps on a manual clock, and a batch of 10 requests
    let (sandbox, clock) = with_manual_clock(Duration::from_secs(10)).await?;
    let created = sandbox.submit(&chat_file(10), CHAT).await?;
    let id = &created["id"];
    let status_at = |seconds| {
        set_clock(&clock, seconds);
        sandbox.batch(id)
    };

    // WHEN the clock moves through the steps, THEN the batch follows, with its timestamps
    let batch = status_at(5).await?;
    assert_eq!(batch["status"], "validating");
    assert_eq!(batch["created_at"], T0);
    assert_eq!(batch["expires_at"], T0 + 24 * 60 * 60);
    assert_eq!(batch["request_counts"]["total"], 0);

    let batch = status_at(14).await?;
    assert_eq!(batch["status"], "in_progress");
    assert_eq!(batch["in_progress_at"], T0 + 10);
    assert_eq!(
        batch["request_counts"],
        json!({"total": 10, "completed": 4, "failed": 0})
    );
    assert!(batch["output_file_id"].is_null());

    let batch = status_at(25).await?;
    assert_eq!(batch["status"], "finalizing");
    assert_eq!(batch["finalizing_at"], T0 + 20);
    assert_eq!(batch["request_counts"]["completed"], 10);
    assert!(batch["completed_at"].is_null());

    let batch = status_at(31).await?;
    assert_eq!(batch["status"], "completed");
    assert_eq!(batch["completed_at"], T0 + 30);
    let output = sandbox
        .get(&format!("/files/{}", text(&batch["output_file_id"])?))
        .await?;
    assert_eq!(output["created_at"], T0 + 30);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn cancel_moves_a_batch_to_cancelling_then_cancelled_keeping_processed_results() -> Result {
    // GIVEN a batch of 10 requests, 3 seconds into its 10-second in_progress step
    let (sandbox, clock) = with_manual_clock(Duration::from_secs(10)).await?;
    let created = sandbox.submit(&chat_file(10), CHAT).await?;
    let id = text(&created["id"])?.to_owned();
    set_clock(&clock, 13);

    // WHEN it is cancelled
    let cancelling = sandbox
        .post(&format!("/batches/{id}/cancel"), &json!({}))
        .await?;
    set_clock(&clock, 22);
    let still_cancelling = sandbox.get(&format!("/batches/{id}")).await?;
    set_clock(&clock, 23);
    let cancelled = sandbox.get(&format!("/batches/{id}")).await?;

    // THEN it is cancelling for one step, then cancelled; the 3 processed requests are in the
    // output file and the 7 others in the error file as batch_cancelled
    assert_eq!(cancelling["status"], "cancelling");
    assert_eq!(cancelling["cancelling_at"], T0 + 13);
    assert_eq!(still_cancelling["status"], "cancelling");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancelled_at"], T0 + 23);
    assert_eq!(
        cancelled["request_counts"],
        json!({"total": 10, "completed": 3, "failed": 7})
    );
    let output = sandbox.lines(&cancelled["output_file_id"]).await?;
    let errors = sandbox.lines(&cancelled["error_file_id"]).await?;
    assert_eq!(output.len(), 3);
    assert_eq!(errors.len(), 7);
    for line in &errors {
        assert!(line["response"].is_null());
        assert_eq!(line["error"]["code"], "batch_cancelled");
    }
    let all: HashSet<String> = custom_ids(&output)
        .into_iter()
        .chain(custom_ids(&errors))
        .collect();
    assert_eq!(all.len(), 10);
    let (status, _) = sandbox
        .send(
            sandbox
                .client
                .post(sandbox.url(&format!("/batches/{id}/cancel"))),
        )
        .await?;
    assert_eq!(status, 400, "a cancelled batch cannot be cancelled again");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_same_request_gets_the_same_answer_in_two_batches() -> Result {
    // GIVEN the same file submitted twice
    let sandbox = instant().await?;
    let jsonl = chat_line("q", "gpt-4o-mini", "What is the capital of France?");
    let first = sandbox.submit(&jsonl, CHAT).await?;
    let second = sandbox.submit(&jsonl, CHAT).await?;

    // WHEN both complete
    let first = sandbox.batch(&first["id"]).await?;
    let second = sandbox.batch(&second["id"]).await?;
    let a = sandbox.lines(&first["output_file_id"]).await?;
    let b = sandbox.lines(&second["output_file_id"]).await?;

    // THEN the answers' content and usage are the same (ids differ)
    let (a, b) = (&a[0]["response"]["body"], &b[0]["response"]["body"]);
    assert_eq!(a["choices"], b["choices"]);
    assert_eq!(a["usage"], b["usage"]);
    assert_ne!(first["id"], second["id"]);
    assert_eq!(a["usage"]["prompt_tokens"], 6);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_completed_batch_reports_usage_summing_its_answers() -> Result {
    let sandbox = instant().await?;
    let created = sandbox.submit(&chat_file(4), CHAT).await?;
    let batch = sandbox.batch(&created["id"]).await?;
    let lines = sandbox.lines(&batch["output_file_id"]).await?;
    let sum = |field: &str| -> u64 {
        lines
            .iter()
            .map(|line| {
                line["response"]["body"]["usage"][field]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum()
    };
    assert_eq!(batch["usage"]["input_tokens"], sum("prompt_tokens"));
    assert_eq!(batch["usage"]["output_tokens"], sum("completion_tokens"));
    assert_eq!(batch["usage"]["total_tokens"], sum("total_tokens"));
    assert_eq!(batch["usage"]["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        batch["usage"]["output_tokens_details"]["reasoning_tokens"],
        0
    );
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn every_endpoint_answers_in_its_own_shape() -> Result {
    let sandbox = instant().await?;
    let cases = [
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": ["a b", "c"]}),
            "list",
        ),
        (
            "/v1/completions",
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Once upon"}),
            "text_completion",
        ),
        (
            "/v1/responses",
            json!({"model": "gpt-4.1", "input": "Hello"}),
            "response",
        ),
        ("/v1/moderations", json!({"input": "Hello"}), "moderation"),
    ];
    for (endpoint, body, object) in cases {
        let line = json!({"custom_id": "x", "method": "POST", "url": endpoint, "body": body});
        let created = sandbox.submit(&line.to_string(), endpoint).await?;
        let batch = sandbox.batch(&created["id"]).await?;
        assert_eq!(batch["status"], "completed", "{endpoint}");
        let lines = sandbox.lines(&batch["output_file_id"]).await?;
        let body = &lines[0]["response"]["body"];
        match object {
            "moderation" => assert_eq!(body["results"][0]["flagged"], false),
            object => assert_eq!(body["object"], object, "{endpoint}"),
        }
    }
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn creating_a_batch_checks_its_parameters() -> Result {
    let sandbox = instant().await?;
    let file = sandbox.upload("requests.jsonl", chat_file(1)).await?;
    let too_much: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        (
            json!({"input_file_id": "file-nope", "endpoint": CHAT, "completion_window": "24h"}),
            404,
            "input_file_id",
        ),
        (
            json!({"input_file_id": file["id"], "endpoint": "/v1/images/edits", "completion_window": "24h"}),
            400,
            "endpoint",
        ),
        (
            json!({"input_file_id": file["id"], "endpoint": CHAT, "completion_window": "1h"}),
            400,
            "completion_window",
        ),
        (
            json!({"input_file_id": file["id"], "endpoint": CHAT}),
            400,
            "completion_window",
        ),
        (
            json!({"input_file_id": file["id"], "endpoint": CHAT, "completion_window": "24h", "metadata": too_much}),
            400,
            "metadata",
        ),
        (
            json!({"input_file_id": file["id"], "endpoint": CHAT, "completion_window": "24h", "metadata": {"k": "v".repeat(513)}}),
            400,
            "metadata",
        ),
    ];
    for (body, status, param) in cases {
        let (got, error) = sandbox
            .send(sandbox.client.post(sandbox.url("/batches")).json(&body))
            .await?;
        assert_eq!(
            (got, &error["error"]["param"]),
            (status, &json!(param)),
            "{body}"
        );
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_batch_of_fifty_thousand_requests_and_80_mb_completes() -> Result {
    // GIVEN a file at OpenAI's request limit, of about 80 MB
    let sandbox = instant().await?;
    let filler = "lorem ipsum dolor sit amet ".repeat(58);
    let jsonl: String = (0..batchdrop_sandbox::MAX_REQUESTS)
        .map(|i| chat_line(&format!("req-{i}"), "gpt-4o-mini", &format!("{i} {filler}")) + "\n")
        .collect();
    assert!(jsonl.len() > 80_000_000, "{} bytes", jsonl.len());

    // WHEN it is submitted and retrieved
    let started = Instant::now();
    let created = sandbox.submit(&jsonl, CHAT).await?;
    let batch = sandbox.batch(&created["id"]).await?;
    let took = started.elapsed();
    let content = sandbox.content(&batch["output_file_id"]).await?;

    // THEN every request has its line
    eprintln!("50,000 requests: uploaded, validated and processed in {took:?}");
    assert_eq!(batch["status"], "completed");
    assert_eq!(batch["request_counts"]["completed"], 50_000);
    assert_eq!(content.lines().count(), 50_000);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn more_requests_than_the_limit_fail_the_batch() -> Result {
    let sandbox = instant().await?;
    let created = sandbox
        .submit(&chat_file(batchdrop_sandbox::MAX_REQUESTS + 1), CHAT)
        .await?;
    let batch = sandbox.batch(&created["id"]).await?;
    assert_eq!(batch["status"], "failed");
    assert_eq!(batch["errors"]["data"][0]["code"], "too_many_requests");
    assert_eq!(batch["errors"]["data"][0]["line"], 50_001);
    sandbox.stop().await;
    Ok(())
}
