//! batchdrop's common result: what every chat dialect can say the same way of one request's
//! outcome — an assistant message (text and tool calls, why it stopped, token usage), a
//! failure (HTTP status, code, message), or a request that never ran (cancelled, expired).
//! The result lines of one provider reach an API of another's shape by way of it: each
//! dialect reads its result lines into it ([`super::Dialect::read_reply`]) and writes it as
//! its own ([`super::Dialect::write_reply`]), as requests do through [`super::Request`].
//!
//! What a dialect cannot read into it (an embedding, several choices, a content part of no
//! common kind) is [`Outcome::Untranslatable`] saying why, and every dialect writes that as a
//! failure line giving the reason: a result is never dropped, nor made up.
//!
//! Stop reasons map `stop`↔`end_turn`, `length`↔`max_tokens`, `tool_calls`↔`tool_use`,
//! `content_filter`↔`refusal`; usage maps `prompt_tokens`↔`input_tokens`,
//! `completion_tokens`↔`output_tokens`.

use super::Dialect;
use serde_json::Value;

/// One request's result, whatever the provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The user's id of the request.
    pub custom_id: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Answered(Answer),
    Failed(Failure),
    /// Its batch was cancelled before it ran.
    Cancelled,
    /// Its batch expired before it ran.
    Expired,
    /// A result no common shape holds: why.
    Untranslatable(String),
}

/// An assistant message.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The provider's id of the message (`chatcmpl-…`, `msg_…`), if it gave one.
    pub id: Option<String>,
    pub model: Option<String>,
    pub parts: Vec<Part>,
    pub stop: Option<StopReason>,
    /// The stop sequence that ended it, where the provider says.
    pub stop_sequence: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Unix seconds, where the provider says.
    pub created: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    /// A call of a tool: its id, name and JSON arguments.
    ToolCall {
        id: String,
        name: String,
        arguments: Value,
    },
}

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The model ended its turn (`stop` / `end_turn`).
    EndTurn,
    /// The token limit (`length` / `max_tokens`).
    MaxTokens,
    /// A stop sequence (`stop` / `stop_sequence`).
    StopSequence,
    /// A tool call (`tool_calls` / `tool_use`).
    ToolUse,
    /// Refused by a filter (`content_filter` / `refusal`).
    Refusal,
    /// Another word, kept as written.
    Other(String),
}

/// A request that failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The HTTP status the provider answered it with, when there was one.
    pub status: Option<u16>,
    /// A short code (`rate_limit_exceeded`, `invalid_request_error`, `batch_failed`…).
    pub code: String,
    pub message: String,
}

impl Failure {
    /// Whether it is one of batchdrop's own codes for a request without a result.
    pub fn not_run(&self) -> Option<Outcome> {
        match self.code.as_str() {
            "batch_cancelled" => Some(Outcome::Cancelled),
            "batch_expired" => Some(Outcome::Expired),
            _ => None,
        }
    }
}

impl Answer {
    /// The text parts, joined.
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                Part::ToolCall { .. } => None,
            })
            .collect()
    }
}

/// A result line of dialect `from` as one of dialect `to`: the line as it is when both write
/// the same format; else read into a [`Reply`] and written out again. A line `from` cannot
/// read at all becomes a failure line of `to` saying so (under `fallback_id`).
pub fn translate_result(
    line: &[u8],
    from: &dyn Dialect,
    to: &dyn Dialect,
    fallback_id: &str,
) -> Vec<u8> {
    if from.format() == to.format() {
        return line.to_vec();
    }
    let reply = from.read_reply(line).unwrap_or_else(|| Reply {
        custom_id: fallback_id.to_string(),
        outcome: Outcome::Untranslatable(format!(
            "the result line is not one {} writes",
            from.title()
        )),
    });
    to.write_reply(&reply)
}

/// The HTTP status an error type of Anthropic's API stands for.
pub fn status_of_error_type(kind: &str) -> Option<u16> {
    Some(match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => return None,
    })
}

/// The error type of Anthropic's API for an HTTP status (`api_error` for any other 5xx,
/// `invalid_request_error` for any other).
pub fn error_type_of_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}
