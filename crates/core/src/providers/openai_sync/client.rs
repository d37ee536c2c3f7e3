//! The client of an OpenAI-compatible server without a batch API: each request line of a chunk
//! is sent as it is to its endpoint (`POST {base_url}/chat/completions` for a line whose `url`
//! is `/v1/chat/completions`), retried on 408/409/429/5xx with backoff that honours
//! `retry-after`, and its answer written as an OpenAI batch output line
//! (`{"id","custom_id","response":{"status_code","request_id","body"},"error":null}`); a
//! refusal that will not go away (other 4xx) is a result line too, with its status and error.
//! It makes no batches: `submit` and the rest refuse, and the engine never calls them for a
//! provider whose registry entry says it has no batch API.

use crate::provider::{BatchInfo, BatchLookup, ChunkUpload, Provider, ProviderError, Submitted};
use crate::providers::http::{Auth, Http, describe_reqwest};
use crate::store::ByteStream;
use async_trait::async_trait;
use secrecy::SecretString;
use serde_json::value::RawValue;

pub struct OpenAiSyncProvider {
    http: Http,
}

crate::providers::http::http_provider_common!(OpenAiSyncProvider);

impl OpenAiSyncProvider {
    /// `base_url` ends in `/v1` (a trailing slash is fine); `key` is None where the server takes
    /// none.
    pub fn new(base_url: &str, key: Option<SecretString>) -> Self {
        Self {
            http: Http::new(base_url, Auth::Bearer(key)),
        }
    }
}

/// What is read of a request line.
#[derive(serde::Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    custom_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    url: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    body: &'a RawValue,
}

fn no_batches() -> ProviderError {
    ProviderError::Unavailable {
        reason: "an OpenAI-compatible server (openai-sync) has no batch API".into(),
    }
}

#[async_trait]
impl Provider for OpenAiSyncProvider {
    async fn submit(&self, _chunk: ChunkUpload<'_>) -> Result<Submitted, ProviderError> {
        Err(no_batches())
    }

    async fn find_batch(
        &self,
        _lookup: BatchLookup<'_>,
    ) -> Result<Option<Submitted>, ProviderError> {
        Ok(None)
    }

    async fn batch(&self, _batch_id: &str) -> Result<BatchInfo, ProviderError> {
        Err(no_batches())
    }

    async fn cancel(&self, _batch_id: &str) -> Result<BatchInfo, ProviderError> {
        Err(no_batches())
    }

    async fn download(&self, _file: &str) -> Result<ByteStream, ProviderError> {
        Err(no_batches())
    }

    async fn invoke(&self, _model: &str, request: &[u8]) -> Result<Vec<u8>, ProviderError> {
        let operation = "send a request";
        let line: Line = serde_json::from_slice(request).map_err(|e| ProviderError::Decode {
            operation,
            message: e.to_string(),
        })?;
        // The line's url is the batch endpoint (`/v1/chat/completions`); base_url ends in /v1.
        let path = line.url.strip_prefix("/v1").unwrap_or(&line.url);
        let http = &self.http;
        let answer = http
            .send_invoke(operation, || async {
                Ok(http
                    .client
                    .post(http.url(path))
                    .header("content-type", "application/json")
                    .body(line.body.get().to_string()))
            })
            .await;
        let (status, request_id, body): (u16, String, serde_json::Value) = match answer {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let request_id = resp
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let bytes = resp.bytes().await.map_err(|e| ProviderError::Transport {
                    operation,
                    message: describe_reqwest(&e),
                })?;
                let body = serde_json::from_slice(&bytes).map_err(|e| ProviderError::Decode {
                    operation,
                    message: e.to_string(),
                })?;
                (status, request_id, body)
            }
            // A refusal that will not go away is the request's answer.
            Err(ProviderError::Refused {
                retryable: false,
                answer,
                code,
                message,
                ..
            }) => {
                let status = answer
                    .strip_prefix("HTTP ")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(400);
                let body = serde_json::json!({"error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": null,
                    "code": code,
                }});
                (status, String::new(), body)
            }
            Err(other) => return Err(other),
        };
        let result = serde_json::json!({
            "id": format!("sync_{}", line.custom_id),
            "custom_id": line.custom_id,
            "response": {"status_code": status, "request_id": request_id, "body": body},
            "error": null,
        });
        serde_json::to_vec(&result).map_err(|e| ProviderError::Decode {
            operation,
            message: e.to_string(),
        })
    }
}
