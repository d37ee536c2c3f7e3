//! OpenAI batch output lines to and from the common result ([`crate::provider::Reply`]):
//! `{"id","custom_id","response":{"status_code","request_id","body":{chat.completion}},"error"}`.
//!
//! Read: a chat completion of one choice (text, tool calls, finish reason, usage); an error
//! body or an `error` field as a failure (`batch_cancelled` / `batch_expired` as not run).
//! Untranslatable: any other body (embeddings, responses, completions, moderations), several
//! choices, a message part of no common kind.
//! Written: a chat completion (`object: "chat.completion"`) of one choice, a failure as the
//! `error` of the line, or as an error body under its HTTP status when it had one.

use crate::provider::{Answer, Failure, Outcome, Part, Reply, StopReason};
use serde_json::{Map, Value, json};

/// A result line as the common result; `None` when it is no OpenAI result line.
pub fn read(line: &[u8]) -> Option<Reply> {
    let l: Map<String, Value> = serde_json::from_slice(line.trim_ascii()).ok()?;
    let custom_id = l.get("custom_id")?.as_str()?.to_string();
    let outcome = outcome(&l);
    Some(Reply { custom_id, outcome })
}

fn outcome(l: &Map<String, Value>) -> Outcome {
    if let Some(error) = l.get("error").filter(|e| !e.is_null()) {
        let failure = Failure {
            status: None,
            code: str_of(error, "code").unwrap_or("error").to_string(),
            message: str_of(error, "message").unwrap_or_default().to_string(),
        };
        return failure.not_run().unwrap_or(Outcome::Failed(failure));
    }
    let Some(response) = l.get("response").filter(|r| !r.is_null()) else {
        return Outcome::Untranslatable("the line has neither a response nor an error".into());
    };
    let status = response["status_code"].as_u64().unwrap_or(0) as u16;
    let body = &response["body"];
    if !(200..400).contains(&status) {
        let error = &body["error"];
        return Outcome::Failed(Failure {
            status: Some(status),
            code: str_of(error, "code")
                .or_else(|| str_of(error, "type"))
                .unwrap_or("error")
                .to_string(),
            message: str_of(error, "message").unwrap_or_default().to_string(),
        });
    }
    match answer(body) {
        Ok(answer) => Outcome::Answered(answer),
        Err(why) => Outcome::Untranslatable(why),
    }
}

fn answer(body: &Value) -> Result<Answer, String> {
    let object = body["object"].as_str().unwrap_or("");
    if object != "chat.completion" {
        let what = match object {
            "list" | "embedding" => "an embeddings result".to_string(),
            "response" => "a Responses API result".to_string(),
            "text_completion" => "a legacy completion".to_string(),
            "" => "a result that is no chat completion".to_string(),
            other => format!("a {other:?} result"),
        };
        return Err(format!("{what} has no message to show"));
    }
    let choices = body["choices"].as_array().map_or(&[][..], Vec::as_slice);
    let [choice] = choices else {
        return Err(format!(
            "a chat completion of {} choices cannot be one message",
            choices.len()
        ));
    };
    let message = &choice["message"];
    let mut parts = Vec::new();
    match &message["content"] {
        Value::Null => {}
        Value::String(s) => parts.push(Part::Text(s.clone())),
        other => return Err(format!("message content {other} is not text")),
    }
    if let Some(refusal) = message["refusal"].as_str() {
        parts.push(Part::Text(refusal.to_string()));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
        let arguments: Value = serde_json::from_str(arguments)
            .map_err(|_| "a tool call's arguments are not JSON".to_string())?;
        parts.push(Part::ToolCall {
            id: str_of(call, "id").unwrap_or_default().to_string(),
            name: str_of(&call["function"], "name")
                .unwrap_or_default()
                .to_string(),
            arguments,
        });
    }
    let usage = &body["usage"];
    Ok(Answer {
        id: str_of(body, "id").map(str::to_string),
        model: str_of(body, "model").map(str::to_string),
        parts,
        stop: choice["finish_reason"].as_str().map(stop_reason),
        stop_sequence: None,
        input_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
        output_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
        created: body["created"].as_i64(),
    })
}

fn stop_reason(word: &str) -> StopReason {
    match word {
        "stop" => StopReason::EndTurn,
        "length" => StopReason::MaxTokens,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        "content_filter" => StopReason::Refusal,
        other => StopReason::Other(other.to_string()),
    }
}

fn finish_reason(stop: &StopReason) -> &str {
    match stop {
        StopReason::EndTurn | StopReason::StopSequence => "stop",
        StopReason::MaxTokens => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::Refusal => "content_filter",
        StopReason::Other(word) => word,
    }
}

/// The common result as an OpenAI batch output line.
pub fn write(reply: &Reply) -> Vec<u8> {
    let error = |code: &str, message: &str| {
        json!({"id": null, "custom_id": reply.custom_id, "response": null,
               "error": {"code": code, "message": message}})
    };
    let line = match &reply.outcome {
        Outcome::Answered(a) => answered(&reply.custom_id, a),
        Outcome::Failed(f) => match f.status {
            Some(status) => json!({
                "id": null,
                "custom_id": reply.custom_id,
                "response": {"status_code": status, "request_id": null, "body": {"error": {
                    "message": f.message, "type": f.code, "param": null, "code": f.code,
                }}},
                "error": null,
            }),
            None => error(&f.code, &f.message),
        },
        Outcome::Cancelled => error(
            "batch_cancelled",
            "The batch was cancelled before this request ran.",
        ),
        Outcome::Expired => error(
            "batch_expired",
            "The batch expired before this request ran.",
        ),
        Outcome::Untranslatable(why) => error(
            "result_not_translated",
            &format!("This result cannot be shown as an OpenAI batch output line: {why}."),
        ),
    };
    serde_json::to_vec(&line).unwrap_or_default()
}

fn answered(custom_id: &str, a: &Answer) -> Value {
    let text = a.text();
    let calls: Vec<Value> = a
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall {
                id,
                name,
                arguments,
            } => Some(json!({"id": id, "type": "function",
                "function": {"name": name, "arguments": arguments.to_string()}})),
            Part::Text(_) => None,
        })
        .collect();
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": null,
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": a.id.as_ref().map(|id| format!("batch_req_{id}")),
        "custom_id": custom_id,
        "response": {
            "status_code": 200,
            "request_id": a.id,
            "body": {
                "id": a.id,
                "object": "chat.completion",
                "created": a.created.unwrap_or(0),
                "model": a.model,
                "choices": [{
                    "index": 0,
                    "message": message,
                    "logprobs": null,
                    "finish_reason": a.stop.as_ref().map(finish_reason),
                }],
                "usage": {
                    "prompt_tokens": a.input_tokens,
                    "completion_tokens": a.output_tokens,
                    "total_tokens": a.input_tokens + a.output_tokens,
                },
            },
        },
        "error": null,
    })
}

fn str_of<'v>(value: &'v Value, field: &str) -> Option<&'v str> {
    value.get(field).and_then(Value::as_str)
}
