//! The answer of a Bedrock model to one InvokeModel body (a batch record's `modelInput`),
//! built from the deterministic pieces of [`crate::respond`]: the same body to the same model
//! gets the same answer, in a batch or from InvokeModel.
//!
//! Which model family a body is for is read from the body, as the sandbox serves any model id:
//! - **Claude** (`anthropic_version` present): `messages` (a non-empty list of `{role,
//!   content}`, content a string or a list of blocks with `text`) and a positive integer
//!   `max_tokens` are required; `system` is optional. The answer is a Messages API message
//!   (`stop_reason` `max_tokens` when cut at `max_tokens` words, else `end_turn`).
//! - **Nova** (`schemaVersion` `messages-v1`, or `inferenceConfig`): `messages` with
//!   `content: [{"text"}]`, optional `system: [{"text"}]`, `inferenceConfig.maxTokens`.
//! - **Titan embeddings** (`inputText`): an 8-dimension unit embedding.
//!
//! Anything else, or a body missing what its family requires, is refused as the real
//! service refuses it: 400 "Malformed input request: …, please reformat your input and try
//! again."

use serde_json::{Map, Value, json};

use crate::respond::{Prompt, Stream, count_tokens, digest, embedding};

/// Dimensions of the sandbox's Titan embeddings.
const EMBEDDING_DIMENSIONS: usize = 8;

/// A model's answer: its body and token counts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub output: Value,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A body the model refuses: an HTTP status and the service's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: u16,
    pub message: String,
}

impl Refusal {
    fn malformed(detail: &str) -> Self {
        Refusal {
            code: 400,
            message: format!(
                "Malformed input request: {detail}, please reformat your input and try again."
            ),
        }
    }

    fn required(key: &str) -> Self {
        Self::malformed(&format!("#: required key [{key}] not found"))
    }
}

/// Answers `body` as `model_id` would.
pub(crate) fn answer(model_id: &str, body: &Value) -> Result<Answer, Refusal> {
    let Some(object) = body.as_object() else {
        return Err(Refusal::malformed("#: expected type: JSONObject"));
    };
    if object.contains_key("anthropic_version") {
        claude(model_id, object)
    } else if object.get("schemaVersion").and_then(Value::as_str) == Some("messages-v1")
        || object.contains_key("inferenceConfig")
    {
        nova(model_id, object)
    } else if let Some(text) = object.get("inputText") {
        titan_embedding(model_id, text)
    } else {
        Err(Refusal::required(
            "anthropic_version, schemaVersion, inferenceConfig or inputText",
        ))
    }
}

fn claude(model_id: &str, body: &Map<String, Value>) -> Result<Answer, Refusal> {
    let messages = body
        .get("messages")
        .ok_or_else(|| Refusal::required("messages"))?
        .as_array()
        .filter(|messages| !messages.is_empty())
        .ok_or_else(|| Refusal::malformed("#/messages: expected a non-empty JSONArray"))?;
    let max_tokens = body
        .get("max_tokens")
        .ok_or_else(|| Refusal::required("max_tokens"))?
        .as_u64()
        .filter(|max| *max > 0)
        .ok_or_else(|| Refusal::malformed("#/max_tokens: expected a positive integer"))?;
    let mut prompt = Prompt::new(model_id);
    if let Some(system) = body.get("system") {
        push_content(&mut prompt, "system", system, "#/system")?;
    }
    for (index, message) in messages.iter().enumerate() {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .filter(|role| *role == "user" || *role == "assistant")
            .ok_or_else(|| {
                Refusal::malformed(&format!(
                    "#/messages/{index}/role: expected user or assistant"
                ))
            })?;
        let content = message
            .get("content")
            .ok_or_else(|| Refusal::required(&format!("messages/{index}/content")))?;
        push_content(
            &mut prompt,
            role,
            content,
            &format!("#/messages/{index}/content"),
        )?;
    }
    let reply = prompt.reply(0, Some(max_tokens));
    let mut ids = Stream::new(&digest(&[b"bedrock-message", reply.text.as_bytes()]));
    Ok(Answer {
        output: json!({
            "id": format!("msg_bdrk_{}", ids.token(24)),
            "type": "message",
            "role": "assistant",
            "model": model_id,
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": if reply.truncated { "max_tokens" } else { "end_turn" },
            "stop_sequence": null,
            "usage": {"input_tokens": prompt.tokens(), "output_tokens": reply.tokens},
        }),
        input_tokens: prompt.tokens(),
        output_tokens: reply.tokens,
    })
}

fn nova(model_id: &str, body: &Map<String, Value>) -> Result<Answer, Refusal> {
    let messages = body
        .get("messages")
        .ok_or_else(|| Refusal::required("messages"))?
        .as_array()
        .filter(|messages| !messages.is_empty())
        .ok_or_else(|| Refusal::malformed("#/messages: expected a non-empty JSONArray"))?;
    let max_tokens = match body.get("inferenceConfig").and_then(|c| c.get("maxTokens")) {
        None => None,
        Some(max) => Some(max.as_u64().filter(|max| *max > 0).ok_or_else(|| {
            Refusal::malformed("#/inferenceConfig/maxTokens: expected a positive integer")
        })?),
    };
    let mut prompt = Prompt::new(model_id);
    if let Some(system) = body.get("system") {
        push_content(&mut prompt, "system", system, "#/system")?;
    }
    for (index, message) in messages.iter().enumerate() {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .filter(|role| *role == "user" || *role == "assistant")
            .ok_or_else(|| {
                Refusal::malformed(&format!(
                    "#/messages/{index}/role: expected user or assistant"
                ))
            })?;
        let content = message
            .get("content")
            .filter(|content| content.is_array())
            .ok_or_else(|| {
                Refusal::malformed(&format!(
                    "#/messages/{index}/content: expected type: JSONArray"
                ))
            })?;
        push_content(
            &mut prompt,
            role,
            content,
            &format!("#/messages/{index}/content"),
        )?;
    }
    let reply = prompt.reply(0, max_tokens);
    let stop_reason = if reply.truncated {
        "max_tokens"
    } else {
        "end_turn"
    };
    Ok(Answer {
        output: json!({
            "output": {"message": {"role": "assistant", "content": [{"text": reply.text}]}},
            "stopReason": stop_reason,
            "usage": {
                "inputTokens": prompt.tokens(),
                "outputTokens": reply.tokens,
                "totalTokens": prompt.tokens() + reply.tokens,
            },
        }),
        input_tokens: prompt.tokens(),
        output_tokens: reply.tokens,
    })
}

fn titan_embedding(model_id: &str, text: &Value) -> Result<Answer, Refusal> {
    let text = text
        .as_str()
        .ok_or_else(|| Refusal::malformed("#/inputText: expected type: String"))?;
    let tokens = count_tokens(text);
    Ok(Answer {
        output: json!({
            "embedding": embedding(model_id, text.as_bytes(), EMBEDDING_DIMENSIONS),
            "inputTextTokenCount": tokens,
        }),
        input_tokens: tokens,
        output_tokens: 0,
    })
}

/// Adds a string content, or the `text` of each block of a list, to `prompt`.
fn push_content(
    prompt: &mut Prompt,
    role: &str,
    content: &Value,
    path: &str,
) -> Result<(), Refusal> {
    match content {
        Value::String(text) => prompt.push(role, text),
        Value::Array(blocks) => {
            for (index, block) in blocks.iter().enumerate() {
                let Some(block) = block.as_object() else {
                    return Err(Refusal::malformed(&format!(
                        "{path}/{index}: expected type: JSONObject"
                    )));
                };
                if let Some(text) = block.get("text") {
                    let text = text.as_str().ok_or_else(|| {
                        Refusal::malformed(&format!("{path}/{index}/text: expected type: String"))
                    })?;
                    prompt.push(role, text);
                }
            }
        }
        _ => {
            return Err(Refusal::malformed(&format!(
                "{path}: expected type: String or JSONArray"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claude_body_gets_a_message_with_word_usage() -> Result<(), Refusal> {
        let body = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100,
            "messages": [{"role": "user", "content": "two plus two"}]});
        let answer = answer("anthropic.claude-3-haiku-20240307-v1:0", &body)?;
        assert_eq!(answer.output["type"], "message");
        assert_eq!(answer.output["stop_reason"], "end_turn");
        assert_eq!(answer.output["usage"]["input_tokens"], 3);
        assert_eq!(answer.input_tokens, 3);
        assert_eq!(
            answer,
            super::answer("anthropic.claude-3-haiku-20240307-v1:0", &body)?
        );
        Ok(())
    }

    #[test]
    fn a_nova_body_gets_an_output_message() -> Result<(), Refusal> {
        let body = json!({"schemaVersion": "messages-v1",
            "messages": [{"role": "user", "content": [{"text": "hello there"}]}],
            "inferenceConfig": {"maxTokens": 3}});
        let answer = answer("amazon.nova-lite-v1:0", &body)?;
        assert_eq!(answer.output["stopReason"], "max_tokens");
        assert_eq!(answer.output["usage"]["totalTokens"], 5);
        Ok(())
    }

    #[test]
    fn a_titan_body_gets_an_embedding() -> Result<(), Refusal> {
        let answer = answer(
            "amazon.titan-embed-text-v2:0",
            &json!({"inputText": "a b c"}),
        )?;
        assert_eq!(answer.output["embedding"].as_array().map(Vec::len), Some(8));
        assert_eq!(answer.output["inputTextTokenCount"], 3);
        Ok(())
    }

    #[test]
    fn a_claude_body_without_messages_is_malformed() {
        let refusal = answer(
            "m",
            &json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5}),
        )
        .err();
        assert_eq!(
            refusal.map(|r| (r.code, r.message)),
            Some((
                400,
                "Malformed input request: #: required key [messages] not found, please reformat your input and try again.".to_owned()
            ))
        );
    }
}
