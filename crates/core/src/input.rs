//! Input lines: each non-blank line of an upload is either accepted as one provider request or
//! rejected with a code, a message and its line number. One bad line never fails the file.
//!
//! Shapes, detected per line: an OpenAI batch line `{"custom_id","method","url","body"}`, an
//! Anthropic batch line `{"custom_id","params"}`, or a prompt line
//! `{"prompt","custom_id"?,"system"?, …overrides}`. Each becomes a request in the route's wire
//! format:
//! - a line already in the route's format passes through byte for byte when complete (unknown
//!   fields kept); a missing `method`, model or (Anthropic) `max_tokens` is filled from the route;
//! - a line in the other format is translated ([`crate::translate`]) or rejected with
//!   `untranslatable` naming the field;
//! - a prompt line is built with the route's defaults, the line's other fields overriding them.
//!
//! A line without `custom_id` gets `line-<n>`. Duplicate ids are found after validation, over
//! the whole file ([`crate::ids`]). Anthropic requires ids matching `^[a-zA-Z0-9_-]{1,64}$`: an id
//! that does not (or that starts with the reserved `bd_`) is sent as `bd_<line number>` — unique
//! by construction — and restored in the results.

use crate::config::{Defaults, Route, Wire};
use crate::translate::{self, Fill};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;

pub const CHAT_COMPLETIONS: &str = "/v1/chat/completions";
pub const EMBEDDINGS: &str = "/v1/embeddings";
/// The one endpoint of an Anthropic batch.
pub const MESSAGES: &str = "/v1/messages";
/// Endpoints an OpenAI batch accepts (text ones).
pub const OPENAI_ENDPOINTS: &[&str] = &[
    CHAT_COMPLETIONS,
    "/v1/responses",
    EMBEDDINGS,
    "/v1/completions",
    "/v1/moderations",
];
/// Prefix of the ids batchdrop sends for custom_ids Anthropic would refuse.
pub const MAPPED_ID_PREFIX: &str = "bd_";

/// Why a line was rejected; the `code` of its errors.jsonl entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCode {
    InvalidJson,
    InvalidUtf8,
    NotAnObject,
    MissingField,
    InvalidField,
    DuplicateCustomId,
    LineTooLong,
    UnsupportedEndpoint,
    Untranslatable,
    UnknownRoute,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::InvalidJson => "invalid_json",
            RejectCode::InvalidUtf8 => "invalid_utf8",
            RejectCode::NotAnObject => "not_an_object",
            RejectCode::MissingField => "missing_field",
            RejectCode::InvalidField => "invalid_field",
            RejectCode::DuplicateCustomId => "duplicate_custom_id",
            RejectCode::LineTooLong => "line_too_long",
            RejectCode::UnsupportedEndpoint => "unsupported_endpoint",
            RejectCode::Untranslatable => "untranslatable",
            RejectCode::UnknownRoute => "unknown_route",
        }
    }
}

/// One rejected line, as written to errors.jsonl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub line: u64,
    pub custom_id: Option<String>,
    pub code: RejectCode,
    pub message: String,
}

impl Rejection {
    /// `{"line":…,"custom_id":…,"error":{"code":…,"message":…}}` plus a newline.
    pub fn to_json_line(&self) -> Vec<u8> {
        let v = serde_json::json!({
            "line": self.line,
            "custom_id": self.custom_id,
            "error": {"code": self.code.as_str(), "message": self.message},
        });
        let mut out = serde_json::to_vec(&v).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// Requests that may share a batch: same endpoint and (OpenAI) model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Group {
    pub endpoint: String,
    /// Empty for Anthropic, whose batches may mix models.
    pub model: String,
}

/// One accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted<'a> {
    /// The user's custom_id (or `line-<n>`), as it appears in output.jsonl.
    pub custom_id: Cow<'a, str>,
    /// The id sent to the provider when it differs from `custom_id`.
    pub sent_id: Option<String>,
    pub group: Group,
    /// The request line to send, without newline.
    pub request: Cow<'a, [u8]>,
    /// Units this request counts against the per-batch request limit (embedding inputs).
    pub units: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<'a> {
    Blank,
    Accepted(Accepted<'a>),
    Rejected(Rejection),
}

type Reject = (RejectCode, String);

/// A request built from a line: its group, the bytes to send, and the units it counts.
type Built<'a> = (Group, Cow<'a, [u8]>, u64);

/// A prompt line taken apart.
struct PromptParts {
    prompt: String,
    system: Option<String>,
    /// Every other field: overrides of the request body.
    overrides: Map<String, Value>,
}

fn reject(code: RejectCode, message: impl Into<String>) -> Reject {
    (code, message.into())
}

fn untranslatable(e: translate::Untranslatable) -> Reject {
    reject(RejectCode::Untranslatable, format!("cannot translate: {e}"))
}

/// Validates the lines of one upload, in order.
#[derive(Debug)]
pub struct Validator {
    wire: Wire,
    defaults: Defaults,
    max_line_bytes: u64,
}

#[derive(Deserialize)]
struct LineFields<'a> {
    #[serde(borrow, default)]
    custom_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(borrow, default)]
    url: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct BodyFields<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    OpenAi,
    Anthropic,
    Prompt,
}

/// Whether Anthropic takes `id` as it is.
fn anthropic_safe(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !id.starts_with(MAPPED_ID_PREFIX)
}

impl Validator {
    pub fn new(route: &Route) -> Self {
        Self {
            wire: route.wire,
            defaults: route.defaults.clone(),
            max_line_bytes: route.limits.max_line_bytes,
        }
    }

    fn fill(&self) -> Fill<'_> {
        Fill {
            model: self.defaults.model.as_deref(),
            max_tokens: self.defaults.max_tokens,
        }
    }

    /// Classifies line number `line_no` (1-based). `raw` may end in `\n` or `\r\n`.
    pub fn check<'a>(&mut self, line_no: u64, raw: &'a [u8]) -> Outcome<'a> {
        let trimmed = raw.trim_ascii_end();
        if trimmed.iter().all(u8::is_ascii_whitespace) {
            return Outcome::Blank;
        }
        match self.classify(line_no, trimmed) {
            Ok(acc) => Outcome::Accepted(acc),
            Err((code, message, custom_id)) => Outcome::Rejected(Rejection {
                line: line_no,
                custom_id,
                code,
                message,
            }),
        }
    }

    fn classify<'a>(
        &mut self,
        line_no: u64,
        line: &'a [u8],
    ) -> Result<Accepted<'a>, (RejectCode, String, Option<String>)> {
        let no_id = |(code, message): Reject| (code, message, None);
        if line.len() as u64 > self.max_line_bytes {
            return Err(no_id(reject(
                RejectCode::LineTooLong,
                format!(
                    "line is {} bytes; the route allows at most {}",
                    line.len(),
                    self.max_line_bytes
                ),
            )));
        }
        if let Err(e) = std::str::from_utf8(line) {
            return Err(no_id(reject(
                RejectCode::InvalidUtf8,
                format!("invalid UTF-8 at byte {}", e.valid_up_to() + 1),
            )));
        }
        let first = line.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first != Some(b'{') {
            return Err(no_id(
                match serde_json::from_slice::<serde::de::IgnoredAny>(line) {
                    Ok(_) => reject(
                        RejectCode::NotAnObject,
                        "line is valid JSON but not an object",
                    ),
                    Err(e) => reject(RejectCode::InvalidJson, format!("invalid JSON: {e}")),
                },
            ));
        }
        let fields: LineFields<'a> = serde_json::from_slice(line).map_err(|e| {
            no_id(reject(
                RejectCode::InvalidJson,
                format!("invalid JSON: {e}"),
            ))
        })?;

        let given_id: Option<Cow<'a, str>> = match fields.custom_id {
            None => None,
            Some(raw) => match serde_json::from_str::<Cow<'a, str>>(raw.get()) {
                Ok(id) if !id.is_empty() => Some(id),
                Ok(_) => {
                    return Err(no_id(reject(
                        RejectCode::InvalidField,
                        "custom_id is an empty string",
                    )));
                }
                Err(_) => {
                    return Err(no_id(reject(
                        RejectCode::InvalidField,
                        format!("custom_id must be a string, found {}", raw.get()),
                    )));
                }
            },
        };
        let id_given = given_id.is_some();
        let custom_id: Cow<'a, str> =
            given_id.unwrap_or_else(|| Cow::Owned(format!("line-{line_no}")));
        let with_id = |(code, message): Reject| (code, message, Some(custom_id.to_string()));

        let shape = if fields.body.is_some() || fields.url.is_some() {
            Shape::OpenAi
        } else if fields.params.is_some() {
            Shape::Anthropic
        } else if fields.prompt.is_some() {
            Shape::Prompt
        } else {
            return Err(with_id(reject(
                RejectCode::MissingField,
                "expected an OpenAI batch line (custom_id, method, url, body), an Anthropic batch line (custom_id, params) or a prompt line (prompt)",
            )));
        };
        let sent_id = match self.wire {
            Wire::Anthropic if !anthropic_safe(&custom_id) => {
                Some(format!("{MAPPED_ID_PREFIX}{line_no}"))
            }
            _ => None,
        };
        let id_to_send: &str = sent_id.as_deref().unwrap_or(&custom_id);
        let built = match (self.wire, shape) {
            (Wire::Openai, Shape::OpenAi) => {
                self.openai_line(line, &fields, (!id_given).then_some(id_to_send))
            }
            (Wire::Openai, Shape::Prompt) => self.prompt_to_openai(line, id_to_send),
            (Wire::Openai, Shape::Anthropic) => self.anthropic_to_openai(&fields, id_to_send),
            (Wire::Anthropic, Shape::Anthropic) => self.anthropic_line(
                line,
                &fields,
                (sent_id.is_some() || !id_given).then_some(id_to_send),
            ),
            (Wire::Anthropic, Shape::OpenAi) => self.openai_to_anthropic(&fields, id_to_send),
            (Wire::Anthropic, Shape::Prompt) => self.prompt_to_anthropic(line, id_to_send),
        };
        let (group, request, units) = built.map_err(with_id)?;

        Ok(Accepted {
            custom_id,
            sent_id,
            group,
            request,
            units,
        })
    }

    /// An OpenAI line on an OpenAI route. `set_id` is the id to write into the line when it has
    /// none of its own.
    fn openai_line<'a>(
        &self,
        line: &'a [u8],
        fields: &LineFields<'a>,
        set_id: Option<&str>,
    ) -> Result<Built<'a>, Reject> {
        let url = fields
            .url
            .as_deref()
            .ok_or_else(|| reject(RejectCode::MissingField, "missing field `url`"))?;
        if !OPENAI_ENDPOINTS.contains(&url) {
            return Err(reject(
                RejectCode::UnsupportedEndpoint,
                format!(
                    "url {url:?} is not a batch endpoint; use one of {}",
                    OPENAI_ENDPOINTS.join(", ")
                ),
            ));
        }
        let mut rebuilt: Option<Map<String, Value>> = None;
        if let Some(id) = set_id {
            rebuilt
                .get_or_insert_with(|| parse_map(line))
                .insert("custom_id".into(), Value::String(id.to_string()));
        }
        check_method(fields, &mut rebuilt, line)?;
        let body = object_field(fields.body, "body")?;
        let bf: BodyFields = serde_json::from_str(body.get()).map_err(|e| {
            reject(
                RejectCode::InvalidField,
                format!("`body` is not valid: {e}"),
            )
        })?;
        let model = match (bf.model, &self.defaults.model) {
            (Some(m), _) => m.into_owned(),
            (None, Some(default)) => {
                let map = rebuilt.get_or_insert_with(|| parse_map(line));
                if let Some(Value::Object(b)) = map.get_mut("body") {
                    b.insert("model".into(), Value::String(default.clone()));
                }
                default.clone()
            }
            (None, None) => {
                return Err(reject(
                    RejectCode::MissingField,
                    "missing field `body.model` and the route has no default model",
                ));
            }
        };
        let units = if url == EMBEDDINGS {
            match bf
                .input
                .map(|i| serde_json::from_str::<Vec<&RawValue>>(i.get()))
            {
                Some(Ok(items)) => items.len().max(1) as u64,
                _ => 1,
            }
        } else {
            1
        };
        let request = match rebuilt {
            Some(map) => Cow::Owned(to_vec(&map)),
            None => Cow::Borrowed(line),
        };
        Ok((
            Group {
                endpoint: url.to_string(),
                model,
            },
            request,
            units,
        ))
    }

    /// An Anthropic line on an Anthropic route; `set_id` replaces its id when it must change.
    fn anthropic_line<'a>(
        &self,
        line: &'a [u8],
        fields: &LineFields<'a>,
        set_id: Option<&str>,
    ) -> Result<Built<'a>, Reject> {
        let params = object_field(fields.params, "params")?;
        let pf: BodyFields = serde_json::from_str(params.get()).map_err(|e| {
            reject(
                RejectCode::InvalidField,
                format!("`params` is not valid: {e}"),
            )
        })?;
        let mut rebuilt: Option<Map<String, Value>> = None;
        if let Some(id) = set_id {
            rebuilt
                .get_or_insert_with(|| parse_map(line))
                .insert("custom_id".into(), Value::String(id.to_string()));
        }
        for (field, missing, default) in [
            (
                "model",
                pf.model.is_none(),
                self.defaults.model.clone().map(Value::String),
            ),
            (
                "max_tokens",
                pf.max_tokens.is_none(),
                self.defaults.max_tokens.map(Value::from),
            ),
        ] {
            if !missing {
                continue;
            }
            let Some(default) = default else {
                return Err(reject(
                    RejectCode::MissingField,
                    format!("missing field `params.{field}` and the route has no default"),
                ));
            };
            let map = rebuilt.get_or_insert_with(|| parse_map(line));
            if let Some(Value::Object(p)) = map.get_mut("params") {
                p.insert(field.into(), default);
            }
        }
        let request = match rebuilt {
            Some(map) => Cow::Owned(to_vec(&map)),
            None => Cow::Borrowed(line),
        };
        Ok((anthropic_group(), request, 1))
    }

    fn openai_to_anthropic<'a>(
        &self,
        fields: &LineFields<'a>,
        id: &str,
    ) -> Result<Built<'a>, Reject> {
        let url = fields.url.as_deref().unwrap_or(CHAT_COMPLETIONS);
        if url != CHAT_COMPLETIONS {
            return Err(reject(
                RejectCode::Untranslatable,
                format!(
                    "cannot translate: `url` {url:?}: only {CHAT_COMPLETIONS} lines translate to Anthropic"
                ),
            ));
        }
        let mut nowhere = None;
        check_method(fields, &mut nowhere, b"{}")?;
        let body: Map<String, Value> =
            serde_json::from_str(object_field(fields.body, "body")?.get()).map_err(|e| {
                reject(
                    RejectCode::InvalidField,
                    format!("`body` is not valid: {e}"),
                )
            })?;
        let params = translate::openai_to_anthropic(&body, &self.fill()).map_err(untranslatable)?;
        Ok(anthropic_request(id, params))
    }

    fn anthropic_to_openai<'a>(
        &self,
        fields: &LineFields<'a>,
        id: &str,
    ) -> Result<Built<'a>, Reject> {
        let params: Map<String, Value> =
            serde_json::from_str(object_field(fields.params, "params")?.get()).map_err(|e| {
                reject(
                    RejectCode::InvalidField,
                    format!("`params` is not valid: {e}"),
                )
            })?;
        let body = translate::anthropic_to_openai(&params, &self.fill()).map_err(untranslatable)?;
        Ok(openai_request(id, CHAT_COMPLETIONS, body))
    }

    /// Splits a prompt line into the prompt, its system text and the override fields.
    fn prompt_parts(&self, line: &[u8]) -> Result<PromptParts, Reject> {
        let mut map = parse_map(line);
        map.remove("custom_id");
        let prompt = match map.remove("prompt") {
            Some(Value::String(p)) => p,
            Some(other) => {
                return Err(reject(
                    RejectCode::InvalidField,
                    format!("`prompt` must be a string, found {other}"),
                ));
            }
            None => return Err(reject(RejectCode::MissingField, "missing field `prompt`")),
        };
        let system = match map.remove("system") {
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                return Err(reject(
                    RejectCode::InvalidField,
                    format!("`system` must be a string, found {other}"),
                ));
            }
            None => self.defaults.system.clone(),
        };
        Ok(PromptParts {
            prompt,
            system,
            overrides: map,
        })
    }

    fn prompt_to_openai<'a>(&self, line: &[u8], id: &str) -> Result<Built<'a>, Reject> {
        let PromptParts {
            prompt,
            system,
            overrides,
        } = self.prompt_parts(line)?;
        let endpoint = self
            .defaults
            .endpoint
            .clone()
            .unwrap_or_else(|| CHAT_COMPLETIONS.to_string());
        let mut body = Map::new();
        if let Some(model) = &self.defaults.model {
            body.insert("model".into(), Value::String(model.clone()));
        }
        if endpoint == EMBEDDINGS {
            body.insert("input".into(), Value::String(prompt));
        } else if endpoint == CHAT_COMPLETIONS {
            let mut messages = Vec::new();
            if let Some(s) = system {
                messages.push(serde_json::json!({"role": "system", "content": s}));
            }
            messages.push(serde_json::json!({"role": "user", "content": prompt}));
            body.insert("messages".into(), Value::Array(messages));
            if let Some(t) = self.defaults.max_tokens {
                body.insert("max_tokens".into(), Value::from(t));
            }
            if let Some(t) = self.defaults.temperature {
                body.insert("temperature".into(), Value::from(t));
            }
        } else {
            return Err(reject(
                RejectCode::UnsupportedEndpoint,
                format!(
                    "prompt lines are built for {CHAT_COMPLETIONS} or {EMBEDDINGS}, not {endpoint}"
                ),
            ));
        }
        body.extend(overrides);
        if !matches!(body.get("model"), Some(Value::String(_))) {
            return Err(reject(
                RejectCode::MissingField,
                "prompt line without `model` and the route has no default model",
            ));
        }
        Ok(openai_request(id, &endpoint, body))
    }

    fn prompt_to_anthropic<'a>(&self, line: &[u8], id: &str) -> Result<Built<'a>, Reject> {
        let PromptParts {
            prompt,
            system,
            overrides,
        } = self.prompt_parts(line)?;
        let mut params = Map::new();
        if let Some(model) = &self.defaults.model {
            params.insert("model".into(), Value::String(model.clone()));
        }
        if let Some(t) = self.defaults.max_tokens {
            params.insert("max_tokens".into(), Value::from(t));
        }
        if let Some(t) = self.defaults.temperature {
            params.insert("temperature".into(), Value::from(t));
        }
        if let Some(s) = system {
            params.insert("system".into(), Value::String(s));
        }
        params.insert(
            "messages".into(),
            serde_json::json!([{"role": "user", "content": prompt}]),
        );
        params.extend(overrides);
        for field in ["model", "max_tokens"] {
            if !params.contains_key(field) {
                return Err(reject(
                    RejectCode::MissingField,
                    format!("prompt line without `{field}` and the route has no default"),
                ));
            }
        }
        Ok(anthropic_request(id, params))
    }
}

fn anthropic_group() -> Group {
    Group {
        endpoint: MESSAGES.to_string(),
        model: String::new(),
    }
}

fn openai_request<'a>(id: &str, endpoint: &str, body: Map<String, Value>) -> Built<'a> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let request = serde_json::json!({
        "custom_id": id, "method": "POST", "url": endpoint, "body": body,
    });
    (
        Group {
            endpoint: endpoint.to_string(),
            model,
        },
        Cow::Owned(to_vec(&request)),
        1,
    )
}

fn anthropic_request<'a>(id: &str, params: Map<String, Value>) -> Built<'a> {
    let request = serde_json::json!({"custom_id": id, "params": params});
    (anthropic_group(), Cow::Owned(to_vec(&request)), 1)
}

fn check_method(
    fields: &LineFields<'_>,
    rebuilt: &mut Option<Map<String, Value>>,
    line: &[u8],
) -> Result<(), Reject> {
    match fields.method {
        None => {
            rebuilt
                .get_or_insert_with(|| parse_map(line))
                .insert("method".into(), Value::String("POST".into()));
            Ok(())
        }
        Some(m) if m.get() == "\"POST\"" => Ok(()),
        Some(m) => Err(reject(
            RejectCode::InvalidField,
            format!("method must be \"POST\", found {}", m.get()),
        )),
    }
}

fn object_field<'a>(raw: Option<&'a RawValue>, name: &str) -> Result<&'a RawValue, Reject> {
    let raw =
        raw.ok_or_else(|| reject(RejectCode::MissingField, format!("missing field `{name}`")))?;
    if !raw.get().trim_start().starts_with('{') {
        return Err(reject(
            RejectCode::InvalidField,
            format!("`{name}` must be a JSON object"),
        ));
    }
    Ok(raw)
}

fn parse_map(line: &[u8]) -> Map<String, Value> {
    serde_json::from_slice(line).unwrap_or_default()
}

fn to_vec(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn validator() -> Validator {
        let config = Config::builtin(&|_| None);
        Validator::new(config.route("sandbox").unwrap())
    }

    fn rejected(outcome: Outcome<'_>) -> Rejection {
        match outcome {
            Outcome::Rejected(r) => r,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn accepted(outcome: Outcome<'_>) -> Accepted<'_> {
        match outcome {
            Outcome::Accepted(a) => a,
            other => panic!("expected acceptance, got {other:?}"),
        }
    }

    const GOOD: &[u8] = br#"{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]},"extra":1}"#;

    #[test]
    fn complete_openai_line_passes_through_unchanged() {
        let mut v = validator();
        let a = accepted(v.check(1, GOOD));
        assert_eq!(a.custom_id, "r1");
        assert_eq!(&*a.request, GOOD);
        assert!(matches!(a.request, Cow::Borrowed(_)));
        assert_eq!(a.group.model, "gpt-4o-mini");
        assert_eq!(a.group.endpoint, CHAT_COMPLETIONS);
    }

    #[test]
    fn crlf_and_blank_lines() {
        let mut v = validator();
        assert_eq!(v.check(1, b"   \r\n"), Outcome::Blank);
        let mut line = GOOD.to_vec();
        line.extend_from_slice(b"\r\n");
        assert_eq!(&*accepted(v.check(2, &line)).request, GOOD);
    }

    #[test]
    fn bad_json_is_invalid_json() {
        let r = rejected(validator().check(7, b"{\"custom_id\": \"x\", "));
        assert_eq!((r.line, r.code), (7, RejectCode::InvalidJson));
    }

    #[test]
    fn array_is_not_an_object() {
        assert_eq!(
            rejected(validator().check(1, b"[1,2]")).code,
            RejectCode::NotAnObject
        );
    }

    #[test]
    fn invalid_utf8_is_named() {
        let r = rejected(validator().check(1, b"{\"custom_id\":\"\xff\"}"));
        assert_eq!(r.code, RejectCode::InvalidUtf8);
    }

    #[test]
    fn missing_body_is_missing_field_with_custom_id() {
        let r = rejected(validator().check(
            3,
            br#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions"}"#,
        ));
        assert_eq!(r.code, RejectCode::MissingField);
        assert_eq!(r.custom_id.as_deref(), Some("a"));
        assert!(r.message.contains("body"));
    }

    #[test]
    fn unknown_endpoint_is_unsupported() {
        let r = rejected(validator().check(1, br#"{"custom_id":"a","method":"POST","url":"/v1/images/generations","body":{"model":"m"}}"#));
        assert_eq!(r.code, RejectCode::UnsupportedEndpoint);
    }

    #[test]
    fn missing_custom_id_gets_one_from_the_line_number() {
        let mut v = validator();
        let a = accepted(v.check(
            5,
            br#"{"method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}"#,
        ));
        assert_eq!(a.custom_id, "line-5");
        let sent: Value = serde_json::from_slice(&a.request).unwrap();
        assert_eq!(sent["custom_id"], "line-5");
    }

    #[test]
    fn missing_model_and_method_are_filled_from_the_route() {
        let a = accepted(validator().check(
            1,
            br#"{"custom_id":"a","url":"/v1/chat/completions","body":{"messages":[]}}"#,
        ));
        let sent: Value = serde_json::from_slice(&a.request).unwrap();
        assert_eq!(sent["body"]["model"], "gpt-4o-mini");
        assert_eq!(sent["method"], "POST");
    }

    #[test]
    fn too_long_line_is_rejected_before_parsing() {
        let mut config = Config::builtin(&|_| None);
        config
            .routes
            .get_mut("sandbox")
            .unwrap()
            .limits
            .max_line_bytes = 10;
        let mut v = Validator::new(config.route("sandbox").unwrap());
        assert_eq!(rejected(v.check(1, GOOD)).code, RejectCode::LineTooLong);
    }

    #[test]
    fn prompt_line_becomes_a_chat_request_with_defaults_and_overrides() {
        let a = accepted(validator().check(
            2,
            br#"{"prompt":"Say hi","system":"Be brief","temperature":0.5}"#,
        ));
        let sent: Value = serde_json::from_slice(&a.request).unwrap();
        assert_eq!(sent["custom_id"], "line-2");
        assert_eq!(sent["url"], CHAT_COMPLETIONS);
        assert_eq!(sent["body"]["model"], "gpt-4o-mini");
        assert_eq!(sent["body"]["messages"][0]["content"], "Be brief");
        assert_eq!(sent["body"]["messages"][1]["content"], "Say hi");
        assert_eq!(sent["body"]["temperature"], 0.5);
    }

    #[test]
    fn embeddings_count_their_inputs() {
        let a = accepted(validator().check(1, br#"{"custom_id":"e","method":"POST","url":"/v1/embeddings","body":{"model":"text-embedding-3-small","input":["a","b","c"]}}"#));
        assert_eq!(a.units, 3);
    }

    #[test]
    fn anthropic_line_on_openai_route_is_translated() {
        let a = accepted(validator().check(
            1,
            br#"{"custom_id":"a","params":{"model":"claude-x","max_tokens":9,"messages":[{"role":"user","content":"hi"}]}}"#,
        ));
        let sent: Value = serde_json::from_slice(&a.request).unwrap();
        assert_eq!(sent["url"], CHAT_COMPLETIONS);
        assert_eq!(sent["body"]["model"], "gpt-4o-mini");
        assert_eq!(sent["body"]["max_tokens"], 9);
        assert_eq!(sent["body"]["messages"][0]["content"], "hi");
    }

    #[test]
    fn anthropic_line_with_tools_on_openai_route_is_untranslatable() {
        let r = rejected(validator().check(
            1,
            br#"{"custom_id":"a","params":{"model":"claude-x","max_tokens":9,"messages":[],"tools":[]}}"#,
        ));
        assert_eq!(r.code, RejectCode::Untranslatable);
        assert!(r.message.contains("`tools`"), "{}", r.message);
    }

    fn anthropic_validator() -> Validator {
        let config = Config::builtin(&|_| None);
        Validator::new(config.route("sandbox-anthropic").unwrap())
    }

    #[test]
    fn complete_anthropic_line_passes_through_unchanged() {
        let line: &[u8] = br#"{"custom_id":"ok_1","params":{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}}"#;
        let a = accepted(anthropic_validator().check(1, line));
        assert_eq!(&*a.request, line);
        assert_eq!(a.sent_id, None);
        assert_eq!(a.group.endpoint, MESSAGES);
    }

    #[test]
    fn ids_anthropic_refuses_are_sent_mapped_and_kept_for_the_output() {
        let mut v = anthropic_validator();
        let long = "x".repeat(65);
        for (n, id) in [
            (1u64, long.as_str()),
            (2, "has.dots"),
            (3, "has space"),
            (4, "unicodé"),
            (5, "bd_7"),
        ] {
            let line = format!(
                r#"{{"custom_id":{},"params":{{"messages":[{{"role":"user","content":"hi"}}]}}}}"#,
                serde_json::json!(id)
            );
            let a = accepted(v.check(n, line.as_bytes()));
            assert_eq!(a.custom_id, id);
            assert_eq!(a.sent_id.as_deref(), Some(format!("bd_{n}").as_str()));
            let sent: Value = serde_json::from_slice(&a.request).unwrap();
            assert_eq!(sent["custom_id"], format!("bd_{n}"));
            assert_eq!(sent["params"]["max_tokens"], 1024, "filled from the route");
        }
    }

    #[test]
    fn openai_line_on_anthropic_route_is_translated() {
        let a = accepted(anthropic_validator().check(1, GOOD));
        let sent: Value = serde_json::from_slice(&a.request).unwrap();
        assert_eq!(sent["custom_id"], "r1");
        assert_eq!(sent["params"]["model"], "claude-sonnet-4-5");
        assert_eq!(sent["params"]["messages"][0]["content"], "hi");
        assert_eq!(sent["params"]["max_tokens"], 1024);
    }

    #[test]
    fn embeddings_line_on_anthropic_route_is_untranslatable() {
        let r = rejected(anthropic_validator().check(1, br#"{"custom_id":"e","method":"POST","url":"/v1/embeddings","body":{"model":"m","input":"x"}}"#));
        assert_eq!(r.code, RejectCode::Untranslatable);
    }

    #[test]
    fn prompt_line_on_anthropic_route_becomes_params() {
        let a = accepted(anthropic_validator().check(
            3,
            br#"{"prompt":"Say hi","system":"Be brief","max_tokens":20}"#,
        ));
        let sent: Value = serde_json::from_slice(&a.request).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"custom_id": "line-3", "params": {
            "model": "claude-sonnet-4-5", "max_tokens": 20, "system": "Be brief",
            "messages": [{"role": "user", "content": "Say hi"}]}})
        );
    }

    #[test]
    fn rejection_line_shape() {
        let r = Rejection {
            line: 3,
            custom_id: None,
            code: RejectCode::InvalidJson,
            message: "m".into(),
        };
        let v: Value = serde_json::from_slice(&r.to_json_line()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"line":3,"custom_id":null,"error":{"code":"invalid_json","message":"m"}})
        );
    }
}
