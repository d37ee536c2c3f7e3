//! The answer to one request of a message batch: the Message the Messages API would send,
//! built from the deterministic pieces of [`crate::respond`], or the error it would send.
//!
//! The request's shape (`model`, `max_tokens`, a non-empty `messages` array) was checked when
//! the batch was created; what is checked here fails only this request, as an `errored`
//! result: the model [`MODEL_NOT_FOUND`] (`not_found_error`), and as `invalid_request_error` a
//! message that is not an object, a `role` other than `user` or `assistant`, a first message
//! that is not the user's, a `content` or `system` that is neither a string nor a list of
//! content blocks. Other parameters are accepted and ignored.
//!
//! The reply's text is cut at `max_tokens` words (`stop_reason` `max_tokens`, else
//! `end_turn`); its input tokens are the words of `system` and of every message's text, those
//! up to the last `cache_control` breakpoint read from or written to the prompt cache
//! ([`super::cache`]) when the caller gives access to it.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::cache::{Access, Breakpoint, DEFAULT_TTL, LONG_TTL};
use super::input::Params;
use crate::openai::MODEL_NOT_FOUND;
use crate::respond::{self, Prompt, Stream};

/// A JSON string that borrows from the input when it has no escapes.
#[derive(Debug, Deserialize)]
pub(crate) struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// A request the Messages API rejects: its error `type` and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestError {
    pub kind: &'static str,
    pub message: String,
}

impl RequestError {
    fn invalid(message: String) -> Self {
        RequestError {
            kind: "invalid_request_error",
            message,
        }
    }
}

/// A successful answer: the Message object.
#[derive(Debug)]
pub(crate) struct Answer {
    pub message: Value,
}

/// Answers one request; `ids` supplies the message's id; `cache` (None: no prompt cache)
/// decides its cache reads and writes.
pub(crate) fn answer(
    params: &Params<'_>,
    ids: &mut Stream,
    cache: Option<Access<'_>>,
) -> Result<Answer, RequestError> {
    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(borrow, default)]
        role: Option<Text<'a>>,
        #[serde(borrow, default)]
        content: Option<&'a RawValue>,
    }

    let model: &str = &params.model;
    if model == MODEL_NOT_FOUND {
        return Err(RequestError {
            kind: "not_found_error",
            message: format!("model: {model}"),
        });
    }
    let mut prompt = Prompt::new(model);
    // The prompt's last cache breakpoint: its tokens and lifetime, and the raw parts before it.
    let mut mark: Option<(u64, Duration)> = None;
    let mut breakpoint: Option<(u64, Duration, usize)> = None;
    if let Some(system) = params.system {
        push_content(&mut prompt, "system", system, "system", &mut mark)?;
        if let Some((tokens, ttl)) = mark.take() {
            breakpoint = Some((tokens, ttl, 0));
        }
    }
    for (index, raw) in params.messages.iter().enumerate() {
        let message: Message = serde_json::from_str(raw.get())
            .ok()
            .filter(|_| starts_with(raw, b'{'))
            .ok_or_else(|| {
                RequestError::invalid(format!(
                    "messages.{index}: Input should be a valid dictionary or object"
                ))
            })?;
        let role = match message.role {
            Some(Text(role)) if role == "user" || role == "assistant" => role,
            Some(_) => {
                return Err(RequestError::invalid(format!(
                    "messages.{index}.role: Input should be 'user' or 'assistant'"
                )));
            }
            None => {
                return Err(RequestError::invalid(format!(
                    "messages.{index}.role: Field required"
                )));
            }
        };
        if index == 0 && role != "user" {
            return Err(RequestError::invalid(
                "messages: first message must use the \"user\" role".to_owned(),
            ));
        }
        let content = message.content.ok_or_else(|| {
            RequestError::invalid(format!("messages.{index}.content: Field required"))
        })?;
        push_content(
            &mut prompt,
            &role,
            content,
            &format!("messages.{index}.content"),
            &mut mark,
        )?;
        if let Some((tokens, ttl)) = mark.take() {
            breakpoint = Some((tokens, ttl, index + 1));
        }
    }
    let breakpoint = breakpoint.map(|(tokens, ttl, messages)| {
        let mut parts: Vec<&[u8]> = vec![b"prompt-cache", model.as_bytes()];
        parts.push(params.system.map_or(&b""[..], |s| s.get().as_bytes()));
        parts.extend(
            params.messages[..messages]
                .iter()
                .map(|m| m.get().as_bytes()),
        );
        Breakpoint {
            key: respond::digest(&parts),
            tokens,
            ttl,
        }
    });
    let used = cache
        .map(|access| access.use_prefix(breakpoint.as_ref()))
        .unwrap_or_default();

    let reply = prompt.reply(0, Some(params.max_tokens));
    let stop_reason = if reply.truncated {
        "max_tokens"
    } else {
        "end_turn"
    };
    let message = json!({
        "id": format!("msg_{}", ids.token(24)),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {
            "input_tokens": prompt.tokens() - used.read - used.written,
            "cache_creation_input_tokens": used.written,
            "cache_read_input_tokens": used.read,
            "output_tokens": reply.tokens,
            "service_tier": "batch",
        },
    });
    Ok(Answer { message })
}

/// Adds a `content` (a string or a list of content blocks) or a `system` prompt to `prompt`:
/// the `text` of each block, and the text inside `tool_result` blocks.
/// A block with `cache_control` sets `mark` to the prompt's tokens so far and its lifetime.
fn push_content(
    prompt: &mut Prompt,
    role: &str,
    content: &RawValue,
    param: &str,
    mark: &mut Option<(u64, Duration)>,
) -> Result<(), RequestError> {
    #[derive(Deserialize)]
    struct Block<'a> {
        #[serde(borrow, default)]
        text: Option<Text<'a>>,
        #[serde(borrow, default)]
        content: Option<&'a RawValue>,
        #[serde(default)]
        cache_control: Option<CacheControl>,
    }
    #[derive(Deserialize)]
    struct CacheControl {
        #[serde(default)]
        ttl: Option<String>,
    }

    let wrong = || {
        RequestError::invalid(format!(
            "{param}: Input should be a valid string or a list of content blocks"
        ))
    };
    if starts_with(content, b'"') {
        let text: Text = serde_json::from_str(content.get()).map_err(|_| wrong())?;
        prompt.push(role, &text.0);
        return Ok(());
    }
    if !starts_with(content, b'[') {
        return Err(wrong());
    }
    let blocks: Vec<&RawValue> = serde_json::from_str(content.get()).map_err(|_| wrong())?;
    for (index, raw) in blocks.into_iter().enumerate() {
        if !starts_with(raw, b'{') {
            return Err(wrong());
        }
        let block: Block = serde_json::from_str(raw.get()).map_err(|_| wrong())?;
        if let Some(text) = block.text {
            prompt.push(role, &text.0);
        }
        if let Some(inner) = block.content {
            push_content(
                prompt,
                role,
                inner,
                &format!("{param}.{index}.content"),
                mark,
            )?;
        }
        if let Some(control) = block.cache_control {
            let ttl = match control.ttl.as_deref() {
                Some("1h") => LONG_TTL,
                _ => DEFAULT_TTL,
            };
            *mark = Some((prompt.tokens(), ttl));
        }
    }
    Ok(())
}

fn starts_with(raw: &RawValue, byte: u8) -> bool {
    raw.get().trim_start().as_bytes().first() == Some(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_to(
        messages: &str,
        system: Option<&str>,
        max_tokens: u64,
    ) -> Result<Answer, RequestError> {
        let messages: Vec<&RawValue> =
            serde_json::from_str(messages).map_err(|e| RequestError::invalid(e.to_string()))?;
        let system: Option<&RawValue> = system
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| RequestError::invalid(e.to_string()))?;
        let params = Params {
            model: Cow::Borrowed("claude-test"),
            max_tokens,
            messages,
            system,
        };
        answer(&params, &mut Stream::new(&[7; 32]), None)
    }

    #[test]
    fn a_request_gets_a_text_message_with_word_token_usage() -> Result<(), RequestError> {
        let answer = answer_to(
            r#"[{"role":"user","content":[{"type":"text","text":"two plus two"}]}]"#,
            Some(r#""Be brief.""#),
            1000,
        )?;
        let message = &answer.message;
        assert_eq!(message["type"], "message");
        assert_eq!(message["model"], "claude-test");
        assert_eq!(message["stop_reason"], "end_turn");
        assert_eq!(message["usage"]["input_tokens"], 5);
        let text = message["content"][0]["text"].as_str().unwrap_or_default();
        assert!(
            text.starts_with("Sandbox reply to \"two plus two\":"),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn a_reply_over_max_tokens_stops_for_max_tokens() -> Result<(), RequestError> {
        let answer = answer_to(r#"[{"role":"user","content":"hello"}]"#, None, 2)?;
        assert_eq!(answer.message["stop_reason"], "max_tokens");
        assert_eq!(answer.message["usage"]["output_tokens"], 2);
        Ok(())
    }

    #[test]
    fn a_conversation_opened_by_the_assistant_is_an_invalid_request() {
        let error = answer_to(r#"[{"role":"assistant","content":"hi"}]"#, None, 10).err();
        assert_eq!(error.map(|e| e.kind), Some("invalid_request_error"));
    }

    #[test]
    fn content_of_the_wrong_type_is_an_invalid_request() {
        let error = answer_to(r#"[{"role":"user","content":7}]"#, None, 10).err();
        assert_eq!(
            error.map(|e| e.message),
            Some(
                "messages.0.content: Input should be a valid string or a list of content blocks"
                    .to_owned()
            )
        );
    }
}
