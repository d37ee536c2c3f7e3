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
//!
//! Reading a line is one pass over its bytes ([`crate::scan`]): it checks the JSON as serde_json
//! would and notes where the fields read here are. A complete line in the route's format is then
//! sent as it is, and a plain prompt line is written byte by byte (`input/prompt.rs`); only the
//! lines that must be rewritten or translated, and refused ones (for serde_json's words on why),
//! are parsed again by serde_json.

mod prompt;

use crate::config::{Defaults, Route, Wire};
use crate::scan::{self, Inner, Json, Kind};
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
    written: prompt::Written,
}

/// What serde_json reads of a line. Only for its words when a line's JSON is refused: lines are
/// read by [`scan::line`], which takes exactly what serde_json takes for this struct (its tests
/// and the test-only reference validator compare against it).
#[derive(Deserialize)]
#[allow(dead_code)]
pub(crate) struct LineFields<'a> {
    #[serde(borrow, default)]
    pub(crate) custom_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) method: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) url: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) body: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) prompt: Option<&'a RawValue>,
}

/// What serde_json reads of `body` or `params`; as [`LineFields`], only for its words when it
/// refuses them ([`Inner::strict`]).
#[derive(Deserialize)]
#[allow(dead_code)]
pub(crate) struct BodyFields<'a> {
    #[serde(borrow, default)]
    pub(crate) model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) max_tokens: Option<&'a RawValue>,
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

/// A field that is there and not `null`.
fn given(value: Option<Json<'_>>) -> Option<Json<'_>> {
    value.and_then(Json::given)
}

/// A value as the line writes it, for messages (the line is UTF-8 by then).
fn text(value: Json<'_>) -> Cow<'_, str> {
    String::from_utf8_lossy(value.raw)
}

impl Validator {
    pub fn new(route: &Route) -> Self {
        Self {
            wire: route.wire,
            defaults: route.defaults.clone(),
            max_line_bytes: route.limits.max_line_bytes,
            written: prompt::Written::new(&route.defaults),
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
        let first = line.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first != Some(b'{') {
            return Err(no_id(not_an_object(line)));
        }
        let fields = scan::line(line).map_err(|e| no_id(unreadable(line, e)))?;
        if !fields.utf8 {
            return Err(no_id(invalid_utf8(line)));
        }

        let given_id: Option<Cow<'a, str>> = match given(fields.custom_id) {
            None => None,
            Some(raw) => match raw.string() {
                Some(id) if !id.is_empty() => Some(id),
                Some(_) => {
                    return Err(no_id(reject(
                        RejectCode::InvalidField,
                        "custom_id is an empty string",
                    )));
                }
                None => {
                    return Err(no_id(reject(
                        RejectCode::InvalidField,
                        format!("custom_id must be a string, found {}", text(raw)),
                    )));
                }
            },
        };
        let id_given = given_id.is_some();
        let custom_id: Cow<'a, str> =
            given_id.unwrap_or_else(|| Cow::Owned(format!("line-{line_no}")));
        let with_id = |(code, message): Reject| (code, message, Some(custom_id.to_string()));

        let shape = if given(fields.body).is_some() || given(fields.url).is_some() {
            Shape::OpenAi
        } else if given(fields.params).is_some() {
            Shape::Anthropic
        } else if given(fields.prompt).is_some() {
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
            (Wire::Openai, Shape::Prompt) => self.prompt_to_openai(line, &fields, id_to_send),
            (Wire::Openai, Shape::Anthropic) => self.anthropic_to_openai(&fields, id_to_send),
            (Wire::Anthropic, Shape::Anthropic) => self.anthropic_line(
                line,
                &fields,
                (sent_id.is_some() || !id_given).then_some(id_to_send),
            ),
            (Wire::Anthropic, Shape::OpenAi) => self.openai_to_anthropic(&fields, id_to_send),
            (Wire::Anthropic, Shape::Prompt) => self.prompt_to_anthropic(line, &fields, id_to_send),
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
        fields: &scan::Line<'a>,
        set_id: Option<&str>,
    ) -> Result<Built<'a>, Reject> {
        // The scan took `url` only as a string (or null).
        let url = given(fields.url)
            .and_then(Json::string)
            .ok_or_else(|| reject(RejectCode::MissingField, "missing field `url`"))?;
        if !OPENAI_ENDPOINTS.contains(&&*url) {
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
        check_method(fields.method, &mut rebuilt, line)?;
        let body = object_field(fields.body, "body")?;
        let bf = strict(fields.body_fields, body, "body")?;
        let model = match (given(bf.model).and_then(Json::string), &self.defaults.model) {
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
            match given(bf.input).map(|input| input.kind) {
                Some(Kind::Array(items)) => items.max(1) as u64,
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
                endpoint: url.into_owned(),
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
        fields: &scan::Line<'a>,
        set_id: Option<&str>,
    ) -> Result<Built<'a>, Reject> {
        let params = object_field(fields.params, "params")?;
        let pf = strict(fields.params_fields, params, "params")?;
        let mut rebuilt: Option<Map<String, Value>> = None;
        if let Some(id) = set_id {
            rebuilt
                .get_or_insert_with(|| parse_map(line))
                .insert("custom_id".into(), Value::String(id.to_string()));
        }
        for (field, missing, default) in [
            (
                "model",
                given(pf.model).is_none(),
                self.defaults.model.clone().map(Value::String),
            ),
            (
                "max_tokens",
                given(pf.max_tokens).is_none(),
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
        fields: &scan::Line<'a>,
        id: &str,
    ) -> Result<Built<'a>, Reject> {
        let url = given(fields.url).and_then(Json::string);
        let url = url.as_deref().unwrap_or(CHAT_COMPLETIONS);
        if url != CHAT_COMPLETIONS {
            return Err(reject(
                RejectCode::Untranslatable,
                format!(
                    "cannot translate: `url` {url:?}: only {CHAT_COMPLETIONS} lines translate to Anthropic"
                ),
            ));
        }
        let mut nowhere = None;
        check_method(fields.method, &mut nowhere, b"{}")?;
        let body: Map<String, Value> =
            serde_json::from_slice(object_field(fields.body, "body")?.raw).map_err(|e| {
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
        fields: &scan::Line<'a>,
        id: &str,
    ) -> Result<Built<'a>, Reject> {
        let params: Map<String, Value> =
            serde_json::from_slice(object_field(fields.params, "params")?.raw).map_err(|e| {
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

    fn prompt_to_openai<'a>(
        &self,
        line: &[u8],
        fields: &scan::Line<'_>,
        id: &str,
    ) -> Result<Built<'a>, Reject> {
        if let Some(built) = prompt::openai(&self.written, fields, id) {
            return Ok(built);
        }
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

    fn prompt_to_anthropic<'a>(
        &self,
        line: &[u8],
        fields: &scan::Line<'_>,
        id: &str,
    ) -> Result<Built<'a>, Reject> {
        if let Some(built) = prompt::anthropic(&self.written, fields, id) {
            return Ok(built);
        }
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
    method: Option<Json<'_>>,
    rebuilt: &mut Option<Map<String, Value>>,
    line: &[u8],
) -> Result<(), Reject> {
    match given(method) {
        None => {
            rebuilt
                .get_or_insert_with(|| parse_map(line))
                .insert("method".into(), Value::String("POST".into()));
            Ok(())
        }
        Some(m) if m.raw == b"\"POST\"" => Ok(()),
        Some(m) => Err(reject(
            RejectCode::InvalidField,
            format!("method must be \"POST\", found {}", text(m)),
        )),
    }
}

fn object_field<'a>(value: Option<Json<'a>>, name: &str) -> Result<Json<'a>, Reject> {
    let value = given(value)
        .ok_or_else(|| reject(RejectCode::MissingField, format!("missing field `{name}`")))?;
    if !value.is_object() {
        return Err(reject(
            RejectCode::InvalidField,
            format!("`{name}` must be a JSON object"),
        ));
    }
    Ok(value)
}

/// The fields read in `body` (or `params`), unless serde_json would refuse them: then its words
/// for why.
fn strict<'a>(fields: Inner<'a>, object: Json<'a>, name: &str) -> Result<Inner<'a>, Reject> {
    if fields.strict {
        return Ok(fields);
    }
    let why = match serde_json::from_slice::<BodyFields>(object.raw) {
        Err(e) => e.to_string(),
        Ok(_) => "a field twice or of the wrong type".to_string(),
    };
    Err(reject(
        RejectCode::InvalidField,
        format!("`{name}` is not valid: {why}"),
    ))
}

/// A line that does not start with `{`: not an object, if it is JSON at all.
fn not_an_object(line: &[u8]) -> Reject {
    if std::str::from_utf8(line).is_err() {
        return invalid_utf8(line);
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(line) {
        Ok(_) => reject(
            RejectCode::NotAnObject,
            "line is valid JSON but not an object",
        ),
        Err(e) => reject(RejectCode::InvalidJson, format!("invalid JSON: {e}")),
    }
}

fn invalid_utf8(line: &[u8]) -> Reject {
    let at = match std::str::from_utf8(line) {
        Err(e) => e.valid_up_to(),
        Ok(_) => line.len(),
    };
    reject(
        RejectCode::InvalidUtf8,
        format!("invalid UTF-8 at byte {}", at + 1),
    )
}

/// A line the scan refused. serde_json words why, as it always has (reading the line again costs
/// nothing that matters: only bad lines come here); the scan's own words if it does not.
fn unreadable(line: &[u8], scanned: scan::Error) -> Reject {
    if std::str::from_utf8(line).is_err() {
        return invalid_utf8(line);
    }
    let why = match serde_json::from_slice::<LineFields>(line) {
        Err(e) => e.to_string(),
        Ok(_) => scanned.to_string(),
    };
    reject(RejectCode::InvalidJson, format!("invalid JSON: {why}"))
}

fn parse_map(line: &[u8]) -> Map<String, Value> {
    serde_json::from_slice(line).unwrap_or_default()
}

fn to_vec(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod reference;

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
    fn escaped_url_and_model_pass_through_unchanged() {
        let line: &[u8] = br#"{"custom_id":"r\u0031","method":"POST","url":"\/v1\/chat\/completions","body":{"model":"gpt\u002d4o"}}"#;
        let a = accepted(validator().check(1, line));
        assert!(matches!(a.request, Cow::Borrowed(_)));
        assert_eq!(
            (&*a.custom_id, &*a.group.endpoint, &*a.group.model),
            ("r1", CHAT_COMPLETIONS, "gpt-4o")
        );
    }

    #[test]
    fn invalid_json_says_where() {
        let r = rejected(validator().check(1, br#"{"custom_id":"a","body":{"model":"m",}}"#));
        assert_eq!(r.code, RejectCode::InvalidJson);
        assert!(r.message.contains("column 38"), "{}", r.message);
    }

    #[test]
    fn a_field_twice_is_invalid_json_naming_it() {
        let r = rejected(validator().check(1, br#"{"url":"/v1/embeddings","url":null}"#));
        assert_eq!(r.code, RejectCode::InvalidJson);
        assert!(r.message.contains("duplicate field `url`"), "{}", r.message);
    }

    #[test]
    fn a_body_model_twice_is_an_invalid_body() {
        let r = rejected(validator().check(
            1,
            br#"{"url":"/v1/chat/completions","body":{"model":"a","model":"b"}}"#,
        ));
        assert_eq!(r.code, RejectCode::InvalidField);
        assert!(
            r.message.contains("duplicate field `model`"),
            "{}",
            r.message
        );
    }

    #[test]
    fn invalid_utf8_in_a_valid_line_is_named_with_its_byte() {
        let r = rejected(validator().check(1, b"{\"prompt\":\"ab\xc3\"}"));
        assert_eq!(r.code, RejectCode::InvalidUtf8);
        assert_eq!(r.message, "invalid UTF-8 at byte 14");
    }

    #[test]
    fn embeddings_without_input_count_one() {
        let a = accepted(validator().check(1, br#"{"custom_id":"e","url":"/v1/embeddings","method":"POST","body":{"model":"m","input":null}}"#));
        assert_eq!(a.units, 1);
    }

    #[test]
    fn plain_prompt_line_is_written_in_full() {
        let a = accepted(validator().check(4, br#"{"custom_id":"p1","prompt":"Say hi"}"#));
        assert_eq!(
            std::str::from_utf8(&a.request).unwrap(),
            r#"{"custom_id":"p1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}]}}"#
        );
    }

    #[test]
    fn prompt_escapes_are_written_as_serde_json_writes_them() {
        let a = accepted(
            validator().check(1, br#"{"prompt":"a\/b \u00e9 \ud83d\ude00 \"q\"\n\u001F"}"#),
        );
        let sent = std::str::from_utf8(&a.request).unwrap();
        assert!(
            sent.contains(r#""content":"a/b é 😀 \"q\"\n\u001f""#),
            "{sent}"
        );
    }

    #[test]
    fn prompt_overrides_take_the_defaults_places_and_new_fields_go_last() {
        let a = accepted(anthropic_validator().check(
            1,
            br#"{"custom_id":"p","top_k":3,"prompt":"x","max_tokens":7,"temperature":0.0}"#,
        ));
        // The general path's map drops `custom_id` and `prompt` by swapping the last field into
        // their place, which leaves `temperature`, `top_k`, `max_tokens`: the first two are new
        // and go last, in that order.
        assert_eq!(
            std::str::from_utf8(&a.request).unwrap(),
            r#"{"custom_id":"p","params":{"model":"claude-sonnet-4-5","max_tokens":7,"messages":[{"role":"user","content":"x"}],"temperature":0.0,"top_k":3}}"#
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

/// The validator against the one it replaces ([`reference`]): same outcome for every line.
#[cfg(test)]
mod same_as_before {
    use super::reference;
    use super::*;
    use crate::config::Config;
    use proptest::prelude::*;

    /// Routes of both wires with every kind of defaults.
    fn routes() -> Vec<Route> {
        let config = Config::builtin(&|_| None);
        let openai = config.route("sandbox").unwrap().clone();
        let anthropic = config.route("sandbox-anthropic").unwrap().clone();
        let with = |route: &Route, defaults: Defaults| Route {
            defaults,
            ..route.clone()
        };
        let all = Defaults {
            model: Some("m-default".into()),
            max_tokens: Some(100),
            system: Some("Sys \"q\"\n\u{1}é".into()),
            temperature: Some(0.7),
            endpoint: None,
        };
        let mut short = openai.clone();
        short.limits.max_line_bytes = 60;
        vec![
            openai.clone(),
            with(&openai, Defaults::default()),
            with(&openai, all.clone()),
            with(
                &openai,
                Defaults {
                    endpoint: Some(EMBEDDINGS.into()),
                    ..all.clone()
                },
            ),
            with(
                &openai,
                Defaults {
                    endpoint: Some("/v1/responses".into()),
                    ..all.clone()
                },
            ),
            short,
            anthropic.clone(),
            with(&anthropic, Defaults::default()),
            with(&anthropic, all),
        ]
    }

    /// Mostly one of the first `good` values (those that make an acceptable line), else any.
    fn one_of(values: &'static [&'static str], good: usize) -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(&values[..good]),
            1 => prop::sample::select(values),
        ]
        .prop_map(str::to_string)
    }

    const IDS: &[&str] = &[
        r#""r1""#,
        r#""ok-id_2""#,
        r#""""#,
        "5",
        "null",
        r#""has space""#,
        r#""a\u00e9\/""#,
        r#""\ud800""#,
        r#""bd_1""#,
        r#""xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx""#,
    ];
    const METHODS: &[&str] = &[r#""POST""#, r#""GET""#, r#""P\u004fST""#, "null", "1"];
    const URLS: &[&str] = &[
        r#""/v1/chat/completions""#,
        r#""/v1/embeddings""#,
        r#""\/v1\/chat\/completions""#,
        r#""/v1/images""#,
        r#""/v1/responses""#,
        "null",
        "5",
    ];
    const PROMPTS: &[&str] = &[
        r#""Say hi""#,
        r#""a\nb \"q\" \\ \u00e9 \u001F \u0022 \ud83d\ude00 \/ é東 \b\f\r\t""#,
        "5",
        "null",
        r#""\ud800""#,
        r#""""#,
    ];
    const SYSTEMS: &[&str] = &[r#""Be brief""#, r#""s\t\u0001""#, "null", "5"];
    /// Fields a prompt line may override, with values.
    const OVERRIDES: &[&str] = &[
        r#""temperature":0.0"#,
        r#""temperature":0.5"#,
        r#""temperature":-0"#,
        r#""temperature":1E2"#,
        r#""temperature":12345678901234567890123"#,
        r#""max_tokens":20"#,
        r#""model":"gpt-4o""#,
        r#""model":"g\u0070t""#,
        r#""n":1"#,
        r#""n":true"#,
        r#""user":"a\/b\u00e9""#,
        r#""stop":["x"]"#,
        r#""sys\u0074em":"esc""#,
        r#""temperature":1e400"#,
        r#""max_tokens":null"#,
        r#""max_tokens":"x""#,
        r#""model":5"#,
        r#""model":null"#,
        r#""messages":[{"role":"user","content":"m"}]"#,
        r#""input":"z""#,
        r#""x":{"deep":[1,{"a":"\ud800"}]}"#,
        r#""method":"GET""#,
        r#""url":null"#,
        r#""body":null"#,
    ];
    const BODY_FIELDS: &[&str] = &[
        r#""model":"gpt-4o-mini""#,
        r#""messages":[{"role":"user","content":"hi"}]"#,
        r#""messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"t"}]}]"#,
        r#""input":["a","b","c"]"#,
        r#""max_tokens":9"#,
        r#""temperature":0.2"#,
        r#""stop":["x"]"#,
        r#""user":"u""#,
        r#""model":"claude-3""#,
        r#""model":null"#,
        r#""model":5"#,
        r#""model":"\ud800""#,
        r#""mod\u0065l":"g\u0070t""#,
        r#""input":[]"#,
        r#""input":"x""#,
        r#""input":null"#,
        r#""max_tokens":null"#,
        r#""messages":[{"role":"user","content":[{"type":"image_url"}]}]"#,
        r#""tools":[]"#,
    ];

    fn object(fields: Vec<String>) -> String {
        format!("{{{}}}", fields.join(","))
    }

    fn body() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => (one_of(BODY_FIELDS, 1), prop::collection::vec(one_of(BODY_FIELDS, 8), 0..4))
                .prop_map(|(first, more)| object([vec![first], more].concat())),
            1 => one_of(&["null", "[]", r#""x""#, "5"], 4),
        ]
    }

    fn field(
        key: &'static str,
        values: impl Strategy<Value = String>,
    ) -> impl Strategy<Value = Option<String>> {
        prop::option::weighted(0.8, values.prop_map(move |v| format!("\"{key}\":{v}")))
    }

    fn line() -> impl Strategy<Value = String> {
        let openai = (
            field("custom_id", one_of(IDS, 2)),
            field("method", one_of(METHODS, 1)),
            field("url", one_of(URLS, 3)),
            field("body", body()),
        )
            .prop_map(|(a, b, c, d)| vec![a, b, c, d]);
        let anthropic = (field("custom_id", one_of(IDS, 2)), field("params", body()))
            .prop_map(|(a, b)| vec![a, b]);
        let prompt = (
            field("custom_id", one_of(IDS, 2)),
            field("prompt", one_of(PROMPTS, 2)),
            field("system", one_of(SYSTEMS, 2)),
        )
            .prop_map(|(a, b, c)| vec![a, b, c]);
        let extras = prop::collection::vec(one_of(OVERRIDES, 13), 0..4);
        let fields = (prop_oneof![openai, anthropic, prompt], extras)
            .prop_map(|(known, extras)| {
                let mut fields: Vec<String> = known.into_iter().flatten().collect();
                fields.extend(extras);
                fields
            })
            .boxed();
        prop_oneof![
            fields.clone().prop_map(object),
            fields.prop_shuffle().prop_map(object),
        ]
    }

    /// Sometimes a byte replaced or the line cut short.
    fn damage() -> impl Strategy<Value = Option<(prop::sample::Index, Option<u8>)>> {
        let byte = prop::sample::select(b"\"\\,:[]{}0-e tn\x01\xff".to_vec());
        prop::option::weighted(0.15, (any::<prop::sample::Index>(), prop::option::of(byte)))
    }

    fn damaged(text: String, damage: Option<(prop::sample::Index, Option<u8>)>) -> Vec<u8> {
        let mut bytes = text.into_bytes();
        match damage {
            Some((at, Some(b))) => {
                let at = at.index(bytes.len());
                bytes[at] = b;
            }
            Some((at, None)) => bytes.truncate(at.index(bytes.len())),
            None => {}
        }
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

        #[test]
        fn every_line_has_the_outcome_it_had(
            text in line(),
            damage in damage(),
            route in prop::sample::select(routes()),
            line_no in 1u64..1000,
        ) {
            let bytes = damaged(text, damage);
            let now = Validator::new(&route).check(line_no, &bytes);
            let before = reference::Validator::new(&route).check(line_no, &bytes);
            prop_assert_eq!(now, before, "{}", String::from_utf8_lossy(&bytes));
        }
    }
}
