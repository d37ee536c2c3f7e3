//! Reading the fields of a scanned line ([`crate::scan`]) for validation and for the
//! providers' dialects: a field that is given, an object field, the strict check of `body` /
//! `params`, and the refusals built from them.

use crate::scan::{Inner, Json};
pub use crate::types::Reject;
use crate::types::{RejectCode, Untranslatable};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;

pub fn reject(code: RejectCode, message: impl Into<String>) -> Reject {
    (code, message.into())
}

pub fn untranslatable(e: Untranslatable) -> Reject {
    reject(RejectCode::Untranslatable, format!("cannot translate: {e}"))
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
    #[serde(borrow, default, rename = "recordId")]
    pub(crate) record_id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "modelInput")]
    pub(crate) model_input: Option<&'a RawValue>,
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

/// A field that is there and not `null`.
pub fn given(value: Option<Json<'_>>) -> Option<Json<'_>> {
    value.and_then(Json::given)
}

/// A value as the line writes it, for messages (the line is UTF-8 by then).
pub fn text(value: Json<'_>) -> Cow<'_, str> {
    String::from_utf8_lossy(value.raw)
}

pub fn object_field<'a>(value: Option<Json<'a>>, name: &str) -> Result<Json<'a>, Reject> {
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
pub fn strict<'a>(fields: Inner<'a>, object: Json<'a>, name: &str) -> Result<Inner<'a>, Reject> {
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

pub fn parse_map(line: &[u8]) -> Map<String, Value> {
    serde_json::from_slice(line).unwrap_or_default()
}

pub fn to_vec(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}
