//! The provider result lines batchdrop reads and writes: OpenAI's
//! `{"id","custom_id","response","error"}` and Anthropic's `{"custom_id","result"}`.
//!
//! Result lines are kept byte for byte; batchdrop only reads what it must (custom_id, outcome,
//! token usage) and writes a line of the same shape for a request that got no result.

use crate::config::Wire;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// What batchdrop needs to know of one result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultFacts {
    pub custom_id: String,
    pub succeeded: bool,
    /// A failure that may go away when the request is sent again (rate limit, server error,
    /// expiry); never true for a success or a permanent (4xx) error.
    pub retryable: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The model the result says answered (`response.body.model`, `result.message.model`).
    pub model: Option<String>,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    custom_id: Cow<'a, str>,
    #[serde(default)]
    response: Option<Response>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ErrorCode<'a> {
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
}

/// Error codes (OpenAI `error.code`, or batchdrop's own for requests without a result) that a
/// new attempt may clear.
const RETRYABLE_CODES: &[&str] = &[
    "batch_expired",
    "missing_result",
    "token_limit_exceeded",
    "rate_limit_exceeded",
    "server_error",
];

fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || status >= 500
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    status_code: u16,
    #[serde(default)]
    body: Option<Body>,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    model: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

/// Reads an OpenAI batch output or error line. A request succeeded when it has a response with
/// a status below 400 and no error (a rejected request can come with `error: null` and a 4xx).
pub fn openai_result(line: &[u8]) -> Result<ResultFacts, serde_json::Error> {
    let l: Line = serde_json::from_slice(line)?;
    let has_error = l.error.is_some_and(|e| e.get() != "null");
    let (status, usage, model) = match l.response {
        Some(r) => {
            let (usage, model) = r.body.map(|b| (b.usage, b.model)).unwrap_or_default();
            (r.status_code, usage.unwrap_or_default(), text(model))
        }
        None => (0, Usage::default(), None),
    };
    let succeeded = !has_error && (200..400).contains(&status);
    let code = l
        .error
        .and_then(|e| serde_json::from_str::<ErrorCode>(e.get()).ok())
        .and_then(|e| e.code);
    let retryable = !succeeded
        && (retryable_status(status)
            || code.is_some_and(|c| RETRYABLE_CODES.contains(&c.as_ref())));
    Ok(ResultFacts {
        custom_id: l.custom_id.into_owned(),
        succeeded,
        retryable,
        input_tokens: usage.prompt_tokens.or(usage.input_tokens).unwrap_or(0),
        output_tokens: usage.completion_tokens.or(usage.output_tokens).unwrap_or(0),
        model,
    })
}

/// The line written for a request that got no result from the provider.
pub fn openai_missing_result(custom_id: &str, code: &str, message: &str) -> Vec<u8> {
    let v = serde_json::json!({
        "id": null,
        "custom_id": custom_id,
        "response": null,
        "error": {"code": code, "message": message},
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Reads a result line of either wire format.
pub fn result_facts(wire: Wire, line: &[u8]) -> Result<ResultFacts, serde_json::Error> {
    match wire {
        Wire::Openai => openai_result(line),
        Wire::Anthropic => anthropic_result(line),
    }
}

/// The line written for a request without a result, in the wire's shape. `code` is one of
/// `batch_expired`, `batch_cancelled`, `batch_failed`, `missing_result`.
pub fn missing_result(wire: Wire, custom_id: &str, code: &str, message: &str) -> Vec<u8> {
    match wire {
        Wire::Openai => openai_missing_result(custom_id, code, message),
        Wire::Anthropic => anthropic_missing_result(custom_id, code, message),
    }
}

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

/// A string field read leniently: anything else is as good as absent.
fn text(value: Option<serde_json::Value>) -> Option<String> {
    match value {
        Some(serde_json::Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Reads an Anthropic batch result line; only `succeeded` is a success.
pub fn anthropic_result(line: &[u8]) -> Result<ResultFacts, serde_json::Error> {
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
        succeeded: l.result.kind == "succeeded",
        input_tokens: usage.input_tokens.unwrap_or(0),
        output_tokens: usage.output_tokens.unwrap_or(0),
        model,
    })
}

/// Anthropic's own result types where they exist (`expired`, `canceled`), else `errored` with
/// the reason.
pub fn anthropic_missing_result(custom_id: &str, code: &str, message: &str) -> Vec<u8> {
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

/// The same line with another `custom_id` (field order and everything else kept).
pub fn with_custom_id(line: &[u8], custom_id: &str) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line) {
        Ok(mut map) => {
            if let Some(slot) = map.get_mut("custom_id") {
                *slot = serde_json::Value::String(custom_id.to_string());
            }
            serde_json::to_vec(&map).unwrap_or_else(|_| line.to_vec())
        }
        Err(_) => line.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_succeeded_line_with_usage() {
        let f = anthropic_result(br#"{"custom_id":"a","result":{"type":"succeeded","message":{"id":"msg_1","usage":{"input_tokens":12,"output_tokens":30}}}}"#).unwrap();
        assert!(f.succeeded);
        assert_eq!((f.input_tokens, f.output_tokens), (12, 30));
    }

    #[test]
    fn results_name_the_model_that_answered() {
        let f = anthropic_result(br#"{"custom_id":"a","result":{"type":"succeeded","message":{"model":"claude-haiku-4-5-20251001","usage":{"input_tokens":1,"output_tokens":2}}}}"#).unwrap();
        assert_eq!(f.model.as_deref(), Some("claude-haiku-4-5-20251001"));
        let f = openai_result(br#"{"id":"b1","custom_id":"r1","response":{"status_code":200,"body":{"model":"gpt-4o-mini-2024-07-18","usage":{"prompt_tokens":1,"completion_tokens":2}}},"error":null}"#).unwrap();
        assert_eq!(f.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        let f = openai_result(br#"{"id":"b1","custom_id":"r1","response":{"status_code":200,"body":{"model":7}},"error":null}"#).unwrap();
        assert_eq!(f.model, None);
    }

    #[test]
    fn anthropic_errored_expired_canceled_are_failures() {
        for kind in ["errored", "expired", "canceled"] {
            let line = format!(r#"{{"custom_id":"b","result":{{"type":"{kind}"}}}}"#);
            assert!(!anthropic_result(line.as_bytes()).unwrap().succeeded);
        }
    }

    #[test]
    fn anthropic_missing_results_use_native_types() {
        let v: serde_json::Value =
            serde_json::from_slice(&anthropic_missing_result("x", "batch_expired", "m")).unwrap();
        assert_eq!(v["result"]["type"], "expired");
        let v: serde_json::Value =
            serde_json::from_slice(&anthropic_missing_result("x", "batch_failed", "why")).unwrap();
        assert_eq!(v["result"]["error"]["error"]["type"], "batch_failed");
    }

    #[test]
    fn retryable_failures_are_told_from_permanent_ones() {
        let openai = |line: &str| openai_result(line.as_bytes()).unwrap().retryable;
        assert!(openai(
            r#"{"custom_id":"a","response":{"status_code":429,"body":{}},"error":null}"#
        ));
        assert!(openai(
            r#"{"custom_id":"a","response":{"status_code":503,"body":{}},"error":null}"#
        ));
        assert!(openai(
            r#"{"custom_id":"a","response":null,"error":{"code":"batch_expired","message":"m"}}"#
        ));
        assert!(!openai(
            r#"{"custom_id":"a","response":{"status_code":400,"body":{}},"error":null}"#
        ));
        assert!(!openai(
            r#"{"custom_id":"a","response":{"status_code":200,"body":{}},"error":null}"#
        ));
        assert!(!openai(
            r#"{"custom_id":"a","response":null,"error":{"code":"batch_cancelled","message":"m"}}"#
        ));
        let anthropic = |line: &str| anthropic_result(line.as_bytes()).unwrap().retryable;
        assert!(anthropic(
            r#"{"custom_id":"a","result":{"type":"expired"}}"#
        ));
        assert!(anthropic(
            r#"{"custom_id":"a","result":{"type":"errored","error":{"type":"error","error":{"type":"overloaded_error","message":"m"}}}}"#
        ));
        assert!(!anthropic(
            r#"{"custom_id":"a","result":{"type":"errored","error":{"type":"error","error":{"type":"invalid_request_error","message":"m"}}}}"#
        ));
        assert!(!anthropic(
            r#"{"custom_id":"a","result":{"type":"canceled"}}"#
        ));
    }

    #[test]
    fn custom_id_is_replaced_in_place() {
        let out = with_custom_id(
            br#"{"custom_id":"bd_3","result":{"type":"succeeded"},"z":1}"#,
            "a.b c",
        );
        assert_eq!(
            out,
            br#"{"custom_id":"a.b c","result":{"type":"succeeded"},"z":1}"#
        );
    }

    #[test]
    fn success_line_with_usage() {
        let f = openai_result(br#"{"id":"b1","custom_id":"r1","response":{"status_code":200,"request_id":"q","body":{"usage":{"prompt_tokens":12,"completion_tokens":30}}},"error":null}"#).unwrap();
        assert!(f.succeeded);
        assert_eq!((f.input_tokens, f.output_tokens), (12, 30));
    }

    #[test]
    fn status_400_with_null_error_is_a_failure() {
        let f = openai_result(br#"{"id":"b","custom_id":"r3","response":{"status_code":400,"request_id":"q","body":{"error":{"message":"bad"}}},"error":null}"#).unwrap();
        assert!(!f.succeeded);
    }

    #[test]
    fn error_object_is_a_failure() {
        let f = openai_result(br#"{"id":"b","custom_id":"r2","response":null,"error":{"code":"batch_expired","message":"x"}}"#).unwrap();
        assert!(!f.succeeded);
        assert_eq!(f.custom_id, "r2");
    }

    #[test]
    fn missing_result_line_has_the_provider_shape() {
        let line = openai_missing_result("r9", "batch_expired", "expired");
        let f = openai_result(&line).unwrap();
        assert_eq!(f.custom_id, "r9");
        assert!(!f.succeeded);
    }
}
