//! One request line sent through OpenAI's synchronous API, its answer written as a batch output
//! line: what the synchronous lane ([`crate::provider::Provider::invoke`]) does for the OpenAI
//! client and for `openai-sync` (any OpenAI-compatible server) alike.
//!
//! A line `{"custom_id","method","url","body"}` is sent as `POST {base_url}{url without /v1}`
//! with its body (base_url ends in `/v1`), through [`Http::post_invoke`], and its answer
//! written as `{"id","custom_id","response":{"status_code","request_id","body"},"error":null}`.
//! A refusal that will not go away (a 4xx other than 408/409/429) is a result line too, with
//! its status and error; any other failure is an `Err` (no answer came).

use crate::provider::ProviderError;
use crate::providers::http::{Http, Reply};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// What is read of a request line.
#[derive(serde::Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    custom_id: Cow<'a, str>,
    #[serde(borrow)]
    url: Cow<'a, str>,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// Sends `request` (an OpenAI batch line) and gives back its OpenAI batch output line.
pub(crate) async fn invoke(http: &Http, request: &[u8]) -> Result<Vec<u8>, ProviderError> {
    let operation = "send a request";
    let decode = |e: serde_json::Error| ProviderError::Decode {
        operation,
        message: e.to_string(),
    };
    let line: Line = serde_json::from_slice(request).map_err(decode)?;
    // The line's url is the batch endpoint (`/v1/chat/completions`); base_url ends in /v1.
    let path = line.url.strip_prefix("/v1").unwrap_or(&line.url);
    let (status, request_id, body) =
        match http.post_invoke(operation, path, line.body.get()).await? {
            Reply::Answered {
                status,
                request_id,
                body,
            } => (status, request_id, body),
            Reply::Refused {
                status,
                code,
                message,
            } => {
                let body = serde_json::json!({"error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": null,
                    "code": code,
                }});
                (status, String::new(), body)
            }
        };
    let result = serde_json::json!({
        "id": format!("sync_{}", line.custom_id),
        "custom_id": line.custom_id,
        "response": {"status_code": status, "request_id": request_id, "body": body},
        "error": null,
    });
    serde_json::to_vec(&result).map_err(decode)
}
