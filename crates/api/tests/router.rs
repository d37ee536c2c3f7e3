//! The Batch API's router over an in-memory bucket and a scripted provider (`TestBed`): keys,
//! tenant isolation, crafted ids, routes, files, batches as engine jobs, paging and cancel.

mod common;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use batchdrop_core::layout::ACTIVE;
use batchdrop_core::manifest::{JobStatus, Manifest};
use batchdrop_core::store::{
    ByteStream, GetResult, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, StoreError,
};
use batchdrop_core::testing::{ScriptedProvider, TestBed};
use bytes::Bytes;
use common::{ACME, Api, Error, GLOBEX, TestResult, hex, str_of};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const BOUNDARY: &str = "xBOUNDARYx";

/// Two tenants: `acme` may use `sandbox` (its default) and `openai`; `globex` only `sandbox`.
/// The `sandbox` route takes at most `max_requests` per batch.
fn api(max_requests: u64) -> Result<Api, Error> {
    api_with(max_requests, false)
}

/// [`api`], with downloads redirected when `redirecting` (its bucket then gives URLs: a
/// [`UrlStore`] over the engine's store).
fn api_with(max_requests: u64, redirecting: bool) -> Result<Api, Error> {
    let bed = TestBed::new(ScriptedProvider::new(), max_requests);
    let downloads: Option<Arc<dyn ObjectStore>> =
        redirecting.then(|| Arc::new(UrlStore(bed.store.clone())) as Arc<dyn ObjectStore>);
    Api::new(bed, &["sandbox", "openai"], downloads)
}

impl Api {
    async fn get(&self, key: &str, uri: &str) -> Result<(StatusCode, Value), Error> {
        self.json(
            Request::get(uri)
                .header("authorization", format!("Bearer {key}"))
                .body(Body::empty())?,
        )
        .await
    }

    async fn post(&self, key: &str, uri: &str, body: Value) -> Result<(StatusCode, Value), Error> {
        self.json(
            Request::post(uri)
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))?,
        )
        .await
    }

    /// Uploads `lines` as a batch file; its id.
    async fn upload(&self, key: &str, lines: &str) -> Result<String, Error> {
        let body = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"requests.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{lines}\r\n--{BOUNDARY}--\r\n"
        );
        let (status, file) = self
            .json(
                Request::post("/v1/files")
                    .header("x-api-key", key)
                    .header(
                        "content-type",
                        format!("multipart/form-data; boundary={BOUNDARY}"),
                    )
                    .body(Body::from(body))?,
            )
            .await?;
        assert_eq!(status, StatusCode::OK, "{file}");
        str_of(&file, "id")
    }

    async fn create_batch(
        &self,
        key: &str,
        uri: &str,
        file_id: &str,
    ) -> Result<(StatusCode, Value), Error> {
        let body = json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                          "completion_window": "24h", "metadata": {"run": "test"}});
        self.post(key, uri, body).await
    }
}

fn chat_lines(n: usize) -> String {
    (0..n)
        .map(|i| {
            json!({"custom_id": format!("r{i}"), "method": "POST", "url": "/v1/chat/completions",
                   "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("q{i}")}]}})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_openai_error(status: StatusCode, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    let error = &body["error"];
    assert!(error["message"].is_string(), "{body}");
    assert!(error["type"].is_string(), "{body}");
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_key_or_with_a_wrong_one_is_401_in_openai_shape() -> TestResult {
    let api = api(10)?;
    let (status, body) = api
        .json(Request::get("/v1/batches").body(Body::empty())?)
        .await?;
    assert_openai_error(status, &body, StatusCode::UNAUTHORIZED);
    let (status, body) = api.get("bdk_wrong", "/v1/batches").await?;
    assert_openai_error(status, &body, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let (status, body) = api
        .json(
            Request::get("/v1/batches")
                .header("authorization", format!("Bearer {}", hex(ACME)))
                .body(Body::empty())?,
        )
        .await?;
    assert_openai_error(status, &body, StatusCode::UNAUTHORIZED);
    let (status, _) = api.get(ACME, "/v1/batches").await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_file_and_batch_are_404() -> TestResult {
    let api = api(10)?;
    let file_id = api.upload(ACME, &chat_lines(2)).await?;
    let (status, batch) = api.create_batch(ACME, "/v1/batches", &file_id).await?;
    assert_eq!(status, StatusCode::OK, "{batch}");
    let batch_id = str_of(&batch, "id")?;

    for uri in [
        format!("/v1/files/{file_id}"),
        format!("/v1/files/{file_id}/content"),
        format!("/v1/batches/{batch_id}"),
    ] {
        let (status, body) = api.get(GLOBEX, &uri).await?;
        assert_openai_error(status, &body, StatusCode::NOT_FOUND);
        let own = Request::get(&uri)
            .header("x-api-key", ACME)
            .body(Body::empty())?;
        let (status, _) = api.send(own).await?;
        assert_eq!(status, StatusCode::OK, "{uri} for its own tenant");
    }
    let (status, body) = api
        .post(GLOBEX, &format!("/v1/batches/{batch_id}/cancel"), json!({}))
        .await?;
    assert_openai_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = api.create_batch(GLOBEX, "/v1/batches", &file_id).await?;
    assert_openai_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = api
        .json(
            Request::delete(format!("/v1/files/{file_id}"))
                .header("x-api-key", GLOBEX)
                .body(Body::empty())?,
        )
        .await?;
    assert_openai_error(status, &body, StatusCode::NOT_FOUND);
    let (_, list) = api.get(GLOBEX, "/v1/batches").await?;
    assert_eq!(list["data"], json!([]));
    // The file is still acme's.
    let (status, _) = api.get(ACME, &format!("/v1/files/{file_id}")).await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_ids_reach_nothing() -> TestResult {
    let api = api(10)?;
    let file_id = api.upload(ACME, &chat_lines(1)).await?;
    let token = file_id.trim_start_matches("file-");
    for uri in [
        "/v1/files/..%2Fx".to_string(),
        "/v1/files/file-%2F..".to_string(),
        "/v1/files/file-%2F../content".to_string(),
        format!("/v1/files/file-{}", token.to_uppercase()),
        format!("/v1/files/file-{token}%2F..%2F..%2Fbatches"),
        "/v1/files/../x".to_string(),
        "/v1/batches/..%2F..%2Ffiles".to_string(),
        "/v1/batches/batch_%2E%2E".to_string(),
    ] {
        let (status, body) = api.get(ACME, &uri).await?;
        assert_openai_error(status, &body, StatusCode::NOT_FOUND);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_the_tenant_may_not_use_is_403() -> TestResult {
    let api = api(10)?;
    let file_id = api.upload(GLOBEX, &chat_lines(1)).await?;
    let (status, body) = api
        .create_batch(GLOBEX, "/routes/openai/v1/batches", &file_id)
        .await?;
    assert_openai_error(status, &body, StatusCode::FORBIDDEN);
    let (status, body) = api
        .create_batch(GLOBEX, "/routes/sandbox/v1/batches", &file_id)
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_an_engine_job_whose_output_comes_back_in_input_order() -> TestResult {
    // GIVEN 7 requests and 3 per batch at most, plus a line that is not JSON
    let api = api(3)?;
    let lines = format!("{}\nnot json\n", chat_lines(7));
    let file_id = api.upload(ACME, &lines).await?;
    let (status, file) = api.get(ACME, &format!("/v1/files/{file_id}")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(file["bytes"], lines.len(), "{file}");
    let (status, content) = api
        .send(
            Request::get(format!("/v1/files/{file_id}/content"))
                .header("x-api-key", ACME)
                .body(Body::empty())?,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(String::from_utf8(content)?, lines);

    // WHEN a batch is created and the engine polls it to the end
    let (status, batch) = api.create_batch(ACME, "/v1/batches", &file_id).await?;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["status"], "in_progress", "{batch}");
    assert_eq!(batch["metadata"], json!({"run": "test"}));
    let batch_id = str_of(&batch, "id")?;
    let job_id = batchdrop_api::layout::job_id("acme", &batch_id);
    let (manifest, _) = api
        .bed
        .store
        .get_json::<Manifest>(&format!("_batchdrop/jobs/{job_id}/manifest.json"))
        .await?;
    assert_eq!(manifest.chunks.len(), 3, "7 requests, 3 per batch");
    assert_eq!(
        manifest.results_prefix,
        format!("results/sandbox/api/acme/{batch_id}/")
    );
    api.poll_to_end().await?;

    // THEN the batch is completed with one output line per request, in input order
    let (_, batch) = api.get(ACME, &format!("/v1/batches/{batch_id}")).await?;
    assert_eq!(batch["status"], "completed", "{batch}");
    assert_eq!(
        batch["request_counts"],
        json!({"total": 8, "completed": 7, "failed": 1})
    );
    let output_id = str_of(&batch, "output_file_id")?;
    let (status, output) = api
        .send(
            Request::get(format!("/v1/files/{output_id}/content"))
                .header("x-api-key", ACME)
                .body(Body::empty())?,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<String> = String::from_utf8(output)?
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .map(|v| v["custom_id"].as_str().unwrap_or("").to_string())
        })
        .collect::<Result<_, _>>()?;
    assert_eq!(ids, (0..7).map(|i| format!("r{i}")).collect::<Vec<_>>());
    // AND the refused line is in the error file, in OpenAI's error-file shape
    let error_id = str_of(&batch, "error_file_id")?;
    let (_, errors) = api
        .send(
            Request::get(format!("/v1/files/{error_id}/content"))
                .header("x-api-key", ACME)
                .body(Body::empty())?,
        )
        .await?;
    let errors: Value = serde_json::from_slice(&errors)?;
    assert_eq!(errors["response"], Value::Null);
    assert_eq!(errors["error"]["code"], "invalid_json");
    assert!(str_of(&errors["error"], "message")?.starts_with("line 8: "));
    let (_, error_file) = api.get(ACME, &format!("/v1/files/{error_id}")).await?;
    assert_eq!(error_file["bytes"], errors.to_string().len() + 1);
    // AND nothing was written under inbox/
    assert!(api.bed.store.list("inbox/").await?.is_empty());
    // AND another tenant cannot read the output either
    let (status, _) = api
        .get(GLOBEX, &format!("/v1/files/{output_id}/content"))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_used_by_two_batches_makes_two_jobs() -> TestResult {
    let api = api(10)?;
    let file_id = api.upload(ACME, &chat_lines(2)).await?;
    let (_, first) = api.create_batch(ACME, "/v1/batches", &file_id).await?;
    let (_, second) = api.create_batch(ACME, "/v1/batches", &file_id).await?;
    assert_ne!(first["id"], second["id"]);
    assert_eq!(api.bed.store.list(ACTIVE).await?.len(), 2);
    api.poll_to_end().await?;
    for batch in [first, second] {
        let (_, batch) = api
            .get(ACME, &format!("/v1/batches/{}", str_of(&batch, "id")?))
            .await?;
        assert_eq!(batch["status"], "completed", "{batch}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_listed_newest_first_a_page_at_a_time() -> TestResult {
    let api = api(10)?;
    let file_id = api.upload(ACME, &chat_lines(1)).await?;
    let mut made = Vec::new();
    for _ in 0..5 {
        let (_, batch) = api.create_batch(ACME, "/v1/batches", &file_id).await?;
        made.push(str_of(&batch, "id")?);
        api.bed.clock.advance(Duration::from_millis(5));
    }
    made.reverse();
    let mut seen = Vec::new();
    let mut uri = "/v1/batches?limit=2".to_string();
    let mut pages = 0;
    loop {
        let (status, page) = api.get(ACME, &uri).await?;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        seen.extend(
            data.iter()
                .map(|b| b["id"].as_str().unwrap_or("").to_string()),
        );
        if page["has_more"] != json!(true) {
            break;
        }
        uri = format!("/v1/batches?limit=2&after={}", str_of(&page, "last_id")?);
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, made);
    let (status, body) = api.get(ACME, "/v1/batches?limit=0").await?;
    assert_openai_error(status, &body, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_asks_the_job_to_cancel() -> TestResult {
    let api = api(2)?;
    let file_id = api.upload(ACME, &chat_lines(6)).await?;
    let (_, batch) = api.create_batch(ACME, "/v1/batches", &file_id).await?;
    let batch_id = str_of(&batch, "id")?;
    let (status, cancelled) = api
        .post(ACME, &format!("/v1/batches/{batch_id}/cancel"), json!({}))
        .await?;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert!(
        matches!(
            cancelled["status"].as_str(),
            Some("cancelling" | "cancelled")
        ),
        "{cancelled}"
    );
    assert!(cancelled["cancelling_at"].is_i64());
    api.poll_to_end().await?;
    let job_id = batchdrop_api::layout::job_id("acme", &batch_id);
    let (manifest, _) = api
        .bed
        .store
        .get_json::<Manifest>(&format!("_batchdrop/jobs/{job_id}/manifest.json"))
        .await?;
    assert_eq!(manifest.status, JobStatus::Cancelled);
    let (_, batch) = api.get(ACME, &format!("/v1/batches/{batch_id}")).await?;
    assert_eq!(batch["status"], "cancelled", "{batch}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_another_purpose_is_refused_and_not_kept() -> TestResult {
    let api = api(10)?;
    let body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\r\n{{}}\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n--{BOUNDARY}--\r\n"
    );
    let (status, error) = api
        .json(
            Request::post("/v1/files")
                .header("x-api-key", ACME)
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(Body::from(body))?,
        )
        .await?;
    assert_openai_error(status, &error, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["param"], "purpose");
    assert!(api.bed.store.list("_batchdrop/api/").await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_is_gone() -> TestResult {
    let api = api(10)?;
    let file_id = api.upload(ACME, &chat_lines(1)).await?;
    let (status, deleted) = api
        .json(
            Request::delete(format!("/v1/files/{file_id}"))
                .header("x-api-key", ACME)
                .body(Body::empty())?,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        deleted,
        json!({"id": file_id, "object": "file", "deleted": true})
    );
    let (status, _) = api.get(ACME, &format!("/v1/files/{file_id}")).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        api.bed
            .store
            .list("_batchdrop/api/acme/files/")
            .await?
            .is_empty()
    );
    Ok(())
}

// ---- The Uploads API: a file sent in parts ----

impl Api {
    /// `POST /v1/uploads` for a batch file of `bytes`; the Upload object.
    async fn new_upload(&self, key: &str, bytes: usize) -> Result<Value, Error> {
        let (status, upload) = self
            .post(
                key,
                "/v1/uploads",
                json!({"bytes": bytes, "filename": "big.jsonl",
                       "mime_type": "application/jsonl", "purpose": "batch"}),
            )
            .await?;
        assert_eq!(status, StatusCode::OK, "{upload}");
        Ok(upload)
    }

    /// `POST /v1/uploads/{id}/parts` with `data`; the status and the answer.
    async fn add_part(
        &self,
        key: &str,
        upload_id: &str,
        data: Body,
    ) -> Result<(StatusCode, Value), Error> {
        let head = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"data\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        );
        let tail = format!("\r\n--{BOUNDARY}--\r\n");
        let pieces = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(head))])
            .chain(
                data.into_data_stream()
                    .map(|p| p.map_err(std::io::Error::other)),
            )
            .chain(futures::stream::iter([Ok(bytes::Bytes::from(tail))]));
        self.json(
            Request::post(format!("/v1/uploads/{upload_id}/parts"))
                .header("authorization", format!("Bearer {key}"))
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(Body::from_stream(pieces))?,
        )
        .await
    }

    /// Sends each piece of `content` as a part; their ids in order.
    async fn parts(
        &self,
        key: &str,
        upload_id: &str,
        pieces: &[&str],
    ) -> Result<Vec<String>, Error> {
        let mut ids = Vec::new();
        for piece in pieces {
            let (status, part) = self
                .add_part(key, upload_id, Body::from(piece.to_string()))
                .await?;
            assert_eq!(status, StatusCode::OK, "{part}");
            assert_eq!(part["object"], "upload.part");
            assert_eq!(part["upload_id"], upload_id);
            ids.push(str_of(&part, "id")?);
        }
        Ok(ids)
    }

    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        body: Value,
    ) -> Result<(StatusCode, Value), Error> {
        self.post(key, &format!("/v1/uploads/{upload_id}/complete"), body)
            .await
    }

    async fn content_of(&self, key: &str, file_id: &str) -> Result<String, Error> {
        let (status, content) = self
            .send(
                Request::get(format!("/v1/files/{file_id}/content"))
                    .header("x-api-key", key)
                    .body(Body::empty())?,
            )
            .await?;
        assert_eq!(status, StatusCode::OK);
        Ok(String::from_utf8(content)?)
    }
}

use futures::StreamExt;

/// `lines` cut into three pieces at arbitrary byte offsets (not at line ends).
fn thirds(lines: &str) -> [&str; 3] {
    let (a, rest) = lines.split_at(lines.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    [a, b, c]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_in_parts_becomes_a_file_that_a_batch_runs_on() -> TestResult {
    // GIVEN an upload of 5 requests sent in three parts cut mid-line
    let api = api(2)?;
    let lines = format!("{}\n", chat_lines(5));
    let upload = api.new_upload(ACME, lines.len()).await?;
    assert_eq!(upload["status"], "pending", "{upload}");
    assert_eq!(upload["object"], "upload");
    let upload_id = str_of(&upload, "id")?;
    let parts = api.parts(ACME, &upload_id, &thirds(&lines)).await?;

    // WHEN it is completed with its parts in order
    let (status, done) = api
        .complete(ACME, &upload_id, json!({"part_ids": parts}))
        .await?;

    // THEN it is completed with a file holding the parts joined, byte for byte
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["file"]["bytes"], lines.len());
    assert_eq!(done["file"]["filename"], "big.jsonl");
    let file_id = str_of(&done["file"], "id")?;
    assert_eq!(api.content_of(ACME, &file_id).await?, lines);
    // AND the parts are gone from the bucket
    let keys: Vec<String> = api
        .bed
        .store
        .list("_batchdrop/api/acme/uploads/")
        .await?
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].ends_with("/upload.json"));
    // AND a batch runs on the file to the end
    let (status, batch) = api.create_batch(ACME, "/v1/batches", &file_id).await?;
    assert_eq!(status, StatusCode::OK, "{batch}");
    api.poll_to_end().await?;
    let (_, batch) = api
        .get(ACME, &format!("/v1/batches/{}", str_of(&batch, "id")?))
        .await?;
    assert_eq!(batch["status"], "completed", "{batch}");
    assert_eq!(batch["request_counts"]["completed"], 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_are_joined_in_the_order_the_completion_gives() -> TestResult {
    let api = api(10)?;
    let upload_id = str_of(&api.new_upload(ACME, 6).await?, "id")?;
    let parts = api.parts(ACME, &upload_id, &["abc", "def"]).await?;
    let (status, done) = api
        .complete(ACME, &upload_id, json!({"part_ids": [parts[1], parts[0]]}))
        .await?;
    assert_eq!(status, StatusCode::OK, "{done}");
    let file_id = str_of(&done["file"], "id")?;
    assert_eq!(api.content_of(ACME, &file_id).await?, "defabc");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_that_do_not_add_up_to_the_announced_size_are_refused_and_the_upload_stays_pending()
-> TestResult {
    let api = api(10)?;
    let upload_id = str_of(&api.new_upload(ACME, 6).await?, "id")?;
    let parts = api.parts(ACME, &upload_id, &["abc", "def"]).await?;
    let (status, body) = api
        .complete(ACME, &upload_id, json!({"part_ids": [parts[0]]}))
        .await?;
    assert_openai_error(status, &body, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "part_ids");
    assert!(
        str_of(&body["error"], "message")?.contains("hold 3 bytes"),
        "{body}"
    );
    let (status, done) = api
        .complete(ACME, &upload_id, json!({"part_ids": parts}))
        .await?;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert!(
        api.bed
            .store
            .list("_batchdrop/api/acme/files/")
            .await?
            .len()
            == 2
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_md5_is_refused_and_keeps_no_file() -> TestResult {
    let api = api(10)?;
    let upload_id = str_of(&api.new_upload(ACME, 6).await?, "id")?;
    let parts = api.parts(ACME, &upload_id, &["abc", "def"]).await?;
    let (status, body) = api
        .complete(
            ACME,
            &upload_id,
            json!({"part_ids": parts, "md5": "00000000000000000000000000000000"}),
        )
        .await?;
    assert_openai_error(status, &body, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "md5");
    assert!(
        api.bed
            .store
            .list("_batchdrop/api/acme/files/")
            .await?
            .is_empty()
    );
    // md5("abcdef")
    let (status, done) = api
        .complete(
            ACME,
            &upload_id,
            json!({"part_ids": parts, "md5": "e80b5017098950fc58aad83c8c14978e"}),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{done}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_again_with_the_same_parts_answers_the_same_file() -> TestResult {
    let api = api(10)?;
    let upload_id = str_of(&api.new_upload(ACME, 3).await?, "id")?;
    let parts = api.parts(ACME, &upload_id, &["abc"]).await?;
    let (_, first) = api
        .complete(ACME, &upload_id, json!({"part_ids": parts}))
        .await?;
    let (status, again) = api
        .complete(ACME, &upload_id, json!({"part_ids": parts}))
        .await?;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["file"]["id"], first["file"]["id"]);
    let (status, body) = api
        .complete(ACME, &upload_id, json!({"part_ids": []}))
        .await?;
    assert_openai_error(status, &body, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_upload_takes_no_parts_and_cannot_complete() -> TestResult {
    let api = api(10)?;
    let upload_id = str_of(&api.new_upload(ACME, 3).await?, "id")?;
    let parts = api.parts(ACME, &upload_id, &["abc"]).await?;
    api.bed.clock.advance(Duration::from_secs(3600));
    let (status, body) = api.add_part(ACME, &upload_id, Body::from("x")).await?;
    assert_openai_error(status, &body, StatusCode::BAD_REQUEST);
    assert!(str_of(&body["error"], "message")?.contains("has expired"));
    let (status, body) = api
        .complete(ACME, &upload_id, json!({"part_ids": parts}))
        .await?;
    assert_openai_error(status, &body, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_upload_drops_its_parts_and_takes_no_more() -> TestResult {
    let api = api(10)?;
    let upload_id = str_of(&api.new_upload(ACME, 3).await?, "id")?;
    api.parts(ACME, &upload_id, &["abc"]).await?;
    let (status, cancelled) = api
        .post(ACME, &format!("/v1/uploads/{upload_id}/cancel"), json!({}))
        .await?;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let left = api.bed.store.list("_batchdrop/api/acme/uploads/").await?;
    assert_eq!(left.len(), 1, "only the record is left: {left:?}");
    let (status, body) = api.add_part(ACME, &upload_id, Body::from("x")).await?;
    assert_openai_error(status, &body, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_upload_and_crafted_upload_ids_are_404() -> TestResult {
    let api = api(10)?;
    let upload_id = str_of(&api.new_upload(ACME, 3).await?, "id")?;
    let parts = api.parts(ACME, &upload_id, &["abc"]).await?;
    let (status, body) = api.add_part(GLOBEX, &upload_id, Body::from("abc")).await?;
    assert_openai_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = api
        .complete(GLOBEX, &upload_id, json!({"part_ids": parts}))
        .await?;
    assert_openai_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = api
        .post(
            GLOBEX,
            &format!("/v1/uploads/{upload_id}/cancel"),
            json!({}),
        )
        .await?;
    assert_openai_error(status, &body, StatusCode::NOT_FOUND);
    for crafted in [
        "upload_..%2F..%2Fx",
        "upload_0123",
        "file-0123456789abcdef01234567",
    ] {
        let (status, body) = api
            .post(ACME, &format!("/v1/uploads/{crafted}/cancel"), json!({}))
            .await?;
        assert_openai_error(status, &body, StatusCode::NOT_FOUND);
    }
    // AND a part id of another upload is not one of this upload's parts
    let other = str_of(&api.new_upload(ACME, 3).await?, "id")?;
    let (status, body) = api
        .complete(ACME, &other, json!({"part_ids": parts}))
        .await?;
    assert_openai_error(status, &body, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_above_64_mb_is_413_and_stores_nothing() -> TestResult {
    let api = api(10)?;
    let upload_id = str_of(&api.new_upload(ACME, 65 << 20).await?, "id")?;
    let mebibyte = bytes::Bytes::from(vec![b'x'; 1 << 20]);
    let body = Body::from_stream(futures::stream::iter(
        (0..65).map(move |_| Ok::<_, std::io::Error>(mebibyte.clone())),
    ));
    let (status, body) = api.add_part(ACME, &upload_id, body).await?;
    assert_openai_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE);
    let left = api.bed.store.list("_batchdrop/api/acme/uploads/").await?;
    assert_eq!(left.len(), 1, "no part kept: {left:?}");
    Ok(())
}

/// A bucket that gives download URLs (as S3 presigns them): `https://bucket.example/<key>`.
#[derive(Debug)]
struct UrlStore(Arc<dyn ObjectStore>);

#[async_trait::async_trait]
impl ObjectStore for UrlStore {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        self.0.head(key).await
    }
    async fn get_from(&self, key: &str, offset: u64) -> Result<GetResult, StoreError> {
        self.0.get_from(key, offset).await
    }
    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<ObjectMeta, StoreError> {
        self.0.put(key, body, mode).await
    }
    async fn put_stream(
        &self,
        key: &str,
        body: ByteStream,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        self.0.put_stream(key, body, mode).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.0.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key).await
    }
    async fn download_url(
        &self,
        key: &str,
        valid_for: Duration,
    ) -> Result<Option<String>, StoreError> {
        Ok(Some(format!(
            "https://bucket.example/{key}?expires={}",
            valid_for.as_secs()
        )))
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

impl Api {
    /// The status and `Location` of a download of `file_id`, and its body.
    async fn download(
        &self,
        file_id: &str,
    ) -> Result<(StatusCode, Option<String>, Vec<u8>), Error> {
        let response = self
            .app
            .clone()
            .oneshot(
                Request::get(format!("/v1/files/{file_id}/content"))
                    .header("x-api-key", ACME)
                    .body(Body::empty())?,
            )
            .await?;
        let status = response.status();
        let location = match response.headers().get("location") {
            Some(l) => Some(l.to_str()?.to_string()),
            None => None,
        };
        let body = to_bytes(response.into_body(), usize::MAX).await?;
        Ok((status, location, body.to_vec()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_served_as_they_are_redirect_when_the_store_gives_urls() -> TestResult {
    // GIVEN an API whose store gives download URLs, a file and its finished batch
    let api = api_with(3, true)?;
    let lines = format!("{}\nnot json\n", chat_lines(2));
    let file_id = api.upload(ACME, &lines).await?;
    let (status, batch) = api.create_batch(ACME, "/v1/batches", &file_id).await?;
    assert_eq!(status, StatusCode::OK, "{batch}");
    api.poll_to_end().await?;
    let batch_id = str_of(&batch, "id")?;
    let (_, batch) = api.get(ACME, &format!("/v1/batches/{batch_id}")).await?;

    // WHEN the upload and the output are downloaded
    // THEN each is a 307 to the store's URL of its object, valid 15 minutes
    let token = file_id.trim_start_matches("file-");
    let (status, location, _) = api.download(&file_id).await?;
    assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        location.as_deref(),
        Some(
            format!("https://bucket.example/_batchdrop/api/acme/files/{token}/content?expires=900")
                .as_str()
        )
    );
    let (status, location, _) = api.download(&str_of(&batch, "output_file_id")?).await?;
    assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        location.as_deref(),
        Some(format!("https://bucket.example/results/sandbox/api/acme/{batch_id}/output.jsonl?expires=900").as_str())
    );
    // AND the error file, re-shaped on the way, streams
    let (status, location, body) = api.download(&str_of(&batch, "error_file_id")?).await?;
    assert_eq!((status, location), (StatusCode::OK, None));
    assert_eq!(
        serde_json::from_slice::<Value>(&body)?["error"]["code"],
        "invalid_json"
    );
    // AND an upload whose content is gone (its record is still there) is the error a
    // streamed download gives, never a redirect to nothing
    api.bed
        .store
        .delete(&format!("_batchdrop/api/acme/files/{token}/content"))
        .await?;
    let (status, location, _) = api.download(&file_id).await?;
    assert_eq!(
        (status, location),
        (StatusCode::INTERNAL_SERVER_ERROR, None)
    );
    Ok(())
}

#[tokio::test]
async fn a_batch_created_at_its_deadline_answers_validating_and_the_poll_plans_the_rest()
-> TestResult {
    // GIVEN a file of more lines than planning takes between two checkpoints
    let api = api(10_000)?;
    let lines = batchdrop_core::engine::PLAN_CHECK_LINES as usize * 2 + 10;
    let file_id = api.upload(ACME, &chat_lines(lines)).await?;

    // WHEN it is made a batch by a request whose deadline (a Lambda invocation's) has come
    use batchdrop_core::clock::Clock;
    let deadline = api.bed.clock.now();
    let (status, batch) =
        batchdrop_api::within_deadline(deadline, api.create_batch(ACME, "/v1/batches", &file_id))
            .await?;

    // THEN it answers at the first checkpoint, the batch still validating
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["status"], "validating", "{batch}");
    let id = str_of(&batch, "id")?;
    // AND the poll plans the rest and runs it to the end
    api.poll_to_end().await?;
    let (_, batch) = api.get(ACME, &format!("/v1/batches/{id}")).await?;
    assert_eq!(batch["status"], "completed", "{batch}");
    assert_eq!(batch["request_counts"]["total"], lines, "{batch}");
    Ok(())
}
