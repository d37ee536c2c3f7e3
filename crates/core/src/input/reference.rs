//! The validator as it was before lines were read by [`crate::scan`]: every line parsed by
//! serde_json, twice for its body. Kept, for tests only, as the oracle the validator is compared
//! with ([`super::tests`]): same outcome, same bytes, same messages, line for line.

use super::{
    Accepted, BodyFields, CHAT_COMPLETIONS, EMBEDDINGS, Group, LineFields, MAPPED_ID_PREFIX,
    MESSAGES, OPENAI_ENDPOINTS, Outcome, RejectCode, Rejection,
};
use crate::config::{Defaults, Route, Wire};
use crate::translate::{self, Fill};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;

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
