//! What the engine needs to know of a provider's formats: its dialect. Each provider folder
//! (`providers/<name>/`) implements it; the validator, the planner and the engine
//! speak only through it, so that none of them names a provider.
//!
//! A dialect builds request lines (from its own batch lines, from prompt lines, and from the
//! common [`Request`] for lines written in another provider's format), reads result lines into
//! [`ResultFacts`], writes the line of a request that got no result, and says which batch
//! errors mean "no capacity now".

use super::{BatchError, Reply, Request};
use crate::prompt::{Plain, PromptParts, Written};
use crate::route::{ChunkLimits, Defaults};
use crate::scan;
use crate::types::Group;
pub use crate::types::Reject;
use std::borrow::Cow;

/// A request built from a line: its group, the bytes to send (no newline), and the units it
/// counts against the per-batch request limit (e.g. embedding inputs).
pub type Built<'a> = (Group, Cow<'a, [u8]>, u64);

/// What batchdrop needs to know of one result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultFacts {
    /// The id the request was sent under.
    pub custom_id: String,
    pub succeeded: bool,
    /// A failure that may go away when the request is sent again (rate limit, server error,
    /// expiry); never true for a success or a permanent error. The dialect decides.
    pub retryable: bool,
    /// The request never ran: its batch was cancelled (or expired) before it (OpenAI's
    /// `batch_cancelled` error lines, Anthropic's `canceled` results). After a deadline cut
    /// such requests go through the synchronous lane.
    pub not_run: bool,
    /// Every input token, those read from or written to a prompt cache included.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Of `input_tokens`, those read from a prompt cache.
    pub cache_read_tokens: u64,
    /// Of `input_tokens`, those written to a prompt cache.
    pub cache_write_tokens: u64,
    /// The model the result says answered.
    pub model: Option<String>,
}

impl ResultFacts {
    /// The tokens it used, as the manifest records them.
    pub fn usage(&self) -> crate::manifest::Usage {
        crate::manifest::Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cache_read_tokens: self.cache_read_tokens,
            cache_write_tokens: self.cache_write_tokens,
        }
    }
}

pub trait Dialect: Send + Sync + std::fmt::Debug {
    /// The provider's name in the registry, as routes and manifests write it (`openai`).
    fn name(&self) -> &'static str;
    /// The name of its line format: its own name, or that of the provider whose lines it
    /// speaks (`openai-sync` speaks `openai`'s), whose lines then pass through unchanged.
    fn format(&self) -> &'static str {
        self.name()
    }
    /// How messages name it (`OpenAI`).
    fn title(&self) -> &'static str;
    /// The provider's own per-batch limits; a route may only go lower.
    fn limits(&self) -> ChunkLimits;

    /// What its batch lines look like, for the message refusing a line of no known shape:
    /// `an OpenAI batch line (custom_id, method, url, body)`.
    fn line_shape(&self) -> &'static str;
    /// Whether a scanned line is one of its batch lines.
    fn is_own_line(&self, line: &scan::Line<'_>) -> bool;
    /// The field of its batch lines that holds the line's id, as messages name it.
    fn id_field(&self) -> &'static str {
        "custom_id"
    }
    /// The id one of its batch lines gives ([`Dialect::id_field`]), as written.
    fn line_id<'a>(&self, line: &scan::Line<'a>) -> Option<scan::Json<'a>> {
        line.custom_id
    }
    /// The id a request line it built goes out under (its [`Dialect::id_field`]), for the
    /// engine to match results to requests.
    fn request_id(&self, request: &[u8]) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Id {
            custom_id: Option<String>,
        }
        serde_json::from_slice::<Id>(request.trim_ascii())
            .ok()
            .and_then(|i| i.custom_id)
    }
    /// The id to send instead of `custom_id` when the provider would refuse it (unique by
    /// construction from the line number); the results get the user's id back.
    fn id_to_send(&self, _custom_id: &str, _line_no: u64) -> Option<String> {
        None
    }
    /// One of its own lines, checked, completed from `defaults`, passed through byte for byte
    /// when nothing must change. `set_id` is written into the line when given.
    fn own_line<'a>(
        &self,
        line: &'a [u8],
        fields: &scan::Line<'a>,
        set_id: Option<&str>,
        defaults: &Defaults,
    ) -> Result<Built<'a>, Reject>;
    /// One of its own lines as the common request, for a route of `target` (named in refusals).
    fn read_common(&self, fields: &scan::Line<'_>, target: &dyn Dialect)
    -> Result<Request, Reject>;
    /// The common request as one of its lines, the model kept when this provider serves it.
    fn write_common(
        &self,
        request: Request,
        id: &str,
        defaults: &Defaults,
    ) -> Result<Built<'static>, Reject>;
    /// A plain prompt line, written byte by byte with the route's defaults ([`Written`]);
    /// `None` sends it to [`Dialect::prompt_line`].
    fn plain_prompt_line(
        &self,
        plain: &Plain<'_>,
        written: &Written,
        id: &str,
        defaults: &Defaults,
    ) -> Option<Built<'static>>;
    /// A prompt line: the route's defaults, the line's other fields overriding them.
    fn prompt_line(
        &self,
        parts: PromptParts,
        id: &str,
        defaults: &Defaults,
    ) -> Result<Built<'static>, Reject>;

    /// Reads one of its result lines.
    fn read_result(&self, line: &[u8]) -> Result<ResultFacts, serde_json::Error>;
    /// The line written for a request that got no result, in its result shape. `code` is one
    /// of `batch_expired`, `batch_cancelled`, `batch_failed`, `missing_result`.
    fn missing_result(&self, custom_id: &str, code: &str, message: &str) -> Vec<u8>;
    /// The same result line under another id (the user's), everything else kept.
    fn with_custom_id(&self, line: &[u8], custom_id: &str) -> Vec<u8> {
        with_field(line, "custom_id", custom_id)
    }
    /// The line output.jsonl holds for one of its result lines (a provider's, or one
    /// [`Dialect::missing_result`] wrote under the id sent); `user_id` is the user's id where
    /// the request went out under another one. By default the line as it is, or
    /// [`Dialect::with_custom_id`] under the user's id.
    fn output_line<'l>(&self, line: &'l [u8], user_id: Option<&str>) -> Cow<'l, [u8]> {
        match user_id {
            Some(id) => Cow::Owned(self.with_custom_id(line, id)),
            None => Cow::Borrowed(line),
        }
    }
    /// One of its result lines, as output.jsonl holds it (the user's id as its id), read into
    /// the common result; `None` when the line is none of its result lines. Dialects whose
    /// results no API of batchdrop serves in another shape keep the default: none is read.
    fn read_reply(&self, _line: &[u8]) -> Option<Reply> {
        None
    }
    /// The common result as one of its result lines (an API's output in this provider's
    /// shape). By default a [`Dialect::missing_result`] line saying it cannot be written.
    fn write_reply(&self, reply: &Reply) -> Vec<u8> {
        self.missing_result(
            &reply.custom_id,
            "result_not_translated",
            &format!(
                "batchdrop does not write results in {}'s shape",
                self.title()
            ),
        )
    }
    /// The endpoint and the body of one of its request lines, for estimates to read.
    fn request_parts<'v>(&self, line: &'v serde_json::Value) -> (&'v str, &'v serde_json::Value);
    /// Whether its models' tokenizer is public (tiktoken's), so that estimates can count
    /// exactly.
    fn public_tokenizer(&self) -> bool {
        false
    }
    /// Whether a batch error says the provider refused the work for capacity: the requests go
    /// again once the job's other batches have drained.
    fn is_capacity_refusal(&self, _error: &BatchError) -> bool {
        false
    }
}

/// `line` with the string field `name` set to `value` (field order and everything else kept);
/// the line as it is when it is not an object holding that field.
pub fn with_field(line: &[u8], name: &str, value: &str) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line) {
        Ok(mut map) => {
            if let Some(slot) = map.get_mut(name) {
                *slot = serde_json::Value::String(value.to_string());
            }
            serde_json::to_vec(&map).unwrap_or_else(|_| line.to_vec())
        }
        Err(_) => line.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::Dialect;
    use crate::providers::{anthropic, openai};

    /// The dialects that keep the default [`Dialect::output_line`].
    fn by_default() -> [&'static dyn Dialect; 2] {
        [&openai::DIALECT, &anthropic::DIALECT]
    }

    #[test]
    fn a_missing_result_under_the_user_id_is_the_line_written_for_it() {
        for dialect in by_default() {
            let sent = dialect.missing_result("bd_2", "batch_expired", "m");
            assert_eq!(
                *dialect.output_line(&sent, Some("user id")),
                *dialect.missing_result("user id", "batch_expired", "m"),
                "{}",
                dialect.name()
            );
        }
    }

    #[test]
    fn a_result_line_not_mapped_is_kept_as_it_is() {
        let line = br#"{"custom_id":"a","x":1}"#;
        for dialect in by_default() {
            assert_eq!(
                &*dialect.output_line(line, None),
                line,
                "{}",
                dialect.name()
            );
        }
    }
}
