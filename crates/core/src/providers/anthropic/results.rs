//! Anthropic Message Batches result lines `{"custom_id","result":{"type",…}}`: what batchdrop
//! reads of them (only `succeeded` is a success; which errors are worth another attempt; usage;
//! model), and the line written for a request that got no result, in Anthropic's own result
//! types where they exist.

use crate::provider::ResultFacts;
use crate::providers::chat::text;
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Deserialize)]
struct AnthropicLine<'a> {
    #[serde(borrow)]
    custom_id: Cow<'a, str>,
    result: AnthropicResult,
}

#[derive(Deserialize)]
struct AnthropicResult {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: Option<AnthropicMessage>,
    #[serde(default)]
    error: Option<AnthropicErrorWrap>,
}

#[derive(Deserialize)]
struct AnthropicErrorWrap {
    #[serde(default)]
    error: Option<AnthropicError>,
}

#[derive(Deserialize)]
struct AnthropicError {
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct AnthropicMessage {
    #[serde(default)]
    usage: Usage,
    #[serde(default)]
    model: Option<serde_json::Value>,
}

/// Anthropic's `input_tokens` leaves out the tokens read from and written to the cache.
#[derive(Deserialize, Default)]
struct Usage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

/// Reads an Anthropic batch result line; only `succeeded` is a success.
pub fn read(line: &[u8]) -> Result<ResultFacts, serde_json::Error> {
    let l: AnthropicLine = serde_json::from_slice(line)?;
    let error_kind = l
        .result
        .error
        .as_ref()
        .and_then(|e| e.error.as_ref())
        .map(|e| e.kind.as_str())
        .unwrap_or("");
    let retryable = match l.result.kind.as_str() {
        "expired" => true,
        "errored" => matches!(
            error_kind,
            "rate_limit_error"
                | "overloaded_error"
                | "api_error"
                | "missing_result"
                | "token_limit_exceeded"
        ),
        _ => false,
    };
    let (usage, model) = l
        .result
        .message
        .map(|m| (m.usage, text(m.model)))
        .unwrap_or_default();
    Ok(ResultFacts {
        custom_id: l.custom_id.into_owned(),
        retryable,
        not_run: matches!(l.result.kind.as_str(), "canceled" | "expired"),
        succeeded: l.result.kind == "succeeded",
        // Every input token: batchdrop's input tokens include the cache's.
        input_tokens: usage.input_tokens.unwrap_or(0)
            + usage.cache_read_input_tokens.unwrap_or(0)
            + usage.cache_creation_input_tokens.unwrap_or(0),
        output_tokens: usage.output_tokens.unwrap_or(0),
        cache_read_tokens: usage.cache_read_input_tokens.unwrap_or(0),
        cache_write_tokens: usage.cache_creation_input_tokens.unwrap_or(0),
        model,
    })
}

/// Anthropic's own result types where they exist (`expired`, `canceled`), else `errored` with
/// the reason.
pub fn missing(custom_id: &str, code: &str, message: &str) -> Vec<u8> {
    let result = match code {
        "batch_expired" => serde_json::json!({"type": "expired"}),
        "batch_cancelled" => serde_json::json!({"type": "canceled"}),
        _ => serde_json::json!({
            "type": "errored",
            "error": {"type": "error", "error": {"type": code, "message": message}},
        }),
    };
    serde_json::to_vec(&serde_json::json!({"custom_id": custom_id, "result": result}))
        .unwrap_or_default()
}
