//! One request line sent through Anthropic's Messages API, its answer written as a batch
//! results line: the synchronous lane ([`crate::provider::Provider::invoke`]) of the Anthropic
//! client.
//!
//! A line `{"custom_id","params"}` is sent as `POST {base_url}/v1/messages` with `params` as
//! the body, through [`Http::post_invoke`], and its answer written as
//! `{"custom_id","result":{"type":"succeeded","message":<the Message>}}`. A refusal that will
//! not go away (a 4xx other than 408/409/429) is a result line too:
//! `{"custom_id","result":{"type":"errored","error":{"type":"error","error":{"type","message"}}}}`,
//! as a batch's results hold it. Any other failure is an `Err` (no answer came). The line's
//! `custom_id` is passed through as it is (it may be batchdrop's `bd_<line>`).

use super::MESSAGES;
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
    params: &'a RawValue,
}

/// Sends `request` (an Anthropic batch line) and gives back its Anthropic batch results line.
pub(crate) async fn invoke(http: &Http, request: &[u8]) -> Result<Vec<u8>, ProviderError> {
    let operation = "send a message";
    let decode = |e: serde_json::Error| ProviderError::Decode {
        operation,
        message: e.to_string(),
    };
    let line: Line = serde_json::from_slice(request).map_err(decode)?;
    let result = match http
        .post_invoke(operation, MESSAGES, line.params.get())
        .await?
    {
        Reply::Answered { body, .. } => serde_json::json!({"type": "succeeded", "message": body}),
        Reply::Refused {
            status,
            code,
            message,
        } => {
            let kind = code.unwrap_or_else(|| error_type(status).to_string());
            serde_json::json!({"type": "errored", "error": {
                "type": "error",
                "error": {"type": kind, "message": message},
            }})
        }
    };
    let line = serde_json::json!({"custom_id": line.custom_id, "result": result});
    serde_json::to_vec(&line).map_err(decode)
}

/// Anthropic's error type for a refusal whose body did not say.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        _ => "invalid_request_error",
    }
}
