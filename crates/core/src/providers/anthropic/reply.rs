//! Anthropic Message Batches result lines to and from the common result
//! ([`crate::provider::Reply`]): `{"custom_id","result":{"type":"succeeded","message":{…}}
//! | {"type":"errored","error":{"type":"error","error":{"type","message"}}} | {"type":"canceled"}
//! | {"type":"expired"}}`.
//!
//! Read: a message's text and `tool_use` blocks, stop reason, usage; an error's type as its
//! code (and the HTTP status it stands for). Untranslatable: a content block of another kind
//! (thinking, server tools…). Written: a `message` of text and `tool_use` blocks; a failure
//! as `errored` with the error type of its status (its code at the head of the message).
//! [`message`] also reads Claude's output on Bedrock, which is such a message.

use crate::provider::reply::{error_type_of_status, status_of_error_type};
use crate::provider::{Answer, Failure, Outcome, Part, Reply, StopReason};
use serde_json::{Map, Value, json};

/// A result line as the common result; `None` when it is no Anthropic result line.
pub fn read(line: &[u8]) -> Option<Reply> {
    let l: Map<String, Value> = serde_json::from_slice(line.trim_ascii()).ok()?;
    let custom_id = l.get("custom_id")?.as_str()?.to_string();
    let result = l.get("result")?;
    let outcome = match result["type"].as_str()? {
        "succeeded" => match message(&result["message"]) {
            Ok(answer) => Outcome::Answered(answer),
            Err(why) => Outcome::Untranslatable(why),
        },
        "errored" => {
            let error = &result["error"]["error"];
            let kind = error["type"].as_str().unwrap_or("api_error");
            let failure = Failure {
                status: status_of_error_type(kind),
                code: kind.to_string(),
                message: error["message"].as_str().unwrap_or_default().to_string(),
            };
            failure.not_run().unwrap_or(Outcome::Failed(failure))
        }
        "canceled" => Outcome::Cancelled,
        "expired" => Outcome::Expired,
        other => Outcome::Untranslatable(format!("a result of type {other:?}")),
    };
    Some(Reply { custom_id, outcome })
}

/// An Anthropic message object as the common answer, or why it cannot be one.
pub fn message(m: &Value) -> Result<Answer, String> {
    let mut parts = Vec::new();
    for block in m["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => parts.push(Part::Text(
                block["text"].as_str().unwrap_or_default().to_string(),
            )),
            Some("tool_use") => parts.push(Part::ToolCall {
                id: block["id"].as_str().unwrap_or_default().to_string(),
                name: block["name"].as_str().unwrap_or_default().to_string(),
                arguments: block["input"].clone(),
            }),
            other => {
                return Err(format!(
                    "a content block of type {} has no common form",
                    other.unwrap_or("(none)")
                ));
            }
        }
    }
    let usage = &m["usage"];
    Ok(Answer {
        id: m["id"].as_str().map(str::to_string),
        model: m["model"].as_str().map(str::to_string),
        parts,
        stop: m["stop_reason"].as_str().map(stop_reason),
        stop_sequence: m["stop_sequence"].as_str().map(str::to_string),
        input_tokens: usage["input_tokens"].as_u64().unwrap_or(0),
        output_tokens: usage["output_tokens"].as_u64().unwrap_or(0),
        created: None,
    })
}

fn stop_reason(word: &str) -> StopReason {
    match word {
        "end_turn" => StopReason::EndTurn,
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "tool_use" => StopReason::ToolUse,
        "refusal" => StopReason::Refusal,
        other => StopReason::Other(other.to_string()),
    }
}

fn stop_word(stop: &StopReason) -> &str {
    match stop {
        StopReason::EndTurn => "end_turn",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::ToolUse => "tool_use",
        StopReason::Refusal => "refusal",
        StopReason::Other(word) => word,
    }
}

/// The common result as an Anthropic result line.
pub fn write(reply: &Reply) -> Vec<u8> {
    let errored = |kind: &str, message: String| json!({"type": "errored", "error": {"type": "error", "error": {"type": kind, "message": message}}});
    let result = match &reply.outcome {
        Outcome::Answered(a) => json!({"type": "succeeded", "message": write_message(a)}),
        Outcome::Failed(f) => {
            let kind = match f.status {
                Some(status) => error_type_of_status(status),
                None if status_of_error_type(&f.code).is_some() => f.code.as_str(),
                None => "api_error",
            };
            let message = if f.code == kind {
                f.message.clone()
            } else {
                format!("{}: {}", f.code, f.message)
            };
            errored(kind, message)
        }
        Outcome::Cancelled => json!({"type": "canceled"}),
        Outcome::Expired => json!({"type": "expired"}),
        Outcome::Untranslatable(why) => errored(
            "invalid_request_error",
            format!("This result cannot be shown as an Anthropic message: {why}."),
        ),
    };
    serde_json::to_vec(&json!({"custom_id": reply.custom_id, "result": result})).unwrap_or_default()
}

/// A common answer as an Anthropic message object.
pub fn write_message(a: &Answer) -> Value {
    let content: Vec<Value> = a
        .parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => json!({"type": "text", "text": t}),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => json!({"type": "tool_use", "id": id, "name": name, "input": arguments}),
        })
        .collect();
    json!({
        "id": a.id,
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": content,
        "stop_reason": a.stop.as_ref().map(stop_word),
        "stop_sequence": a.stop_sequence,
        "usage": {"input_tokens": a.input_tokens, "output_tokens": a.output_tokens},
    })
}
