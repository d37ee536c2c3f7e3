//! Files, authentication, stats and the server's own surface over HTTP.

mod common;

use batchdrop_sandbox::{FaultStats, Sandbox, SandboxConfig, SandboxStats};
use common::{CHAT, Result, chat_file, instant, start, text};
use reqwest::multipart::{Form, Part};
use serde_json::json;

#[tokio::test]
async fn a_request_without_a_bearer_token_is_a_401() -> Result {
    let sandbox = instant().await?;
    let response = sandbox.client.get(sandbox.url("/batches")).send().await?;
    assert_eq!(response.status().as_u16(), 401);
    let body: serde_json::Value = response.json().await?;
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(text(&body["error"]["message"])?.contains("API key"));
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn only_the_configured_key_is_accepted_when_there_is_one() -> Result {
    let config = SandboxConfig {
        api_key: Some("sk-right".to_owned()),
        ..SandboxConfig::default()
    };
    let sandbox = start(config, None).await?;
    let wrong = sandbox
        .client
        .get(sandbox.url("/batches"))
        .bearer_auth("sk-test")
        .send()
        .await?;
    let right = sandbox
        .client
        .get(sandbox.url("/batches"))
        .bearer_auth("sk-right")
        .send()
        .await?;
    assert_eq!(wrong.status().as_u16(), 401);
    let body: serde_json::Value = wrong.json().await?;
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(right.status().as_u16(), 200);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_uploaded_file_can_be_retrieved_listed_downloaded_and_deleted() -> Result {
    // GIVEN an uploaded batch file
    let sandbox = instant().await?;
    let content = chat_file(2);
    let file = sandbox.upload("my requests.jsonl", content.clone()).await?;
    let id = text(&file["id"])?.to_owned();

    // THEN it is a File object, listed, downloadable byte for byte, and deletable
    assert!(id.starts_with("file-"));
    assert_eq!(file["object"], "file");
    assert_eq!(file["bytes"], content.len());
    assert_eq!(file["filename"], "my requests.jsonl");
    assert_eq!(file["purpose"], "batch");
    assert_eq!(file["status"], "processed");
    assert_eq!(
        file["expires_at"]
            .as_i64()
            .zip(file["created_at"].as_i64())
            .map(|(e, c)| e - c),
        Some(30 * 24 * 60 * 60)
    );
    assert_eq!(sandbox.get(&format!("/files/{id}")).await?, file);
    let listed = sandbox.get("/files?purpose=batch").await?;
    assert_eq!(listed["data"][0]["id"], file["id"]);
    assert_eq!(sandbox.content(&file["id"]).await?, content);

    let deleted = sandbox
        .send(sandbox.client.delete(sandbox.url(&format!("/files/{id}"))))
        .await?;
    assert_eq!(
        deleted,
        (200, json!({"id": id, "object": "file", "deleted": true}))
    );
    let (status, _) = sandbox
        .send(sandbox.client.get(sandbox.url(&format!("/files/{id}"))))
        .await?;
    assert_eq!(status, 404);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_batch_file_not_named_jsonl_is_a_400() -> Result {
    let sandbox = instant().await?;
    let form = Form::new().text("purpose", "batch").part(
        "file",
        Part::bytes(chat_file(1).into_bytes()).file_name("requests.json"),
    );
    let (status, body) = sandbox
        .send(sandbox.client.post(sandbox.url("/files")).multipart(form))
        .await?;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "file");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_upload_without_a_known_purpose_is_a_400() -> Result {
    let sandbox = instant().await?;
    for form in [
        Form::new().part("file", Part::bytes(b"{}".to_vec()).file_name("a.jsonl")),
        Form::new()
            .text("purpose", "gossip")
            .part("file", Part::bytes(b"{}".to_vec()).file_name("a.jsonl")),
    ] {
        let (status, body) = sandbox
            .send(sandbox.client.post(sandbox.url("/files")).multipart(form))
            .await?;
        assert_eq!((status, &body["error"]["param"]), (400, &json!("purpose")));
    }
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_batch_needs_an_input_file_uploaded_for_batch() -> Result {
    let sandbox = instant().await?;
    let form = Form::new().text("purpose", "user_data").part(
        "file",
        Part::bytes(chat_file(1).into_bytes()).file_name("a.jsonl"),
    );
    let (_, file) = sandbox
        .send(sandbox.client.post(sandbox.url("/files")).multipart(form))
        .await?;
    let body = json!({"input_file_id": file["id"], "endpoint": CHAT, "completion_window": "24h"});
    let (status, error) = sandbox
        .send(sandbox.client.post(sandbox.url("/batches")).json(&body))
        .await?;
    assert_eq!(
        (status, &error["error"]["param"]),
        (400, &json!("input_file_id"))
    );
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn unknown_ids_and_urls_are_404s_in_openai_shape() -> Result {
    let sandbox = instant().await?;
    for path in [
        "/files/file-nope",
        "/files/file-nope/content",
        "/batches/batch_nope",
        "/nothing/here",
    ] {
        let (status, body) = sandbox.send(sandbox.client.get(sandbox.url(path))).await?;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{path}");
    }
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn stats_count_uploads_batches_and_requests() -> Result {
    // GIVEN one upload and one batch, four requests in all with the retrieve and a 401
    let sandbox = instant().await?;
    let created = sandbox.submit(&chat_file(1), CHAT).await?;
    sandbox.batch(&created["id"]).await?;
    sandbox.client.get(sandbox.url("/batches")).send().await?;

    // WHEN the stats are read, from the API and over HTTP without a key
    let stats = sandbox.sandbox.stats();
    let url = format!("http://{}/sandbox/stats", sandbox.sandbox.addr());
    let over_http: SandboxStats = sandbox.client.get(url).send().await?.json().await?;

    // THEN they agree and count what happened
    let expected = SandboxStats {
        files_uploaded: 1,
        batches_created: 1,
        requests_received: 4,
        message_batches_created: 0,
        faults: FaultStats::default(),
        bedrock_jobs_created: 0,
        bedrock_invocations: 0,
        sync_requests: 0,
        message_requests: 0,
        webhooks: Default::default(),
    };
    assert_eq!(stats, expected);
    assert_eq!(over_http, expected);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_base_url_is_http_on_the_bound_port_under_v1() -> Result {
    let sandbox = Sandbox::start(([0, 0, 0, 0], 0).into(), SandboxConfig::default()).await?;
    let port = sandbox.addr().port();
    assert_ne!(port, 0);
    assert_eq!(sandbox.base_url(), format!("http://127.0.0.1:{port}/v1"));
    assert_eq!(
        sandbox.anthropic_base_url(),
        format!("http://127.0.0.1:{port}")
    );
    sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_stopped_sandbox_refuses_connections() -> Result {
    let sandbox = instant().await?;
    let url = sandbox.url("/batches");
    let client = sandbox.client.clone();
    sandbox.stop().await;
    assert!(client.get(url).bearer_auth("k").send().await.is_err());
    Ok(())
}

#[tokio::test]
async fn files_are_kept_on_disk_in_the_files_directory_by_id() -> Result {
    // GIVEN a sandbox keeping its files in a directory of ours (not there yet)
    let dir = tempfile::tempdir()?;
    let files = dir.path().join("sandbox-files");
    let config = SandboxConfig {
        files_dir: Some(files.clone()),
        ..SandboxConfig::default()
    };
    let sandbox = start(config, None).await?;

    // WHEN a batch file is uploaded and its batch has ended
    let content = chat_file(3);
    let batch = sandbox.submit(&content, CHAT).await?;
    let ended = sandbox.batch(&batch["id"]).await?;
    assert_eq!(ended["status"], "completed");

    // THEN the input and the output file are files named by their ids, holding what is served
    let input = text(&batch["input_file_id"])?.to_owned();
    assert_eq!(std::fs::read_to_string(files.join(&input))?, content);
    let output = text(&ended["output_file_id"])?;
    assert_eq!(
        std::fs::read_to_string(files.join(output))?,
        sandbox.content(&ended["output_file_id"]).await?
    );

    // AND a deleted file is gone from the directory, while the directory stays after a stop
    let (status, _) = sandbox
        .send(
            sandbox
                .client
                .delete(sandbox.url(&format!("/files/{input}"))),
        )
        .await?;
    assert_eq!(status, 200);
    assert!(!files.join(&input).exists());
    sandbox.stop().await;
    assert!(files.join(output).exists());
    Ok(())
}
