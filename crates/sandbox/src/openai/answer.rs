//! The answer to one request of a batch: the response body the real endpoint would send, built
//! from the deterministic pieces of [`crate::respond`], or the 400/404 error it would send.
//!
//! Any model name is served, except [`MODEL_NOT_FOUND`], which answers 404 `model_not_found`.
//! Requests the real API rejects are rejected alike (missing `messages`, `input` or `prompt`,
//! values of the wrong type, an empty `messages` array, a model left out); other parameters
//! are accepted and ignored unless listed here: `n`, `max_tokens`, `max_completion_tokens`
//! (chat), `max_tokens` (completions, default 16), `max_output_tokens` and `instructions`
//! (responses), `dimensions` (default 8) and `encoding_format` (embeddings).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::Endpoint;
use crate::respond::{self, Prompt, Stream};

/// The model name that makes a request fail with 404 `model_not_found`.
pub const MODEL_NOT_FOUND: &str = "does-not-exist";

/// Dimensions of an embedding when the request does not ask for others.
const DEFAULT_DIMENSIONS: u64 = 8;
const MAX_DIMENSIONS: u64 = 4096;
/// The most choices one chat or completions request may ask for.
const MAX_CHOICES: u64 = 128;
/// `max_tokens` of a legacy completions request that sets none (as the real endpoint).
const DEFAULT_COMPLETION_TOKENS: u64 = 16;
const MODERATION_MODEL: &str = "omni-moderation-latest";
const MODERATION_CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// The parts of a request body the sandbox looks at; everything else is ignored.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Body<'a> {
    #[serde(borrow, default)]
    pub model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    instructions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    n: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_output_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    dimensions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    encoding_format: Option<&'a RawValue>,
}

/// A JSON string that borrows from the input when it has no escapes.
#[derive(Debug, Deserialize)]
pub(crate) struct Str<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub body: Value,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A request the endpoint rejects: its HTTP status and OpenAI error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestError {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl RequestError {
    fn invalid(message: String, param: &str, code: &'static str) -> Self {
        RequestError {
            status: 400,
            message,
            param: Some(param.to_owned()),
            code: Some(code),
        }
    }

    fn missing(param: &str) -> Self {
        Self::invalid(
            format!("Missing required parameter: '{param}'."),
            param,
            "missing_required_parameter",
        )
    }

    fn wrong_type(param: &str, expected: &str) -> Self {
        Self::invalid(
            format!("Invalid type for '{param}': expected {expected}."),
            param,
            "invalid_type",
        )
    }

    fn empty_array(param: &str) -> Self {
        Self::invalid(
            format!("Invalid '{param}': empty array. Expected an array with minimum length 1."),
            param,
            "empty_array",
        )
    }

    fn out_of_range(param: &str, value: u64, min: u64, max: u64) -> Self {
        Self::invalid(
            format!("Invalid '{param}': {value}. Expected a value between {min} and {max}."),
            param,
            "invalid_value",
        )
    }

    /// The response body: `{"error": {message, type, param, code}}`.
    pub(crate) fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": "invalid_request_error",
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// Answers one request of a batch. `ids` supplies the response's own id; `created` is the
/// Unix second the batch started processing.
pub(crate) fn answer(
    endpoint: Endpoint,
    body: &Body<'_>,
    ids: &mut Stream,
    created: i64,
) -> Result<Answer, RequestError> {
    let model = model(endpoint, body)?;
    match endpoint {
        Endpoint::ChatCompletions => chat_completion(body, &model, ids, created),
        Endpoint::Completions => completion(body, &model, ids, created),
        Endpoint::Responses => response(body, &model, ids, created),
        Endpoint::Embeddings => embeddings(body, &model),
        Endpoint::Moderations => moderation(body, &model, ids),
    }
}

fn model<'a>(endpoint: Endpoint, body: &Body<'a>) -> Result<Cow<'a, str>, RequestError> {
    let model = match body.model {
        None if endpoint == Endpoint::Moderations => Cow::Borrowed(MODERATION_MODEL),
        None => {
            return Err(RequestError::invalid(
                "You must provide a model parameter.".to_owned(),
                "model",
                "missing_required_parameter",
            ));
        }
        Some(raw) => decode::<Str>(raw, "model", "a string")?.0,
    };
    if model == MODEL_NOT_FOUND {
        return Err(RequestError {
            status: 404,
            message: format!("The model `{model}` does not exist or you do not have access to it."),
            param: None,
            code: Some("model_not_found"),
        });
    }
    Ok(model)
}

fn chat_completion(
    body: &Body<'_>,
    model: &str,
    ids: &mut Stream,
    created: i64,
) -> Result<Answer, RequestError> {
    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(borrow, default)]
        role: Option<Str<'a>>,
        #[serde(borrow, default)]
        content: Option<&'a RawValue>,
    }

    let raw = body
        .messages
        .ok_or_else(|| RequestError::missing("messages"))?;
    if !starts_with(raw, b'[') {
        return Err(RequestError::wrong_type("messages", "an array"));
    }
    let messages: Vec<Message> = decode(raw, "messages", "an array of message objects")?;
    if messages.is_empty() {
        return Err(RequestError::empty_array("messages"));
    }
    let mut prompt = Prompt::new(model);
    for (index, message) in messages.iter().enumerate() {
        let role = message
            .role
            .as_ref()
            .ok_or_else(|| RequestError::missing(&format!("messages[{index}].role")))?;
        if let Some(content) = message.content {
            push_content(
                &mut prompt,
                &role.0,
                content,
                &format!("messages[{index}].content"),
            )?;
        }
    }
    let max_tokens = match count(body.max_completion_tokens, "max_completion_tokens")? {
        Some(max) => Some(max),
        None => count(body.max_tokens, "max_tokens")?,
    };
    let n = choices(body.n)?;

    let mut output_tokens = 0;
    let choices: Vec<Value> = (0..n)
        .map(|index| {
            let reply = prompt.reply(index, max_tokens);
            output_tokens += reply.tokens;
            json!({
                "index": index,
                "message": {"role": "assistant", "content": reply.text, "refusal": null, "annotations": []},
                "logprobs": null,
                "finish_reason": finish_reason(reply.truncated),
            })
        })
        .collect();
    let input_tokens = prompt.tokens();
    let mut body = json!({
        "id": format!("chatcmpl-{}", ids.token(29)),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": null,
        "usage": {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_sandbox",
    });
    body["choices"] = Value::Array(choices);
    Ok(Answer {
        body,
        input_tokens,
        output_tokens,
    })
}

fn completion(
    body: &Body<'_>,
    model: &str,
    ids: &mut Stream,
    created: i64,
) -> Result<Answer, RequestError> {
    let raw = body.prompt.ok_or_else(|| RequestError::missing("prompt"))?;
    let prompts = texts(raw, "prompt")?;
    let max_tokens = count(body.max_tokens, "max_tokens")?.unwrap_or(DEFAULT_COMPLETION_TOKENS);
    let n = choices(body.n)?;

    let (mut input_tokens, mut output_tokens) = (0, 0);
    let mut choices = Vec::new();
    for text in &prompts {
        let mut prompt = Prompt::new(model);
        prompt.push("user", text);
        input_tokens += prompt.tokens();
        for variant in 0..n {
            let reply = prompt.reply(variant, Some(max_tokens));
            output_tokens += reply.tokens;
            choices.push(json!({
                "text": reply.text,
                "index": choices.len(),
                "logprobs": null,
                "finish_reason": finish_reason(reply.truncated),
            }));
        }
    }
    let mut body = json!({
        "id": format!("cmpl-{}", ids.token(29)),
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": null,
        "usage": {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
        "system_fingerprint": "fp_sandbox",
    });
    body["choices"] = Value::Array(choices);
    Ok(Answer {
        body,
        input_tokens,
        output_tokens,
    })
}

fn response(
    body: &Body<'_>,
    model: &str,
    ids: &mut Stream,
    created: i64,
) -> Result<Answer, RequestError> {
    let raw = body.input.ok_or_else(|| RequestError::missing("input"))?;
    let mut prompt = Prompt::new(model);
    let instructions = match body.instructions {
        Some(raw) => {
            let value: Option<Str> = decode(raw, "instructions", "a string")?;
            value.map(|text| text.0)
        }
        None => None,
    };
    if let Some(text) = &instructions {
        prompt.push("system", text);
    }
    let input: Value = decode(raw, "input", "a string or an array of input items")?;
    match &input {
        Value::String(text) => prompt.push("user", text),
        Value::Array(items) => {
            for item in items {
                push_input_item(&mut prompt, item);
            }
        }
        _ => {
            return Err(RequestError::wrong_type(
                "input",
                "a string or an array of input items",
            ));
        }
    }
    let max_tokens = count(body.max_output_tokens, "max_output_tokens")?;
    let reply = prompt.reply(0, max_tokens);
    let (input_tokens, output_tokens) = (prompt.tokens(), reply.tokens);
    let (status, incomplete) = if reply.truncated {
        ("incomplete", json!({"reason": "max_output_tokens"}))
    } else {
        ("completed", Value::Null)
    };
    let body = json!({
        "id": format!("resp_{}", ids.token(48)),
        "object": "response",
        "created_at": created,
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "instructions": instructions,
        "max_output_tokens": max_tokens,
        "model": model,
        "output": [{
            "type": "message",
            "id": format!("msg_{}", ids.token(48)),
            "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}],
        }],
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": false,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
        "metadata": {},
    });
    Ok(Answer {
        body,
        input_tokens,
        output_tokens,
    })
}

fn embeddings(body: &Body<'_>, model: &str) -> Result<Answer, RequestError> {
    const EXPECTED: &str = "a string, an array of strings, or an array of token arrays";
    let raw = body.input.ok_or_else(|| RequestError::missing("input"))?;
    let input: Value = decode(raw, "input", EXPECTED)?;
    // Each input as the bytes its embedding is derived from, with its token count.
    let mut items: Vec<(Vec<u8>, u64)> = Vec::new();
    match &input {
        Value::String(text) => items.push((text.as_bytes().to_vec(), respond::count_tokens(text))),
        Value::Array(values) if values.is_empty() => {
            return Err(RequestError::empty_array("input"));
        }
        Value::Array(values) if values.iter().all(Value::is_u64) => {
            items.push((raw.get().as_bytes().to_vec(), values.len() as u64));
        }
        Value::Array(values) => {
            for value in values {
                match value {
                    Value::String(text) => {
                        items.push((text.as_bytes().to_vec(), respond::count_tokens(text)));
                    }
                    Value::Array(tokens) if tokens.iter().all(Value::is_u64) => {
                        items.push((value.to_string().into_bytes(), tokens.len() as u64));
                    }
                    _ => return Err(RequestError::wrong_type("input", EXPECTED)),
                }
            }
        }
        _ => return Err(RequestError::wrong_type("input", EXPECTED)),
    }
    let dimensions = count(body.dimensions, "dimensions")?.unwrap_or(DEFAULT_DIMENSIONS);
    if !(1..=MAX_DIMENSIONS).contains(&dimensions) {
        return Err(RequestError::out_of_range(
            "dimensions",
            dimensions,
            1,
            MAX_DIMENSIONS,
        ));
    }
    let base64 = match body.encoding_format {
        None => false,
        Some(raw) => match decode::<Option<Str>>(raw, "encoding_format", "a string")? {
            None => false,
            Some(format) if format.0 == "float" => false,
            Some(format) if format.0 == "base64" => true,
            Some(format) => {
                return Err(RequestError::invalid(
                    format!(
                        "Invalid value for 'encoding_format': '{}'. Expected 'float' or 'base64'.",
                        format.0
                    ),
                    "encoding_format",
                    "invalid_value",
                ));
            }
        },
    };

    let mut input_tokens = 0;
    let data: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(index, (bytes, tokens))| {
            input_tokens += tokens;
            let values = respond::embedding(model, bytes, dimensions as usize);
            let embedding = if base64 {
                Value::String(base64_f32(&values))
            } else {
                json!(values)
            };
            let mut item = json!({"object": "embedding", "index": index});
            item["embedding"] = embedding;
            item
        })
        .collect();
    let mut body = json!({
        "object": "list",
        "data": null,
        "model": model,
        "usage": {"prompt_tokens": input_tokens, "total_tokens": input_tokens},
    });
    body["data"] = Value::Array(data);
    Ok(Answer {
        body,
        input_tokens,
        output_tokens: 0,
    })
}

fn moderation(body: &Body<'_>, model: &str, ids: &mut Stream) -> Result<Answer, RequestError> {
    const EXPECTED: &str = "a string, an array of strings, or an array of content parts";
    let raw = body.input.ok_or_else(|| RequestError::missing("input"))?;
    let input: Value = decode(raw, "input", EXPECTED)?;
    // One result per string; an array of content parts is one input.
    let inputs: Vec<String> = match &input {
        Value::String(text) => vec![text.clone()],
        Value::Array(values) if values.is_empty() => {
            return Err(RequestError::empty_array("input"));
        }
        Value::Array(values) if values.iter().all(Value::is_string) => values
            .iter()
            .filter_map(|value| value.as_str().map(str::to_owned))
            .collect(),
        Value::Array(values) if values.iter().all(Value::is_object) => vec![input.to_string()],
        _ => return Err(RequestError::wrong_type("input", EXPECTED)),
    };
    let results: Vec<Value> = inputs
        .iter()
        .map(|text| {
            let scores = respond::moderation_scores(text.as_bytes(), MODERATION_CATEGORIES.len());
            let categories: serde_json::Map<String, Value> = MODERATION_CATEGORIES
                .iter()
                .map(|name| ((*name).to_owned(), Value::Bool(false)))
                .collect();
            let category_scores: serde_json::Map<String, Value> = MODERATION_CATEGORIES
                .iter()
                .zip(scores)
                .map(|(name, score)| ((*name).to_owned(), json!(score)))
                .collect();
            let applied: serde_json::Map<String, Value> = MODERATION_CATEGORIES
                .iter()
                .map(|name| ((*name).to_owned(), json!(["text"])))
                .collect();
            let mut result = json!({"flagged": false});
            result["categories"] = Value::Object(categories);
            result["category_scores"] = Value::Object(category_scores);
            result["category_applied_input_types"] = Value::Object(applied);
            result
        })
        .collect();
    let mut body = json!({"id": format!("modr-{}", ids.token(32)), "model": model});
    body["results"] = Value::Array(results);
    Ok(Answer {
        body,
        input_tokens: 0,
        output_tokens: 0,
    })
}

/// Adds a chat message's `content` (a string, content parts, or null) to `prompt`.
fn push_content(
    prompt: &mut Prompt,
    role: &str,
    content: &RawValue,
    param: &str,
) -> Result<(), RequestError> {
    #[derive(Deserialize)]
    struct Part<'a> {
        #[serde(borrow, default)]
        text: Option<Str<'a>>,
    }
    const EXPECTED: &str = "a string or an array of content parts";

    match content.get().trim_start().as_bytes().first() {
        Some(b'"') => prompt.push(role, &decode::<Str>(content, param, EXPECTED)?.0),
        Some(b'[') => {
            for part in decode::<Vec<Part>>(content, param, EXPECTED)? {
                if let Some(text) = part.text {
                    prompt.push(role, &text.0);
                }
            }
        }
        Some(b'n') if content.get().trim() == "null" => {}
        _ => return Err(RequestError::wrong_type(param, EXPECTED)),
    }
    Ok(())
}

/// Adds one item of a Responses API `input` array: a message (string or parts content) or a
/// tool output; other item types carry no text the sandbox reads.
fn push_input_item(prompt: &mut Prompt, item: &Value) {
    match item {
        Value::String(text) => prompt.push("user", text),
        Value::Object(fields) => {
            let role = fields.get("role").and_then(Value::as_str).unwrap_or("user");
            match fields.get("content") {
                Some(Value::String(text)) => prompt.push(role, text),
                Some(Value::Array(parts)) => {
                    for text in parts
                        .iter()
                        .filter_map(|part| part.get("text").and_then(Value::as_str))
                    {
                        prompt.push(role, text);
                    }
                }
                _ => {}
            }
            if let Some(output) = fields.get("output").and_then(Value::as_str) {
                prompt.push("tool", output);
            }
        }
        _ => {}
    }
}

/// The prompts of a legacy completions request: a string, strings, or token arrays (whose
/// text is their JSON).
fn texts(raw: &RawValue, param: &str) -> Result<Vec<String>, RequestError> {
    const EXPECTED: &str = "a string, an array of strings, or an array of token arrays";
    match decode::<Value>(raw, param, EXPECTED)? {
        Value::String(text) => Ok(vec![text]),
        Value::Array(values) if values.is_empty() => Err(RequestError::empty_array(param)),
        Value::Array(values) if values.iter().all(Value::is_u64) => Ok(vec![raw.get().to_owned()]),
        Value::Array(values) => values
            .into_iter()
            .map(|value| match value {
                Value::String(text) => Ok(text),
                Value::Array(tokens) if tokens.iter().all(Value::is_u64) => {
                    Ok(Value::Array(tokens).to_string())
                }
                _ => Err(RequestError::wrong_type(param, EXPECTED)),
            })
            .collect(),
        _ => Err(RequestError::wrong_type(param, EXPECTED)),
    }
}

/// An optional positive integer parameter (`null` counts as absent).
fn count(raw: Option<&RawValue>, param: &str) -> Result<Option<u64>, RequestError> {
    let Some(raw) = raw else { return Ok(None) };
    let value: Option<u64> = decode(raw, param, "a positive integer")?;
    match value {
        Some(0) => Err(RequestError::out_of_range(param, 0, 1, u64::MAX)),
        value => Ok(value),
    }
}

fn choices(raw: Option<&RawValue>) -> Result<u64, RequestError> {
    let n = count(raw, "n")?.unwrap_or(1);
    if n > MAX_CHOICES {
        return Err(RequestError::out_of_range("n", n, 1, MAX_CHOICES));
    }
    Ok(n)
}

fn decode<'a, T: Deserialize<'a>>(
    raw: &'a RawValue,
    param: &str,
    expected: &str,
) -> Result<T, RequestError> {
    serde_json::from_str(raw.get()).map_err(|_| RequestError::wrong_type(param, expected))
}

fn starts_with(raw: &RawValue, byte: u8) -> bool {
    raw.get().trim_start().as_bytes().first() == Some(&byte)
}

fn finish_reason(truncated: bool) -> &'static str {
    if truncated { "length" } else { "stop" }
}

/// The values as little-endian `f32`s in standard Base64, as the embeddings endpoint sends
/// them for `encoding_format: "base64"`.
fn base64_f32(values: &[f64]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values
        .iter()
        .flat_map(|value| (*value as f32).to_le_bytes())
        .collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_to(endpoint: Endpoint, body: &str) -> Result<Answer, RequestError> {
        let body: Body =
            serde_json::from_str(body).map_err(|e| RequestError::missing(&e.to_string()))?;
        answer(endpoint, &body, &mut Stream::new(&[7; 32]), 1_700_000_000)
    }

    #[test]
    fn a_chat_request_gets_a_chat_completion_with_word_token_usage() -> Result<(), RequestError> {
        let answer = answer_to(
            Endpoint::ChatCompletions,
            r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"two plus two"}]}]}"#,
        )?;
        assert_eq!(answer.body["object"], "chat.completion");
        assert_eq!(answer.body["model"], "m");
        assert_eq!(answer.input_tokens, 5);
        assert_eq!(answer.body["usage"]["prompt_tokens"], 5);
        assert_eq!(answer.body["choices"][0]["finish_reason"], "stop");
        let text = answer.body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default();
        assert!(
            text.starts_with("Sandbox reply to \"two plus two\":"),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn a_chat_request_without_messages_is_a_400() {
        let error = answer_to(Endpoint::ChatCompletions, r#"{"model":"m"}"#).err();
        assert_eq!(
            error.map(|e| (e.status, e.code)),
            Some((400, Some("missing_required_parameter")))
        );
    }

    #[test]
    fn the_missing_model_is_a_404() {
        let error = answer_to(
            Endpoint::ChatCompletions,
            r#"{"model":"does-not-exist","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .err();
        assert_eq!(
            error.map(|e| (e.status, e.code)),
            Some((404, Some("model_not_found")))
        );
    }

    #[test]
    fn embeddings_come_one_per_input_in_the_asked_dimensions() -> Result<(), RequestError> {
        let answer = answer_to(
            Endpoint::Embeddings,
            r#"{"model":"e","input":["a b","c"],"dimensions":4}"#,
        )?;
        assert_eq!(answer.body["data"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            answer.body["data"][1]["embedding"].as_array().map(Vec::len),
            Some(4)
        );
        assert_eq!(answer.body["usage"]["prompt_tokens"], 3);
        Ok(())
    }

    #[test]
    fn base64_embeddings_encode_little_endian_floats() {
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, 1.0]), "AACAPwAAgD8=");
    }
}
