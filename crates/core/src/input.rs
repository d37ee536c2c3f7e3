//! Input lines: each non-blank line of an upload is either accepted as one provider request or
//! rejected with a code, a message and its line number. One bad line never fails the file.
//!
//! Shapes, detected per line: a batch line of any registered provider (each dialect knows its
//! own: an OpenAI `{"custom_id","method","url","body"}`, an Anthropic `{"custom_id","params"}`,
//! a Bedrock `{"recordId","modelInput"}`), or a prompt line
//! `{"prompt","custom_id"?,"system"?, …overrides}` ([`crate::prompt`]). Each
//! becomes a request in the route's provider's format, as its dialect
//! ([`crate::provider::Dialect`]) builds it:
//! - a line already in the route's format passes through byte for byte when complete (unknown
//!   fields kept); what is missing is filled from the route;
//! - a line in another provider's format goes through the common request
//!   ([`crate::provider::Request`]) or is rejected with `untranslatable` naming the field;
//! - a prompt line is built with the route's defaults, the line's other fields overriding them.
//!
//! A line's id is its `custom_id`, or the field its shape's dialect names
//! ([`crate::provider::Dialect::line_id`]: a Bedrock line's `recordId`); a line without one gets
//! `line-<n>`. Duplicate ids are found after validation, over the whole file ([`crate::ids`]).
//! An id the provider would refuse is sent under one its dialect makes up
//! ([`crate::provider::Dialect::id_to_send`]) and restored in the results.
//!
//! Reading a line is one pass over its bytes ([`crate::scan`]): it checks the JSON as serde_json
//! would and notes where the fields read here are. A complete line in the route's format is then
//! sent as it is, and a plain prompt line is written byte by byte; only the lines that must be
//! rewritten or translated, and refused ones (for serde_json's words on why), are parsed again
//! by serde_json.

use crate::fields::{LineFields, Reject, given, reject, text};
use crate::prompt::{self, Written};
use crate::provider::Dialect;
use crate::providers;
use crate::route::{Defaults, Route};
use crate::scan;
pub use crate::types::{Group, RejectCode, Rejection};
use std::borrow::Cow;

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

/// Validates the lines of one upload, in order.
#[derive(Debug)]
pub struct Validator {
    /// The route's provider.
    dialect: &'static dyn Dialect,
    /// Every registered dialect, to tell whose batch line a line is.
    known: Vec<&'static dyn Dialect>,
    defaults: Defaults,
    max_line_bytes: u64,
    written: Written,
}

/// Whose line a line is.
#[derive(Clone, Copy)]
enum Shape {
    Batch(&'static dyn Dialect),
    Prompt,
}

impl Validator {
    /// The validator of a route whose provider's dialect is `dialect`
    /// (`crate::providers::dialect(&route.provider)`).
    pub fn new(route: &Route, dialect: &'static dyn Dialect) -> Self {
        Self {
            dialect,
            known: providers::dialects(),
            defaults: route.defaults.clone(),
            max_line_bytes: route.limits.max_line_bytes,
            written: Written::new(&route.defaults),
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

    /// The message for a line of no known shape: every shape, by name.
    fn shapes(&self) -> String {
        // A provider that speaks another's lines has no shape of its own.
        let mut shapes: Vec<&str> = self
            .known
            .iter()
            .filter(|d| d.format() == d.name())
            .map(|d| d.line_shape())
            .collect();
        shapes.push("a prompt line (prompt)");
        let last = shapes.pop().unwrap_or_default();
        format!("expected {} or {last}", shapes.join(", "))
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

        // The shape first: it says which field holds the line's id (a prompt line's, and that of
        // a line of no known shape, is `custom_id`).
        let shape = match self.known.iter().find(|d| d.is_own_line(&fields)) {
            Some(d) => Some(Shape::Batch(*d)),
            None if given(fields.prompt).is_some() => Some(Shape::Prompt),
            None => None,
        };
        let (id_field, raw_id) = match shape {
            Some(Shape::Batch(d)) => (d.id_field(), d.line_id(&fields)),
            _ => ("custom_id", fields.custom_id),
        };
        let given_id: Option<Cow<'a, str>> = match given(raw_id) {
            None => None,
            Some(raw) => match raw.string() {
                Some(id) if !id.is_empty() => Some(id),
                Some(_) => {
                    return Err(no_id(reject(
                        RejectCode::InvalidField,
                        format!("{id_field} is an empty string"),
                    )));
                }
                None => {
                    return Err(no_id(reject(
                        RejectCode::InvalidField,
                        format!("{id_field} must be a string, found {}", text(raw)),
                    )));
                }
            },
        };
        let id_given = given_id.is_some();
        let custom_id: Cow<'a, str> =
            given_id.unwrap_or_else(|| Cow::Owned(format!("line-{line_no}")));
        let with_id = |(code, message): Reject| (code, message, Some(custom_id.to_string()));

        let Some(shape) = shape else {
            return Err(with_id(reject(RejectCode::MissingField, self.shapes())));
        };
        let target = self.dialect;
        let sent_id = target.id_to_send(&custom_id, line_no);
        let id_to_send: &str = sent_id.as_deref().unwrap_or(&custom_id);
        let built = match shape {
            Shape::Batch(own) if own.format() == target.format() => target.own_line(
                line,
                &fields,
                (sent_id.is_some() || !id_given).then_some(id_to_send),
                &self.defaults,
            ),
            Shape::Batch(other) => other
                .read_common(&fields, target)
                .and_then(|request| target.write_common(request, id_to_send, &self.defaults)),
            Shape::Prompt => {
                match prompt::plain(&fields).and_then(|plain| {
                    target.plain_prompt_line(&plain, &self.written, id_to_send, &self.defaults)
                }) {
                    Some(built) => Ok(built),
                    None => prompt::prompt_parts(line, &self.defaults)
                        .and_then(|parts| target.prompt_line(parts, id_to_send, &self.defaults)),
                }
            }
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

#[cfg(test)]
mod reference;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::providers::anthropic::MESSAGES;
    use crate::providers::openai::CHAT_COMPLETIONS;
    use serde_json::Value;

    fn validator() -> Validator {
        let config = Config::builtin(&|_| None);
        Validator::new(
            config.route("sandbox").unwrap(),
            &providers::openai::DIALECT,
        )
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
        let mut v = Validator::new(
            config.route("sandbox").unwrap(),
            &providers::openai::DIALECT,
        );
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
        Validator::new(
            config.route("sandbox-anthropic").unwrap(),
            &providers::anthropic::DIALECT,
        )
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
