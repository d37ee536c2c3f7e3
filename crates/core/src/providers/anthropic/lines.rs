//! Anthropic batch lines `{"custom_id","params"}`: checking the user's own, building them from
//! prompt lines and from the common request, and the ids Anthropic would refuse.

use super::{MAPPED_ID_PREFIX, MESSAGES, translate};
use crate::fields::{
    Reject, given, object_field, parse_map, reject, strict, to_vec, untranslatable,
};
use crate::prompt::{Fields, Piece, Plain, PromptParts, Str, Written, write_str};
use crate::provider::{Built, Dialect, Request};
use crate::route::Defaults;
use crate::scan;
use crate::types::{Group, RejectCode};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Whether Anthropic takes `id` as it is: `^[a-zA-Z0-9_-]{1,64}$`, and not batchdrop's own
/// prefix.
pub(crate) fn safe_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !id.starts_with(MAPPED_ID_PREFIX)
}

/// Every Anthropic request may share a batch: one endpoint, models mixed.
fn group() -> Group {
    Group {
        endpoint: MESSAGES.to_string(),
        model: String::new(),
    }
}

/// A line of the user's in Anthropic's format; `set_id` replaces its id when it must change.
pub(crate) fn own_line<'a>(
    line: &'a [u8],
    fields: &scan::Line<'a>,
    set_id: Option<&str>,
    defaults: &Defaults,
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
            defaults.model.clone().map(Value::String),
        ),
        (
            "max_tokens",
            given(pf.max_tokens).is_none(),
            defaults.max_tokens.map(Value::from),
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
    Ok((group(), request, 1))
}

/// One of its own lines as the common request.
pub(crate) fn to_common(fields: &scan::Line<'_>, target: &dyn Dialect) -> Result<Request, Reject> {
    let params: Map<String, Value> =
        serde_json::from_slice(object_field(fields.params, "params")?.raw).map_err(|e| {
            reject(
                RejectCode::InvalidField,
                format!("`params` is not valid: {e}"),
            )
        })?;
    translate::to_common(&params, target.title()).map_err(untranslatable)
}

/// The common request as an Anthropic line.
pub(crate) fn from_common(
    request: Request,
    id: &str,
    defaults: &Defaults,
) -> Result<Built<'static>, Reject> {
    let params = translate::from_common(request, defaults).map_err(untranslatable)?;
    Ok(request_line(id, params))
}

/// A plain prompt line, written byte by byte.
pub(crate) fn plain_prompt_line(
    parts: &Plain<'_>,
    written: &Written,
    id: &str,
) -> Option<Built<'static>> {
    let mut params = Fields::new();
    if let Some((model, _)) = &written.model {
        params.set(b"model", Piece::Str(Str::Written(model)));
    }
    if let Some(t) = &written.max_tokens {
        params.set(b"max_tokens", Piece::Raw(t));
    }
    if let Some(t) = &written.temperature {
        params.set(b"temperature", Piece::Raw(t));
    }
    if let Some(s) = parts.system(written) {
        params.set(b"system", Piece::Str(s));
    }
    params.set(
        b"messages",
        Piece::Messages {
            system: None,
            prompt: parts.prompt,
        },
    );
    parts.override_in(&mut params);
    params.get(b"model")?;
    params.get(b"max_tokens")?;
    let mut out = Vec::with_capacity(parts.bytes + 128);
    out.extend_from_slice(b"{\"custom_id\":");
    write_str(&mut out, id);
    out.extend_from_slice(b",\"params\":");
    params.write(&mut out);
    out.push(b'}');
    Some((group(), Cow::Owned(out), 1))
}

/// A prompt line, on the general path.
pub(crate) fn prompt_line(
    parts: PromptParts,
    id: &str,
    defaults: &Defaults,
) -> Result<Built<'static>, Reject> {
    let mut params = Map::new();
    if let Some(model) = &defaults.model {
        params.insert("model".into(), Value::String(model.clone()));
    }
    prompt_params(parts, defaults, &mut params);
    for field in ["model", "max_tokens"] {
        if !params.contains_key(field) {
            return Err(reject(
                RejectCode::MissingField,
                format!("prompt line without `{field}` and the route has no default"),
            ));
        }
    }
    Ok(request_line(id, params))
}

/// The params of a prompt line, the model aside: the route's `max_tokens` and
/// `temperature`, the line's `system` and prompt as the one user message, then the line's
/// overrides. Also what a Bedrock prompt line is read from (Claude's body shares these names).
pub(crate) fn prompt_params(
    parts: PromptParts,
    defaults: &Defaults,
    params: &mut Map<String, Value>,
) {
    let PromptParts {
        prompt,
        system,
        overrides,
    } = parts;
    if let Some(t) = defaults.max_tokens {
        params.insert("max_tokens".into(), Value::from(t));
    }
    if let Some(t) = defaults.temperature {
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
}

fn request_line(id: &str, params: Map<String, Value>) -> Built<'static> {
    let request = serde_json::json!({"custom_id": id, "params": params});
    (group(), Cow::Owned(to_vec(&request)), 1)
}
