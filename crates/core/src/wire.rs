//! The provider result lines batchdrop reads and writes (OpenAI batch output shape).
//!
//! Result lines are kept byte for byte; batchdrop only reads what it must (custom_id, outcome,
//! token usage) and writes a line of the same shape for a request that got no result.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// What batchdrop needs to know of one result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultFacts {
    pub custom_id: String,
    pub succeeded: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
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
    let (status, usage) = match l.response {
        Some(r) => (
            r.status_code,
            r.body.and_then(|b| b.usage).unwrap_or_default(),
        ),
        None => (0, Usage::default()),
    };
    let succeeded = !has_error && (200..400).contains(&status);
    Ok(ResultFacts {
        custom_id: l.custom_id.into_owned(),
        succeeded,
        input_tokens: usage.prompt_tokens.or(usage.input_tokens).unwrap_or(0),
        output_tokens: usage.completion_tokens.or(usage.output_tokens).unwrap_or(0),
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

#[cfg(test)]
mod tests {
    use super::*;

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
