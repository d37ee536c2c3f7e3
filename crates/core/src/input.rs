//! Input lines: each non-blank line of an upload is either accepted as one provider request or
//! rejected with a code, a message and its line number. One bad line never fails the file.
//!
//! Accepted shapes on an OpenAI route:
//! - OpenAI batch line `{"custom_id","method":"POST","url":"/v1/…","body":{…}}` — passed through
//!   byte for byte when complete (unknown fields kept); `method` and `body.model` are filled in
//!   from the route when missing;
//! - prompt line `{"prompt":"…","custom_id"?,"system"?, …overrides}` — built into a request for
//!   the route's default endpoint with the route's defaults, overrides winning.
//!
//! A line without `custom_id` gets `line-<n>`. Duplicate ids are rejected; ids are remembered as
//! 128-bit hashes (16 bytes each), so memory grows by that much per accepted request, not more.

use crate::config::{Defaults, Route};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

pub const CHAT_COMPLETIONS: &str = "/v1/chat/completions";
pub const EMBEDDINGS: &str = "/v1/embeddings";
/// Endpoints an OpenAI batch accepts (text ones).
pub const OPENAI_ENDPOINTS: &[&str] = &[
    CHAT_COMPLETIONS,
    "/v1/responses",
    EMBEDDINGS,
    "/v1/completions",
    "/v1/moderations",
];

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

/// Requests that may share a batch: same endpoint and model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Group {
    pub endpoint: String,
    pub model: String,
}

/// One accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted<'a> {
    pub custom_id: Cow<'a, str>,
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

/// Validates the lines of one upload, in order.
#[derive(Debug)]
pub struct Validator {
    defaults: Defaults,
    max_line_bytes: u64,
    seen: HashMap<u128, u64>,
    hash_a: RandomState,
    hash_b: RandomState,
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
}

impl Validator {
    pub fn new(route: &Route) -> Self {
        Self {
            defaults: route.defaults.clone(),
            max_line_bytes: route.limits.max_line_bytes,
            seen: HashMap::new(),
            hash_a: RandomState::new(),
            hash_b: RandomState::new(),
        }
    }

    /// Classifies line number `line_no` (1-based). `raw` may end in `\n` or `\r\n`.
    pub fn check<'a>(&mut self, line_no: u64, raw: &'a [u8]) -> Outcome<'a> {
        let trimmed = trim_ascii_end(raw);
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
        let reject = |code, message: String| (code, message, None);
        if line.len() as u64 > self.max_line_bytes {
            return Err(reject(
                RejectCode::LineTooLong,
                format!(
                    "line is {} bytes; the route allows at most {}",
                    line.len(),
                    self.max_line_bytes
                ),
            ));
        }
        if let Err(e) = std::str::from_utf8(line) {
            return Err(reject(
                RejectCode::InvalidUtf8,
                format!("invalid UTF-8 at byte {}", e.valid_up_to() + 1),
            ));
        }
        let first = line.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first != Some(b'{') {
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(line) {
                    Ok(_) => reject(
                        RejectCode::NotAnObject,
                        "line is valid JSON but not an object".into(),
                    ),
                    Err(e) => reject(RejectCode::InvalidJson, format!("invalid JSON: {e}")),
                },
            );
        }
        let fields: LineFields<'a> = serde_json::from_slice(line)
            .map_err(|e| reject(RejectCode::InvalidJson, format!("invalid JSON: {e}")))?;

        let custom_id: Option<Cow<'a, str>> = match fields.custom_id {
            None => None,
            Some(raw) => match serde_json::from_str::<Cow<'a, str>>(raw.get()) {
                Ok(id) if !id.is_empty() => Some(id),
                Ok(_) => {
                    return Err(reject(
                        RejectCode::InvalidField,
                        "custom_id is an empty string".into(),
                    ));
                }
                Err(_) => {
                    return Err(reject(
                        RejectCode::InvalidField,
                        format!("custom_id must be a string, found {}", raw.get()),
                    ));
                }
            },
        };
        let id_for_errors = custom_id.as_deref().map(str::to_string);
        let with_id = |(code, message, _): (RejectCode, String, Option<String>)| {
            (code, message, id_for_errors.clone())
        };

        let openai_shape = fields.body.is_some() || fields.url.is_some();
        let (group, request, units) = if openai_shape {
            self.openai_line(line, &fields).map_err(with_id)?
        } else if fields.prompt.is_some() {
            self.prompt_line(line, line_no).map_err(with_id)?
        } else if fields.params.is_some() {
            return Err(with_id(reject(
                RejectCode::Untranslatable,
                "an Anthropic batch line (params) cannot be sent to an OpenAI route".into(),
            )));
        } else {
            return Err(with_id(reject(
                RejectCode::MissingField,
                "expected an OpenAI batch line (custom_id, method, url, body) or a prompt line (prompt)"
                    .into(),
            )));
        };

        let custom_id: Cow<'a, str> = match custom_id {
            Some(id) => id,
            None => Cow::Owned(format!("line-{line_no}")),
        };
        let h = ((self.hash_a.hash_one(custom_id.as_ref()) as u128) << 64)
            | self.hash_b.hash_one(custom_id.as_ref()) as u128;
        if let Some(first) = self.seen.get(&h) {
            return Err((
                RejectCode::DuplicateCustomId,
                format!("custom_id {custom_id:?} was already used on line {first}"),
                Some(custom_id.into_owned()),
            ));
        }
        self.seen.insert(h, line_no);

        // Prompt lines are built with their id; an OpenAI line without one gets it added.
        let request = if openai_shape && fields.custom_id.is_none() {
            Cow::Owned(set_field(
                &request,
                "custom_id",
                Value::String(custom_id.to_string()),
            ))
        } else {
            request
        };
        Ok(Accepted {
            custom_id,
            group,
            request,
            units,
        })
    }

    #[allow(clippy::type_complexity)]
    fn openai_line<'a>(
        &self,
        line: &'a [u8],
        fields: &LineFields<'a>,
    ) -> Result<(Group, Cow<'a, [u8]>, u64), (RejectCode, String, Option<String>)> {
        let reject = |code, message: String| (code, message, None);
        let url = fields
            .url
            .as_deref()
            .ok_or_else(|| reject(RejectCode::MissingField, "missing field `url`".into()))?;
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
        match fields.method {
            None => {
                rebuilt
                    .get_or_insert_with(|| parse_map(line))
                    .insert("method".into(), Value::String("POST".into()));
            }
            Some(m) if m.get() == "\"POST\"" => {}
            Some(m) => {
                return Err(reject(
                    RejectCode::InvalidField,
                    format!("method must be \"POST\", found {}", m.get()),
                ));
            }
        }
        let body = fields
            .body
            .ok_or_else(|| reject(RejectCode::MissingField, "missing field `body`".into()))?;
        if !body.get().trim_start().starts_with('{') {
            return Err(reject(
                RejectCode::InvalidField,
                "`body` must be a JSON object".into(),
            ));
        }
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
                    "missing field `body.model` and the route has no default model".into(),
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
            Some(map) => Cow::Owned(serde_json::to_vec(&map).unwrap_or_default()),
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

    #[allow(clippy::type_complexity)]
    fn prompt_line<'a>(
        &self,
        line: &'a [u8],
        line_no: u64,
    ) -> Result<(Group, Cow<'a, [u8]>, u64), (RejectCode, String, Option<String>)> {
        let reject = |code, message: String| (code, message, None);
        let mut map = parse_map(line);
        let prompt = match map.remove("prompt") {
            Some(Value::String(p)) => p,
            Some(other) => {
                return Err(reject(
                    RejectCode::InvalidField,
                    format!("`prompt` must be a string, found {other}"),
                ));
            }
            None => {
                return Err(reject(
                    RejectCode::MissingField,
                    "missing field `prompt`".into(),
                ));
            }
        };
        let custom_id = map.remove("custom_id");
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
        // Everything else on the line overrides the body.
        for (k, v) in map {
            body.insert(k, v);
        }
        let model = match body.get("model") {
            Some(Value::String(m)) => m.clone(),
            _ => {
                return Err(reject(
                    RejectCode::MissingField,
                    "prompt line without `model` and the route has no default model".into(),
                ));
            }
        };
        let id = custom_id.unwrap_or_else(|| Value::String(format!("line-{line_no}")));
        let request = serde_json::json!({
            "custom_id": id, "method": "POST", "url": endpoint, "body": body,
        });
        Ok((
            Group { endpoint, model },
            Cow::Owned(serde_json::to_vec(&request).unwrap_or_default()),
            1,
        ))
    }
}

fn parse_map(line: &[u8]) -> Map<String, Value> {
    serde_json::from_slice(line).unwrap_or_default()
}

fn set_field(request: &[u8], key: &str, value: Value) -> Vec<u8> {
    let mut map = parse_map(request);
    map.insert(key.to_string(), value);
    serde_json::to_vec(&map).unwrap_or_default()
}

fn trim_ascii_end(raw: &[u8]) -> &[u8] {
    let mut end = raw.len();
    while end > 0 && raw[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    &raw[..end]
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
    fn duplicate_custom_id_names_the_first_line() {
        let mut v = validator();
        accepted(v.check(1, GOOD));
        let r = rejected(v.check(4, GOOD));
        assert_eq!(r.code, RejectCode::DuplicateCustomId);
        assert!(r.message.contains("line 1"), "{}", r.message);
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
    fn anthropic_line_on_openai_route_is_untranslatable() {
        let r = rejected(validator().check(1, br#"{"custom_id":"a","params":{"model":"claude"}}"#));
        assert_eq!(r.code, RejectCode::Untranslatable);
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
