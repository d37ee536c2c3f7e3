//! A Bedrock line's `modelInput` (the InvokeModel body of the job's model) to and from the
//! common request ([`crate::provider::Request`]). Two model families translate:
//! - Claude on Bedrock (model ids holding `anthropic.claude`, inference profiles such as
//!   `us.anthropic.claude-…` included): Anthropic's Messages params without `model`, with
//!   `anthropic_version`;
//! - Amazon Nova (`amazon.nova`): `{"schemaVersion":"messages-v1","system":[{"text"}],
//!   "messages":[{"role","content":[{"text"}]}],"inferenceConfig":{…}}`.
//!
//! Any other model takes native lines only. What translates: the system prompt, user and
//! assistant text messages, max tokens, temperature (0 to 1), top_p, stop sequences. Refused,
//! naming the field: anything else (tools, images, documents, `top_k`, …) and an end-user id
//! (neither body has one). The model a translated line names is not used: a Bedrock job runs
//! one model, the route's.
//!
//! A body read is Claude's when it has `anthropic_version`, Nova's when it has `schemaVersion`
//! or `inferenceConfig` or Nova's `{"text"}` content parts; any other is refused.

use crate::provider::{Content, Message, Request, Untranslatable};
use crate::providers::anthropic;
use crate::providers::chat::{count, message_json, no, number, role_of};
use crate::route::Defaults;
use serde_json::{Map, Value, json};

/// The `anthropic_version` Claude on Bedrock takes.
pub const ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";
/// The `schemaVersion` of Nova's messages body.
pub const NOVA_SCHEMA: &str = "messages-v1";

/// The body a model takes, by its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Claude,
    Nova,
}

/// The family of a model id (or inference profile id), if batchdrop translates to it.
pub fn family(model: &str) -> Option<Family> {
    if model.contains("anthropic.claude") {
        Some(Family::Claude)
    } else if model.contains("amazon.nova") {
        Some(Family::Nova)
    } else {
        None
    }
}

/// A Claude or Nova body as the common request; `target` names the provider in refusals.
pub fn to_common(body: &Map<String, Value>, target: &str) -> Result<Request, Untranslatable> {
    if body.contains_key("anthropic_version") {
        claude_to_common(body, target)
    } else if looks_nova(body) {
        nova_to_common(body, target)
    } else {
        Err(no(
            "modelInput",
            "is neither a Claude body (anthropic_version) nor an Amazon Nova body \
             (schemaVersion, inferenceConfig)",
        ))
    }
}

fn looks_nova(body: &Map<String, Value>) -> bool {
    let nova_parts = |msg: &Value| {
        msg.get("content")
            .and_then(Value::as_array)
            .is_some_and(|parts| {
                parts
                    .iter()
                    .any(|p| p.get("text").is_some() && p.get("type").is_none())
            })
    };
    body.contains_key("schemaVersion")
        || body.contains_key("inferenceConfig")
        || body
            .get("messages")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(nova_parts))
}

/// Claude on Bedrock: Anthropic's params, less `anthropic_version`.
fn claude_to_common(body: &Map<String, Value>, target: &str) -> Result<Request, Untranslatable> {
    if !body["anthropic_version"].is_string() {
        return Err(no("anthropic_version", "must be a string"));
    }
    let mut params = body.clone();
    params.remove("anthropic_version");
    anthropic::translate::to_common(&params, target)
}

/// Nova's text parts `[{"text"}]` at `here`.
fn nova_texts(value: &Value, here: &str, target: &str) -> Result<Vec<String>, Untranslatable> {
    let parts = value
        .as_array()
        .ok_or_else(|| no(here, "must be an array of {\"text\"} parts"))?;
    parts
        .iter()
        .enumerate()
        .map(|(j, part)| {
            let at = format!("{here}[{j}]");
            let obj = part
                .as_object()
                .ok_or_else(|| no(&at, "must be an object"))?;
            if let Some(other) = obj.keys().find(|k| *k != "text") {
                return Err(no(
                    format!("{at}.{other}"),
                    format!("has no {target} equivalent: only text parts translate"),
                ));
            }
            obj.get("text")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| no(format!("{at}.text"), "must be a string"))
        })
        .collect()
}

/// Amazon Nova's messages body.
fn nova_to_common(body: &Map<String, Value>, target: &str) -> Result<Request, Untranslatable> {
    let mut request = Request::default();
    for (key, value) in body {
        match key.as_str() {
            "schemaVersion" => {
                if value.as_str() != Some(NOVA_SCHEMA) {
                    return Err(no(
                        "schemaVersion",
                        format!("is {value}: only {NOVA_SCHEMA:?} translates"),
                    ));
                }
            }
            "system" => request.system = Some(nova_texts(value, "system", target)?.join("\n")),
            "messages" => {
                let list = value
                    .as_array()
                    .ok_or_else(|| no("messages", "must be an array"))?;
                for (i, msg) in list.iter().enumerate() {
                    let here = format!("messages[{i}]");
                    let obj = msg
                        .as_object()
                        .ok_or_else(|| no(&here, "must be an object"))?;
                    if let Some(extra) = obj.keys().find(|k| *k != "role" && *k != "content") {
                        return Err(no(
                            format!("{here}.{extra}"),
                            format!("has no {target} equivalent"),
                        ));
                    }
                    let word = obj.get("role").and_then(Value::as_str).unwrap_or("");
                    let role = role_of(word).ok_or_else(|| {
                        no(
                            format!("{here}.role"),
                            format!("is {word:?}: only user and assistant translate"),
                        )
                    })?;
                    let content = obj
                        .get("content")
                        .ok_or_else(|| no(format!("{here}.content"), "is missing"))?;
                    let texts = nova_texts(content, &format!("{here}.content"), target)?;
                    request.messages.push(Message {
                        role,
                        content: Content::Parts(texts),
                    });
                }
            }
            "inferenceConfig" => {
                let config = value
                    .as_object()
                    .ok_or_else(|| no("inferenceConfig", "must be an object"))?;
                for (k, v) in config {
                    let field = format!("inferenceConfig.{k}");
                    match k.as_str() {
                        "maxTokens" | "max_new_tokens" => {
                            request.max_tokens = Some(count(&field, v)?)
                        }
                        "temperature" => request.temperature = Some(number(&field, v)?),
                        "topP" => request.top_p = Some(number(&field, v)?),
                        "stopSequences" => {
                            let sequences = v
                                .as_array()
                                .filter(|a| a.iter().all(Value::is_string))
                                .ok_or_else(|| no(&field, "must be an array of strings"))?
                                .iter()
                                .filter_map(|s| s.as_str().map(str::to_string))
                                .collect();
                            request.stop = Some(crate::provider::Stop {
                                sequences,
                                field: "inferenceConfig.stopSequences",
                            });
                        }
                        _ => return Err(no(field, format!("has no {target} equivalent"))),
                    }
                }
            }
            other => return Err(no(other, format!("has no {target} equivalent"))),
        }
    }
    Ok(request)
}

/// The common request as the body `model` (the route's, the job's `modelId`) takes; max tokens
/// from the route when the request has none. The request's own model is not used.
pub fn from_common(
    request: Request,
    model: &str,
    defaults: &Defaults,
) -> Result<Map<String, Value>, Untranslatable> {
    let family = family(model).ok_or_else(|| {
        no(
            "model",
            format!(
                "{model:?} (the route's) takes native Bedrock lines (recordId, modelInput) only"
            ),
        )
    })?;
    if request.messages.is_empty() {
        return Err(no("messages", "has no user or assistant message"));
    }
    if request.user.is_some() {
        return Err(no(
            "user",
            "(an end-user id) has no equivalent in Bedrock's model bodies",
        ));
    }
    if let Some(t) = &request.temperature {
        let value = t.as_f64().unwrap_or(f64::NAN);
        if !(0.0..=1.0).contains(&value) {
            return Err(no(
                "temperature",
                format!("is {value}: Bedrock takes 0 to 1"),
            ));
        }
    }
    let max_tokens = request.max_tokens.or(defaults.max_tokens);
    match family {
        Family::Claude => claude_body(request, max_tokens),
        Family::Nova => Ok(nova_body(request, max_tokens)),
    }
}

/// `{"anthropic_version","max_tokens","system"?,"messages","temperature"?,"top_p"?,
/// "stop_sequences"?}`.
fn claude_body(
    request: Request,
    max_tokens: Option<u64>,
) -> Result<Map<String, Value>, Untranslatable> {
    let max_tokens = max_tokens.ok_or_else(|| {
        no(
            "max_tokens",
            "is required by Claude on Bedrock and the route has no default",
        )
    })?;
    let mut body = Map::new();
    body.insert("anthropic_version".into(), json!(ANTHROPIC_VERSION));
    body.insert("max_tokens".into(), json!(max_tokens));
    if let Some(system) = request.system {
        body.insert("system".into(), json!(system));
    }
    let messages = request
        .messages
        .iter()
        .map(|m| message_json(m.role, &m.content))
        .collect();
    body.insert("messages".into(), Value::Array(messages));
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), Value::Number(t));
    }
    if let Some(p) = request.top_p {
        body.insert("top_p".into(), Value::Number(p));
    }
    if let Some(stop) = request.stop {
        body.insert("stop_sequences".into(), json!(stop.sequences));
    }
    Ok(body)
}

/// `{"schemaVersion","system"?,"messages","inferenceConfig"?}`, every text as `{"text"}` parts.
fn nova_body(request: Request, max_tokens: Option<u64>) -> Map<String, Value> {
    let parts = |content: &Content| -> Value {
        let texts = match content {
            Content::Text(t) => std::slice::from_ref(t),
            Content::Parts(parts) => parts.as_slice(),
        };
        texts.iter().map(|t| json!({"text": t})).collect()
    };
    let mut body = Map::new();
    body.insert("schemaVersion".into(), json!(NOVA_SCHEMA));
    if let Some(system) = request.system {
        body.insert("system".into(), json!([{"text": system}]));
    }
    let messages = request
        .messages
        .iter()
        .map(|m| json!({"role": m.role.as_str(), "content": parts(&m.content)}))
        .collect();
    body.insert("messages".into(), Value::Array(messages));
    let mut config = Map::new();
    if let Some(t) = max_tokens {
        config.insert("maxTokens".into(), json!(t));
    }
    if let Some(t) = request.temperature {
        config.insert("temperature".into(), Value::Number(t));
    }
    if let Some(p) = request.top_p {
        config.insert("topP".into(), Value::Number(p));
    }
    if let Some(stop) = request.stop {
        config.insert("stopSequences".into(), json!(stop.sequences));
    }
    if !config.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(config));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{Role, Stop};

    type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

    /// A refusal as a test failure.
    fn ok<T>(result: std::result::Result<T, Untranslatable>) -> Result<T> {
        result.map_err(|e| e.to_string().into())
    }

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn hi() -> Request {
        Request {
            model: Some("gpt-4o".into()),
            messages: vec![Message {
                role: Role::User,
                content: Content::Text("hi".into()),
            }],
            ..Request::default()
        }
    }

    fn defaults() -> Defaults {
        Defaults {
            max_tokens: Some(64),
            ..Defaults::default()
        }
    }

    #[test]
    fn model_families_are_told_by_their_ids_and_profiles() {
        for id in [
            "anthropic.claude-3-haiku-20240307-v1:0",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
            "apac.anthropic.claude-sonnet-4-20250514-v1:0",
            "global.anthropic.claude-opus-4-5-20251101-v1:0",
        ] {
            assert_eq!(family(id), Some(Family::Claude), "{id}");
        }
        assert_eq!(family("us.amazon.nova-pro-v1:0"), Some(Family::Nova));
        assert_eq!(family("meta.llama3-70b-instruct-v1:0"), None);
        assert_eq!(family("amazon.titan-embed-text-v2:0"), None);
    }

    #[test]
    fn a_claude_body_has_no_model_and_takes_the_route_max_tokens() -> Result {
        let body = ok(from_common(
            hi(),
            "anthropic.claude-haiku-4-5-20251001-v1:0",
            &defaults(),
        ))?;
        assert_eq!(
            Value::Object(body),
            json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
                "messages": [{"role": "user", "content": "hi"}]})
        );
        Ok(())
    }

    #[test]
    fn a_claude_body_needs_max_tokens() {
        let e = from_common(hi(), "anthropic.claude-x", &Defaults::default()).unwrap_err();
        assert_eq!(e.field, "max_tokens");
    }

    #[test]
    fn a_nova_body_writes_parts_and_inference_config() -> Result {
        let request = Request {
            system: Some("S".into()),
            top_p: Some(serde_json::Number::from_f64(0.5).ok_or("nan")?),
            stop: Some(Stop {
                sequences: vec!["END".into()],
                field: "stop",
            }),
            ..hi()
        };
        let body = ok(from_common(request, "amazon.nova-micro-v1:0", &defaults()))?;
        assert_eq!(
            serde_json::to_string(&body)?,
            r#"{"schemaVersion":"messages-v1","system":[{"text":"S"}],"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":64,"topP":0.5,"stopSequences":["END"]}}"#
        );
        Ok(())
    }

    #[test]
    fn a_temperature_above_one_is_untranslatable() -> Result {
        let request = Request {
            temperature: Some(serde_json::Number::from_f64(1.5).ok_or("nan")?),
            ..hi()
        };
        let e = from_common(request, "amazon.nova-lite-v1:0", &defaults()).unwrap_err();
        assert_eq!(e.field, "temperature");
        Ok(())
    }

    #[test]
    fn an_end_user_id_is_untranslatable() {
        let request = Request {
            user: Some("u".into()),
            ..hi()
        };
        let e = from_common(request, "anthropic.claude-x", &defaults()).unwrap_err();
        assert_eq!(e.field, "user");
    }

    #[test]
    fn another_model_family_is_untranslatable() {
        let e = from_common(hi(), "cohere.command-r-v1:0", &defaults()).unwrap_err();
        assert_eq!(e.field, "model");
        assert!(e.reason.contains("native Bedrock lines"), "{}", e.reason);
    }

    #[test]
    fn a_claude_body_reads_as_anthropic_params() -> Result {
        let body = map(
            json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
            "system": "S", "messages": [{"role": "user", "content": "hi"}],
            "stop_sequences": ["x"]}),
        );
        let request = ok(to_common(&body, "OpenAI"))?;
        assert_eq!(request.max_tokens, Some(5));
        assert_eq!(request.system.as_deref(), Some("S"));
        assert_eq!(request.messages[0].content, Content::Text("hi".into()));
        assert_eq!(
            request.stop.map(|s| s.sequences),
            Some(vec!["x".to_string()])
        );
        Ok(())
    }

    #[test]
    fn a_claude_body_with_top_k_is_untranslatable() {
        let body = map(
            json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
            "messages": [], "top_k": 3}),
        );
        assert_eq!(to_common(&body, "OpenAI").unwrap_err().field, "top_k");
    }

    #[test]
    fn a_nova_body_reads_as_the_common_request() -> Result {
        let body = map(
            json!({"schemaVersion": "messages-v1", "system": [{"text": "S"}],
            "messages": [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}],
            "inferenceConfig": {"maxTokens": 9, "temperature": 0.1,
                "stopSequences": ["z"]}}),
        );
        let request = ok(to_common(&body, "Anthropic"))?;
        assert_eq!(request.system.as_deref(), Some("S"));
        assert_eq!(
            request.messages[0].content,
            Content::Parts(vec!["a".into(), "b".into()])
        );
        assert_eq!(request.max_tokens, Some(9));
        assert_eq!(
            request.stop.map(|s| s.field),
            Some("inferenceConfig.stopSequences")
        );
        Ok(())
    }

    #[test]
    fn a_nova_image_part_is_untranslatable_naming_it() {
        let body = map(
            json!({"schemaVersion": "messages-v1", "messages": [{"role": "user",
            "content": [{"text": "a"}, {"image": {"format": "png"}}]}]}),
        );
        assert_eq!(
            to_common(&body, "OpenAI").unwrap_err().field,
            "messages[0].content[1].image"
        );
    }

    #[test]
    fn a_body_of_another_family_is_untranslatable() {
        let body = map(json!({"prompt": "hi", "max_gen_len": 9}));
        assert_eq!(to_common(&body, "OpenAI").unwrap_err().field, "modelInput");
    }
}
