//! OpenAI batch lines `{"custom_id","method":"POST","url","body"}`: checking the user's own,
//! and building them from prompt lines and from the common request.

use super::{CHAT_COMPLETIONS, EMBEDDINGS, ENDPOINTS, translate};
use crate::fields::{
    Reject, given, object_field, parse_map, reject, strict, text, to_vec, untranslatable,
};
use crate::prompt::{Fields, Piece, Plain, PromptParts, Str, Written, write_str};
use crate::provider::{Built, Dialect, Request};
use crate::route::Defaults;
use crate::scan::{self, Json, Kind};
use crate::types::{Group, RejectCode};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// A line of the user's in OpenAI's format. `set_id` is the id to write into the line when it
/// has none of its own.
pub(crate) fn own_line<'a>(
    line: &'a [u8],
    fields: &scan::Line<'a>,
    set_id: Option<&str>,
    defaults: &Defaults,
) -> Result<Built<'a>, Reject> {
    // The scan took `url` only as a string (or null).
    let url = given(fields.url)
        .and_then(Json::string)
        .ok_or_else(|| reject(RejectCode::MissingField, "missing field `url`"))?;
    if !ENDPOINTS.contains(&&*url) {
        return Err(reject(
            RejectCode::UnsupportedEndpoint,
            format!(
                "url {url:?} is not a batch endpoint; use one of {}",
                ENDPOINTS.join(", ")
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
    let model = match (given(bf.model).and_then(Json::string), &defaults.model) {
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

/// One of its own lines as the common request: chat completions only.
pub(crate) fn to_common(fields: &scan::Line<'_>, target: &dyn Dialect) -> Result<Request, Reject> {
    let url = given(fields.url).and_then(Json::string);
    let url = url.as_deref().unwrap_or(CHAT_COMPLETIONS);
    if url != CHAT_COMPLETIONS {
        return Err(reject(
            RejectCode::Untranslatable,
            format!(
                "cannot translate: `url` {url:?}: only {CHAT_COMPLETIONS} lines translate to {}",
                target.title()
            ),
        ));
    }
    let mut nowhere = None;
    check_method(fields.method, &mut nowhere, b"{}")?;
    let body: Map<String, Value> = serde_json::from_slice(object_field(fields.body, "body")?.raw)
        .map_err(|e| {
        reject(
            RejectCode::InvalidField,
            format!("`body` is not valid: {e}"),
        )
    })?;
    translate::to_common(&body, target.title()).map_err(untranslatable)
}

/// The common request as a chat-completions line.
pub(crate) fn from_common(
    request: Request,
    id: &str,
    defaults: &Defaults,
) -> Result<Built<'static>, Reject> {
    let body = translate::from_common(request, defaults).map_err(untranslatable)?;
    Ok(request_line(id, CHAT_COMPLETIONS, body))
}

/// Where prompt lines go on a route: chat (`Some(true)`), embeddings (`Some(false)`), or an
/// endpoint they cannot become (`None`).
fn chat(defaults: &Defaults) -> Option<bool> {
    match defaults.endpoint.as_deref().unwrap_or(CHAT_COMPLETIONS) {
        CHAT_COMPLETIONS => Some(true),
        EMBEDDINGS => Some(false),
        _ => None,
    }
}

/// A plain prompt line, written byte by byte.
pub(crate) fn plain_prompt_line(
    parts: &Plain<'_>,
    written: &Written,
    id: &str,
    defaults: &Defaults,
) -> Option<Built<'static>> {
    let chat = chat(defaults)?;
    let mut body = Fields::new();
    if let Some((model, _)) = &written.model {
        body.set(b"model", Piece::Str(Str::Written(model)));
    }
    if chat {
        body.set(
            b"messages",
            Piece::Messages {
                system: parts.system(written),
                prompt: parts.prompt,
            },
        );
        if let Some(t) = &written.max_tokens {
            body.set(b"max_tokens", Piece::Raw(t));
        }
        if let Some(t) = &written.temperature {
            body.set(b"temperature", Piece::Raw(t));
        }
    } else {
        body.set(b"input", Piece::Str(Str::Line(parts.prompt)));
    }
    parts.override_in(&mut body);
    let model = match body.get(b"model")? {
        Piece::Str(Str::Written(_)) => written.model.as_ref()?.1.clone(),
        Piece::Str(Str::Line(m)) => m.string()?.into_owned(),
        _ => return None,
    };
    let endpoint = if chat { CHAT_COMPLETIONS } else { EMBEDDINGS };
    let mut out = Vec::with_capacity(parts.bytes + 128);
    out.extend_from_slice(b"{\"custom_id\":");
    write_str(&mut out, id);
    out.extend_from_slice(b",\"method\":\"POST\",\"url\":");
    write_str(&mut out, endpoint);
    out.extend_from_slice(b",\"body\":");
    body.write(&mut out);
    out.push(b'}');
    Some((
        Group {
            endpoint: endpoint.to_string(),
            model,
        },
        Cow::Owned(out),
        1,
    ))
}

/// A prompt line, on the general path.
pub(crate) fn prompt_line(
    parts: PromptParts,
    id: &str,
    defaults: &Defaults,
) -> Result<Built<'static>, Reject> {
    let PromptParts {
        prompt,
        system,
        overrides,
    } = parts;
    let endpoint = defaults
        .endpoint
        .clone()
        .unwrap_or_else(|| CHAT_COMPLETIONS.to_string());
    let mut body = Map::new();
    if let Some(model) = &defaults.model {
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
        if let Some(t) = defaults.max_tokens {
            body.insert("max_tokens".into(), Value::from(t));
        }
        if let Some(t) = defaults.temperature {
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
    Ok(request_line(id, &endpoint, body))
}

/// A batch line for `body` at `endpoint`.
fn request_line(id: &str, endpoint: &str, body: Map<String, Value>) -> Built<'static> {
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

/// `method` must be `POST`; a line without one gets it.
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
