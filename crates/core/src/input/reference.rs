//! The validator as it was before lines were read by [`crate::scan`] and before providers had
//! dialects: every line parsed by serde_json, twice for its body, with OpenAI's and Anthropic's
//! rules written out side by side. Kept, for tests only, as the oracle the validator and the
//! dialects are compared with (`same_as_before` below): same outcome, same bytes, same
//! messages, line for line. Delete it the day validation is meant to change.

use crate::fields::{BodyFields, LineFields};
use crate::input::{Accepted, Group, Outcome, RejectCode, Rejection};
use crate::providers::anthropic::{self, MAPPED_ID_PREFIX, MESSAGES};
use crate::providers::openai::{self, CHAT_COMPLETIONS, EMBEDDINGS, ENDPOINTS as OPENAI_ENDPOINTS};
use crate::route::{Defaults, Route};
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

fn untranslatable(e: crate::provider::Untranslatable) -> Reject {
    reject(RejectCode::Untranslatable, format!("cannot translate: {e}"))
}

/// The two wire formats the oracle knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Openai,
    Anthropic,
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
            wire: match route.provider.as_str() {
                "anthropic" => Wire::Anthropic,
                _ => Wire::Openai,
            },
            defaults: route.defaults.clone(),
            max_line_bytes: route.limits.max_line_bytes,
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
                "expected an OpenAI batch line (custom_id, method, url, body), an Anthropic batch line (custom_id, params), a Bedrock batch line (recordId, modelInput) or a prompt line (prompt)",
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
        let params = anthropic::translate::from_common(
            openai::translate::to_common(&body, "Anthropic").map_err(untranslatable)?,
            &self.defaults,
        )
        .map_err(untranslatable)?;
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
        let body = openai::translate::from_common(
            anthropic::translate::to_common(&params, "OpenAI").map_err(untranslatable)?,
            &self.defaults,
        )
        .map_err(untranslatable)?;
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

/// The validator against the one it replaces ([`reference`]): same outcome for every line.
#[cfg(test)]
mod same_as_before {
    use super::Validator as Reference;
    use crate::config::Config;
    use crate::input::Validator;
    use crate::providers::openai::EMBEDDINGS;
    use crate::route::{Defaults, Route};
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
            let now = Validator::new(&route, crate::providers::dialect(&route.provider).expect("registered")).check(line_no, &bytes);
            let before = Reference::new(&route).check(line_no, &bytes);
            prop_assert_eq!(now, before, "{}", String::from_utf8_lossy(&bytes));
        }
    }
}

/// Plain prompt lines: the dialects' byte-by-byte writers against the general path.
#[cfg(test)]
mod plain_prompt_lines {
    use super::Validator as Reference;
    use crate::config::{Config, Route};
    use crate::input::{Outcome, Validator};
    use crate::prompt::{Written, plain};
    use crate::providers::openai::EMBEDDINGS;
    use crate::route::Defaults;
    use crate::scan;
    use proptest::prelude::*;

    fn routes() -> Vec<Route> {
        let config = Config::builtin(&|_| None);
        let all = Defaults {
            model: Some("m-default".into()),
            max_tokens: Some(100),
            system: Some("Sys \"q\"\n\u{1}é".into()),
            temperature: Some(0.7),
            endpoint: None,
        };
        let mut routes = Vec::new();
        for name in ["sandbox", "sandbox-anthropic"] {
            let route = config.route(name).unwrap().clone();
            routes.push(route.clone());
            routes.push(Route {
                defaults: all.clone(),
                ..route.clone()
            });
            routes.push(Route {
                defaults: Defaults {
                    endpoint: Some(EMBEDDINGS.into()),
                    ..all.clone()
                },
                ..route
            });
        }
        routes
    }

    /// A JSON string with any mix of characters and escapes serde_json reads.
    fn string() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            4 => "[a-zA-Z0-9 .,é東😀/]{0,10}",
            1 => prop::sample::select(vec![
                r#"\""#, r"\\", r"\/", r"\b", r"\f", r"\n", r"\r", r"\t", r"\u0000", r"\u001F",
                r"\u0022", r"\u005C", r"\u002f", r"\u00E9", r"\u7f16", r"\ud83d\ude00", r"\u007f",
            ])
            .prop_map(str::to_string),
        ];
        prop::collection::vec(piece, 0..6).prop_map(|p| format!("\"{}\"", p.concat()))
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            string(),
            "-?(0|[1-9][0-9]{0,22})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
            prop::sample::select(vec!["true", "false", "null"]).prop_map(str::to_string),
        ]
    }

    /// A plain prompt line: `prompt`, maybe `custom_id` and `system`, and overrides (some of
    /// the route's own fields among them), in any order.
    fn plain_line() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            "model",
            "max_tokens",
            "temperature",
            "input",
            "n",
            "user",
            "top_p",
            "method",
        ]);
        let overrides = prop::collection::btree_map(key, value(), 0..5);
        (
            string(),
            prop::option::of("[a-z0-9_-]{1,8}|[^\"\\\\\\x00-\\x1f]{1,70}"),
            prop::option::of(string()),
            overrides,
        )
            .prop_flat_map(|(prompt, id, system, overrides)| {
                let mut fields = vec![format!("\"prompt\":{prompt}")];
                fields.extend(id.map(|v| format!("\"custom_id\":\"{v}\"")));
                fields.extend(system.map(|v| format!("\"system\":{v}")));
                fields.extend(overrides.into_iter().map(|(k, v)| format!("\"{k}\":{v}")));
                Just(fields).prop_shuffle()
            })
            .prop_map(|fields| format!("{{{}}}", fields.join(",")))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        #[test]
        fn plain_prompt_lines_are_written_as_the_general_path_writes_them(
            text in plain_line(),
            route in prop::sample::select(routes()),
        ) {
            let now = Validator::new(&route, crate::providers::dialect(&route.provider).expect("registered")).check(1, text.as_bytes());
            let before = Reference::new(&route).check(1, text.as_bytes());
            prop_assert_eq!(&now, &before);
            if let Outcome::Accepted(_) = before {
                let fields = scan::line(text.as_bytes()).expect("a line");
                let written = Written::new(&route.defaults);
                let dialect = crate::providers::dialect(&route.provider).expect("registered");
                let fast = plain(&fields)
                    .and_then(|p| dialect.plain_prompt_line(&p, &written, "id", &route.defaults));
                prop_assert!(fast.is_some(), "left to the general path");
            }
        }
    }
}
