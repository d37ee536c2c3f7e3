//! What the chat formats of OpenAI and Anthropic share, for their dialects: message content as
//! a string or as `{"type":"text","text"}` parts (converting to and from the common request),
//! and lenient reading of result-line fields.

use crate::provider::{Content, Role, Untranslatable};
use serde_json::{Value, json};

/// A refusal naming `field`.
pub(crate) fn no(field: impl Into<String>, reason: impl Into<String>) -> Untranslatable {
    Untranslatable::new(field, reason)
}

/// A number field, as it is written.
pub(crate) fn number(field: &str, value: &Value) -> Result<serde_json::Number, Untranslatable> {
    value
        .as_number()
        .cloned()
        .ok_or_else(|| no(field, "must be a number"))
}

/// A count field (`max_tokens`): a non-negative integer.
pub(crate) fn count(field: &str, value: &Value) -> Result<u64, Untranslatable> {
    value
        .as_u64()
        .ok_or_else(|| no(field, "must be a positive integer"))
}

/// The text of a content value: a string, or an array of text parts. `image_word` names the
/// format's own image part in the refusal.
pub(crate) fn text_parts(
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
                    return Err(Untranslatable::new(
                        format!("{here}.type"),
                        format!("is {kind:?}: only text parts translate ({image_word}, audio, files and tools do not)"),
                    ));
                }
                if let Some(obj) = part.as_object()
                    && let Some(extra) = obj.keys().find(|k| *k != "type" && *k != "text")
                {
                    return Err(Untranslatable::new(format!("{here}.{extra}"), "has no equivalent"));
                }
                part.get("text")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| Untranslatable::new(format!("{here}.text"), "must be a string"))
            })
            .collect(),
        _ => Err(Untranslatable::new(
            field,
            "must be a string or an array of text parts",
        )),
    }
}

/// A message of text only, read at `here`: its role word and its content (a string stays a
/// string, parts stay parts). Any other field of the message is refused.
pub(crate) fn text_message<'a>(
    msg: &'a Value,
    here: &str,
    image_word: &str,
) -> Result<(&'a str, Content), Untranslatable> {
    let obj = msg
        .as_object()
        .ok_or_else(|| Untranslatable::new(here, "must be an object"))?;
    if let Some(extra) = obj.keys().find(|k| *k != "role" && *k != "content") {
        return Err(Untranslatable::new(
            format!("{here}.{extra}"),
            "has no equivalent",
        ));
    }
    let role = obj.get("role").and_then(Value::as_str).unwrap_or("");
    let raw = obj
        .get("content")
        .ok_or_else(|| Untranslatable::new(format!("{here}.content"), "is missing"))?;
    let texts = text_parts(raw, &format!("{here}.content"), image_word)?;
    let content = match raw {
        Value::String(s) => Content::Text(s.clone()),
        _ => Content::Parts(texts),
    };
    Ok((role, content))
}

/// A message as both formats write it.
pub(crate) fn message_json(role: Role, content: &Content) -> Value {
    let content = match content {
        Content::Text(t) => json!(t),
        Content::Parts(parts) => Value::Array(
            parts
                .iter()
                .map(|t| json!({"type": "text", "text": t}))
                .collect(),
        ),
    };
    json!({"role": role.as_str(), "content": content})
}

/// The user/assistant role of a message, if it has one of those.
pub(crate) fn role_of(word: &str) -> Option<Role> {
    match word {
        "user" => Some(Role::User),
        "assistant" => Some(Role::Assistant),
        _ => None,
    }
}

/// The model a translated request is sent with: the line's when the target serves it (or the
/// route has no default), else the route's default; an error when there is neither.
pub(crate) fn model_for(
    line_model: Option<String>,
    default: Option<&str>,
    serves: impl Fn(&str) -> bool,
) -> Result<String, Untranslatable> {
    match (line_model, default) {
        (Some(m), Some(d)) if !serves(&m) => Ok(d.to_string()),
        (Some(m), _) => Ok(m),
        (None, Some(d)) => Ok(d.to_string()),
        (None, None) => Err(Untranslatable::new(
            "model",
            "is missing and the route has no default model",
        )),
    }
}

/// A string field of a result line read leniently: anything else is as good as absent.
pub(crate) fn text(value: Option<Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}
