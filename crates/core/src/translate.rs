//! Translation between the OpenAI chat-completions body and the Anthropic Messages params, for
//! the subset both sides express the same way:
//! system and user/assistant text messages (strings or text parts), `max_tokens`,
//! `temperature`, `top_p`, `stop` ↔ `stop_sequences`, `user` ↔ `metadata.user_id`.
//!
//! Anything else — images, tools, `n > 1`, logprobs, penalties, caching hints, unknown fields —
//! cannot be translated faithfully: the line is rejected with `untranslatable` naming the field,
//! never silently dropped.
//!
//! The model: a line's model is kept when it belongs to the target provider (`claude-…` for
//! Anthropic, anything else for OpenAI); a model of the other provider is replaced by the
//! route's default model.

use serde_json::{Map, Value, json};

/// Why a body cannot be translated: the field, and what about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable {
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for Untranslatable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.field, self.reason)
    }
}

fn no(field: impl Into<String>, reason: impl Into<String>) -> Untranslatable {
    Untranslatable {
        field: field.into(),
        reason: reason.into(),
    }
}

fn is_claude(model: &str) -> bool {
    model.starts_with("claude")
}

/// What the route fills in when a body leaves it out.
#[derive(Debug, Clone, Default)]
pub struct Fill<'a> {
    pub model: Option<&'a str>,
    pub max_tokens: Option<u64>,
}

/// Text of a content value: a string, or an array of `{"type":"text","text"}` parts.
fn text_parts(
    content: &Value,
    field: &str,
    image_word: &str,
) -> Result<Vec<String>, Untranslatable> {
    match content {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| {
                let here = format!("{field}[{j}]");
                let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                if kind != "text" {
                    return Err(no(
                        format!("{here}.type"),
                        format!("is {kind:?}: only text parts translate ({image_word}, audio, files and tools do not)"),
                    ));
                }
                if let Some(obj) = part.as_object()
                    && let Some(extra) = obj.keys().find(|k| *k != "type" && *k != "text")
                {
                    return Err(no(format!("{here}.{extra}"), "has no equivalent"));
                }
                part.get("text")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| no(format!("{here}.text"), "must be a string"))
            })
            .collect(),
        _ => Err(no(field, "must be a string or an array of text parts")),
    }
}

/// A message of text only, as both providers write it.
struct TextMessage<'a> {
    role: &'a str,
    /// The content for the other side: a string stays a string, parts become text parts.
    content: Value,
    texts: Vec<String>,
}

/// Reads `{"role","content"}` at `here`; anything but text (or another field) is refused.
fn text_message<'a>(
    msg: &'a Value,
    here: &str,
    image_word: &str,
) -> Result<TextMessage<'a>, Untranslatable> {
    let obj = msg
        .as_object()
        .ok_or_else(|| no(here, "must be an object"))?;
    if let Some(extra) = obj.keys().find(|k| *k != "role" && *k != "content") {
        return Err(no(format!("{here}.{extra}"), "has no equivalent"));
    }
    let role = obj.get("role").and_then(Value::as_str).unwrap_or("");
    let raw = obj
        .get("content")
        .ok_or_else(|| no(format!("{here}.content"), "is missing"))?;
    let texts = text_parts(raw, &format!("{here}.content"), image_word)?;
    let content = match raw {
        Value::String(s) => json!(s),
        _ => Value::Array(
            texts
                .iter()
                .map(|t| json!({"type": "text", "text": t}))
                .collect(),
        ),
    };
    Ok(TextMessage {
        role,
        content,
        texts,
    })
}

/// OpenAI chat-completions body → Anthropic Messages params.
pub fn openai_to_anthropic(
    body: &Map<String, Value>,
    fill: &Fill,
) -> Result<Map<String, Value>, Untranslatable> {
    let mut params = Map::new();
    let mut system: Vec<String> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut max_tokens: Option<Value> = None;
    for (key, value) in body {
        match key.as_str() {
            "model" => {
                let m = value
                    .as_str()
                    .ok_or_else(|| no("model", "must be a string"))?;
                let model = match fill.model {
                    Some(default) if !is_claude(m) => default,
                    _ => m,
                };
                params.insert("model".into(), json!(model));
            }
            "messages" => {
                let list = value
                    .as_array()
                    .ok_or_else(|| no("messages", "must be an array"))?;
                for (i, msg) in list.iter().enumerate() {
                    let here = format!("messages[{i}]");
                    let TextMessage {
                        role,
                        content,
                        texts,
                    } = text_message(msg, &here, "image_url")?;
                    match role {
                        "system" | "developer" => {
                            if !messages.is_empty() {
                                return Err(no(
                                    format!("{here}.role"),
                                    "is a system message after the conversation started; Anthropic takes one system prompt up front",
                                ));
                            }
                            system.push(texts.join("\n"));
                        }
                        "user" | "assistant" => {
                            messages.push(json!({"role": role, "content": content}));
                        }
                        other => {
                            return Err(no(
                                format!("{here}.role"),
                                format!("is {other:?}: only system, user and assistant translate"),
                            ));
                        }
                    }
                }
            }
            "max_tokens" | "max_completion_tokens" => {
                if !value.is_u64() {
                    return Err(no(key, "must be a positive integer"));
                }
                max_tokens = Some(value.clone());
            }
            "temperature" => {
                let t = value
                    .as_f64()
                    .ok_or_else(|| no("temperature", "must be a number"))?;
                if !(0.0..=1.0).contains(&t) {
                    return Err(no("temperature", format!("is {t}: Anthropic takes 0 to 1")));
                }
                params.insert("temperature".into(), value.clone());
            }
            "top_p" => {
                params.insert("top_p".into(), value.clone());
            }
            "stop" => {
                let stops = match value {
                    Value::Null => continue,
                    Value::String(s) => vec![json!(s)],
                    Value::Array(a) if a.iter().all(Value::is_string) => a.clone(),
                    _ => return Err(no("stop", "must be a string or an array of strings")),
                };
                params.insert("stop_sequences".into(), Value::Array(stops));
            }
            "user" => {
                let u = value
                    .as_str()
                    .ok_or_else(|| no("user", "must be a string"))?;
                params.insert("metadata".into(), json!({"user_id": u}));
            }
            "n" if value.as_u64() == Some(1) => {}
            "n" => return Err(no("n", "asks for several choices; Anthropic returns one")),
            "stream" | "logprobs" | "parallel_tool_calls"
                if value == &Value::Bool(false) || value.is_null() => {}
            other => return Err(no(other, "has no Anthropic equivalent")),
        }
    }
    if messages.is_empty() {
        return Err(no("messages", "has no user or assistant message"));
    }
    if !system.is_empty() {
        params.insert("system".into(), json!(system.join("\n\n")));
    }
    params.insert("messages".into(), Value::Array(messages));
    match (max_tokens, fill.max_tokens) {
        (Some(m), _) => {
            params.insert("max_tokens".into(), m);
        }
        (None, Some(d)) => {
            params.insert("max_tokens".into(), json!(d));
        }
        (None, None) => {
            return Err(no(
                "max_tokens",
                "is required by Anthropic and the route has no default",
            ));
        }
    }
    if !params.contains_key("model") {
        match fill.model {
            Some(m) => {
                params.insert("model".into(), json!(m));
            }
            None => return Err(no("model", "is missing and the route has no default model")),
        }
    }
    Ok(params)
}

/// Anthropic Messages params → OpenAI chat-completions body.
pub fn anthropic_to_openai(
    params: &Map<String, Value>,
    fill: &Fill,
) -> Result<Map<String, Value>, Untranslatable> {
    let mut body = Map::new();
    let mut messages: Vec<Value> = Vec::new();
    if let Some(system) = params.get("system") {
        let texts = text_parts(system, "system", "image")?;
        messages.push(json!({"role": "system", "content": texts.join("\n")}));
    }
    for (key, value) in params {
        match key.as_str() {
            "system" => {}
            "model" => {
                let m = value
                    .as_str()
                    .ok_or_else(|| no("model", "must be a string"))?;
                let model = match fill.model {
                    Some(default) if is_claude(m) => default,
                    _ => m,
                };
                body.insert("model".into(), json!(model));
            }
            "messages" => {
                let list = value
                    .as_array()
                    .ok_or_else(|| no("messages", "must be an array"))?;
                for (i, msg) in list.iter().enumerate() {
                    let here = format!("messages[{i}]");
                    let TextMessage { role, content, .. } = text_message(msg, &here, "image")?;
                    if role != "user" && role != "assistant" {
                        return Err(no(
                            format!("{here}.role"),
                            format!("is {role:?}: only user and assistant translate"),
                        ));
                    }
                    messages.push(json!({"role": role, "content": content}));
                }
            }
            "max_tokens" => {
                body.insert("max_tokens".into(), value.clone());
            }
            "temperature" | "top_p" => {
                body.insert(key.clone(), value.clone());
            }
            "stop_sequences" => {
                let stops = value
                    .as_array()
                    .filter(|a| a.iter().all(Value::is_string))
                    .ok_or_else(|| no("stop_sequences", "must be an array of strings"))?;
                if stops.len() > 4 {
                    return Err(no(
                        "stop_sequences",
                        "has more than the 4 stop sequences OpenAI takes",
                    ));
                }
                body.insert("stop".into(), value.clone());
            }
            "metadata" => {
                let obj = value
                    .as_object()
                    .ok_or_else(|| no("metadata", "must be an object"))?;
                for (k, v) in obj {
                    if k != "user_id" {
                        return Err(no(format!("metadata.{k}"), "has no OpenAI equivalent"));
                    }
                    body.insert("user".into(), v.clone());
                }
            }
            "stream" if value == &Value::Bool(false) => {}
            other => return Err(no(other, "has no OpenAI equivalent")),
        }
    }
    if !body.contains_key("model") {
        match fill.model {
            Some(m) => {
                body.insert("model".into(), json!(m));
            }
            None => return Err(no("model", "is missing and the route has no default model")),
        }
    }
    body.insert("messages".into(), Value::Array(messages));
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    const FILL: Fill<'static> = Fill {
        model: Some("claude-sonnet-4-5"),
        max_tokens: Some(1024),
    };
    const FILL_OPENAI: Fill<'static> = Fill {
        model: Some("gpt-4o-mini"),
        max_tokens: None,
    };

    #[test]
    fn openai_chat_translates_to_anthropic_params() {
        let body = map(json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Bye"}
            ],
            "max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stop": "END", "user": "u-1", "n": 1
        }));
        let params = openai_to_anthropic(&body, &FILL).unwrap();
        assert_eq!(
            Value::Object(params),
            json!({
                "model": "claude-sonnet-4-5",
                "temperature": 0.2, "top_p": 0.9, "stop_sequences": ["END"],
                "metadata": {"user_id": "u-1"},
                "system": "Be brief.",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                    {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "Bye"}
                ],
                "max_tokens": 50
            })
        );
    }

    #[test]
    fn claude_model_is_kept_and_max_tokens_is_filled() {
        let body = map(
            json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]}),
        );
        let params = openai_to_anthropic(&body, &FILL).unwrap();
        assert_eq!(params["model"], "claude-haiku-4-5");
        assert_eq!(params["max_tokens"], 1024);
    }

    #[test]
    fn openai_rejections_name_the_field() {
        let cases = [
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "tools": []}),
                "tools",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "n": 2}),
                "n",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "logprobs": true}),
                "logprobs",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "temperature": 1.5}),
                "temperature",
            ),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x", "name": "bob"}]}),
                "messages[0].name",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "frequency_penalty": 0.5}),
                "frequency_penalty",
            ),
            (json!({"messages": []}), "messages"),
        ];
        for (body, field) in cases {
            let err = openai_to_anthropic(&map(body.clone()), &FILL).unwrap_err();
            assert_eq!(err.field, field, "{body}");
        }
    }

    #[test]
    fn max_tokens_is_required_without_a_default() {
        let body =
            map(json!({"model": "claude-x", "messages": [{"role": "user", "content": "x"}]}));
        let err = openai_to_anthropic(
            &body,
            &Fill {
                model: None,
                max_tokens: None,
            },
        )
        .unwrap_err();
        assert_eq!(err.field, "max_tokens");
    }

    #[test]
    fn anthropic_params_translate_to_openai_chat() {
        let params = map(json!({
            "model": "claude-sonnet-4-5", "max_tokens": 100,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [{"role": "user", "content": "Hi"}],
            "temperature": 0.5, "stop_sequences": ["A", "B"], "metadata": {"user_id": "u-2"}
        }));
        let body = anthropic_to_openai(&params, &FILL_OPENAI).unwrap();
        assert_eq!(
            Value::Object(body),
            json!({
                "model": "gpt-4o-mini", "max_tokens": 100, "temperature": 0.5, "stop": ["A", "B"], "user": "u-2",
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
            })
        );
    }

    #[test]
    fn anthropic_rejections_name_the_field() {
        let base = || json!({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
        let with = |k: &str, v: Value| {
            let mut b = base();
            b[k] = v;
            b
        };
        let cases = [
            (with("top_k", json!(5)), "top_k"),
            (with("tools", json!([])), "tools"),
            (with("thinking", json!({"type": "enabled"})), "thinking"),
            (
                with("stop_sequences", json!(["1", "2", "3", "4", "5"])),
                "stop_sequences",
            ),
            (with("metadata", json!({"other": 1})), "metadata.other"),
            (
                with(
                    "system",
                    json!([{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}]),
                ),
                "system[0].cache_control",
            ),
            (
                with(
                    "messages",
                    json!([{"role": "user", "content": [{"type": "image", "source": {}}]}]),
                ),
                "messages[0].content[0].type",
            ),
        ];
        for (params, field) in cases {
            let err = anthropic_to_openai(&map(params.clone()), &FILL_OPENAI).unwrap_err();
            assert_eq!(err.field, field, "{params}");
        }
    }
}
