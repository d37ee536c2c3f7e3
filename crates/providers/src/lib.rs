//! The OpenAI Files + Batches client: batchdrop's provider for OpenAI routes.
//!
//! It talks to whatever base URL the route names (`https://api.openai.com/v1`, an
//! OpenAI-compatible service, or the sandbox). Calls that fail with 408, 409, 429, 5xx or a
//! transport error are retried with exponential backoff and jitter, waiting at least what
//! `retry-after-ms` / `retry-after` asks. The API key is a [`SecretString`]: it is sent in the
//! `Authorization` header and nowhere else — not in `Debug`, logs or errors.

mod retry;
mod wire;

pub use retry::RetryPolicy;

use async_trait::async_trait;
use batchdrop_core::clock::{Clock, SystemClock};
use batchdrop_core::config::{Config, KeySource, Wire};
use batchdrop_core::provider::{BatchInfo, ChunkUpload, Provider, ProviderError, Submitted};
use batchdrop_core::store::ByteStream;
use futures::TryStreamExt;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub struct OpenAiProvider {
    http: reqwest::Client,
    base_url: String,
    key: Option<SecretString>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("base_url", &self.base_url)
            .field("key", &self.key.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// `base_url` ends in `/v1` (a trailing slash is fine); `key` is None for the sandbox.
    pub fn new(base_url: &str, key: Option<SecretString>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            key,
            clock: Arc::new(SystemClock),
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(key) => req.bearer_auth(key.expose_secret()),
            // The sandbox takes any token; OpenAI-compatible services without auth ignore it.
            None => req.bearer_auth("sandbox"),
        }
    }

    /// Sends a request built by `make` (called again for every attempt) and returns the
    /// successful response.
    async fn send<F, Fut>(
        &self,
        operation: &'static str,
        make: F,
    ) -> Result<reqwest::Response, ProviderError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<reqwest::RequestBuilder, ProviderError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err: ProviderError = match make().await {
                Ok(req) => match self.auth(req).send().await {
                    Ok(resp) if resp.status().is_success() => return Ok(resp),
                    Ok(resp) => wire::http_error(operation, resp).await,
                    Err(e) => ProviderError::Transport {
                        operation,
                        message: wire::describe_reqwest(&e),
                    },
                },
                Err(e) => e,
            };
            if !err.is_retryable() || attempt >= self.retry.max_attempts {
                return Err(err);
            }
            let wait = self.retry.delay(attempt, err.retry_after());
            tracing::warn!(operation, attempt, wait_ms = wait.as_millis() as u64, error = %err, "retrying provider call");
            self.clock.sleep(wait).await;
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        operation: &'static str,
        resp: reqwest::Response,
    ) -> Result<T, ProviderError> {
        let bytes = resp.bytes().await.map_err(|e| ProviderError::Transport {
            operation,
            message: wire::describe_reqwest(&e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ProviderError::Decode {
            operation,
            message: e.to_string(),
        })
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    async fn submit(&self, chunk: ChunkUpload<'_>) -> Result<Submitted, ProviderError> {
        let filename = format!("{}-{:05}.jsonl", chunk.job_id, chunk.chunk);
        let resp = self
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
                let form = reqwest::multipart::Form::new()
                    .text("purpose", "batch")
                    .part("file", part);
                Ok(self.http.post(self.url("/files")).multipart(form))
            })
            .await?;
        let file: wire::FileObject = Self::json("upload batch input file", resp).await?;
        let body = serde_json::json!({
            "input_file_id": file.id,
            "endpoint": chunk.endpoint,
            "completion_window": "24h",
            "metadata": {
                "batchdrop_job": chunk.job_id,
                "batchdrop_chunk": chunk.chunk.to_string(),
            },
        });
        let resp = self
            .send("create batch", || async {
                Ok(self.http.post(self.url("/batches")).json(&body))
            })
            .await?;
        let batch: wire::BatchObject = Self::json("create batch", resp).await?;
        Ok(Submitted {
            batch_id: batch.id,
            input_file_id: Some(file.id),
        })
    }

    async fn batch(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        let url = self.url(&format!("/batches/{batch_id}"));
        let resp = self
            .send("retrieve batch", || async { Ok(self.http.get(&url)) })
            .await?;
        let batch: wire::BatchObject = Self::json("retrieve batch", resp).await?;
        Ok(batch.into_info())
    }

    async fn cancel(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        let url = self.url(&format!("/batches/{batch_id}/cancel"));
        let resp = self
            .send("cancel batch", || async { Ok(self.http.post(&url)) })
            .await?;
        let batch: wire::BatchObject = Self::json("cancel batch", resp).await?;
        Ok(batch.into_info())
    }

    async fn download(&self, file: &str) -> Result<ByteStream, ProviderError> {
        let url = self.url(&format!("/files/{file}/content"));
        let resp = self
            .send("download file", || async { Ok(self.http.get(&url)) })
            .await?;
        Ok(Box::pin(resp.bytes_stream().map_err(std::io::Error::other)))
    }
}

/// The providers of every OpenAI-wire route of `config`, keys resolved from `env` now.
/// A route whose key is missing maps to the reason, so only jobs on it fail.
pub fn providers_for(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> HashMap<String, Result<Arc<dyn Provider>, String>> {
    config
        .routes
        .iter()
        .filter(|(_, r)| r.wire == Wire::Openai)
        .map(|(name, route)| {
            let key = match &route.api_key {
                KeySource::None => Ok(None),
                KeySource::Env(var) => match env(var) {
                    Some(v) if !v.is_empty() => Ok(Some(SecretString::from(v))),
                    _ => Err(format!("environment variable {var} is not set")),
                },
                KeySource::Secret(arn) => Err(format!(
                    "API keys from Secrets Manager ({arn}) are not supported by this build yet; use api_key_env"
                )),
            };
            let provider = key.map(|key| {
                Arc::new(OpenAiProvider::new(&route.base_url, key)) as Arc<dyn Provider>
            });
            (name.clone(), provider)
        })
        .collect()
}
