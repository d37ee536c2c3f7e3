//! The OpenAI Files + Batches client (also any OpenAI-compatible batch service, and the sandbox).
//!
//! A chunk is uploaded as a `purpose=batch` file (streamed from the store, reopened on each
//! retry), then a batch is created with `metadata` naming the job and chunk. The synchronous
//! lane sends a request line at a time to its endpoint (`POST /v1/chat/completions`, …) and
//! writes its answer as a batch output line (`sync`).

use super::{batch, sync};
use crate::provider::{
    BatchInfo, BatchLookup, ChunkUpload, Leftovers, Provider, ProviderError, ResultFile, Submitted,
};
use crate::providers::http::{Auth, CLOCK_SLACK_SECS, Http, describe_reqwest};
use crate::store::ByteStream;
use async_trait::async_trait;
use futures::TryStreamExt;
use secrecy::SecretString;

/// How far back `find_batch` looks, at most (pages of 100 batches).
const MAX_LIST_PAGES: usize = 20;

pub struct OpenAiProvider {
    http: Http,
    /// Days the files of a batch live at the provider (`expires_after`,
    /// `output_expires_after`); None: its default.
    file_days: Option<u32>,
}

crate::providers::http::http_provider_common!(OpenAiProvider);

impl OpenAiProvider {
    /// `base_url` ends in `/v1` (a trailing slash is fine); `key` is None for the sandbox.
    pub fn new(base_url: &str, key: Option<SecretString>) -> Self {
        Self {
            http: Http::new(base_url, Auth::Bearer(key)),
            file_days: None,
        }
    }

    /// The same client, asking that a batch's input, output and error files expire `days`
    /// after they are made.
    pub fn with_file_days(mut self, days: Option<u32>) -> Self {
        self.file_days = days;
        self
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    async fn submit(&self, chunk: ChunkUpload<'_>) -> Result<Submitted, ProviderError> {
        let http = &self.http;
        let filename = format!("{}-{:05}.jsonl", chunk.job_id, chunk.chunk);
        let expires_after = self.file_days.map(|days| u64::from(days) * 86_400);
        let resp = http
            .send("upload batch input file", || async {
                let stream = chunk.body.open().await?;
                let body = reqwest::Body::wrap_stream(stream);
                let part = reqwest::multipart::Part::stream_with_length(body, chunk.bytes)
                    .file_name(filename.clone())
                    .mime_str("application/jsonl")
                    .map_err(|e| ProviderError::Decode {
                        operation: "upload batch input file",
                        message: e.to_string(),
                    })?;
                let mut form = reqwest::multipart::Form::new().text("purpose", "batch");
                if let Some(seconds) = expires_after {
                    form = form
                        .text("expires_after[anchor]", "created_at")
                        .text("expires_after[seconds]", seconds.to_string());
                }
                let form = form.part("file", part);
                Ok(http.client.post(http.url("/files")).multipart(form))
            })
            .await?;
        let file: batch::FileObject = Http::json("upload batch input file", resp).await?;
        let mut body = serde_json::json!({
            "input_file_id": file.id,
            "endpoint": chunk.endpoint,
            "completion_window": "24h",
            "metadata": {
                "batchdrop_job": chunk.job_id,
                "batchdrop_chunk": chunk.chunk.to_string(),
            },
        });
        if let Some(seconds) = expires_after {
            body["output_expires_after"] =
                serde_json::json!({"anchor": "created_at", "seconds": seconds});
        }
        let resp = http
            .send_once_created("create batch", || async {
                Ok(http.client.post(http.url("/batches")).json(&body))
            })
            .await?;
        let batch: batch::BatchObject = Http::json("create batch", resp).await?;
        Ok(Submitted {
            batch_id: batch.id,
            input_file_id: Some(file.id),
        })
    }

    /// Pages through the newest batches (back to a few minutes before the submit began) for
    /// one whose `metadata` names this job and chunk.
    async fn find_batch(
        &self,
        lookup: BatchLookup<'_>,
    ) -> Result<Option<Submitted>, ProviderError> {
        let http = &self.http;
        let chunk = lookup.chunk.to_string();
        let mut after: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut url = http.url("/batches?limit=100");
            if let Some(a) = &after {
                url.push_str("&after=");
                url.push_str(a);
            }
            let resp = http
                .send("list batches", || async { Ok(http.client.get(&url)) })
                .await?;
            let page: batch::BatchList = Http::json("list batches", resp).await?;
            let mut older = false;
            for b in &page.data {
                if b.created_at < lookup.since - CLOCK_SLACK_SECS {
                    older = true;
                    continue;
                }
                let meta = b.metadata.as_ref();
                let ours = meta
                    .and_then(|m| m.get("batchdrop_job"))
                    .map(String::as_str)
                    == Some(lookup.job_id)
                    && meta.and_then(|m| m.get("batchdrop_chunk")) == Some(&chunk);
                if ours {
                    return Ok(Some(Submitted {
                        batch_id: b.id.clone(),
                        input_file_id: b.input_file_id.clone(),
                    }));
                }
            }
            if older || !page.has_more {
                return Ok(None);
            }
            after = page
                .last_id
                .or_else(|| page.data.last().map(|b| b.id.clone()));
        }
        Ok(None)
    }

    async fn batch(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        let url = self.http.url(&format!("/batches/{batch_id}"));
        let resp = self
            .http
            .send("retrieve batch", || async {
                Ok(self.http.client.get(&url))
            })
            .await?;
        let batch: batch::BatchObject = Http::json("retrieve batch", resp).await?;
        Ok(batch.into_info())
    }

    async fn cancel(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        let url = self.http.url(&format!("/batches/{batch_id}/cancel"));
        let resp = self
            .http
            .send("cancel batch", || async { Ok(self.http.client.post(&url)) })
            .await?;
        let batch: batch::BatchObject = Http::json("cancel batch", resp).await?;
        Ok(batch.into_info())
    }

    async fn download(&self, file: &str) -> Result<ByteStream, ProviderError> {
        let url = self.http.url(&format!("/files/{file}/content"));
        let resp = self
            .http
            .send("download file", || async { Ok(self.http.client.get(&url)) })
            .await?;
        Ok(Box::pin(
            resp.bytes_stream()
                .map_err(|e| std::io::Error::other(describe_reqwest(&e))),
        ))
    }

    /// Deletes the chunk's input file and the batch's output and error files.
    async fn forget(&self, batch: Leftovers<'_>) -> Result<(), ProviderError> {
        let results = batch.result_files.iter().filter_map(|f| match f {
            ResultFile::Provider(id) if !id.is_empty() => Some(id.as_str()),
            _ => None,
        });
        for id in batch.input_file_id.into_iter().chain(results) {
            self.http
                .delete("delete file", &format!("/files/{id}"))
                .await?;
        }
        Ok(())
    }

    async fn invoke(&self, _model: &str, request: &[u8]) -> Result<Vec<u8>, ProviderError> {
        sync::invoke(&self.http, request).await
    }
}
