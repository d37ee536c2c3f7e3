//! Bedrock batch lines `{"recordId"?, "modelInput"}`: checking the user's own, building them
//! from prompt lines and from the common request, and the ids Bedrock might refuse.

use super::{INVOKE, MAPPED_ID_PREFIX, translate};
use crate::fields::{Reject, object_field, parse_map, reject, to_vec, untranslatable};
use crate::prompt::PromptParts;
use crate::provider::{Built, Dialect, Request};
use crate::providers::anthropic;
use crate::route::Defaults;
use crate::scan;
use crate::types::{Group, RejectCode};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Whether Bedrock takes `id` as it is, and it is not batchdrop's own prefix.
///
/// Bedrock's documentation says only "alphanumeric string" (older pages: "11 character
/// alphanumeric string", with `CALL0000001` as the example); it states no length and no
/// character set, and no API model describes the data plane. Assumed here, conservatively:
/// 1 to 64 characters of `[A-Za-z0-9_-]` (Anthropic's rule, which batchdrop's own `line-<n>`
/// and `bd_<n>` fit). Anything else goes out as `bd_<line>`.
pub(crate) fn safe_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !id.starts_with(MAPPED_ID_PREFIX)
}

/// A job's group: the invoke endpoint and the route's model (the job's `modelId`).
fn group(defaults: &Defaults) -> Result<Group, Reject> {
    match defaults.model.as_deref() {
        Some(model) if !model.is_empty() => Ok(Group {
            endpoint: INVOKE.to_string(),
            model: model.to_string(),
        }),
        _ => Err(reject(
            RejectCode::MissingField,
            "a Bedrock job runs the route's model and the route has none: set `model` under \
             `[routes.<route>.defaults]`",
        )),
    }
}

/// The id a Bedrock request line goes out under.
pub(crate) fn request_id(request: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        #[serde(rename = "recordId")]
        record_id: Option<String>,
    }
    serde_json::from_slice::<Id>(request.trim_ascii())
        .ok()
        .and_then(|i| i.record_id)
}

/// A line of the user's in Bedrock's format: sent as it is, but with `set_id` as its recordId
/// when the id must change (or was not given). Nothing of `modelInput` is filled from the
/// route: it is the model's own body, which Bedrock checks.
pub(crate) fn own_line<'a>(
    line: &'a [u8],
    fields: &scan::Line<'a>,
    set_id: Option<&str>,
    defaults: &Defaults,
) -> Result<Built<'a>, Reject> {
    object_field(fields.model_input, "modelInput")?;
    let group = group(defaults)?;
    let request = match set_id {
        Some(id) => {
            let mut map = parse_map(line);
            map.insert("recordId".into(), Value::String(id.to_string()));
            Cow::Owned(to_vec(&map))
        }
        None => Cow::Borrowed(line),
    };
    Ok((group, request, 1))
}

/// One of its own lines as the common request (its `modelInput` a Claude or Nova body).
pub(crate) fn to_common(fields: &scan::Line<'_>, target: &dyn Dialect) -> Result<Request, Reject> {
    let body: Map<String, Value> = serde_json::from_slice(
        object_field(fields.model_input, "modelInput")?.raw,
    )
    .map_err(|e| {
        reject(
            RejectCode::InvalidField,
            format!("`modelInput` is not valid: {e}"),
        )
    })?;
    translate::to_common(&body, target.title()).map_err(untranslatable)
}

/// The common request as a Bedrock line, in the body of the route's model's family.
pub(crate) fn from_common(
    request: Request,
    id: &str,
    defaults: &Defaults,
) -> Result<Built<'static>, Reject> {
    let group = group(defaults)?;
    let body = translate::from_common(request, &group.model, defaults).map_err(untranslatable)?;
    let line = serde_json::json!({"recordId": id, "modelInput": body});
    Ok((group, Cow::Owned(to_vec(&line)), 1))
}

/// A prompt line: the route's defaults and the line's overrides, read as Anthropic params
/// (whose field names Claude's body shares), then written as the route's model's body.
pub(crate) fn prompt_line(
    parts: PromptParts,
    id: &str,
    defaults: &Defaults,
) -> Result<Built<'static>, Reject> {
    let mut params = Map::new();
    anthropic::lines::prompt_params(parts, defaults, &mut params);
    let request = anthropic::translate::to_common(&params, "Bedrock").map_err(untranslatable)?;
    from_common(request, id, defaults)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_letters_digits_dashes_and_underscores_up_to_64_are_safe() {
        assert!(safe_id("CALL0000001"));
        assert!(safe_id("line-7"));
        assert!(safe_id("a_b-C"));
        assert!(safe_id(&"x".repeat(64)));
    }

    #[test]
    fn long_odd_or_reserved_ids_are_not_safe() {
        for id in ["", "has.dot", "has space", "unicodé", "bd_3"] {
            assert!(!safe_id(id), "{id}");
        }
        assert!(!safe_id(&"x".repeat(65)));
    }

    #[test]
    fn the_request_id_is_the_record_id() {
        assert_eq!(
            request_id(br#"{"recordId":"r1","modelInput":{}}"#).as_deref(),
            Some("r1")
        );
        assert_eq!(request_id(br#"{"custom_id":"r1"}"#), None);
    }

    #[test]
    fn a_route_without_a_model_refuses_every_line() {
        let (code, message) = group(&Defaults::default()).unwrap_err();
        assert_eq!(code, RejectCode::MissingField);
        assert!(message.contains("[routes.<route>.defaults]"), "{message}");
    }
}
