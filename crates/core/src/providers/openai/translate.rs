//! OpenAI chat-completions bodies to and from the common request ([`crate::provider::Request`]).
//!
//! What translates: system (and developer) and user/assistant text messages (strings or text
//! parts), `max_tokens` / `max_completion_tokens`, `temperature`, `top_p`, `stop`, `user`, the
//! model. `n` of 1 and `stream` / `logprobs` / `parallel_tool_calls` off are accepted as the
//! defaults they are. Anything else is refused naming the field.

use crate::provider::{Message, Request, Stop, Untranslatable};
use crate::providers::chat::{count, message_json, model_for, no, number, role_of, text_message};
use crate::route::Defaults;
use serde_json::{Map, Value, json};

/// Most stop sequences OpenAI takes.
const MAX_STOPS: usize = 4;

/// Whether OpenAI serves a model a line names, for a line translated to it: anything but
/// Anthropic's models (OpenAI-compatible services serve any name).
pub(crate) fn serves(model: &str) -> bool {
    !model.starts_with("claude")
}

/// An OpenAI chat body as the common request; `target` names the provider in refusals.
pub fn to_common(body: &Map<String, Value>, target: &str) -> Result<Request, Untranslatable> {
    let mut request = Request::default();
    let mut system: Vec<String> = Vec::new();
    for (key, value) in body {
        match key.as_str() {
            "model" => {
                let m = value
                    .as_str()
                    .ok_or_else(|| no("model", "must be a string"))?;
                request.model = Some(m.to_string());
            }
            "messages" => {
                let list = value
                    .as_array()
                    .ok_or_else(|| no("messages", "must be an array"))?;
                for (i, msg) in list.iter().enumerate() {
                    let here = format!("messages[{i}]");
                    let (role, content) = text_message(msg, &here, "image_url")?;
                    match (role, role_of(role)) {
                        ("system" | "developer", _) => {
                            if !request.messages.is_empty() {
                                return Err(no(
                                    format!("{here}.role"),
                                    format!(
                                        "is a system message after the conversation started; {target} takes one system prompt up front"
                                    ),
                                ));
                            }
                            system.push(content.joined());
                        }
                        (_, Some(role)) => request.messages.push(Message { role, content }),
                        (other, None) => {
                            return Err(no(
                                format!("{here}.role"),
                                format!("is {other:?}: only system, user and assistant translate"),
                            ));
                        }
                    }
                }
            }
            "max_tokens" | "max_completion_tokens" => {
                request.max_tokens = Some(count(key, value)?);
            }
            "temperature" => request.temperature = Some(number(key, value)?),
            "top_p" => request.top_p = Some(number(key, value)?),
            "stop" => {
                let sequences = match value {
                    Value::Null => continue,
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) if a.iter().all(Value::is_string) => a
                        .iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect(),
                    _ => return Err(no("stop", "must be a string or an array of strings")),
                };
                request.stop = Some(Stop {
                    sequences,
                    field: "stop",
                });
            }
            "user" => {
                let u = value
                    .as_str()
                    .ok_or_else(|| no("user", "must be a string"))?;
                request.user = Some(u.to_string());
            }
            "n" if value.as_u64() == Some(1) => {}
            "n" => {
                return Err(no(
                    "n",
                    format!("asks for several choices; {target} returns one"),
                ));
            }
            "stream" | "logprobs" | "parallel_tool_calls"
                if value == &Value::Bool(false) || value.is_null() => {}
            other => return Err(no(other, format!("has no {target} equivalent"))),
        }
    }
    if !system.is_empty() {
        request.system = Some(system.join("\n\n"));
    }
    Ok(request)
}

/// The common request as an OpenAI chat body: the line's model if OpenAI serves it, else the
/// route's default.
pub fn from_common(
    request: Request,
    defaults: &Defaults,
) -> Result<Map<String, Value>, Untranslatable> {
    let mut body = Map::new();
    let model = model_for(request.model, defaults.model.as_deref(), serves)?;
    body.insert("model".into(), json!(model));
    if let Some(n) = request.max_tokens {
        body.insert("max_tokens".into(), json!(n));
    }
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), Value::Number(t));
    }
    if let Some(p) = request.top_p {
        body.insert("top_p".into(), Value::Number(p));
    }
    if let Some(stop) = request.stop {
        if stop.sequences.len() > MAX_STOPS {
            return Err(Untranslatable::new(
                stop.field,
                format!("has more than the {MAX_STOPS} stop sequences OpenAI takes"),
            ));
        }
        body.insert("stop".into(), json!(stop.sequences));
    }
    if let Some(u) = request.user {
        body.insert("user".into(), json!(u));
    }
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = request.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.extend(
        request
            .messages
            .iter()
            .map(|m| message_json(m.role, &m.content)),
    );
    body.insert("messages".into(), Value::Array(messages));
    Ok(body)
}
