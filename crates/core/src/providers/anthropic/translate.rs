//! Anthropic Messages params to and from the common request ([`crate::provider::Request`]).
//!
//! What translates: `system` (a string or text parts), user/assistant text messages,
//! `max_tokens`, `temperature`, `top_p`, `stop_sequences`, `metadata.user_id`, the model;
//! `stream` off is accepted. Anything else (tools, thinking, images, caching hints, `top_k`) is
//! refused naming the field.

use crate::provider::{Message, Request, Stop, Untranslatable};
use crate::providers::chat::{
    count, message_json, model_for, no, number, role_of, text_message, text_parts,
};
use crate::route::Defaults;
use serde_json::{Map, Value, json};

/// Whether Anthropic serves a model a line names, for a line translated to it.
pub(crate) fn serves(model: &str) -> bool {
    model.starts_with("claude")
}

/// Anthropic params as the common request; `target` names the provider in refusals.
pub fn to_common(params: &Map<String, Value>, target: &str) -> Result<Request, Untranslatable> {
    let mut request = Request::default();
    if let Some(system) = params.get("system") {
        request.system = Some(text_parts(system, "system", "image")?.join("\n"));
    }
    for (key, value) in params {
        match key.as_str() {
            "system" => {}
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
                    let (role, content) = text_message(msg, &here, "image")?;
                    let Some(role) = role_of(role) else {
                        return Err(no(
                            format!("{here}.role"),
                            format!("is {role:?}: only user and assistant translate"),
                        ));
                    };
                    request.messages.push(Message { role, content });
                }
            }
            "max_tokens" => {
                request.max_tokens = Some(count(key, value)?);
            }
            "temperature" => request.temperature = Some(number(key, value)?),
            "top_p" => request.top_p = Some(number(key, value)?),
            "stop_sequences" => {
                let sequences = value
                    .as_array()
                    .filter(|a| a.iter().all(Value::is_string))
                    .ok_or_else(|| no("stop_sequences", "must be an array of strings"))?
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect();
                request.stop = Some(Stop {
                    sequences,
                    field: "stop_sequences",
                });
            }
            "metadata" => {
                let obj = value
                    .as_object()
                    .ok_or_else(|| no("metadata", "must be an object"))?;
                for (k, v) in obj {
                    if k != "user_id" {
                        return Err(no(
                            format!("metadata.{k}"),
                            format!("has no {target} equivalent"),
                        ));
                    }
                    let u = v
                        .as_str()
                        .ok_or_else(|| no("metadata.user_id", "must be a string"))?;
                    request.user = Some(u.to_string());
                }
            }
            "stream" if value == &Value::Bool(false) => {}
            other => return Err(no(other, format!("has no {target} equivalent"))),
        }
    }
    Ok(request)
}

/// The common request as Anthropic params: the line's model if it is Anthropic's, else the
/// route's default; `max_tokens` (which Anthropic requires) from the route when the line has
/// none.
pub fn from_common(
    request: Request,
    defaults: &Defaults,
) -> Result<Map<String, Value>, Untranslatable> {
    if request.messages.is_empty() {
        return Err(no("messages", "has no user or assistant message"));
    }
    let mut params = Map::new();
    let max_tokens = request.max_tokens.or(defaults.max_tokens).ok_or_else(|| {
        no(
            "max_tokens",
            "is required by Anthropic and the route has no default",
        )
    })?;
    let model = model_for(request.model, defaults.model.as_deref(), serves)?;
    params.insert("model".into(), json!(model));
    params.insert("max_tokens".into(), json!(max_tokens));
    if let Some(t) = request.temperature {
        let value = t.as_f64().unwrap_or(f64::NAN);
        if !(0.0..=1.0).contains(&value) {
            return Err(no(
                "temperature",
                format!("is {value}: Anthropic takes 0 to 1"),
            ));
        }
        params.insert("temperature".into(), Value::Number(t));
    }
    if let Some(p) = request.top_p {
        params.insert("top_p".into(), Value::Number(p));
    }
    if let Some(stop) = request.stop {
        params.insert("stop_sequences".into(), json!(stop.sequences));
    }
    if let Some(u) = request.user {
        params.insert("metadata".into(), json!({"user_id": u}));
    }
    if let Some(system) = request.system {
        params.insert("system".into(), json!(system));
    }
    let messages = request
        .messages
        .iter()
        .map(|m| message_json(m.role, &m.content))
        .collect();
    params.insert("messages".into(), Value::Array(messages));
    Ok(params)
}
