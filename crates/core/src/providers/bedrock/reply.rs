//! Bedrock result lines, as output.jsonl holds them (`{"custom_id","recordId","modelOutput"}`
//! or `{…,"error":{"errorCode","errorMessage"}}`), read into the common result
//! ([`crate::provider::Reply`]) for the Batch API to show in OpenAI's or Anthropic's shape.
//!
//! Read: Claude's `modelOutput` (an Anthropic message) and Amazon Nova's
//! (`{"output":{"message":{"content":[{"text"}…]}},"stopReason","usage":{"inputTokens",…}}`);
//! an error as a failure under its code (its HTTP status when the code is one).
//! Untranslatable: any other model's output (Titan embeddings…). Bedrock lines are never
//! written from the common result: no API of batchdrop speaks them.

use crate::provider::{Answer, Failure, Outcome, Part, Reply, StopReason};
use crate::providers::anthropic::reply as anthropic;
use serde_json::{Map, Value};

/// An output.jsonl line of a Bedrock route as the common result.
pub fn read(line: &[u8]) -> Option<Reply> {
    let l: Map<String, Value> = serde_json::from_slice(line.trim_ascii()).ok()?;
    let custom_id = l
        .get("custom_id")
        .or_else(|| l.get("recordId"))?
        .as_str()?
        .to_string();
    let outcome = if let Some(error) = l.get("error").filter(|e| !e.is_null()) {
        let code = match &error["errorCode"] {
            Value::String(s) => s.clone(),
            Value::Null => "error".to_string(),
            other => other.to_string(),
        };
        let failure = Failure {
            status: code.parse().ok(),
            message: error["errorMessage"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            code,
        };
        failure.not_run().unwrap_or(Outcome::Failed(failure))
    } else {
        match l.get("modelOutput") {
            Some(output) => {
                model_output(output).map_or_else(Outcome::Untranslatable, Outcome::Answered)
            }
            None => Outcome::Untranslatable("the line has neither modelOutput nor error".into()),
        }
    };
    Some(Reply { custom_id, outcome })
}

fn model_output(output: &Value) -> Result<Answer, String> {
    if output["type"] == "message" || output.get("stop_reason").is_some() {
        return anthropic::message(output);
    }
    if output["output"]["message"].is_object() {
        return nova(output);
    }
    if output.get("embedding").is_some() {
        return Err("an embedding has no message to show".into());
    }
    Err("the model's output is neither Claude's nor Amazon Nova's".into())
}

fn nova(output: &Value) -> Result<Answer, String> {
    let mut parts = Vec::new();
    for block in output["output"]["message"]["content"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(text) = block["text"].as_str() {
            parts.push(Part::Text(text.to_string()));
        } else if let Some(call) = block.get("toolUse") {
            parts.push(Part::ToolCall {
                id: call["toolUseId"].as_str().unwrap_or_default().to_string(),
                name: call["name"].as_str().unwrap_or_default().to_string(),
                arguments: call["input"].clone(),
            });
        } else {
            return Err("a Nova content block that is neither text nor a tool call".into());
        }
    }
    let usage = &output["usage"];
    Ok(Answer {
        id: None,
        model: None,
        parts,
        stop: output["stopReason"].as_str().map(|w| match w {
            "end_turn" => StopReason::EndTurn,
            "max_tokens" => StopReason::MaxTokens,
            "stop_sequence" => StopReason::StopSequence,
            "tool_use" => StopReason::ToolUse,
            "content_filtered" => StopReason::Refusal,
            other => StopReason::Other(other.to_string()),
        }),
        stop_sequence: None,
        input_tokens: usage["inputTokens"].as_u64().unwrap_or(0),
        output_tokens: usage["outputTokens"].as_u64().unwrap_or(0),
        created: None,
    })
}
