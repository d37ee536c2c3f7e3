//! OpenAI batch result lines `{"id","custom_id","response","error"}`: what batchdrop reads of
//! them (outcome, retryability, usage, model), and the line written for a request that got no
//! result. Lines are kept byte for byte; only these fields are read.

use crate::provider::ResultFacts;
use crate::providers::chat::text;
use crate::providers::http::retryable_status;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

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
    /// Chat and completions: of `prompt_tokens`, those read from the prompt cache.
    #[serde(default)]
    prompt_tokens_details: Option<Details>,
    /// Responses: of `input_tokens`, those read from the prompt cache.
    #[serde(default)]
    input_tokens_details: Option<Details>,
}

#[derive(Deserialize, Default)]
struct Details {
    cached_tokens: Option<u64>,
}

/// Reads an OpenAI batch output or error line. A request succeeded when it has a response with
/// a status below 400 and no error (a rejected request can come with `error: null` and a 4xx).
pub fn read(line: &[u8]) -> Result<ResultFacts, serde_json::Error> {
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
            || code
                .as_ref()
                .is_some_and(|c| RETRYABLE_CODES.contains(&c.as_ref())));
    let not_run = !succeeded
        && code.is_some_and(|c| matches!(c.as_ref(), "batch_cancelled" | "batch_expired"));
    Ok(ResultFacts {
        custom_id: l.custom_id.into_owned(),
        succeeded,
        retryable,
        not_run,
        input_tokens: usage.prompt_tokens.or(usage.input_tokens).unwrap_or(0),
        output_tokens: usage.completion_tokens.or(usage.output_tokens).unwrap_or(0),
        cache_read_tokens: usage
            .prompt_tokens_details
            .or(usage.input_tokens_details)
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0),
        // OpenAI's automatic caching charges nothing extra for writing the cache.
        cache_write_tokens: 0,
        model,
    })
}

/// The line written for a request that got no result from the provider.
pub fn missing(custom_id: &str, code: &str, message: &str) -> Vec<u8> {
    let v = serde_json::json!({
        "id": null,
        "custom_id": custom_id,
        "response": null,
        "error": {"code": code, "message": message},
    });
    serde_json::to_vec(&v).unwrap_or_default()
}
