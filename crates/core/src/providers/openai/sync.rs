//! One request line sent through OpenAI's synchronous API, its answer written as a batch output
//! line: what the synchronous lane ([`crate::provider::Provider::invoke`]) does for the OpenAI
//! client and for `openai-sync` (any OpenAI-compatible server) alike.
//!
//! A line `{"custom_id","method","url","body"}` is sent as `POST {base_url}{url without /v1}`
//! with its body (base_url ends in `/v1`), through [`Http::send_invoke`], and its answer
//! written as `{"id","custom_id","response":{"status_code","request_id","body"},"error":null}`.
//! A refusal that will not go away (a 4xx other than 408/409/429) is a result line too, with
//! its status and error; any other failure is an `Err` (no answer came).

use crate::provider::ProviderError;
use crate::providers::http::{Http, describe_reqwest};
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
            (
                status,
                request_id,
                serde_json::from_slice(&bytes).map_err(decode)?,
            )
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
    serde_json::to_vec(&result).map_err(decode)
}
